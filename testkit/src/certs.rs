//! Test certificates: a throw-away CA and a leaf for `localhost` / `127.0.0.1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tempfile::TempDir;

use crate::error::{Error, Result, write_file};

/// The host name the leaf certificate is issued for (it also carries the IP `127.0.0.1`).
pub const TEST_HOST: &str = "localhost";

/// A freshly generated certificate authority and a server certificate it signed.
///
/// The leaf names `localhost` and `127.0.0.1`, so a client that verifies the chain and the host
/// name succeeds against a server on loopback. The PEM files live in a private temporary
/// directory that is removed on drop; the servers started by this kit read them from there.
/// Keys are ECDSA P-256 (fast to generate, accepted by OpenSSL and rustls).
pub struct TestCa {
    dir: TempDir,
    ca_der: CertificateDer<'static>,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of debug output.
        f.debug_struct("TestCa")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// Generates a CA and a `localhost` leaf and writes `ca.pem`, `cert.pem`, `key.pem` and
    /// `chain.pem` (leaf then CA) into a new temporary directory.
    pub fn new() -> Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mailferry test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params =
            CertificateParams::new(vec![TEST_HOST.to_string(), "127.0.0.1".to_string()])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, TEST_HOST);
        leaf_params.is_ca = IsCa::NoCa;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf_cert = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key)?;

        let dir = tempfile::Builder::new()
            .prefix("mailferry-ca-")
            .tempdir()
            .map_err(|e| Error::io("creating the certificate directory", e))?;
        write_file(dir.path().join("ca.pem"), ca_cert.pem())?;
        write_file(dir.path().join("cert.pem"), leaf_cert.pem())?;
        write_file(dir.path().join("key.pem"), leaf_key.serialize_pem())?;
        write_file(
            dir.path().join("chain.pem"),
            format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        )?;

        Ok(TestCa {
            dir,
            ca_der: ca_cert.der().clone(),
            cert_der: leaf_cert.der().clone(),
            key_der: leaf_key.serialize_der(),
        })
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// PEM file of the CA certificate (what a client trusts).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// PEM file of the leaf certificate.
    pub fn cert_pem_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// PEM file of the leaf's private key (PKCS#8).
    pub fn key_pem_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// PEM file with the leaf followed by the CA certificate.
    pub fn chain_pem_path(&self) -> PathBuf {
        self.dir.path().join("chain.pem")
    }

    /// DER of the CA certificate.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// DER of the leaf certificate.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// DER of the leaf's private key (PKCS#8).
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// The server name to verify against: `localhost`.
    pub fn server_name(&self) -> ServerName<'static> {
        ServerName::DnsName(
            rustls::pki_types::DnsName::try_from(TEST_HOST)
                .expect("\"localhost\" is a valid DNS name")
                .to_owned(),
        )
    }

    /// A root store holding only this CA.
    pub fn root_store(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der())?;
        Ok(roots)
    }

    /// A rustls client configuration (ring provider) that trusts only this CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(self.root_store()?)
                .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// A rustls server configuration (ring provider) presenting the leaf and the CA.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![self.cert_der(), self.ca_der()], self.key_der())?;
        Ok(Arc::new(config))
    }
}

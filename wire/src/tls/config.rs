//! rustls configuration helpers: trust roots, CA files, pinned certificates, the insecure mode
//! and server certificates.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

use super::ChannelSecurity;

/// Why a TLS configuration could not be built. Every file problem names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read PEM file {}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file holds no certificate.
    #[error("no certificate found in {}", path.display())]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// A PEM file holds no private key.
    #[error("no private key found in {}", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate from a file cannot be used as a trust anchor.
    #[error("CA certificate in {} rejected: {source}", path.display())]
    BadCaCertificate {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// The server certificate chain and key do not make a usable identity (unsupported key
    /// type, or a key that does not match the certificate).
    #[error("certificate {} with key {} rejected: {source}", cert.display(), key.display())]
    BadServerIdentity {
        /// The certificate chain file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// The system trust store yielded no certificate.
    #[error("no certificate in the system trust store: {detail}")]
    SystemRoots {
        /// The loader's errors, joined.
        detail: String,
    },
    /// [`ServerTrust::Roots`] with neither system roots nor a CA file: nothing would be trusted.
    #[error("no trust anchors configured: enable system roots or give a CA file")]
    NoTrustAnchors,
    /// The crypto provider cannot serve the default protocol versions.
    #[error("crypto provider unusable: {0}")]
    Provider(#[source] rustls::Error),
    /// A fingerprint is not 32 octets of hex (optionally colon-separated).
    #[error("a SHA-256 fingerprint is 64 hex digits, optionally colon-separated")]
    BadFingerprint,
}

/// The SHA-256 fingerprint of a DER-encoded certificate, as `openssl x509 -fingerprint
/// -sha256` prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint([u8; 32]);

impl CertFingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(cert_der: &[u8]) -> Self {
        CertFingerprint(Sha256::digest(cert_der).into())
    }

    /// Wraps a known digest.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        CertFingerprint(bytes)
    }

    /// The digest octets.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl TryFrom<&str> for CertFingerprint {
    type Error = TlsConfigError;

    /// Reads 64 hex digits, either plain or as colon-separated pairs (`AB:CD:...`), any case.
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let s = s.trim();
        let digits: Vec<u8> = if s.contains(':') {
            // Colon-separated pairs only: "A:BC:..." is a typo, not a fingerprint.
            let mut out = Vec::with_capacity(64);
            for pair in s.split(':') {
                if pair.len() != 2 {
                    return Err(TlsConfigError::BadFingerprint);
                }
                out.extend_from_slice(pair.as_bytes());
            }
            out
        } else {
            s.as_bytes().to_vec()
        };
        if digits.len() != 64 {
            return Err(TlsConfigError::BadFingerprint);
        }
        let mut out = [0u8; 32];
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(TlsConfigError::BadFingerprint);
        }
        for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            // Both octets are ASCII hex digits, checked above.
            let text = std::str::from_utf8(pair).map_err(|_| TlsConfigError::BadFingerprint)?;
            *slot = u8::from_str_radix(text, 16).map_err(|_| TlsConfigError::BadFingerprint)?;
        }
        Ok(CertFingerprint(out))
    }
}

impl fmt::Display for CertFingerprint {
    /// Upper-case colon-separated hex, as OpenSSL prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerTrust {
    /// Verify the chain up to a trust anchor and the host name (WebPKI rules).
    Roots {
        /// Trust the operating system's store (via rustls-native-certs).
        system: bool,
        /// Also trust the CA certificates of this PEM file.
        ca_file: Option<PathBuf>,
    },
    /// Accept exactly the end-entity certificate with this SHA-256 fingerprint, whatever its
    /// issuer, host names or dates: the operator vouched for that certificate. Handshake
    /// signatures are still verified, so the peer must hold its private key.
    Pinned(CertFingerprint),
    /// **Accept any certificate.** Handshake signatures are still verified, but anyone on the
    /// path can impersonate the server: sessions count as [`ChannelSecurity::TlsUnverified`]
    /// and never release a password without a second explicit opt-in.
    DangerousNoVerification,
}

/// The client side of a TLS policy: builds the rustls `ClientConfig`.
///
/// The default trusts the system roots and verifies host names.
///
/// ```
/// use std::sync::Arc;
/// use mailferry_wire::tls::{CertFingerprint, ChannelSecurity, TlsClientSettings};
///
/// // The caller picks the crypto provider; the library never does.
/// let provider = Arc::new(rustls::crypto::ring::default_provider());
/// let pin = CertFingerprint::try_from(
///     "3A:52:8C:F1:0D:88:76:2B:E9:14:7C:0A:55:61:92:3E:0F:DE:AD:BE:EF:01:23:45:67:89:AB:CD:EF:01:23:45",
/// )?;
/// let settings = TlsClientSettings::pinned(pin);
/// let _config = settings.client_config(provider)?;
/// assert_eq!(settings.channel_security(), ChannelSecurity::TlsVerified);
/// assert_eq!(
///     TlsClientSettings::dangerous_no_verification().channel_security(),
///     ChannelSecurity::TlsUnverified
/// );
/// # Ok::<(), mailferry_wire::tls::TlsConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsClientSettings {
    /// How the server certificate is checked.
    pub trust: ServerTrust,
}

impl Default for TlsClientSettings {
    fn default() -> Self {
        TlsClientSettings {
            trust: ServerTrust::Roots {
                system: true,
                ca_file: None,
            },
        }
    }
}

impl TlsClientSettings {
    /// Trust the system roots only (the default).
    pub fn system_roots() -> Self {
        Self::default()
    }

    /// Trust the CA certificates of a PEM file, and the system roots when `also_system`.
    pub fn with_ca_file(path: impl Into<PathBuf>, also_system: bool) -> Self {
        TlsClientSettings {
            trust: ServerTrust::Roots {
                system: also_system,
                ca_file: Some(path.into()),
            },
        }
    }

    /// Accept exactly the certificate with this fingerprint.
    pub fn pinned(fingerprint: CertFingerprint) -> Self {
        TlsClientSettings {
            trust: ServerTrust::Pinned(fingerprint),
        }
    }

    /// Accept any certificate: see [`ServerTrust::DangerousNoVerification`].
    pub fn dangerous_no_verification() -> Self {
        TlsClientSettings {
            trust: ServerTrust::DangerousNoVerification,
        }
    }

    /// What a session established with these settings is worth to the SASL negotiator.
    pub fn channel_security(&self) -> ChannelSecurity {
        match self.trust {
            ServerTrust::Roots { .. } | ServerTrust::Pinned(_) => ChannelSecurity::TlsVerified,
            ServerTrust::DangerousNoVerification => ChannelSecurity::TlsUnverified,
        }
    }

    /// Builds the rustls client configuration with the caller's crypto provider and its safe
    /// default protocol versions (TLS 1.2 and 1.3). Reads the CA file and the system store now,
    /// so build once and share the `Arc`.
    pub fn client_config(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let algorithms = provider.signature_verification_algorithms;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Provider)?;
        let config = match &self.trust {
            ServerTrust::Roots { system, ca_file } => {
                let roots = root_store(*system, ca_file.as_deref())?;
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            ServerTrust::Pinned(fingerprint) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptVerifier {
                    pin: Some(*fingerprint),
                    algorithms,
                }))
                .with_no_client_auth(),
            ServerTrust::DangerousNoVerification => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptVerifier {
                    pin: None,
                    algorithms,
                }))
                .with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

fn root_store(system: bool, ca_file: Option<&Path>) -> Result<RootCertStore, TlsConfigError> {
    if !system && ca_file.is_none() {
        return Err(TlsConfigError::NoTrustAnchors);
    }
    let mut roots = RootCertStore::empty();
    if let Some(path) = ca_file {
        for cert in read_certs(path)? {
            roots
                .add(cert)
                .map_err(|source| TlsConfigError::BadCaCertificate {
                    path: path.to_owned(),
                    source,
                })?;
        }
    }
    if system {
        let loaded = rustls_native_certs::load_native_certs();
        // Odd certificates in a system store are common; skipping them is what every client
        // does. An empty store is only an error when nothing else is trusted.
        let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 && ca_file.is_none() {
            let detail = if loaded.errors.is_empty() {
                "the store is empty".to_owned()
            } else {
                loaded
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            return Err(TlsConfigError::SystemRoots { detail });
        }
    }
    Ok(roots)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem_error = |source| TlsConfigError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Loads a certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1) from
/// PEM files into a rustls server configuration, with the caller's crypto provider, its safe
/// default protocol versions and no client authentication.
pub fn server_config_from_pem_files(
    cert_chain: &Path,
    key: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = read_certs(cert_chain)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey {
            path: key.to_owned(),
        },
        source => TlsConfigError::Pem {
            path: key.to_owned(),
            source,
        },
    })?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Provider)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|source| TlsConfigError::BadServerIdentity {
            cert: cert_chain.to_owned(),
            key: key.to_owned(),
            source,
        })?;
    Ok(Arc::new(config))
}

/// Accepts the end-entity certificate without a chain or name check — either exactly the pinned
/// one, or (no pin) any — while still verifying the handshake signatures with the provider's
/// algorithms, so the peer must own the certificate's key.
#[derive(Debug)]
struct AcceptVerifier {
    pin: Option<CertFingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            Some(pin) if CertFingerprint::of(end_entity) != pin => Err(
                rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure),
            ),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::{ClientConnection, Connection, ServerConnection};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("mailferry-wire-tls-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A CA, a leaf for `mail.example` signed by it, and the PEM files of both.
    struct Pki {
        dir: TempDir,
        ca_pem: PathBuf,
        leaf_pem: PathBuf,
        key_pem: PathBuf,
        leaf_der: Vec<u8>,
    }

    fn pki() -> Pki {
        static CA_COUNTER: AtomicUsize = AtomicUsize::new(0);
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Distinct names, so that an "unknown CA" really is unknown and not a same-named issuer
        // whose signature fails.
        let n = CA_COUNTER.fetch_add(1, Ordering::Relaxed);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("mailferry test CA {n}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["mail.example".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let dir = TempDir::new();
        Pki {
            ca_pem: dir.write("ca.pem", &ca.pem()),
            leaf_pem: dir.write("leaf.pem", &leaf.pem()),
            key_pem: dir.write("leaf.key", &leaf_key.serialize_pem()),
            leaf_der: leaf.der().to_vec(),
            dir,
        }
    }

    /// Moves all pending TLS records from one side to the other.
    fn transfer(from: &mut Connection, to: &mut Connection) {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            to.read_tls(&mut rd).unwrap();
        }
    }

    /// Runs a handshake entirely in memory; a bounded number of flights, no sockets.
    fn handshake(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut c = Connection::from(ClientConnection::new(client, name).unwrap());
        let mut s = Connection::from(ServerConnection::new(server).unwrap());
        for _ in 0..10 {
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
            transfer(&mut c, &mut s);
            s.process_new_packets()?;
            transfer(&mut s, &mut c);
            c.process_new_packets()?;
        }
        panic!("handshake did not finish in 10 flights");
    }

    fn server(p: &Pki) -> Arc<ServerConfig> {
        server_config_from_pem_files(&p.leaf_pem, &p.key_pem, provider()).unwrap()
    }

    #[test]
    fn ca_file_trusted_handshake_succeeds() {
        let p = pki();
        let settings = TlsClientSettings::with_ca_file(&p.ca_pem, false);
        let client = settings.client_config(provider()).unwrap();
        assert_eq!(handshake(client, server(&p), "mail.example"), Ok(()));
        assert_eq!(settings.channel_security(), ChannelSecurity::TlsVerified);
        assert!(settings.channel_security().is_verified());
    }

    #[test]
    fn unknown_ca_is_rejected() {
        let p = pki();
        let other = pki();
        let client = TlsClientSettings::with_ca_file(&other.ca_pem, false)
            .client_config(provider())
            .unwrap();
        assert_eq!(
            handshake(client, server(&p), "mail.example"),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        );
    }

    #[test]
    fn wrong_host_name_is_rejected() {
        let p = pki();
        let client = TlsClientSettings::with_ca_file(&p.ca_pem, false)
            .client_config(provider())
            .unwrap();
        let got = handshake(client, server(&p), "evil.example");
        assert!(
            matches!(
                got,
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{got:?}"
        );
    }

    #[test]
    fn pinned_fingerprint_match_succeeds_mismatch_fails() {
        let p = pki();
        let pin = CertFingerprint::of(&p.leaf_der);
        let settings = TlsClientSettings::pinned(pin);
        assert_eq!(settings.channel_security(), ChannelSecurity::TlsVerified);
        // The pin stands in for chain and name: any name is accepted for the pinned cert.
        let client = settings.client_config(provider()).unwrap();
        assert_eq!(handshake(client, server(&p), "other.example"), Ok(()));

        let other = pki();
        let client = TlsClientSettings::pinned(CertFingerprint::of(&other.leaf_der))
            .client_config(provider())
            .unwrap();
        assert_eq!(
            handshake(client, server(&p), "mail.example"),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            ))
        );
    }

    #[test]
    fn insecure_mode_accepts_any_certificate_but_is_unverified() {
        let p = pki();
        let settings = TlsClientSettings::dangerous_no_verification();
        let client = settings.client_config(provider()).unwrap();
        assert_eq!(handshake(client, server(&p), "whatever.example"), Ok(()));
        assert_eq!(settings.channel_security(), ChannelSecurity::TlsUnverified);
        assert!(!settings.channel_security().is_verified());
    }

    #[test]
    fn configuration_errors_name_the_file() {
        let p = pki();
        let missing = p.dir.0.join("missing.pem");
        let err = TlsClientSettings::with_ca_file(&missing, false)
            .client_config(provider())
            .unwrap_err();
        assert!(
            matches!(&err, TlsConfigError::Pem { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.pem"));

        let empty = p.dir.write("empty.pem", "no pem here\n");
        let err = TlsClientSettings::with_ca_file(&empty, false)
            .client_config(provider())
            .unwrap_err();
        assert!(matches!(&err, TlsConfigError::NoCertificates { path } if *path == empty));

        let err = server_config_from_pem_files(&p.leaf_pem, &p.leaf_pem, provider()).unwrap_err();
        assert!(matches!(&err, TlsConfigError::NoPrivateKey { path } if *path == p.leaf_pem));

        let other = pki();
        let err =
            server_config_from_pem_files(&p.leaf_pem, &other.key_pem, provider()).unwrap_err();
        assert!(
            matches!(err, TlsConfigError::BadServerIdentity { .. }),
            "{err:?}"
        );

        let none = TlsClientSettings {
            trust: ServerTrust::Roots {
                system: false,
                ca_file: None,
            },
        };
        assert!(matches!(
            none.client_config(provider()),
            Err(TlsConfigError::NoTrustAnchors)
        ));
    }

    #[test]
    fn fingerprint_text_forms() {
        let fp = CertFingerprint::from_bytes([0xab; 32]);
        let colon = fp.to_string();
        assert_eq!(colon.len(), 95);
        assert!(colon.starts_with("AB:AB:"));
        assert_eq!(CertFingerprint::try_from(colon.as_str()).unwrap(), fp);
        assert_eq!(
            CertFingerprint::try_from("ab".repeat(32).as_str()).unwrap(),
            fp
        );
        for bad in [
            "",
            "ab",
            &format!("+a{}", "ab".repeat(31)),
            &"ab".repeat(33),
            &"zz".repeat(32),
            "A:BAB",
            &format!("{colon}:"),
        ] {
            assert!(
                matches!(
                    CertFingerprint::try_from(bad),
                    Err(TlsConfigError::BadFingerprint)
                ),
                "{bad:?}"
            );
        }
    }
}

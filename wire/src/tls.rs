//! One TLS vocabulary for every mailferry crate.
//!
//! [`TlsMode`] is the seeds' "SSL" box (implicit TLS) and their two STARTTLS modes (REQUIRED and
//! WANTED), plus plaintext. The rustls configuration helpers (feature `tls`) live in this module
//! too, so that trust decisions are made in one place: [`TlsClientSettings`] turns an operator's
//! choice of [`ServerTrust`] into a rustls `ClientConfig` and tells which [`ChannelSecurity`] the
//! resulting sessions have; [`server_config_from_pem_files`] loads a server certificate and key.
//! The library never picks a crypto provider: every helper takes an
//! `Arc<rustls::crypto::CryptoProvider>` from its caller.

/// How a connection is secured.
///
/// The default is [`TlsMode::StartTlsRequired`]: encrypted, on the protocol's standard port, and
/// never silently downgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TlsMode {
    /// TLS from the first byte (SMTPS port 465, RFC 8314; POP3S port 995).
    Implicit,
    /// Upgrade with STARTTLS / STLS; any failure to do so is fatal before a credential, an
    /// envelope or a message byte is sent.
    #[default]
    StartTlsRequired,
    /// Upgrade with STARTTLS / STLS when offered; otherwise continue in plaintext, withholding
    /// password-revealing mechanisms unless the operator allowed them.
    StartTlsWanted,
    /// Never use TLS.
    Plaintext,
}

/// The mail protocols whose default ports [`TlsMode::default_port`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// SMTP relay (RFC 5321): 25, or 465 with implicit TLS (RFC 8314).
    Smtp,
    /// Message submission (RFC 6409): 587, or 465 with implicit TLS (RFC 8314).
    Submission,
    /// POP3 (RFC 1939): 110, or 995 with implicit TLS (RFC 8314).
    Pop3,
}

impl TlsMode {
    /// The port to use when the operator gave only a host name.
    pub fn default_port(self, protocol: Protocol) -> u16 {
        match (protocol, self) {
            (Protocol::Smtp | Protocol::Submission, TlsMode::Implicit) => 465,
            (Protocol::Smtp, _) => 25,
            (Protocol::Submission, _) => 587,
            (Protocol::Pop3, TlsMode::Implicit) => 995,
            (Protocol::Pop3, _) => 110,
        }
    }

    /// Whether the connection must end up encrypted (implicit, or STARTTLS required).
    pub fn requires_tls(self) -> bool {
        matches!(self, TlsMode::Implicit | TlsMode::StartTlsRequired)
    }

    /// Whether a STARTTLS / STLS upgrade is attempted at all.
    pub fn uses_starttls(self) -> bool {
        matches!(self, TlsMode::StartTlsRequired | TlsMode::StartTlsWanted)
    }
}

/// How well a channel is protected, as the SASL negotiator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ChannelSecurity {
    /// No TLS: everything sent can be read and altered on the way.
    Plaintext,
    /// TLS without certificate verification: safe from passive eavesdroppers only.
    TlsUnverified,
    /// TLS with the chain and host name verified (or a pinned certificate matched).
    TlsVerified,
}

impl ChannelSecurity {
    /// Whether the channel is encrypted and the server's identity was checked: the only level
    /// at which a password-equivalent secret may be sent without an explicit operator opt-in.
    pub fn is_verified(self) -> bool {
        self == ChannelSecurity::TlsVerified
    }
}

#[cfg(feature = "tls")]
mod config;

#[cfg(feature = "tls")]
pub use config::{
    CertFingerprint, ServerTrust, TlsClientSettings, TlsConfigError, server_config_from_pem_files,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_follow_rfc_8314() {
        let table = [
            (Protocol::Smtp, TlsMode::Implicit, 465),
            (Protocol::Smtp, TlsMode::StartTlsRequired, 25),
            (Protocol::Smtp, TlsMode::StartTlsWanted, 25),
            (Protocol::Smtp, TlsMode::Plaintext, 25),
            (Protocol::Submission, TlsMode::Implicit, 465),
            (Protocol::Submission, TlsMode::StartTlsRequired, 587),
            (Protocol::Pop3, TlsMode::Implicit, 995),
            (Protocol::Pop3, TlsMode::StartTlsWanted, 110),
            (Protocol::Pop3, TlsMode::Plaintext, 110),
        ];
        for (protocol, mode, port) in table {
            assert_eq!(mode.default_port(protocol), port, "{protocol:?} {mode:?}");
        }
    }

    #[test]
    fn only_implicit_and_required_require_tls() {
        assert!(TlsMode::Implicit.requires_tls());
        assert!(TlsMode::StartTlsRequired.requires_tls());
        assert!(!TlsMode::StartTlsWanted.requires_tls());
        assert!(!TlsMode::Plaintext.requires_tls());
        assert!(TlsMode::StartTlsWanted.uses_starttls());
        assert!(!TlsMode::Implicit.uses_starttls());
    }
}

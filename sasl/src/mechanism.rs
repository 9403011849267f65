//! [`Mechanism`]: the names this crate knows, and their security ranking.

use std::fmt;
use std::str::FromStr;

/// An authentication method: a SASL mechanism, or one of POP3's two pre-SASL commands.
///
/// The declaration order is the negotiator's ranking, most secure first; `Ord` follows it, so
/// `Mechanism::ScramSha256 < Mechanism::Plain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Mechanism {
    /// SCRAM-SHA-256 (RFC 7677): salted challenge-response, proves the server knows the verifier.
    ScramSha256,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// NTLM, always answered with NTLMv2 (MS-NLMP §3.3.2); never LM or NTLMv1.
    Ntlm,
    /// CRAM-MD5 (RFC 2195): HMAC-MD5 over a server challenge.
    CramMd5,
    /// POP3 `APOP` (RFC 1939 §7): MD5 over the greeting timestamp and the password. Not SASL.
    Apop,
    /// OAUTHBEARER (RFC 7628): an OAuth 2.0 bearer token, readable by anyone who sees it.
    OAuthBearer,
    /// XOAUTH2 (Google's pre-RFC 7628 variant): a bearer token, readable by anyone who sees it.
    XOAuth2,
    /// PLAIN (RFC 4616): the password in the clear.
    Plain,
    /// LOGIN (draft-murchison-sasl-login): the password in the clear.
    Login,
    /// POP3 `USER` / `PASS` (RFC 1939 §7): the password in the clear. Not SASL.
    User,
}

impl Mechanism {
    /// Every mechanism, most secure first.
    pub const ALL: [Mechanism; 10] = [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Ntlm,
        Mechanism::CramMd5,
        Mechanism::Apop,
        Mechanism::OAuthBearer,
        Mechanism::XOAuth2,
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::User,
    ];

    /// The IANA SASL mechanism name (`APOP` and `USER` for the two POP3 pseudo-mechanisms).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Ntlm => "NTLM",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::Apop => "APOP",
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::User => "USER",
        }
    }

    /// Whether this is a SASL mechanism (sent with `AUTH`), as opposed to POP3's `APOP` and
    /// `USER`/`PASS` commands.
    pub fn is_sasl(self) -> bool {
        !matches!(self, Mechanism::Apop | Mechanism::User)
    }

    /// Whether anyone who reads the exchange learns a reusable credential: the password (PLAIN,
    /// LOGIN, USER) or a bearer token (XOAUTH2, OAUTHBEARER). These are withheld from channels
    /// that are not verified TLS unless the operator allows insecure authentication.
    pub fn reveals_credential(self) -> bool {
        matches!(
            self,
            Mechanism::Plain
                | Mechanism::Login
                | Mechanism::User
                | Mechanism::XOAuth2
                | Mechanism::OAuthBearer
        )
    }

    /// Whether the mechanism authenticates with a bearer token rather than a password.
    pub fn uses_token(self) -> bool {
        matches!(self, Mechanism::XOAuth2 | Mechanism::OAuthBearer)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mechanism name this crate does not implement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown authentication mechanism")]
pub struct UnknownMechanism;

impl FromStr for Mechanism {
    type Err = UnknownMechanism;

    /// Parses a mechanism name, ASCII case-insensitively (RFC 4422 §3.1 names are upper case,
    /// but servers and configuration files are not always).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or(UnknownMechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(m.name().parse::<Mechanism>(), Ok(m));
            assert_eq!(m.name().to_ascii_lowercase().parse::<Mechanism>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
        }
    }

    #[test]
    fn unknown_names_are_rejected() {
        for bad in [
            "",
            "DIGEST-MD5",
            "GSSAPI",
            "SCRAM-SHA-256-PLUS",
            "PLAIN ",
            " LOGIN",
            "NTLMv2",
        ] {
            assert_eq!(bad.parse::<Mechanism>(), Err(UnknownMechanism), "{bad:?}");
        }
    }

    #[test]
    fn ranking_is_declaration_order() {
        let mut sorted = Mechanism::ALL;
        sorted.sort();
        assert_eq!(sorted, Mechanism::ALL);
        assert!(Mechanism::ScramSha256 < Mechanism::ScramSha1);
        assert!(Mechanism::Apop < Mechanism::Plain);
        assert!(Mechanism::Login < Mechanism::User);
    }

    #[test]
    fn revealing_class() {
        let revealing: Vec<_> = Mechanism::ALL
            .into_iter()
            .filter(|m| m.reveals_credential())
            .collect();
        assert_eq!(
            revealing,
            [
                Mechanism::OAuthBearer,
                Mechanism::XOAuth2,
                Mechanism::Plain,
                Mechanism::Login,
                Mechanism::User
            ]
        );
        assert!(!Mechanism::Apop.is_sasl() && !Mechanism::User.is_sasl());
        assert!(Mechanism::Ntlm.is_sasl());
    }
}

//! Client mechanisms: [`ClientSession`] drives one SASL exchange, bytes in, bytes out.

use std::fmt;

use hmac::{Hmac, Mac};
use md5::Md5;
use zeroize::Zeroizing;

use crate::ntlm::Ntlm;
use crate::scram::{Scram, ScramHash};
use crate::{Mechanism, SaslError, Secret};

/// Who is authenticating, and with what.
///
/// Which fields a mechanism reads: all of them need `username`; SCRAM, NTLM, CRAM-MD5, PLAIN and
/// LOGIN need `password`; XOAUTH2 and OAUTHBEARER need `token`; PLAIN and OAUTHBEARER send
/// `authzid` when set (OAUTHBEARER falls back to the username); NTLM reads `ntlm_domain` and
/// `ntlm_workstation`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Credentials {
    /// The authentication identity (authcid).
    pub username: String,
    /// The identity to act as, when it differs from `username` (RFC 4616 authzid).
    pub authzid: Option<String>,
    /// The password.
    pub password: Option<Secret<String>>,
    /// An OAuth 2.0 bearer token for XOAUTH2 / OAUTHBEARER.
    pub token: Option<Secret<String>>,
    /// The NTLM domain (may be empty).
    pub ntlm_domain: String,
    /// The NTLM workstation name sent in the AUTHENTICATE message (may be empty).
    pub ntlm_workstation: String,
}

impl Credentials {
    /// Credentials with a username and nothing else.
    pub fn new(username: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            ..Credentials::default()
        }
    }

    /// Sets the password.
    pub fn with_password(mut self, password: impl Into<Secret<String>>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: impl Into<Secret<String>>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the authorization identity.
    pub fn with_authzid(mut self, authzid: impl Into<String>) -> Self {
        self.authzid = Some(authzid.into());
        self
    }

    /// Sets the NTLM domain.
    pub fn with_ntlm_domain(mut self, domain: impl Into<String>) -> Self {
        self.ntlm_domain = domain.into();
        self
    }

    /// Sets the NTLM workstation name.
    pub fn with_ntlm_workstation(mut self, workstation: impl Into<String>) -> Self {
        self.ntlm_workstation = workstation.into();
        self
    }
}

/// Limits and test hooks for client mechanisms.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The lowest SCRAM iteration count accepted. Default 4,096: RFC 5802 §5.1 and RFC 7677 §4
    /// say servers SHOULD announce at least that; less makes a stolen exchange cheap to crack.
    pub scram_min_iterations: u32,
    /// The highest SCRAM iteration count accepted. Default 600,000 (OWASP's 2023 figure for
    /// PBKDF2-HMAC-SHA256, about a quarter second here): a hostile server must not be able to
    /// make the client burn minutes of CPU.
    pub scram_max_iterations: u32,
    /// The SCRAM client nonce. `None` (the default) draws 24 random octets; set it only to
    /// replay published test vectors.
    pub scram_client_nonce: Option<String>,
    /// The NTLMv2 client challenge. `None` (the default) draws 8 random octets; set it only for
    /// tests.
    pub ntlm_client_challenge: Option<[u8; 8]>,
    /// The NTLMv2 timestamp (FILETIME: tenths of a microsecond since 1601-01-01) used when the
    /// server sends none. `None` (the default) reads the system clock.
    pub ntlm_timestamp: Option<u64>,
    /// The longest CRAM-MD5 challenge accepted, in octets. Default 1,024 (RFC 2195 challenges
    /// are a msg-id, well under 100 octets in practice).
    pub cram_md5_max_challenge: usize,
    /// OAUTHBEARER `host=` (RFC 7628 §3.1): the server name the client connected to, if known.
    pub oauth_host: Option<String>,
    /// OAUTHBEARER `port=` (RFC 7628 §3.1).
    pub oauth_port: Option<u16>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            scram_min_iterations: 4096,
            scram_max_iterations: 600_000,
            scram_client_nonce: None,
            ntlm_client_challenge: None,
            ntlm_timestamp: None,
            cram_md5_max_challenge: 1024,
            oauth_host: None,
            oauth_port: None,
        }
    }
}

/// One client-side SASL exchange.
///
/// ```text
///   AUTH <name> [<encode_initial_response(initial_response())>]   (SASL-IR if offered)
///   334 / + <challenge>  ->  step(decode_challenge(..))  ->  <encode_response(..)>
///   ...
///   235 / +OK            ->  finish()?   (SCRAM: was the server signature verified?)
///   535 / 504 / -ERR ... ->  report to the Negotiator
/// ```
///
/// Any `Err` is final: send `*` to cancel and report
/// [`AttemptOutcome::LocalError`](crate::AttemptOutcome::LocalError).
pub struct ClientSession {
    inner: Inner,
}

enum Inner {
    Plain {
        message: Option<Secret<Vec<u8>>>,
    },
    Login {
        username: Secret<Vec<u8>>,
        password: Secret<Vec<u8>>,
        sent: u8,
    },
    CramMd5 {
        username: String,
        password: Secret<String>,
        max: usize,
        done: bool,
    },
    Bearer(Bearer),
    Scram(Box<Scram>),
    Ntlm(Box<Ntlm>),
}

struct Bearer {
    mechanism: Mechanism,
    message: Option<Secret<Vec<u8>>>,
    sent: bool,
    error: Option<String>,
}

impl fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSession")
            .field("mechanism", &self.mechanism())
            .field("complete", &self.is_complete())
            .finish_non_exhaustive()
    }
}

fn require_password(
    mechanism: Mechanism,
    creds: &Credentials,
) -> Result<&Secret<String>, SaslError> {
    creds
        .password
        .as_ref()
        .ok_or(SaslError::MissingPassword(mechanism))
}

fn invalid(mechanism: Mechanism, field: &'static str) -> SaslError {
    SaslError::InvalidCredential { mechanism, field }
}

impl ClientSession {
    /// Starts an exchange for `mechanism`.
    ///
    /// Fails with [`SaslError::NotSasl`] for `APOP` / `USER` (see [`crate::apop_digest`]), with
    /// [`SaslError::MissingPassword`] / [`SaslError::MissingToken`] when the credentials lack
    /// what the mechanism needs, and with [`SaslError::InvalidCredential`] when a credential
    /// holds a character the mechanism cannot carry.
    pub fn new(
        mechanism: Mechanism,
        creds: &Credentials,
        options: &ClientOptions,
    ) -> Result<ClientSession, SaslError> {
        let inner = match mechanism {
            Mechanism::Apop | Mechanism::User => return Err(SaslError::NotSasl(mechanism)),
            Mechanism::Plain => Inner::Plain {
                message: Some(plain_message(creds)?),
            },
            Mechanism::Login => {
                let password = require_password(mechanism, creds)?;
                Inner::Login {
                    username: Secret::new(creds.username.as_bytes().to_vec()),
                    password: Secret::new(password.expose().as_bytes().to_vec()),
                    sent: 0,
                }
            }
            Mechanism::CramMd5 => {
                let password = require_password(mechanism, creds)?.clone();
                if creds.username.is_empty() {
                    return Err(invalid(mechanism, "username"));
                }
                Inner::CramMd5 {
                    username: creds.username.clone(),
                    password,
                    max: options.cram_md5_max_challenge,
                    done: false,
                }
            }
            Mechanism::XOAuth2 | Mechanism::OAuthBearer => Inner::Bearer(Bearer {
                mechanism,
                message: Some(bearer_message(mechanism, creds, options)?),
                sent: false,
                error: None,
            }),
            Mechanism::ScramSha256 | Mechanism::ScramSha1 => {
                let hash = ScramHash::of(mechanism).ok_or(SaslError::Unsupported(mechanism))?;
                let password = require_password(mechanism, creds)?;
                Inner::Scram(Box::new(Scram::new(
                    hash,
                    &creds.username,
                    password,
                    options,
                )?))
            }
            Mechanism::Ntlm => {
                let password = require_password(mechanism, creds)?;
                Inner::Ntlm(Box::new(Ntlm::new(creds, password, options)?))
            }
        };
        Ok(ClientSession { inner })
    }

    /// The mechanism being run.
    pub fn mechanism(&self) -> Mechanism {
        match &self.inner {
            Inner::Plain { .. } => Mechanism::Plain,
            Inner::Login { .. } => Mechanism::Login,
            Inner::CramMd5 { .. } => Mechanism::CramMd5,
            Inner::Bearer(b) => b.mechanism,
            Inner::Scram(s) => s.mechanism(),
            Inner::Ntlm(_) => Mechanism::Ntlm,
        }
    }

    /// The initial response for `AUTH <name> <initial-response>` (SASL-IR, RFC 4954 §4,
    /// RFC 5034 §4), or `None` when the server speaks first (LOGIN, CRAM-MD5) or the response was
    /// already produced. When the server offers no SASL-IR, skip this: the first
    /// [`step`](Self::step) with the server's empty challenge produces the same response.
    pub fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        match &mut self.inner {
            Inner::Plain { message } => Ok(message.take()),
            Inner::Login { .. } | Inner::CramMd5 { .. } => Ok(None),
            Inner::Bearer(b) => {
                let m = b.message.take();
                b.sent |= m.is_some();
                Ok(m)
            }
            Inner::Scram(s) => s.initial_response(),
            Inner::Ntlm(n) => n.initial_response(),
        }
    }

    /// Answers one server challenge (already base64-decoded).
    pub fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        match &mut self.inner {
            Inner::Plain { message } => {
                // The server speaks first with an empty challenge when there was no SASL-IR.
                if !challenge.is_empty() {
                    return Err(SaslError::UnexpectedChallenge);
                }
                message.take().ok_or(SaslError::UnexpectedChallenge)
            }
            Inner::Login {
                username,
                password,
                sent,
            } => {
                // The prompts ("Username:", "User Name", localised text...) carry no meaning that
                // servers agree on, so the order is what counts: username, then password.
                *sent += 1;
                match *sent {
                    1 => Ok(username.clone()),
                    2 => Ok(password.clone()),
                    _ => Err(SaslError::UnexpectedChallenge),
                }
            }
            Inner::CramMd5 {
                username,
                password,
                max,
                done,
            } => {
                if *done {
                    return Err(SaslError::UnexpectedChallenge);
                }
                let r = cram_md5_response(username, password, challenge, *max)?;
                *done = true;
                Ok(r)
            }
            Inner::Bearer(b) => b.step(challenge),
            Inner::Scram(s) => s.step(challenge),
            Inner::Ntlm(n) => n.step(challenge),
        }
    }

    /// Whether the client has said everything it has to say and, for SCRAM, has verified the
    /// server's signature.
    pub fn is_complete(&self) -> bool {
        match &self.inner {
            Inner::Plain { message } => message.is_none(),
            Inner::Login { sent, .. } => *sent >= 2,
            Inner::CramMd5 { done, .. } => *done,
            Inner::Bearer(b) => b.sent && b.error.is_none(),
            Inner::Scram(s) => s.is_complete(),
            Inner::Ntlm(n) => n.is_complete(),
        }
    }

    /// Call when the server reports success (235 / +OK). Fails with
    /// [`SaslError::ServerNotVerified`] when the exchange is unfinished — for SCRAM, when the
    /// server never proved it knows the password (it may be an impostor) — and with
    /// [`SaslError::BearerTokenRejected`] when the server had sent an OAuth error challenge.
    pub fn finish(&self) -> Result<(), SaslError> {
        if let Inner::Bearer(Bearer { error: Some(e), .. }) = &self.inner {
            return Err(SaslError::BearerTokenRejected {
                server_message: e.clone(),
            });
        }
        if self.is_complete() {
            Ok(())
        } else {
            Err(SaslError::ServerNotVerified)
        }
    }
}

/// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`, none of them holding a NUL.
fn plain_message(creds: &Credentials) -> Result<Secret<Vec<u8>>, SaslError> {
    let m = Mechanism::Plain;
    let password = require_password(m, creds)?;
    let authzid = creds.authzid.as_deref().unwrap_or("");
    if authzid.contains('\0') {
        return Err(invalid(m, "authzid"));
    }
    if creds.username.is_empty() || creds.username.contains('\0') {
        return Err(invalid(m, "username"));
    }
    let pw = password.expose();
    if pw.is_empty() || pw.contains('\0') {
        return Err(invalid(m, "password"));
    }
    let mut out = Vec::with_capacity(authzid.len() + creds.username.len() + pw.len() + 2);
    out.extend_from_slice(authzid.as_bytes());
    out.push(0);
    out.extend_from_slice(creds.username.as_bytes());
    out.push(0);
    out.extend_from_slice(pw.as_bytes());
    Ok(Secret::new(out))
}

/// RFC 5802 §5.1 saslname: `,` and `=` escaped as `=2C` and `=3D`.
pub(crate) fn saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn bearer_message(
    mechanism: Mechanism,
    creds: &Credentials,
    options: &ClientOptions,
) -> Result<Secret<Vec<u8>>, SaslError> {
    let token = creds
        .token
        .as_ref()
        .ok_or(SaslError::MissingToken(mechanism))?;
    // ^A separates the key-value pairs; a token or name holding one would forge extra pairs.
    let bad = |s: &str| s.bytes().any(|b| b == 0x01 || b == 0);
    if bad(token.expose()) || token.expose().is_empty() {
        return Err(invalid(mechanism, "token"));
    }
    if bad(&creds.username) {
        return Err(invalid(mechanism, "username"));
    }
    let mut out = Zeroizing::new(String::new());
    if mechanism == Mechanism::XOAuth2 {
        out.push_str("user=");
        out.push_str(&creds.username);
        out.push_str("\x01auth=Bearer ");
        out.push_str(token.expose());
        out.push_str("\x01\x01");
    } else {
        // RFC 7628 §3.1: gs2-header "n,a=<saslname>," then kvpairs.
        let authzid = creds.authzid.as_deref().unwrap_or(&creds.username);
        if bad(authzid) {
            return Err(invalid(mechanism, "authzid"));
        }
        out.push_str("n,");
        if !authzid.is_empty() {
            out.push_str("a=");
            out.push_str(&saslname(authzid));
        }
        out.push_str(",\x01");
        if let Some(host) = &options.oauth_host {
            if bad(host) {
                return Err(invalid(mechanism, "host"));
            }
            out.push_str("host=");
            out.push_str(host);
            out.push('\x01');
        }
        if let Some(port) = options.oauth_port {
            out.push_str(&format!("port={port}\x01"));
        }
        out.push_str("auth=Bearer ");
        out.push_str(token.expose());
        out.push_str("\x01\x01");
    }
    Ok(Secret::new(out.as_bytes().to_vec()))
}

impl Bearer {
    fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        if !self.sent {
            if !challenge.is_empty() {
                return Err(SaslError::UnexpectedChallenge);
            }
            self.sent = true;
            return self.message.take().ok_or(SaslError::UnexpectedChallenge);
        }
        if self.error.is_some() {
            return Err(SaslError::UnexpectedChallenge);
        }
        // A challenge after the token is the server's JSON error (RFC 7628 §3.2.2; Google does
        // the same for XOAUTH2). The client must answer with a dummy so the server can send its
        // final failure reply: ^A for OAUTHBEARER, an empty line for XOAUTH2.
        self.error = Some(String::from_utf8_lossy(challenge).into_owned());
        let dummy = if self.mechanism == Mechanism::OAuthBearer {
            vec![0x01]
        } else {
            Vec::new()
        };
        Ok(Secret::new(dummy))
    }
}

/// RFC 2195 §2: `username SP hex(HMAC-MD5(password, challenge))`, lowercase hex.
fn cram_md5_response(
    username: &str,
    password: &Secret<String>,
    challenge: &[u8],
    max: usize,
) -> Result<Secret<Vec<u8>>, SaslError> {
    if challenge.is_empty()
        || challenge.len() > max
        || !challenge.iter().all(|b| (0x20..=0x7e).contains(b))
    {
        return Err(SaslError::InvalidCramMd5Challenge);
    }
    let digest = hmac_md5(password.expose().as_bytes(), challenge);
    let mut out = Vec::with_capacity(username.len() + 33);
    out.extend_from_slice(username.as_bytes());
    out.push(b' ');
    out.extend_from_slice(hex(&digest).as_bytes());
    Ok(Secret::new(out))
}

pub(crate) fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    // HMAC accepts keys of any length (RFC 2104 §2), so this never fails.
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: Mechanism, creds: &Credentials) -> ClientSession {
        ClientSession::new(m, creds, &ClientOptions::default()).unwrap()
    }

    #[test]
    fn plain_rfc_4616_examples() {
        // RFC 4616 §4: "tim" / "tanstaaftanstaaf", without and with authzid "Ursel" (authcid "Kurt").
        let mut s = run(
            Mechanism::Plain,
            &Credentials::new("tim").with_password("tanstaaftanstaaf"),
        );
        assert!(!s.is_complete());
        let ir = s.initial_response().unwrap().unwrap();
        assert_eq!(ir.expose(), b"\0tim\0tanstaaftanstaaf");
        assert!(s.is_complete());
        assert_eq!(s.finish(), Ok(()));
        assert_eq!(s.step(b"").err(), Some(SaslError::UnexpectedChallenge));

        let creds = Credentials::new("Kurt")
            .with_password("xipj3plmq")
            .with_authzid("Ursel");
        let mut s = run(Mechanism::Plain, &creds);
        // Without SASL-IR the server sends an empty challenge first.
        assert_eq!(s.step(b"").unwrap().expose(), b"Ursel\0Kurt\0xipj3plmq");
        assert_eq!(s.initial_response().unwrap().map(|_| ()), None);
    }

    #[test]
    fn plain_refuses_nul_and_empty() {
        let o = ClientOptions::default();
        let e = |field| {
            Err(SaslError::InvalidCredential {
                mechanism: Mechanism::Plain,
                field,
            })
        };
        let c = Credentials::new("a\0b").with_password("p");
        assert_eq!(
            ClientSession::new(Mechanism::Plain, &c, &o).map(|_| ()),
            e("username")
        );
        let c = Credentials::new("a").with_password("p\0");
        assert_eq!(
            ClientSession::new(Mechanism::Plain, &c, &o).map(|_| ()),
            e("password")
        );
        let c = Credentials::new("a").with_password("");
        assert_eq!(
            ClientSession::new(Mechanism::Plain, &c, &o).map(|_| ()),
            e("password")
        );
        let c = Credentials::new("a").with_password("p").with_authzid("x\0");
        assert_eq!(
            ClientSession::new(Mechanism::Plain, &c, &o).map(|_| ()),
            e("authzid")
        );
        let c = Credentials::new("a");
        assert_eq!(
            ClientSession::new(Mechanism::Plain, &c, &o).map(|_| ()),
            Err(SaslError::MissingPassword(Mechanism::Plain))
        );
        plain_message(&Credentials::new("a").with_password("p")).unwrap();
    }

    #[test]
    fn plain_refuses_non_empty_first_challenge() {
        let mut s = run(Mechanism::Plain, &Credentials::new("u").with_password("p"));
        assert_eq!(s.step(b"hello").err(), Some(SaslError::UnexpectedChallenge));
    }

    #[test]
    fn login_answers_any_prompt_in_order() {
        let mut s = run(
            Mechanism::Login,
            &Credentials::new("alice").with_password("pw"),
        );
        assert_eq!(s.initial_response().unwrap().map(|_| ()), None);
        assert_eq!(s.step(b"User Name\0").unwrap().expose(), b"alice");
        assert!(!s.is_complete());
        assert_eq!(s.step(b"").unwrap().expose(), b"pw");
        assert!(s.is_complete());
        assert_eq!(
            s.step(b"Password:").err(),
            Some(SaslError::UnexpectedChallenge)
        );
    }

    #[test]
    fn cram_md5_rfc_2195_example() {
        let mut s = run(
            Mechanism::CramMd5,
            &Credentials::new("tim").with_password("tanstaaftanstaaf"),
        );
        assert_eq!(s.initial_response().unwrap().map(|_| ()), None);
        let r = s
            .step(b"<1896.697170952@postoffice.reston.mci.net>")
            .unwrap();
        assert_eq!(r.expose(), b"tim b913a602c7eda7a495b4e6e7334d3890");
        assert!(s.is_complete());
        assert_eq!(s.step(b"<x@y>").err(), Some(SaslError::UnexpectedChallenge));
    }

    #[test]
    fn cram_md5_refuses_bad_challenges() {
        let creds = Credentials::new("tim").with_password("x");
        let long = vec![b'a'; 1025];
        for bad in [&b""[..], b"<a\r\n@b>", b"\x00", b"caf\xc3\xa9", &long] {
            let mut s = run(Mechanism::CramMd5, &creds);
            assert_eq!(
                s.step(bad).err(),
                Some(SaslError::InvalidCramMd5Challenge),
                "{bad:?}"
            );
        }
        let mut s = run(Mechanism::CramMd5, &creds);
        assert!(s.step(&long[..1024]).is_ok());
    }

    #[test]
    fn xoauth2_message_and_error_challenge() {
        let creds = Credentials::new("someuser@example.com")
            .with_token("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
        let mut s = run(Mechanism::XOAuth2, &creds);
        let ir = s.initial_response().unwrap().unwrap();
        assert_eq!(
            ir.expose().as_slice(),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
        assert!(s.is_complete());
        let json = br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
        assert_eq!(s.step(json).unwrap().expose(), b"");
        assert!(!s.is_complete());
        assert!(matches!(
            s.finish(),
            Err(SaslError::BearerTokenRejected { .. })
        ));
        assert_eq!(s.step(b"").err(), Some(SaslError::UnexpectedChallenge));
    }

    #[test]
    fn oauthbearer_rfc_7628_example() {
        // RFC 7628 §4.1.
        let creds = Credentials::new("user@example.com")
            .with_token("vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
        let options = ClientOptions {
            oauth_host: Some("server.example.com".into()),
            oauth_port: Some(143),
            ..ClientOptions::default()
        };
        let mut s = ClientSession::new(Mechanism::OAuthBearer, &creds, &options).unwrap();
        // Without SASL-IR: empty challenge first.
        let r = s.step(b"").unwrap();
        assert_eq!(
            r.expose().as_slice(),
            &b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"[..]
        );
        // RFC 7628 §4.3: the error challenge is answered with a lone ^A.
        let err = br#"{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://example.com/.well-known/openid-configuration"}"#;
        assert_eq!(s.step(err).unwrap().expose(), b"\x01");
        assert_eq!(
            s.finish(),
            Err(SaslError::BearerTokenRejected {
                server_message: String::from_utf8_lossy(err).into()
            })
        );
    }

    #[test]
    fn bearer_refuses_separator_injection() {
        let o = ClientOptions::default();
        let c = Credentials::new("u").with_token("abc\x01host=evil");
        assert_eq!(
            ClientSession::new(Mechanism::OAuthBearer, &c, &o).map(|_| ()),
            Err(SaslError::InvalidCredential {
                mechanism: Mechanism::OAuthBearer,
                field: "token"
            })
        );
        let c = Credentials::new("u\x01").with_token("t");
        assert_eq!(
            ClientSession::new(Mechanism::XOAuth2, &c, &o).map(|_| ()),
            Err(SaslError::InvalidCredential {
                mechanism: Mechanism::XOAuth2,
                field: "username"
            })
        );
        let c = Credentials::new("u").with_password("p");
        assert_eq!(
            ClientSession::new(Mechanism::XOAuth2, &c, &o).map(|_| ()),
            Err(SaslError::MissingToken(Mechanism::XOAuth2))
        );
    }

    #[test]
    fn pseudo_mechanisms_are_not_sasl() {
        let c = Credentials::new("u").with_password("p");
        for m in [Mechanism::Apop, Mechanism::User] {
            assert_eq!(
                ClientSession::new(m, &c, &ClientOptions::default()).map(|_| ()),
                Err(SaslError::NotSasl(m))
            );
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::new("u")
            .with_password("hunter2")
            .with_token("tok123");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{c:?}").contains("tok123"));
        let s = run(Mechanism::Plain, &c);
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn saslname_escapes() {
        assert_eq!(saslname("a=b,c"), "a=3Db=2Cc");
    }
}

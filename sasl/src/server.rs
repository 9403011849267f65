//! Server mechanisms (SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN) for an SMTP server,
//! checking credentials through the application's [`CredentialStore`].

use std::fmt;

use subtle::ConstantTimeEq;

use crate::client::{hex, hmac_md5};
use crate::scram::random_nonce;
use crate::scram_server::{
    DEFAULT_SCRAM_ITERATIONS, Pending, ScramCredential, parse_client_first, process_salt,
};
use crate::{Mechanism, SaslError, Secret};

/// The store's answer to "are these credentials right?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are valid and the authcid may act as the authzid.
    Accept,
    /// Wrong password, unknown user or forbidden authzid — deliberately one answer.
    Reject,
    /// The store cannot answer now (database down): SMTP 454 4.7.0.
    TemporaryFailure,
}

/// The store's answer to a shared-secret lookup (CRAM-MD5).
#[derive(Debug)]
pub enum Lookup {
    /// The user's password (CRAM-MD5 needs the plaintext-equivalent secret).
    Found(Secret<String>),
    /// No such user, or the user may not use this mechanism.
    NotFound,
    /// The store cannot answer now.
    TemporaryFailure,
}

/// The store's answer to a SCRAM verifier lookup.
#[derive(Debug)]
pub enum ScramLookup {
    /// The user's verifier for the mechanism asked for.
    Found(ScramCredential),
    /// No such user, or the user may not use this mechanism.
    NotFound,
    /// The store cannot answer now.
    TemporaryFailure,
}

/// The application's credential check.
///
/// Implementations should take the same time for an unknown user as for a wrong password (hash
/// against a dummy verifier); the mechanisms here already return the same
/// [`AuthFailure::Rejected`] for both.
pub trait CredentialStore {
    /// Checks a password (PLAIN, LOGIN). `authzid` is `None` when the client asked to act as
    /// itself.
    fn verify_password(
        &self,
        authcid: &str,
        password: &Secret<String>,
        authzid: Option<&str>,
    ) -> Verdict;

    /// The CRAM-MD5 shared secret for `authcid`. The default finds nobody, so a store that keeps
    /// only password hashes simply rejects CRAM-MD5 (and should not advertise it).
    fn cram_md5_secret(&self, authcid: &str) -> Lookup {
        let _ = authcid;
        Lookup::NotFound
    }

    /// The SCRAM verifier of `authcid` for `mechanism` (SCRAM-SHA-256 or SCRAM-SHA-1). A store
    /// that keeps verifiers returns them ([`ScramCredential::from_keys`]). The default derives
    /// one from [`CredentialStore::cram_md5_secret`]'s password, with
    /// [`DEFAULT_SCRAM_ITERATIONS`] and a salt that stays the same for the user while the
    /// process runs (a derivation costs a few milliseconds per login); a store with neither
    /// finds nobody, and should not advertise SCRAM.
    fn scram_credential(&self, authcid: &str, mechanism: Mechanism) -> ScramLookup {
        match self.cram_md5_secret(authcid) {
            Lookup::Found(password) => {
                let salt = process_salt(authcid, mechanism);
                match ScramCredential::derive(
                    mechanism,
                    password.expose(),
                    &salt,
                    DEFAULT_SCRAM_ITERATIONS,
                ) {
                    Ok(c) => ScramLookup::Found(c),
                    Err(_) => ScramLookup::NotFound,
                }
            }
            Lookup::NotFound => {
                // The same derivation for nobody: an unknown user costs a known one's time.
                let salt = process_salt(authcid, mechanism);
                let _ = ScramCredential::derive(
                    mechanism,
                    "\0unknown-user\0",
                    &salt,
                    DEFAULT_SCRAM_ITERATIONS,
                );
                ScramLookup::NotFound
            }
            Lookup::TemporaryFailure => ScramLookup::TemporaryFailure,
        }
    }
}

/// Server-side settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The host name in CRAM-MD5 challenges (`<random@hostname>`, RFC 2195 §2).
    pub hostname: String,
    /// A fixed CRAM-MD5 challenge body and SCRAM server nonce instead of random ones; for
    /// tests only.
    pub challenge_nonce: Option<String>,
    /// The longest authcid, authzid or password accepted, in octets. Default 1,024
    /// (RFC 4616 §2 requires at least 255).
    pub max_field_len: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            hostname: String::from("localhost"),
            challenge_nonce: None,
            max_field_len: 1024,
        }
    }
}

/// Who authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The authentication identity.
    pub authcid: String,
    /// The authorization identity, when the client asked for one.
    pub authzid: Option<String>,
}

/// Why an exchange failed, with the reply each protocol sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// Wrong credentials, unknown user or forbidden authzid: 535 5.7.8.
    Rejected,
    /// The response does not follow the mechanism's syntax, or a call came out of sequence:
    /// 501 5.5.2.
    Malformed,
    /// The client sent `*`: 501 5.7.0.
    Cancelled,
    /// The store could not answer: 454 4.7.0.
    Temporary,
}

impl AuthFailure {
    /// The SMTP reply (RFC 4954 §6): code, enhanced code, text.
    pub fn smtp_reply(self) -> (u16, (u8, u16, u16), &'static str) {
        match self {
            AuthFailure::Rejected => (535, (5, 7, 8), "Authentication credentials invalid"),
            AuthFailure::Malformed => (501, (5, 5, 2), "Cannot decode response"),
            AuthFailure::Cancelled => (501, (5, 7, 0), "Authentication cancelled"),
            AuthFailure::Temporary => (454, (4, 7, 0), "Temporary authentication failure"),
        }
    }
}

/// What the server sends next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// A challenge (raw bytes: base64-encode it with [`crate::framing::encode_challenge`]).
    Challenge(Vec<u8>),
    /// The store accepted these credentials: 235 2.7.0.
    Success(Authenticated),
    /// The exchange is over and failed.
    Failure(AuthFailure),
}

enum State {
    Start,
    PlainAwaiting,
    LoginUser,
    LoginPassword {
        username: String,
    },
    CramAwaiting {
        challenge: String,
    },
    ScramFirst,
    ScramFinal(Box<Pending>),
    /// The server-final message was sent in a challenge; the client's empty answer ends it.
    ScramAcknowledge(Authenticated),
    Done,
}

/// One server-side exchange. It reports [`ServerStep::Success`] only when the store said
/// [`Verdict::Accept`] for exactly the credentials the client sent (PLAIN, LOGIN), when the
/// client's digest matches the store's secret (CRAM-MD5), or when the client's proof matches
/// the store's verifier (SCRAM, after the client took the server's signature); and at most
/// once.
pub struct ServerSession {
    mechanism: Mechanism,
    options: ServerOptions,
    state: State,
}

impl fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSession")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

impl ServerSession {
    /// A new exchange; [`SaslError::Unsupported`] for a mechanism not in
    /// [`ServerSession::MECHANISMS`].
    pub fn new(mechanism: Mechanism, options: &ServerOptions) -> Result<ServerSession, SaslError> {
        if !Self::MECHANISMS.contains(&mechanism) {
            return Err(SaslError::Unsupported(mechanism));
        }
        Ok(ServerSession {
            mechanism,
            options: options.clone(),
            state: State::Start,
        })
    }

    /// The mechanisms this side implements, in advertising order (most secure first).
    pub const MECHANISMS: [Mechanism; 5] = [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
    ];

    /// The mechanism being run.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Handles `AUTH <mech> [initial-response]` (already decoded, `=` as empty).
    pub fn start<S: CredentialStore + ?Sized>(
        &mut self,
        initial_response: Option<&[u8]>,
        store: &S,
    ) -> ServerStep {
        if !matches!(self.state, State::Start) {
            return self.fail(AuthFailure::Malformed);
        }
        match (self.mechanism, initial_response) {
            (Mechanism::Plain, Some(ir)) => self.plain(ir, store),
            (Mechanism::Plain, None) => {
                self.state = State::PlainAwaiting;
                ServerStep::Challenge(Vec::new())
            }
            (Mechanism::Login, Some(ir)) => {
                // Some clients send the username as an initial response.
                self.state = State::LoginUser;
                self.step(ir, store)
            }
            (Mechanism::Login, None) => {
                self.state = State::LoginUser;
                ServerStep::Challenge(b"Username:".to_vec())
            }
            // RFC 2195: the server speaks first; an initial response is a protocol error.
            (Mechanism::CramMd5, Some(_)) => self.fail(AuthFailure::Malformed),
            (Mechanism::ScramSha256 | Mechanism::ScramSha1, Some(ir)) => {
                self.scram_first(ir, store)
            }
            (Mechanism::ScramSha256 | Mechanism::ScramSha1, None) => {
                // RFC 4954 §4: the client speaks first; an empty challenge asks it to.
                self.state = State::ScramFirst;
                ServerStep::Challenge(Vec::new())
            }
            (Mechanism::CramMd5, None) => match self.cram_challenge() {
                Some(challenge) => {
                    let bytes = challenge.as_bytes().to_vec();
                    self.state = State::CramAwaiting { challenge };
                    ServerStep::Challenge(bytes)
                }
                None => self.fail(AuthFailure::Temporary),
            },
            _ => self.fail(AuthFailure::Malformed),
        }
    }

    /// Handles a client response line (already decoded).
    pub fn step<S: CredentialStore + ?Sized>(&mut self, response: &[u8], store: &S) -> ServerStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::PlainAwaiting => self.plain(response, store),
            State::LoginUser => match self.field(response) {
                Some(u) if !u.is_empty() => {
                    self.state = State::LoginPassword {
                        username: u.to_owned(),
                    };
                    ServerStep::Challenge(b"Password:".to_vec())
                }
                _ => self.fail(AuthFailure::Malformed),
            },
            State::LoginPassword { username } => match self.field(response) {
                Some(p) if !p.is_empty() => {
                    let pw = Secret::new(p.to_owned());
                    self.verdict(store.verify_password(&username, &pw, None), username, None)
                }
                _ => self.fail(AuthFailure::Malformed),
            },
            State::CramAwaiting { challenge } => self.cram(&challenge, response, store),
            State::ScramFirst => self.scram_first(response, store),
            State::ScramFinal(pending) => match pending.verify(response) {
                Ok(Some(server_final)) => {
                    let first = pending.first();
                    self.state = State::ScramAcknowledge(Authenticated {
                        authcid: first.username.clone(),
                        authzid: first.authzid.clone(),
                    });
                    ServerStep::Challenge(server_final.into_bytes())
                }
                Ok(None) => self.fail(AuthFailure::Rejected),
                Err(()) => self.fail(AuthFailure::Malformed),
            },
            State::ScramAcknowledge(who) if response.is_empty() => {
                self.state = State::Done;
                ServerStep::Success(who)
            }
            State::ScramAcknowledge(_) | State::Start | State::Done => {
                self.fail(AuthFailure::Malformed)
            }
        }
    }

    /// Handles `*`: the client gave up.
    pub fn cancel(&mut self) -> ServerStep {
        self.fail(AuthFailure::Cancelled)
    }

    fn fail(&mut self, failure: AuthFailure) -> ServerStep {
        self.state = State::Done;
        ServerStep::Failure(failure)
    }

    fn field<'a>(&self, bytes: &'a [u8]) -> Option<&'a str> {
        if bytes.len() > self.options.max_field_len || bytes.contains(&0) {
            return None;
        }
        std::str::from_utf8(bytes).ok()
    }

    fn verdict(&mut self, v: Verdict, authcid: String, authzid: Option<String>) -> ServerStep {
        self.state = State::Done;
        match v {
            Verdict::Accept => ServerStep::Success(Authenticated { authcid, authzid }),
            Verdict::Reject => ServerStep::Failure(AuthFailure::Rejected),
            Verdict::TemporaryFailure => ServerStep::Failure(AuthFailure::Temporary),
        }
    }

    /// RFC 4616 §2: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`.
    fn plain<S: CredentialStore + ?Sized>(&mut self, msg: &[u8], store: &S) -> ServerStep {
        let mut parts = msg.split(|&b| b == 0);
        let (Some(z), Some(c), Some(p), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.fail(AuthFailure::Malformed);
        };
        let (Some(z), Some(c), Some(p)) = (self.field(z), self.field(c), self.field(p)) else {
            return self.fail(AuthFailure::Malformed);
        };
        if c.is_empty() || p.is_empty() {
            return self.fail(AuthFailure::Malformed);
        }
        let authzid = (!z.is_empty()).then(|| z.to_owned());
        let pw = Secret::new(p.to_owned());
        let v = store.verify_password(c, &pw, authzid.as_deref());
        self.verdict(v, c.to_owned(), authzid)
    }

    fn cram_challenge(&self) -> Option<String> {
        let body = match &self.options.challenge_nonce {
            Some(n) => n.clone(),
            None => {
                let mut raw = [0u8; 16];
                getrandom::getrandom(&mut raw).ok()?;
                let a = u64::from_le_bytes(raw[..8].try_into().ok()?);
                let b = u64::from_le_bytes(raw[8..].try_into().ok()?);
                format!("{a}.{b}")
            }
        };
        Some(format!("<{body}@{}>", self.options.hostname))
    }

    /// The client-first-message: answers with the server-first-message. An unknown user gets
    /// a made-up verifier with the salt a real one would have, so the reply does not tell; the
    /// proof is then refused like a wrong password. (Equal timing is the store's part, as for
    /// the other mechanisms: the default lookup spends a derivation on an unknown user too.) An authzid other than the authcid is
    /// refused: SCRAM proves only who the client is, and delegation is the store's to grant
    /// (PLAIN asks it through [`CredentialStore::verify_password`]).
    fn scram_first<S: CredentialStore + ?Sized>(&mut self, msg: &[u8], store: &S) -> ServerStep {
        if msg.len() > self.options.max_field_len * 2 {
            return self.fail(AuthFailure::Malformed);
        }
        let Some(first) = parse_client_first(msg) else {
            return self.fail(AuthFailure::Malformed);
        };
        if first.username.len() > self.options.max_field_len {
            return self.fail(AuthFailure::Malformed);
        }
        if first.authzid.as_ref().is_some_and(|z| *z != first.username) {
            return self.fail(AuthFailure::Rejected);
        }
        let mechanism = self.mechanism;
        let (credential, known) = match store.scram_credential(&first.username, mechanism) {
            ScramLookup::Found(c) if c.mechanism() == mechanism => (c, true),
            ScramLookup::Found(_) | ScramLookup::NotFound => {
                // The proof is still checked, against keys nothing matches.
                let salt = process_salt(&first.username, mechanism);
                match ScramCredential::unknown(mechanism, salt, DEFAULT_SCRAM_ITERATIONS) {
                    Ok(c) => (c, false),
                    Err(_) => return self.fail(AuthFailure::Temporary),
                }
            }
            ScramLookup::TemporaryFailure => return self.fail(AuthFailure::Temporary),
        };
        let server_nonce = match &self.options.challenge_nonce {
            Some(n) => n.clone(),
            None => match random_nonce(18) {
                Ok(n) => n,
                Err(_) => return self.fail(AuthFailure::Temporary),
            },
        };
        let pending = Pending::new(first, &server_nonce, credential, known);
        let challenge = pending.server_first().as_bytes().to_vec();
        self.state = State::ScramFinal(Box::new(pending));
        ServerStep::Challenge(challenge)
    }

    /// RFC 2195 §2: `username SP 32 lowercase hex digits`.
    fn cram<S: CredentialStore + ?Sized>(
        &mut self,
        challenge: &str,
        resp: &[u8],
        store: &S,
    ) -> ServerStep {
        let Some(text) = self.field(resp) else {
            return self.fail(AuthFailure::Malformed);
        };
        let Some((user, digest)) = text.rsplit_once(' ') else {
            return self.fail(AuthFailure::Malformed);
        };
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if user.is_empty() || digest.len() != 32 || !digest.bytes().all(lower_hex) {
            return self.fail(AuthFailure::Malformed);
        }
        let (secret, known) = match store.cram_md5_secret(user) {
            Lookup::Found(s) => (s, true),
            // Compute against a throwaway secret so an unknown user costs the same time.
            Lookup::NotFound => (Secret::new(String::from("\0unknown-user\0")), false),
            Lookup::TemporaryFailure => return self.fail(AuthFailure::Temporary),
        };
        let expected = hex(&hmac_md5(secret.expose().as_bytes(), challenge.as_bytes()));
        let matches = bool::from(expected.as_bytes().ct_eq(digest.as_bytes()));
        let v = if matches && known {
            Verdict::Accept
        } else {
            Verdict::Reject
        };
        self.verdict(v, user.to_owned(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientOptions, ClientSession, Credentials};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use std::cell::RefCell;

    /// Accepts exactly alice / wonderland (authzid none or "alice"); records every call.
    #[derive(Default)]
    struct Store {
        calls: RefCell<Vec<(String, String, Option<String>)>>,
        down: bool,
    }

    impl CredentialStore for Store {
        fn verify_password(
            &self,
            authcid: &str,
            pw: &Secret<String>,
            authzid: Option<&str>,
        ) -> Verdict {
            self.calls.borrow_mut().push((
                authcid.into(),
                pw.expose().clone(),
                authzid.map(Into::into),
            ));
            if self.down {
                return Verdict::TemporaryFailure;
            }
            let ok = authcid == "alice"
                && pw.expose() == "wonderland"
                && matches!(authzid, None | Some("alice"));
            if ok { Verdict::Accept } else { Verdict::Reject }
        }
        fn cram_md5_secret(&self, authcid: &str) -> Lookup {
            match (self.down, authcid) {
                (true, _) => Lookup::TemporaryFailure,
                (false, "tim") => Lookup::Found(Secret::from("tanstaaftanstaaf")),
                _ => Lookup::NotFound,
            }
        }
    }

    fn opts() -> ServerOptions {
        ServerOptions {
            hostname: "postoffice.reston.mci.net".into(),
            challenge_nonce: Some("1896.697170952".into()),
            ..ServerOptions::default()
        }
    }

    fn session(m: Mechanism) -> ServerSession {
        ServerSession::new(m, &opts()).unwrap()
    }

    fn ok(authcid: &str, authzid: Option<&str>) -> ServerStep {
        ServerStep::Success(Authenticated {
            authcid: authcid.into(),
            authzid: authzid.map(Into::into),
        })
    }

    #[test]
    fn plain_table() {
        let store = Store::default();
        let table: &[(&[u8], ServerStep)] = &[
            (b"\0alice\0wonderland", ok("alice", None)),
            (b"alice\0alice\0wonderland", ok("alice", Some("alice"))),
            (
                b"bob\0alice\0wonderland",
                ServerStep::Failure(AuthFailure::Rejected),
            ),
            (
                b"\0alice\0wrong",
                ServerStep::Failure(AuthFailure::Rejected),
            ),
            (
                b"\0mallory\0wonderland",
                ServerStep::Failure(AuthFailure::Rejected),
            ),
            (b"\0alice\0", ServerStep::Failure(AuthFailure::Malformed)),
            (
                b"\0\0wonderland",
                ServerStep::Failure(AuthFailure::Malformed),
            ),
            (
                b"alice\0wonderland",
                ServerStep::Failure(AuthFailure::Malformed),
            ),
            (
                b"\0alice\0wonderland\0",
                ServerStep::Failure(AuthFailure::Malformed),
            ),
            (b"", ServerStep::Failure(AuthFailure::Malformed)),
            (
                b"\0alice\0wonder\xffland",
                ServerStep::Failure(AuthFailure::Malformed),
            ),
        ];
        for (msg, want) in table {
            let mut s = session(Mechanism::Plain);
            assert_eq!(&s.start(Some(msg), &store), want, "{msg:?}");
            // Nothing more after the outcome, and never a second success.
            assert_eq!(
                s.step(b"\0alice\0wonderland", &store),
                ServerStep::Failure(AuthFailure::Malformed)
            );
        }
        let mut s = session(Mechanism::Plain);
        assert_eq!(s.start(None, &store), ServerStep::Challenge(vec![]));
        assert_eq!(s.step(b"\0alice\0wonderland", &store), ok("alice", None));
        let long = format!("\0alice\0{}", "x".repeat(1025));
        assert_eq!(
            session(Mechanism::Plain).start(Some(long.as_bytes()), &store),
            ServerStep::Failure(AuthFailure::Malformed)
        );
    }

    #[test]
    fn unknown_user_and_wrong_password_look_the_same() {
        let store = Store::default();
        let a = session(Mechanism::Plain).start(Some(b"\0nobody\0wonderland"), &store);
        let b = session(Mechanism::Plain).start(Some(b"\0alice\0nope"), &store);
        assert_eq!(a, b);
        let mut c = session(Mechanism::CramMd5);
        c.start(None, &store);
        let unknown = c.step(b"nobody b913a602c7eda7a495b4e6e7334d3890", &store);
        let mut c = session(Mechanism::CramMd5);
        c.start(None, &store);
        let wrong = c.step(b"tim 0000000000000000000000000000000f", &store);
        assert_eq!(unknown, wrong);
        assert_eq!(unknown, ServerStep::Failure(AuthFailure::Rejected));
    }

    #[test]
    fn login_flow() {
        let store = Store::default();
        let mut s = session(Mechanism::Login);
        assert_eq!(
            s.start(None, &store),
            ServerStep::Challenge(b"Username:".to_vec())
        );
        assert_eq!(
            s.step(b"alice", &store),
            ServerStep::Challenge(b"Password:".to_vec())
        );
        assert_eq!(s.step(b"wonderland", &store), ok("alice", None));
        let mut s = session(Mechanism::Login);
        assert_eq!(
            s.start(Some(b"alice"), &store),
            ServerStep::Challenge(b"Password:".to_vec())
        );
        assert_eq!(
            s.step(b"bad", &store),
            ServerStep::Failure(AuthFailure::Rejected)
        );
        let mut s = session(Mechanism::Login);
        s.start(None, &store);
        assert_eq!(
            s.step(b"", &store),
            ServerStep::Failure(AuthFailure::Malformed)
        );
        let mut s = session(Mechanism::Login);
        s.start(None, &store);
        assert_eq!(s.cancel(), ServerStep::Failure(AuthFailure::Cancelled));
        assert_eq!(
            s.step(b"alice", &store),
            ServerStep::Failure(AuthFailure::Malformed)
        );
    }

    #[test]
    fn cram_md5_rfc_2195_both_sides() {
        let store = Store::default();
        let mut s = session(Mechanism::CramMd5);
        let ServerStep::Challenge(ch) = s.start(None, &store) else {
            panic!()
        };
        assert_eq!(ch, b"<1896.697170952@postoffice.reston.mci.net>");
        let mut c = ClientSession::new(
            Mechanism::CramMd5,
            &Credentials::new("tim").with_password("tanstaaftanstaaf"),
            &ClientOptions::default(),
        )
        .unwrap();
        let r = c.step(&ch).unwrap();
        assert_eq!(s.step(r.expose(), &store), ok("tim", None));
    }

    #[test]
    fn cram_md5_malformed_and_temporary() {
        let store = Store::default();
        for bad in [
            &b"tim"[..],
            b"tim B913A602C7EDA7A495B4E6E7334D3890",
            b"tim b913a602c7eda7a495b4e6e7334d389",
            b" b913a602c7eda7a495b4e6e7334d3890",
            b"tim b913a602c7eda7a495b4e6e7334d3890\0",
        ] {
            let mut s = session(Mechanism::CramMd5);
            s.start(None, &store);
            assert_eq!(
                s.step(bad, &store),
                ServerStep::Failure(AuthFailure::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            session(Mechanism::CramMd5).start(Some(b"x"), &store),
            ServerStep::Failure(AuthFailure::Malformed)
        );
        let down = Store {
            down: true,
            ..Store::default()
        };
        let mut s = session(Mechanism::CramMd5);
        s.start(None, &down);
        assert_eq!(
            s.step(b"tim b913a602c7eda7a495b4e6e7334d3890", &down),
            ServerStep::Failure(AuthFailure::Temporary)
        );
        assert_eq!(
            session(Mechanism::Plain).start(Some(b"\0alice\0wonderland"), &down),
            ServerStep::Failure(AuthFailure::Temporary)
        );
    }

    #[test]
    fn random_challenges_are_fresh() {
        let o = ServerOptions {
            hostname: "mx.example".into(),
            ..ServerOptions::default()
        };
        let store = Store::default();
        let a = ServerSession::new(Mechanism::CramMd5, &o)
            .unwrap()
            .start(None, &store);
        let b = ServerSession::new(Mechanism::CramMd5, &o)
            .unwrap()
            .start(None, &store);
        assert_ne!(a, b);
        let ServerStep::Challenge(a) = a else {
            panic!()
        };
        assert!(a.starts_with(b"<") && a.ends_with(b"@mx.example>"));
    }

    #[test]
    fn unsupported_mechanisms() {
        for m in [Mechanism::Ntlm, Mechanism::Apop, Mechanism::XOAuth2] {
            assert_eq!(
                ServerSession::new(m, &opts()).map(|_| ()),
                Err(SaslError::Unsupported(m))
            );
        }
        assert_eq!(AuthFailure::Rejected.smtp_reply().0, 535);
        assert_eq!(AuthFailure::Temporary.smtp_reply().1, (4, 7, 0));
    }

    /// Knows "user" with the RFC 5802 / RFC 7677 examples' verifier (password "pencil").
    struct RfcStore {
        salt: &'static str,
    }

    impl CredentialStore for RfcStore {
        fn verify_password(&self, _: &str, _: &Secret<String>, _: Option<&str>) -> Verdict {
            Verdict::Reject
        }
        fn scram_credential(&self, authcid: &str, mechanism: Mechanism) -> ScramLookup {
            if authcid != "user" {
                return ScramLookup::NotFound;
            }
            let salt = STANDARD.decode(self.salt).unwrap();
            ScramLookup::Found(ScramCredential::derive(mechanism, "pencil", &salt, 4096).unwrap())
        }
    }

    /// Runs the server over the client messages of an RFC example and returns its messages.
    fn scram_server(m: Mechanism, store: &RfcStore, nonce: &str, client: [&str; 2]) -> Vec<String> {
        let o = ServerOptions {
            challenge_nonce: Some(nonce.into()),
            ..ServerOptions::default()
        };
        let mut s = ServerSession::new(m, &o).unwrap();
        let text = |step: ServerStep| match step {
            ServerStep::Challenge(c) => String::from_utf8(c).unwrap(),
            other => panic!("{other:?}"),
        };
        let first = text(s.start(Some(client[0].as_bytes()), store));
        let last = text(s.step(client[1].as_bytes(), store));
        assert_eq!(s.step(b"", store), ok("user", None));
        vec![first, last]
    }

    #[test]
    fn scram_server_known_answers_from_rfc_5802_and_rfc_7677() {
        let sha1 = scram_server(
            Mechanism::ScramSha1,
            &RfcStore {
                salt: "QSXCR+Q6sek8bf92",
            },
            "3rfcNHYJY1ZVvWVs7j",
            [
                "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            ],
        );
        assert_eq!(
            sha1,
            [
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
            ]
        );
        let sha256 = scram_server(
            Mechanism::ScramSha256,
            &RfcStore {
                salt: "W22ZaJ0SNY7soEsUEjb6gQ==",
            },
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            [
                "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                 p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            ],
        );
        assert_eq!(
            sha256,
            [
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            ]
        );
    }

    #[test]
    fn scram_server_refusals() {
        let store = RfcStore {
            salt: "QSXCR+Q6sek8bf92",
        };
        let o = ServerOptions {
            challenge_nonce: Some("3rfcNHYJY1ZVvWVs7j".into()),
            ..ServerOptions::default()
        };
        let first = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
        let good =
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
        // The second message, altered: each is refused with the failure named.
        let run = |first: &str, second: &str| {
            let mut s = ServerSession::new(Mechanism::ScramSha1, &o).unwrap();
            match s.start(Some(first.as_bytes()), &store) {
                ServerStep::Challenge(_) => s.step(second.as_bytes(), &store),
                other => other,
            }
        };
        let fail = ServerStep::Failure;
        let wrong_proof = good.replace("p=v0X8", "p=w0X8");
        for (first, second, want) in [
            (first, wrong_proof.as_str(), fail(AuthFailure::Rejected)),
            (
                first,
                "c=eSws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                fail(AuthFailure::Malformed),
            ),
            (
                first,
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                fail(AuthFailure::Malformed),
            ),
            (
                first,
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
                fail(AuthFailure::Malformed),
            ),
            (
                first,
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=AAAA",
                fail(AuthFailure::Malformed),
            ),
            (
                first,
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=!!",
                fail(AuthFailure::Malformed),
            ),
            // Channel binding is not offered; a mandatory extension is refused.
            (
                "p=tls-unique,,n=user,r=fyko",
                good,
                fail(AuthFailure::Malformed),
            ),
            ("n,,m=x,n=user,r=fyko", good, fail(AuthFailure::Malformed)),
            // Acting as someone else is not SCRAM's to grant.
            (
                "n,a=admin,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
                good,
                fail(AuthFailure::Rejected),
            ),
        ] {
            assert_eq!(run(first, second), want, "{first} / {second}");
        }
        // authzid equal to the authcid is fine; the gs2 header with it is what c= must echo.
        let mut s = ServerSession::new(Mechanism::ScramSha1, &o).unwrap();
        assert!(matches!(
            s.start(Some(b"n,a=user,n=user,r=fyko"), &store),
            ServerStep::Challenge(_)
        ));
        assert_eq!(
            s.step(
                b"c=biws,r=fyko3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                &store
            ),
            fail(AuthFailure::Malformed)
        );
        // Anything but an empty answer to the server-final message ends it.
        let mut s = ServerSession::new(Mechanism::ScramSha1, &o).unwrap();
        s.start(Some(first.as_bytes()), &store);
        assert!(matches!(
            s.step(good.as_bytes(), &store),
            ServerStep::Challenge(_)
        ));
        assert_eq!(s.step(b"x", &store), fail(AuthFailure::Malformed));
        assert_eq!(s.step(b"", &store), fail(AuthFailure::Malformed));
    }

    #[test]
    fn scram_unknown_user_looks_like_a_known_one_until_the_proof() {
        // The Store of the other tests knows tim's password only through CRAM-MD5's lookup,
        // which the default SCRAM lookup derives from.
        let store = Store::default();
        let start = |user: &str| {
            let mut s = session(Mechanism::ScramSha256);
            match s.start(Some(format!("n,,n={user},r=abc").as_bytes()), &store) {
                ServerStep::Challenge(c) => String::from_utf8(c).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        let shape = |m: &str| {
            let parts: Vec<&str> = m.split(',').collect();
            (parts.len(), parts[1].len(), parts[2].to_owned())
        };
        let known = start("tim");
        let unknown = start("nobody");
        assert_eq!(shape(&known), shape(&unknown));
        // The same salt at every attempt, for both.
        assert_eq!(known.split(',').nth(1), start("tim").split(',').nth(1));
        assert_eq!(unknown.split(',').nth(1), start("nobody").split(',').nth(1));
        // A store that is down answers 454.
        let down = Store {
            down: true,
            ..Store::default()
        };
        let mut s = session(Mechanism::ScramSha1);
        assert_eq!(
            s.start(Some(b"n,,n=tim,r=abc"), &down),
            ServerStep::Failure(AuthFailure::Temporary)
        );
    }

    #[test]
    fn scram_client_and_server_of_this_crate_agree() {
        let store = Store::default();
        for m in [Mechanism::ScramSha256, Mechanism::ScramSha1] {
            for (user, pw, want) in [
                ("tim", "tanstaaftanstaaf", ok("tim", None)),
                ("tim", "wrong", ServerStep::Failure(AuthFailure::Rejected)),
                (
                    "nobody",
                    "tanstaaftanstaaf",
                    ServerStep::Failure(AuthFailure::Rejected),
                ),
                ("a=b,c", "x", ServerStep::Failure(AuthFailure::Rejected)),
            ] {
                let creds = Credentials::new(user).with_password(pw);
                let mut c = ClientSession::new(m, &creds, &ClientOptions::default()).unwrap();
                // Without an initial response: the server's empty challenge asks for it.
                let mut s = ServerSession::new(m, &ServerOptions::default()).unwrap();
                let mut step = s.start(None, &store);
                while let ServerStep::Challenge(ch) = &step {
                    let r = c.step(ch).unwrap();
                    step = s.step(r.expose(), &store);
                }
                assert_eq!(step, want, "{m:?} {user} {pw}");
                // The client verified the server's signature before the success.
                assert_eq!(c.is_complete(), matches!(want, ServerStep::Success(_)));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn client_and_server_agree(user in "[^\\x00]{1,20}", pw in "[^\\x00]{1,20}", login: bool) {
            let store = Store::default();
            let m = if login { Mechanism::Login } else { Mechanism::Plain };
            let creds = Credentials::new(user.clone()).with_password(pw.clone());
            let mut c = ClientSession::new(m, &creds, &ClientOptions::default()).unwrap();
            let mut s = session(m);
            let mut step = s.start(c.initial_response().unwrap().as_ref().map(|r| r.expose().as_slice()), &store);
            while let ServerStep::Challenge(ch) = &step {
                let r = c.step(ch).unwrap();
                step = s.step(r.expose(), &store);
            }
            let want = if user == "alice" && pw == "wonderland" {
                ok("alice", None)
            } else {
                ServerStep::Failure(AuthFailure::Rejected)
            };
            proptest::prop_assert_eq!(step, want);
            proptest::prop_assert!(c.is_complete());
        }
    }
}

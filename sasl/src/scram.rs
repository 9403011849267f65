//! SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), client side, without channel binding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::client::{ClientOptions, saslname};
use crate::{Mechanism, SaslError, ScramError, Secret};

/// The hash a SCRAM variant is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// The hash of a SCRAM mechanism; `None` for any other mechanism.
    pub(crate) fn of(mechanism: Mechanism) -> Option<ScramHash> {
        match mechanism {
            Mechanism::ScramSha1 => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            _ => None,
        }
    }

    /// The mechanism built on this hash.
    pub(crate) fn mechanism(self) -> Mechanism {
        match self {
            ScramHash::Sha1 => Mechanism::ScramSha1,
            ScramHash::Sha256 => Mechanism::ScramSha256,
        }
    }

    /// The length of a digest, and so of every SCRAM key.
    pub(crate) fn digest_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
        // HMAC accepts keys of any length (RFC 2104 §2): new_from_slice cannot fail.
        Zeroizing::new(match self {
            ScramHash::Sha1 => {
                let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        })
    }

    pub(crate) fn hash(self, data: &[u8]) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        })
    }

    /// RFC 5802 §2.2 Hi(): PBKDF2 with HMAC and one output block.
    pub(crate) fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<Vec<u8>> {
        match self {
            ScramHash::Sha1 => {
                let mut out = Zeroizing::new(vec![0u8; 20]);
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out
            }
            ScramHash::Sha256 => {
                let mut out = Zeroizing::new(vec![0u8; 32]);
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// `a XOR b`, octet by octet: `ClientProof = ClientKey XOR ClientSignature` and back.
pub(crate) fn xor(a: &[u8], b: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(a.iter().zip(b).map(|(x, y)| x ^ y).collect())
}

/// RFC 5802 §7 `printable = %x21-2B / %x2D-7E`, at least one: what a nonce is made of.
pub(crate) fn is_printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// RFC 5802 §7 `attr-val`, the shape of an extension: a letter, `=`, then anything.
pub(crate) fn is_attribute(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'='
}

/// A random nonce of `octets` random octets. Standard base64 never contains `,`, so it is
/// `printable`.
pub(crate) fn random_nonce(octets: usize) -> Result<String, SaslError> {
    let mut raw = vec![0u8; octets];
    getrandom::getrandom(&mut raw).map_err(|_| SaslError::Random)?;
    Ok(STANDARD.encode(raw))
}

/// What a valid server-first-message says (RFC 5802 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerFirst<'a> {
    pub(crate) nonce: &'a str,
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: u32,
}

/// Parses `[m=...,]r=<nonce>,s=<salt>,i=<count>[,ext...]` and checks it against our nonce and
/// the iteration bounds.
pub(crate) fn parse_server_first<'a>(
    message: &'a [u8],
    client_nonce: &str,
    min: u32,
    max: u32,
) -> Result<ServerFirst<'a>, ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::MalformedServerFirst)?;
    let mut attrs = text.split(',');
    let first = attrs.next().unwrap_or("");
    if first.starts_with("m=") {
        return Err(ScramError::MandatoryExtension);
    }
    let nonce = first
        .strip_prefix("r=")
        .ok_or(ScramError::MalformedServerFirst)?;
    let salt = attrs
        .next()
        .and_then(|a| a.strip_prefix("s="))
        .ok_or(ScramError::MalformedServerFirst)?;
    let count = attrs
        .next()
        .and_then(|a| a.strip_prefix("i="))
        .ok_or(ScramError::MalformedServerFirst)?;
    // Extensions may follow, each `x=...` (RFC 5802 §7 `extensions`).
    if !attrs.all(is_attribute) {
        return Err(ScramError::MalformedServerFirst);
    }
    // RFC 5802 §5.1: the server nonce starts with the client's and adds its own printable part.
    if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) || !is_printable(nonce)
    {
        return Err(ScramError::NonceMismatch);
    }
    let salt = STANDARD.decode(salt).map_err(|_| ScramError::InvalidSalt)?;
    if salt.is_empty() {
        return Err(ScramError::InvalidSalt);
    }
    // posit-number = %x31-39 *DIGIT; more than ten digits cannot fit a u32 anyway.
    let cb = count.as_bytes();
    if cb.is_empty() || cb.len() > 10 || cb[0] == b'0' || !cb.iter().all(u8::is_ascii_digit) {
        return Err(ScramError::MalformedServerFirst);
    }
    let iterations: u32 = match count.parse::<u64>() {
        Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
        Err(_) => return Err(ScramError::MalformedServerFirst),
    };
    if iterations < min {
        return Err(ScramError::IterationCountTooLow {
            count: iterations,
            min,
        });
    }
    if iterations > max {
        return Err(ScramError::IterationCountTooHigh {
            count: iterations,
            max,
        });
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

enum State {
    Initial,
    SentFirst,
    SentFinal {
        server_signature: Zeroizing<Vec<u8>>,
    },
    Verified,
    Failed,
}

pub(crate) struct Scram {
    hash: ScramHash,
    password: Secret<String>,
    client_nonce: String,
    client_first_bare: String,
    min: u32,
    max: u32,
    state: State,
}

impl Scram {
    pub(crate) fn new(
        hash: ScramHash,
        username: &str,
        password: &Secret<String>,
        options: &ClientOptions,
    ) -> Result<Scram, SaslError> {
        let mechanism = hash.mechanism();
        if username.is_empty() || username.contains('\0') {
            return Err(SaslError::InvalidCredential {
                mechanism,
                field: "username",
            });
        }
        let client_nonce = match &options.scram_client_nonce {
            Some(n) => n.clone(),
            None => random_nonce(24)?,
        };
        if !is_printable(&client_nonce) {
            return Err(SaslError::InvalidCredential {
                mechanism,
                field: "nonce",
            });
        }
        // SASLprep (RFC 4013) is not applied: for printable ASCII it is the identity, and servers
        // such as Dovecot compare the octets as sent.
        let client_first_bare = format!("n={},r={}", saslname(username), client_nonce);
        Ok(Scram {
            hash,
            password: password.clone(),
            client_nonce,
            client_first_bare,
            min: options.scram_min_iterations,
            max: options.scram_max_iterations,
            state: State::Initial,
        })
    }

    pub(crate) fn mechanism(&self) -> Mechanism {
        self.hash.mechanism()
    }

    pub(crate) fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        if !matches!(self.state, State::Initial) {
            return Ok(None);
        }
        self.state = State::SentFirst;
        // gs2-header "n,,": no channel binding, no authzid.
        Ok(Some(Secret::new(
            format!("n,,{}", self.client_first_bare).into_bytes(),
        )))
    }

    pub(crate) fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        let result = self.step_inner(challenge);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn step_inner(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Initial => {
                if !challenge.is_empty() {
                    return Err(SaslError::UnexpectedChallenge);
                }
                self.state = State::Initial;
                self.initial_response()?
                    .ok_or(SaslError::UnexpectedChallenge)
            }
            State::SentFirst => self.client_final(challenge),
            State::SentFinal { server_signature } => {
                verify_server_final(challenge, &server_signature)?;
                self.state = State::Verified;
                // RFC 4954 §4: SMTP carries the server-final-message in a 334 challenge, which the
                // client answers with an empty line before the 235.
                Ok(Secret::new(Vec::new()))
            }
            State::Verified | State::Failed => Err(SaslError::UnexpectedChallenge),
        }
    }

    fn client_final(&mut self, server_first: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        let sf = parse_server_first(server_first, &self.client_nonce, self.min, self.max)?;
        let h = self.hash;
        let salted = h.hi(self.password.expose().as_bytes(), &sf.salt, sf.iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        // c=biws is base64("n,,"), the gs2-header we sent.
        let without_proof = format!("c=biws,r={}", sf.nonce);
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare,
            // server_first is valid UTF-8: parse_server_first checked it.
            String::from_utf8_lossy(server_first),
            without_proof
        );
        let client_signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_key = h.hmac(&salted, b"Server Key");
        let server_signature = h.hmac(&server_key, auth_message.as_bytes());
        self.state = State::SentFinal { server_signature };
        Ok(Secret::new(
            format!("{without_proof},p={}", STANDARD.encode(&proof)).into_bytes(),
        ))
    }

    pub(crate) fn is_complete(&self) -> bool {
        matches!(self.state, State::Verified)
    }
}

/// RFC 5802 §7: `server-final-message = (server-error / verifier) ["," extensions]`.
fn verify_server_final(message: &[u8], expected: &[u8]) -> Result<(), ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::MalformedServerFinal)?;
    let first = text.split(',').next().unwrap_or("");
    if let Some(e) = first.strip_prefix("e=") {
        return Err(ScramError::ServerError(e.to_owned()));
    }
    let v = first
        .strip_prefix("v=")
        .ok_or(ScramError::MalformedServerFinal)?;
    let got = STANDARD
        .decode(v)
        .map_err(|_| ScramError::MalformedServerFinal)?;
    // Constant time, so a forger learns nothing from how long the comparison took.
    if got.len() == expected.len() && bool::from(got.ct_eq(expected)) {
        Ok(())
    } else {
        Err(ScramError::ServerSignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientSession, Credentials};
    use proptest::prelude::*;

    fn session(m: Mechanism, nonce: &str) -> ClientSession {
        let options = ClientOptions {
            scram_client_nonce: Some(nonce.into()),
            ..ClientOptions::default()
        };
        ClientSession::new(
            m,
            &Credentials::new("user").with_password("pencil"),
            &options,
        )
        .unwrap()
    }

    #[test]
    fn rfc_5802_section_5_sha1_exchange() {
        let mut s = session(Mechanism::ScramSha1, "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(
            s.initial_response().unwrap().unwrap().expose(),
            b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
        );
        let r = s
            .step(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        assert_eq!(
            r.expose().as_slice(),
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        assert!(!s.is_complete());
        assert_eq!(s.finish(), Err(SaslError::ServerNotVerified));
        assert_eq!(
            s.step(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=").unwrap().expose(),
            b""
        );
        assert!(s.is_complete());
        assert_eq!(s.finish(), Ok(()));
    }

    #[test]
    fn rfc_7677_section_3_sha256_exchange() {
        let mut s = session(Mechanism::ScramSha256, "rOprNGfwEbeRWgbNEkqO");
        // Without SASL-IR the empty challenge yields the client-first-message.
        assert_eq!(
            s.step(b"").unwrap().expose(),
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        let r = s
            .step(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        assert_eq!(
            r.expose().as_slice(),
            &b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="[..]
        );
        s.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert_eq!(s.finish(), Ok(()));
    }

    const SF: &[u8] = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";

    #[test]
    fn wrong_server_signature_is_refused() {
        let mut s = session(Mechanism::ScramSha1, "fyko+d2lbbFgONRv9qkxdawL");
        s.initial_response().unwrap();
        s.step(SF).unwrap();
        assert_eq!(
            s.step(b"v=rmF9pqV8S7suAoZWja4dJRkFsKA=").err(),
            Some(SaslError::Scram(ScramError::ServerSignatureMismatch))
        );
        assert_eq!(s.finish(), Err(SaslError::ServerNotVerified));
        assert_eq!(
            s.step(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=").err(),
            Some(SaslError::UnexpectedChallenge)
        );
    }

    #[test]
    fn malformed_server_final_table() {
        let table: &[(&[u8], ScramError)] = &[
            (b"", ScramError::MalformedServerFinal),
            (b"x=abc", ScramError::MalformedServerFinal),
            (b"v=not base64", ScramError::MalformedServerFinal),
            (b"v=", ScramError::ServerSignatureMismatch),
            (
                b"v=cm1GOXBxVjhTN3N1QW9aV2phNGRKUmtGc0s=",
                ScramError::ServerSignatureMismatch,
            ),
            (
                b"e=invalid-proof",
                ScramError::ServerError("invalid-proof".into()),
            ),
            (b"\xff", ScramError::MalformedServerFinal),
        ];
        for (msg, err) in table {
            let mut s = session(Mechanism::ScramSha1, "fyko+d2lbbFgONRv9qkxdawL");
            s.initial_response().unwrap();
            s.step(SF).unwrap();
            assert_eq!(
                s.step(msg).err(),
                Some(SaslError::Scram(err.clone())),
                "{msg:?}"
            );
        }
    }

    #[test]
    fn malformed_server_first_table() {
        let n = "fyko";
        let table: &[(&[u8], ScramError)] = &[
            (b"", ScramError::MalformedServerFirst),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92",
                ScramError::MalformedServerFirst,
            ),
            (
                b"s=QSXCR+Q6sek8bf92,r=fykoX,i=4096",
                ScramError::MalformedServerFirst,
            ),
            (
                b"m=ext,r=fykoX,s=QSXCR+Q6sek8bf92,i=4096",
                ScramError::MandatoryExtension,
            ),
            (
                b"r=fyko,s=QSXCR+Q6sek8bf92,i=4096",
                ScramError::NonceMismatch,
            ),
            (
                b"r=fyk0X,s=QSXCR+Q6sek8bf92,i=4096",
                ScramError::NonceMismatch,
            ),
            (
                b"r=Xfyko,s=QSXCR+Q6sek8bf92,i=4096",
                ScramError::NonceMismatch,
            ),
            (
                b"r=fyko X,s=QSXCR+Q6sek8bf92,i=4096",
                ScramError::NonceMismatch,
            ),
            (b"r=fykoX,s=,i=4096", ScramError::InvalidSalt),
            (b"r=fykoX,s=QSXCR+Q6sek8bf9,i=4096", ScramError::InvalidSalt),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=",
                ScramError::MalformedServerFirst,
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=04096",
                ScramError::MalformedServerFirst,
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=+4096",
                ScramError::MalformedServerFirst,
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=-1",
                ScramError::MalformedServerFirst,
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=40960000000",
                ScramError::MalformedServerFirst,
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=4096,",
                ScramError::MalformedServerFirst,
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=4096,bad",
                ScramError::MalformedServerFirst,
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=4095",
                ScramError::IterationCountTooLow {
                    count: 4095,
                    min: 4096,
                },
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=1",
                ScramError::IterationCountTooLow {
                    count: 1,
                    min: 4096,
                },
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=4294967295",
                ScramError::IterationCountTooHigh {
                    count: u32::MAX,
                    max: 600_000,
                },
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92,i=9999999999",
                ScramError::IterationCountTooHigh {
                    count: u32::MAX,
                    max: 600_000,
                },
            ),
            (
                b"r=fykoX,s=QSXCR+Q6sek8bf92\xff,i=4096",
                ScramError::MalformedServerFirst,
            ),
        ];
        for (msg, err) in table {
            assert_eq!(
                parse_server_first(msg, n, 4096, 600_000).err(),
                Some(err.clone()),
                "{msg:?}"
            );
        }
        let ok = parse_server_first(b"r=fykoX,s=QSXCR+Q6sek8bf92,i=4096,x=ext", n, 4096, 600_000)
            .unwrap();
        assert_eq!((ok.nonce, ok.iterations), ("fykoX", 4096));
    }

    #[test]
    fn errors_are_sticky_in_the_session() {
        let mut s = session(Mechanism::ScramSha256, "abc");
        s.initial_response().unwrap();
        assert_eq!(
            s.step(b"r=abcd,s=QSXCR+Q6sek8bf92,i=100000000").err(),
            Some(SaslError::Scram(ScramError::IterationCountTooHigh {
                count: 100_000_000,
                max: 600_000
            }))
        );
        assert_eq!(s.step(SF).err(), Some(SaslError::UnexpectedChallenge));
    }

    #[test]
    fn random_nonces_differ_and_usernames_are_escaped() {
        let o = ClientOptions::default();
        let c = Credentials::new("a,b=c").with_password("p");
        let mut a = ClientSession::new(Mechanism::ScramSha256, &c, &o).unwrap();
        let mut b = ClientSession::new(Mechanism::ScramSha256, &c, &o).unwrap();
        let a = a.initial_response().unwrap().unwrap();
        let b = b.initial_response().unwrap().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(b"n,,n=a=2Cb=3Dc,r="));
    }

    proptest! {
        #[test]
        fn server_first_parser_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(sf) = parse_server_first(&msg, "ab", 1, 10) {
                prop_assert!(sf.nonce.starts_with("ab") && sf.nonce.len() > 2);
                prop_assert!((1..=10).contains(&sf.iterations));
                prop_assert!(!sf.salt.is_empty());
            }
        }
    }
}

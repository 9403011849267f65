//! SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), server side, without channel binding:
//! the verifier a store keeps instead of the password, and the two-message exchange.

use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::scram::{ScramHash, is_attribute, is_printable, xor};
use crate::{Mechanism, SaslError, Secret};

/// The iteration count of verifiers derived on the fly from a stored password: the minimum
/// RFC 7677 §4 asks for.
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;

/// A user's SCRAM verifier (RFC 5802 §3): the salt, the iteration count, `StoredKey` and
/// `ServerKey`. A server can keep this instead of the password; it proves a client's knowledge
/// of the password without being enough to log in as that client.
#[derive(Clone)]
pub struct ScramCredential {
    hash: ScramHash,
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Secret<Vec<u8>>,
    server_key: Secret<Vec<u8>>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn hash_of(mechanism: Mechanism) -> Result<ScramHash, SaslError> {
    ScramHash::of(mechanism).ok_or(SaslError::Unsupported(mechanism))
}

impl ScramCredential {
    /// Derives the verifier from a password (RFC 5802 §3), for a store that keeps passwords
    /// or to provision a store that keeps verifiers. The password is used as given: SASLprep
    /// (RFC 4013) is the identity on printable ASCII, and this crate's client does not apply
    /// it either.
    ///
    /// # Errors
    ///
    /// [`SaslError::Unsupported`] for a mechanism other than SCRAM-SHA-1 and SCRAM-SHA-256.
    pub fn derive(
        mechanism: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, SaslError> {
        let h = hash_of(mechanism)?;
        let salted = h.hi(password.as_bytes(), salt, iterations.max(1));
        let client_key = h.hmac(&salted, b"Client Key");
        Ok(ScramCredential {
            hash: h,
            salt: salt.to_vec(),
            iterations: iterations.max(1),
            stored_key: Secret::new(h.hash(&client_key).to_vec()),
            server_key: Secret::new(h.hmac(&salted, b"Server Key").to_vec()),
        })
    }

    /// A verifier read back from storage.
    ///
    /// # Errors
    ///
    /// [`SaslError::Unsupported`] for a mechanism other than SCRAM-SHA-1 and SCRAM-SHA-256;
    /// [`SaslError::InvalidCredential`] when a key is not one digest long or the iteration
    /// count is zero.
    pub fn from_keys(
        mechanism: Mechanism,
        salt: Vec<u8>,
        iterations: u32,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    ) -> Result<ScramCredential, SaslError> {
        let hash = hash_of(mechanism)?;
        let len = hash.digest_len();
        let field = if stored_key.len() != len {
            Some("stored key")
        } else if server_key.len() != len {
            Some("server key")
        } else if iterations == 0 {
            Some("iterations")
        } else {
            None
        };
        if let Some(field) = field {
            return Err(SaslError::InvalidCredential { mechanism, field });
        }
        Ok(ScramCredential {
            hash,
            salt,
            iterations,
            stored_key: Secret::new(stored_key),
            server_key: Secret::new(server_key),
        })
    }

    /// A verifier no proof matches, for a user the store does not know: random keys, with the
    /// salt and iteration count a real verifier would show.
    pub(crate) fn unknown(
        mechanism: Mechanism,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<ScramCredential, SaslError> {
        let len = hash_of(mechanism)?.digest_len();
        let mut keys = vec![0u8; 2 * len];
        getrandom::getrandom(&mut keys).map_err(|_| SaslError::Random)?;
        let server_key = keys.split_off(len);
        ScramCredential::from_keys(mechanism, salt, iterations, keys, server_key)
    }

    /// The mechanism this verifier is for.
    pub fn mechanism(&self) -> Mechanism {
        self.hash.mechanism()
    }

    /// The salt.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// `StoredKey = H(HMAC(SaltedPassword, "Client Key"))`, to persist.
    pub fn stored_key(&self) -> &[u8] {
        self.stored_key.expose()
    }

    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`, to persist.
    pub fn server_key(&self) -> &[u8] {
        self.server_key.expose()
    }
}

/// A salt for `authcid` that stays the same for the life of the process: used for verifiers
/// derived from a stored password, and for the made-up verifier of an unknown user, so that
/// repeated attempts see the same salt whether or not the user exists (RFC 5802 §9 on
/// username enumeration).
pub(crate) fn process_salt(authcid: &str, mechanism: Mechanism) -> Vec<u8> {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        // Without randomness the salt is still per user, only predictable.
        let _ = getrandom::getrandom(&mut k);
        k
    });
    let label = format!("{}\0{authcid}", mechanism.name());
    ScramHash::Sha256.hmac(key, label.as_bytes())[..16].to_vec()
}

/// The parts of a client-first-message (RFC 5802 §7) the exchange keeps.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClientFirst {
    /// `n,` or `y,` plus the optional `a=authzid` and the closing comma, as sent.
    pub(crate) gs2_header: String,
    pub(crate) authzid: Option<String>,
    pub(crate) username: String,
    pub(crate) nonce: String,
    /// The message after the gs2 header.
    pub(crate) bare: String,
}

/// RFC 5802 §7 `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is malformed; no `,`.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['=', ',']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("=2C") {
            out.push(',');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("=3D") {
            out.push('=');
            rest = t;
        } else {
            return None;
        }
    }
    out.push_str(rest);
    (!out.is_empty() && !out.contains('\0')).then_some(out)
}

/// Parses `gs2-header client-first-message-bare`. Channel binding (`p=`) is refused: this
/// server does not offer the -PLUS variants. `y` (the client could bind but thinks we cannot)
/// is accepted, which is right because we do not advertise -PLUS. A mandatory extension
/// (`m=`) is refused, as RFC 5802 §5.1 requires.
pub(crate) fn parse_client_first(msg: &[u8]) -> Option<ClientFirst> {
    let text = std::str::from_utf8(msg).ok()?;
    let (flag, rest) = text.split_once(',')?;
    if flag != "n" && flag != "y" {
        return None;
    }
    let (authz, bare) = rest.split_once(',')?;
    let authzid = match authz {
        "" => None,
        a => Some(decode_saslname(a.strip_prefix("a=")?)?),
    };
    let gs2_header = text[..text.len() - bare.len()].to_owned();
    let mut fields = bare.split(',');
    let username = decode_saslname(fields.next()?.strip_prefix("n=")?)?;
    let nonce = fields.next()?.strip_prefix("r=")?;
    if !is_printable(nonce) {
        return None;
    }
    // Optional extensions: `letter "=" value`, never the reserved `m`.
    if !fields.all(|ext| is_attribute(ext) && !ext.starts_with('m')) {
        return None;
    }
    Some(ClientFirst {
        gs2_header,
        authzid,
        username,
        nonce: nonce.to_owned(),
        bare: bare.to_owned(),
    })
}

/// The exchange between the server-first and the client-final message.
pub(crate) struct Pending {
    first: ClientFirst,
    server_first: String,
    nonce: String,
    credential: ScramCredential,
    /// False for a made-up verifier: the proof is checked all the same, then refused.
    known: bool,
}

impl Pending {
    /// The server-first-message for `first`, with `server_nonce` appended to the client's.
    pub(crate) fn new(
        first: ClientFirst,
        server_nonce: &str,
        credential: ScramCredential,
        known: bool,
    ) -> Pending {
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(credential.salt()),
            credential.iterations()
        );
        Pending {
            first,
            server_first,
            nonce,
            credential,
            known,
        }
    }

    pub(crate) fn server_first(&self) -> &str {
        &self.server_first
    }

    pub(crate) fn first(&self) -> &ClientFirst {
        &self.first
    }

    /// Checks `c=...,r=...[,ext],p=...`: the echoed gs2 header, the combined nonce and the
    /// proof. `Ok(Some(server_final))` when the proof is right and the user known, `Ok(None)`
    /// when it is not (the same answer for both), `Err(())` for a malformed message.
    pub(crate) fn verify(&self, msg: &[u8]) -> Result<Option<String>, ()> {
        let text = std::str::from_utf8(msg).map_err(|_| ())?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(())?;
        let mut fields = without_proof.split(',');
        let binding = fields.next().and_then(|f| f.strip_prefix("c=")).ok_or(())?;
        let nonce = fields.next().and_then(|f| f.strip_prefix("r=")).ok_or(())?;
        if binding != STANDARD.encode(&self.first.gs2_header) || nonce != self.nonce {
            return Err(());
        }
        let h = self.credential.hash;
        let proof = Zeroizing::new(STANDARD.decode(proof).map_err(|_| ())?);
        let stored_key = self.credential.stored_key();
        if proof.len() != stored_key.len() {
            return Err(());
        }
        let auth_message = format!("{},{},{without_proof}", self.first.bare, self.server_first);
        let client_signature = h.hmac(stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        let matches = bool::from(h.hash(&client_key).ct_eq(stored_key));
        if !(matches && self.known) {
            return Ok(None);
        }
        let signature = h.hmac(self.credential.server_key(), auth_message.as_bytes());
        Ok(Some(format!("v={}", STANDARD.encode(&signature))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_known_answers_and_negatives() {
        let f = parse_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(f.gs2_header, "n,,");
        assert_eq!(f.authzid, None);
        assert_eq!(f.username, "user");
        assert_eq!(f.nonce, "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(f.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let f = parse_client_first(b"y,a=bo=2Cb,n=a=3Db=2Cc,r=x,x=ext").unwrap();
        assert_eq!(f.gs2_header, "y,a=bo=2Cb,");
        assert_eq!(f.authzid.as_deref(), Some("bo,b"));
        assert_eq!(f.username, "a=b,c");
        for bad in [
            &b""[..],
            b"n,,",
            b"p=tls-unique,,n=user,r=x",
            b"x,,n=user,r=x",
            b"n,b=z,n=user,r=x",
            b"n,,m=ext,n=user,r=x",
            b"n,,n=user,r=x,m=ext",
            b"n,,n=,r=x",
            b"n,,n=us=2Xer,r=x",
            b"n,,n=us=er,r=x",
            b"n,,n=user,r=",
            b"n,,n=user,r=a b",
            b"n,,n=user",
            b"n,,r=x,n=user",
            b"n,,n=user,r=x,1=ext",
            b"n,,n=us\0er,r=x",
            b"n,,n=user,r=x\xff",
        ] {
            assert_eq!(
                parse_client_first(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn from_keys_checks_lengths() {
        let ok = ScramCredential::derive(Mechanism::ScramSha256, "pencil", b"salt", 4096).unwrap();
        let again = ScramCredential::from_keys(
            Mechanism::ScramSha256,
            ok.salt().to_vec(),
            ok.iterations(),
            ok.stored_key().to_vec(),
            ok.server_key().to_vec(),
        )
        .unwrap();
        assert_eq!(again.stored_key(), ok.stored_key());
        assert!(matches!(
            ScramCredential::from_keys(
                Mechanism::ScramSha1,
                vec![],
                4096,
                vec![0; 32],
                vec![0; 20]
            ),
            Err(SaslError::InvalidCredential {
                field: "stored key",
                ..
            })
        ));
        assert!(matches!(
            ScramCredential::from_keys(Mechanism::ScramSha1, vec![], 0, vec![0; 20], vec![0; 20]),
            Err(SaslError::InvalidCredential {
                field: "iterations",
                ..
            })
        ));
        assert!(matches!(
            ScramCredential::derive(Mechanism::Plain, "p", b"s", 1),
            Err(SaslError::Unsupported(Mechanism::Plain))
        ));
        // Debug shows no key material.
        assert!(!format!("{ok:?}").contains("stored"));
    }

    #[test]
    fn process_salt_is_stable_per_user_and_mechanism() {
        let a = process_salt("alice", Mechanism::ScramSha256);
        assert_eq!(a, process_salt("alice", Mechanism::ScramSha256));
        assert_ne!(a, process_salt("bob", Mechanism::ScramSha256));
        assert_ne!(a, process_salt("alice", Mechanism::ScramSha1));
        assert_eq!(a.len(), 16);
    }
}

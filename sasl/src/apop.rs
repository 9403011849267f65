//! POP3 `APOP` (RFC 1939 §7): the greeting timestamp and the digest.

use md5::{Digest, Md5};

use crate::client::hex;
use crate::{SaslError, Secret};

/// The longest timestamp accepted. RFC 1939 §3 bounds a response line at 512 octets, so no
/// legitimate greeting carries more.
pub const MAX_APOP_TIMESTAMP: usize = 500;

/// A POP3 greeting timestamp that is a well-formed `<local@domain>` msg-id (RFC 1939 §7,
/// RFC 822 §4.6.1).
///
/// Only printable ASCII without spaces or angle brackets is accepted inside the brackets, with
/// exactly one `@` and something on each side of it. A server whose greeting has no such
/// timestamp does not offer APOP: the digest of a server-chosen arbitrary string is an oracle,
/// and a missing one is a replay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApopTimestamp(String);

impl ApopTimestamp {
    /// Finds the timestamp in a greeting's text (`+OK POP3 server ready <1896.697@host>`): the
    /// first `<` and the next `>`. `None` if there is none or it is malformed.
    pub fn from_greeting(text: &[u8]) -> Option<ApopTimestamp> {
        let start = text.iter().position(|&b| b == b'<')?;
        let len = text[start..].iter().position(|&b| b == b'>')?;
        let candidate = std::str::from_utf8(&text[start..=start + len]).ok()?;
        ApopTimestamp::try_from(candidate).ok()
    }

    /// The timestamp, brackets included.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for ApopTimestamp {
    type Error = SaslError;

    fn try_from(s: &str) -> Result<Self, SaslError> {
        let inner = s
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .ok_or(SaslError::InvalidApopTimestamp)?;
        let ok_chars = inner
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'<' && b != b'>');
        let mut parts = inner.split('@');
        let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if s.len() > MAX_APOP_TIMESTAMP
            || !ok_chars
            || parts.next().is_some()
            || local.is_empty()
            || domain.is_empty()
        {
            return Err(SaslError::InvalidApopTimestamp);
        }
        Ok(ApopTimestamp(s.to_owned()))
    }
}

impl std::fmt::Display for ApopTimestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `APOP name digest` digest: lowercase hex MD5 of the timestamp followed by the password
/// (RFC 1939 §7). Wrapped in [`Secret`] because it is a password equivalent for this greeting.
pub fn apop_digest(timestamp: &ApopTimestamp, password: &Secret<String>) -> Secret<String> {
    let mut md5 = Md5::new();
    md5.update(timestamp.as_str().as_bytes());
    md5.update(password.expose().as_bytes());
    Secret::new(hex(&md5.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1939_section_7_example() {
        let ts =
            ApopTimestamp::from_greeting(b"POP3 server ready <1896.697170952@dbc.mtview.ca.us>")
                .unwrap();
        assert_eq!(ts.as_str(), "<1896.697170952@dbc.mtview.ca.us>");
        let d = apop_digest(&ts, &Secret::from("tanstaaf"));
        assert_eq!(d.expose(), "c4c9334bac560ecc979e58001b3e22fb");
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        let long = format!("<{}@b>", "a".repeat(MAX_APOP_TIMESTAMP));
        for bad in [
            "",
            "<>",
            "<@>",
            "<a@>",
            "<@b>",
            "<a@b@c>",
            "<ab>",
            "a@b",
            "<a@b",
            "a@b>",
            "<a b@c>",
            "<a@b\r\n>",
            "<a\0@b>",
            "<<a@b>",
            "<a@b>>",
            "<caf\u{e9}@b>",
            &long,
        ] {
            assert_eq!(
                ApopTimestamp::try_from(bad),
                Err(SaslError::InvalidApopTimestamp),
                "{bad:?}"
            );
        }
        assert!(ApopTimestamp::try_from("<1.2@host.example>").is_ok());
    }

    #[test]
    fn greetings_without_a_valid_timestamp() {
        for g in [
            &b"POP3 ready"[..],
            b"ready <no-at-sign>",
            b"ready <a@b",
            b"ready <a b@c> <x@y>",
            b"ready <\xff@b>",
        ] {
            assert_eq!(ApopTimestamp::from_greeting(g), None, "{g:?}");
        }
        let ts = ApopTimestamp::from_greeting(b"Dovecot ready. <1a2b.3@mail.example>").unwrap();
        assert_eq!(ts.to_string(), "<1a2b.3@mail.example>");
    }
}

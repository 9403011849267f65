//! The small validated address types routing works with.
//!
//! These are deliberately minimal: they exist so that routing can compare, rewrite and
//! de-duplicate addresses without depending on the protocol crates. The forwarder converts them to
//! the wire crate's `Mailbox` before anything reaches an SMTP peer.
//!
//! - [`Domain`]: dot-separated labels of letters, digits, `-` and `_` (plus non-ASCII characters,
//!   for internationalised domains), each label 1–63 bytes, not starting or ending with `-`, the
//!   whole 1–255 bytes. No trailing dot, no address literals (`[192.0.2.1]`). Compared
//!   ASCII-case-insensitively; the original spelling is kept for display.
//! - [`DomainPattern`]: a [`Domain`] or `*.` followed by a [`Domain`] (strict subdomains).
//! - [`Address`]: `local@domain`, split at the last `@`. The local part is 1–64 bytes and either a
//!   dot-atom-like run of characters without controls, white space or RFC 5322 specials
//!   (`()<>[]:;@\,"`), or a quoted string (`"john doe"`) without control characters. The whole
//!   address is at most 254 bytes (RFC 5321 §4.5.3.1.3 path limit minus the angle brackets).
//!   Equality and hashing compare the local part exactly and the domain case-insensitively;
//!   [`Address::eq_ignore_case`] compares both case-insensitively, as routing's de-duplication
//!   does.

use std::fmt;
use std::hash::{Hash, Hasher};

/// Longest domain, in bytes (RFC 1035 §2.3.4).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Longest domain label, in bytes (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest local part, in bytes (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest address, in bytes (RFC 5321 §4.5.3.1.3: a 256-octet path minus `<` and `>`).
pub const MAX_ADDRESS_LEN: usize = 254;

/// Why a domain or an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The input was empty.
    #[error("empty")]
    Empty,
    /// A control character (CR, LF, NUL, ...) was present.
    #[error("control character 0x{0:02x}")]
    ControlCharacter(u8),
    /// The domain is longer than [`MAX_DOMAIN_LEN`].
    #[error("domain longer than {MAX_DOMAIN_LEN} bytes")]
    DomainTooLong,
    /// A label is empty (`a..b`, a leading or trailing dot).
    #[error("empty domain label")]
    EmptyLabel,
    /// A label is longer than [`MAX_LABEL_LEN`].
    #[error("domain label longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong,
    /// A label starts or ends with `-`.
    #[error("domain label starts or ends with '-'")]
    LabelHyphen,
    /// A character that may not appear in a domain.
    #[error("character {0:?} not allowed in a domain")]
    DomainCharacter(char),
    /// No `@` separates the local part from the domain.
    #[error("missing '@'")]
    MissingAt,
    /// The local part is empty.
    #[error("empty local part")]
    EmptyLocalPart,
    /// The local part is longer than [`MAX_LOCAL_LEN`].
    #[error("local part longer than {MAX_LOCAL_LEN} bytes")]
    LocalPartTooLong,
    /// A character that may not appear in an unquoted local part.
    #[error("character {0:?} not allowed in an unquoted local part")]
    LocalPartCharacter(char),
    /// A quoted local part is not closed, or has an unescaped `"` inside.
    #[error("malformed quoted local part")]
    BadQuotedLocalPart,
    /// The address is longer than [`MAX_ADDRESS_LEN`].
    #[error("address longer than {MAX_ADDRESS_LEN} bytes")]
    AddressTooLong,
    /// A `*.` wildcard was used where only a plain domain is allowed.
    #[error("wildcard not allowed here")]
    WildcardNotAllowed,
}

/// A validated domain name; compared and hashed ASCII-case-insensitively.
#[derive(Debug, Clone)]
pub struct Domain(String);

impl Domain {
    /// The domain as it was written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain in ASCII lower case, the form routing tables are keyed by.
    pub fn to_lowercase_key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// Whether `self` is a strict subdomain of `parent` (`a.example.com` of `example.com`; a
    /// domain is not its own subdomain).
    pub fn is_strict_subdomain_of(&self, parent: &Domain) -> bool {
        let (me, p) = (self.0.as_bytes(), parent.0.as_bytes());
        me.len() > p.len() + 1
            && me[me.len() - p.len() - 1] == b'.'
            && me[me.len() - p.len()..].eq_ignore_ascii_case(p)
    }
}

fn validate_domain(s: &str) -> Result<(), AddressError> {
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if let Some(b) = s.bytes().find(|b| b.is_ascii_control()) {
        return Err(AddressError::ControlCharacter(b));
    }
    if s.len() > MAX_DOMAIN_LEN {
        return Err(AddressError::DomainTooLong);
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Err(AddressError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(AddressError::LabelTooLong);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::LabelHyphen);
        }
        if let Some(c) = label.chars().find(|c| {
            c.is_control()
                || c.is_whitespace()
                || (c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        }) {
            return Err(AddressError::DomainCharacter(c));
        }
    }
    Ok(())
}

impl TryFrom<&str> for Domain {
    type Error = AddressError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        if s.starts_with("*.") {
            return Err(AddressError::WildcardNotAllowed);
        }
        validate_domain(s)?;
        Ok(Domain(s.to_owned()))
    }
}

impl std::str::FromStr for Domain {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::try_from(s)
    }
}

impl PartialEq for Domain {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Domain {}

impl Hash for Domain {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A domain or a `*.domain` wildcard.
///
/// `*.example.com` matches strict subdomains only (`a.example.com`, `b.a.example.com`), never
/// `example.com` itself: the seeds say the wildcard is for subdomains, and an operator who wants
/// both writes both groups.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DomainPattern {
    /// Exactly this domain (case-insensitively).
    Exact(Domain),
    /// Any strict subdomain of this domain.
    Subdomains(Domain),
}

impl DomainPattern {
    /// Whether `domain` matches this pattern.
    pub fn matches(&self, domain: &Domain) -> bool {
        match self {
            DomainPattern::Exact(d) => d == domain,
            DomainPattern::Subdomains(parent) => domain.is_strict_subdomain_of(parent),
        }
    }

    /// The domain part of the pattern (without `*.`).
    pub fn domain(&self) -> &Domain {
        match self {
            DomainPattern::Exact(d) | DomainPattern::Subdomains(d) => d,
        }
    }
}

impl TryFrom<&str> for DomainPattern {
    type Error = AddressError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        match s.strip_prefix("*.") {
            Some(rest) => Ok(DomainPattern::Subdomains(Domain::try_from(rest)?)),
            None => Ok(DomainPattern::Exact(Domain::try_from(s)?)),
        }
    }
}

impl std::str::FromStr for DomainPattern {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainPattern::try_from(s)
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(d) => write!(f, "{d}"),
            DomainPattern::Subdomains(d) => write!(f, "*.{d}"),
        }
    }
}

/// A validated `local@domain` address (see the [module docs](self) for the rules).
#[derive(Debug, Clone)]
pub struct Address {
    local: String,
    domain: Domain,
}

/// Characters an unquoted local part may not contain besides controls and white space: the RFC
/// 5322 `specials` other than `.`.
const LOCAL_SPECIALS: &[char] = &['(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '"'];

fn validate_local(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocalPart);
    }
    if let Some(b) = local.bytes().find(|b| b.is_ascii_control()) {
        return Err(AddressError::ControlCharacter(b));
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(AddressError::LocalPartTooLong);
    }
    if let Some(inner) = local
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        // Inside quotes everything but controls is allowed, as long as every `"` and `\` is
        // escaped, so that the closing quote is unambiguous.
        let mut escaped = false;
        if let Some(c) = inner.chars().find(|c| c.is_control()) {
            return Err(AddressError::LocalPartCharacter(c));
        }
        for c in inner.chars() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => return Err(AddressError::BadQuotedLocalPart),
                (false, _) => {}
            }
        }
        if escaped {
            return Err(AddressError::BadQuotedLocalPart);
        }
        return Ok(());
    }
    if local.starts_with('"') {
        return Err(AddressError::BadQuotedLocalPart);
    }
    if let Some(c) = local
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || LOCAL_SPECIALS.contains(c))
    {
        return Err(AddressError::LocalPartCharacter(c));
    }
    Ok(())
}

impl Address {
    /// Builds an address from its parts, validating both.
    pub fn new(local: &str, domain: Domain) -> Result<Address, AddressError> {
        validate_local(local)?;
        if local.len() + 1 + domain.as_str().len() > MAX_ADDRESS_LEN {
            return Err(AddressError::AddressTooLong);
        }
        Ok(Address {
            local: local.to_owned(),
            domain,
        })
    }

    /// The local part, as written (quoted local parts keep their quotes).
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The same local part at another domain (FromDomain → ToDomain rewriting).
    pub fn with_domain(&self, domain: &Domain) -> Result<Address, AddressError> {
        Address::new(&self.local, domain.clone())
    }

    /// Compares local part and domain ASCII-case-insensitively (routing's notion of "the same
    /// recipient").
    pub fn eq_ignore_case(&self, other: &Address) -> bool {
        self.local.eq_ignore_ascii_case(&other.local) && self.domain == other.domain
    }

    /// The whole address in ASCII lower case: the key used for de-duplication.
    pub fn dedup_key(&self) -> String {
        let mut key = String::with_capacity(self.local.len() + 1 + self.domain.0.len());
        key.push_str(&self.local);
        key.push('@');
        key.push_str(&self.domain.0);
        key.make_ascii_lowercase();
        key
    }
}

impl TryFrom<&str> for Address {
    type Error = AddressError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if let Some(b) = s.bytes().find(|b| b.is_ascii_control()) {
            return Err(AddressError::ControlCharacter(b));
        }
        if s.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::AddressTooLong);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(AddressError::MissingAt)?;
        let domain = Domain::try_from(domain)?;
        Address::new(local, domain)
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::try_from(s)
    }
}

impl PartialEq for Address {
    fn eq(&self, other: &Self) -> bool {
        self.local == other.local && self.domain == other.domain
    }
}

impl Eq for Address {}

impl Hash for Address {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.local.hash(state);
        self.domain.hash(state);
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_known_answers() {
        assert!(Domain::try_from("example.com").is_ok());
        assert!(Domain::try_from("EXAMPLE.com").is_ok());
        assert!(Domain::try_from("localhost").is_ok());
        assert!(Domain::try_from("xn--bcher-kva.example").is_ok());
        assert!(Domain::try_from("bücher.example").is_ok());
        assert!(Domain::try_from("a_b.example").is_ok());
        let long_label = "a".repeat(64);
        let cases: &[(&str, AddressError)] = &[
            ("", AddressError::Empty),
            ("example.com.", AddressError::EmptyLabel),
            (".example.com", AddressError::EmptyLabel),
            ("a..b", AddressError::EmptyLabel),
            ("-a.com", AddressError::LabelHyphen),
            ("a-.com", AddressError::LabelHyphen),
            ("a b.com", AddressError::DomainCharacter(' ')),
            ("[192.0.2.1]", AddressError::DomainCharacter('[')),
            ("a.com\r\n", AddressError::ControlCharacter(b'\r')),
            ("a\0.com", AddressError::ControlCharacter(0)),
            ("*.a.com", AddressError::WildcardNotAllowed),
            ("a*.com", AddressError::DomainCharacter('*')),
            (&long_label, AddressError::LabelTooLong),
        ];
        for (input, want) in cases {
            assert_eq!(Domain::try_from(*input).unwrap_err(), *want, "{input:?}");
        }
        let too_long = ["a"; 129].join(".");
        assert_eq!(
            Domain::try_from(too_long.as_str()).unwrap_err(),
            AddressError::DomainTooLong
        );
    }

    #[test]
    fn domains_compare_case_insensitively() {
        let a = Domain::try_from("Example.COM").unwrap();
        let b = Domain::try_from("example.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Example.COM");
        assert_eq!(a.to_lowercase_key(), "example.com");
        let hash = |d: &Domain| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            d.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
    }

    #[test]
    fn wildcard_matches_strict_subdomains_only() {
        let p = DomainPattern::try_from("*.Domain.com").unwrap();
        let yes = ["a.domain.com", "A.B.DOMAIN.COM"];
        let no = [
            "domain.com",
            "xdomain.com",
            "domain.com.evil",
            "a.domain.co",
            "com",
        ];
        for d in yes {
            assert!(p.matches(&Domain::try_from(d).unwrap()), "{d}");
        }
        for d in no {
            assert!(!p.matches(&Domain::try_from(d).unwrap()), "{d}");
        }
        assert_eq!(p.to_string(), "*.Domain.com");
        assert_eq!(
            DomainPattern::try_from("*.*.a.com").unwrap_err(),
            AddressError::WildcardNotAllowed
        );
        assert_eq!(
            DomainPattern::try_from("*").unwrap_err(),
            AddressError::DomainCharacter('*')
        );
    }

    #[test]
    fn address_known_answers() {
        let a = Address::try_from("John.Doe@Example.COM").unwrap();
        assert_eq!(a.local_part(), "John.Doe");
        assert_eq!(a.domain().as_str(), "Example.COM");
        assert_eq!(a.to_string(), "John.Doe@Example.COM");
        assert!(Address::try_from("\"john doe\"@example.com").is_ok());
        assert!(Address::try_from("\"a\\\"b\"@example.com").is_ok());
        assert!(Address::try_from("user+tag@example.com").is_ok());
        let long_local = format!("{}@a.com", "a".repeat(65));
        let long_addr = format!("{}@{}.com", "a".repeat(60), ["b"; 96].join("."));
        let cases: &[(&str, AddressError)] = &[
            ("", AddressError::Empty),
            ("user", AddressError::MissingAt),
            ("@example.com", AddressError::EmptyLocalPart),
            ("user@", AddressError::Empty),
            ("a b@example.com", AddressError::LocalPartCharacter(' ')),
            ("a,b@example.com", AddressError::LocalPartCharacter(',')),
            ("@route:u@v.com", AddressError::LocalPartCharacter('@')),
            ("a@b@c.com", AddressError::LocalPartCharacter('@')),
            ("\"a\"b\"@c.com", AddressError::BadQuotedLocalPart),
            ("\"ab@c.com", AddressError::BadQuotedLocalPart),
            ("\"ab\\\"@c.com", AddressError::BadQuotedLocalPart),
            ("u\r\n@c.com", AddressError::ControlCharacter(b'\r')),
            ("u@c.com\n", AddressError::ControlCharacter(b'\n')),
            ("u\0@c.com", AddressError::ControlCharacter(0)),
            ("u\x7f@c.com", AddressError::ControlCharacter(0x7f)),
            ("u@[192.0.2.1]", AddressError::DomainCharacter('[')),
            (&long_local, AddressError::LocalPartTooLong),
            (&long_addr, AddressError::AddressTooLong),
        ];
        for (input, want) in cases {
            assert_eq!(Address::try_from(*input).unwrap_err(), *want, "{input:?}");
        }
    }

    #[test]
    fn crlf_in_address_is_unconstructible() {
        for bad in [
            "a\r\nRCPT TO:<x@evil.com>@b.com",
            "a@b.com\r\nDATA",
            "\"a\r\n\"@b.com",
            "a@b\0.com",
        ] {
            assert!(Address::try_from(bad).is_err(), "{bad:?}");
        }
        let d = Domain::try_from("b.com").unwrap();
        assert!(Address::new("a\nb", d).is_err());
    }

    #[test]
    fn address_equality() {
        let a = Address::try_from("User@Example.com").unwrap();
        let b = Address::try_from("User@example.COM").unwrap();
        let c = Address::try_from("user@example.com").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.eq_ignore_case(&c));
        assert_eq!(a.dedup_key(), "user@example.com");
        let moved = a
            .with_domain(&Domain::try_from("domain.net").unwrap())
            .unwrap();
        assert_eq!(moved.to_string(), "User@domain.net");
    }
}

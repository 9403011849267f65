//! Validated mail types: values that cannot carry CR, LF, NUL or exceed their RFC limits.
//!
//! Every type here follows the same contract: `TryFrom<&str>` validates, `as_str()` reads and
//! `Display` writes the wire form. Anything a caller passes into a command goes through one of
//! these types, so a CR/LF/NUL injection into an SMTP command is unrepresentable.
//!
//! | Type | Grammar | Limit |
//! |------|---------|-------|
//! | [`Domain`] | RFC 5321 §4.1.2 `Domain / address-literal`, RFC 6531 U-labels | 255 octets, labels 63 |
//! | [`LocalPart`] | RFC 5321 §4.1.2 `Dot-string / Quoted-string` | 64 octets (wire form) |
//! | [`Mailbox`] | `Local-part "@" ( Domain / address-literal )` | 254 octets |
//! | [`ReversePath`] | `"<>" / Path` | |
//! | [`ForwardPath`] | `"<Postmaster>" / Path` | |
//! | [`EsmtpKeyword`] | `(ALPHA / DIGIT) *(ALPHA / DIGIT / "-")` | 64 octets |
//! | [`EsmtpValue`] | `1*(%d33-60 / %d62-126)`, RFC 6531 adds UTF-8 | 510 octets |
//! | [`SmtpText`] | a free-text argument (VRFY, EXPN, HELP, NOOP) | 510 octets |
//! | [`SaslMechanism`] | RFC 4422 §3.1 `1*20(UPPER-ALPHA / DIGIT / "-" / "_")` | 20 octets |
//! | [`AuthInitialResponse`] | RFC 4954 §4 `base64 / "="` | 12,288 octets |
//!
//! ## Internationalised addresses
//!
//! The types accept non-ASCII UTF-8 (RFC 6531 U-labels in domains, UTF-8 in local parts and
//! ESMTP values) but never control characters. They cannot know whether the peer announced
//! SMTPUTF8, so each exposes `requires_smtputf8()`: a client must not send such a value to a
//! server that did not offer SMTPUTF8, and a server should refuse it unless the client asked
//! for SMTPUTF8 on MAIL. IDNA conversion (U-label to A-label) is deliberately not done here.
//!
//! Comparison is byte-wise on the canonical wire form; domains are case-insensitive in SMTP,
//! use [`Domain::eq_ignore_ascii_case`] where that matters.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arrayvec::ArrayString;

/// Maximum length of a [`Domain`] in octets (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Maximum length of one domain label in octets (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Maximum length of a local part in octets, wire form (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// Maximum length of a mailbox `local@domain` in octets: a path is at most 256 octets including
/// the angle brackets (RFC 5321 §4.5.3.1.3).
pub const MAX_MAILBOX_LEN: usize = 254;
/// Maximum length of an ESMTP keyword; RFC 5321 sets none, this bounds hostile input.
pub const MAX_ESMTP_KEYWORD_LEN: usize = 64;
/// Maximum length of an ESMTP value or free-text argument: what fits in a 512-octet command line.
pub const MAX_ESMTP_VALUE_LEN: usize = 510;
/// Maximum length of a SASL mechanism name (RFC 4422 §3.1).
pub const MAX_SASL_MECHANISM_LEN: usize = 20;
/// Maximum length of an AUTH command line (RFC 4954 §4), which bounds an initial response.
pub const MAX_AUTH_LINE_LEN: usize = 12_288;

/// Byte classes for the hot validation loops: one table lookup per byte.
pub(crate) mod class {
    /// RFC 5321 `atext` (ASCII part).
    pub(crate) const ATEXT: u8 = 1;
    /// Letters, digits and `-`: domain labels and ESMTP keywords.
    pub(crate) const LDH: u8 = 2;
    /// RFC 5321 `esmtp-value` (ASCII part): `%d33-60 / %d62-126`.
    pub(crate) const VALUE: u8 = 4;
    /// RFC 3461 `xchar`: `%d33-42 / %d44-60 / %d62-126`.
    pub(crate) const XCHAR: u8 = 8;

    const fn build() -> [u8; 256] {
        let mut t = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            // `i` is below 256, so the cast is exact.
            let b = i as u8;
            let mut c = 0;
            if b.is_ascii_alphanumeric() || b == b'-' {
                c |= LDH;
            }
            if b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'/'
                        | b'='
                        | b'?'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'{'
                        | b'|'
                        | b'}'
                        | b'~'
                )
            {
                c |= ATEXT;
            }
            if matches!(b, 33..=60 | 62..=126) {
                c |= VALUE;
            }
            if matches!(b, 33..=42 | 44..=60 | 62..=126) {
                c |= XCHAR;
            }
            t[i] = c;
            i += 1;
        }
        t
    }

    static TABLE: [u8; 256] = build();

    /// True when `b` is in class `flag`.
    #[inline]
    pub(crate) fn is(b: u8, flag: u8) -> bool {
        TABLE[usize::from(b)] & flag != 0
    }

    /// The number of leading bytes of `s` in class `flag`.
    #[inline]
    pub(crate) fn run(s: &[u8], flag: u8) -> usize {
        s.iter().position(|&b| !is(b, flag)).unwrap_or(s.len())
    }

    /// True when every byte of `s` is in class `flag`.
    #[inline]
    pub(crate) fn all(s: &[u8], flag: u8) -> bool {
        // A branch-free fold lets the compiler unroll; inputs are short command tokens.
        s.iter().fold(true, |ok, &b| ok & is(b, flag))
    }

    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;

    /// Bit 7 set in each byte of the result where the byte of `x` is below `n` (n <= 128).
    #[inline]
    fn less_than(x: u64, n: u8) -> u64 {
        x.wrapping_sub(LO * u64::from(n)) & !x & HI
    }

    /// Bit 7 set in each byte where the byte of `x` equals `b` (may over-report only
    /// above a true match, which is enough for an any-match test).
    #[inline]
    fn equal(x: u64, b: u8) -> u64 {
        less_than(x ^ (LO * u64::from(b)), 1)
    }

    /// An eight-byte chunk as a little-endian word.
    #[inline]
    fn load(c: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    }

    /// Scans eight bytes at a time (SWAR): true when `s` has a C0 control byte or DEL.
    /// The common line has none, so the exact position is only searched on failure.
    #[inline]
    pub(crate) fn has_control(s: &[u8]) -> bool {
        let mut chunks = s.chunks_exact(8);
        let mut acc = 0u64;
        for c in &mut chunks {
            let x = load(c);
            acc |= less_than(x, 0x20) | equal(x, 0x7f);
        }
        // The tail is padded with spaces, which match neither test.
        let x = tail_le(chunks.remainder(), b' ');
        (acc | less_than(x, 0x20) | equal(x, 0x7f)) != 0
    }

    /// The position of the first byte below 0x0e in `s` (NUL, LF and CR among them), eight
    /// bytes at a time: the lowest flagged byte of a word is exact, so no byte loop follows.
    /// For a reply line this is its CR, unless the line holds a stray control byte.
    #[inline]
    pub(crate) fn find_below_0e(s: &[u8]) -> Option<usize> {
        let mut chunks = s.chunks_exact(8);
        let mut base = 0;
        for c in &mut chunks {
            let m = less_than(load(c), 0x0e);
            if m != 0 {
                return Some(base + (m.trailing_zeros() / 8) as usize);
            }
            base += 8;
        }
        chunks
            .remainder()
            .iter()
            .position(|&b| b < 0x0e)
            .map(|i| base + i)
    }

    /// `s` (at most eight bytes) as a little-endian word with every byte OR-folded by 0x20,
    /// padded with 0x20.
    ///
    /// Setting bit 5 maps exactly `A-Z` and `a-z` onto `a-z`, and onto digits, `-` and the
    /// other bytes from 0x20 up only control bytes: for tokens without control bytes, equal
    /// words mean a case-insensitive match.
    pub(crate) const fn word(s: &[u8]) -> u64 {
        let mut w = LO * 0x20;
        let mut i = s.len();
        while i > 0 {
            i -= 1;
            w = (w << 8) | (s[i] | 0x20) as u64;
        }
        w
    }

    /// The bytes of `rest` (fewer than eight) as a little-endian word, padded with `pad`:
    /// byte `i` of the word is `rest[i]`, so a match's position survives.
    #[inline]
    fn tail_le(rest: &[u8], pad: u8) -> u64 {
        rest.iter()
            .rev()
            .fold(LO * u64::from(pad), |w, &b| (w << 8) | u64::from(b))
    }

    /// Bit 7 set in the lowest byte of `x` equal to `b`, and possibly in higher bytes (a
    /// borrow only propagates upwards), so the lowest set bit is exact.
    #[inline]
    fn first_eq(x: u64, b: u8) -> u64 {
        let v = x ^ (LO * u64::from(b));
        v.wrapping_sub(LO) & !v & HI
    }

    /// The position of the first `a` or `b` in `s`, eight bytes at a time.
    #[inline]
    pub(crate) fn find2(s: &[u8], a: u8, b: u8) -> Option<usize> {
        let mut chunks = s.chunks_exact(8);
        let mut base = 0;
        for c in &mut chunks {
            let x = load(c);
            let m = first_eq(x, a) | first_eq(x, b);
            if m != 0 {
                return Some(base + (m.trailing_zeros() / 8) as usize);
            }
            base += 8;
        }
        let rest = chunks.remainder();
        // A match in the padding lies above every byte of `rest`, so it is told apart by
        // its position whatever the padding is.
        let x = tail_le(rest, 0);
        let m = first_eq(x, a) | first_eq(x, b);
        let i = (m.trailing_zeros() / 8) as usize;
        (m != 0 && i < rest.len()).then_some(base + i)
    }

    /// Like [`has_control`] for CR, LF and NUL only (reply text may carry TAB and others,
    /// which are escaped on display instead).
    #[inline]
    pub(crate) fn has_cr_lf_nul(s: &[u8]) -> bool {
        let mut chunks = s.chunks_exact(8);
        let mut acc = 0u64;
        for c in &mut chunks {
            let x = load(c);
            acc |= equal(x, b'\r') | equal(x, b'\n') | equal(x, 0);
        }
        let x = tail_le(chunks.remainder(), b' ');
        (acc | equal(x, b'\r') | equal(x, b'\n') | equal(x, 0)) != 0
    }
}

/// A 16-byte aligned stack buffer: `str::from_utf8` checks ASCII a word pair at a time only
/// from an aligned address and goes byte by byte elsewhere, so short values are validated
/// here, zero-padded to a whole number of 16-byte blocks, instead of where they lie.
#[repr(align(16))]
pub(crate) struct Scratch<const N: usize>(pub(crate) [u8; N]);

impl<const N: usize> Scratch<N> {
    /// A zeroed buffer.
    #[inline]
    pub(crate) fn new() -> Self {
        Scratch([0; N])
    }

    /// The first `len` bytes as an inline string, `None` if they are not UTF-8 (or `len`
    /// exceeds `N`). The zero padding is ASCII, so a valid prefix ends on a character boundary.
    #[inline]
    pub(crate) fn inline_str(&self, len: usize) -> Option<ArrayString<N>> {
        // Only the blocks that hold the value: the padding is ASCII anyway.
        let blocks = self.0.get(..(len + 15) & !15).unwrap_or(&self.0);
        let s = std::str::from_utf8(blocks).ok()?.get(..len)?;
        ArrayString::from(s).ok()
    }
}

/// The longest value a [`Shared`] stores inline. Most mailboxes, domains, ENVIDs and keywords
/// fit, so parsing a command allocates nothing for them.
pub(crate) const SHARED_INLINE: usize = 48;

/// An immutable string: inline when short, else a range of a shared buffer.
///
/// Short values (the common mailbox, domain, ENVID, keyword) are stored inline, which costs no
/// allocation; a longer value holds a range of an `Arc<str>` that a value it was cut from (a
/// mailbox and its domain) may share. Equality, ordering and hashing are those of the string,
/// never of the storage.
#[derive(Clone)]
pub(crate) enum Shared {
    /// At most [`SHARED_INLINE`] octets.
    Inline(ArrayString<SHARED_INLINE>),
    /// `buf[start..end]`, on character boundaries.
    Range {
        /// The buffer, possibly shared with other values.
        buf: Arc<str>,
        /// Start offset in `buf`.
        start: u32,
        /// End offset in `buf`.
        end: u32,
    },
}

impl Shared {
    /// A value of its own: inline when short, else in a buffer of its own.
    #[inline]
    pub(crate) fn new(s: &str) -> Shared {
        match ArrayString::from(s) {
            Ok(a) => Shared::Inline(a),
            Err(_) => {
                let buf: Arc<str> = Arc::from(s);
                Shared::range(&buf, 0, s.len())
            }
        }
    }

    /// A value from bytes the caller's scan accepted as ASCII; `None` if they are not UTF-8
    /// after all. A short value is validated in an aligned stack buffer (see [`Scratch`]) and
    /// stored inline.
    #[inline]
    pub(crate) fn from_ascii(b: &[u8]) -> Option<Shared> {
        if b.len() > SHARED_INLINE {
            return std::str::from_utf8(b).ok().map(Shared::new);
        }
        let mut scratch = Scratch::<SHARED_INLINE>::new();
        scratch.0.get_mut(..b.len())?.copy_from_slice(b);
        scratch.inline_str(b.len()).map(Shared::Inline)
    }

    /// `buf[start..end]`, sharing `buf`. Every validated value is far below 4 GiB (the longest,
    /// an AUTH initial response, is bounded by a 12,288-octet line), so the offsets fit in u32;
    /// an out-of-range or non-boundary range reads as empty rather than panicking.
    pub(crate) fn range(buf: &Arc<str>, start: usize, end: usize) -> Shared {
        match (u32::try_from(start), u32::try_from(end)) {
            (Ok(start), Ok(end)) => Shared::Range {
                buf: Arc::clone(buf),
                start,
                end,
            },
            _ => Shared::Inline(ArrayString::new()),
        }
    }

    /// `self[start..end]`: inline when short, else sharing the buffer. Out of range or off a
    /// character boundary reads as empty, as in [`Shared::range`].
    pub(crate) fn sub(&self, start: usize, end: usize) -> Shared {
        let end = end.min(self.len());
        match self {
            Shared::Range {
                buf, start: base, ..
            } if end.saturating_sub(start) > SHARED_INLINE => {
                let base = *base as usize;
                Shared::range(buf, base + start, base + end)
            }
            _ => Shared::new(self.as_str().get(start..end).unwrap_or_default()),
        }
    }

    /// The string.
    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Shared::Inline(s) => s.as_str(),
            // Invariant: constructed on character boundaries inside `buf`.
            Shared::Range { buf, start, end } => {
                buf.get(*start as usize..*end as usize).unwrap_or_default()
            }
        }
    }
}

impl From<&str> for Shared {
    fn from(s: &str) -> Shared {
        Shared::new(s)
    }
}

impl std::ops::Deref for Shared {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Shared {
    fn eq(&self, other: &Shared) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Shared {}

impl PartialOrd for Shared {
    fn partial_cmp(&self, other: &Shared) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Shared {
    fn cmp(&self, other: &Shared) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Shared {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Why a [`Domain`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The domain is empty.
    #[error("empty domain")]
    Empty,
    /// The domain is longer than 255 octets.
    #[error("domain is {len} octets, more than 255")]
    TooLong {
        /// Length of the rejected domain.
        len: usize,
    },
    /// A label is empty (leading, trailing or doubled dot).
    #[error("empty domain label")]
    EmptyLabel,
    /// A label is longer than 63 octets.
    #[error("domain label is {len} octets, more than 63")]
    LabelTooLong {
        /// Length of the rejected label.
        len: usize,
    },
    /// A label starts or ends with a hyphen.
    #[error("domain label starts or ends with '-'")]
    HyphenAtLabelEdge,
    /// A character not allowed in a domain (control characters, space, punctuation).
    #[error("invalid character {0:?} in domain")]
    InvalidCharacter(char),
    /// A `[...]` address literal that is not IPv4, `IPv6:...` or a general literal.
    #[error("invalid address literal")]
    InvalidAddressLiteral,
}

/// A domain or address literal as it appears in SMTP (RFC 5321 §4.1.2, §4.1.3).
///
/// ```text
/// Domain         = sub-domain *("." sub-domain)
/// sub-domain     = Let-dig [Ldh-str]          ; RFC 6531 adds =/ U-label
/// address-literal  = "[" ( IPv4-address-literal / IPv6-address-literal /
///                          General-address-literal ) "]"
/// ```
///
/// U-labels (non-ASCII UTF-8, RFC 6531) are accepted: see [`Domain::requires_smtputf8`].
/// The value is kept as written (case preserved).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(pub(crate) Shared);

fn is_ldh_label(label: &str) -> Result<(), DomainError> {
    if label.is_empty() {
        return Err(DomainError::EmptyLabel);
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(DomainError::LabelTooLong { len: label.len() });
    }
    for c in label.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && !c.is_control());
        // Non-ASCII whitespace would make the label ambiguous in logs and headers.
        if !ok || c.is_whitespace() {
            return Err(DomainError::InvalidCharacter(c));
        }
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(DomainError::HyphenAtLabelEdge);
    }
    Ok(())
}

fn validate_address_literal(s: &str) -> Result<(), DomainError> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or(DomainError::InvalidAddressLiteral)?;
    if let Some(c) = inner.chars().find(|c| c.is_control() || *c == ' ') {
        return Err(DomainError::InvalidCharacter(c));
    }
    // Compared as bytes: slicing the str at 5 could split a multi-byte character.
    if inner.len() > 5 && inner.as_bytes()[..5].eq_ignore_ascii_case(b"IPv6:") {
        return inner[5..]
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| DomainError::InvalidAddressLiteral);
    }
    if let Some((tag, content)) = inner.split_once(':') {
        // General-address-literal = Standardized-tag ":" 1*dcontent
        let tag_ok = !tag.is_empty()
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !tag.ends_with('-')
            && !tag.starts_with('-');
        let content_ok =
            !content.is_empty() && content.bytes().all(|b| matches!(b, 33..=90 | 94..=126));
        return if tag_ok && content_ok {
            Ok(())
        } else {
            Err(DomainError::InvalidAddressLiteral)
        };
    }
    inner
        .parse::<Ipv4Addr>()
        .map(|_| ())
        .map_err(|_| DomainError::InvalidAddressLiteral)
}

/// Scans a domain at the start of `s` up to the first byte that cannot continue it, validating
/// as it goes. Returns the domain's length.
pub(crate) fn domain_prefix(s: &str) -> Result<usize, DomainError> {
    let b = s.as_bytes();
    if b.first() == Some(&b'[') {
        let end = memchr::memchr(b']', b).map_or(b.len(), |i| i + 1);
        validate_domain(&s[..end])?;
        return Ok(end);
    }
    if b.first()
        .is_none_or(|&c| !class::is(c, class::LDH) && c != b'.' && c < 0x80)
    {
        return Err(DomainError::Empty);
    }
    // One tight loop per label; the rare non-ASCII domain takes the char-wise path.
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && class::is(b[i], class::LDH) {
            i += 1;
        }
        if i < b.len() && b[i] >= 0x80 {
            return unicode_domain_prefix(s);
        }
        check_ascii_label(&b[start..i])?;
        if i < b.len() && b[i] == b'.' {
            i += 1;
        } else {
            break;
        }
    }
    if i > MAX_DOMAIN_LEN {
        return Err(DomainError::TooLong { len: i });
    }
    Ok(i)
}

/// [`domain_prefix`] for domains with U-labels.
fn unicode_domain_prefix(s: &str) -> Result<usize, DomainError> {
    let end = s
        .bytes()
        .position(|c| !(class::is(c, class::LDH) || c == b'.' || c >= 0x80))
        .unwrap_or(s.len());
    if end > MAX_DOMAIN_LEN {
        return Err(DomainError::TooLong { len: end });
    }
    // `end` is at an ASCII byte or the end, so it is a character boundary.
    s[..end].split('.').try_for_each(is_ldh_label)?;
    Ok(end)
}

pub(crate) fn validate_domain(s: &str) -> Result<(), DomainError> {
    if s.is_empty() {
        return Err(DomainError::Empty);
    }
    if s.len() > MAX_DOMAIN_LEN {
        return Err(DomainError::TooLong { len: s.len() });
    }
    if s.starts_with('[') {
        return validate_address_literal(s);
    }
    let end = domain_prefix(s)?;
    match s[end..].chars().next() {
        None => Ok(()),
        Some(c) => Err(DomainError::InvalidCharacter(c)),
    }
}

/// The fast path of [`domain_prefix`] for an all-ASCII LDH domain: the domain's length, or
/// `None` when [`domain_prefix`] must decide (a literal, a U-label, or any error). Whenever it
/// returns `Some(n)`, `domain_prefix` returns `Ok(n)` on the same input.
#[inline]
pub(crate) fn ascii_domain_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let start = i;
        i += class::run(&b[i..], class::LDH);
        match &b[start..i] {
            [] | [b'-', ..] | [.., b'-'] => return None,
            l if l.len() > MAX_LABEL_LEN => return None,
            _ => {}
        }
        match b.get(i) {
            Some(b'.') => i += 1,
            // A U-label: the general scan validates it character by character.
            Some(&c) if c >= 0x80 => return None,
            _ => break,
        }
    }
    (i <= MAX_DOMAIN_LEN).then_some(i)
}

fn check_ascii_label(label: &[u8]) -> Result<(), DomainError> {
    match label {
        [] => Err(DomainError::EmptyLabel),
        l if l.len() > MAX_LABEL_LEN => Err(DomainError::LabelTooLong { len: l.len() }),
        [b'-', ..] | [.., b'-'] => Err(DomainError::HyphenAtLabelEdge),
        // Non-ASCII labels are validated afterwards by `is_ldh_label`.
        _ => Ok(()),
    }
}

impl Domain {
    /// The domain as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// True for an address literal such as `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
    pub fn is_address_literal(&self) -> bool {
        self.0.starts_with('[')
    }

    /// True when the domain has non-ASCII U-labels, which need SMTPUTF8 (RFC 6531).
    pub fn requires_smtputf8(&self) -> bool {
        !self.0.is_ascii()
    }

    /// Case-insensitive comparison, as SMTP compares domains (RFC 5321 §2.4).
    pub fn eq_ignore_ascii_case(&self, other: &Domain) -> bool {
        self.0.eq_ignore_ascii_case(other.as_str())
    }
}

impl Domain {
    /// A domain already validated by [`ascii_domain_len`] or [`validate_domain`].
    pub(crate) fn from_validated(s: Shared) -> Domain {
        debug_assert_eq!(validate_domain(&s), Ok(()));
        Domain(s)
    }
}

impl TryFrom<&str> for Domain {
    type Error = DomainError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        validate_domain(s)?;
        Ok(Domain(Shared::new(s)))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a [`LocalPart`], [`Mailbox`] or path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The local part is empty (`""` is grammatical but never a real mailbox).
    #[error("empty local part")]
    EmptyLocalPart,
    /// The local part is longer than 64 octets in wire form.
    #[error("local part is {len} octets, more than 64")]
    LocalPartTooLong {
        /// Wire length of the rejected local part.
        len: usize,
    },
    /// A character that cannot appear in a local part even quoted (controls, CR, LF, NUL).
    #[error("invalid character {0:?} in local part")]
    InvalidLocalPartCharacter(char),
    /// A local part that is neither a dot-string nor a well-formed quoted string.
    #[error("malformed local part")]
    MalformedLocalPart,
    /// The mailbox has no `@` separating local part and domain.
    #[error("missing '@' in mailbox")]
    MissingAt,
    /// The domain part is invalid.
    #[error("invalid domain: {0}")]
    Domain(#[from] DomainError),
    /// The mailbox is longer than 254 octets.
    #[error("mailbox is {len} octets, more than 254")]
    MailboxTooLong {
        /// Length of the rejected mailbox.
        len: usize,
    },
    /// A path is not enclosed in `<` and `>`.
    #[error("path not enclosed in angle brackets")]
    MissingAngleBrackets,
    /// A source route (`@a,@b:`) is malformed.
    #[error("malformed source route")]
    MalformedSourceRoute,
    /// A null path `<>` where a mailbox is required.
    #[error("null path where a mailbox is required")]
    NullPath,
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

/// True when `s` is a valid Dot-string: `Atom *("." Atom)`.
fn is_dot_string(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b[0] == b'.' || b[b.len() - 1] == b'.' {
        return false;
    }
    let mut prev_dot = false;
    let mut ascii = true;
    for &c in b {
        if c == b'.' {
            if prev_dot {
                return false;
            }
            prev_dot = true;
        } else if class::is(c, class::ATEXT) {
            prev_dot = false;
        } else if c >= 0x80 {
            prev_dot = false;
            ascii = false;
        } else {
            return false;
        }
    }
    // Multi-byte sequences were accepted byte-wise; reject non-ASCII controls and spaces.
    ascii
        || s.chars()
            .all(|c| c.is_ascii() || is_atext(c) && !c.is_whitespace())
}

fn quoted_len(value: &str) -> usize {
    2 + value.len() + value.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
}

fn write_quoted(value: &str, out: &mut String) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A local part (RFC 5321 §4.1.2), stored as its value: `"john doe"` is kept as `john doe`.
///
/// ```text
/// Local-part     = Dot-string / Quoted-string
/// Dot-string     = Atom *("."  Atom)
/// Quoted-string  = DQUOTE *QcontentSMTP DQUOTE
/// QcontentSMTP   = qtextSMTP / quoted-pairSMTP   ; printable ASCII, RFC 6531 adds UTF-8
/// ```
///
/// `TryFrom<&str>` takes the value (unquoted); [`LocalPart::parse_wire`] takes the wire form.
/// `Display` writes the wire form, quoting only when the value is not a Dot-string. The 64-octet
/// limit applies to the wire form. The percent hack (`user%host`) and bang paths (`host!user`)
/// are ordinary Dot-strings here: refusing to relay them is the server's policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalPart(String);

fn validate_local_value(value: &str) -> Result<bool, AddressError> {
    if value.is_empty() {
        return Err(AddressError::EmptyLocalPart);
    }
    if is_dot_string(value) {
        if value.len() > MAX_LOCAL_PART_LEN {
            return Err(AddressError::LocalPartTooLong { len: value.len() });
        }
        return Ok(false);
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(AddressError::InvalidLocalPartCharacter(c));
    }
    let len = quoted_len(value);
    if len > MAX_LOCAL_PART_LEN {
        return Err(AddressError::LocalPartTooLong { len });
    }
    Ok(true)
}

/// Decodes a Quoted-string (with the quotes) into its value.
fn unquote(wire: &str) -> Result<String, AddressError> {
    let inner = wire
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or(AddressError::MalformedLocalPart)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if !e.is_control() => out.push(e),
                Some(e) => return Err(AddressError::InvalidLocalPartCharacter(e)),
                None => return Err(AddressError::MalformedLocalPart),
            },
            '"' => return Err(AddressError::MalformedLocalPart),
            c if c.is_control() => return Err(AddressError::InvalidLocalPartCharacter(c)),
            c => out.push(c),
        }
    }
    Ok(out)
}

impl LocalPart {
    /// Parses the wire form: a Dot-string, or a Quoted-string with its quotes.
    pub fn parse_wire(wire: &str) -> Result<Self, AddressError> {
        if wire.starts_with('"') {
            let value = unquote(wire)?;
            validate_local_value(&value)?;
            Ok(LocalPart(value))
        } else if is_dot_string(wire) {
            validate_local_value(wire)?;
            Ok(LocalPart(wire.to_owned()))
        } else {
            match wire.chars().find(|c| c.is_control()) {
                Some(c) => Err(AddressError::InvalidLocalPartCharacter(c)),
                None if wire.is_empty() => Err(AddressError::EmptyLocalPart),
                None => Err(AddressError::MalformedLocalPart),
            }
        }
    }

    /// The value, unquoted.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the wire form must be a Quoted-string (the value is not a Dot-string).
    pub fn needs_quoting(&self) -> bool {
        !is_dot_string(&self.0)
    }

    /// True when the value has non-ASCII characters, which need SMTPUTF8 (RFC 6531).
    pub fn requires_smtputf8(&self) -> bool {
        !self.0.is_ascii()
    }

    fn write_wire(&self, out: &mut String) {
        if self.needs_quoting() {
            write_quoted(&self.0, out);
        } else {
            out.push_str(&self.0);
        }
    }
}

impl TryFrom<&str> for LocalPart {
    type Error = AddressError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        validate_local_value(value)?;
        Ok(LocalPart(value.to_owned()))
    }
}

impl fmt::Display for LocalPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.needs_quoting() {
            let mut s = String::with_capacity(quoted_len(&self.0));
            write_quoted(&self.0, &mut s);
            f.write_str(&s)
        } else {
            f.write_str(&self.0)
        }
    }
}

/// A mailbox `local@domain` (RFC 5321 §4.1.2), stored in canonical wire form.
///
/// ```text
/// Mailbox        = Local-part "@" ( Domain / address-literal )
/// ```
///
/// `TryFrom<&str>` parses the wire form (a quoted local part may contain `@`). The canonical form
/// quotes the local part only when needed, so `"john"@example.org` becomes `john@example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox {
    wire: Shared,
    /// Index of the `@` that separates local part and domain.
    at: usize,
}

impl Mailbox {
    /// Joins a local part and a domain; fails if the result exceeds 254 octets.
    pub fn new(local: &LocalPart, domain: &Domain) -> Result<Self, AddressError> {
        let mut wire = String::with_capacity(local.0.len() + domain.0.len() + 3);
        local.write_wire(&mut wire);
        let at = wire.len();
        wire.push('@');
        wire.push_str(&domain.0);
        if wire.len() > MAX_MAILBOX_LEN {
            return Err(AddressError::MailboxTooLong { len: wire.len() });
        }
        Ok(Mailbox {
            wire: Shared::new(&wire),
            at,
        })
    }

    /// The canonical wire form `local@domain`.
    pub fn as_str(&self) -> &str {
        self.wire.as_str()
    }

    /// The local part in wire form (quoted if needed).
    pub fn local_part_wire(&self) -> &str {
        &self.wire[..self.at]
    }

    /// The local part as a value (unquoted). Allocates.
    pub fn local_part(&self) -> LocalPart {
        let w = self.local_part_wire();
        // Invariant: the wire form was validated on construction, so unquoting cannot fail.
        let value = if w.starts_with('"') {
            unquote(w).unwrap_or_default()
        } else {
            w.to_owned()
        };
        LocalPart(value)
    }

    /// The domain part as written.
    pub fn domain_str(&self) -> &str {
        &self.wire[self.at + 1..]
    }

    /// The domain part. Shares the mailbox's buffer: no allocation.
    pub fn domain(&self) -> Domain {
        Domain(self.wire.sub(self.at + 1, self.wire.len()))
    }

    /// True when local part or domain is non-ASCII, which needs SMTPUTF8 (RFC 6531).
    pub fn requires_smtputf8(&self) -> bool {
        !self.wire.is_ascii()
    }

    /// Parses a mailbox from the start of `s`, returning it and the rest after it.
    ///
    /// The mailbox ends at the first byte that cannot continue the domain (`>`, SP, ...).
    pub(crate) fn parse_prefix(s: &str) -> Result<(Mailbox, &str), AddressError> {
        let b = s.as_bytes();
        // Local part: a Quoted-string runs to its closing quote, a Dot-string to the '@'.
        let mut dot_string_ok = false;
        let local_end = if b.first() == Some(&b'"') {
            let mut i = 1;
            loop {
                match b.get(i) {
                    Some(b'\\') => i += 2,
                    Some(b'"') => break i + 1,
                    Some(_) => i += 1,
                    None => return Err(AddressError::MalformedLocalPart),
                }
            }
        } else {
            // Dot-string: atext and dots up to the '@', checked in the same pass; `plain` stays
            // true for ASCII without leading, trailing or doubled dots.
            let mut i = 0;
            let mut prev_dot = true;
            let mut plain = true;
            while i < b.len() {
                let c = b[i];
                if class::is(c, class::ATEXT) {
                    prev_dot = false;
                } else if c == b'.' {
                    plain &= !prev_dot;
                    prev_dot = true;
                } else if c >= 0x80 {
                    plain = false;
                } else {
                    break;
                }
                i += 1;
            }
            plain &= !prev_dot;
            dot_string_ok = plain;
            match b.get(i) {
                Some(b'@') => i,
                None | Some(b' ' | b'>') => return Err(AddressError::MissingAt),
                Some(&c) if c < 0x20 || c == 0x7f => {
                    return Err(AddressError::InvalidLocalPartCharacter(char::from(c)));
                }
                Some(_) => return Err(AddressError::MalformedLocalPart),
            }
        };
        if b.get(local_end) != Some(&b'@') {
            return Err(AddressError::MissingAt);
        }
        let local_wire = &s[..local_end];
        let rest = &s[local_end + 1..];
        let dom_end = domain_prefix(rest)?;
        let domain = &rest[..dom_end];
        let mailbox = if local_wire.starts_with('"') {
            let local = LocalPart::parse_wire(local_wire)?;
            Mailbox::new(&local, &Domain(Shared::new(domain)))?
        } else {
            if !(dot_string_ok || is_dot_string(local_wire)) {
                return Err(match local_wire.chars().find(|c| c.is_control()) {
                    Some(c) => AddressError::InvalidLocalPartCharacter(c),
                    None if local_wire.is_empty() => AddressError::EmptyLocalPart,
                    None => AddressError::MalformedLocalPart,
                });
            }
            if local_wire.len() > MAX_LOCAL_PART_LEN {
                return Err(AddressError::LocalPartTooLong {
                    len: local_wire.len(),
                });
            }
            let len = local_end + 1 + dom_end;
            if len > MAX_MAILBOX_LEN {
                return Err(AddressError::MailboxTooLong { len });
            }
            Mailbox {
                wire: Shared::new(&s[..len]),
                at: local_end,
            }
        };
        Ok((mailbox, &rest[dom_end..]))
    }
}

impl Mailbox {
    /// The fast path of [`Mailbox::parse_prefix`] for the common mailbox: an ASCII Dot-string
    /// local part and an ASCII LDH domain. Returns the offset of the `@` and the mailbox's
    /// length in `b`, or `None` when the general parser must decide (quoting, U-labels,
    /// literals, and every error). Every byte it accepts is printable ASCII.
    #[inline]
    pub(crate) fn plain_prefix_len(b: &[u8]) -> Option<(usize, usize)> {
        // Dot-string = Atom *("." Atom): one tight loop per atom; an empty atom is a leading,
        // trailing or doubled dot, or an empty local part.
        let mut i = 0;
        loop {
            let start = i;
            i += class::run(&b[i..], class::ATEXT);
            if i == start {
                return None;
            }
            match b.get(i) {
                Some(b'.') => i += 1,
                Some(b'@') => break,
                _ => return None,
            }
        }
        if i > MAX_LOCAL_PART_LEN {
            return None;
        }
        let len = i + 1 + ascii_domain_len(b.get(i + 1..)?)?;
        (len <= MAX_MAILBOX_LEN).then_some((i, len))
    }

    /// A mailbox from a buffer already validated by [`Mailbox::plain_prefix_len`] or
    /// [`Mailbox::parse_prefix`], with its `@` at `at`.
    pub(crate) fn from_validated(wire: Shared, at: usize) -> Mailbox {
        debug_assert!(Mailbox::try_from(wire.as_str()).is_ok_and(|m| m.as_str() == &*wire));
        Mailbox { wire, at }
    }
}

impl TryFrom<&str> for Mailbox {
    type Error = AddressError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let (m, rest) = Mailbox::parse_prefix(s)?;
        match rest.chars().next() {
            None => Ok(m),
            Some(c) => Err(AddressError::Domain(DomainError::InvalidCharacter(c))),
        }
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.wire)
    }
}

/// Parses `"<" [ A-d-l ":" ] Mailbox ">"` from the start of `s` (RFC 5321 §4.1.2).
///
/// A source route (`@a,@b:`) is accepted, as RFC 5321 §4.1.2 requires, and dropped.
/// `Ok(None)` is the null path `<>`. Returns the rest after `>`.
pub(crate) fn parse_path_prefix(s: &str) -> Result<(Option<Mailbox>, &str), AddressError> {
    let Some(mut inner) = s.strip_prefix('<') else {
        return Err(AddressError::MissingAngleBrackets);
    };
    if let Some(rest) = inner.strip_prefix('>') {
        return Ok((None, rest));
    }
    if inner.starts_with('@') {
        // A-d-l = At-domain *( "," At-domain ) ; At-domain = "@" Domain
        let colon = inner.find(':').ok_or(AddressError::MalformedSourceRoute)?;
        let route = &inner[..colon];
        for hop in route.split(',') {
            let d = hop
                .strip_prefix('@')
                .ok_or(AddressError::MalformedSourceRoute)?;
            validate_domain(d).map_err(|_| AddressError::MalformedSourceRoute)?;
        }
        inner = &inner[colon + 1..];
    }
    let (mailbox, rest) = Mailbox::parse_prefix(inner)?;
    let rest = rest
        .strip_prefix('>')
        .ok_or(AddressError::MissingAngleBrackets)?;
    Ok((Some(mailbox), rest))
}

/// The MAIL FROM argument: the null path `<>` or a mailbox (RFC 5321 §4.1.2).
///
/// ```text
/// Reverse-path   = Path / "<>"
/// Path           = "<" [ A-d-l ":" ] Mailbox ">"
/// ```
///
/// `TryFrom<&str>` takes the bracketed form; a source route is accepted and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: bounces and other messages that must not be answered.
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox),
}

impl ReversePath {
    /// The address without brackets; empty for the null path.
    pub fn as_str(&self) -> &str {
        match self {
            ReversePath::Null => "",
            ReversePath::Mailbox(m) => m.as_str(),
        }
    }

    /// The mailbox, if not null.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => Some(m),
        }
    }

    /// True when the mailbox is non-ASCII.
    pub fn requires_smtputf8(&self) -> bool {
        self.mailbox().is_some_and(Mailbox::requires_smtputf8)
    }
}

impl TryFrom<&str> for ReversePath {
    type Error = AddressError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let (m, rest) = parse_path_prefix(s)?;
        if !rest.is_empty() {
            return Err(AddressError::MissingAngleBrackets);
        }
        Ok(m.map_or(ReversePath::Null, ReversePath::Mailbox))
    }
}

impl From<Mailbox> for ReversePath {
    fn from(m: Mailbox) -> Self {
        ReversePath::Mailbox(m)
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.as_str())
    }
}

/// The RCPT TO argument: a mailbox or the special `<Postmaster>` (RFC 5321 §4.1.1.3).
///
/// ```text
/// Forward-path   = Path
/// Rcpt-parameter = "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path
/// ```
///
/// `<Postmaster>` is matched case-insensitively; `<Postmaster@domain>` is an ordinary mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain: the server's own postmaster.
    Postmaster,
    /// A recipient mailbox.
    Mailbox(Mailbox),
}

impl ForwardPath {
    /// The address without brackets (`Postmaster` for the bare postmaster).
    pub fn as_str(&self) -> &str {
        match self {
            ForwardPath::Postmaster => "Postmaster",
            ForwardPath::Mailbox(m) => m.as_str(),
        }
    }

    /// True when the mailbox is non-ASCII.
    pub fn requires_smtputf8(&self) -> bool {
        matches!(self, ForwardPath::Mailbox(m) if m.requires_smtputf8())
    }

    pub(crate) fn parse_prefix(s: &str) -> Result<(ForwardPath, &str), AddressError> {
        // Compared as bytes: slicing the str at 12 could split a multi-byte character.
        if s.len() >= 12 && s.as_bytes()[..12].eq_ignore_ascii_case(b"<Postmaster>") {
            return Ok((ForwardPath::Postmaster, &s[12..]));
        }
        match parse_path_prefix(s)? {
            (Some(m), rest) => Ok((ForwardPath::Mailbox(m), rest)),
            (None, _) => Err(AddressError::NullPath),
        }
    }
}

impl TryFrom<&str> for ForwardPath {
    type Error = AddressError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let (p, rest) = ForwardPath::parse_prefix(s)?;
        if !rest.is_empty() {
            return Err(AddressError::MissingAngleBrackets);
        }
        Ok(p)
    }
}

impl From<Mailbox> for ForwardPath {
    fn from(m: Mailbox) -> Self {
        ForwardPath::Mailbox(m)
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.as_str())
    }
}

/// Why an ESMTP keyword, ESMTP value, text argument or SASL item was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The value is empty.
    #[error("empty value")]
    Empty,
    /// The value is longer than its limit.
    #[error("value is {len} octets, more than {max}")]
    TooLong {
        /// Length of the rejected value.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character not allowed here (CR, LF, NUL and other controls never are).
    #[error("invalid character {0:?}")]
    InvalidCharacter(char),
    /// Base64 with a misplaced `=` or a length that is not a multiple of 4.
    #[error("malformed base64")]
    MalformedBase64,
}

fn check_len(s: &str, max: usize) -> Result<(), TokenError> {
    if s.is_empty() {
        return Err(TokenError::Empty);
    }
    if s.len() > max {
        return Err(TokenError::TooLong { len: s.len(), max });
    }
    Ok(())
}

fn first_bad(s: &str, ok: impl Fn(char) -> bool) -> Result<(), TokenError> {
    match s.chars().find(|&c| !ok(c)) {
        Some(c) => Err(TokenError::InvalidCharacter(c)),
        None => Ok(()),
    }
}

macro_rules! string_newtype_common {
    ($t:ident) => {
        impl $t {
            /// The value as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<&str> for $t {
            type Error = TokenError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::validate(s)?;
                Ok($t(s.into()))
            }
        }
    };
}

/// An ESMTP parameter or EHLO keyword (RFC 5321 §4.1.2), case preserved.
///
/// ```text
/// esmtp-keyword  = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EsmtpKeyword(Shared);

impl EsmtpKeyword {
    pub(crate) fn validate(s: &str) -> Result<(), TokenError> {
        check_len(s, MAX_ESMTP_KEYWORD_LEN)?;
        let b = s.as_bytes();
        if b[0] != b'-' && class::all(b, class::LDH) {
            return Ok(());
        }
        if let Some(c) = s.chars().next().filter(|c| !c.is_ascii_alphanumeric()) {
            return Err(TokenError::InvalidCharacter(c));
        }
        first_bad(s, |c| c.is_ascii_alphanumeric() || c == '-')
    }

    /// Case-insensitive comparison with a keyword name (keywords are case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.0.eq_ignore_ascii_case(name)
    }

    /// A keyword already validated by a byte scan equivalent to [`EsmtpKeyword::validate`].
    pub(crate) fn from_validated(s: Shared) -> EsmtpKeyword {
        debug_assert_eq!(Self::validate(&s), Ok(()));
        EsmtpKeyword(s)
    }
}
string_newtype_common!(EsmtpKeyword);

/// An ESMTP parameter value (RFC 5321 §4.1.2; RFC 6531 §3.3 adds UTF-8).
///
/// ```text
/// esmtp-value    = 1*(%d33-60 / %d62-126)   ; any CHAR excluding "=", SP, and controls
/// esmtp-value    =/ UTF8-non-ascii           ; RFC 6531, needs SMTPUTF8
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EsmtpValue(Shared);

impl EsmtpValue {
    pub(crate) fn validate(s: &str) -> Result<(), TokenError> {
        check_len(s, MAX_ESMTP_VALUE_LEN)?;
        if class::all(s.as_bytes(), class::VALUE) {
            return Ok(());
        }
        first_bad(s, |c| {
            matches!(c as u32, 33..=60 | 62..=126)
                || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
        })
    }

    /// True when the value is non-ASCII, which needs SMTPUTF8 (RFC 6531).
    pub fn requires_smtputf8(&self) -> bool {
        !self.0.is_ascii()
    }

    /// A value already validated by a byte scan equivalent to [`EsmtpValue::validate`].
    pub(crate) fn from_validated(s: Shared) -> EsmtpValue {
        debug_assert_eq!(Self::validate(&s), Ok(()));
        EsmtpValue(s)
    }
}
string_newtype_common!(EsmtpValue);

/// A free-text command argument (VRFY, EXPN, HELP, NOOP), 1 to 510 octets of printable text.
///
/// RFC 5321 §4.1.1 gives these `String` (Atom or Quoted-string) arguments; how to interpret them
/// is the server's business, so any printable text without control characters is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SmtpText(String);

impl SmtpText {
    pub(crate) fn validate(s: &str) -> Result<(), TokenError> {
        check_len(s, MAX_ESMTP_VALUE_LEN)?;
        first_bad(s, |c| !c.is_control())
    }
}
string_newtype_common!(SmtpText);

/// A SASL mechanism name (RFC 4422 §3.1), stored in upper case.
///
/// ```text
/// sasl-mech    = 1*20mech-char
/// mech-char    = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE
/// ```
///
/// `TryFrom<&str>` accepts lower case too (SMTP commands are case-insensitive) and upper-cases.
/// The name is stored inline (at most 20 octets), so the type is `Copy` and an EHLO reply's
/// mechanism list costs no allocation per name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaslMechanism {
    /// Upper-case ASCII name, zero-padded: equal names compare equal as whole arrays.
    name: [u8; MAX_SASL_MECHANISM_LEN],
    len: u8,
}

impl SaslMechanism {
    pub(crate) fn validate(s: &str) -> Result<(), TokenError> {
        check_len(s, MAX_SASL_MECHANISM_LEN)?;
        if s.bytes().all(|b| class::is(b, class::LDH) || b == b'_') {
            return Ok(());
        }
        first_bad(s, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }

    /// The mechanism name, upper case.
    pub fn as_str(&self) -> &str {
        // Invariant: validated ASCII, so the conversion cannot fail.
        std::str::from_utf8(&self.name[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl SaslMechanism {
    /// The mechanism named by `b` (upper-cased), validated and copied in one pass; `None`
    /// exactly where `TryFrom<&str>` fails.
    #[inline]
    pub(crate) fn from_bytes(b: &[u8]) -> Option<SaslMechanism> {
        if b.is_empty() || b.len() > MAX_SASL_MECHANISM_LEN {
            return None;
        }
        let mut name = [0u8; MAX_SASL_MECHANISM_LEN];
        let mut ok = true;
        for (d, &c) in name.iter_mut().zip(b) {
            ok &= class::is(c, class::LDH) | (c == b'_');
            *d = c.to_ascii_uppercase();
        }
        // At most 20, checked above.
        let len = u8::try_from(b.len()).ok()?;
        ok.then_some(SaslMechanism { name, len })
    }
}

impl TryFrom<&str> for SaslMechanism {
    type Error = TokenError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        // `validate` names what is wrong; what it accepts, `from_bytes` builds.
        Self::validate(s)?;
        Self::from_bytes(s.as_bytes()).ok_or(TokenError::TooLong {
            len: s.len(),
            max: MAX_SASL_MECHANISM_LEN,
        })
    }
}

impl fmt::Debug for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SaslMechanism")
            .field(&self.as_str())
            .finish()
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An AUTH initial response or SASL continuation (RFC 4954 §4): base64, or `=` for empty.
///
/// The base64 is validated (alphabet, length a multiple of 4, `=` only as trailing padding) but
/// not decoded; `*` (cancel) is not an initial response and is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthInitialResponse(String);

impl AuthInitialResponse {
    pub(crate) fn validate(s: &str) -> Result<(), TokenError> {
        check_len(s, MAX_AUTH_LINE_LEN)?;
        if s == "=" {
            return Ok(());
        }
        first_bad(s, |c| {
            c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='
        })?;
        let b = s.as_bytes();
        if !b.len().is_multiple_of(4) {
            return Err(TokenError::MalformedBase64);
        }
        let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || b[..b.len() - pad].contains(&b'=') {
            return Err(TokenError::MalformedBase64);
        }
        Ok(())
    }

    /// True for `=`, the empty initial response.
    pub fn is_empty_response(&self) -> bool {
        self.0 == "="
    }
}
string_newtype_common!(AuthInitialResponse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_known_answers() {
        let ok = [
            "example.org",
            "a",
            "mx-1.example.org",
            "123.example",
            "EXAMPLE.ORG",
            "münchen.de",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "[ipv6:::1]",
            "[IPv6:::ffff:192.0.2.1]",
            "[x-tag:some!content]",
        ];
        for d in ok {
            assert_eq!(Domain::try_from(d).unwrap().as_str(), d, "{d}");
        }
        let long_label = "a".repeat(64);
        let long_domain = ["a".repeat(63).as_str(); 5].join(".");
        let bad: &[(&str, DomainError)] = &[
            ("", DomainError::Empty),
            (".example.org", DomainError::EmptyLabel),
            ("example.org.", DomainError::EmptyLabel),
            ("a..b", DomainError::EmptyLabel),
            (&long_label, DomainError::LabelTooLong { len: 64 }),
            (&long_domain, DomainError::TooLong { len: 319 }),
            ("-a.org", DomainError::HyphenAtLabelEdge),
            ("a-.org", DomainError::HyphenAtLabelEdge),
            ("a_b.org", DomainError::InvalidCharacter('_')),
            ("a b.org", DomainError::InvalidCharacter(' ')),
            ("a\r\n.org", DomainError::InvalidCharacter('\r')),
            ("a\0.org", DomainError::InvalidCharacter('\0')),
            ("a\u{85}.org", DomainError::InvalidCharacter('\u{85}')),
            ("[192.0.2.256]", DomainError::InvalidAddressLiteral),
            ("[192.0.2.1", DomainError::InvalidAddressLiteral),
            ("[IPv6:192.0.2.1]", DomainError::InvalidAddressLiteral),
            ("[x-tag:]", DomainError::InvalidAddressLiteral),
            ("[1.2.3.4\r\n]", DomainError::InvalidCharacter('\r')),
        ];
        for (d, err) in bad {
            assert_eq!(Domain::try_from(*d).unwrap_err(), *err, "{d:?}");
        }
        let d = Domain::try_from("münchen.de").unwrap();
        assert!(d.requires_smtputf8());
        assert!(!Domain::try_from("a.de").unwrap().requires_smtputf8());
        assert!(
            Domain::try_from("[192.0.2.1]")
                .unwrap()
                .is_address_literal()
        );
        assert!(
            Domain::try_from("A.org")
                .unwrap()
                .eq_ignore_ascii_case(&Domain::try_from("a.ORG").unwrap())
        );
    }

    #[test]
    fn local_part_known_answers() {
        let cases: &[(&str, bool, &str)] = &[
            ("john", false, "john"),
            ("john.doe", false, "john.doe"),
            ("user%other", false, "user%other"),
            ("other!user", false, "other!user"),
            ("a+tag", false, "a+tag"),
            ("john doe", true, "\"john doe\""),
            ("a\"b", true, "\"a\\\"b\""),
            ("a\\b", true, "\"a\\\\b\""),
            ("a..b", true, "\"a..b\""),
            (".a", true, "\".a\""),
            ("a@b", true, "\"a@b\""),
            ("jörg", false, "jörg"),
        ];
        for (value, quoted, wire) in cases {
            let l = LocalPart::try_from(*value).unwrap();
            assert_eq!(l.needs_quoting(), *quoted, "{value}");
            assert_eq!(l.to_string(), *wire, "{value}");
            assert_eq!(LocalPart::parse_wire(wire).unwrap(), l, "{wire}");
        }
        assert_eq!(LocalPart::parse_wire("\"john\"").unwrap().as_str(), "john");
        let bad: &[(&str, AddressError)] = &[
            ("", AddressError::EmptyLocalPart),
            ("a\rb", AddressError::InvalidLocalPartCharacter('\r')),
            ("a\nb", AddressError::InvalidLocalPartCharacter('\n')),
            ("a\0b", AddressError::InvalidLocalPartCharacter('\0')),
            ("a\tb", AddressError::InvalidLocalPartCharacter('\t')),
        ];
        for (v, err) in bad {
            assert_eq!(LocalPart::try_from(*v).unwrap_err(), *err, "{v:?}");
        }
        assert_eq!(
            LocalPart::try_from("a".repeat(65).as_str()).unwrap_err(),
            AddressError::LocalPartTooLong { len: 65 }
        );
        // 62 spaces quote to 64 octets; 63 do not fit.
        assert!(LocalPart::try_from(" ".repeat(62).as_str()).is_ok());
        assert_eq!(
            LocalPart::try_from(" ".repeat(63).as_str()).unwrap_err(),
            AddressError::LocalPartTooLong { len: 65 }
        );
        let bad_wire: &[(&str, AddressError)] = &[
            ("a b", AddressError::MalformedLocalPart),
            ("\"ab", AddressError::MalformedLocalPart),
            ("\"a\"b\"", AddressError::MalformedLocalPart),
            ("\"a\\", AddressError::MalformedLocalPart),
            ("\"a\r\"", AddressError::InvalidLocalPartCharacter('\r')),
            ("\"a\\\n\"", AddressError::InvalidLocalPartCharacter('\n')),
            ("\"\"", AddressError::EmptyLocalPart),
        ];
        for (w, err) in bad_wire {
            assert_eq!(LocalPart::parse_wire(w).unwrap_err(), *err, "{w:?}");
        }
    }

    #[test]
    fn mailbox_known_answers() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("a@b.org", "a@b.org", "a", "b.org"),
            (
                "\"john doe\"@b.org",
                "\"john doe\"@b.org",
                "john doe",
                "b.org",
            ),
            ("\"john\"@b.org", "john@b.org", "john", "b.org"),
            ("\"a@b\"@c.org", "\"a@b\"@c.org", "a@b", "c.org"),
            ("a@[192.0.2.1]", "a@[192.0.2.1]", "a", "[192.0.2.1]"),
            ("jörg@münchen.de", "jörg@münchen.de", "jörg", "münchen.de"),
        ];
        for (input, wire, local, domain) in cases {
            let m = Mailbox::try_from(*input).unwrap();
            assert_eq!(m.as_str(), *wire);
            assert_eq!(m.to_string(), *wire);
            assert_eq!(m.local_part().as_str(), *local);
            assert_eq!(m.domain_str(), *domain);
            assert_eq!(m.domain().as_str(), *domain);
            assert_eq!(Mailbox::try_from(m.as_str()).unwrap(), m);
        }
        let bad: &[(&str, AddressError)] = &[
            ("ab.org", AddressError::MissingAt),
            ("@b.org", AddressError::EmptyLocalPart),
            ("a@", AddressError::Domain(DomainError::Empty)),
            (
                "a@b.org>",
                AddressError::Domain(DomainError::InvalidCharacter('>')),
            ),
            ("a@@b.org", AddressError::Domain(DomainError::Empty)),
            ("a b@c.org", AddressError::MissingAt),
            ("a.@b.org", AddressError::MalformedLocalPart),
            (
                "a@b_c.org",
                AddressError::Domain(DomainError::InvalidCharacter('_')),
            ),
        ];
        for (m, err) in bad {
            assert_eq!(Mailbox::try_from(*m).unwrap_err(), *err, "{m:?}");
        }
        let long = format!(
            "{}@{}.org",
            "a".repeat(64),
            ["b".repeat(40).as_str(); 5].join(".")
        );
        assert_eq!(
            Mailbox::try_from(long.as_str()).unwrap_err(),
            AddressError::MailboxTooLong { len: long.len() }
        );
        let l = LocalPart::try_from("x y").unwrap();
        let d = Domain::try_from("e.org").unwrap();
        assert_eq!(Mailbox::new(&l, &d).unwrap().as_str(), "\"x y\"@e.org");
    }

    #[test]
    fn crlf_in_mailbox_is_unconstructible() {
        for s in [
            "a\r\n@b.org",
            "a@b.org\r\nRCPT TO:<c@d.org>",
            "\"a\r\nb\"@c.org",
            "a@b\n.org",
        ] {
            assert!(Mailbox::try_from(s).is_err(), "{s:?}");
            assert!(
                ReversePath::try_from(format!("<{s}>").as_str()).is_err(),
                "{s:?}"
            );
            assert!(
                ForwardPath::try_from(format!("<{s}>").as_str()).is_err(),
                "{s:?}"
            );
        }
        assert_eq!(
            LocalPart::try_from("a\r\nb").unwrap_err(),
            AddressError::InvalidLocalPartCharacter('\r')
        );
        assert_eq!(
            Domain::try_from("b\n.org").unwrap_err(),
            DomainError::InvalidCharacter('\n')
        );
    }

    #[test]
    fn paths_known_answers() {
        assert_eq!(ReversePath::try_from("<>").unwrap(), ReversePath::Null);
        assert_eq!(ReversePath::Null.to_string(), "<>");
        let r = ReversePath::try_from("<a@b.org>").unwrap();
        assert_eq!(r.as_str(), "a@b.org");
        assert_eq!(r.to_string(), "<a@b.org>");
        assert_eq!(
            ForwardPath::try_from("<postMASTER>").unwrap(),
            ForwardPath::Postmaster
        );
        assert_eq!(ForwardPath::Postmaster.to_string(), "<Postmaster>");
        assert!(matches!(
            ForwardPath::try_from("<Postmaster@b.org>").unwrap(),
            ForwardPath::Mailbox(_)
        ));
        let bad: &[(&str, AddressError)] = &[
            ("a@b.org", AddressError::MissingAngleBrackets),
            ("<a@b.org", AddressError::MissingAngleBrackets),
            ("<a@b.org> x", AddressError::MissingAngleBrackets),
            ("<@a:>", AddressError::MissingAt),
            ("<@a b:c@d>", AddressError::MalformedSourceRoute),
            ("<@a,b:c@d>", AddressError::MalformedSourceRoute),
            ("<@a", AddressError::MalformedSourceRoute),
        ];
        for (p, err) in bad {
            assert_eq!(ReversePath::try_from(*p).unwrap_err(), *err, "{p:?}");
        }
        assert_eq!(
            ForwardPath::try_from("<>").unwrap_err(),
            AddressError::NullPath
        );
    }

    #[test]
    fn source_route_accepted_and_dropped() {
        let r = ReversePath::try_from("<@relay.one,@relay.two:user@example.org>").unwrap();
        assert_eq!(r.to_string(), "<user@example.org>");
        let f = ForwardPath::try_from("<@a.org:u@d.org>").unwrap();
        assert_eq!(f.as_str(), "u@d.org");
    }

    #[test]
    fn percent_hack_and_bang_path_are_local_parts() {
        let m = Mailbox::try_from("user%other.org@local.org").unwrap();
        assert_eq!(m.local_part().as_str(), "user%other.org");
        assert_eq!(m.domain_str(), "local.org");
        let m = Mailbox::try_from("other.org!user@local.org").unwrap();
        assert_eq!(m.local_part().as_str(), "other.org!user");
        assert_eq!(m.domain_str(), "local.org");
        let m = Mailbox::try_from("\"user@other.org\"@local.org").unwrap();
        assert_eq!(m.domain_str(), "local.org");
    }

    #[test]
    fn esmtp_tokens_known_answers() {
        assert_eq!(EsmtpKeyword::try_from("X-Foo1").unwrap().as_str(), "X-Foo1");
        assert!(EsmtpKeyword::try_from("SIZE").unwrap().is("size"));
        let bad_kw: &[(&str, TokenError)] = &[
            ("", TokenError::Empty),
            ("-X", TokenError::InvalidCharacter('-')),
            ("X_Y", TokenError::InvalidCharacter('_')),
            ("X=Y", TokenError::InvalidCharacter('=')),
            ("X\r\n", TokenError::InvalidCharacter('\r')),
        ];
        for (k, err) in bad_kw {
            assert_eq!(EsmtpKeyword::try_from(*k).unwrap_err(), *err, "{k:?}");
        }
        assert_eq!(
            EsmtpKeyword::try_from("A".repeat(65).as_str()).unwrap_err(),
            TokenError::TooLong { len: 65, max: 64 }
        );
        for v in ["8BITMIME", "!<>~", "a;b", "ü"] {
            assert_eq!(EsmtpValue::try_from(v).unwrap().as_str(), v);
        }
        assert!(EsmtpValue::try_from("ü").unwrap().requires_smtputf8());
        let bad_v: &[(&str, TokenError)] = &[
            ("", TokenError::Empty),
            ("a=b", TokenError::InvalidCharacter('=')),
            ("a b", TokenError::InvalidCharacter(' ')),
            ("a\tb", TokenError::InvalidCharacter('\t')),
            ("a\u{a0}b", TokenError::InvalidCharacter('\u{a0}')),
        ];
        for (v, err) in bad_v {
            assert_eq!(EsmtpValue::try_from(*v).unwrap_err(), *err, "{v:?}");
        }
    }

    #[test]
    fn nul_in_esmtp_value_is_unconstructible() {
        assert_eq!(
            EsmtpValue::try_from("a\0b").unwrap_err(),
            TokenError::InvalidCharacter('\0')
        );
        assert_eq!(
            EsmtpValue::try_from("a\r\nb").unwrap_err(),
            TokenError::InvalidCharacter('\r')
        );
        assert_eq!(
            EsmtpKeyword::try_from("a\0").unwrap_err(),
            TokenError::InvalidCharacter('\0')
        );
        assert_eq!(
            SmtpText::try_from("a\0").unwrap_err(),
            TokenError::InvalidCharacter('\0')
        );
    }

    #[test]
    fn smtp_text_and_sasl_known_answers() {
        assert_eq!(
            SmtpText::try_from("John Smith").unwrap().as_str(),
            "John Smith"
        );
        assert_eq!(
            SmtpText::try_from("a\nb").unwrap_err(),
            TokenError::InvalidCharacter('\n')
        );
        assert_eq!(SmtpText::try_from("").unwrap_err(), TokenError::Empty);
        assert_eq!(
            SaslMechanism::try_from("cram-md5").unwrap().as_str(),
            "CRAM-MD5"
        );
        assert_eq!(
            SaslMechanism::try_from("SCRAM-SHA-256")
                .unwrap()
                .to_string(),
            "SCRAM-SHA-256"
        );
        assert_eq!(
            SaslMechanism::try_from("X".repeat(21).as_str()).unwrap_err(),
            TokenError::TooLong { len: 21, max: 20 }
        );
        assert_eq!(
            SaslMechanism::try_from("PL AIN").unwrap_err(),
            TokenError::InvalidCharacter(' ')
        );
        for ok in ["=", "AGEAYg==", "dGVzdA==", "YWJj", "YWI="] {
            AuthInitialResponse::try_from(ok).unwrap();
        }
        assert!(
            AuthInitialResponse::try_from("=")
                .unwrap()
                .is_empty_response()
        );
        let bad: &[(&str, TokenError)] = &[
            ("", TokenError::Empty),
            ("*", TokenError::InvalidCharacter('*')),
            ("YWJ", TokenError::MalformedBase64),
            ("Y=Jj", TokenError::MalformedBase64),
            ("Y===", TokenError::MalformedBase64),
            ("YW\r\n", TokenError::InvalidCharacter('\r')),
        ];
        for (s, err) in bad {
            assert_eq!(
                AuthInitialResponse::try_from(*s).unwrap_err(),
                *err,
                "{s:?}"
            );
        }
    }

    #[test]
    fn swar_scans_find_every_position() {
        for len in 0..40 {
            let clean = vec![b'a'; len];
            assert!(!class::has_control(&clean), "{len}");
            assert!(!class::has_cr_lf_nul(&clean), "{len}");
            for pos in 0..len {
                for bad in [0u8, b'\r', b'\n', 0x1f, 0x7f, b'\t'] {
                    let mut v = clean.clone();
                    v[pos] = bad;
                    assert!(class::has_control(&v), "{len} {pos} {bad}");
                    assert_eq!(
                        class::has_cr_lf_nul(&v),
                        matches!(bad, 0 | b'\r' | b'\n'),
                        "{len} {pos} {bad}"
                    );
                }
                // Bytes next to the control range, and high bytes, are not controls.
                for ok in [b' ', b'~', 0x80, 0xff, 0x0d + 0x80, 0x8a] {
                    let mut v = clean.clone();
                    v[pos] = ok;
                    assert!(!class::has_control(&v), "{len} {pos} {ok}");
                    assert!(!class::has_cr_lf_nul(&v), "{len} {pos} {ok}");
                }
            }
        }
    }

    #[test]
    fn fast_and_slow_domain_paths_agree() {
        for d in [
            "a.b",
            "ab-c.d",
            "x",
            "a-.b",
            "a..b",
            "[1.2.3.4]",
            "é.b",
            "a.é-",
            "-é.b",
        ] {
            let prefix = domain_prefix(d).and_then(|n| {
                if n == d.len() {
                    Ok(())
                } else {
                    Err(DomainError::InvalidCharacter('?'))
                }
            });
            assert_eq!(prefix.is_ok(), validate_domain(d).is_ok(), "{d}");
        }
        assert_eq!(validate_domain("a.é-"), Err(DomainError::HyphenAtLabelEdge));
        assert_eq!(domain_prefix("é.b>rest"), Ok("é.b".len()));
    }
}

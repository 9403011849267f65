//! ESMTP parameters of MAIL and RCPT, and xtext (RFC 3461 §4).

use std::fmt;

use crate::types::{
    AddressError, EsmtpKeyword, EsmtpValue, MAX_ESMTP_KEYWORD_LEN, MAX_ESMTP_VALUE_LEN, Mailbox,
    Shared, TokenError, class, class::word,
};
use bytes::{BufMut, BytesMut};

/// Why an xtext string could not be decoded or an xtext value constructed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XtextError {
    /// The encoded text is empty.
    #[error("empty xtext")]
    Empty,
    /// A `+` not followed by two upper-case hex digits.
    #[error("malformed hexchar at offset {0}")]
    BadHexchar(usize),
    /// A raw byte outside `xchar` (`%d33-42 / %d44-60 / %d62-126`).
    #[error("byte {0:#04x} not allowed in xtext")]
    InvalidByte(u8),
    /// The decoded value is not UTF-8.
    #[error("decoded xtext is not UTF-8")]
    NotUtf8,
    /// The decoded value contains a control character (CR, LF, NUL, ...).
    #[error("decoded xtext contains control character {0:?}")]
    ControlCharacter(char),
    /// The value is longer than 510 octets.
    #[error("xtext value too long")]
    TooLong,
}

/// A value carried as xtext (RFC 3461 §4): ENVID, ORCPT addresses, `AUTH=` identities.
///
/// ```text
/// xtext   = *( xchar / hexchar )
/// xchar   = any ASCII CHAR between "!" (33) and "~" (126) inclusive, except "+" and "="
/// hexchar = ASCII "+" immediately followed by two upper case hexadecimal digits
/// ```
///
/// Holds the decoded value; `TryFrom<&str>` takes a decoded value, [`XText::decode`] takes the
/// wire form, `Display` writes the encoded form. Decoded values never contain control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XText(Shared);

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hexval(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_xchar(b: u8) -> bool {
    matches!(b, 33..=42 | 44..=60 | 62..=126)
}

fn check_value(s: &str) -> Result<(), XtextError> {
    if s.is_empty() {
        return Err(XtextError::Empty);
    }
    if s.len() > MAX_ESMTP_VALUE_LEN {
        return Err(XtextError::TooLong);
    }
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(XtextError::ControlCharacter(c)),
        None => Ok(()),
    }
}

impl XText {
    /// Decodes the wire form.
    pub fn decode(wire: &str) -> Result<Self, XtextError> {
        let b = wire.as_bytes();
        if b.is_empty() {
            return Err(XtextError::Empty);
        }
        if class::all(b, class::XCHAR) {
            // The same bound `check_value` puts on decoded values.
            if b.len() > MAX_ESMTP_VALUE_LEN {
                return Err(XtextError::TooLong);
            }
            return Ok(XText(Shared::new(wire)));
        }
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => {
                    let hi = b.get(i + 1).copied().and_then(hexval);
                    let lo = b.get(i + 2).copied().and_then(hexval);
                    match (hi, lo) {
                        (Some(h), Some(l)) => out.push(h << 4 | l),
                        _ => return Err(XtextError::BadHexchar(i)),
                    }
                    i += 3;
                }
                c if is_xchar(c) => {
                    out.push(c);
                    i += 1;
                }
                c => return Err(XtextError::InvalidByte(c)),
            }
        }
        let s = String::from_utf8(out).map_err(|_| XtextError::NotUtf8)?;
        check_value(&s)?;
        Ok(XText(Shared::new(&s)))
    }

    /// The decoded value.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Appends the encoded form.
    pub fn encode_into(&self, out: &mut BytesMut) {
        encode_xtext(&self.0, out);
    }
}

pub(crate) fn encode_xtext(value: &str, out: &mut BytesMut) {
    for &b in value.as_bytes() {
        if is_xchar(b) {
            out.put_u8(b);
        } else {
            out.put_slice(&[b'+', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

impl TryFrom<&str> for XText {
    type Error = XtextError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        check_value(s)?;
        Ok(XText(Shared::new(s)))
    }
}

impl fmt::Display for XText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = BytesMut::with_capacity(self.0.len());
        encode_xtext(&self.0, &mut b);
        // Invariant: xtext encoding only emits ASCII.
        f.write_str(std::str::from_utf8(&b).unwrap_or_default())
    }
}

/// Why an ESMTP parameter of MAIL or RCPT was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// Parameters are not separated by a single space or are otherwise malformed.
    #[error("malformed parameter list")]
    Malformed,
    /// The keyword is not an esmtp-keyword.
    #[error("invalid parameter keyword: {0}")]
    Keyword(TokenError),
    /// The value is not an esmtp-value.
    #[error("invalid value for {keyword}: {error}")]
    Value {
        /// The parameter's keyword.
        keyword: String,
        /// What was wrong.
        error: TokenError,
    },
    /// The same parameter given twice (RFC 5321 §4.1.2 leaves this an error).
    #[error("duplicate parameter {0}")]
    Duplicate(String),
    /// A parameter that takes a value has none (`SIZE`, `BODY`, ...).
    #[error("parameter {0} needs a value")]
    MissingValue(&'static str),
    /// A parameter that takes no value has one (`SMTPUTF8=x`).
    #[error("parameter {0} takes no value")]
    UnexpectedValue(&'static str),
    /// SIZE is not a decimal number that fits in 64 bits.
    #[error("invalid SIZE value")]
    InvalidSize,
    /// BODY is not 7BIT, 8BITMIME or BINARYMIME.
    #[error("invalid BODY value")]
    InvalidBody,
    /// RET is not FULL or HDRS.
    #[error("invalid RET value")]
    InvalidRet,
    /// NOTIFY is not NEVER or a list of SUCCESS, FAILURE, DELAY.
    #[error("invalid NOTIFY value")]
    InvalidNotify,
    /// ORCPT is not `addr-type;xtext`.
    #[error("invalid ORCPT value")]
    InvalidOrcpt,
    /// ENVID, ORCPT or AUTH= carries malformed xtext.
    #[error("invalid xtext in {keyword}: {error}")]
    Xtext {
        /// The parameter's keyword.
        keyword: &'static str,
        /// What was wrong.
        error: XtextError,
    },
    /// `AUTH=` is neither `<>` nor an xtext-encoded mailbox.
    #[error("invalid AUTH= mailbox: {0}")]
    AuthMailbox(AddressError),
}

/// An ESMTP parameter not known to this crate, kept as keyword and optional value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EsmtpParam {
    /// The keyword, case preserved.
    pub keyword: EsmtpKeyword,
    /// The value after `=`, if any.
    pub value: Option<EsmtpValue>,
}

impl EsmtpParam {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(b' ');
        out.put_slice(self.keyword.as_str().as_bytes());
        if let Some(v) = &self.value {
            out.put_u8(b'=');
            out.put_slice(v.as_str().as_bytes());
        }
    }
}

/// The BODY parameter (RFC 6152 §2, RFC 3030 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME` (RFC 6152).
    EightBitMime,
    /// `BODY=BINARYMIME` (RFC 3030), only with BDAT.
    BinaryMime,
}

impl Body {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Body::SevenBit => "7BIT",
            Body::EightBitMime => "8BITMIME",
            Body::BinaryMime => "BINARYMIME",
        }
    }
}

/// The RET parameter of a DSN request (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `RET=FULL`: return the whole message in a DSN.
    Full,
    /// `RET=HDRS`: return the headers only.
    Hdrs,
}

impl Ret {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// The MAIL `AUTH=` parameter (RFC 4954 §5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MailAuth {
    /// `AUTH=<>`: the submitter is unknown or not trusted.
    Unknown,
    /// The authenticated submitter (xtext-encoded on the wire).
    Mailbox(Mailbox),
}

/// The NOTIFY parameter of a DSN request (RFC 3461 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notify {
    /// `NOTIFY=NEVER`.
    Never,
    /// A non-empty combination of SUCCESS, FAILURE and DELAY.
    On {
        /// `SUCCESS`.
        success: bool,
        /// `FAILURE`.
        failure: bool,
        /// `DELAY`.
        delay: bool,
    },
}

impl Notify {
    fn parse(v: &str) -> Result<Notify, ParamError> {
        Notify::parse_bytes(v.as_bytes())
    }

    fn parse_bytes(v: &[u8]) -> Result<Notify, ParamError> {
        if kw_is(v, b"NEVER") {
            return Ok(Notify::Never);
        }
        let (mut success, mut failure, mut delay) = (false, false, false);
        for item in v.split(|&c| c == b',') {
            let flag = if kw_is(item, b"SUCCESS") {
                &mut success
            } else if kw_is(item, b"FAILURE") {
                &mut failure
            } else if kw_is(item, b"DELAY") {
                &mut delay
            } else {
                return Err(ParamError::InvalidNotify);
            };
            if *flag {
                return Err(ParamError::InvalidNotify);
            }
            *flag = true;
        }
        Ok(Notify::On {
            success,
            failure,
            delay,
        })
    }

    fn encode(self, out: &mut BytesMut) {
        match self {
            Notify::Never => out.put_slice(b"NEVER"),
            Notify::On {
                success,
                failure,
                delay,
            } => {
                let mut first = true;
                for (on, name) in [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")] {
                    if on {
                        if !first {
                            out.put_u8(b',');
                        }
                        out.put_slice(name.as_bytes());
                        first = false;
                    }
                }
            }
        }
    }
}

/// The ORCPT parameter (RFC 3461 §4.2): `ORCPT=addr-type ";" xtext`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Orcpt {
    /// The address type, usually `rfc822`.
    pub addr_type: EsmtpKeyword,
    /// The original recipient address, decoded.
    pub addr: XText,
}

/// Typed MAIL FROM parameters (RFC 1870, RFC 6152, RFC 3030, RFC 6531, RFC 3461, RFC 4954).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870): the declared message size.
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152, RFC 3030).
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=` (RFC 3461), decoded. Boxed, like `auth`: rare, and keeping them out of line
    /// keeps a parsed [`Command`](super::Command) small enough to move without `memcpy`.
    pub envid: Option<Box<XText>>,
    /// `AUTH=` (RFC 4954 §5), boxed (see `envid`).
    pub auth: Option<Box<MailAuth>>,
    /// Any other parameter, in order. Keywords known above must not be repeated here.
    pub other: Vec<EsmtpParam>,
}

/// Typed RCPT TO parameters (RFC 3461).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RcptParams {
    /// `NOTIFY=` (RFC 3461 §4.1).
    pub notify: Option<Notify>,
    /// `ORCPT=` (RFC 3461 §4.2). Boxed: it is rare, and out of line it keeps a parsed
    /// [`Command`](super::Command) small enough to move without `memcpy`.
    pub orcpt: Option<Box<Orcpt>>,
    /// Any other parameter, in order. Keywords known above must not be repeated here.
    pub other: Vec<EsmtpParam>,
}

/// Iterates over `SP esmtp-keyword ["=" esmtp-value]` items, validating keyword and value.
///
/// Byte-level with memchr: this runs for every MAIL and RCPT, the hottest commands.
fn for_each_param<'a>(
    s: &'a str,
    mut f: impl FnMut(&'a str, Option<&'a str>) -> Result<(), ParamError>,
) -> Result<(), ParamError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b' ' {
            return Err(ParamError::Malformed);
        }
        let start = i + 1;
        // Fast path: keyword bytes are LDH, value bytes esmtp-value ASCII, validated while
        // scanning. Anything else (non-ASCII, a stray '=' or control) ends the fast scan and
        // falls back to the validating split below, which names the exact error.
        let mut end = start;
        while end < b.len() && class::is(b[end], class::LDH) {
            end += 1;
        }
        let kw_end = end;
        let mut fast =
            kw_end > start && b[start] != b'-' && kw_end - start <= MAX_ESMTP_KEYWORD_LEN;
        if end < b.len() && b[end] == b'=' {
            end += 1;
            while end < b.len() && class::is(b[end], class::VALUE) {
                end += 1;
            }
            fast &= end > kw_end + 1 && end - kw_end - 1 <= MAX_ESMTP_VALUE_LEN;
        }
        fast &= end == b.len() || b[end] == b' ';
        let (k, v) = if fast {
            // Every byte up to `end` is ASCII, so these are character boundaries.
            let k = &s[start..kw_end];
            (k, (end > kw_end).then(|| &s[kw_end + 1..end]))
        } else {
            end = start + s[start..].find(' ').unwrap_or(s.len() - start);
            if end == start {
                return Err(ParamError::Malformed);
            }
            // Splitting at ASCII ' ' and '=' keeps every piece on character boundaries.
            let item = &s[start..end];
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            EsmtpKeyword::validate(k).map_err(ParamError::Keyword)?;
            if let Some(v) = v {
                EsmtpValue::validate(v).map_err(|error| ParamError::Value {
                    keyword: k.to_owned(),
                    error,
                })?;
            }
            (k, v)
        };
        f(k, v)?;
        i = end;
    }
    Ok(())
}

/// A range of the argument bytes the fast paths validated, before the line is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// An unknown parameter's keyword and value spans; an empty value span means no value (a
/// present value is never empty). Kept small: the fast paths move these by value.
type OtherSpan = (u16, u16, u16, u16);

/// Scans one `SP esmtp-keyword ["=" esmtp-value]` item at `i` for the fast paths: the keyword,
/// the value and the index after the item, or `None` for anything [`for_each_param`]'s
/// validating split would have to look at (non-ASCII, a stray `=`, limits, malformed lists).
/// Every accepted byte is printable ASCII.
#[inline]
fn fast_item(b: &[u8], i: usize) -> Option<(Span, Option<Span>, usize)> {
    if b.get(i) != Some(&b' ') {
        return None;
    }
    let start = i + 1;
    let mut end = start;
    while end < b.len() && class::is(b[end], class::LDH) {
        end += 1;
    }
    let kw_end = end;
    if kw_end == start || b[start] == b'-' || kw_end - start > MAX_ESMTP_KEYWORD_LEN {
        return None;
    }
    let mut value = None;
    if end < b.len() && b[end] == b'=' {
        end += 1;
        while end < b.len() && class::is(b[end], class::VALUE) {
            end += 1;
        }
        let len = end - kw_end - 1;
        if len == 0 || len > MAX_ESMTP_VALUE_LEN {
            return None;
        }
        value = Some(Span {
            start: kw_end + 1,
            end,
        });
    }
    if end < b.len() && b[end] != b' ' {
        return None;
    }
    Some((Span { start, end: kw_end }, value, end))
}

/// The bytes of `b` at `span` as a [`word`], or 0 (no keyword's word) when longer than
/// eight. Only for the fast paths' tokens, which hold no control byte (see
/// [`class::folded_word_at`]).
#[inline]
pub(crate) fn span_word(b: &[u8], span: Span) -> u64 {
    let len = span.end.wrapping_sub(span.start);
    if len == 0 || len > 8 {
        return 0;
    }
    let w = match b.get(span.start..span.start + 8) {
        // The common case, eight bytes in the line: one load, masked to the token's length.
        Some(c) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a) & (u64::MAX >> (64 - 8 * len))
        }
        None => b
            .get(span.start..span.end)
            .unwrap_or_default()
            .iter()
            .rev()
            .fold(0, |w, &c| (w << 8) | u64::from(c)),
    };
    // Folded, and padded past the token like `word`: the masked bytes are zero.
    w | 0x2020_2020_2020_2020
}

/// True when `k` is `name`, case-insensitively; the length decides most mismatches.
#[inline]
fn kw_is(k: &[u8], name: &[u8]) -> bool {
    k.len() == name.len() && k.eq_ignore_ascii_case(name)
}

/// The fast path's xtext: only the common form without `+XX` escapes, which needs no decoding.
///
/// `v` lies in a value [`fast_item`] checked as `esmtp-value`, and `xchar` is exactly
/// `esmtp-value` without `+`, so looking for a `+` is the whole check: a branch-free compare
/// the compiler vectorises, where a class lookup goes byte by byte.
#[inline]
fn plain_xtext(b: &[u8], v: Span) -> Option<Span> {
    let x = b.get(v.start..v.end)?;
    debug_assert!(class::all(x, class::VALUE));
    let plus = x.iter().fold(false, |p, &c| p | (c == b'+'));
    (!x.is_empty() && !plus).then_some(v)
}

/// Unknown parameters the fast paths carry; a list longer than this takes the general path.
const FAST_OTHER: usize = 4;

/// The unknown parameters of a fast parse, as spans until the line is copied.
#[derive(Debug, Default)]
pub(crate) struct FastOther {
    items: [OtherSpan; FAST_OTHER],
    len: usize,
}

fn span16(start: usize, end: usize) -> Option<(u16, u16)> {
    Some((u16::try_from(start).ok()?, u16::try_from(end).ok()?))
}

fn unspan16((start, end): (u16, u16)) -> Span {
    Span {
        start: usize::from(start),
        end: usize::from(end),
    }
}

impl FastOther {
    /// Adds an unknown parameter; `None` on a duplicate (the general parser names it), when
    /// the list is full or beyond 64 KiB.
    #[inline]
    fn push(&mut self, b: &[u8], k: Span, v: Option<Span>) -> Option<()> {
        let kw = &b[k.start..k.end];
        let dup = self.items[..self.len]
            .iter()
            .any(|&(ks, ke, _, _)| b[usize::from(ks)..usize::from(ke)].eq_ignore_ascii_case(kw));
        if dup {
            return None;
        }
        let (ks, ke) = span16(k.start, k.end)?;
        let (vs, ve) = match v {
            Some(v) => span16(v.start, v.end)?,
            None => (ke, ke),
        };
        *self.items.get_mut(self.len)? = (ks, ke, vs, ve);
        self.len += 1;
        Some(())
    }

    /// The parameters as values cut from the argument bytes `b` they were scanned in.
    fn build(&self, b: &[u8]) -> Option<Vec<EsmtpParam>> {
        if self.len == 0 {
            return Some(Vec::new());
        }
        self.items[..self.len]
            .iter()
            .map(|&(ks, ke, vs, ve)| {
                Some(EsmtpParam {
                    keyword: EsmtpKeyword::from_validated(value(b, unspan16((ks, ke)))?),
                    value: match vs < ve {
                        true => Some(EsmtpValue::from_validated(value(b, unspan16((vs, ve)))?)),
                        false => None,
                    },
                })
            })
            .collect()
    }
}

/// The value the fast path validated at `span` of the argument bytes `b`: inline when short
/// (no allocation), else in a buffer of its own.
#[inline]
pub(crate) fn value(b: &[u8], span: Span) -> Option<Shared> {
    Shared::from_ascii(b.get(span.start..span.end)?)
}

/// `Some(v)` into an empty slot, `None` (the general parser's duplicate error) otherwise.
#[inline]
fn put_once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

const MAIL_KEYWORDS: &[&[u8]] = &[b"SIZE", b"BODY", b"SMTPUTF8", b"RET", b"ENVID", b"AUTH"];

/// The known keyword `k` matches case-insensitively, if any.
///
/// Compared in place: upper-casing into a stack buffer first costs a store-forwarding stall.
fn keyword_id(k: &str, known: &'static [&'static [u8]]) -> Option<&'static [u8]> {
    let b = k.as_bytes();
    // The first letter, folded, rejects most candidates before the full comparison.
    let first = b.first()?.to_ascii_uppercase();
    known
        .iter()
        .copied()
        .find(|n| n.len() == b.len() && n[0] == first && b.eq_ignore_ascii_case(n))
}

fn set_once<T>(slot: &mut Option<T>, name: &'static str, v: T) -> Result<(), ParamError> {
    if slot.is_some() {
        return Err(ParamError::Duplicate(name.to_owned()));
    }
    *slot = Some(v);
    Ok(())
}

fn need<'a>(v: Option<&'a str>, name: &'static str) -> Result<&'a str, ParamError> {
    v.ok_or(ParamError::MissingValue(name))
}

fn other_param(k: &str, v: Option<&str>, other: &mut Vec<EsmtpParam>) -> Result<(), ParamError> {
    if other.iter().any(|p| p.keyword.is(k)) {
        return Err(ParamError::Duplicate(k.to_owned()));
    }
    // Invariant: both were validated by `for_each_param`.
    other.push(EsmtpParam {
        keyword: EsmtpKeyword::try_from(k).map_err(ParamError::Keyword)?,
        value: v
            .map(EsmtpValue::try_from)
            .transpose()
            .map_err(|error| ParamError::Value {
                keyword: k.to_owned(),
                error,
            })?,
    });
    Ok(())
}

/// `1*20DIGIT` that fits in 64 bits.
pub(crate) fn parse_u64(v: &str) -> Option<u64> {
    parse_u64_bytes(v.as_bytes())
}

/// [`parse_u64`] on bytes.
#[inline]
pub(crate) fn parse_u64_bytes(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut acc = 0u64;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        // Up to 19 digits cannot overflow; only the 20-digit case needs checked arithmetic.
        acc = acc.wrapping_mul(10).wrapping_add(u64::from(d));
    }
    if b.len() == 20 {
        // u64::MAX has 20 digits starting with 1; a value that wrapped is detected by
        // re-checking with checked arithmetic.
        return b.iter().try_fold(0u64, |a, &c| {
            a.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        });
    }
    Some(acc)
}

impl MailParams {
    /// Parses the parameter list after the reverse path (including each leading space).
    pub(crate) fn parse(s: &str) -> Result<MailParams, ParamError> {
        let mut p = MailParams::default();
        for_each_param(s, |k, v| match keyword_id(k, MAIL_KEYWORDS) {
            Some(b"SIZE") => {
                let n = parse_u64(need(v, "SIZE")?).ok_or(ParamError::InvalidSize)?;
                set_once(&mut p.size, "SIZE", n)
            }
            Some(b"BODY") => {
                let v = need(v, "BODY")?;
                let body = if v.eq_ignore_ascii_case("8BITMIME") {
                    Body::EightBitMime
                } else if v.eq_ignore_ascii_case("7BIT") {
                    Body::SevenBit
                } else if v.eq_ignore_ascii_case("BINARYMIME") {
                    Body::BinaryMime
                } else {
                    return Err(ParamError::InvalidBody);
                };
                set_once(&mut p.body, "BODY", body)
            }
            Some(b"SMTPUTF8") => {
                if v.is_some() {
                    return Err(ParamError::UnexpectedValue("SMTPUTF8"));
                }
                if p.smtputf8 {
                    return Err(ParamError::Duplicate("SMTPUTF8".to_owned()));
                }
                p.smtputf8 = true;
                Ok(())
            }
            Some(b"RET") => {
                let v = need(v, "RET")?;
                let ret = if v.eq_ignore_ascii_case("FULL") {
                    Ret::Full
                } else if v.eq_ignore_ascii_case("HDRS") {
                    Ret::Hdrs
                } else {
                    return Err(ParamError::InvalidRet);
                };
                set_once(&mut p.ret, "RET", ret)
            }
            Some(b"ENVID") => {
                let x = XText::decode(need(v, "ENVID")?).map_err(|error| ParamError::Xtext {
                    keyword: "ENVID",
                    error,
                })?;
                set_once(&mut p.envid, "ENVID", Box::new(x))
            }
            Some(b"AUTH") => {
                let v = need(v, "AUTH")?;
                let auth = if v == "<>" {
                    MailAuth::Unknown
                } else {
                    let x = XText::decode(v).map_err(|error| ParamError::Xtext {
                        keyword: "AUTH",
                        error,
                    })?;
                    MailAuth::Mailbox(
                        Mailbox::try_from(x.as_str()).map_err(ParamError::AuthMailbox)?,
                    )
                };
                set_once(&mut p.auth, "AUTH", Box::new(auth))
            }
            _ => other_param(k, v, &mut p.other),
        })?;
        Ok(p)
    }

    /// The fast path of [`MailParams::parse`] on the argument bytes `b` from offset `i`: the
    /// same result for the common parameters, or `None` when the general parser must decide
    /// (`AUTH=`, xtext escapes, non-ASCII, any error). Every accepted byte is printable ASCII.
    #[inline]
    pub(crate) fn parse_fast(b: &[u8], mut i: usize) -> Option<MailParams> {
        const SIZE: u64 = word(b"SIZE");
        const BODY: u64 = word(b"BODY");
        const SMTPUTF8: u64 = word(b"SMTPUTF8");
        const RET: u64 = word(b"RET");
        const ENVID: u64 = word(b"ENVID");
        const AUTH: u64 = word(b"AUTH");
        let mut p = MailParams::default();
        let mut other = FastOther::default();
        while i < b.len() {
            let (k, v, end) = fast_item(b, i)?;
            i = end;
            // Keywords and values of different lengths have different words: the length
            // needs no separate comparison.
            match span_word(b, k) {
                SIZE => put_once(&mut p.size, parse_u64_bytes(b.get(v?.start..v?.end)?)?)?,
                BODY => {
                    let v = v?;
                    let body = match span_word(b, v) {
                        w if w == word(b"8BITMIME") => Body::EightBitMime,
                        w if w == word(b"7BIT") => Body::SevenBit,
                        // Ten letters: longer than a word.
                        _ if b.get(v.start..v.end)?.eq_ignore_ascii_case(b"BINARYMIME") => {
                            Body::BinaryMime
                        }
                        _ => return None,
                    };
                    put_once(&mut p.body, body)?;
                }
                SMTPUTF8 => {
                    if v.is_some() || p.smtputf8 {
                        return None;
                    }
                    p.smtputf8 = true;
                }
                RET => {
                    let ret = match span_word(b, v?) {
                        w if w == word(b"FULL") => Ret::Full,
                        w if w == word(b"HDRS") => Ret::Hdrs,
                        _ => return None,
                    };
                    put_once(&mut p.ret, ret)?;
                }
                ENVID => put_once(
                    &mut p.envid,
                    Box::new(XText(value(b, plain_xtext(b, v?)?)?)),
                )?,
                AUTH => return None,
                _ => other.push(b, k, v)?,
            }
        }
        p.other = other.build(b)?;
        Some(p)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        if let Some(n) = self.size {
            out.put_slice(b" SIZE=");
            put_u64(out, n);
        }
        if let Some(b) = self.body {
            out.put_slice(b" BODY=");
            out.put_slice(b.as_str().as_bytes());
        }
        if self.smtputf8 {
            out.put_slice(b" SMTPUTF8");
        }
        if let Some(r) = self.ret {
            out.put_slice(b" RET=");
            out.put_slice(r.as_str().as_bytes());
        }
        if let Some(e) = &self.envid {
            out.put_slice(b" ENVID=");
            e.encode_into(out);
        }
        match self.auth.as_deref() {
            None => {}
            Some(MailAuth::Unknown) => out.put_slice(b" AUTH=<>"),
            Some(MailAuth::Mailbox(m)) => {
                out.put_slice(b" AUTH=");
                encode_xtext(m.as_str(), out);
            }
        }
        for p in &self.other {
            p.encode(out);
        }
    }
}

impl RcptParams {
    /// Parses the parameter list after the forward path (including each leading space).
    pub(crate) fn parse(s: &str) -> Result<RcptParams, ParamError> {
        let mut p = RcptParams::default();
        for_each_param(s, |k, v| {
            if k.eq_ignore_ascii_case("NOTIFY") {
                let n = Notify::parse(need(v, "NOTIFY")?)?;
                set_once(&mut p.notify, "NOTIFY", n)
            } else if k.eq_ignore_ascii_case("ORCPT") {
                let v = need(v, "ORCPT")?;
                let (t, a) = v.split_once(';').ok_or(ParamError::InvalidOrcpt)?;
                let addr_type = EsmtpKeyword::try_from(t).map_err(|_| ParamError::InvalidOrcpt)?;
                let addr = XText::decode(a).map_err(|error| ParamError::Xtext {
                    keyword: "ORCPT",
                    error,
                })?;
                set_once(&mut p.orcpt, "ORCPT", Box::new(Orcpt { addr_type, addr }))
            } else {
                other_param(k, v, &mut p.other)
            }
        })?;
        Ok(p)
    }

    /// The fast path of [`RcptParams::parse`], like [`MailParams::parse_fast`].
    #[inline]
    pub(crate) fn parse_fast(b: &[u8], mut i: usize) -> Option<RcptParams> {
        const NOTIFY: u64 = word(b"NOTIFY");
        const ORCPT: u64 = word(b"ORCPT");
        let mut p = RcptParams::default();
        let mut other = FastOther::default();
        while i < b.len() {
            let (k, v, end) = fast_item(b, i)?;
            i = end;
            match span_word(b, k) {
                NOTIFY => {
                    let v = v?;
                    put_once(
                        &mut p.notify,
                        Notify::parse_bytes(b.get(v.start..v.end)?).ok()?,
                    )?;
                }
                ORCPT => {
                    let v = v?;
                    // addr-type is an esmtp-keyword, so it ends at the first ';', as the general
                    // parser splits.
                    let mut t = v.start;
                    while t < v.end && class::is(b[t], class::LDH) {
                        t += 1;
                    }
                    let ty = Span {
                        start: v.start,
                        end: t,
                    };
                    if t == v.start
                        || t - v.start > MAX_ESMTP_KEYWORD_LEN
                        || b[v.start] == b'-'
                        || b.get(t) != Some(&b';')
                    {
                        return None;
                    }
                    let addr = plain_xtext(
                        b,
                        Span {
                            start: t + 1,
                            end: v.end,
                        },
                    )?;
                    let orcpt = Orcpt {
                        addr_type: EsmtpKeyword::from_validated(value(b, ty)?),
                        addr: XText(value(b, addr)?),
                    };
                    put_once(&mut p.orcpt, Box::new(orcpt))?;
                }
                _ => other.push(b, k, v)?,
            }
        }
        p.other = other.build(b)?;
        Some(p)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        if let Some(n) = self.notify {
            out.put_slice(b" NOTIFY=");
            n.encode(out);
        }
        if let Some(o) = &self.orcpt {
            out.put_slice(b" ORCPT=");
            out.put_slice(o.addr_type.as_str().as_bytes());
            out.put_u8(b';');
            o.addr.encode_into(out);
        }
        for p in &self.other {
            p.encode(out);
        }
    }
}

pub(crate) fn put_u64(out: &mut BytesMut, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(x: &XText) -> String {
        x.to_string()
    }

    #[test]
    fn xtext_known_answers() {
        let ok: &[(&str, &str)] = &[
            ("abc", "abc"),
            ("a+2Bb", "a+b"),
            ("+3D", "="),
            ("+20x", " x"),
            ("+C3+A9", "é"),
        ];
        for (wire, value) in ok {
            let x = XText::decode(wire).unwrap();
            assert_eq!(x.as_str(), *value, "{wire}");
            assert_eq!(&enc(&x), wire);
        }
        let bad: &[(&str, XtextError)] = &[
            ("", XtextError::Empty),
            ("a+2b", XtextError::BadHexchar(1)),
            ("a+2", XtextError::BadHexchar(1)),
            ("a=b", XtextError::InvalidByte(b'=')),
            ("a b", XtextError::InvalidByte(b' ')),
            ("+0D+0A", XtextError::ControlCharacter('\r')),
            ("+00", XtextError::ControlCharacter('\0')),
            ("+FF", XtextError::NotUtf8),
        ];
        for (wire, err) in bad {
            assert_eq!(XText::decode(wire).unwrap_err(), *err, "{wire}");
        }
        assert_eq!(
            XText::try_from("a\nb").unwrap_err(),
            XtextError::ControlCharacter('\n')
        );
    }

    /// `plain_xtext` relies on this: inside an `esmtp-value`, only `+` is not an `xchar`.
    #[test]
    fn xchar_is_esmtp_value_without_plus() {
        for c in 0..=255u8 {
            let want = class::is(c, class::VALUE) && c != b'+';
            assert_eq!(class::is(c, class::XCHAR), want, "{c}");
        }
    }

    #[test]
    fn xtext_encodes_plus_and_equals() {
        let x = XText::try_from("a+b=c d").unwrap();
        assert_eq!(enc(&x), "a+2Bb+3Dc+20d");
        assert_eq!(XText::decode(&enc(&x)).unwrap(), x);
    }

    #[test]
    fn mail_params_known_answers() {
        let p = MailParams::parse(
            " SIZE=1000 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=QQ+2B1 AUTH=a+2Bb@c.d X-A=1 X-B",
        )
        .unwrap();
        assert_eq!(p.size, Some(1000));
        assert_eq!(p.body, Some(Body::EightBitMime));
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert_eq!(p.envid.as_ref().unwrap().as_str(), "QQ+1");
        assert_eq!(
            p.auth.as_deref(),
            Some(&MailAuth::Mailbox(Mailbox::try_from("a+b@c.d").unwrap()))
        );
        assert_eq!(p.other.len(), 2);
        assert_eq!(p.other[1].value, None);
        assert_eq!(
            MailParams::parse(" AUTH=<>").unwrap().auth.as_deref(),
            Some(&MailAuth::Unknown)
        );

        let bad: &[(&str, ParamError)] = &[
            ("SIZE=1", ParamError::Malformed),
            (" ", ParamError::Malformed),
            (" SIZE=1 ", ParamError::Malformed),
            (" SIZE=1  BODY=7BIT", ParamError::Malformed),
            (" SIZE=x", ParamError::InvalidSize),
            (" SIZE=99999999999999999999", ParamError::InvalidSize),
            (" SIZE", ParamError::MissingValue("SIZE")),
            (" SIZE=1 SIZE=2", ParamError::Duplicate("SIZE".into())),
            (" BODY=9BIT", ParamError::InvalidBody),
            (" RET=ALL", ParamError::InvalidRet),
            (" SMTPUTF8=yes", ParamError::UnexpectedValue("SMTPUTF8")),
            (" X-A=1 x-a=2", ParamError::Duplicate("x-a".into())),
            (
                " -X=1",
                ParamError::Keyword(TokenError::InvalidCharacter('-')),
            ),
            (
                " ENVID=a+2",
                ParamError::Xtext {
                    keyword: "ENVID",
                    error: XtextError::BadHexchar(1),
                },
            ),
            (
                " AUTH=nobody",
                ParamError::AuthMailbox(AddressError::MissingAt),
            ),
        ];
        for (s, err) in bad {
            assert_eq!(MailParams::parse(s).unwrap_err(), *err, "{s:?}");
        }
    }

    #[test]
    fn rcpt_params_known_answers() {
        let p = RcptParams::parse(" NOTIFY=failure,DELAY ORCPT=rfc822;a+2Bb@c.d").unwrap();
        assert_eq!(
            p.notify,
            Some(Notify::On {
                success: false,
                failure: true,
                delay: true
            })
        );
        let o = p.orcpt.unwrap();
        assert_eq!(o.addr_type.as_str(), "rfc822");
        assert_eq!(o.addr.as_str(), "a+b@c.d");
        assert_eq!(
            RcptParams::parse(" NOTIFY=NEVER").unwrap().notify,
            Some(Notify::Never)
        );
        let bad: &[(&str, ParamError)] = &[
            (" NOTIFY=NEVER,SUCCESS", ParamError::InvalidNotify),
            (" NOTIFY=SUCCESS,SUCCESS", ParamError::InvalidNotify),
            (
                " NOTIFY=",
                ParamError::Value {
                    keyword: "NOTIFY".into(),
                    error: TokenError::Empty,
                },
            ),
            (" NOTIFY=SOMETIMES", ParamError::InvalidNotify),
            (" ORCPT=rfc822", ParamError::InvalidOrcpt),
            (" ORCPT=;a@b", ParamError::InvalidOrcpt),
            (
                " ORCPT=rfc822;a+0Db",
                ParamError::Xtext {
                    keyword: "ORCPT",
                    error: XtextError::ControlCharacter('\r'),
                },
            ),
        ];
        for (s, err) in bad {
            assert_eq!(RcptParams::parse(s).unwrap_err(), *err, "{s:?}");
        }
    }
}

//! Typed EHLO capabilities (RFC 5321 §4.1.1.1 and the extension RFCs).

use std::fmt;
use std::hash::{Hash, Hasher};

use super::params::{Span, parse_u64_bytes, span_word};
use super::reply::{Reply, ReplyCode, ReplyError, Text, find_byte};
use crate::types::{EsmtpKeyword, SaslMechanism, class, class::word as kw_word};

/// Why an EHLO reply could not be read as capabilities, or a value could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EhloError {
    /// The reply is not 250 (the caller may fall back to HELO, unless TLS is required).
    #[error("EHLO answered {0}")]
    NotAccepted(ReplyCode),
    /// The first line has no server domain.
    #[error("EHLO reply has no server domain")]
    MissingDomain,
    /// `SIZE` with a parameter that is not a decimal number (RFC 1870 §4).
    #[error("invalid SIZE parameter")]
    InvalidSize,
    /// A value given to [`Capabilities::new`] or [`Capabilities::add_extension`] would not
    /// read back as given: an empty or spaced server domain or parameter, CR, LF or NUL in a
    /// text, or a keyword this type stores as a flag.
    #[error("invalid {0} for an EHLO reply")]
    InvalidValue(&'static str),
}

/// An extension not known to this crate, with its parameters, from
/// [`Capabilities::extensions`]. Raw peer text: escape before logging.
///
/// Equal (and hashed) by keyword and parameter list: the spacing between parameters on the
/// wire does not count.
#[derive(Debug, Clone, Copy)]
pub struct EhloExtension<'a> {
    keyword: &'a str,
    /// The text after the keyword's space, as sent.
    params: &'a str,
}

impl<'a> EhloExtension<'a> {
    /// The keyword, case preserved (a valid `esmtp-keyword`).
    pub fn keyword(&self) -> &'a str {
        self.keyword
    }

    /// The parameters, in order (each non-empty, without spaces).
    pub fn params(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.params.split(' ').filter(|p| !p.is_empty())
    }
}

impl PartialEq for EhloExtension<'_> {
    fn eq(&self, o: &EhloExtension<'_>) -> bool {
        self.keyword == o.keyword && self.params().eq(o.params())
    }
}

impl Eq for EhloExtension<'_> {}

impl Hash for EhloExtension<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.keyword.hash(state);
        for p in self.params() {
            p.hash(state);
        }
    }
}

/// What a server announced in its 250 EHLO reply.
///
/// ```text
/// ehlo-ok-rsp  = ( "250" SP Domain [ SP ehlo-greet ] CRLF )
///              / ( "250-" Domain [ SP ehlo-greet ] CRLF
///                  *( "250-" ehlo-line CRLF ) "250" SP ehlo-line CRLF )
/// ehlo-line    = ehlo-keyword *( SP ehlo-param )
/// ```
///
/// Keywords are matched case-insensitively. The extensions this crate knows are flags (and
/// [`Capabilities::size`]), decided when the reply is read. The reply's text is kept whole
/// (moved, not copied, by [`Capabilities::from_ehlo`]); the server domain, greeting, AUTH
/// mechanisms, other extensions and lines whose keyword is not an `ehlo-keyword` (other than
/// the old `AUTH=` form) are read from it by the accessors. `server_domain`, `greeting` and
/// unknown extensions are raw peer text: escape before logging.
///
/// Two values are equal when they announce the same: flags, size, domain, greeting and each
/// list in order, whatever the order of the lines between lists.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `SIZE [n]` (RFC 1870). `Some(0)` means announced without a fixed limit.
    pub size: Option<u64>,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `DSN` (RFC 3461).
    pub dsn: bool,
    /// `CHUNKING` (RFC 3030).
    pub chunking: bool,
    /// `BINARYMIME` (RFC 3030).
    pub binary_mime: bool,
    /// The lines, joined by `\n`, which no line can hold.
    text: Text,
    /// The server domain is `text[..domain_len]`.
    domain_len: u32,
    /// The first line is `text[..first_len]`; the greeting follows the domain's space.
    first_len: u32,
}

/// A line after the first, by what it announces.
enum Line<'a> {
    /// A keyword this type has a flag (or `size`) for.
    Known,
    /// The mechanism names of an `AUTH` or `AUTH=` line, separated by spaces.
    Auth(&'a str),
    /// An unknown `ehlo-keyword` and the text after its space.
    Extension(&'a str, &'a str),
    /// Not an `ehlo-line`.
    Unparsed(&'a str),
}

impl Line<'_> {
    fn of(line: &str) -> Line<'_> {
        let (kw, params) = split_space(line);
        let span = Span {
            start: 0,
            end: kw.len(),
        };
        match known_keyword(line.as_bytes(), span) {
            Some(AUTH) => Line::Auth(params),
            Some(_) => Line::Known,
            // The pre-standard form some servers still send next to `AUTH`; "AUTH=" is
            // ASCII, so the cut is a character boundary.
            None if kw.len() > 5 && kw.as_bytes()[..5].eq_ignore_ascii_case(b"AUTH=") => {
                Line::Auth(&line[5..])
            }
            None if EsmtpKeyword::validate(kw).is_ok() => Line::Extension(kw, params),
            None => Line::Unparsed(line),
        }
    }
}

/// [`KNOWN`]'s index of `SIZE`.
const SIZE: usize = 8;
/// [`KNOWN`]'s index of `AUTH`.
const AUTH: usize = 9;

/// The known keywords, by the index [`known_keyword`] returns.
const KNOWN: [&str; 10] = [
    "PIPELINING",
    "8BITMIME",
    "SMTPUTF8",
    "STARTTLS",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "CHUNKING",
    "BINARYMIME",
    "SIZE",
    "AUTH",
];

/// The index in [`KNOWN`] of the keyword at `kw` of `b`, compared case-insensitively.
///
/// The length picks the candidates, then one folded word per eight octets decides (see
/// [`class::word`]). Folding maps only control bytes 0x10-0x19 onto digits, so a keyword with
/// a digit checks that byte exactly; letters fold only from letters.
#[inline(always)]
fn known_keyword(b: &[u8], kw: Span) -> Option<usize> {
    // The folded word of the keyword's octets from `from`, at most eight.
    let w = |from: usize| {
        let start = kw.start + from;
        span_word(
            b,
            Span {
                start,
                end: kw.end.min(start + 8),
            },
        )
    };
    let id = match kw.end.wrapping_sub(kw.start) {
        3 if w(0) == kw_word(b"DSN") => 5,
        4 => match w(0) {
            x if x == kw_word(b"SIZE") => SIZE,
            x if x == kw_word(b"AUTH") => AUTH,
            _ => return None,
        },
        8 => match w(0) {
            x if x == kw_word(b"STARTTLS") => 3,
            x if x == kw_word(b"CHUNKING") => 6,
            x if x == kw_word(b"8BITMIME") && b.get(kw.start) == Some(&b'8') => 1,
            x if x == kw_word(b"SMTPUTF8") && b.get(kw.start + 7) == Some(&b'8') => 2,
            _ => return None,
        },
        10 => match (w(0), w(8)) {
            (x, y) if x == kw_word(b"PIPELINI") && y == kw_word(b"NG") => 0,
            (x, y) if x == kw_word(b"BINARYMI") && y == kw_word(b"ME") => 7,
            _ => return None,
        },
        19 if w(0) == kw_word(b"ENHANCED")
            && w(8) == kw_word(b"STATUSCO")
            && w(16) == kw_word(b"DES") =>
        {
            4
        }
        _ => return None,
    };
    Some(id)
}

impl Capabilities {
    /// Capabilities with a server domain and greeting and nothing announced, for a server to
    /// fill in and send with [`Capabilities::to_reply`].
    ///
    /// Fails with [`EhloError::InvalidValue`] for an empty domain, a domain with a space,
    /// or CR, LF or NUL in either.
    pub fn new(server_domain: &str, greeting: &str) -> Result<Capabilities, EhloError> {
        if server_domain.is_empty() || server_domain.contains([' ', '\r', '\n', '\0']) {
            return Err(EhloError::InvalidValue("server domain"));
        }
        if greeting.contains(['\r', '\n', '\0']) {
            return Err(EhloError::InvalidValue("greeting"));
        }
        let mut caps = Capabilities::default();
        caps.text.push_str(server_domain);
        if !greeting.is_empty() {
            caps.text.push_str(" ");
            caps.text.push_str(greeting);
        }
        // Both are far below 4 GiB: a longer one reads as empty rather than wrong.
        caps.domain_len = u32::try_from(server_domain.len()).unwrap_or(0);
        caps.first_len = u32::try_from(caps.text.as_str().len()).unwrap_or(0);
        Ok(caps)
    }

    /// Reads the capabilities from a complete EHLO reply, keeping its text without a copy.
    /// This is what a client does with the reply to its EHLO.
    pub fn from_ehlo(reply: Reply) -> Result<Capabilities, EhloError> {
        if reply.code() != ReplyCode::OK {
            return Err(EhloError::NotAccepted(reply.code()));
        }
        let text = reply.into_text();
        let b = text.as_str().as_bytes();
        // One scan per line finds both the keyword's end and the line's end.
        let (domain_end, first_end) = split_line(b, 0);
        if domain_end == 0 {
            return Err(EhloError::MissingDomain);
        }
        // The known flags as bits (by index in `KNOWN`), set on the value at the end.
        let mut flags = 0u16;
        let mut size = None;
        let mut start = first_end + 1;
        while start <= b.len() {
            let (kw_end, line_end) = split_line(b, start);
            match known_keyword(b, Span { start, end: kw_end }) {
                Some(SIZE) => {
                    // Up to 20 digits that fit in 64 bits; none means no fixed limit.
                    let p = b.get(kw_end + 1..line_end).unwrap_or_default();
                    size = Some(match p {
                        [] => 0,
                        p => parse_u64_bytes(p).ok_or(EhloError::InvalidSize)?,
                    });
                }
                Some(i) if i < SIZE => flags |= 1 << i,
                // AUTH, unknown extensions and unparsed lines are read from the text when
                // asked for.
                _ => {}
            }
            start = line_end + 1;
        }
        let flag = |i: usize| flags & (1 << i) != 0;
        Ok(Capabilities {
            pipelining: flag(0),
            size,
            eight_bit_mime: flag(1),
            smtputf8: flag(2),
            starttls: flag(3),
            enhanced_status_codes: flag(4),
            dsn: flag(5),
            chunking: flag(6),
            binary_mime: flag(7),
            // Reply text is bounded far below 4 GiB by `ReplyOptions::max_bytes`.
            domain_len: u32::try_from(domain_end).unwrap_or(0),
            first_len: u32::try_from(first_end).unwrap_or(0),
            text,
        })
    }

    /// [`Capabilities::from_ehlo`] on a borrowed reply, whose text is copied.
    pub fn from_ehlo_reply(reply: &Reply) -> Result<Capabilities, EhloError> {
        Capabilities::from_ehlo(reply.clone())
    }

    /// Adds an AUTH mechanism (RFC 4954), unless already announced.
    pub fn add_auth(&mut self, mechanism: SaslMechanism) {
        if !self.supports_auth(mechanism.as_str()) {
            self.text.push_str("\nAUTH ");
            self.text.push_str(mechanism.as_str());
        }
    }

    /// Adds an extension this type has no flag for, with its parameters.
    ///
    /// Fails with [`EhloError::InvalidValue`] for a keyword this type stores as a flag (or
    /// `AUTH`, see [`Capabilities::add_auth`]), or a parameter that is empty or holds a
    /// space, CR, LF or NUL.
    pub fn add_extension(
        &mut self,
        keyword: &EsmtpKeyword,
        params: &[&str],
    ) -> Result<(), EhloError> {
        let k = keyword.as_str();
        if KNOWN.iter().any(|n| n.eq_ignore_ascii_case(k)) {
            return Err(EhloError::InvalidValue("extension keyword"));
        }
        if params
            .iter()
            .any(|p| p.is_empty() || p.contains([' ', '\r', '\n', '\0']))
        {
            return Err(EhloError::InvalidValue("extension parameter"));
        }
        self.text.push_str("\n");
        self.text.push_str(k);
        for p in params {
            self.text.push_str(" ");
            self.text.push_str(p);
        }
        Ok(())
    }

    /// The first word of the first line: the server's name for itself.
    pub fn server_domain(&self) -> &str {
        self.text
            .as_str()
            .get(..self.domain_len as usize)
            .unwrap_or_default()
    }

    /// The rest of the first line (empty when there is none).
    pub fn greeting(&self) -> &str {
        self.text
            .as_str()
            .get(self.domain_len as usize + 1..self.first_len as usize)
            .unwrap_or_default()
    }

    /// The lines after the first, classified.
    fn lines(&self) -> impl Iterator<Item = Line<'_>> + '_ {
        let rest = self
            .text
            .as_str()
            .get(self.first_len as usize..)
            .unwrap_or_default();
        // `rest` is empty or starts with the first line's `\n`.
        rest.split('\n').skip(1).map(Line::of)
    }

    /// The valid mechanism names of the AUTH lines, in order, with repeats.
    fn mechanisms(&self) -> impl Iterator<Item = SaslMechanism> + '_ {
        self.lines()
            .filter_map(|l| match l {
                Line::Auth(m) => Some(m),
                _ => None,
            })
            .flat_map(|m| m.split(' '))
            .filter_map(|m| SaslMechanism::from_bytes(m.as_bytes()))
    }

    /// `AUTH mech...` (RFC 4954), including the pre-standard `AUTH=mech...` form, in order,
    /// without duplicates, upper case. Invalid mechanism names are skipped.
    pub fn auth(&self) -> impl Iterator<Item = SaslMechanism> + '_ {
        let mut seen = Vec::new();
        self.mechanisms().filter(move |m| {
            let new = !seen.contains(m);
            if new {
                seen.push(*m);
            }
            new
        })
    }

    /// True when any AUTH mechanism was announced.
    pub fn has_auth(&self) -> bool {
        self.mechanisms().next().is_some()
    }

    /// Extensions this type has no flag for, in order.
    pub fn extensions(&self) -> impl Iterator<Item = EhloExtension<'_>> + '_ {
        self.lines().filter_map(|l| match l {
            Line::Extension(keyword, params) => Some(EhloExtension { keyword, params }),
            _ => None,
        })
    }

    /// Lines that are not an `ehlo-line`, verbatim (raw peer text: escape before logging).
    pub fn unparsed(&self) -> impl Iterator<Item = &str> + '_ {
        self.lines().filter_map(|l| match l {
            Line::Unparsed(line) => Some(line),
            _ => None,
        })
    }

    /// True when `keyword` was announced (known or not), compared case-insensitively.
    pub fn supports(&self, keyword: &str) -> bool {
        match KNOWN.iter().position(|k| k.eq_ignore_ascii_case(keyword)) {
            Some(i) => self.announces(i),
            None => self
                .extensions()
                .any(|e| e.keyword.eq_ignore_ascii_case(keyword)),
        }
    }

    /// Whether the known extension at index `i` of [`KNOWN`] was announced.
    fn announces(&self, i: usize) -> bool {
        match i {
            0 => self.pipelining,
            1 => self.eight_bit_mime,
            2 => self.smtputf8,
            3 => self.starttls,
            4 => self.enhanced_status_codes,
            5 => self.dsn,
            6 => self.chunking,
            7 => self.binary_mime,
            SIZE => self.size.is_some(),
            AUTH => self.has_auth(),
            _ => false,
        }
    }

    /// True when `mechanism` is among the announced AUTH mechanisms (case-insensitive).
    pub fn supports_auth(&self, mechanism: &str) -> bool {
        self.mechanisms()
            .any(|m| m.as_str().eq_ignore_ascii_case(mechanism))
    }

    /// Builds the 250 EHLO reply a server sends for these capabilities.
    ///
    /// Fails with [`ReplyError::AmbiguousText`] when the first line (server domain and
    /// greeting) starts with what reads as an enhanced status code (`2.0.0`): a client would
    /// take it for one and strip it. A peer can send such a domain (`250 2.5.1 2.0.0`), so
    /// capabilities read from a reply do not always write back.
    pub fn to_reply(&self) -> Result<Reply, ReplyError> {
        let mut lines: Vec<String> = Vec::with_capacity(12);
        lines.push(
            self.text
                .as_str()
                .get(..self.first_len as usize)
                .unwrap_or_default()
                .to_owned(),
        );
        match self.size {
            Some(0) => lines.push("SIZE".to_owned()),
            Some(n) => lines.push(format!("SIZE {n}")),
            None => {}
        }
        let mechs: Vec<SaslMechanism> = self.auth().collect();
        if !mechs.is_empty() {
            let names: Vec<&str> = mechs.iter().map(SaslMechanism::as_str).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        // The flags, in the order of `KNOWN`.
        lines.extend(
            KNOWN
                .iter()
                .enumerate()
                .take(SIZE)
                .filter(|&(i, _)| self.announces(i))
                .map(|(_, k)| (*k).to_owned()),
        );
        for e in self.extensions() {
            let mut l = e.keyword.to_owned();
            for p in e.params() {
                l.push(' ');
                l.push_str(p);
            }
            lines.push(l);
        }
        lines.extend(self.unparsed().map(str::to_owned));
        Reply::new(ReplyCode::OK, None, lines)
    }
}

impl PartialEq for Capabilities {
    fn eq(&self, o: &Capabilities) -> bool {
        self.pipelining == o.pipelining
            && self.size == o.size
            && self.eight_bit_mime == o.eight_bit_mime
            && self.smtputf8 == o.smtputf8
            && self.starttls == o.starttls
            && self.enhanced_status_codes == o.enhanced_status_codes
            && self.dsn == o.dsn
            && self.chunking == o.chunking
            && self.binary_mime == o.binary_mime
            && self.server_domain() == o.server_domain()
            && self.greeting() == o.greeting()
            && self.auth().eq(o.auth())
            && self.extensions().eq(o.extensions())
            && self.unparsed().eq(o.unparsed())
    }
}

impl Eq for Capabilities {}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities")
            .field("server_domain", &self.server_domain())
            .field("greeting", &self.greeting())
            .field("pipelining", &self.pipelining)
            .field("size", &self.size)
            .field("eight_bit_mime", &self.eight_bit_mime)
            .field("smtputf8", &self.smtputf8)
            .field("starttls", &self.starttls)
            .field("auth", &self.auth().collect::<Vec<_>>())
            .field("enhanced_status_codes", &self.enhanced_status_codes)
            .field("dsn", &self.dsn)
            .field("chunking", &self.chunking)
            .field("binary_mime", &self.binary_mime)
            .field("extensions", &self.extensions().collect::<Vec<_>>())
            .field("unparsed", &self.unparsed().collect::<Vec<_>>())
            .finish()
    }
}

/// The line of `b` starting at `start`: where its keyword ends (the first space or the line's
/// end) and where the line ends (its `\n`, or the end of `b`). Eight bytes at a time: a TAB
/// or other control byte, allowed in reply text, does not end the keyword.
#[inline(always)]
fn split_line(b: &[u8], start: usize) -> (usize, usize) {
    let rest = b.get(start..).unwrap_or_default();
    let kw_end = start + class::find2(rest, b' ', b'\n').unwrap_or(rest.len());
    if b.get(kw_end) != Some(&b' ') {
        return (kw_end, kw_end);
    }
    let rest = &b[kw_end..];
    (
        kw_end,
        kw_end + class::find2(rest, b'\n', b'\n').unwrap_or(rest.len()),
    )
}

/// Splits at the first space: `("AUTH", "PLAIN LOGIN")`, or the whole and `""`.
fn split_space(s: &str) -> (&str, &str) {
    match find_byte(s.as_bytes(), b' ') {
        // ' ' is ASCII, so both sides are character boundaries.
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

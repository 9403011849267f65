//! Typed EHLO capabilities (RFC 5321 §4.1.1.1 and the extension RFCs).

use std::fmt;

use arrayvec::ArrayString;

use super::params::{Span, parse_u64, span_word};
use super::reply::{Reply, ReplyCode, ReplyError, find_byte};
use crate::types::{
    EsmtpKeyword, MAX_SASL_MECHANISM_LEN, SaslMechanism, class, class::word as kw_word,
};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EhloExtension<'a> {
    keyword: &'a str,
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

/// The longest capability text stored inline: a Postfix-style reply's server domain, its
/// mechanisms and a couple of unknown keywords fit, so reading one allocates nothing.
const CAPS_INLINE: usize = 64;

/// Entry tags in [`Capabilities`]' text: each entry is `\n`, a tag and its text, and none
/// can hold a `\n` (reply text cannot).
const TAG_AUTH: u8 = b'a';
const TAG_EXTENSION: u8 = b'e';
const TAG_UNPARSED: u8 = b'u';

/// Text that grows inline up to [`CAPS_INLINE`] octets, then on the heap.
#[derive(Clone)]
enum Text {
    Inline(ArrayString<CAPS_INLINE>),
    Heap(String),
}

impl Text {
    #[inline]
    fn as_str(&self) -> &str {
        match self {
            Text::Inline(s) => s.as_str(),
            Text::Heap(s) => s.as_str(),
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.as_str().len()
    }

    #[inline]
    fn push_str(&mut self, s: &str) {
        match self {
            Text::Inline(a) => {
                if a.try_push_str(s).is_err() {
                    let mut h = String::with_capacity(2 * (a.len() + s.len()));
                    h.push_str(a);
                    h.push_str(s);
                    *self = Text::Heap(h);
                }
            }
            Text::Heap(h) => h.push_str(s),
        }
    }

    /// Appends an entry: `\n`, the tag and `s`.
    #[inline]
    fn push_entry(&mut self, tag: u8, s: &str) {
        match self {
            // Two characters pushed one by one cost less than a copy call.
            Text::Inline(a) if a.remaining_capacity() >= s.len() + 2 => {
                a.push('\n');
                a.push(char::from(tag));
                a.push_str(s);
            }
            _ => {
                self.push_str("\n");
                self.push_str(if tag == TAG_AUTH {
                    "a"
                } else if tag == TAG_EXTENSION {
                    "e"
                } else {
                    "u"
                });
                self.push_str(s);
            }
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::Inline(ArrayString::new())
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
/// [`Capabilities::size`]); the server domain, greeting, AUTH mechanisms, other extensions
/// and lines whose keyword is not an `ehlo-keyword` (other than the old `AUTH=` form) are
/// kept in one text, read through accessors. Short texts are stored inline: reading a
/// typical reply allocates nothing. `server_domain`, `greeting` and unknown extensions are
/// raw peer text: escape before logging.
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
    /// The first line, then the entries (see [`Text::push_entry`]) in announcement order.
    text: Text,
    /// The server domain is `text[..domain_len]`.
    domain_len: u32,
    /// The first line is `text[..first_len]`; the greeting follows the domain's space.
    first_len: u32,
    /// Where the first AUTH entry starts, so that duplicates are looked for only from there.
    auth_start: Option<u32>,
}

/// The mechanisms added while reading one reply, as folded words (see [`class::word`]), so
/// that a repeat is found without scanning the text. For validated names (letters, digits,
/// `-`, `_`) of up to eight octets, equal words mean equal names ignoring case.
#[derive(Default)]
struct Seen {
    words: [u64; 8],
    len: usize,
    /// Every name added is in `words`: a short name not there was not added. False once a
    /// longer name was added, the list was full, or names were added before it existed.
    complete: bool,
}

impl Seen {
    /// For one reading, which starts without mechanisms.
    fn new() -> Seen {
        Seen {
            complete: true,
            ..Seen::default()
        }
    }
}

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
/// One folded word decides (two or three for the longer names). Folding maps only control
/// bytes 0x10-0x19 onto digits, so a keyword with a digit checks that byte exactly.
#[inline]
fn known_keyword(b: &[u8], kw: Span) -> Option<usize> {
    let len = kw.end - kw.start;
    let head = span_word(
        b,
        Span {
            start: kw.start,
            end: kw.start + len.min(8),
        },
    );
    let tail = |name: &str| {
        b.get(kw.start + 8..kw.end)?
            .eq_ignore_ascii_case(name.as_bytes().get(8..)?)
            .then_some(())
    };
    match (len, head) {
        (10, w) if w == kw_word(b"PIPELINI") => tail(KNOWN[0]).map(|()| 0),
        (8, w) if w == kw_word(b"8BITMIME") => (b[kw.start] == b'8').then_some(1),
        (8, w) if w == kw_word(b"SMTPUTF8") => (b[kw.start + 7] == b'8').then_some(2),
        (8, w) if w == kw_word(b"STARTTLS") => Some(3),
        (19, w) if w == kw_word(b"ENHANCED") => tail(KNOWN[4]).map(|()| 4),
        (3, w) if w == kw_word(b"DSN") => Some(5),
        (8, w) if w == kw_word(b"CHUNKING") => Some(6),
        (10, w) if w == kw_word(b"BINARYMI") => tail(KNOWN[7]).map(|()| 7),
        (4, w) if w == kw_word(b"SIZE") => Some(8),
        (4, w) if w == kw_word(b"AUTH") => Some(9),
        _ => None,
    }
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
        caps.set_first_line(server_domain, greeting);
        Ok(caps)
    }

    fn set_first_line(&mut self, domain: &str, greeting: &str) {
        self.text.push_str(domain);
        if !greeting.is_empty() {
            self.text.push_str(" ");
            self.text.push_str(greeting);
        }
        // Reply text is at most `ReplyOptions::max_bytes`; a longer one reads as empty.
        self.domain_len = u32::try_from(domain.len()).unwrap_or(0);
        self.first_len = u32::try_from(self.text.len()).unwrap_or(0);
    }

    /// Reads the capabilities from a complete EHLO reply.
    pub fn from_ehlo_reply(reply: &Reply) -> Result<Capabilities, EhloError> {
        if reply.code() != ReplyCode::OK {
            return Err(EhloError::NotAccepted(reply.code()));
        }
        let text = reply.text();
        let b = text.as_bytes();
        // One scan per line finds both the keyword's end and the line's end.
        let (kw_end, line_end) = split_line(b, 0);
        if kw_end == 0 {
            return Err(EhloError::MissingDomain);
        }
        let mut caps = Capabilities::default();
        // The first line as it came, in one copy. Reply text is bounded far below 4 GiB.
        // ' ' and '\n' are ASCII: every cut here is a character boundary.
        caps.text.push_str(&text[..line_end]);
        caps.domain_len = u32::try_from(kw_end).unwrap_or(0);
        caps.first_len = u32::try_from(line_end).unwrap_or(0);
        let mut seen = Seen::new();
        // The known flags as bits (by index in `KNOWN`), set on the value once at the end.
        let mut flags = 0u16;
        let mut start = line_end + 1;
        while start <= b.len() {
            let (kw_end, line_end) = split_line(b, start);
            let kw = Span { start, end: kw_end };
            match known_keyword(b, kw) {
                Some(i) if i < 8 => flags |= 1 << i,
                Some(k) => {
                    let params = text.get(kw_end + 1..line_end).unwrap_or_default();
                    if k == 8 {
                        caps.size = Some(match params {
                            "" => 0,
                            // Up to 20 digits that fit in 64 bits.
                            p => parse_u64(p).ok_or(EhloError::InvalidSize)?,
                        });
                    } else {
                        caps.add_mechanisms(text, kw_end + 1, line_end, &mut seen);
                    }
                }
                None => caps.add_other(text, kw, line_end, &mut seen),
            }
            start = line_end + 1;
        }
        let flag = |i: usize| flags & (1 << i) != 0;
        caps.pipelining = flag(0);
        caps.eight_bit_mime = flag(1);
        caps.smtputf8 = flag(2);
        caps.starttls = flag(3);
        caps.enhanced_status_codes = flag(4);
        caps.dsn = flag(5);
        caps.chunking = flag(6);
        caps.binary_mime = flag(7);
        Ok(caps)
    }

    /// A line after the first whose keyword (at `kw`) is not one of [`KNOWN`]: the old
    /// `AUTH=` form, an unknown extension, or an unparsed line.
    fn add_other(&mut self, text: &str, kw: Span, line_end: usize, seen: &mut Seen) {
        // ' ' and '\n' are ASCII: every cut here is a character boundary.
        let line = &text[kw.start..line_end];
        let kw_text = &text[kw.start..kw.end];
        if kw_text.len() > 5 && kw_text.as_bytes()[..5].eq_ignore_ascii_case(b"AUTH=") {
            // The pre-standard form some servers still send next to `AUTH`.
            self.add_mechanisms(text, kw.start + 5, line_end, seen);
        } else if EsmtpKeyword::validate(kw_text).is_ok() {
            let params = text.get(kw.end + 1..line_end).unwrap_or_default();
            self.push_extension(kw_text, params);
        } else {
            self.text.push_entry(TAG_UNPARSED, line);
        }
    }

    /// An unknown extension's entry: the keyword, then its parameters separated by one space.
    fn push_extension(&mut self, keyword: &str, params: &str) {
        self.text.push_entry(TAG_EXTENSION, keyword);
        if params.is_empty() {
            return;
        }
        for p in params.split(' ').filter(|p| !p.is_empty()) {
            self.text.push_str(" ");
            self.text.push_str(p);
        }
    }

    /// The space-separated mechanism names of an AUTH line, `text[start..end]`, in order;
    /// invalid names and repeats (compared case-insensitively) are skipped.
    fn add_mechanisms(&mut self, text: &str, start: usize, end: usize, seen: &mut Seen) {
        let b = text.as_bytes();
        let mut i = start;
        while i < end {
            let m_start = i;
            i += class::find2(b.get(i..end).unwrap_or_default(), b' ', b' ').unwrap_or(end - i);
            let span = Span {
                start: m_start,
                end: i,
            };
            i += 1;
            let len = span.end - span.start;
            let name = b.get(span.start..span.end).unwrap_or_default();
            if len == 0 || len > MAX_SASL_MECHANISM_LEN || !class::all(name, class::MECH) {
                continue;
            }
            // ' ' is ASCII: the span is on character boundaries.
            let m = text.get(span.start..span.end).unwrap_or_default();
            // Folded, as `class::word`: only a name of at most eight octets uses it.
            let w = span_word(b, span);
            let short = len <= 8;
            let repeat = match seen.complete && short {
                true => seen.words[..seen.len].contains(&w),
                false => self.has_mechanism(m),
            };
            if repeat {
                continue;
            }
            match seen.words.get_mut(seen.len) {
                Some(slot) if short => {
                    *slot = w;
                    seen.len += 1;
                }
                _ => seen.complete = false,
            }
            if self.auth_start.is_none() {
                self.auth_start = Some(u32::try_from(self.text.len()).unwrap_or(0));
            }
            self.text.push_entry(TAG_AUTH, m);
        }
    }

    fn has_mechanism(&self, name: &str) -> bool {
        let Some(from) = self.auth_start else {
            return false;
        };
        let from = from as usize;
        entries(self.text.as_str().get(from..).unwrap_or_default(), TAG_AUTH)
            .any(|m| m.eq_ignore_ascii_case(name))
    }

    /// Adds an AUTH mechanism (RFC 4954), unless already announced.
    pub fn add_auth(&mut self, mechanism: SaslMechanism) {
        let m = mechanism.as_str();
        self.add_mechanisms(m, 0, m.len(), &mut Seen::default());
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
        self.push_extension(k, &params.join(" "));
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

    /// `AUTH mech...` (RFC 4954), including the pre-standard `AUTH=mech...` form, in order,
    /// without duplicates, upper case. Invalid mechanism names are skipped.
    pub fn auth(&self) -> impl Iterator<Item = SaslMechanism> + '_ {
        // Every entry was validated as a mechanism name when it was added.
        self.entries(TAG_AUTH)
            .filter_map(|m| SaslMechanism::from_bytes(m.as_bytes()))
    }

    /// True when any AUTH mechanism was announced.
    pub fn has_auth(&self) -> bool {
        self.auth_start.is_some()
    }

    /// Extensions this type has no flag for, in order.
    pub fn extensions(&self) -> impl Iterator<Item = EhloExtension<'_>> + '_ {
        self.entries(TAG_EXTENSION).map(|e| {
            let (keyword, params) = split_space(e);
            EhloExtension { keyword, params }
        })
    }

    /// Lines that are not an `ehlo-line`, verbatim (raw peer text: escape before logging).
    pub fn unparsed(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries(TAG_UNPARSED)
    }

    fn entries(&self, tag: u8) -> impl Iterator<Item = &str> + '_ {
        let rest = self
            .text
            .as_str()
            .get(self.first_len as usize..)
            .unwrap_or_default();
        entries(rest, tag)
    }

    /// True when `keyword` was announced (known or not), compared case-insensitively.
    pub fn supports(&self, keyword: &str) -> bool {
        let k = keyword.to_ascii_uppercase();
        match k.as_str() {
            "PIPELINING" => self.pipelining,
            "SIZE" => self.size.is_some(),
            "8BITMIME" => self.eight_bit_mime,
            "SMTPUTF8" => self.smtputf8,
            "STARTTLS" => self.starttls,
            "AUTH" => self.has_auth(),
            "ENHANCEDSTATUSCODES" => self.enhanced_status_codes,
            "DSN" => self.dsn,
            "CHUNKING" => self.chunking,
            "BINARYMIME" => self.binary_mime,
            _ => self
                .extensions()
                .any(|e| e.keyword.eq_ignore_ascii_case(&k)),
        }
    }

    /// True when `mechanism` is among the announced AUTH mechanisms (case-insensitive).
    pub fn supports_auth(&self, mechanism: &str) -> bool {
        self.has_mechanism(mechanism)
    }

    /// Builds the 250 EHLO reply a server sends for these capabilities.
    ///
    /// Fails with [`ReplyError::AmbiguousText`] when the first line (server domain and
    /// greeting) starts with what reads as an enhanced status code (`2.0.0`): a client would
    /// take it for one and strip it. A peer can send such a domain (`250 2.5.1 2.0.0`), so
    /// capabilities read from a reply do not always write back.
    pub fn to_reply(&self) -> Result<Reply, ReplyError> {
        let mut lines: Vec<String> = Vec::with_capacity(12);
        lines.push(self.text.as_str()[..self.first_len as usize].to_owned());
        match self.size {
            Some(0) => lines.push("SIZE".to_owned()),
            Some(n) => lines.push(format!("SIZE {n}")),
            None => {}
        }
        if self.has_auth() {
            let mechs: Vec<SaslMechanism> = self.auth().collect();
            let names: Vec<&str> = mechs.iter().map(SaslMechanism::as_str).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        let flags = [
            (self.pipelining, "PIPELINING"),
            (self.eight_bit_mime, "8BITMIME"),
            (self.smtputf8, "SMTPUTF8"),
            (self.starttls, "STARTTLS"),
            (self.enhanced_status_codes, "ENHANCEDSTATUSCODES"),
            (self.dsn, "DSN"),
            (self.chunking, "CHUNKING"),
            (self.binary_mime, "BINARYMIME"),
        ];
        lines.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, k)| (*k).to_owned()),
        );
        lines.extend(self.entries(TAG_EXTENSION).map(str::to_owned));
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

/// The entries with `tag` in `text` (which starts at an entry's `\n`, or is empty).
fn entries(text: &str, tag: u8) -> impl Iterator<Item = &str> + '_ {
    // Every entry starts with "\n" and its tag, both ASCII: the cuts are boundaries.
    text.split('\n')
        .skip(1)
        .filter(move |e| e.as_bytes().first() == Some(&tag))
        .map(|e| &e[1..])
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

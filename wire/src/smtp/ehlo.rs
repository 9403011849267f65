//! Typed EHLO capabilities (RFC 5321 §4.1.1.1 and the extension RFCs).

use super::params::parse_u64;
use super::reply::{Reply, ReplyCode, ReplyError, find_byte};
use crate::types::{EsmtpKeyword, SaslMechanism, Shared, class};

/// Why an EHLO reply could not be read as capabilities.
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
}

/// An extension not known to this crate, kept with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EhloExtension {
    /// The keyword, case preserved.
    pub keyword: EsmtpKeyword,
    /// The parameters, split on spaces.
    pub params: Vec<String>,
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
/// Keywords are matched case-insensitively. Lines whose keyword is not an `ehlo-keyword`
/// (other than the old `AUTH=` form) are kept verbatim in [`Capabilities::unparsed`].
/// `server_domain`, `greeting` and unknown parameters are raw peer text: escape before logging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The first word of the first line: the server's name for itself.
    pub server_domain: String,
    /// The rest of the first line.
    pub greeting: String,
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
    /// `AUTH mech...` (RFC 4954), including the pre-standard `AUTH=mech...` form, in order,
    /// without duplicates. Invalid mechanism names are skipped.
    pub auth: Vec<SaslMechanism>,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `DSN` (RFC 3461).
    pub dsn: bool,
    /// `CHUNKING` (RFC 3030).
    pub chunking: bool,
    /// `BINARYMIME` (RFC 3030).
    pub binary_mime: bool,
    /// Other extensions.
    pub other: Vec<EhloExtension>,
    /// Lines that are not an `ehlo-line`.
    pub unparsed: Vec<String>,
}

impl Capabilities {
    /// Reads the capabilities from a complete EHLO reply.
    pub fn from_ehlo_reply(reply: &Reply) -> Result<Capabilities, EhloError> {
        if reply.code() != ReplyCode::OK {
            return Err(EhloError::NotAccepted(reply.code()));
        }
        // One scan per line finds both the keyword's end and the line's end, instead of
        // splitting into lines and then each line at its first space.
        let (_, domain, greeting, mut rest) = next_line(reply.text());
        if domain.is_empty() {
            return Err(EhloError::MissingDomain);
        }
        let mut caps = Capabilities {
            server_domain: domain.to_owned(),
            greeting: greeting.to_owned(),
            ..Capabilities::default()
        };
        while let Some(r) = rest {
            let (line, kw, params, next) = next_line(r);
            // An unknown keyword is short and stored inline: no allocation.
            caps.add_line(line, kw, params, |k| {
                EsmtpKeyword::from_validated(Shared::new(k))
            })?;
            rest = next;
        }
        Ok(caps)
    }

    fn add_auth(&mut self, mut mechs: &str) {
        while !mechs.is_empty() {
            let (m, rest) = split_space(mechs);
            mechs = rest;
            if m.is_empty() {
                continue;
            }
            if let Some(m) = SaslMechanism::from_bytes(m.as_bytes())
                && !self.auth.contains(&m)
            {
                self.auth.push(m);
            }
        }
    }

    /// One line after the first, already split at its first space into `kw` and `params`.
    /// `keyword` makes the [`EsmtpKeyword`] of an unknown extension from its validated text.
    fn add_line(
        &mut self,
        line: &str,
        kw: &str,
        params: &str,
        keyword: impl FnOnce(&str) -> EsmtpKeyword,
    ) -> Result<(), EhloError> {
        let kb = kw.as_bytes();
        if kb.len() > 5 && kb[..5].eq_ignore_ascii_case(b"AUTH=") {
            // The pre-standard form some servers still send next to `AUTH`.
            self.add_auth(&line[5..]);
            return Ok(());
        }
        // Dispatch on the table index: matching the keyword against byte strings a second
        // time would repeat the comparisons.
        let key = EHLO_KEYWORDS
            .iter()
            .position(|n| n.len() == kb.len() && kb.eq_ignore_ascii_case(n));
        let flag = match key {
            Some(0) => &mut self.pipelining,
            Some(1) => &mut self.eight_bit_mime,
            Some(2) => &mut self.smtputf8,
            Some(3) => &mut self.starttls,
            Some(4) => &mut self.enhanced_status_codes,
            Some(5) => &mut self.dsn,
            Some(6) => &mut self.chunking,
            Some(7) => &mut self.binary_mime,
            Some(8) => {
                let n = match params {
                    "" => 0,
                    // Up to 20 digits that fit in 64 bits, as before with `str::parse`.
                    p => parse_u64(p).ok_or(EhloError::InvalidSize)?,
                };
                self.size = Some(n);
                return Ok(());
            }
            Some(9) => {
                self.add_auth(params);
                return Ok(());
            }
            _ => {
                match EsmtpKeyword::validate(kw) {
                    Ok(()) => self.other.push(EhloExtension {
                        keyword: keyword(kw),
                        params: params
                            .split(' ')
                            .filter(|p| !p.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    }),
                    Err(_) => self.unparsed.push(line.to_owned()),
                }
                return Ok(());
            }
        };
        *flag = true;
        Ok(())
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
            "AUTH" => !self.auth.is_empty(),
            "ENHANCEDSTATUSCODES" => self.enhanced_status_codes,
            "DSN" => self.dsn,
            "CHUNKING" => self.chunking,
            "BINARYMIME" => self.binary_mime,
            _ => self.other.iter().any(|e| e.keyword.is(&k)),
        }
    }

    /// True when `mechanism` is among the announced AUTH mechanisms (case-insensitive).
    pub fn supports_auth(&self, mechanism: &str) -> bool {
        self.auth
            .iter()
            .any(|m| m.as_str().eq_ignore_ascii_case(mechanism))
    }

    /// Builds the 250 EHLO reply a server sends for these capabilities.
    ///
    /// Fails when a text field holds CR, LF or NUL ([`ReplyError::ControlCharacter`]), and
    /// with [`ReplyError::AmbiguousText`] when the first line (server domain and greeting)
    /// starts with what reads as an enhanced status code (`2.0.0`): a client would take it for
    /// one and strip it. A peer can send such a domain (`250 2.5.1 2.0.0`), so capabilities
    /// read from a reply do not always write back.
    pub fn to_reply(&self) -> Result<Reply, ReplyError> {
        let mut lines = Vec::with_capacity(12 + self.other.len());
        lines.push(if self.greeting.is_empty() {
            self.server_domain.clone()
        } else {
            format!("{} {}", self.server_domain, self.greeting)
        });
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
        match self.size {
            Some(0) => lines.push("SIZE".to_owned()),
            Some(n) => lines.push(format!("SIZE {n}")),
            None => {}
        }
        if !self.auth.is_empty() {
            let mechs: Vec<&str> = self.auth.iter().map(SaslMechanism::as_str).collect();
            lines.push(format!("AUTH {}", mechs.join(" ")));
        }
        lines.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, k)| (*k).to_owned()),
        );
        for e in &self.other {
            let mut l = e.keyword.as_str().to_owned();
            for p in &e.params {
                l.push(' ');
                l.push_str(p);
            }
            lines.push(l);
        }
        lines.extend(self.unparsed.iter().cloned());
        Reply::new(ReplyCode::OK, None, lines)
    }
}

/// Compared in place and by length first: most lines are rejected on length alone. The order
/// is the dispatch in `Capabilities::add_line`.
const EHLO_KEYWORDS: &[&[u8]] = &[
    b"PIPELINING",
    b"8BITMIME",
    b"SMTPUTF8",
    b"STARTTLS",
    b"ENHANCEDSTATUSCODES",
    b"DSN",
    b"CHUNKING",
    b"BINARYMIME",
    b"SIZE",
    b"AUTH",
];

/// Splits the first line off `text` in one scan: the line, its keyword (up to the first
/// space), its parameters (after that space, or empty) and the text after the line's `\n`
/// (`None` for the last line). The same split as [`split_space`] on the line.
#[inline(always)]
fn next_line(text: &str) -> (&str, &str, &str, Option<&str>) {
    let b = text.as_bytes();
    // Eight bytes at a time: the keyword ends at the first space or line end (a TAB or other
    // control, allowed in reply text, does not end it), the line at the next `\n`.
    let kw_end = class::find2(b, b' ', b'\n').unwrap_or(b.len());
    let mut i = kw_end;
    if i < b.len() && b[i] == b' ' {
        i += class::find2(&b[i..], b'\n', b'\n').unwrap_or(b.len() - i);
    }
    // ' ' and '\n' are ASCII, so every cut is a character boundary.
    let params = if kw_end < i { &text[kw_end + 1..i] } else { "" };
    let rest = (i < b.len()).then(|| &text[i + 1..]);
    (&text[..i], &text[..kw_end], params, rest)
}

/// Splits at the first space: `("AUTH", "PLAIN LOGIN")`, or the whole and `""`.
fn split_space(s: &str) -> (&str, &str) {
    match find_byte(s.as_bytes(), b' ') {
        // ' ' is ASCII, so both sides are character boundaries.
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

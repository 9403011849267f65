//! SMTP replies (RFC 5321 §4.2), enhanced status codes (RFC 3463) and multi-line assembly.

use std::fmt;

use arrayvec::ArrayString;
use bytes::{BufMut, BytesMut};

use crate::types::{Scratch, class};

/// Why a reply line, a reply or a reply component was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line (plus CRLF) exceeds [`ReplyOptions::max_line_len`].
    #[error("reply line is {len} octets, more than {max}")]
    LineTooLong {
        /// Length including CRLF.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More lines than [`ReplyOptions::max_lines`].
    #[error("reply has more than {max} lines")]
    TooManyLines {
        /// The limit.
        max: usize,
    },
    /// More octets than [`ReplyOptions::max_bytes`].
    #[error("reply has more than {max} octets")]
    TooManyBytes {
        /// The limit.
        max: usize,
    },
    /// The line does not start with three digits (`22X`, `2`, `abc`).
    #[error("reply line does not start with a three-digit code")]
    InvalidCode,
    /// A three-digit code outside 200-599.
    #[error("reply code {0} outside 2xx-5xx")]
    CodeOutOfRange(u16),
    /// The code is followed by something other than SP, `-` or the end of line (`220OK`).
    #[error("reply code followed by {0:#04x} instead of SP or '-'")]
    MissingSeparator(u8),
    /// A continuation line carries a different code than the first line.
    #[error("multi-line reply code changed from {expected} to {found}")]
    InconsistentCode {
        /// The first line's code.
        expected: u16,
        /// This line's code.
        found: u16,
    },
    /// A CR, LF or NUL inside a line.
    #[error("control byte {0:#04x} in reply line")]
    ControlCharacter(u8),
    /// A reply with no lines.
    #[error("reply has no lines")]
    Empty,
    /// [`Reply::parse`] input ends before the last line of the reply.
    #[error("input ends inside a reply")]
    Incomplete,
    /// [`Reply::parse`] input continues after the last line of the reply.
    #[error("data after the last reply line")]
    TrailingData,
    /// An enhanced status code that is malformed or whose class differs from the reply's.
    #[error("invalid enhanced status code")]
    InvalidEnhancedCode,
    /// [`Reply::new`] without an enhanced code, whose first line looks like one: it would
    /// decode differently than it was built.
    #[error("first line starts with an enhanced status code but none was given")]
    AmbiguousText,
}

/// A reply code 200-599 (RFC 5321 §4.2): `Reply-code = %x32-35 %x30-35 %x30-39`.
///
/// Only the first digit is restricted (2-5); the second digit is accepted 0-9, since a client
/// must interpret an unknown code by its first digit (RFC 5321 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// `220` service ready.
    pub const SERVICE_READY: ReplyCode = ReplyCode(220);
    /// `221` closing.
    pub const CLOSING: ReplyCode = ReplyCode(221);
    /// `235` authentication succeeded (RFC 4954).
    pub const AUTH_OK: ReplyCode = ReplyCode(235);
    /// `250` OK.
    pub const OK: ReplyCode = ReplyCode(250);
    /// `334` SASL continuation (RFC 4954).
    pub const AUTH_CONTINUE: ReplyCode = ReplyCode(334);
    /// `354` start mail input.
    pub const START_DATA: ReplyCode = ReplyCode(354);
    /// `421` service not available, closing.
    pub const SERVICE_UNAVAILABLE: ReplyCode = ReplyCode(421);
    /// `500` syntax error, command unrecognised.
    pub const SYNTAX_ERROR: ReplyCode = ReplyCode(500);
    /// `501` syntax error in parameters.
    pub const PARAM_SYNTAX_ERROR: ReplyCode = ReplyCode(501);
    /// `503` bad sequence of commands.
    pub const BAD_SEQUENCE: ReplyCode = ReplyCode(503);

    /// Validates a code.
    pub fn new(code: u16) -> Result<ReplyCode, ReplyError> {
        if (200..600).contains(&code) {
            Ok(ReplyCode(code))
        } else {
            Err(ReplyError::CodeOutOfRange(code))
        }
    }

    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        self.0
    }

    /// The first digit: 2 completion, 3 intermediate, 4 transient, 5 permanent failure.
    pub fn class(self) -> u8 {
        // Invariant: the code is below 600, so the quotient fits.
        (self.0 / 100) as u8
    }

    /// `2xx`.
    pub fn is_positive(self) -> bool {
        self.class() == 2
    }

    /// `3xx`.
    pub fn is_intermediate(self) -> bool {
        self.class() == 3
    }

    /// `4xx`: retry later.
    pub fn is_transient(self) -> bool {
        self.class() == 4
    }

    /// `5xx`: do not retry.
    pub fn is_permanent(self) -> bool {
        self.class() == 5
    }
}

impl TryFrom<u16> for ReplyCode {
    type Error = ReplyError;
    fn try_from(code: u16) -> Result<Self, Self::Error> {
        ReplyCode::new(code)
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An enhanced status code (RFC 3463 §2): `class "." subject "." detail`.
///
/// ```text
/// status-code = class "." subject "." detail
/// class       = "2" / "4" / "5"
/// subject     = 1*3digit
/// detail      = 1*3digit
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnhancedCode {
    class: u8,
    subject: u16,
    detail: u16,
}

/// `1*3DIGIT` at the start of `b`: the value and the rest. Unrolled: this runs on every
/// reply line.
#[inline]
fn num_1_3(b: &[u8]) -> Option<(u16, &[u8])> {
    let digit = |i: usize| {
        b.get(i)
            .map(|c| u16::from(c.wrapping_sub(b'0')))
            .filter(|&v| v < 10)
    };
    let a = digit(0)?;
    let Some(x) = digit(1) else {
        return Some((a, &b[1..]));
    };
    let Some(y) = digit(2) else {
        return Some((a * 10 + x, &b[2..]));
    };
    if digit(3).is_some() {
        return None;
    }
    Some((a * 100 + x * 10 + y, &b[3..]))
}

/// Parses an enhanced code at the start of `text`, followed by SP or the end of the text.
/// Returns the code and the text after it (and after the SP).
fn parse_enhanced_prefix(text: &[u8]) -> Option<(EnhancedCode, &[u8])> {
    // The usual form, one digit each (`2.1.0`), decided from five bytes at once.
    if let [c @ (b'2' | b'4' | b'5'), b'.', s, b'.', d, rest @ ..] = text
        && s.is_ascii_digit()
        && d.is_ascii_digit()
    {
        let rest = match rest {
            [] => Some(rest),
            [b' ', r @ ..] => Some(r),
            // A longer detail (`2.1.10`) or anything else: the general parse below.
            _ => None,
        };
        if let Some(rest) = rest {
            let code = EnhancedCode {
                class: c - b'0',
                subject: u16::from(s - b'0'),
                detail: u16::from(d - b'0'),
            };
            return Some((code, rest));
        }
    }
    // Cheap reject: most text lines do not start with "2.", "4." or "5.".
    let [class @ (b'2' | b'4' | b'5'), b'.', rest @ ..] = text else {
        return None;
    };
    let (subject, rest) = num_1_3(rest)?;
    let (detail, rest) = num_1_3(rest.strip_prefix(b".")?)?;
    let rest = match rest {
        [] => rest,
        [b' ', r @ ..] => r,
        _ => return None,
    };
    let class = class - b'0';
    Some((
        EnhancedCode {
            class,
            subject,
            detail,
        },
        rest,
    ))
}

impl EnhancedCode {
    /// Validates the three parts: class 2, 4 or 5; subject and detail 0-999.
    pub fn new(class: u8, subject: u16, detail: u16) -> Result<EnhancedCode, ReplyError> {
        if matches!(class, 2 | 4 | 5) && subject <= 999 && detail <= 999 {
            Ok(EnhancedCode {
                class,
                subject,
                detail,
            })
        } else {
            Err(ReplyError::InvalidEnhancedCode)
        }
    }

    /// The class: 2 success, 4 persistent transient failure, 5 permanent failure.
    pub fn class(self) -> u8 {
        self.class
    }

    /// The subject (0-999), e.g. 1 for addressing.
    pub fn subject(self) -> u16 {
        self.subject
    }

    /// The detail (0-999).
    pub fn detail(self) -> u16 {
        self.detail
    }

    fn encode(self, out: &mut BytesMut) {
        out.put_u8(b'0' + self.class);
        out.put_u8(b'.');
        put_small(out, self.subject);
        out.put_u8(b'.');
        put_small(out, self.detail);
    }
}

fn put_small(out: &mut BytesMut, n: u16) {
    // n <= 999 by construction; each digit is below 10.
    if n >= 100 {
        out.put_u8(b'0' + (n / 100) as u8);
    }
    if n >= 10 {
        out.put_u8(b'0' + (n / 10 % 10) as u8);
    }
    out.put_u8(b'0' + (n % 10) as u8);
}

impl TryFrom<&str> for EnhancedCode {
    type Error = ReplyError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        match parse_enhanced_prefix(s.as_bytes()) {
            Some((c, [])) if !s.ends_with(' ') => Ok(c),
            _ => Err(ReplyError::InvalidEnhancedCode),
        }
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Limits for reply assembly. Every limit is independent of what the peer announces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplyOptions {
    /// Maximum reply line length, counting CRLF. Default 512 (RFC 5321 §4.5.3.1.5).
    pub max_line_len: usize,
    /// Maximum lines in one reply. Default 128 (RFC 5321 sets none; EHLO replies run ~20).
    pub max_lines: usize,
    /// Maximum octets in one reply, counting CRLFs. Default 16,384.
    pub max_bytes: usize,
}

impl Default for ReplyOptions {
    fn default() -> Self {
        ReplyOptions {
            max_line_len: 512,
            max_lines: 128,
            max_bytes: 16_384,
        }
    }
}

/// One complete SMTP reply: a code, an optional enhanced status code and one or more lines.
///
/// ```text
/// Reply-line  = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF
/// ```
///
/// When the first line starts with an enhanced status code whose class matches the reply
/// code's first digit, it is parsed into [`Reply::enhanced`] and stripped from every line that
/// starts with the same code; [`Reply::encode`] writes it on every line, as Postfix does.
/// Text that is not UTF-8 is kept with U+FFFD replacement characters. The text is stored raw:
/// use `Display` (or [`EscapedText`]) before it reaches a log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reply {
    code: ReplyCode,
    enhanced: Option<EnhancedCode>,
    /// The lines joined by `\n`, which cannot occur inside a line.
    text: Text,
}

/// The longest reply text stored inline. Most replies a client reads (`250 2.1.5 Ok`, `354 ...`,
/// `221 Bye`, a greeting) fit, and then parsing one allocates nothing. A multiple of 16, the
/// block [`Scratch`] validates in.
const TEXT_INLINE: usize = 48;

/// A reply's text: inline when short, on the heap otherwise. Equality, hashing and `Debug` are
/// those of the string, whatever the storage.
#[derive(Clone)]
pub(crate) enum Text {
    Inline(ArrayString<TEXT_INLINE>),
    Heap(String),
}

impl Text {
    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Text::Inline(s) => s.as_str(),
            Text::Heap(s) => s.as_str(),
        }
    }

    /// Appends `s`, moving to the heap when it no longer fits inline.
    pub(crate) fn push_str(&mut self, s: &str) {
        match self {
            Text::Inline(a) => {
                if a.try_push_str(s).is_err() {
                    *self = Text::Heap(format!("{a}{s}"));
                }
            }
            Text::Heap(h) => h.push_str(s),
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::Inline(ArrayString::new())
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

fn check_line_bytes(line: &[u8]) -> Result<(), ReplyError> {
    if !class::has_cr_lf_nul(line) {
        return Ok(());
    }
    match memchr::memchr3(b'\r', b'\n', 0, line) {
        Some(i) => Err(ReplyError::ControlCharacter(line[i])),
        None => Ok(()),
    }
}

impl Reply {
    /// Builds a reply for a server to send.
    ///
    /// Fails on an empty `lines`, a CR, LF or NUL in a line, an enhanced code whose class
    /// differs from the code's first digit, or [`ReplyError::AmbiguousText`].
    pub fn new<I, S>(
        code: ReplyCode,
        enhanced: Option<EnhancedCode>,
        lines: I,
    ) -> Result<Reply, ReplyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut text = String::new();
        let mut count = 0;
        for line in lines {
            let line = line.as_ref();
            check_line_bytes(line.as_bytes())?;
            if count > 0 {
                text.push('\n');
            }
            text.push_str(line);
            count += 1;
        }
        if count == 0 {
            return Err(ReplyError::Empty);
        }
        match enhanced {
            Some(e) if e.class != code.class() => return Err(ReplyError::InvalidEnhancedCode),
            None if enhanced_of(code, first_line(&text).as_bytes()).is_some() => {
                return Err(ReplyError::AmbiguousText);
            }
            _ => {}
        }
        Ok(Reply {
            code,
            enhanced,
            text: Text::Heap(text),
        })
    }

    /// The reply code.
    pub fn code(&self) -> ReplyCode {
        self.code
    }

    /// The enhanced status code of the first line, if any.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text lines, without code, separator or enhanced code.
    pub fn lines(&self) -> Lines<'_> {
        Lines {
            rest: Some(self.text.as_str()),
        }
    }

    /// The number of lines (at least one).
    pub fn line_count(&self) -> usize {
        memchr::memchr_iter(b'\n', self.text.as_str().as_bytes()).count() + 1
    }

    /// The first line's text.
    pub fn first_line(&self) -> &str {
        first_line(self.text.as_str())
    }

    /// All lines joined by `\n`: raw peer text, escape it before logging.
    pub fn text(&self) -> &str {
        self.text.as_str()
    }

    /// Appends the reply in wire form, `-` on every line but the last, CRLF after each.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut code = [0u8; 3];
        let c = self.code.0;
        // Each digit of a code below 600 is below 10.
        code[0] = b'0' + (c / 100) as u8;
        code[1] = b'0' + (c / 10 % 10) as u8;
        code[2] = b'0' + (c % 10) as u8;
        let mut lines = self.lines().peekable();
        while let Some(line) = lines.next() {
            out.put_slice(&code);
            let last = lines.peek().is_none();
            match (self.enhanced, line.is_empty()) {
                (Some(e), empty) => {
                    out.put_u8(if last { b' ' } else { b'-' });
                    e.encode(out);
                    if !empty {
                        out.put_u8(b' ');
                        out.put_slice(line.as_bytes());
                    }
                }
                // A bare "250-" / "250" keeps the empty text empty on the way back.
                (None, true) if !last => out.put_u8(b'-'),
                (None, true) => {}
                (None, false) => {
                    out.put_u8(if last { b' ' } else { b'-' });
                    out.put_slice(line.as_bytes());
                }
            }
            out.put_slice(b"\r\n");
        }
    }

    /// Parses a complete reply from `input`: CRLF-terminated lines, nothing after the last.
    pub fn parse(input: &[u8], opts: &ReplyOptions) -> Result<Reply, ReplyError> {
        match Reply::parse_fast(input, opts) {
            Some(reply) => Ok(reply),
            // The general path accepts exactly the same replies and names the error.
            None => Reply::parse_general(input, opts),
        }
    }

    /// The common case in one pass per line: UTF-8 input, every line well-formed and within
    /// the limits. Returns `None` for anything else (including every error), leaving the
    /// verdict to [`Reply::parse_general`]; it never accepts what that rejects, and the
    /// `wire_smtp_reply` fuzz target checks that both agree.
    fn parse_fast(input: &[u8], opts: &ReplyOptions) -> Option<Reply> {
        // The whole input counts towards `max_bytes`, and the stored text is never longer.
        if input.len() > opts.max_bytes {
            return None;
        }
        // The text is at most the input less one line's code and CRLF: a short reply is
        // assembled in an aligned stack buffer and stored inline, without an allocation.
        if input.len() <= TEXT_INLINE + 5 {
            let mut buf = Scratch::<TEXT_INLINE>::new();
            let mut len = 0;
            let (code, enhanced) = scan_reply(input, opts, |newline, piece| {
                if newline {
                    *buf.0.get_mut(len)? = b'\n';
                    len += 1;
                }
                let end = len + piece.len();
                buf.0.get_mut(len..end)?.copy_from_slice(piece);
                len = end;
                Some(())
            })?;
            // One UTF-8 check for the whole text; CR and LF are ASCII, so the pieces are
            // valid exactly when the input is.
            let text = Text::Inline(buf.inline_str(len)?);
            return Some(Reply {
                code,
                enhanced,
                text,
            });
        }
        let mut buf = Vec::with_capacity(input.len());
        let (code, enhanced) = scan_reply(input, opts, |newline, piece| {
            if newline {
                buf.push(b'\n');
            }
            buf.extend_from_slice(piece);
            Some(())
        })?;
        // Validated where malloc put it: aligned, so a word pair at a time.
        let text = Text::Heap(String::from_utf8(buf).ok()?);
        Some(Reply {
            code,
            enhanced,
            text,
        })
    }

    /// The line-by-line reference parser behind [`Reply::parse`].
    pub(crate) fn parse_general(input: &[u8], opts: &ReplyOptions) -> Result<Reply, ReplyError> {
        let mut asm = ReplyAssembler::new(opts.clone());
        // One allocation for the whole text: it is never longer than the input.
        asm.text.reserve(input.len().min(opts.max_bytes));
        // Validating the whole input once is much cheaper than line by line.
        let utf8 = std::str::from_utf8(input).ok();
        let mut pos = 0;
        while pos < input.len() {
            let Some(lf) = memchr::memchr(b'\n', &input[pos..]) else {
                return Err(ReplyError::Incomplete);
            };
            let end = pos + lf;
            if end == pos || input[end - 1] != b'\r' {
                return Err(ReplyError::ControlCharacter(b'\n'));
            }
            let (start, line_end) = (pos, end - 1);
            pos = end + 1;
            // CR and LF are ASCII, so `start..line_end` are character boundaries.
            let line_str = utf8.map(|u| &u[start..line_end]);
            let r = asm.push_inner(&input[start..line_end], line_str);
            if r.is_err() {
                asm.reset();
            }
            if let Some(reply) = r? {
                return if pos == input.len() {
                    Ok(reply)
                } else {
                    Err(ReplyError::TrailingData)
                };
            }
        }
        Err(ReplyError::Incomplete)
    }

    /// The text, moved out without a copy.
    pub(crate) fn into_text(self) -> Text {
        self.text
    }

    /// The reply with control characters in its text escaped, for logs.
    pub fn escaped(&self) -> EscapedText<'_> {
        EscapedText(self.text.as_str())
    }
}

/// The line scan of [`Reply::parse_fast`]: checks every line and hands each line's text (the
/// code, separator and a repeated enhanced code stripped) to `push`, with `true` before every
/// line but the first. Returns the code and enhanced code, or `None` where the general parser
/// must decide: a stray control byte below 0x0e (CR, LF, NUL, TAB), a bad line, a limit, data
/// after the last line.
#[inline]
fn scan_reply(
    input: &[u8],
    opts: &ReplyOptions,
    mut push: impl FnMut(bool, &[u8]) -> Option<()>,
) -> Option<(ReplyCode, Option<EnhancedCode>)> {
    // The fourth octet of a line as the high byte of its first four, little-endian.
    const DASH: u32 = (b'-' as u32) << 24;
    const SPACE: u32 = (b' ' as u32) << 24;
    let mut first: Option<(ReplyCode, Option<EnhancedCode>)> = None;
    // The first line's digits in the low three bytes, once it is read.
    let mut prefix = 0u32;
    let mut pos = 0;
    let mut lines = 0;
    loop {
        let rest = input.get(pos..)?;
        // The first byte below 0x0e must be the CR of the line's CRLF: one scan finds the
        // line's end and checks the line for a stray CR, LF or NUL. A line with another such
        // byte (a TAB) is left to the general parser, which accepts it.
        let n = class::find_below_0e(rest)?;
        if rest.get(n..n + 2) != Some(b"\r\n") {
            return None;
        }
        let line = &rest[..n];
        lines += 1;
        if n + 2 > opts.max_line_len || lines > opts.max_lines {
            return None;
        }
        // A continuation line usually starts with the first line's digits and `-` or SP:
        // one comparison of four octets gives what `parse_line` would.
        let (code, last, t) = match first {
            Some((c, _)) => {
                let h = line
                    .first_chunk::<4>()
                    .map_or(0, |h| u32::from_le_bytes(*h));
                if h == prefix | DASH {
                    (c, false, &line[4..])
                } else if h == prefix | SPACE {
                    (c, true, &line[4..])
                } else {
                    parse_line(line).ok()?
                }
            }
            None => parse_line(line).ok()?,
        };
        match first {
            None => {
                // The code's three digits, which `parse_line` accepted.
                if let Some(d) = line.first_chunk::<3>() {
                    prefix = u32::from_le_bytes([d[0], d[1], d[2], 0]);
                }
                let (e, t) = match enhanced_of(code, t) {
                    Some((e, rest)) => (Some(e), rest),
                    None => (None, t),
                };
                first = Some((code, e));
                push(false, t)?;
            }
            Some((c, _)) if c != code => return None,
            Some((_, e)) => {
                let t = match e {
                    Some(e) => match enhanced_of(code, t) {
                        Some((found, rest)) if e == found => rest,
                        _ => t,
                    },
                    None => t,
                };
                push(true, t)?;
            }
        }
        pos += n + 2;
        if last {
            return first.filter(|_| pos == input.len());
        }
    }
}

fn first_line(text: &str) -> &str {
    match find_byte(text.as_bytes(), b'\n') {
        // The split is at an ASCII byte, so both halves are character boundaries.
        Some(i) => &text[..i],
        None => text,
    }
}

/// A plain loop beats memchr's setup cost on the short lines of a reply.
pub(crate) fn find_byte(h: &[u8], b: u8) -> Option<usize> {
    h.iter().position(|&c| c == b)
}

/// The lines of a [`Reply`], from [`Reply::lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match find_byte(rest.as_bytes(), b'\n') {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

fn enhanced_of(code: ReplyCode, text: &[u8]) -> Option<(EnhancedCode, &[u8])> {
    parse_enhanced_prefix(text).filter(|(e, _)| e.class == code.class())
}

impl fmt::Display for Reply {
    /// `250 2.1.0 text`, lines separated by ` / `, control characters escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        for (i, line) in self.lines().enumerate() {
            f.write_str(if i == 0 { " " } else { " / " })?;
            write!(f, "{}", EscapedText(line))?;
        }
        Ok(())
    }
}

/// Peer text made safe for logs: control characters (C0, DEL, C1) and Unicode bidirectional
/// and zero-width format characters are written as escapes, and `\` as `\\`.
#[derive(Debug, Clone, Copy)]
pub struct EscapedText<'a>(pub &'a str);

fn is_format_hazard(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

impl fmt::Display for EscapedText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
            return f.write_str(s);
        }
        for c in s.chars() {
            if c == '\\' {
                f.write_str("\\\\")?;
            } else if c.is_control() || is_format_hazard(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Assembles a reply from lines fed one at a time (without CRLF), e.g. from the line framer.
///
/// Strict where RFC 5321 §4.2 is: every line starts with three digits and SP, `-` or the end
/// of line; all lines carry the same code; lines, line count and octets are bounded by
/// [`ReplyOptions`]. After an error the assembler is reset; a client should treat any error as
/// fatal for the connection, since it cannot know where the next reply begins.
#[derive(Debug, Clone)]
pub struct ReplyAssembler {
    opts: ReplyOptions,
    code: Option<ReplyCode>,
    enhanced: Option<EnhancedCode>,
    text: String,
    lines: usize,
    bytes: usize,
}

impl Default for ReplyAssembler {
    fn default() -> Self {
        ReplyAssembler::new(ReplyOptions::default())
    }
}

impl ReplyAssembler {
    /// An empty assembler with the given limits.
    pub fn new(opts: ReplyOptions) -> Self {
        ReplyAssembler {
            opts,
            code: None,
            enhanced: None,
            text: String::new(),
            lines: 0,
            bytes: 0,
        }
    }

    /// True between the first and the last line of a multi-line reply.
    pub fn is_mid_reply(&self) -> bool {
        self.code.is_some()
    }

    /// Forgets a partly assembled reply.
    pub fn reset(&mut self) {
        self.code = None;
        self.enhanced = None;
        self.text.clear();
        self.lines = 0;
        self.bytes = 0;
    }

    /// Feeds one line without its CRLF. Returns the reply when this was its last line.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let r = self.push_inner(line, None);
        if r.is_err() {
            self.reset();
        }
        r
    }

    /// `line_str` is `line` already known to be UTF-8, which saves validating it again.
    fn push_inner(
        &mut self,
        line: &[u8],
        line_str: Option<&str>,
    ) -> Result<Option<Reply>, ReplyError> {
        let len = line.len() + 2;
        if len > self.opts.max_line_len {
            return Err(ReplyError::LineTooLong {
                len,
                max: self.opts.max_line_len,
            });
        }
        if self.lines >= self.opts.max_lines {
            return Err(ReplyError::TooManyLines {
                max: self.opts.max_lines,
            });
        }
        if self.bytes + len > self.opts.max_bytes {
            return Err(ReplyError::TooManyBytes {
                max: self.opts.max_bytes,
            });
        }
        check_line_bytes(line)?;
        let (code, last, text) = parse_line(line)?;
        let text = match self.code {
            None => {
                self.code = Some(code);
                match enhanced_of(code, text) {
                    Some((e, rest)) => {
                        self.enhanced = Some(e);
                        rest
                    }
                    None => text,
                }
            }
            Some(expected) if expected != code => {
                return Err(ReplyError::InconsistentCode {
                    expected: expected.0,
                    found: code.0,
                });
            }
            Some(_) => {
                self.text.push('\n');
                // Only a reply that opened with an enhanced code has one to strip.
                match self.enhanced {
                    Some(e) => match enhanced_of(code, text) {
                        Some((found, rest)) if e == found => rest,
                        _ => text,
                    },
                    None => text,
                }
            }
        };
        match line_str {
            // `text` is a suffix of `line` cut after ASCII bytes, so the offset is a character
            // boundary of `line_str`.
            Some(ls) => self.text.push_str(&ls[line.len() - text.len()..]),
            None => match std::str::from_utf8(text) {
                Ok(t) => self.text.push_str(t),
                Err(_) => self.text.push_str(&String::from_utf8_lossy(text)),
            },
        }
        // Invalid UTF-8 becomes U+FFFD, three octets for one: the stored text is bounded too.
        if self.text.len() > self.opts.max_bytes {
            return Err(ReplyError::TooManyBytes {
                max: self.opts.max_bytes,
            });
        }
        self.lines += 1;
        self.bytes += len;
        if !last {
            return Ok(None);
        }
        // A short text is copied inline and the assembler keeps its buffer for the next
        // reply: no allocation per reply in the common case.
        let text = match ArrayString::from(self.text.as_str()) {
            Ok(s) => Text::Inline(s),
            Err(_) => Text::Heap(std::mem::take(&mut self.text)),
        };
        let reply = Reply {
            code,
            enhanced: self.enhanced,
            text,
        };
        self.reset();
        Ok(Some(reply))
    }
}

/// `Reply-code ( "-" / SP / end )`: returns the code, whether this is the last line, the text.
fn parse_line(line: &[u8]) -> Result<(ReplyCode, bool, &[u8]), ReplyError> {
    let [d0, d1, d2, rest @ ..] = line else {
        return Err(ReplyError::InvalidCode);
    };
    if !(d0.is_ascii_digit() && d1.is_ascii_digit() && d2.is_ascii_digit()) {
        return Err(ReplyError::InvalidCode);
    }
    let n = u16::from(d0 - b'0') * 100 + u16::from(d1 - b'0') * 10 + u16::from(d2 - b'0');
    let code = ReplyCode::new(n)?;
    match rest {
        [] => Ok((code, true, rest)),
        [b' ', text @ ..] => Ok((code, true, text)),
        [b'-', text @ ..] => Ok((code, false, text)),
        // A fourth digit makes "2500" a malformed code rather than "250" without a separator.
        [b, ..] if b.is_ascii_digit() => Err(ReplyError::InvalidCode),
        [b, ..] => Err(ReplyError::MissingSeparator(*b)),
    }
}

//! Streaming dot-stuffing codec for SMTP `DATA` (RFC 5321 §4.5.2) and POP3 multi-line responses
//! (RFC 1939 §3).
//!
//! A message body travels as lines ended by CRLF; a line that begins with `.` gets one more `.` in
//! front of it ("stuffing"), and the body ends with a line holding a single `.`, i.e. the octets
//! `CRLF.CRLF` (the first CRLF ends the body's last line).
//!
//! - [`DotEncoder`] turns arbitrary chunks of message bytes into that wire form. It normalises
//!   every bare CR and bare LF to CRLF *before* stuffing, so no line ending the peer might honour
//!   can hide a `.` from the stuffer (the lettre RUSTSEC-2021-0069 / SMTP smuggling class), and it
//!   can refuse, with a typed [`EncodeError`], a line over 1,000 octets or an 8-bit octet.
//! - [`BodyCheck`] runs the encoder's checks (and computes the exact wire size) without producing
//!   output, so a client can validate a spooled message *before* it sends `MAIL FROM`.
//! - [`DotDecoder`] un-stuffs a received body and ends only at `CRLF.CRLF`, leaving the bytes
//!   after the terminator in the caller's buffer for the next response. The line framer's
//!   [`Mode::DotBody`](crate::framer::Mode::DotBody) is this decoder.
//!
//! Both directions work on runs, not bytes: the encoder jumps from line ending to line ending
//! with `memchr2`, the decoder jumps from one `CRLF.` to the next with a `memmem` searcher, and
//! decoded chunks are `Bytes` cut from the input buffer without copying.
//!
//! ```
//! use bytes::BytesMut;
//! use mailferry_wire::dot::{BodyChunk, DotDecoder, DotEncoder, EncodeOptions};
//!
//! // Encode: a bare LF is normalised, the leading dot is stuffed, the terminator is appended.
//! let mut encoder = DotEncoder::new(EncodeOptions::default());
//! let mut wire = BytesMut::new();
//! encoder.encode(b".hidden\nlast line", &mut wire)?;
//! let stats = encoder.finish(&mut wire)?;
//! assert_eq!(&wire[..], b"..hidden\r\nlast line\r\n.\r\n");
//! assert_eq!(stats.stuffed_lines, 1);
//!
//! // Decode: bytes after the terminator stay in the buffer.
//! wire.extend_from_slice(b"+OK next response\r\n");
//! let mut decoder = DotDecoder::new();
//! let mut body = Vec::new();
//! while let Some(chunk) = decoder.decode(&mut wire) {
//!     match chunk {
//!         BodyChunk::Data(bytes) => body.extend_from_slice(&bytes),
//!         BodyChunk::End => break,
//!     }
//! }
//! assert_eq!(body, b".hidden\r\nlast line\r\n");
//! assert_eq!(&wire[..], b"+OK next response\r\n");
//! # Ok::<(), mailferry_wire::dot::EncodeError>(())
//! ```

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem::Finder;

/// The longest text line RFC 5321 §4.5.3.1.6 lets a client send: 1,000 octets including CRLF.
pub const MAX_TEXT_LINE_LEN: usize = 1000;

/// Checks the encoder (and [`BodyCheck`]) applies while encoding.
///
/// The [`Default`] is the RFC 5321 baseline a client must assume of a peer that announced
/// nothing: text lines of at most [`MAX_TEXT_LINE_LEN`] (1,000) octets including CRLF
/// (§4.5.3.1.6), and 7-bit data only (§2.4; 8-bit octets need the peer's `8BITMIME`,
/// RFC 6152). A client that saw `8BITMIME` sets `allow_8bit`.
///
/// ```
/// use mailferry_wire::dot::EncodeOptions;
/// let mut options = EncodeOptions::default();
/// options.allow_8bit = true; // the server announced 8BITMIME
/// assert_eq!(options.max_line_len, Some(1000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodeOptions {
    /// Longest line allowed on the wire, in octets including the CRLF and any stuffed dot;
    /// `None` disables the check. Default `Some(1000)` (RFC 5321 §4.5.3.1.6).
    pub max_line_len: Option<usize>,
    /// Whether octets `0x80..=0xFF` may pass. Default `false` (RFC 5321 §2.4, RFC 6152).
    pub allow_8bit: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            max_line_len: Some(MAX_TEXT_LINE_LEN),
            allow_8bit: false,
        }
    }
}

impl EncodeOptions {
    /// No line length limit and 8-bit data allowed: only normalisation and stuffing.
    pub fn unchecked() -> Self {
        Self {
            max_line_len: None,
            allow_8bit: true,
        }
    }
}

/// Why a body cannot be sent as it is. Positions count from the start of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A line would be longer than the limit on the wire (CRLF and stuffed dot included).
    #[error("line {line} of the body is longer than {limit} octets")]
    LineTooLong {
        /// 1-based line number in the body.
        line: u64,
        /// The configured [`EncodeOptions::max_line_len`].
        limit: usize,
    },
    /// An octet `0x80..=0xFF` while [`EncodeOptions::allow_8bit`] is off.
    #[error(
        "8-bit octet at offset {offset} (line {line}) of the body, and 8-bit data is not allowed"
    )]
    EightBit {
        /// 1-based line number in the body.
        line: u64,
        /// 0-based offset of the octet in the input.
        offset: u64,
    },
}

/// Counters describing one encoded (or checked) body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodeStats {
    /// Octets of message input.
    pub bytes_in: u64,
    /// Octets on the wire, terminator `.\r\n` included: the exact size of the `DATA` payload.
    pub bytes_out: u64,
    /// Lines in the body (the terminator line not included).
    pub lines: u64,
    /// Lines that began with `.` and got a second one.
    pub stuffed_lines: u64,
    /// Bare CRs and bare LFs rewritten to CRLF.
    pub normalised_line_endings: u64,
    /// Whether a CRLF had to be appended because the input did not end with a line ending.
    pub appended_final_crlf: bool,
}

/// Where encoded output goes: a buffer, or nowhere (for [`BodyCheck`]).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// The sink of a validating scan.
struct Discard;

impl Sink for Discard {
    fn put(&mut self, _bytes: &[u8]) {}
}

/// The encoder state, shared by [`DotEncoder`] and [`BodyCheck`] so that both apply exactly the
/// same rules.
#[derive(Debug, Clone)]
struct EncoderCore {
    options: EncodeOptions,
    /// Nothing of the current line has been written yet (true at the start of the body).
    at_line_start: bool,
    /// The previous input octet was a CR, already written as CRLF: an LF right after it is the
    /// second half of that CRLF and is dropped.
    skip_lf: bool,
    /// Wire octets of the current line so far, without its CRLF.
    line_len: usize,
    /// Sticky: once a body fails a check, every later call reports the same error.
    failed: Option<EncodeError>,
    stats: EncodeStats,
}

impl EncoderCore {
    fn new(options: EncodeOptions) -> Self {
        Self {
            options,
            at_line_start: true,
            skip_lf: false,
            line_len: 0,
            failed: None,
            stats: EncodeStats::default(),
        }
    }

    fn fail(&mut self, error: EncodeError) -> Result<(), EncodeError> {
        self.failed = Some(error.clone());
        Err(error)
    }

    fn line_too_long(&mut self) -> Result<(), EncodeError> {
        let error = EncodeError::LineTooLong {
            line: self.stats.lines + 1,
            limit: self.options.max_line_len.unwrap_or(usize::MAX),
        };
        self.fail(error)
    }

    fn end_line<S: Sink>(&mut self, out: &mut S) {
        out.put(b"\r\n");
        self.count_line_end();
    }

    fn count_line_end(&mut self) {
        self.stats.bytes_out += 2;
        self.stats.lines += 1;
        self.line_len = 0;
        self.at_line_start = true;
    }

    /// Checks the text run `run` (no CR or LF in it, not empty) of the current line and
    /// accounts for it; returns whether a dot must be stuffed in front of it. `offset` is the
    /// position of `run[0]` in the body.
    fn check_run(&mut self, run: &[u8], offset: u64) -> Result<bool, EncodeError> {
        if !self.options.allow_8bit && !run.is_ascii() {
            // `is_ascii` is the fast word-at-a-time test; locate the octet only on failure.
            let index = run.iter().position(|b| !b.is_ascii()).unwrap_or(0);
            let error = EncodeError::EightBit {
                line: self.stats.lines + 1,
                offset: offset + index as u64,
            };
            self.fail(error)?;
        }
        let stuff = self.at_line_start && run[0] == b'.';
        let added = run.len() + usize::from(stuff);
        if let Some(limit) = self.options.max_line_len
            && self.line_len + added + 2 > limit
        {
            self.line_too_long()?;
        }
        self.stats.stuffed_lines += u64::from(stuff);
        self.line_len += added;
        self.stats.bytes_out += added as u64;
        self.at_line_start = false;
        Ok(stuff)
    }

    fn encode<S: Sink>(&mut self, input: &[u8], out: &mut S) -> Result<(), EncodeError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let base = self.stats.bytes_in;
        let mut pos = 0;
        // `input[copied..pos]` passed the checks and goes out verbatim: text and real CRLFs are
        // copied in long spans, interrupted only where a dot or a CRLF must be inserted.
        let mut copied = 0;
        while pos < input.len() {
            if self.skip_lf {
                self.skip_lf = false;
                if input[pos] == b'\n' {
                    pos += 1;
                    copied = pos;
                    continue;
                }
                // The CR before this octet had no LF: it was a bare CR, already written as CRLF.
                self.stats.normalised_line_endings += 1;
            }
            let rest = &input[pos..];
            let end = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
            if end > 0 && self.check_run(&rest[..end], base + pos as u64)? {
                out.put(&input[copied..pos]);
                out.put(b".");
                copied = pos;
            }
            pos += end;
            match input.get(pos) {
                None => break,
                Some(b'\r') if input.get(pos + 1) == Some(&b'\n') => {
                    pos += 2;
                    self.count_line_end();
                }
                Some(&ending) => {
                    out.put(&input[copied..pos]);
                    if ending == b'\r' {
                        // A bare CR, or a CR whose LF may come in the next chunk: written as
                        // CRLF at once, and a following LF is dropped.
                        self.skip_lf = true;
                    } else {
                        self.stats.normalised_line_endings += 1;
                    }
                    self.end_line(out);
                    pos += 1;
                    copied = pos;
                }
            }
        }
        out.put(&input[copied..pos]);
        self.stats.bytes_in += input.len() as u64;
        Ok(())
    }

    /// Ends the body and resets the core for the next one.
    fn finish<S: Sink>(&mut self, out: &mut S) -> Result<EncodeStats, EncodeError> {
        let options = self.options;
        let mut core = std::mem::replace(self, Self::new(options));
        if let Some(error) = core.failed.take() {
            return Err(error);
        }
        if core.skip_lf {
            core.stats.normalised_line_endings += 1;
        }
        if !core.at_line_start {
            core.end_line(out);
            core.stats.appended_final_crlf = true;
        }
        out.put(b".\r\n");
        core.stats.bytes_out += 3;
        Ok(core.stats)
    }
}

/// Streaming dot-stuffing encoder for SMTP `DATA`.
///
/// Feed the message in chunks of any size with [`encode`](Self::encode), then call
/// [`finish`](Self::finish), which appends the final CRLF if the body lacks one and the
/// terminator `.\r\n`. Output is appended to the caller's buffer, so the end of the body and the
/// terminator leave in one write.
///
/// Every bare CR and bare LF becomes CRLF (RFC 5321 §2.3.8 forbids them alone), then every line
/// that begins with `.` — the first line and a line after an empty line included — gets another
/// `.` (§4.5.2). A CRLF split across two chunks is still one line ending.
///
/// If a check of [`EncodeOptions`] fails, `encode` appends nothing of that chunk, returns the
/// error, and keeps returning it (the encoder is poisoned until `finish` resets it). Lines of
/// earlier chunks may already have been sent by then: to fail before sending anything, run the
/// body through [`BodyCheck`] first.
///
/// ```
/// use bytes::BytesMut;
/// use mailferry_wire::dot::{DotEncoder, EncodeError, EncodeOptions};
///
/// let mut encoder = DotEncoder::new(EncodeOptions::default());
/// let mut out = BytesMut::new();
/// encoder.encode(b"Subject: hi\r\n\r\n.", &mut out)?;
/// encoder.encode(b"\r\nbye", &mut out)?;
/// encoder.finish(&mut out)?;
/// assert_eq!(&out[..], b"Subject: hi\r\n\r\n..\r\nbye\r\n.\r\n");
///
/// // 8-bit data without 8BITMIME fails locally, with the position.
/// let error = encoder.encode("caf\u{e9}".as_bytes(), &mut out).unwrap_err();
/// assert_eq!(error, EncodeError::EightBit { line: 1, offset: 3 });
/// # Ok::<(), EncodeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DotEncoder {
    core: EncoderCore,
}

impl DotEncoder {
    /// An encoder at the start of a body.
    pub fn new(options: EncodeOptions) -> Self {
        Self {
            core: EncoderCore::new(options),
        }
    }

    /// Encodes the next chunk of the body, appending the wire form to `out`.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] when the chunk breaks a check of [`EncodeOptions`]; `out` is then left
    /// as it was before the call.
    pub fn encode(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.core.encode(input, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Ends the body: appends CRLF if the body did not end with a line ending, then `.\r\n`.
    /// The encoder is then ready for the next body, with the same options.
    ///
    /// # Errors
    ///
    /// The error an earlier [`encode`](Self::encode) returned, if any; nothing is appended then.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<EncodeStats, EncodeError> {
        self.core.finish(out)
    }

    /// Counters for the body so far.
    pub fn stats(&self) -> EncodeStats {
        self.core.stats
    }
}

/// A validating scan: the checks and counters of [`DotEncoder`] without output.
///
/// Run a stored message through it before sending `MAIL FROM`, so that a line too long or an
/// 8-bit octet for a peer without `8BITMIME` fails locally before the transaction starts.
/// [`EncodeStats::bytes_out`] is then the exact size of the `DATA` payload.
///
/// ```
/// use mailferry_wire::dot::{BodyCheck, EncodeError, EncodeOptions};
///
/// let mut check = BodyCheck::new(EncodeOptions::default());
/// check.update(b".a\n")?;
/// let stats = check.finish()?;
/// assert_eq!(stats.bytes_out, b"..a\r\n.\r\n".len() as u64);
///
/// let mut check = BodyCheck::new(EncodeOptions::default());
/// let long_line = vec![b'x'; 999];
/// assert_eq!(
///     check.update(&long_line),
///     Err(EncodeError::LineTooLong { line: 1, limit: 1000 })
/// );
/// # Ok::<(), EncodeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BodyCheck {
    core: EncoderCore,
}

impl BodyCheck {
    /// A scan at the start of a body.
    pub fn new(options: EncodeOptions) -> Self {
        Self {
            core: EncoderCore::new(options),
        }
    }

    /// Scans the next chunk of the body.
    ///
    /// # Errors
    ///
    /// The first [`EncodeError`] the encoder would report for this body (sticky).
    pub fn update(&mut self, input: &[u8]) -> Result<(), EncodeError> {
        self.core.encode(input, &mut Discard)
    }

    /// Ends the scan and returns the counters the encoder would report; resets for the next body.
    ///
    /// # Errors
    ///
    /// The error an earlier [`update`](Self::update) returned, if any.
    pub fn finish(&mut self) -> Result<EncodeStats, EncodeError> {
        self.core.finish(&mut Discard)
    }
}

/// One step of a decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyChunk {
    /// Un-stuffed body octets (never empty), cut from the input buffer without copying.
    Data(Bytes),
    /// The terminator `CRLF.CRLF` was consumed; the body is complete.
    End,
}

/// Streaming dot-stuffing decoder for POP3 multi-line responses and SMTP-server `DATA`.
///
/// [`decode`](Self::decode) consumes from the front of the caller's buffer and returns the next
/// [`BodyChunk`], or `None` when it needs more input. The body ends only at `CRLF.CRLF`; the
/// start of the body counts as "after CRLF", so a body sent as just `.\r\n` is empty. Any other
/// line beginning with `.` loses that first `.` (RFC 5321 §4.5.2, RFC 1939 §3). A bare LF or
/// bare CR never ends a line here: `LF.LF`, `CR.CR`, `LF.CRLF`, `CRLF.LF` are body data (SMTP
/// smuggling, CVE-2023-51764). They are counted in [`bare_line_endings`](Self::bare_line_endings)
/// so a strict server can refuse the message.
///
/// After [`BodyChunk::End`] the decoder returns `None` and leaves the buffer alone: what follows
/// belongs to the next response. Call [`reset`](Self::reset) to read another body.
///
/// Undecided octets (at most `CRLF.` or a trailing CR) stay in the buffer between calls; every
/// other octet is looked at once.
#[derive(Debug, Clone)]
pub struct DotDecoder {
    /// The front of the buffer begins a line.
    line_start: bool,
    done: bool,
    bare_line_endings: u64,
    unstuffed: u64,
    /// `CRLF.` is where a body chunk must stop: either a stuffed dot to drop or the terminator.
    finder: Finder<'static>,
}

impl Default for DotDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl DotDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            line_start: true,
            done: false,
            bare_line_endings: 0,
            unstuffed: 0,
            finder: Finder::new(b"\r\n."),
        }
    }

    /// Starts a new body.
    pub fn reset(&mut self) {
        self.line_start = true;
        self.done = false;
        self.bare_line_endings = 0;
        self.unstuffed = 0;
    }

    /// Whether the terminator has been consumed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Bare CRs and bare LFs seen in the body so far (delivered in [`BodyChunk::Data`]).
    pub fn bare_line_endings(&self) -> u64 {
        self.bare_line_endings
    }

    /// Lines whose leading `.` was removed so far.
    pub fn unstuffed_lines(&self) -> u64 {
        self.unstuffed
    }

    /// Decodes the next chunk from the front of `buf`; `None` means "need more input" (or the
    /// body already ended).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<BodyChunk> {
        if self.done {
            return None;
        }
        if self.line_start {
            if buf.first()? == &b'.' {
                if buf.get(1)? == &b'\r' && buf.get(2)? == &b'\n' {
                    buf.advance(3);
                    self.done = true;
                    return Some(BodyChunk::End);
                }
                // A line with more than the dot: the first dot goes (RFC 5321 §4.5.2 step 2).
                buf.advance(1);
                self.unstuffed += 1;
            }
            self.line_start = false;
        }
        let (take, line_start) = match self.finder.find(buf) {
            // Stop after the CRLF; the dot is then handled at a line start.
            Some(index) => (index + 2, true),
            None if buf.ends_with(b"\r\n") => (buf.len(), true),
            // A trailing CR may begin `CRLF.`: keep it until the next octet arrives.
            None if buf.ends_with(b"\r") => (buf.len() - 1, false),
            None => (buf.len(), false),
        };
        if take == 0 {
            return None;
        }
        self.line_start = line_start;
        let chunk = buf.split_to(take).freeze();
        self.bare_line_endings += count_bare_line_endings(&chunk);
        Some(BodyChunk::Data(chunk))
    }
}

/// Counts CRs not followed by LF and LFs not preceded by CR in one decoded chunk. A chunk never
/// ends in CR (the decoder holds a trailing CR back), so looking inside the chunk is enough.
fn count_bare_line_endings(chunk: &[u8]) -> u64 {
    let mut count = 0;
    for index in memchr::memchr2_iter(b'\r', b'\n', chunk) {
        let bare = if chunk[index] == b'\r' {
            chunk.get(index + 1) != Some(&b'\n')
        } else {
            index == 0 || chunk[index - 1] != b'\r'
        };
        count += u64::from(bare);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_split_invariant, for_each_split};
    use proptest::prelude::*;

    fn encode_chunks(options: EncodeOptions, chunks: &[&[u8]]) -> Result<Vec<u8>, EncodeError> {
        let mut encoder = DotEncoder::new(options);
        let mut out = BytesMut::new();
        for chunk in chunks {
            encoder.encode(chunk, &mut out)?;
        }
        encoder.finish(&mut out)?;
        Ok(out.to_vec())
    }

    fn encode_all(input: &[u8]) -> Vec<u8> {
        encode_chunks(EncodeOptions::unchecked(), &[input]).unwrap()
    }

    /// Decodes chunk by chunk: (body, whether the terminator was seen, bytes left over).
    fn decode_chunks(chunks: &[&[u8]]) -> (Vec<u8>, bool, Vec<u8>) {
        let mut decoder = DotDecoder::new();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut ended = false;
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(step) = decoder.decode(&mut buf) {
                match step {
                    BodyChunk::Data(data) => {
                        assert!(!data.is_empty());
                        body.extend_from_slice(&data);
                    }
                    BodyChunk::End => ended = true,
                }
            }
        }
        (body, ended, buf.to_vec())
    }

    /// The reference normalisation: CR LF, bare CR and bare LF each become CRLF, and a
    /// non-empty body gets a final CRLF.
    fn normalise(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match input[i] {
                b'\r' => {
                    out.extend_from_slice(b"\r\n");
                    if input.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                }
                b'\n' => out.extend_from_slice(b"\r\n"),
                b => out.push(b),
            }
            i += 1;
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn encoder_known_answers() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"..", b"...\r\n.\r\n"),
            (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
            (b"a\r\n\r\n.\r\n", b"a\r\n\r\n..\r\n.\r\n"),
            (b"a.b\r\n", b"a.b\r\n.\r\n"),
            (b"\r\n", b"\r\n.\r\n"),
            (b"\n", b"\r\n.\r\n"),
            (b"\r", b"\r\n.\r\n"),
            (b"\r\r\n", b"\r\n\r\n.\r\n"),
            (b"\n\r", b"\r\n\r\n.\r\n"),
            (b"a\n.\n", b"a\r\n..\r\n.\r\n"),
            (b"a\r.\r", b"a\r\n..\r\n.\r\n"),
            (b"x\r\n.\r\ny", b"x\r\n..\r\ny\r\n.\r\n"),
        ];
        for (input, expected) in table {
            assert_eq!(
                encode_all(input),
                expected.to_vec(),
                "input {:?}",
                input.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn encoder_stuffs_first_line_dot() {
        assert_eq!(encode_all(b".\r\nbody"), b"..\r\nbody\r\n.\r\n");
        assert_eq!(encode_all(b".foo"), b"..foo\r\n.\r\n");
        // A line after an empty line, and consecutive dot lines.
        assert_eq!(encode_all(b"\r\n.\r\n.\r\n"), b"\r\n..\r\n..\r\n.\r\n");
    }

    #[test]
    fn encoder_normalises_bare_cr_and_lf() {
        // Each of these would let a lax peer see an end of data if left alone.
        let table: &[(&[u8], &[u8])] = &[
            (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        ];
        for (input, expected) in table {
            assert_eq!(encode_all(input), expected.to_vec());
        }
        let mut encoder = DotEncoder::new(EncodeOptions::unchecked());
        let mut out = BytesMut::new();
        encoder.encode(b"a\nb\rc\r\nd\r", &mut out).unwrap();
        let stats = encoder.finish(&mut out).unwrap();
        assert_eq!(stats.normalised_line_endings, 3);
        assert_eq!(stats.lines, 4);
        assert!(!stats.appended_final_crlf);
    }

    #[test]
    fn encoder_crlf_split_across_chunks_is_one_line_end() {
        let out = encode_chunks(EncodeOptions::unchecked(), &[b"a\r", b"\n.b"]).unwrap();
        assert_eq!(out, b"a\r\n..b\r\n.\r\n");
    }

    #[test]
    fn encoder_line_length_limit() {
        let options = EncodeOptions {
            max_line_len: Some(10),
            ..EncodeOptions::default()
        };
        // 8 octets + CRLF = 10: allowed; 9 + CRLF: refused.
        assert!(encode_chunks(options, &[b"12345678\r\n"]).is_ok());
        assert!(encode_chunks(options, &[b"12345678"]).is_ok());
        assert_eq!(
            encode_chunks(options, &[b"ok\r\n123456789\r\n"]),
            Err(EncodeError::LineTooLong { line: 2, limit: 10 })
        );
        // The stuffed dot counts: it is on the wire.
        assert_eq!(
            encode_chunks(options, &[b".2345678"]),
            Err(EncodeError::LineTooLong { line: 1, limit: 10 })
        );
        // Split across chunks.
        assert_eq!(
            encode_chunks(options, &[b"12345", b"6789"]),
            Err(EncodeError::LineTooLong { line: 1, limit: 10 })
        );
        // The RFC default.
        let line = vec![b'x'; 998];
        assert!(encode_chunks(EncodeOptions::default(), &[&line]).is_ok());
        let line = vec![b'x'; 999];
        assert_eq!(
            encode_chunks(EncodeOptions::default(), &[&line]),
            Err(EncodeError::LineTooLong {
                line: 1,
                limit: 1000
            })
        );
    }

    #[test]
    fn encoder_8bit_check() {
        assert_eq!(
            encode_chunks(EncodeOptions::default(), &[b"ab\r\ncd\xC3\xA9"]),
            Err(EncodeError::EightBit { line: 2, offset: 6 })
        );
        assert_eq!(
            encode_chunks(EncodeOptions::default(), &[b"ab\r\n", b"c\x80"]),
            Err(EncodeError::EightBit { line: 2, offset: 5 })
        );
        let options = EncodeOptions {
            allow_8bit: true,
            ..EncodeOptions::default()
        };
        assert_eq!(
            encode_chunks(options, &[b"caf\xC3\xA9"]).unwrap(),
            b"caf\xC3\xA9\r\n.\r\n"
        );
    }

    #[test]
    fn encoder_error_is_sticky_and_appends_nothing() {
        let mut encoder = DotEncoder::new(EncodeOptions::default());
        let mut out = BytesMut::from(&b"MAIL FROM:<>\r\n"[..]);
        encoder.encode(b"ok\r\n", &mut out).unwrap();
        let error = EncodeError::EightBit {
            line: 3,
            offset: 10,
        };
        assert_eq!(
            encoder.encode(b"good\r\n\xFF", &mut out),
            Err(error.clone())
        );
        assert_eq!(&out[..], b"MAIL FROM:<>\r\nok\r\n");
        assert_eq!(encoder.encode(b"fine", &mut out), Err(error.clone()));
        assert_eq!(encoder.finish(&mut out), Err(error));
        assert_eq!(&out[..], b"MAIL FROM:<>\r\nok\r\n");
        // finish reset the encoder.
        encoder.encode(b"x", &mut out).unwrap();
        encoder.finish(&mut out).unwrap();
        assert_eq!(&out[..], b"MAIL FROM:<>\r\nok\r\nx\r\n.\r\n");
    }

    #[test]
    fn encoder_output_appends_after_existing_bytes() {
        let mut encoder = DotEncoder::new(EncodeOptions::default());
        let mut out = BytesMut::from(&b"DATA\r\n"[..]);
        encoder.encode(b"hi", &mut out).unwrap();
        encoder.finish(&mut out).unwrap();
        assert_eq!(&out[..], b"DATA\r\nhi\r\n.\r\n");
    }

    #[test]
    fn body_check_matches_encoder() {
        let inputs: &[&[u8]] = &[b"", b".a\nb\r\r\n", b"x\r\n.\r\n", b"\xFF", &[b'y'; 1200]];
        for input in inputs {
            for options in [EncodeOptions::default(), EncodeOptions::unchecked()] {
                let mut encoder = DotEncoder::new(options);
                let mut out = BytesMut::new();
                let encoded = encoder
                    .encode(input, &mut out)
                    .and_then(|()| encoder.finish(&mut out));
                let mut check = BodyCheck::new(options);
                let checked = check.update(input).and_then(|()| check.finish());
                assert_eq!(encoded, checked);
                if let Ok(stats) = checked {
                    assert_eq!(stats.bytes_out, out.len() as u64);
                    assert_eq!(stats.bytes_in, input.len() as u64);
                }
            }
        }
    }

    #[test]
    fn encoder_split_point_invariance() {
        let inputs: &[&[u8]] = &[
            b".a\r\n\r\n.b\nc\rd\r\n..\r\r\n.",
            b"\r\n.\r\n",
            b"x\r",
            b"line\r\n\xC3\xA9\r\n",
        ];
        for input in inputs {
            for options in [EncodeOptions::default(), EncodeOptions::unchecked()] {
                let _ = assert_split_invariant(input, |chunks| encode_chunks(options, chunks));
            }
        }
    }

    #[test]
    fn decoder_known_answers() {
        // (wire, body, ended, left over)
        type Case<'a> = (&'a [u8], &'a [u8], bool, &'a [u8]);
        let table: &[Case<'_>] = &[
            (b".\r\n", b"", true, b""),
            (b".\r\nNEXT", b"", true, b"NEXT"),
            (b"a\r\n.\r\n", b"a\r\n", true, b""),
            (b"..\r\n.\r\n", b".\r\n", true, b""),
            (b"..a\r\n...\r\n.\r\n", b".a\r\n..\r\n", true, b""),
            (b"\r\n.\r\n", b"\r\n", true, b""),
            (b"\r\n..\r\n.\r\n+OK\r\n", b"\r\n.\r\n", true, b"+OK\r\n"),
            // A lone leading dot on a longer line is removed (RFC 5321 §4.5.2).
            (b".x\r\n.\r\n", b"x\r\n", true, b""),
            (b"a\r\n.\rb\r\n.\r\n", b"a\r\n\rb\r\n", true, b""),
            // No terminator yet.
            (b"", b"", false, b""),
            (b"abc", b"abc", false, b""),
            (b"abc\r", b"abc", false, b"\r"),
            (b"abc\r\n", b"abc\r\n", false, b""),
            (b"abc\r\n.", b"abc\r\n", false, b"."),
            (b"abc\r\n.\r", b"abc\r\n", false, b".\r"),
        ];
        for (wire, body, ended, rest) in table {
            let got = decode_chunks(&[wire]);
            assert_eq!(
                got,
                (body.to_vec(), *ended, rest.to_vec()),
                "wire {:?}",
                wire
            );
        }
    }

    #[test]
    fn data_ends_only_on_crlf_dot_crlf() {
        let smuggling: &[&[u8]] = &[
            b"a\n.\nMAIL FROM:<x>\r\n",
            b"a\r.\rMAIL FROM:<x>\r\n",
            b"a\n.\r\nMAIL FROM:<x>\r\n",
            b"a\r\n.\nMAIL FROM:<x>\r\n",
            b"a\r.\nMAIL FROM:<x>\r\n",
            b"a\n.\rMAIL FROM:<x>\r\n",
            b"a\r\n.\rMAIL FROM:<x>\r\n",
            b"a\r\r\n.\r\r\n",
            b"\n.\n",
            b".\n",
            b".\r",
            b"\r.\r\n",
        ];
        for wire in smuggling {
            for_each_split(wire, |chunks| {
                let (body, ended, rest) = decode_chunks(chunks);
                assert!(
                    !ended,
                    "{:?} ended the body",
                    wire.escape_ascii().to_string()
                );
                let mut all = body;
                all.extend_from_slice(&rest);
                // Nothing was lost either: only leading dots of lines were removed.
                assert!(all.len() + 2 >= wire.len());
            });
        }
        // And the real terminator after them does end it, keeping the smuggled text as body.
        let (body, ended, rest) = decode_chunks(&[b"a\n.\nRSET\r\n.\r\nQUIT\r\n"]);
        assert_eq!(
            (body.as_slice(), ended, rest.as_slice()),
            (&b"a\n.\nRSET\r\n"[..], true, &b"QUIT\r\n"[..])
        );
    }

    #[test]
    fn decoder_counts_bare_line_endings() {
        let table: &[(&[u8], u64)] = &[
            (b"a\r\nb\r\n.\r\n", 0),
            (b"a\nb\r\n.\r\n", 1),
            (b"a\rb\r\n.\r\n", 1),
            (b"\n.\n\r\n.\r\n", 2),
            (b"a\r\r\n.\r\n", 1),
            (b".\n\r\n.\r\n", 1),
            (b".\r.\r\n.\r\n", 1),
        ];
        for (wire, expected) in table {
            for_each_split(wire, |chunks| {
                let mut decoder = DotDecoder::new();
                let mut buf = BytesMut::new();
                for chunk in chunks {
                    buf.extend_from_slice(chunk);
                    while decoder.decode(&mut buf).is_some() {}
                }
                assert!(decoder.is_done());
                assert_eq!(decoder.bare_line_endings(), *expected, "{:?}", wire);
            });
        }
    }

    #[test]
    fn bytes_after_terminator_kept() {
        let wire = b"+OK body\r\n..dots\r\n.\r\n+OK 2 200\r\n";
        for_each_split(wire, |chunks| {
            let (body, ended, rest) = decode_chunks(chunks);
            assert!(ended);
            assert_eq!(body, b"+OK body\r\n.dots\r\n");
            assert_eq!(rest, b"+OK 2 200\r\n");
        });
        // After End the decoder touches nothing until reset.
        let mut decoder = DotDecoder::new();
        let mut buf = BytesMut::from(&b".\r\n.\r\n"[..]);
        assert_eq!(decoder.decode(&mut buf), Some(BodyChunk::End));
        assert_eq!(decoder.decode(&mut buf), None);
        assert_eq!(&buf[..], b".\r\n");
        decoder.reset();
        assert_eq!(decoder.decode(&mut buf), Some(BodyChunk::End));
        assert!(buf.is_empty());
    }

    #[test]
    fn decoder_split_point_invariance() {
        let wires: &[&[u8]] = &[
            b"..a\r\n\r\n...\r\nb\nc\r.\r\n\r\n.\r\nrest",
            b".\r\n",
            b"x\r\n.\r",
            b"\r\r\n.\r\n",
        ];
        for wire in wires {
            assert_split_invariant(wire, decode_chunks);
        }
    }

    #[test]
    fn decoder_keeps_large_runs_whole() {
        // One chunk for a body without dot lines: runs, not bytes.
        let mut wire = BytesMut::new();
        for _ in 0..1000 {
            wire.extend_from_slice(b"a fairly ordinary line of text\r\n");
        }
        let body_len = wire.len();
        wire.extend_from_slice(b".\r\n");
        let mut decoder = DotDecoder::new();
        match decoder.decode(&mut wire) {
            Some(BodyChunk::Data(data)) => assert_eq!(data.len(), body_len),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(decoder.decode(&mut wire), Some(BodyChunk::End));
    }

    proptest! {
        #[test]
        fn decode_encode_is_normalised_input(
            input in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()],
                0..200,
            ),
            split in any::<prop::sample::Index>(),
        ) {
            let at = split.index(input.len() + 1);
            let wire = encode_chunks(EncodeOptions::unchecked(), &[&input[..at], &input[at..]])
                .unwrap();
            prop_assert_eq!(&wire, &encode_all(&input));
            let mut with_next = wire.clone();
            with_next.extend_from_slice(b"NEXT\r\n");
            let (body, ended, rest) = decode_chunks(&[&with_next]);
            prop_assert!(ended);
            prop_assert_eq!(body, normalise(&input));
            prop_assert_eq!(rest, b"NEXT\r\n".to_vec());
        }

        #[test]
        fn decoder_never_panics_and_is_chunk_invariant(
            wire in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')],
                0..64,
            ),
            split in any::<prop::sample::Index>(),
        ) {
            let at = split.index(wire.len() + 1);
            prop_assert_eq!(decode_chunks(&[&wire[..at], &wire[at..]]), decode_chunks(&[&wire]));
        }
    }
}

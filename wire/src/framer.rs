//! A bounded, resumable, sans-IO line framer: layer 1 of every mailferry parser.
//!
//! The framer cuts the byte stream from a peer into [`Frame`]s before any grammar looks at it:
//! CRLF-terminated lines no longer than a hard limit, un-stuffed body chunks of a dot-terminated
//! body (POP3 multi-line responses, SMTP-server `DATA`), or counted runs (`BDAT`). The caller
//! switches the [`Mode`] between frames, as the protocol dictates.
//!
//! - Input is copied once, by [`push`](LineFramer::push), into an internal `BytesMut`; frames
//!   are `Bytes` split off it without copying.
//! - Framing resumes over arbitrary chunk boundaries and never rescans: a scan offset remembers
//!   how far the current partial line has been searched (only a trailing CR, whose meaning
//!   depends on the next octet, is looked at again).
//! - A line over [`FramerOptions::max_line_len`] is reported once, as
//!   [`FrameError::LineTooLong`]; the rest of it, up to the next LF, is discarded without being
//!   buffered, then framing resumes. The buffer therefore never holds more than
//!   `max_line_len` octets plus one input chunk, provided the caller drains frames after each push.
//! - "Need more input" is `Ok(None)`, never an error. Every [`FrameError`] is recoverable: the
//!   offending line is consumed and the next call continues with what follows.
//!
//! ```
//! use mailferry_wire::framer::{Frame, FrameError, FramerOptions, LineFramer, Mode};
//!
//! let mut framer = LineFramer::new(FramerOptions::default());
//! framer.push(b"+OK 2 messages\r\n+OK 120 octets\r\nSubject: x\r\n\r\n..dot\r\n.\r");
//! assert_eq!(framer.next_frame(), Ok(Some(Frame::Line("+OK 2 messages".into()))));
//! assert_eq!(framer.next_frame(), Ok(Some(Frame::Line("+OK 120 octets".into()))));
//!
//! // The status line announced a multi-line body: read it un-stuffed.
//! framer.set_mode(Mode::DotBody);
//! let mut body = Vec::new();
//! loop {
//!     match framer.next_frame()? {
//!         Some(Frame::BodyChunk(chunk)) => body.extend_from_slice(&chunk),
//!         Some(Frame::BodyEnd) => break,
//!         None => framer.push(b"\n-ERR no such message\r\n"), // the next read
//!         Some(other) => panic!("DotBody mode yields body frames, not {other:?}"),
//!     }
//! }
//! assert_eq!(body, b"Subject: x\r\n\r\n.dot\r\n");
//! // After the body the framer is back in line mode, with the next response buffered.
//! assert_eq!(framer.mode(), Mode::Lines);
//! assert_eq!(framer.next_frame(), Ok(Some(Frame::Line("-ERR no such message".into()))));
//! assert_eq!(framer.next_frame(), Ok(None));
//! # Ok::<(), FrameError>(())
//! ```

use bytes::{Buf, Bytes, BytesMut};

use crate::dot::{BodyChunk, DotDecoder};

/// How lines may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LineEndings {
    /// Only CRLF ends a line (RFC 5321 §2.3.8). A line ended by a bare LF is
    /// [`FrameError::BareLf`], a line holding a bare CR is [`FrameError::BareCr`], and a
    /// dot-stuffed body holding either is reported once as
    /// [`FrameError::BareLineEndingInBody`]. What an SMTP server needs against SMTP smuggling
    /// (CVE-2023-51764 and kin).
    #[default]
    Strict,
    /// A bare LF also ends a line, and a bare CR is line content: for clients meeting sloppy
    /// servers (POP3 servers that send LF-only lines). A dot-stuffed body still ends only at
    /// `CRLF.CRLF`.
    Lenient,
}

/// Limits and policies of a [`LineFramer`].
///
/// The [`Default`] is `max_line_len: 512`, the RFC 5321 §4.5.3.1.4 command line and §4.5.3.1.5
/// reply line limits (RFC 2449 §4 grants POP3 responses the same), and
/// [`LineEndings::Strict`]. Text lines of a message body are not limited by the framer: they
/// stream as body chunks.
///
/// ```
/// use mailferry_wire::framer::{FramerOptions, LineEndings};
/// let mut options = FramerOptions::default();
/// options.line_endings = LineEndings::Lenient;
/// assert_eq!(options.max_line_len, 512);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FramerOptions {
    /// Longest line accepted, in octets including its line ending. Default 512. Values below 2
    /// are treated as 2 (just a CRLF).
    pub max_line_len: usize,
    /// Which line endings are accepted. Default [`LineEndings::Strict`].
    pub line_endings: LineEndings,
}

impl Default for FramerOptions {
    fn default() -> Self {
        Self {
            max_line_len: 512,
            line_endings: LineEndings::Strict,
        }
    }
}

/// What the framer cuts next. Switch it with [`LineFramer::set_mode`] between frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Lines ended by CRLF (or LF under [`LineEndings::Lenient`]), each at most
    /// [`FramerOptions::max_line_len`] long.
    Lines,
    /// A dot-stuffed body: un-stuffed [`Frame::BodyChunk`]s up to `CRLF.CRLF`, then
    /// [`Frame::BodyEnd`] (see [`DotDecoder`], which does the work).
    DotBody,
    /// A run of exactly this many octets (`BDAT`, RFC 3030): [`Frame::BodyChunk`]s, then
    /// [`Frame::BodyEnd`]. While reading, [`LineFramer::mode`] shows the octets still due.
    Counted(u64),
}

/// One unit cut from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// A complete line, without its line ending.
    Line(Bytes),
    /// A piece of a body (never empty): un-stuffed in [`Mode::DotBody`], verbatim in
    /// [`Mode::Counted`].
    BodyChunk(Bytes),
    /// The body is complete. The framer has switched back to [`Mode::Lines`]; octets after the
    /// body stay buffered for it.
    BodyEnd,
}

/// A line the framer refused. Each is reported once; the line is consumed and framing resumes
/// with the following input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A line longer than `max_len` octets including its line ending. Its octets are
    /// discarded up to and including the next LF.
    #[error("line longer than {max_len} octets")]
    LineTooLong {
        /// The configured [`FramerOptions::max_line_len`].
        max_len: usize,
    },
    /// A line ended by LF without CR, under [`LineEndings::Strict`].
    #[error("line ended by a bare LF")]
    BareLf,
    /// A line holding a CR not followed by LF, under [`LineEndings::Strict`].
    #[error("bare CR inside a line")]
    BareCr,
    /// A dot-stuffed body holds a bare CR or bare LF, under [`LineEndings::Strict`]. Reported
    /// once per body, before the chunk holding it; the body keeps streaming to its end, so the
    /// caller can refuse the message there (RFC 5321 §2.3.8).
    #[error("bare CR or LF in a message body")]
    BareLineEndingInBody,
}

/// The bounded, resumable line framer. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct LineFramer {
    options: FramerOptions,
    mode: Mode,
    buf: BytesMut,
    /// Lines mode: octets `buf[..scan]` of the partial line hold no line end.
    scan: usize,
    /// Lines mode: the partial line holds a bare CR.
    bare_cr: bool,
    /// Lines mode: the rest of an over-long line is being dropped up to the next LF.
    discarding: bool,
    dot: DotDecoder,
    /// DotBody mode: whether this body's bare line ending was already reported.
    bare_reported: bool,
    /// A frame held back while an error about it is reported first.
    pending: Option<Frame>,
}

impl LineFramer {
    /// A framer in [`Mode::Lines`] with an empty buffer.
    pub fn new(options: FramerOptions) -> Self {
        Self {
            options: FramerOptions {
                max_line_len: options.max_line_len.max(2),
                ..options
            },
            mode: Mode::Lines,
            buf: BytesMut::new(),
            scan: 0,
            bare_cr: false,
            discarding: false,
            dot: DotDecoder::new(),
            bare_reported: false,
            pending: None,
        }
    }

    /// The options in force.
    pub fn options(&self) -> FramerOptions {
        self.options
    }

    /// The current mode; for [`Mode::Counted`], with the octets still due.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Switches the mode for the next frame. Octets already buffered are framed in the new
    /// mode. Cancels the discarding of an over-long line in progress: the caller has decided
    /// where the next frame starts.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        self.scan = 0;
        self.bare_cr = false;
        self.discarding = false;
        self.dot.reset();
        self.bare_reported = false;
    }

    /// Appends input from the peer. Drain [`next_frame`](Self::next_frame) until `Ok(None)`
    /// before the next push to keep memory bounded.
    pub fn push(&mut self, mut input: &[u8]) {
        if self.discarding {
            // Dropped before it is ever buffered: an endless line costs no memory.
            match memchr::memchr(b'\n', input) {
                Some(index) => {
                    self.discarding = false;
                    input = &input[index + 1..];
                }
                None => return,
            }
        }
        self.buf.extend_from_slice(input);
    }

    /// Octets received and not yet framed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Removes and returns the octets received and not yet framed (for example to refuse
    /// plaintext sent before a TLS handshake, or to hand the stream to another parser).
    pub fn take_buffered(&mut self) -> BytesMut {
        self.scan = 0;
        self.bare_cr = false;
        self.buf.split()
    }

    /// The next frame; `Ok(None)` when more input is needed.
    ///
    /// # Errors
    ///
    /// A [`FrameError`] for a refused line (or, once per body, a refused body). Errors are not
    /// fatal: call again to continue after it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(frame) = self.pending.take() {
            return Ok(Some(frame));
        }
        match self.mode {
            Mode::Lines => self.next_line(),
            Mode::DotBody => self.next_dot_chunk(),
            Mode::Counted(remaining) => Ok(self.next_counted(remaining)),
        }
    }

    fn next_counted(&mut self, remaining: u64) -> Option<Frame> {
        if remaining == 0 {
            self.set_mode(Mode::Lines);
            return Some(Frame::BodyEnd);
        }
        if self.buf.is_empty() {
            return None;
        }
        // Bounded by the buffer length, so the conversion back to usize cannot truncate.
        let take = remaining.min(self.buf.len() as u64);
        self.mode = Mode::Counted(remaining - take);
        let take = usize::try_from(take).unwrap_or(self.buf.len());
        Some(Frame::BodyChunk(self.buf.split_to(take).freeze()))
    }

    fn next_dot_chunk(&mut self) -> Result<Option<Frame>, FrameError> {
        let before = self.dot.bare_line_endings();
        match self.dot.decode(&mut self.buf) {
            None => Ok(None),
            Some(BodyChunk::End) => {
                self.set_mode(Mode::Lines);
                Ok(Some(Frame::BodyEnd))
            }
            Some(BodyChunk::Data(chunk)) => {
                let frame = Frame::BodyChunk(chunk);
                if self.options.line_endings == LineEndings::Strict
                    && !self.bare_reported
                    && self.dot.bare_line_endings() > before
                {
                    self.bare_reported = true;
                    self.pending = Some(frame);
                    return Err(FrameError::BareLineEndingInBody);
                }
                Ok(Some(frame))
            }
        }
    }

    fn next_line(&mut self) -> Result<Option<Frame>, FrameError> {
        let max_len = self.options.max_line_len;
        // A line end further out than this would make the line too long.
        let limit = self.buf.len().min(max_len);
        let mut pos = self.scan;
        while let Some(offset) = memchr::memchr2(b'\r', b'\n', &self.buf[pos..limit]) {
            let index = pos + offset;
            if self.buf[index] == b'\n' {
                // A CR right before it would have been seen first: this LF is bare.
                return self.take_line(index, false);
            }
            match self.buf.get(index + 1) {
                Some(b'\n') if index + 1 < limit => return self.take_line(index + 1, true),
                Some(b'\n') => break, // the CRLF ends one octet past the limit
                Some(_) => {
                    self.bare_cr = true;
                    pos = index + 1;
                }
                None if limit < max_len => {
                    // Undecided until the next octet arrives: look at this CR again then.
                    self.scan = index;
                    return Ok(None);
                }
                None => break, // max_len octets without a line end, even if an LF follows
            }
        }
        if limit < max_len {
            self.scan = limit;
            return Ok(None);
        }
        // max_len octets and no line end among them: too long, whatever follows.
        match memchr::memchr(b'\n', &self.buf[limit..]) {
            Some(offset) => self.buf.advance(limit + offset + 1),
            None => {
                self.buf.clear();
                self.discarding = true;
            }
        }
        self.scan = 0;
        self.bare_cr = false;
        Err(FrameError::LineTooLong { max_len })
    }

    /// Cuts the line whose LF is at `lf`.
    fn take_line(&mut self, lf: usize, crlf: bool) -> Result<Option<Frame>, FrameError> {
        let mut line = self.buf.split_to(lf + 1);
        line.truncate(lf + 1 - if crlf { 2 } else { 1 });
        let bare_cr = std::mem::take(&mut self.bare_cr);
        self.scan = 0;
        if self.options.line_endings == LineEndings::Strict {
            if !crlf {
                return Err(FrameError::BareLf);
            }
            if bare_cr {
                return Err(FrameError::BareCr);
            }
        }
        Ok(Some(Frame::Line(line.freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_split_invariant;
    use proptest::prelude::*;

    /// A frame stream normalised so that it does not depend on how the input was cut: body
    /// chunks are joined per body, and a body's bare-line-ending report is a flag of it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Event {
        Line(Vec<u8>),
        Error(FrameError),
        /// Body octets, whether `BareLineEndingInBody` was reported, whether it ended.
        Body(Vec<u8>, bool, bool),
    }

    fn options(max_line_len: usize, line_endings: LineEndings) -> FramerOptions {
        FramerOptions {
            max_line_len,
            line_endings,
        }
    }

    /// Plays a tiny server: `DATA` switches to a dot body, `BDAT n` to a counted body.
    fn run(options: FramerOptions, chunks: &[&[u8]]) -> (Vec<Event>, Vec<u8>) {
        let mut framer = LineFramer::new(options);
        let mut events = Vec::new();
        let mut body: Option<(Vec<u8>, bool)> = None;
        for chunk in chunks {
            framer.push(chunk);
            // Memory bound: the partial line plus one chunk.
            assert!(framer.buffered().len() <= framer.options().max_line_len + chunk.len());
            loop {
                match framer.next_frame() {
                    Ok(None) => break,
                    Ok(Some(Frame::Line(line))) => {
                        assert!(body.is_none());
                        assert!(line.len() < framer.options().max_line_len);
                        if line == b"DATA"[..] {
                            framer.set_mode(Mode::DotBody);
                            body = Some((Vec::new(), false));
                        } else if let Some(n) = line.strip_prefix(b"BDAT ") {
                            let n = std::str::from_utf8(n).unwrap().parse().unwrap();
                            framer.set_mode(Mode::Counted(n));
                            body = Some((Vec::new(), false));
                        }
                        events.push(Event::Line(line.to_vec()));
                    }
                    Ok(Some(Frame::BodyChunk(data))) => {
                        assert!(!data.is_empty());
                        body.as_mut().unwrap().0.extend_from_slice(&data);
                    }
                    Ok(Some(Frame::BodyEnd)) => {
                        let (data, bare) = body.take().unwrap();
                        assert_eq!(framer.mode(), Mode::Lines);
                        events.push(Event::Body(data, bare, true));
                    }
                    Err(FrameError::BareLineEndingInBody) => {
                        let body = body.as_mut().unwrap();
                        assert!(!body.1, "reported twice");
                        body.1 = true;
                    }
                    Err(error) => events.push(Event::Error(error)),
                }
            }
        }
        if let Some((data, bare)) = body {
            events.push(Event::Body(data, bare, false));
        }
        (events, framer.buffered().to_vec())
    }

    fn line(text: &[u8]) -> Event {
        Event::Line(text.to_vec())
    }

    #[test]
    fn strict_lines_known_answers() {
        use Event::Error;
        let table: &[(&[u8], &[Event], &[u8])] = &[
            (b"", &[], b""),
            (b"abc", &[], b"abc"),
            (b"abc\r", &[], b"abc\r"),
            (b"abc\r\n", &[line(b"abc")], b""),
            (b"\r\n\r\n", &[line(b""), line(b"")], b""),
            (b"a\r\nb\r\nc", &[line(b"a"), line(b"b")], b"c"),
            (b"a\nb\r\n", &[Error(FrameError::BareLf), line(b"b")], b""),
            (b"\n", &[Error(FrameError::BareLf)], b""),
            (
                b"a\rb\r\nc\r\n",
                &[Error(FrameError::BareCr), line(b"c")],
                b"",
            ),
            (b"a\r\r\n", &[Error(FrameError::BareCr)], b""),
            (b"\r\r\n", &[Error(FrameError::BareCr)], b""),
            // Bare LF wins over bare CR: the line did not even end properly.
            (b"a\rb\n", &[Error(FrameError::BareLf)], b""),
            (b"a\0b\r\n", &[line(b"a\0b")], b""),
        ];
        for (input, events, rest) in table {
            let got = assert_split_invariant(input, |c| run(options(512, LineEndings::Strict), c));
            assert_eq!(
                got,
                (events.to_vec(), rest.to_vec()),
                "{:?}",
                input.escape_ascii()
            );
        }
    }

    #[test]
    fn lenient_lines_known_answers() {
        let table: &[(&[u8], &[Event], &[u8])] = &[
            (b"abc\r\n", &[line(b"abc")], b""),
            (b"abc\n", &[line(b"abc")], b""),
            (b"a\nb\r\nc\n", &[line(b"a"), line(b"b"), line(b"c")], b""),
            (b"a\rb\r\n", &[line(b"a\rb")], b""),
            (b"a\r\r\n", &[line(b"a\r")], b""),
            (b"\n\n", &[line(b""), line(b"")], b""),
            (b"a\r", &[], b"a\r"),
        ];
        for (input, events, rest) in table {
            let got = assert_split_invariant(input, |c| run(options(512, LineEndings::Lenient), c));
            assert_eq!(
                got,
                (events.to_vec(), rest.to_vec()),
                "{:?}",
                input.escape_ascii()
            );
        }
    }

    #[test]
    fn line_length_limit_counts_the_line_ending() {
        let too_long = Event::Error(FrameError::LineTooLong { max_len: 10 });
        let table: [(LineEndings, &[u8], Vec<Event>); 9] = [
            (
                LineEndings::Strict,
                b"12345678\r\n",
                vec![line(b"12345678")],
            ),
            (
                LineEndings::Strict,
                b"123456789\r\n",
                vec![too_long.clone()],
            ),
            (
                LineEndings::Lenient,
                b"123456789\n",
                vec![line(b"123456789")],
            ),
            (
                LineEndings::Lenient,
                b"1234567890\n",
                vec![too_long.clone()],
            ),
            (
                LineEndings::Strict,
                b"123456789\n",
                vec![Event::Error(FrameError::BareLf)],
            ),
            (
                LineEndings::Strict,
                b"12345678\r\r\n",
                vec![too_long.clone()],
            ),
            (LineEndings::Strict, b"123456789\r", vec![too_long.clone()]),
            (LineEndings::Strict, b"1234567890", vec![too_long.clone()]),
            (LineEndings::Strict, b"123456789", vec![]),
        ];
        for (endings, input, events) in table {
            let got = assert_split_invariant(input, |c| run(options(10, endings), c));
            assert_eq!(got.0, events, "{:?}", input.escape_ascii());
        }
    }

    #[test]
    fn over_long_line_reported_once_then_recovers() {
        let mut input = b"HELO a\r\n".to_vec();
        input.extend_from_slice(&[b'x'; 40]);
        input.extend_from_slice(b"\r\n\r\nNOOP\r\n");
        let expected = vec![
            line(b"HELO a"),
            Event::Error(FrameError::LineTooLong { max_len: 16 }),
            line(b""),
            line(b"NOOP"),
        ];
        let got = assert_split_invariant(&input, |c| run(options(16, LineEndings::Strict), c));
        assert_eq!(got, (expected, Vec::new()));

        // An endless line costs no memory and is reported once.
        let mut framer = LineFramer::new(options(16, LineEndings::Strict));
        let mut errors = 0;
        for _ in 0..1000 {
            framer.push(&[b'y'; 100]);
            loop {
                match framer.next_frame() {
                    Ok(None) => break,
                    Err(error) => {
                        assert_eq!(error, FrameError::LineTooLong { max_len: 16 });
                        errors += 1;
                    }
                    Ok(Some(frame)) => panic!("unexpected {frame:?}"),
                }
            }
            assert!(framer.buffered().len() <= 16 + 100);
        }
        assert_eq!(errors, 1);
        framer.push(b"yyy\r\nQUIT\r\n");
        assert_eq!(framer.next_frame(), Ok(Some(Frame::Line("QUIT".into()))));
    }

    #[test]
    fn resumes_from_scan_offset() {
        let mut framer = LineFramer::new(FramerOptions::default());
        framer.push(b"abc");
        assert_eq!(framer.next_frame(), Ok(None));
        assert_eq!(framer.scan, 3);
        framer.push(b"de\r");
        assert_eq!(framer.next_frame(), Ok(None));
        // Only the undecided CR will be looked at again.
        assert_eq!(framer.scan, 5);
        framer.push(b"\n");
        assert_eq!(framer.next_frame(), Ok(Some(Frame::Line("abcde".into()))));
        assert_eq!(framer.scan, 0);
    }

    #[test]
    fn dot_body_mode() {
        let input: &[u8] = b"MAIL FROM:<a@b>\r\nDATA\r\nSubject: x\r\n\r\n..hi\r\n.\r\nQUIT\r\n";
        let expected = vec![
            line(b"MAIL FROM:<a@b>"),
            line(b"DATA"),
            Event::Body(b"Subject: x\r\n\r\n.hi\r\n".to_vec(), false, true),
            line(b"QUIT"),
        ];
        for endings in [LineEndings::Strict, LineEndings::Lenient] {
            let got = assert_split_invariant(input, |c| run(options(64, endings), c));
            assert_eq!(got, (expected.clone(), Vec::new()));
        }
        // Body lines are not limited by max_line_len: they stream.
        let mut input = b"DATA\r\n".to_vec();
        input.extend_from_slice(&[b'z'; 100]);
        input.extend_from_slice(b"\r\n.\r\n");
        let (events, _) = run(options(16, LineEndings::Strict), &[&input]);
        assert_eq!(
            events[1],
            Event::Body([&[b'z'; 100][..], b"\r\n"].concat(), false, true)
        );
    }

    #[test]
    fn data_ends_only_on_crlf_dot_crlf() {
        // The smuggling payloads of CVE-2023-51764: none ends the body, in either policy.
        let payloads: &[&[u8]] = &[
            b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\n", b"\n.\r",
        ];
        for payload in payloads {
            let input = [
                b"DATA\r\nhi",
                *payload,
                b"MAIL FROM:<evil@x>\r\n.\r\nQUIT\r\n",
            ]
            .concat();
            let body = [b"hi", *payload, b"MAIL FROM:<evil@x>\r\n"].concat();
            // Leading dots of lines are still removed from the body; that is all.
            let body: Vec<u8> = {
                let mut decoder = DotDecoder::new();
                let mut buf = BytesMut::from(&[&body[..], b".\r\n"].concat()[..]);
                let mut stuffed = Vec::new();
                while let Some(BodyChunk::Data(d)) = decoder.decode(&mut buf) {
                    stuffed.extend_from_slice(&d);
                }
                stuffed
            };
            let strict =
                assert_split_invariant(&input, |c| run(options(64, LineEndings::Strict), c));
            assert_eq!(
                strict,
                (
                    vec![
                        line(b"DATA"),
                        Event::Body(body.clone(), true, true),
                        line(b"QUIT")
                    ],
                    vec![]
                )
            );
            let lenient =
                assert_split_invariant(&input, |c| run(options(64, LineEndings::Lenient), c));
            assert_eq!(
                lenient,
                (
                    vec![line(b"DATA"), Event::Body(body, false, true), line(b"QUIT")],
                    vec![]
                )
            );
        }
    }

    #[test]
    fn bare_line_ending_in_body_reported_once_before_its_chunk() {
        let mut framer = LineFramer::new(FramerOptions::default());
        framer.set_mode(Mode::DotBody);
        framer.push(b"a\nb\n");
        assert_eq!(framer.next_frame(), Err(FrameError::BareLineEndingInBody));
        assert_eq!(
            framer.next_frame(),
            Ok(Some(Frame::BodyChunk("a\nb\n".into())))
        );
        framer.push(b"c\n\r\n.\r\n");
        assert_eq!(
            framer.next_frame(),
            Ok(Some(Frame::BodyChunk("c\n\r\n".into())))
        );
        assert_eq!(framer.next_frame(), Ok(Some(Frame::BodyEnd)));
        // The next body is judged afresh.
        framer.set_mode(Mode::DotBody);
        framer.push(b"\r.\r\n");
        assert_eq!(framer.next_frame(), Err(FrameError::BareLineEndingInBody));
    }

    #[test]
    fn bytes_after_terminator_kept() {
        let input: &[u8] = b"DATA\r\nx\r\n.\r\nRSET\r\nNO";
        let got = assert_split_invariant(input, |c| run(FramerOptions::default(), c));
        assert_eq!(
            got,
            (
                vec![
                    line(b"DATA"),
                    Event::Body(b"x\r\n".to_vec(), false, true),
                    line(b"RSET")
                ],
                b"NO".to_vec()
            )
        );
        let mut framer = LineFramer::new(FramerOptions::default());
        framer.set_mode(Mode::DotBody);
        framer.push(b".\r\n+OK next\r\n");
        assert_eq!(framer.next_frame(), Ok(Some(Frame::BodyEnd)));
        assert_eq!(framer.buffered(), b"+OK next\r\n");
    }

    #[test]
    fn counted_mode() {
        let input: &[u8] = b"BDAT 5\r\nhel\r\nBDAT 0\r\nBDAT 3\r\n.\r\nQUIT\r\n";
        let expected = vec![
            line(b"BDAT 5"),
            Event::Body(b"hel\r\n".to_vec(), false, true),
            line(b"BDAT 0"),
            Event::Body(Vec::new(), false, true),
            line(b"BDAT 3"),
            Event::Body(b".\r\n".to_vec(), false, true),
            line(b"QUIT"),
        ];
        let got = assert_split_invariant(input, |c| run(FramerOptions::default(), c));
        assert_eq!(got, (expected, Vec::new()));

        let mut framer = LineFramer::new(FramerOptions::default());
        framer.set_mode(Mode::Counted(4));
        framer.push(b"ab");
        assert_eq!(framer.next_frame(), Ok(Some(Frame::BodyChunk("ab".into()))));
        assert_eq!(framer.mode(), Mode::Counted(2));
        assert_eq!(framer.next_frame(), Ok(None));
        framer.push(b"cdef");
        assert_eq!(framer.next_frame(), Ok(Some(Frame::BodyChunk("cd".into()))));
        assert_eq!(framer.next_frame(), Ok(Some(Frame::BodyEnd)));
        assert_eq!(framer.mode(), Mode::Lines);
        assert_eq!(framer.buffered(), b"ef");
    }

    #[test]
    fn take_buffered_empties_the_framer() {
        let mut framer = LineFramer::new(FramerOptions::default());
        framer.push(b"220 Ready\r\nEHLO injected\r\n");
        assert_eq!(
            framer.next_frame(),
            Ok(Some(Frame::Line("220 Ready".into())))
        );
        assert_eq!(&framer.take_buffered()[..], b"EHLO injected\r\n");
        assert!(framer.buffered().is_empty());
        assert_eq!(framer.next_frame(), Ok(None));
    }

    #[test]
    fn set_mode_cancels_discarding() {
        let mut framer = LineFramer::new(options(4, LineEndings::Strict));
        framer.push(b"xxxxxx");
        assert_eq!(
            framer.next_frame(),
            Err(FrameError::LineTooLong { max_len: 4 })
        );
        framer.set_mode(Mode::Counted(2));
        framer.push(b"ab");
        assert_eq!(framer.next_frame(), Ok(Some(Frame::BodyChunk("ab".into()))));
    }

    #[test]
    fn lines_are_zero_copy_slices_of_the_buffer() {
        let mut framer = LineFramer::new(FramerOptions::default());
        framer.push(b"one\r\ntwo\r\n");
        let Ok(Some(Frame::Line(one))) = framer.next_frame() else {
            panic!()
        };
        let Ok(Some(Frame::Line(two))) = framer.next_frame() else {
            panic!()
        };
        // Both lines point into the one allocation the input was copied to.
        assert_eq!(one.as_ptr().wrapping_add(5), two.as_ptr());
    }

    proptest! {
        #[test]
        fn chunked_equals_one_shot_and_bounded(
            input in proptest::collection::vec(
                prop_oneof![
                    Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a'),
                    Just(b'D'), Just(b'A'), Just(b'T'),
                ],
                0..120,
            ),
            cut in any::<prop::sample::Index>(),
            max_len in 2usize..12,
            lenient in any::<bool>(),
        ) {
            let endings = if lenient { LineEndings::Lenient } else { LineEndings::Strict };
            let at = cut.index(input.len() + 1);
            let one_shot = run(options(max_len, endings), &[&input]);
            prop_assert_eq!(run(options(max_len, endings), &[&input[..at], &input[at..]]), one_shot.clone());
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            prop_assert_eq!(run(options(max_len, endings), &bytes), one_shot);
        }
    }
}

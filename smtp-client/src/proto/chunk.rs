//! Line-ending normalisation for `BDAT` chunks (RFC 3030), which are not dot-stuffed.
//!
//! `mailferry_wire::dot::DotEncoder` normalises and stuffs; a `BDAT` payload must be normalised
//! the same way (a bare CR or LF in a 7BIT / 8BITMIME body is invalid, RFC 5321 §2.3.8) but never
//! stuffed, and its lines are measured without a stuffed dot. `BODY=BINARYMIME` bodies pass
//! through untouched.

use bytes::{BufMut, BytesMut};
use mailferry_wire::dot::EncodeError;

/// Streaming CR/LF normaliser with the same checks as the dot encoder.
#[derive(Debug, Clone)]
pub(crate) struct ChunkEncoder {
    /// Longest line in octets including CRLF; `None` for no limit.
    max_line_len: Option<usize>,
    allow_8bit: bool,
    /// `BODY=BINARYMIME`: no normalisation, no checks.
    binary: bool,
    /// The previous input octet was a CR, already written as CRLF.
    after_cr: bool,
    /// Octets of the current line so far, without its line ending.
    line_len: usize,
    /// 1-based number of the current line.
    line: u64,
    /// Input octets seen.
    offset: u64,
    /// Whether the output so far ends with CRLF (or is empty).
    at_line_start: bool,
    /// A sticky error: the body is refused once and for all.
    error: Option<EncodeError>,
}

impl ChunkEncoder {
    pub(crate) fn new(max_line_len: Option<usize>, allow_8bit: bool, binary: bool) -> Self {
        ChunkEncoder {
            max_line_len,
            allow_8bit,
            binary,
            after_cr: false,
            line_len: 0,
            line: 1,
            offset: 0,
            at_line_start: true,
            error: None,
        }
    }

    /// Appends the normalised form of `input` to `out`; on error `out` is left as it was.
    pub(crate) fn encode(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.binary {
            out.extend_from_slice(input);
            return Ok(());
        }
        let start = out.len();
        out.reserve(input.len() + input.len() / 64);
        for &b in input {
            let result = self.byte(b, out);
            self.offset += 1;
            if let Err(e) = result {
                out.truncate(start);
                self.error = Some(e.clone());
                return Err(e);
            }
        }
        Ok(())
    }

    fn byte(&mut self, b: u8, out: &mut BytesMut) -> Result<(), EncodeError> {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match b {
            b'\n' if after_cr => {}
            b'\r' | b'\n' => {
                out.put_slice(b"\r\n");
                self.after_cr = b == b'\r';
                self.line += 1;
                self.line_len = 0;
                self.at_line_start = true;
            }
            _ => {
                if b >= 0x80 && !self.allow_8bit {
                    return Err(EncodeError::EightBit {
                        line: self.line,
                        offset: self.offset,
                    });
                }
                self.line_len += 1;
                if let Some(limit) = self.max_line_len
                    && self.line_len + 2 > limit
                {
                    return Err(EncodeError::LineTooLong {
                        line: self.line,
                        limit,
                    });
                }
                out.put_u8(b);
                self.at_line_start = false;
            }
        }
        Ok(())
    }

    /// Ends the body: a text body that does not end with a line ending gets a CRLF. Resets the
    /// encoder for the next body.
    pub(crate) fn finish(&mut self, out: &mut BytesMut) -> Result<(), EncodeError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if !self.binary && !self.at_line_start {
            out.put_slice(b"\r\n");
        }
        *self = ChunkEncoder::new(self.max_line_len, self.allow_8bit, self.binary);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(enc: &mut ChunkEncoder, chunks: &[&[u8]]) -> Result<Vec<u8>, EncodeError> {
        let mut out = BytesMut::new();
        for c in chunks {
            enc.encode(c, &mut out)?;
        }
        enc.finish(&mut out)?;
        Ok(out.to_vec())
    }

    #[test]
    fn normalises_without_stuffing_split_invariant() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a", b"a\r\n"),
            (b"a\r\n", b"a\r\n"),
            (b"a\nb", b"a\r\nb\r\n"),
            (b"a\rb", b"a\r\nb\r\n"),
            (b"a\r\r\nb", b"a\r\n\r\nb\r\n"),
            (b".\r\n.", b".\r\n.\r\n"),
            (b"\n\n", b"\r\n\r\n"),
            (b"x\r", b"x\r\n"),
        ];
        for (input, want) in table {
            mailferry_wire::testing::for_each_split(input, |chunks| {
                let mut enc = ChunkEncoder::new(Some(1000), false, false);
                assert_eq!(run(&mut enc, chunks).unwrap(), *want, "{input:?}");
            });
        }
    }

    #[test]
    fn refuses_eight_bit_and_long_lines() {
        let mut enc = ChunkEncoder::new(Some(1000), false, false);
        assert_eq!(
            run(&mut enc, &[b"ok\r\ncaf\xc3\xa9"]),
            Err(EncodeError::EightBit { line: 2, offset: 7 })
        );
        let mut enc = ChunkEncoder::new(Some(1000), false, false);
        let line = vec![b'x'; 998];
        assert_eq!(run(&mut enc, &[&line, b"\r\n"]).unwrap().len(), 1000);
        let mut enc = ChunkEncoder::new(Some(1000), false, false);
        let line = vec![b'x'; 999];
        assert_eq!(
            run(&mut enc, &[&line]),
            Err(EncodeError::LineTooLong {
                line: 1,
                limit: 1000
            })
        );
        let mut enc = ChunkEncoder::new(Some(1000), true, false);
        assert_eq!(
            run(&mut enc, &[b"caf\xc3\xa9"]).unwrap(),
            b"caf\xc3\xa9\r\n"
        );
    }

    #[test]
    fn binary_passes_through() {
        let mut enc = ChunkEncoder::new(None, true, true);
        assert_eq!(run(&mut enc, &[b"a\rb\n\0\xff"]).unwrap(), b"a\rb\n\0\xff");
    }
}

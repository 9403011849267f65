//! Streaming scan of a message's header section: counts `Received:` fields (hop count) and
//! notices `Date:`, across arbitrary chunk boundaries, without buffering.

/// Scanner state; feed every chunk of the message in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderScan {
    /// The header section has ended (a blank line was seen).
    done: bool,
    /// Inside a line whose field name has already been classified.
    skipping: bool,
    /// Not at the start of a line.
    mid_line: bool,
    prefix: [u8; 9],
    prefix_len: usize,
    pub(crate) received: u32,
    pub(crate) date_seen: bool,
}

impl HeaderScan {
    /// Whether the header section is over.
    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// Scans `chunk`; returns the offset of the blank line that ends the header section when
    /// it lies in this chunk.
    pub(crate) fn scan(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < chunk.len() && !self.done {
            let b = chunk[i];
            if !self.mid_line {
                if b == b'\r' || b == b'\n' {
                    // An empty line: the body starts after it.
                    self.done = true;
                    return Some(i);
                }
                self.mid_line = true;
                self.skipping = false;
                self.prefix_len = 0;
            }
            if b == b'\n' {
                self.mid_line = false;
                i += 1;
                continue;
            }
            if self.skipping {
                // Jump to the end of the line in one search.
                match memchr::memchr(b'\n', &chunk[i..]) {
                    Some(off) => i += off,
                    None => i = chunk.len(),
                }
                continue;
            }
            self.prefix[self.prefix_len] = b.to_ascii_lowercase();
            self.prefix_len += 1;
            let p = &self.prefix[..self.prefix_len];
            if p == b"date:" {
                self.date_seen = true;
                self.skipping = true;
            } else if p == b"received:" {
                self.received = self.received.saturating_add(1);
                self.skipping = true;
            } else if b == b':' || self.prefix_len == self.prefix.len() {
                self.skipping = true;
            }
            i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailferry_wire::testing::assert_split_invariant;

    fn run(chunks: &[&[u8]]) -> (u32, bool, Option<usize>) {
        let mut s = HeaderScan::default();
        let mut offset = 0;
        let mut end = None;
        for c in chunks {
            if let Some(at) = s.scan(c) {
                end.get_or_insert(offset + at);
            }
            offset += c.len();
        }
        (s.received, s.date_seen, end)
    }

    #[test]
    fn counts_received_and_finds_the_end() {
        let msg = b"Received: a\r\nRECEIVED: b\r\n\tReceived: folded\r\nX-Received: c\r\nDate: x\r\nSubject: Received: no\r\n\r\nReceived: body\r\n";
        let got = assert_split_invariant(msg, run);
        let blank = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
        assert_eq!(got, (2, true, Some(blank)));
    }

    #[test]
    fn no_blank_line_and_no_date() {
        assert_eq!(run(&[b"Subject: x\r\nReceiv"]), (0, false, None));
        assert_eq!(run(&[b"\r\nReceived: x\r\n"]), (0, false, Some(0)));
        assert_eq!(run(&[b"Dat", b"e: now\r\n"]), (0, true, None));
    }
}

//! Trace headers and the loop guard.
//!
//! Every forwarded message gets two header lines prepended (RFC 5321 §4.4: trace fields go on
//! top): a `Received:` line and `X-Mailferry-Trace: connector=NAME; id=ID; host=HOST`. Before
//! forwarding, the header block is scanned ([`HeaderScanner`], fed chunk by chunk as the
//! message streams, stopping at the empty line) for
//!
//! - our own trace header naming the **same connector**: the message went round a loop back
//!   into the mailbox it came from ([`LoopVerdict::OwnTrace`]);
//! - more than `max_hops` `Received:` lines (default 20, the seeds' "Max Hop Count"): a loop
//!   somewhere else ([`LoopVerdict::TooManyHops`]).
//!
//! Either verdict means: do not forward; move to BadMail (or hold) with the verdict as reason.
//! A trace header for another connector is legitimate (a chain of connectors) and only counts
//! through its `Received:` line.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Our trace header's field name.
pub const TRACE_HEADER: &str = "X-Mailferry-Trace";

/// Longest line prefix the scanner keeps (enough for a field name and our trace value).
const PREFIX: usize = 512;

/// Whether a message may be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoopVerdict {
    /// No loop detected.
    Forward,
    /// It carries our trace header for this connector.
    OwnTrace,
    /// It has this many `Received:` lines, over the limit.
    TooManyHops(usize),
}

impl LoopVerdict {
    /// A one-line reason for logs, `last_error` and the BadMail `.reason` file.
    pub fn reason(&self) -> Option<String> {
        match self {
            LoopVerdict::Forward => None,
            LoopVerdict::OwnTrace => Some(format!(
                "mail loop: the message already carries this connector's {TRACE_HEADER} header"
            )),
            LoopVerdict::TooManyHops(n) => {
                Some(format!("mail loop: {n} Received: headers (too many hops)"))
            }
        }
    }
}

/// Streaming scan of a header block: counts `Received:` fields and looks for our trace header.
#[derive(Debug, Clone)]
pub struct HeaderScanner {
    connector: String,
    line: Vec<u8>,
    line_len: usize,
    received: usize,
    own_trace: bool,
    done: bool,
    header_bytes: usize,
}

impl HeaderScanner {
    /// A scanner looking for `connector`'s trace header.
    pub fn new(connector: &str) -> HeaderScanner {
        HeaderScanner {
            connector: connector.to_owned(),
            line: Vec::with_capacity(64),
            line_len: 0,
            received: 0,
            own_trace: false,
            done: false,
            header_bytes: 0,
        }
    }

    /// Feeds the next chunk of the message. Returns `true` once the empty line ending the
    /// header block was seen (further input is ignored).
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            if self.done {
                break;
            }
            self.header_bytes += 1;
            if b == b'\n' {
                self.end_line();
            } else {
                if self.line.len() < PREFIX {
                    self.line.push(b);
                }
                self.line_len += 1;
            }
        }
        self.done
    }

    fn end_line(&mut self) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if line.is_empty() && self.line_len <= 1 {
            self.done = true;
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = trim(&line[..colon]);
            let value = &line[colon + 1..];
            if name.eq_ignore_ascii_case(b"Received") {
                self.received += 1;
            } else if name.eq_ignore_ascii_case(TRACE_HEADER.as_bytes())
                && trace_connector(value) == Some(self.connector.as_bytes())
            {
                self.own_trace = true;
            }
        }
        self.line.clear();
        self.line_len = 0;
    }

    /// Whether the header block ended.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Bytes of header seen so far (including the empty line once done).
    pub fn header_bytes(&self) -> usize {
        self.header_bytes
    }

    /// `Received:` fields counted.
    pub fn received(&self) -> usize {
        self.received
    }

    /// The verdict for `max_hops`.
    pub fn verdict(&self, max_hops: usize) -> LoopVerdict {
        if self.own_trace {
            LoopVerdict::OwnTrace
        } else if self.received > max_hops {
            LoopVerdict::TooManyHops(self.received)
        } else {
            LoopVerdict::Forward
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// The `connector=` value of a trace header value.
fn trace_connector(value: &[u8]) -> Option<&[u8]> {
    value.split(|&b| b == b';').find_map(|part| {
        let part = trim(part);
        let (k, v) = part.split_at(part.iter().position(|&b| b == b'=')?);
        trim(k)
            .eq_ignore_ascii_case(b"connector")
            .then(|| trim(&v[1..]))
    })
}

/// The loop verdict for a whole header block (or message).
pub fn check_loop(message: &[u8], connector: &str, max_hops: usize) -> LoopVerdict {
    let mut s = HeaderScanner::new(connector);
    s.feed(message);
    s.verdict(max_hops)
}

/// What goes into the trace lines.
#[derive(Debug, Clone)]
pub struct TraceInfo<'a> {
    /// The connector (a safe name, see [`crate::config::is_safe_name`]).
    pub connector: &'a str,
    /// The queue id.
    pub id: &'a crate::MessageId,
    /// Our host name.
    pub hostname: &'a str,
    /// Where it came from, e.g. `pop.example.com (POP3 user sales)` or a client's HELO and
    /// address; control characters are replaced, so a peer's text cannot add header lines.
    pub from: &'a str,
    /// `POP3`, `ESMTP`, `ESMTPS`, ...
    pub with: &'a str,
    /// The envelope recipient for a single-recipient message (`for <...>`), if any.
    pub for_recipient: Option<&'a str>,
    /// When the message arrived.
    pub now: SystemTime,
}

/// The two header lines to prepend (CRLF-terminated, each under 998 octets per line).
pub fn trace_headers(t: &TraceInfo<'_>) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "Received: from {}\r\n\tby {} (mailferry) with {} id {}",
        clean(t.from, 400),
        clean(t.hostname, 255),
        clean(t.with, 20),
        t.id
    );
    if let Some(r) = t.for_recipient {
        let _ = write!(s, "\r\n\tfor <{}>", clean(r, 300));
    }
    let _ = write!(s, ";\r\n\t{}\r\n", rfc5322_date(t.now));
    let _ = write!(
        s,
        "{TRACE_HEADER}: connector={}; id={}; host={}\r\n",
        clean(t.connector, 64),
        t.id,
        clean(t.hostname, 255)
    );
    s
}

/// Replaces control characters and non-ASCII with `?` and bounds the length: header text
/// built from peer-controlled values must stay one line of 7-bit text.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split(t: SystemTime) -> (i64, u32, u32, u64, i64) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil(days);
    (y, m, d, secs % 86_400, days)
}

/// An RFC 5322 §3.3 date in UTC: `Tue, 14 Nov 2023 22:13:20 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, s, days) = split(t);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        s / 3_600,
        s / 60 % 60,
        s % 60
    )
}

/// A compact UTC timestamp for operator output: `2023-11-14 22:13:20Z`.
pub fn utc_timestamp(t: SystemTime) -> String {
    let (y, m, d, s, _) = split(t);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        s / 3_600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn dates_known_answers() {
        assert_eq!(rfc5322_date(at(0)), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(at(1_700_000_000)),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
        assert_eq!(
            rfc5322_date(at(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
        assert_eq!(utc_timestamp(at(1_700_000_000)), "2023-11-14 22:13:20Z");
        assert_eq!(utc_timestamp(at(4_107_542_399)), "2100-02-28 23:59:59Z");
    }

    fn hops(n: usize) -> String {
        "Received: from a by b; Tue, 14 Nov 2023 22:13:20 +0000\r\n".repeat(n)
    }

    #[test]
    fn hop_count_limit() {
        let m = format!("{}Subject: x\r\n\r\nReceived: not a header\r\n", hops(20));
        assert_eq!(check_loop(m.as_bytes(), "c1", 20), LoopVerdict::Forward);
        let m = format!("{}Subject: x\r\n\r\n", hops(21));
        assert_eq!(
            check_loop(m.as_bytes(), "c1", 20),
            LoopVerdict::TooManyHops(21)
        );
        // Case-insensitive, bare LF, and folded continuation lines are not counted twice.
        let m = "received: x\n\tfrom y\nRECEIVED : z\n\nbody";
        let mut s = HeaderScanner::new("c1");
        assert!(s.feed(m.as_bytes()));
        assert_eq!(s.received(), 2);
        assert_eq!(s.header_bytes(), m.len() - 4);
    }

    #[test]
    fn own_trace_for_same_connector_only() {
        let m = b"X-Mailferry-Trace: connector=sales; id=x; host=h\r\nSubject: s\r\n\r\n";
        assert_eq!(check_loop(m, "sales", 20), LoopVerdict::OwnTrace);
        assert_eq!(check_loop(m, "support", 20), LoopVerdict::Forward);
        assert_eq!(check_loop(m, "sale", 20), LoopVerdict::Forward);
        let m = b"x-mailferry-trace:id=1;CONNECTOR = sales\r\n\r\n";
        assert_eq!(check_loop(m, "sales", 20), LoopVerdict::OwnTrace);
        // In the body it does not count.
        let m = b"Subject: s\r\n\r\nX-Mailferry-Trace: connector=sales\r\n";
        assert_eq!(check_loop(m, "sales", 20), LoopVerdict::Forward);
        assert!(
            LoopVerdict::OwnTrace
                .reason()
                .unwrap()
                .contains("mail loop")
        );
        assert_eq!(LoopVerdict::Forward.reason(), None);
    }

    #[test]
    fn verdict_is_split_point_invariant() {
        let m = format!(
            "{}X-Mailferry-Trace: connector=c1; id=1\r\nSubject: x\r\n\r\nbody",
            hops(3)
        );
        let whole = {
            let mut s = HeaderScanner::new("c1");
            s.feed(m.as_bytes());
            (s.received(), s.verdict(2), s.header_bytes())
        };
        assert_eq!(whole.1, LoopVerdict::OwnTrace);
        for cut in 0..m.len() {
            let mut s = HeaderScanner::new("c1");
            s.feed(&m.as_bytes()[..cut]);
            s.feed(&m.as_bytes()[cut..]);
            assert_eq!(
                (s.received(), s.verdict(2), s.header_bytes()),
                whole,
                "cut {cut}"
            );
        }
        let mut s = HeaderScanner::new("c1");
        for b in m.as_bytes() {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!((s.received(), s.verdict(2), s.header_bytes()), whole);
    }

    #[test]
    fn trace_headers_are_well_formed_and_detected() {
        let id = crate::MessageId::generate(at(1_700_000_000));
        let h = trace_headers(&TraceInfo {
            connector: "sales",
            id: &id,
            hostname: "relay.example.org",
            from: "pop.example.com (POP3 user evil\r\nBcc: x@y)",
            with: "POP3",
            for_recipient: Some("a@b.org"),
            now: at(1_700_000_000),
        });
        assert_eq!(
            h,
            format!(
                "Received: from pop.example.com (POP3 user evil??Bcc: x@y)\r\n\tby relay.example.org (mailferry) with POP3 id {id}\r\n\tfor <a@b.org>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\nX-Mailferry-Trace: connector=sales; id={id}; host=relay.example.org\r\n"
            )
        );
        assert!(h.split("\r\n").all(|l| l.len() <= 998));
        // A message we forwarded, coming back, is caught.
        let back = format!("{h}Subject: x\r\n\r\n");
        assert_eq!(
            check_loop(back.as_bytes(), "sales", 20),
            LoopVerdict::OwnTrace
        );
    }
}

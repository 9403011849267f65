//! Progress lines for long runs: a poll fetching thousands of messages, or a large delivery
//! backlog, logs where it stands every [`EVERY_MESSAGES`] messages or [`EVERY`], whichever
//! comes first, so an operator watching the log sees it move (the summary line comes only at
//! the end).
//!
//! [`Progress`] is a pure counter: time is an input, so the schedule is tested without
//! sleeping.

use std::fmt;
use std::time::{Duration, Instant};

/// A progress line at least every this many messages.
pub const EVERY_MESSAGES: usize = 100;
/// A progress line at least this often while messages keep coming.
pub const EVERY: Duration = Duration::from_secs(10);

/// Counts work done against a known total and says when a progress line is due.
#[derive(Debug, Clone)]
pub struct Progress {
    total: usize,
    total_bytes: u64,
    done: usize,
    bytes: u64,
    every_messages: usize,
    every: Duration,
    started: Instant,
    last_at: Instant,
    last_done: usize,
}

/// One progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressLine {
    /// Messages done so far.
    pub done: usize,
    /// Messages in this run.
    pub total: usize,
    /// Octets done so far.
    pub bytes: u64,
    /// Octets in this run (as listed by the server, for a poll).
    pub total_bytes: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

impl fmt::Display for ProgressLine {
    /// `150/1000 messages, 1.2 MiB/8.0 MiB, 12.5 s`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} messages, {}/{}, {:.1} s",
            self.done,
            self.total,
            Size(self.bytes),
            Size(self.total_bytes),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Octets in the largest binary unit that keeps the number at least 1.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        // Precision loss above 2^53 octets is irrelevant for a log line.
        #[allow(clippy::cast_precision_loss)]
        let mut v = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while v >= 1024.0 && unit + 1 < UNITS.len() {
            v /= 1024.0;
            unit += 1;
        }
        write!(f, "{v:.1} {}", UNITS[unit])
    }
}

impl Progress {
    /// A run of `total` messages (`total_bytes` octets) starting at `now`, reporting every
    /// [`EVERY_MESSAGES`] messages or [`EVERY`].
    pub fn new(total: usize, total_bytes: u64, now: Instant) -> Progress {
        Progress {
            total,
            total_bytes,
            done: 0,
            bytes: 0,
            every_messages: EVERY_MESSAGES,
            every: EVERY,
            started: now,
            last_at: now,
            last_done: 0,
        }
    }

    /// Changes the schedule (at least one message between lines).
    pub fn with_schedule(mut self, every_messages: usize, every: Duration) -> Progress {
        self.every_messages = every_messages.max(1);
        self.every = every;
        self
    }

    /// Records `messages` more messages of `bytes` octets done at `now`; returns a line when
    /// one is due. Never for the last message: the run's summary line says that.
    pub fn advance(&mut self, messages: usize, bytes: u64, now: Instant) -> Option<ProgressLine> {
        self.done = self.done.saturating_add(messages);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.done >= self.total || self.done == self.last_done {
            return None;
        }
        let by_count = self.done - self.last_done >= self.every_messages;
        let by_time = now.saturating_duration_since(self.last_at) >= self.every;
        if !(by_count || by_time) {
            return None;
        }
        self.last_done = self.done;
        self.last_at = now;
        Some(ProgressLine {
            done: self.done,
            total: self.total,
            bytes: self.bytes,
            total_bytes: self.total_bytes,
            elapsed: now.saturating_duration_since(self.started),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_n_messages_or_every_interval_never_at_the_end() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut p = Progress::new(10, 10_000, t0).with_schedule(3, Duration::from_secs(5));
        // (messages, bytes, time in ms) -> the line's `done`, if any
        let steps: &[(usize, u64, u64, Option<usize>)] = &[
            (1, 1000, 10, None),
            (1, 1000, 20, None),
            (1, 1000, 30, Some(3)), // 3 since the last line
            (1, 1000, 40, None),
            (0, 0, 6_000, Some(4)), // 5 s since the last line, with work done since
            (0, 0, 12_000, None),   // nothing new since the last line
            (1, 1000, 12_010, Some(5)),
            (1, 1000, 12_020, None),
            (1, 1000, 30_000, Some(7)), // only 2 new, but 18 s since the last line
            (1, 1000, 30_010, None),
            (1, 1000, 30_020, None),
            (1, 1000, 90_000, None), // the last message: the summary line says it
            (5, 5000, 99_000, None), // past the total
        ];
        for &(m, b, ms, want) in steps {
            assert_eq!(p.advance(m, b, at(ms)).map(|l| l.done), want, "at {ms} ms");
        }
    }

    #[test]
    fn line_known_answers() {
        let t0 = Instant::now();
        let mut p = Progress::new(1000, 8 * 1024 * 1024, t0).with_schedule(100, EVERY);
        let mut line = None;
        for i in 0..150 {
            if let Some(l) = p.advance(1, 8 * 1024, t0 + Duration::from_millis(100 * (i + 1))) {
                line = Some(l);
            }
        }
        let l = line.unwrap();
        assert_eq!(
            l,
            ProgressLine {
                done: 100,
                total: 1000,
                bytes: 800 * 1024,
                total_bytes: 8 * 1024 * 1024,
                elapsed: Duration::from_secs(10),
            }
        );
        assert_eq!(
            l.to_string(),
            "100/1000 messages, 800.0 KiB/8.0 MiB, 10.0 s"
        );
        let cases: &[(u64, &str)] = &[
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (200 * 1024 * 1024, "200.0 MiB"),
            (3 << 40, "3.0 TiB"),
            (5000 << 40, "5000.0 TiB"),
        ];
        for (n, want) in cases {
            assert_eq!(Size(*n).to_string(), *want);
        }
    }

    #[test]
    fn zero_total_and_zero_schedule_are_harmless() {
        let t0 = Instant::now();
        let mut p = Progress::new(0, 0, t0).with_schedule(0, Duration::ZERO);
        assert_eq!(p.advance(1, 1, t0), None);
        let mut p = Progress::new(3, 3, t0).with_schedule(0, Duration::from_secs(60));
        // A schedule of 0 messages means every message (but the last).
        assert_eq!(p.advance(1, 1, t0).map(|l| l.done), Some(1));
        assert_eq!(p.advance(1, 1, t0).map(|l| l.done), Some(2));
        assert_eq!(p.advance(1, 1, t0), None);
    }
}

//! Wall-clock values for banners and trace headers, computed from inputs only: the core never
//! reads the clock, the shell passes the time of connection and monotonic `Instant`s advance it.

use std::fmt::Write as _;

/// A point in civil time: seconds since the Unix epoch plus the local offset east of UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix_seconds: i64,
    /// The local time zone's offset from UTC in seconds (east positive), for `#Time#` and
    /// `Date:`; 0 writes UTC.
    pub utc_offset_seconds: i32,
}

impl WallClock {
    /// A UTC wall clock at `unix_seconds`.
    pub fn utc(unix_seconds: i64) -> Self {
        WallClock {
            unix_seconds,
            utc_offset_seconds: 0,
        }
    }

    /// The same clock `seconds` later.
    pub(crate) fn plus(self, seconds: u64) -> Self {
        WallClock {
            unix_seconds: self
                .unix_seconds
                .saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX)),
            ..self
        }
    }

    /// RFC 5322 §3.3 date-time in local time: `Tue, 01 Jul 2025 10:00:00 +0200`.
    pub fn rfc5322_local(self) -> String {
        format_rfc5322(self.unix_seconds, self.utc_offset_seconds)
    }

    /// RFC 5322 §3.3 date-time in UTC: `Tue, 01 Jul 2025 08:00:00 +0000`.
    pub fn rfc5322_utc(self) -> String {
        format_rfc5322(self.unix_seconds, 0)
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic Gregorian calendar
/// (the era-based method: 400-year eras of 146,097 days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // day is 1..=31 and month 1..=12 by construction.
    (year, month as u32, day as u32)
}

fn format_rfc5322(unix: i64, offset: i32) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Offsets beyond ±23:59 are not representable in RFC 5322; clamp.
    let offset = offset.clamp(-86_399, 86_399);
    let local = unix.saturating_add(i64::from(offset));
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let sign = if offset < 0 { '-' } else { '+' };
    let off = offset.unsigned_abs() / 60;
    let mut out = String::with_capacity(32);
    let _ = write!(
        out,
        "{weekday}, {day:02} {} {year:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        off / 60,
        off % 60
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let table: &[(i64, i32, &str)] = &[
            (0, 0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (951_782_400, 0, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (1_700_000_000, 0, "Tue, 14 Nov 2023 22:13:20 +0000"),
            (1_700_000_000, 3600, "Tue, 14 Nov 2023 23:13:20 +0100"),
            (
                1_700_000_000,
                -5 * 3600 - 1800,
                "Tue, 14 Nov 2023 16:43:20 -0530",
            ),
            (-1, 0, "Wed, 31 Dec 1969 23:59:59 +0000"),
        ];
        for &(unix, offset, want) in table {
            assert_eq!(format_rfc5322(unix, offset), want, "{unix} {offset}");
        }
    }

    #[test]
    fn plus_saturates() {
        assert_eq!(WallClock::utc(i64::MAX).plus(5).unix_seconds, i64::MAX);
        assert_eq!(WallClock::utc(10).plus(5).unix_seconds, 15);
    }
}

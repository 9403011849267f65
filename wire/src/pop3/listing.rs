//! Drop listings, scan listings, unique-id listings and multi-line framing.

use std::fmt;
use std::num::NonZeroU32;

use bytes::{BufMut, BytesMut};
use nom::Parser;
use nom::bytes::tag;
use nom::combinator::{map_res, opt, rest};
use nom::sequence::preceded;

use super::{Options, Pop3Error, check_line, message_number, number_u32, number_u64, run, token};

/// One line of a multi-line response after byte-stuffing is removed (RFC 1939 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiLine<'a> {
    /// A data line, un-stuffed.
    Line(&'a [u8]),
    /// The `.` terminator: the response is complete.
    End,
}

/// Classifies one line (without CRLF) of a multi-line response.
///
/// ```text
/// multi-line  = single-line *dot-stuffed "." CRLF     ; RFC 2449 §9
/// dot-stuffed = *CHAR CRLF                            ; a leading "." is doubled
/// ```
///
/// "If the line consists of the termination octet followed by CRLF, the response is complete;
/// otherwise the first octet, a termination octet, is removed" (RFC 1939 §3): `..x` is `.x`,
/// and so is a non-conforming `.x`.
pub fn multiline_line(line: &[u8]) -> MultiLine<'_> {
    match line {
        b"." => MultiLine::End,
        [b'.', stuffed @ ..] => MultiLine::Line(stuffed),
        _ => MultiLine::Line(line),
    }
}

/// Appends one data line of a multi-line response, stuffing a leading `.`, CRLF included.
///
/// A line holding CR, LF or NUL is refused ([`Pop3Error::ForbiddenByte`]) and nothing is
/// written: it could end the response early.
pub fn encode_multiline_line(line: &[u8], out: &mut BytesMut) -> Result<(), Pop3Error> {
    check_line(line, usize::MAX)?;
    if line.first() == Some(&b'.') {
        out.put_u8(b'.');
    }
    out.put_slice(line);
    out.put_slice(b"\r\n");
    Ok(())
}

/// Appends the `.` CRLF terminator of a multi-line response.
pub fn encode_multiline_end(out: &mut BytesMut) {
    out.put_slice(b".\r\n");
}

/// The answer to STAT (RFC 1939 §5): the text of the `+OK` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stat {
    /// Number of messages (not counting those marked as deleted).
    pub count: u32,
    /// Size of the maildrop in octets.
    pub size: u64,
}

impl Stat {
    /// Parses a drop listing, the text after `+OK `.
    ///
    /// ```text
    /// drop-listing = count SP size [SP *CHAR]             ; RFC 1939 §5
    /// ```
    ///
    /// "This memo makes no requirement on what follows the maildrop size": anything after a
    /// further space is ignored.
    pub fn parse(text: &[u8]) -> Result<Stat, Pop3Error> {
        run(
            (
                map_res(token, number_u32),
                preceded(tag(" "), map_res(token, number_u64)),
                opt(preceded(tag(" "), rest)),
            )
                .map(|(count, size, _)| Stat { count, size }),
            text,
            Pop3Error::BadStat,
        )
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.count, self.size)
    }
}

/// A scan listing (RFC 1939 §5 LIST): a message number and its size in octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScanListing {
    /// The message number.
    pub msg: NonZeroU32,
    /// The exact size in octets, as the server counts it.
    pub size: u64,
}

impl ScanListing {
    /// Parses a scan listing: a line of a multi-line LIST response, or the text after `+OK `
    /// of a single-message LIST.
    ///
    /// ```text
    /// scan-listing = msg SP size [SP *CHAR]               ; RFC 1939 §5
    /// msg          = 1*DIGIT                              ; >= 1, fits u32
    /// size         = 1*DIGIT                              ; fits u64
    /// ```
    ///
    /// "This memo makes no requirement on what follows the message size": anything after a
    /// further space is ignored.
    pub fn parse(line: &[u8]) -> Result<ScanListing, Pop3Error> {
        run(
            (
                map_res(token, message_number),
                preceded(tag(" "), map_res(token, number_u64)),
                opt(preceded(tag(" "), rest)),
            )
                .map(|(msg, size, _)| ScanListing { msg, size }),
            line,
            Pop3Error::BadScanListing,
        )
    }
}

impl fmt::Display for ScanListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.msg, self.size)
    }
}

/// A unique id (RFC 1939 §7 UIDL): 1 to 70 octets in 0x21-0x7E.
///
/// A UID is peer data: it never becomes a path or a log line without escaping by its user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

impl Uid {
    /// Longest UID (RFC 1939 §7).
    pub const MAX_LEN: usize = 70;

    /// The UID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn from_bytes(b: &[u8]) -> Result<Uid, Pop3Error> {
        if b.is_empty() || b.len() > Self::MAX_LEN || !b.iter().all(|&c| (0x21..=0x7e).contains(&c))
        {
            return Err(Pop3Error::BadUid);
        }
        // Checked above: printable ASCII only.
        Ok(Uid(String::from_utf8_lossy(b).into_owned()))
    }
}

impl TryFrom<&str> for Uid {
    type Error = Pop3Error;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Uid::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A unique-id listing (RFC 1939 §7 UIDL): a message number and its UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UidListing {
    /// The message number.
    pub msg: NonZeroU32,
    /// The message's unique id.
    pub uid: Uid,
}

impl UidListing {
    /// Parses a unique-id listing: a line of a multi-line UIDL response, or the text after
    /// `+OK ` of a single-message UIDL.
    ///
    /// ```text
    /// unique-id-listing = msg SP unique-id                ; RFC 1939 §7
    /// unique-id         = 1*70 %x21-7E
    /// ```
    ///
    /// Nothing may follow the UID: a space, a control character or a 71st octet is
    /// [`Pop3Error::BadUid`].
    pub fn parse(line: &[u8]) -> Result<UidListing, Pop3Error> {
        run(
            (
                map_res(token, message_number),
                preceded(tag(" "), map_res(rest, Uid::from_bytes)),
            )
                .map(|(msg, uid)| UidListing { msg, uid }),
            line,
            Pop3Error::BadUidListing,
        )
    }
}

impl fmt::Display for UidListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.msg, self.uid)
    }
}

/// An entry of a multi-line listing collected by [`ListingAccumulator`].
pub trait ListingEntry: Sized {
    /// The entry's message number.
    fn message_number(&self) -> NonZeroU32;
    /// Parses one un-stuffed listing line.
    fn parse_line(line: &[u8]) -> Result<Self, Pop3Error>;
}

impl ListingEntry for ScanListing {
    fn message_number(&self) -> NonZeroU32 {
        self.msg
    }

    fn parse_line(line: &[u8]) -> Result<Self, Pop3Error> {
        ScanListing::parse(line)
    }
}

impl ListingEntry for UidListing {
    fn message_number(&self) -> NonZeroU32 {
        self.msg
    }

    fn parse_line(line: &[u8]) -> Result<Self, Pop3Error> {
        UidListing::parse(line)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AccState {
    Open,
    Done,
    Failed(Pop3Error),
}

/// Collects the lines of a multi-line LIST or UIDL response (after its `+OK` line).
///
/// Message numbers must be strictly increasing: a number seen before is
/// [`Pop3Error::DuplicateMessageNumber`], a smaller new one [`Pop3Error::OutOfOrder`] (two
/// entries for one message would make the client fetch or delete the wrong one). At most
/// [`Options::max_listing_entries`] entries are kept, whatever the server announced. The first
/// error is sticky: every later call returns it again.
#[derive(Debug, Clone)]
pub struct ListingAccumulator<T> {
    entries: Vec<T>,
    max_entries: usize,
    max_line: usize,
    state: AccState,
}

impl<T: ListingEntry> ListingAccumulator<T> {
    /// An empty accumulator using the limits of `options`.
    pub fn new(options: &Options) -> Self {
        ListingAccumulator {
            entries: Vec::new(),
            max_entries: options.max_listing_entries,
            max_line: options.max_response_line,
            state: AccState::Open,
        }
    }

    /// Feeds one line (without CRLF), stuffed as received. Returns `Ok(true)` once the `.`
    /// terminator has been read.
    pub fn push_line(&mut self, line: &[u8]) -> Result<bool, Pop3Error> {
        self.usable()?;
        let result = check_line(line, self.max_line).and_then(|()| match multiline_line(line) {
            MultiLine::End => {
                self.state = AccState::Done;
                Ok(true)
            }
            MultiLine::Line(data) => T::parse_line(data)
                .and_then(|e| self.add(e))
                .map(|()| false),
        });
        self.stick(result)
    }

    /// Adds one already parsed entry, with the same checks as [`Self::push_line`].
    pub fn push(&mut self, entry: T) -> Result<(), Pop3Error> {
        self.usable()?;
        let result = self.add(entry);
        self.stick(result)
    }

    fn usable(&self) -> Result<(), Pop3Error> {
        match &self.state {
            AccState::Open => Ok(()),
            AccState::Done => Err(Pop3Error::AfterTerminator),
            AccState::Failed(e) => Err(e.clone()),
        }
    }

    fn stick<R>(&mut self, result: Result<R, Pop3Error>) -> Result<R, Pop3Error> {
        if let Err(e) = &result {
            self.state = AccState::Failed(e.clone());
        }
        result
    }

    fn add(&mut self, entry: T) -> Result<(), Pop3Error> {
        let got = entry.message_number();
        if let Some(last) = self.entries.last().map(ListingEntry::message_number)
            && got <= last
        {
            // Entries are sorted, so a binary search tells a repeat from a step back.
            let seen = self
                .entries
                .binary_search_by_key(&got, ListingEntry::message_number)
                .is_ok();
            return Err(if seen {
                Pop3Error::DuplicateMessageNumber(got.get())
            } else {
                Pop3Error::OutOfOrder {
                    previous: last.get(),
                    got: got.get(),
                }
            });
        }
        if self.entries.len() >= self.max_entries {
            return Err(Pop3Error::TooManyEntries {
                max: self.max_entries,
            });
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Whether the terminator has been read.
    pub fn is_done(&self) -> bool {
        self.state == AccState::Done
    }

    /// The entries collected so far, in message-number order.
    pub fn entries(&self) -> &[T] {
        &self.entries
    }

    /// The complete listing; [`Pop3Error::Unterminated`] before the terminator, or the sticky
    /// error.
    pub fn finish(self) -> Result<Vec<T>, Pop3Error> {
        match self.state {
            AccState::Done => Ok(self.entries),
            AccState::Open => Err(Pop3Error::Unterminated),
            AccState::Failed(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn multiline_unstuffing() {
        assert_eq!(multiline_line(b"."), MultiLine::End);
        assert_eq!(multiline_line(b".."), MultiLine::Line(b"."));
        assert_eq!(multiline_line(b"..x"), MultiLine::Line(b".x"));
        assert_eq!(multiline_line(b".x"), MultiLine::Line(b"x"));
        assert_eq!(multiline_line(b""), MultiLine::Line(b""));
        assert_eq!(multiline_line(b"1 120"), MultiLine::Line(b"1 120"));
        let mut out = BytesMut::new();
        encode_multiline_line(b".x", &mut out).unwrap();
        encode_multiline_line(b"y", &mut out).unwrap();
        encode_multiline_end(&mut out);
        assert_eq!(&out[..], b"..x\r\ny\r\n.\r\n");
        assert_eq!(
            encode_multiline_line(b"a\r\n.\r\n", &mut out),
            Err(Pop3Error::ForbiddenByte { byte: b'\r' })
        );
    }

    #[test]
    fn stat_known_answers() {
        // RFC 1939 §5: "S: +OK 2 320".
        assert_eq!(
            Stat::parse(b"2 320"),
            Ok(Stat {
                count: 2,
                size: 320
            })
        );
        assert_eq!(Stat::parse(b"0 0"), Ok(Stat { count: 0, size: 0 }));
        assert_eq!(
            Stat::parse(b"2 320 extra info"),
            Ok(Stat {
                count: 2,
                size: 320
            })
        );
        assert_eq!(Stat::parse(b"2"), Err(Pop3Error::BadStat));
        assert_eq!(Stat::parse(b"2  320"), Err(Pop3Error::BadStat));
        assert_eq!(Stat::parse(b"-2 320"), Err(Pop3Error::BadNumber));
        assert_eq!(Stat::parse(b"2 -320"), Err(Pop3Error::BadNumber));
        assert_eq!(Stat::parse(b"4294967296 1"), Err(Pop3Error::NumberOverflow));
        assert_eq!(Stat::parse(b"mrose's maildrop"), Err(Pop3Error::BadNumber));
    }

    #[test]
    fn scan_listing_known_answers() {
        // RFC 1939 §5 LIST examples.
        assert_eq!(
            ScanListing::parse(b"1 120"),
            Ok(ScanListing {
                msg: n(1),
                size: 120
            })
        );
        assert_eq!(
            ScanListing::parse(b"2 200"),
            Ok(ScanListing {
                msg: n(2),
                size: 200
            })
        );
        assert_eq!(
            ScanListing::parse(b"3 18446744073709551615 extra"),
            Ok(ScanListing {
                msg: n(3),
                size: u64::MAX
            })
        );
        assert_eq!(
            ScanListing::parse(b"0 120"),
            Err(Pop3Error::ZeroMessageNumber)
        );
        assert_eq!(ScanListing::parse(b"1"), Err(Pop3Error::BadScanListing));
        assert_eq!(ScanListing::parse(b"1 "), Err(Pop3Error::BadScanListing));
        assert_eq!(ScanListing::parse(b""), Err(Pop3Error::BadScanListing));
        assert_eq!(ScanListing::parse(b"1\t120"), Err(Pop3Error::BadNumber));
    }

    #[test]
    fn uid_listing_known_answers() {
        // RFC 1939 §7 UIDL examples.
        let table: &[(&[u8], u32, &str)] = &[
            (b"1 whqtswO00WBw418f9t5JxYwZ", 1, "whqtswO00WBw418f9t5JxYwZ"),
            (b"2 QhdPYR:00WBw1Ph7x7", 2, "QhdPYR:00WBw1Ph7x7"),
            (b"3 ~!", 3, "~!"),
        ];
        for &(line, msg, uid) in table {
            let got = UidListing::parse(line).unwrap();
            assert_eq!((got.msg.get(), got.uid.as_str()), (msg, uid));
            assert_eq!(UidListing::parse(got.to_string().as_bytes()), Ok(got));
        }
        assert_eq!(UidListing::parse(b"1"), Err(Pop3Error::BadUidListing));
        assert_eq!(UidListing::parse(b"1 "), Err(Pop3Error::BadUid));
        assert_eq!(
            UidListing::parse(b"0 abc"),
            Err(Pop3Error::ZeroMessageNumber)
        );
    }

    #[test]
    fn hostile_uid_rejected() {
        let long = [b"1 ".as_slice(), &[b'a'; 71]].concat();
        let max = [b"1 ".as_slice(), &[b'a'; 70]].concat();
        let table: &[&[u8]] = &[
            b"1 abc def",
            b"1 abc ",
            b"1  abc",
            b"1 ab\tc",
            b"1 ab\x1bc",
            b"1 ab\x7fc",
            b"1 ab\xc3\xa9",
            b"1 ab\0",
            &long,
        ];
        for line in table {
            assert_eq!(UidListing::parse(line), Err(Pop3Error::BadUid), "{line:?}");
        }
        assert!(UidListing::parse(&max).is_ok());
        assert_eq!(
            Uid::try_from("../../etc/passwd").map(|u| u.as_str().len()),
            Ok(16)
        );
        assert_eq!(Uid::try_from(""), Err(Pop3Error::BadUid));
    }

    #[test]
    fn negative_and_overflowing_numbers_rejected() {
        assert_eq!(ScanListing::parse(b"-1 120"), Err(Pop3Error::BadNumber));
        assert_eq!(ScanListing::parse(b"+1 120"), Err(Pop3Error::BadNumber));
        assert_eq!(ScanListing::parse(b"1 -120"), Err(Pop3Error::BadNumber));
        assert_eq!(
            ScanListing::parse(b"4294967296 120"),
            Err(Pop3Error::NumberOverflow)
        );
        assert_eq!(
            ScanListing::parse(b"1 18446744073709551616"),
            Err(Pop3Error::NumberOverflow)
        );
        assert_eq!(
            ScanListing::parse(b"1 99999999999999999999999999999"),
            Err(Pop3Error::NumberOverflow)
        );
        assert_eq!(UidListing::parse(b"-1 abc"), Err(Pop3Error::BadNumber));
        assert_eq!(
            UidListing::parse(b"4294967296 abc"),
            Err(Pop3Error::NumberOverflow)
        );
        assert_eq!(
            Stat::parse(b"1 18446744073709551616"),
            Err(Pop3Error::NumberOverflow)
        );
        let o = Options::default();
        assert_eq!(
            super::super::Command::parse(b"RETR 4294967296", &o),
            Err(Pop3Error::NumberOverflow)
        );
        assert_eq!(
            super::super::Command::parse(b"TOP 1 -5", &o),
            Err(Pop3Error::BadNumber)
        );
    }

    fn feed<T: ListingEntry>(
        acc: &mut ListingAccumulator<T>,
        lines: &[&[u8]],
    ) -> Result<bool, Pop3Error> {
        let mut done = false;
        for line in lines {
            done = acc.push_line(line)?;
        }
        Ok(done)
    }

    #[test]
    fn rfc_1939_list_and_uidl_responses() {
        let o = Options::default();
        let mut list = ListingAccumulator::<ScanListing>::new(&o);
        assert_eq!(feed(&mut list, &[b"1 120", b"2 200", b"."]), Ok(true));
        assert!(list.is_done());
        assert_eq!(
            list.finish(),
            Ok(vec![
                ScanListing {
                    msg: n(1),
                    size: 120
                },
                ScanListing {
                    msg: n(2),
                    size: 200
                }
            ])
        );
        let mut uidl = ListingAccumulator::<UidListing>::new(&o);
        assert_eq!(
            feed(
                &mut uidl,
                &[b"1 whqtswO00WBw418f9t5JxYwZ", b"2 QhdPYR:00WBw1Ph7x7", b"."]
            ),
            Ok(true)
        );
        assert_eq!(uidl.entries().len(), 2);
        let mut empty = ListingAccumulator::<UidListing>::new(&o);
        assert_eq!(empty.push_line(b"."), Ok(true));
        assert_eq!(empty.finish(), Ok(vec![]));
    }

    #[test]
    fn duplicate_message_numbers_rejected() {
        let o = Options::default();
        let mut acc = ListingAccumulator::<UidListing>::new(&o);
        assert_eq!(
            feed(&mut acc, &[b"1 a", b"2 b", b"2 c"]),
            Err(Pop3Error::DuplicateMessageNumber(2))
        );
        // Sticky: the terminator no longer completes the listing.
        assert_eq!(
            acc.push_line(b"."),
            Err(Pop3Error::DuplicateMessageNumber(2))
        );
        assert_eq!(acc.finish(), Err(Pop3Error::DuplicateMessageNumber(2)));

        let mut acc = ListingAccumulator::<ScanListing>::new(&o);
        assert_eq!(
            feed(&mut acc, &[b"1 10", b"3 10", b"1 10"]),
            Err(Pop3Error::DuplicateMessageNumber(1))
        );
        let mut acc = ListingAccumulator::<ScanListing>::new(&o);
        assert_eq!(
            feed(&mut acc, &[b"1 10", b"3 10", b"2 10"]),
            Err(Pop3Error::OutOfOrder {
                previous: 3,
                got: 2
            })
        );
        let mut acc = ListingAccumulator::<ScanListing>::new(&o);
        assert_eq!(
            feed(&mut acc, &[b"0 10"]),
            Err(Pop3Error::ZeroMessageNumber)
        );
    }

    #[test]
    fn accumulator_bounds_and_terminator() {
        let o = Options {
            max_listing_entries: 2,
            ..Options::default()
        };
        let mut acc = ListingAccumulator::<ScanListing>::new(&o);
        assert_eq!(
            feed(&mut acc, &[b"1 1", b"2 1", b"3 1"]),
            Err(Pop3Error::TooManyEntries { max: 2 })
        );
        assert_eq!(acc.entries().len(), 2);

        let mut acc = ListingAccumulator::<ScanListing>::new(&o);
        assert_eq!(feed(&mut acc, &[b"1 1", b"."]), Ok(true));
        assert_eq!(acc.push_line(b"2 1"), Err(Pop3Error::AfterTerminator));

        let mut acc = ListingAccumulator::<ScanListing>::new(&o);
        assert_eq!(acc.push_line(b"1 1"), Ok(false));
        assert_eq!(acc.finish(), Err(Pop3Error::Unterminated));

        let mut acc = ListingAccumulator::<ScanListing>::new(&o);
        let long = [b"1 1 ".as_slice(), &[b'x'; 600]].concat();
        assert_eq!(
            acc.push_line(&long),
            Err(Pop3Error::LineTooLong { len: 606, max: 512 })
        );

        let mut acc = ListingAccumulator::<UidListing>::new(&o);
        let entry = UidListing {
            msg: n(5),
            uid: Uid::try_from("x").unwrap(),
        };
        assert_eq!(acc.push(entry.clone()), Ok(()));
        assert_eq!(acc.push(entry), Err(Pop3Error::DuplicateMessageNumber(5)));
    }

    proptest! {
        #[test]
        fn listing_round_trip(msg in 1u32.., size in any::<u64>(), uid in "[!-~]{1,70}") {
            let scan = ScanListing { msg: n(msg), size };
            prop_assert_eq!(ScanListing::parse(scan.to_string().as_bytes()), Ok(scan));
            let u = UidListing { msg: n(msg), uid: Uid::try_from(uid.as_str()).unwrap() };
            prop_assert_eq!(UidListing::parse(u.to_string().as_bytes()), Ok(u));
            let stat = Stat { count: msg, size };
            prop_assert_eq!(Stat::parse(stat.to_string().as_bytes()), Ok(stat));
        }

        #[test]
        fn multiline_stuffing_round_trip(line in proptest::collection::vec(
            any::<u8>().prop_filter("no CR LF NUL", |b| !matches!(b, b'\r' | b'\n' | 0)), 0..20)
        ) {
            let mut out = BytesMut::new();
            encode_multiline_line(&line, &mut out).unwrap();
            let wire = &out[..out.len() - 2];
            prop_assert_eq!(multiline_line(wire), MultiLine::Line(&line));
        }
    }
}

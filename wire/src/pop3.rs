//! POP3 grammar: commands, status lines, response codes, listings and capabilities.
//!
//! Every parser here takes exactly **one complete line without its CRLF**, as cut by the line
//! framer, and either returns a typed value or a precise [`Pop3Error`]. Every encoder appends the
//! wire form, CRLF included, to a caller's [`bytes::BytesMut`], so a pipelined group of commands
//! leaves in one write. For every grammar item, parsing what was encoded gives back the value.
//!
//! | Item | Parse | Encode | RFC |
//! |------|-------|--------|-----|
//! | [`Command`] | [`Command::parse`] | [`Command::encode`] | RFC 1939 §3-§7, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4 |
//! | [`AuthResponse`] (client line inside AUTH) | [`AuthResponse::parse`] | [`AuthResponse::encode`] | RFC 5034 §4 |
//! | [`StatusLine`] (`+OK` / `-ERR`) | [`StatusLine::parse`] | [`StatusLine::encode`] | RFC 1939 §3, RFC 2449 §3, §8 |
//! | [`ServerLine`] (status or `+ ` continuation) | [`ServerLine::parse`] | [`ServerLine::encode`] | RFC 5034 §4 |
//! | [`Stat`] (drop listing) | [`Stat::parse`] | `Display` | RFC 1939 §5 |
//! | [`ScanListing`] | [`ScanListing::parse`] | `Display` | RFC 1939 §5, §7 |
//! | [`UidListing`] | [`UidListing::parse`] | `Display` | RFC 1939 §7 |
//! | [`Capability`] | [`Capability::parse`] | `Display` | RFC 2449 §5, §6, RFC 2595 §4, RFC 3206 §5 |
//!
//! Multi-line responses (RFC 1939 §3) are handled one line at a time: [`multiline_line`] removes
//! the byte-stuffing and recognises the `.` terminator, [`encode_multiline_line`] and
//! [`encode_multiline_end`] write them; [`ListingAccumulator`] and [`CapaAccumulator`] collect a
//! whole LIST / UIDL / CAPA response under the limits of [`Options`] and reject duplicate, zero
//! or out-of-order message numbers.
//!
//! Values a caller puts into a command are validated types ([`Pop3Arg`], [`Pop3Password`],
//! [`SaslMechanism`], [`SaslData`], [`ApopDigest`]): CR, LF, NUL and over-long values cannot be
//! constructed, so nothing can be smuggled into the command stream. Secrets never print:
//! [`Command::redacted`] is the form for protocol traces.
//!
//! ```
//! use bytes::BytesMut;
//! use mailferry_wire::pop3::{Command, Options, Pop3Arg, RespCodeKind, StatusLine};
//!
//! let options = Options::default();
//! let greeting = StatusLine::parse(b"+OK POP3 ready <1896.6971@dbc.mtview.ca.us>", &options)?;
//! assert!(greeting.is_ok());
//! assert_eq!(greeting.apop_timestamp(), Some(&b"<1896.6971@dbc.mtview.ca.us>"[..]));
//!
//! let mut out = BytesMut::new();
//! Command::User(Pop3Arg::try_from("mrose")?).encode(&mut out);
//! assert_eq!(&out[..], b"USER mrose\r\n");
//! assert!(Pop3Arg::try_from("mrose\r\nDELE 1").is_err());
//!
//! let refused = StatusLine::parse(b"-ERR [AUTH] Authentication failed", &options)?;
//! assert_eq!(refused.code().map(|c| c.kind()), Some(RespCodeKind::Auth));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod capa;
mod command;
mod listing;
mod response;

use std::num::NonZeroU32;

use nom::error::{ErrorKind, FromExternalError, ParseError};
use nom::{IResult, Parser};

pub use capa::{CapaAccumulator, Capabilities, Capability, Expire, LoginDelay};
pub use command::{
    ApopDigest, AuthResponse, Command, Pop3Arg, Pop3ArgError, Pop3Password, Redacted, SaslData,
    SaslMechanism,
};
pub use listing::{
    ListingAccumulator, ListingEntry, MultiLine, ScanListing, Stat, Uid, UidListing,
    encode_multiline_end, encode_multiline_line, multiline_line,
};
pub use response::{RespCode, RespCodeKind, ServerLine, Status, StatusLine, apop_timestamp};

/// Limits applied to everything a POP3 peer sends.
///
/// Lengths count the terminating CRLF, as the RFCs do, although the parsers receive lines
/// without it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Longest command line, CRLF included. Default 255 (RFC 2449 §4).
    pub max_command_line: usize,
    /// Longest line of an AUTH exchange (the AUTH command with its initial response, a client
    /// response, a server continuation), CRLF included. Default 12,288 (RFC 4954 §4 sets this
    /// minimum for SMTP; RFC 5034 §4 lifts the 255-octet command limit for AUTH).
    pub max_auth_line: usize,
    /// Longest status line, listing line or capability line, CRLF included. Default 512
    /// (RFC 2449 §4).
    pub max_response_line: usize,
    /// Most entries accepted in one multi-line LIST or UIDL response. Default 100,000; the RFCs
    /// set no limit, this bounds memory whatever the peer announced with STAT.
    pub max_listing_entries: usize,
    /// Most lines accepted in one CAPA response. Default 128; the RFCs set no limit.
    pub max_capabilities: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_command_line: 255,
            max_auth_line: 12_288,
            max_response_line: 512,
            max_listing_entries: 100_000,
            max_capabilities: 128,
        }
    }
}

/// Why a POP3 line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Pop3Error {
    /// The line, counted with its CRLF, is longer than the configured limit.
    #[error("line of {len} octets (with CRLF) exceeds the limit of {max}")]
    LineTooLong {
        /// Length of the line including CRLF.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The line contains a CR, LF or NUL octet.
    #[error("forbidden octet 0x{byte:02x} in a line")]
    ForbiddenByte {
        /// The offending octet.
        byte: u8,
    },
    /// The line starts with neither `+OK` nor `-ERR` (or the status is not followed by a space
    /// or the end of the line, as in `+OKAY`).
    #[error("status is neither +OK nor -ERR")]
    BadStatus,
    /// Text starting with `[` is not a well-formed response code.
    #[error("malformed response code")]
    BadRespCode,
    /// A `+` continuation line or client AUTH response is not `+ [base64]` / base64 / `*`.
    #[error("malformed AUTH continuation or response")]
    BadContinuation,
    /// The command keyword is not one this module knows (`LAST`, obsolete, included).
    #[error("unknown command")]
    UnknownCommand,
    /// A known command has the wrong number of arguments or stray spaces.
    #[error("wrong arguments for {command}")]
    BadArguments {
        /// The command keyword, upper case.
        command: &'static str,
    },
    /// An argument is not valid for its type.
    #[error("invalid argument: {0}")]
    Arg(#[from] Pop3ArgError),
    /// A number has a sign, a non-digit or is empty.
    #[error("malformed number")]
    BadNumber,
    /// A number does not fit its type (u32 message numbers and line counts, u64 sizes).
    #[error("number overflows")]
    NumberOverflow,
    /// A message number is zero (message numbers start at 1, RFC 1939 §3).
    #[error("message number 0")]
    ZeroMessageNumber,
    /// A drop listing (STAT) is not `count SP size`.
    #[error("malformed drop listing")]
    BadStat,
    /// A scan listing is not `msg SP size`.
    #[error("malformed scan listing")]
    BadScanListing,
    /// A unique-id listing is not `msg SP uid`.
    #[error("malformed unique-id listing")]
    BadUidListing,
    /// A unique id is empty, longer than 70 octets or contains octets outside 0x21-0x7E.
    #[error("invalid unique id")]
    BadUid,
    /// A capability line does not follow `capa-tag *(SP param)`, or a known capability has
    /// malformed arguments.
    #[error("malformed capability line")]
    BadCapability,
    /// A message number appears twice in one listing.
    #[error("duplicate message number {0}")]
    DuplicateMessageNumber(u32),
    /// Message numbers of a listing are not strictly increasing.
    #[error("message number {got} after {previous}")]
    OutOfOrder {
        /// The number seen before.
        previous: u32,
        /// The number that came next.
        got: u32,
    },
    /// A multi-line response has more entries than [`Options`] allows.
    #[error("more than {max} entries in one response")]
    TooManyEntries {
        /// The configured limit.
        max: usize,
    },
    /// A line was fed to an accumulator after the `.` terminator.
    #[error("line after the end of a multi-line response")]
    AfterTerminator,
    /// An accumulator was finished before the `.` terminator arrived.
    #[error("multi-line response ended without its terminator")]
    Unterminated,
}

/// Error type threaded through the nom parsers: `None` means "syntax error", which the caller
/// turns into the variant that names the grammar item; `Some` carries a precise error raised by
/// a token validator (a number that overflows, an invalid UID, ...).
#[derive(Debug)]
struct PErr(Option<Pop3Error>);

impl<I> ParseError<I> for PErr {
    fn from_error_kind(_input: I, _kind: ErrorKind) -> Self {
        PErr(None)
    }

    fn append(_input: I, _kind: ErrorKind, other: Self) -> Self {
        other
    }

    fn or(self, other: Self) -> Self {
        // Keep the precise error when one branch produced one.
        if other.0.is_some() { other } else { self }
    }
}

impl<I> FromExternalError<I, Pop3Error> for PErr {
    fn from_external_error(_input: I, _kind: ErrorKind, e: Pop3Error) -> Self {
        PErr(Some(e))
    }
}

type PResult<'a, O> = IResult<&'a [u8], O, PErr>;

/// Runs `parser` over the whole `line` in complete mode; leftover input is a syntax error.
fn run<'a, O, P>(mut parser: P, line: &'a [u8], syntax: Pop3Error) -> Result<O, Pop3Error>
where
    P: Parser<&'a [u8], Output = O, Error = PErr>,
{
    match parser.parse_complete(line) {
        Ok((&[], out)) => Ok(out),
        Ok(_) => Err(syntax),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e.0.unwrap_or(syntax)),
        // Complete mode never asks for more input; treat it as a syntax error all the same.
        Err(nom::Err::Incomplete(_)) => Err(syntax),
    }
}

/// Rejects lines over `max` octets (counted with the CRLF the framer removed) and lines carrying
/// CR, LF or NUL, which a framer never leaves inside a line but a caller might.
fn check_line(line: &[u8], max: usize) -> Result<(), Pop3Error> {
    let len = line.len().saturating_add(2);
    if len > max {
        return Err(Pop3Error::LineTooLong { len, max });
    }
    if let Some(pos) = memchr::memchr3(b'\r', b'\n', 0, line) {
        return Err(Pop3Error::ForbiddenByte { byte: line[pos] });
    }
    Ok(())
}

/// A run of octets up to the next space: the raw token a number or argument is read from.
fn token(input: &[u8]) -> PResult<'_, &[u8]> {
    nom::bytes::take_while1(|b| b != b' ').parse_complete(input)
}

/// `1*DIGIT` as u64; a sign, any other octet or an empty token is [`Pop3Error::BadNumber`].
fn number_u64(tok: &[u8]) -> Result<u64, Pop3Error> {
    if tok.is_empty() {
        return Err(Pop3Error::BadNumber);
    }
    let mut n: u64 = 0;
    for &b in tok {
        if !b.is_ascii_digit() {
            return Err(Pop3Error::BadNumber);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(Pop3Error::NumberOverflow)?;
    }
    Ok(n)
}

/// `1*DIGIT` as u32.
fn number_u32(tok: &[u8]) -> Result<u32, Pop3Error> {
    u32::try_from(number_u64(tok)?).map_err(|_| Pop3Error::NumberOverflow)
}

/// A message number: `1*DIGIT`, at least 1 (RFC 1939 §3).
fn message_number(tok: &[u8]) -> Result<NonZeroU32, Pop3Error> {
    NonZeroU32::new(number_u32(tok)?).ok_or(Pop3Error::ZeroMessageNumber)
}

/// Writes `bytes` for a log: printable ASCII as is, everything else as `\xNN`, so that control
/// characters from a peer never reach a terminal or log unescaped.
fn write_escaped(f: &mut std::fmt::Formatter<'_>, bytes: &[u8]) -> std::fmt::Result {
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            std::fmt::Write::write_char(f, char::from(b))?;
        } else {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_known_answers() {
        assert_eq!(number_u64(b"0"), Ok(0));
        assert_eq!(number_u64(b"007"), Ok(7));
        assert_eq!(number_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            number_u64(b"18446744073709551616"),
            Err(Pop3Error::NumberOverflow)
        );
        assert_eq!(number_u64(b""), Err(Pop3Error::BadNumber));
        assert_eq!(number_u64(b"-1"), Err(Pop3Error::BadNumber));
        assert_eq!(number_u64(b"+1"), Err(Pop3Error::BadNumber));
        assert_eq!(number_u64(b"1a"), Err(Pop3Error::BadNumber));
        assert_eq!(number_u32(b"4294967295"), Ok(u32::MAX));
        assert_eq!(number_u32(b"4294967296"), Err(Pop3Error::NumberOverflow));
        assert_eq!(message_number(b"0"), Err(Pop3Error::ZeroMessageNumber));
        assert_eq!(message_number(b"000"), Err(Pop3Error::ZeroMessageNumber));
    }

    #[test]
    fn check_line_limits_and_forbidden_bytes() {
        assert_eq!(check_line(&[b'a'; 510], 512), Ok(()));
        assert_eq!(
            check_line(&[b'a'; 511], 512),
            Err(Pop3Error::LineTooLong { len: 513, max: 512 })
        );
        assert_eq!(
            check_line(b"a\rb", 512),
            Err(Pop3Error::ForbiddenByte { byte: b'\r' })
        );
        assert_eq!(
            check_line(b"a\nb", 512),
            Err(Pop3Error::ForbiddenByte { byte: b'\n' })
        );
        assert_eq!(
            check_line(b"a\0b", 512),
            Err(Pop3Error::ForbiddenByte { byte: 0 })
        );
    }

    /// RFC 1939 §10, replayed line by line: every client line parses and re-encodes
    /// byte-exactly, every server line too, and the listings read as the RFC says.
    #[test]
    fn rfc_1939_section_10_session() {
        use bytes::BytesMut;
        let o = Options::default();
        let session: &[(&str, &[u8])] = &[
            (
                "S",
                b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
            ),
            ("C", b"APOP mrose c4c9334bac560ecc979e58001b3e22fb"),
            ("S", b"+OK mrose's maildrop has 2 messages (320 octets)"),
            ("C", b"STAT"),
            ("S", b"+OK 2 320"),
            ("C", b"LIST"),
            ("S", b"+OK 2 messages (320 octets)"),
            ("L", b"1 120"),
            ("L", b"2 200"),
            ("L", b"."),
            ("C", b"RETR 1"),
            ("S", b"+OK 120 octets"),
            ("C", b"DELE 1"),
            ("S", b"+OK message 1 deleted"),
            ("C", b"RETR 2"),
            ("S", b"+OK 200 octets"),
            ("C", b"DELE 2"),
            ("S", b"+OK message 2 deleted"),
            ("C", b"QUIT"),
            ("S", b"+OK dewey POP3 server signing off (maildrop empty)"),
        ];
        let mut list = ListingAccumulator::<ScanListing>::new(&o);
        let mut statuses = Vec::new();
        for &(who, line) in session {
            let mut out = BytesMut::new();
            match who {
                "C" => Command::parse(line, &o).unwrap().encode(&mut out),
                "S" => {
                    let status = StatusLine::parse(line, &o).unwrap();
                    assert!(status.is_ok());
                    status.encode(&mut out);
                    statuses.push(status);
                }
                _ => {
                    list.push_line(line).unwrap();
                    continue;
                }
            }
            assert_eq!(
                &out[..],
                [line, b"\r\n"].concat(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            statuses[0].apop_timestamp(),
            Some(&b"<1896.697170952@dbc.mtview.ca.us>"[..])
        );
        assert_eq!(
            Stat::parse(statuses[2].text()),
            Ok(Stat {
                count: 2,
                size: 320
            })
        );
        let sizes: Vec<_> = list
            .finish()
            .unwrap()
            .iter()
            .map(|e| (e.msg.get(), e.size))
            .collect();
        assert_eq!(sizes, [(1, 120), (2, 200)]);
    }

    struct Esc<'a>(&'a [u8]);
    impl std::fmt::Display for Esc<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write_escaped(f, self.0)
        }
    }

    #[test]
    fn escaping_hides_control_characters() {
        assert_eq!(
            Esc(b"ok \x1b[31m\\ \xff").to_string(),
            "ok \\x1b[31m\\x5c \\xff"
        );
    }
}

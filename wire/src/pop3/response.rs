//! Status lines, response codes and AUTH continuations.

use std::fmt;

use bytes::{BufMut, BytesMut};
use nom::Parser;
use nom::branch::alt;
use nom::bytes::{tag, take_while1};
use nom::combinator::{eof, opt, recognize, rest, value};
use nom::multi::separated_list1;
use nom::sequence::{delimited, preceded};

use super::command::SaslData;
use super::{Options, PResult, Pop3Error, check_line, run, write_escaped};

/// `+OK` or `-ERR` (RFC 1939 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `+OK`.
    Ok,
    /// `-ERR`.
    Err,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "+OK",
            Status::Err => "-ERR",
        }
    }
}

/// What a [`RespCode`] means to a client (RFC 2449 §8, RFC 3206).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RespCodeKind {
    /// `[IN-USE]`: the maildrop is locked by another session (RFC 2449 §8.1.1).
    InUse,
    /// `[LOGIN-DELAY]`: logged in too soon after the last login (RFC 2449 §8.1.2).
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary system failure; retrying later may work (RFC 3206 §4).
    SysTemp,
    /// `[SYS/PERM]`: a permanent system failure (RFC 3206 §4).
    SysPerm,
    /// `[SYS/...]` with a detail this crate does not know: a system failure of unknown
    /// permanence (RFC 2449 §8: clients ignore unknown detail).
    Sys,
    /// `[AUTH]`: the credentials were rejected (RFC 3206 §5); do not retry another mechanism.
    Auth,
    /// Any other code, kept verbatim in the [`RespCode`].
    Unknown,
}

/// A response code: the bracketed token at the start of a status line's text (RFC 2449 §8).
///
/// Stored as the text between the brackets, e.g. `SYS/TEMP`; hierarchical detail after a known
/// prefix is kept (`SYS/TEMP/QUOTA` is [`RespCodeKind::SysTemp`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RespCode(String);

/// `rchar = %x21-2E / %x30-5C / %x5E-7F` — printable ASCII except `/` and `]` (RFC 2449 §9).
fn is_rchar(b: u8) -> bool {
    matches!(b, 0x21..=0x2E | 0x30..=0x5C | 0x5E..=0x7F)
}

/// ```text
/// resp-code  = "[" resp-level *("/" resp-level) "]"      ; RFC 2449 §9
/// resp-level = 1*rchar
/// ```
/// Returns the text between the brackets.
fn resp_code(input: &[u8]) -> PResult<'_, &[u8]> {
    delimited(
        tag("["),
        recognize(separated_list1(tag("/"), take_while1(is_rchar))),
        tag("]"),
    )
    .parse_complete(input)
}

impl RespCode {
    /// The code between the brackets, e.g. `SYS/TEMP`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the code, e.g. `["SYS", "TEMP"]`.
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// What the code means. Codes compare case-insensitively.
    pub fn kind(&self) -> RespCodeKind {
        let mut levels = self.levels();
        let first = levels.next().unwrap_or_default();
        let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        if is(first, "IN-USE") {
            RespCodeKind::InUse
        } else if is(first, "LOGIN-DELAY") {
            RespCodeKind::LoginDelay
        } else if is(first, "AUTH") {
            RespCodeKind::Auth
        } else if is(first, "SYS") {
            match levels.next() {
                Some(l) if is(l, "TEMP") => RespCodeKind::SysTemp,
                Some(l) if is(l, "PERM") => RespCodeKind::SysPerm,
                _ => RespCodeKind::Sys,
            }
        } else {
            RespCodeKind::Unknown
        }
    }
}

impl TryFrom<&str> for RespCode {
    type Error = Pop3Error;

    /// Validates the text between the brackets, e.g. `SYS/TEMP`.
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let ok = !s.is_empty()
            && s.split('/')
                .all(|level| !level.is_empty() && level.bytes().all(is_rchar));
        if ok {
            Ok(RespCode(s.to_owned()))
        } else {
            Err(Pop3Error::BadRespCode)
        }
    }
}

/// The log form, escaped: RFC 2449's `schar` admits DEL (0x7F), which must not reach a terminal
/// raw. [`RespCode::as_str`] gives the wire form.
impl fmt::Display for RespCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        super::write_escaped(f, self.0.as_bytes())?;
        f.write_str("]")
    }
}

/// A single-line response, or the first line of a multi-line one (RFC 1939 §3, RFC 2449 §3).
///
/// `Display` writes an escaped form safe for logs; [`StatusLine::encode`] writes the wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    status: Status,
    code: Option<RespCode>,
    text: Vec<u8>,
}

impl StatusLine {
    /// Builds a status line. The text may hold any octet except CR, LF and NUL; without a code
    /// it must not start with `[`, which would read back as a response code.
    pub fn new(status: Status, code: Option<RespCode>, text: &[u8]) -> Result<Self, Pop3Error> {
        if let Some(pos) = memchr::memchr3(b'\r', b'\n', 0, text) {
            return Err(Pop3Error::ForbiddenByte { byte: text[pos] });
        }
        if code.is_none() && text.first() == Some(&b'[') {
            return Err(Pop3Error::BadRespCode);
        }
        Ok(StatusLine {
            status,
            code,
            text: text.to_vec(),
        })
    }

    /// `+OK` or `-ERR`.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether the status is `+OK`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The response code, if the text started with one.
    pub fn code(&self) -> Option<&RespCode> {
        self.code.as_ref()
    }

    /// The text after the status and the response code, without the separating space. Raw peer
    /// octets: escape them before logging (the `Display` form does).
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The APOP timestamp of a greeting (RFC 1939 §7), see [`apop_timestamp`].
    pub fn apop_timestamp(&self) -> Option<&[u8]> {
        apop_timestamp(&self.text)
    }

    /// Parses one status line (without CRLF), bounded by [`Options::max_response_line`].
    ///
    /// ```text
    /// single-line = status [SP text]              ; RFC 2449 §3, 512 octets with CRLF
    /// status      = "+OK" / "-ERR"                ; exact case (RFC 1939 §3)
    /// text        = *schar / resp-code *CHAR
    /// schar       = %x21-5A / %x5C-7F             ; anything but "[" first
    /// ```
    ///
    /// `+OKAY`, `+ok` and `+OK\t` are [`Pop3Error::BadStatus`]; text starting with `[` that is
    /// not a response code is [`Pop3Error::BadRespCode`]. One space after the code is
    /// dropped; octets above 0x7F in the text are kept (some servers send Latin-1 or UTF-8).
    pub fn parse(line: &[u8], options: &Options) -> Result<StatusLine, Pop3Error> {
        check_line(line, options.max_response_line)?;
        let status = alt((
            value(Status::Ok, tag("+OK")),
            value(Status::Err, tag("-ERR")),
        ));
        // The status ends the line or is followed by one space: "+OKAY" fails here.
        let text = alt((preceded(tag(" "), rest), eof));
        let (status, text) = run((status, text), line, Pop3Error::BadStatus)?;
        let (code, text) = if text.first() == Some(&b'[') {
            let (code, text) = run(
                (resp_code, opt(tag(" ")), rest).map(|(c, _, t)| (c, t)),
                text,
                Pop3Error::BadRespCode,
            )?;
            // resp_code admitted only printable ASCII.
            (
                Some(RespCode(String::from_utf8_lossy(code).into_owned())),
                text,
            )
        } else {
            (None, text)
        };
        Ok(StatusLine {
            status,
            code,
            text: text.to_vec(),
        })
    }

    /// Appends the line, CRLF included, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.status.as_str().as_bytes());
        if let Some(code) = &self.code {
            out.put_slice(b" [");
            out.put_slice(code.as_str().as_bytes());
            out.put_slice(b"]");
        }
        if !self.text.is_empty() {
            out.put_slice(b" ");
            out.put_slice(&self.text);
        }
        out.put_slice(b"\r\n");
    }
}

impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.status.as_str())?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if !self.text.is_empty() {
            f.write_str(" ")?;
            write_escaped(f, &self.text)?;
        }
        Ok(())
    }
}

/// The candidate APOP timestamp in a greeting's text: the first `<...>` token, brackets
/// included (RFC 1939 §7: `+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>`).
///
/// Only the brackets are looked for; whether the token is a well-formed msg-id, and so whether
/// APOP may be attempted, is for the SASL layer to decide.
pub fn apop_timestamp(text: &[u8]) -> Option<&[u8]> {
    let start = memchr::memchr(b'<', text)?;
    let len = memchr::memchr(b'>', &text[start..])?;
    Some(&text[start..=start + len])
}

/// A line from the server while an AUTH exchange is in progress (RFC 5034 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine {
    /// `+ [base64]`: a challenge; the client answers with an
    /// [`AuthResponse`](super::AuthResponse).
    Continue(SaslData),
    /// `+OK` / `-ERR`: the exchange is over.
    Status(StatusLine),
}

impl ServerLine {
    /// Parses one server line during AUTH, bounded by [`Options::max_auth_line`] for
    /// continuations and [`Options::max_response_line`] for status lines.
    ///
    /// ```text
    /// continue-req = "+" SP [base64]              ; RFC 5034 §4
    /// ```
    ///
    /// A bare `+` (sent by some servers for an empty challenge) is read as `+ `. A challenge
    /// that is not base64 is [`Pop3Error::BadContinuation`].
    pub fn parse(line: &[u8], options: &Options) -> Result<ServerLine, Pop3Error> {
        if line == b"+" || line.starts_with(b"+ ") {
            check_line(line, options.max_auth_line)?;
            let data = line.get(2..).unwrap_or_default();
            return SaslData::try_from(
                std::str::from_utf8(data).map_err(|_| Pop3Error::BadContinuation)?,
            )
            .map(ServerLine::Continue)
            .map_err(|_| Pop3Error::BadContinuation);
        }
        StatusLine::parse(line, options).map(ServerLine::Status)
    }

    /// Appends the line, CRLF included, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            ServerLine::Continue(data) => {
                out.put_slice(b"+ ");
                out.put_slice(data.as_str().as_bytes());
                out.put_slice(b"\r\n");
            }
            ServerLine::Status(status) => status.encode(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(line: &[u8]) -> Result<StatusLine, Pop3Error> {
        StatusLine::parse(line, &Options::default())
    }

    fn round_trip(s: &StatusLine) -> Result<StatusLine, Pop3Error> {
        let mut out = BytesMut::new();
        s.encode(&mut out);
        assert!(out.ends_with(b"\r\n"));
        parse(&out[..out.len() - 2])
    }

    /// Found by the wire_pop3_response fuzz target: DEL is a valid RESP-CODE character, and the
    /// log form printed it raw.
    #[test]
    fn del_in_resp_code_is_escaped_in_the_log_form() {
        let status = parse(b"-ERR [A\x7fUTH] bad").unwrap();
        assert_eq!(status.code().map(RespCode::as_str), Some("A\x7fUTH"));
        assert_eq!(status.to_string(), "-ERR [A\\x7fUTH] bad");
        let mut out = BytesMut::new();
        status.encode(&mut out);
        assert_eq!(&out[..], b"-ERR [A\x7fUTH] bad\r\n");
    }

    #[test]
    fn status_lines_known_answers() {
        // (line, status, code, text) — RFC 1939 §10, RFC 2449 §8, RFC 3206 examples.
        type Row = (&'static [u8], Status, Option<&'static str>, &'static [u8]);
        let table: &[Row] = &[
            (
                b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
                Status::Ok,
                None,
                b"POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
            ),
            (
                b"+OK mrose's maildrop has 2 messages (320 octets)",
                Status::Ok,
                None,
                b"mrose's maildrop has 2 messages (320 octets)",
            ),
            (b"+OK 2 320", Status::Ok, None, b"2 320"),
            (
                b"+OK 2 messages (320 octets)",
                Status::Ok,
                None,
                b"2 messages (320 octets)",
            ),
            (
                b"+OK message 1 deleted",
                Status::Ok,
                None,
                b"message 1 deleted",
            ),
            (
                b"+OK dewey POP3 server signing off (maildrop empty)",
                Status::Ok,
                None,
                b"dewey POP3 server signing off (maildrop empty)",
            ),
            (b"+OK", Status::Ok, None, b""),
            (b"+OK ", Status::Ok, None, b""),
            (b"-ERR", Status::Err, None, b""),
            (
                b"-ERR no such message",
                Status::Err,
                None,
                b"no such message",
            ),
            (
                b"-ERR [IN-USE] Do you have another POP session running?",
                Status::Err,
                Some("IN-USE"),
                b"Do you have another POP session running?",
            ),
            (
                b"-ERR [LOGIN-DELAY] wait 15 minutes",
                Status::Err,
                Some("LOGIN-DELAY"),
                b"wait 15 minutes",
            ),
            (
                b"-ERR [SYS/TEMP] Problem accessing mailbox",
                Status::Err,
                Some("SYS/TEMP"),
                b"Problem accessing mailbox",
            ),
            (
                b"-ERR [SYS/PERM] Internal error",
                Status::Err,
                Some("SYS/PERM"),
                b"Internal error",
            ),
            (
                b"-ERR [AUTH] Authentication failed.",
                Status::Err,
                Some("AUTH"),
                b"Authentication failed.",
            ),
            (b"-ERR [AUTH]", Status::Err, Some("AUTH"), b""),
            (
                b"-ERR [X-FOO/BAR/BAZ]text",
                Status::Err,
                Some("X-FOO/BAR/BAZ"),
                b"text",
            ),
            (b"+OK Caf\xe9 ready", Status::Ok, None, b"Caf\xe9 ready"),
            (b"+OK a ] b [ c", Status::Ok, None, b"a ] b [ c"),
        ];
        for &(line, status, code, text) in table {
            let got = parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(got.status(), status, "{line:?}");
            assert_eq!(got.code().map(RespCode::as_str), code, "{line:?}");
            assert_eq!(got.text(), text, "{line:?}");
            assert_eq!(round_trip(&got), Ok(got.clone()), "{line:?}");
        }
    }

    #[test]
    fn okay_is_not_ok() {
        let table: &[(&[u8], Pop3Error)] = &[
            (b"+OKAY", Pop3Error::BadStatus),
            (b"+OKAY all good", Pop3Error::BadStatus),
            (b"+ok", Pop3Error::BadStatus),
            (b"+Ok fine", Pop3Error::BadStatus),
            (b"-err bad", Pop3Error::BadStatus),
            (b"-ERROR", Pop3Error::BadStatus),
            (b"+OK\tx", Pop3Error::BadStatus),
            (b"OK", Pop3Error::BadStatus),
            (b"+", Pop3Error::BadStatus),
            (b"+ dGVzdA==", Pop3Error::BadStatus),
            (b"", Pop3Error::BadStatus),
            (b" +OK", Pop3Error::BadStatus),
            (b"* OK IMAP", Pop3Error::BadStatus),
            (b"220 smtp.example ESMTP", Pop3Error::BadStatus),
            (b"-ERR [IN-USE", Pop3Error::BadRespCode),
            (b"-ERR []", Pop3Error::BadRespCode),
            (b"-ERR [SYS//TEMP]", Pop3Error::BadRespCode),
            (b"-ERR [IN USE]", Pop3Error::BadRespCode),
            (b"+OK\0", Pop3Error::ForbiddenByte { byte: 0 }),
            (b"+OK a\rb", Pop3Error::ForbiddenByte { byte: b'\r' }),
        ];
        for (line, want) in table {
            assert_eq!(parse(line), Err(want.clone()), "{line:?}");
        }
        let long = [b"+OK ".as_slice(), &[b'x'; 507]].concat();
        assert_eq!(
            parse(&long),
            Err(Pop3Error::LineTooLong { len: 513, max: 512 })
        );
        assert!(parse(&long[..510]).is_ok());
    }

    #[test]
    fn resp_code_kinds() {
        let table = [
            ("IN-USE", RespCodeKind::InUse),
            ("in-use", RespCodeKind::InUse),
            ("LOGIN-DELAY", RespCodeKind::LoginDelay),
            ("SYS/TEMP", RespCodeKind::SysTemp),
            ("SYS/TEMP/QUOTA", RespCodeKind::SysTemp),
            ("SYS/PERM", RespCodeKind::SysPerm),
            ("SYS/OTHER", RespCodeKind::Sys),
            ("SYS", RespCodeKind::Sys),
            ("AUTH", RespCodeKind::Auth),
            ("AUTH/EXPIRED", RespCodeKind::Auth),
            ("UTF8", RespCodeKind::Unknown),
            ("X-VENDOR/THING", RespCodeKind::Unknown),
        ];
        for (code, kind) in table {
            assert_eq!(
                RespCode::try_from(code).map(|c| c.kind()),
                Ok(kind),
                "{code}"
            );
        }
        for bad in ["", "A//B", "/A", "A/", "A B", "A]B", "A\u{e9}"] {
            assert_eq!(
                RespCode::try_from(bad),
                Err(Pop3Error::BadRespCode),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn apop_timestamp_from_rfc_1939_greeting() {
        let greeting = parse(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>").unwrap();
        assert_eq!(
            greeting.apop_timestamp(),
            Some(&b"<1896.697170952@dbc.mtview.ca.us>"[..])
        );
        assert_eq!(apop_timestamp(b"ready <a@b> <c@d>"), Some(&b"<a@b>"[..]));
        assert_eq!(apop_timestamp(b"ready"), None);
        assert_eq!(apop_timestamp(b"ready <unclosed"), None);
        assert_eq!(apop_timestamp(b"ready > <"), None);
    }

    #[test]
    fn display_escapes_peer_text() {
        let line = parse(b"-ERR [SYS/TEMP] bad \x1b[2J\xff").unwrap();
        assert_eq!(line.to_string(), "-ERR [SYS/TEMP] bad \\x1b[2J\\xff");
    }

    #[test]
    fn new_rejects_what_would_not_read_back() {
        assert_eq!(
            StatusLine::new(Status::Ok, None, b"[IN-USE] x"),
            Err(Pop3Error::BadRespCode)
        );
        assert_eq!(
            StatusLine::new(Status::Ok, None, b"a\r\nb"),
            Err(Pop3Error::ForbiddenByte { byte: b'\r' })
        );
        let code = RespCode::try_from("IN-USE").unwrap();
        let line = StatusLine::new(Status::Err, Some(code), b"[busy]").unwrap();
        assert_eq!(round_trip(&line), Ok(line));
    }

    #[test]
    fn server_lines_during_auth() {
        let o = Options::default();
        assert_eq!(
            ServerLine::parse(b"+ ", &o),
            Ok(ServerLine::Continue(SaslData::empty()))
        );
        assert_eq!(
            ServerLine::parse(b"+", &o),
            Ok(ServerLine::Continue(SaslData::empty()))
        );
        assert_eq!(
            ServerLine::parse(
                b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+",
                &o
            ),
            Ok(ServerLine::Continue(
                SaslData::try_from("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+")
                    .unwrap()
            ))
        );
        assert!(matches!(
            ServerLine::parse(b"+OK done", &o),
            Ok(ServerLine::Status(_))
        ));
        assert_eq!(
            ServerLine::parse(b"+ not base64!", &o),
            Err(Pop3Error::BadContinuation)
        );
        assert_eq!(
            ServerLine::parse(b"+ abc", &o),
            Err(Pop3Error::BadContinuation)
        );
        assert_eq!(
            ServerLine::parse(b"+  ", &o),
            Err(Pop3Error::BadContinuation)
        );
        assert_eq!(ServerLine::parse(b"+x", &o), Err(Pop3Error::BadStatus));
    }

    fn status_line() -> impl Strategy<Value = StatusLine> {
        (
            prop_oneof![Just(Status::Ok), Just(Status::Err)],
            proptest::option::of("[!-.0-\\\\^-~]{1,8}(/[!-.0-\\\\^-~]{1,8}){0,2}"),
            proptest::collection::vec(
                any::<u8>().prop_filter("no CR LF NUL", |b| !matches!(b, b'\r' | b'\n' | 0)),
                0..40,
            ),
        )
            .prop_filter_map("valid", |(status, code, text)| {
                let code = code.map(|c| RespCode::try_from(c.as_str()).expect("valid code"));
                StatusLine::new(status, code, &text).ok()
            })
    }

    proptest! {
        #[test]
        fn status_line_round_trip(line in status_line()) {
            prop_assert_eq!(round_trip(&line), Ok(line));
        }

        #[test]
        fn status_parser_never_panics(line in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(parsed) = parse(&line) {
                prop_assert_eq!(round_trip(&parsed), Ok(parsed));
            }
        }
    }
}

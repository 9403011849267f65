//! POP3 commands and the validated values they carry.

use std::fmt;
use std::num::NonZeroU32;

use bytes::{BufMut, BytesMut};
use nom::Parser;
use nom::bytes::{tag, take_while1};
use nom::combinator::{cut, map_res, opt, rest};
use nom::multi::many_m_n;
use nom::sequence::preceded;

use super::{Options, PErr, Pop3Error, check_line, message_number, number_u32, run, token};

/// Why a value cannot be used as a POP3 command argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Pop3ArgError {
    /// The value is empty where the grammar needs at least one octet.
    #[error("empty argument")]
    Empty,
    /// The value is longer than its type allows.
    #[error("argument of {len} octets exceeds {max}")]
    TooLong {
        /// Length of the value in octets.
        len: usize,
        /// The type's limit.
        max: usize,
    },
    /// The value contains an octet its type forbids (CR, LF, NUL, another control character,
    /// or a space where arguments are space-separated).
    #[error("forbidden octet 0x{byte:02x} in argument")]
    ForbiddenByte {
        /// The offending octet.
        byte: u8,
    },
    /// The value is not syntactically valid base64 (alphabet, length a multiple of 4, at most
    /// two `=` only at the end).
    #[error("invalid base64")]
    BadBase64,
    /// An APOP digest is not 32 hexadecimal digits.
    #[error("APOP digest is not 32 hex digits")]
    BadDigest,
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// A single POP3 command argument such as a user name (RFC 1939 §3, RFC 2449 §4).
///
/// 1 to [`Pop3Arg::MAX_LEN`] octets, no space (arguments are space-separated), no control
/// character (so no CR, LF or NUL). Octets above 0x7F (UTF-8, RFC 6856) are allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pop3Arg(String);

impl Pop3Arg {
    /// Longest argument: "Each argument may be up to 40 characters long" (RFC 2449 §4).
    pub const MAX_LEN: usize = 40;

    /// The argument as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn validate(s: &str) -> Result<(), Pop3ArgError> {
        if s.is_empty() {
            return Err(Pop3ArgError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(Pop3ArgError::TooLong {
                len: s.len(),
                max: Self::MAX_LEN,
            });
        }
        match s.bytes().find(|&b| is_control(b) || b == b' ') {
            Some(byte) => Err(Pop3ArgError::ForbiddenByte { byte }),
            None => Ok(()),
        }
    }
}

impl TryFrom<&str> for Pop3Arg {
    type Error = Pop3ArgError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::validate(s)?;
        Ok(Pop3Arg(s.to_owned()))
    }
}

impl fmt::Display for Pop3Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The argument of PASS (RFC 1939 §7).
///
/// 1 to [`Pop3Password::MAX_LEN`] octets with no control character (so no CR, LF or NUL).
/// Spaces are allowed: "a POP3 server may treat spaces in the argument as part of the password"
/// (RFC 1939 §7), and the parser does. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Pop3Password(String);

impl Pop3Password {
    /// Longest password: the 255-octet command line of RFC 2449 §4 minus `PASS `, CRLF.
    pub const MAX_LEN: usize = 248;

    /// The password, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Pop3Password {
    type Error = Pop3ArgError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        if s.is_empty() {
            return Err(Pop3ArgError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(Pop3ArgError::TooLong {
                len: s.len(),
                max: Self::MAX_LEN,
            });
        }
        if let Some(byte) = s.bytes().find(|&b| is_control(b)) {
            return Err(Pop3ArgError::ForbiddenByte { byte });
        }
        Ok(Pop3Password(s.to_owned()))
    }
}

impl fmt::Debug for Pop3Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pop3Password(****)")
    }
}

/// A SASL mechanism name (RFC 4422 §3.1), as used by AUTH (RFC 5034) and the CAPA SASL line.
///
/// ```text
/// sasl-mech    = 1*20mech-char
/// mech-char    = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE
/// ```
///
/// Lower-case letters are accepted and stored upper case, since mechanism names compare
/// case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SaslMechanism(String);

impl SaslMechanism {
    /// Longest mechanism name (RFC 4422 §3.1).
    pub const MAX_LEN: usize = 20;

    /// The mechanism name, upper case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for SaslMechanism {
    type Error = Pop3ArgError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        if s.is_empty() {
            return Err(Pop3ArgError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(Pop3ArgError::TooLong {
                len: s.len(),
                max: Self::MAX_LEN,
            });
        }
        if let Some(byte) = s
            .bytes()
            .find(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(Pop3ArgError::ForbiddenByte { byte });
        }
        Ok(SaslMechanism(s.to_ascii_uppercase()))
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Base64 text exchanged during AUTH (RFC 5034 §4), possibly empty.
///
/// Only the syntax is checked (RFC 4648 §4 alphabet, length a multiple of 4, at most two `=`
/// and only at the end); decoding is the SASL layer's job. The empty value is written `=` as an
/// initial response and as an empty line or `+ ` elsewhere. `Debug` shows only the length,
/// since this may carry credentials (PLAIN).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SaslData(String);

impl SaslData {
    /// Longest value: keeps `AUTH <20-char mechanism> <data>` CRLF within the default
    /// [`Options::max_auth_line`] of 12,288 octets.
    pub const MAX_LEN: usize = 12_256;

    /// The empty value.
    pub fn empty() -> Self {
        SaslData(String::new())
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The base64 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn validate(s: &[u8]) -> Result<(), Pop3ArgError> {
        if s.len() > Self::MAX_LEN {
            return Err(Pop3ArgError::TooLong {
                len: s.len(),
                max: Self::MAX_LEN,
            });
        }
        if !s.len().is_multiple_of(4) {
            return Err(Pop3ArgError::BadBase64);
        }
        let body_len = s.iter().rposition(|&b| b != b'=').map_or(0, |p| p + 1);
        if s.len() - body_len > 2 {
            return Err(Pop3ArgError::BadBase64);
        }
        if s[..body_len]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            Ok(())
        } else {
            Err(Pop3ArgError::BadBase64)
        }
    }

    fn from_bytes(s: &[u8]) -> Result<Self, Pop3ArgError> {
        Self::validate(s)?;
        // Validation admits ASCII only.
        Ok(SaslData(String::from_utf8_lossy(s).into_owned()))
    }
}

impl TryFrom<&str> for SaslData {
    type Error = Pop3ArgError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::from_bytes(s.as_bytes())
    }
}

impl fmt::Debug for SaslData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SaslData(<{} octets>)", self.0.len())
    }
}

/// The MD5 digest argument of APOP (RFC 1939 §7): 16 octets, written as 32 lower-case hex
/// digits. Computing it is the SASL layer's job. `Debug` hides it (it can be attacked offline).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ApopDigest([u8; 16]);

impl ApopDigest {
    /// Wraps a computed digest.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        ApopDigest(bytes)
    }

    /// The digest octets.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl TryFrom<&str> for ApopDigest {
    type Error = Pop3ArgError;

    /// Reads 32 hex digits; upper case is accepted, the wire form is lower case.
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return Err(Pop3ArgError::BadDigest);
        }
        let mut out = [0u8; 16];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(Pop3ArgError::BadDigest)?;
            let lo = hex_value(pair[1]).ok_or(Pop3ArgError::BadDigest)?;
            out[i] = hi << 4 | lo;
        }
        Ok(ApopDigest(out))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for ApopDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ApopDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApopDigest(****)")
    }
}

/// A POP3 command (RFC 1939, RFC 2449, RFC 2595, RFC 5034). `LAST` (RFC 1460, removed by
/// RFC 1725) is not supported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `USER name` (RFC 1939 §7).
    User(Pop3Arg),
    /// `PASS string` (RFC 1939 §7).
    Pass(Pop3Password),
    /// `APOP name digest` (RFC 1939 §7).
    Apop {
        /// The mailbox name.
        name: Pop3Arg,
        /// MD5 of the greeting's timestamp followed by the shared secret.
        digest: ApopDigest,
    },
    /// `AUTH mechanism [initial-response]` (RFC 5034 §4).
    Auth {
        /// The SASL mechanism.
        mechanism: SaslMechanism,
        /// The initial response; `Some(SaslData::empty())` is written `=`.
        initial_response: Option<SaslData>,
    },
    /// Bare `AUTH`, which lists mechanisms (RFC 1734 §2; superseded by CAPA's SASL line).
    AuthList,
    /// `STAT` (RFC 1939 §5).
    Stat,
    /// `LIST [msg]` (RFC 1939 §5).
    List(Option<NonZeroU32>),
    /// `UIDL [msg]` (RFC 1939 §7).
    Uidl(Option<NonZeroU32>),
    /// `RETR msg` (RFC 1939 §5).
    Retr(NonZeroU32),
    /// `TOP msg n` (RFC 1939 §7).
    Top {
        /// The message.
        msg: NonZeroU32,
        /// How many body lines to return after the header.
        lines: u32,
    },
    /// `DELE msg` (RFC 1939 §5).
    Dele(NonZeroU32),
    /// `RSET` (RFC 1939 §5).
    Rset,
    /// `NOOP` (RFC 1939 §5).
    Noop,
    /// `QUIT` (RFC 1939 §4, §6).
    Quit,
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STLS` (RFC 2595 §4).
    Stls,
}

impl Command {
    /// The command keyword, upper case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } | Command::AuthList => "AUTH",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Uidl(_) => "UIDL",
            Command::Retr(_) => "RETR",
            Command::Top { .. } => "TOP",
            Command::Dele(_) => "DELE",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
        }
    }

    /// Whether a positive answer to this command is a multi-line response (RFC 1939 §3).
    pub fn has_multiline_response(&self) -> bool {
        matches!(
            self,
            Command::List(None)
                | Command::Uidl(None)
                | Command::Retr(_)
                | Command::Top { .. }
                | Command::Capa
                | Command::AuthList
        )
    }

    /// Appends the command line, CRLF included, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        self.write(out, false);
        out.put_slice(b"\r\n");
    }

    /// A `Display` form for protocol traces, without CRLF: the PASS argument, the APOP digest
    /// and the AUTH initial response are shown as `****`.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self)
    }

    fn write<W: WireSink>(&self, out: &mut W, redact: bool) {
        out.put_str(self.keyword());
        let secret = |out: &mut W, value: &str| {
            out.put_str(" ");
            out.put_str(if redact { "****" } else { value });
        };
        match self {
            Command::User(name) => {
                out.put_str(" ");
                out.put_str(name.as_str());
            }
            Command::Pass(pass) => secret(out, pass.expose()),
            Command::Apop { name, digest } => {
                out.put_str(" ");
                out.put_str(name.as_str());
                secret(out, &digest.to_string());
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                out.put_str(" ");
                out.put_str(mechanism.as_str());
                match initial_response {
                    Some(ir) if ir.is_empty() => secret(out, "="),
                    Some(ir) => secret(out, ir.as_str()),
                    None => {}
                }
            }
            Command::List(Some(n))
            | Command::Uidl(Some(n))
            | Command::Retr(n)
            | Command::Dele(n) => {
                out.put_str(" ");
                out.put_str(&n.to_string());
            }
            Command::Top { msg, lines } => {
                out.put_str(" ");
                out.put_str(&msg.to_string());
                out.put_str(" ");
                out.put_str(&lines.to_string());
            }
            Command::AuthList
            | Command::Stat
            | Command::List(None)
            | Command::Uidl(None)
            | Command::Rset
            | Command::Noop
            | Command::Quit
            | Command::Capa
            | Command::Stls => {}
        }
    }

    /// Parses one command line (without CRLF).
    ///
    /// ```text
    /// command  = keyword *(SP argument)          ; RFC 1939 §3, RFC 2449 §3
    /// keyword  = 3*4VCHAR                        ; case-insensitive
    /// argument = 1*40VCHAR                       ; RFC 2449 §4
    /// pass     = "PASS" SP string                ; RFC 1939 §7: spaces belong to the password
    /// apop     = "APOP" SP name SP digest        ; digest = 32 hex digits
    /// top      = "TOP" SP msg SP lines
    /// auth     = "AUTH" [SP sasl-mech [SP initial-response]]   ; RFC 5034 §4, RFC 1734
    /// initial-response = base64 / "="
    /// ```
    ///
    /// Arguments are separated by exactly one space; stray spaces are
    /// [`Pop3Error::BadArguments`]. The line is bounded by [`Options::max_command_line`], or by
    /// [`Options::max_auth_line`] for AUTH.
    pub fn parse(line: &[u8], options: &Options) -> Result<Command, Pop3Error> {
        let is_auth = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"AUTH");
        check_line(
            line,
            if is_auth {
                options.max_auth_line
            } else {
                options.max_command_line
            },
        )?;
        let (tail, keyword) = take_while1::<_, _, PErr>(|b: u8| b.is_ascii_alphabetic())
            .parse_complete(line)
            .map_err(|_| Pop3Error::UnknownCommand)?;
        let mut upper = [0u8; 4];
        if keyword.len() > upper.len() {
            return Err(Pop3Error::UnknownCommand);
        }
        upper[..keyword.len()].copy_from_slice(keyword);
        upper.make_ascii_uppercase();
        match &upper[..keyword.len()] {
            b"PASS" => {
                let syntax = Pop3Error::BadArguments { command: "PASS" };
                let pass = run(preceded(tag(" "), rest), tail, syntax)?;
                Ok(Command::Pass(Pop3Password::try_from(utf8(pass)?)?))
            }
            b"USER" => {
                let [name] = args::<1, 1>(tail, "USER")?;
                Ok(Command::User(arg(name)?))
            }
            b"APOP" => {
                let [name, digest] = args::<2, 2>(tail, "APOP")?;
                let digest = ApopDigest::try_from(utf8(digest)?)?;
                Ok(Command::Apop {
                    name: arg(name)?,
                    digest,
                })
            }
            b"AUTH" => {
                let syntax = Pop3Error::BadArguments { command: "AUTH" };
                let (mech, ir) = run(
                    opt((
                        preceded(tag(" "), token),
                        opt(preceded(
                            tag(" "),
                            // Past the space an initial response must follow: report why not.
                            cut(map_res(token, |t: &[u8]| {
                                if t == b"=" {
                                    Ok(SaslData::empty())
                                } else {
                                    SaslData::from_bytes(t).map_err(Pop3Error::from)
                                }
                            })),
                        )),
                    ))
                    .map(|o| o.map_or((None, None), |(m, ir)| (Some(m), ir))),
                    tail,
                    syntax,
                )?;
                match mech {
                    None => Ok(Command::AuthList),
                    Some(mech) => Ok(Command::Auth {
                        mechanism: SaslMechanism::try_from(utf8(mech)?)?,
                        initial_response: ir,
                    }),
                }
            }
            b"LIST" => {
                let [n] = args::<0, 1>(tail, "LIST")?;
                Ok(Command::List(optional_msg(n)?))
            }
            b"UIDL" => {
                let [n] = args::<0, 1>(tail, "UIDL")?;
                Ok(Command::Uidl(optional_msg(n)?))
            }
            b"RETR" => {
                let [n] = args::<1, 1>(tail, "RETR")?;
                Ok(Command::Retr(message_number(n)?))
            }
            b"DELE" => {
                let [n] = args::<1, 1>(tail, "DELE")?;
                Ok(Command::Dele(message_number(n)?))
            }
            b"TOP" => {
                let [msg, lines] = args::<2, 2>(tail, "TOP")?;
                Ok(Command::Top {
                    msg: message_number(msg)?,
                    lines: number_u32(lines)?,
                })
            }
            b"STAT" => no_args(tail, "STAT", Command::Stat),
            b"RSET" => no_args(tail, "RSET", Command::Rset),
            b"NOOP" => no_args(tail, "NOOP", Command::Noop),
            b"QUIT" => no_args(tail, "QUIT", Command::Quit),
            b"CAPA" => no_args(tail, "CAPA", Command::Capa),
            b"STLS" => no_args(tail, "STLS", Command::Stls),
            _ => Err(Pop3Error::UnknownCommand),
        }
    }
}

/// Reads between `MIN` and `N` space-separated arguments; missing ones are empty slices.
fn args<'a, const MIN: usize, const N: usize>(
    input: &'a [u8],
    command: &'static str,
) -> Result<[&'a [u8]; N], Pop3Error> {
    let syntax = Pop3Error::BadArguments { command };
    let found = run(
        many_m_n(MIN, N, preceded(tag(" "), token)),
        input,
        syntax.clone(),
    )?;
    let mut out = [&b""[..]; N];
    for (slot, value) in out.iter_mut().zip(found) {
        *slot = value;
    }
    Ok(out)
}

fn no_args(rest: &[u8], command: &'static str, value: Command) -> Result<Command, Pop3Error> {
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(Pop3Error::BadArguments { command })
    }
}

fn optional_msg(tok: &[u8]) -> Result<Option<NonZeroU32>, Pop3Error> {
    if tok.is_empty() {
        Ok(None)
    } else {
        message_number(tok).map(Some)
    }
}

fn utf8(tok: &[u8]) -> Result<&str, Pop3Error> {
    std::str::from_utf8(tok).map_err(|e| {
        Pop3ArgError::ForbiddenByte {
            byte: tok[e.valid_up_to()],
        }
        .into()
    })
}

fn arg(tok: &[u8]) -> Result<Pop3Arg, Pop3Error> {
    Ok(Pop3Arg::try_from(utf8(tok)?)?)
}

/// Where [`Command::write`] sends text: the wire buffer or a formatter.
trait WireSink {
    fn put_str(&mut self, s: &str);
}

impl WireSink for BytesMut {
    fn put_str(&mut self, s: &str) {
        self.put_slice(s.as_bytes());
    }
}

/// Collects into a `String`; used by [`Redacted`] so that both forms share one writer.
impl WireSink for String {
    fn put_str(&mut self, s: &str) {
        self.push_str(s);
    }
}

/// The trace form of a [`Command`]: its wire text without CRLF, secrets shown as `****`.
#[derive(Debug, Clone, Copy)]
pub struct Redacted<'a>(&'a Command);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.0.write(&mut s, true);
        f.write_str(&s)
    }
}

/// A client line inside an AUTH exchange, answering a `+ ` continuation (RFC 5034 §4).
///
/// ```text
/// auth-response   = base64 / cancel-response     ; an empty line is an empty response
/// cancel-response = "*"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResponse {
    /// A (possibly empty) base64 response.
    Data(SaslData),
    /// `*`: the client cancels the exchange.
    Cancel,
}

impl AuthResponse {
    /// Parses one client line of an AUTH exchange, bounded by [`Options::max_auth_line`].
    pub fn parse(line: &[u8], options: &Options) -> Result<AuthResponse, Pop3Error> {
        check_line(line, options.max_auth_line)?;
        if line == b"*" {
            return Ok(AuthResponse::Cancel);
        }
        SaslData::from_bytes(line)
            .map(AuthResponse::Data)
            .map_err(|_| Pop3Error::BadContinuation)
    }

    /// Appends the line, CRLF included, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            AuthResponse::Data(d) => out.put_slice(d.as_str().as_bytes()),
            AuthResponse::Cancel => out.put_slice(b"*"),
        }
        out.put_slice(b"\r\n");
    }
}

/// A strategy producing valid commands, for round-trip property tests here and in the crates
/// that build on this one.
#[cfg(test)]
pub(super) mod strategies {
    use super::*;
    use proptest::prelude::*;

    fn msg() -> impl Strategy<Value = NonZeroU32> {
        (1u32..=u32::MAX).prop_map(|n| NonZeroU32::new(n).expect("range starts at 1"))
    }

    pub(in crate::pop3) fn pop3_arg() -> impl Strategy<Value = Pop3Arg> {
        "[!-~\u{80}-\u{10ffff}]{1,10}"
            .prop_filter_map("fits 40 octets", |s| Pop3Arg::try_from(s.as_str()).ok())
    }

    pub(in crate::pop3) fn mechanism() -> impl Strategy<Value = SaslMechanism> {
        "[A-Za-z0-9_-]{1,20}".prop_map(|s| SaslMechanism::try_from(s.as_str()).expect("valid"))
    }

    pub(in crate::pop3) fn sasl_data() -> impl Strategy<Value = SaslData> {
        ("([A-Za-z0-9+/]{4}){0,20}", 0usize..3).prop_map(|(body, pad)| {
            let s = match pad {
                1 if !body.is_empty() => format!("{}=", &body[..body.len() - 1]),
                2 if !body.is_empty() => format!("{}==", &body[..body.len() - 2]),
                _ => body,
            };
            SaslData::try_from(s.as_str()).expect("valid base64 syntax")
        })
    }

    pub(in crate::pop3) fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            pop3_arg().prop_map(Command::User),
            "[ -~]{1,60}"
                .prop_map(|s| Command::Pass(Pop3Password::try_from(s.as_str()).expect("valid"))),
            (pop3_arg(), any::<[u8; 16]>()).prop_map(|(name, d)| Command::Apop {
                name,
                digest: ApopDigest::from_bytes(d)
            }),
            (mechanism(), proptest::option::of(sasl_data())).prop_map(
                |(mechanism, initial_response)| Command::Auth {
                    mechanism,
                    initial_response
                }
            ),
            Just(Command::AuthList),
            Just(Command::Stat),
            proptest::option::of(msg()).prop_map(Command::List),
            proptest::option::of(msg()).prop_map(Command::Uidl),
            msg().prop_map(Command::Retr),
            (msg(), any::<u32>()).prop_map(|(msg, lines)| Command::Top { msg, lines }),
            msg().prop_map(Command::Dele),
            Just(Command::Rset),
            Just(Command::Noop),
            Just(Command::Quit),
            Just(Command::Capa),
            Just(Command::Stls),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(line: &str) -> Result<Command, Pop3Error> {
        Command::parse(line.as_bytes(), &Options::default())
    }

    fn encode(c: &Command) -> String {
        let mut out = BytesMut::new();
        c.encode(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn rfc_1939_commands_known_answers() {
        let user = |s: &str| Pop3Arg::try_from(s).unwrap();
        let table: Vec<(&str, Command)> = vec![
            ("USER mrose", Command::User(user("mrose"))),
            ("user frated", Command::User(user("frated"))),
            (
                "PASS secret",
                Command::Pass(Pop3Password::try_from("secret").unwrap()),
            ),
            (
                "PASS with two spaces",
                Command::Pass(Pop3Password::try_from("with two spaces").unwrap()),
            ),
            (
                "PASS  lead",
                Command::Pass(Pop3Password::try_from(" lead").unwrap()),
            ),
            (
                "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                Command::Apop {
                    name: user("mrose"),
                    digest: ApopDigest::try_from("c4c9334bac560ecc979e58001b3e22fb").unwrap(),
                },
            ),
            ("STAT", Command::Stat),
            ("LIST", Command::List(None)),
            ("LIST 2", Command::List(Some(n(2)))),
            ("list 3", Command::List(Some(n(3)))),
            ("UIDL", Command::Uidl(None)),
            ("UIDL 2", Command::Uidl(Some(n(2)))),
            ("RETR 1", Command::Retr(n(1))),
            ("DELE 1", Command::Dele(n(1))),
            (
                "TOP 1 10",
                Command::Top {
                    msg: n(1),
                    lines: 10,
                },
            ),
            (
                "TOP 100 0",
                Command::Top {
                    msg: n(100),
                    lines: 0,
                },
            ),
            ("RSET", Command::Rset),
            ("NOOP", Command::Noop),
            ("QUIT", Command::Quit),
            ("CAPA", Command::Capa),
            ("STLS", Command::Stls),
            ("AUTH", Command::AuthList),
            (
                "AUTH PLAIN",
                Command::Auth {
                    mechanism: SaslMechanism::try_from("PLAIN").unwrap(),
                    initial_response: None,
                },
            ),
            (
                "AUTH plain dGVzdAB0ZXN0AHRlc3Q=",
                Command::Auth {
                    mechanism: SaslMechanism::try_from("PLAIN").unwrap(),
                    initial_response: Some(SaslData::try_from("dGVzdAB0ZXN0AHRlc3Q=").unwrap()),
                },
            ),
            (
                "AUTH EXTERNAL =",
                Command::Auth {
                    mechanism: SaslMechanism::try_from("EXTERNAL").unwrap(),
                    initial_response: Some(SaslData::empty()),
                },
            ),
        ];
        for (line, want) in table {
            assert_eq!(parse(line), Ok(want.clone()), "{line}");
            assert_eq!(
                parse(encode(&want).trim_end_matches("\r\n")),
                Ok(want),
                "{line}"
            );
        }
    }

    #[test]
    fn commands_negative_known_answers() {
        let table: Vec<(&str, Pop3Error)> = vec![
            ("", Pop3Error::UnknownCommand),
            ("LAST", Pop3Error::UnknownCommand),
            ("XTND XMIT", Pop3Error::UnknownCommand),
            ("STATUS", Pop3Error::UnknownCommand),
            (" STAT", Pop3Error::UnknownCommand),
            ("STAT ", Pop3Error::BadArguments { command: "STAT" }),
            ("QUIT now", Pop3Error::BadArguments { command: "QUIT" }),
            ("LIST ", Pop3Error::BadArguments { command: "LIST" }),
            ("LIST  1", Pop3Error::BadArguments { command: "LIST" }),
            ("LIST 1 2", Pop3Error::BadArguments { command: "LIST" }),
            ("RETR", Pop3Error::BadArguments { command: "RETR" }),
            ("TOP 1", Pop3Error::BadArguments { command: "TOP" }),
            ("USER", Pop3Error::BadArguments { command: "USER" }),
            ("USER a b", Pop3Error::BadArguments { command: "USER" }),
            ("PASS", Pop3Error::BadArguments { command: "PASS" }),
            ("PASS ", Pop3Error::Arg(Pop3ArgError::Empty)),
            (
                "PASS a\tb",
                Pop3Error::Arg(Pop3ArgError::ForbiddenByte { byte: b'\t' }),
            ),
            ("RETR 0", Pop3Error::ZeroMessageNumber),
            ("RETR -1", Pop3Error::BadNumber),
            ("DELE +1", Pop3Error::BadNumber),
            ("DELE 4294967296", Pop3Error::NumberOverflow),
            ("TOP 1 -1", Pop3Error::BadNumber),
            (
                "APOP mrose c4c9334bac560ecc979e58001b3e22f",
                Pop3Error::Arg(Pop3ArgError::BadDigest),
            ),
            (
                "APOP mrose c4c9334bac560ecc979e58001b3e22fg",
                Pop3Error::Arg(Pop3ArgError::BadDigest),
            ),
            ("AUTH PLAIN abc", Pop3Error::Arg(Pop3ArgError::BadBase64)),
            ("AUTH PLAIN ====", Pop3Error::Arg(Pop3ArgError::BadBase64)),
            ("AUTH PLAIN a=bc", Pop3Error::Arg(Pop3ArgError::BadBase64)),
            (
                "AUTH PLAIN dGVz dGVz",
                Pop3Error::BadArguments { command: "AUTH" },
            ),
            (
                "AUTH PL@IN",
                Pop3Error::Arg(Pop3ArgError::ForbiddenByte { byte: b'@' }),
            ),
            ("AUTH ", Pop3Error::BadArguments { command: "AUTH" }),
            ("STAT\0", Pop3Error::ForbiddenByte { byte: 0 }),
            ("NOOP\r", Pop3Error::ForbiddenByte { byte: b'\r' }),
        ];
        for (line, want) in table {
            assert_eq!(parse(line), Err(want), "{line:?}");
        }
        let long_user = format!("USER {}", "a".repeat(41));
        assert_eq!(
            parse(&long_user),
            Err(Pop3Error::Arg(Pop3ArgError::TooLong { len: 41, max: 40 }))
        );
        let long_line = format!("PASS {}", "a".repeat(249));
        assert_eq!(
            parse(&long_line),
            Err(Pop3Error::LineTooLong { len: 256, max: 255 })
        );
    }

    #[test]
    fn auth_lines_use_the_auth_limit() {
        let ir = "A".repeat(1000);
        let line = format!("AUTH PLAIN {ir}");
        assert!(matches!(parse(&line), Ok(Command::Auth { .. })));
        let huge = format!("AUTH PLAIN {}", "A".repeat(12_280));
        assert_eq!(
            parse(&huge),
            Err(Pop3Error::LineTooLong {
                len: 12_293,
                max: 12_288
            })
        );
    }

    #[test]
    fn crlf_in_pop3_arg_is_unconstructible() {
        for bad in ["a\r\nDELE 1", "a\r", "a\n", "a\0", "a b"] {
            assert!(Pop3Arg::try_from(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Pop3Arg::try_from("mrose\r\nDELE 1"),
            Err(Pop3ArgError::ForbiddenByte { byte: b'\r' })
        );
        assert_eq!(
            Pop3Password::try_from("pw\r\nDELE 1"),
            Err(Pop3ArgError::ForbiddenByte { byte: b'\r' })
        );
        assert_eq!(
            Pop3Password::try_from("pw\n"),
            Err(Pop3ArgError::ForbiddenByte { byte: b'\n' })
        );
        assert_eq!(
            Pop3Password::try_from("p\0w"),
            Err(Pop3ArgError::ForbiddenByte { byte: 0 })
        );
        assert_eq!(
            SaslMechanism::try_from("PLAIN\r\n"),
            Err(Pop3ArgError::ForbiddenByte { byte: b'\r' })
        );
        assert_eq!(SaslData::try_from("dGVz\r\n"), Err(Pop3ArgError::BadBase64));
        assert_eq!(Pop3Arg::try_from(""), Err(Pop3ArgError::Empty));
        assert_eq!(
            Pop3Password::try_from("a".repeat(249).as_str()),
            Err(Pop3ArgError::TooLong { len: 249, max: 248 })
        );
        assert_eq!(
            SaslMechanism::try_from("A".repeat(21).as_str()),
            Err(Pop3ArgError::TooLong { len: 21, max: 20 })
        );
    }

    #[test]
    fn redacted_form_hides_secrets() {
        let pass = Command::Pass(Pop3Password::try_from("hunter2").unwrap());
        assert_eq!(pass.redacted().to_string(), "PASS ****");
        assert!(!format!("{pass:?}").contains("hunter2"));
        let auth = parse("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=").unwrap();
        assert_eq!(auth.redacted().to_string(), "AUTH PLAIN ****");
        assert!(!format!("{auth:?}").contains("dGVzdAB0"));
        let apop = parse("APOP mrose c4c9334bac560ecc979e58001b3e22fb").unwrap();
        assert_eq!(apop.redacted().to_string(), "APOP mrose ****");
        assert!(!format!("{apop:?}").contains("c4c9"));
        assert_eq!(
            parse("TOP 1 10").unwrap().redacted().to_string(),
            "TOP 1 10"
        );
        assert_eq!(
            parse("USER mrose").unwrap().redacted().to_string(),
            "USER mrose"
        );
    }

    #[test]
    fn multiline_responses_are_known() {
        assert!(parse("LIST").unwrap().has_multiline_response());
        assert!(!parse("LIST 1").unwrap().has_multiline_response());
        assert!(parse("RETR 1").unwrap().has_multiline_response());
        assert!(parse("CAPA").unwrap().has_multiline_response());
        assert!(!parse("STAT").unwrap().has_multiline_response());
    }

    #[test]
    fn auth_response_known_answers() {
        let o = Options::default();
        assert_eq!(AuthResponse::parse(b"*", &o), Ok(AuthResponse::Cancel));
        assert_eq!(
            AuthResponse::parse(b"", &o),
            Ok(AuthResponse::Data(SaslData::empty()))
        );
        assert_eq!(
            AuthResponse::parse(b"dGVzdA==", &o),
            Ok(AuthResponse::Data(SaslData::try_from("dGVzdA==").unwrap()))
        );
        assert_eq!(
            AuthResponse::parse(b"dGVzdA=", &o),
            Err(Pop3Error::BadContinuation)
        );
        assert_eq!(
            AuthResponse::parse(b"**", &o),
            Err(Pop3Error::BadContinuation)
        );
        let mut out = BytesMut::new();
        AuthResponse::Cancel.encode(&mut out);
        AuthResponse::Data(SaslData::empty()).encode(&mut out);
        assert_eq!(&out[..], b"*\r\n\r\n");
    }

    proptest! {
        #[test]
        fn command_round_trip(cmd in strategies::command()) {
            let mut out = BytesMut::new();
            cmd.encode(&mut out);
            prop_assert!(out.ends_with(b"\r\n"));
            let line = &out[..out.len() - 2];
            prop_assert_eq!(Command::parse(line, &Options::default()), Ok(cmd));
        }

        #[test]
        fn auth_response_round_trip(data in strategies::sasl_data(), cancel in any::<bool>()) {
            let resp = if cancel { AuthResponse::Cancel } else { AuthResponse::Data(data) };
            let mut out = BytesMut::new();
            resp.encode(&mut out);
            let line = &out[..out.len() - 2];
            prop_assert_eq!(AuthResponse::parse(line, &Options::default()), Ok(resp));
        }

        #[test]
        fn command_parser_never_panics(line in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Command::parse(&line, &Options::default());
        }
    }
}

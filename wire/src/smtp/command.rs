//! SMTP commands (RFC 5321 §4.1.1, RFC 3207, RFC 4954, RFC 3030): parse and encode.

use std::fmt;

use bytes::{BufMut, BytesMut};
use nom::Parser;
use nom::bytes::take_while1;
use nom::character::char;
use nom::combinator::{all_consuming, opt};
use nom::sequence::preceded;

use super::params::{
    MailParams, ParamError, RcptParams, Span, parse_u64, parse_u64_bytes, put_u64, value,
};
use crate::types::{
    AddressError, AuthInitialResponse, Domain, DomainError, ForwardPath, MAX_AUTH_LINE_LEN,
    Mailbox, ReversePath, SaslMechanism, Shared, SmtpText, TokenError, ascii_domain_len, class,
    parse_path_prefix,
};

/// Limits for command parsing. Every limit has its RFC default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandOptions {
    /// Maximum command line length in octets, counting the CRLF the framer removed.
    /// Default 512 (RFC 5321 §4.5.3.1.4).
    pub max_line_len: usize,
    /// Maximum AUTH command line length, counting CRLF. Default 12,288 (RFC 4954 §4).
    pub max_auth_line_len: usize,
}

impl Default for CommandOptions {
    fn default() -> Self {
        CommandOptions {
            max_line_len: 512,
            max_auth_line_len: MAX_AUTH_LINE_LEN,
        }
    }
}

/// Why a command line was rejected. A server answers 500 for [`CommandError::UnknownCommand`]
/// and [`CommandError::LineTooLong`], 501 for the rest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The line (plus CRLF) exceeds the configured limit.
    #[error("command line is {len} octets, more than {max}")]
    LineTooLong {
        /// Length including CRLF.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A CR, LF, NUL or other control byte inside the line.
    #[error("control byte {0:#04x} in command line")]
    ControlCharacter(u8),
    /// The line is not UTF-8.
    #[error("command line is not UTF-8")]
    InvalidUtf8,
    /// The verb is not a known command.
    #[error("unknown command")]
    UnknownCommand,
    /// The command requires an argument and has none.
    #[error("{0} needs an argument")]
    MissingArgument(&'static str),
    /// The command takes no argument and has one.
    #[error("{0} takes no argument")]
    UnexpectedArgument(&'static str),
    /// The argument does not match the command's grammar (e.g. `MAIL FROM` without `:`).
    #[error("syntax error in {0} arguments")]
    Syntax(&'static str),
    /// An invalid EHLO/HELO domain.
    #[error("invalid domain: {0}")]
    Domain(#[from] DomainError),
    /// An invalid reverse or forward path.
    #[error("invalid path: {0}")]
    Path(#[from] AddressError),
    /// An invalid ESMTP parameter.
    #[error("invalid parameter: {0}")]
    Param(#[from] ParamError),
    /// An invalid text argument, SASL mechanism or initial response.
    #[error("invalid argument: {0}")]
    Token(#[from] TokenError),
}

/// One SMTP command.
///
/// ```text
/// ehlo = "EHLO" SP ( Domain / address-literal )      helo = "HELO" SP Domain
/// mail = "MAIL FROM:" Reverse-path [SP Mail-parameters]
/// rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path )
///        [SP Rcpt-parameters]
/// data = "DATA"   rset = "RSET"   quit = "QUIT"   starttls = "STARTTLS"   ; RFC 3207
/// vrfy = "VRFY" SP String   expn = "EXPN" SP String
/// help = "HELP" [ SP String ]   noop = "NOOP" [ SP String ]
/// auth = "AUTH" SP sasl-mech [SP initial-response]                        ; RFC 4954 §4
/// bdat = "BDAT" SP chunk-size [ SP end-marker ]   end-marker = "LAST"      ; RFC 3030 §2
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// `EHLO domain` (RFC 5321 §4.1.1.1).
    Ehlo(Domain),
    /// `HELO domain` (RFC 5321 §4.1.1.1).
    Helo(Domain),
    /// `MAIL FROM:<path> params` (RFC 5321 §4.1.1.2).
    Mail {
        /// The reverse path.
        from: ReversePath,
        /// ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path> params` (RFC 5321 §4.1.1.3).
    Rcpt {
        /// The forward path.
        to: ForwardPath,
        /// ESMTP parameters.
        params: RcptParams,
    },
    /// `DATA` (RFC 5321 §4.1.1.4).
    Data,
    /// `BDAT size [LAST]` (RFC 3030 §2).
    Bdat {
        /// Octets in this chunk.
        size: u64,
        /// True for the final chunk.
        last: bool,
    },
    /// `RSET` (RFC 5321 §4.1.1.5).
    Rset,
    /// `VRFY string` (RFC 5321 §4.1.1.6).
    Vrfy(SmtpText),
    /// `EXPN string` (RFC 5321 §4.1.1.7).
    Expn(SmtpText),
    /// `HELP [string]` (RFC 5321 §4.1.1.8).
    Help(Option<SmtpText>),
    /// `NOOP [string]` (RFC 5321 §4.1.1.9).
    Noop(Option<SmtpText>),
    /// `QUIT` (RFC 5321 §4.1.1.10).
    Quit,
    /// `STARTTLS` (RFC 3207 §4).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4).
    Auth {
        /// The SASL mechanism, upper case.
        mechanism: SaslMechanism,
        /// The initial response, base64 or `=` for empty.
        initial_response: Option<AuthInitialResponse>,
    },
}

#[derive(Clone, Copy)]
enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Vrfy,
    Expn,
    Help,
    Noop,
    Quit,
    StartTls,
    Auth,
}

/// A verb's four letters as the little-endian word [`verb`] compares, lower case.
const fn verb_word(v: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*v) | 0x2020_2020
}

/// Recognises the verb by its first four bytes, folded to lower case in one operation.
///
/// Setting bit 5 maps exactly `A-Z` and `a-z` onto `a-z` (no other byte lands there), so the
/// folded word equals a verb's lower-case letters only when the bytes spell that verb.
#[inline]
fn verb(line: &[u8]) -> Option<(Verb, &[u8])> {
    let (head, rest) = line.split_first_chunk::<4>()?;
    let v = match u32::from_le_bytes(*head) | 0x2020_2020 {
        w if w == verb_word(b"mail") => Verb::Mail,
        w if w == verb_word(b"rcpt") => Verb::Rcpt,
        w if w == verb_word(b"ehlo") => Verb::Ehlo,
        w if w == verb_word(b"data") => Verb::Data,
        w if w == verb_word(b"bdat") => Verb::Bdat,
        w if w == verb_word(b"rset") => Verb::Rset,
        w if w == verb_word(b"quit") => Verb::Quit,
        w if w == verb_word(b"noop") => Verb::Noop,
        w if w == verb_word(b"helo") => Verb::Helo,
        w if w == verb_word(b"vrfy") => Verb::Vrfy,
        w if w == verb_word(b"expn") => Verb::Expn,
        w if w == verb_word(b"help") => Verb::Help,
        w if w == verb_word(b"auth") => Verb::Auth,
        w if w == verb_word(b"star") => {
            let (tail, rest) = rest.split_first_chunk::<4>()?;
            if u32::from_le_bytes(*tail) | 0x2020_2020 != verb_word(b"ttls") {
                return None;
            }
            return Some((Verb::StartTls, rest));
        }
        _ => return None,
    };
    Some((v, rest))
}

/// Rejects control bytes: CR, LF and NUL can smuggle a second command, the others corrupt logs.
fn check_controls(line: &[u8]) -> Result<(), CommandError> {
    if !class::has_control(line) {
        return Ok(());
    }
    match line.iter().find(|&&b| b < 0x20 || b == 0x7f) {
        Some(&b) => Err(CommandError::ControlCharacter(b)),
        None => Ok(()),
    }
}

type NomErr<'a> = nom::error::Error<&'a str>;

/// `SP arg` to the end of the line, or nothing.
fn optional_arg<'a>(rest: &'a str, name: &'static str) -> Result<Option<&'a str>, CommandError> {
    match rest.as_bytes() {
        [] => Ok(None),
        [b' ', ..] if rest.len() > 1 => Ok(Some(&rest[1..])),
        _ => Err(CommandError::Syntax(name)),
    }
}

fn required_arg<'a>(rest: &'a str, name: &'static str) -> Result<&'a str, CommandError> {
    optional_arg(rest, name)?.ok_or(CommandError::MissingArgument(name))
}

/// DATA, RSET, QUIT and STARTTLS: the command if `rest` is empty; `None` for other verbs.
fn bare_command(verb: Verb, rest: &[u8]) -> Option<Result<Command, CommandError>> {
    let cmd = match verb {
        Verb::Data => Command::Data,
        Verb::Rset => Command::Rset,
        Verb::Quit => Command::Quit,
        Verb::StartTls => Command::StartTls,
        _ => return None,
    };
    Some(match rest {
        [] => Ok(cmd),
        [b' ', ..] => Err(CommandError::UnexpectedArgument(cmd.verb())),
        _ => Err(CommandError::UnknownCommand),
    })
}

/// `" " keyword ":"`, case-insensitive; one space after the colon is tolerated because
/// widespread clients send `MAIL FROM: <a@b>` and RFC 5321 §4.1.2 only forbids it softly.
fn path_intro<'a>(
    rest: &'a str,
    keyword: &'static str,
    name: &'static str,
) -> Result<&'a str, CommandError> {
    let b = rest.as_bytes();
    let n = keyword.len();
    if b.len() >= n + 2
        && b[0] == b' '
        && b[1..=n].eq_ignore_ascii_case(keyword.as_bytes())
        && b[n + 1] == b':'
    {
        // The matched prefix is ASCII, so `n + 2` is a character boundary.
        let r = &rest[n + 2..];
        Ok(r.strip_prefix(' ').unwrap_or(r))
    } else if rest.is_empty() {
        Err(CommandError::MissingArgument(name))
    } else {
        Err(CommandError::Syntax(name))
    }
}

fn params_start<'a>(rest: &'a str, name: &'static str) -> Result<&'a str, CommandError> {
    if rest.is_empty() || rest.starts_with(' ') {
        Ok(rest)
    } else {
        Err(CommandError::Syntax(name))
    }
}

impl Command {
    /// Parses one command line (without CRLF) with the default [`CommandOptions`].
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        Command::parse_with(line, &CommandOptions::default())
    }

    /// Parses one command line (without CRLF). Verbs and keywords are case-insensitive.
    pub fn parse_with(line: &[u8], opts: &CommandOptions) -> Result<Command, CommandError> {
        fast_command(line, opts)
    }

    /// [`Command::parse_with`] without the EHLO/HELO/MAIL/RCPT fast paths: the reference they
    /// must agree with (checked by the `wire_smtp_command` fuzz target).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn parse_general(
        line: &[u8],
        opts: &CommandOptions,
    ) -> Result<Command, CommandError> {
        Command::general(line, opts)
    }

    /// The general parser, which decides and names every error; [`fast_command`] falls back
    /// to it. Kept out of line: the fast path calls it from many places.
    #[inline(never)]
    fn general(line: &[u8], opts: &CommandOptions) -> Result<Command, CommandError> {
        let len = line.len() + 2;
        let is_auth = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"AUTH");
        let max = if is_auth {
            opts.max_auth_line_len
        } else {
            opts.max_line_len
        };
        if len > max {
            return Err(CommandError::LineTooLong { len, max });
        }
        check_controls(line)?;
        let (verb, rest) = verb(line).ok_or(CommandError::UnknownCommand)?;
        if rest.first().is_some_and(u8::is_ascii_alphanumeric) {
            // `MAILX`, `DATAFOO`: a longer, unknown verb.
            return Err(CommandError::UnknownCommand);
        }
        // The argument-less verbs are decided before the UTF-8 check, which they do not need.
        if let Some(r) = bare_command(verb, rest) {
            return r;
        }
        let rest = std::str::from_utf8(rest).map_err(|_| CommandError::InvalidUtf8)?;
        Ok(match verb {
            Verb::Ehlo => Command::Ehlo(Domain::try_from(required_arg(rest, "EHLO")?)?),
            Verb::Helo => Command::Helo(Domain::try_from(required_arg(rest, "HELO")?)?),
            Verb::Mail => {
                let r = path_intro(rest, "FROM", "MAIL")?;
                let (m, r) = parse_path_prefix(r)?;
                let params = MailParams::parse(params_start(r, "MAIL")?)?;
                Command::Mail {
                    from: m.map_or(ReversePath::Null, ReversePath::Mailbox),
                    params,
                }
            }
            Verb::Rcpt => {
                let r = path_intro(rest, "TO", "RCPT")?;
                let (to, r) = ForwardPath::parse_prefix(r)?;
                let params = RcptParams::parse(params_start(r, "RCPT")?)?;
                Command::Rcpt { to, params }
            }
            // Handled above; repeated so the match stays exhaustive without a panic.
            Verb::Data | Verb::Rset | Verb::Quit | Verb::StartTls => {
                bare_command(verb, rest.as_bytes()).unwrap_or(Err(CommandError::UnknownCommand))?
            }
            Verb::Vrfy => Command::Vrfy(SmtpText::try_from(required_arg(rest, "VRFY")?)?),
            Verb::Expn => Command::Expn(SmtpText::try_from(required_arg(rest, "EXPN")?)?),
            Verb::Help => Command::Help(
                optional_arg(rest, "HELP")?
                    .map(SmtpText::try_from)
                    .transpose()?,
            ),
            Verb::Noop => Command::Noop(
                optional_arg(rest, "NOOP")?
                    .map(SmtpText::try_from)
                    .transpose()?,
            ),
            Verb::Bdat => parse_bdat(required_arg(rest, "BDAT")?)?,
            Verb::Auth => parse_auth(required_arg(rest, "AUTH")?)?,
        })
    }

    /// The command verb in upper case.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help(_) => "HELP",
            Command::Noop(_) => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }

    /// Appends the command and its CRLF to `out`.
    ///
    /// Every argument is a validated type, so the output is always one line.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.verb().as_bytes());
        match self {
            Command::Ehlo(d) | Command::Helo(d) => put_arg(out, d.as_str()),
            Command::Mail { from, params } => {
                out.put_slice(b" FROM:<");
                out.put_slice(from.as_str().as_bytes());
                out.put_u8(b'>');
                params.encode(out);
            }
            Command::Rcpt { to, params } => {
                out.put_slice(b" TO:<");
                out.put_slice(to.as_str().as_bytes());
                out.put_u8(b'>');
                params.encode(out);
            }
            Command::Data | Command::Rset | Command::Quit | Command::StartTls => {}
            Command::Bdat { size, last } => {
                out.put_u8(b' ');
                put_u64(out, *size);
                if *last {
                    out.put_slice(b" LAST");
                }
            }
            Command::Vrfy(t) | Command::Expn(t) => put_arg(out, t.as_str()),
            Command::Help(t) | Command::Noop(t) => {
                if let Some(t) = t {
                    put_arg(out, t.as_str());
                }
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                put_arg(out, mechanism.as_str());
                if let Some(ir) = initial_response {
                    put_arg(out, ir.as_str());
                }
            }
        }
        out.put_slice(b"\r\n");
    }
}

/// Unwraps a fast-path step, or hands the line to the general parser.
macro_rules! or_general {
    ($e:expr, $line:expr, $opts:expr) => {
        match $e {
            Some(v) => v,
            None => return Command::general($line, $opts),
        }
    };
}

/// [`Command::parse_with`]: the common forms in a single pass, everything else (and every
/// error) from the general parser. The fast path returns only the value the general code
/// returns on the same line; the `wire_smtp_command` fuzz target checks that they agree.
///
/// It checks every byte of the line against the grammar in one pass per field, and accepts only
/// printable ASCII, so the general code's control-byte and UTF-8 checks hold without a separate
/// scan. Each validated value is stored inline when short (see [`Shared`]), so the common
/// command allocates nothing. The result is built where it is returned (an `Option` to unwrap
/// first would be one more copy of the whole command).
#[inline]
fn fast_command(line: &[u8], opts: &CommandOptions) -> Result<Command, CommandError> {
    macro_rules! f {
        ($e:expr) => {
            or_general!($e, line, opts)
        };
    }
    if line.len() + 2 > opts.max_line_len {
        return Command::general(line, opts);
    }
    let (verb, rest) = f!(verb(line));
    // The bare commands are built in the return slot: passing one by value (to a helper that
    // checks `rest`) would copy the whole 128-octet enum for a discriminant.
    let bare = rest.is_empty();
    match verb {
        Verb::Data if bare => Ok(Command::Data),
        Verb::Rset if bare => Ok(Command::Rset),
        Verb::Quit if bare => Ok(Command::Quit),
        Verb::StartTls if bare => Ok(Command::StartTls),
        Verb::Noop if bare => Ok(Command::Noop(None)),
        Verb::Help if bare => Ok(Command::Help(None)),
        Verb::Data | Verb::Rset | Verb::Quit | Verb::StartTls | Verb::Noop | Verb::Help => {
            Command::general(line, opts)
        }
        Verb::Bdat => {
            let r = f!(rest.strip_prefix(b" "));
            let digits = r.iter().take_while(|c| c.is_ascii_digit()).count();
            let last = match &r[digits..] {
                [] => false,
                [b' ', l @ ..] if l.eq_ignore_ascii_case(b"LAST") => true,
                _ => return Command::general(line, opts),
            };
            let size = f!(parse_u64_bytes(&r[..digits]));
            Ok(Command::Bdat { size, last })
        }
        Verb::Ehlo | Verb::Helo => {
            let arg = f!(rest.strip_prefix(b" "));
            if f!(ascii_domain_len(arg)) != arg.len() {
                return Command::general(line, opts);
            }
            // The domain is ASCII: the conversion only satisfies the type system.
            let d = Domain::from_validated(f!(Shared::from_ascii(arg)));
            Ok(match verb {
                Verb::Ehlo => Command::Ehlo(d),
                _ => Command::Helo(d),
            })
        }
        Verb::Mail => {
            let (path, i) = f!(fast_path(rest, b"FROM"));
            let params = f!(MailParams::parse_fast(rest, i));
            let from = match path {
                None => ReversePath::Null,
                Some((at, span)) => ReversePath::Mailbox(f!(own_mailbox(rest, at, span))),
            };
            Ok(Command::Mail { from, params })
        }
        Verb::Rcpt => {
            // `<Postmaster>` has no '@' and takes the general path.
            let (path, i) = f!(fast_path(rest, b"TO"));
            let (at, span) = f!(path);
            let params = f!(RcptParams::parse_fast(rest, i));
            let to = ForwardPath::Mailbox(f!(own_mailbox(rest, at, span)));
            Ok(Command::Rcpt { to, params })
        }
        Verb::Vrfy | Verb::Expn | Verb::Auth => Command::general(line, opts),
    }
}

/// `SP keyword ":" [SP] "<" ( ">" / plain-mailbox ">" )` at the start of `rest`: the mailbox's
/// `@` offset and span (`None` for `<>`), and the index after the `>`.
#[inline]
fn fast_path(rest: &[u8], keyword: &[u8]) -> Option<(Option<(usize, Span)>, usize)> {
    let n = keyword.len();
    let b = rest;
    if b.len() < n + 3
        || b[0] != b' '
        || !b[1..=n].eq_ignore_ascii_case(keyword)
        || b[n + 1] != b':'
    {
        return None;
    }
    let mut i = n + 2;
    if b[i] == b' ' {
        i += 1;
    }
    if b.get(i) != Some(&b'<') {
        return None;
    }
    i += 1;
    if b.get(i) == Some(&b'>') {
        return Some((None, i + 1));
    }
    let (at, len) = Mailbox::plain_prefix_len(&b[i..])?;
    let span = Span {
        start: i,
        end: i + len,
    };
    (b.get(span.end) == Some(&b'>')).then_some((Some((i + at, span)), span.end + 1))
}

/// A mailbox the fast path validated at `span` of `rest` (inline when short).
#[inline]
fn own_mailbox(rest: &[u8], at: usize, span: Span) -> Option<Mailbox> {
    let wire = value(rest, span)?;
    Some(Mailbox::from_validated(wire, at - span.start))
}

fn put_arg(out: &mut BytesMut, s: &str) {
    out.put_u8(b' ');
    out.put_slice(s.as_bytes());
}

/// `chunk-size [SP "LAST"]`, chunk-size = 1*DIGIT (RFC 3030 §2).
fn parse_bdat(arg: &str) -> Result<Command, CommandError> {
    let (digits, last) = match arg.split_once(' ') {
        Some((d, l)) if l.eq_ignore_ascii_case("LAST") => (d, true),
        Some(_) => return Err(CommandError::Syntax("BDAT")),
        None => (arg, false),
    };
    let size = parse_u64(digits).ok_or(CommandError::Syntax("BDAT"))?;
    Ok(Command::Bdat { size, last })
}

/// `sasl-mech [SP initial-response]` (RFC 4954 §4).
fn parse_auth(arg: &str) -> Result<Command, CommandError> {
    let mut p = all_consuming((
        take_while1::<_, &str, NomErr<'_>>(|c: char| c != ' '),
        opt(preceded(char(' '), take_while1(|c: char| c != ' '))),
    ));
    let (_, (mech, ir)) = p
        .parse_complete(arg)
        .map_err(|_| CommandError::Syntax("AUTH"))?;
    Ok(Command::Auth {
        mechanism: SaslMechanism::try_from(mech)?,
        initial_response: ir.map(AuthInitialResponse::try_from).transpose()?,
    })
}

impl fmt::Display for Command {
    /// The command line without CRLF; an AUTH initial response is shown as `****`, since it
    /// carries credentials and Display output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Command::Auth {
            mechanism,
            initial_response,
        } = self
        {
            return match initial_response {
                Some(_) => write!(f, "AUTH {mechanism} ****"),
                None => write!(f, "AUTH {mechanism}"),
            };
        }
        let mut b = BytesMut::new();
        self.encode(&mut b);
        let line = b.strip_suffix(b"\r\n").unwrap_or(&b);
        f.write_str(&String::from_utf8_lossy(line))
    }
}

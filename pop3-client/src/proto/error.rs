//! The core's errors: fatal protocol errors and application misuse.

use mailferry_wire::framer::FrameError;
use mailferry_wire::pop3::{Pop3Error, StatusLine};

use super::SessionState;

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// No greeting within [`Options::greeting_timeout`](super::Options::greeting_timeout).
    Greeting,
    /// No reply within [`Options::command_timeout`](super::Options::command_timeout).
    Command,
    /// A multi-line response stalled longer than
    /// [`Options::body_idle_timeout`](super::Options::body_idle_timeout).
    BodyIdle,
    /// A TLS handshake did not finish in time (reported by the shell).
    TlsHandshake,
    /// The TCP connection could not be opened in time (reported by the shell).
    Connect,
}

/// A fatal error: the session cannot continue. Reported once, as
/// [`Event::ConnectionLost`](super::Event::ConnectionLost).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The greeting was `-ERR` (RFC 1939 §4 allows only `+OK`).
    #[error("the server refused the connection: {0}")]
    GreetingRefused(StatusLine),
    /// A status line, listing line or capability line broke the grammar or a limit (bad status
    /// such as `+OKAY`, malformed listing, duplicate or out-of-order message number, invalid
    /// UID, over-long line, too many entries).
    #[error("malformed response: {0}")]
    Malformed(Pop3Error),
    /// The line framer refused a line (bare CR or LF in a status line, a line over the
    /// framer's limit).
    #[error("framing: {0}")]
    Framing(FrameError),
    /// The server sent a line while no command was waiting for one (or a second challenge
    /// before our answer to the first).
    #[error("unsolicited data from the server")]
    Unsolicited,
    /// `LIST n` / `UIDL n` was answered for another message.
    #[error("asked about message {asked}, the server answered about message {got}")]
    MessageNumberMismatch {
        /// The number asked for.
        asked: u32,
        /// The number in the answer.
        got: u32,
    },
    /// A listing names a message beyond the maildrop size reported by STAT.
    #[error("message {msg} is out of range: the maildrop holds {count} messages")]
    MessageOutOfRange {
        /// The message number seen.
        msg: u32,
        /// The message count from STAT.
        count: u32,
    },
    /// Bytes followed the `+OK` to STLS in the plaintext stream (response injection,
    /// SECURITY.md): they are never read as replies inside TLS.
    #[error("data received after +OK to STLS, before the TLS handshake")]
    DataBeforeTls,
    /// A RETR/TOP body exceeded [`Options::max_body_size`](super::Options::max_body_size).
    #[error("message body larger than {max} octets")]
    BodyTooLarge {
        /// The configured limit.
        max: u64,
    },
    /// The server closed the connection before QUIT was answered.
    #[error("the server closed the connection unexpectedly")]
    UnexpectedEof,
    /// A deadline passed.
    #[error("timed out waiting for {0:?}")]
    Timeout(TimeoutKind),
}

/// The application asked for something the session cannot do now. Nothing was queued or sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The session is over (QUIT submitted, or a fatal error).
    #[error("the session is closed")]
    Closed,
    /// The command does not belong to the current state (RFC 1939 §3), e.g. RETR before login
    /// or USER after it.
    #[error("{command} is not allowed in the {state:?} state")]
    WrongState {
        /// The command keyword.
        command: &'static str,
        /// The state the session is in.
        state: SessionState,
    },
    /// STLS on a channel that is already TLS, or a second STLS.
    #[error("the connection already uses TLS")]
    AlreadyTls,
    /// [`Client::auth_respond`](super::Client::auth_respond) or
    /// [`Client::auth_cancel`](super::Client::auth_cancel) without a pending challenge.
    #[error("no AUTH challenge is waiting for an answer")]
    NoChallenge,
    /// The base64 form of an AUTH response exceeds the AUTH line limit.
    #[error("the AUTH response is too long")]
    ResponseTooLong,
}

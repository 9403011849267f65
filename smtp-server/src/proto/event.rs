//! What the session tells the application, and what it is told about the connection.

use core::net::IpAddr;

use bytes::Bytes;
use mailferry_sasl::{Authenticated, Mechanism};
use mailferry_wire::smtp::{MailParams, RcptParams, Reply};
use mailferry_wire::tls::ChannelSecurity;
use mailferry_wire::types::{Domain, ForwardPath, ReversePath, SmtpText};

use super::clock::WallClock;

/// Identifies a decision the session waits for; answer it with
/// [`Session::respond`](super::Session::respond).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub(crate) u64);

/// Facts about the connection, given when the session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: IpAddr,
    /// Wall-clock time at `now` of [`Session::new`](super::Session::new); later wall-clock
    /// values (trace headers) advance it by the `Instant`s passed in.
    pub time: WallClock,
    /// [`ChannelSecurity::Plaintext`], or a TLS level for implicit TLS (port 465).
    pub security: ChannelSecurity,
}

/// What the application knows about the session when it decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The client's address.
    pub peer: IpAddr,
    /// The HELO/EHLO name, once accepted.
    pub helo: Option<Domain>,
    /// Whether the client used EHLO.
    pub extended: bool,
    /// The authenticated identity, once AUTH succeeded.
    pub auth: Option<Authenticated>,
    /// The channel's security.
    pub security: ChannelSecurity,
}

/// One accepted recipient with its DSN parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The forward path.
    pub to: ForwardPath,
    /// NOTIFY / ORCPT (RFC 3461) and other parameters.
    pub params: RcptParams,
}

/// The envelope of a message whose data is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM.
    pub from: ReversePath,
    /// MAIL parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH).
    pub params: MailParams,
    /// Accepted recipients, in order.
    pub recipients: Vec<Recipient>,
    /// Octets of message data the application received (including prepended header lines).
    pub size: u64,
}

/// Why the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent QUIT (221 sent).
    Quit,
    /// The peer closed the connection.
    PeerClosed,
    /// The application refused the connection and the client quit or left.
    Refused,
    /// A timeout fired (421 4.4.2 sent).
    Timeout,
    /// A limit or error budget ran out (421 sent).
    TooManyErrors,
    /// Improper pipelining or data before the greeting (554/503 sent).
    ProtocolViolation,
    /// Shut down by the application (421 4.3.2 sent).
    Shutdown,
}

/// Why a message in progress was abandoned (its chunks must be discarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortReason {
    /// Larger than [`Options::max_message_size`](super::Options::max_message_size).
    TooLarge,
    /// More `Received:` lines than [`Options::max_hop_count`](super::Options::max_hop_count).
    TooManyHops,
    /// A bare CR or LF in DATA (SMTP smuggling defence).
    BareLineEnding,
    /// RSET, or a BDAT sequence cut short.
    Reset,
    /// The connection ended mid-message.
    ConnectionClosed,
}

/// Something the application must see or decide. Drain with
/// [`Session::poll_event`](super::Session::poll_event) after every call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new connection: accept with a 2xx reply (the core then sends the banner) or refuse
    /// with 4xx/5xx (typically `554 5.7.1`).
    Connect {
        /// Answer with [`respond`](super::Session::respond).
        id: CommandId,
        /// The client's address.
        peer: IpAddr,
    },
    /// HELO or EHLO: a 2xx answer makes the core send its own greeting and extension list.
    Helo {
        /// Answer with [`respond`](super::Session::respond).
        id: CommandId,
        /// The validated name.
        name: Domain,
        /// EHLO rather than HELO.
        extended: bool,
    },
    /// AUTH succeeded (the credential store accepted); informational.
    Authenticated {
        /// The mechanism used.
        mechanism: Mechanism,
        /// Who.
        identity: Authenticated,
    },
    /// AUTH failed or was cancelled; informational.
    AuthFailed {
        /// The mechanism tried.
        mechanism: Mechanism,
        /// The reply sent.
        reply: Reply,
    },
    /// MAIL FROM, after the core's syntax, sequence and size checks.
    MailFrom {
        /// Answer with [`respond`](super::Session::respond).
        id: CommandId,
        /// The reverse path.
        from: ReversePath,
        /// Its parameters.
        params: MailParams,
    },
    /// RCPT TO, after the core's checks.
    RcptTo {
        /// Answer with [`respond`](super::Session::respond).
        id: CommandId,
        /// The forward path.
        to: ForwardPath,
        /// Its parameters (DSN NOTIFY / ORCPT).
        params: RcptParams,
    },
    /// A recipient was refused (by the application or a core limit): the seeds' log hook.
    RecipientRejected {
        /// The refused path.
        to: ForwardPath,
        /// The reply sent.
        reply: Reply,
    },
    /// A piece of the message, in order; the first pieces are the prepended trace fields.
    MessageChunk(Bytes),
    /// The message is complete: accept with 250 or refuse with 4xx/5xx.
    DataEnd {
        /// Answer with [`respond`](super::Session::respond).
        id: CommandId,
        /// The envelope.
        envelope: Envelope,
    },
    /// The message in progress is abandoned: discard its chunks. The core answers the client.
    MessageAborted(AbortReason),
    /// VRFY (only when [`Options::vrfy`](super::Options::vrfy)).
    Vrfy {
        /// Answer with [`respond`](super::Session::respond).
        id: CommandId,
        /// The argument.
        arg: SmtpText,
    },
    /// EXPN (only when [`Options::expn`](super::Options::expn)).
    Expn {
        /// Answer with [`respond`](super::Session::respond).
        id: CommandId,
        /// The argument.
        arg: SmtpText,
    },
    /// `220 Ready to start TLS` is queued: flush it, run the TLS handshake, then call
    /// [`handle_tls_established`](super::Session::handle_tls_established). Plaintext bytes
    /// that followed STARTTLS were discarded (CVE-2011-0411); their count is given.
    StartTls {
        /// Octets discarded.
        discarded: usize,
    },
    /// The session is over; flush the transmit buffer and close. Reported exactly once.
    Closed(CloseReason),
}

/// A misuse of the session API by the application; the session state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// No decision with this id is pending.
    #[error("no pending decision with id {0:?}")]
    UnknownId(CommandId),
    /// The reply class does not fit: decisions take 2xx (accept), 4xx or 5xx (refuse).
    #[error("reply code {0} cannot answer this decision")]
    UnexpectedCode(u16),
    /// TLS was reported established while no STARTTLS was in progress.
    #[error("no STARTTLS in progress")]
    NoTlsPending,
}

//! The sans-IO SMTP client core: no sockets, no tokio, no clock.
//!
//! ```text
//!   bytes from the server ──handle_input(&[u8], now)──▶ ┌────────┐ ──poll_transmit(&mut BytesMut)──▶ socket
//!   EOF / timer / TLS done ──handle_eof / _timeout / ──▶ │ Client │ ──poll_timeout() ──▶ one timer
//!                            _tls_established            │        │ ──poll_event()   ──▶ Event
//!   ehlo / starttls / auth / start_transaction / ────▶   └────────┘
//!   body_chunk / finish_body / rset / noop / quit  (each returns a CommandId or a UsageError)
//! ```
//!
//! Drain `poll_transmit`, `poll_timeout` and `poll_event` after every call. Output is appended,
//! so a pipelined group (MAIL, every RCPT, DATA) and a body's last chunk with its terminator each
//! leave in one write. A fatal error is sticky: exactly one [`Event::ConnectionLost`], then every
//! call is a no-op (commands return [`UsageError::Closed`]).

mod chunk;
mod envelope;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use mailferry_sasl::framing::{self, FramingOptions};
use mailferry_sasl::{AttemptOutcome, ClientSession, SaslError, Secret, SmtpAuthReply};
use mailferry_wire::dot::{DotEncoder, EncodeError, EncodeOptions, MAX_TEXT_LINE_LEN};
use mailferry_wire::framer::{Frame, FrameError, FramerOptions, LineFramer};
use mailferry_wire::smtp::{
    Body, Capabilities, Command, EhloError, Reply, ReplyAssembler, ReplyCode, ReplyError,
    ReplyOptions,
};
use mailferry_wire::tls::ChannelSecurity;
use mailferry_wire::types::{Domain, ForwardPath, SaslMechanism};

use chunk::ChunkEncoder;
pub use envelope::{DeliveryReport, Envelope, Recipient, RecipientResult, RecipientStatus};

const TRANSCRIPT: &str = "mailferry_smtp_client::transcript";

/// Limits and timeouts. Every field has an RFC default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Waiting for the 220 greeting. Default 5 minutes (RFC 5321 §4.5.3.2.1).
    pub greeting_timeout: Duration,
    /// Waiting for the reply to EHLO, HELO, STARTTLS, AUTH, RSET, NOOP and QUIT. RFC 5321 sets
    /// none; default 5 minutes, like MAIL.
    pub command_timeout: Duration,
    /// Waiting for the reply to MAIL. Default 5 minutes (RFC 5321 §4.5.3.2.2).
    pub mail_timeout: Duration,
    /// Waiting for the reply to each RCPT. Default 5 minutes (RFC 5321 §4.5.3.2.3).
    pub rcpt_timeout: Duration,
    /// Waiting for the 354 to DATA. Default 2 minutes (RFC 5321 §4.5.3.2.4).
    pub data_init_timeout: Duration,
    /// Between two body chunks, and waiting for the reply to a non-last BDAT. Default
    /// 3 minutes (RFC 5321 §4.5.3.2.5).
    pub data_block_timeout: Duration,
    /// Waiting for the final reply after the end of data (or the last BDAT). Default
    /// 10 minutes (RFC 5321 §4.5.3.2.6).
    pub data_termination_timeout: Duration,
    /// Opening the TCP connection (shell). Default 30 seconds.
    pub connect_timeout: Duration,
    /// The TLS handshake (shell). Default 30 seconds.
    pub tls_handshake_timeout: Duration,
    /// Reply limits: line length (default 512, RFC 5321 §4.5.3.1.5), lines per reply
    /// (default 128) and octets per reply (default 16,384).
    pub reply: ReplyOptions,
    /// Longest `334` challenge line, CRLF included. Default 12,288 (RFC 4954 §4).
    pub max_auth_line_len: usize,
    /// Longest body line on the wire, CRLF included; `None` for no check (only with a peer
    /// known to accept long lines). Default `Some(1000)` (RFC 5321 §4.5.3.1.6).
    pub max_body_line_len: Option<usize>,
    /// Use PIPELINING (RFC 2920) when offered. Default `true`.
    pub pipelining: bool,
    /// Use BDAT (RFC 3030 CHUNKING) instead of DATA when offered. Default `true`.
    pub chunking: bool,
    /// Send the first SASL response with `AUTH` (RFC 4954 §4) when it fits the 512-octet
    /// command line. Default `true`.
    pub sasl_initial_response: bool,
    /// Body chunk size the shell reads and sends (one BDAT per chunk). Default 64 KiB.
    pub body_chunk_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            greeting_timeout: Duration::from_secs(300),
            command_timeout: Duration::from_secs(300),
            mail_timeout: Duration::from_secs(300),
            rcpt_timeout: Duration::from_secs(300),
            data_init_timeout: Duration::from_secs(120),
            data_block_timeout: Duration::from_secs(180),
            data_termination_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(30),
            reply: ReplyOptions::default(),
            max_auth_line_len: framing::MAX_LINE_LEN,
            max_body_line_len: Some(MAX_TEXT_LINE_LEN),
            pipelining: true,
            chunking: true,
            sasl_initial_response: true,
            body_chunk_size: 64 * 1024,
        }
    }
}

/// Identifies a command (or a group: a transaction is one id) in the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(u64);

impl CommandId {
    /// The number, increasing from 1 per connection.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// What the core was waiting for when a timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Waiting {
    /// The 220 greeting.
    Greeting,
    /// The reply to EHLO, HELO, STARTTLS, AUTH (or a SASL step), RSET, NOOP or QUIT.
    Command,
    /// The reply to MAIL.
    Mail,
    /// The reply to RCPT.
    Rcpt,
    /// The 354 to DATA.
    DataInit,
    /// The next body chunk from the application, or the reply to a non-last BDAT.
    DataBlock,
    /// The final reply to the message.
    DataTermination,
}

/// Why the connection is lost. Sticky: reported once in [`Event::ConnectionLost`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reply line was refused by the framer (too long, bare CR or LF).
    #[error("bad reply line: {0}")]
    Framing(#[from] FrameError),
    /// A reply broke RFC 5321 §4.2 syntax or a limit of [`Options::reply`].
    #[error("malformed reply: {0}")]
    MalformedReply(#[from] ReplyError),
    /// The 250 EHLO reply could not be read as capabilities.
    #[error("malformed EHLO reply: {0}")]
    Capabilities(#[from] EhloError),
    /// A reply arrived when none was expected, or with a code that does not fit the command
    /// (a 3xx to MAIL, a 1xx, ...).
    #[error("unexpected reply {code}")]
    UnexpectedReply {
        /// The reply code.
        code: u16,
    },
    /// Bytes followed the `220` to STARTTLS in the plaintext stream (RFC 3207 §4.2 response
    /// injection): they are never read as replies inside TLS.
    #[error("data received after the STARTTLS reply, before the TLS handshake")]
    DataBeforeTls,
    /// The server said 421: service not available, closing the channel.
    #[error("service closing: {0}")]
    ServiceClosing(Reply),
    /// The server took too long.
    #[error("timed out waiting for {0:?}")]
    Timeout(Waiting),
    /// The server closed the connection while a reply was due.
    #[error("connection closed by the server")]
    ClosedByPeer,
    /// The message body broke a check (8-bit octet without `BODY=8BITMIME`, a line over the
    /// limit). The transaction was abandoned by closing the connection, so no truncated message
    /// can be accepted.
    #[error("message body refused locally: {0}")]
    BodyRejected(EncodeError),
}

/// An application call made at the wrong time or with arguments the server cannot take.
/// Nothing was sent and the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The connection is closed or lost.
    #[error("the connection is closed")]
    Closed,
    /// Not possible in the current state (before the greeting, during a transaction, with a
    /// reply outstanding, before EHLO, ...).
    #[error("not possible in the current state")]
    NotReady,
    /// The envelope has no recipient.
    #[error("the envelope has no recipient")]
    NoRecipients,
    /// The declared size exceeds the server's `SIZE` (RFC 1870).
    #[error("message of {size} octets exceeds the server's limit of {limit}")]
    MessageTooLarge {
        /// The declared size.
        size: u64,
        /// The server's limit.
        limit: u64,
    },
    /// `BODY=8BITMIME` to a server without `8BITMIME` (RFC 6152).
    #[error("the server does not accept 8-bit bodies (no 8BITMIME)")]
    EightBitNotSupported,
    /// `BODY=BINARYMIME` to a server without `BINARYMIME` and `CHUNKING` (RFC 3030).
    #[error("the server does not accept binary bodies (no BINARYMIME with CHUNKING)")]
    BinaryNotSupported,
    /// UTF-8 addresses or `SMTPUTF8` to a server without `SMTPUTF8` (RFC 6531).
    #[error("the server does not accept SMTPUTF8")]
    SmtpUtf8NotSupported,
    /// A body call outside the body phase, or while a BDAT reply is due without pipelining.
    #[error("not expecting message body now")]
    NotInBody,
    /// The body broke a check; the connection is being closed (see
    /// [`ProtocolError::BodyRejected`]).
    #[error("message body refused: {0}")]
    Body(EncodeError),
    /// A SASL exchange is already authenticated on this connection (RFC 4954 §4: 503).
    #[error("already authenticated")]
    AlreadyAuthenticated,
    /// The SASL mechanism could not produce its initial response (nothing was sent).
    #[error("SASL: {0}")]
    Sasl(SaslError),
}

/// How EHLO ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EhloOutcome {
    /// 250 to EHLO: the capabilities (replacing any earlier list).
    Extended(Capabilities),
    /// EHLO got 500/502, HELO was sent (fallback allowed) and got 250: no extensions.
    Helo(Reply),
    /// Refused (EHLO, or HELO after the fallback): the reply.
    Refused(Reply),
}

/// How STARTTLS ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartTlsOutcome {
    /// 220 with nothing after it: run the handshake, then call
    /// [`Client::handle_tls_established`].
    Ready,
    /// Refused (454, 502, ...): the reply.
    Refused(Reply),
}

/// Something the application learns. Events own their data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The 220 greeting.
    Greeting(Reply),
    /// A 5xx greeting (554: no SMTP service here, RFC 5321 §3.1): only QUIT is possible.
    GreetingRefused(Reply),
    /// EHLO (or its HELO fallback) ended.
    Ehlo {
        /// The id [`Client::ehlo`] returned.
        id: CommandId,
        /// The outcome.
        outcome: EhloOutcome,
    },
    /// STARTTLS ended.
    StartTls {
        /// The id [`Client::starttls`] returned.
        id: CommandId,
        /// The outcome.
        outcome: StartTlsOutcome,
    },
    /// An AUTH exchange ended: report `outcome` to the negotiator.
    Auth {
        /// The id [`Client::auth`] returned.
        id: CommandId,
        /// What to report to `mailferry_sasl::Negotiator::report`.
        outcome: AttemptOutcome,
        /// The final reply.
        reply: Reply,
    },
    /// The server is ready for the message content: feed [`Client::body_chunk`] while
    /// [`Client::wants_body`], then call [`Client::finish_body`].
    ReadyForBody {
        /// The transaction's id.
        id: CommandId,
    },
    /// A transaction ended (with any outcome); the client is ready for the next one.
    TransactionDone {
        /// The transaction's id.
        id: CommandId,
        /// Per-recipient results.
        report: DeliveryReport,
    },
    /// The reply to RSET or NOOP.
    Reply {
        /// The command's id.
        id: CommandId,
        /// The reply.
        reply: Reply,
    },
    /// QUIT was answered (or the server closed after QUIT): the session is over.
    Closed,
    /// The connection is unusable; the shell closes it. Reported once.
    ConnectionLost(ProtocolError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Greeting,
    Ehlo {
        fallback: bool,
    },
    Helo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    DataEnd,
    Bdat {
        last: bool,
    },
    /// RSET sent by the core to close a failed transaction.
    TxnRset,
    Rset,
    Noop,
    Quit,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: CommandId,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    Refused,
    Ready,
    AwaitingTls,
    Quitting,
    Closed,
}

#[derive(Debug)]
enum BodyEncoder {
    Dot(DotEncoder),
    Chunk(ChunkEncoder),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnPhase {
    /// MAIL / RCPT / DATA replies due.
    Envelope,
    /// Body chunks flow.
    Body,
    /// The end of the body was sent; final reply (or outstanding BDAT replies) due.
    Final,
}

#[derive(Debug)]
struct Txn {
    id: CommandId,
    phase: TxnPhase,
    /// Whether MAIL, RCPTs (and DATA) went out as one group.
    pipelined: bool,
    /// BDAT instead of DATA.
    chunking: bool,
    /// Without pipelining, after a failed transaction: MAIL waits for the RSET reply.
    mail_line: Option<BytesMut>,
    /// The encoded RCPT lines still to send one by one (without pipelining), last first.
    rcpt_lines: Vec<BytesMut>,
    recipients: Vec<ForwardPath>,
    mail_reply: Option<Reply>,
    rcpt_replies: Vec<Option<Reply>>,
    accepted: usize,
    /// DATA was refused, or a BDAT was refused (the first such reply), or the final reply.
    data_reply: Option<Reply>,
    encoder: BodyEncoder,
    /// The encoded output of the latest chunk, held back so the last one leaves together with
    /// the terminator (or as `BDAT n LAST`) in one write.
    held: BytesMut,
    /// BDAT replies still due.
    bdat_due: usize,
    /// A BDAT was refused: the message is abandoned.
    bdat_failed: bool,
    /// A 354 arrived although no recipient was accepted (pipelined DATA): the core ends the
    /// empty message and discards its reply.
    empty_data: bool,
}

#[derive(Debug)]
struct AuthState {
    id: CommandId,
    session: ClientSession,
    /// An initial response too long for the AUTH line, sent after the first (empty) 334.
    held_response: Option<Secret<String>>,
    /// The exchange was cancelled with `*`: this is what to report when the reply comes.
    cancelled: Option<AttemptOutcome>,
}

/// The SMTP client state machine. See the [module documentation](self).
#[derive(Debug)]
pub struct Client {
    options: Options,
    phase: Phase,
    framer: LineFramer,
    replies: ReplyAssembler,
    auth_replies: ReplyAssembler,
    out: BytesMut,
    events: VecDeque<Event>,
    pending: VecDeque<Pending>,
    /// When the head of `pending` started waiting.
    head_since: Instant,
    /// Body phase: when the last chunk came.
    body_since: Instant,
    next_id: u64,
    capabilities: Option<Capabilities>,
    channel: ChannelSecurity,
    authenticated: bool,
    txn: Option<Txn>,
    auth: Option<AuthState>,
    /// The EHLO argument, kept for a HELO fallback.
    helo_domain: Option<Domain>,
    /// A failed transaction left the server in a transaction: RSET before the next MAIL.
    needs_rset: bool,
    dead: bool,
}

fn deadline(since: Instant, after: Duration) -> Option<Instant> {
    since.checked_add(after)
}

impl Client {
    /// A client on a fresh connection, waiting for the greeting. `channel` is
    /// [`ChannelSecurity::Plaintext`], or the security of an implicit-TLS session.
    pub fn new(options: Options, channel: ChannelSecurity, now: Instant) -> Client {
        let line_max = options.max_auth_line_len.max(options.reply.max_line_len);
        let mut framer_options = FramerOptions::default();
        framer_options.max_line_len = line_max;
        let mut auth_reply = options.reply.clone();
        auth_reply.max_line_len = line_max;
        auth_reply.max_bytes = auth_reply.max_bytes.max(line_max);
        let mut client = Client {
            framer: LineFramer::new(framer_options),
            replies: ReplyAssembler::new(options.reply.clone()),
            auth_replies: ReplyAssembler::new(auth_reply),
            options,
            phase: Phase::Greeting,
            out: BytesMut::new(),
            events: VecDeque::new(),
            pending: VecDeque::new(),
            head_since: now,
            body_since: now,
            next_id: 1,
            capabilities: None,
            channel,
            authenticated: false,
            txn: None,
            auth: None,
            helo_domain: None,
            needs_rset: false,
            dead: false,
        };
        client.pending.push_back(Pending {
            id: CommandId(0),
            kind: Kind::Greeting,
        });
        client
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The capabilities of the last successful EHLO on the current channel (an empty list
    /// after HELO); `None` before EHLO and after STARTTLS until the next EHLO.
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.capabilities.as_ref()
    }

    /// The security of the channel now.
    pub fn channel(&self) -> ChannelSecurity {
        self.channel
    }

    /// Whether an AUTH exchange succeeded on this connection.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Whether a new command may be issued: greeted, no reply due, no transaction, no AUTH.
    pub fn is_idle(&self) -> bool {
        !self.dead
            && self.phase == Phase::Ready
            && self.pending.is_empty()
            && self.txn.is_none()
            && self.auth.is_none()
    }

    /// Whether the connection is closed or lost.
    pub fn is_closed(&self) -> bool {
        self.dead || self.phase == Phase::Closed
    }

    /// Whether [`body_chunk`](Self::body_chunk) may be called now: in the body phase, and
    /// without PIPELINING no BDAT reply is due.
    pub fn wants_body(&self) -> bool {
        match &self.txn {
            Some(t) if !self.dead && t.phase == TxnPhase::Body => {
                !(t.chunking && !t.pipelined && t.bdat_due > 0)
            }
            _ => false,
        }
    }

    fn alloc_id(&mut self) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        id
    }

    fn enqueue(&mut self, id: CommandId, kind: Kind, now: Instant) {
        if self.pending.is_empty() {
            self.head_since = now;
        }
        self.pending.push_back(Pending { id, kind });
    }

    fn send_command(&mut self, cmd: &Command) {
        tracing::trace!(target: TRANSCRIPT, "C: {cmd}");
        cmd.encode(&mut self.out);
    }

    fn fatal(&mut self, error: ProtocolError) {
        if self.dead {
            return;
        }
        tracing::debug!(target: TRANSCRIPT, "connection lost: {error}");
        self.dead = true;
        // Nothing more leaves: in particular no part of a body after a refused chunk.
        self.out.clear();
        self.pending.clear();
        self.txn = None;
        self.auth = None;
        self.events.push_back(Event::ConnectionLost(error));
    }

    fn check_live(&self) -> Result<(), UsageError> {
        if self.is_closed() {
            Err(UsageError::Closed)
        } else {
            Ok(())
        }
    }

    fn check_idle(&self) -> Result<(), UsageError> {
        self.check_live()?;
        if self.is_idle() {
            Ok(())
        } else {
            Err(UsageError::NotReady)
        }
    }

    // ----- output -----

    /// Appends everything due to the server to `out`.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) {
        if !self.out.is_empty() {
            if out.is_empty() {
                std::mem::swap(out, &mut self.out);
            } else {
                out.extend_from_slice(&self.out);
                self.out.clear();
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() || self.phase == Phase::AwaitingTls {
            return None;
        }
        if let Some(head) = self.pending.front() {
            let after = self.timeout_of(head.kind);
            return deadline(self.head_since, after);
        }
        match &self.txn {
            Some(t) if t.phase == TxnPhase::Body => {
                deadline(self.body_since, self.options.data_block_timeout)
            }
            _ => None,
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn timeout_of(&self, kind: Kind) -> Duration {
        let o = &self.options;
        match kind {
            Kind::Greeting => o.greeting_timeout,
            Kind::Mail => o.mail_timeout,
            Kind::Rcpt => o.rcpt_timeout,
            Kind::Data => o.data_init_timeout,
            Kind::Bdat { last: false } => o.data_block_timeout,
            Kind::DataEnd | Kind::Bdat { last: true } => o.data_termination_timeout,
            _ => o.command_timeout,
        }
    }

    fn waiting_of(kind: Kind) -> Waiting {
        match kind {
            Kind::Greeting => Waiting::Greeting,
            Kind::Mail => Waiting::Mail,
            Kind::Rcpt => Waiting::Rcpt,
            Kind::Data => Waiting::DataInit,
            Kind::Bdat { last: false } => Waiting::DataBlock,
            Kind::DataEnd | Kind::Bdat { last: true } => Waiting::DataTermination,
            _ => Waiting::Command,
        }
    }

    // ----- input -----

    /// Bytes read from the server.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if self.is_closed() || data.is_empty() {
            return;
        }
        if self.phase == Phase::AwaitingTls {
            self.fatal(ProtocolError::DataBeforeTls);
            return;
        }
        self.framer.push(data);
        while !self.dead && self.phase != Phase::AwaitingTls && self.phase != Phase::Closed {
            let frame = match self.framer.next_frame() {
                Ok(Some(Frame::Line(line))) => line,
                // The framer stays in line mode: bodies only flow towards the server.
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => return self.fatal(ProtocolError::Framing(e)),
            };
            let in_auth = matches!(self.pending.front(), Some(p) if p.kind == Kind::Auth);
            let asm = if in_auth {
                &mut self.auth_replies
            } else {
                &mut self.replies
            };
            match asm.push_line(&frame) {
                Ok(Some(reply)) => self.on_reply(reply, now),
                Ok(None) => {}
                Err(e) => return self.fatal(ProtocolError::MalformedReply(e)),
            }
        }
    }

    /// The server closed its side.
    pub fn handle_eof(&mut self) {
        if self.is_closed() {
            return;
        }
        if self.phase == Phase::Quitting {
            self.close_clean();
        } else {
            self.fatal(ProtocolError::ClosedByPeer);
        }
    }

    /// The timer from [`poll_timeout`](Self::poll_timeout) fired (or any time at all: an early
    /// call does nothing).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.poll_timeout() else {
            return;
        };
        if now < due {
            return;
        }
        let waiting = match self.pending.front() {
            Some(p) => Self::waiting_of(p.kind),
            None => Waiting::DataBlock,
        };
        self.fatal(ProtocolError::Timeout(waiting));
    }

    /// The TLS handshake after [`StartTlsOutcome::Ready`] succeeded with this security.
    /// Capabilities are forgotten: EHLO again (RFC 3207 §4.2).
    pub fn handle_tls_established(
        &mut self,
        security: ChannelSecurity,
        now: Instant,
    ) -> Result<(), UsageError> {
        self.check_live()?;
        if self.phase != Phase::AwaitingTls {
            return Err(UsageError::NotReady);
        }
        self.phase = Phase::Ready;
        self.channel = security;
        self.capabilities = None;
        self.authenticated = false;
        self.head_since = now;
        Ok(())
    }

    fn close_clean(&mut self) {
        self.phase = Phase::Closed;
        self.pending.clear();
        self.events.push_back(Event::Closed);
    }

    fn on_reply(&mut self, reply: Reply, now: Instant) {
        tracing::trace!(target: TRANSCRIPT, "S: {reply}");
        let Some(head) = self.pending.pop_front() else {
            if reply.code() == ReplyCode::SERVICE_UNAVAILABLE {
                return self.fatal(ProtocolError::ServiceClosing(reply));
            }
            return self.fatal(ProtocolError::UnexpectedReply {
                code: reply.code().as_u16(),
            });
        };
        self.head_since = now;
        let code = reply.code();
        // RFC 5321 §3.8: 421 may answer any command; the server closes next.
        if code == ReplyCode::SERVICE_UNAVAILABLE && head.kind != Kind::Quit {
            return self.fatal(ProtocolError::ServiceClosing(reply));
        }
        // 3xx only continues DATA and AUTH.
        if code.is_intermediate()
            && !matches!(head.kind, Kind::Data | Kind::Auth)
            && !(head.kind == Kind::Quit)
        {
            return self.fatal(ProtocolError::UnexpectedReply {
                code: code.as_u16(),
            });
        }
        match head.kind {
            Kind::Greeting => self.on_greeting(reply),
            Kind::Ehlo { fallback } => self.on_ehlo(head.id, reply, fallback, now),
            Kind::Helo => {
                let outcome = if code.is_positive() {
                    self.capabilities = Some(Capabilities::default());
                    EhloOutcome::Helo(reply)
                } else {
                    EhloOutcome::Refused(reply)
                };
                self.events.push_back(Event::Ehlo {
                    id: head.id,
                    outcome,
                });
            }
            Kind::StartTls => self.on_starttls(head.id, reply),
            Kind::Auth => self.on_auth(reply, now),
            Kind::Mail | Kind::Rcpt | Kind::Data | Kind::DataEnd | Kind::Bdat { .. } => {
                self.on_txn_reply(head.kind, reply, now)
            }
            Kind::TxnRset => {
                if !code.is_positive() {
                    tracing::debug!(target: TRANSCRIPT, "RSET refused: {reply}");
                }
                // Without pipelining, the next MAIL waited for this reply.
                let line = self.txn.as_mut().and_then(|t| t.mail_line.take());
                if let Some(line) = line {
                    self.send_line(&line);
                    let id = self.txn.as_ref().map_or(head.id, |t| t.id);
                    self.enqueue(id, Kind::Mail, now);
                }
            }
            Kind::Rset | Kind::Noop => self.events.push_back(Event::Reply { id: head.id, reply }),
            Kind::Quit => self.close_clean(),
        }
    }

    fn on_greeting(&mut self, reply: Reply) {
        let code = reply.code();
        if code == ReplyCode::SERVICE_READY {
            self.phase = Phase::Ready;
            self.events.push_back(Event::Greeting(reply));
        } else if code.is_permanent() {
            self.phase = Phase::Refused;
            self.events.push_back(Event::GreetingRefused(reply));
        } else {
            self.fatal(ProtocolError::UnexpectedReply {
                code: code.as_u16(),
            });
        }
    }

    fn on_ehlo(&mut self, id: CommandId, reply: Reply, fallback: bool, now: Instant) {
        let code = reply.code().as_u16();
        if code == 250 {
            match Capabilities::from_ehlo(reply) {
                Ok(caps) => {
                    self.capabilities = Some(caps.clone());
                    self.events.push_back(Event::Ehlo {
                        id,
                        outcome: EhloOutcome::Extended(caps),
                    });
                }
                Err(e) => self.fatal(ProtocolError::Capabilities(e)),
            }
        } else if fallback && matches!(code, 500 | 502) {
            // RFC 5321 §4.1.4: a server that does not know EHLO answers 500/502; HELO then.
            // Only then: a 421 closes, a 5xx policy refusal is not about EHLO itself.
            let Some(domain) = self.helo_domain.take() else {
                return self.fatal(ProtocolError::UnexpectedReply { code });
            };
            self.send_command(&Command::Helo(domain));
            self.enqueue(id, Kind::Helo, now);
        } else {
            self.events.push_back(Event::Ehlo {
                id,
                outcome: EhloOutcome::Refused(reply),
            });
        }
    }

    fn on_starttls(&mut self, id: CommandId, reply: Reply) {
        if reply.code() == ReplyCode::SERVICE_READY {
            // RFC 3207 §4.2 / SECURITY.md: anything already received after the 220 was sent
            // in plaintext by someone; it must never be read as a reply inside TLS.
            if !self.framer.buffered().is_empty() || self.replies.is_mid_reply() {
                return self.fatal(ProtocolError::DataBeforeTls);
            }
            self.phase = Phase::AwaitingTls;
            self.events.push_back(Event::StartTls {
                id,
                outcome: StartTlsOutcome::Ready,
            });
        } else {
            self.events.push_back(Event::StartTls {
                id,
                outcome: StartTlsOutcome::Refused(reply),
            });
        }
    }
}

/// Application commands.
impl Client {
    /// Sends `EHLO domain`. With `helo_fallback`, a 500 or 502 reply (the server does not know
    /// EHLO, RFC 5321 §4.1.4) is followed by `HELO domain`; never on any other code. Turn it
    /// off whenever TLS or AUTH is required, since HELO offers neither.
    pub fn ehlo(
        &mut self,
        domain: &Domain,
        helo_fallback: bool,
        now: Instant,
    ) -> Result<CommandId, UsageError> {
        self.check_idle()?;
        let id = self.alloc_id();
        self.needs_rset = false;
        self.helo_domain = helo_fallback.then(|| domain.clone());
        self.send_command(&Command::Ehlo(domain.clone()));
        self.enqueue(
            id,
            Kind::Ehlo {
                fallback: helo_fallback,
            },
            now,
        );
        Ok(id)
    }

    /// Sends `STARTTLS` (RFC 3207). Whether the server offered it is the caller's policy
    /// decision (a required upgrade checks [`Capabilities::starttls`] first).
    pub fn starttls(&mut self, now: Instant) -> Result<CommandId, UsageError> {
        self.check_idle()?;
        if self.channel != ChannelSecurity::Plaintext {
            return Err(UsageError::NotReady);
        }
        let id = self.alloc_id();
        self.send_command(&Command::StartTls);
        self.enqueue(id, Kind::StartTls, now);
        Ok(id)
    }

    /// Runs one SASL exchange (RFC 4954) with `session`, ending in [`Event::Auth`]. The
    /// initial response goes on the AUTH line when [`Options::sasl_initial_response`] is on and
    /// the line stays within 512 octets; otherwise it answers the first, empty, 334.
    pub fn auth(
        &mut self,
        mut session: ClientSession,
        now: Instant,
    ) -> Result<CommandId, UsageError> {
        self.check_idle()?;
        if self.capabilities.is_none() {
            return Err(UsageError::NotReady);
        }
        if self.authenticated {
            return Err(UsageError::AlreadyAuthenticated);
        }
        let id = self.alloc_id();
        // Invariant: every mechanism name mailferry-sasl knows is a valid sasl-mech.
        let Ok(mechanism) = SaslMechanism::try_from(session.mechanism().name()) else {
            return Err(UsageError::NotReady);
        };
        let mut held_response = None;
        let mut initial = None;
        match session.initial_response() {
            Ok(Some(ir)) => {
                let text = framing::encode_initial_response(ir.expose());
                // "AUTH " + mechanism + " " + response + CRLF within 512 (RFC 4954 §4).
                let line_len = 5 + mechanism.as_str().len() + 1 + text.expose().len() + 2;
                if self.options.sasl_initial_response && line_len <= 512 {
                    initial = Some(text);
                } else {
                    // Sent as the answer to the first, empty, 334 instead, where an empty
                    // response is an empty line rather than "=".
                    held_response = Some(framing::encode_response(ir.expose()));
                }
            }
            Ok(None) => {}
            // Nothing was sent: the caller reports LocalError to the negotiator.
            Err(e) => return Err(UsageError::Sasl(e)),
        }
        let initial_response = match initial {
            Some(text) => {
                match mailferry_wire::types::AuthInitialResponse::try_from(text.expose().as_str()) {
                    Ok(ir) => Some(ir),
                    // Invariant: strict base64 from mailferry-sasl always validates.
                    Err(_) => return Err(UsageError::NotReady),
                }
            }
            None => None,
        };
        let cmd = Command::Auth {
            mechanism,
            initial_response,
        };
        self.send_command(&cmd);
        self.enqueue(id, Kind::Auth, now);
        self.auth = Some(AuthState {
            id,
            session,
            held_response,
            cancelled: None,
        });
        Ok(id)
    }

    fn send_auth_line(&mut self, line: &str, secret: bool) {
        if secret {
            tracing::trace!(target: TRANSCRIPT, "C: ****");
        } else {
            tracing::trace!(target: TRANSCRIPT, "C: {line}");
        }
        self.out.put_slice(line.as_bytes());
        self.out.put_slice(b"\r\n");
    }

    fn on_auth(&mut self, reply: Reply, now: Instant) {
        let Some(mut st) = self.auth.take() else {
            return self.fatal(ProtocolError::UnexpectedReply {
                code: reply.code().as_u16(),
            });
        };
        let code = reply.code();
        if code == ReplyCode::AUTH_CONTINUE {
            if st.cancelled.is_some() {
                // A 334 after our "*": the server is not following RFC 4954.
                return self.fatal(ProtocolError::UnexpectedReply {
                    code: code.as_u16(),
                });
            }
            let response = if let Some(held) = st.held_response.take() {
                Ok(held)
            } else if reply.line_count() != 1 {
                Err(AttemptOutcome::Garbled)
            } else {
                let options = FramingOptions::default();
                match framing::decode_challenge(reply.first_line().as_bytes(), &options) {
                    Err(_) => Err(AttemptOutcome::Garbled),
                    Ok(challenge) => match st.session.step(&challenge) {
                        Ok(r) => Ok(framing::encode_response(r.expose())),
                        Err(e) => Err(AttemptOutcome::LocalError(e)),
                    },
                }
            };
            match response {
                Ok(line) => self.send_auth_line(line.expose(), true),
                Err(outcome) => {
                    // RFC 4954 §4: "*" cancels; the server answers 501.
                    self.send_auth_line(framing::CANCEL, false);
                    st.cancelled = Some(outcome);
                }
            }
            let id = st.id;
            self.auth = Some(st);
            self.enqueue(id, Kind::Auth, now);
            return;
        }
        let outcome = if let Some(c) = st.cancelled.take() {
            c
        } else if code == ReplyCode::AUTH_OK {
            match st.session.finish() {
                Ok(()) => {
                    self.authenticated = true;
                    AttemptOutcome::Succeeded
                }
                Err(e) => AttemptOutcome::LocalError(e),
            }
        } else {
            AttemptOutcome::Smtp(SmtpAuthReply {
                code: code.as_u16(),
                enhanced: reply
                    .enhanced()
                    .map(|e| mailferry_sasl::EnhancedCode::new(e.class(), e.subject(), e.detail())),
            })
        };
        self.events.push_back(Event::Auth {
            id: st.id,
            outcome,
            reply,
        });
    }

    /// Sends `RSET`; the reply comes as [`Event::Reply`].
    pub fn rset(&mut self, now: Instant) -> Result<CommandId, UsageError> {
        self.check_idle()?;
        let id = self.alloc_id();
        self.needs_rset = false;
        self.send_command(&Command::Rset);
        self.enqueue(id, Kind::Rset, now);
        Ok(id)
    }

    /// Sends `NOOP`; the reply comes as [`Event::Reply`].
    pub fn noop(&mut self, now: Instant) -> Result<CommandId, UsageError> {
        self.check_idle()?;
        let id = self.alloc_id();
        self.send_command(&Command::Noop(None));
        self.enqueue(id, Kind::Noop, now);
        Ok(id)
    }

    /// Sends `QUIT`; [`Event::Closed`] follows the reply (or the server's close). Allowed when
    /// idle, after a refused greeting, and right after [`finish_body`](Self::finish_body)
    /// (pipelined behind the end of data; the transaction's report still comes first).
    pub fn quit(&mut self, now: Instant) -> Result<CommandId, UsageError> {
        self.check_live()?;
        // QUIT may follow the end of data in the same write (RFC 2920 §3.1 example).
        let busy = self
            .txn
            .as_ref()
            .is_some_and(|t| t.phase != TxnPhase::Final)
            || self.auth.is_some()
            || matches!(self.phase, Phase::AwaitingTls | Phase::Quitting);
        if busy {
            return Err(UsageError::NotReady);
        }
        let id = self.alloc_id();
        self.send_command(&Command::Quit);
        self.enqueue(id, Kind::Quit, now);
        self.phase = Phase::Quitting;
        Ok(id)
    }
}

/// Transactions.
impl Client {
    /// Starts a transaction: `MAIL FROM`, every `RCPT TO` and (without CHUNKING) `DATA`, in one
    /// group when the server offers PIPELINING. The parameters are adapted to the server (see
    /// [`Envelope`]); a declared size over the server's `SIZE`, an 8-bit, binary or UTF-8
    /// message the server cannot take are refused here, before anything is sent.
    ///
    /// Then: [`Event::ReadyForBody`] (feed the body) or, when no recipient was accepted,
    /// [`Event::TransactionDone`] directly.
    pub fn start_transaction(
        &mut self,
        envelope: &Envelope,
        now: Instant,
    ) -> Result<CommandId, UsageError> {
        self.check_idle()?;
        let caps = self.capabilities.as_ref().ok_or(UsageError::NotReady)?;
        if envelope.recipients.is_empty() {
            return Err(UsageError::NoRecipients);
        }
        let mut params = envelope.params.clone();
        match (params.size, caps.size) {
            (Some(size), Some(limit)) if limit > 0 && size > limit => {
                return Err(UsageError::MessageTooLarge { size, limit });
            }
            // RFC 1870: SIZE= only to a server that announced SIZE.
            (_, None) => params.size = None,
            _ => {}
        }
        let chunking = self.options.chunking && caps.chunking;
        match params.body {
            Some(Body::EightBitMime) if !caps.eight_bit_mime => {
                return Err(UsageError::EightBitNotSupported);
            }
            Some(Body::BinaryMime) if !(caps.binary_mime && chunking) => {
                return Err(UsageError::BinaryNotSupported);
            }
            // RFC 6152: BODY= belongs to the 8BITMIME extension; 7BIT is the default anyway.
            Some(Body::SevenBit) if !caps.eight_bit_mime => params.body = None,
            _ => {}
        }
        let needs_utf8 = params.smtputf8
            || envelope.from.requires_smtputf8()
            || envelope.recipients.iter().any(|r| r.to.requires_smtputf8());
        if needs_utf8 {
            if !caps.smtputf8 {
                return Err(UsageError::SmtpUtf8NotSupported);
            }
            params.smtputf8 = true;
        }
        let dsn = caps.dsn;
        if !dsn {
            // RFC 3461 §4: without DSN the parameters cannot be relayed; the request is
            // dropped, as a relaying MTA does.
            params.ret = None;
            params.envid = None;
        }
        if !caps.has_auth() {
            // RFC 4954 §5: AUTH= only to a server that announced AUTH.
            params.auth = None;
        }
        let pipelined = self.options.pipelining && caps.pipelining;
        let allow_8bit = matches!(params.body, Some(Body::EightBitMime | Body::BinaryMime));
        let binary = params.body == Some(Body::BinaryMime);
        let encoder = if chunking {
            let limit = if binary {
                None
            } else {
                self.options.max_body_line_len
            };
            BodyEncoder::Chunk(ChunkEncoder::new(limit, allow_8bit, binary))
        } else {
            let mut o = EncodeOptions::default();
            o.max_line_len = self.options.max_body_line_len;
            o.allow_8bit = allow_8bit;
            BodyEncoder::Dot(DotEncoder::new(o))
        };

        let id = self.alloc_id();
        let mail = Command::Mail {
            from: envelope.from.clone(),
            params,
        };
        let mut mail_line = None;
        if std::mem::take(&mut self.needs_rset) {
            self.send_command(&Command::Rset);
            self.enqueue(id, Kind::TxnRset, now);
            if !pipelined {
                let mut line = BytesMut::new();
                mail.encode(&mut line);
                mail_line = Some(line);
            }
        }
        if mail_line.is_none() {
            self.send_command(&mail);
            self.enqueue(id, Kind::Mail, now);
        }
        let mut rcpt_lines = Vec::new();
        for r in &envelope.recipients {
            let mut p = r.params.clone();
            if !dsn {
                p.notify = None;
                p.orcpt = None;
            }
            let cmd = Command::Rcpt {
                to: r.to.clone(),
                params: p,
            };
            if pipelined {
                self.send_command(&cmd);
                self.enqueue(id, Kind::Rcpt, now);
            } else {
                let mut line = BytesMut::new();
                cmd.encode(&mut line);
                rcpt_lines.push(line);
            }
        }
        if pipelined && !chunking {
            self.send_command(&Command::Data);
            self.enqueue(id, Kind::Data, now);
        }
        rcpt_lines.reverse();
        self.txn = Some(Txn {
            id,
            phase: TxnPhase::Envelope,
            pipelined,
            chunking,
            mail_line,
            rcpt_lines,
            recipients: envelope.recipients.iter().map(|r| r.to.clone()).collect(),
            mail_reply: None,
            rcpt_replies: Vec::with_capacity(envelope.recipients.len()),
            accepted: 0,
            data_reply: None,
            encoder,
            held: BytesMut::new(),
            bdat_due: 0,
            bdat_failed: false,
            empty_data: false,
        });
        Ok(id)
    }

    /// Feeds the next piece of the message (any size; the shell uses
    /// [`Options::body_chunk_size`]). Line endings are normalised to CRLF; with DATA, lines
    /// starting with `.` are stuffed. The latest piece is held back until the next one or
    /// [`finish_body`](Self::finish_body), so the end of the message leaves in one write.
    ///
    /// A body that breaks a check (8-bit octet without `BODY=8BITMIME`, line over
    /// [`Options::max_body_line_len`]) returns [`UsageError::Body`] and loses the connection
    /// ([`ProtocolError::BodyRejected`]): the terminator is never sent, so no server can accept
    /// a truncated message.
    pub fn body_chunk(&mut self, chunk: &[u8], now: Instant) -> Result<(), UsageError> {
        self.check_live()?;
        if !self.wants_body() {
            return Err(UsageError::NotInBody);
        }
        self.body_since = now;
        if chunk.is_empty() {
            return Ok(());
        }
        let Some(t) = self.txn.as_mut() else {
            return Err(UsageError::NotInBody);
        };
        let result = match &mut t.encoder {
            BodyEncoder::Dot(enc) => {
                self.out.extend_from_slice(&t.held);
                t.held.clear();
                enc.encode(chunk, &mut t.held)
            }
            BodyEncoder::Chunk(enc) => {
                let mut next = BytesMut::new();
                let r = enc.encode(chunk, &mut next);
                if r.is_ok() && !next.is_empty() {
                    let held = std::mem::replace(&mut t.held, next);
                    if !held.is_empty() {
                        emit_bdat(&mut self.out, &held, false);
                        t.bdat_due += 1;
                        let id = t.id;
                        self.enqueue(id, Kind::Bdat { last: false }, now);
                    }
                }
                r
            }
        };
        if let Err(e) = result {
            self.fatal(ProtocolError::BodyRejected(e.clone()));
            return Err(UsageError::Body(e));
        }
        Ok(())
    }

    /// Ends the message: the held chunk and the terminator (`CRLF.CRLF`, or `BDAT n LAST`) go
    /// out together. [`Event::TransactionDone`] follows with the final reply.
    pub fn finish_body(&mut self, now: Instant) -> Result<(), UsageError> {
        self.check_live()?;
        if !self.wants_body() {
            return Err(UsageError::NotInBody);
        }
        let Some(t) = self.txn.as_mut() else {
            return Err(UsageError::NotInBody);
        };
        let result = match &mut t.encoder {
            BodyEncoder::Dot(enc) => {
                let r = enc.finish(&mut t.held).map(|_| ());
                if r.is_ok() {
                    self.out.extend_from_slice(&t.held);
                    t.held.clear();
                    tracing::trace!(target: TRANSCRIPT, "C: <message body> .");
                }
                r.map(|()| Kind::DataEnd)
            }
            BodyEncoder::Chunk(enc) => {
                let r = enc.finish(&mut t.held);
                if r.is_ok() {
                    emit_bdat(&mut self.out, &t.held, true);
                    t.held.clear();
                    t.bdat_due += 1;
                }
                r.map(|()| Kind::Bdat { last: true })
            }
        };
        match result {
            Ok(kind) => {
                t.phase = TxnPhase::Final;
                let id = t.id;
                self.enqueue(id, kind, now);
                Ok(())
            }
            Err(e) => {
                self.fatal(ProtocolError::BodyRejected(e.clone()));
                Err(UsageError::Body(e))
            }
        }
    }

    fn on_txn_reply(&mut self, kind: Kind, reply: Reply, now: Instant) {
        let Some(mut t) = self.txn.take() else {
            return self.fatal(ProtocolError::UnexpectedReply {
                code: reply.code().as_u16(),
            });
        };
        let positive = reply.code().is_positive();
        match kind {
            Kind::Mail => {
                t.mail_reply = Some(reply);
                if !t.pipelined {
                    if positive {
                        self.send_next_rcpt(&mut t, now);
                    } else {
                        // Nothing open on the server: no RSET needed.
                        return self.emit_report(t);
                    }
                }
            }
            Kind::Rcpt => {
                if positive {
                    t.accepted += 1;
                }
                t.rcpt_replies.push(Some(reply));
                let all_in = t.rcpt_replies.len() == t.recipients.len();
                if !t.pipelined {
                    if !all_in {
                        self.send_next_rcpt(&mut t, now);
                    } else if t.accepted == 0 {
                        return self.reset_txn(t, now);
                    } else if t.chunking {
                        return self.enter_body(t, now);
                    } else {
                        self.send_command(&Command::Data);
                        self.enqueue(t.id, Kind::Data, now);
                    }
                } else if all_in && t.chunking {
                    let mail_ok = t
                        .mail_reply
                        .as_ref()
                        .is_some_and(|r| r.code().is_positive());
                    if t.accepted > 0 && mail_ok {
                        return self.enter_body(t, now);
                    } else if mail_ok {
                        return self.reset_txn(t, now);
                    }
                    return self.emit_report(t);
                }
            }
            Kind::Data => {
                let mail_ok = t
                    .mail_reply
                    .as_ref()
                    .is_some_and(|r| r.code().is_positive());
                if reply.code() == ReplyCode::START_DATA {
                    if t.accepted > 0 && mail_ok {
                        return self.enter_body(t, now);
                    }
                    // RFC 2920 §3.1: a pipelined DATA got 354 although nothing was accepted;
                    // end the empty message at once, nobody receives it.
                    t.empty_data = true;
                    t.phase = TxnPhase::Final;
                    tracing::trace!(target: TRANSCRIPT, "C: .");
                    self.out.put_slice(b".\r\n");
                    self.enqueue(t.id, Kind::DataEnd, now);
                } else if t.accepted > 0 && mail_ok {
                    t.data_reply = Some(reply);
                    return self.reset_txn(t, now);
                } else if mail_ok {
                    // The expected 503/554 to a pipelined DATA after every RCPT failed.
                    return self.reset_txn(t, now);
                } else {
                    return self.emit_report(t);
                }
            }
            Kind::DataEnd => {
                if !t.empty_data {
                    t.data_reply = Some(reply);
                }
                return self.emit_report(t);
            }
            Kind::Bdat { last } => {
                t.bdat_due = t.bdat_due.saturating_sub(1);
                if !positive && !t.bdat_failed {
                    // RFC 3030 §2: the transaction failed; send no further BDAT. Replies to
                    // chunks already in the pipeline are read and discarded.
                    t.bdat_failed = true;
                    t.data_reply = Some(reply);
                    t.held.clear();
                    if t.phase == TxnPhase::Body {
                        t.phase = TxnPhase::Final;
                    }
                } else if last && !t.bdat_failed {
                    t.data_reply = Some(reply);
                    return self.emit_report(t);
                }
                if t.bdat_failed && t.bdat_due == 0 {
                    // The server discarded the message; RSET leaves no doubt about its state.
                    return self.reset_txn(t, now);
                }
            }
            _ => {}
        }
        self.txn = Some(t);
    }

    fn send_next_rcpt(&mut self, t: &mut Txn, now: Instant) {
        if let Some(line) = t.rcpt_lines.pop() {
            self.send_line(&line);
            self.enqueue(t.id, Kind::Rcpt, now);
        }
    }

    /// Sends an already encoded command line (validated types only, so no secrets).
    fn send_line(&mut self, line: &[u8]) {
        tracing::trace!(
            target: TRANSCRIPT,
            "C: {}",
            String::from_utf8_lossy(line.strip_suffix(b"\r\n").unwrap_or(line))
        );
        self.out.extend_from_slice(line);
    }

    fn enter_body(&mut self, mut t: Txn, now: Instant) {
        t.phase = TxnPhase::Body;
        self.body_since = now;
        let id = t.id;
        self.txn = Some(t);
        self.events.push_back(Event::ReadyForBody { id });
    }

    /// The transaction is over but left state on the server (MAIL accepted, no message):
    /// report now, and send RSET before the next MAIL (or not at all when QUIT or EHLO comes
    /// first, which reset the server anyway, RFC 5321 §4.1.4).
    fn reset_txn(&mut self, t: Txn, _now: Instant) {
        self.needs_rset = true;
        self.emit_report(t);
    }

    fn emit_report(&mut self, t: Txn) {
        let Some(mail_reply) = t.mail_reply else {
            return self.fatal(ProtocolError::UnexpectedReply { code: 0 });
        };
        let mut rcpt_replies = t.rcpt_replies;
        rcpt_replies.resize(t.recipients.len(), None);
        let report = DeliveryReport::build(mail_reply, &t.recipients, rcpt_replies, t.data_reply);
        self.events
            .push_back(Event::TransactionDone { id: t.id, report });
    }
}

fn emit_bdat(out: &mut BytesMut, data: &[u8], last: bool) {
    let cmd = Command::Bdat {
        size: data.len() as u64,
        last,
    };
    tracing::trace!(target: TRANSCRIPT, "C: {cmd} <{} octets>", data.len());
    cmd.encode(out);
    out.extend_from_slice(data);
}

//! The sans-IO POP3 client core: bytes and commands in, bytes and events out.
//!
//! [`Client`] never touches a socket or a clock. The shell (or a test) feeds it what the server
//! sent ([`Client::handle_input`], [`Client::handle_eof`]), the passage of time
//! ([`Client::handle_timeout`]) and the end of a TLS handshake
//! ([`Client::handle_tls_established`]); the application submits commands
//! ([`Client::submit`], [`Client::auth_respond`], [`Client::auth_cancel`]). After every such
//! call, drain [`Client::poll_transmit`], [`Client::poll_timeout`] and [`Client::poll_event`].
//!
//! Commands are queued and sent as the protocol allows: strictly one at a time, or, once the
//! server announced `PIPELINING` (RFC 2449 §6.6) and the session is in the TRANSACTION state,
//! up to [`Options::max_in_flight`] at once. Replies are matched to [`CommandId`]s in order.

mod error;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mailferry_sasl::framing::{self, FramingOptions};
use mailferry_sasl::{ApopTimestamp, FramingError};
use mailferry_wire::framer::{Frame, FrameError, FramerOptions, LineEndings, LineFramer, Mode};
use mailferry_wire::pop3::{
    self, AuthResponse, CapaAccumulator, Capabilities, Command, ListingAccumulator, MultiLine,
    Pop3Error, SaslData, SaslMechanism, ScanListing, Stat, StatusLine, UidListing,
};
use mailferry_wire::tls::ChannelSecurity;

pub use error::{ProtocolError, TimeoutKind, UsageError};

/// Identifies one submitted command; events about it carry the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(u64);

impl CommandId {
    /// The sequence number: ids grow by one per submitted command, starting at 0.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Limits and timeouts of a POP3 client session.
///
/// Every number a server controls is bounded here, whatever it announced: LIST sizes and STAT
/// counts are hints only.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Line, listing and capability limits (defaults: 512-octet response lines, RFC 2449 §4;
    /// 12,288-octet AUTH lines, RFC 5034 §4; 100,000 listing entries; 128 CAPA lines).
    pub wire: pop3::Options,
    /// Most commands in flight at once when the server announced PIPELINING. Default 32; the
    /// RFC sets no number, it only requires the client not to deadlock on full buffers
    /// (RFC 2449 §6.6), which the shell's concurrent read and write guarantee.
    pub max_in_flight: usize,
    /// Largest RETR/TOP body accepted, in un-stuffed octets; `None` (the default) streams bodies
    /// of any size, each chunk bounded by one read. A body over the limit is fatal
    /// ([`ProtocolError::BodyTooLarge`]).
    pub max_body_size: Option<u64>,
    /// Which line endings a status or listing line may have. Default
    /// [`LineEndings::Strict`] (CRLF, RFC 1939 §3). A body ends only at `CRLF.CRLF` either way.
    pub line_endings: LineEndings,
    /// Connecting the TCP socket (used by the shell). Default 30 s.
    pub connect_timeout: Duration,
    /// From connection to the greeting (and, in the shell, from connection to the end of the
    /// implicit TLS handshake). Default 60 s.
    pub greeting_timeout: Duration,
    /// A TLS handshake, implicit or after STLS (used by the shell). Default 30 s.
    pub tls_handshake_timeout: Duration,
    /// Waiting for a status line or a continuation: from sending a command (or from the
    /// previous reply, when commands are pipelined) to its first line. Default 120 s, well under
    /// the server's 10-minute autologout timer (RFC 1939 §3).
    pub command_timeout: Duration,
    /// Silence allowed inside a multi-line response (RETR/TOP bodies, listings, CAPA) before the
    /// session is abandoned. Default 120 s.
    pub body_idle_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wire: pop3::Options::default(),
            max_in_flight: 32,
            max_body_size: None,
            line_endings: LineEndings::Strict,
            connect_timeout: Duration::from_secs(30),
            greeting_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(120),
            body_idle_timeout: Duration::from_secs(120),
        }
    }
}

/// The server's greeting (RFC 1939 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// The `+OK` line.
    pub status: StatusLine,
    /// The APOP timestamp, when the greeting carried a well-formed `<...@...>` msg-id
    /// (RFC 1939 §7); APOP is offered only then.
    pub apop_timestamp: Option<ApopTimestamp>,
}

/// The positive result of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// A single-line `+OK` (USER, PASS, APOP, AUTH, STLS, DELE, RSET, NOOP, QUIT).
    Ok(StatusLine),
    /// STAT's drop listing.
    Stat(Stat),
    /// `LIST msg`.
    Scan(ScanListing),
    /// `LIST`: every message, in increasing order, no duplicates.
    ScanListing(Vec<ScanListing>),
    /// `UIDL msg`.
    Uid(UidListing),
    /// `UIDL`: every message, in increasing order, no duplicates.
    UidListing(Vec<UidListing>),
    /// CAPA (RFC 2449 §5); also stored in the client, see [`Client::capabilities`].
    Capabilities(Capabilities),
    /// Bare `AUTH` (RFC 1734): the mechanisms the server lists.
    Mechanisms(Vec<SaslMechanism>),
    /// RETR or TOP: the body was streamed as [`Event::BodyChunk`]s and has ended; `octets` counts
    /// the un-stuffed octets delivered.
    Body {
        /// The `+OK` line that opened the body.
        status: StatusLine,
        /// Un-stuffed octets delivered.
        octets: u64,
    },
}

/// The outcome of one command: a positive [`Response`], or the server's `-ERR` line, whose
/// RESP-CODE ([`StatusLine::code`]) tells why (RFC 2449 §8, RFC 3206).
pub type CommandResult = Result<Response, StatusLine>;

/// What happened, drained with [`Client::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The server greeted with `+OK`.
    Greeting(Greeting),
    /// The server sent a `+ ` continuation during AUTH (RFC 5034 §4), already base64-decoded
    /// (or why it could not be). Answer with [`Client::auth_respond`] or [`Client::auth_cancel`].
    AuthChallenge {
        /// The AUTH command.
        id: CommandId,
        /// The decoded challenge.
        challenge: Result<Vec<u8>, FramingError>,
    },
    /// A piece of a RETR/TOP body, un-stuffed (never empty).
    BodyChunk {
        /// The RETR or TOP command.
        id: CommandId,
        /// The octets.
        chunk: Bytes,
    },
    /// A command is complete.
    Completed {
        /// The command.
        id: CommandId,
        /// Its outcome.
        result: CommandResult,
    },
    /// The server closed the connection after answering QUIT.
    Closed,
    /// The session is over: a fatal protocol error, a timeout or an unexpected end of stream.
    /// Reported once; every later call is a no-op.
    ConnectionLost(ProtocolError),
}

/// The POP3 session state (RFC 1939 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Before the greeting arrived.
    Greeting,
    /// Logging in (USER/PASS, APOP, AUTH, CAPA, STLS).
    Authorization,
    /// Logged in: STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP.
    Transaction,
    /// STLS was accepted; waiting for the shell's handshake.
    AwaitingTls,
    /// QUIT was sent (or the session failed): no further commands.
    Closing,
}

/// What an in-flight command is waiting for.
#[derive(Debug)]
enum Phase {
    Status,
    /// AUTH: a challenge was delivered, the application owes a response.
    AwaitingAuthResponse,
    Scan(ListingAccumulator<ScanListing>),
    Uids(ListingAccumulator<UidListing>),
    Capa(CapaAccumulator),
    Mechanisms(Vec<SaslMechanism>),
    Body {
        status: StatusLine,
        octets: u64,
    },
}

#[derive(Debug)]
struct InFlight {
    id: CommandId,
    command: Command,
    phase: Phase,
}

/// The sans-IO POP3 client. See the [module documentation](self).
pub struct Client {
    options: Options,
    framer: LineFramer,
    state: SessionState,
    channel: ChannelSecurity,
    capabilities: Option<Capabilities>,
    queue: VecDeque<(CommandId, Command)>,
    in_flight: VecDeque<InFlight>,
    out: BytesMut,
    events: VecDeque<Event>,
    next_id: u64,
    connected_at: Instant,
    last_activity: Instant,
    /// The message count of the first STAT before any DELE: message numbers above it are out
    /// of range for the whole session (RFC 1939 §5: numbers never change within a session).
    maildrop_count: Option<u32>,
    dele_sent: bool,
    stls_done: bool,
    quit_answered: bool,
    failed: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state)
            .field("channel", &self.channel)
            .field("queued", &self.queue.len())
            .field("in_flight", &self.in_flight.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

const TRACE: &str = "mailferry_pop3_client::transcript";

impl Client {
    /// A client for a connection that has just been opened at `now` on a channel of the given
    /// security (plaintext, or implicit TLS). It waits for the greeting; commands submitted
    /// before it arrives are queued.
    pub fn new(options: Options, channel: ChannelSecurity, now: Instant) -> Client {
        let mut framer_options = FramerOptions::default();
        // Continuation lines may be 12,288 octets; the stricter 512-octet limit of status and
        // listing lines is applied by the grammar on each complete line.
        framer_options.max_line_len = options
            .wire
            .max_auth_line
            .max(options.wire.max_response_line);
        framer_options.line_endings = options.line_endings;
        Client {
            framer: LineFramer::new(framer_options),
            options,
            state: SessionState::Greeting,
            channel,
            capabilities: None,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            next_id: 0,
            connected_at: now,
            last_activity: now,
            maildrop_count: None,
            dele_sent: false,
            stls_done: false,
            quit_answered: false,
            failed: false,
        }
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The session state.
    pub fn state(&self) -> SessionState {
        if self.failed {
            SessionState::Closing
        } else {
            self.state
        }
    }

    /// The security of the channel now.
    pub fn channel(&self) -> ChannelSecurity {
        self.channel
    }

    /// The capabilities from the last CAPA on the current channel; `None` before CAPA and
    /// after STLS (RFC 2595 §4: they must be read again).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.capabilities.as_ref()
    }

    /// Whether commands are pipelined now (PIPELINING announced, TRANSACTION state).
    pub fn is_pipelining(&self) -> bool {
        self.state == SessionState::Transaction
            && self
                .capabilities
                .as_ref()
                .is_some_and(Capabilities::pipelining)
    }

    /// Whether the session has failed (a [`Event::ConnectionLost`] was or will be reported).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Commands submitted and not yet answered (queued or in flight).
    pub fn pending(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Queues `command`. It is sent as soon as the protocol allows (see the module docs).
    ///
    /// # Errors
    ///
    /// [`UsageError`] when the command does not fit the session state (a transaction command
    /// before login, STLS twice or inside TLS, anything after QUIT or a fatal error). Nothing
    /// is queued then.
    pub fn submit(&mut self, command: Command, now: Instant) -> Result<CommandId, UsageError> {
        if self.failed || self.state == SessionState::Closing {
            return Err(UsageError::Closed);
        }
        self.check_state(&command)?;
        if self.in_flight.is_empty() && self.queue.is_empty() {
            // The command clock starts now, not at the end of an earlier idle period.
            self.last_activity = now;
        }
        let id = CommandId(self.next_id);
        self.next_id += 1;
        if matches!(command, Command::Quit) {
            self.state = SessionState::Closing;
        }
        self.queue.push_back((id, command));
        self.pump();
        Ok(id)
    }

    fn check_state(&self, command: &Command) -> Result<(), UsageError> {
        let login_done_or_pending = self.state == SessionState::Transaction;
        let wrong = || UsageError::WrongState {
            command: command.keyword(),
            state: self.state,
        };
        match command {
            Command::Capa => {
                if self.state == SessionState::AwaitingTls {
                    return Err(wrong());
                }
            }
            Command::Quit => {}
            Command::Stls => {
                if self.stls_done || self.channel != ChannelSecurity::Plaintext {
                    return Err(UsageError::AlreadyTls);
                }
                if !matches!(
                    self.state,
                    SessionState::Greeting | SessionState::Authorization
                ) {
                    return Err(wrong());
                }
            }
            Command::User(_)
            | Command::Pass(_)
            | Command::Apop { .. }
            | Command::Auth { .. }
            | Command::AuthList => {
                if !matches!(
                    self.state,
                    SessionState::Greeting | SessionState::Authorization
                ) {
                    return Err(wrong());
                }
            }
            _ => {
                if !login_done_or_pending {
                    return Err(wrong());
                }
            }
        }
        Ok(())
    }

    /// Answers the pending AUTH challenge with `response` (raw bytes; base64-encoded here).
    ///
    /// # Errors
    ///
    /// [`UsageError::NoChallenge`] when no challenge is waiting for an answer;
    /// [`UsageError::ResponseTooLong`] when the encoded response exceeds the AUTH line limit.
    pub fn auth_respond(&mut self, response: &[u8], now: Instant) -> Result<(), UsageError> {
        let encoded = framing::encode_response(response);
        let data = SaslData::try_from(encoded.expose().as_str())
            .map_err(|_| UsageError::ResponseTooLong)?;
        if data.as_str().len() + 2 > self.options.wire.max_auth_line {
            return Err(UsageError::ResponseTooLong);
        }
        self.send_auth_line(&AuthResponse::Data(data), now)
    }

    /// Cancels the pending AUTH exchange with `*` (RFC 5034 §4); the server answers `-ERR`.
    ///
    /// # Errors
    ///
    /// [`UsageError::NoChallenge`] when no challenge is waiting for an answer.
    pub fn auth_cancel(&mut self, now: Instant) -> Result<(), UsageError> {
        self.send_auth_line(&AuthResponse::Cancel, now)
    }

    fn send_auth_line(&mut self, line: &AuthResponse, now: Instant) -> Result<(), UsageError> {
        if self.failed {
            return Err(UsageError::Closed);
        }
        let Some(front) = self.in_flight.front_mut() else {
            return Err(UsageError::NoChallenge);
        };
        if !matches!(front.phase, Phase::AwaitingAuthResponse) {
            return Err(UsageError::NoChallenge);
        }
        front.phase = Phase::Status;
        line.encode(&mut self.out);
        let shown = if matches!(line, AuthResponse::Cancel) {
            "*"
        } else {
            "****"
        };
        tracing::trace!(target: TRACE, "C: {shown}");
        self.last_activity = now;
        Ok(())
    }

    /// Feeds bytes received from the server at `now`.
    pub fn handle_input(&mut self, input: &[u8], now: Instant) {
        if self.failed || input.is_empty() {
            return;
        }
        if self.state == SessionState::AwaitingTls {
            // Whatever arrives between `+OK` to STLS and the handshake was injected into the
            // plaintext stream (SECURITY.md, "NO STARTTLS").
            self.fail(ProtocolError::DataBeforeTls);
            return;
        }
        self.last_activity = now;
        self.framer.push(input);
        self.drain_frames();
        self.pump();
    }

    fn drain_frames(&mut self) {
        while !self.failed {
            match self.framer.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    if let Err(e) = self.on_frame(frame) {
                        self.fail(e);
                    }
                }
                // A body keeps streaming to its `CRLF.CRLF`; a bare line ending in it cannot end
                // it early, so it is data, not an attack on framing.
                Err(FrameError::BareLineEndingInBody) => {}
                Err(e) => self.fail(ProtocolError::Framing(e)),
            }
            if self.state == SessionState::AwaitingTls && !self.failed {
                if !self.framer.buffered().is_empty() {
                    self.fail(ProtocolError::DataBeforeTls);
                }
                break;
            }
        }
    }

    /// The server closed its side of the connection.
    pub fn handle_eof(&mut self) {
        if self.failed {
            return;
        }
        if self.quit_answered && self.framer.buffered().is_empty() {
            self.failed = true;
            self.queue.clear();
            self.events.push_back(Event::Closed);
            return;
        }
        self.fail(ProtocolError::UnexpectedEof);
    }

    /// Time has passed: fails the session when the deadline of [`Client::poll_timeout`] is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        if let Some((deadline, kind)) = self.deadline()
            && now >= deadline
        {
            self.fail(ProtocolError::Timeout(kind));
        }
    }

    /// The STLS handshake the shell performed after `+OK` succeeded, on a channel of this
    /// security. Capabilities are forgotten (read them again with CAPA, RFC 2595 §4) and queued
    /// commands resume.
    pub fn handle_tls_established(&mut self, security: ChannelSecurity, now: Instant) {
        if self.failed || self.state != SessionState::AwaitingTls {
            return;
        }
        self.channel = security;
        self.capabilities = None;
        self.state = SessionState::Authorization;
        self.last_activity = now;
        self.pump();
    }

    /// Appends the bytes to send to `buf` (a pipelined group in one piece).
    pub fn poll_transmit(&mut self, buf: &mut BytesMut) {
        if self.out.is_empty() {
            return;
        }
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.extend_from_slice(&self.out);
            self.out.clear();
        }
    }

    /// When [`Client::handle_timeout`] must be called next, if anything is awaited.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        self.deadline().map(|(at, _)| at)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn deadline(&self) -> Option<(Instant, TimeoutKind)> {
        if self.state == SessionState::Greeting {
            return Some((
                self.connected_at + self.options.greeting_timeout,
                TimeoutKind::Greeting,
            ));
        }
        let front = self.in_flight.front()?;
        match front.phase {
            Phase::Status => Some((
                self.last_activity + self.options.command_timeout,
                TimeoutKind::Command,
            )),
            // The application owes the next line; the server waits for it.
            Phase::AwaitingAuthResponse => None,
            _ => Some((
                self.last_activity + self.options.body_idle_timeout,
                TimeoutKind::BodyIdle,
            )),
        }
    }

    fn fail(&mut self, error: ProtocolError) {
        if self.failed {
            return;
        }
        tracing::debug!(target: TRACE, "session lost: {error}");
        self.failed = true;
        self.queue.clear();
        self.in_flight.clear();
        self.out.clear();
        self.events.push_back(Event::ConnectionLost(error));
    }

    /// Moves queued commands to the output as far as the protocol allows.
    fn pump(&mut self) {
        if self.failed {
            return;
        }
        while let Some((_, command)) = self.queue.front() {
            if !self.may_send(command) {
                break;
            }
            let Some((id, command)) = self.queue.pop_front() else {
                break;
            };
            tracing::trace!(target: TRACE, "C: {}", command.redacted());
            command.encode(&mut self.out);
            if matches!(command, Command::Dele(_)) {
                self.dele_sent = true;
            }
            self.in_flight.push_back(InFlight {
                id,
                command,
                phase: Phase::Status,
            });
        }
    }

    fn may_send(&self, command: &Command) -> bool {
        if matches!(
            self.state,
            SessionState::Greeting | SessionState::AwaitingTls
        ) {
            return false;
        }
        if self.in_flight.is_empty() {
            return true;
        }
        let pipelinable = |c: &Command| {
            matches!(
                c,
                Command::Stat
                    | Command::List(_)
                    | Command::Uidl(_)
                    | Command::Retr(_)
                    | Command::Top { .. }
                    | Command::Dele(_)
                    | Command::Rset
                    | Command::Noop
                    | Command::Quit
            )
        };
        self.capabilities.as_ref().is_some_and(Capabilities::pipelining)
            && self.in_flight.len() < self.options.max_in_flight.max(1)
            && pipelinable(command)
            && self.in_flight.iter().all(|f| pipelinable(&f.command))
            // Nothing follows QUIT.
            && !self.in_flight.iter().any(|f| matches!(f.command, Command::Quit))
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), ProtocolError> {
        match frame {
            Frame::Line(line) => self.on_line(&line),
            Frame::BodyChunk(chunk) => self.on_body_chunk(chunk),
            Frame::BodyEnd => self.on_body_end(),
            // Frame is non-exhaustive; the framer yields no other kind in the modes used here.
            _ => Err(ProtocolError::Unsolicited),
        }
    }

    fn on_body_chunk(&mut self, chunk: Bytes) -> Result<(), ProtocolError> {
        let max = self.options.max_body_size;
        let Some(front) = self.in_flight.front_mut() else {
            return Err(ProtocolError::Unsolicited);
        };
        let Phase::Body { octets, .. } = &mut front.phase else {
            return Err(ProtocolError::Unsolicited);
        };
        *octets = octets.saturating_add(chunk.len() as u64);
        if let Some(max) = max
            && *octets > max
        {
            return Err(ProtocolError::BodyTooLarge { max });
        }
        self.events.push_back(Event::BodyChunk {
            id: front.id,
            chunk,
        });
        Ok(())
    }

    fn on_body_end(&mut self) -> Result<(), ProtocolError> {
        let Some(front) = self.in_flight.pop_front() else {
            return Err(ProtocolError::Unsolicited);
        };
        let Phase::Body { status, octets } = front.phase else {
            return Err(ProtocolError::Unsolicited);
        };
        tracing::trace!(target: TRACE, "S: <{octets} octets>\r\nS: .");
        self.complete(front.id, Ok(Response::Body { status, octets }));
        Ok(())
    }

    fn complete(&mut self, id: CommandId, result: CommandResult) {
        self.events.push_back(Event::Completed { id, result });
    }

    fn on_line(&mut self, line: &[u8]) -> Result<(), ProtocolError> {
        tracing::trace!(target: TRACE, "S: {}", line.escape_ascii());
        let wire = &self.options.wire;
        if self.state == SessionState::Greeting {
            let status = StatusLine::parse(line, wire).map_err(ProtocolError::Malformed)?;
            if !status.is_ok() {
                return Err(ProtocolError::GreetingRefused(status));
            }
            let apop_timestamp = ApopTimestamp::from_greeting(status.text());
            self.state = SessionState::Authorization;
            self.events.push_back(Event::Greeting(Greeting {
                status,
                apop_timestamp,
            }));
            return Ok(());
        }
        let Some(front) = self.in_flight.front_mut() else {
            return Err(ProtocolError::Unsolicited);
        };
        match &mut front.phase {
            Phase::Status => {}
            Phase::AwaitingAuthResponse => return Err(ProtocolError::Unsolicited),
            Phase::Body { .. } => return Err(ProtocolError::Unsolicited),
            Phase::Scan(acc) => {
                if acc.push_line(line).map_err(ProtocolError::Malformed)? {
                    return self.finish_listing();
                }
                return Ok(());
            }
            Phase::Uids(acc) => {
                if acc.push_line(line).map_err(ProtocolError::Malformed)? {
                    return self.finish_listing();
                }
                return Ok(());
            }
            Phase::Capa(acc) => {
                if acc.push_line(line).map_err(ProtocolError::Malformed)? {
                    return self.finish_listing();
                }
                return Ok(());
            }
            Phase::Mechanisms(list) => {
                check_len(line, wire.max_response_line)?;
                match pop3::multiline_line(line) {
                    MultiLine::End => return self.finish_listing(),
                    MultiLine::Line(name) => {
                        if list.len() >= wire.max_capabilities {
                            return Err(ProtocolError::Malformed(Pop3Error::TooManyEntries {
                                max: wire.max_capabilities,
                            }));
                        }
                        let mech = std::str::from_utf8(name)
                            .ok()
                            .and_then(|s| SaslMechanism::try_from(s).ok())
                            .ok_or(ProtocolError::Malformed(Pop3Error::BadCapability))?;
                        list.push(mech);
                        return Ok(());
                    }
                }
            }
        }
        // A status line (or, during AUTH, a continuation) answering the front command.
        if matches!(front.command, Command::Auth { .. })
            && (line == b"+" || line.starts_with(b"+ "))
        {
            check_len(line, wire.max_auth_line)?;
            let text = line.get(2..).unwrap_or_default();
            let options = FramingOptions::default();
            let challenge = framing::decode_challenge(text, &options);
            front.phase = Phase::AwaitingAuthResponse;
            let id = front.id;
            self.events
                .push_back(Event::AuthChallenge { id, challenge });
            return Ok(());
        }
        let status = StatusLine::parse(line, wire).map_err(ProtocolError::Malformed)?;
        if !status.is_ok() {
            let Some(done) = self.in_flight.pop_front() else {
                return Err(ProtocolError::Unsolicited);
            };
            if matches!(done.command, Command::Quit) {
                self.quit_answered = true;
            }
            self.complete(done.id, Err(status));
            return Ok(());
        }
        self.on_positive(status)
    }

    fn on_positive(&mut self, status: StatusLine) -> Result<(), ProtocolError> {
        let wire = self.options.wire.clone();
        let maildrop = self.maildrop_count;
        let Some(front) = self.in_flight.front_mut() else {
            return Err(ProtocolError::Unsolicited);
        };
        let next_phase = match &front.command {
            Command::List(None) => Some(Phase::Scan(ListingAccumulator::new(&wire))),
            Command::Uidl(None) => Some(Phase::Uids(ListingAccumulator::new(&wire))),
            Command::Capa => Some(Phase::Capa(CapaAccumulator::new(&wire))),
            Command::AuthList => Some(Phase::Mechanisms(Vec::new())),
            Command::Retr(_) | Command::Top { .. } => {
                self.framer.set_mode(Mode::DotBody);
                front.phase = Phase::Body { status, octets: 0 };
                return Ok(());
            }
            _ => None,
        };
        if let Some(phase) = next_phase {
            front.phase = phase;
            return Ok(());
        }
        let Some(done) = self.in_flight.pop_front() else {
            return Err(ProtocolError::Unsolicited);
        };
        let response = match &done.command {
            Command::Stat => {
                let stat = Stat::parse(status.text()).map_err(ProtocolError::Malformed)?;
                if !self.dele_sent && self.maildrop_count.is_none() {
                    self.maildrop_count = Some(stat.count);
                }
                Response::Stat(stat)
            }
            Command::List(Some(n)) => {
                let scan = ScanListing::parse(status.text()).map_err(ProtocolError::Malformed)?;
                check_number(*n, scan.msg, maildrop)?;
                Response::Scan(scan)
            }
            Command::Uidl(Some(n)) => {
                let uid = UidListing::parse(status.text()).map_err(ProtocolError::Malformed)?;
                check_number(*n, uid.msg, maildrop)?;
                Response::Uid(uid)
            }
            Command::User(_) => Response::Ok(status),
            Command::Pass(_) | Command::Apop { .. } | Command::Auth { .. } => {
                self.state = SessionState::Transaction;
                Response::Ok(status)
            }
            Command::Stls => {
                // Checked before the positive answer is reported, so that no caller can start
                // a handshake over injected plaintext (SECURITY.md, response injection).
                if !self.framer.buffered().is_empty() {
                    return Err(ProtocolError::DataBeforeTls);
                }
                self.stls_done = true;
                self.state = SessionState::AwaitingTls;
                // RFC 2595 §4: nothing learnt before TLS survives it.
                self.capabilities = None;
                Response::Ok(status)
            }
            Command::Quit => {
                self.quit_answered = true;
                Response::Ok(status)
            }
            _ => Response::Ok(status),
        };
        self.complete(done.id, Ok(response));
        Ok(())
    }

    fn finish_listing(&mut self) -> Result<(), ProtocolError> {
        let Some(done) = self.in_flight.pop_front() else {
            return Err(ProtocolError::Unsolicited);
        };
        let response = match done.phase {
            Phase::Scan(acc) => {
                let entries = acc.finish().map_err(ProtocolError::Malformed)?;
                self.check_range(entries.last().map(|e| e.msg))?;
                Response::ScanListing(entries)
            }
            Phase::Uids(acc) => {
                let entries = acc.finish().map_err(ProtocolError::Malformed)?;
                self.check_range(entries.last().map(|e| e.msg))?;
                Response::UidListing(entries)
            }
            Phase::Capa(acc) => {
                let caps = acc.finish().map_err(ProtocolError::Malformed)?;
                self.capabilities = Some(caps.clone());
                Response::Capabilities(caps)
            }
            Phase::Mechanisms(list) => Response::Mechanisms(list),
            _ => return Err(ProtocolError::Unsolicited),
        };
        self.complete(done.id, Ok(response));
        Ok(())
    }

    fn check_range(&self, highest: Option<NonZeroU32>) -> Result<(), ProtocolError> {
        if let (Some(count), Some(msg)) = (self.maildrop_count, highest)
            && msg.get() > count
        {
            return Err(ProtocolError::MessageOutOfRange {
                msg: msg.get(),
                count,
            });
        }
        Ok(())
    }
}

fn check_number(
    asked: NonZeroU32,
    got: NonZeroU32,
    maildrop: Option<u32>,
) -> Result<(), ProtocolError> {
    if asked != got {
        return Err(ProtocolError::MessageNumberMismatch {
            asked: asked.get(),
            got: got.get(),
        });
    }
    if let Some(count) = maildrop
        && got.get() > count
    {
        return Err(ProtocolError::MessageOutOfRange {
            msg: got.get(),
            count,
        });
    }
    Ok(())
}

fn check_len(line: &[u8], max: usize) -> Result<(), ProtocolError> {
    let len = line.len().saturating_add(2);
    if len > max {
        return Err(ProtocolError::Malformed(Pop3Error::LineTooLong {
            len,
            max,
        }));
    }
    Ok(())
}

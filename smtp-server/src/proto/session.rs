//! The session state machine.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use mailferry_sasl::framing::{self, ClientLine, FramingOptions};
use mailferry_sasl::{CredentialStore, Mechanism, ServerOptions, ServerSession, ServerStep};
use mailferry_wire::framer::{Frame, FrameError, FramerOptions, LineEndings, LineFramer, Mode};
use mailferry_wire::smtp::{
    Body, Command, CommandError, CommandOptions, EnhancedCode, MailParams, RcptParams, Reply,
    ReplyCode,
};
use mailferry_wire::tls::ChannelSecurity;
use mailferry_wire::types::{Domain, ForwardPath, ReversePath};

use super::clock::WallClock;
use super::event::{
    AbortReason, CloseReason, CommandId, ConnectionInfo, Context, Envelope, Event, Recipient,
    UsageError,
};
use super::headers::HeaderScan;
use super::options::{Options, ReceivedHeader};

/// A credential store shared by every session of a listener.
pub type SharedStore = Arc<dyn CredentialStore + Send + Sync>;

/// The longest reply line, counting CRLF (RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;

#[derive(Debug)]
enum Pending {
    Greeting,
    Helo {
        name: Domain,
        extended: bool,
    },
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
        params: RcptParams,
    },
    Query,
    DataEnd,
}

// One State per session, never in a collection: its size costs nothing, while boxing the
// pending command would cost an allocation per command.
#[allow(
    clippy::large_enum_variant,
    reason = "one per session; boxing would allocate per command"
)]
enum State {
    /// Waiting for a decision of the application.
    Waiting {
        id: CommandId,
        pending: Pending,
    },
    /// The greeting was a refusal: only QUIT is served (RFC 5321 §3.1).
    Refused,
    /// Reading commands.
    Ready,
    /// Inside an AUTH exchange.
    Auth(Box<ServerSession>),
    /// `220` to STARTTLS queued; the shell runs the handshake.
    Tls,
    /// Reading a DATA body or a BDAT chunk.
    Body {
        bdat: Option<(u64, bool)>,
    },
    Closed,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Waiting { id, pending } => write!(f, "Waiting({id:?}, {pending:?})"),
            State::Refused => f.write_str("Refused"),
            State::Ready => f.write_str("Ready"),
            State::Auth(s) => write!(f, "Auth({:?})", s.mechanism()),
            State::Tls => f.write_str("Tls"),
            State::Body { bdat } => write!(f, "Body({bdat:?})"),
            State::Closed => f.write_str("Closed"),
        }
    }
}

/// A message being received.
#[derive(Debug)]
struct Message {
    /// Body octets received from the client.
    received: u64,
    /// Octets handed to the application.
    delivered: u64,
    /// The reply that will refuse the message at its end; set when it failed on the way.
    failure: Option<Reply>,
    /// The application saw [`Event::MessageAborted`].
    aborted: bool,
    headers: HeaderScan,
    started: Instant,
}

#[cfg(any(fuzzing, test))]
impl Session {
    /// Commands consumed minus replies sent to them.
    pub(crate) fn owed(&self) -> i64 {
        self.owed
    }
}

/// The sans-IO SMTP server session: feed bytes and time in, drain replies, a timer and events.
///
/// See the [crate documentation](crate) for the driving loop.
pub struct Session {
    options: Arc<Options>,
    store: Option<SharedStore>,
    info: ConnectionInfo,
    started: Instant,
    now: Instant,
    framer: LineFramer,
    command_options: CommandOptions,
    out: BytesMut,
    events: VecDeque<Event>,
    next_id: u64,
    state: State,
    ctx: Context,
    mail: Option<(ReversePath, MailParams)>,
    rcpts: Vec<Recipient>,
    bdat_used: bool,
    msg: Option<Message>,
    bad_commands: u32,
    bad_rcpts: u32,
    messages: u32,
    rsets: u32,
    auth_failures: u32,
    last_activity: Instant,
    /// Input arrived before the greeting or before a reply without PIPELINING.
    early_input: bool,
    shutdown: bool,
    /// Replies owed to the client minus replies sent (fuzzing invariant).
    owed: i64,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.info.peer)
            .field("state", &self.state)
            .field("helo", &self.ctx.helo)
            .finish_non_exhaustive()
    }
}

fn code(c: u16) -> ReplyCode {
    // Invariant: every caller passes a literal three-digit code in 200..=599.
    ReplyCode::new(c).expect("literal reply code")
}

/// Keeps replies on the wire safe: no control characters, every line within 512 octets.
fn fit(reply: Reply) -> Reply {
    let enh_len = reply.enhanced().map_or(0, |e| e.to_string().len() + 1);
    // code + separator + enhanced code + CRLF
    let max_text = MAX_REPLY_LINE - 4 - enh_len - 2;
    let clean = reply
        .lines()
        .all(|l| l.len() <= max_text && !l.chars().any(char::is_control));
    if clean {
        return reply;
    }
    let mut lines = Vec::new();
    for line in reply.lines() {
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let mut rest = line.as_str();
        loop {
            if rest.len() <= max_text {
                lines.push(rest.to_owned());
                break;
            }
            let mut cut = max_text;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            lines.push(rest[..cut].to_owned());
            rest = &rest[cut..];
        }
    }
    Reply::new(reply.code(), reply.enhanced(), &lines)
        .or_else(|_| Reply::new(reply.code(), reply.enhanced(), ["Error"]))
        // Invariant: a fixed text without control characters is always a valid reply.
        .expect("fixed reply text")
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Session {
    /// Starts a session at `now`. The first event is [`Event::Connect`]; nothing is sent before
    /// the application answers it.
    pub fn new(
        options: Arc<Options>,
        store: Option<SharedStore>,
        info: ConnectionInfo,
        now: Instant,
    ) -> Session {
        let max_line = options.max_auth_line.max(options.max_command_line);
        let mut framer_options = FramerOptions::default();
        framer_options.max_line_len = max_line;
        framer_options.line_endings = LineEndings::Strict;
        let framer = LineFramer::new(framer_options);
        let mut command_options = CommandOptions::default();
        command_options.max_line_len = options.max_command_line;
        command_options.max_auth_line_len = options.max_auth_line;
        let ctx = Context {
            peer: info.peer,
            helo: None,
            extended: false,
            auth: None,
            security: info.security,
        };
        let mut session = Session {
            options,
            store,
            info,
            started: now,
            now,
            framer,
            command_options,
            out: BytesMut::new(),
            events: VecDeque::new(),
            next_id: 0,
            state: State::Ready,
            ctx,
            mail: None,
            rcpts: Vec::new(),
            bdat_used: false,
            msg: None,
            bad_commands: 0,
            bad_rcpts: 0,
            messages: 0,
            rsets: 0,
            auth_failures: 0,
            last_activity: now,
            early_input: false,
            shutdown: false,
            owed: 1,
        };
        let id = session.id();
        session.state = State::Waiting {
            id,
            pending: Pending::Greeting,
        };
        session.events.push_back(Event::Connect {
            id,
            peer: session.info.peer,
        });
        session
    }

    /// What the application knows about the session (peer, HELO name, identity, security).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Whether the session has ended ([`Event::Closed`] was queued).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether the shell should read more input now. False while the application decides
    /// (unless PIPELINING allows the client to run ahead, within
    /// [`Options::max_pipelined_input`]), during the TLS switch, and after the end.
    pub fn wants_input(&self) -> bool {
        match self.state {
            State::Closed | State::Tls => false,
            State::Waiting { .. } => {
                self.pipelining_active()
                    && self.framer.buffered().len() < self.options.max_pipelined_input
            }
            _ => true,
        }
    }

    /// Octets received and not yet processed.
    pub fn buffered(&self) -> usize {
        self.framer.buffered().len()
    }

    fn id(&mut self) -> CommandId {
        self.next_id += 1;
        CommandId(self.next_id)
    }

    fn pipelining_active(&self) -> bool {
        self.options.pipelining && self.ctx.extended
    }

    /// Appends queued replies to `buf` (so a pipelined group leaves in one write).
    pub fn poll_transmit(&mut self, buf: &mut BytesMut) {
        if !self.out.is_empty() {
            buf.extend_from_slice(&self.out);
            self.out.clear();
            if self.out.capacity() > 16 * 1024 {
                // A burst of replies should not pin memory on an idle connection.
                self.out = BytesMut::new();
            }
        }
    }

    /// Whether replies are queued.
    pub fn has_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let o = &self.options;
        match &self.state {
            State::Closed | State::Waiting { .. } | State::Tls => None,
            State::Ready | State::Refused if self.framer.buffered().is_empty() => {
                Some(self.last_activity + o.session_timeout)
            }
            State::Ready | State::Refused | State::Auth(_) => {
                Some(self.last_activity + o.command_timeout)
            }
            State::Body { .. } => {
                let idle = self.last_activity + o.command_timeout;
                match (&self.msg, o.min_data_rate) {
                    (Some(m), rate) if rate > 0 => {
                        let secs = (m.received / rate).max(o.command_timeout.as_secs());
                        Some(idle.min(m.started + Duration::from_secs(secs)))
                    }
                    _ => Some(idle),
                }
            }
        }
    }

    /// Fires due timers: a silent or slow client gets `421 4.4.2` and the session ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Some(deadline) = self.poll_timeout()
            && now >= deadline
        {
            let text = format!("{} Error: timeout exceeded", self.options.hostname);
            self.send_unsolicited(421, (4, 4, 2), &text);
            self.close(CloseReason::Timeout);
        }
    }

    /// Asks the session to end: an idle session is told `421 4.3.2` now; a busy one finishes
    /// its current command or message, then gets the 421 instead of its next reply.
    pub fn shutdown(&mut self) {
        if self.is_closed() {
            return;
        }
        self.shutdown = true;
        let idle = matches!(self.state, State::Ready | State::Refused)
            && self.framer.buffered().is_empty();
        let greeting = matches!(
            self.state,
            State::Waiting {
                pending: Pending::Greeting,
                ..
            }
        );
        if idle || greeting {
            self.send_shutdown();
        }
    }

    fn send_shutdown(&mut self) {
        let text = format!("{} Service shutting down", self.options.hostname);
        self.send_unsolicited(421, (4, 3, 2), &text);
        self.close(CloseReason::Shutdown);
    }

    /// The client closed its side.
    pub fn handle_eof(&mut self) {
        if self.is_closed() {
            return;
        }
        let reason = if matches!(self.state, State::Refused) {
            CloseReason::Refused
        } else {
            CloseReason::PeerClosed
        };
        self.close(reason);
    }

    /// The TLS handshake after STARTTLS succeeded: every pre-TLS state is forgotten and the
    /// client must send EHLO again (RFC 3207 §4.2).
    ///
    /// # Errors
    ///
    /// [`UsageError::NoTlsPending`] when no STARTTLS is in progress.
    pub fn handle_tls_established(
        &mut self,
        security: ChannelSecurity,
        now: Instant,
    ) -> Result<(), UsageError> {
        if !matches!(self.state, State::Tls) {
            return Err(UsageError::NoTlsPending);
        }
        self.now = now;
        self.last_activity = now;
        self.ctx.security = security;
        self.ctx.helo = None;
        self.ctx.extended = false;
        self.ctx.auth = None;
        self.reset_transaction();
        self.state = State::Ready;
        self.framer = LineFramer::new(self.framer.options());
        Ok(())
    }

    /// Bytes from the client.
    pub fn handle_input(&mut self, input: &[u8], now: Instant) {
        if input.is_empty() {
            return;
        }
        self.now = now;
        self.last_activity = now;
        match self.state {
            State::Closed => return,
            // Plaintext after STARTTLS: never carried into the TLS session (CVE-2011-0411).
            State::Tls => return,
            State::Waiting { .. } if !self.pipelining_active() => {
                // The client did not wait for our reply (or the greeting) without PIPELINING.
                self.early_input = true;
            }
            _ => {}
        }
        // The shell stops reading once `wants_input` says so; input pushed past that is abuse.
        let over = self.framer.buffered().len() >= self.options.max_pipelined_input;
        self.framer.push(input);
        if over && matches!(self.state, State::Waiting { .. }) {
            self.send_unsolicited(421, (4, 7, 0), "Too much pipelined input");
            self.close(CloseReason::TooManyErrors);
            return;
        }
        self.process();
    }

    /// Answers the decision `id`: 2xx accepts, 4xx/5xx refuses (the reply is sent as given,
    /// except that an accepted HELO/EHLO or connection gets the core's greeting).
    ///
    /// # Errors
    ///
    /// [`UsageError::UnknownId`] when `id` is not pending, [`UsageError::UnexpectedCode`] for
    /// a 1xx/3xx reply. After the session ended, answers are ignored.
    pub fn respond(&mut self, id: CommandId, reply: Reply) -> Result<(), UsageError> {
        if self.is_closed() {
            return Ok(());
        }
        match &self.state {
            State::Waiting { id: pending, .. } if *pending == id => {}
            _ => return Err(UsageError::UnknownId(id)),
        }
        let accept = match reply.code().class() {
            2 => true,
            4 | 5 => false,
            _ => return Err(UsageError::UnexpectedCode(reply.code().as_u16())),
        };
        let State::Waiting { pending, .. } = std::mem::replace(&mut self.state, State::Ready)
        else {
            unreachable!("matched above");
        };
        self.decided(pending, accept, reply);
        self.process();
        Ok(())
    }

    /// Accepts the decision `id` with the standard positive reply for it.
    ///
    /// # Errors
    ///
    /// As [`respond`](Self::respond).
    pub fn accept(&mut self, id: CommandId) -> Result<(), UsageError> {
        let reply = match &self.state {
            State::Waiting { id: p, pending } if *p == id => match pending {
                Pending::Greeting => self.reply(220, (2, 0, 0), "Ready"),
                Pending::Helo { name, .. } => {
                    let text = format!("{} Hello {name}", self.options.hostname);
                    self.reply(250, (2, 0, 0), &text)
                }
                Pending::Mail { .. } => self.reply(250, (2, 1, 0), "Sender ok"),
                Pending::Rcpt { .. } => self.reply(250, (2, 1, 5), "Recipient ok"),
                Pending::Query => self.reply(252, (2, 5, 0), "Cannot verify, will accept"),
                Pending::DataEnd => self.reply(250, (2, 0, 0), "Ok: queued"),
            },
            _ => return Err(UsageError::UnknownId(id)),
        };
        self.respond(id, reply)
    }

    fn reply(&self, c: u16, enhanced: (u8, u16, u16), text: &str) -> Reply {
        let enhanced = if self.options.enhanced_status_codes {
            EnhancedCode::new(enhanced.0, enhanced.1, enhanced.2).ok()
        } else {
            None
        };
        let text = sanitize(text);
        Reply::new(code(c), enhanced, [text.as_str()])
            .or_else(|_| Reply::new(code(c), enhanced, ["Error"]))
            // Invariant: a fixed text without control characters is always a valid reply.
            .expect("fixed reply text")
    }

    fn write_reply(&mut self, reply: &Reply) {
        fit(reply.clone()).encode(&mut self.out);
    }

    /// Sends the one reply owed to a command.
    fn send(&mut self, reply: &Reply) {
        self.owed -= 1;
        self.write_reply(reply);
    }

    fn send_new(&mut self, c: u16, enhanced: (u8, u16, u16), text: &str) {
        let r = self.reply(c, enhanced, text);
        self.send(&r);
    }

    /// A reply not owed to any command (a timeout or shutdown 421, RFC 5321 §3.8).
    fn send_unsolicited(&mut self, c: u16, enhanced: (u8, u16, u16), text: &str) {
        let r = self.reply(c, enhanced, text);
        if self.owed > 0 {
            self.owed -= 1;
        }
        self.write_reply(&r);
    }

    fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        if self.msg.as_ref().is_some_and(|m| !m.aborted) {
            self.events
                .push_back(Event::MessageAborted(AbortReason::ConnectionClosed));
        }
        self.msg = None;
        self.state = State::Closed;
        self.framer = LineFramer::new(self.framer.options());
        self.events.push_back(Event::Closed(reason));
    }

    fn reset_transaction(&mut self) {
        self.mail = None;
        self.rcpts.clear();
        self.bdat_used = false;
        if let Some(m) = self.msg.take()
            && !m.aborted
        {
            self.events
                .push_back(Event::MessageAborted(AbortReason::Reset));
        }
    }

    /// Counts a bad command; the last one allowed gets `421 4.7.0` instead of its reply.
    fn bad_command(&mut self, c: u16, enhanced: (u8, u16, u16), text: &str) {
        self.bad_commands += 1;
        if self.bad_commands >= self.options.max_bad_commands {
            let text = format!("{} Error: too many errors", self.options.hostname);
            self.send_new(421, (4, 7, 0), &text);
            self.close(CloseReason::TooManyErrors);
        } else {
            self.send_new(c, enhanced, text);
        }
    }

    fn violation(&mut self, verb: &str) {
        let text = format!("Error: improper command pipelining after {verb}");
        self.send_new(503, (5, 5, 0), &text);
        self.close(CloseReason::ProtocolViolation);
    }

    /// Runs the state machine over buffered input until it must wait.
    fn process(&mut self) {
        loop {
            match self.state {
                State::Ready | State::Refused => {
                    if self.shutdown {
                        self.send_shutdown();
                        return;
                    }
                    match self.framer.next_frame() {
                        Ok(None) => return,
                        Ok(Some(Frame::Line(line))) => {
                            self.owed += 1;
                            self.command_line(&line);
                        }
                        Ok(Some(_)) => return, // not produced in Lines mode
                        Err(e) => {
                            self.owed += 1;
                            self.frame_error(e);
                        }
                    }
                }
                State::Auth(_) => match self.framer.next_frame() {
                    Ok(None) => return,
                    Ok(Some(Frame::Line(line))) => {
                        self.owed += 1;
                        self.auth_line(&line);
                    }
                    Ok(Some(_)) => return,
                    Err(_) => {
                        // An over-long or bare-LF continuation line ends the exchange.
                        self.owed += 1;
                        let mechanism = match &self.state {
                            State::Auth(s) => s.mechanism(),
                            _ => Mechanism::Plain,
                        };
                        self.state = State::Ready;
                        let r = self.reply(501, (5, 5, 2), "Cannot decode response");
                        self.auth_failed(r, mechanism);
                    }
                },
                State::Body { bdat } => match self.framer.next_frame() {
                    Ok(None) => return,
                    Ok(Some(Frame::BodyChunk(chunk))) => self.body_chunk(chunk),
                    Ok(Some(Frame::BodyEnd)) => {
                        self.owed += 1;
                        self.body_end(bdat);
                    }
                    Ok(Some(_)) => return,
                    Err(FrameError::BareLineEndingInBody) => {
                        let r = self.reply(550, (5, 5, 2), "Message contains bare CR or LF");
                        self.fail_message(AbortReason::BareLineEnding, r);
                    }
                    Err(_) => {}
                },
                State::Waiting { .. } | State::Tls | State::Closed => return,
            }
        }
    }

    fn frame_error(&mut self, e: FrameError) {
        match e {
            FrameError::LineTooLong { .. } => self.bad_command(500, (5, 5, 2), "Line too long"),
            _ => self.bad_command(500, (5, 5, 2), "Bare CR or LF in command not allowed"),
        }
    }

    fn command_line(&mut self, line: &[u8]) {
        let more_buffered = !self.framer.buffered().is_empty();
        let command = match Command::parse_with(line, &self.command_options) {
            Ok(c) => c,
            Err(e) => return self.command_error(&e),
        };
        if matches!(self.state, State::Refused) {
            if matches!(command, Command::Quit) {
                self.send_quit();
                self.close(CloseReason::Refused);
            } else {
                self.bad_command(503, (5, 5, 1), "Service refused, send QUIT");
            }
            return;
        }
        // RFC 2920 §3.1: these end a group even with PIPELINING; without it, every command does.
        let group_end = matches!(
            command,
            Command::Ehlo(_) | Command::Helo(_) | Command::Auth { .. }
        );
        if more_buffered
            && (group_end || !self.pipelining_active())
            && !matches!(command, Command::StartTls | Command::Quit)
        {
            return self.violation(command.verb());
        }
        match command {
            Command::Ehlo(name) => self.helo(name, true),
            Command::Helo(name) => self.helo(name, false),
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, params),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.rsets += 1;
                if self.options.max_rset > 0 && self.rsets > self.options.max_rset {
                    let text = format!("{} Error: too many RSET commands", self.options.hostname);
                    self.send_new(421, (4, 7, 0), &text);
                    self.close(CloseReason::TooManyErrors);
                } else {
                    self.reset_transaction();
                    self.send_new(250, (2, 0, 0), "Ok");
                }
            }
            Command::Noop(_) => self.send_new(250, (2, 0, 0), "Ok"),
            Command::Help(_) => self.send_new(214, (2, 0, 0), "See RFC 5321"),
            Command::Quit => {
                self.send_quit();
                self.close(CloseReason::Quit);
            }
            Command::Vrfy(arg) => {
                if self.options.vrfy {
                    self.wait(Pending::Query, |id| Event::Vrfy { id, arg });
                } else {
                    self.send_new(252, (2, 5, 0), "Cannot VRFY user, but will accept message");
                }
            }
            Command::Expn(arg) => {
                if self.options.expn {
                    self.wait(Pending::Query, |id| Event::Expn { id, arg });
                } else {
                    self.bad_command(502, (5, 5, 1), "EXPN not implemented");
                }
            }
            Command::StartTls => self.starttls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(
                mechanism.as_str(),
                initial_response.as_ref().map(|r| r.as_str()),
            ),
            _ => self.bad_command(502, (5, 5, 1), "Command not implemented"),
        }
    }

    fn send_quit(&mut self) {
        let text = self
            .options
            .quit_text
            .replace("#HostName#", self.options.hostname.as_str());
        self.send_new(221, (2, 0, 0), &text);
    }

    fn command_error(&mut self, e: &CommandError) {
        match e {
            CommandError::UnknownCommand => {
                self.bad_command(500, (5, 5, 1), "Command unrecognized");
            }
            CommandError::LineTooLong { .. } => self.bad_command(500, (5, 5, 2), "Line too long"),
            CommandError::Param(_) => {
                self.bad_command(501, (5, 5, 4), "Syntax error in parameters")
            }
            CommandError::Path(_) | CommandError::Domain(_) => {
                self.bad_command(501, (5, 1, 3), "Bad address syntax")
            }
            _ => self.bad_command(501, (5, 5, 2), "Syntax error"),
        }
    }

    fn wait(&mut self, pending: Pending, event: impl FnOnce(CommandId) -> Event) {
        let id = self.id();
        self.events.push_back(event(id));
        self.state = State::Waiting { id, pending };
    }

    fn helo(&mut self, name: Domain, extended: bool) {
        let lower = name.as_str().to_ascii_lowercase();
        if self
            .options
            .refused_helo_substrings
            .iter()
            .any(|s| !s.is_empty() && lower.contains(&s.to_ascii_lowercase()))
        {
            return self.send_new(550, (5, 7, 1), "HELO/EHLO name refused");
        }
        let event_name = name.clone();
        self.wait(Pending::Helo { name, extended }, |id| Event::Helo {
            id,
            name: event_name,
            extended,
        });
    }

    fn auth_offered(&self) -> Vec<Mechanism> {
        if self.store.is_none()
            || self.ctx.auth.is_some()
            || (self.options.auth_requires_tls && self.ctx.security == ChannelSecurity::Plaintext)
        {
            return Vec::new();
        }
        self.options
            .auth_mechanisms
            .iter()
            .copied()
            .filter(|m| ServerSession::MECHANISMS.contains(m))
            .collect()
    }

    fn ehlo_reply(&self, first: &str) -> Reply {
        let o = &self.options;
        let mut lines = vec![if first.is_empty() {
            o.hostname.to_string()
        } else {
            first.to_owned()
        }];
        if o.pipelining {
            lines.push("PIPELINING".into());
        }
        if o.eight_bit_mime {
            lines.push("8BITMIME".into());
        }
        lines.push(match o.max_message_size {
            0 => "SIZE".into(),
            n => format!("SIZE {n}"),
        });
        if o.starttls && self.ctx.security == ChannelSecurity::Plaintext {
            lines.push("STARTTLS".into());
        }
        if o.dsn {
            lines.push("DSN".into());
        }
        let mechs = self.auth_offered();
        if !mechs.is_empty() {
            let names: Vec<&str> = mechs.iter().map(|m| m.name()).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        if o.enhanced_status_codes {
            lines.push("ENHANCEDSTATUSCODES".into());
        }
        if o.smtputf8 {
            lines.push("SMTPUTF8".into());
        }
        if o.chunking {
            lines.push("CHUNKING".into());
        }
        if o.advertise_help {
            lines.push("HELP".into());
        }
        Reply::new(code(250), None, &lines)
            .or_else(|_| Reply::new(code(250), None, [o.hostname.as_str()]))
            // Invariant: a validated domain is a valid reply text.
            .expect("hostname reply")
    }

    fn decided(&mut self, pending: Pending, accept: bool, reply: Reply) {
        match pending {
            Pending::Greeting => {
                if self.early_input {
                    self.send_new(554, (5, 5, 0), "Error: SMTP protocol synchronization");
                    self.close(CloseReason::ProtocolViolation);
                } else if accept {
                    let banner = self.banner();
                    let r = Reply::new(code(220), None, [banner.as_str()])
                        .unwrap_or_else(|_| self.reply(220, (2, 0, 0), "Ready"));
                    self.send(&r);
                } else {
                    self.send(&reply);
                    self.state = State::Refused;
                }
            }
            Pending::Helo { name, extended } => {
                if self.early_input {
                    return self.violation(if extended { "EHLO" } else { "HELO" });
                }
                if accept {
                    self.reset_transaction();
                    self.ctx.helo = Some(name);
                    self.ctx.extended = extended;
                    if extended {
                        let r = self.ehlo_reply(reply.first_line());
                        self.send(&r);
                    } else {
                        self.send(&reply);
                    }
                } else {
                    self.send(&reply);
                }
            }
            Pending::Mail { from, params } => {
                if self.early_input {
                    return self.violation("MAIL");
                }
                if accept {
                    self.mail = Some((from, params));
                }
                self.send(&reply);
            }
            Pending::Rcpt { to, params } => {
                if self.early_input {
                    return self.violation("RCPT");
                }
                if accept {
                    self.rcpts.push(Recipient { to, params });
                    self.send(&reply);
                } else {
                    self.reject_recipient(to, reply);
                }
            }
            Pending::Query => {
                if self.early_input {
                    return self.violation("VRFY");
                }
                self.send(&reply);
            }
            Pending::DataEnd => {
                if self.early_input {
                    return self.violation("DATA");
                }
                if accept {
                    self.messages += 1;
                }
                self.msg = None;
                if self.framer.buffered().is_empty() {
                    // Give back the memory a big message grew (idle connections stay small).
                    self.framer = LineFramer::new(self.framer.options());
                }
                self.reset_transaction();
                self.send(&reply);
            }
        }
    }

    fn reject_recipient(&mut self, to: ForwardPath, reply: Reply) {
        self.bad_rcpts += 1;
        self.events.push_back(Event::RecipientRejected {
            to,
            reply: reply.clone(),
        });
        if self.bad_rcpts >= self.options.max_bad_recipients {
            let text = format!("{} Error: too many bad recipients", self.options.hostname);
            self.send_new(421, (4, 7, 0), &text);
            self.close(CloseReason::TooManyErrors);
        } else {
            self.send(&reply);
        }
    }

    fn wall(&self) -> WallClock {
        let elapsed = self.now.saturating_duration_since(self.started).as_secs();
        self.info.time.plus(elapsed)
    }

    fn banner(&self) -> String {
        let wall = self.wall();
        let text = self
            .options
            .banner
            .replace("#HostName#", self.options.hostname.as_str())
            .replace("#ConnectedIP#", &self.info.peer.to_string())
            .replace("#TimeUTC#", &wall.rfc5322_utc())
            .replace("#Time#", &wall.rfc5322_local())
            .replace("#UnixTime#", &wall.unix_seconds.to_string());
        sanitize(&text)
    }

    fn need_helo(&mut self) -> bool {
        if self.ctx.helo.is_none() {
            self.bad_command(503, (5, 5, 1), "Error: send HELO/EHLO first");
            return false;
        }
        true
    }

    fn mail(&mut self, from: ReversePath, params: MailParams) {
        if !self.need_helo() {
            return;
        }
        let o = Arc::clone(&self.options);
        if self.mail.is_some() {
            return self.bad_command(503, (5, 5, 1), "Error: nested MAIL command");
        }
        if o.require_tls && self.ctx.security == ChannelSecurity::Plaintext {
            return self.send_new(530, (5, 7, 0), "Must issue a STARTTLS command first");
        }
        if o.require_auth && self.ctx.auth.is_none() {
            return self.send_new(530, (5, 7, 0), "Authentication required");
        }
        if o.max_messages_per_session > 0 && self.messages >= o.max_messages_per_session {
            return self.send_new(452, (4, 7, 1), "Error: too many messages in this session");
        }
        let esmtp = params != MailParams::default();
        let unsupported = (esmtp && !self.ctx.extended)
            || (!o.dsn && (params.ret.is_some() || params.envid.is_some()))
            || (!o.smtputf8 && params.smtputf8)
            || (!o.eight_bit_mime && params.body == Some(Body::EightBitMime))
            || params.body == Some(Body::BinaryMime)
            || !params.other.is_empty();
        if unsupported {
            return self.send_new(555, (5, 5, 4), "Unsupported MAIL parameter");
        }
        if let Some(size) = params.size
            && o.max_message_size > 0
            && size > o.max_message_size
        {
            return self.send_new(552, (5, 3, 4), "Message size exceeds fixed limit");
        }
        if from.requires_smtputf8() && !params.smtputf8 {
            return self.send_new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8");
        }
        let (f, p) = (from.clone(), params.clone());
        self.wait(Pending::Mail { from, params }, |id| Event::MailFrom {
            id,
            from: f,
            params: p,
        });
    }

    fn rcpt(&mut self, to: ForwardPath, params: RcptParams) {
        let Some((_, mail_params)) = &self.mail else {
            return self.bad_command(503, (5, 5, 1), "Error: need MAIL command");
        };
        let smtputf8 = mail_params.smtputf8;
        let o = Arc::clone(&self.options);
        if params != RcptParams::default()
            && (!o.dsn || !self.ctx.extended || !params.other.is_empty())
        {
            return self.send_new(555, (5, 5, 4), "Unsupported RCPT parameter");
        }
        if to.requires_smtputf8() && !smtputf8 {
            return self.send_new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8");
        }
        if self.rcpts.len() >= o.max_recipients {
            let r = self.reply(452, (4, 5, 3), "Error: too many recipients");
            self.events.push_back(Event::RecipientRejected {
                to,
                reply: r.clone(),
            });
            return self.send(&r);
        }
        let (t, p) = (to.clone(), params.clone());
        self.wait(Pending::Rcpt { to, params }, |id| Event::RcptTo {
            id,
            to: t,
            params: p,
        });
    }

    fn transaction_error(&mut self) -> Option<(u16, (u8, u16, u16), &'static str)> {
        if self.mail.is_none() {
            Some((503, (5, 5, 1), "Error: need MAIL command"))
        } else if self.rcpts.is_empty() {
            Some((554, (5, 5, 1), "Error: no valid recipients"))
        } else {
            None
        }
    }

    fn data(&mut self) {
        if self.bdat_used {
            return self.bad_command(503, (5, 5, 1), "Error: DATA after BDAT");
        }
        if let Some((c, e, t)) = self.transaction_error() {
            return self.bad_command(c, e, t);
        }
        // The 354 carries no enhanced code, as in RFC 5321 Appendix D.
        let text = sanitize(&self.options.data_text);
        let r = Reply::new(code(354), None, [text.as_str()])
            .unwrap_or_else(|_| self.reply(354, (2, 0, 0), "Start mail input"));
        self.send(&r);
        self.start_message();
        self.framer.set_mode(Mode::DotBody);
        self.state = State::Body { bdat: None };
    }

    fn bdat(&mut self, size: u64, last: bool) {
        if !self.options.chunking {
            return self.bad_command(502, (5, 5, 1), "Command not implemented");
        }
        // The chunk's octets follow the command whatever the answer: always consume them.
        // The one reply to `BDAT` comes at the chunk's end, which counts as the command.
        self.owed -= 1;
        self.framer.set_mode(Mode::Counted(size));
        self.state = State::Body {
            bdat: Some((size, last)),
        };
        let failure = self.transaction_error();
        if self.msg.is_none() {
            self.start_message();
        }
        self.bdat_used = true;
        if let Some((c, e, t)) = failure {
            let r = self.reply(c, e, t);
            if let Some(m) = &mut self.msg {
                m.failure = Some(r);
                m.aborted = true;
            }
            self.bad_commands += 1;
        }
        if let Some(m) = &self.msg
            && self.options.max_message_size > 0
            && m.received.saturating_add(size) > self.options.max_message_size
            && m.failure.is_none()
        {
            let r = self.reply(552, (5, 3, 4), "Message size exceeds fixed limit");
            self.fail_message(AbortReason::TooLarge, r);
        }
    }

    fn start_message(&mut self) {
        self.msg = Some(Message {
            received: 0,
            delivered: 0,
            failure: None,
            aborted: false,
            headers: HeaderScan::default(),
            started: self.now,
        });
        if self.mail.is_none() {
            return;
        }
        let prefix = self.trace_fields();
        if !prefix.is_empty() {
            self.deliver(prefix.freeze());
        }
    }

    fn deliver(&mut self, chunk: Bytes) {
        if let Some(m) = &mut self.msg {
            m.delivered += chunk.len() as u64;
            self.events.push_back(Event::MessageChunk(chunk));
        }
    }

    fn protocol_name(&self) -> &'static str {
        let tls = self.ctx.security != ChannelSecurity::Plaintext;
        match (self.ctx.extended, tls, self.ctx.auth.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        }
    }

    /// `Received:` (RFC 5321 §4.4) and the envelope-recipients fields, built only from
    /// validated values: the HELO name is a `Domain`, the peer an IP address, recipients
    /// `ForwardPath`s.
    fn trace_fields(&self) -> BytesMut {
        let o = &self.options;
        let mut out = BytesMut::new();
        let received = match o.received_header {
            ReceivedHeader::All => true,
            ReceivedHeader::AuthenticatedOnly => self.ctx.auth.is_some(),
            ReceivedHeader::None => false,
        };
        if received {
            let helo = self.ctx.helo.as_ref().map_or("unknown", |d| d.as_str());
            let mut line = format!(
                "Received: from {helo} ([{}])\r\n\tby {} with {}",
                self.info.peer,
                o.hostname,
                self.protocol_name()
            );
            if let [only] = self.rcpts.as_slice() {
                line.push_str(&format!("\r\n\tfor <{}>", only.to.as_str()));
            }
            line.push_str(&format!(";\r\n\t{}\r\n", self.wall().rfc5322_local()));
            out.put_slice(line.as_bytes());
        }
        if let Some(name) = &o.recipients_header {
            for r in &self.rcpts {
                out.put_slice(format!("{name}: <{}>\r\n", r.to.as_str()).as_bytes());
            }
        }
        out
    }

    fn fail_message(&mut self, reason: AbortReason, reply: Reply) {
        if let Some(m) = &mut self.msg {
            if m.failure.is_none() {
                m.failure = Some(reply);
            }
            if !m.aborted {
                m.aborted = true;
                self.events.push_back(Event::MessageAborted(reason));
            }
        }
    }

    fn body_chunk(&mut self, chunk: Bytes) {
        let max = self.options.max_message_size;
        let max_hops = self.options.max_hop_count;
        let add_date = self.options.add_date_header;
        let (aborted, received, headers_done) = match &mut self.msg {
            Some(m) => {
                m.received += chunk.len() as u64;
                (m.aborted, m.received, m.headers.done())
            }
            None => return,
        };
        if aborted {
            return;
        }
        if max > 0 && received > max {
            let r = self.reply(552, (5, 3, 4), "Message size exceeds fixed limit");
            return self.fail_message(AbortReason::TooLarge, r);
        }
        if headers_done {
            return self.deliver(chunk);
        }
        let Some(m) = &mut self.msg else { return };
        let end = m.headers.scan(&chunk);
        let (hops, date_seen) = (m.headers.received, m.headers.date_seen);
        if hops > max_hops {
            let r = self.reply(554, (5, 4, 6), "Too many hops");
            return self.fail_message(AbortReason::TooManyHops, r);
        }
        match end {
            Some(at) if add_date && !date_seen => {
                let date = format!("Date: {}\r\n", self.wall().rfc5322_local());
                if at > 0 {
                    self.deliver(chunk.slice(..at));
                }
                self.deliver(Bytes::from(date));
                self.deliver(chunk.slice(at..));
            }
            _ => self.deliver(chunk),
        }
    }

    fn body_end(&mut self, bdat: Option<(u64, bool)>) {
        self.state = State::Ready;
        let Some(m) = &mut self.msg else {
            return self.send_new(451, (4, 3, 0), "Error: no message in progress");
        };
        if let Some(r) = m.failure.take() {
            // Drained to the end: refuse the message and forget the transaction.
            m.aborted = true;
            self.reset_transaction();
            return self.send(&r);
        }
        if let Some((size, false)) = bdat {
            let text = format!("{size} bytes received");
            return self.send_new(250, (2, 0, 0), &text);
        }
        let headers_open = !m.headers.done() && !m.headers.date_seen;
        if self.options.add_date_header && headers_open {
            // Only headers (or nothing): the Date field goes at the end of them.
            let date = format!("Date: {}\r\n", self.wall().rfc5322_local());
            self.deliver(Bytes::from(date));
        }
        let Some((from, params)) = self.mail.clone() else {
            self.reset_transaction();
            return self.send_new(503, (5, 5, 1), "Error: need MAIL command");
        };
        let size = self.msg.as_ref().map_or(0, |m| m.delivered);
        let envelope = Envelope {
            from,
            params,
            recipients: self.rcpts.clone(),
            size,
        };
        self.wait(Pending::DataEnd, |id| Event::DataEnd { id, envelope });
    }

    fn starttls(&mut self) {
        if !self.options.starttls || self.ctx.security != ChannelSecurity::Plaintext {
            return self.bad_command(502, (5, 5, 1), "STARTTLS not available");
        }
        if self.mail.is_some() {
            return self.bad_command(503, (5, 5, 1), "Error: MAIL transaction in progress");
        }
        self.send_new(220, (2, 0, 0), "Ready to start TLS");
        let discarded = self.framer.take_buffered().len();
        self.state = State::Tls;
        self.events.push_back(Event::StartTls { discarded });
    }

    fn auth(&mut self, mechanism: &str, initial: Option<&str>) {
        if self.ctx.auth.is_some() {
            return self.bad_command(503, (5, 5, 1), "Error: already authenticated");
        }
        if self.mail.is_some() {
            return self.bad_command(503, (5, 5, 1), "Error: MAIL transaction in progress");
        }
        if !self.need_helo() {
            return;
        }
        let offered = self.auth_offered();
        let Some(store) = self.store.clone().filter(|_| !offered.is_empty()) else {
            return self.bad_command(503, (5, 5, 1), "Error: authentication not enabled");
        };
        let mech = match Mechanism::from_str(mechanism) {
            Ok(m) if offered.contains(&m) => m,
            _ => {
                return self.send_new(504, (5, 5, 4), "Unrecognized authentication type");
            }
        };
        let mut sasl_options = ServerOptions::default();
        sasl_options.hostname = self.options.hostname.to_string();
        sasl_options.challenge_nonce = self.options.cram_md5_nonce.clone();
        let Ok(mut sasl) = ServerSession::new(mech, &sasl_options) else {
            return self.send_new(504, (5, 5, 4), "Unrecognized authentication type");
        };
        let framing = FramingOptions::default();
        let step = match initial {
            None => sasl.start(None, store.as_ref()),
            Some(text) => match framing::decode_initial_response(text.as_bytes(), &framing) {
                Ok(ir) => sasl.start(Some(ir.expose()), store.as_ref()),
                Err(_) => {
                    let r = self.reply(501, (5, 5, 2), "Cannot decode response");
                    return self.auth_failed(r, mech);
                }
            },
        };
        self.auth_step(sasl, step);
    }

    fn auth_line(&mut self, line: &[u8]) {
        let State::Auth(mut sasl) = std::mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        let Some(store) = self.store.clone() else {
            // Unreachable in practice: AUTH starts only with a store.
            return self.send_new(454, (4, 7, 0), "Temporary authentication failure");
        };
        let step = match framing::decode_response(line, &FramingOptions::default()) {
            Ok(ClientLine::Cancel) => sasl.cancel(),
            Ok(ClientLine::Response(r)) => sasl.step(r.expose(), store.as_ref()),
            Err(_) => {
                let r = self.reply(501, (5, 5, 2), "Cannot decode response");
                return self.auth_failed(r, sasl.mechanism());
            }
        };
        self.auth_step(*sasl, step);
    }

    fn auth_step(&mut self, sasl: ServerSession, step: ServerStep) {
        let mechanism = sasl.mechanism();
        match step {
            ServerStep::Challenge(bytes) => {
                // RFC 4954 §4: `continue-req = "334" SP [base64] CRLF`, the SP even when the
                // challenge is empty, and no enhanced code. Base64 cannot hold CR or LF.
                let text = framing::encode_challenge(&bytes);
                self.owed -= 1;
                self.out.put_slice(b"334 ");
                self.out.put_slice(text.as_bytes());
                self.out.put_slice(b"\r\n");
                self.state = State::Auth(Box::new(sasl));
            }
            ServerStep::Success(identity) => {
                self.send_new(235, (2, 7, 0), "Authentication successful");
                self.ctx.auth = Some(identity.clone());
                self.events.push_back(Event::Authenticated {
                    mechanism,
                    identity,
                });
            }
            ServerStep::Failure(f) => {
                let (c, (a, b, d), text) = f.smtp_reply();
                let r = self.reply(c, (a, b, d), text);
                self.auth_failed(r, mechanism);
            }
        }
    }

    fn auth_failed(&mut self, reply: Reply, mechanism: Mechanism) {
        self.auth_failures += 1;
        self.events.push_back(Event::AuthFailed {
            mechanism,
            reply: reply.clone(),
        });
        if self.auth_failures >= self.options.max_auth_failures {
            let text = format!(
                "{} Error: too many authentication failures",
                self.options.hostname
            );
            self.send_new(421, (4, 7, 0), &text);
            self.close(CloseReason::TooManyErrors);
        } else {
            self.send(&reply);
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

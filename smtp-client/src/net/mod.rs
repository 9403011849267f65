//! The tokio + rustls shell: [`SmtpClient`] owns the socket, both buffers and the TLS session,
//! and drives a [`proto::Client`](crate::proto::Client).

use std::future::{Future, poll_fn};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, BytesMut};
use mailferry_sasl::{
    AttemptOutcome, AuthPolicy, ClientOptions, ClientSession, Credentials, Decision, Exclusion,
    Mechanism, Negotiator, ServerOffer, StopReason,
};
use mailferry_wire::dot::{BodyCheck, EncodeOptions};
use mailferry_wire::net::{MaybeTls, NetError, connect_tcp, tls_connect};
use mailferry_wire::smtp::{Body, Capabilities, Reply};
use mailferry_wire::tls::{ChannelSecurity, Protocol, TlsMode};
use mailferry_wire::types::Domain;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::proto::{
    Client, DeliveryReport, EhloOutcome, Envelope, Event, Options, ProtocolError, StartTlsOutcome,
    UsageError,
};

/// Where and how to connect, and how to authenticate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Host name or IP address (an IPv6 literal may be bracketed).
    pub host: String,
    /// The port; `None` for the TLS mode's default (25, or 465 for implicit TLS).
    pub port: Option<u16>,
    /// How the connection is secured. Default [`TlsMode::StartTlsRequired`].
    pub tls_mode: TlsMode,
    /// The rustls configuration, e.g. from `mailferry_wire::tls::TlsClientSettings`; required
    /// unless `tls_mode` is [`TlsMode::Plaintext`].
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// What a session made with `tls` is worth (`TlsClientSettings::channel_security`):
    /// [`ChannelSecurity::TlsVerified`] unless verification was turned off.
    pub tls_security: ChannelSecurity,
    /// The name the certificate must carry; `None` for `host`.
    pub tls_server_name: Option<String>,
    /// The EHLO argument: this client's host name.
    pub ehlo_name: Domain,
    /// Bind to this local address before connecting.
    pub source: Option<IpAddr>,
    /// Credentials; `None` for no AUTH.
    pub credentials: Option<Credentials>,
    /// The mechanisms the operator enabled (ranked by the negotiator, most secure first).
    pub mechanisms: Vec<Mechanism>,
    /// Whether password-revealing mechanisms may go over a channel that is not verified TLS.
    pub auth_policy: AuthPolicy,
    /// SASL mechanism options (SCRAM iteration bounds, ...).
    pub sasl: ClientOptions,
    /// Protocol limits and timeouts.
    pub options: Options,
}

impl Config {
    /// A configuration for `host` with the defaults: STARTTLS required, no TLS config yet (set
    /// [`Config::tls`]), no credentials, every mechanism enabled.
    pub fn new(host: impl Into<String>, ehlo_name: Domain) -> Config {
        Config {
            host: host.into(),
            port: None,
            tls_mode: TlsMode::StartTlsRequired,
            tls: None,
            tls_security: ChannelSecurity::TlsVerified,
            tls_server_name: None,
            ehlo_name,
            source: None,
            credentials: None,
            mechanisms: Mechanism::ALL
                .iter()
                .copied()
                .filter(|m| m.is_sasl())
                .collect(),
            auth_policy: AuthPolicy::default(),
            sasl: ClientOptions::default(),
            options: Options::default(),
        }
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or_else(|| self.tls_mode.default_port(Protocol::Smtp))
    }
}

/// Why authentication did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The negotiator stopped for good (credentials rejected, server not authenticated, ...).
    Stopped(StopReason),
    /// A temporary failure (454, 4.x.x): retry later.
    Temporary,
    /// Every mechanism in the plan was tried.
    Exhausted,
    /// No enabled mechanism may be used here; why each was left out.
    NoMechanism(Vec<(Mechanism, Exclusion)>),
}

/// What went wrong in the shell.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting or the TLS handshake failed (or timed out).
    #[error("network: {0}")]
    Net(#[from] NetError),
    /// Reading or writing the socket failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// The configuration cannot work (TLS mode without a TLS config, ...).
    #[error("configuration: {0}")]
    Config(&'static str),
    /// The server broke the protocol, timed out, closed, or said 421.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// A local refusal: nothing was sent for it.
    #[error("usage: {0}")]
    Usage(#[from] UsageError),
    /// The server refused the session (greeting 554, EHLO refused).
    #[error("rejected: {reply}")]
    Rejected {
        /// The refusal.
        reply: Reply,
    },
    /// TLS is required and the server did not offer STARTTLS (stripped, or misspelt like
    /// `XSTARTTLS`), or EHLO was refused so only HELO would work. Nothing else was sent.
    #[error("STARTTLS required but not offered")]
    StartTlsNotOffered,
    /// TLS is required and STARTTLS was refused (454, 502, ...). Nothing else was sent.
    #[error("STARTTLS required but refused: {reply}")]
    StartTlsRefused {
        /// The refusal.
        reply: Reply,
    },
    /// Authentication failed.
    #[error("authentication failed: {failure:?}")]
    Auth {
        /// Why.
        failure: AuthFailure,
        /// The server's last AUTH reply, if any.
        reply: Option<Reply>,
    },
    /// An event the shell did not expect at this point (a bug in this crate).
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// Reading the message body from the caller's source failed; the transaction was
    /// abandoned by closing the connection.
    #[error("reading the message body: {0}")]
    BodySource(io::Error),
    /// A [`send`](SmtpClient::send) or [`send_bytes`](SmtpClient::send_bytes) future was
    /// dropped before it finished (a timeout around it, a `select!`), so the server may hold
    /// half a transaction or half a body. Nothing was sent for this call; drop the client and
    /// connect again.
    #[error("a previous send was cancelled; the connection is unusable")]
    Interrupted,
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// An SMTP client connection: connect, then [`send`](Self::send) messages, then
/// [`quit`](Self::quit).
///
/// # Cancel safety
///
/// [`send`](Self::send) and [`send_bytes`](Self::send_bytes) are **not** cancel-safe: a
/// transaction is a conversation, and dropping the future half-way leaves the server inside it
/// (after MAIL, or in the middle of a body). The client notices: every later call returns
/// [`Error::Interrupted`] and sends nothing, rather than start a new transaction on top of
/// the broken one. [`connect`](Self::connect) and [`quit`](Self::quit) own the connection
/// they work on, so dropping them drops (closes) it and leaves nothing to reuse.
#[derive(Debug)]
pub struct SmtpClient {
    /// `None` only while the stream is being upgraded to TLS.
    io: Option<MaybeTls<TcpStream>>,
    core: Client,
    wbuf: BytesMut,
    rbuf: Box<[u8]>,
    /// The body read buffer of [`SmtpClient::send`], allocated at the first send and kept
    /// for the connection's next messages.
    chunk: Vec<u8>,
    eof: bool,
    /// One timer for the connection's life, re-armed lazily (see [`SmtpClient::drive`]).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The deadline `timer` is armed for; `None` once it fired (or before first use).
    armed: Option<tokio::time::Instant>,
    /// A send is running, or one was dropped before it finished (then the connection is in
    /// an unknown state: see [`Error::Interrupted`]).
    in_send: bool,
}

/// How [`SmtpClient::open`] ended when it did not fail outright.
enum Opened {
    /// Boxed: a client (core state included) is large, the other variant small.
    Ready(Box<SmtpClient>),
    /// [`TlsMode::StartTlsWanted`] only: the server accepted STARTTLS but the handshake failed
    /// (or stalled past its deadline). That connection is dropped: its stream is in no known
    /// state.
    HandshakeFailed(NetError),
}

/// Opens a connection as the TLS mode says. In [`TlsMode::StartTlsWanted`] a failed STARTTLS
/// handshake closes that connection and a new plaintext one is opened, on which STARTTLS is not
/// attempted again (SECURITY.md); the negotiator plans with that connection's channel, so
/// password mechanisms stay withheld unless the policy allows insecure authentication. Only
/// the handshake is retried this way: a connect timeout or refusal, a refused or missing
/// STARTTLS (handled inside per the mode) or data after the `220` are not.
///
/// `tls_failed` is sticky across the reconnections of one login (AUTH reconnects): once the
/// handshake has failed, later connections go straight to plaintext instead of failing the
/// same way again.
async fn open_session(config: &Config, tls_failed: &mut bool) -> Result<SmtpClient> {
    if !*tls_failed {
        match SmtpClient::open(config, false).await? {
            Opened::Ready(c) => return Ok(*c),
            Opened::HandshakeFailed(e) => {
                tracing::warn!(
                    "STARTTLS handshake with {} failed ({e}); retrying on a new plaintext \
                     connection (StartTlsWanted), password mechanisms withheld unless insecure \
                     auth is allowed",
                    config.host
                );
                *tls_failed = true;
            }
        }
    }
    match SmtpClient::open(config, true).await? {
        Opened::Ready(c) => Ok(*c),
        // No handshake is attempted when STARTTLS is skipped; kept for completeness.
        Opened::HandshakeFailed(e) => Err(e.into()),
    }
}

impl SmtpClient {
    /// Connects, reads the greeting, says EHLO, upgrades with STARTTLS per the TLS mode and
    /// authenticates when credentials are configured (reconnecting when the negotiator asks,
    /// with the same TLS policy).
    ///
    /// In [`TlsMode::StartTlsWanted`] a failed handshake is retried once on a new plaintext
    /// connection (logged at warn level), and every later reconnection of this login stays on
    /// plaintext; a connect failure is never retried.
    ///
    /// Cancel-safe in the sense that dropping the future closes whatever connection it opened.
    pub async fn connect(config: &Config) -> Result<SmtpClient> {
        let mut tls_failed = false;
        let mut client = open_session(config, &mut tls_failed).await?;
        if let Some(creds) = &config.credentials {
            client = client.authenticate(config, creds, &mut tls_failed).await?;
        }
        Ok(client)
    }

    async fn open(config: &Config, skip_starttls: bool) -> Result<Opened> {
        let o = &config.options;
        let tls_config = || {
            config
                .tls
                .clone()
                .ok_or(Error::Config("TLS mode without a TLS config"))
        };
        let server_name = config.tls_server_name.as_deref().unwrap_or(&config.host);
        let tcp = connect_tcp(
            &config.host,
            config.port(),
            config.source,
            o.connect_timeout,
        )
        .await?;
        let (io, channel) = if config.tls_mode == TlsMode::Implicit {
            let tls = tls_connect(tcp, server_name, tls_config()?, o.tls_handshake_timeout).await?;
            (tls, config.tls_security)
        } else {
            (MaybeTls::Plain(tcp), ChannelSecurity::Plaintext)
        };
        let mut c = SmtpClient {
            io: Some(io),
            core: Client::new(o.clone(), channel, now()),
            wbuf: BytesMut::with_capacity(o.body_chunk_size + 1024),
            rbuf: vec![0; 16 * 1024].into_boxed_slice(),
            chunk: Vec::new(),
            eof: false,
            timer: None,
            armed: None,
            in_send: false,
        };
        match c.next_event().await? {
            Event::Greeting(_) => {}
            Event::GreetingRefused(reply) => {
                c.quit_quietly().await;
                return Err(Error::Rejected { reply });
            }
            e => return Err(unexpected(e)),
        }
        let required = config.tls_mode == TlsMode::StartTlsRequired;
        // HELO offers neither STARTTLS nor AUTH: no fallback when either is needed.
        let fallback = !required && config.credentials.is_none();
        c.ehlo(&config.ehlo_name, fallback, required).await?;
        let wants_tls = config.tls_mode.uses_starttls() && !skip_starttls;
        if wants_tls {
            let offered = c.core.capabilities().is_some_and(|caps| caps.starttls);
            if !offered {
                if required {
                    return Err(Error::StartTlsNotOffered);
                }
                tracing::info!(
                    "{} does not offer STARTTLS; continuing in plaintext",
                    config.host
                );
            } else {
                c.core.starttls(now())?;
                match c.next_event().await? {
                    Event::StartTls {
                        outcome: StartTlsOutcome::Ready,
                        ..
                    } => {
                        c.flush().await?;
                        let tls = tls_config()?;
                        let io = c.io.take().ok_or(Error::Internal("stream missing"))?;
                        match io
                            .upgrade_client(server_name, tls, o.tls_handshake_timeout)
                            .await
                        {
                            Ok(io) => c.io = Some(io),
                            // Only the handshake itself is retried in plaintext (by the
                            // caller, on a new connection); REQUIRED fails here.
                            Err(e @ (NetError::Tls(_) | NetError::Timeout { .. }))
                                if config.tls_mode == TlsMode::StartTlsWanted =>
                            {
                                return Ok(Opened::HandshakeFailed(e));
                            }
                            Err(e) => return Err(e.into()),
                        }
                        c.core.handle_tls_established(config.tls_security, now())?;
                        c.ehlo(&config.ehlo_name, false, true).await?;
                    }
                    Event::StartTls {
                        outcome: StartTlsOutcome::Refused(reply),
                        ..
                    } => {
                        if required {
                            return Err(Error::StartTlsRefused { reply });
                        }
                        tracing::info!("STARTTLS refused ({reply}); continuing in plaintext");
                    }
                    e => return Err(unexpected(e)),
                }
            }
        }
        Ok(Opened::Ready(Box::new(c)))
    }

    async fn ehlo(&mut self, name: &Domain, fallback: bool, required: bool) -> Result<()> {
        self.core.ehlo(name, fallback, now())?;
        match self.next_event().await? {
            Event::Ehlo {
                outcome: EhloOutcome::Extended(_) | EhloOutcome::Helo(_),
                ..
            } => Ok(()),
            Event::Ehlo {
                outcome: EhloOutcome::Refused(reply),
                ..
            } => {
                if required && matches!(reply.code().as_u16(), 500 | 502) {
                    // Only HELO would work, and HELO cannot carry STARTTLS.
                    return Err(Error::StartTlsNotOffered);
                }
                Err(Error::Rejected { reply })
            }
            e => Err(unexpected(e)),
        }
    }

    async fn authenticate(
        mut self,
        config: &Config,
        creds: &Credentials,
        tls_failed: &mut bool,
    ) -> Result<SmtpClient> {
        let offer = |c: &SmtpClient| {
            let names = c
                .core
                .capabilities()
                .map(|caps| caps.auth().collect::<Vec<_>>())
                .unwrap_or_default();
            ServerOffer::new(c.core.channel()).sasl(names.iter().map(|m| m.as_str().to_owned()))
        };
        let channel = self.core.channel();
        let mut negotiator = Negotiator::new(
            &offer(&self),
            &config.mechanisms,
            channel,
            &config.auth_policy,
        )
        .map_err(|_| Error::Config("stale capability list"))?;
        if negotiator.current().is_none() {
            return Err(Error::Auth {
                failure: AuthFailure::NoMechanism(negotiator.excluded().to_vec()),
                reply: None,
            });
        }
        let mut last_reply = None;
        loop {
            let Some(m) = negotiator.current() else {
                return Err(Error::Auth {
                    failure: AuthFailure::Exhausted,
                    reply: last_reply,
                });
            };
            let outcome = match ClientSession::new(m, creds, &config.sasl) {
                Err(e) => AttemptOutcome::LocalError(e),
                Ok(session) => match self.core.auth(session, now()) {
                    Err(UsageError::Sasl(e)) => AttemptOutcome::LocalError(e),
                    Err(e) => return Err(e.into()),
                    Ok(_) => match self.next_event().await {
                        Ok(Event::Auth { outcome, reply, .. }) => {
                            last_reply = Some(reply);
                            outcome
                        }
                        Ok(e) => return Err(unexpected(e)),
                        Err(Error::Protocol(ProtocolError::ServiceClosing(reply))) => {
                            last_reply = Some(reply);
                            AttemptOutcome::ConnectionDropped
                        }
                        Err(Error::Protocol(_) | Error::Io(_)) => AttemptOutcome::ConnectionDropped,
                        Err(e) => return Err(e),
                    },
                },
            };
            tracing::debug!("AUTH {m}: {outcome:?}");
            match negotiator.report(&outcome) {
                Decision::Authenticated => return Ok(self),
                Decision::NextSameConnection(_) if !self.core.is_closed() => {}
                Decision::NextSameConnection(_) | Decision::NextAfterReconnect(_) => {
                    self.quit_quietly().await;
                    // The same TLS policy as the first connection, sticky failure included.
                    self = open_session(config, tls_failed).await?;
                    negotiator
                        .reconnected(&offer(&self), self.core.channel())
                        .map_err(|_| Error::Config("stale capability list"))?;
                }
                Decision::Stop(reason) => {
                    return Err(Error::Auth {
                        failure: AuthFailure::Stopped(reason),
                        reply: last_reply,
                    });
                }
                Decision::StopTemporary => {
                    return Err(Error::Auth {
                        failure: AuthFailure::Temporary,
                        reply: last_reply,
                    });
                }
                _ => {
                    return Err(Error::Auth {
                        failure: AuthFailure::Exhausted,
                        reply: last_reply,
                    });
                }
            }
        }
    }

    /// The capabilities read on the current channel (after TLS, when TLS was used).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.core.capabilities()
    }

    /// The security of the channel.
    pub fn channel(&self) -> ChannelSecurity {
        self.core.channel()
    }

    /// Whether AUTH succeeded.
    pub fn is_authenticated(&self) -> bool {
        self.core.is_authenticated()
    }

    /// Sends one message whose body streams from `body` in chunks of
    /// [`Options::body_chunk_size`], never whole in memory. Returns the per-recipient report;
    /// the connection is ready for the next message.
    ///
    /// The body must match the envelope: 8-bit octets need `params.body =
    /// Some(Body::EightBitMime)`. A body that breaks a check mid-stream (8-bit octet, line over
    /// 1,000 octets) aborts the transaction by closing the connection, so no truncated message
    /// is ever accepted; use [`send_bytes`](Self::send_bytes) to have it checked before
    /// anything is sent.
    ///
    /// # Errors
    ///
    /// [`Error::Interrupted`] (nothing sent) when an earlier send was dropped half-way.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping this future before it completes leaves the connection
    /// unusable, and later calls return [`Error::Interrupted`].
    pub async fn send<R: AsyncRead + Unpin>(
        &mut self,
        envelope: &Envelope,
        body: R,
    ) -> Result<DeliveryReport> {
        if self.in_send {
            return Err(Error::Interrupted);
        }
        self.in_send = true;
        let result = self.send_inner(envelope, body).await;
        // Reached only when the future ran to completion; a dropped send leaves the flag set.
        self.in_send = false;
        result
    }

    async fn send_inner<R: AsyncRead + Unpin>(
        &mut self,
        envelope: &Envelope,
        mut body: R,
    ) -> Result<DeliveryReport> {
        self.core.start_transaction(envelope, now())?;
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.resize(self.core.options().body_chunk_size.max(1), 0);
        let result = self.transfer(&mut body, &mut chunk).await;
        self.chunk = chunk;
        result
    }

    /// Feeds `body` through `chunk` until the transaction ends.
    async fn transfer<R: AsyncRead + Unpin>(
        &mut self,
        body: &mut R,
        chunk: &mut [u8],
    ) -> Result<DeliveryReport> {
        loop {
            if self.core.wants_body() {
                let n = match body.read(chunk).await {
                    Ok(n) => n,
                    Err(e) => {
                        // The message cannot be completed: close rather than terminate it.
                        self.abandon().await;
                        return Err(Error::BodySource(e));
                    }
                };
                if n == 0 {
                    self.core.finish_body(now())?;
                } else {
                    self.core.body_chunk(&chunk[..n], now())?;
                }
                self.flush().await?;
                continue;
            }
            match self.next_event().await? {
                Event::TransactionDone { report, .. } => return Ok(report),
                Event::ReadyForBody { .. } => {}
                e => return Err(unexpected(e)),
            }
        }
    }

    /// Sends a message held in memory, checked first: `SIZE` is filled in, `BODY=8BITMIME` is
    /// set when the body has 8-bit octets (or [`UsageError::EightBitNotSupported`] when the
    /// server lacks 8BITMIME), and a line over the limit is [`UsageError::Body`], all before
    /// anything is sent.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe, as [`send`](Self::send) (which it calls).
    pub async fn send_bytes(&mut self, envelope: &Envelope, body: &[u8]) -> Result<DeliveryReport> {
        if self.in_send {
            return Err(Error::Interrupted);
        }
        let mut envelope = envelope.clone();
        let binary = envelope.params.body == Some(Body::BinaryMime);
        if !binary {
            let mut o = EncodeOptions::default();
            o.max_line_len = self.core.options().max_body_line_len;
            o.allow_8bit = true;
            let mut check = BodyCheck::new(o);
            check.update(body).map_err(UsageError::Body)?;
            let stats = check.finish().map_err(UsageError::Body)?;
            if envelope.params.body.is_none() && body.iter().any(|&b| b >= 0x80) {
                envelope.params.body = Some(Body::EightBitMime);
            }
            if envelope.params.size.is_none() {
                envelope.params.size = Some(stats.bytes_in);
            }
        } else if envelope.params.size.is_none() {
            envelope.params.size = Some(body.len() as u64);
        }
        self.send(&envelope, body).await
    }

    /// Sends QUIT, waits (bounded by the command timeout) for the reply and closes.
    ///
    /// # Errors
    ///
    /// [`Error::Interrupted`] when an earlier send was dropped half-way: the connection is
    /// closed without QUIT (the server may be inside a body, where `QUIT` would be data).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it owns the client, so dropping the future closes the connection.
    pub async fn quit(mut self) -> Result<()> {
        if self.in_send {
            self.shutdown().await;
            return Err(Error::Interrupted);
        }
        self.core.quit(now())?;
        loop {
            match self.next_event().await {
                Ok(Event::Closed) => break,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        self.shutdown().await;
        Ok(())
    }

    async fn quit_quietly(&mut self) {
        if self.core.quit(now()).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while let Ok(e) = self.next_event().await {
                    if e == Event::Closed {
                        break;
                    }
                }
            })
            .await;
        }
        self.shutdown().await;
    }

    async fn abandon(&mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        use tokio::io::AsyncWriteExt;
        if let Some(io) = self.io.as_mut() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), io.shutdown()).await;
        }
    }

    /// Writes everything the core has produced, reading concurrently.
    async fn flush(&mut self) -> Result<()> {
        self.core.poll_transmit(&mut self.wbuf);
        while !self.wbuf.is_empty() {
            self.drive().await?;
            self.core.poll_transmit(&mut self.wbuf);
        }
        Ok(())
    }

    /// The next event, driving I/O and the timer as needed. Cancel-safe: the buffers, the TLS
    /// session and the timer are fields, and an event is only taken from the core when it is
    /// returned.
    async fn next_event(&mut self) -> Result<Event> {
        loop {
            if let Some(e) = self.core.poll_event() {
                return match e {
                    Event::ConnectionLost(p) => Err(Error::Protocol(p)),
                    e => Ok(e),
                };
            }
            if self.core.is_closed() {
                return Err(Error::Protocol(ProtocolError::ClosedByPeer));
            }
            self.core.poll_transmit(&mut self.wbuf);
            self.drive().await?;
        }
    }

    /// Arms the timer for the core's deadline, lazily: a timer already armed for the same or
    /// an earlier instant is kept (when it fires early, `handle_timeout` finds nothing due and
    /// the next round re-arms). Moving a tokio timer earlier wakes the runtime's driver (an
    /// eventfd write and an extra `epoll_wait`); the deadlines of a transaction alternate
    /// (MAIL 5 min, end of data 10 min, ...), so re-arming on every change cost that twice per
    /// message. Whether the timer takes part in this round.
    fn arm_timer(&mut self) -> bool {
        let Some(due) = self.core.poll_timeout().map(tokio::time::Instant::from_std) else {
            return false;
        };
        match (&mut self.timer, self.armed) {
            (Some(_), Some(armed)) if armed <= due => {}
            (Some(timer), _) => {
                timer.as_mut().reset(due);
                self.armed = Some(due);
            }
            (None, _) => {
                self.timer = Some(Box::pin(tokio::time::sleep_until(due)));
                self.armed = Some(due);
            }
        }
        true
    }

    /// One round: write what is due and read what arrives (both at once), or fire the timer.
    async fn drive(&mut self) -> Result<()> {
        let timed = self.arm_timer();
        let SmtpClient {
            io,
            wbuf,
            rbuf,
            eof,
            core,
            timer,
            armed,
            ..
        } = self;
        let mut sleep = timer.as_mut().filter(|_| timed);
        let io = io.as_mut().ok_or(Error::Internal("stream missing"))?;
        let mut flushed = wbuf.is_empty();
        let result = poll_fn(|cx| {
            let mut progress = false;
            if !wbuf.is_empty() {
                match Pin::new(&mut *io).poll_write(cx, wbuf) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())));
                    }
                    Poll::Ready(Ok(n)) => {
                        wbuf.advance(n);
                        flushed = false;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                    Poll::Pending => {}
                }
            }
            if wbuf.is_empty() && !flushed {
                match Pin::new(&mut *io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        flushed = true;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                    Poll::Pending => {}
                }
            }
            if !*eof {
                let mut buf = ReadBuf::new(rbuf);
                match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        if n == 0 {
                            *eof = true;
                            core.handle_eof();
                        } else {
                            core.handle_input(&rbuf[..n], now());
                        }
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                    Poll::Pending => {}
                }
            }
            if let Some(s) = sleep.as_mut()
                && s.as_mut().poll(cx).is_ready()
            {
                *armed = None;
                core.handle_timeout(now());
                return Poll::Ready(Ok(()));
            }
            if progress && wbuf.is_empty() && flushed {
                return Poll::Ready(Ok(()));
            }
            Poll::Pending
        })
        .await;
        if *eof && !core.is_closed() {
            core.handle_eof();
        }
        result
    }
}

fn unexpected(e: Event) -> Error {
    tracing::debug!("unexpected event {e:?}");
    Error::Internal("unexpected event")
}

#[cfg(test)]
mod tests;

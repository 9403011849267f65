//! The tokio + rustls shell: owns the socket, both buffers and the TLS session, drives
//! [`proto::Client`](crate::proto::Client), and offers the convenience API.

use std::future::poll_fn;
use std::io;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use mailferry_sasl::framing;
use mailferry_sasl::{
    ApopTimestamp, AttemptOutcome, AuthPolicy, ClientOptions, ClientSession, Credentials, Decision,
    Exclusion, Mechanism, Negotiator, Pop3AuthError, SaslError, ServerOffer, StopReason,
    apop_digest,
};
use mailferry_wire::net::{MaybeTls, NetError, connect_tcp, tls_connect};
use mailferry_wire::pop3::{
    ApopDigest, Capabilities, Command, Pop3Arg, Pop3Password, SaslData, SaslMechanism, ScanListing,
    Stat, StatusLine, UidListing,
};
use mailferry_wire::tls::{ChannelSecurity, Protocol, TlsMode};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proto::{
    Client, CommandId, CommandResult, Event, Greeting, Options, ProtocolError, Response,
    SessionState, UsageError,
};

/// Everything needed to open an authenticated POP3 session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Host name or IP address (a bracketed IPv6 literal is accepted). Also the TLS server name.
    pub host: String,
    /// The port; `None` takes the default of the TLS mode (995 for implicit TLS, else 110).
    pub port: Option<u16>,
    /// Implicit TLS, STLS required or wanted, or plaintext.
    pub tls_mode: TlsMode,
    /// The rustls configuration (built with `mailferry_wire::tls::TlsClientSettings`) and the
    /// security its sessions have (verified, or unverified when verification was turned off).
    /// Required for every mode but plaintext.
    pub tls: Option<(Arc<ClientConfig>, ChannelSecurity)>,
    /// Who logs in.
    pub credentials: Credentials,
    /// The mechanisms the operator enabled, including the POP3 pseudo-mechanisms
    /// [`Mechanism::User`] and [`Mechanism::Apop`]. Default: all of them.
    pub mechanisms: Vec<Mechanism>,
    /// Whether password-revealing mechanisms may be used without verified TLS. Default: no.
    pub auth_policy: AuthPolicy,
    /// SASL mechanism tuning (SCRAM iteration bounds, ...).
    pub sasl: ClientOptions,
    /// Limits and timeouts.
    pub options: Options,
    /// Most connections opened by one [`Pop3Client::connect`] (the negotiator may ask for a
    /// reconnection after a mechanism broke the connection; a plaintext retry after a failed
    /// STLS handshake in [`TlsMode::StartTlsWanted`] counts too, but is always allowed).
    /// Default 4.
    pub max_connections: usize,
}

impl Config {
    /// A configuration with every mechanism enabled, the default policy and options.
    pub fn new(host: impl Into<String>, tls_mode: TlsMode, credentials: Credentials) -> Config {
        Config {
            host: host.into(),
            port: None,
            tls_mode,
            tls: None,
            credentials,
            mechanisms: Mechanism::ALL.to_vec(),
            auth_policy: AuthPolicy::default(),
            sasl: ClientOptions::default(),
            options: Options::default(),
            max_connections: 4,
        }
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or_else(|| self.tls_mode.default_port(Protocol::Pop3))
    }
}

/// Why TLS could not be established in [`TlsMode::StartTlsRequired`] (or implicit) mode.
/// Reported before any credential is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsRequiredError {
    /// The server refused CAPA, so STLS cannot be known to exist.
    #[error("the server refused CAPA: {0}")]
    CapaRefused(StatusLine),
    /// CAPA did not list STLS.
    #[error("the server does not offer STLS")]
    StlsNotOffered,
    /// The server answered STLS with `-ERR`.
    #[error("the server refused STLS: {0}")]
    StlsRefused(StatusLine),
    /// TLS is needed but [`Config::tls`] is `None`.
    #[error("no TLS client configuration was given")]
    NoTlsConfig,
}

/// Why login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No enabled mechanism is offered and allowed on this channel; the exclusions say why.
    #[error("no usable authentication mechanism: {excluded:?}")]
    NoMechanism {
        /// Each mechanism left out and why.
        excluded: Vec<(Mechanism, Exclusion)>,
    },
    /// The server rejected the credentials (`-ERR [AUTH]`, or `-ERR` after the password): no
    /// other mechanism is tried, to avoid lockouts.
    #[error("credentials rejected with {mechanism}: {reply:?}")]
    CredentialsRejected {
        /// The mechanism used.
        mechanism: Mechanism,
        /// The server's line, when it sent one.
        reply: Option<StatusLine>,
    },
    /// A temporary failure (`[SYS/TEMP]`, `[IN-USE]`, `[LOGIN-DELAY]`): retry later.
    #[error("temporary failure: {reply:?}")]
    Temporary {
        /// The server's line.
        reply: Option<StatusLine>,
    },
    /// A permanent failure (`[SYS/PERM]`).
    #[error("permanent failure: {reply:?}")]
    Permanent {
        /// The server's line.
        reply: Option<StatusLine>,
    },
    /// SCRAM: the server could not prove it knows the password; it may be an impostor.
    #[error("the server failed to authenticate itself")]
    ServerNotAuthenticated,
    /// Every mechanism in the plan failed for mechanism-level reasons.
    #[error("every mechanism failed")]
    Exhausted,
    /// The negotiator asked for more reconnections than [`Config::max_connections`] allows.
    #[error("too many reconnections")]
    TooManyConnections,
}

/// Errors of the shell.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the socket, or writing a sink, failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// Connecting or the TLS handshake failed.
    #[error("{0}")]
    Net(#[from] NetError),
    /// The server broke the protocol, stalled or closed the connection.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// The API was used in a way the session state does not allow.
    #[error("usage: {0}")]
    Usage(#[from] UsageError),
    /// The server answered a command with `-ERR`.
    #[error("rejected: {reply}")]
    Rejected {
        /// The server's line (its RESP-CODE, if any, says why).
        reply: StatusLine,
    },
    /// TLS was required and could not be had; nothing secret was sent.
    #[error("TLS required: {0}")]
    TlsRequired(#[from] TlsRequiredError),
    /// Login failed.
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
    /// A caller-supplied value (user name, password) cannot be sent in a POP3 command.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The outcome of QUIT, i.e. of the UPDATE state (RFC 1939 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateOutcome {
    /// `+OK`: messages marked with DELE are removed.
    Committed(StatusLine),
    /// `-ERR`: some or all deletions were not done (RESP-CODE, e.g. `[SYS/PERM]`, says why).
    Failed(StatusLine),
}

/// One connection: the socket, the core, the buffers.
struct Conn {
    stream: Option<MaybeTls<TcpStream>>,
    client: Client,
    rbuf: Box<[u8]>,
    wbuf: BytesMut,
    needs_flush: bool,
    host: String,
    greeting: Option<Greeting>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("client", &self.client)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

enum Io {
    Read(usize),
    Progress,
}

impl Conn {
    async fn open(config: &Config) -> Result<Conn, Error> {
        let options = &config.options;
        let tcp = connect_tcp(&config.host, config.port(), None, options.connect_timeout).await?;
        let (stream, channel) = if config.tls_mode == TlsMode::Implicit {
            let (tls, security) = config.tls.clone().ok_or(TlsRequiredError::NoTlsConfig)?;
            let stream = tls_connect(tcp, &config.host, tls, options.tls_handshake_timeout).await?;
            (stream, security)
        } else {
            (MaybeTls::Plain(tcp), ChannelSecurity::Plaintext)
        };
        let client = Client::new(options.clone(), channel, Instant::now().into_std());
        let mut conn = Conn {
            stream: Some(stream),
            client,
            rbuf: vec![0; 64 * 1024].into_boxed_slice(),
            wbuf: BytesMut::new(),
            needs_flush: false,
            host: config.host.clone(),
            greeting: None,
        };
        match conn.next_event().await? {
            Event::Greeting(g) => {
                conn.greeting = Some(g);
                Ok(conn)
            }
            other => Err(unexpected(other)),
        }
    }

    /// The next event of the core, doing I/O as needed. Cancel-safe: every buffer is a field.
    async fn next_event(&mut self) -> Result<Event, Error> {
        loop {
            if let Some(event) = self.client.poll_event() {
                if let Event::ConnectionLost(e) = event {
                    return Err(Error::Protocol(e));
                }
                return Ok(event);
            }
            self.client.poll_transmit(&mut self.wbuf);
            let deadline = self.client.poll_timeout().map(Instant::from_std);
            let io = self.io_once();
            let result = match deadline {
                Some(at) => match tokio::time::timeout_at(at, io).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.client.handle_timeout(Instant::now().into_std());
                        continue;
                    }
                },
                None => io.await,
            };
            match result? {
                Io::Read(0) => self.client.handle_eof(),
                Io::Read(n) => {
                    let now = Instant::now().into_std();
                    self.client.handle_input(&self.rbuf[..n], now);
                }
                Io::Progress => {}
            }
        }
    }

    /// Writes what is pending and reads, concurrently, until a read completes or a write made
    /// progress.
    async fn io_once(&mut self) -> Result<Io, Error> {
        let Conn {
            stream,
            rbuf,
            wbuf,
            needs_flush,
            ..
        } = self;
        let stream = stream
            .as_mut()
            .ok_or(Error::Protocol(ProtocolError::UnexpectedEof))?;
        poll_fn(|cx| {
            let mut progressed = false;
            while !wbuf.is_empty() {
                match Pin::new(&mut *stream).poll_write(cx, wbuf) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())));
                    }
                    Poll::Ready(Ok(n)) => {
                        wbuf.advance(n);
                        *needs_flush = true;
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                    Poll::Pending => break,
                }
            }
            if wbuf.is_empty() && *needs_flush {
                match Pin::new(&mut *stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => *needs_flush = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                    Poll::Pending => {}
                }
            }
            let mut read = ReadBuf::new(rbuf);
            match Pin::new(&mut *stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(Io::Read(read.filled().len()))),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => {}
            }
            if progressed {
                Poll::Ready(Ok(Io::Progress))
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn submit(&mut self, command: Command) -> Result<CommandId, Error> {
        Ok(self.client.submit(command, Instant::now().into_std())?)
    }

    /// Runs one command that has no body to its result.
    async fn run(&mut self, command: Command) -> Result<CommandResult, Error> {
        let id = self.submit(command)?;
        self.wait(id).await
    }

    async fn wait(&mut self, id: CommandId) -> Result<CommandResult, Error> {
        match self.next_event().await? {
            Event::Completed { id: done, result } if done == id => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    async fn starttls(&mut self, config: &Config) -> Result<(), Error> {
        let (tls, security) = config.tls.clone().ok_or(TlsRequiredError::NoTlsConfig)?;
        if self.client.state() != SessionState::AwaitingTls {
            // The core refused the switch (e.g. data after `+OK`): report why.
            return Err(match self.client.poll_event() {
                Some(Event::ConnectionLost(e)) => Error::Protocol(e),
                _ => Error::Protocol(ProtocolError::DataBeforeTls),
            });
        }
        let stream = self
            .stream
            .take()
            .ok_or(Error::Protocol(ProtocolError::UnexpectedEof))?;
        let stream = stream
            .upgrade_client(&self.host, tls, config.options.tls_handshake_timeout)
            .await?;
        self.stream = Some(stream);
        self.client
            .handle_tls_established(security, Instant::now().into_std());
        Ok(())
    }
}

/// An event no command of the convenience API can cause: the server broke the protocol.
fn unexpected(event: Event) -> Error {
    match event {
        Event::ConnectionLost(e) => Error::Protocol(e),
        Event::Closed => Error::Protocol(ProtocolError::UnexpectedEof),
        _ => Error::Protocol(ProtocolError::Unsolicited),
    }
}

fn rejected(reply: StatusLine) -> Error {
    Error::Rejected { reply }
}

/// What detection found on one connection.
struct Detected {
    capabilities: Option<Capabilities>,
    auth_listing: Vec<SaslMechanism>,
}

/// How [`open_detected`] ended when it did not fail outright.
enum Opened {
    /// Boxed: a `Conn` (core state included) is large, the other variant small.
    Ready(Box<Conn>, Detected),
    /// [`TlsMode::StartTlsWanted`] only: the server accepted STLS but the handshake failed (or
    /// stalled past its deadline). That connection is dropped: its stream is in no known state.
    HandshakeFailed(NetError),
}

/// Opens a connection as the TLS mode says. In [`TlsMode::StartTlsWanted`] a failed STLS
/// handshake closes that connection and a new plaintext one is opened, on which STLS is not
/// attempted again (SECURITY.md). The caller plans with that connection's channel, so password
/// mechanisms stay withheld unless the policy allows insecure authentication.
///
/// `tls_failed` is sticky across the reconnections of one login: once the handshake has failed,
/// later connections go straight to plaintext instead of failing the same way again.
async fn open_session(config: &Config, tls_failed: &mut bool) -> Result<(Conn, Detected), Error> {
    if !*tls_failed {
        match open_detected(config, false).await? {
            Opened::Ready(conn, detected) => return Ok((*conn, detected)),
            Opened::HandshakeFailed(e) => {
                tracing::warn!(
                    "STLS handshake with {} failed ({e}); retrying on a new plaintext \
                     connection (StartTlsWanted), password mechanisms withheld unless \
                     insecure auth is allowed",
                    config.host
                );
                *tls_failed = true;
            }
        }
    }
    match open_detected(config, true).await? {
        Opened::Ready(conn, detected) => Ok((*conn, detected)),
        // No handshake is attempted with `skip_stls`; kept for completeness of the match.
        Opened::HandshakeFailed(e) => Err(e.into()),
    }
}

/// Opens a connection, reads the greeting and capabilities, and upgrades with STLS as the mode
/// says, unless `skip_stls`. Nothing secret is sent here.
async fn open_detected(config: &Config, skip_stls: bool) -> Result<Opened, Error> {
    let mut conn = Conn::open(config).await?;
    let mut capabilities = match conn.run(Command::Capa).await? {
        Ok(Response::Capabilities(c)) => Ok(c),
        Ok(_) => return Err(Error::Protocol(ProtocolError::Unsolicited)),
        Err(reply) => Err(reply),
    };
    if config.tls_mode.uses_starttls() && !skip_stls {
        let offered = matches!(&capabilities, Ok(c) if c.stls());
        let required = config.tls_mode == TlsMode::StartTlsRequired;
        match (&capabilities, offered) {
            (Err(reply), _) if required => {
                return Err(TlsRequiredError::CapaRefused(reply.clone()).into());
            }
            (_, false) if required => return Err(TlsRequiredError::StlsNotOffered.into()),
            (_, false) => {
                tracing::info!("STLS not offered; continuing in plaintext (StartTlsWanted)");
            }
            (_, true) => match conn.run(Command::Stls).await? {
                Ok(_) => {
                    match conn.starttls(config).await {
                        Ok(()) => {}
                        // Only the handshake itself: data after `+OK` (DataBeforeTls) or a
                        // missing TLS configuration are never retried in plaintext.
                        Err(Error::Net(e @ (NetError::Tls(_) | NetError::Timeout { .. })))
                            if !required =>
                        {
                            return Ok(Opened::HandshakeFailed(e));
                        }
                        Err(e) => return Err(e),
                    }
                    capabilities = match conn.run(Command::Capa).await? {
                        Ok(Response::Capabilities(c)) => Ok(c),
                        Ok(_) => return Err(Error::Protocol(ProtocolError::Unsolicited)),
                        Err(reply) => Err(reply),
                    };
                }
                Err(reply) if required => {
                    return Err(TlsRequiredError::StlsRefused(reply).into());
                }
                Err(reply) => {
                    tracing::info!("STLS refused ({reply}); continuing in plaintext");
                }
            },
        }
    }
    let capabilities = capabilities.ok();
    let mut auth_listing = Vec::new();
    if capabilities.is_none() {
        // RFC 1734 servers without CAPA may list their mechanisms for a bare AUTH.
        if let Ok(Response::Mechanisms(list)) = conn.run(Command::AuthList).await? {
            auth_listing = list;
        }
    }
    Ok(Opened::Ready(
        Box::new(conn),
        Detected {
            capabilities,
            auth_listing,
        },
    ))
}

fn offer(conn: &Conn, detected: &Detected) -> ServerOffer {
    let mut offer = ServerOffer::new(conn.client.channel());
    match &detected.capabilities {
        Some(caps) => {
            offer = offer.sasl(caps.sasl_mechanisms().map(SaslMechanism::as_str));
            if caps.user() {
                offer = offer.user();
            }
        }
        None => {
            // Every RFC 1939 server takes USER; without CAPA there is no other way to know.
            offer = offer
                .sasl(detected.auth_listing.iter().map(SaslMechanism::as_str))
                .user();
        }
    }
    if let Some(ts) = conn
        .greeting
        .as_ref()
        .and_then(|g| g.apop_timestamp.as_ref())
    {
        offer = offer.apop(ts);
    }
    offer
}

fn pop3_failure(reply: &StatusLine, credentials_sent: bool) -> AttemptOutcome {
    AttemptOutcome::Pop3(Pop3AuthError {
        resp_code: reply.code().map(|c| c.as_str().to_owned()),
        credentials_sent,
    })
}

/// How an attempt ended, plus the last `-ERR` (for the error report).
struct Attempt {
    outcome: AttemptOutcome,
    reply: Option<StatusLine>,
}

impl Attempt {
    fn from_result(result: Result<CommandResult, Error>, credentials_sent: bool) -> Attempt {
        match result {
            Ok(Ok(_)) => Attempt {
                outcome: AttemptOutcome::Succeeded,
                reply: None,
            },
            Ok(Err(reply)) => Attempt {
                outcome: pop3_failure(&reply, credentials_sent),
                reply: Some(reply),
            },
            Err(e) => Attempt::broken(&e),
        }
    }

    fn broken(e: &Error) -> Attempt {
        let outcome = match e {
            Error::Protocol(ProtocolError::Malformed(_) | ProtocolError::Unsolicited) => {
                AttemptOutcome::Garbled
            }
            _ => AttemptOutcome::ConnectionDropped,
        };
        Attempt {
            outcome,
            reply: None,
        }
    }
}

async fn attempt(
    conn: &mut Conn,
    mechanism: Mechanism,
    config: &Config,
    detected: &Detected,
) -> Result<Attempt, Error> {
    let creds = &config.credentials;
    let password = || {
        creds
            .password
            .as_ref()
            .ok_or(Error::Auth(AuthError::Exhausted))
    };
    let name = || {
        Pop3Arg::try_from(creds.username.as_str())
            .map_err(|e| Error::InvalidArgument(format!("user name: {e}")))
    };
    match mechanism {
        Mechanism::User => {
            let user = name()?;
            let pass = Pop3Password::try_from(password()?.expose().as_str())
                .map_err(|e| Error::InvalidArgument(format!("password: {e}")))?;
            match conn.run(Command::User(user)).await {
                Ok(Ok(_)) => {}
                other => return Ok(Attempt::from_result(other, false)),
            }
            Ok(Attempt::from_result(
                conn.run(Command::Pass(pass)).await,
                true,
            ))
        }
        Mechanism::Apop => {
            let ts: &ApopTimestamp = conn
                .greeting
                .as_ref()
                .and_then(|g| g.apop_timestamp.as_ref())
                .ok_or(Error::Auth(AuthError::Exhausted))?;
            let digest = apop_digest(ts, password()?);
            let digest = ApopDigest::try_from(digest.expose().as_str())
                .map_err(|e| Error::InvalidArgument(format!("APOP digest: {e}")))?;
            let command = Command::Apop {
                name: name()?,
                digest,
            };
            Ok(Attempt::from_result(conn.run(command).await, true))
        }
        _ => sasl_attempt(conn, mechanism, config, detected).await,
    }
}

async fn sasl_attempt(
    conn: &mut Conn,
    mechanism: Mechanism,
    config: &Config,
    detected: &Detected,
) -> Result<Attempt, Error> {
    let mut session = match ClientSession::new(mechanism, &config.credentials, &config.sasl) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Attempt {
                outcome: AttemptOutcome::LocalError(e),
                reply: None,
            });
        }
    };
    let name = SaslMechanism::try_from(mechanism.name())
        .map_err(|e| Error::InvalidArgument(format!("mechanism: {e}")))?;
    // RFC 5034 servers (those announcing SASL in CAPA) take an initial response; RFC 1734
    // servers do not.
    let mut initial_response = None;
    if detected.capabilities.is_some() {
        match session.initial_response() {
            Ok(Some(ir)) => {
                let text = framing::encode_initial_response(ir.expose());
                let fits = text.expose().len() + name.as_str().len() + 8
                    <= config.options.wire.max_auth_line;
                if fits {
                    initial_response = SaslData::try_from(text.expose().as_str()).ok();
                }
            }
            Ok(None) => {}
            Err(e) => {
                return Ok(Attempt {
                    outcome: AttemptOutcome::LocalError(e),
                    reply: None,
                });
            }
        }
    }
    let mut credentials_sent = initial_response.is_some();
    let id = conn.submit(Command::Auth {
        mechanism: name,
        initial_response,
    })?;
    let mut local_error: Option<SaslError> = None;
    let mut garbled = false;
    loop {
        let event = match conn.next_event().await {
            Ok(e) => e,
            Err(e) => return Ok(Attempt::broken(&e)),
        };
        let now = Instant::now().into_std();
        match event {
            Event::AuthChallenge { id: got, challenge } if got == id => {
                let step = match challenge {
                    Ok(c) => session.step(&c).map_err(Some),
                    Err(_) => Err(None),
                };
                match step {
                    Ok(response) => {
                        credentials_sent = true;
                        conn.client.auth_respond(response.expose(), now)?;
                    }
                    Err(e) => {
                        match e {
                            Some(e) => local_error = Some(e),
                            None => garbled = true,
                        }
                        conn.client.auth_cancel(now)?;
                    }
                }
            }
            Event::Completed { id: got, result } if got == id => {
                let outcome = match (&result, local_error, garbled) {
                    (_, Some(e), _) => AttemptOutcome::LocalError(e),
                    (_, None, true) => AttemptOutcome::Garbled,
                    (Ok(_), None, false) => match session.finish() {
                        Ok(()) => AttemptOutcome::Succeeded,
                        Err(e) => AttemptOutcome::LocalError(e),
                    },
                    (Err(reply), None, false) => pop3_failure(reply, credentials_sent),
                };
                return Ok(Attempt {
                    outcome,
                    reply: result.err(),
                });
            }
            other => return Err(unexpected(other)),
        }
    }
}

/// A connected, authenticated POP3 session in the TRANSACTION state.
#[derive(Debug)]
pub struct Pop3Client {
    conn: Conn,
    mechanism: Mechanism,
    capabilities: Option<Capabilities>,
}

impl Pop3Client {
    /// Connects, reads the greeting and capabilities, upgrades with STLS as [`Config::tls_mode`]
    /// says, and logs in with the safest mechanism both sides allow, reconnecting when a failed
    /// mechanism left the connection unusable.
    ///
    /// In [`TlsMode::StartTlsWanted`], a failed STLS handshake closes that connection; the login
    /// goes on over a new plaintext connection (logged at warn level) without STLS, where
    /// USER/PASS, PLAIN, LOGIN and the token mechanisms are withheld unless
    /// [`AuthPolicy::allow_insecure_auth`] is set.
    ///
    /// # Errors
    ///
    /// [`Error::TlsRequired`] (before anything secret is sent), [`Error::Auth`] when login
    /// fails, and connection, TLS and protocol errors.
    pub async fn connect(config: &Config) -> Result<Pop3Client, Error> {
        let mut tls_failed = false;
        let (mut conn, mut detected) = open_session(config, &mut tls_failed).await?;
        let channel = conn.client.channel();
        let mut negotiator = match Negotiator::new(
            &offer(&conn, &detected),
            &config.mechanisms,
            channel,
            &config.auth_policy,
        ) {
            Ok(n) => n,
            Err(_) => return Err(Error::Protocol(ProtocolError::Unsolicited)),
        };
        tracing::debug!(
            plan = ?negotiator.plan(),
            excluded = ?negotiator.excluded(),
            "authentication plan"
        );
        // The connection whose handshake failed counts.
        let mut connections = if tls_failed { 2 } else { 1 };
        loop {
            let Some(mechanism) = negotiator.current() else {
                return Err(AuthError::NoMechanism {
                    excluded: negotiator.excluded().to_vec(),
                }
                .into());
            };
            tracing::debug!("trying {}", mechanism.name());
            let result = attempt(&mut conn, mechanism, config, &detected).await?;
            match negotiator.report(&result.outcome) {
                Decision::Authenticated => {
                    return Ok(Pop3Client {
                        conn,
                        mechanism,
                        capabilities: detected.capabilities,
                    });
                }
                Decision::NextSameConnection(next) => {
                    tracing::debug!("{} failed; trying {}", mechanism.name(), next.name());
                }
                Decision::NextAfterReconnect(next) => {
                    tracing::debug!(
                        "{} failed; reconnecting for {}",
                        mechanism.name(),
                        next.name()
                    );
                    if connections >= config.max_connections.max(1) {
                        return Err(AuthError::TooManyConnections.into());
                    }
                    drop(conn);
                    let failed_before = tls_failed;
                    (conn, detected) = open_session(config, &mut tls_failed).await?;
                    connections += 1 + usize::from(tls_failed && !failed_before);
                    let channel = conn.client.channel();
                    if negotiator
                        .reconnected(&offer(&conn, &detected), channel)
                        .is_err()
                    {
                        return Err(Error::Protocol(ProtocolError::Unsolicited));
                    }
                }
                Decision::Stop(StopReason::CredentialsRejected) => {
                    return Err(AuthError::CredentialsRejected {
                        mechanism,
                        reply: result.reply,
                    }
                    .into());
                }
                Decision::Stop(StopReason::ServerNotAuthenticated) => {
                    return Err(AuthError::ServerNotAuthenticated.into());
                }
                Decision::Stop(_) => {
                    return Err(AuthError::Permanent {
                        reply: result.reply,
                    }
                    .into());
                }
                Decision::StopTemporary => {
                    return Err(AuthError::Temporary {
                        reply: result.reply,
                    }
                    .into());
                }
                _ => return Err(AuthError::Exhausted.into()),
            }
        }
    }

    /// The mechanism that logged in.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The capabilities read on the final channel (after STLS), if the server has CAPA.
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.capabilities.as_ref()
    }

    /// The security of the channel.
    pub fn channel(&self) -> ChannelSecurity {
        self.conn.client.channel()
    }

    /// Whether commands are pipelined (the server announced PIPELINING).
    pub fn is_pipelining(&self) -> bool {
        self.conn.client.is_pipelining()
    }

    async fn simple(&mut self, command: Command) -> Result<Response, Error> {
        self.conn.run(command).await?.map_err(rejected)
    }

    /// `STAT`: the message count and maildrop size.
    pub async fn stat(&mut self) -> Result<Stat, Error> {
        match self.simple(Command::Stat).await? {
            Response::Stat(s) => Ok(s),
            _ => Err(Error::Protocol(ProtocolError::Unsolicited)),
        }
    }

    /// `LIST`: every message and its size (a hint only: bodies are never trusted to match).
    pub async fn list(&mut self) -> Result<Vec<ScanListing>, Error> {
        match self.simple(Command::List(None)).await? {
            Response::ScanListing(l) => Ok(l),
            _ => Err(Error::Protocol(ProtocolError::Unsolicited)),
        }
    }

    /// `LIST msg`.
    pub async fn list_one(&mut self, msg: NonZeroU32) -> Result<ScanListing, Error> {
        match self.simple(Command::List(Some(msg))).await? {
            Response::Scan(s) => Ok(s),
            _ => Err(Error::Protocol(ProtocolError::Unsolicited)),
        }
    }

    /// `UIDL`: every message and its unique id.
    pub async fn uidl(&mut self) -> Result<Vec<UidListing>, Error> {
        match self.simple(Command::Uidl(None)).await? {
            Response::UidListing(l) => Ok(l),
            _ => Err(Error::Protocol(ProtocolError::Unsolicited)),
        }
    }

    /// `UIDL msg`.
    pub async fn uidl_one(&mut self, msg: NonZeroU32) -> Result<UidListing, Error> {
        match self.simple(Command::Uidl(Some(msg))).await? {
            Response::Uid(u) => Ok(u),
            _ => Err(Error::Protocol(ProtocolError::Unsolicited)),
        }
    }

    /// `DELE msg`: marks the message; it is removed only when [`Pop3Client::quit`] commits.
    pub async fn delete(&mut self, msg: NonZeroU32) -> Result<(), Error> {
        self.simple(Command::Dele(msg)).await.map(drop)
    }

    /// `DELE` for many messages, pipelined when the server allows (like
    /// [`Pop3Client::retrieve_many`]): one round trip for the lot instead of one each.
    ///
    /// Returns, per message in order, `Ok` or the server's `-ERR` for it (that message stays).
    /// A protocol or I/O error ends the batch (and the session); nothing is removed before
    /// [`Pop3Client::quit`] commits in any case.
    pub async fn delete_many(
        &mut self,
        msgs: &[NonZeroU32],
    ) -> Result<Vec<(NonZeroU32, Result<(), StatusLine>)>, Error> {
        let mut ids = std::collections::VecDeque::with_capacity(msgs.len());
        for &msg in msgs {
            ids.push_back((self.conn.submit(Command::Dele(msg))?, msg));
        }
        let mut results = Vec::with_capacity(msgs.len());
        while let Some((id, msg)) = ids.pop_front() {
            match self.conn.wait(id).await? {
                Ok(Response::Ok(_)) => results.push((msg, Ok(()))),
                Ok(_) => return Err(Error::Protocol(ProtocolError::Unsolicited)),
                Err(reply) => results.push((msg, Err(reply))),
            }
        }
        Ok(results)
    }

    /// `RSET`: unmarks every deleted message.
    pub async fn reset(&mut self) -> Result<(), Error> {
        self.simple(Command::Rset).await.map(drop)
    }

    /// `NOOP`.
    pub async fn noop(&mut self) -> Result<(), Error> {
        self.simple(Command::Noop).await.map(drop)
    }

    /// `RETR msg`, streaming the un-stuffed message into `sink`; returns the octets written.
    pub async fn retrieve<W: AsyncWrite + Unpin>(
        &mut self,
        msg: NonZeroU32,
        sink: W,
    ) -> Result<u64, Error> {
        self.body_into(Command::Retr(msg), sink).await
    }

    /// `TOP msg lines`: the header and the first `lines` body lines, into `sink`.
    pub async fn top<W: AsyncWrite + Unpin>(
        &mut self,
        msg: NonZeroU32,
        lines: u32,
        sink: W,
    ) -> Result<u64, Error> {
        self.body_into(Command::Top { msg, lines }, sink).await
    }

    async fn body_into<W: AsyncWrite + Unpin>(
        &mut self,
        command: Command,
        mut sink: W,
    ) -> Result<u64, Error> {
        let mut stream = self.body_stream(command)?;
        while let Some(chunk) = stream.next_chunk().await? {
            sink.write_all(&chunk).await?;
        }
        sink.flush().await?;
        Ok(stream.octets)
    }

    fn body_stream(&mut self, command: Command) -> Result<BodyStream<'_>, Error> {
        let id = self.conn.submit(command)?;
        Ok(BodyStream {
            conn: &mut self.conn,
            id,
            octets: 0,
            done: false,
        })
    }

    /// `RETR msg` as a stream of un-stuffed chunks.
    pub fn retrieve_stream(&mut self, msg: NonZeroU32) -> Result<BodyStream<'_>, Error> {
        self.body_stream(Command::Retr(msg))
    }

    /// Retrieves many messages, pipelined when the server allows (the window of
    /// [`Options::max_in_flight`] is kept full), streaming message `n` into `sink(n)`.
    ///
    /// Returns, per message in order, the octets written or the server's `-ERR` for it. A
    /// protocol or I/O error ends the batch (and the session).
    pub async fn retrieve_many<W, F>(
        &mut self,
        msgs: &[NonZeroU32],
        mut sink: F,
    ) -> Result<Vec<(NonZeroU32, Result<u64, StatusLine>)>, Error>
    where
        W: AsyncWrite + Unpin,
        F: FnMut(NonZeroU32) -> W,
    {
        let mut ids = std::collections::VecDeque::with_capacity(msgs.len());
        for &msg in msgs {
            ids.push_back((self.conn.submit(Command::Retr(msg))?, msg));
        }
        let mut results = Vec::with_capacity(msgs.len());
        let mut current: Option<(CommandId, NonZeroU32, W)> = None;
        while let Some(&(id, msg)) = ids.front() {
            match self.conn.next_event().await? {
                Event::BodyChunk { id: got, chunk } if got == id => {
                    let (_, _, w) = current.get_or_insert_with(|| (id, msg, sink(msg)));
                    w.write_all(&chunk).await?;
                }
                Event::Completed { id: got, result } if got == id => {
                    ids.pop_front();
                    match result {
                        Ok(Response::Body { octets, .. }) => {
                            let mut w = match current.take() {
                                Some((_, _, w)) => w,
                                None => sink(msg),
                            };
                            w.flush().await?;
                            results.push((msg, Ok(octets)));
                        }
                        Ok(_) => return Err(Error::Protocol(ProtocolError::Unsolicited)),
                        Err(reply) => {
                            current = None;
                            results.push((msg, Err(reply)));
                        }
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
        Ok(results)
    }

    /// `QUIT`: ends the session; the server commits deletions (the UPDATE state) and reports
    /// whether it could.
    pub async fn quit(mut self) -> Result<UpdateOutcome, Error> {
        let outcome = match self.conn.run(Command::Quit).await? {
            Ok(Response::Ok(s)) => UpdateOutcome::Committed(s),
            Ok(_) => return Err(Error::Protocol(ProtocolError::Unsolicited)),
            Err(s) => UpdateOutcome::Failed(s),
        };
        // The answer is what matters; waiting for the close is bounded and best effort.
        let limit = self.conn.client.options().command_timeout;
        let _ = tokio::time::timeout(limit, self.conn.next_event()).await;
        Ok(outcome)
    }
}

/// The chunks of one RETR/TOP body, from [`Pop3Client::retrieve_stream`].
#[derive(Debug)]
pub struct BodyStream<'a> {
    conn: &'a mut Conn,
    id: CommandId,
    octets: u64,
    done: bool,
}

impl BodyStream<'_> {
    /// The next un-stuffed chunk; `None` at the end of the body. Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] when the server answered `-ERR` (no such message), and protocol,
    /// timeout and I/O errors.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if self.done {
            return Ok(None);
        }
        match self.conn.next_event().await? {
            Event::BodyChunk { id, chunk } if id == self.id => {
                self.octets += chunk.len() as u64;
                Ok(Some(chunk))
            }
            Event::Completed { id, result } if id == self.id => {
                self.done = true;
                match result {
                    Ok(_) => Ok(None),
                    Err(reply) => Err(rejected(reply)),
                }
            }
            other => Err(unexpected(other)),
        }
    }

    /// Octets delivered so far.
    pub fn octets(&self) -> u64 {
        self.octets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_follow_the_mode() {
        let creds = Credentials::new("u");
        for (mode, port) in [
            (TlsMode::Implicit, 995),
            (TlsMode::StartTlsRequired, 110),
            (TlsMode::StartTlsWanted, 110),
            (TlsMode::Plaintext, 110),
        ] {
            assert_eq!(Config::new("h", mode, creds.clone()).port(), port);
        }
        let mut c = Config::new("h", TlsMode::Implicit, creds);
        c.port = Some(1995);
        assert_eq!(c.port(), 1995);
    }
}

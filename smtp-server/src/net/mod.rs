//! The tokio listener: one task per connection driving a [`Session`], an async [`Handler`] for
//! the policy decisions, connection limits, STARTTLS or implicit TLS, and graceful shutdown.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use mailferry_sasl::Authenticated;
use mailferry_wire::net::MaybeTls;
use mailferry_wire::smtp::{MailParams, RcptParams, Reply};
use mailferry_wire::tls::ChannelSecurity;
use mailferry_wire::types::{Domain, ForwardPath, ReversePath, SmtpText};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
pub use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proto::{
    AbortReason, CloseReason, ConnectionInfo, Context, Envelope, Event, Options, Session,
    SharedStore, WallClock,
};

/// The tracing target of the protocol transcript (trace level; AUTH secrets shown as `****`,
/// peer control characters escaped).
pub const TRANSCRIPT: &str = "mailferry_smtp_server::transcript";

/// The application's policy, called from each connection's task. Every method has a default
/// that accepts (or ignores), so a discarding sink is `impl Handler for Sink { type Conn = (); }`.
///
/// Decision methods return `None` to accept with the standard reply, or `Some(reply)` to
/// answer with that reply (2xx accepts, 4xx/5xx refuses).
pub trait Handler: Send + Sync + 'static {
    /// Per-connection state (for example the spool file of the message in progress).
    type Conn: Default + Send + 'static;

    /// A new connection: `Ok` accepts (the banner is sent), `Err(reply)` refuses.
    fn connect(
        &self,
        info: &ConnectionInfo,
    ) -> impl Future<Output = Result<Self::Conn, Reply>> + Send {
        let _ = info;
        async { Ok(Self::Conn::default()) }
    }

    /// HELO or EHLO.
    fn helo(
        &self,
        conn: &mut Self::Conn,
        ctx: &Context,
        name: &Domain,
    ) -> impl Future<Output = Option<Reply>> + Send {
        let _ = (conn, ctx, name);
        async { None }
    }

    /// MAIL FROM (after the core's checks). [`crate::proto::RelayPolicy::check_sender`] fits.
    fn mail_from(
        &self,
        conn: &mut Self::Conn,
        ctx: &Context,
        from: &ReversePath,
        params: &MailParams,
    ) -> impl Future<Output = Option<Reply>> + Send {
        let _ = (conn, ctx, from, params);
        async { None }
    }

    /// RCPT TO. [`crate::proto::RelayPolicy::check_recipient`] fits.
    fn rcpt_to(
        &self,
        conn: &mut Self::Conn,
        ctx: &Context,
        to: &ForwardPath,
        params: &RcptParams,
    ) -> impl Future<Output = Option<Reply>> + Send {
        let _ = (conn, ctx, to, params);
        async { None }
    }

    /// A piece of the message in progress. The default discards it.
    fn data_chunk(&self, conn: &mut Self::Conn, chunk: Bytes) -> impl Future<Output = ()> + Send {
        let _ = (conn, chunk);
        async {}
    }

    /// The message is complete.
    fn data_end(
        &self,
        conn: &mut Self::Conn,
        ctx: &Context,
        envelope: Envelope,
    ) -> impl Future<Output = Option<Reply>> + Send {
        let _ = (conn, ctx, envelope);
        async { None }
    }

    /// The message in progress was abandoned: discard what [`data_chunk`](Self::data_chunk)
    /// received.
    fn data_aborted(&self, conn: &mut Self::Conn, reason: AbortReason) {
        let _ = (conn, reason);
    }

    /// VRFY or EXPN (when enabled in [`Options`]); `None` answers `252 2.5.0`.
    fn query(
        &self,
        conn: &mut Self::Conn,
        expn: bool,
        arg: &SmtpText,
    ) -> impl Future<Output = Option<Reply>> + Send {
        let _ = (conn, expn, arg);
        async { None }
    }

    /// A recipient was refused (the seeds' rejected-recipients log).
    fn recipient_rejected(&self, conn: &mut Self::Conn, to: &ForwardPath, reply: &Reply) {
        let _ = (conn, to, reply);
    }

    /// AUTH succeeded.
    fn authenticated(&self, conn: &mut Self::Conn, identity: &Authenticated) {
        let _ = (conn, identity);
    }

    /// The connection ended.
    fn closed(&self, conn: &mut Self::Conn, reason: &CloseReason) {
        let _ = (conn, reason);
    }
}

/// Connection counters shared by the accept loop and the connection tasks.
#[derive(Debug, Default)]
struct Counters {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Releases a connection slot when the task ends.
struct Slot {
    counters: Arc<Counters>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.total.fetch_sub(1, Ordering::AcqRel);
        let mut map = self
            .counters
            .per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Counters {
    fn acquire(self: &Arc<Self>, ip: IpAddr, options: &Options) -> Option<Slot> {
        let mut map = self
            .per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= options.max_connections_per_ip
            || self.total.load(Ordering::Acquire) >= options.max_connections
        {
            if *n == 0 {
                map.remove(&ip);
            }
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            counters: Arc::clone(self),
            ip,
        })
    }
}

/// An SMTP listener. `Server::bind(addr, options, tls).await?.serve(handler).await`.
pub struct Server {
    listener: TcpListener,
    options: Arc<Options>,
    tls: Option<Arc<ServerConfig>>,
    implicit_tls: bool,
    store: Option<SharedStore>,
    token: CancellationToken,
    tracker: TaskTracker,
    counters: Arc<Counters>,
    tls_timeout: Duration,
    utc_offset_seconds: i32,
    max_pending_output: usize,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("implicit_tls", &self.implicit_tls)
            .field("auth", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listener. Without a TLS configuration STARTTLS is not offered.
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        mut options: Options,
        tls: Option<Arc<ServerConfig>>,
    ) -> io::Result<Server> {
        if tls.is_none() {
            options.starttls = false;
        }
        Ok(Server {
            listener: TcpListener::bind(addr).await?,
            options: Arc::new(options),
            tls,
            implicit_tls: false,
            store: None,
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            counters: Arc::default(),
            tls_timeout: Duration::from_secs(30),
            utc_offset_seconds: 0,
            max_pending_output: DEFAULT_MAX_PENDING_OUTPUT,
        })
    }

    /// Binds a listener whose connections start with a TLS handshake, before the greeting:
    /// implicit TLS (RFC 8314 §3), as on the submissions port 465. Each handshake is bounded
    /// by [`Server::with_tls_timeout`]; a client that fails it never reaches the session or the
    /// handler. The session knows the channel is encrypted from the start: STARTTLS is not
    /// offered (and refused if sent), and AUTH is, as after STARTTLS on a plaintext listener.
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn bind_implicit_tls(
        addr: impl ToSocketAddrs,
        options: Options,
        tls: Arc<ServerConfig>,
    ) -> io::Result<Server> {
        let mut server = Server::bind(addr, options, Some(tls)).await?;
        server.implicit_tls = true;
        Ok(server)
    }

    /// Enables AUTH with this credential store.
    pub fn with_credentials(mut self, store: SharedStore) -> Server {
        self.store = Some(store);
        self
    }

    /// Bounds each TLS handshake, after STARTTLS or on connect (default 30 s): a half-open
    /// handshake costs no more.
    pub fn with_tls_timeout(mut self, timeout: Duration) -> Server {
        self.tls_timeout = timeout;
        self
    }

    /// Replies a connection holds that the client has not taken yet (beyond what the kernel's
    /// socket buffer holds), in octets; default [`DEFAULT_MAX_PENDING_OUTPUT`]. At the cap the
    /// connection stops reading, so a client that pipelines without reading its replies costs
    /// bounded memory. Such a client is cut off once its replies have been stuck for
    /// [`Options::command_timeout`]: it gets the replies already made, then
    /// `421 4.4.2 <hostname> Error: timeout exceeded`, and the rest of its input is discarded.
    /// A client that reads while it writes (RFC 2920 §3.1 asks clients not to deadlock) is never
    /// cut off: reading and writing run concurrently.
    pub fn with_max_pending_output(mut self, octets: usize) -> Server {
        // Zero would stop reading for good after the first reply.
        self.max_pending_output = octets.max(1);
        self
    }

    /// The local time zone's offset from UTC in seconds, for `#Time#` in the banner and the
    /// dates of trace fields (the library reads no time zone database). Default 0 (UTC).
    pub fn with_utc_offset(mut self, seconds: i32) -> Server {
        self.utc_offset_seconds = seconds;
        self
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Cancel this token to shut down: no new connections, idle sessions told `421 4.3.2`,
    /// messages in flight finished; [`serve`](Self::serve) returns when every task ended.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.counters.total.load(Ordering::Acquire)
    }

    /// Accepts connections until the shutdown token is cancelled, then waits for the
    /// connection tasks to finish.
    ///
    /// # Errors
    ///
    /// Never for a failed accept (logged and retried); the signature leaves room for setup
    /// errors.
    pub async fn serve<H: Handler>(self, handler: H) -> io::Result<()> {
        let handler = Arc::new(handler);
        loop {
            let accepted = tokio::select! {
                () = self.token.cancelled() => break,
                r = self.listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Some(slot) = self.counters.acquire(peer.ip(), &self.options) else {
                let text = format!(
                    "421 4.7.0 {} Error: too many connections\r\n",
                    self.options.hostname
                );
                self.tracker.spawn(refuse(stream, text));
                continue;
            };
            let conn = Conn {
                options: Arc::clone(&self.options),
                tls: self.tls.clone(),
                implicit_tls: self.implicit_tls,
                store: self.store.clone(),
                token: self.token.clone(),
                tls_timeout: self.tls_timeout,
                utc_offset_seconds: self.utc_offset_seconds,
                max_pending_output: self.max_pending_output,
            };
            let handler = Arc::clone(&handler);
            self.tracker.spawn(async move {
                let _slot = slot;
                if let Err(e) = conn.run(stream, peer, handler).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        self.tracker.close();
        self.tracker.wait().await;
        Ok(())
    }
}

async fn refuse(mut stream: TcpStream, text: String) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(text.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

struct Conn {
    options: Arc<Options>,
    tls: Option<Arc<ServerConfig>>,
    implicit_tls: bool,
    store: Option<SharedStore>,
    token: CancellationToken,
    tls_timeout: Duration,
    utc_offset_seconds: i32,
    max_pending_output: usize,
}

/// The default of [`Server::with_max_pending_output`]: 64 KiB.
pub const DEFAULT_MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// What one round of [`poll_io`] achieved.
#[derive(Debug, Default)]
struct Round {
    /// Octets of pending output the socket accepted (or a flush completed).
    wrote: bool,
    /// Input read on a plaintext stream (allocated only once data was ready, so an idle
    /// connection holds no read buffer).
    input: Option<BytesMut>,
    /// Input read on a TLS stream, in the connection's scratch buffer.
    tls_input: usize,
    /// The peer closed its side.
    eof: bool,
}

impl Round {
    fn progressed(&self) -> bool {
        self.wrote || self.input.is_some() || self.tls_input > 0 || self.eof
    }
}

/// The read size, and the size of a TLS connection's scratch buffer.
const READ_SIZE: usize = 16 * 1024;

/// One round of I/O on one stream: writes as much of `out` as the socket takes (then flushes)
/// and, when `read` allows, reads once; both directions are polled in the same round, so a
/// peer that writes before it reads never deadlocks against us. Ready once either made
/// progress.
fn poll_io(
    stream: &mut MaybeTls<TcpStream>,
    out: &mut BytesMut,
    needs_flush: &mut bool,
    scratch: &mut Vec<u8>,
    read: bool,
    cx: &mut TaskContext<'_>,
) -> Poll<io::Result<Round>> {
    let mut round = Round::default();
    while !out.is_empty() {
        match Pin::new(&mut *stream).poll_write(cx, &out[..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                out.advance(n);
                *needs_flush = true;
                round.wrote = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => break,
        }
    }
    if out.is_empty() && *needs_flush {
        // A TLS stream may hold records the socket did not take yet.
        match Pin::new(&mut *stream).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                *needs_flush = false;
                round.wrote = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
    }
    if read {
        match stream {
            MaybeTls::Plain(tcp) => loop {
                match tcp.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
                let mut buf = BytesMut::with_capacity(READ_SIZE);
                match tcp.try_read_buf(&mut buf) {
                    Ok(0) => round.eof = true,
                    Ok(_) => round.input = Some(buf),
                    // Spurious readiness: the next poll registers the waker again.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
                break;
            },
            tls => {
                if scratch.is_empty() {
                    scratch.resize(READ_SIZE, 0);
                }
                let mut buf = ReadBuf::new(scratch);
                match Pin::new(tls).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        round.eof = n == 0;
                        round.tls_input = n;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
        }
    }
    if round.progressed() {
        Poll::Ready(Ok(round))
    } else {
        Poll::Pending
    }
}

/// The connection's single timer, re-armed lazily: one armed for the same or an earlier
/// instant is kept (when it fires early, nothing is due and the next round re-arms), because
/// the session's deadline moves with every command and re-registering a tokio timer each time
/// costs a driver wake-up.
struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
}

impl Timer {
    fn new() -> Timer {
        Timer {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        }
    }

    /// Arms for `due`; false when there is nothing to wait for.
    fn arm(&mut self, due: Option<Instant>) -> bool {
        let Some(due) = due else {
            return false;
        };
        match self.armed {
            Some(armed) if armed <= due => {}
            _ => {
                self.sleep.as_mut().reset(due.into());
                self.armed = Some(due);
            }
        }
        true
    }

    async fn fired(&mut self, armed: bool) {
        if !armed {
            return std::future::pending().await;
        }
        self.sleep.as_mut().await;
        self.armed = None;
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The socket half of a connection: the stream, its pending output and the write clock.
struct Wire {
    /// `None` only while the stream is being upgraded to TLS.
    stream: Option<MaybeTls<TcpStream>>,
    /// Replies not yet taken by the socket.
    out: BytesMut,
    needs_flush: bool,
    /// TLS read buffer (allocated on the first TLS read).
    scratch: Vec<u8>,
    /// When `out` last became non-empty or last drained a little: a client must take our
    /// replies within the command timeout.
    write_clock: Instant,
    /// A read or write failed: nothing more can be sent.
    broken: bool,
}

impl Wire {
    /// Appends the session's replies (tracing them when the transcript is on).
    fn take_output(
        &mut self,
        session: &mut Session,
        trace: Option<(&mut transcript::Redactor, SocketAddr)>,
    ) {
        let before = self.out.len();
        session.poll_transmit(&mut self.out);
        if self.out.len() == before {
            return;
        }
        if before == 0 {
            self.write_clock = Instant::now();
        }
        if let Some((redactor, peer)) = trace {
            let new = &self.out[before..];
            redactor.server_output(new);
            for line in new.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let line = line.strip_suffix(b"\r").unwrap_or(line).escape_ascii();
                tracing::trace!(target: TRANSCRIPT, %peer, "S: {line}");
            }
        }
    }

    /// When pending output has been stuck for `limit`.
    fn stall_deadline(&self, limit: Duration) -> Option<Instant> {
        (!self.out.is_empty()).then(|| self.write_clock + limit)
    }

    /// Writes all pending output (a STARTTLS `220`) within `limit`, without reading.
    async fn flush_all(&mut self, limit: Duration) -> io::Result<()> {
        let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        tokio::time::timeout(limit, async {
            stream.write_all(&self.out).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
        self.out.clear();
        self.needs_flush = false;
        Ok(())
    }

    /// After the session ended: delivers the last replies while discarding input (a client
    /// still writing a long pipeline reads nothing until it is done, and closing under unread
    /// input would reset the connection and destroy the final reply), then closes the write
    /// side. When input had to be discarded, waits for the client's EOF before dropping the
    /// socket, for the same reason. Everything within `limit`; after the close, at most
    /// [`LINGER_IDLE`] without input.
    async fn close(&mut self, limit: Duration) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if self.broken {
            return;
        }
        let hard = tokio::time::Instant::now() + limit;
        let mut discarded = false;
        let mut eof = false;
        while !self.out.is_empty() || self.needs_flush {
            let round = tokio::time::timeout_at(
                hard,
                poll_fn(|cx| {
                    poll_io(
                        stream,
                        &mut self.out,
                        &mut self.needs_flush,
                        &mut self.scratch,
                        !eof,
                        cx,
                    )
                }),
            )
            .await;
            match round {
                Ok(Ok(r)) => {
                    discarded |= r.input.is_some() || r.tls_input > 0;
                    eof |= r.eof;
                }
                Ok(Err(_)) | Err(_) => return,
            }
        }
        let _ = tokio::time::timeout_at(hard, stream.shutdown()).await;
        if !discarded || eof {
            return;
        }
        self.out.clear();
        while !eof {
            let idle = (tokio::time::Instant::now() + LINGER_IDLE).min(hard);
            let round = tokio::time::timeout_at(
                idle,
                poll_fn(|cx| {
                    poll_io(
                        stream,
                        &mut self.out,
                        &mut self.needs_flush,
                        &mut self.scratch,
                        true,
                        cx,
                    )
                }),
            )
            .await;
            match round {
                Ok(Ok(r)) => eof = r.eof,
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}

/// How long a closed connection that was still receiving input waits for more of it (and the
/// client's EOF) before dropping the socket.
const LINGER_IDLE: Duration = Duration::from_secs(1);

impl Conn {
    async fn run<H: Handler>(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        handler: Arc<H>,
    ) -> io::Result<()> {
        let (stream, security) = match (self.implicit_tls, self.tls.clone()) {
            (true, Some(config)) => {
                let handshake = MaybeTls::Plain(stream).upgrade_server(config, self.tls_timeout);
                tokio::select! {
                    r = handshake => match r {
                        Ok(tls) => (tls, ChannelSecurity::TlsUnverified),
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "implicit TLS handshake failed");
                            return Ok(());
                        }
                    },
                    () = self.token.cancelled() => return Ok(()),
                }
            }
            _ => (MaybeTls::Plain(stream), ChannelSecurity::Plaintext),
        };
        // Read after the handshake: the clock of the greeting's `#Time#`.
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let info = ConnectionInfo {
            peer: peer.ip(),
            time: WallClock {
                unix_seconds: unix,
                utc_offset_seconds: self.utc_offset_seconds,
            },
            security,
        };
        let mut session = Session::new(
            Arc::clone(&self.options),
            self.store.clone(),
            info.clone(),
            Instant::now(),
        );
        let mut wire = Wire {
            stream: Some(stream),
            out: BytesMut::new(),
            needs_flush: false,
            scratch: Vec::new(),
            write_clock: Instant::now(),
            broken: false,
        };
        let mut timer = Timer::new();
        let mut state = H::Conn::default();
        let mut shutting_down = false;
        // The shell ended the session itself (replies not taken): its close is a timeout.
        let mut stalled = false;
        let mut redactor = transcript::Redactor::default();
        let tracing_on = tracing::enabled!(target: TRANSCRIPT, tracing::Level::TRACE);
        let write_timeout = self.options.command_timeout;
        loop {
            let mut tls_pending = false;
            while let Some(event) = session.poll_event() {
                match event {
                    Event::Connect { id, .. } => match handler.connect(&info).await {
                        Ok(c) => {
                            state = c;
                            let _ = session.accept(id);
                        }
                        Err(reply) => {
                            let _ = session.respond(id, reply);
                        }
                    },
                    Event::Helo { id, name, .. } => {
                        let ctx = session.context().clone();
                        let r = handler.helo(&mut state, &ctx, &name).await;
                        answer(&mut session, id, r);
                    }
                    Event::MailFrom { id, from, params } => {
                        let ctx = session.context().clone();
                        let r = handler.mail_from(&mut state, &ctx, &from, &params).await;
                        answer(&mut session, id, r);
                    }
                    Event::RcptTo { id, to, params } => {
                        let ctx = session.context().clone();
                        let r = handler.rcpt_to(&mut state, &ctx, &to, &params).await;
                        answer(&mut session, id, r);
                    }
                    Event::MessageChunk(chunk) => handler.data_chunk(&mut state, chunk).await,
                    Event::DataEnd { id, envelope } => {
                        let ctx = session.context().clone();
                        let r = handler.data_end(&mut state, &ctx, envelope).await;
                        answer(&mut session, id, r);
                    }
                    Event::MessageAborted(reason) => handler.data_aborted(&mut state, reason),
                    Event::Vrfy { id, arg } => {
                        let r = handler.query(&mut state, false, &arg).await;
                        answer(&mut session, id, r);
                    }
                    Event::Expn { id, arg } => {
                        let r = handler.query(&mut state, true, &arg).await;
                        answer(&mut session, id, r);
                    }
                    Event::RecipientRejected { to, reply } => {
                        handler.recipient_rejected(&mut state, &to, &reply);
                    }
                    Event::Authenticated { identity, .. } => {
                        handler.authenticated(&mut state, &identity);
                    }
                    Event::AuthFailed { mechanism, reply } => {
                        tracing::debug!(%peer, ?mechanism, code = reply.code().as_u16(), "AUTH failed");
                    }
                    Event::StartTls { discarded } => {
                        if discarded > 0 {
                            tracing::warn!(%peer, discarded, "plaintext after STARTTLS discarded");
                        }
                        tls_pending = true;
                    }
                    Event::Closed(reason) => {
                        let reason = if stalled {
                            CloseReason::Timeout
                        } else {
                            reason
                        };
                        handler.closed(&mut state, &reason);
                    }
                }
            }
            wire.take_output(&mut session, tracing_on.then_some((&mut redactor, peer)));
            if session.is_closed() {
                wire.close(write_timeout).await;
                return Ok(());
            }
            if tls_pending {
                wire.flush_all(write_timeout).await?;
                let (Some(config), Some(plain)) = (self.tls.clone(), wire.stream.take()) else {
                    return Ok(());
                };
                match plain.upgrade_server(config, self.tls_timeout).await {
                    Ok(tls) => {
                        wire.stream = Some(tls);
                        let _ = session
                            .handle_tls_established(ChannelSecurity::TlsUnverified, Instant::now());
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        session.handle_eof();
                        while let Some(ev) = session.poll_event() {
                            if let Event::Closed(reason) = ev {
                                handler.closed(&mut state, &reason);
                            }
                        }
                        return Ok(());
                    }
                }
                continue;
            }
            // Read only while the session takes input and the replies the client has not taken
            // stay under the cap: a client that pipelines without reading is held at bounded
            // memory instead of growing `out` without limit.
            let read = session.wants_input() && wire.out.len() < self.max_pending_output;
            let armed = timer.arm(earliest(
                session.poll_timeout(),
                wire.stall_deadline(write_timeout),
            ));
            let Some(stream) = wire.stream.as_mut() else {
                return Ok(());
            };
            tokio::select! {
                r = poll_fn(|cx| {
                    poll_io(stream, &mut wire.out, &mut wire.needs_flush, &mut wire.scratch, read, cx)
                }) => match r {
                    Ok(round) => {
                        if round.wrote {
                            wire.write_clock = Instant::now();
                        }
                        let input = match &round.input {
                            Some(buf) => &buf[..],
                            None => &wire.scratch[..round.tls_input],
                        };
                        if !input.is_empty() {
                            if tracing_on {
                                for line in redactor.client_lines(input) {
                                    tracing::trace!(target: TRANSCRIPT, %peer, "C: {line}");
                                }
                            }
                            session.handle_input(input, Instant::now());
                        }
                        if round.eof {
                            session.handle_eof();
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "connection failed");
                        wire.broken = true;
                        session.handle_eof();
                    }
                },
                () = timer.fired(armed) => {
                    let now = Instant::now();
                    if wire.stall_deadline(write_timeout).is_some_and(|d| now >= d) {
                        // The client has taken none of our replies for the command timeout:
                        // end the session the way the core ends a silent one.
                        stalled = true;
                        let code = if self.options.enhanced_status_codes { "4.4.2 " } else { "" };
                        let text = format!(
                            "421 {code}{} Error: timeout exceeded\r\n",
                            self.options.hostname
                        );
                        if tracing_on {
                            tracing::trace!(target: TRANSCRIPT, %peer, "S: {}", text.trim_end());
                        }
                        wire.out.extend_from_slice(text.as_bytes());
                        session.handle_eof();
                    } else {
                        session.handle_timeout(now);
                    }
                }
                () = self.token.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    session.shutdown();
                }
            }
        }
    }
}

fn answer(session: &mut Session, id: crate::proto::CommandId, reply: Option<Reply>) {
    let result = match reply {
        None => session.accept(id),
        Some(r) => session.respond(id, r),
    };
    if let Err(e) = result {
        // A 1xx/3xx reply from the handler: refuse temporarily rather than hang the client.
        tracing::warn!(error = %e, "handler answered with an unusable reply");
        if let Ok(r) = Reply::parse(b"451 4.3.0 Internal error\r\n", &Default::default()) {
            let _ = session.respond(id, r);
        }
    }
}

mod transcript;

#[cfg(test)]
mod tests;

//! The tokio listener: one task per connection driving a [`Session`], an async [`Handler`] for
//! the policy decisions, connection limits, STARTTLS and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use mailferry_sasl::Authenticated;
use mailferry_wire::net::MaybeTls;
use mailferry_wire::smtp::{MailParams, RcptParams, Reply};
use mailferry_wire::tls::ChannelSecurity;
use mailferry_wire::types::{Domain, ForwardPath, ReversePath, SmtpText};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    store: Option<SharedStore>,
    token: CancellationToken,
    tracker: TaskTracker,
    counters: Arc<Counters>,
    tls_timeout: Duration,
    utc_offset_seconds: i32,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
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
            store: None,
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            counters: Arc::default(),
            tls_timeout: Duration::from_secs(30),
            utc_offset_seconds: 0,
        })
    }

    /// Enables AUTH with this credential store.
    pub fn with_credentials(mut self, store: SharedStore) -> Server {
        self.store = Some(store);
        self
    }

    /// Bounds each STARTTLS handshake (default 30 s): a half-open handshake costs no more.
    pub fn with_tls_timeout(mut self, timeout: Duration) -> Server {
        self.tls_timeout = timeout;
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
                store: self.store.clone(),
                token: self.token.clone(),
                tls_timeout: self.tls_timeout,
                utc_offset_seconds: self.utc_offset_seconds,
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
    store: Option<SharedStore>,
    token: CancellationToken,
    tls_timeout: Duration,
    utc_offset_seconds: i32,
}

/// Reads what is available. On a plaintext stream the buffer is allocated only once data is
/// ready, so an idle connection holds no read buffer.
async fn read_some(io: &mut MaybeTls<TcpStream>, buf: &mut BytesMut) -> io::Result<usize> {
    match io {
        MaybeTls::Plain(tcp) => loop {
            tcp.readable().await?;
            buf.reserve(16 * 1024);
            match tcp.try_read_buf(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        },
        tls => {
            buf.reserve(16 * 1024);
            tls.read_buf(buf).await
        }
    }
}

impl Conn {
    async fn run<H: Handler>(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        handler: Arc<H>,
    ) -> io::Result<()> {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let info = ConnectionInfo {
            peer: peer.ip(),
            time: WallClock {
                unix_seconds: unix,
                utc_offset_seconds: self.utc_offset_seconds,
            },
            security: ChannelSecurity::Plaintext,
        };
        let mut session = Session::new(
            Arc::clone(&self.options),
            self.store.clone(),
            info.clone(),
            Instant::now(),
        );
        let mut io = Some(MaybeTls::Plain(stream));
        let mut state = H::Conn::default();
        let mut out = BytesMut::new();
        let mut shutting_down = false;
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
                    Event::Closed(reason) => handler.closed(&mut state, &reason),
                }
            }
            session.poll_transmit(&mut out);
            let Some(stream) = io.as_mut() else {
                return Ok(());
            };
            if !out.is_empty() {
                if tracing_on {
                    redactor.server_output(&out);
                    for line in out[..].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        let line = line.strip_suffix(b"\r").unwrap_or(line).escape_ascii();
                        tracing::trace!(target: TRANSCRIPT, %peer, "S: {line}");
                    }
                }
                tokio::time::timeout(write_timeout, stream.write_all(&out))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
                out.clear();
                if out.capacity() > 64 * 1024 {
                    out = BytesMut::new();
                }
            }
            if session.is_closed() {
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
                return Ok(());
            }
            if tls_pending {
                let (Some(config), Some(plain)) = (self.tls.clone(), io.take()) else {
                    return Ok(());
                };
                match plain.upgrade_server(config, self.tls_timeout).await {
                    Ok(tls) => {
                        io = Some(tls);
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
            let Some(stream) = io.as_mut() else {
                return Ok(());
            };
            let deadline = session.poll_timeout();
            let wants = session.wants_input();
            let mut buf = BytesMut::new();
            tokio::select! {
                r = read_some(stream, &mut buf), if wants => {
                    match r {
                        Ok(0) | Err(_) => session.handle_eof(),
                        Ok(_) => {
                            if tracing_on {
                                for line in redactor.client_lines(&buf) {
                                    tracing::trace!(target: TRANSCRIPT, %peer, "C: {line}");
                                }
                            }
                            session.handle_input(&buf, Instant::now());
                        }
                    }
                }
                () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
                () = self.token.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    session.shutdown();
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
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

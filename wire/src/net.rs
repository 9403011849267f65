//! The transport every tokio shell shares (feature `tokio`): TCP connect with a deadline and an
//! optional source address, `TCP_NODELAY`, and a stream that is plaintext until it is upgraded to
//! TLS (STARTTLS / STLS) or TLS from the start (implicit TLS).
//!
//! The protocol crates' shells own the read buffer; this module only moves bytes. Checking that no
//! byte arrived before the TLS switch is the sans-IO core's job (`DataBeforeTls`), because only the
//! core knows where the positive reply ended.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsStream;

/// Why a connection could not be opened or secured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The host name did not resolve, or resolved to nothing.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The name that was looked up.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// Every address of the host refused or failed; the last failure is kept.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// A deadline passed.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was being waited for ("connect", "TLS handshake").
        what: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The host is not a valid DNS name or IP address for TLS.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
    /// The TLS handshake failed (certificate rejected, protocol error, peer spoke plaintext).
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    /// The stream is already TLS; a second upgrade was asked for.
    #[error("the connection is already using TLS")]
    AlreadyTls,
}

/// A stream that is plaintext or TLS (client or server side).
#[derive(Debug)]
pub enum MaybeTls<IO> {
    /// No TLS (yet).
    Plain(IO),
    /// TLS, client or server side. Boxed: a TLS session is large and a plain stream is not.
    Tls(Box<TlsStream<IO>>),
}

impl<IO> MaybeTls<IO> {
    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// The underlying transport.
    pub fn get_ref(&self) -> &IO {
        match self {
            MaybeTls::Plain(io) => io,
            MaybeTls::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> MaybeTls<IO> {
    /// Upgrades a plaintext stream as a TLS client (STARTTLS / STLS), within `timeout`.
    pub async fn upgrade_client(
        self,
        server_name: &str,
        config: Arc<ClientConfig>,
        timeout: Duration,
    ) -> Result<Self, NetError> {
        match self {
            MaybeTls::Plain(io) => Ok(tls_connect(io, server_name, config, timeout).await?),
            MaybeTls::Tls(_) => Err(NetError::AlreadyTls),
        }
    }

    /// Upgrades a plaintext stream as a TLS server (after answering STARTTLS), within `timeout`.
    pub async fn upgrade_server(
        self,
        config: Arc<ServerConfig>,
        timeout: Duration,
    ) -> Result<Self, NetError> {
        match self {
            MaybeTls::Plain(io) => Ok(tls_accept(io, config, timeout).await?),
            MaybeTls::Tls(_) => Err(NetError::AlreadyTls),
        }
    }
}

/// Opens a TCP connection to `host:port`, trying each resolved address in turn, all within
/// `timeout`; binds `source` first when given. `TCP_NODELAY` is set: the shells write whole
/// pipelined groups at once, and Nagle's algorithm would only add delayed-ACK stalls.
pub async fn connect_tcp(
    host: &str,
    port: u16,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, NetError> {
    tokio::time::timeout(timeout, connect_any(host, port, source))
        .await
        .map_err(|_| NetError::Timeout {
            what: "connect",
            after: timeout,
        })?
}

async fn connect_any(host: &str, port: u16, source: Option<IpAddr>) -> Result<TcpStream, NetError> {
    // A bracketed IPv6 literal is how operators write one next to a port.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let resolve_err = |source| NetError::Resolve {
        host: host.to_owned(),
        source,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(resolve_err)?
        .collect();
    let mut last = None;
    for addr in addrs {
        // A source address only fits destinations of its own family.
        if source.is_some_and(|s| s.is_ipv4() != addr.is_ipv4()) {
            continue;
        }
        match connect_one(addr, source).await {
            Ok(stream) => return Ok(stream),
            Err(source) => last = Some(NetError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| {
        resolve_err(io::Error::new(io::ErrorKind::NotFound, "no usable address"))
    }))
}

async fn connect_one(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Performs a TLS client handshake over `io` (implicit TLS, or after STARTTLS), within `timeout`.
pub async fn tls_connect<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    server_name: &str,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<MaybeTls<IO>, NetError> {
    let bare = server_name
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'));
    let name = ServerName::try_from(bare.unwrap_or(server_name).to_owned())
        .map_err(|_| NetError::InvalidServerName(server_name.to_owned()))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = tokio::time::timeout(timeout, connector.connect(name, io))
        .await
        .map_err(|_| NetError::Timeout {
            what: "TLS handshake",
            after: timeout,
        })?
        .map_err(NetError::Tls)?;
    Ok(MaybeTls::Tls(Box::new(TlsStream::Client(stream))))
}

/// Performs a TLS server handshake over `io`, within `timeout` (a half-open handshake costs no
/// more than that).
pub async fn tls_accept<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<MaybeTls<IO>, NetError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let stream = tokio::time::timeout(timeout, acceptor.accept(io))
        .await
        .map_err(|_| NetError::Timeout {
            what: "TLS handshake",
            after: timeout,
        })?
        .map_err(NetError::Tls)?;
    Ok(MaybeTls::Tls(Box::new(TlsStream::Server(stream))))
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_read(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_write(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(io) => io.is_write_vectored(),
            MaybeTls::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_flush(cx),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_shutdown(cx),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn configs() -> (Arc<ClientConfig>, Arc<ServerConfig>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_der = cert.der().clone();
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der.clone()).unwrap();
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key_der)
            .unwrap();
        (Arc::new(client), Arc::new(server))
    }

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn plaintext_upgrades_on_both_sides_and_carries_bytes() {
        let (client_cfg, server_cfg) = configs();
        let (a, b) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut s = MaybeTls::Plain(b)
                .upgrade_server(server_cfg, LIMIT)
                .await
                .unwrap();
            assert!(s.is_tls());
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            s.flush().await.unwrap();
        });
        let mut c = MaybeTls::Plain(a)
            .upgrade_client("localhost", client_cfg, LIMIT)
            .await
            .unwrap();
        c.write_all(b"hello").await.unwrap();
        c.flush().await.unwrap();
        let mut echo = [0u8; 5];
        c.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn second_upgrade_is_refused() {
        let (client_cfg, server_cfg) = configs();
        let (a, b) = tokio::io::duplex(4096);
        let _server = tokio::spawn(tls_accept(b, server_cfg, LIMIT));
        let c = tls_connect(a, "localhost", client_cfg.clone(), LIMIT)
            .await
            .unwrap();
        let err = c
            .upgrade_client("localhost", client_cfg, LIMIT)
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::AlreadyTls), "{err:?}");
    }

    #[tokio::test]
    async fn wrong_host_name_fails_the_handshake() {
        let (client_cfg, server_cfg) = configs();
        let (a, b) = tokio::io::duplex(4096);
        let _server = tokio::spawn(tls_accept(b, server_cfg, LIMIT));
        let err = tls_connect(a, "example.org", client_cfg, LIMIT)
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Tls(_)), "{err:?}");
    }

    #[tokio::test]
    async fn implicit_tls_peer_speaking_plaintext_is_a_handshake_error() {
        let (client_cfg, _) = configs();
        let (a, mut b) = tokio::io::duplex(4096);
        b.write_all(b"+OK POP3 server ready\r\n").await.unwrap();
        let err = tls_connect(a, "localhost", client_cfg, LIMIT)
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Tls(_)), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_hits_the_handshake_deadline() {
        let (client_cfg, _) = configs();
        let (a, _b) = tokio::io::duplex(4096);
        let deadline = Duration::from_secs(3);
        let err = tls_connect(a, "localhost", client_cfg, deadline)
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::Timeout { what: "TLS handshake", after } if after == deadline),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn connect_tcp_reaches_a_loopback_listener_with_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move { listener.accept().await.unwrap() });
        let stream = connect_tcp("127.0.0.1", port, Some("127.0.0.1".parse().unwrap()), LIMIT)
            .await
            .unwrap();
        assert!(stream.nodelay().unwrap());
        let (_, peer) = accept.await.unwrap();
        assert_eq!(peer, stream.local_addr().unwrap());
    }

    #[tokio::test]
    async fn connect_tcp_to_a_closed_port_names_the_address() {
        // Bind then drop: the port is very likely closed for the moment of the test.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = connect_tcp("127.0.0.1", port, None, LIMIT)
            .await
            .unwrap_err();
        match err {
            NetError::Connect { addr, .. } => assert_eq!(addr.port(), port),
            other => panic!("expected Connect, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn invalid_server_name_is_rejected_before_the_handshake() {
        let (client_cfg, _) = configs();
        let (a, _b) = tokio::io::duplex(64);
        let err = tls_connect(a, "bad name!", client_cfg, LIMIT)
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::InvalidServerName(n) if n == "bad name!"));
    }
}

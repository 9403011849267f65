//! Loopback tests of the listener; every wait is bounded.

use std::sync::Mutex;

use mailferry_testkit::TestCa;
use mailferry_wire::net::{MaybeTls, tls_connect};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, BufReader};

use super::*;

const STEP: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Collect {
    messages: Mutex<Vec<Vec<u8>>>,
    closed: Mutex<Vec<CloseReason>>,
}

#[derive(Default)]
struct Msg(Vec<u8>);

impl Handler for Arc<Collect> {
    type Conn = Msg;
    async fn data_chunk(&self, conn: &mut Msg, chunk: Bytes) {
        conn.0.extend_from_slice(&chunk);
    }
    async fn data_end(&self, conn: &mut Msg, _: &Context, _: Envelope) -> Option<Reply> {
        self.messages
            .lock()
            .unwrap()
            .push(std::mem::take(&mut conn.0));
        None
    }
    fn closed(&self, _: &mut Msg, reason: &CloseReason) {
        self.closed.lock().unwrap().push(reason.clone());
    }
}

struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + Unpin> Client<S> {
    /// Reads one complete reply.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(STEP, self.io.read_line(&mut line))
                .await
                .unwrap()
                .unwrap();
            all.push_str(&line);
            if n == 0 || line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn cmd(&mut self, line: &str) -> String {
        self.io.get_mut().write_all(line.as_bytes()).await.unwrap();
        self.reply().await
    }
}

async fn connect(addr: SocketAddr) -> Client<TcpStream> {
    let s = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    Client {
        io: BufReader::new(s),
    }
}

fn options() -> Options {
    Options {
        hostname: Domain::try_from("mx.test").unwrap(),
        ..Options::default()
    }
}

async fn start(
    options: Options,
    tls: Option<Arc<ServerConfig>>,
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<io::Result<()>>,
    Arc<Collect>,
) {
    serve(Server::bind("127.0.0.1:0", options, tls).await.unwrap())
}

/// Waits, bounded, for `serve` to return, and checks that it returned `Ok`.
async fn finished(handle: tokio::task::JoinHandle<io::Result<()>>) {
    tokio::time::timeout(STEP, handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Serves `server` into a fresh [`Collect`].
fn serve(
    server: Server,
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<io::Result<()>>,
    Arc<Collect>,
) {
    let addr = server.local_addr().unwrap();
    let token = server.shutdown_token();
    let sink = Arc::new(Collect::default());
    let handle = tokio::spawn(server.serve(Arc::clone(&sink)));
    (addr, token, handle, sink)
}

/// An implicit-TLS listener with the test CA's certificate.
async fn implicit(ca: &TestCa, options: Options) -> Server {
    Server::bind_implicit_tls("127.0.0.1:0", options, ca.server_config().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn end_to_end_message_and_graceful_shutdown() {
    let (addr, token, handle, sink) = start(options(), None).await;
    let mut c = connect(addr).await;
    assert_eq!(c.reply().await, "220 mx.test ESMTP mailferry\r\n");
    let ehlo = c.cmd("EHLO client.test\r\n").await;
    assert!(
        ehlo.contains("250-PIPELINING\r\n") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    // One pipelined group.
    c.io.get_mut()
        .write_all(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n")
        .await
        .unwrap();
    assert_eq!(c.reply().await, "250 2.1.0 Sender ok\r\n");
    assert_eq!(c.reply().await, "250 2.1.5 Recipient ok\r\n");
    assert!(c.reply().await.starts_with("354 "));
    assert_eq!(
        c.cmd("Subject: hi\r\n\r\nbody\r\n.\r\n").await,
        "250 2.0.0 Ok: queued\r\n"
    );
    let msgs = sink.messages.lock().unwrap().clone();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].ends_with(b"Subject: hi\r\n\r\nbody\r\n"));

    // Shutdown: the idle session is told 421 and serve() returns.
    token.cancel();
    assert_eq!(
        c.reply().await,
        "421 4.3.2 mx.test Service shutting down\r\n"
    );
    finished(handle).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections"
    );
}

#[tokio::test]
async fn connection_floods_hit_per_ip_and_global_limits() {
    let mut o = options();
    o.max_connections_per_ip = 2;
    let (addr, token, handle, _) = start(o, None).await;
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    assert!(a.reply().await.starts_with("220 "));
    assert!(b.reply().await.starts_with("220 "));
    let mut c = connect(addr).await;
    assert_eq!(
        c.reply().await,
        "421 4.7.0 mx.test Error: too many connections\r\n"
    );
    // A slot frees when a connection ends.
    assert!(a.cmd("QUIT\r\n").await.starts_with("221 "));
    drop(a);
    let mut ok = false;
    for _ in 0..50 {
        let mut d = connect(addr).await;
        if d.reply().await.starts_with("220 ") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "slot released");
    token.cancel();
    finished(handle).await;

    let mut o = options();
    o.max_connections = 1;
    let (addr, token, handle, _) = start(o, None).await;
    let mut a = connect(addr).await;
    assert!(a.reply().await.starts_with("220 "));
    let mut b = connect(addr).await;
    assert_eq!(
        b.reply().await,
        "421 4.7.0 mx.test Error: too many connections\r\n"
    );
    token.cancel();
    finished(handle).await;
}

#[tokio::test]
async fn starttls_upgrade_and_auth_after_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    let server = Server::bind("127.0.0.1:0", options(), Some(ca.server_config().unwrap()))
        .await
        .unwrap()
        .with_credentials(Arc::new(TestStore));
    let addr = server.local_addr().unwrap();
    let token = server.shutdown_token();
    let handle = tokio::spawn(server.serve(Arc::new(Collect::default())));
    let mut c = connect(addr).await;
    c.reply().await;
    let ehlo = c.cmd("EHLO client.test\r\n").await;
    assert!(
        ehlo.contains("250-STARTTLS\r\n") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert_eq!(
        c.cmd("STARTTLS\r\n").await,
        "220 2.0.0 Ready to start TLS\r\n"
    );
    let tcp = c.io.into_inner();
    let name = ca.server_name().to_str().into_owned();
    let tls = tls_connect(tcp, &name, ca.client_config().unwrap(), STEP)
        .await
        .unwrap();
    assert!(matches!(tls, MaybeTls::Tls(_)));
    let mut c = Client {
        io: BufReader::new(tls),
    };
    let ehlo = c.cmd("EHLO client.test\r\n").await;
    assert!(
        ehlo.contains("250-AUTH PLAIN LOGIN CRAM-MD5\r\n") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN AHRlc3QAMTIzNA==\r\n").await,
        "235 2.7.0 Authentication successful\r\n"
    );
    token.cancel();
    assert_eq!(
        c.reply().await,
        "421 4.3.2 mx.test Service shutting down\r\n"
    );
    finished(handle).await;
}

#[tokio::test]
async fn implicit_tls_greets_after_the_handshake_and_offers_auth_not_starttls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    let (addr, token, handle, sink) = serve(
        implicit(&ca, options())
            .await
            .with_credentials(Arc::new(TestStore)),
    );
    let tcp = connect(addr).await.io.into_inner();
    let name = ca.server_name().to_str().into_owned();
    // The handshake comes first: the greeting is only readable through TLS.
    let tls = tls_connect(tcp, &name, ca.client_config().unwrap(), STEP)
        .await
        .unwrap();
    assert!(matches!(tls, MaybeTls::Tls(_)));
    let mut c = Client {
        io: BufReader::new(tls),
    };
    assert_eq!(c.reply().await, "220 mx.test ESMTP mailferry\r\n");
    let ehlo = c.cmd("EHLO client.test\r\n").await;
    assert!(
        ehlo.contains("250-AUTH PLAIN LOGIN CRAM-MD5\r\n") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert!(
        c.cmd("STARTTLS\r\n").await.starts_with("5"),
        "STARTTLS inside TLS must be refused"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN AHRlc3QAMTIzNA==\r\n").await,
        "235 2.7.0 Authentication successful\r\n"
    );
    c.io.get_mut()
        .write_all(b"MAIL FROM:<test@client.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n")
        .await
        .unwrap();
    assert_eq!(c.reply().await, "250 2.1.0 Sender ok\r\n");
    assert_eq!(c.reply().await, "250 2.1.5 Recipient ok\r\n");
    assert!(c.reply().await.starts_with("354 "));
    assert_eq!(
        c.cmd("Subject: tls\r\n\r\nbody\r\n.\r\n").await,
        "250 2.0.0 Ok: queued\r\n"
    );
    let msgs = sink.messages.lock().unwrap().clone();
    assert_eq!(msgs.len(), 1);
    // The trace field records the encrypted, authenticated submission (RFC 3848).
    let text = String::from_utf8_lossy(&msgs[0]).into_owned();
    assert!(text.contains("with ESMTPSA"), "{text}");
    assert!(text.ends_with("Subject: tls\r\n\r\nbody\r\n"), "{text}");
    token.cancel();
    assert_eq!(
        c.reply().await,
        "421 4.3.2 mx.test Service shutting down\r\n"
    );
    finished(handle).await;
}

#[tokio::test]
async fn implicit_tls_listener_gives_a_plaintext_client_no_greeting_and_bounds_a_silent_one() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    let (addr, token, handle, sink) = serve(
        implicit(&ca, options())
            .await
            .with_tls_timeout(Duration::from_millis(200)),
    );
    // A plaintext client: no greeting in clear, and its command is not a handshake.
    let mut c = connect(addr).await;
    c.io.get_mut()
        .write_all(b"EHLO client.test\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(STEP, c.io.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !rest.starts_with(b"220") && !rest.windows(4).any(|w| w == b"mx.t"),
        "{rest:?}"
    );
    // A client that never starts the handshake is closed after the deadline.
    let mut silent = connect(addr).await;
    let mut rest = Vec::new();
    let n = tokio::time::timeout(STEP, silent.io.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    // Neither reached a session: the handler saw no connection close.
    assert!(sink.closed.lock().unwrap().is_empty());
    token.cancel();
    finished(handle).await;
}

#[tokio::test]
async fn scram_sha_256_from_our_client_over_implicit_tls() {
    use mailferry_sasl::{Credentials, Mechanism};
    use mailferry_smtp_client::{Config as ClientConfig, SmtpClient};
    use mailferry_wire::tls::TlsMode;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    let mut o = options();
    o.auth_mechanisms = vec![Mechanism::ScramSha256, Mechanism::Plain];
    let (addr, token, handle, sink) =
        serve(implicit(&ca, o).await.with_credentials(Arc::new(TestStore)));
    let mut cfg = ClientConfig::new("localhost", Domain::try_from("client.test").unwrap());
    cfg.port = Some(addr.port());
    cfg.tls_mode = TlsMode::Implicit;
    cfg.tls = Some(ca.client_config().unwrap());
    cfg.credentials = Some(Credentials::new("test").with_password("1234"));
    cfg.mechanisms = vec![Mechanism::ScramSha256];
    let mut c = tokio::time::timeout(STEP, SmtpClient::connect(&cfg))
        .await
        .unwrap()
        .unwrap();
    let caps = c.capabilities().unwrap();
    let offered: Vec<String> = caps.auth().map(|m| m.as_str().to_owned()).collect();
    assert_eq!(offered, ["SCRAM-SHA-256", "PLAIN"]);
    let env = mailferry_smtp_client::proto::Envelope::from_strs("test@client.test", &["b@mx.test"])
        .unwrap();
    let report = tokio::time::timeout(STEP, c.send_bytes(&env, b"Subject: s\r\n\r\nb\r\n"))
        .await
        .unwrap()
        .unwrap();
    assert!(report.is_accepted(), "{report:?}");
    let text = String::from_utf8(sink.messages.lock().unwrap()[0].clone()).unwrap();
    assert!(text.contains("with ESMTPSA"), "{text}");
    // A wrong password is refused (535), and the client stops there: no fallback to PLAIN.
    cfg.credentials = Some(Credentials::new("test").with_password("wrong"));
    let err = tokio::time::timeout(STEP, SmtpClient::connect(&cfg))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("CredentialsRejected"), "{err}");
    token.cancel();
    finished(handle).await;
}

struct TestStore;

impl mailferry_sasl::CredentialStore for TestStore {
    fn verify_password(
        &self,
        authcid: &str,
        password: &mailferry_sasl::Secret<String>,
        _authzid: Option<&str>,
    ) -> mailferry_sasl::Verdict {
        if authcid == "test" && password.expose() == "1234" {
            mailferry_sasl::Verdict::Accept
        } else {
            mailferry_sasl::Verdict::Reject
        }
    }

    fn cram_md5_secret(&self, authcid: &str) -> mailferry_sasl::Lookup {
        match authcid {
            "test" => mailferry_sasl::Lookup::Found(mailferry_sasl::Secret::from("1234")),
            _ => mailferry_sasl::Lookup::NotFound,
        }
    }
}

#[tokio::test]
async fn half_open_tls_handshake_is_bounded() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    let server = Server::bind("127.0.0.1:0", options(), Some(ca.server_config().unwrap()))
        .await
        .unwrap()
        .with_tls_timeout(Duration::from_millis(200));
    let addr = server.local_addr().unwrap();
    let token = server.shutdown_token();
    let handle = tokio::spawn(server.serve(Arc::new(Collect::default())));
    let mut c = connect(addr).await;
    c.reply().await;
    c.cmd("EHLO client.test\r\n").await;
    assert_eq!(
        c.cmd("STARTTLS\r\n").await,
        "220 2.0.0 Ready to start TLS\r\n"
    );
    // Never start the handshake: the server gives up after its deadline and closes.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(STEP, c.io.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    token.cancel();
    finished(handle).await;
}

/// A client socket with small kernel buffers, so a few hundred KiB fill the path.
async fn connect_small(addr: SocketAddr) -> Client<TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    sock.set_send_buffer_size(16 * 1024).unwrap();
    let s = tokio::time::timeout(STEP, sock.connect(addr))
        .await
        .unwrap()
        .unwrap();
    Client {
        io: BufReader::new(s),
    }
}

const NOOP: &[u8] = b"NOOP\r\n";
const OK: &str = "250 2.0.0 Ok\r\n";

#[tokio::test]
async fn pipelined_flood_read_concurrently_completes() {
    let (addr, token, handle, sink) = start(options(), None).await;
    let mut c = connect_small(addr).await;
    c.reply().await;
    assert!(
        c.cmd("EHLO client.test\r\n")
            .await
            .contains("250-PIPELINING\r\n")
    );
    // 2 MiB of NOOPs (about 4.7 MiB of replies) written by one task while this one reads.
    let lines = 2 * 1024 * 1024 / NOOP.len();
    let (read_half, mut write_half) = tokio::io::split(c.io.into_inner());
    let writer = tokio::spawn(async move {
        let chunk = NOOP.repeat(1024);
        for _ in 0..lines / 1024 {
            write_half.write_all(&chunk).await.unwrap();
        }
        write_half.write_all(b"QUIT\r\n").await.unwrap();
        write_half
    });
    let mut c = Client {
        io: BufReader::new(read_half),
    };
    for i in 0..lines / 1024 * 1024 {
        let r = c.reply().await;
        assert_eq!(r, OK, "reply {i}");
    }
    assert_eq!(
        c.reply().await,
        "221 2.0.0 mx.test Service closing transmission channel\r\n"
    );
    assert_eq!(c.reply().await, "", "EOF after QUIT");
    tokio::time::timeout(STEP, writer).await.unwrap().unwrap();
    token.cancel();
    finished(handle).await;
    assert_eq!(*sink.closed.lock().unwrap(), [CloseReason::Quit]);
}

/// RFC 2920 lets a client send a whole group before reading, but one that writes far more than
/// the socket buffers hold and never reads cannot be served in bounded memory. The design: the
/// server reads while writing until [`DEFAULT_MAX_PENDING_OUTPUT`] of replies are stuck, then
/// stops reading; after `command_timeout` without the client taking a reply it ends the session
/// with the core's timeout reply, discards the rest of the input so the client can finish
/// writing, and delivers every reply made, in order, then the 421, then EOF.
#[tokio::test]
async fn client_that_never_reads_is_cut_off_with_421_and_gets_every_reply() {
    let mut o = options();
    o.command_timeout = Duration::from_millis(500);
    let (addr, token, handle, sink) = start(o, None).await;
    let mut c = connect_small(addr).await;
    c.reply().await;
    assert!(
        c.cmd("EHLO client.test\r\n")
            .await
            .contains("250-PIPELINING\r\n")
    );
    let started = std::time::Instant::now();
    let chunk = NOOP.repeat(1024);
    let s = c.io.get_mut();
    // Write until the path is full: no progress for 200 ms means the server stopped reading
    // (bounded at 64 MiB, so a server that buffered without limit fails the test).
    let (mut sent, mut off) = (0usize, 0usize);
    loop {
        assert!(sent < 64 << 20, "the server never pushed back");
        match tokio::time::timeout(Duration::from_millis(200), s.write(&chunk[off..])).await {
            Ok(Ok(n)) => {
                assert!(n > 0);
                sent += n;
                off = (off + n) % chunk.len();
            }
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => break,
        }
    }
    // The server cuts the session after its command timeout and discards input, so the rest
    // of this chunk and 1 MiB more go through.
    tokio::time::timeout(STEP, async {
        s.write_all(&chunk[off..]).await.unwrap();
        for _ in 0..(1 << 20) / chunk.len() {
            s.write_all(&chunk).await.unwrap();
        }
    })
    .await
    .unwrap();
    sent += chunk.len() - off + (1 << 20) / chunk.len() * chunk.len();
    let mut oks = 0;
    let last = loop {
        let r = c.reply().await;
        if r != OK {
            break r;
        }
        oks += 1;
    };
    assert_eq!(last, "421 4.4.2 mx.test Error: timeout exceeded\r\n");
    assert_eq!(c.reply().await, "", "EOF after the 421");
    assert!(
        oks > 0 && oks < sent / NOOP.len(),
        "{oks} replies, {sent} octets sent"
    );
    assert!(started.elapsed() < 3 * STEP);
    tokio::time::timeout(STEP, async {
        while !sink.closed.lock().unwrap().contains(&CloseReason::Timeout) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    token.cancel();
    finished(handle).await;
}

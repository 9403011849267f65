//! Shell tests against scripted servers on 127.0.0.1; every wait is bounded.

use std::time::Duration;

use mailferry_sasl::{Credentials, Mechanism};
use mailferry_testkit::{Script, ScriptedServer, TestCa, Transcript};
use mailferry_wire::types::Domain;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::proto::Envelope;

const LIMIT: Duration = Duration::from_secs(20);
/// Pause before the bytes that break a handshake, so they arrive after the `220`.
const GAP: Duration = Duration::from_millis(50);

fn config(port: u16, mode: TlsMode) -> Config {
    let mut c = Config::new("127.0.0.1", Domain::try_from("client.example").unwrap());
    c.port = Some(port);
    c.tls_mode = mode;
    c
}

fn wanted(port: u16, ca: &TestCa) -> Config {
    let mut c = config(port, TlsMode::StartTlsWanted);
    c.tls = Some(ca.client_config().unwrap());
    c.tls_server_name = Some(ca.server_name().to_str().into_owned());
    c
}

fn greeting_and_ehlo(caps: &str) -> Script {
    Script::new()
        .send("220 mx.example ESMTP\r\n")
        .expect("EHLO client.example\r\n")
        .send(format!("250-mx.example\r\n{caps}"))
}

/// STARTTLS accepted, then bytes that are no TLS record: the client's handshake fails.
fn broken_handshake(caps: &str) -> Script {
    greeting_and_ehlo(caps)
        .expect("STARTTLS\r\n")
        .send("220 2.0.0 go ahead\r\n")
        .sleep(GAP)
        // The script then ends and closes; the client's ClientHello is not read.
        .send("this is not a TLS record\r\n")
}

fn quit() -> Script {
    Script::new()
        .expect("QUIT\r\n")
        .send("221 bye\r\n")
        .expect_eof()
}

fn then(a: Script, b: Script) -> Script {
    b.steps().iter().cloned().fold(a, Script::step)
}

async fn finish(server: ScriptedServer) -> Vec<Transcript> {
    tokio::time::timeout(LIMIT, server.finish_all())
        .await
        .unwrap()
}

#[tokio::test]
async fn wanted_retries_in_plaintext_after_a_failed_handshake_only() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    let caps = "250-PIPELINING\r\n250 STARTTLS\r\n";
    // The retry is a new connection that does not try STARTTLS again.
    let server = ScriptedServer::start_sequence(vec![
        broken_handshake(caps),
        then(greeting_and_ehlo(caps), quit()),
    ])
    .await
    .unwrap();
    let cfg = wanted(server.port(), &ca);
    let c = tokio::time::timeout(LIMIT, SmtpClient::connect(&cfg))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.channel(), ChannelSecurity::Plaintext);
    tokio::time::timeout(LIMIT, c.quit())
        .await
        .unwrap()
        .unwrap();
    for t in finish(server).await {
        t.assert_ok();
    }
}

#[tokio::test]
async fn wanted_does_not_retry_a_refused_connection() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    // A port nobody listens on: bind, note the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = tokio::time::timeout(LIMIT, SmtpClient::connect(&wanted(port, &ca)))
        .await
        .unwrap();
    assert!(
        matches!(r, Err(Error::Net(NetError::Connect { .. }))),
        "{r:?}"
    );
}

#[tokio::test]
async fn wanted_does_not_retry_a_connect_timeout() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    // A listener whose accept queue is full drops further SYNs: connecting times out.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(0).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let addr = ("127.0.0.1", port);
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let timeout = Duration::from_secs(1);
    let mut cfg = wanted(port, &ca);
    cfg.options.connect_timeout = timeout;
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(LIMIT, SmtpClient::connect(&cfg))
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Err(Error::Net(NetError::Timeout {
                what: "connect",
                ..
            }))
        ),
        "{r:?}"
    );
    // A retry would have waited a second connect timeout.
    assert!(started.elapsed() < 2 * timeout, "{:?}", started.elapsed());
    drop((listener, fillers));
}

#[tokio::test]
async fn reconnect_during_auth_keeps_wanted_tls_policy_and_stays_plaintext_after_failure() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    let caps = "250-PIPELINING\r\n250-AUTH SCRAM-SHA-256 CRAM-MD5\r\n250 STARTTLS\r\n";
    let server = ScriptedServer::start_sequence(vec![
        // 1: the handshake fails.
        broken_handshake(caps),
        // 2: plaintext retry (no STARTTLS); the server drops the connection during AUTH.
        greeting_and_ehlo(caps)
            .expect_line_prefix("AUTH SCRAM-SHA-256 ")
            .close(),
        // 3: the reconnection for the next mechanism stays on plaintext: no STARTTLS again.
        then(
            greeting_and_ehlo(caps)
                .expect("AUTH CRAM-MD5\r\n")
                .send("334 PDEyMzQ1QGV4YW1wbGUuY29tPg==\r\n")
                .expect_line()
                .send("235 2.7.0 ok\r\n"),
            quit(),
        ),
    ])
    .await
    .unwrap();
    let mut cfg = wanted(server.port(), &ca);
    cfg.credentials = Some(Credentials::new("u").with_password("p"));
    cfg.mechanisms = vec![Mechanism::ScramSha256, Mechanism::CramMd5, Mechanism::Plain];
    let c = tokio::time::timeout(LIMIT, SmtpClient::connect(&cfg))
        .await
        .unwrap()
        .unwrap();
    assert!(c.is_authenticated());
    assert_eq!(c.channel(), ChannelSecurity::Plaintext);
    tokio::time::timeout(LIMIT, c.quit())
        .await
        .unwrap()
        .unwrap();
    let transcripts = finish(server).await;
    assert_eq!(transcripts.len(), 3);
    for t in transcripts {
        t.assert_ok();
    }
}

#[tokio::test]
async fn reconnect_during_auth_tries_starttls_again_when_the_handshake_worked() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    let caps = "250-PIPELINING\r\n250 STARTTLS\r\n";
    let tls_caps = "250-mx.example\r\n250 AUTH SCRAM-SHA-256 CRAM-MD5\r\n";
    let tls_start = |caps: &str| {
        greeting_and_ehlo(caps)
            .expect("STARTTLS\r\n")
            .send("220 2.0.0 go ahead\r\n")
            .start_tls(ca.server_config().unwrap())
            .expect("EHLO client.example\r\n")
            .send(tls_caps)
    };
    let server = ScriptedServer::start_sequence(vec![
        tls_start(caps)
            .expect_line_prefix("AUTH SCRAM-SHA-256 ")
            .close(),
        then(
            tls_start(caps)
                .expect("AUTH CRAM-MD5\r\n")
                .send("334 PDEyMzQ1QGV4YW1wbGUuY29tPg==\r\n")
                .expect_line()
                .send("235 2.7.0 ok\r\n"),
            quit(),
        ),
    ])
    .await
    .unwrap();
    let mut cfg = wanted(server.port(), &ca);
    cfg.credentials = Some(Credentials::new("u").with_password("p"));
    cfg.mechanisms = vec![Mechanism::ScramSha256, Mechanism::CramMd5];
    let c = tokio::time::timeout(LIMIT, SmtpClient::connect(&cfg))
        .await
        .unwrap()
        .unwrap();
    assert!(c.is_authenticated());
    assert_eq!(c.channel(), ChannelSecurity::TlsVerified);
    tokio::time::timeout(LIMIT, c.quit())
        .await
        .unwrap()
        .unwrap();
    for t in finish(server).await {
        t.assert_ok();
    }
}

#[tokio::test]
async fn dropped_send_makes_the_client_refuse_reuse() {
    let script = greeting_and_ehlo("250 PIPELINING\r\n")
        .expect("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        .send("250 ok\r\n250 ok\r\n354 go\r\n")
        // The server is inside the body now (the core may hold the first bytes back until a
        // chunk is full). Nothing more: no end of data, no new transaction, no QUIT as data.
        .expect_eof();
    let server = ScriptedServer::start(script).await.unwrap();
    let cfg = config(server.port(), TlsMode::Plaintext);
    let mut c = tokio::time::timeout(LIMIT, SmtpClient::connect(&cfg))
        .await
        .unwrap()
        .unwrap();
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    // A body source that stalls mid-body; the writer stays alive so it never ends.
    let (mut writer, reader) = tokio::io::duplex(1024);
    writer.write_all(b"hello\r\nwor").await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(1), c.send(&env, reader)).await;
    assert!(r.is_err(), "the send must still be waiting for its body");
    let r = tokio::time::timeout(LIMIT, c.send_bytes(&env, b"next\r\n"))
        .await
        .unwrap();
    assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
    let r = tokio::time::timeout(LIMIT, c.send(&env, &b"next\r\n"[..]))
        .await
        .unwrap();
    assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
    let r = tokio::time::timeout(LIMIT, c.quit()).await.unwrap();
    assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
    drop(writer);
    tokio::time::timeout(LIMIT, server.finish())
        .await
        .unwrap()
        .assert_ok();
}

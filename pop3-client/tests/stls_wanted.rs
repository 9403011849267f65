//! STLS handshake failures (SECURITY.md, "Stripping and downgrade"): in WANTED mode the failed
//! connection is closed and a plaintext retry is a new connection, logged, that withholds
//! password mechanisms; in REQUIRED mode the failure is fatal.

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailferry_pop3_client::{AuthError, Config, Error, Pop3Client};
use mailferry_sasl::{AuthPolicy, Credentials, Exclusion, Mechanism};
use mailferry_testkit::{Script, ScriptedServer, TestCa, Transcript};
use mailferry_wire::net::NetError;
use mailferry_wire::tls::{ChannelSecurity, TlsMode};

const LIMIT: Duration = Duration::from_secs(20);
const SECRET: &str = "hunter2-secret";
const CAPS: &str = "+OK\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n";

fn config(server: &ScriptedServer, mode: TlsMode, ca: &TestCa) -> Config {
    let mut c = Config::new(
        "localhost",
        mode,
        Credentials::new("alice").with_password(SECRET),
    );
    c.port = Some(server.port());
    c.tls = Some((ca.client_config().unwrap(), ChannelSecurity::TlsVerified));
    c.mechanisms = vec![Mechanism::Plain, Mechanism::User];
    c
}

/// A server that accepts STLS, waits for the start of the ClientHello (a handshake record;
/// rustls sends its first record with the TLS 1.0 record version) and answers in plaintext.
fn stls_then_garbage() -> Script {
    Script::new()
        .send("+OK ready\r\n")
        .expect("CAPA\r\n")
        .send(CAPS)
        .expect("STLS\r\n")
        .send("+OK begin TLS\r\n")
        .expect(&b"\x16\x03\x01"[..])
        .send("-ERR this is not a TLS server\r\n")
        // Let the client read the garbage before our close can reset the connection.
        .sleep(Duration::from_millis(100))
        .close()
}

/// The plaintext retry: greeting and CAPA (still announcing STLS, which must not be tried).
fn plaintext_greeting() -> Script {
    Script::new()
        .send("+OK ready\r\n")
        .expect("CAPA\r\n")
        .send(CAPS)
}

/// Connects, then drops the client (closing the connection, which the scripts wait for) and
/// returns the mechanism and channel it logged in with, and every connection's transcript.
async fn connect_all(
    server: ScriptedServer,
    config: &Config,
) -> (Result<(Mechanism, ChannelSecurity), Error>, Vec<Transcript>) {
    let result = tokio::time::timeout(LIMIT, Pop3Client::connect(config))
        .await
        .unwrap()
        .map(|client| (client.mechanism(), client.channel()));
    let transcripts = tokio::time::timeout(LIMIT, server.finish_all())
        .await
        .unwrap();
    (result, transcripts)
}

/// Collects the warn-level (and more severe) messages logged on this thread.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0.push_str(&format!("{value:?}"));
                }
            }
        }
        let mut text = String::new();
        event.record(&mut Message(&mut text));
        self.0.lock().unwrap().push(text);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn wanted_handshake_failure_retries_in_plaintext_without_password() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start_sequence(vec![
        stls_then_garbage(),
        plaintext_greeting().expect_eof(),
    ])
    .await
    .unwrap();
    let c = config(&server, TlsMode::StartTlsWanted, &ca);
    let warnings = Warnings::default();
    let guard = tracing::subscriber::set_default(warnings.clone());
    let (result, t) = connect_all(server, &c).await;
    drop(guard);
    // The retry happened: the second connection was greeted and asked for CAPA, never STLS,
    // and nothing was sent after it: USER/PASS and PLAIN are withheld on plaintext.
    match result {
        Err(Error::Auth(AuthError::NoMechanism { excluded })) => assert_eq!(
            excluded,
            vec![
                (
                    Mechanism::Plain,
                    Exclusion::RevealsCredentialOnInsecureChannel
                ),
                (
                    Mechanism::User,
                    Exclusion::RevealsCredentialOnInsecureChannel
                ),
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.len(), 2);
    t[0].assert_ok();
    t[1].assert_ok();
    assert_eq!(t[1].received(), b"CAPA\r\n");
    for t in &t {
        let received = String::from_utf8_lossy(&t.received()).into_owned();
        assert!(!received.contains(SECRET), "secret sent: {received}");
        assert!(!received.contains("PASS") && !received.contains("AUTH"));
    }
    let warnings = warnings.0.lock().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("STLS handshake with localhost failed")
                && w.contains("new plaintext connection")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn wanted_handshake_failure_retry_uses_password_only_when_allowed() {
    let ca = TestCa::new().unwrap();
    let retry = plaintext_greeting()
        .expect("USER alice\r\n")
        .send("+OK\r\n")
        .expect(format!("PASS {SECRET}\r\n"))
        .send("+OK logged in\r\n")
        .expect_eof();
    let server = ScriptedServer::start_sequence(vec![stls_then_garbage(), retry])
        .await
        .unwrap();
    let mut c = config(&server, TlsMode::StartTlsWanted, &ca);
    c.mechanisms = vec![Mechanism::User];
    c.auth_policy = AuthPolicy::with_insecure_auth(true);
    let (result, t) = connect_all(server, &c).await;
    // Insecure auth was allowed explicitly: the retry logs in with USER/PASS, in plaintext.
    assert_eq!(
        result.unwrap(),
        (Mechanism::User, ChannelSecurity::Plaintext)
    );
    assert_eq!(t.len(), 2);
    t[0].assert_ok();
    t[1].assert_ok();
}

#[tokio::test]
async fn required_handshake_failure_is_fatal_and_not_retried() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(stls_then_garbage()).await.unwrap();
    let c = config(&server, TlsMode::StartTlsRequired, &ca);
    let result = tokio::time::timeout(LIMIT, Pop3Client::connect(&c))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(Error::Net(NetError::Tls(_)))),
        "{result:?}"
    );
    let t = tokio::time::timeout(LIMIT, server.finish()).await.unwrap();
    t.assert_ok();
    let received = String::from_utf8_lossy(&t.received()).into_owned();
    assert!(!received.contains(SECRET) && !received.contains("USER"));
}

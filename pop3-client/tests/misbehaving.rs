//! Scripted misbehaving servers (SECURITY.md, POP3 classes) against the tokio shell. Each test
//! asserts the exact error and, where it matters, that nothing secret left the client.

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is a failed test

use std::time::Duration;

use mailferry_pop3_client::proto::{ProtocolError, TimeoutKind};
use mailferry_pop3_client::{AuthError, Config, Error, Pop3Client, TlsRequiredError};
use mailferry_sasl::{AuthPolicy, Credentials, Mechanism};
use mailferry_testkit::{Script, ScriptedServer, TestCa, Transcript};
use mailferry_wire::tls::{ChannelSecurity, TlsMode};

const LIMIT: Duration = Duration::from_secs(20);
const SECRET: &str = "hunter2-secret";

fn config(server: &ScriptedServer, mode: TlsMode, ca: &TestCa) -> Config {
    let mut c = Config::new(
        "localhost",
        mode,
        Credentials::new("alice").with_password(SECRET),
    );
    c.port = Some(server.port());
    c.tls = Some((ca.client_config().unwrap(), ChannelSecurity::TlsVerified));
    c
}

async fn connect(
    server: ScriptedServer,
    config: &Config,
) -> (Result<Pop3Client, Error>, Transcript) {
    let result = tokio::time::timeout(LIMIT, Pop3Client::connect(config))
        .await
        .unwrap();
    // Drop the client first so the server sees the close.
    let result = result.map(|c| {
        drop(c);
        None::<Pop3Client>
    });
    let transcript = tokio::time::timeout(LIMIT, server.finish()).await.unwrap();
    (result.map(|_| unreachable_client()), transcript)
}

fn unreachable_client() -> Pop3Client {
    panic!("connect was expected to fail")
}

fn assert_no_secret(t: &Transcript) {
    let received = t.received();
    let text = String::from_utf8_lossy(&received);
    assert!(!text.contains(SECRET), "secret sent: {text}");
    assert!(!text.contains("USER") && !text.contains("AUTH") && !text.contains("APOP"));
}

#[tokio::test]
async fn stls_missing_in_required_mode_sends_nothing_secret() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(
        Script::new()
            .send("+OK ready <1.2@host>\r\n")
            .expect("CAPA\r\n")
            .send("+OK\r\nUSER\r\nSASL PLAIN\r\nXSTLS\r\n.\r\n")
            .expect_eof(),
    )
    .await
    .unwrap();
    let c = config(&server, TlsMode::StartTlsRequired, &ca);
    let (result, t) = connect(server, &c).await;
    assert!(
        matches!(
            result,
            Err(Error::TlsRequired(TlsRequiredError::StlsNotOffered))
        ),
        "{result:?}"
    );
    t.assert_ok();
    assert_no_secret(&t);
}

#[tokio::test]
async fn stls_refused_in_required_mode() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(
        Script::new()
            .send("+OK ready\r\n")
            .expect("CAPA\r\n")
            .send("+OK\r\nSTLS\r\nUSER\r\n.\r\n")
            .expect("STLS\r\n")
            .send("-ERR [SYS/TEMP] not now\r\n")
            .expect_eof(),
    )
    .await
    .unwrap();
    let c = config(&server, TlsMode::StartTlsRequired, &ca);
    let (result, t) = connect(server, &c).await;
    assert!(
        matches!(&result, Err(Error::TlsRequired(TlsRequiredError::StlsRefused(s)))
            if s.text() == b"not now"),
        "{result:?}"
    );
    t.assert_ok();
    assert_no_secret(&t);
}

#[tokio::test]
async fn capa_refused_in_required_mode() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(
        Script::new()
            .send("+OK ready\r\n")
            .expect("CAPA\r\n")
            .send("-ERR what?\r\n")
            .expect_eof(),
    )
    .await
    .unwrap();
    let c = config(&server, TlsMode::StartTlsRequired, &ca);
    let (result, t) = connect(server, &c).await;
    assert!(
        matches!(
            result,
            Err(Error::TlsRequired(TlsRequiredError::CapaRefused(_)))
        ),
        "{result:?}"
    );
    t.assert_ok();
    assert_no_secret(&t);
}

#[tokio::test]
async fn rejects_bytes_buffered_before_tls() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(
        Script::new()
            .send("+OK ready\r\n")
            .expect("CAPA\r\n")
            .send("+OK\r\nSTLS\r\nUSER\r\n.\r\n")
            .expect("STLS\r\n")
            .send("+OK begin TLS\r\n+OK injected into the TLS session\r\n")
            .expect_eof(),
    )
    .await
    .unwrap();
    let c = config(&server, TlsMode::StartTlsWanted, &ca);
    let (result, t) = connect(server, &c).await;
    assert!(
        matches!(result, Err(Error::Protocol(ProtocolError::DataBeforeTls))),
        "{result:?}"
    );
    t.assert_ok();
    assert_no_secret(&t);
}

#[tokio::test]
async fn server_that_never_greets_times_out() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(Script::new().sleep(Duration::from_secs(3)).close())
        .await
        .unwrap();
    let mut c = config(&server, TlsMode::Plaintext, &ca);
    c.options.greeting_timeout = Duration::from_millis(200);
    let (result, _) = connect(server, &c).await;
    assert!(
        matches!(
            result,
            Err(Error::Protocol(ProtocolError::Timeout(
                TimeoutKind::Greeting
            )))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn server_closing_mid_greeting_is_unexpected_eof() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(Script::new().send("+OK rea").close())
        .await
        .unwrap();
    let c = config(&server, TlsMode::Plaintext, &ca);
    let (result, _) = connect(server, &c).await;
    assert!(
        matches!(result, Err(Error::Protocol(ProtocolError::UnexpectedEof))),
        "{result:?}"
    );
}

#[tokio::test]
async fn falls_back_from_a_mechanism_the_server_rejects_as_unsupported() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(
        Script::new()
            .send("+OK ready\r\n")
            .expect("CAPA\r\n")
            .send("+OK\r\nSASL CRAM-MD5 PLAIN\r\n.\r\n")
            .expect("AUTH CRAM-MD5\r\n")
            .send("-ERR unsupported mechanism\r\n")
            // PLAIN with SASL-IR: "\0alice\0hunter2-secret".
            .expect("AUTH PLAIN AGFsaWNlAGh1bnRlcjItc2VjcmV0\r\n")
            .send("+OK logged in\r\n")
            .expect("STAT\r\n")
            .send("+OK 0 0\r\n")
            .expect("QUIT\r\n")
            .send("+OK bye\r\n")
            .close(),
    )
    .await
    .unwrap();
    let mut c = config(&server, TlsMode::Plaintext, &ca);
    c.auth_policy = AuthPolicy::with_insecure_auth(true);
    c.mechanisms = vec![Mechanism::CramMd5, Mechanism::Plain];
    let mut pop = tokio::time::timeout(LIMIT, Pop3Client::connect(&c))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pop.mechanism(), Mechanism::Plain);
    assert_eq!(pop.stat().await.unwrap().count, 0);
    pop.quit().await.unwrap();
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn auth_resp_code_stops_without_fallback() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(
        Script::new()
            .send("+OK ready\r\n")
            .expect("CAPA\r\n")
            .send("+OK\r\nSASL CRAM-MD5\r\nUSER\r\n.\r\n")
            .expect("AUTH CRAM-MD5\r\n")
            .send("+ PDEyMzQ1QGhvc3Q+\r\n")
            .expect_line()
            .send("-ERR [AUTH] invalid credentials\r\n")
            .expect_eof(),
    )
    .await
    .unwrap();
    let mut c = config(&server, TlsMode::Plaintext, &ca);
    c.auth_policy = AuthPolicy::with_insecure_auth(true);
    c.mechanisms = vec![Mechanism::CramMd5, Mechanism::User];
    let (result, t) = connect(server, &c).await;
    assert!(
        matches!(
            &result,
            Err(Error::Auth(AuthError::CredentialsRejected {
                mechanism: Mechanism::CramMd5,
                reply: Some(_)
            }))
        ),
        "{result:?}"
    );
    t.assert_ok();
}

#[tokio::test]
async fn in_use_is_a_temporary_failure() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(
        Script::new()
            .send("+OK ready\r\n")
            .expect("CAPA\r\n")
            .send("-ERR no CAPA here\r\n")
            .expect("AUTH\r\n")
            .send("-ERR no AUTH either\r\n")
            .expect("USER alice\r\n")
            .send("+OK\r\n")
            .expect(format!("PASS {SECRET}\r\n"))
            .send("-ERR [IN-USE] maildrop locked\r\n")
            .expect_eof(),
    )
    .await
    .unwrap();
    let mut c = config(&server, TlsMode::Plaintext, &ca);
    c.auth_policy = AuthPolicy::with_insecure_auth(true);
    let (result, t) = connect(server, &c).await;
    assert!(
        matches!(&result, Err(Error::Auth(AuthError::Temporary { reply: Some(s) }))
            if s.text() == b"maildrop locked"),
        "{result:?}"
    );
    t.assert_ok();
}

#[tokio::test]
async fn body_that_never_ends_is_bounded_by_the_idle_timeout() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(
        Script::new()
            .send("+OK ready\r\n")
            .expect("CAPA\r\n")
            .send("+OK\r\nUSER\r\n.\r\n")
            .expect("USER alice\r\n")
            .send("+OK\r\n")
            .expect(format!("PASS {SECRET}\r\n"))
            .send("+OK\r\n")
            .expect("RETR 1\r\n")
            .send("+OK\r\nSubject: endless\r\n\r\nmore and more\r\n")
            .sleep(Duration::from_secs(3))
            .close(),
    )
    .await
    .unwrap();
    let mut c = config(&server, TlsMode::Plaintext, &ca);
    c.auth_policy = AuthPolicy::with_insecure_auth(true);
    c.options.body_idle_timeout = Duration::from_millis(300);
    let mut pop = Pop3Client::connect(&c).await.unwrap();
    let mut sink = Vec::new();
    let n1 = std::num::NonZeroU32::new(1).unwrap();
    let err = tokio::time::timeout(LIMIT, pop.retrieve(n1, &mut sink))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol(ProtocolError::Timeout(TimeoutKind::BodyIdle))
        ),
        "{err:?}"
    );
    assert_eq!(sink, b"Subject: endless\r\n\r\nmore and more\r\n");
}

#[tokio::test]
async fn delete_many_pipelines_and_reports_each_refusal() {
    let ca = TestCa::new().unwrap();
    let server = ScriptedServer::start(
        Script::new()
            .send("+OK ready\r\n")
            .expect("CAPA\r\n")
            .send("+OK\r\nSASL PLAIN\r\nPIPELINING\r\n.\r\n")
            .expect("AUTH PLAIN AGFsaWNlAGh1bnRlcjItc2VjcmV0\r\n")
            .send("+OK logged in\r\n")
            // The three DELEs leave in one write, before any answer.
            .expect("DELE 1\r\nDELE 2\r\nDELE 3\r\n")
            .send("+OK\r\n-ERR [IN-USE] message 2 is locked\r\n+OK\r\n")
            .expect("QUIT\r\n")
            .send("+OK 2 deleted\r\n")
            .close(),
    )
    .await
    .unwrap();
    let mut c = config(&server, TlsMode::Plaintext, &ca);
    c.auth_policy = AuthPolicy::with_insecure_auth(true);
    c.mechanisms = vec![Mechanism::Plain];
    let mut pop = tokio::time::timeout(LIMIT, Pop3Client::connect(&c))
        .await
        .unwrap()
        .unwrap();
    let msgs: Vec<_> = (1..=3)
        .map(|n| std::num::NonZeroU32::new(n).unwrap())
        .collect();
    let results = tokio::time::timeout(LIMIT, pop.delete_many(&msgs))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0], (msgs[0], Ok(())));
    let (msg, refused) = &results[1];
    assert_eq!(*msg, msgs[1]);
    assert_eq!(
        refused.as_ref().unwrap_err().text(),
        b"message 2 is locked",
        "the -ERR is reported for that message"
    );
    assert_eq!(results[2], (msgs[2], Ok(())));
    pop.quit().await.unwrap();
    server.finish().await.assert_ok();
}

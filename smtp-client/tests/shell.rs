//! The tokio shell against scripted misbehaving servers on 127.0.0.1 (every wait bounded).

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is a failed test

use std::time::Duration;

use mailferry_sasl::Mechanism;
use mailferry_smtp_client::proto::{Envelope, ProtocolError, RecipientStatus, Waiting};
use mailferry_smtp_client::{AuthFailure, Config, Error, SmtpClient};
use mailferry_testkit::{Script, ScriptedServer, TestCa};
use mailferry_wire::tls::{ChannelSecurity, TlsMode};
use mailferry_wire::types::Domain;

const LIMIT: Duration = Duration::from_secs(20);

fn config(port: u16, mode: TlsMode) -> Config {
    let mut c = Config::new("127.0.0.1", Domain::try_from("client.example").unwrap());
    c.port = Some(port);
    c.tls_mode = mode;
    c
}

async fn run(
    script: Script,
    config: impl FnOnce(u16) -> Config,
) -> (Result<(), Error>, mailferry_testkit::Transcript) {
    let server = ScriptedServer::start(script).await.unwrap();
    let cfg = config(server.port());
    let result = tokio::time::timeout(LIMIT, SmtpClient::connect(&cfg))
        .await
        .unwrap()
        .map(drop);
    (
        result,
        tokio::time::timeout(LIMIT, server.finish()).await.unwrap(),
    )
}

fn greeting_and_ehlo(caps: &str) -> Script {
    Script::new()
        .send("220 mx.example ESMTP\r\n")
        .expect("EHLO client.example\r\n")
        .send(format!("250-mx.example\r\n{caps}"))
}

#[tokio::test]
async fn starttls_stripped_in_required_mode_sends_nothing_more() {
    let script = greeting_and_ehlo("250-PIPELINING\r\n250 AUTH PLAIN\r\n").expect_eof();
    let (r, t) = run(script, |p| config(p, TlsMode::StartTlsRequired)).await;
    assert!(matches!(r, Err(Error::StartTlsNotOffered)), "{r:?}");
    t.assert_ok();
}

#[tokio::test]
async fn misspelt_xstarttls_is_not_starttls() {
    let script = greeting_and_ehlo("250 XSTARTTLS\r\n").expect_eof();
    let (r, t) = run(script, |p| config(p, TlsMode::StartTlsRequired)).await;
    assert!(matches!(r, Err(Error::StartTlsNotOffered)), "{r:?}");
    t.assert_ok();
}

#[tokio::test]
async fn starttls_refused_in_required_mode() {
    for code in ["454 4.7.0 TLS not available", "502 5.5.1 not implemented"] {
        let script = greeting_and_ehlo("250 STARTTLS\r\n")
            .expect("STARTTLS\r\n")
            .send(format!("{code}\r\n"))
            .expect_eof();
        let (r, t) = run(script, |p| config(p, TlsMode::StartTlsRequired)).await;
        match r {
            Err(Error::StartTlsRefused { reply }) => {
                assert_eq!(reply.code().as_u16(), code[..3].parse::<u16>().unwrap())
            }
            other => panic!("{other:?}"),
        }
        t.assert_ok();
    }
}

#[tokio::test]
async fn ehlo_refused_to_force_helo_in_required_mode() {
    let script = Script::new()
        .send("220 mx.example ESMTP\r\n")
        .expect("EHLO client.example\r\n")
        .send("502 5.5.2 EHLO not implemented\r\n")
        .expect_eof();
    let (r, t) = run(script, |p| config(p, TlsMode::StartTlsRequired)).await;
    assert!(matches!(r, Err(Error::StartTlsNotOffered)), "{r:?}");
    t.assert_ok();
}

#[tokio::test]
async fn bytes_after_starttls_220_are_refused() {
    let script = greeting_and_ehlo("250 STARTTLS\r\n")
        .expect("STARTTLS\r\n")
        .send("220 go ahead\r\n250 AUTH PLAIN\r\n")
        .expect_eof();
    let (r, t) = run(script, |p| config(p, TlsMode::StartTlsRequired)).await;
    assert!(
        matches!(r, Err(Error::Protocol(ProtocolError::DataBeforeTls))),
        "{r:?}"
    );
    t.assert_ok();
}

#[tokio::test]
async fn greeting_554_is_rejected_with_quit() {
    let script = Script::new()
        .send("554 5.3.2 not here\r\n")
        .expect("QUIT\r\n")
        .send("221 bye\r\n")
        .close();
    let (r, t) = run(script, |p| config(p, TlsMode::Plaintext)).await;
    match r {
        Err(Error::Rejected { reply }) => assert_eq!(reply.code().as_u16(), 554),
        other => panic!("{other:?}"),
    }
    t.assert_ok();
}

#[tokio::test]
async fn wanted_mode_refusal_continues_without_password_mechanisms() {
    // STARTTLS refused in WANTED mode: plaintext, and PLAIN is withheld.
    let script = greeting_and_ehlo("250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n")
        .expect("STARTTLS\r\n")
        .send("454 4.7.0 no\r\n")
        .expect_eof();
    let (r, t) = run(script, |p| {
        let mut c = config(p, TlsMode::StartTlsWanted);
        c.credentials = Some(mailferry_sasl::Credentials::new("u").with_password("p"));
        c.mechanisms = vec![Mechanism::Plain, Mechanism::Login];
        c
    })
    .await;
    match r {
        Err(Error::Auth {
            failure: AuthFailure::NoMechanism(ex),
            ..
        }) => assert_eq!(ex.len(), 2),
        other => panic!("{other:?}"),
    }
    t.assert_ok();
}

#[tokio::test]
async fn full_session_over_starttls_with_auth_and_pipelining() {
    let ca = TestCa::new().unwrap();
    let script = greeting_and_ehlo("250-PIPELINING\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n")
        .expect("STARTTLS\r\n")
        .send("220 go ahead\r\n")
        .start_tls(ca.server_config().unwrap())
        .expect("EHLO client.example\r\n")
        // The post-TLS list differs: it is the one used.
        .send("250-mx.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n")
        .expect("AUTH PLAIN AHUAcA==\r\n")
        .send("235 2.7.0 ok\r\n")
        .expect("MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n")
        .send("250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n")
        .expect("caf\u{e9}\r\n..dot\r\n.\r\n")
        .send("250 2.0.0 queued\r\n")
        .expect("QUIT\r\n")
        .send("221 bye\r\n")
        .close();
    let server = ScriptedServer::start(script).await.unwrap();
    let mut cfg = config(server.port(), TlsMode::StartTlsRequired);
    cfg.host = "localhost".into();
    cfg.tls = Some(ca.client_config().unwrap());
    cfg.credentials = Some(mailferry_sasl::Credentials::new("u").with_password("p"));
    cfg.mechanisms = vec![Mechanism::Plain];
    let work = async {
        let mut c = SmtpClient::connect(&cfg).await.unwrap();
        assert_eq!(c.channel(), ChannelSecurity::TlsVerified);
        assert!(c.capabilities().unwrap().eight_bit_mime);
        let env = Envelope::from_strs("a@x.test", &["b@x.test", "c@x.test"]).unwrap();
        let report = c
            .send_bytes(&env, "caf\u{e9}\n.dot".as_bytes())
            .await
            .unwrap();
        let s: Vec<_> = report.recipients.iter().map(|r| r.status).collect();
        assert_eq!(s, [RecipientStatus::Delivered, RecipientStatus::Permanent]);
        c.quit().await.unwrap();
    };
    tokio::time::timeout(LIMIT, work).await.unwrap();
    tokio::time::timeout(LIMIT, server.finish())
        .await
        .unwrap()
        .assert_ok();
}

#[tokio::test]
async fn long_line_is_refused_before_anything_is_sent() {
    let script = greeting_and_ehlo("250 PIPELINING\r\n")
        .expect("QUIT\r\n")
        .send("221 bye\r\n")
        .close();
    let server = ScriptedServer::start(script).await.unwrap();
    let cfg = config(server.port(), TlsMode::Plaintext);
    let work = async {
        let mut c = SmtpClient::connect(&cfg).await.unwrap();
        let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
        let long = vec![b'x'; 2000];
        let r = c.send_bytes(&env, &long).await;
        assert!(matches!(r, Err(Error::Usage(_))), "{r:?}");
        c.quit().await.unwrap();
    };
    tokio::time::timeout(LIMIT, work).await.unwrap();
    tokio::time::timeout(LIMIT, server.finish())
        .await
        .unwrap()
        .assert_ok();
}

#[tokio::test]
async fn streamed_body_in_bounded_chunks_ends_in_one_write() {
    // 200 KiB body, 64 KiB chunks: the last chunk and the terminator arrive together.
    let body: Vec<u8> = (0..200 * 1024)
        .map(|i| if i % 80 == 79 { b'\n' } else { b'a' })
        .collect();
    let mut wire = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        if !line.is_empty() {
            wire.extend_from_slice(line);
            wire.extend_from_slice(b"\r\n");
        }
    }
    wire.extend_from_slice(b".\r\n");
    let script = greeting_and_ehlo("250 PIPELINING\r\n")
        .expect("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        .send("250 ok\r\n250 ok\r\n354 go\r\n")
        .expect(wire)
        .send("250 ok\r\n")
        .expect("QUIT\r\n")
        .send("221 bye\r\n")
        .close();
    let server = ScriptedServer::start(script).await.unwrap();
    let cfg = config(server.port(), TlsMode::Plaintext);
    let work = async {
        let mut c = SmtpClient::connect(&cfg).await.unwrap();
        let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
        let r = c.send(&env, &body[..]).await.unwrap();
        assert!(r.is_accepted());
        c.quit().await.unwrap();
    };
    tokio::time::timeout(LIMIT, work).await.unwrap();
    tokio::time::timeout(LIMIT, server.finish())
        .await
        .unwrap()
        .assert_ok();
}

/// The shell keeps one timer armed for the earliest deadline seen: firing early (armed for the
/// MAIL reply, now waiting for the end of data with a longer limit) must not time out.
#[tokio::test]
async fn timer_armed_for_an_earlier_deadline_does_not_time_out_early() {
    let script = greeting_and_ehlo("250 PIPELINING\r\n")
        .expect("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        .send("250 ok\r\n250 ok\r\n354 go\r\n")
        .expect("hi\r\n.\r\n")
        // Past the 200 ms MAIL/RCPT/DATA limits, within the 2 s end-of-data limit.
        .sleep(Duration::from_millis(600))
        .send("250 ok\r\n")
        .expect("QUIT\r\n")
        .send("221 bye\r\n")
        .close();
    let server = ScriptedServer::start(script).await.unwrap();
    let mut cfg = config(server.port(), TlsMode::Plaintext);
    cfg.options.mail_timeout = Duration::from_millis(200);
    cfg.options.rcpt_timeout = Duration::from_millis(200);
    cfg.options.data_init_timeout = Duration::from_millis(200);
    cfg.options.data_termination_timeout = Duration::from_secs(2);
    let work = async {
        let mut c = SmtpClient::connect(&cfg).await.unwrap();
        let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
        let r = c.send_bytes(&env, b"hi\r\n").await.unwrap();
        assert!(r.is_accepted(), "{r:?}");
        c.quit().await.unwrap();
    };
    tokio::time::timeout(LIMIT, work).await.unwrap();
    tokio::time::timeout(LIMIT, server.finish())
        .await
        .unwrap()
        .assert_ok();
}

/// A deadline earlier than the armed one (the next MAIL after a long end-of-data wait) re-arms
/// the timer: the silent server is given up on at the MAIL limit, not the end-of-data one.
#[tokio::test]
async fn timer_moves_earlier_for_a_shorter_deadline() {
    let script = greeting_and_ehlo("250 PIPELINING\r\n")
        .expect("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        .send("250 ok\r\n250 ok\r\n354 go\r\n")
        .expect("hi\r\n.\r\n")
        .send("250 ok\r\n")
        .expect("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        .expect_eof();
    let server = ScriptedServer::start(script).await.unwrap();
    let mut cfg = config(server.port(), TlsMode::Plaintext);
    cfg.options.mail_timeout = Duration::from_millis(300);
    cfg.options.data_termination_timeout = Duration::from_secs(15);
    let work = async {
        let mut c = SmtpClient::connect(&cfg).await.unwrap();
        let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
        let r = c.send_bytes(&env, b"hi\r\n").await.unwrap();
        assert!(r.is_accepted(), "{r:?}");
        let started = std::time::Instant::now();
        let r = c.send_bytes(&env, b"hi\r\n").await;
        let waited = started.elapsed();
        assert!(
            matches!(
                r,
                Err(Error::Protocol(ProtocolError::Timeout(Waiting::Mail)))
            ),
            "{r:?}"
        );
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    };
    tokio::time::timeout(LIMIT, work).await.unwrap();
    tokio::time::timeout(LIMIT, server.finish())
        .await
        .unwrap()
        .assert_ok();
}

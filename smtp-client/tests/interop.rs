//! Interop against a real Postfix (testkit): STARTTLS with each mechanism, implicit TLS,
//! refused recipients, 8-bit bodies, many messages over one connection.

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is a failed test

use std::time::Duration;

use mailferry_sasl::{Credentials, Mechanism};
use mailferry_smtp_client::proto::{Envelope, RecipientStatus};
use mailferry_smtp_client::{Config, SmtpClient};
use mailferry_testkit::{Postfix, SmtpSink};
use mailferry_wire::smtp::Body;
use mailferry_wire::tls::{ChannelSecurity, TlsMode};
use mailferry_wire::types::Domain;

const LIMIT: Duration = Duration::from_secs(120);

fn config(postfix: &Postfix, mode: TlsMode) -> Config {
    let mut c = Config::new("localhost", Domain::try_from("client.example").unwrap());
    c.tls_mode = mode;
    c.port = Some(match mode {
        TlsMode::Implicit => postfix.smtps_port(),
        _ => postfix.smtp_port(),
    });
    c.tls = Some(postfix.ca().client_config().unwrap());
    c
}

fn message(n: usize) -> Vec<u8> {
    format!(
        "From: a@example.test\r\nTo: alice@example.test\r\nSubject: message {n}\r\nMessage-ID: <{n}@mailferry.test>\r\n\r\nThis is message {n}.\r\n.leading dot line\r\n"
    )
    .into_bytes()
}

/// What was sent arrived: every header line we sent is in the delivered header, and the
/// delivered body is ours byte for byte. Postfix prepends trace headers, adds a missing
/// `Date:`/`Message-ID:`, and stores maildir files with Unix LF line endings.
fn assert_delivered_intact(delivered: &[u8], sent: &[u8]) {
    let unix = |b: &[u8]| String::from_utf8_lossy(b).replace("\r\n", "\n");
    let delivered = unix(delivered);
    let sent = unix(sent);
    let (sent_head, sent_body) = sent.split_once("\n\n").unwrap();
    let (got_head, got_body) = delivered.split_once("\n\n").unwrap();
    assert_eq!(got_body, sent_body, "body differs:\n{delivered}");
    for line in sent_head.lines() {
        assert!(
            got_head.lines().any(|l| l == line),
            "{line:?} missing:\n{delivered}"
        );
    }
}

#[tokio::test]
#[ignore = "needs postfix: run scripts/full-test.sh"]
async fn starttls_required_with_each_mechanism() {
    let mut results = Vec::new();
    for (name, mech) in [
        ("PLAIN", Mechanism::Plain),
        ("LOGIN", Mechanism::Login),
        ("CRAM-MD5", Mechanism::CramMd5),
        ("NTLM", Mechanism::Ntlm),
    ] {
        let postfix = Postfix::builder()
            .user("alice", "secret")
            .mechanisms(&[name])
            .start()
            .unwrap();
        let mut cfg = config(&postfix, TlsMode::StartTlsRequired);
        cfg.credentials = Some(Credentials::new("alice").with_password("secret"));
        cfg.mechanisms = vec![mech];
        let outcome = tokio::time::timeout(LIMIT, async {
            let mut c = SmtpClient::connect(&cfg).await?;
            assert_eq!(c.channel(), ChannelSecurity::TlsVerified);
            assert!(c.is_authenticated());
            let env = Envelope::from_strs("alice@example.test", &["alice@example.test"]).unwrap();
            let report = c.send_bytes(&env, &message(1)).await?;
            assert!(report.is_accepted());
            c.quit().await?;
            Ok::<_, mailferry_smtp_client::Error>(())
        })
        .await
        .unwrap();
        if outcome.is_ok() {
            let got = postfix
                .wait_for_messages("alice@example.test", 1, Duration::from_secs(30))
                .unwrap();
            assert_delivered_intact(&got[0], &message(1));
        }
        eprintln!("{name}: {outcome:?}");
        results.push((name, outcome.is_ok()));
    }
    // Every mechanism must work, NTLM included: Cyrus's type-2 carries no target information
    // and grants no extended session security, and NTLMv2 must still be answered.
    for (name, ok) in &results {
        assert!(ok, "{name} failed");
    }
}

#[tokio::test]
#[ignore = "needs postfix: run scripts/full-test.sh"]
async fn implicit_tls_on_the_smtps_port() {
    let postfix = Postfix::builder().user("alice", "secret").start().unwrap();
    let mut cfg = config(&postfix, TlsMode::Implicit);
    cfg.credentials = Some(Credentials::new("alice").with_password("secret"));
    cfg.mechanisms = vec![Mechanism::Plain];
    tokio::time::timeout(LIMIT, async {
        let mut c = SmtpClient::connect(&cfg).await.unwrap();
        assert_eq!(c.channel(), ChannelSecurity::TlsVerified);
        let env = Envelope::from_strs("alice@example.test", &["alice@example.test"]).unwrap();
        assert!(c.send_bytes(&env, &message(7)).await.unwrap().is_accepted());
        c.quit().await.unwrap();
    })
    .await
    .unwrap();
    let got = postfix
        .wait_for_messages("alice@example.test", 1, Duration::from_secs(30))
        .unwrap();
    assert_delivered_intact(&got[0], &message(7));
}

#[tokio::test]
#[ignore = "needs postfix: run scripts/full-test.sh"]
async fn hundred_recipients_some_refused_per_recipient_report() {
    let mut builder = Postfix::builder();
    let mut to = Vec::new();
    for i in 0..100 {
        let addr = format!("user{i}@example.test");
        // Every tenth address has no mailbox: 550 5.1.1 from Postfix.
        if i % 10 != 3 {
            builder = builder.mailbox(&addr);
        }
        to.push(addr);
    }
    let postfix = builder
        .main_cf("smtpd_recipient_limit = 1000")
        .start()
        .unwrap();
    let cfg = config(&postfix, TlsMode::StartTlsRequired);
    let to_refs: Vec<&str> = to.iter().map(String::as_str).collect();
    let env = Envelope::from_strs("sender@example.test", &to_refs).unwrap();
    let report = tokio::time::timeout(LIMIT, async {
        let mut c = SmtpClient::connect(&cfg).await.unwrap();
        let r = c.send_bytes(&env, &message(100)).await.unwrap();
        c.quit().await.unwrap();
        r
    })
    .await
    .unwrap();
    for (i, r) in report.recipients.iter().enumerate() {
        if i % 10 == 3 {
            assert_eq!(r.status, RecipientStatus::Permanent, "{i}");
            assert_eq!(r.reply.code().as_u16(), 550);
            assert_eq!(r.reply.enhanced().unwrap().to_string(), "5.1.1");
        } else {
            assert_eq!(r.status, RecipientStatus::Delivered, "{i}: {}", r.reply);
        }
    }
    let got = postfix
        .wait_for_messages("user99@example.test", 1, Duration::from_secs(60))
        .unwrap();
    assert_delivered_intact(&got[0], &message(100));
}

#[tokio::test]
#[ignore = "needs postfix: run scripts/full-test.sh"]
async fn eight_bit_body_is_sent_with_8bitmime() {
    let postfix = Postfix::builder().user("alice", "secret").start().unwrap();
    let cfg = config(&postfix, TlsMode::StartTlsRequired);
    let body = "Subject: caf\u{e9}\r\n\r\nGr\u{fc}\u{df}e aus K\u{f6}ln\r\n"
        .as_bytes()
        .to_vec();
    tokio::time::timeout(LIMIT, async {
        let mut c = SmtpClient::connect(&cfg).await.unwrap();
        assert!(c.capabilities().unwrap().eight_bit_mime);
        let mut env = Envelope::from_strs("a@example.test", &["alice@example.test"]).unwrap();
        env.params.body = Some(Body::EightBitMime);
        assert!(c.send(&env, &body[..]).await.unwrap().is_accepted());
        c.quit().await.unwrap();
    })
    .await
    .unwrap();
    let got = postfix
        .wait_for_messages("alice@example.test", 1, Duration::from_secs(30))
        .unwrap();
    assert_delivered_intact(&got[0], &body);
}

/// 10,000 messages through Postfix's real virtual delivery over one connection, each compared
/// with what arrived (about 22 s here; `MAILFERRY_INTEROP_MESSAGES=n` changes the count).
#[tokio::test]
#[ignore = "needs postfix: run scripts/full-test.sh"]
async fn many_messages_over_one_connection_arrive_intact() {
    let count: usize = std::env::var("MAILFERRY_INTEROP_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let postfix = Postfix::builder().user("alice", "secret").start().unwrap();
    let cfg = config(&postfix, TlsMode::StartTlsRequired);
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(600), async {
        let mut c = SmtpClient::connect(&cfg).await.unwrap();
        let env = Envelope::from_strs("a@example.test", &["alice@example.test"]).unwrap();
        for n in 0..count {
            let r = c.send_bytes(&env, &message(n)).await.unwrap();
            assert!(r.is_accepted(), "{n}: {:?}", r.data_reply);
        }
        c.quit().await.unwrap();
    })
    .await
    .unwrap();
    let sent = started.elapsed();
    let got = postfix
        .wait_for_messages("alice@example.test", count, Duration::from_secs(600))
        .unwrap();
    eprintln!(
        "{count} messages: sent in {sent:?}, delivered after {:?}",
        started.elapsed()
    );
    let mut seen = vec![false; count];
    for m in &got {
        let text = String::from_utf8_lossy(m);
        let n: usize = text
            .split("Subject: message ")
            .nth(1)
            .and_then(|s| s.split('\n').next())
            .and_then(|s| s.trim().parse().ok())
            .unwrap();
        assert!(!seen[n], "message {n} delivered twice");
        seen[n] = true;
        assert_delivered_intact(m, &message(n));
    }
    assert!(seen.iter().all(|&s| s));
}

/// 10,000 messages over one connection to smtp-sink (accepts and discards): the connection
/// and the client's state hold up for the full count.
#[tokio::test]
#[ignore = "needs postfix: run scripts/full-test.sh"]
async fn ten_thousand_messages_over_one_connection_to_smtp_sink() {
    let sink = SmtpSink::start(&[]).unwrap();
    let mut cfg = Config::new("127.0.0.1", Domain::try_from("client.example").unwrap());
    cfg.port = Some(sink.port());
    cfg.tls_mode = TlsMode::Plaintext;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(600), async {
        let mut c = SmtpClient::connect(&cfg).await.unwrap();
        let env = Envelope::from_strs("a@example.test", &["b@example.test"]).unwrap();
        for n in 0..10_000 {
            let r = c.send_bytes(&env, &message(n)).await.unwrap();
            assert!(r.is_accepted(), "{n}");
        }
        c.quit().await.unwrap();
    })
    .await
    .unwrap();
    eprintln!("10,000 messages to smtp-sink in {:?}", started.elapsed());
}

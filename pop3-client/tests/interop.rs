//! Interop against a real Dovecot (testkit). Run with `cargo test -p mailferry-pop3-client --
//! --ignored` on a machine with Dovecot installed (scripts/full-test.sh installs it).

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is a failed test

use std::num::NonZeroU32;
use std::time::Duration;

use mailferry_pop3_client::{AuthError, Config, Error, Pop3Client, UpdateOutcome};
use mailferry_sasl::{AuthPolicy, Credentials, Mechanism};
use mailferry_testkit::Dovecot;
use mailferry_wire::tls::{ChannelSecurity, TlsMode};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";
/// Bounds every test's network work.
const LIMIT: Duration = Duration::from_secs(120);

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

fn dovecot() -> Dovecot {
    Dovecot::builder().user(USER, PASSWORD).start().unwrap()
}

fn config(d: &Dovecot, mode: TlsMode, mechanisms: &[Mechanism]) -> Config {
    let mut c = Config::new(
        "localhost",
        mode,
        Credentials::new(USER).with_password(PASSWORD),
    );
    c.port = Some(if mode == TlsMode::Implicit {
        d.pop3s_port()
    } else {
        d.pop3_port()
    });
    c.tls = Some((
        d.ca().client_config().unwrap(),
        ChannelSecurity::TlsVerified,
    ));
    c.mechanisms = mechanisms.to_vec();
    c
}

fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!("Subject: message {i}\r\nX-Seq: {i}\r\n\r\n").into_bytes();
    let mut line = 0;
    while m.len() < size {
        // Lines starting with a dot exercise un-stuffing against a real server.
        let text = if line % 7 == 0 {
            format!(".dotted line {line} of {i}\r\n")
        } else {
            format!("body line {line} of message {i} ......................\r\n")
        };
        m.extend_from_slice(text.as_bytes());
        line += 1;
    }
    m
}

async fn login_and_fetch(d: &Dovecot, mode: TlsMode, mechanism: Mechanism) {
    let c = config(d, mode, &[mechanism]);
    let mut pop = tokio::time::timeout(LIMIT, Pop3Client::connect(&c))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{mechanism:?} over {mode:?}: {e}\n{}", d.log()));
    assert_eq!(pop.mechanism(), mechanism);
    assert_eq!(pop.channel(), ChannelSecurity::TlsVerified);
    let stat = pop.stat().await.unwrap();
    assert_eq!(stat.count, 1);
    let mut body = Vec::new();
    pop.retrieve(n(1), &mut body).await.unwrap();
    assert_eq!(body, d.messages(USER).unwrap()[0]);
    assert!(matches!(
        pop.quit().await.unwrap(),
        UpdateOutcome::Committed(_)
    ));
}

#[tokio::test]
#[ignore = "needs dovecot: run scripts/full-test.sh"]
async fn every_mechanism_over_stls_and_implicit_tls() {
    let d = dovecot();
    d.drop_message(USER, &message(1, 500)).unwrap();
    for mechanism in [
        Mechanism::User,
        Mechanism::Apop,
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::CramMd5,
        Mechanism::ScramSha1,
        Mechanism::ScramSha256,
    ] {
        for mode in [TlsMode::StartTlsRequired, TlsMode::Implicit] {
            login_and_fetch(&d, mode, mechanism).await;
        }
    }
}

#[tokio::test]
#[ignore = "needs dovecot: run scripts/full-test.sh"]
async fn user_over_plaintext_only_when_explicitly_allowed() {
    let d = dovecot();
    let mut c = config(&d, TlsMode::Plaintext, &[Mechanism::User]);
    let refused = Pop3Client::connect(&c).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Auth(AuthError::NoMechanism { excluded })
            if excluded.contains(&(Mechanism::User,
                mailferry_sasl::Exclusion::RevealsCredentialOnInsecureChannel))),
        "{refused}"
    );
    c.auth_policy = AuthPolicy::with_insecure_auth(true);
    let pop = tokio::time::timeout(LIMIT, Pop3Client::connect(&c))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pop.channel(), ChannelSecurity::Plaintext);
    assert_eq!(pop.mechanism(), Mechanism::User);
    pop.quit().await.unwrap();
}

#[tokio::test]
#[ignore = "needs dovecot: run scripts/full-test.sh"]
async fn moves_on_from_mechanisms_the_server_lacks() {
    let d = Dovecot::builder()
        .user(USER, PASSWORD)
        .mechanisms(&["plain", "login"])
        .start()
        .unwrap();
    let c = config(
        &d,
        TlsMode::StartTlsRequired,
        &[
            Mechanism::ScramSha256,
            Mechanism::CramMd5,
            Mechanism::Apop,
            Mechanism::Login,
        ],
    );
    let pop = tokio::time::timeout(LIMIT, Pop3Client::connect(&c))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pop.mechanism(), Mechanism::Login);
    pop.quit().await.unwrap();
}

#[tokio::test]
#[ignore = "needs dovecot: run scripts/full-test.sh"]
async fn wrong_password_stops_without_fallback() {
    let d = dovecot();
    let mut c = config(
        &d,
        TlsMode::Implicit,
        &[Mechanism::ScramSha256, Mechanism::Plain],
    );
    c.credentials = Credentials::new(USER).with_password("wrong");
    let err = tokio::time::timeout(LIMIT, Pop3Client::connect(&c))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Auth(AuthError::CredentialsRejected {
                mechanism: Mechanism::ScramSha256,
                ..
            })
        ),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "needs dovecot: run scripts/full-test.sh"]
async fn thousand_messages_pipelined_byte_for_byte() {
    let d = dovecot();
    for i in 0..1000 {
        d.drop_message(USER, &message(i, 200 + (i * 37) % 3000))
            .unwrap();
    }
    let expected = d.messages(USER).unwrap();
    let c = config(&d, TlsMode::Implicit, &[Mechanism::ScramSha256]);
    let mut pop = Pop3Client::connect(&c).await.unwrap();
    assert!(pop.is_pipelining(), "Dovecot announces PIPELINING");
    let listing = pop.list().await.unwrap();
    assert_eq!(listing.len(), 1000);
    let msgs: Vec<_> = listing.iter().map(|l| l.msg).collect();
    let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); 1000];
    let cells: Vec<std::cell::RefCell<Vec<u8>>> = (0..1000)
        .map(|_| std::cell::RefCell::new(Vec::new()))
        .collect();
    let results = tokio::time::timeout(
        LIMIT,
        pop.retrieve_many(&msgs, |m| SharedSink(&cells[m.get() as usize - 1])),
    )
    .await
    .unwrap()
    .unwrap();
    for (i, cell) in cells.into_iter().enumerate() {
        bodies[i] = cell.into_inner();
    }
    assert_eq!(results.len(), 1000);
    for (i, (msg, r)) in results.iter().enumerate() {
        assert_eq!(msg.get() as usize, i + 1);
        assert_eq!(*r.as_ref().unwrap(), bodies[i].len() as u64);
        assert_eq!(
            listing[i].size,
            bodies[i].len() as u64,
            "LIST size of {msg}"
        );
    }
    // Dovecot's numbering need not follow file names: compare as multisets, byte for byte.
    let mut sorted_bodies = bodies.clone();
    sorted_bodies.sort();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    assert!(
        sorted_bodies == sorted_expected,
        "retrieved bodies differ from the maildir files"
    );
    pop.quit().await.unwrap();
}

/// An AsyncWrite into a RefCell'd Vec, so the sink factory can borrow per-message buffers.
struct SharedSink<'a>(&'a std::cell::RefCell<Vec<u8>>);

impl tokio::io::AsyncWrite for SharedSink<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.borrow_mut().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
#[ignore = "needs dovecot: run scripts/full-test.sh"]
async fn top_uidl_and_dele_committed_only_by_quit() {
    let d = dovecot();
    for i in 0..3 {
        d.drop_message(USER, &message(i, 400)).unwrap();
    }
    let c = config(&d, TlsMode::StartTlsRequired, &[Mechanism::CramMd5]);
    let mut pop = Pop3Client::connect(&c).await.unwrap();
    let mut head = Vec::new();
    pop.top(n(2), 0, &mut head).await.unwrap();
    // The header only: TOP n 0 stops at the empty line (numbering need not follow drop order).
    assert!(
        (0..3).any(|k| head == format!("Subject: message {k}\r\nX-Seq: {k}\r\n\r\n").as_bytes()),
        "{}",
        head.escape_ascii()
    );
    let uids = pop.uidl().await.unwrap();
    assert_eq!(uids.len(), 3);
    assert_eq!(pop.uidl_one(n(3)).await.unwrap(), uids[2]);
    assert_eq!(pop.list_one(n(1)).await.unwrap().msg, n(1));
    pop.delete(n(1)).await.unwrap();
    pop.delete(n(3)).await.unwrap();
    let err = pop.retrieve(n(1), Vec::new()).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }), "{err}");
    assert_eq!(
        d.maildir_files(USER).unwrap().len(),
        3,
        "nothing removed before QUIT"
    );
    pop.noop().await.unwrap();
    assert!(matches!(
        pop.quit().await.unwrap(),
        UpdateOutcome::Committed(_)
    ));
    let left = d.messages(USER).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].starts_with(&head), "message 2 survives");

    // RSET undoes the marks.
    let mut pop = Pop3Client::connect(&c).await.unwrap();
    pop.delete(n(1)).await.unwrap();
    pop.reset().await.unwrap();
    pop.quit().await.unwrap();
    assert_eq!(d.messages(USER).unwrap().len(), 1);
}

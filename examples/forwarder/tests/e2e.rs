//! End to end: a POP3 mailbox through the forwarder to an SMTP server, checked message by
//! message and byte by byte (apart from the two trace lines the forwarder adds).
//!
//! These use testkit's maildir POP3 responder and the recording smtp-server; the real-server
//! test (Dovecot in, Postfix out, 1,000 messages) is in `e2e_real.rs`.

// Test helpers panic on set-up failures by design.
#![allow(clippy::unwrap_used, clippy::too_many_arguments)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailferry_forwarder::config::Config;
use mailferry_forwarder::demo::RecordingSink;
use mailferry_forwarder::service::{Context, poll_once};
use mailferry_forwarder::state::Status;
use mailferry_testkit::pop3_responder::{Pop3Responder, maildir_deliver, maildir_list};

fn write_config(
    dir: &Path,
    pop: SocketAddr,
    user: &str,
    smtp: SocketAddr,
    send_to: &str,
    copy_to: &str,
    server_copy: &str,
    use_top: bool,
) -> Config {
    let text = format!(
        "hostname = \"relay.mailferry.test\"\n\
         [smtp]\nhosts = [\"{smtp}\"]\ntls = \"none\"\n\
         [queue]\nspool_dir = \"{spool}\"\nbadmail_dir = \"{bad}\"\nretry_interval = \"1s\"\n\
         lifetime = \"1h\"\npostmaster = \"postmaster@relay.mailferry.test\"\n\
         [[connectors]]\nname = \"c1\"\nsend_to = \"{send_to}\"\n{copy}\
         [connectors.pop3]\nhost = \"{pop}\"\ntls = \"none\"\nuser = \"{user}\"\n\
         password = \"pw\"\nauth = [\"USER\"]\nallow_insecure_auth = true\nuse_top = {use_top}\n\
         server_copy = {server_copy}\n",
        spool = dir.join("spool").display(),
        bad = dir.join("bad").display(),
        copy = if copy_to.is_empty() {
            String::new()
        } else {
            format!("copy_to = \"{copy_to}\"\n")
        },
    );
    let path = dir.join("mailferry.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

/// Removes the forwarder's two trace lines (and their continuations) from the top.
fn without_trace(data: &[u8]) -> &[u8] {
    let mut rest = data;
    loop {
        let is_trace = rest.starts_with(b"Received: ") || rest.starts_with(b"X-Mailferry-Trace: ");
        if !is_trace {
            return rest;
        }
        // Skip the field and its folded continuation lines.
        loop {
            let nl = rest.iter().position(|&b| b == b'\n').unwrap();
            rest = &rest[nl + 1..];
            if !matches!(rest.first(), Some(b' ' | b'\t')) {
                break;
            }
        }
    }
}

/// The routing cases, as (To/Cc/Bcc header lines, expected recipients, expected status), for
/// `{dest.example, dest.net, catch@dest.net}` with CopyTo `copy@archive.test`, or `#KILL#` /
/// `#BAD#` / held variants chosen by the test.
fn case(i: usize) -> (String, Vec<String>) {
    match i % 6 {
        0 => (
            format!("To: u{i}@dest.example\r\n"),
            vec![format!("u{i}@dest.net")],
        ),
        1 => (
            format!("To: a{i}@dest.example, x@other.test\r\nCc: c{i}@DEST.example\r\n"),
            vec![format!("a{i}@dest.net"), format!("c{i}@dest.net")],
        ),
        2 => (
            format!("To: x@other.test\r\nBcc: b{i}@dest.example\r\n"),
            vec![format!("b{i}@dest.net")],
        ),
        3 => (
            "To: nobody@other.test\r\n".into(),
            vec!["catch@dest.net".into()],
        ),
        4 => (
            format!("To: \"Quoted, Name\" <q{i}@dest.example>\r\n"),
            vec![format!("q{i}@dest.net")],
        ),
        _ => (
            format!("To: u{i}@sub.dest.example\r\n"),
            vec!["catch@dest.net".into()],
        ),
    }
}

fn message(i: usize, rcpt_lines: &str) -> Vec<u8> {
    let mut m = format!(
        "Return-Path: <s{i}@sender.test>\r\nFrom: S <s{i}@sender.test>\r\n{rcpt_lines}\
         Subject: message {i}\r\nMessage-ID: <m{i}@sender.test>\r\n\r\nbody of {i}\r\n\
         .leading dot\r\n"
    )
    .into_bytes();
    // Some larger bodies, so pipelined RETRs cross buffer boundaries.
    if i.is_multiple_of(7) {
        for l in 0..2000 {
            m.extend_from_slice(format!("line {l} of a longer message {i}\r\n").as_bytes());
        }
    }
    m
}

fn strip_bcc(m: &[u8]) -> Vec<u8> {
    mailferry_routing::strip_bcc(m, true).into_owned()
}

async fn run_loopback(n: usize, use_top: bool) {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let mut originals = HashMap::new();
    for i in 0..n {
        let (lines, rcpts) = case(i);
        let m = message(i, &lines);
        maildir_deliver(&maildir, &format!("{i:06}.mail"), &m).unwrap();
        originals.insert(format!("<m{i}@sender.test>"), (m, rcpts));
    }
    let pop = Pop3Responder::start(&maildir, "alice", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let config = write_config(
        dir.path(),
        pop.addr(),
        "alice",
        sink.addr(),
        "{dest.example, dest.net, catch@dest.net}",
        "copy@archive.test",
        "\"remove_after_delivered\"",
        use_top,
    );
    let ctx = Context::open(config).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(60), poll_once(&ctx))
        .await
        .unwrap()
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    let received = sink.messages();
    assert_eq!(received.len(), n);
    let mut seen = HashMap::new();
    for r in &received {
        let body = without_trace(&r.data);
        let text = String::from_utf8_lossy(body);
        let mid = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap()
            .to_owned();
        let (orig, rcpts) = &originals[&mid];
        assert_eq!(body, &strip_bcc(orig)[..], "{mid}");
        let mut want = rcpts.clone();
        want.push("copy@archive.test".into());
        assert_eq!(r.to, want, "{mid}");
        let i: usize = mid[2..mid.find('@').unwrap()].parse().unwrap();
        assert_eq!(r.from, format!("s{i}@sender.test"));
        assert!(r.data.starts_with(b"Received: from "));
        *seen.entry(mid).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), n);
    // Remove after delivered: every server copy is gone.
    assert_eq!(maildir_list(&maildir).unwrap().len(), 0);
    let rows = ctx.with_state(|s| s.list()).unwrap();
    assert!(rows.iter().all(|r| r.status == Status::Delivered));
    // A second poll finds nothing new and forwards nothing again.
    let report = poll_once(&ctx).await.unwrap();
    assert_eq!(report.deliveries, 0);
    assert_eq!(sink.messages().len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_300_messages_every_routing_case_byte_for_byte() {
    run_loopback(300, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_with_use_top() {
    run_loopback(24, true).await;
}

async fn policy_run(server_copy: &str) -> (tempfile::TempDir, usize, usize, Arc<Context>) {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    for i in 0..6 {
        let (lines, _) = case(i);
        maildir_deliver(&maildir, &format!("{i}.m"), &message(i, &lines)).unwrap();
    }
    let pop = Pop3Responder::start(&maildir, "bob", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let config = write_config(
        dir.path(),
        pop.addr(),
        "bob",
        sink.addr(),
        "{dest.example, dest.net, catch@dest.net}",
        "",
        server_copy,
        false,
    );
    let ctx = Context::open(config).unwrap();
    poll_once(&ctx).await.unwrap();
    let left = maildir_list(&maildir).unwrap().len();
    (dir, left, sink.messages().len(), ctx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_copy_keep_leaves_every_message() {
    let (_dir, left, delivered, _) = policy_run("\"keep\"").await;
    assert_eq!((left, delivered), (6, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_copy_zero_days_removes_once_stored() {
    let (_dir, left, delivered, _) = policy_run("{ remove_after_days = 0 }").await;
    assert_eq!((left, delivered), (0, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_copy_n_days_keeps_recent_messages() {
    let (_dir, left, _, _) = policy_run("{ remove_after_days = 3 }").await;
    assert_eq!(left, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_copy_after_delivered_keeps_undelivered_messages() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    for i in 0..4 {
        let (lines, _) = case(i * 6); // to u{i}@dest.example -> u{i}@dest.net
        maildir_deliver(&maildir, &format!("{i}.m"), &message(i * 6, &lines)).unwrap();
    }
    let pop = Pop3Responder::start(&maildir, "carol", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    sink.reject("u6@dest.net", false); // 450: deferred
    let config = write_config(
        dir.path(),
        pop.addr(),
        "carol",
        sink.addr(),
        "{dest.example, dest.net}",
        "",
        "\"remove_after_delivered\"",
        false,
    );
    let ctx = Context::open(config).unwrap();
    poll_once(&ctx).await.unwrap();
    // The deferred one stays on the server; the others are gone.
    let left = maildir_list(&maildir).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].ends_with("1.m"), "{left:?}");
    sink.accept("u6@dest.net");
    ctx.with_state(|s| s.retry_all(std::time::SystemTime::now()))
        .unwrap();
    poll_once(&ctx).await.unwrap();
    assert_eq!(maildir_list(&maildir).unwrap().len(), 0);
    assert_eq!(sink.messages().len(), 4);
}

//! Faults: downstream 4xx, 5xx, a connection dropped mid-DATA, slow replies, and the POP3
//! server dropping mid-RETR. Nothing is lost, nothing is deleted early, everything is delivered
//! once the fault clears.

// Test helpers panic on set-up failures by design.
#![allow(clippy::unwrap_used, clippy::too_many_arguments)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailferry_forwarder::config::Config;
use mailferry_forwarder::delivery::deliver_all_due;
use mailferry_forwarder::demo::RecordingSink;
use mailferry_forwarder::service::{Context, poll_once};
use mailferry_forwarder::state::{RecipientState, Status};
use mailferry_testkit::pop3_responder::{Fault, Pop3Responder, maildir_deliver, maildir_list};
use mailferry_testkit::{Script, ScriptedServer};

fn config_text(dir: &Path, pop: SocketAddr, smtp: SocketAddr) -> String {
    format!(
        "hostname = \"relay.mailferry.test\"\n\
         [smtp]\nhosts = [\"{smtp}\"]\ntls = \"none\"\n\
         [queue]\nspool_dir = \"{spool}\"\nbadmail_dir = \"{bad}\"\nretry_interval = \"1s\"\n\
         lifetime = \"1h\"\npostmaster = \"postmaster@relay.mailferry.test\"\n\
         [[connectors]]\nname = \"c1\"\nsend_to = \"{{dest.example, dest.net}}\"\n\
         [connectors.pop3]\nhost = \"{pop}\"\ntls = \"none\"\nuser = \"u\"\n\
         password = \"pw\"\nauth = [\"USER\"]\nallow_insecure_auth = true\n\
         server_copy = \"remove_after_delivered\"\n",
        spool = dir.join("spool").display(),
        bad = dir.join("bad").display(),
    )
}

fn load(dir: &Path, pop: SocketAddr, smtp: SocketAddr) -> Config {
    let path = dir.join("mailferry.toml");
    std::fs::write(&path, config_text(dir, pop, smtp)).unwrap();
    Config::load(&path).unwrap()
}

fn message(i: usize) -> Vec<u8> {
    format!(
        "Return-Path: <s{i}@sender.test>\r\nFrom: s{i}@sender.test\r\nTo: r{i}@dest.example\r\n\
         Subject: fault {i}\r\nMessage-ID: <f{i}@sender.test>\r\n\r\nbody {i}\r\n"
    )
    .into_bytes()
}

struct Setup {
    dir: tempfile::TempDir,
    maildir: std::path::PathBuf,
    pop: Pop3Responder,
    sink: RecordingSink,
    ctx: Arc<Context>,
}

async fn setup(n: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    for i in 0..n {
        maildir_deliver(&maildir, &format!("{i:03}.m"), &message(i)).unwrap();
    }
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let ctx = Context::open(load(dir.path(), pop.addr(), sink.addr())).unwrap();
    Setup {
        dir,
        maildir,
        pop,
        sink,
        ctx,
    }
}

async fn retry_now(ctx: &Arc<Context>) -> usize {
    ctx.with_state(|s| s.retry_all(SystemTime::now())).unwrap();
    deliver_all_due(ctx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_4xx_is_retried_until_accepted_and_the_copy_waits() {
    let s = setup(1).await;
    s.sink.fail_data(2);
    poll_once(&s.ctx).await.unwrap();
    assert_eq!(s.sink.messages().len(), 0);
    assert_eq!(
        maildir_list(&s.maildir).unwrap().len(),
        1,
        "deleted before delivery"
    );
    let rows = s.ctx.with_state(|st| st.list()).unwrap();
    assert_eq!(rows[0].status, Status::Routed);
    assert!(
        rows[0].last_error.as_deref().unwrap().starts_with("451"),
        "{rows:?}"
    );
    assert_eq!(retry_now(&s.ctx).await, 1); // second 451
    assert_eq!(retry_now(&s.ctx).await, 1); // accepted
    let (row, rcpts) = s
        .ctx
        .with_state(|st| st.message(&rows[0].id))
        .unwrap()
        .unwrap();
    assert_eq!(row.status, Status::Delivered);
    assert_eq!(row.attempts, 3);
    assert_eq!(rcpts[0].state, RecipientState::Delivered);
    assert_eq!(s.sink.messages().len(), 1);
    poll_once(&s.ctx).await.unwrap();
    assert_eq!(maildir_list(&s.maildir).unwrap().len(), 0);
    assert_eq!(s.sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_5xx_bounces_to_the_sender() {
    let s = setup(2).await;
    s.sink.reject("r0@dest.net", true);
    poll_once(&s.ctx).await.unwrap();
    let got = s.sink.messages();
    // r1 delivered, and a report about r0 to its sender, from <>.
    assert_eq!(got.len(), 2, "{got:?}");
    let report = got.iter().find(|m| m.from.is_empty()).unwrap();
    assert_eq!(report.to, ["s0@sender.test"]);
    let text = String::from_utf8_lossy(&report.data);
    assert!(text.contains("multipart/report"), "{text}");
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; r0@dest.net"),
        "{text}"
    );
    let rows = s.ctx.with_state(|st| st.list()).unwrap();
    assert_eq!(
        rows.iter().filter(|r| r.status == Status::Failed).count(),
        1
    );
    // A failed message keeps its server copy: only delivered, killed and BadMail count.
    assert_eq!(maildir_list(&s.maildir).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_replies_still_deliver() {
    let s = setup(3).await;
    s.sink.set_delay(Duration::from_millis(300));
    tokio::time::timeout(Duration::from_secs(30), poll_once(&s.ctx))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.sink.messages().len(), 3);
    assert_eq!(maildir_list(&s.maildir).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_data_is_transient() {
    let s = setup(1).await;
    let script = Script::new()
        .send("220 flaky ESMTP\r\n")
        .expect_line_prefix("EHLO")
        .send("250 flaky\r\n")
        .expect_line_prefix("MAIL FROM:<s0@sender.test>")
        .send("250 ok\r\n")
        .expect_line_prefix("RCPT TO:<r0@dest.net>")
        .send("250 ok\r\n")
        .expect_line_prefix("DATA")
        .send("354 go\r\n")
        .expect_line_prefix("Received: ")
        .close();
    let flaky = ScriptedServer::start(script).await.unwrap();
    let dir = s.dir.path();
    let ctx = Context::open(load(dir, s.pop.addr(), flaky.addr())).unwrap();
    drop(s.ctx);
    poll_once(&ctx).await.unwrap();
    flaky.finish().await.assert_ok();
    let rows = ctx.with_state(|st| st.list()).unwrap();
    assert_eq!(rows[0].status, Status::Routed, "{rows:?}");
    assert_eq!(maildir_list(&s.maildir).unwrap().len(), 1);
    // The fault clears: the operator points the service at a working server (SIGHUP).
    ctx.reload(load(dir, s.pop.addr(), s.sink.addr()));
    assert_eq!(retry_now(&ctx).await, 1);
    assert_eq!(s.sink.messages().len(), 1);
    poll_once(&ctx).await.unwrap();
    assert_eq!(maildir_list(&s.maildir).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_drop_mid_retr_loses_and_deletes_nothing() {
    let s = setup(5).await;
    s.pop.inject(Fault::DropMidRetr { after_bytes: 40 });
    let report = poll_once(&s.ctx).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(maildir_list(&s.maildir).unwrap().len(), 5);
    assert_eq!(s.pop.deleted(), 0);
    // No temporary or partial file is left in the queue.
    let queue = s.dir.path().join("spool").join("queue");
    let leftovers: Vec<_> = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().starts_with(".tmp-")),
        "{leftovers:?}"
    );
    let report = poll_once(&s.ctx).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    let got = s.sink.messages();
    assert_eq!(got.len(), 5);
    let mut ids: Vec<String> = got
        .iter()
        .map(|m| {
            let t = String::from_utf8_lossy(&m.data).into_owned();
            t.lines()
                .find(|l| l.starts_with("Message-ID:"))
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    assert_eq!(maildir_list(&s.maildir).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_refused_login_is_a_failed_poll() {
    let s = setup(1).await;
    s.pop.inject(Fault::RefuseLogin);
    let report = poll_once(&s.ctx).await.unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(s.sink.messages().len(), 0);
    let report = poll_once(&s.ctx).await.unwrap();
    assert!(report.failed.is_empty());
    assert_eq!(s.sink.messages().len(), 1);
}

//! The `mailferry` binary as operators run it: SIGHUP reloads (valid and invalid files), and
//! progress lines during a long `poll-once`.

// Test helpers panic on set-up failures by design.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mailferry_forwarder::demo::RecordingSink;
use mailferry_testkit::pop3_responder::{Pop3Responder, maildir_deliver};

fn write_config(path: &Path, pop: SocketAddr, smtp: SocketAddr, send_to: &str) {
    std::fs::write(
        path,
        format!(
            "hostname = \"relay.mailferry.test\"\n[smtp]\nhosts = [\"{smtp}\"]\ntls = \"none\"\n\
             [queue]\nspool_dir = \"spool\"\nretry_interval = \"1s\"\n\
             postmaster = \"postmaster@relay.mailferry.test\"\n\
             [logging]\nlevel = \"info\"\n\
             [[connectors]]\nname = \"c1\"\nsend_to = \"{send_to}\"\n\
             [connectors.pop3]\nhost = \"{pop}\"\ntls = \"none\"\nuser = \"u\"\npassword = \"pw\"\n\
             auth = [\"USER\"]\nallow_insecure_auth = true\npoll_interval = \"1s\"\n\
             server_copy = \"remove_after_delivered\"\n"
        ),
    )
    .unwrap();
}

fn signal(child: &tokio::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().unwrap().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (bounded) until `f` holds, showing the log on failure.
async fn wait_until(what: &str, log: &Path, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn msg(i: usize, to: &str) -> Vec<u8> {
    format!("From: s{i}@sender.test\r\nTo: {to}\r\nSubject: hup {i}\r\n\r\nbody {i}\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_configuration_and_keeps_it_when_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let config = dir.path().join("mailferry.toml");
    write_config(&config, pop.addr(), sink.addr(), "{dest.example, dest.net}");
    let log = dir.path().join("run.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .arg("-c")
        .arg(&config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log_has = |needle: &'static str| {
        let log = log.clone();
        move || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(needle)
        }
    };
    wait_until("start", &log, log_has("mailferry running")).await;

    // The rules at start: the domain is rewritten.
    maildir_deliver(&maildir, "1.m", &msg(1, "u1@dest.example")).unwrap();
    wait_until("message 1", &log, || sink.messages().len() == 1).await;
    assert_eq!(sink.messages()[0].to, ["u1@dest.net"]);

    // New rules, SIGHUP: the next poll uses them.
    write_config(&config, pop.addr(), sink.addr(), "admin@dest.net");
    signal(&child, "HUP");
    wait_until("reload", &log, log_has("configuration reloaded")).await;
    maildir_deliver(&maildir, "2.m", &msg(2, "u2@dest.example")).unwrap();
    wait_until("message 2", &log, || sink.messages().len() == 2).await;
    assert_eq!(sink.messages()[1].to, ["admin@dest.net"]);

    // An invalid file: logged with its error, and the rules in force stay.
    std::fs::write(&config, "[smtp]\nhosts = 5\n").unwrap();
    signal(&child, "HUP");
    wait_until(
        "refused reload",
        &log,
        log_has("reload refused: the configuration is invalid; keeping the old one"),
    )
    .await;
    // The errors follow the refusal line: wait for them too, not just the first line.
    wait_until("the error naming the field", &log, log_has("smtp.hosts")).await;
    maildir_deliver(&maildir, "3.m", &msg(3, "u3@dest.example")).unwrap();
    wait_until("message 3", &log, || sink.messages().len() == 3).await;
    assert_eq!(sink.messages()[2].to, ["admin@dest.net"]);

    signal(&child, "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_logs_progress_lines() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    for i in 0..250 {
        maildir_deliver(&maildir, &format!("{i:04}.m"), &msg(i, "u@dest.example")).unwrap();
    }
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let config = dir.path().join("mailferry.toml");
    write_config(&config, pop.addr(), sink.addr(), "{dest.example, dest.net}");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mailferry"))
            .arg("-c")
            .arg(&config)
            .arg("poll-once")
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(sink.messages().len(), 250);
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("poll progress: fetched "))
        .collect();
    // Every 100 messages (a slow machine may add lines every 10 s as well).
    for want in ["fetched 100/250 messages, ", "fetched 200/250 messages, "] {
        assert!(
            progress.iter().any(|l| l.contains(want)),
            "{want}\n{stderr}"
        );
    }
    assert!(
        progress.iter().all(|l| !l.contains("fetched 250/250")),
        "{stderr}"
    );
    // The summary line follows.
    assert!(stderr.contains("fetched=250"), "{stderr}");
}

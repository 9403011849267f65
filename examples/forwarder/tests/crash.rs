//! Crash safety: the `mailferry` binary is killed with SIGKILL at pseudo-random points of a run
//! and restarted; in the end no message is lost and duplicates are bounded by the kills.
//!
//! A duplicate comes from a delivery the kill caught after the destination accepted the message
//! and before its result was recorded: at most one per delivery in flight. With one delivery at
//! a time (`concurrency = 1`) that is at most one per kill; with `concurrency = n`, at most `n`
//! per kill. Both are checked.

// Test helpers panic on set-up failures by design.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mailferry_forwarder::demo::RecordingSink;
use mailferry_testkit::pop3_responder::{Pop3Responder, maildir_deliver, maildir_list};

const MESSAGES: usize = 150;
const KILLS: usize = 10;

fn spawn(config: &std::path::Path, stderr: std::process::Stdio) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .arg("-c")
        .arg(config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_many_points_loses_nothing_one_delivery_at_a_time() {
    let duplicates = sigkill_run(1).await;
    assert!(
        duplicates <= KILLS,
        "{duplicates} duplicates after {KILLS} kills"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_many_points_loses_nothing_with_concurrent_deliveries() {
    let duplicates = sigkill_run(8).await;
    assert!(
        duplicates <= KILLS * 8,
        "{duplicates} duplicates after {KILLS} kills with 8 deliveries in flight"
    );
}

/// Forwards [`MESSAGES`] through `mailferry run` killed [`KILLS`] times, then stopped
/// gracefully; asserts that every message arrived; returns the number of duplicates.
async fn sigkill_run(concurrency: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    for i in 0..MESSAGES {
        let m = format!(
            "From: s{i}@sender.test\r\nTo: r{i}@dest.example\r\nSubject: crash {i}\r\n\
             Message-ID: <c{i}@sender.test>\r\n\r\nbody {i}\r\n"
        );
        maildir_deliver(&maildir, &format!("{i:04}.m"), m.as_bytes()).unwrap();
    }
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let config = dir.path().join("mailferry.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"relay.mailferry.test\"\n[smtp]\nhosts = [\"{}\"]\ntls = \"none\"\n\
             [queue]\nspool_dir = \"spool\"\nbadmail_dir = \"bad\"\nretry_interval = \"1s\"\n\
             concurrency = {concurrency}\n\
             postmaster = \"postmaster@relay.mailferry.test\"\n\
             [logging]\nlevel = \"info\"\n\
             [[connectors]]\nname = \"c1\"\nsend_to = \"{{dest.example, dest.net}}\"\n\
             [connectors.pop3]\nhost = \"{}\"\ntls = \"none\"\nuser = \"u\"\npassword = \"pw\"\n\
             auth = [\"USER\"]\nallow_insecure_auth = true\npoll_interval = \"1s\"\n\
             server_copy = \"remove_after_delivered\"\n",
            sink.addr(),
            pop.addr()
        ),
    )
    .unwrap();

    // Pseudo-random kill points (a fixed-seed LCG: reproducible, no extra crate).
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    for _ in 0..KILLS {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(40 + (seed >> 33) % 400);
        let mut child = spawn(&config, std::process::Stdio::null());
        tokio::time::sleep(delay).await;
        child.kill().await.unwrap(); // SIGKILL
    }
    // The last run logs to a file (a pipe nobody reads could fill up and block it).
    let log_path = dir.path().join("last-run.log");
    let mut child = spawn(&config, std::fs::File::create(&log_path).unwrap().into());
    // It must be up (signal handlers installed, recovery done) before the SIGTERM below: when
    // the earlier runs already emptied the mailbox, the wait for the mailbox ends at once.
    let up = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("mailferry running")
    {
        assert!(Instant::now() < up, "mailferry did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = maildir_list(&maildir).unwrap().is_empty();
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not finished in time; the last run's log:\n{}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM: a graceful stop, exit 0.
    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));

    let mut count: HashMap<String, usize> = HashMap::new();
    for m in sink.messages() {
        let t = String::from_utf8_lossy(&m.data).into_owned();
        let id = t
            .lines()
            .find(|l| l.starts_with("Message-ID:"))
            .unwrap()
            .to_owned();
        *count.entry(id).or_default() += 1;
    }
    assert_eq!(count.len(), MESSAGES, "lost messages");
    let duplicates: usize = count.values().map(|n| n - 1).sum();
    eprintln!(
        "concurrency {concurrency}, {KILLS} kills: {duplicates} duplicate(s), no message lost"
    );
    duplicates
}

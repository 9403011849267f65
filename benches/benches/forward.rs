//! End-to-end forwarding: messages/s from a real Dovecot POP3 mailbox through mailferry
//! (`poll-once`, in process) to Postfix's smtp-sink, and fetchmail 6.4 on the same mailbox and
//! the same sink in the same run, with the same messages and the same mode: plaintext POP3
//! with USER/PASS, every message retrieved, forwarded over SMTP and deleted from the server
//! once the sink accepted it (mailferry `server_copy = "remove_after_delivered"`, fetchmail's
//! default `no keep`). The ratio mailferry / fetchmail is the number worth quoting (target:
//! at least 100).
//!
//! Not criterion: one "iteration" is a whole poll of a freshly filled mailbox (the messages
//! are dropped into Dovecot's maildir outside the timed part), so each tool gets a few timed
//! runs and the median is reported; mailferry gets a fresh spool per run, fetchmail a fresh
//! home (no id file). Every run checks that the mailbox ended up empty (everything was
//! forwarded).
//!
//! Quick run (`--quick` or `--test`, what CI runs): 200 messages of 8 KiB, 3 runs each. Full
//! run: 1,000 messages of 8 KiB, 5 runs each. Skips with a note when Dovecot, smtp-sink or
//! fetchmail is missing or cannot start (they need root here); without fetchmail mailferry
//! is still measured.
//!
//! The peak-memory check (forwarding a 200 MiB message, target under 32 MiB) measures the
//! `mailferry` binary as a child process; it lives in `examples/forwarder/tests/memory.rs`.
#![allow(clippy::print_stderr, reason = "a bench reports on stderr")]
#![allow(clippy::unwrap_used, reason = "set-up failures abort the bench")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailferry_forwarder::config::Config;
use mailferry_forwarder::service::{Context, poll_once};
use mailferry_testkit::{Dovecot, SmtpSink};

const USER: &str = "bench";
const PASSWORD: &str = "pw-bench";
const FETCHMAIL: &str = "/usr/bin/fetchmail";

/// A message of exactly `size` octets: a 5-line header and 78-column text lines.
fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender{i}@example.org\r\nTo: bench@dest.example\r\nSubject: message {i}\r\n\
         Message-ID: <{i}@bench.example.org>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs";
    while m.len() + 78 <= size {
        m.extend_from_slice(&line[..76]);
        m.extend_from_slice(b"\r\n");
    }
    while m.len() + 2 < size {
        m.push(b'x');
    }
    m.extend_from_slice(b"\r\n");
    m
}

/// Fills the mailbox, then writes everything dirty back to disk (`sync`), outside the timed
/// part. In service, mail waits in the mailbox for a poll interval and the kernel writes it
/// back meanwhile; without the sync, mailferry's first durability barrier (a `syncfs`) would
/// also pay for writing back the mailbox the bench has just filled. fetchmail never syncs,
/// so it neither gains nor loses from this.
fn fill(dovecot: &Dovecot, count: usize, size: usize) {
    for i in 0..count {
        dovecot.drop_message(USER, &message(i, size)).unwrap();
    }
    let synced = Command::new("sync").status().unwrap();
    assert!(synced.success());
}

fn assert_empty(dovecot: &Dovecot, who: &str) {
    let left = dovecot.maildir_files(USER).unwrap().len();
    assert_eq!(left, 0, "{who} left {left} message(s) on the server");
}

/// One mailferry run: a fresh spool, one poll-once. Returns the time of the poll.
fn run_mailferry(rt: &tokio::runtime::Runtime, dovecot: &Dovecot, sink: &SmtpSink) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailferry.toml");
    std::fs::write(
        &path,
        format!(
            "hostname = \"bench.mailferry.test\"\n[smtp]\nhosts = [\"{}\"]\ntls = \"none\"\n\
             [queue]\nspool_dir = \"spool\"\npostmaster = \"postmaster@example.org\"\n\
             [logging]\nlevel = \"warn\"\n\
             [[connectors]]\nname = \"bench\"\nsend_to = \"{{dest.example, dest.net}}\"\n\
             [connectors.pop3]\nhost = \"{}\"\ntls = \"none\"\nuser = \"{USER}\"\n\
             password = \"{PASSWORD}\"\nauth = [\"USER\"]\nallow_insecure_auth = true\n\
             server_copy = \"remove_after_delivered\"\n",
            sink.addr(),
            dovecot.pop3_addr()
        ),
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let started = Instant::now();
    let report = rt.block_on(async {
        let ctx = Context::open(config).unwrap();
        poll_once(&ctx).await.unwrap()
    });
    let took = started.elapsed();
    assert!(report.failed.is_empty(), "{report:?}");
    took
}

/// One fetchmail run: a fresh home and rc file; `fetchmail -f RC --smtphost 127.0.0.1/PORT`.
fn run_fetchmail(dovecot: &Dovecot, sink: &SmtpSink) -> Duration {
    let home = tempfile::tempdir().unwrap();
    let rc = home.path().join("fetchmailrc");
    // `sslproto ''`: no opportunistic STLS (Dovecot offers it), like mailferry's tls = "none".
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\n\
             poll 127.0.0.1 service {} proto pop3 auth password\n  \
             user \"{USER}\" password \"{PASSWORD}\" is \"bench\" here\n  \
             sslproto '' fetchall no keep\n",
            dovecot.pop3_port()
        ),
    )
    .unwrap();
    // fetchmail refuses an rc file others can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let started = Instant::now();
    let out = Command::new(FETCHMAIL)
        .arg("-f")
        .arg(&rc)
        .arg("--smtphost")
        .arg(format!("127.0.0.1/{}", sink.port()))
        .args(["--nosyslog", "--nodetach", "--silent"])
        .env("FETCHMAILHOME", home.path())
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    // 0: mail was retrieved (1 would mean none).
    assert_eq!(
        out.status.code(),
        Some(0),
        "fetchmail failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    // `cargo bench` passes --bench; a name filter that is not ours skips the run.
    let filtered_out = std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"forward".contains(a.as_str()));
    if filtered_out {
        return;
    }
    let (count, size, runs) = if quick {
        (200, 8192, 3)
    } else {
        (1000, 8192, 5)
    };
    for tool in ["/usr/sbin/dovecot", "/usr/sbin/smtp-sink"] {
        if !Path::new(tool).exists() {
            eprintln!("forward: skipped, {tool} is not installed (run scripts/install-deps.sh)");
            return;
        }
    }
    let dovecot = match Dovecot::builder().user(USER, PASSWORD).start() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("forward: skipped, Dovecot did not start: {e}");
            return;
        }
    };
    let sink = match SmtpSink::start(&[]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("forward: skipped, smtp-sink did not start: {e}");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut ours = Vec::new();
    for _ in 0..runs {
        fill(&dovecot, count, size);
        let t = run_mailferry(&rt, &dovecot, &sink);
        assert_empty(&dovecot, "mailferry");
        ours.push(count as f64 / t.as_secs_f64());
    }
    let ours = median(ours);
    eprintln!(
        "forward/{count}x{} KiB: mailferry poll-once  {ours:>8.0} msg/s (median of {runs})",
        size / 1024
    );

    if !Path::new(FETCHMAIL).exists() {
        eprintln!("forward: fetchmail is not installed; no comparison (scripts/install-deps.sh)");
        return;
    }
    let mut theirs = Vec::new();
    for _ in 0..runs {
        fill(&dovecot, count, size);
        let t = run_fetchmail(&dovecot, &sink);
        assert_empty(&dovecot, "fetchmail");
        theirs.push(count as f64 / t.as_secs_f64());
    }
    let theirs = median(theirs);
    eprintln!(
        "forward/{count}x{} KiB: fetchmail           {theirs:>8.0} msg/s (median of {runs})",
        size / 1024
    );
    eprintln!(
        "forward/{count}x{} KiB: mailferry / fetchmail = {:.1}x (target: at least 100x)",
        size / 1024,
        ours / theirs
    );
}

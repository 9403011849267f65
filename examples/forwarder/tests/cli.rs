//! The `mailferry` binary: check-config and the queue commands, on temporary files.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailferry_forwarder::MessageId;
use mailferry_forwarder::state::{
    DecisionRecord, NewMessage, NewRecipient, Pop3Origin, Source, State, Status, UidKey,
};

fn mailferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .args(args)
        .env("MAILFERRY_SMTP_PASSWORD", "x")
        .env("MAILFERRY_SUPPORT_PASSWORD", "x")
        .env("MAILFERRY_SUPPORT_SMTP_PASSWORD", "x")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn check_config_accepts_the_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("mailferry.example.toml");
    let o = mailferry(&["check-config", example.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for expected in [
        "is valid",
        "connector \"sales\"",
        "mail comes from POP3 pop.example.com:110 as user \"sales@example.com\", every 5m, read with RETR",
        "server copy: removed from the server 7 day(s) after first seen",
        "server copy: removed from the server once delivered downstream",
        "every message goes to archive@example.org",
        "a message for none of these domains is sent to frontdesk@example.net",
        "mail goes to SMTP smtp1.example.org:587, then smtp2.example.org:587 (tried in order)",
        "give up and bounce after 5d",
        "relay: nobody",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    assert!(!out.contains("example-only-not-a-real-password"));
}

const BROKEN: &str = r#"[queue]
postmaster = "postmaster@example.org"
lifetime = "forever"

[smtp]
hosts = ["smtp.example.org"]

[[connectors]]
name = "c1"
send_to = "{example.com"
[connectors.pop3]
host = "pop.example.com:http"
user = "u"
password = "p"
"#;

#[test]
fn check_config_prints_every_error_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailferry.toml");
    std::fs::write(&path, BROKEN).unwrap();
    let p = path.to_str().unwrap();
    let o = mailferry(&["-c", p, "check-config"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        format!(
            "{p}:3:12: queue.lifetime: expected a duration like \"30s\", \"5m\", \"1h30m\" or \"5d\", found \"forever\"\n\
             {p}:10:24: connectors[0].send_to: entry 1, field 1 (byte 12, line 1, column 13): expected ',' or '}}' to close the group opened at byte 0, found end of input\n\
             {p}:12:8: connectors[0].pop3.host: expected host[:port], found \"pop.example.com:http\"\n\
             3 error(s)\n"
        )
    );
}

#[test]
fn check_config_missing_file() {
    let o = mailferry(&["check-config", "/nonexistent/mailferry.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("mailferry: /nonexistent/mailferry.toml: "));
}

#[test]
fn service_commands_exit_2_without_a_valid_configuration() {
    for cmd in ["run", "poll-once"] {
        let o = mailferry(&["-c", "/nonexistent/mailferry.toml", cmd]);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        assert!(
            stderr(&o).starts_with("mailferry: /nonexistent/mailferry.toml: "),
            "{cmd}: {}",
            stderr(&o)
        );
    }
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("mailferry.toml");
    std::fs::write(
        &path,
        r#"
[smtp]
hosts = ["smtp.example.org"]
[queue]
postmaster = "postmaster@example.org"
spool_dir = "spool"
[[connectors]]
name = "c1"
send_to = "{example.com}"
[connectors.pop3]
host = "pop.example.com"
user = "u"
password = "p"
"#,
    )
    .unwrap();
    path
}

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

/// Two messages: one routed to bob (deferred once), one held without recipients.
fn seed(dir: &Path) -> (MessageId, MessageId) {
    let spool = dir.join("spool");
    std::fs::create_dir_all(spool.join("queue")).unwrap();
    let mut st = State::open(&spool.join("mailferry.sqlite3")).unwrap();
    let mut ids = Vec::new();
    for (n, uid) in ["uid-1", "uid-2"].into_iter().enumerate() {
        let id = MessageId::generate(t(n as u64));
        let file = spool.join("queue").join(format!("{id}.eml"));
        std::fs::write(&file, b"Subject: x\r\n\r\nbody\r\n").unwrap();
        let key = UidKey {
            uid: uid.into(),
            occurrence: 0,
        };
        st.record_fetched(
            &NewMessage {
                id: &id,
                connector: "c1",
                source: Source::Pop3,
                pop3: Some(Pop3Origin {
                    mailbox: "u@pop.example.com:110",
                    uid: &key,
                    hashed: false,
                    listed_size: 20,
                }),
                size: 20,
                spool_file: &file,
                sender: Some("alice@example.net"),
            },
            t(n as u64),
        )
        .unwrap();
        ids.push(id);
    }
    st.record_decision(
        &ids[0],
        &DecisionRecord {
            status: Status::Routed,
            disposition: "deliver".into(),
            text: "disposition=deliver".into(),
            recipients: vec![NewRecipient {
                address: "bob@example.com".into(),
                rule: "entry 1 {example.com}".into(),
            }],
        },
        t(2),
    )
    .unwrap();
    st.record_decision(
        &ids[1],
        &DecisionRecord {
            status: Status::Held,
            disposition: "held".into(),
            text: "disposition=held".into(),
            recipients: vec![],
        },
        t(2),
    )
    .unwrap();
    (ids[0].clone(), ids[1].clone())
}

#[test]
fn queue_commands_on_a_temporary_state() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let c = cfg.to_str().unwrap();
    let (routed, held) = seed(dir.path());

    let o = mailferry(&["-c", c, "queue", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("id "));
    assert!(lines[1].starts_with(&format!("{routed}  c1 ")) && lines[1].contains(" routed "));
    assert!(lines[1].ends_with("<alice@example.net>"));
    assert!(lines[2].starts_with(&format!("{held}  c1 ")) && lines[2].contains(" held "));
    assert_eq!(lines[3], "2 message(s)");

    let o = mailferry(&["-c", c, "queue", "show", routed.as_str()]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains(&format!("id:          {routed}\n")));
    assert!(out.contains("uid:         uid-1\n"));
    assert!(out.contains("status:      routed\n"));
    assert!(out.contains("  bob@example.com pending attempts=0"));

    let o = mailferry(&["-c", c, "queue", "retry", routed.as_str()]);
    assert_eq!(
        stdout(&o),
        format!("{routed} scheduled for immediate retry\n")
    );
    let o = mailferry(&["-c", c, "queue", "retry", "all"]);
    assert_eq!(stdout(&o), "1 message(s) scheduled for immediate retry\n");
    // A held message is not retried: it must be released.
    let o = mailferry(&["-c", c, "queue", "retry", held.as_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("mailferry: message {held} is held, expected routed\n")
    );

    let o = mailferry(&["-c", c, "queue", "release", held.as_str()]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        format!("{held} released: stored, will be routed again\n")
    );
    let o = mailferry(&["-c", c, "queue", "release", held.as_str()]);
    assert_eq!(o.status.code(), Some(1));

    let file = dir.path().join("spool/queue").join(format!("{routed}.eml"));
    assert!(file.exists());
    let o = mailferry(&["-c", c, "queue", "delete", routed.as_str()]);
    assert_eq!(stdout(&o), format!("{routed} deleted\n"));
    assert!(!file.exists());
    let o = mailferry(&["-c", c, "queue", "delete", routed.as_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), format!("mailferry: no message {routed}\n"));

    // The POP3 UID history survives the delete: the message is not fetched again.
    let st = State::open(&dir.path().join("spool/mailferry.sqlite3")).unwrap();
    let seen = st
        .seen(
            "c1",
            "u@pop.example.com:110",
            &UidKey {
                uid: "uid-1".into(),
                occurrence: 0,
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(seen.message_id, None);
    assert_eq!(st.list().unwrap().len(), 1);
}

#[test]
fn queue_rejects_ids_that_are_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let o = mailferry(&[
        "-c",
        cfg.to_str().unwrap(),
        "queue",
        "delete",
        "../../etc/passwd",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "mailferry: not a message id (expected 27 lowercase hex digits): \"../../etc/passwd\"\n"
    );
}

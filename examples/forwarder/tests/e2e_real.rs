//! End to end against real servers: Dovecot (POP3) in, Postfix (SMTP, virtual maildirs) out.
//!
//! 1,000 messages in five mailboxes, one connector each, together covering every routing case
//! (domain rewrite, several recipients, Bcc, quoted display names, the default alias, `#KILL#`,
//! `#BAD#`, held, a MailTo entry, CopyTo, the envelope header, our own trace header, too many
//! hops, another connector's trace header) and every server copy policy. Each delivered file is
//! compared byte for byte: Postfix's four added fields, our two trace fields, then the original
//! (Bcc removed) with LF line ends. Postfix is told not to rewrite or drop header fields
//! (`local_header_rewrite_clients =`, `message_drop_headers =`), so nothing else may differ.
//!
//! Ignored by default (needs Dovecot and Postfix installed and root); run with
//! `cargo test -p mailferry-forwarder --test e2e_real -- --ignored --nocapture`.

// Test helpers panic on set-up failures by design.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use mailferry_forwarder::config::Config;
use mailferry_forwarder::service::{Context, poll_once};
use mailferry_forwarder::state::Status;
use mailferry_testkit::{Dovecot, Postfix};

/// Messages per mailbox (five mailboxes).
const PER_MAILBOX: usize = 200;

/// A delivered copy: connector, envelope sender, forwarded bytes with LF line ends.
type Expected = (&'static str, String, Vec<u8>);

/// One mailbox and its connector.
struct Mailbox {
    user: &'static str,
    send_to: &'static str,
    copy_to: &'static str,
    server_copy: &'static str,
    envelope_header: bool,
}

const MAILBOXES: [Mailbox; 5] = [
    // Unclaimed mail goes to the default alias; every forwarded message is copied.
    Mailbox {
        user: "alice",
        send_to: "{dest.example, dest.net, catch@dest.net}",
        copy_to: "copy@dest.net",
        server_copy: "\"remove_after_delivered\"",
        envelope_header: false,
    },
    Mailbox {
        user: "bob",
        send_to: "{dest.example, dest.net, #KILL#}",
        copy_to: "",
        server_copy: "\"keep\"",
        envelope_header: false,
    },
    Mailbox {
        user: "carol",
        send_to: "{dest.example, dest.net, #BAD#}",
        copy_to: "",
        server_copy: "{ remove_after_days = 0 }",
        envelope_header: false,
    },
    // No third field: unclaimed mail is held, and stays on the server.
    Mailbox {
        user: "dave",
        send_to: "{dest.example, dest.net}",
        copy_to: "",
        server_copy: "\"remove_after_delivered\"",
        envelope_header: false,
    },
    // Recipients from Delivered-To; the MailTo entry always receives the message.
    Mailbox {
        user: "erin",
        send_to: "admin@dest.net, {dest.example, dest.net}",
        copy_to: "",
        server_copy: "{ remove_after_days = 3 }",
        envelope_header: true,
    },
];

/// What should become of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Delivered(Vec<String>),
    Killed,
    Bad,
    Held,
}

/// The header lines naming recipients for case `k` of global message number `g`, and whether
/// the message is claimed by the `{dest.example, dest.net}` group (with its recipients).
fn recipients_case(k: usize, g: usize) -> (String, Option<Vec<String>>) {
    match k {
        0 => (
            format!("To: u{g}@dest.example\r\n"),
            Some(vec![format!("u{g}@dest.net")]),
        ),
        1 => (
            format!("To: a{g}@dest.example, x@other.test\r\nCc: c{g}@DEST.example\r\n"),
            Some(vec![format!("a{g}@dest.net"), format!("c{g}@dest.net")]),
        ),
        2 => (
            format!("To: x@other.test\r\nBcc: b{g}@dest.example\r\n"),
            Some(vec![format!("b{g}@dest.net")]),
        ),
        3 => ("To: nobody@other.test\r\n".into(), None),
        4 => (
            format!("To: \"Quoted, Name\" <q{g}@dest.example>\r\n"),
            Some(vec![format!("q{g}@dest.net")]),
        ),
        5 => (format!("To: u{g}@sub.dest.example\r\n"), None),
        // Another connector's trace header is a legitimate chain: forwarded.
        6 => (
            format!(
                "X-Mailferry-Trace: connector=upstream; id=1; host=a.test\r\nTo: t{g}@dest.example\r\n"
            ),
            Some(vec![format!("t{g}@dest.net")]),
        ),
        _ => unreachable!(),
    }
}

/// Message `i` of mailbox `m`: its bytes and its fate.
fn message(m: &Mailbox, i: usize, g: usize) -> (Vec<u8>, Fate) {
    let k = i % 10;
    let mut head = format!("Return-Path: <s{g}@sender.test>\r\n");
    let fate;
    if k == 7 {
        // Our own trace header for this very connector: a loop.
        head.push_str(&format!(
            "X-Mailferry-Trace: connector={}; id=0; host=relay.mailferry.test\r\nTo: l{g}@dest.example\r\n",
            m.user
        ));
        fate = Fate::Bad;
    } else if k == 8 {
        // 21 Received: fields, over max_hops (20).
        for h in 0..21 {
            head.push_str(&format!(
                "Received: from h{h}.test by h{}.test; hop\r\n",
                h + 1
            ));
        }
        head.push_str(&format!("To: h{g}@dest.example\r\n"));
        fate = Fate::Bad;
    } else if m.envelope_header {
        let claimed = k.is_multiple_of(2);
        let env = if claimed {
            format!("e{g}@dest.example")
        } else {
            format!("e{g}@other.test")
        };
        head.push_str(&format!(
            "Delivered-To: {env}\r\nTo: ignored{g}@dest.example\r\n"
        ));
        let mut rcpts = vec!["admin@dest.net".to_owned()];
        if claimed {
            rcpts.push(format!("e{g}@dest.net"));
        }
        fate = Fate::Delivered(rcpts);
    } else {
        let (lines, claimed) = recipients_case(if k == 9 { 6 } else { k % 7 }, g);
        head.push_str(&lines);
        fate = match (claimed, m.user) {
            (Some(mut r), _) => {
                if !m.copy_to.is_empty() {
                    r.push(m.copy_to.to_owned());
                }
                Fate::Delivered(r)
            }
            (None, "alice") => Fate::Delivered(vec!["catch@dest.net".into(), m.copy_to.into()]),
            (None, "bob") => Fate::Killed,
            (None, "carol") => Fate::Bad,
            (None, _) => Fate::Held,
        };
    }
    let mut bytes = format!(
        "{head}From: S <s{g}@sender.test>\r\nSubject: message {g}\r\n\
         Message-ID: <m{g}@sender.test>\r\n\r\nbody of {g}\r\n.leading dot\r\n"
    )
    .into_bytes();
    // Some larger bodies, so pipelined RETRs cross buffer boundaries.
    if g.is_multiple_of(13) {
        for l in 0..2000 {
            bytes.extend_from_slice(format!("line {l} of a longer message {g}\r\n").as_bytes());
        }
    }
    (bytes, fate)
}

fn write_config(dir: &Path, dovecot: &Dovecot, postfix: &Postfix) -> Config {
    let mut text = format!(
        "hostname = \"relay.mailferry.test\"\n\
         [smtp]\nhosts = [\"{smtp}\"]\ntls = \"none\"\n\
         [queue]\nspool_dir = \"{spool}\"\nbadmail_dir = \"{bad}\"\nretry_interval = \"1s\"\n\
         lifetime = \"1h\"\npostmaster = \"postmaster@dest.net\"\n",
        smtp = postfix.smtp_addr(),
        spool = dir.join("spool").display(),
        bad = dir.join("bad").display(),
    );
    for m in &MAILBOXES {
        text.push_str(&format!(
            "[[connectors]]\nname = \"{user}\"\nsend_to = \"{send_to}\"\n{copy}\
             [connectors.pop3]\nhost = \"{pop}\"\ntls = \"none\"\nuser = \"{user}\"\n\
             password = \"pw-{user}\"\nauth = [\"USER\"]\nallow_insecure_auth = true\n\
             server_copy = {server_copy}\n{env}",
            user = m.user,
            send_to = m.send_to,
            copy = if m.copy_to.is_empty() {
                String::new()
            } else {
                format!("copy_to = \"{}\"\n", m.copy_to)
            },
            pop = dovecot.pop3_addr(),
            server_copy = m.server_copy,
            env = if m.envelope_header {
                "envelope_header = \"Delivered-To\"\n"
            } else {
                ""
            },
        ));
    }
    let path = dir.join("mailferry.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

/// Splits off the first header field (with its folded continuation lines) of an LF message.
fn take_field(data: &[u8]) -> (&[u8], &[u8]) {
    let mut end = 0;
    loop {
        let nl = data[end..].iter().position(|&b| b == b'\n').unwrap();
        end += nl + 1;
        if !matches!(data.get(end), Some(b' ' | b'\t')) {
            return (&data[..end], &data[end..]);
        }
    }
}

/// Checks a delivered file: Postfix's Return-Path, X-Original-To, Delivered-To and Received,
/// our Received and X-Mailferry-Trace, then exactly `original_lf`.
fn check_delivered(data: &[u8], rcpt: &str, sender: &str, connector: &str, original_lf: &[u8]) {
    let show = || String::from_utf8_lossy(data).into_owned();
    let expected_prefixes = [
        format!("Return-Path: <{sender}>\n"),
        format!("X-Original-To: {rcpt}\n"),
        format!("Delivered-To: {rcpt}\n"),
        "Received: from relay.mailferry.test (localhost [127.0.0.1])\n".to_owned(),
        "Received: from 127.0.0.1:".to_owned(),
        format!("X-Mailferry-Trace: connector={connector}; id="),
    ];
    let mut rest = data;
    for prefix in &expected_prefixes {
        let (field, after) = take_field(rest);
        assert!(
            field.starts_with(prefix.as_bytes()),
            "{rcpt}: expected {prefix:?}, got {:?}\n{}",
            String::from_utf8_lossy(field),
            show()
        );
        rest = after;
    }
    assert!(
        rest == original_lf,
        "{rcpt}: body differs\n{}\n---- expected\n{}",
        show(),
        String::from_utf8_lossy(original_lf)
    );
}

#[test]
#[ignore = "needs dovecot and postfix: run scripts/full-test.sh"]
fn dovecot_to_postfix_1000_messages() {
    let mut dovecot = Dovecot::builder();
    for m in &MAILBOXES {
        dovecot = dovecot.user(m.user, &format!("pw-{}", m.user));
    }
    let dovecot = dovecot.start().unwrap();
    // mailbox -> (Message-ID -> (connector, sender, forwarded bytes with LF))
    let mut expected: BTreeMap<String, HashMap<String, Expected>> = BTreeMap::new();
    let mut fates: HashMap<&str, Vec<(String, Fate)>> = HashMap::new();
    for (mi, m) in MAILBOXES.iter().enumerate() {
        for i in 0..PER_MAILBOX {
            let g = mi * PER_MAILBOX + i;
            let (bytes, fate) = message(m, i, g);
            let file = dovecot.drop_message(m.user, &bytes).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if let Fate::Delivered(rcpts) = &fate {
                let forwarded = mailferry_routing::strip_bcc(&bytes, true);
                let lf: Vec<u8> = forwarded.iter().copied().filter(|&b| b != b'\r').collect();
                for r in rcpts {
                    let prev = expected.entry(r.clone()).or_default().insert(
                        format!("<m{g}@sender.test>"),
                        (m.user, format!("s{g}@sender.test"), lf.clone()),
                    );
                    assert!(prev.is_none(), "test bug: {r} twice for {g}");
                }
            }
            fates.entry(m.user).or_default().push((name, fate));
        }
    }
    // Every routing case is present.
    let all: Vec<&Fate> = fates.values().flatten().map(|(_, f)| f).collect();
    for want in [Fate::Killed, Fate::Bad, Fate::Held] {
        assert!(all.contains(&&want), "{want:?} not covered");
    }
    let mut builder = Postfix::builder()
        .domain("dest.net")
        // Leave header fields alone, so that only the documented trace fields are added.
        .main_cf("local_header_rewrite_clients =\nmessage_drop_headers =\n");
    for mailbox in expected.keys() {
        builder = builder.mailbox(mailbox);
    }
    let postfix = builder.start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dovecot, &postfix);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let (report, rows) = rt.block_on(async {
        let ctx = Context::open(config).unwrap();
        let report = tokio::time::timeout(Duration::from_secs(120), poll_once(&ctx))
            .await
            .unwrap()
            .unwrap();
        (report, ctx.with_state(|s| s.list()).unwrap())
    });
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.ok.len(), MAILBOXES.len());
    let total = MAILBOXES.len() * PER_MAILBOX;
    eprintln!(
        "forwarded {total} messages (Dovecot -> mailferry -> Postfix) in {:?}",
        started.elapsed()
    );

    // The queue: one row per message, each in the state its fate demands.
    assert_eq!(rows.len(), total);
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *by_status.entry(format!("{:?}", r.status)).or_default() += 1;
    }
    let count = |f: &dyn Fn(&Fate) -> bool| all.iter().filter(|x| f(x)).count();
    let want_status: BTreeMap<String, usize> = [
        (
            format!("{:?}", Status::Delivered),
            count(&|f| matches!(f, Fate::Delivered(_))),
        ),
        (
            format!("{:?}", Status::Killed),
            count(&|f| *f == Fate::Killed),
        ),
        (
            format!("{:?}", Status::BadMail),
            count(&|f| *f == Fate::Bad),
        ),
        (format!("{:?}", Status::Held), count(&|f| *f == Fate::Held)),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_status, want_status);
    let bad_files = std::fs::read_dir(dir.path().join("bad"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "eml")
        })
        .count();
    assert_eq!(bad_files, want_status[&format!("{:?}", Status::BadMail)]);

    // Every recipient got exactly its messages, byte for byte.
    for (mailbox, msgs) in &expected {
        let files = postfix
            .wait_for_messages(mailbox, msgs.len(), Duration::from_secs(60))
            .unwrap();
        assert_eq!(files.len(), msgs.len(), "{mailbox}: duplicates");
        let mut seen = BTreeSet::new();
        for data in files {
            let text = String::from_utf8_lossy(&data).into_owned();
            let mid = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .unwrap()
                .to_owned();
            let (connector, sender, orig) = &msgs[&mid];
            check_delivered(&data, mailbox, sender, connector, orig);
            assert!(seen.insert(mid), "{mailbox}: a message twice");
        }
    }
    // Nobody else got anything (Postfix would have rejected unknown mailboxes; the queue says
    // each delivered message went to exactly its expected recipients).
    let delivered_total: usize = expected.values().map(HashMap::len).sum();
    let files_total: usize = expected
        .keys()
        .map(|m| postfix.delivered(m).unwrap().len())
        .sum();
    assert_eq!(files_total, delivered_total);

    // The server copy policies, on Dovecot's maildir.
    for m in &MAILBOXES {
        let left: BTreeSet<String> = dovecot
            .maildir_files(m.user)
            .unwrap()
            .iter()
            // Dovecot moves a message from new/ to cur/ and appends ":2,FLAGS" once seen.
            .map(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.split(':').next().unwrap().to_owned()
            })
            .collect();
        let mine = &fates[m.user];
        let want: BTreeSet<String> = match m.server_copy {
            "\"keep\"" | "{ remove_after_days = 3 }" => {
                mine.iter().map(|(n, _)| n.clone()).collect()
            }
            "{ remove_after_days = 0 }" => BTreeSet::new(),
            // Everything done with is removed; held messages stay.
            "\"remove_after_delivered\"" => mine
                .iter()
                .filter(|(_, f)| *f == Fate::Held)
                .map(|(n, _)| n.clone())
                .collect(),
            other => unreachable!("{other}"),
        };
        assert_eq!(left.len(), want.len(), "{}: {}", m.user, m.server_copy);
        assert_eq!(left, want, "{}: {}", m.user, m.server_copy);
    }
    eprintln!(
        "checked {files_total} delivered files for {} recipients in {:?}",
        expected.len(),
        started.elapsed()
    );
}

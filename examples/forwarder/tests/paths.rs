//! Paths the other suites leave out: the inbound SMTP listener end to end, the event script
//! inside routing, servers without UIDL, connection reuse, and the TLS trust settings
//! (`ca_file`, `danger_accept_invalid_certs`) of the SMTP output.

// Test helpers panic on set-up failures by design.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailferry_forwarder::config::Config;
use mailferry_forwarder::demo::RecordingSink;
use mailferry_forwarder::service::{Context, poll_once};
use mailferry_forwarder::state::Status;
use mailferry_sasl::{Credentials, Mechanism};
use mailferry_smtp_client::proto::{Envelope, RecipientStatus};
use mailferry_smtp_client::{Config as ClientConfig, SmtpClient};
use mailferry_testkit::pop3_responder::{Pop3Responder, maildir_deliver, maildir_list};
use mailferry_wire::tls::{ChannelSecurity, TlsMode};
use mailferry_wire::types::{Domain, ForwardPath, ReversePath};

const LIMIT: Duration = Duration::from_secs(30);

/// A configuration with one connector `c1` (POP3 `pop`, plaintext USER login) and `extra`
/// appended (more tables, or keys of the connector when it starts with a key line).
fn config(dir: &Path, pop: SocketAddr, smtp: SocketAddr, send_to: &str, extra: &str) -> Config {
    let text = format!(
        "hostname = \"relay.mailferry.test\"\n\
         [smtp]\nhosts = [\"{smtp}\"]\ntls = \"none\"\n\
         [queue]\nspool_dir = \"{spool}\"\nretry_interval = \"1s\"\n\
         lifetime = \"1h\"\npostmaster = \"postmaster@relay.mailferry.test\"\n\
         [[connectors]]\nname = \"c1\"\nsend_to = \"{send_to}\"\n\
         [connectors.pop3]\nhost = \"{pop}\"\ntls = \"none\"\nuser = \"u\"\n\
         password = \"pw\"\nauth = [\"USER\"]\nallow_insecure_auth = true\n\
         server_copy = \"remove_after_delivered\"\n{extra}",
        spool = dir.join("spool").display(),
    );
    let path = dir.join("mailferry.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

/// Rewrites the configuration file written by [`config`] and loads it again.
fn edited(dir: &Path, from: &str, to: &str) -> Config {
    let path = dir.join("mailferry.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    Config::load(&path).unwrap()
}

fn msg(i: usize, to: &str) -> Vec<u8> {
    format!(
        "From: s{i}@sender.test\r\nTo: {to}\r\nSubject: m{i}\r\nMessage-ID: <p{i}@sender.test>\r\n\
         \r\nbody {i}\r\n"
    )
    .into_bytes()
}

async fn poll(ctx: &Arc<Context>) {
    let report = tokio::time::timeout(LIMIT, poll_once(ctx))
        .await
        .unwrap()
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// The inbound listener

/// A context with a listener on 127.0.0.1:0 for `example.org`, delivering through `sink`.
async fn listener(
    dir: &Path,
    sink: &RecordingSink,
    listener_keys: &str,
) -> (Arc<Context>, mailferry_forwarder::inbound::Listening) {
    // No POP3 connector is polled in these tests; one is configured because the file needs
    // one, on a port nothing listens on.
    let dead: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let extra = format!(
        "[listener]\nlisten = [\"127.0.0.1:0\"]\nlocal_domains = [\"example.org\"]\n\
         relay = \"nobody\"\n{listener_keys}"
    );
    let cfg = config(dir, dead, sink.addr(), "{example.com}", &extra);
    let ctx = Context::open(cfg).unwrap();
    let l = ctx.config().listener.clone().unwrap();
    let listening = mailferry_forwarder::inbound::start(&ctx, &l).await.unwrap();
    (ctx, listening)
}

async fn client(addr: SocketAddr) -> SmtpClient {
    let mut cfg = ClientConfig::new(
        addr.ip().to_string(),
        Domain::try_from("client.test").unwrap(),
    );
    cfg.port = Some(addr.port());
    cfg.tls_mode = TlsMode::Plaintext;
    tokio::time::timeout(LIMIT, SmtpClient::connect(&cfg))
        .await
        .unwrap()
        .unwrap()
}

fn envelope(from: &str, to: &[&str]) -> Envelope {
    let mut e = Envelope::new(ReversePath::try_from(format!("<{from}>").as_str()).unwrap());
    for t in to {
        e = e.recipient(ForwardPath::try_from(format!("<{t}>").as_str()).unwrap());
    }
    e
}

/// `[listener]` keys for one implicit-TLS address with the test CA's certificate, then `extra`.
fn tls_listener_keys(ca: &mailferry_testkit::TestCa, extra: &str) -> String {
    format!(
        "listen_tls = [\"127.0.0.1:0\"]\ncertificate = \"{}\"\nkey = \"{}\"\n{extra}",
        ca.chain_pem_path().display(),
        ca.key_pem_path().display()
    )
}

/// Our client over implicit TLS, trusting the test CA; it logs in when `login` (user,
/// password, mechanism) is given.
async fn tls_client(
    addr: SocketAddr,
    ca: &mailferry_testkit::TestCa,
    login: Option<(&str, &str, Mechanism)>,
) -> Result<SmtpClient, mailferry_smtp_client::Error> {
    let mut cfg = ClientConfig::new("localhost", Domain::try_from("client.test").unwrap());
    cfg.port = Some(addr.port());
    cfg.tls_mode = TlsMode::Implicit;
    cfg.tls = Some(ca.client_config().unwrap());
    if let Some((user, password, mechanism)) = login {
        cfg.credentials = Some(Credentials::new(user).with_password(password));
        cfg.mechanisms = vec![mechanism];
    }
    tokio::time::timeout(LIMIT, SmtpClient::connect(&cfg))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_message_is_durable_at_250_then_routed_and_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let (ctx, listening) = listener(dir.path(), &sink, "").await;
    let mut c = client(listening.addrs[0]).await;
    let body = b"From: a@remote.test\r\nTo: bob@example.org\r\nSubject: in\r\n\r\nhello\r\n";
    let report = c
        .send_bytes(
            &envelope("a@remote.test", &["bob@example.org", "carol@example.org"]),
            body,
        )
        .await
        .unwrap();
    assert_eq!(report.data_reply.as_ref().unwrap().code().as_u16(), 250);
    // At the moment the client holds its 250: the spool file and the routed rows exist.
    let rows = ctx.with_state(|s| s.list()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, Status::Routed);
    assert_eq!(rows[0].source, "smtp");
    assert_eq!(rows[0].sender.as_deref(), Some("a@remote.test"));
    // The spool file: the listener's own Received: line, then the data as sent.
    let spooled = std::fs::read(&rows[0].spool_file).unwrap();
    let text = String::from_utf8_lossy(&spooled);
    assert!(
        text.starts_with(
            "Received: from client.test ([127.0.0.1])\r\n\tby relay.mailferry.test with ESMTP;"
        ),
        "{text}"
    );
    assert!(spooled.ends_with(body), "{text}");
    let (_, rcpts) = ctx.with_state(|s| s.message(&rows[0].id)).unwrap().unwrap();
    let addrs: Vec<&str> = rcpts.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addrs, ["bob@example.org", "carol@example.org"]);
    c.quit().await.unwrap();

    // Delivery: the envelope recipients, through [smtp], with our trace lines on top.
    assert_eq!(
        mailferry_forwarder::delivery::deliver_all_due(&ctx).await,
        1
    );
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "a@remote.test");
    assert_eq!(got[0].to, ["bob@example.org", "carol@example.org"]);
    let text = String::from_utf8(got[0].data.clone()).unwrap();
    assert!(text.starts_with("Received: from "), "{text}");
    assert!(
        text.contains("by relay.mailferry.test (mailferry) with ESMTP id "),
        "{text}"
    );
    assert!(
        text.contains("\r\nX-Mailferry-Trace: connector=listener; id="),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nhello\r\n"), "{text}");
    let rows = ctx.with_state(|s| s.list()).unwrap();
    assert_eq!(rows[0].status, Status::Delivered);
    listening.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_implicit_tls_listener_takes_mail_over_tls_from_the_first_byte() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let ca = mailferry_testkit::TestCa::new().unwrap();
    let (ctx, listening) = listener(dir.path(), &sink, &tls_listener_keys(&ca, "")).await;
    assert_eq!((listening.addrs.len(), listening.tls_addrs.len()), (1, 1));
    let mut c = tls_client(listening.tls_addrs[0], &ca, None).await.unwrap();
    // Verified against the test CA, and no STARTTLS offered inside TLS.
    assert_eq!(c.channel(), ChannelSecurity::TlsVerified);
    assert!(!c.capabilities().unwrap().starttls);
    let body = b"From: a@remote.test\r\nTo: bob@example.org\r\nSubject: tls\r\n\r\nhi\r\n";
    let report = c
        .send_bytes(&envelope("a@remote.test", &["bob@example.org"]), body)
        .await
        .unwrap();
    assert_eq!(report.data_reply.as_ref().unwrap().code().as_u16(), 250);
    c.quit().await.unwrap();
    let rows = ctx.with_state(|s| s.list()).unwrap();
    assert_eq!(rows.len(), 1);
    let spooled = std::fs::read(&rows[0].spool_file).unwrap();
    let text = String::from_utf8_lossy(&spooled);
    // The trace field says the message came in encrypted (RFC 3848).
    assert!(
        text.starts_with(
            "Received: from client.test ([127.0.0.1])\r\n\tby relay.mailferry.test with ESMTPS\r\n"
        ),
        "{text}"
    );
    assert!(spooled.ends_with(body), "{text}");
    listening.token.cancel();
    tokio::time::timeout(LIMIT, listening.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_users_authenticate_over_tls_and_may_relay() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let ca = mailferry_testkit::TestCa::new().unwrap();
    let keys = tls_listener_keys(
        &ca,
        "[[listener.users]]\nuser = \"alice\"\npassword = \"wonderland\"\n",
    );
    let (ctx, listening) = listener(dir.path(), &sink, &keys).await;
    let addr = listening.tls_addrs[0];
    let to_remote = envelope("alice@example.org", &["x@foreign.test"]);
    // Not authenticated: relaying is refused, as for anyone untrusted.
    let mut c = tls_client(addr, &ca, None).await.unwrap();
    let report = c
        .send_bytes(&to_remote, b"Subject: x\r\n\r\nx\r\n")
        .await
        .unwrap();
    assert_eq!(report.recipients[0].status, RecipientStatus::Permanent);
    c.quit().await.unwrap();
    // A wrong password is refused at AUTH.
    let wrong = Some(("alice", "wrong", Mechanism::Plain));
    assert!(tls_client(addr, &ca, wrong).await.is_err());
    // Authenticated with SCRAM-SHA-256 (derived from the configured password) or PLAIN: the
    // same remote recipient is accepted and queued.
    for (i, m) in [Mechanism::ScramSha256, Mechanism::Plain]
        .into_iter()
        .enumerate()
    {
        let mut c = tls_client(addr, &ca, Some(("alice", "wonderland", m)))
            .await
            .unwrap();
        let report = c
            .send_bytes(&to_remote, b"Subject: y\r\n\r\ny\r\n")
            .await
            .unwrap();
        assert_eq!(
            report.recipients[0].status,
            RecipientStatus::Delivered,
            "{m:?}"
        );
        c.quit().await.unwrap();
        let rows = ctx.with_state(|s| s.list()).unwrap();
        assert_eq!(rows.len(), i + 1);
        let spooled = std::fs::read(&rows[i].spool_file).unwrap();
        let text = String::from_utf8_lossy(&spooled);
        assert!(text.contains("with ESMTPSA"), "{text}");
    }
    listening.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_sender_checks_tie_mail_from_to_the_user() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let ca = mailferry_testkit::TestCa::new().unwrap();
    let keys = tls_listener_keys(
        &ca,
        "local_senders_must_authenticate = true\nsender_must_match_user = \"address\"\n\
         [[listener.users]]\nuser = \"alice@example.org\"\npassword = \"wonderland\"\n",
    );
    let (ctx, listening) = listener(dir.path(), &sink, &keys).await;
    let addr = listening.tls_addrs[0];
    let alice = Some(("alice@example.org", "wonderland", Mechanism::Plain));
    let refused_sender = |r: &mailferry_wire::smtp::Reply| {
        assert_eq!(r.code().as_u16(), 553, "{r}");
        assert_eq!(r.enhanced().unwrap().to_string(), "5.7.1", "{r}");
    };
    let body = b"Subject: s\r\n\r\nb\r\n";
    // Not authenticated: a local sender is refused, a remote one may write to a local user.
    let mut c = tls_client(addr, &ca, None).await.unwrap();
    let report = c
        .send_bytes(&envelope("alice@example.org", &["bob@example.org"]), body)
        .await
        .unwrap();
    refused_sender(&report.mail_reply);
    c.quit().await.unwrap();
    let mut c = tls_client(addr, &ca, None).await.unwrap();
    let report = c
        .send_bytes(&envelope("a@remote.test", &["bob@example.org"]), body)
        .await
        .unwrap();
    assert!(report.is_accepted(), "{report:?}");
    c.quit().await.unwrap();
    // Authenticated as alice: only alice's own address is accepted as the sender.
    let mut c = tls_client(addr, &ca, alice).await.unwrap();
    let report = c
        .send_bytes(&envelope("bob@example.org", &["bob@example.org"]), body)
        .await
        .unwrap();
    refused_sender(&report.mail_reply);
    c.quit().await.unwrap();
    let mut c = tls_client(addr, &ca, alice).await.unwrap();
    let report = c
        .send_bytes(&envelope("alice@example.org", &["x@foreign.test"]), body)
        .await
        .unwrap();
    assert!(report.is_accepted(), "{report:?}");
    c.quit().await.unwrap();
    assert_eq!(ctx.with_state(|s| s.list()).unwrap().len(), 2);
    listening.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_store_failure_answers_451_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let (ctx, listening) = listener(dir.path(), &sink, "").await;
    // The spool's queue directory vanishes: nothing can be made durable, so no 250.
    let queue = dir.path().join("spool").join("queue");
    std::fs::rename(&queue, dir.path().join("moved")).unwrap();
    let mut c = client(listening.addrs[0]).await;
    let report = c
        .send_bytes(
            &envelope("a@remote.test", &["bob@example.org"]),
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    let reply = report.data_reply.unwrap();
    assert_eq!(reply.code().as_u16(), 451);
    assert_eq!(reply.enhanced().unwrap().to_string(), "4.3.0");
    assert!(ctx.with_state(|s| s.list()).unwrap().is_empty());
    listening.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_relay_refused_for_untrusted_client_with_554_5_7_1() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RecordingSink::start().await.unwrap();
    // 127.0.0.1 is not trusted (another network is).
    let (ctx, listening) =
        listener(dir.path(), &sink, "trusted_hosts = [\"192.0.2.0/24\"]\n").await;
    let mut c = client(listening.addrs[0]).await;
    let report = c
        .send_bytes(
            &envelope("a@remote.test", &["x@foreign.test", "bob@example.org"]),
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    let foreign = &report.recipients[0];
    assert_eq!(foreign.status, RecipientStatus::Permanent);
    let r = foreign.rcpt_reply.as_ref().unwrap();
    assert_eq!(r.code().as_u16(), 554);
    assert_eq!(r.enhanced().unwrap().to_string(), "5.7.1");
    assert!(r.to_string().contains("Relay access denied"), "{r}");
    // The local recipient is accepted; only it is queued.
    assert_eq!(report.recipients[1].status, RecipientStatus::Delivered);
    let rows = ctx.with_state(|s| s.list()).unwrap();
    let (_, rcpts) = ctx.with_state(|s| s.message(&rows[0].id)).unwrap().unwrap();
    assert_eq!(rcpts.len(), 1);
    assert_eq!(rcpts[0].address, "bob@example.org");
    // The percent hack at a local domain stays a local mailbox, queued verbatim: never
    // rewritten into x@foreign.test.
    let report = c
        .send_bytes(
            &envelope("a@remote.test", &["x%foreign.test@example.org"]),
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    assert_eq!(report.recipients[0].status, RecipientStatus::Delivered);
    mailferry_forwarder::delivery::deliver_all_due(&ctx).await;
    let mut to: Vec<Vec<String>> = sink.messages().into_iter().map(|m| m.to).collect();
    to.sort();
    assert_eq!(
        to,
        [
            vec!["bob@example.org".to_owned()],
            vec!["x%foreign.test@example.org".to_owned()]
        ]
    );
    listening.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_trusted_host_may_relay() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let (ctx, listening) = listener(dir.path(), &sink, "trusted_hosts = [\"127.0.0.0/8\"]\n").await;
    let mut c = client(listening.addrs[0]).await;
    let report = c
        .send_bytes(
            &envelope("a@example.org", &["x@foreign.test"]),
            b"Subject: relayed\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    assert_eq!(report.recipients[0].status, RecipientStatus::Delivered);
    assert_eq!(report.data_reply.unwrap().code().as_u16(), 250);
    mailferry_forwarder::delivery::deliver_all_due(&ctx).await;
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["x@foreign.test"]);
    listening.token.cancel();
}

// ---------------------------------------------------------------------------------------------
// The event script inside routing

fn script_file(dir: &Path, body: &str) -> String {
    let path = dir.join("hook.sh");
    std::fs::write(&path, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_script_overrides_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    maildir_deliver(&maildir, "1.m", &msg(1, "u1@dest.example")).unwrap();
    // A script that reroutes only messages with subject m2.
    maildir_deliver(&maildir, "2.m", &msg(2, "u2@dest.example")).unwrap();
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let hook = script_file(
        dir.path(),
        "if grep -q '^Subject: m2' \"$MAILFERRY_MESSAGE\"; then\n\
         echo '{\"recipients\": [\"review@dest.net\", \"boss@dest.net\"], \"reason\": \"review\"}'\n\
         fi",
    );
    let cfg = config(
        dir.path(),
        pop.addr(),
        sink.addr(),
        "{dest.example, dest.net}",
        &format!("[connectors.script]\ncommand = \"{hook}\"\ntimeout = \"10s\"\n"),
    );
    let ctx = Context::open(cfg).unwrap();
    poll(&ctx).await;
    let mut got: Vec<(String, Vec<String>)> = sink
        .messages()
        .into_iter()
        .map(|m| {
            let t = String::from_utf8_lossy(&m.data).into_owned();
            let subject = t
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_owned();
            (subject, m.to)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("m1".to_owned(), vec!["u1@dest.net".to_owned()]),
            (
                "m2".to_owned(),
                vec!["review@dest.net".to_owned(), "boss@dest.net".to_owned()]
            ),
        ]
    );
    let rows = ctx.with_state(|s| s.list()).unwrap();
    assert!(
        rows.iter().all(|r| r.status == Status::Delivered),
        "{rows:?}"
    );
    let overridden = rows
        .iter()
        .find(|r| r.decision.as_deref().unwrap_or("").contains("event script"))
        .unwrap();
    let (_, rcpts) = ctx
        .with_state(|s| s.message(&overridden.id))
        .unwrap()
        .unwrap();
    assert!(rcpts.iter().all(|r| r.rule == "event script"));
    assert!(maildir_list(&maildir).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_event_script_holds_and_keeps_the_server_copy() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    maildir_deliver(&maildir, "1.m", &msg(1, "u1@dest.example")).unwrap();
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let hook = script_file(dir.path(), "echo 'database down' >&2\nexit 3");
    let cfg = config(
        dir.path(),
        pop.addr(),
        sink.addr(),
        "{dest.example, dest.net}",
        &format!("[connectors.script]\ncommand = \"{hook}\"\n"),
    );
    let ctx = Context::open(cfg).unwrap();
    poll(&ctx).await;
    assert!(sink.messages().is_empty());
    let rows = ctx.with_state(|s| s.list()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, Status::Held);
    let why = rows[0].last_error.clone().unwrap_or_default();
    assert!(why.contains("database down"), "{why}");
    // Held is never "done": the server copy stays under remove_after_delivered, and the
    // spool file is still there for `queue release`.
    assert_eq!(maildir_list(&maildir).unwrap().len(), 1);
    assert!(Path::new(&rows[0].spool_file).exists());
    // A second poll neither fetches it again nor forwards it.
    poll(&ctx).await;
    assert_eq!(ctx.with_state(|s| s.list()).unwrap().len(), 1);
    assert!(sink.messages().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Servers without UIDL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_uidl_content_hash_recognises_messages_and_true_copies() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    maildir_deliver(&maildir, "1.m", &msg(1, "u1@dest.example")).unwrap();
    maildir_deliver(&maildir, "2.m", &msg(2, "u2@dest.example")).unwrap();
    // A true copy of message 1 (same bytes): both must be forwarded, neither lost.
    maildir_deliver(&maildir, "3.m", &msg(1, "u1@dest.example")).unwrap();
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    pop.set_uidl(false);
    let sink = RecordingSink::start().await.unwrap();
    config(
        dir.path(),
        pop.addr(),
        sink.addr(),
        "{dest.example, dest.net}",
        "",
    );
    // Keep the server copies so that the next poll sees the same messages again.
    let cfg = edited(dir.path(), "\"remove_after_delivered\"", "\"keep\"");
    let ctx = Context::open(cfg).unwrap();
    poll(&ctx).await;
    assert_eq!(sink.messages().len(), 3);
    // The copies share a hash and are told apart by occurrence: three rows.
    assert_eq!(ctx.with_state(|s| s.list()).unwrap().len(), 3);
    let retrieved = pop.retrieved();
    // Second poll: every message is recognised by its hash (TOP n 0 only, no RETR).
    poll(&ctx).await;
    assert_eq!(sink.messages().len(), 3);
    assert_eq!(ctx.with_state(|s| s.list()).unwrap().len(), 3);
    assert_eq!(pop.retrieved() - retrieved, 3, "three TOP n 0, no RETR");
    // A new message arrives: only it is fetched.
    maildir_deliver(&maildir, "4.m", &msg(4, "u4@dest.example")).unwrap();
    poll(&ctx).await;
    assert_eq!(sink.messages().len(), 4);
    assert_eq!(sink.messages()[3].to, ["u4@dest.net"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_uidl_remove_after_delivered_deletes_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    for i in 0..5 {
        maildir_deliver(
            &maildir,
            &format!("{i}.m"),
            &msg(i, &format!("u{i}@dest.example")),
        )
        .unwrap();
    }
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    pop.set_uidl(false);
    let sink = RecordingSink::start().await.unwrap();
    sink.reject("u3@dest.net", false);
    let cfg = config(
        dir.path(),
        pop.addr(),
        sink.addr(),
        "{dest.example, dest.net}",
        "",
    );
    let ctx = Context::open(cfg).unwrap();
    poll(&ctx).await;
    // Four delivered and removed; the deferred one stays on the server.
    assert_eq!(sink.messages().len(), 4);
    let left = maildir_list(&maildir).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].ends_with("3.m"), "{left:?}");
    sink.accept("u3@dest.net");
    ctx.with_state(|s| s.retry_all(std::time::SystemTime::now()))
        .unwrap();
    poll(&ctx).await;
    assert_eq!(sink.messages().len(), 5);
    assert!(maildir_list(&maildir).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Connection reuse

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_one_server_reuse_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    for i in 0..12 {
        maildir_deliver(
            &maildir,
            &format!("{i:02}.m"),
            &msg(i, &format!("u{i}@dest.example")),
        )
        .unwrap();
    }
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    // Deliveries one at a time, so that each one finds the previous connection idle.
    config(
        dir.path(),
        pop.addr(),
        sink.addr(),
        "{dest.example, dest.net}",
        "",
    );
    let ctx = Context::open(edited(
        dir.path(),
        "[queue]\n",
        "[queue]\nconcurrency = 1\n",
    ))
    .unwrap();
    poll(&ctx).await;
    let got = sink.messages();
    assert_eq!(got.len(), 12);
    assert!(
        got.iter().all(|m| m.connection == 1),
        "connections: {:?}",
        got.iter().map(|m| m.connection).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// TLS trust settings of the SMTP output

async fn tls_run(
    smtp_keys: &str,
) -> (Vec<mailferry_forwarder::demo::ReceivedMessage>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let ca = mailferry_testkit::TestCa::new().unwrap();
    let maildir = dir.path().join("mail");
    maildir_deliver(&maildir, "1.m", &msg(1, "u1@dest.example")).unwrap();
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    let sink = RecordingSink::start_tls(Some(ca.server_config().unwrap()))
        .await
        .unwrap();
    // The sink's certificate names localhost and 127.0.0.1.
    let keys = smtp_keys.replace("CA_FILE", &ca.ca_pem_path().display().to_string());
    let extra = format!(
        "[connectors.smtp]\nhosts = [\"{}\"]\ntls = \"required\"\n{keys}",
        sink.addr()
    );
    let cfg = config(
        dir.path(),
        pop.addr(),
        sink.addr(),
        "{dest.example, dest.net}",
        &extra,
    );
    let ctx = Context::open(cfg).unwrap();
    poll(&ctx).await;
    let errors = ctx
        .with_state(|s| s.list())
        .unwrap()
        .into_iter()
        .filter_map(|r| r.last_error)
        .collect();
    (sink.messages(), errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_file_lets_a_private_ca_verify() {
    let (got, errors) = tls_run("ca_file = \"CA_FILE\"\n").await;
    assert_eq!(got.len(), 1, "{errors:?}");
    // (The server's view of a session without client certificate is "unverified"; that the
    // client verified is shown by the refusal without ca_file, below.)
    assert_ne!(got[0].security, ChannelSecurity::Plaintext);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ca_file_a_private_ca_is_refused_and_the_message_deferred() {
    let (got, errors) = tls_run("").await;
    assert!(got.is_empty());
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("421 4.4.1 "), "{errors:?}");
    assert!(
        errors[0].contains("invalid peer certificate: UnknownIssuer"),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn danger_accept_invalid_certs_skips_verification() {
    let (got, errors) = tls_run("danger_accept_invalid_certs = true\n").await;
    assert_eq!(got.len(), 1, "{errors:?}");
    // The server cannot tell; the session was TLS all the same.
    assert_ne!(got[0].security, ChannelSecurity::Plaintext);
}

// ---------------------------------------------------------------------------------------------
// Recovery after a power failure (the group commit's other half)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_lost_before_the_barrier_are_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    for i in 1..=3 {
        maildir_deliver(&maildir, &format!("{i}.m"), &msg(i, "u@dest.example")).unwrap();
    }
    let pop = Pop3Responder::start(&maildir, "u", "pw").await.unwrap();
    let sink = RecordingSink::start().await.unwrap();
    let cfg = config(dir.path(), pop.addr(), sink.addr(), "{dest.example}", "");
    let ctx = Context::open(cfg.clone()).unwrap();
    // Every delivery deferred: the messages wait in the queue, their server copies stay.
    sink.fail_data(3);
    poll(&ctx).await;
    assert!(sink.messages().is_empty());
    assert_eq!(maildir_list(&maildir).unwrap().len(), 3);
    let rows = ctx.with_state(|s| s.list()).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.status == Status::Routed), "{rows:?}");
    drop(ctx);

    // What a power failure before the barrier can leave: a file cut short, a file gone (the
    // rows, committed later, survived).
    let by_subject = |subject: &str| {
        rows.iter()
            .find(|r| {
                std::fs::read_to_string(&r.spool_file)
                    .unwrap()
                    .contains(&format!("Subject: {subject}\r\n"))
            })
            .unwrap()
            .clone()
    };
    let (m1, m2) = (by_subject("m1"), by_subject("m2"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&m1.spool_file)
        .unwrap()
        .set_len(m1.size / 2)
        .unwrap();
    std::fs::remove_file(&m2.spool_file).unwrap();

    let ctx = Context::open(cfg).unwrap();
    ctx.with_state(|s| s.retry_all(ctx.now())).unwrap();
    poll(&ctx).await;
    // m1 and m2 were forgotten and fetched again from the server; m3 was retried.
    let got: Vec<Vec<u8>> = sink.messages().into_iter().map(|m| m.data).collect();
    assert_eq!(got.len(), 3, "each message exactly once");
    for i in 1..=3 {
        let original = msg(i, "u@dest.example");
        assert_eq!(
            got.iter().filter(|d| d.ends_with(&original)).count(),
            1,
            "message {i} arrives whole, once"
        );
    }
    let rows = ctx.with_state(|s| s.list()).unwrap();
    assert_eq!(rows.len(), 3, "the forgotten rows are gone: {rows:?}");
    assert!(
        rows.iter().all(|r| r.status == Status::Delivered),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.id != m1.id && r.id != m2.id));
    assert!(maildir_list(&maildir).unwrap().is_empty());
}

//! Real clients against the listener: swaks (each AUTH mechanism, STARTTLS, implicit TLS,
//! pipelining), msmtp (SCRAM-SHA-256 over implicit TLS, through GNU SASL and GnuTLS) and
//! Postfix's smtp-source (load). Run by scripts/full-test.sh.

// Test helpers outside #[test] fns: a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use mailferry_sasl::{CredentialStore, Lookup, Secret, ServerSession, Verdict};
use mailferry_smtp_server::net::{Handler, Server};
use mailferry_smtp_server::proto::{Context, Envelope, Options};
use mailferry_testkit::TestCa;
use mailferry_wire::smtp::Reply;
use mailferry_wire::types::Domain;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Count {
    messages: AtomicUsize,
    octets: AtomicUsize,
}

struct Sink(Arc<Count>);

impl Handler for Sink {
    type Conn = ();
    async fn data_chunk(&self, _: &mut (), chunk: Bytes) {
        self.0.octets.fetch_add(chunk.len(), Ordering::Relaxed);
    }
    async fn data_end(&self, _: &mut (), _: &Context, _: Envelope) -> Option<Reply> {
        self.0.messages.fetch_add(1, Ordering::Relaxed);
        None
    }
}

struct Users;

impl CredentialStore for Users {
    fn verify_password(&self, user: &str, pw: &Secret<String>, _: Option<&str>) -> Verdict {
        if user == "alice" && pw.expose() == "wonderland" {
            Verdict::Accept
        } else {
            Verdict::Reject
        }
    }
    fn cram_md5_secret(&self, user: &str) -> Lookup {
        if user == "alice" {
            Lookup::Found(Secret::new("wonderland".into()))
        } else {
            Lookup::NotFound
        }
    }
}

/// How the listener under test secures its connections.
#[derive(Clone, Copy, PartialEq)]
enum Listener {
    Plain,
    StartTls,
    ImplicitTls,
}

async fn start(mode: Listener) -> (SocketAddr, CancellationToken, Arc<Count>, TestCa) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new().unwrap();
    let mut options = Options::default();
    options.hostname = Domain::try_from("mx.test").unwrap();
    // Every server mechanism, SCRAM first: each client below picks its own.
    options.auth_mechanisms = ServerSession::MECHANISMS.to_vec();
    let server = match mode {
        Listener::Plain => Server::bind("127.0.0.1:0", options, None).await,
        Listener::StartTls => {
            Server::bind("127.0.0.1:0", options, Some(ca.server_config().unwrap())).await
        }
        Listener::ImplicitTls => {
            Server::bind_implicit_tls("127.0.0.1:0", options, ca.server_config().unwrap()).await
        }
    };
    let server = server.unwrap().with_credentials(Arc::new(Users));
    let addr = server.local_addr().unwrap();
    let token = server.shutdown_token();
    let count = Arc::new(Count::default());
    tokio::spawn(server.serve(Sink(Arc::clone(&count))));
    (addr, token, count, ca)
}

/// Runs swaks against `addr` with `args` (swaks's own timeout 10 s; ours 30 s): whether it
/// succeeded, and its transcript.
async fn swaks(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let mut all = vec![
        "--server".to_owned(),
        addr.to_string(),
        "--timeout".to_owned(),
        "10".to_owned(),
    ];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let run = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("/usr/bin/swaks")
            .args(&all)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    });
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs swaks and postfix tools: run scripts/full-test.sh"]
async fn swaks_each_auth_mechanism_over_starttls() {
    let (addr, token, count, _ca) = start(Listener::StartTls).await;
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        let args = [
            "--from",
            "alice@mx.test",
            "--to",
            "bob@mx.test",
            "--tls",
            "--auth",
            mech,
            "--auth-user",
            "alice",
            "--auth-password",
            "wonderland",
        ];
        let (ok, text) = swaks(addr, &args).await;
        assert!(ok, "{mech}: {text}");
        assert!(
            text.contains("235 2.7.0 Authentication successful"),
            "{mech}: {text}"
        );
        assert!(text.contains("250 2.0.0 Ok: queued"), "{mech}: {text}");
    }
    assert_eq!(count.messages.load(Ordering::Relaxed), 3);
    // A wrong password is refused with 535 5.7.8.
    let args = [
        "--to",
        "bob@mx.test",
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "wrong",
    ];
    let (ok, text) = swaks(addr, &args).await;
    assert!(!ok);
    assert!(text.contains("535 5.7.8"), "{text}");
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs swaks and postfix tools: run scripts/full-test.sh"]
async fn swaks_over_implicit_tls() {
    let (addr, token, count, _ca) = start(Listener::ImplicitTls).await;
    let args = [
        "--from",
        "alice@mx.test",
        "--to",
        "bob@mx.test",
        "--tls-on-connect",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "wonderland",
    ];
    let (ok, text) = swaks(addr, &args).await;
    assert!(ok, "{text}");
    // swaks reports the TLS session before the greeting it read through it.
    let tls_at = text.find("TLS started").unwrap_or(usize::MAX);
    let greeting_at = text.find("220 mx.test").unwrap_or(0);
    assert!(tls_at < greeting_at, "{text}");
    assert!(!text.contains("STARTTLS"), "{text}");
    assert!(
        text.contains("235 2.7.0 Authentication successful"),
        "{text}"
    );
    assert!(text.contains("250 2.0.0 Ok: queued"), "{text}");
    assert_eq!(count.messages.load(Ordering::Relaxed), 1);
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs msmtp: run scripts/full-test.sh"]
async fn msmtp_scram_sha_256_over_implicit_tls() {
    let (addr, token, count, ca) = start(Listener::ImplicitTls).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("msmtprc");
    // msmtp refuses a configuration file others may read: it holds the password.
    std::fs::write(
        &config,
        format!(
            "account test\nhost 127.0.0.1\nport {}\ntls on\ntls_starttls off\n\
             tls_trust_file {}\nauth scram-sha-256\nuser alice\npassword wonderland\n\
             from alice@mx.test\n",
            addr.port(),
            ca.ca_pem_path().display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let run = move || {
        use std::io::Write;
        let mut child = std::process::Command::new("/usr/bin/msmtp")
            .arg("-C")
            .arg(&config)
            .args(["-a", "test", "--debug", "bob@mx.test"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"Subject: scram\r\n\r\nhello\r\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) =
        tokio::time::timeout(Duration::from_secs(30), tokio::task::spawn_blocking(run))
            .await
            .unwrap()
            .unwrap();
    assert!(ok, "{text}");
    // The certificate was verified against the test CA, the greeting came through TLS, and
    // SCRAM ran to the server's signature, which GNU SASL checks before it takes the 235.
    assert!(text.contains("220 mx.test"), "{text}");
    assert!(text.contains("AUTH SCRAM-SHA-256"), "{text}");
    assert!(
        text.contains("235 2.7.0 Authentication successful"),
        "{text}"
    );
    assert!(text.contains("250 2.0.0 Ok: queued"), "{text}");
    assert_eq!(count.messages.load(Ordering::Relaxed), 1);
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs swaks and postfix tools: run scripts/full-test.sh"]
async fn swaks_pipelining() {
    let (addr, token, count, _ca) = start(Listener::Plain).await;
    let args = [
        "--from",
        "a@client.test",
        "--to",
        "b@mx.test,c@mx.test",
        "--pipeline",
    ];
    let (ok, text) = swaks(addr, &args).await;
    assert!(ok, "{text}");
    assert!(text.contains("250 2.0.0 Ok: queued"), "{text}");
    assert_eq!(count.messages.load(Ordering::Relaxed), 1);
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs swaks and postfix tools: run scripts/full-test.sh"]
async fn smtp_source_load() {
    let (addr, token, count, _ca) = start(Listener::Plain).await;
    let target = addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        mailferry_testkit::smtp_source(
            &[
                "-s",
                "4",
                "-m",
                "200",
                "-l",
                "4096",
                "-t",
                "rcpt@mx.test",
                &target,
            ],
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert!(out.success, "{out:?}");
    assert_eq!(count.messages.load(Ordering::Relaxed), 200);
    assert!(count.octets.load(Ordering::Relaxed) >= 200 * 4096);
    token.cancel();
}

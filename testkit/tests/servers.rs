//! Self-test: the kit's real servers accept a login and deliver a message.
//!
//! Needs root and the Debian packages of `scripts/install-deps.sh`; run with
//! `cargo test -p mailferry-testkit -- --ignored` (scripts/full-test.sh does).

use std::time::Duration;

use mailferry_testkit::{Dovecot, Postfix, SmtpSink, TestCa, smtp_source};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(10);

/// A tiny line client: enough protocol to prove the servers work, nothing more.
struct Conn<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn line(&mut self) -> String {
        let mut line = String::new();
        timeout(STEP, self.io.read_line(&mut line))
            .await
            .expect("reply within the step bound")
            .expect("read a reply line");
        line
    }

    async fn send(&mut self, command: &str) {
        let io = self.io.get_mut();
        timeout(STEP, io.write_all(format!("{command}\r\n").as_bytes()))
            .await
            .expect("write within the step bound")
            .expect("write a command");
        io.flush().await.expect("flush a command");
    }

    /// Sends `command` and returns the reply line.
    async fn cmd(&mut self, command: &str) -> String {
        self.send(command).await;
        self.line().await
    }

    /// Reads an SMTP reply (multi-line aware); returns all its lines.
    async fn smtp_reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// Reads a POP3 multi-line body up to the terminating ".".
    async fn pop3_multiline(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await;
            if line == ".\r\n" {
                return body;
            }
            let unstuffed = line.strip_prefix('.').unwrap_or(&line);
            body.extend_from_slice(unstuffed.as_bytes());
        }
    }

    fn into_inner(self) -> S {
        assert!(self.io.buffer().is_empty(), "bytes buffered before TLS");
        self.io.into_inner()
    }
}

async fn tls<S: AsyncRead + AsyncWrite + Unpin>(
    ca: &TestCa,
    io: S,
) -> tokio_rustls::client::TlsStream<S> {
    let connector = tokio_rustls::TlsConnector::from(ca.client_config().expect("client config"));
    timeout(STEP, connector.connect(ca.server_name(), io))
        .await
        .expect("handshake within the step bound")
        .expect("TLS handshake")
}

#[tokio::test]
#[ignore = "needs dovecot: run scripts/full-test.sh"]
async fn dovecot_user_pass_over_stls_and_retr() {
    let dovecot =
        tokio::task::spawn_blocking(|| Dovecot::builder().user("alice", "secret").start().unwrap())
            .await
            .unwrap();
    let message = b"From: a@example.test\r\nSubject: kit\r\n\r\n.dot line\r\nbody\r\n";
    let dropped = dovecot.drop_message("alice", message).unwrap();
    assert_eq!(dovecot.maildir_files("alice").unwrap(), vec![dropped]);

    let tcp = TcpStream::connect(dovecot.pop3_addr()).await.unwrap();
    let mut c = Conn {
        io: BufReader::new(tcp),
    };
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.cmd("STLS").await.starts_with("+OK"));
    let tls = tls(dovecot.ca(), c.into_inner()).await;
    let mut c = Conn {
        io: BufReader::new(tls),
    };
    assert!(c.cmd("USER alice").await.starts_with("+OK"));
    assert!(
        c.cmd("PASS secret").await.starts_with("+OK"),
        "{}",
        dovecot.log()
    );
    assert_eq!(c.cmd("STAT").await, format!("+OK 1 {}\r\n", message.len()));
    assert!(c.cmd("RETR 1").await.starts_with("+OK"));
    assert_eq!(c.pop3_multiline().await, message);
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    drop(c);

    // QUIT commits the deletion; Dovecot expunges the file (bounded poll).
    let deadline = std::time::Instant::now() + STEP;
    while !dovecot.maildir_files("alice").unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "DELE not committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = dovecot.dir().to_owned();
    drop(dovecot);
    assert!(!dir.exists());
}

#[tokio::test]
#[ignore = "needs dovecot: run scripts/full-test.sh"]
async fn dovecot_implicit_tls_and_unsupported_mechanism() {
    let dovecot = tokio::task::spawn_blocking(|| {
        Dovecot::builder()
            .user("bob", "pw")
            .mechanisms(&["plain"])
            .start()
            .unwrap()
    })
    .await
    .unwrap();
    let tcp = TcpStream::connect(dovecot.pop3s_addr()).await.unwrap();
    let mut c = Conn {
        io: BufReader::new(tls(dovecot.ca(), tcp).await),
    };
    assert!(c.line().await.starts_with("+OK"));
    // "AHBvYgBwdw==" is base64 of "\0bob\0pw".
    assert!(
        c.cmd("AUTH PLAIN AGJvYgBwdw==").await.starts_with("+OK"),
        "{}",
        dovecot.log()
    );
    drop(c);
    let tcp = TcpStream::connect(dovecot.pop3s_addr()).await.unwrap();
    let mut c = Conn {
        io: BufReader::new(tls(dovecot.ca(), tcp).await),
    };
    let greeting = c.line().await;
    // Without "apop" the greeting carries no timestamp.
    assert!(!greeting.contains('<'), "{greeting}");
    assert!(c.cmd("AUTH CRAM-MD5").await.starts_with("-ERR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs postfix: run scripts/full-test.sh"]
async fn postfix_starttls_auth_plain_delivers_and_refuses_relay() {
    let postfix =
        tokio::task::spawn_blocking(|| Postfix::builder().user("alice", "secret").start().unwrap())
            .await
            .unwrap();

    // Unauthenticated relay to a foreign domain: refused.
    let tcp = TcpStream::connect(postfix.smtp_addr()).await.unwrap();
    let mut c = Conn {
        io: BufReader::new(tcp),
    };
    assert!(c.line().await.starts_with("220 "));
    c.send("EHLO client.test").await;
    let ehlo = c.smtp_reply().await;
    assert!(
        ehlo.iter().any(|l| l.starts_with("250-STARTTLS")),
        "{ehlo:?}"
    );
    assert!(c.cmd("MAIL FROM:<x@client.test>").await.starts_with("250 "));
    let refused = c.cmd("RCPT TO:<victim@foreign.test>").await;
    assert!(refused.starts_with("554 5.7.1 "), "{refused}");
    assert!(refused.contains("Relay access denied"), "{refused}");
    drop(c);

    // STARTTLS, AUTH PLAIN, one message to the virtual user.
    let tcp = TcpStream::connect(postfix.smtp_addr()).await.unwrap();
    let mut c = Conn {
        io: BufReader::new(tcp),
    };
    assert!(c.line().await.starts_with("220 "));
    c.send("EHLO client.test").await;
    c.smtp_reply().await;
    assert!(c.cmd("STARTTLS").await.starts_with("220 "));
    let mut c = Conn {
        io: BufReader::new(tls(postfix.ca(), c.into_inner()).await),
    };
    c.send("EHLO client.test").await;
    let ehlo = c.smtp_reply().await;
    assert!(
        ehlo.iter()
            .any(|l| l.contains("AUTH") && l.contains("PLAIN") && l.contains("CRAM-MD5")),
        "{ehlo:?}"
    );
    // base64("\0alice\0secret")
    let auth = c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==").await;
    assert!(auth.starts_with("235 "), "{auth}\n{}", postfix.log());
    assert!(
        c.cmd("MAIL FROM:<alice@example.test>")
            .await
            .starts_with("250 ")
    );
    assert!(
        c.cmd("RCPT TO:<alice@example.test>")
            .await
            .starts_with("250 ")
    );
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send("Subject: kit\r\nMessage-ID: <kit-1@example.test>\r\n\r\nhello postfix\r\n.")
        .await;
    let queued = c.line().await;
    assert!(queued.starts_with("250 2.0.0 Ok: queued"), "{queued}");
    assert!(c.cmd("QUIT").await.starts_with("221 "));

    let messages = {
        let postfix = &postfix;
        tokio::task::block_in_place(|| {
            postfix.wait_for_messages("alice@example.test", 1, Duration::from_secs(20))
        })
        .unwrap()
    };
    let text = String::from_utf8(messages[0].clone()).unwrap();
    assert!(
        text.starts_with("Return-Path: <alice@example.test>\n"),
        "{text}"
    );
    assert!(
        text.contains("Delivered-To: alice@example.test\n"),
        "{text}"
    );
    // virtual(8) stores LF line endings and Postfix adds the missing Date and From.
    assert!(
        text.contains("\nSubject: kit\nMessage-ID: <kit-1@example.test>\n"),
        "{text}"
    );
    assert!(text.ends_with("\n\nhello postfix\n"), "{text}");
}

#[tokio::test]
#[ignore = "needs postfix: run scripts/full-test.sh"]
async fn postfix_implicit_tls_rejects_wrong_password() {
    let postfix =
        tokio::task::spawn_blocking(|| Postfix::builder().user("carol", "right").start().unwrap())
            .await
            .unwrap();
    let tcp = TcpStream::connect(postfix.smtps_addr()).await.unwrap();
    let mut c = Conn {
        io: BufReader::new(tls(postfix.ca(), tcp).await),
    };
    assert!(c.line().await.starts_with("220 "));
    c.send("EHLO client.test").await;
    c.smtp_reply().await;
    // base64("\0carol\0wrong")
    let reply = c.cmd("AUTH PLAIN AGNhcm9sAHdyb25n").await;
    assert!(reply.starts_with("535 5.7.8 "), "{reply}");
}

#[test]
#[ignore = "needs postfix: run scripts/full-test.sh"]
fn smtp_sink_and_source() {
    let sink = SmtpSink::start(&[]).unwrap();
    let target = format!("127.0.0.1:{}", sink.port());
    let out = smtp_source(
        &[
            "-s",
            "2",
            "-m",
            "20",
            "-l",
            "512",
            "-t",
            "rcpt@example.test",
            &target,
        ],
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(out.success, "{out:?}");
    assert!(out.elapsed < Duration::from_secs(30));
}

#[tokio::test]
#[ignore = "needs dovecot: run scripts/full-test.sh"]
async fn dovecot_default_offers_every_mechanism_and_apop() {
    let dovecot =
        tokio::task::spawn_blocking(|| Dovecot::builder().user("dave", "pw").start().unwrap())
            .await
            .unwrap();
    let tcp = TcpStream::connect(dovecot.pop3_addr()).await.unwrap();
    let mut c = Conn {
        io: BufReader::new(tcp),
    };
    let greeting = c.line().await;
    // The APOP timestamp is a msg-id at the end of the greeting.
    assert!(
        greeting.trim_end().ends_with('>') && greeting.contains('<'),
        "{greeting}"
    );
    assert!(c.cmd("CAPA").await.starts_with("+OK"));
    let capa = String::from_utf8(c.pop3_multiline().await).unwrap();
    let sasl = capa.lines().find(|l| l.starts_with("SASL ")).unwrap();
    let mut mechanisms: Vec<&str> = sasl.split_whitespace().skip(1).collect();
    mechanisms.sort_unstable();
    assert_eq!(
        mechanisms,
        ["CRAM-MD5", "LOGIN", "PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    );
    for cap in ["STLS", "USER", "TOP", "UIDL", "PIPELINING", "RESP-CODES"] {
        assert!(capa.lines().any(|l| l == cap), "{cap} missing in {capa}");
    }
}

#[tokio::test]
#[ignore = "needs postfix: run scripts/full-test.sh"]
async fn postfix_mechanism_list_is_configurable() {
    let postfix = tokio::task::spawn_blocking(|| {
        Postfix::builder()
            .user("erin", "pw")
            .mechanisms(&["PLAIN"])
            .start()
            .unwrap()
    })
    .await
    .unwrap();
    let tcp = TcpStream::connect(postfix.smtps_addr()).await.unwrap();
    let mut c = Conn {
        io: BufReader::new(tls(postfix.ca(), tcp).await),
    };
    assert!(c.line().await.starts_with("220 "));
    c.send("EHLO client.test").await;
    let ehlo = c.smtp_reply().await;
    assert!(ehlo.iter().any(|l| l == "250-AUTH PLAIN\r\n"), "{ehlo:?}");
}

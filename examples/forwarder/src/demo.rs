//! `mailferry demo`: a self-contained loopback run that shows what goes where.
//!
//! ```text
//!  generated batch ──maildir──> testkit POP3 responder ×5 (one mailbox per connector)
//!      └──mailferry poll-once (real config file, spool, SQLite)──> our smtp-server (records)
//!  table: subject -> connector -> disposition -> recipients, then a summary
//! ```
//!
//! Everything lives in a temporary directory and on 127.0.0.1; nothing else is needed. The five
//! connectors show the Send To forms of the seeds: `{FromDomain, ToDomain, DefaultAlias}` with
//! CopyTo, `#KILL#`, `#BAD#`, a plain MailTo, and `{FromDomain}` alone (unmatched mail is held),
//! plus the loop guard and Bcc removal. [`RecordingSink`] is also the destination of the
//! service's own end-to-end and fault tests.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mailferry_smtp_server::net::{CancellationToken, Handler, Server};
use mailferry_smtp_server::proto::{Context as SmtpContext, Envelope, Options, ReceivedHeader};
use mailferry_testkit::pop3_responder::{Pop3Responder, maildir_deliver};
use mailferry_wire::smtp::{EnhancedCode, RcptParams, Reply, ReplyCode};
use mailferry_wire::types::ForwardPath;

use crate::config::Config;
use crate::service::{Context, poll_once};
use crate::state::Status;

/// A message as the recording server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// MAIL FROM (empty for `<>`).
    pub from: String,
    /// The accepted RCPT TO addresses.
    pub to: Vec<String>,
    /// The message data, exactly as received.
    pub data: Vec<u8>,
    /// The SMTP connection it came over, numbered from 1 in order of first message: messages
    /// with the same number shared a connection.
    pub connection: usize,
    /// The channel's security (TLS or plaintext).
    pub security: mailferry_wire::tls::ChannelSecurity,
}

#[derive(Debug, Default)]
struct SinkShared {
    messages: Mutex<Vec<ReceivedMessage>>,
    reject: Mutex<HashMap<String, u16>>,
    fail_data: AtomicUsize,
    connections: AtomicUsize,
    delay_ms: AtomicUsize,
}

/// An SMTP server (our smtp-server, no `Received:` added) that records every message, with
/// switchable faults: refused recipients, temporary failures at the end of data, slow replies.
#[derive(Debug)]
pub struct RecordingSink {
    addr: SocketAddr,
    shared: Arc<SinkShared>,
    token: CancellationToken,
}

impl Drop for RecordingSink {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn reply(code: u16, enhanced: (u8, u16, u16), text: &str) -> Reply {
    // Invariant: callers pass constant codes with matching enhanced classes and constant
    // single-line texts.
    let code = ReplyCode::new(code).expect("constant reply code");
    let enhanced = EnhancedCode::new(enhanced.0, enhanced.1, enhanced.2).ok();
    Reply::new(code, enhanced, [text]).expect("constant reply text")
}

#[derive(Debug)]
struct SinkHandler(Arc<SinkShared>);

impl SinkHandler {
    async fn pause(&self) {
        let ms = self.0.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms as u64)).await;
        }
    }
}

/// Per connection: the message data so far, and the connection's number once it carried one.
#[derive(Debug, Default)]
struct SinkConn {
    data: Vec<u8>,
    number: Option<usize>,
}

impl Handler for SinkHandler {
    type Conn = SinkConn;

    async fn rcpt_to(
        &self,
        _conn: &mut SinkConn,
        _ctx: &SmtpContext,
        to: &ForwardPath,
        _params: &RcptParams,
    ) -> Option<Reply> {
        self.pause().await;
        let code = self
            .0
            .reject
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&to.as_str().to_ascii_lowercase())
            .copied();
        match code {
            Some(550) => Some(reply(550, (5, 1, 1), "No such user")),
            Some(_) => Some(reply(450, (4, 2, 1), "Mailbox busy, try later")),
            None => None,
        }
    }

    async fn data_chunk(&self, conn: &mut SinkConn, chunk: Bytes) {
        conn.data.extend_from_slice(&chunk);
    }

    async fn data_end(
        &self,
        conn: &mut SinkConn,
        ctx: &SmtpContext,
        envelope: Envelope,
    ) -> Option<Reply> {
        self.pause().await;
        let data = std::mem::take(&mut conn.data);
        let connection = *conn
            .number
            .get_or_insert_with(|| self.0.connections.fetch_add(1, Ordering::Relaxed) + 1);
        let fail = self
            .0
            .fail_data
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Some(reply(451, (4, 3, 0), "Temporary failure, try again"));
        }
        self.0
            .messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ReceivedMessage {
                from: envelope.from.as_str().to_owned(),
                to: envelope
                    .recipients
                    .iter()
                    .map(|r| r.to.as_str().to_owned())
                    .collect(),
                data,
                connection,
                security: ctx.security,
            });
        None
    }

    fn data_aborted(
        &self,
        conn: &mut SinkConn,
        _reason: mailferry_smtp_server::proto::AbortReason,
    ) {
        conn.data.clear();
    }
}

impl RecordingSink {
    /// Starts on `127.0.0.1`, on a free port.
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn start() -> std::io::Result<RecordingSink> {
        RecordingSink::start_tls(None).await
    }

    /// Starts on `127.0.0.1`, on a free port, offering STARTTLS with `tls` when given.
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn start_tls(
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<RecordingSink> {
        let mut options = Options::default();
        options.received_header = ReceivedHeader::None;
        options.max_recipients = 1000;
        options.max_bad_recipients = 1000;
        let server = Server::bind("127.0.0.1:0", options, tls).await?;
        let addr = server.local_addr()?;
        let token = server.shutdown_token();
        let shared = Arc::new(SinkShared::default());
        let handler = SinkHandler(Arc::clone(&shared));
        tokio::spawn(async move {
            let _ = server.serve(handler).await;
        });
        Ok(RecordingSink {
            addr,
            shared,
            token,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.shared
            .messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Refuses RCPT TO `address`: with `550 5.1.1` when `permanent`, else `450 4.2.1`.
    pub fn reject(&self, address: &str, permanent: bool) {
        self.shared
            .reject
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                address.to_ascii_lowercase(),
                if permanent { 550 } else { 450 },
            );
    }

    /// Accepts `address` again.
    pub fn accept(&self, address: &str) {
        self.shared
            .reject
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&address.to_ascii_lowercase());
    }

    /// Answers the next `n` ends of data with `451 4.3.0` (nothing recorded).
    pub fn fail_data(&self, n: usize) {
        self.shared.fail_data.store(n, Ordering::Release);
    }

    /// Delays every RCPT and end-of-data reply by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as usize, Ordering::Relaxed);
    }
}

/// The demo's connectors: name, Send To, CopyTo.
const CONNECTORS: &[(&str, &str, &str)] = &[
    (
        "sales",
        "{sales.example, sales.example.net, frontdesk@sales.example.net}",
        "audit@archive.example",
    ),
    (
        "support",
        "{support.example, support.example.net, #KILL#}",
        "",
    ),
    ("ops", "{ops.example, ops.example.net, #BAD#}", ""),
    (
        "news",
        "digest@news.example.net, editor@news.example.net",
        "",
    ),
    ("legal", "{legal.example}", ""),
];

/// One generated message: connector, maildir file name, subject, bytes.
struct Generated {
    connector: &'static str,
    uid: String,
    subject: String,
    bytes: Vec<u8>,
}

/// The batch: ten messages per connector covering matching, non-matching, Cc, Bcc, a loop and a
/// dot-leading body line.
fn generate() -> Vec<Generated> {
    let mut out = Vec::new();
    for (ci, (name, _, _)) in CONNECTORS.iter().enumerate() {
        let domain = format!("{name}.example");
        for i in 0..10 {
            let (to, extra, subject) = match i {
                0..=3 => (
                    format!("user{i}@{domain}"),
                    String::new(),
                    format!("{name} #{i}: for a user of {domain}"),
                ),
                4 => (
                    format!("a@{domain}, b@{domain}"),
                    format!("Cc: c@{domain}\r\n"),
                    format!("{name} #{i}: To two, Cc one"),
                ),
                5 => (
                    "someone@elsewhere.example".into(),
                    format!("Bcc: hidden@{domain}\r\n"),
                    format!("{name} #{i}: only a Bcc matches"),
                ),
                6 | 7 => (
                    "stranger@elsewhere.example".into(),
                    String::new(),
                    format!("{name} #{i}: nobody at {domain}"),
                ),
                8 => (
                    format!("loop@{domain}"),
                    format!("X-Mailferry-Trace: connector={name}; id=0; host=demo\r\n"),
                    format!("{name} #{i}: came back round a loop"),
                ),
                _ => (
                    format!("dots@{domain}"),
                    String::new(),
                    format!("{name} #{i}: body line starting with a dot"),
                ),
            };
            let bytes = format!(
                "Return-Path: <sender{i}@outside.example>\r\n\
                 From: Sender {i} <sender{i}@outside.example>\r\n\
                 To: {to}\r\n{extra}\
                 Subject: {subject}\r\n\
                 Message-ID: <demo.{ci}.{i}@outside.example>\r\n\
                 Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
                 \r\n\
                 Hello from the mailferry demo, message {i} of {name}.\r\n\
                 .a line that starts with a dot\r\n"
            );
            out.push(Generated {
                connector: name,
                uid: format!("1700000000.{ci}{i:02}.demo"),
                subject,
                bytes: bytes.into_bytes(),
            });
        }
    }
    out
}

fn config_text(dir: &std::path::Path, pops: &[(&str, SocketAddr)], sink: SocketAddr) -> String {
    let mut s = format!(
        "hostname = \"demo.mailferry.test\"\n\n\
         [smtp]\nhosts = [\"{sink}\"]\ntls = \"none\"\nhelo = \"demo.mailferry.test\"\n\n\
         [queue]\nspool_dir = \"{}\"\nbadmail_dir = \"{}\"\nretry_interval = \"1s\"\n\
         lifetime = \"1h\"\npostmaster = \"postmaster@demo.mailferry.test\"\n\n\
         [logging]\nlevel = \"warn\"\n",
        dir.join("spool").display(),
        dir.join("badmail").display()
    );
    for ((name, send_to, copy_to), (_, addr)) in CONNECTORS.iter().zip(pops) {
        s.push_str(&format!(
            "\n[[connectors]]\nname = \"{name}\"\nsend_to = \"{send_to}\"\n"
        ));
        if !copy_to.is_empty() {
            s.push_str(&format!("copy_to = \"{copy_to}\"\n"));
        }
        s.push_str(&format!(
            "\n[connectors.pop3]\nhost = \"{addr}\"\ntls = \"none\"\nuser = \"{name}\"\n\
             password = \"demo-password\"\nauth = [\"USER\"]\nallow_insecure_auth = true\n\
             server_copy = \"remove_after_delivered\"\n"
        ));
    }
    s
}

/// Runs the demo; `out` gets the table and the summary. Returns whether everything the state
/// database says was delivered arrived at the recording server.
///
/// # Errors
///
/// Set-up failures (temporary directory, sockets, configuration, queue).
pub async fn run(out: &mut dyn Write) -> Result<bool, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let batch = generate();
    let sink = RecordingSink::start().await?;
    let mut pops = Vec::new();
    let mut responders = Vec::new();
    for (name, _, _) in CONNECTORS {
        let maildir = dir.path().join("mail").join(name);
        for g in batch.iter().filter(|g| g.connector == *name) {
            maildir_deliver(&maildir, &g.uid, &g.bytes)?;
        }
        let pop = Pop3Responder::start(&maildir, name, "demo-password").await?;
        pops.push((*name, pop.addr()));
        responders.push(pop);
    }
    let path = dir.path().join("mailferry.toml");
    std::fs::write(&path, config_text(dir.path(), &pops, sink.addr()))?;
    let config = Config::load(&path).map_err(|e| e.to_string())?;
    let ctx = Context::open(config)?;
    let report = poll_once(&ctx).await?;

    let subjects: HashMap<(&str, &str), &str> = batch
        .iter()
        .map(|g| ((g.connector, g.uid.as_str()), g.subject.as_str()))
        .collect();
    let rows = ctx.with_state(|s| s.list())?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut expected_deliveries = 0;
    writeln!(
        out,
        "mailferry demo: {} messages in {} POP3 mailboxes, forwarded to an SMTP server on {}\n",
        batch.len(),
        CONNECTORS.len(),
        sink.addr()
    )?;
    writeln!(
        out,
        "{:<48} {:<8} {:<10} RECIPIENTS",
        "SUBJECT", "FROM", "DISPOSITION"
    )?;
    let mut lines = Vec::new();
    for row in &rows {
        let recipients = ctx
            .with_state(|s| s.message(&row.id))?
            .map(|(_, r)| r)
            .unwrap_or_default();
        let subject = row
            .uid
            .as_deref()
            .and_then(|u| subjects.get(&(row.connector.as_str(), u)).copied())
            .unwrap_or("(delivery report)");
        let delivered: Vec<&str> = recipients
            .iter()
            .filter(|r| r.state == crate::state::RecipientState::Delivered)
            .map(|r| r.address.as_str())
            .collect();
        expected_deliveries += delivered.len();
        let shown = match row.status {
            Status::Delivered => delivered.join(", "),
            Status::Held => "(held for an operator: no rule matched)".to_owned(),
            Status::BadMail => format!(
                "(BadMail{})",
                if row.decision.as_deref().is_some_and(|d| d.contains("loop")) {
                    ": mail loop"
                } else {
                    ""
                }
            ),
            Status::Killed => "(deleted by #KILL#)".to_owned(),
            other => format!("({other}) {}", delivered.join(", ")),
        };
        *counts.entry(row.status.to_string()).or_default() += 1;
        lines.push(format!(
            "{:<48} {:<8} {:<10} {}",
            subject.chars().take(48).collect::<String>(),
            row.connector,
            row.status.to_string(),
            shown
        ));
    }
    lines.sort();
    for line in &lines {
        writeln!(out, "{line}")?;
    }
    let received = sink.messages();
    let arrived: usize = received.iter().map(|m| m.to.len()).sum();
    let bcc_leaks = received
        .iter()
        .filter(|m| m.data.windows(5).any(|w| w.eq_ignore_ascii_case(b"\nbcc:")))
        .count();
    let deleted: usize = responders.iter().map(Pop3Responder::deleted).sum();
    writeln!(out)?;
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    writeln!(out, "summary: {}", summary.join(", "))?;
    writeln!(
        out,
        "the SMTP server received {} message(s) for {arrived} recipient(s) (the state database \
         says {expected_deliveries}); Bcc headers forwarded: {bcc_leaks}",
        received.len()
    )?;
    writeln!(
        out,
        "server copies deleted (remove after delivered): {deleted} of {}; connectors failed: {}",
        batch.len(),
        report.failed.len()
    )?;
    writeln!(
        out,
        "queue and BadMail were in {} (removed now)",
        dir.path().display()
    )?;
    Ok(arrived == expected_deliveries && bcc_leaks == 0 && report.failed.is_empty())
}

/// `mailferry demo`: exit 0 when the run was consistent, 1 otherwise.
pub fn command(out: &mut dyn Write, err: &mut dyn Write) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "mailferry demo: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(run(out)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            let _ = writeln!(err, "mailferry demo: the deliveries do not add up");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            let _ = writeln!(err, "mailferry demo: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_forwards_every_case_consistently() {
        let mut out = Vec::new();
        let ok = tokio::time::timeout(Duration::from_secs(60), run(&mut out))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(ok, "{text}");
        assert!(text.contains("summary: "), "{text}");
        for word in ["delivered", "killed", "badmail", "held"] {
            assert!(text.contains(word), "{word} missing:\n{text}");
        }
    }
}

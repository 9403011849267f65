//! Test support for the mailferry crates: real mail servers and scripted peers on loopback.
//!
//! Nothing here is published; other crates use it from their `[dev-dependencies]`.
//!
//! * [`TestCa`]: a throw-away CA and a `localhost` / `127.0.0.1` server certificate, as PEM
//!   files (for the servers) and rustls configs (for the tests), ring provider.
//! * [`Dovecot`]: a private Dovecot POP3 server (plaintext + STLS, implicit TLS; USER, APOP,
//!   PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256) with maildirs the test fills.
//! * [`Postfix`]: a private Postfix (STARTTLS, implicit TLS, Cyrus SASL PLAIN / LOGIN /
//!   CRAM-MD5 / NTLM) delivering into maildirs the test reads back; [`SmtpSink`] and
//!   [`smtp_source`] for load.
//! * [`ScriptedServer`], [`ScriptedClient`], [`play`]: a peer that plays a byte-exact
//!   [`Script`] and reports the first deviation, for misbehaving-peer tests.
//!
//! ```text
//!  test ──builder()──▶ Dovecot / Postfix ──spawn──▶ private master (foreground child)
//!    │                    │  temp dir: config, log, maildirs, queue
//!    └── connects to 127.0.0.1:port, verifies with ca().client_config()
//!  drop ──SIGTERM, bounded wait, SIGKILL──▶ master gone; temp dir removed
//! ```
//!
//! The servers need root (they switch users) and the Debian packages listed in
//! `scripts/install-deps.sh`; tests using them carry
//! `#[ignore = "needs dovecot: run scripts/full-test.sh"]` or the `needs postfix` equivalent.
//! Every instance picks its own free ports and directory, so tests may run in parallel
//! processes (nextest). Starting is blocking (seconds); every wait is bounded.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mailferry_testkit::Dovecot;
//! let dovecot = Dovecot::builder().user("alice", "secret").start()?;
//! dovecot.drop_message("alice", b"Subject: test\r\n\r\nHello\r\n")?;
//! let tls = dovecot.ca().client_config()?; // trusts the server's certificate
//! let addr = dovecot.pop3_addr(); // plaintext + STLS; pop3s_addr() for implicit TLS
//! # let _ = (tls, addr);
//! # Ok(()) }
//! ```
//!
//! | Feature | |
//! |---|---|
//! | (none) | everything is always built |
//!
//! RFCs: the scripted peer is protocol-agnostic; the servers implement RFC 1939 / 2449 /
//! 5034 (POP3) and RFC 5321 / 3207 / 4954 (SMTP).

mod certs;
mod dovecot;
mod error;
pub mod pop3_responder;
mod postfix;
mod script;
mod sys;

pub use certs::{TEST_HOST, TestCa};
pub use dovecot::{DOVECOT_MECHANISMS, Dovecot, DovecotBuilder};
pub use error::{Error, Result};
pub use postfix::{
    POSTFIX_MECHANISMS, Postfix, PostfixBuilder, SASL_REALM, SmtpSink, SmtpSourceOutput,
    smtp_source,
};
pub use script::{
    Event, Mismatch, Script, ScriptedClient, ScriptedServer, Step, Transcript, escape, play,
};
pub use sys::{MAILBOX_USER, SystemUser, free_ports, mailbox_user};

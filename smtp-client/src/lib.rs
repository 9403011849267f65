//! mailferry-smtp-client: an SMTP client with a sans-IO core and a tokio + rustls shell —
//! STARTTLS, AUTH through the mailferry-sasl negotiator, PIPELINING, CHUNKING, bodies streamed
//! and dot-stuffed on the way out, and a result for every recipient.
//!
//! It is the output half of a mail forwarder: many messages over one connection, each with its
//! per-recipient report (accepted, transient or permanent failure, with the server's reply), a
//! message going on when at least one recipient was accepted.
//!
//! # The driving loop
//!
//! ```text
//!            ┌──────────── SmtpClient (net, feature "tokio") ─────────────┐
//!  socket ──▶│ read ──handle_input(bytes, now)──▶ ┌──────────────┐         │
//!            │ EOF ──handle_eof()──────────────▶  │ proto::Client│──poll_event()──▶ Event
//!            │ timer ──handle_timeout(now)─────▶  │  (sans-IO)   │──poll_timeout()─▶ one timer
//!            │ TLS up ──handle_tls_established─▶  │              │                  │
//!  socket ◀──│ one write ◀──poll_transmit(&mut BytesMut)─────────┘                  │
//!            └──────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The core ([`proto`]) never touches a socket or the clock; the shell ([`SmtpClient`]) owns
//! the socket, both buffers and the TLS session, reads while it writes, and sets one timer from
//! `poll_timeout`. `TCP_NODELAY` is on, and a pipelined group (MAIL, every RCPT, DATA) or the last
//! body chunk with its terminator leaves in one write: no delayed-ACK stall per message.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use mailferry_sasl::{Credentials, Mechanism};
//! use mailferry_smtp_client::proto::Envelope;
//! use mailferry_smtp_client::{Config, SmtpClient};
//! use mailferry_wire::tls::{TlsClientSettings, TlsMode};
//! use mailferry_wire::types::Domain;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The application picks the crypto provider and the trust roots; the library never does.
//! let settings = TlsClientSettings::system_roots();
//! let provider = Arc::new(rustls::crypto::ring::default_provider());
//! let mut config = Config::new("mail.example.net", Domain::try_from("forwarder.example.org")?);
//! config.tls_mode = TlsMode::StartTlsRequired; // port 25 by default, 465 for Implicit
//! config.tls = Some(settings.client_config(provider)?);
//! config.tls_security = settings.channel_security();
//! config.credentials = Some(Credentials::new("relay").with_password("secret"));
//! config.mechanisms = vec![Mechanism::ScramSha256, Mechanism::CramMd5, Mechanism::Plain];
//!
//! let mut client = SmtpClient::connect(&config).await?;
//! let envelope = Envelope::from_strs("sender@example.org", &["a@example.net", "b@example.net"])?;
//! // Any `AsyncRead` (a spool file, ...): streamed in 64 KiB chunks, never whole in memory.
//! let body: &[u8] = b"Subject: hello\r\n\r\nHi.\r\n";
//! let report = client.send(&envelope, body).await?;
//! for r in &report.recipients {
//!     println!("{}: {:?} ({})", r.to, r.status, r.reply);
//! }
//! client.quit().await?;
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | Feature | Default | What |
//! |---------|---------|------|
//! | `tokio` | yes | [`SmtpClient`], [`Config`], [`Error`]: the tokio + rustls shell |
//! | (none)  |     | [`proto`] alone: the sans-IO core, no tokio, no rustls |
//!
//! # Standards
//!
//! | RFC | Sections | What |
//! |-----|----------|------|
//! | RFC 5321 | §3.1, §3.3, §4.1.1, §4.1.4, §4.2, §4.5.2, §4.5.3.1, §4.5.3.2, App. D | SMTP: greeting, EHLO/HELO, transactions, replies, dot-stuffing, limits, timeouts |
//! | RFC 3207 | §4, §4.2 | STARTTLS; capabilities forgotten after TLS, no byte carried over |
//! | RFC 4954 | §4, §5, §6 | AUTH, initial response within 512 octets, `*` cancel, `AUTH=` |
//! | RFC 2920 | §3 | PIPELINING: MAIL, RCPT, DATA in one group, replies matched in order |
//! | RFC 3030 | §2, §3, §4 | CHUNKING (BDAT, LAST), BINARYMIME |
//! | RFC 1870 | §3-6 | SIZE, checked before sending |
//! | RFC 6152 | §2, §3 | 8BITMIME, BODY= |
//! | RFC 6531 | §3.4 | SMTPUTF8 |
//! | RFC 3461 | §4 | DSN: RET, ENVID, NOTIFY, ORCPT |
//! | RFC 3463 / RFC 2034 | | enhanced status codes in replies and reports |
//! | RFC 8314 | §3 | implicit TLS on port 465 |

#[cfg(feature = "tokio")]
mod net;
pub mod proto;

#[cfg(feature = "tokio")]
pub use net::{AuthFailure, Config, Error, Result, SmtpClient};

//! mailferry-pop3-client: a POP3 client with STLS, SASL authentication, pipelining and
//! streaming retrieval, built as a sans-IO core ([`proto`]) and a tokio + rustls shell
//! (`Pop3Client`, feature `tokio`).
//!
//! The input half of a POP3 → SMTP forwarder: it connects with implicit TLS, STLS (required or
//! wanted) or plaintext, reads the greeting (APOP timestamp), CAPA or the bare `AUTH` listing,
//! logs in with the safest mechanism both sides support (mailferry-sasl's negotiator, falling
//! back and reconnecting as it says), then lists, retrieves (bodies stream out un-stuffed, never
//! whole in memory), deletes and commits with QUIT.
//!
//! # The driving loop
//!
//! ```text
//!            socket bytes ──handle_input(&[u8], now)──┐
//!            end of stream ──handle_eof()─────────────┤
//!            timer fired ──handle_timeout(now)────────┼──> proto::Client ──poll_transmit(&mut BytesMut)──> socket
//!   TLS handshake done ──handle_tls_established(sec)──┤        │          ──poll_timeout()──> one timer
//!   application ──submit(Command) / auth_respond(..)──┘        └─────────poll_event()──> Greeting, BodyChunk,
//!                                                                            Completed{id, result}, ...
//! ```
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # mod example {
//! use std::sync::Arc;
//! use mailferry_pop3_client::{Config, Pop3Client};
//! use mailferry_sasl::Credentials;
//! use mailferry_wire::tls::{ChannelSecurity, TlsMode};
//!
//! // The rustls config is the caller's: mailferry_wire::tls::TlsClientSettings builds one.
//! async fn run(tls_config: Arc<rustls::ClientConfig>) -> Result<(), mailferry_pop3_client::Error> {
//! let mut config = Config::new("pop.example.com", TlsMode::StartTlsRequired,
//!     Credentials::new("alice").with_password("secret"));
//! config.tls = Some((tls_config, ChannelSecurity::TlsVerified));
//! let mut pop = Pop3Client::connect(&config).await?;
//! let stat = pop.stat().await?;
//! for entry in pop.uidl().await? {
//!     let mut spooled: Vec<u8> = Vec::new(); // any tokio AsyncWrite: a file, a pipe...
//!     let octets = pop.retrieve(entry.msg, &mut spooled).await?;
//!     println!("{} ({octets} octets) stored", entry.uid);
//! }
//! # let _ = stat;
//! let outcome = pop.quit().await?; // deletions (none here) are committed only now
//! # let _ = outcome;
//! Ok(())
//! }
//! # }
//! ```
//!
//! # Features
//!
//! | Feature | Default | What |
//! |---------|---------|------|
//! | `tokio` | yes | the shell: `Pop3Client`, `Config`, `Error` (tokio + rustls) |
//!
//! Without features only [`proto`] is built: no tokio, no sockets, no clock.
//!
//! # Standards
//!
//! | RFC | Sections | What |
//! |-----|----------|------|
//! | RFC 1939 | §3-§7, §10 | POP3: states, commands, multi-line responses, APOP |
//! | RFC 2449 | §5, §6.6, §8 | CAPA, PIPELINING, RESP-CODES |
//! | RFC 3206 | §4, §5 | SYS/TEMP, SYS/PERM, AUTH response codes |
//! | RFC 1734 | §2 | AUTH (bare `AUTH` listing for servers without CAPA) |
//! | RFC 5034 | §4 | SASL AUTH with initial response, `+ ` continuations, `*` cancel |
//! | RFC 2595 | §4 | STLS; capabilities re-read after the handshake |
//! | RFC 8314 | §3 | implicit TLS on port 995 |

pub mod proto;

#[cfg(feature = "tokio")]
mod net;

#[cfg(feature = "tokio")]
pub use net::{AuthError, BodyStream, Config, Error, Pop3Client, TlsRequiredError, UpdateOutcome};

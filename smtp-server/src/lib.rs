//! mailferry-smtp-server: an SMTP server session (sans-IO) and a tokio + rustls listener, for
//! building an MTA, a test sink or a gateway.
//!
//! The core, [`proto::Session`], enforces the RFCs and every limit of [`proto::Options`]; the
//! application decides policy (connection, HELO, MAIL, RCPT, the message) by answering
//! [`proto::Event`]s with [`Session::respond`](proto::Session::respond). It answers on its own
//! only where an RFC mandates it: syntax (500/501), sequence (503), limits (452/552/554) and
//! the error budget, timeouts and shutdown (421). [`proto::RelayPolicy`] is a ready-made relay
//! and sender policy for those answers.
//!
//! ```text
//!   socket bytes ──> handle_input(bytes, now) ─┐            ┌─> poll_transmit(&mut out) ──> socket
//!   timer fired ───> handle_timeout(now) ──────┼─> Session ─┼─> poll_timeout() ──> reset timer
//!   TLS done ──────> handle_tls_established() ─┘     ^      └─> poll_event() ──> application
//!                                                    └──── respond(id, Reply) / accept(id) ─┘
//! ```
//!
//! With the `tokio` feature, `net::Server` runs one task per connection over that loop and
//! maps the events onto an async `net::Handler`:
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mailferry_smtp_server::net::{Handler, Server};
//! use mailferry_smtp_server::proto::Options;
//!
//! struct Sink;
//! impl Handler for Sink {
//!     type Conn = ();
//! }
//!
//! let server = Server::bind("127.0.0.1:2525", Options::default(), None).await?;
//! server.serve(Sink).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Driving the core by hand:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use mailferry_smtp_server::proto::{ConnectionInfo, Event, Options, Session, WallClock};
//! use mailferry_wire::tls::ChannelSecurity;
//!
//! let info = ConnectionInfo {
//!     peer: "192.0.2.7".parse().unwrap(),
//!     time: WallClock::utc(1_700_000_000),
//!     security: ChannelSecurity::Plaintext,
//! };
//! let now = Instant::now();
//! let mut session = Session::new(Arc::new(Options::default()), None, info, now);
//! let Some(Event::Connect { id, .. }) = session.poll_event() else { unreachable!() };
//! session.accept(id).unwrap();
//! let mut out = BytesMut::new();
//! session.poll_transmit(&mut out);
//! assert_eq!(&out[..], b"220 localhost ESMTP mailferry\r\n");
//! session.handle_input(b"HELO client.example\r\n", now);
//! let Some(Event::Helo { id, .. }) = session.poll_event() else { unreachable!() };
//! session.accept(id).unwrap();
//! out.clear();
//! session.poll_transmit(&mut out);
//! assert_eq!(&out[..], b"250 2.0.0 localhost Hello client.example\r\n");
//! ```
//!
//! # Features
//!
//! | Feature | Default | Adds |
//! |---------|---------|------|
//! | `tokio` | yes | `net`: the listener (`Server`, `Handler`), TLS via rustls, graceful shutdown |
//!
//! Without features the crate is the sans-IO core only.
//!
//! # Standards
//!
//! | RFC | Sections | What |
//! |-----|----------|------|
//! | RFC 5321 | §3, §4.1, §4.2, §4.4, §4.5.2, §4.5.3, App. D | SMTP, trace fields, limits, dot-stuffing |
//! | RFC 2920 | §3 | PIPELINING (groups, last-in-group commands) |
//! | RFC 1870 | §4-§6 | SIZE |
//! | RFC 6152 | §2 | 8BITMIME |
//! | RFC 6531 | §3.4, §3.5 | SMTPUTF8 |
//! | RFC 2034 / RFC 3463 | §3 | enhanced status codes |
//! | RFC 3207 | §4, §4.2 | STARTTLS, state reset after TLS |
//! | RFC 8314 | §3 | implicit TLS (`Server::bind_implicit_tls`, the submissions port 465) |
//! | RFC 4954 | §4, §6 | AUTH (PLAIN, LOGIN, CRAM-MD5 via mailferry-sasl) |
//! | RFC 3461 | §4 | DSN parameters |
//! | RFC 3030 | §2, §4 | CHUNKING / BDAT |
//! | RFC 3848 | §1 | `with` protocol types in `Received:` |

pub mod proto;

#[cfg(feature = "tokio")]
pub mod net;

/// Internals for the fuzz targets; not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// Commands (and body ends, AUTH lines, the greeting) consumed minus replies sent to them:
    /// 0 whenever no decision is pending, never negative.
    pub fn owed(session: &crate::proto::Session) -> i64 {
        session.owed()
    }
}

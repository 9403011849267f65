//! # mailferry-wire
//!
//! The bytes of SMTP and POP3, without a connection: the foundation every mailferry protocol
//! crate stands on.
//!
//! | module | what it holds |
//! |---|---|
//! | [`framer`] | a bounded CRLF line framer: resumable, never rescans, over-long lines reported once; modes for lines, dot-stuffed bodies and counted runs (BDAT) |
//! | [`dot`] | the streaming dot-stuffing encoder and decoder, and a pre-send body check (8-bit, 1,000-octet lines) |
//! | [`smtp`] | RFC 5321 commands with ESMTP parameters, xtext, replies with multi-line assembly and enhanced status codes, EHLO capabilities |
//! | [`pop3`] | POP3 commands, status lines with RESP-CODES, scan and UIDL listings, CAPA |
//! | [`types`] | validated `Domain`, `LocalPart`, `Mailbox`, `ReversePath`, `ForwardPath`, ESMTP values: CR, LF, NUL and over-limit values cannot be constructed |
//! | [`tls`] | the one TLS vocabulary ([`tls::TlsMode`], default ports, channel security) and rustls configuration helpers |
//! | `net` | (feature `tokio`) the transport the protocol shells share: TCP connect with a deadline, STARTTLS upgrade, implicit TLS |
//! | [`testing`] | split-point invariance helpers for tests |
//!
//! ## How the pieces fit
//!
//! ```text
//!  socket bytes ──> LineFramer ──┬─ Frame::Line ──> smtp::Command / smtp::ReplyAssembler / pop3::*
//!                                └─ Frame::BodyChunk (un-stuffed, Mode::DotBody or Mode::Counted)
//!  message bytes ──> DotEncoder ──> DATA payload ending in CRLF.CRLF, in the caller's BytesMut
//! ```
//!
//! Framing comes before parsing: the framer cuts one complete line under a hard limit, then a
//! parser (nom, in complete mode) reads that line. Nothing buffers a whole message.
//!
//! ```
//! use bytes::BytesMut;
//! use mailferry_wire::framer::{Frame, FramerOptions, LineFramer, Mode};
//! use mailferry_wire::smtp::Command;
//!
//! let mut framer = LineFramer::new(FramerOptions::default());
//! // Input arrives in arbitrary pieces; lines come out whole.
//! framer.push(b"MAIL FROM:<alice@example.org> SIZE=");
//! assert_eq!(framer.next_frame(), Ok(None));
//! framer.push(b"2048\r\nDATA\r\n");
//! let Some(Frame::Line(line)) = framer.next_frame().unwrap() else { unreachable!() };
//! let command = Command::parse(&line).unwrap();
//! let mut wire = BytesMut::new();
//! command.encode(&mut wire);
//! assert_eq!(&wire[..], b"MAIL FROM:<alice@example.org> SIZE=2048\r\n");
//!
//! // After DATA's 354, the same framer reads the dot-stuffed body.
//! let Some(Frame::Line(_data)) = framer.next_frame().unwrap() else { unreachable!() };
//! framer.set_mode(Mode::DotBody);
//! framer.push(b"..leading dot\r\n.\r\nQUIT\r\n");
//! assert_eq!(framer.next_frame(), Ok(Some(Frame::BodyChunk(".leading dot\r\n".into()))));
//! assert_eq!(framer.next_frame(), Ok(Some(Frame::BodyEnd)));
//! assert_eq!(framer.next_frame(), Ok(Some(Frame::Line("QUIT".into()))));
//! ```
//!
//! ## Features
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `tls` | yes | rustls configuration helpers in [`tls`] (system roots, CA file, pinned fingerprint, an explicitly named insecure mode) |
//! | `tokio` | no | `net`: the tokio transport shared by the protocol crates' shells |
//!
//! The library never picks a rustls crypto provider or trust roots on its own: callers pass a
//! provider, and say which roots to trust.
//!
//! ## RFCs
//!
//! RFC 5321 (§2.3.8 lines, §4.1 commands, §4.2 replies, §4.5.2 transparency, §4.5.3 limits),
//! RFC 1870 (SIZE), RFC 6152 (8BITMIME), RFC 3030 (CHUNKING), RFC 3207 (STARTTLS), RFC 4954
//! (AUTH), RFC 3461 (DSN, xtext), RFC 6531 (SMTPUTF8), RFC 3463 and RFC 2034 (enhanced status
//! codes), RFC 2920 (PIPELINING), RFC 1939 (POP3), RFC 2449 (CAPA, RESP-CODES, PIPELINING),
//! RFC 3206 (SYS and AUTH response codes), RFC 2595 (STLS), RFC 5034 (POP3 AUTH), RFC 8314
//! (implicit TLS ports).

pub mod dot;
pub mod framer;
#[cfg(feature = "tokio")]
pub mod net;
pub mod pop3;
pub mod smtp;
pub mod testing;
pub mod tls;
pub mod types;

/// Internals for the fuzz targets; not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use crate::smtp::{Command, CommandError, CommandOptions, Reply, ReplyError, ReplyOptions};

    /// The line-by-line reference reply parser that [`Reply::parse`]'s fast path must agree
    /// with.
    pub fn reply_parse_general(input: &[u8], opts: &ReplyOptions) -> Result<Reply, ReplyError> {
        Reply::parse_general(input, opts)
    }

    /// The command parser without its fast paths, which [`Command::parse_with`] must agree
    /// with on every input.
    pub fn command_parse_general(
        line: &[u8],
        opts: &CommandOptions,
    ) -> Result<Command, CommandError> {
        Command::parse_general(line, opts)
    }
}

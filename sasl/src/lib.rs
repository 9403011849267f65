//! mailferry-sasl: sans-IO SASL mechanisms for SMTP and POP3, and a negotiator that tries the
//! most secure mechanism first and falls back safely.
//!
//! Nothing here touches a socket or a clock: the protocol crates read the server's lines, hand
//! the decoded bytes in, and write what comes out.
//!
//! ```text
//!  capabilities read AFTER TLS ──> ServerOffer ─┐
//!  operator: enabled mechanisms, AuthPolicy ────┼─> Negotiator ─> current() = mechanism m
//!  ChannelSecurity of the connection ───────────┘        ^              │
//!                                                        │      ClientSession::new(m, creds)
//!       report(AttemptOutcome) ─> Decision               │              │
//!         Authenticated | Stop(..) | StopTemporary       │   AUTH m [initial_response()]
//!         NextSameConnection ──────────────────────────┤   334/+ ─> framing::decode_challenge
//!         NextAfterReconnect ─ reconnect, reconnected() ┘        ─> step() ─> encode_response
//!                                                            235/+OK ─> finish()
//! ```
//!
//! # Example
//!
//! ```
//! use mailferry_sasl::framing::{self, FramingOptions};
//! use mailferry_sasl::{
//!     AttemptOutcome, AuthPolicy, ClientOptions, ClientSession, Credentials, Decision,
//!     Mechanism, Negotiator, ServerOffer, SmtpAuthReply,
//! };
//! use mailferry_wire::tls::ChannelSecurity;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `250-AUTH PLAIN CRAM-MD5`, read after STARTTLS on a verified session.
//! let channel = ChannelSecurity::TlsVerified;
//! let offer = ServerOffer::new(channel).sasl(["PLAIN", "CRAM-MD5"]);
//! let enabled = [Mechanism::ScramSha256, Mechanism::CramMd5, Mechanism::Plain];
//! let mut negotiator = Negotiator::new(&offer, &enabled, channel, &AuthPolicy::default())?;
//! assert_eq!(negotiator.plan(), [Mechanism::CramMd5, Mechanism::Plain]);
//!
//! let creds = Credentials::new("tim").with_password("tanstaaftanstaaf");
//! let m = negotiator.current().expect("a non-empty plan");
//! let mut session = ClientSession::new(m, &creds, &ClientOptions::default())?;
//! // C: AUTH CRAM-MD5   (no initial response for CRAM-MD5)
//! assert!(session.initial_response()?.is_none());
//! // S: 334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+
//! let text = b"PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+";
//! let challenge = framing::decode_challenge(text, &FramingOptions::default())?;
//! let line = framing::encode_response(session.step(&challenge)?.expose());
//! // C: dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw
//! assert_eq!(line.expose(), "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
//! // S: 504 5.5.4 (say): move on to PLAIN on the same connection.
//! let reply = SmtpAuthReply { code: 504, enhanced: None };
//! assert_eq!(
//!     negotiator.report(&AttemptOutcome::Smtp(reply)),
//!     Decision::NextSameConnection(Mechanism::Plain)
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! None: the crate is always sans-IO and has no optional parts.
//!
//! # Standards
//!
//! | Spec | Sections | What |
//! |------|----------|------|
//! | RFC 4422 | §3, §5 | SASL framework, mechanism names |
//! | RFC 4954 | §4, §6 | SMTP AUTH framing (`=`, `*`, 12,288-octet lines), reply codes |
//! | RFC 5034 | §4, §6 | POP3 AUTH framing |
//! | RFC 4648 | §4 | base64, strict |
//! | RFC 4616 | §2 | PLAIN |
//! | draft-murchison-sasl-login | §2 | LOGIN |
//! | RFC 2195 | §2 | CRAM-MD5 (client and server) |
//! | RFC 5802 | §3, §5, §7, §9 | SCRAM-SHA-1 (client and server, no channel binding, no SASLprep; an unknown user gets a made-up verifier with a stable salt) |
//! | RFC 7677 | §3, §4 | SCRAM-SHA-256 (client and server) |
//! | RFC 7628 | §3.1, §3.2.2 | OAUTHBEARER (and Google's XOAUTH2) |
//! | MS-NLMP | §2.2.1.2, §3.3.2 | NTLM, NTLMv2 responses only |
//! | RFC 1939 | §7 | APOP digest and timestamp |
//! | RFC 2449 / RFC 3206 | §8 / §4 | POP3 RESP-CODES for the negotiator |
//! | RFC 3463 | §3 | enhanced status codes for the negotiator |

mod apop;
mod client;
mod error;
pub mod framing;
mod mechanism;
mod negotiate;
mod ntlm;
mod scram;
mod scram_server;
mod secret;
mod server;

pub use apop::{ApopTimestamp, MAX_APOP_TIMESTAMP, apop_digest};
pub use client::{ClientOptions, ClientSession, Credentials};
pub use error::{FramingError, NtlmError, SaslError, ScramError};
pub use mechanism::{Mechanism, UnknownMechanism};
pub use negotiate::{
    AttemptOutcome, AuthPolicy, Decision, EnhancedCode, Exclusion, Negotiator, Pop3AuthError,
    ServerOffer, SmtpAuthReply, StaleOffer, StopReason,
};
pub use scram_server::{DEFAULT_SCRAM_ITERATIONS, ScramCredential};
pub use secret::Secret;
pub use server::{
    AuthFailure, Authenticated, CredentialStore, Lookup, ScramLookup, ServerOptions, ServerSession,
    ServerStep, Verdict,
};

/// Internals for the fuzz targets; not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// Parses an NTLM CHALLENGE_MESSAGE; on success returns (offset of the target information
    /// in `msg` and its length, if the server sent any; the server timestamp).
    pub fn ntlm_parse_challenge(
        msg: &[u8],
    ) -> Result<(Option<(usize, usize)>, Option<u64>), crate::NtlmError> {
        let ch = crate::ntlm::parse_challenge(msg)?;
        let info = ch
            .target_info
            .map(|info| (info.as_ptr() as usize - msg.as_ptr() as usize, info.len()));
        Ok((info, ch.timestamp))
    }

    /// Parses a SCRAM server-first-message against `client_nonce`; on success returns (nonce,
    /// salt, iterations).
    pub fn scram_parse_server_first(
        msg: &[u8],
        client_nonce: &str,
        min: u32,
        max: u32,
    ) -> Result<(String, Vec<u8>, u32), crate::ScramError> {
        let sf = crate::scram::parse_server_first(msg, client_nonce, min, max)?;
        Ok((sf.nonce.to_owned(), sf.salt, sf.iterations))
    }
}

//! SMTP grammar: commands, ESMTP parameters, xtext, replies and EHLO capabilities.
//!
//! Parsing works on one complete line without its CRLF, as cut by the line framer; encoding
//! appends to a caller's [`bytes::BytesMut`] with CRLF.
//!
//! ```
//! use bytes::BytesMut;
//! use mailferry_wire::smtp::{Command, Reply, ReplyAssembler};
//!
//! let cmd = Command::parse(b"mail from:<a@example.org> SIZE=1000").unwrap();
//! let mut out = BytesMut::new();
//! cmd.encode(&mut out);
//! assert_eq!(&out[..], b"MAIL FROM:<a@example.org> SIZE=1000\r\n");
//!
//! let mut asm = ReplyAssembler::default();
//! assert!(asm.push_line(b"250-mx.example.org").unwrap().is_none());
//! let reply: Reply = asm.push_line(b"250 PIPELINING").unwrap().unwrap();
//! assert_eq!(reply.code().as_u16(), 250);
//! ```
//!
//! ## Strictness and speed
//!
//! The grammar is checked fully (domain labels, dot-strings, xtext, keyword and value
//! alphabets, base64 padding), and every value that leaves a parser is a validated type from
//! [`crate::types`]. The hot paths (verb dispatch, paths, ESMTP parameters, reply lines) are
//! hand-written byte scans with a 256-entry class table and an 8-bytes-at-a-time control scan;
//! nom 8 (complete mode) parses the AUTH arguments. Parsing allocates once per address or
//! decoded value and once per reply.
//!
//! RFCs: RFC 5321 §4.1 (commands), §4.2 (replies), §4.5.3 (limits); RFC 1870 (SIZE);
//! RFC 6152 (8BITMIME); RFC 3030 (CHUNKING, BINARYMIME); RFC 3207 (STARTTLS); RFC 4954
//! (AUTH); RFC 3461 (DSN, xtext); RFC 6531 (SMTPUTF8); RFC 3463 and RFC 2034 (enhanced
//! status codes); RFC 2920 (PIPELINING).

mod command;
mod ehlo;
mod params;
mod reply;

#[cfg(test)]
mod tests;

pub use command::{Command, CommandError, CommandOptions};
pub use ehlo::{Capabilities, EhloError, EhloExtension};
pub use params::{
    Body, EsmtpParam, MailAuth, MailParams, Notify, Orcpt, ParamError, RcptParams, Ret, XText,
    XtextError,
};
pub use reply::{
    EnhancedCode, EscapedText, Lines, Reply, ReplyAssembler, ReplyCode, ReplyError, ReplyOptions,
};

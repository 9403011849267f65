//! Who receives a forwarded message: the seeds' Send To syntax, recipient scanning and a
//! per-domain relay table.
//!
//! `mailferry-routing` is pure: no IO, no DNS, no clock. The forwarder gives it the operator's
//! Send To and CopyTo fields and each message's header block, and gets back a [`Decision`]: the
//! recipients (each with the rule that produced it), a [`Disposition`] (deliver, `#KILL#`,
//! `#BAD#`, held) and the reasons, printable whole on one log line.
//!
//! ```text
//!  Send To / CopyTo text ──SendTo::parse / CopyTo::parse──> Router::new(.., ScanOptions)
//!  message bytes ──Router::decide──> Scanner (mail-parser: To/Cc/Bcc, Resent-*, envelope header)
//!                                      └──> Decision { recipients, disposition, reasons, strip_bcc }
//!  recipient domain ──RelayTable::lookup──> Route { hosts (host, port, TlsMode, auth) }
//! ```
//!
//! # Example
//!
//! ```
//! use mailferry_routing::{CopyTo, Disposition, Router, ScanOptions, SendTo};
//!
//! let send_to = SendTo::parse("admin@example.org, {domain.com, domain.net, #KILL#}")?;
//! let copy_to = CopyTo::parse("archive@example.org")?;
//! let router = Router::new(send_to, copy_to, ScanOptions::default());
//!
//! let message = b"From: alice@example.net\r\n\
//!                 To: Bob <bob@Domain.COM>, carol@elsewhere.org\r\n\
//!                 Bcc: bob@domain.com\r\n\
//!                 Subject: hi\r\n\r\nbody\r\n";
//! let decision = router.decide(message)?;
//! assert_eq!(decision.disposition, Disposition::Deliver);
//! let to: Vec<String> = decision.recipients.iter().map(|r| r.address.to_string()).collect();
//! assert_eq!(to, ["admin@example.org", "bob@domain.net", "archive@example.org"]);
//! assert!(decision.strip_bcc);
//! // One log line, e.g. "disposition=deliver recipients=[admin@example.org by MailTo entry 1; ...
//! assert!(!decision.to_string().contains('\n'));
//!
//! let forwarded = mailferry_routing::strip_bcc(message, true);
//! assert!(!forwarded.windows(4).any(|w| w == b"Bcc:"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The Send To syntax (from the seeds)
//!
//! ```text
//! MailTo[, MailTo...], {FromDomain, ToDomain [, #KILL# | #BAD# | DefaultAlias(es)] }, ...
//! ```
//!
//! - A plain address (MailTo) always receives the message.
//! - `{FromDomain}` receives mail for FromDomain (`*.domain.com`: its strict subdomains, not
//!   `domain.com` itself); recipients at that domain are forwarded to, everything else is not.
//! - `{FromDomain, ToDomain}` also rewrites the domain to ToDomain, keeping the local part.
//! - A third field says what happens when no group matched any recipient: default alias(es)
//!   (used verbatim), `#KILL#` (delete, counts as delivered) or `#BAD#` (move to BadMail, counts
//!   as delivered); none means the message is held in the queue. The reserved words are
//!   case-insensitive and must stand alone.
//! - CopyTo: addresses that get a copy of every forwarded message, except one equal to the
//!   sender (From: or Return-Path:).
//!
//! The seeds' examples and their resolutions, all tested:
//!
//! | Send To | a message for `joe@domain.com` | a message for nobody at domain.com |
//! |---|---|---|
//! | `{domain.com}` | `joe@domain.com` | held |
//! | `{domain.com, domain.net}` | `joe@domain.net` | held |
//! | `{domain.com, domain.net, user@domain.net}` | `joe@domain.net` | `user@domain.net` |
//! | `{domain.com, domain.com, user@domain.com}` | `joe@domain.com` | `user@domain.com` (the seed's "user@domain.net" is a typo) |
//! | `{domain.com, domain.com, #KILL#}` | `joe@domain.com` | killed |
//! | `{domain.com, domain.com, #BAD#}` | `joe@domain.com` | BadMail |
//!
//! How several groups combine, and every other rule, is in [`decide`]; the grammar and its
//! errors in [`send_to`]; the header scan in [`scan`]; addresses in [`address`]; the relay
//! table in [`relay`].
//!
//! # Features and standards
//!
//! No cargo features. Address lists are parsed by `mail-parser` per RFC 5322 §3.4 (groups,
//! quoted strings, comments) with RFC 2047 encoded words; Resent blocks per RFC 5322 §3.6.6;
//! address length limits per RFC 5321 §4.5.3.1.

pub mod address;
pub mod decide;
pub mod relay;
pub mod scan;
pub mod send_to;

pub use address::{Address, AddressError, Domain, DomainPattern};
pub use decide::{Decision, Disposition, Reason, Routed, Router, RuleRef};
pub use relay::{RelayAuth, RelayError, RelayHost, RelayTable, Route};
pub use scan::{
    EnvelopeHeader, Recipient, RecipientSource, Scan, ScanError, ScanOptions, Scanner, Skipped,
    header_block, strip_bcc,
};
pub use send_to::{CopyTo, DomainRule, Entry, Fallback, SendTo, SendToError, SendToErrorKind};

use std::fmt;

/// Writes `s` with control characters (and the Unicode line and paragraph separators) escaped,
/// so that text from a message can never split or forge a log line.
pub(crate) fn escape(s: &str) -> Escaped<'_> {
    Escaped(s)
}

pub(crate) struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_controls() {
        assert_eq!(
            super::escape("a\r\nb\0c\u{85}d\u{2028}é").to_string(),
            "a\\u{d}\\u{a}b\\u{0}c\\u{85}d\\u{2028}é"
        );
    }
}

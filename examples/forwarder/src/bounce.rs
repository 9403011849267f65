//! Delivery status notifications (RFC 3464) for permanent failures, expiry and delays.
//!
//! ```text
//! multipart/report; report-type=delivery-status          (RFC 6522)
//! ├── text/plain                    what happened, in words
//! ├── message/delivery-status       Reporting-MTA, Arrival-Date; per recipient:
//! │                                 Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code
//! └── text/rfc822-headers           the original header block
//! ```
//!
//! Who receives it ([`bounce_recipient`]) — and how loops are avoided:
//!
//! - the original envelope sender, when there is one;
//! - the postmaster, when the original had the null sender `<>` (it was itself a bounce or an
//!   auto-reply: RFC 5321 §4.5.5 forbids answering it, so only the postmaster is told);
//! - nobody, when the failed message is one of our own notifications (its sender is null and it
//!   carries [`BOUNCE_MARKER`]): a report about a report would loop. The caller logs it.
//!
//! Every notification is sent with the null reverse-path `<>`, so a failure to deliver it can
//! never produce a notification to a real person.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::trace::rfc5322_date;

/// Header our own notifications carry; a failing message with it is never reported on.
pub const BOUNCE_MARKER: &str = "X-Mailferry-Report";

/// Longest original header block copied into the report (bytes); the rest is cut at a line.
pub const MAX_ORIGINAL_HEADERS: usize = 64 * 1024;

/// RFC 3464 §2.3.3 Action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Permanently failed (or expired).
    Failed,
    /// Still being retried.
    Delayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        }
    }
}

/// One recipient in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecipient {
    /// The recipient address.
    pub address: String,
    /// Failed or delayed.
    pub action: Action,
    /// The server's reply (`550 5.1.1 no such user`) or our reason.
    pub diagnostic: String,
    /// The server that answered, if one did.
    pub remote_mta: Option<String>,
    /// Whether it failed because the queue lifetime ran out.
    pub expired: bool,
}

impl ReportRecipient {
    /// The RFC 3463 status: the reply's enhanced code when it has one, `4.4.7` for expiry,
    /// else `5.0.0` / `4.0.0` from the reply code's class (and the action).
    pub fn status(&self) -> String {
        if self.expired {
            return "4.4.7".into();
        }
        let mut words = self.diagnostic.split_whitespace();
        let first = words.next().unwrap_or("");
        // A continuation line of a multi-line reply reads `550-5.7.1 text`.
        let (code, inline) = match first.split_once('-') {
            Some((code, rest)) => (code, Some(rest)),
            None => (first, None),
        };
        if let Some(esc) = inline.or_else(|| words.next()).filter(|w| is_enhanced(w)) {
            return esc.to_owned();
        }
        match code.as_bytes().first() {
            Some(b'5') => "5.0.0".into(),
            Some(b'4') => "4.0.0".into(),
            _ if self.action == Action::Failed => "5.0.0".into(),
            _ => "4.0.0".into(),
        }
    }
}

fn is_enhanced(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Who should receive a report about a message with envelope sender `sender`
/// (`""` = null) whose header block is `headers`; `None`: nobody (see the module docs).
pub fn bounce_recipient(sender: &str, headers: &[u8], postmaster: &str) -> Option<String> {
    if !sender.is_empty() {
        return Some(sender.to_owned());
    }
    let marker = format!("\n{}:", BOUNCE_MARKER.to_ascii_lowercase());
    let lower: Vec<u8> = headers.iter().map(u8::to_ascii_lowercase).collect();
    let ours = lower.starts_with(&marker.as_bytes()[1..])
        || lower.windows(marker.len()).any(|w| w == marker.as_bytes());
    (!ours).then(|| postmaster.to_owned())
}

/// What a report says.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Our host name (Reporting-MTA, From: domain).
    pub reporting_mta: &'a str,
    /// The report's recipient ([`bounce_recipient`]).
    pub to: &'a str,
    /// The failed message's queue id.
    pub id: &'a crate::MessageId,
    /// When the failed message arrived.
    pub arrival: SystemTime,
    /// Now (Date:).
    pub now: SystemTime,
    /// The failed message's header block (copied, bounded by [`MAX_ORIGINAL_HEADERS`]).
    pub original_headers: &'a [u8],
    /// The recipients reported on (at least one).
    pub recipients: &'a [ReportRecipient],
}

/// The complete report message, CRLF line endings, every line at most 998 octets. Send it
/// with MAIL FROM:<> to `report.to`.
pub fn build(report: &Report<'_>) -> Vec<u8> {
    let failed = report.recipients.iter().any(|r| r.action == Action::Failed);
    let boundary = format!("=_mailferry_{}", report.id);
    let host = clean(report.reporting_mta);
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.report@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         {BOUNCE_MARKER}: {id}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n--{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         Content-Description: Notification\r\n\r\n",
        to = clean(report.to),
        subject = if failed {
            "Undelivered Mail Returned to Sender"
        } else {
            "Delayed Mail (still being retried)"
        },
        date = rfc5322_date(report.now),
        id = report.id,
    );
    let _ = write!(
        m,
        "This is the mail system at host {host}.\r\n\r\n{}\r\n\r\n",
        if failed {
            "Your message could not be delivered to one or more recipients. \
             It is attached below (headers only)."
        } else {
            "Your message has not been delivered yet to one or more recipients. \
             Delivery will be retried; you do not need to resend it."
        }
    );
    for r in report.recipients {
        let _ = write!(
            m,
            "<{}>: {}{}\r\n",
            clean(&r.address),
            if r.expired {
                "gave up after the maximum time in queue; last error: "
            } else {
                ""
            },
            wrap_text(&clean(&r.diagnostic))
        );
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         Content-Description: Delivery report\r\n\r\n\
         Reporting-MTA: dns; {host}\r\n\
         X-Mailferry-Queue-ID: {}\r\n\
         Arrival-Date: {}\r\n",
        report.id,
        rfc5322_date(report.arrival)
    );
    for r in report.recipients {
        let _ = write!(
            m,
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {}\r\n",
            clean(&r.address),
            r.action.as_str(),
            r.status()
        );
        if let Some(mta) = &r.remote_mta {
            let _ = write!(m, "Remote-MTA: dns; {}\r\n", clean(mta));
        }
        if !r.diagnostic.is_empty() {
            let _ = write!(
                m,
                "Diagnostic-Code: smtp; {}\r\n",
                fold(&clean(&r.diagnostic))
            );
        }
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         Content-Description: Undelivered message headers\r\n\r\n"
    );
    let mut out = m.into_bytes();
    copy_headers(&mut out, report.original_headers);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Copies the header block (up to the empty line, bounded) with CRLF line endings, splitting
/// any line over 998 octets into folded pieces.
fn copy_headers(out: &mut Vec<u8>, headers: &[u8]) {
    let mut used = 0;
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || used + line.len() > MAX_ORIGINAL_HEADERS {
            break;
        }
        used += line.len() + 2;
        let mut rest = line;
        let mut first = true;
        while !rest.is_empty() {
            let room = if first { 998 } else { 997 };
            let (piece, tail) = rest.split_at(rest.len().min(room));
            if !first {
                out.push(b' ');
            }
            out.extend(
                piece
                    .iter()
                    .map(|&b| if b == b'\r' || b == 0 { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
            rest = tail;
            first = false;
        }
    }
}

/// Peer text made safe for one header or body line: controls and non-ASCII become `?`.
fn clean(s: &str) -> String {
    s.chars()
        .take(2_000)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Folds a long field value at spaces so no line exceeds 78 characters where possible (and
/// never 998).
fn fold(s: &str) -> String {
    let mut out = String::new();
    let mut len = 30;
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let word = &word[..word.len().min(900)];
        if len + word.len() + 1 > 78 && len > 0 {
            out.push_str("\r\n\t");
            len = 1;
        } else if !out.is_empty() {
            out.push(' ');
            len += 1;
        }
        out.push_str(word);
        len += word.len();
    }
    out
}

/// Wraps body text at 78 columns.
fn wrap_text(s: &str) -> String {
    fold(s).replace("\r\n\t", "\r\n    ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn rcpt(address: &str, action: Action, diagnostic: &str, expired: bool) -> ReportRecipient {
        ReportRecipient {
            address: address.into(),
            action,
            diagnostic: diagnostic.into(),
            remote_mta: Some("mx.example.net".into()),
            expired,
        }
    }

    #[test]
    fn status_codes() {
        let cases = [
            ("550 5.1.1 no such user", Action::Failed, false, "5.1.1"),
            ("550-5.7.1 denied", Action::Failed, false, "5.7.1"),
            ("554 transaction failed", Action::Failed, false, "5.0.0"),
            ("451 4.3.0 later", Action::Delayed, false, "4.3.0"),
            ("421 closing", Action::Delayed, false, "4.0.0"),
            ("connection reset", Action::Failed, false, "5.0.0"),
            ("connection reset", Action::Delayed, false, "4.0.0"),
            ("451 4.3.0 later", Action::Failed, true, "4.4.7"),
            ("550 9.9.9 bogus", Action::Failed, false, "5.0.0"),
        ];
        for (diag, action, expired, want) in cases {
            assert_eq!(
                rcpt("a@b.c", action, diag, expired).status(),
                want,
                "{diag}"
            );
        }
    }

    #[test]
    fn who_gets_the_report() {
        let pm = "postmaster@example.org";
        assert_eq!(
            bounce_recipient("alice@example.net", b"Subject: x\r\n\r\n", pm).as_deref(),
            Some("alice@example.net")
        );
        // Null sender: only the postmaster.
        assert_eq!(
            bounce_recipient("", b"Subject: x\r\n\r\n", pm).as_deref(),
            Some(pm)
        );
        // Our own report failing: nobody (no bounce for a bounce).
        assert_eq!(
            bounce_recipient("", b"X-Mailferry-Report: 1\r\n\r\n", pm),
            None
        );
        assert_eq!(
            bounce_recipient("", b"Subject: x\r\nx-mailferry-report: 1\r\n\r\n", pm),
            None
        );
    }

    #[test]
    fn report_parses_back_field_by_field() {
        let id = crate::MessageId::generate(at(1_700_000_000));
        let long = format!("X-Long: {}\r\n", "y".repeat(2_500));
        let original = format!(
            "From: alice@example.net\r\nTo: bob@example.com\r\nSubject: hello\r\n{long}\r\nbody must not be copied\r\n"
        );
        let recipients = [
            rcpt(
                "bob@example.com",
                Action::Failed,
                "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table\r\nInjected: yes",
                false,
            ),
            rcpt(
                "carol@example.com",
                Action::Failed,
                "451 4.3.0 try later",
                true,
            ),
        ];
        let bytes = build(&Report {
            reporting_mta: "relay.example.org",
            to: "alice@example.net",
            id: &id,
            arrival: at(1_700_000_000),
            now: at(1_700_432_000),
            original_headers: original.as_bytes(),
            recipients: &recipients,
        });
        let text = std::str::from_utf8(&bytes).unwrap();
        // CRLF only, no line over 998 octets, no bare CR or LF, body excluded.
        for line in text.split("\r\n") {
            assert!(line.len() <= 998, "{} octets", line.len());
            assert!(!line.contains('\r') && !line.contains('\n'));
        }
        assert!(!text.contains("body must not be copied"));
        assert!(!text.contains("\r\nInjected: yes"));

        let msg = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        assert_eq!(
            msg.to().unwrap().first().unwrap().address(),
            Some("alice@example.net")
        );
        assert_eq!(
            msg.from().unwrap().first().unwrap().address(),
            Some("MAILER-DAEMON@relay.example.org")
        );
        assert_eq!(
            msg.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        let ct = msg.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(msg.parts.len(), 4, "root + 3 parts");
        let types: Vec<String> = msg.parts[1..]
            .iter()
            .map(|p| {
                let ct = p.content_type().unwrap();
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
            })
            .collect();
        assert_eq!(
            types,
            [
                "text/plain",
                "message/delivery-status",
                "text/rfc822-headers"
            ]
        );
        let human = std::str::from_utf8(msg.parts[1].contents()).unwrap();
        assert!(human.contains("<bob@example.com>: 550 5.1.1"));
        assert!(human.contains("<carol@example.com>: gave up after the maximum time"));

        // The delivery-status fields, group by group.
        let ds = std::str::from_utf8(msg.parts[2].contents()).unwrap();
        let unfolded = ds.replace("\r\n\t", " ");
        let groups: Vec<Vec<(&str, &str)>> = unfolded
            .split("\r\n\r\n")
            .filter(|g| !g.trim().is_empty())
            .map(|g| {
                g.split("\r\n")
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once(": ").unwrap();
                        (k, v)
                    })
                    .collect()
            })
            .collect();
        assert_eq!(groups.len(), 3);
        assert_eq!(
            groups[0],
            [
                ("Reporting-MTA", "dns; relay.example.org"),
                ("X-Mailferry-Queue-ID", id.as_str()),
                ("Arrival-Date", "Tue, 14 Nov 2023 22:13:20 +0000"),
            ]
        );
        assert_eq!(
            groups[1],
            [
                ("Final-Recipient", "rfc822; bob@example.com"),
                ("Action", "failed"),
                ("Status", "5.1.1"),
                ("Remote-MTA", "dns; mx.example.net"),
                (
                    "Diagnostic-Code",
                    "smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table??Injected: yes"
                ),
            ]
        );
        assert_eq!(groups[2][1], ("Action", "failed"));
        assert_eq!(groups[2][2], ("Status", "4.4.7"));

        // The original headers, long line folded, nothing else.
        let hdrs = std::str::from_utf8(msg.parts[3].contents()).unwrap();
        assert!(hdrs.starts_with(
            "From: alice@example.net\r\nTo: bob@example.com\r\nSubject: hello\r\nX-Long: "
        ));
        assert_eq!(hdrs.matches('y').count(), 2_500);
    }

    #[test]
    fn delay_notice() {
        let id = crate::MessageId::generate(at(1_700_000_000));
        let bytes = build(&Report {
            reporting_mta: "relay.example.org",
            to: "postmaster@example.org",
            id: &id,
            arrival: at(1_700_000_000),
            now: at(1_700_014_400),
            original_headers: b"Subject: x\n\n",
            recipients: &[rcpt(
                "bob@example.com",
                Action::Delayed,
                "421 4.4.2 timeout",
                false,
            )],
        });
        let msg = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(msg.subject(), Some("Delayed Mail (still being retried)"));
        let ds = std::str::from_utf8(msg.parts[2].contents()).unwrap();
        assert!(ds.contains("Action: delayed\r\nStatus: 4.4.2\r\n"));
        assert_eq!(
            std::str::from_utf8(msg.parts[3].contents())
                .unwrap()
                .trim_end(),
            "Subject: x"
        );
    }
}

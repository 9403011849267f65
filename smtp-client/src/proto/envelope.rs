//! What a transaction sends (the envelope) and what it learns (the delivery report).

use mailferry_wire::smtp::{MailParams, RcptParams, Reply};
use mailferry_wire::types::{AddressError, ForwardPath, ReversePath};

/// One recipient of a transaction: `RCPT TO:<to> [NOTIFY=...] [ORCPT=...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recipient {
    /// The forward path.
    pub to: ForwardPath,
    /// DSN parameters (RFC 3461) and any other RCPT parameter.
    pub params: RcptParams,
}

impl Recipient {
    /// A recipient without parameters.
    pub fn new(to: ForwardPath) -> Self {
        Recipient {
            to,
            params: RcptParams::default(),
        }
    }

    /// A recipient with parameters.
    pub fn with_params(to: ForwardPath, params: RcptParams) -> Self {
        Recipient { to, params }
    }
}

/// The envelope of one message: `MAIL FROM` with its parameters and the `RCPT TO` list.
///
/// Every field is a validated `mailferry-wire` type, so a CR, LF or NUL cannot reach a command
/// line. Parameters the server did not announce are handled by
/// [`Client::start_transaction`](super::Client::start_transaction): `SIZE`, `BODY=7BIT`, the
/// DSN parameters (`RET`, `ENVID`, `NOTIFY`, `ORCPT`) and `AUTH=` are left out when the matching
/// extension is missing, while `BODY=8BITMIME`, `BODY=BINARYMIME` and `SMTPUTF8` are refused
/// locally, since the message would be altered or rejected downstream.
///
/// ```
/// use mailferry_smtp_client::proto::Envelope;
/// use mailferry_wire::smtp::Body;
/// let mut envelope = Envelope::from_strs("sender@example.org", &["a@example.net", "b@example.net"])?;
/// envelope.params.size = Some(1234);
/// envelope.params.body = Some(Body::EightBitMime);
/// assert_eq!(envelope.recipients.len(), 2);
/// // A CR/LF smuggled into an address never makes it into an envelope.
/// assert!(Envelope::from_strs("a@example.org\r\nRCPT TO:<x@y>", &["b@example.net"]).is_err());
/// # Ok::<(), mailferry_wire::types::AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Envelope {
    /// The reverse path (`<>` for bounces).
    pub from: ReversePath,
    /// `MAIL FROM` parameters. `size` is the caller's declared message size (RFC 1870: the
    /// size of the message as transmitted, an estimate is fine); `body` must be
    /// `Some(Body::EightBitMime)` for a body with 8-bit octets.
    pub params: MailParams,
    /// The recipients, in order; reports keep this order.
    pub recipients: Vec<Recipient>,
}

impl Envelope {
    /// An envelope with no parameters and no recipients yet.
    pub fn new(from: ReversePath) -> Self {
        Envelope {
            from,
            params: MailParams::default(),
            recipients: Vec::new(),
        }
    }

    /// Adds a recipient without parameters.
    pub fn recipient(mut self, to: ForwardPath) -> Self {
        self.recipients.push(Recipient::new(to));
        self
    }

    /// Builds an envelope from mailbox strings (`a@example.org`, without brackets; an empty
    /// `from` is the null reverse path `<>`). Every address is validated.
    pub fn from_strs(from: &str, to: &[&str]) -> Result<Envelope, AddressError> {
        let from = if from.is_empty() {
            ReversePath::Null
        } else {
            ReversePath::try_from(format!("<{from}>").as_str())?
        };
        let mut envelope = Envelope::new(from);
        for t in to {
            envelope = envelope.recipient(ForwardPath::try_from(format!("<{t}>").as_str())?);
        }
        Ok(envelope)
    }
}

/// The final status of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecipientStatus {
    /// Accepted at `RCPT` and the message was accepted at the end of data.
    Delivered,
    /// A 4xx somewhere on this recipient's path (MAIL, RCPT, DATA or the final reply): retry
    /// later.
    Transient,
    /// A 5xx on this recipient's path: bounce.
    Permanent,
}

impl RecipientStatus {
    fn of(reply: &Reply) -> RecipientStatus {
        let code = reply.code();
        if code.is_positive() {
            RecipientStatus::Delivered
        } else if code.is_transient() {
            RecipientStatus::Transient
        } else {
            RecipientStatus::Permanent
        }
    }
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecipientResult {
    /// The recipient, as in the envelope.
    pub to: ForwardPath,
    /// The final status.
    pub status: RecipientStatus,
    /// The reply to this recipient's `RCPT`, when one was received (a `MAIL` refused without
    /// pipelining leaves the `RCPT` unsent).
    pub rcpt_reply: Option<Reply>,
    /// The reply that decided `status`: the refused `MAIL`, the refused `RCPT`, the refused
    /// `DATA`/`BDAT`, or the final reply to the message.
    pub reply: Reply,
}

/// The outcome of one transaction, per recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryReport {
    /// The reply to `MAIL FROM`.
    pub mail_reply: Reply,
    /// One entry per envelope recipient, in envelope order.
    pub recipients: Vec<RecipientResult>,
    /// The reply to `DATA` when it was refused, or to the end of data / the last `BDAT` (or
    /// the first refused `BDAT`). `None` when no message content was attempted (`MAIL` refused,
    /// or every recipient refused).
    pub data_reply: Option<Reply>,
}

impl DeliveryReport {
    /// Whether the message was accepted for at least one recipient.
    pub fn is_accepted(&self) -> bool {
        self.recipients
            .iter()
            .any(|r| r.status == RecipientStatus::Delivered)
    }

    /// The recipients the message was accepted for.
    pub fn delivered(&self) -> impl Iterator<Item = &RecipientResult> + '_ {
        self.recipients
            .iter()
            .filter(|r| r.status == RecipientStatus::Delivered)
    }

    /// The recipients to retry later.
    pub fn transient(&self) -> impl Iterator<Item = &RecipientResult> + '_ {
        self.recipients
            .iter()
            .filter(|r| r.status == RecipientStatus::Transient)
    }

    /// The recipients that failed permanently.
    pub fn permanent(&self) -> impl Iterator<Item = &RecipientResult> + '_ {
        self.recipients
            .iter()
            .filter(|r| r.status == RecipientStatus::Permanent)
    }

    /// Builds the report from the replies the transaction collected.
    pub(crate) fn build(
        mail_reply: Reply,
        recipients: &[ForwardPath],
        rcpt_replies: Vec<Option<Reply>>,
        data_reply: Option<Reply>,
    ) -> DeliveryReport {
        let mail_ok = mail_reply.code().is_positive();
        let results = recipients
            .iter()
            .zip(rcpt_replies)
            .map(|(to, rcpt_reply)| {
                let deciding = if !mail_ok {
                    // A pipelined RCPT after a refused MAIL gets "503 need MAIL": the MAIL
                    // reply is the real reason, and it may well be transient.
                    mail_reply.clone()
                } else {
                    match (&rcpt_reply, &data_reply) {
                        (Some(r), _) if !r.code().is_positive() => r.clone(),
                        (Some(_), Some(d)) => d.clone(),
                        // Accepted, but no content was attempted: cannot happen for an
                        // accepted recipient except when the connection failed, which
                        // produces no report; the MAIL reply is the best available.
                        (Some(r), None) => r.clone(),
                        (None, _) => mail_reply.clone(),
                    }
                };
                let mut status = RecipientStatus::of(&deciding);
                if status == RecipientStatus::Delivered && data_reply.is_none() {
                    status = RecipientStatus::Transient;
                }
                RecipientResult {
                    to: to.clone(),
                    status,
                    rcpt_reply,
                    reply: deciding,
                }
            })
            .collect();
        DeliveryReport {
            mail_reply,
            recipients: results,
            data_reply,
        }
    }
}

//! Who receives a forwarded message: the [`Router`] and its [`Decision`].
//!
//! The rules, in the order they are applied (the resolutions of the seeds' ambiguities):
//!
//! 1. **MailTo** entries (plain addresses) always receive the message.
//! 2. Each scanned recipient is looked up among the `{...}` groups: an exact FromDomain
//!    (case-insensitive) wins over a `*.` wildcard, and a longer wildcard over a shorter one.
//!    A match is rewritten FromDomain → ToDomain keeping the local part (see
//!    [`DomainRule::rewrite`]). A recipient that matches no group is never forwarded to.
//! 3. **Only when no group matched any recipient** do the groups' third fields apply, and they
//!    apply together, because every group "decides" for a message none of them claimed:
//!    - the default aliases of every group that has some receive it, verbatim, and any `#KILL#` /
//!      `#BAD#` of other groups is not applied (someone was named to receive such mail);
//!    - otherwise, if any group has no third field, the message is **Held** (that group's operator
//!      asked for unclaimed mail to stay in the queue, which is the least destructive choice);
//!    - otherwise, if any group says `#BAD#`, the message goes to **BadMail** (kept, unlike
//!      `#KILL#`);
//!    - otherwise (every group says `#KILL#`) it is **Killed**.
//!
//!    When some group matched, no reserved word applies: `{a.com}, {b.com, b.com, #KILL#}`
//!    forwards mail for a.com and kills only mail that neither group claims.
//! 4. If steps 1–3 produced at least one recipient, the disposition is **Deliver**, and the
//!    **CopyTo** addresses are added, except any equal (case-insensitively) to a sender (From: or
//!    Return-Path:), which avoids anti-spoofing bounces. A MailTo recipient therefore overrides
//!    `#KILL#`, `#BAD#` and Held: the message is forwarded to it and nobody else.
//! 5. Otherwise the disposition is the one from step 3 (Held when there are no groups at all),
//!    with no recipients: CopyTo is a copy of a forwarded message and does not apply.
//!
//! Recipients are de-duplicated case-insensitively (local part and domain); the first rule that
//! produced an address is the one reported. A delivered message must have its `Bcc:` field
//! removed ([`Decision::strip_bcc`], [`strip_bcc`](crate::strip_bcc)).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::address::{Address, AddressError, Domain, DomainPattern};
use crate::escape;
use crate::scan::{EnvelopeHeader, RecipientSource, Scan, ScanError, ScanOptions, Scanner};
use crate::send_to::{CopyTo, DomainRule, Entry, Fallback, SendTo};

/// What to do with the message as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Disposition {
    /// Forward to [`Decision::recipients`] (never empty).
    Deliver,
    /// `#KILL#`: delete; counts as delivered.
    Killed,
    /// `#BAD#`: move to the BadMail folder; counts as delivered.
    BadMail,
    /// Leave in the queue for an administrator.
    Held,
}

impl Disposition {
    /// Whether the message counts as delivered (Deliver, Killed, BadMail).
    pub fn counts_as_delivered(self) -> bool {
        !matches!(self, Disposition::Held)
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Disposition::Deliver => "deliver",
            Disposition::Killed => "killed",
            Disposition::BadMail => "badmail",
            Disposition::Held => "held",
        })
    }
}

/// Which configuration item produced a recipient. Entry and position numbers are 1-based, as
/// in [`SendToError`](crate::SendToError) messages; `text` is the canonical form of the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleRef {
    /// A plain Send To address.
    MailTo {
        /// The Send To entry (1-based).
        entry: usize,
        /// The entry's text.
        text: Arc<str>,
    },
    /// A `{...}` group that matched a scanned recipient.
    Forward {
        /// The Send To entry (1-based).
        entry: usize,
        /// The entry's text.
        text: Arc<str>,
        /// The recipient as found in the message, before rewriting.
        original: Address,
    },
    /// A group's default alias (no group matched).
    DefaultAlias {
        /// The Send To entry (1-based).
        entry: usize,
        /// The entry's text.
        text: Arc<str>,
    },
    /// A CopyTo address.
    CopyTo {
        /// Position in the CopyTo list (1-based).
        position: usize,
        /// The address's text.
        text: Arc<str>,
    },
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::MailTo { entry, .. } => write!(f, "MailTo entry {entry}"),
            RuleRef::Forward {
                entry,
                text,
                original,
            } => write!(
                f,
                "entry {entry} {} for {}",
                escape(text),
                escape(&original.to_string())
            ),
            RuleRef::DefaultAlias { entry, text } => {
                write!(f, "default alias of entry {entry} {}", escape(text))
            }
            RuleRef::CopyTo { position, .. } => write!(f, "CopyTo {position}"),
        }
    }
}

/// One recipient and the rule that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// Where to forward.
    pub address: Address,
    /// Why.
    pub rule: RuleRef,
}

/// An explanation attached to a [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Where the recipients were read from.
    Source(RecipientSource),
    /// The configured envelope header was absent or held no valid address.
    EnvelopeHeaderMissing(EnvelopeHeader),
    /// A recipient field entry that is not a usable address.
    InvalidRecipient {
        /// The field it was in.
        field: String,
        /// Its text.
        text: String,
        /// Why it was refused.
        error: AddressError,
    },
    /// A recipient no group matched: not forwarded to.
    NotMatched {
        /// The recipient.
        address: Address,
        /// The field it was in.
        field: String,
    },
    /// A match whose rewritten address is not valid (too long): not forwarded to.
    RewriteFailed {
        /// The recipient.
        address: Address,
        /// The Send To entry (1-based).
        entry: usize,
        /// Why the rewritten address was refused.
        error: AddressError,
    },
    /// An address produced a second time, dropped.
    Duplicate {
        /// The dropped address.
        address: Address,
    },
    /// A CopyTo address equal to a sender, dropped.
    CopyToIsSender {
        /// The address.
        address: Address,
        /// Its CopyTo position (1-based).
        position: usize,
    },
    /// The message had groups to match but none matched.
    NoGroupMatched,
    /// The default aliases of these entries were used.
    DefaultAliases {
        /// The entries (1-based).
        entries: Vec<usize>,
    },
    /// These groups have no third field, so unclaimed mail stays in the queue.
    HoldRequested {
        /// The entries (1-based).
        entries: Vec<usize>,
    },
    /// These groups asked for `#BAD#`.
    BadMailRequested {
        /// The entries (1-based).
        entries: Vec<usize>,
    },
    /// These groups asked for `#KILL#`.
    KillRequested {
        /// The entries (1-based).
        entries: Vec<usize>,
    },
    /// Send To routes nothing for this message: no MailTo, no match, no group.
    NoRules,
    /// CopyTo was not applied because the message is not forwarded.
    CopyToNotApplied,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[usize]| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Reason::Source(s) => write!(f, "recipients from {s}"),
            Reason::EnvelopeHeaderMissing(h) => write!(
                f,
                "envelope header {}[{}] absent or empty",
                escape(&h.name),
                h.occurrence
            ),
            Reason::InvalidRecipient { field, text, error } => write!(
                f,
                "invalid {} entry \"{}\": {error}",
                escape(field),
                escape(text)
            ),
            Reason::NotMatched { address, field } => write!(
                f,
                "{} ({}) matches no group",
                escape(&address.to_string()),
                escape(field)
            ),
            Reason::RewriteFailed {
                address,
                entry,
                error,
            } => write!(
                f,
                "{} matched entry {entry} but cannot be rewritten: {error}",
                escape(&address.to_string())
            ),
            Reason::Duplicate { address } => {
                write!(f, "duplicate {} dropped", escape(&address.to_string()))
            }
            Reason::CopyToIsSender { address, position } => write!(
                f,
                "CopyTo {position} {} is the sender, dropped",
                escape(&address.to_string())
            ),
            Reason::NoGroupMatched => f.write_str("no group matched"),
            Reason::DefaultAliases { entries } => {
                write!(f, "default aliases of entries {}", list(entries))
            }
            Reason::HoldRequested { entries } => {
                write!(f, "entries {} hold unclaimed mail", list(entries))
            }
            Reason::BadMailRequested { entries } => write!(f, "#BAD# in entries {}", list(entries)),
            Reason::KillRequested { entries } => write!(f, "#KILL# in entries {}", list(entries)),
            Reason::NoRules => f.write_str("no Send To entry routes this message"),
            Reason::CopyToNotApplied => f.write_str("CopyTo not applied: message not forwarded"),
        }
    }
}

/// The routing decision for one message. `Display` is one line, control characters escaped,
/// fit for a log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Who receives the message, de-duplicated; empty unless the disposition is Deliver.
    pub recipients: Vec<Routed>,
    /// What to do with the message.
    pub disposition: Disposition,
    /// How the decision was reached.
    pub reasons: Vec<Reason>,
    /// Whether the `Bcc:` field must be removed from the forwarded copy (always, when
    /// delivering): Bcc recipients must not learn of each other.
    pub strip_bcc: bool,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "disposition={} recipients=[", self.disposition)?;
        for (i, r) in self.recipients.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} by {}", escape(&r.address.to_string()), r.rule)?;
        }
        write!(f, "] strip_bcc={} reasons=[", self.strip_bcc)?;
        for (i, r) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{r}")?;
        }
        f.write_str("]")
    }
}

/// Send To + CopyTo + scan options, compiled for fast decisions.
///
/// Exact FromDomains sit in a hash map, wildcards in another keyed by their parent domain, so a
/// lookup costs one probe plus one per label of the recipient's domain, whatever the number of
/// rules.
#[derive(Debug, Clone)]
pub struct Router {
    send_to: SendTo,
    copy_to: CopyTo,
    scanner: Scanner,
    entry_text: Vec<Arc<str>>,
    copy_text: Vec<Arc<str>>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    /// 0-based indices of the MailTo entries, so a decision does not walk every group.
    mailto: Vec<usize>,
}

impl Router {
    /// Compiles the rules.
    pub fn new(send_to: SendTo, copy_to: CopyTo, options: ScanOptions) -> Router {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut mailto = Vec::new();
        for (i, e) in send_to.entries().iter().enumerate() {
            if let Entry::MailTo(_) = e {
                mailto.push(i);
            }
            if let Entry::Forward(rule) = e {
                let (map, d) = match rule.from() {
                    DomainPattern::Exact(d) => (&mut exact, d),
                    DomainPattern::Subdomains(d) => (&mut wildcard, d),
                };
                // SendTo::parse refuses duplicate FromDomains; keep the first regardless.
                map.entry(d.to_lowercase_key()).or_insert(i);
            }
        }
        let entry_text = send_to
            .entries()
            .iter()
            .map(|e| Arc::from(e.to_string()))
            .collect();
        let copy_text = copy_to
            .addresses()
            .iter()
            .map(|a| Arc::from(a.to_string()))
            .collect();
        Router {
            send_to,
            copy_to,
            scanner: Scanner::new(options),
            entry_text,
            copy_text,
            exact,
            wildcard,
            mailto,
        }
    }

    /// The Send To rules.
    pub fn send_to(&self) -> &SendTo {
        &self.send_to
    }

    /// The CopyTo list.
    pub fn copy_to(&self) -> &CopyTo {
        &self.copy_to
    }

    /// The header scanner.
    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// The group that routes `domain` and its 0-based entry index: exact match first, then the
    /// longest `*.` parent.
    pub fn rule_for(&self, domain: &Domain) -> Option<(usize, &DomainRule)> {
        let key = domain.to_lowercase_key();
        let index = self.exact.get(&key).copied().or_else(|| {
            key.match_indices('.')
                .find_map(|(i, _)| self.wildcard.get(&key[i + 1..]).copied())
        })?;
        match self.send_to.entries().get(index) {
            Some(Entry::Forward(rule)) => Some((index, rule)),
            _ => None,
        }
    }

    /// Scans `message` (header block or whole message) and decides. A [`ScanError`] means the
    /// headers could not be read within the limits: hold the message.
    pub fn decide(&self, message: &[u8]) -> Result<Decision, ScanError> {
        Ok(self.decide_scan(&self.scanner.scan(message)?))
    }

    /// Decides from an existing scan.
    pub fn decide_scan(&self, scan: &Scan) -> Decision {
        let mut reasons = vec![Reason::Source(scan.source.clone())];
        if scan.envelope_missing
            && let Some(h) = &self.scanner.options().envelope_header
        {
            reasons.push(Reason::EnvelopeHeaderMissing(h.clone()));
        }
        reasons.extend(scan.skipped.iter().map(|s| Reason::InvalidRecipient {
            field: s.field.clone(),
            text: s.text.clone(),
            error: s.error.clone(),
        }));
        let mut out = Recipients::default();

        for &i in &self.mailto {
            if let Some(Entry::MailTo(a)) = self.send_to.entries().get(i) {
                let rule = RuleRef::MailTo {
                    entry: i + 1,
                    text: self.entry_text[i].clone(),
                };
                out.add(a.clone(), rule, &mut reasons);
            }
        }

        let mut matched = false;
        for r in &scan.recipients {
            let Some((i, rule)) = self.rule_for(r.address.domain()) else {
                reasons.push(Reason::NotMatched {
                    address: r.address.clone(),
                    field: r.field.clone(),
                });
                continue;
            };
            match rule.rewrite(&r.address) {
                Ok(a) => {
                    matched = true;
                    let rule = RuleRef::Forward {
                        entry: i + 1,
                        text: self.entry_text[i].clone(),
                        original: r.address.clone(),
                    };
                    out.add(a, rule, &mut reasons);
                }
                Err(error) => reasons.push(Reason::RewriteFailed {
                    address: r.address.clone(),
                    entry: i + 1,
                    error,
                }),
            }
        }

        let mut fallback = Disposition::Held;
        if !matched {
            fallback = self.apply_fallback(&mut out, &mut reasons);
        }

        if out.list.is_empty() {
            if !self.has_groups() {
                reasons.push(Reason::NoRules);
            }
            if !self.copy_to.is_empty() {
                reasons.push(Reason::CopyToNotApplied);
            }
            return Decision {
                recipients: Vec::new(),
                disposition: fallback,
                reasons,
                strip_bcc: false,
            };
        }

        for (i, a) in self.copy_to.addresses().iter().enumerate() {
            if scan.senders.iter().any(|s| s.eq_ignore_case(a)) {
                reasons.push(Reason::CopyToIsSender {
                    address: a.clone(),
                    position: i + 1,
                });
                continue;
            }
            let rule = RuleRef::CopyTo {
                position: i + 1,
                text: self.copy_text[i].clone(),
            };
            out.add(a.clone(), rule, &mut reasons);
        }
        Decision {
            recipients: out.list,
            disposition: Disposition::Deliver,
            reasons,
            strip_bcc: true,
        }
    }

    fn has_groups(&self) -> bool {
        !self.exact.is_empty() || !self.wildcard.is_empty()
    }

    /// Step 3 of the module rules: adds default aliases, or returns the disposition the groups'
    /// third fields ask for.
    fn apply_fallback(&self, out: &mut Recipients, reasons: &mut Vec<Reason>) -> Disposition {
        if !self.has_groups() {
            return Disposition::Held;
        }
        reasons.push(Reason::NoGroupMatched);
        let (mut aliases, mut hold, mut bad, mut kill) = (vec![], vec![], vec![], vec![]);
        for (i, e) in self.send_to.entries().iter().enumerate() {
            let Entry::Forward(rule) = e else { continue };
            match rule.fallback() {
                Fallback::Aliases(_) => aliases.push(i + 1),
                Fallback::Hold => hold.push(i + 1),
                Fallback::BadMail => bad.push(i + 1),
                Fallback::Kill => kill.push(i + 1),
            }
        }
        if !aliases.is_empty() {
            for &n in &aliases {
                if let Some(Entry::Forward(rule)) = self.send_to.entries().get(n - 1)
                    && let Fallback::Aliases(list) = rule.fallback()
                {
                    for a in list {
                        let rule = RuleRef::DefaultAlias {
                            entry: n,
                            text: self.entry_text[n - 1].clone(),
                        };
                        out.add(a.clone(), rule, reasons);
                    }
                }
            }
            reasons.push(Reason::DefaultAliases { entries: aliases });
            return Disposition::Deliver;
        }
        let disposition = if !hold.is_empty() {
            Disposition::Held
        } else if !bad.is_empty() {
            Disposition::BadMail
        } else {
            Disposition::Killed
        };
        if !hold.is_empty() {
            reasons.push(Reason::HoldRequested { entries: hold });
        }
        if !bad.is_empty() {
            reasons.push(Reason::BadMailRequested { entries: bad });
        }
        if !kill.is_empty() {
            reasons.push(Reason::KillRequested { entries: kill });
        }
        disposition
    }
}

#[derive(Default)]
struct Recipients {
    list: Vec<Routed>,
    seen: HashSet<String>,
}

impl Recipients {
    fn add(&mut self, address: Address, rule: RuleRef, reasons: &mut Vec<Reason>) {
        if self.seen.insert(address.dedup_key()) {
            self.list.push(Routed { address, rule });
        } else {
            reasons.push(Reason::Duplicate { address });
        }
    }
}

#[cfg(test)]
mod tests;

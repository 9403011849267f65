//! The seeds' Send To and CopyTo fields.
//!
//! Grammar (white space — space, tab, CR, LF — is allowed around every token):
//!
//! ```text
//! send-to  = [ entry *( "," entry ) ]
//! entry    = address / group
//! group    = "{" from-domain [ "," to-domain [ "," third ] ] "}"
//! third    = "#KILL#" / "#BAD#" / address *( "," address )   ; reserved words case-insensitive
//! from-domain = domain / "*." domain                           ; "*." = strict subdomains
//! to-domain   = domain
//! copy-to  = [ address *( "," address ) ]
//! ```
//!
//! A token is a run of characters other than white space, `,`, `{` and `}`; addresses and domains
//! are then validated by [`Address`] and [`Domain`]. Quoted local parts with spaces or commas can
//! therefore not be written in Send To. A token that starts and ends with `#` is a reserved word:
//! only `#KILL#` and `#BAD#` exist, and they must stand alone as a group's third field.
//!
//! Two groups with the same FromDomain are an error (which one would decide is not obvious to
//! the reader of the configuration), as is an empty entry or field (`a@b.com,,c@d.com`, a trailing
//! comma, `{}`), an unbalanced or nested brace, or a `*.` ToDomain.

use std::fmt;

use crate::address::{Address, AddressError, Domain, DomainPattern};

/// Where a Send To or CopyTo parse failed and what was expected there.
///
/// `Display` gives a one-line message naming the entry, the field, the byte offset, the line and
/// the column, e.g. `entry 2, field 3 (byte 31, line 1, column 32): expected an address ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {entry}{field} (byte {offset}, line {line}, column {column}): {kind}", field = FieldNo(*.field))]
#[non_exhaustive]
pub struct SendToError {
    /// Byte offset into the input (0-based).
    pub offset: usize,
    /// Line (1-based).
    pub line: usize,
    /// Column on that line, in characters (1-based).
    pub column: usize,
    /// Which comma-separated entry (1-based).
    pub entry: usize,
    /// Which field inside a `{...}` group (1-based), if the error is inside one.
    pub field: Option<usize>,
    /// What went wrong.
    pub kind: SendToErrorKind,
}

struct FieldNo(Option<usize>);

impl fmt::Display for FieldNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, ", field {n}"),
            None => Ok(()),
        }
    }
}

/// The kinds of Send To / CopyTo syntax errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendToErrorKind {
    /// Nothing between two commas, or a trailing comma.
    #[error("expected an address or a '{{...}}' group, found {found}")]
    EmptyEntry {
        /// What was found instead (`','` or end of input).
        found: String,
    },
    /// A `{...}` field is empty (`{a.com, , x@y.com}`, `{}`, `{a.com,}`).
    #[error("expected {expected}, found {found}")]
    EmptyField {
        /// What the field should hold.
        expected: &'static str,
        /// What was found instead.
        found: String,
    },
    /// A `{` without its `}`.
    #[error(
        "expected ',' or '}}' to close the group opened at byte {opened_at}, found end of input"
    )]
    UnclosedGroup {
        /// Offset of the `{`.
        opened_at: usize,
    },
    /// A `}` with no open group.
    #[error("unexpected '}}' with no open '{{'")]
    UnexpectedCloseBrace,
    /// A `{` inside a group.
    #[error("expected a field or '}}', found a nested '{{'")]
    NestedGroup,
    /// Two tokens not separated by a comma.
    #[error("expected ',' between entries, found {found:?}")]
    MissingComma {
        /// The token that followed.
        found: String,
    },
    /// `#KILL#` / `#BAD#` followed by more fields.
    #[error("{word} must stand alone as the third field, found a further field")]
    ReservedWordNotAlone {
        /// The reserved word, canonical spelling.
        word: &'static str,
    },
    /// A reserved word anywhere but a group's third field.
    #[error(
        "expected {expected}, found the reserved word {word} (only allowed alone as a group's third field)"
    )]
    ReservedWordMisplaced {
        /// The reserved word as written.
        word: String,
        /// What the position should hold.
        expected: &'static str,
    },
    /// A `#...#` token that is not `#KILL#` or `#BAD#`.
    #[error("expected #KILL#, #BAD# or an address, found unknown reserved word {0:?}")]
    UnknownReservedWord(String),
    /// A FromDomain or ToDomain that is not a valid domain.
    #[error("expected {expected}, found {found:?}: {error}")]
    InvalidDomain {
        /// What the field should hold.
        expected: &'static str,
        /// The token.
        found: String,
        /// Why it was refused.
        error: AddressError,
    },
    /// A ToDomain written as `*.domain`.
    #[error("expected a plain ToDomain, found wildcard {0:?} (only FromDomain may be '*.domain')")]
    WildcardToDomain(String),
    /// An address that is not valid.
    #[error("expected an address (local@domain), found {found:?}: {error}")]
    InvalidAddress {
        /// The token.
        found: String,
        /// Why it was refused.
        error: AddressError,
    },
    /// A second group with the same FromDomain.
    #[error("FromDomain {domain} is already routed by entry {first_entry}")]
    DuplicateFromDomain {
        /// The pattern, as written.
        domain: String,
        /// The entry (1-based) that routes it first.
        first_entry: usize,
    },
    /// A `{` in a CopyTo list.
    #[error("expected an address, found '{{' (CopyTo takes addresses only)")]
    GroupNotAllowed,
}

/// What happens to a message that no group matched (a group's third field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// No third field: the message stays in the queue for an administrator.
    Hold,
    /// `#KILL#`: the message is deleted (and counts as delivered).
    Kill,
    /// `#BAD#`: the message is moved to the BadMail folder (and counts as delivered).
    BadMail,
    /// Default alias(es), used verbatim. Never empty.
    Aliases(Vec<Address>),
}

/// A `{FromDomain, ToDomain [, third]}` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    from: DomainPattern,
    to: Option<Domain>,
    fallback: Fallback,
}

impl DomainRule {
    /// The domain (or `*.` subdomains) this group receives mail for.
    pub fn from(&self) -> &DomainPattern {
        &self.from
    }

    /// The domain matches are rewritten to, if the group has a second field.
    pub fn to(&self) -> Option<&Domain> {
        self.to.as_ref()
    }

    /// What happens when no group matched.
    pub fn fallback(&self) -> &Fallback {
        &self.fallback
    }

    /// The address a matching recipient is forwarded to: the local part kept, the domain replaced
    /// by ToDomain (the whole domain, also for `*.` groups), or unchanged without a ToDomain.
    pub fn rewrite(&self, recipient: &Address) -> Result<Address, AddressError> {
        match &self.to {
            Some(to) => recipient.with_domain(to),
            None => Ok(recipient.clone()),
        }
    }
}

impl fmt::Display for DomainRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}", self.from)?;
        if let Some(to) = &self.to {
            write!(f, ", {to}")?;
        }
        match &self.fallback {
            Fallback::Hold => {}
            Fallback::Kill => f.write_str(", #KILL#")?,
            Fallback::BadMail => f.write_str(", #BAD#")?,
            Fallback::Aliases(list) => {
                for a in list {
                    write!(f, ", {a}")?;
                }
            }
        }
        f.write_str("}")
    }
}

/// One comma-separated Send To entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A plain address: always receives the message.
    MailTo(Address),
    /// A `{...}` domain forwarding group.
    Forward(DomainRule),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::MailTo(a) => write!(f, "{a}"),
            Entry::Forward(rule) => write!(f, "{rule}"),
        }
    }
}

/// A parsed Send To field. `Display` writes the canonical form, which parses back to an equal
/// value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendTo {
    entries: Vec<Entry>,
}

impl SendTo {
    /// Parses a Send To field (see the [module docs](self) for the grammar). Empty or all-blank
    /// input is an empty list.
    pub fn parse(input: &str) -> Result<SendTo, SendToError> {
        let tokens = tokenize(input, true)?;
        let mut entries = Vec::with_capacity(tokens.len());
        let mut seen: Vec<(DomainPattern, usize)> = Vec::new();
        for (i, item) in tokens.into_iter().enumerate() {
            let entry_no = i + 1;
            let err = |offset, field, kind| error(input, offset, entry_no, field, kind);
            match item {
                Item::Token(tok) => {
                    entries.push(Entry::MailTo(
                        address_token(&tok).map_err(|k| err(tok.offset, None, k))?,
                    ));
                }
                Item::Group { fields, .. } => {
                    let rule =
                        group(&fields).map_err(|(f, k)| err(fields[f].offset, Some(f + 1), k))?;
                    if let Some((_, first)) = seen.iter().find(|(p, _)| *p == rule.from) {
                        return Err(err(
                            fields[0].offset,
                            Some(1),
                            SendToErrorKind::DuplicateFromDomain {
                                domain: fields[0].text.to_owned(),
                                first_entry: *first,
                            },
                        ));
                    }
                    seen.push((rule.from.clone(), entry_no));
                    entries.push(Entry::Forward(rule));
                }
            }
        }
        Ok(SendTo { entries })
    }

    /// The entries, in the order written.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl std::str::FromStr for SendTo {
    type Err = SendToError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SendTo::parse(s)
    }
}

impl fmt::Display for SendTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A parsed CopyTo field: addresses that receive a copy of every forwarded message, except the
/// one equal to its sender.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyTo {
    addresses: Vec<Address>,
}

impl CopyTo {
    /// Parses a comma-separated address list. Empty or all-blank input is an empty list.
    pub fn parse(input: &str) -> Result<CopyTo, SendToError> {
        let tokens = tokenize(input, false)?;
        let mut addresses = Vec::with_capacity(tokens.len());
        for (i, item) in tokens.into_iter().enumerate() {
            match item {
                Item::Token(tok) => addresses.push(
                    address_token(&tok).map_err(|k| error(input, tok.offset, i + 1, None, k))?,
                ),
                // tokenize() refuses groups when they are not allowed.
                Item::Group { open, .. } => {
                    return Err(error(
                        input,
                        open,
                        i + 1,
                        None,
                        SendToErrorKind::GroupNotAllowed,
                    ));
                }
            }
        }
        Ok(CopyTo { addresses })
    }

    /// The addresses, in the order written.
    pub fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// Whether there are no addresses.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }
}

impl std::str::FromStr for CopyTo {
    type Err = SendToError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CopyTo::parse(s)
    }
}

impl fmt::Display for CopyTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.addresses.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Token<'a> {
    text: &'a str,
    offset: usize,
}

#[derive(Debug)]
enum Item<'a> {
    Token(Token<'a>),
    Group { open: usize, fields: Vec<Token<'a>> },
}

fn error(
    input: &str,
    offset: usize,
    entry: usize,
    field: Option<usize>,
    kind: SendToErrorKind,
) -> SendToError {
    let before = &input[..offset.min(input.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    SendToError {
        offset,
        line,
        column,
        entry,
        field,
        kind,
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn describe(input: &str, at: usize) -> String {
    match input[at..].chars().next() {
        None => "end of input".to_owned(),
        Some(c) => format!("{c:?}"),
    }
}

/// Splits the input into entries; `groups` says whether `{...}` is allowed (Send To) or not
/// (CopyTo). Only the structure is checked here; tokens are validated by the caller.
fn tokenize(input: &str, groups: bool) -> Result<Vec<Item<'_>>, SendToError> {
    let bytes = input.as_bytes();
    let mut pos = 0;
    let skip = |pos: &mut usize| {
        while *pos < bytes.len() && is_space(bytes[*pos]) {
            *pos += 1;
        }
    };
    // Token bytes are everything but the structural ASCII bytes, so slicing at these positions
    // always falls on UTF-8 character boundaries.
    let token = |pos: &mut usize| -> Token<'_> {
        let start = *pos;
        while *pos < bytes.len() && !is_space(bytes[*pos]) && !b",{}".contains(&bytes[*pos]) {
            *pos += 1;
        }
        Token {
            text: &input[start..*pos],
            offset: start,
        }
    };
    let mut items = Vec::new();
    skip(&mut pos);
    if pos == bytes.len() {
        return Ok(items);
    }
    loop {
        let entry = items.len() + 1;
        skip(&mut pos);
        match bytes.get(pos) {
            None | Some(b',') => {
                let found = describe(input, pos);
                return Err(error(
                    input,
                    pos,
                    entry,
                    None,
                    SendToErrorKind::EmptyEntry { found },
                ));
            }
            Some(b'}') => {
                return Err(error(
                    input,
                    pos,
                    entry,
                    None,
                    SendToErrorKind::UnexpectedCloseBrace,
                ));
            }
            Some(b'{') if !groups => {
                return Err(error(
                    input,
                    pos,
                    entry,
                    None,
                    SendToErrorKind::GroupNotAllowed,
                ));
            }
            Some(b'{') => {
                let open = pos;
                pos += 1;
                let mut fields = Vec::new();
                loop {
                    let field = fields.len() + 1;
                    let expected = match field {
                        1 => "a FromDomain",
                        2 => "a ToDomain",
                        _ => "#KILL#, #BAD# or a default alias",
                    };
                    skip(&mut pos);
                    let err = |pos, kind| error(input, pos, entry, Some(field), kind);
                    match bytes.get(pos) {
                        None => {
                            return Err(err(
                                pos,
                                SendToErrorKind::UnclosedGroup { opened_at: open },
                            ));
                        }
                        Some(b',' | b'}') => {
                            let found = describe(input, pos);
                            return Err(err(pos, SendToErrorKind::EmptyField { expected, found }));
                        }
                        Some(b'{') => return Err(err(pos, SendToErrorKind::NestedGroup)),
                        Some(_) => fields.push(token(&mut pos)),
                    }
                    skip(&mut pos);
                    match bytes.get(pos) {
                        Some(b',') => pos += 1,
                        Some(b'}') => {
                            pos += 1;
                            break;
                        }
                        None => {
                            return Err(err(
                                pos,
                                SendToErrorKind::UnclosedGroup { opened_at: open },
                            ));
                        }
                        Some(b'{') => return Err(err(pos, SendToErrorKind::NestedGroup)),
                        Some(_) => {
                            let found = token(&mut pos.clone()).text.to_owned();
                            return Err(err(pos, SendToErrorKind::MissingComma { found }));
                        }
                    }
                }
                items.push(Item::Group { open, fields });
            }
            Some(_) => items.push(Item::Token(token(&mut pos))),
        }
        skip(&mut pos);
        match bytes.get(pos) {
            None => return Ok(items),
            Some(b',') => pos += 1,
            Some(b'}') => {
                return Err(error(
                    input,
                    pos,
                    entry,
                    None,
                    SendToErrorKind::UnexpectedCloseBrace,
                ));
            }
            Some(b'{') => {
                let found = "{".to_owned();
                return Err(error(
                    input,
                    pos,
                    entry,
                    None,
                    SendToErrorKind::MissingComma { found },
                ));
            }
            Some(_) => {
                let found = token(&mut pos.clone()).text.to_owned();
                return Err(error(
                    input,
                    pos,
                    entry,
                    None,
                    SendToErrorKind::MissingComma { found },
                ));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserved {
    Kill,
    Bad,
}

impl Reserved {
    fn canonical(self) -> &'static str {
        match self {
            Reserved::Kill => "#KILL#",
            Reserved::Bad => "#BAD#",
        }
    }
}

/// `Ok(None)` for a non-reserved token; an error for `#...#` tokens that are not reserved words.
fn reserved(text: &str) -> Result<Option<Reserved>, SendToErrorKind> {
    if text.eq_ignore_ascii_case("#KILL#") {
        Ok(Some(Reserved::Kill))
    } else if text.eq_ignore_ascii_case("#BAD#") {
        Ok(Some(Reserved::Bad))
    } else if text.len() >= 2 && text.starts_with('#') && text.ends_with('#') {
        Err(SendToErrorKind::UnknownReservedWord(text.to_owned()))
    } else {
        Ok(None)
    }
}

fn misplaced(tok: &Token<'_>, expected: &'static str) -> Result<(), SendToErrorKind> {
    match reserved(tok.text)? {
        Some(_) => Err(SendToErrorKind::ReservedWordMisplaced {
            word: tok.text.to_owned(),
            expected,
        }),
        None => Ok(()),
    }
}

fn address_token(tok: &Token<'_>) -> Result<Address, SendToErrorKind> {
    misplaced(tok, "an address")?;
    Address::try_from(tok.text).map_err(|error| SendToErrorKind::InvalidAddress {
        found: tok.text.to_owned(),
        error,
    })
}

/// Interprets a group's fields; on error, returns the 0-based field index and the kind.
fn group(fields: &[Token<'_>]) -> Result<DomainRule, (usize, SendToErrorKind)> {
    // tokenize() never yields an empty group: `{}` is an EmptyField error there.
    let from_tok = &fields[0];
    misplaced(from_tok, "a FromDomain").map_err(|k| (0, k))?;
    let from = DomainPattern::try_from(from_tok.text).map_err(|error| {
        (
            0,
            SendToErrorKind::InvalidDomain {
                expected: "a FromDomain (domain or *.domain)",
                found: from_tok.text.to_owned(),
                error,
            },
        )
    })?;
    let Some(to_tok) = fields.get(1) else {
        return Ok(DomainRule {
            from,
            to: None,
            fallback: Fallback::Hold,
        });
    };
    misplaced(to_tok, "a ToDomain").map_err(|k| (1, k))?;
    if to_tok.text.starts_with("*.") {
        return Err((1, SendToErrorKind::WildcardToDomain(to_tok.text.to_owned())));
    }
    let to = Domain::try_from(to_tok.text).map_err(|error| {
        (
            1,
            SendToErrorKind::InvalidDomain {
                expected: "a ToDomain",
                found: to_tok.text.to_owned(),
                error,
            },
        )
    })?;
    let rest = &fields[2..];
    let fallback = match rest.first() {
        None => Fallback::Hold,
        Some(third) => match reserved(third.text).map_err(|k| (2, k))? {
            Some(word) => {
                if rest.len() > 1 {
                    return Err((
                        3,
                        SendToErrorKind::ReservedWordNotAlone {
                            word: word.canonical(),
                        },
                    ));
                }
                match word {
                    Reserved::Kill => Fallback::Kill,
                    Reserved::Bad => Fallback::BadMail,
                }
            }
            None => {
                let mut aliases = Vec::with_capacity(rest.len());
                for (i, tok) in rest.iter().enumerate() {
                    aliases.push(address_token(tok).map_err(|k| (i + 2, k))?);
                }
                Fallback::Aliases(aliases)
            }
        },
    };
    Ok(DomainRule {
        from,
        to: Some(to),
        fallback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::try_from(s).unwrap()
    }

    fn rule(s: &str) -> DomainRule {
        match SendTo::parse(s).unwrap().entries() {
            [Entry::Forward(r)] => r.clone(),
            other => panic!("not one group: {other:?}"),
        }
    }

    #[test]
    fn seed_examples_parse() {
        let r = rule("{domain.com}");
        assert_eq!(r.from().to_string(), "domain.com");
        assert_eq!(r.to(), None);
        assert_eq!(r.fallback(), &Fallback::Hold);

        let r = rule("{domain.com, domain.net}");
        assert_eq!(r.to().unwrap().as_str(), "domain.net");
        assert_eq!(r.fallback(), &Fallback::Hold);

        let r = rule("{domain.com, domain.net, user@domain.net}");
        assert_eq!(
            r.fallback(),
            &Fallback::Aliases(vec![addr("user@domain.net")])
        );

        // The seed's fourth example: the alias is user@domain.com, used verbatim (erratum).
        let r = rule("{domain.com, domain.com, user@domain.com}");
        assert_eq!(
            r.fallback(),
            &Fallback::Aliases(vec![addr("user@domain.com")])
        );

        assert_eq!(
            rule("{domain.com, domain.com, #KILL#}").fallback(),
            &Fallback::Kill
        );
        assert_eq!(
            rule("{domain.com, domain.com, #BAD#}").fallback(),
            &Fallback::BadMail
        );
        assert_eq!(
            rule("{domain.com, domain.com, #kill#}").fallback(),
            &Fallback::Kill
        );
        assert_eq!(
            rule("{ domain.com ,domain.com,#Bad# }").fallback(),
            &Fallback::BadMail
        );
    }

    #[test]
    fn mixed_list_and_whitespace() {
        let s = SendTo::parse(
            "  admin@x.com ,\n\t{ *.Domain.com , domain.net, a@b.com,c@d.com }, {other.org}\r\n",
        )
        .unwrap();
        assert_eq!(s.entries().len(), 3);
        assert_eq!(s.entries()[0], Entry::MailTo(addr("admin@x.com")));
        let Entry::Forward(r) = &s.entries()[1] else {
            panic!()
        };
        assert_eq!(r.from(), &DomainPattern::try_from("*.domain.com").unwrap());
        assert_eq!(
            r.fallback(),
            &Fallback::Aliases(vec![addr("a@b.com"), addr("c@d.com")])
        );
        assert_eq!(
            s.to_string(),
            "admin@x.com, {*.Domain.com, domain.net, a@b.com, c@d.com}, {other.org}"
        );
        assert_eq!(SendTo::parse(&s.to_string()).unwrap(), s);
        assert!(SendTo::parse("").unwrap().is_empty());
        assert!(SendTo::parse(" \r\n\t").unwrap().is_empty());
    }

    #[test]
    fn rewrite_keeps_local_part() {
        let r = rule("{*.domain.com, domain.net}");
        assert_eq!(
            r.rewrite(&addr("Joe@sales.domain.com"))
                .unwrap()
                .to_string(),
            "Joe@domain.net"
        );
        let r = rule("{*.domain.com}");
        assert_eq!(
            r.rewrite(&addr("Joe@Sales.domain.com"))
                .unwrap()
                .to_string(),
            "Joe@Sales.domain.com"
        );
    }

    /// Offset, entry, field and kind of an error.
    type Where = (usize, usize, Option<usize>, SendToErrorKind);

    fn kind(input: &str) -> Where {
        let e = SendTo::parse(input).unwrap_err();
        (e.offset, e.entry, e.field, e.kind)
    }

    #[test]
    fn errors_name_position_and_expectation() {
        use SendToErrorKind as K;
        let eof = || "end of input".to_owned();
        let cases: Vec<(&str, Where)> = vec![
            ("a@b.com,", (8, 2, None, K::EmptyEntry { found: eof() })),
            (
                ",a@b.com",
                (
                    0,
                    1,
                    None,
                    K::EmptyEntry {
                        found: "','".into(),
                    },
                ),
            ),
            (
                "a@b.com,,c@d.com",
                (
                    8,
                    2,
                    None,
                    K::EmptyEntry {
                        found: "','".into(),
                    },
                ),
            ),
            ("{a.com", (6, 1, Some(1), K::UnclosedGroup { opened_at: 0 })),
            (
                "{a.com, b.com",
                (13, 1, Some(2), K::UnclosedGroup { opened_at: 0 }),
            ),
            (
                "{a.com,",
                (7, 1, Some(2), K::UnclosedGroup { opened_at: 0 }),
            ),
            ("a.com}", (5, 1, None, K::UnexpectedCloseBrace)),
            ("}", (0, 1, None, K::UnexpectedCloseBrace)),
            ("{a.com}}", (7, 1, None, K::UnexpectedCloseBrace)),
            ("{a.com, {b.com}}", (8, 1, Some(2), K::NestedGroup)),
            ("{a.com {b.com}}", (7, 1, Some(1), K::NestedGroup)),
            (
                "{}",
                (
                    1,
                    1,
                    Some(1),
                    K::EmptyField {
                        expected: "a FromDomain",
                        found: "'}'".into(),
                    },
                ),
            ),
            (
                "{a.com, , x@y.com}",
                (
                    8,
                    1,
                    Some(2),
                    K::EmptyField {
                        expected: "a ToDomain",
                        found: "','".into(),
                    },
                ),
            ),
            (
                "{a.com, b.com,}",
                (
                    14,
                    1,
                    Some(3),
                    K::EmptyField {
                        expected: "#KILL#, #BAD# or a default alias",
                        found: "'}'".into(),
                    },
                ),
            ),
            (
                "a@b.com c@d.com",
                (
                    8,
                    1,
                    None,
                    K::MissingComma {
                        found: "c@d.com".into(),
                    },
                ),
            ),
            (
                "{a.com} {b.com}",
                (8, 1, None, K::MissingComma { found: "{".into() }),
            ),
            (
                "{a.com b.com}",
                (
                    7,
                    1,
                    Some(1),
                    K::MissingComma {
                        found: "b.com".into(),
                    },
                ),
            ),
            (
                "{a.com, b.com, #KILL#, x@y.com}",
                (23, 1, Some(4), K::ReservedWordNotAlone { word: "#KILL#" }),
            ),
            (
                "{a.com, b.com, #bad#, #BAD#}",
                (22, 1, Some(4), K::ReservedWordNotAlone { word: "#BAD#" }),
            ),
            (
                "{a.com, b.com, x@y.com, #KILL#}",
                (
                    24,
                    1,
                    Some(4),
                    K::ReservedWordMisplaced {
                        word: "#KILL#".into(),
                        expected: "an address",
                    },
                ),
            ),
            (
                "#KILL#",
                (
                    0,
                    1,
                    None,
                    K::ReservedWordMisplaced {
                        word: "#KILL#".into(),
                        expected: "an address",
                    },
                ),
            ),
            (
                "{#BAD#}",
                (
                    1,
                    1,
                    Some(1),
                    K::ReservedWordMisplaced {
                        word: "#BAD#".into(),
                        expected: "a FromDomain",
                    },
                ),
            ),
            (
                "{a.com, #KILL#}",
                (
                    8,
                    1,
                    Some(2),
                    K::ReservedWordMisplaced {
                        word: "#KILL#".into(),
                        expected: "a ToDomain",
                    },
                ),
            ),
            (
                "{a.com, b.com, #DROP#}",
                (15, 1, Some(3), K::UnknownReservedWord("#DROP#".into())),
            ),
            (
                "{a..com}",
                (
                    1,
                    1,
                    Some(1),
                    K::InvalidDomain {
                        expected: "a FromDomain (domain or *.domain)",
                        found: "a..com".into(),
                        error: AddressError::EmptyLabel,
                    },
                ),
            ),
            (
                "{a.com, b_c!.com}",
                (
                    8,
                    1,
                    Some(2),
                    K::InvalidDomain {
                        expected: "a ToDomain",
                        found: "b_c!.com".into(),
                        error: AddressError::DomainCharacter('!'),
                    },
                ),
            ),
            (
                "{a.com, *.b.com}",
                (8, 1, Some(2), K::WildcardToDomain("*.b.com".into())),
            ),
            (
                "x@y.com, {a.com, b.com, nobody}",
                (
                    24,
                    2,
                    Some(3),
                    K::InvalidAddress {
                        found: "nobody".into(),
                        error: AddressError::MissingAt,
                    },
                ),
            ),
            (
                "user",
                (
                    0,
                    1,
                    None,
                    K::InvalidAddress {
                        found: "user".into(),
                        error: AddressError::MissingAt,
                    },
                ),
            ),
            (
                "{A.com}, {a.COM, b.com}",
                (
                    10,
                    2,
                    Some(1),
                    K::DuplicateFromDomain {
                        domain: "a.COM".into(),
                        first_entry: 1,
                    },
                ),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(kind(input), want, "{input:?}");
        }
        // Exact and wildcard of the same domain are different patterns.
        assert!(SendTo::parse("{a.com}, {*.a.com}").is_ok());
    }

    #[test]
    fn error_display_has_line_and_column() {
        let e = SendTo::parse("x@y.com,\n  {a.com, b.com, #KILL#, z@y.com}").unwrap_err();
        assert_eq!((e.line, e.column, e.entry, e.field), (2, 26, 2, Some(4)));
        assert_eq!(
            e.to_string(),
            "entry 2, field 4 (byte 34, line 2, column 26): #KILL# must stand alone as the third \
             field, found a further field"
        );
        let e = SendTo::parse("é@ü.de zz").unwrap_err();
        assert_eq!((e.offset, e.column), (9, 8));
        assert_eq!(
            e.to_string(),
            "entry 1 (byte 9, line 1, column 8): expected ',' between entries, found \"zz\""
        );
    }

    #[test]
    fn copy_to() {
        let c = CopyTo::parse(" a@b.com ,C@D.com ").unwrap();
        assert_eq!(c.addresses(), &[addr("a@b.com"), addr("C@D.com")]);
        assert_eq!(c.to_string(), "a@b.com, C@D.com");
        assert!(CopyTo::parse("").unwrap().is_empty());
        let e = CopyTo::parse("a@b.com, {a.com}").unwrap_err();
        assert_eq!(
            (e.offset, e.entry, e.kind),
            (9, 2, SendToErrorKind::GroupNotAllowed)
        );
        let e = CopyTo::parse("a@b.com,").unwrap_err();
        assert_eq!(
            e.kind,
            SendToErrorKind::EmptyEntry {
                found: "end of input".into()
            }
        );
        let e = CopyTo::parse("#BAD#").unwrap_err();
        assert_eq!(
            e.kind,
            SendToErrorKind::ReservedWordMisplaced {
                word: "#BAD#".into(),
                expected: "an address"
            }
        );
    }
}

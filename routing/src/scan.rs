//! Reading a message's recipients and senders from its header block.
//!
//! Address lists are parsed by [`mail_parser`] (RFC 5322 §3.4 groups, quoted strings, comments,
//! RFC 2047 encoded words, folded lines), never by hand; this module only decides which fields
//! count and bounds the work:
//!
//! 1. The header block is cut at the first empty line ([`header_block`]); a block longer than
//!    [`ScanOptions::max_header_bytes`] is refused with [`ScanError::HeaderTooLarge`] rather than
//!    routed on a partial view.
//! 2. If [`ScanOptions::envelope_header`] is set and that occurrence of the field is present with
//!    at least one valid address, its addresses are the recipients and nothing else is read: an
//!    envelope header written by the receiving server is the only reliable record of Bcc and
//!    mailing-list recipients.
//! 3. Otherwise, if the most recent Resent block (the topmost run of consecutive `Resent-*`
//!    fields; RFC 5322 §3.6.6 says each re-sending prepends one) holds a Resent-To, Resent-Cc or
//!    Resent-Bcc field, those fields are the recipients.
//! 4. Otherwise every To, Cc and Bcc field is read ("all of the to, cc and bcc fields are
//!    scanned").
//!
//! Senders (for the CopyTo exception) are the From and Return-Path addresses.
//!
//! mail-parser 0.11 cannot represent an addr-spec with a quoted local part
//! (`"john doe"@example.com` comes back as the display name `john doe` and the address
//! `@example.com`). The scan restores such an address only when the quoted form
//! `"john doe"@example.com` appears verbatim in that field's raw text; otherwise the entry is
//! reported as skipped.

use std::borrow::Cow;
use std::fmt;

use mail_parser::{HeaderName, HeaderValue, MessageParser};

use crate::address::{Address, AddressError};

/// Which header field, and which occurrence of it, carries the envelope recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvelopeHeader {
    /// The field name, e.g. `Delivered-To`, `X-Original-To`, `X-Envelope-To`, `Envelope-To`
    /// (matched case-insensitively).
    pub name: String,
    /// Which occurrence to use, counted from the top of the header block: 0 is the first
    /// (topmost, i.e. added last, by the server nearest to the mailbox).
    pub occurrence: usize,
}

impl EnvelopeHeader {
    /// The first (topmost) occurrence of `name`.
    pub fn new(name: impl Into<String>) -> EnvelopeHeader {
        EnvelopeHeader {
            name: name.into(),
            occurrence: 0,
        }
    }

    /// The `occurrence`-th field named `name` (0 = topmost).
    pub fn nth(name: impl Into<String>, occurrence: usize) -> EnvelopeHeader {
        EnvelopeHeader {
            name: name.into(),
            occurrence,
        }
    }
}

/// Limits and sources for the header scan.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Longest header block read, in bytes, including the terminating empty line. Default
    /// 102,400 (Postfix's `header_size_limit`); RFC 5322 sets no limit.
    pub max_header_bytes: usize,
    /// Most address entries (valid or not) read from the recipient fields. Default 1,000; RFC 5322
    /// sets no limit (RFC 5321 §4.5.3.1.8 only requires servers to accept 100 RCPTs).
    pub max_addresses: usize,
    /// The envelope header that, when present, replaces the To/Cc/Bcc scan. Default: none.
    pub envelope_header: Option<EnvelopeHeader>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_header_bytes: 102_400,
            max_addresses: 1_000,
            envelope_header: None,
        }
    }
}

/// Why a message could not be scanned. The forwarder should hold such a message: routing on a
/// partial view could forward to the wrong people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The header block is longer than [`ScanOptions::max_header_bytes`].
    #[error("header block longer than {limit} bytes")]
    HeaderTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// More recipient entries than [`ScanOptions::max_addresses`].
    #[error("more than {limit} recipient addresses")]
    TooManyAddresses {
        /// The configured limit.
        limit: usize,
    },
}

/// Where a scan found its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecipientSource {
    /// The configured envelope header.
    Envelope(EnvelopeHeader),
    /// The most recent Resent block's Resent-To/Cc/Bcc.
    Resent,
    /// To, Cc and Bcc.
    Headers,
}

impl fmt::Display for RecipientSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecipientSource::Envelope(h) => {
                write!(
                    f,
                    "envelope header {}[{}]",
                    crate::escape(&h.name),
                    h.occurrence
                )
            }
            RecipientSource::Resent => f.write_str("Resent-To/Cc/Bcc"),
            RecipientSource::Headers => f.write_str("To/Cc/Bcc"),
        }
    }
}

/// A recipient address and the field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address.
    pub address: Address,
    /// The field name as written (`To`, `resent-cc`, `Delivered-To`, ...).
    pub field: String,
}

/// An entry of a recipient field that is not a usable address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The field name as written.
    pub field: String,
    /// The address text mail-parser produced (may be empty).
    pub text: String,
    /// Why it was refused.
    pub error: AddressError,
}

/// The result of scanning one message's header block.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scan {
    /// Recipients in header order (duplicates kept; the decision removes them).
    pub recipients: Vec<Recipient>,
    /// From and Return-Path addresses.
    pub senders: Vec<Address>,
    /// Where the recipients came from.
    pub source: RecipientSource,
    /// Entries of the recipient fields that were not valid addresses, including those of an
    /// envelope header that was present but unusable.
    pub skipped: Vec<Skipped>,
    /// Whether the configured envelope header was absent (or held no valid address), so that the
    /// headers were scanned instead. `false` when none is configured.
    pub envelope_missing: bool,
}

/// Reads recipients from header blocks. Build once and reuse: it holds mail-parser's field
/// table.
#[derive(Debug, Clone)]
pub struct Scanner {
    parser: MessageParser,
    envelope_name: Option<HeaderName<'static>>,
    options: ScanOptions,
}

impl Scanner {
    /// A scanner with these options.
    pub fn new(options: ScanOptions) -> Scanner {
        let mut parser = MessageParser::new()
            .default_header_ignore()
            .header_address(HeaderName::To)
            .header_address(HeaderName::Cc)
            .header_address(HeaderName::Bcc)
            .header_address(HeaderName::ResentTo)
            .header_address(HeaderName::ResentCc)
            .header_address(HeaderName::ResentBcc)
            .header_address(HeaderName::From)
            .header_address(HeaderName::ReturnPath);
        let envelope_name = options
            .envelope_header
            .as_ref()
            .and_then(|h| HeaderName::parse(h.name.clone()));
        if let Some(name) = &envelope_name {
            parser = parser.header_address(name.clone());
        }
        Scanner {
            parser,
            envelope_name,
            options,
        }
    }

    /// The options this scanner was built with.
    pub fn options(&self) -> &ScanOptions {
        &self.options
    }

    /// Scans `message` (a header block, or a whole message: reading stops at the first empty
    /// line).
    pub fn scan(&self, message: &[u8]) -> Result<Scan, ScanError> {
        let block = header_block(message, self.options.max_header_bytes)?;
        // mail-parser only keeps a field that ends in a line break; a header-only input may lack
        // the last one.
        let owned;
        let block = if block.ends_with(b"\n") {
            block
        } else {
            owned = [block, b"\r\n"].concat();
            &owned[..]
        };
        let mut scan = Scan {
            recipients: Vec::new(),
            senders: Vec::new(),
            source: RecipientSource::Headers,
            skipped: Vec::new(),
            envelope_missing: false,
        };
        let Some(parsed) = self.parser.parse_headers(block) else {
            scan.envelope_missing = self.options.envelope_header.is_some();
            return Ok(scan);
        };
        let headers = parsed.parts.first().map_or(&[][..], |p| &p.headers[..]);
        let mut budget = self.options.max_addresses;

        if let (Some(name), Some(conf)) = (&self.envelope_name, &self.options.envelope_header) {
            let found = headers
                .iter()
                .filter(|h| &h.name == name)
                .nth(conf.occurrence);
            if let Some(h) = found {
                collect(
                    block,
                    h,
                    &mut scan.recipients,
                    &mut scan.skipped,
                    &mut budget,
                )
                .map_err(|()| self.too_many())?;
            }
            if !scan.recipients.is_empty() {
                scan.source = RecipientSource::Envelope(conf.clone());
                return Ok(self.with_senders(block, headers, scan));
            }
            scan.envelope_missing = true;
        } else if self.options.envelope_header.is_some() {
            // A name mail-parser cannot represent (characters outside [A-Za-z0-9_-]) is never
            // present.
            scan.envelope_missing = true;
        }

        let resent_start = headers.iter().position(|h| is_resent(&h.name));
        let resent: Vec<_> = resent_start
            .map(|start| {
                headers[start..]
                    .iter()
                    .take_while(|h| is_resent(&h.name))
                    .filter(|h| {
                        matches!(
                            h.name,
                            HeaderName::ResentTo | HeaderName::ResentCc | HeaderName::ResentBcc
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if resent.is_empty() {
            for h in headers
                .iter()
                .filter(|h| matches!(h.name, HeaderName::To | HeaderName::Cc | HeaderName::Bcc))
            {
                collect(
                    block,
                    h,
                    &mut scan.recipients,
                    &mut scan.skipped,
                    &mut budget,
                )
                .map_err(|()| self.too_many())?;
            }
        } else {
            scan.source = RecipientSource::Resent;
            for h in resent {
                collect(
                    block,
                    h,
                    &mut scan.recipients,
                    &mut scan.skipped,
                    &mut budget,
                )
                .map_err(|()| self.too_many())?;
            }
        }
        Ok(self.with_senders(block, headers, scan))
    }

    fn too_many(&self) -> ScanError {
        ScanError::TooManyAddresses {
            limit: self.options.max_addresses,
        }
    }

    fn with_senders(
        &self,
        block: &[u8],
        headers: &[mail_parser::Header<'_>],
        mut scan: Scan,
    ) -> Scan {
        let mut ignored = Vec::new();
        // Senders only ever remove CopyTo addresses, so a bound is all they need: stop quietly.
        let mut budget = self.options.max_addresses;
        let mut senders = Vec::new();
        for h in headers
            .iter()
            .filter(|h| matches!(h.name, HeaderName::From | HeaderName::ReturnPath))
        {
            if collect(block, h, &mut senders, &mut ignored, &mut budget).is_err() {
                break;
            }
        }
        scan.senders = senders.into_iter().map(|r| r.address).collect();
        scan
    }
}

fn is_resent(name: &HeaderName<'_>) -> bool {
    match name {
        HeaderName::ResentTo
        | HeaderName::ResentCc
        | HeaderName::ResentBcc
        | HeaderName::ResentFrom
        | HeaderName::ResentSender
        | HeaderName::ResentDate
        | HeaderName::ResentMessageId => true,
        HeaderName::Other(n) => n
            .as_bytes()
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"resent-")),
        _ => false,
    }
}

/// Appends one field's addresses; `Err(())` once more than `budget` entries were seen.
fn collect(
    block: &[u8],
    header: &mail_parser::Header<'_>,
    out: &mut Vec<Recipient>,
    skipped: &mut Vec<Skipped>,
    budget: &mut usize,
) -> Result<(), ()> {
    let HeaderValue::Address(list) = &header.value else {
        return Ok(());
    };
    let field = field_name(block, header);
    let raw = block
        .get(header.offset_start as usize..header.offset_end as usize)
        .unwrap_or_default();
    for addr in list.iter() {
        *budget = budget.checked_sub(1).ok_or(())?;
        let text = addr.address.as_deref().unwrap_or_default();
        let result = match Address::try_from(text) {
            Err(AddressError::EmptyLocalPart) => recover_quoted(raw, addr.name.as_deref(), text),
            other => other,
        };
        match result {
            Ok(address) => out.push(Recipient {
                address,
                field: field.clone(),
            }),
            Err(error) => skipped.push(Skipped {
                field: field.clone(),
                text: text.to_owned(),
                error,
            }),
        }
    }
    Ok(())
}

/// Restores `"local part"@domain`, which mail-parser splits into a display name and `@domain`,
/// when exactly that quoted form appears in the field's raw text.
fn recover_quoted(raw: &[u8], name: Option<&str>, text: &str) -> Result<Address, AddressError> {
    let (Some(name), Some(domain)) = (name, text.strip_prefix('@')) else {
        return Address::try_from(text);
    };
    let mut candidate = String::with_capacity(name.len() + domain.len() + 4);
    candidate.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            candidate.push('\\');
        }
        candidate.push(c);
    }
    candidate.push_str("\"@");
    candidate.push_str(domain);
    let present = raw
        .windows(candidate.len())
        .any(|w| w == candidate.as_bytes());
    if present {
        Address::try_from(candidate.as_str())
    } else {
        Address::try_from(text)
    }
}

/// The field name as written in the message (mail-parser's canonical name for known fields
/// would lose the original spelling).
fn field_name(block: &[u8], header: &mail_parser::Header<'_>) -> String {
    let start = header.offset_field as usize;
    let line = block.get(start..).unwrap_or_default();
    let end = line
        .iter()
        .position(|&b| b == b':' || b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let name = String::from_utf8_lossy(&line[..end]);
    let name = name.trim();
    if name.is_empty() {
        header.name.as_str().to_owned()
    } else {
        name.to_owned()
    }
}

/// The header block of `message`: everything up to and including the first empty line (CRLF or
/// bare LF), or the whole input if it has none. Refused when longer than `max_bytes`.
pub fn header_block(message: &[u8], max_bytes: usize) -> Result<&[u8], ScanError> {
    let end = header_end(message);
    if end > max_bytes {
        return Err(ScanError::HeaderTooLarge { limit: max_bytes });
    }
    Ok(&message[..end])
}

/// Offset just past the empty line that ends the header block, or the input length.
fn header_end(message: &[u8]) -> usize {
    let mut line_start = 0;
    while line_start < message.len() {
        let rest = &message[line_start..];
        if rest.starts_with(b"\r\n") {
            return line_start + 2;
        }
        if rest.starts_with(b"\n") {
            return line_start + 1;
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => line_start += i + 1,
            None => return message.len(),
        }
    }
    message.len()
}

/// Removes every `Bcc:` field (and, with `also_resent_bcc`, every `Resent-Bcc:` field), with its
/// continuation lines, from the header block of `message`. Every other byte, the body included,
/// is kept as it was. Borrows when there is nothing to remove.
///
/// A field name matches case-insensitively and may be followed by white space before the colon
/// (RFC 5322 §4.5.5 obsolete syntax).
pub fn strip_bcc(message: &[u8], also_resent_bcc: bool) -> Cow<'_, [u8]> {
    let end = header_end(message);
    let mut out: Option<Vec<u8>> = None;
    let mut line_start = 0;
    let mut dropping = false;
    while line_start < end {
        let line_end = message[line_start..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |i| line_start + i + 1);
        let line = &message[line_start..line_end];
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            dropping = is_bcc_field(line, also_resent_bcc);
            if dropping && out.is_none() {
                out = Some(message[..line_start].to_vec());
            }
        }
        if !dropping && let Some(out) = out.as_mut() {
            out.extend_from_slice(line);
        }
        line_start = line_end;
    }
    match out {
        None => Cow::Borrowed(message),
        Some(mut out) => {
            out.extend_from_slice(&message[end..]);
            Cow::Owned(out)
        }
    }
}

fn is_bcc_field(line: &[u8], also_resent: bool) -> bool {
    let name_end = line
        .iter()
        .position(|&b| b == b':' || b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    if line.get(name_end) != Some(&b':') {
        return false;
    }
    let name = line[..name_end].trim_ascii_end();
    name.eq_ignore_ascii_case(b"bcc") || (also_resent && name.eq_ignore_ascii_case(b"resent-bcc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_with(options: ScanOptions, msg: &str) -> Scan {
        Scanner::new(options).scan(msg.as_bytes()).unwrap()
    }

    fn rcpts(scan: &Scan) -> Vec<String> {
        scan.recipients
            .iter()
            .map(|r| r.address.to_string())
            .collect()
    }

    #[test]
    fn header_block_cuts_at_empty_line() {
        assert_eq!(
            header_block(b"To: a@b.c\r\n\r\nTo: x@y.z\r\n", 100).unwrap(),
            b"To: a@b.c\r\n\r\n"
        );
        assert_eq!(
            header_block(b"To: a@b.c\n\nbody", 100).unwrap(),
            b"To: a@b.c\n\n"
        );
        assert_eq!(header_block(b"To: a@b.c", 100).unwrap(), b"To: a@b.c");
        assert_eq!(header_block(b"\r\nbody", 100).unwrap(), b"\r\n");
        assert_eq!(header_block(b"", 100).unwrap(), b"");
        assert_eq!(
            header_block(b"To: a@b.c\r\n\r\n", 12).unwrap_err(),
            ScanError::HeaderTooLarge { limit: 12 }
        );
        // The limit applies to the header block only, not the body.
        assert!(
            header_block(
                format!("To: a@b.c\r\n\r\n{}", "x".repeat(1000)).as_bytes(),
                13
            )
            .is_ok()
        );
    }

    /// The tricky-header table: each input and the exact recipients and source expected.
    #[test]
    fn tricky_headers() {
        use RecipientSource as S;
        let cases: &[(&str, &[&str], RecipientSource)] = &[
            (
                "To: a@b.com\r\nCc: c@d.com\r\nBcc: e@f.com\r\n\r\n",
                &["a@b.com", "c@d.com", "e@f.com"],
                S::Headers,
            ),
            // Groups, including an empty one.
            (
                "To: Team: x@y.com, \"Q\" <q@y.com>;, Undisclosed recipients:;\r\n\r\n",
                &["x@y.com", "q@y.com"],
                S::Headers,
            ),
            // A comma inside a quoted display name does not split the address.
            (
                "To: \"Doe, John\" <john@Example.com>, jane@example.com\r\n\r\n",
                &["john@Example.com", "jane@example.com"],
                S::Headers,
            ),
            // Encoded words and comments in display names.
            (
                "Cc: =?utf-8?q?J=C3=B6rg?= <jorg@x.com> (Sales), c@d.com (Carl)\r\n\r\n",
                &["jorg@x.com", "c@d.com"],
                S::Headers,
            ),
            // Folded lines, bare LF endings.
            (
                "To: a@b.com,\n\tc@d.com,\n  e@f.com\nSubject: x\n\n",
                &["a@b.com", "c@d.com", "e@f.com"],
                S::Headers,
            ),
            // Upper-case domains are kept as written (matching is case-insensitive later).
            (
                "To: USER@DOMAIN.COM\r\n\r\n",
                &["USER@DOMAIN.COM"],
                S::Headers,
            ),
            // Duplicates are kept here; the decision removes them.
            (
                "To: a@b.com, A@B.COM\r\nCc: a@b.com\r\n\r\n",
                &["a@b.com", "A@B.COM", "a@b.com"],
                S::Headers,
            ),
            // Several To fields are all read.
            (
                "To: a@b.com\r\nTo: c@d.com\r\n\r\n",
                &["a@b.com", "c@d.com"],
                S::Headers,
            ),
            // Quoted local part restored from the raw text.
            (
                "To: \"john doe\"@example.com, x@y.com\r\n\r\n",
                &["\"john doe\"@example.com", "x@y.com"],
                S::Headers,
            ),
            // Resent-* takes precedence; the most recent (topmost) block only.
            (
                "Resent-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nResent-To: new@x.com\r\n\
                 Resent-Bcc: hidden@x.com\r\nReceived: by x\r\nResent-To: old@x.com\r\n\
                 To: orig@x.com\r\n\r\n",
                &["new@x.com", "hidden@x.com"],
                S::Resent,
            ),
            // A Resent block without destination fields leaves To/Cc/Bcc in charge.
            (
                "Resent-From: a@x.com\r\nResent-Date: x\r\nTo: orig@x.com\r\n\r\n",
                &["orig@x.com"],
                S::Headers,
            ),
            // The body is never read.
            (
                "To: a@b.com\r\n\r\nTo: body@b.com\r\n",
                &["a@b.com"],
                S::Headers,
            ),
            // No trailing line break on a header-only input.
            ("To: a@b.com", &["a@b.com"], S::Headers),
            ("", &[], S::Headers),
        ];
        for (msg, want, source) in cases {
            let scan = scan_with(ScanOptions::default(), msg);
            assert_eq!(rcpts(&scan), *want, "{msg:?}");
            assert_eq!(&scan.source, source, "{msg:?}");
            assert!(!scan.envelope_missing);
        }
    }

    #[test]
    fn invalid_entries_are_reported() {
        let scan = scan_with(
            ScanOptions::default(),
            "To: <@route:u@v.com>, foo, bar@, u@[192.0.2.1], \"q r\" <@z.com>, ok@x.com\r\n\r\n",
        );
        assert_eq!(rcpts(&scan), ["ok@x.com"]);
        let skipped: Vec<_> = scan
            .skipped
            .iter()
            .map(|s| (s.text.as_str(), s.error.clone()))
            .collect();
        assert_eq!(
            skipped,
            [
                ("@route:u@v.com", AddressError::LocalPartCharacter('@')),
                ("", AddressError::Empty),
                ("bar@", AddressError::Empty),
                ("u@[192.0.2.1]", AddressError::DomainCharacter('[')),
                ("@z.com", AddressError::EmptyLocalPart),
            ]
        );
        assert!(scan.skipped.iter().all(|s| s.field == "To"));
    }

    #[test]
    fn envelope_header_present_and_absent() {
        let msg = "Delivered-To: top@x.com\r\nReceived: by y\r\ndelivered-to: second@x.com\r\n\
                   To: list@lists.example\r\n\r\n";
        let opts = |name: &str, n| ScanOptions {
            envelope_header: Some(EnvelopeHeader::nth(name, n)),
            ..ScanOptions::default()
        };
        let scan = scan_with(opts("Delivered-To", 0), msg);
        assert_eq!(rcpts(&scan), ["top@x.com"]);
        assert_eq!(
            scan.source,
            RecipientSource::Envelope(EnvelopeHeader::new("Delivered-To"))
        );
        assert_eq!(scan.recipients[0].field, "Delivered-To");
        let scan = scan_with(opts("DELIVERED-TO", 1), msg);
        assert_eq!(rcpts(&scan), ["second@x.com"]);
        assert_eq!(scan.recipients[0].field, "delivered-to");
        // Occurrence out of range: absent, so To/Cc/Bcc are scanned.
        let scan = scan_with(opts("Delivered-To", 2), msg);
        assert_eq!(rcpts(&scan), ["list@lists.example"]);
        assert_eq!(scan.source, RecipientSource::Headers);
        assert!(scan.envelope_missing);
        // A custom name.
        let msg2 = "X-Original-To: orig@x.com\r\nTo: other@y.com\r\n\r\n";
        let scan = scan_with(opts("x-original-to", 0), msg2);
        assert_eq!(rcpts(&scan), ["orig@x.com"]);
        let scan = scan_with(opts("X-Envelope-To", 0), msg2);
        assert_eq!(rcpts(&scan), ["other@y.com"]);
        assert!(scan.envelope_missing);
        // Present but holding no address: treated as absent, its entry reported.
        let scan = scan_with(
            opts("X-Envelope-To", 0),
            "X-Envelope-To: garbage\r\nTo: a@b.com\r\n\r\n",
        );
        assert_eq!(rcpts(&scan), ["a@b.com"]);
        assert!(scan.envelope_missing);
        assert_eq!(scan.skipped.len(), 1);
        // An unrepresentable name is never present.
        let scan = scan_with(opts("X Bad:Name", 0), msg2);
        assert_eq!(rcpts(&scan), ["other@y.com"]);
        assert!(scan.envelope_missing);
    }

    #[test]
    fn senders_are_from_and_return_path() {
        let scan = scan_with(
            ScanOptions::default(),
            "Return-Path: <bounce@x.com>\r\nFrom: \"A\" <a@x.com>, b@x.com\r\nTo: t@y.com\r\n\r\n",
        );
        let senders: Vec<_> = scan.senders.iter().map(|a| a.to_string()).collect();
        assert_eq!(senders, ["bounce@x.com", "a@x.com", "b@x.com"]);
        let scan = scan_with(
            ScanOptions::default(),
            "Return-Path: <>\r\nTo: t@y.com\r\n\r\n",
        );
        assert!(scan.senders.is_empty());
    }

    #[test]
    fn limits() {
        let many = format!(
            "To: {}\r\n\r\n",
            (0..20)
                .map(|i| format!("u{i}@x.com"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let opts = ScanOptions {
            max_addresses: 19,
            ..ScanOptions::default()
        };
        assert_eq!(
            Scanner::new(opts).scan(many.as_bytes()).unwrap_err(),
            ScanError::TooManyAddresses { limit: 19 }
        );
        let opts = ScanOptions {
            max_addresses: 20,
            ..ScanOptions::default()
        };
        assert_eq!(
            Scanner::new(opts)
                .scan(many.as_bytes())
                .unwrap()
                .recipients
                .len(),
            20
        );
        let opts = ScanOptions {
            max_header_bytes: 50,
            ..ScanOptions::default()
        };
        assert_eq!(
            Scanner::new(opts).scan(many.as_bytes()).unwrap_err(),
            ScanError::HeaderTooLarge { limit: 50 }
        );
    }

    #[test]
    fn strip_bcc_removes_only_bcc_fields() {
        let msg = b"From: a@x.com\r\nBcc: hidden@x.com,\r\n\tother@x.com\r\nTo: t@y.com\r\n\
                    bcc : h2@x.com\r\nResent-Bcc: r@x.com\r\nX-Bcc: keep\r\n\r\nBcc: body@x.com\r\n";
        let out = strip_bcc(msg, false);
        assert_eq!(
            &out[..],
            &b"From: a@x.com\r\nTo: t@y.com\r\nResent-Bcc: r@x.com\r\nX-Bcc: keep\r\n\r\n\
               Bcc: body@x.com\r\n"[..]
        );
        let out = strip_bcc(msg, true);
        assert_eq!(
            &out[..],
            &b"From: a@x.com\r\nTo: t@y.com\r\nX-Bcc: keep\r\n\r\nBcc: body@x.com\r\n"[..]
        );
        // Bare LF and a header-only input ending in a Bcc field without a line break.
        assert_eq!(&strip_bcc(b"To: t@y\nBcc: b@y", false)[..], b"To: t@y\n");
        // Nothing to strip: borrowed, byte-identical.
        let clean = b"To: t@y.com\r\nSubject: Bcc: no\r\n\r\nbody";
        assert!(matches!(strip_bcc(clean, true), Cow::Borrowed(b) if b == clean));
    }
}

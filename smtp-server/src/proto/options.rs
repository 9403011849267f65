//! Settings of a session: every limit, extension switch and message-handling option.

use std::time::Duration;

use mailferry_sasl::Mechanism;
use mailferry_wire::types::Domain;

/// Which messages get a `Received:` trace line prepended (RFC 5321 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReceivedHeader {
    /// Every message (RFC 5321 §4.4 requires it of a relay). The default.
    #[default]
    All,
    /// Only messages submitted by an authenticated client.
    AuthenticatedOnly,
    /// None.
    None,
}

/// A header field name for the envelope-recipients header (for example `X-Original-To`).
///
/// RFC 5322 §3.6.8: `field-name = 1*ftext`, `ftext = %d33-57 / %d59-126` (printable ASCII
/// without `:`), at most 76 octets here so the field fits a line with an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderName(String);

/// A string that is not a valid header field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid header field name {0:?}")]
pub struct InvalidHeaderName(pub String);

impl HeaderName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for HeaderName {
    type Error = InvalidHeaderName;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let ok = !s.is_empty()
            && s.len() <= 76
            && s.bytes().all(|b| (33..=126).contains(&b) && b != b':');
        if ok {
            Ok(HeaderName(s.to_owned()))
        } else {
            Err(InvalidHeaderName(s.to_owned()))
        }
    }
}

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a [`Session`](super::Session) enforces and offers.
///
/// Defaults follow the seeds (SmarterMail, Winmail, VPOP3) and the RFCs: see each field.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// The server's own name: in the greeting (`#HostName#`), EHLO reply, `Received:` lines and
    /// CRAM-MD5 challenges. Default `localhost`.
    pub hostname: Domain,
    /// The greeting text after `220 ` with `#HostName#`, `#ConnectedIP#`, `#Time#`,
    /// `#TimeUTC#` and `#UnixTime#` substituted. Default `#HostName# ESMTP mailferry`.
    pub banner: String,
    /// The text of the `354` reply to DATA. Default `Start mail input; end with <CRLF>.<CRLF>`
    /// (RFC 5321 Appendix D).
    pub data_text: String,
    /// The text of the `221` reply to QUIT, `#HostName#` substituted. Default
    /// `#HostName# Service closing transmission channel` (RFC 5321 Appendix D).
    pub quit_text: String,
    /// List `HELP` in the EHLO reply (RFC 5321 Appendix D shows it). Default false.
    pub advertise_help: bool,
    /// A fixed CRAM-MD5 challenge body and SCRAM server nonce instead of random ones: for
    /// tests only (a fixed nonce makes SCRAM replayable).
    pub cram_md5_nonce: Option<String>,
    /// Offer PIPELINING (RFC 2920). Default on. When off, a client that sends a command before
    /// the reply to the previous one is refused (`503 5.5.0`) and disconnected.
    pub pipelining: bool,
    /// Offer 8BITMIME (RFC 6152). Default on.
    pub eight_bit_mime: bool,
    /// Offer SMTPUTF8 (RFC 6531). Default on.
    pub smtputf8: bool,
    /// Offer ENHANCEDSTATUSCODES (RFC 2034) and put enhanced codes on the core's own replies.
    /// Default on.
    pub enhanced_status_codes: bool,
    /// Offer DSN (RFC 3461) and accept its parameters (kept with the envelope). Default on.
    pub dsn: bool,
    /// Offer CHUNKING (RFC 3030) and accept BDAT. Default on.
    pub chunking: bool,
    /// Offer STARTTLS (RFC 3207). The shell turns it off when it has no TLS configuration.
    /// Default on.
    pub starttls: bool,
    /// Pass VRFY to the application ([`Event::Vrfy`](super::Event::Vrfy)); when off the core
    /// answers `252 2.5.0` (RFC 5321 §3.5.3). Default off.
    pub vrfy: bool,
    /// Pass EXPN to the application ([`Event::Expn`](super::Event::Expn)); when off the core
    /// answers `502 5.5.1`. Default off.
    pub expn: bool,
    /// SASL mechanisms offered when a credential store is present, in advertising order.
    /// Remove [`Mechanism::Login`] to disable LOGIN. Default PLAIN, LOGIN, CRAM-MD5. Add
    /// [`Mechanism::ScramSha256`] and [`Mechanism::ScramSha1`] (first, most secure first) to
    /// offer SCRAM when the store can give verifiers or passwords
    /// (`CredentialStore::scram_credential`).
    pub auth_mechanisms: Vec<Mechanism>,
    /// Offer AUTH only on a TLS channel (RFC 4954 §4 discourages plaintext passwords).
    /// Default true.
    pub auth_requires_tls: bool,
    /// Refuse MAIL (`530 5.7.0`) until the client has authenticated. Default false.
    pub require_auth: bool,
    /// Refuse MAIL (`530 5.7.0`) until STARTTLS has been done. Default false.
    pub require_tls: bool,
    /// Failed AUTH exchanges allowed per connection before `421 4.7.0` and close. Default 3.
    pub max_auth_failures: u32,
    /// HELO/EHLO arguments containing any of these (ASCII case-insensitive) are refused with
    /// `550 5.7.1`. Default empty.
    pub refused_helo_substrings: Vec<String>,
    /// Longest command line, counting CRLF. Default 512 (RFC 5321 §4.5.3.1.4).
    pub max_command_line: usize,
    /// Longest AUTH command or continuation line, counting CRLF. Default 12,288 (RFC 4954 §4).
    pub max_auth_line: usize,
    /// Pipelined input buffered while the application decides, in octets; more is a fatal
    /// `421 4.7.0`. The shell stops reading before that. Default 65,536.
    pub max_pipelined_input: usize,
    /// Simultaneous connections the listener accepts (shell). Default 1000 (seed).
    pub max_connections: usize,
    /// Simultaneous connections from one IP address (shell). Default 20.
    pub max_connections_per_ip: usize,
    /// Unknown, malformed or out-of-sequence commands before `421 4.7.0` and close.
    /// Default 8 (seed).
    pub max_bad_commands: u32,
    /// Recipients per message; more get `452 4.5.3` (RFC 5321 §4.5.3.1.10 requires at least
    /// 100). Default 100.
    pub max_recipients: usize,
    /// Rejected recipients per connection before `421 4.7.0` and close. Default 20 (seed).
    pub max_bad_recipients: u32,
    /// Largest message in octets, 0 for unlimited. Advertised by SIZE, checked against MAIL's
    /// `SIZE=` (`552 5.3.4`) and enforced while streaming (`552 5.3.4` after the end of data).
    /// Default 0.
    pub max_message_size: u64,
    /// Messages accepted per connection; a further MAIL gets `452 4.7.1`. 0 for unlimited.
    /// Default 0.
    pub max_messages_per_session: u32,
    /// RSET commands per connection before `421 4.7.0` and close; 0 for unlimited. Default 0.
    pub max_rset: u32,
    /// `Received:` header lines a message may carry; more is `554 5.4.6` (mail loop, RFC 5321
    /// §6.3). Default 20 (seed).
    pub max_hop_count: u32,
    /// Idle time waiting for the next command before `421 4.4.2` and close. Default 15 min
    /// (seed "session timeout"; RFC 5321 §4.5.3.2.7 asks for at least 5 min).
    pub session_timeout: Duration,
    /// Time without progress inside a command line, an AUTH exchange or a message body before
    /// `421 4.4.2`. Default 120 s (seed "command timeout").
    pub command_timeout: Duration,
    /// Minimum average rate of a message body in octets per second, checked once the body has
    /// been running for `command_timeout`; 0 disables. Default 0.
    pub min_data_rate: u64,
    /// Which messages get a `Received:` line. Default [`ReceivedHeader::All`].
    pub received_header: ReceivedHeader,
    /// Add a `Date:` field at the end of the header section when the message has none (VPOP3
    /// seed option). Default false.
    pub add_date_header: bool,
    /// Write each envelope recipient into a header field of this name (`X-Original-To`,
    /// `X-Rcpt-To`); BCC recipients become visible, so the default is `None`.
    pub recipients_header: Option<HeaderName>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // Invariant: a constant valid domain.
            hostname: Domain::try_from("localhost").expect("valid domain"),
            banner: String::from("#HostName# ESMTP mailferry"),
            data_text: String::from("Start mail input; end with <CRLF>.<CRLF>"),
            quit_text: String::from("#HostName# Service closing transmission channel"),
            advertise_help: false,
            cram_md5_nonce: None,
            pipelining: true,
            eight_bit_mime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            dsn: true,
            chunking: true,
            starttls: true,
            vrfy: false,
            expn: false,
            auth_mechanisms: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            auth_requires_tls: true,
            require_auth: false,
            require_tls: false,
            max_auth_failures: 3,
            refused_helo_substrings: Vec::new(),
            max_command_line: 512,
            max_auth_line: 12_288,
            max_pipelined_input: 65_536,
            max_connections: 1000,
            max_connections_per_ip: 20,
            max_bad_commands: 8,
            max_recipients: 100,
            max_bad_recipients: 20,
            max_message_size: 0,
            max_messages_per_session: 0,
            max_rset: 0,
            max_hop_count: 20,
            session_timeout: Duration::from_secs(15 * 60),
            command_timeout: Duration::from_secs(120),
            min_data_rate: 0,
            received_header: ReceivedHeader::All,
            add_date_header: false,
            recipients_header: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_defaults() {
        let o = Options::default();
        assert_eq!(o.max_connections, 1000);
        assert_eq!(o.max_bad_commands, 8);
        assert_eq!(o.max_bad_recipients, 20);
        assert_eq!(o.max_message_size, 0);
        assert_eq!(o.max_hop_count, 20);
        assert_eq!(o.session_timeout, Duration::from_secs(900));
        assert_eq!(o.command_timeout, Duration::from_secs(120));
    }

    #[test]
    fn header_names() {
        assert_eq!(
            HeaderName::try_from("X-Rcpt-To").unwrap().as_str(),
            "X-Rcpt-To"
        );
        for bad in ["", "X:Y", "X Y", "X\r\nY", "É"] {
            assert_eq!(
                HeaderName::try_from(bad),
                Err(InvalidHeaderName(bad.to_owned()))
            );
        }
    }
}

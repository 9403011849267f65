//! The inputs of the `smtp_parse` bench and the call each side makes on one, shared with the
//! `smtp_parse_count` example so that both measure exactly the same work.

use mailferry_wire::smtp::{Capabilities, Command, Reply, ReplyOptions};
use smtp_proto::{EhloResponse, Request, response::parser::ResponseReceiver};

/// A realistic client session's command lines.
pub(crate) const COMMANDS: &[&[u8]] = &[
    b"EHLO client.example.org\r\n",
    b"MAIL FROM:<sender.name@example.org> SIZE=48213 BODY=8BITMIME\r\n",
    b"RCPT TO:<first.recipient@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;first.recipient@example.net\r\n",
    b"RCPT TO:<second@example.com>\r\n",
    b"DATA\r\n",
    b"MAIL FROM:<bounce+123-abc@lists.example.org> SIZE=1024 RET=HDRS ENVID=QQ314159\r\n",
    b"RCPT TO:<user@sub.example.co.uk> NOTIFY=NEVER\r\n",
    b"BDAT 65536 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
];

/// Typical single- and multi-line replies a client reads.
pub(crate) const REPLIES: &[&[u8]] = &[
    b"220 mx.example.org ESMTP Postfix (Debian/GNU)\r\n",
    b"250 2.1.0 Ok\r\n",
    b"250 2.1.5 Ok\r\n",
    b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"250 2.0.0 Ok: queued as 4Xk2Lq0Wz5z9tXv\r\n",
    b"550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table\r\n",
    b"451-4.7.1 Greylisting in action, please come\r\n451-4.7.1 back later; see\r\n451 4.7.1 https://example.org/greylisting\r\n",
    b"221 2.0.0 Bye\r\n",
];

/// A Postfix-style EHLO reply of 12 lines.
pub(crate) const EHLO: &[u8] =
    b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250-ENHANCEDSTATUSCODES\r\n\
250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

/// Our side takes the line without CRLF, as the framer delivers it: finding the LF is part of
/// the work, as it is inside smtp-proto's parser.
pub(crate) fn ours_command(line: &[u8]) -> bool {
    let end = memchr::memchr(b'\n', line).map_or(line.len(), |i| i.saturating_sub(1));
    Command::parse(&line[..end]).is_ok()
}

pub(crate) fn theirs_command(line: &[u8]) -> bool {
    Request::parse(&mut line.iter()).is_ok()
}

pub(crate) fn ours_reply(input: &[u8], opts: &ReplyOptions) -> bool {
    Reply::parse(input, opts).is_ok()
}

pub(crate) fn theirs_reply(input: &[u8]) -> bool {
    ResponseReceiver::default().parse(&mut input.iter()).is_ok()
}

/// From the reply's bytes to typed capabilities, as smtp-client does it.
pub(crate) fn ours_ehlo(input: &[u8], opts: &ReplyOptions) -> bool {
    Reply::parse(input, opts)
        .ok()
        .and_then(|r| Capabilities::from_ehlo(r).ok())
        .is_some()
}

pub(crate) fn theirs_ehlo(input: &[u8]) -> bool {
    EhloResponse::parse(&mut input.iter()).is_ok()
}

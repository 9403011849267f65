//! The inputs of the `smtp_parse` bench, shared with the `smtp_parse_count` example.

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

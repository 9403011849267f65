//! SMTP command and reply parsing: mailferry-wire against smtp-proto 0.2 (Stalwart's parser),
//! on the same inputs, in the same criterion group, so the throughput ratio is direct.
//!
//! Both sides start from the same CRLF-terminated bytes. smtp-proto scans for the line end
//! itself; mailferry-wire's parser takes a line without CRLF (the framer's job), so its side
//! includes a memchr for the LF to keep the comparison fair.
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailferry_wire::smtp::{Capabilities, Command, Reply, ReplyOptions};
use smtp_proto::{EhloResponse, Request, response::parser::ResponseReceiver};

/// A realistic client session's command lines.
const COMMANDS: &[&[u8]] = &[
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
const REPLIES: &[&[u8]] = &[
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
const EHLO: &[u8] = b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250-ENHANCEDSTATUSCODES\r\n\
250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

fn total(inputs: &[&[u8]]) -> u64 {
    inputs.iter().map(|i| i.len() as u64).sum()
}

fn ours_command(line: &[u8]) -> bool {
    let end = memchr::memchr(b'\n', line).map_or(line.len(), |i| i.saturating_sub(1));
    Command::parse(&line[..end]).is_ok()
}

fn theirs_command(line: &[u8]) -> bool {
    Request::parse(&mut line.iter()).is_ok()
}

fn ours_reply(input: &[u8], opts: &ReplyOptions) -> bool {
    Reply::parse(input, opts).is_ok()
}

fn theirs_reply(input: &[u8]) -> bool {
    ResponseReceiver::default().parse(&mut input.iter()).is_ok()
}

fn ours_ehlo(input: &[u8], opts: &ReplyOptions) -> bool {
    Reply::parse(input, opts)
        .ok()
        .and_then(|r| Capabilities::from_ehlo_reply(&r).ok())
        .is_some()
}

fn theirs_ehlo(input: &[u8]) -> bool {
    EhloResponse::parse(&mut input.iter()).is_ok()
}

fn bench(c: &mut Criterion) {
    let opts = ReplyOptions::default();
    // Both parsers must accept every input, or the comparison measures error paths.
    for l in COMMANDS {
        assert!(
            ours_command(l),
            "mailferry rejects {}",
            String::from_utf8_lossy(l)
        );
        assert!(
            theirs_command(l),
            "smtp-proto rejects {}",
            String::from_utf8_lossy(l)
        );
    }
    for r in REPLIES {
        assert!(
            ours_reply(r, &opts),
            "mailferry rejects {}",
            String::from_utf8_lossy(r)
        );
        assert!(
            theirs_reply(r),
            "smtp-proto rejects {}",
            String::from_utf8_lossy(r)
        );
    }
    assert!(ours_ehlo(EHLO, &opts) && theirs_ehlo(EHLO));

    let mut g = c.benchmark_group("smtp_commands");
    g.throughput(Throughput::Bytes(total(COMMANDS)));
    g.bench_function("mailferry-wire", |b| {
        b.iter(|| {
            for l in black_box(COMMANDS) {
                black_box(ours_command(l));
            }
        })
    });
    g.bench_function("smtp-proto", |b| {
        b.iter(|| {
            for l in black_box(COMMANDS) {
                black_box(theirs_command(l));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("smtp_replies");
    g.throughput(Throughput::Bytes(total(REPLIES)));
    g.bench_function("mailferry-wire", |b| {
        b.iter(|| {
            for r in black_box(REPLIES) {
                black_box(ours_reply(r, &opts));
            }
        })
    });
    g.bench_function("smtp-proto", |b| {
        b.iter(|| {
            for r in black_box(REPLIES) {
                black_box(theirs_reply(r));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("smtp_ehlo");
    g.throughput(Throughput::Bytes(EHLO.len() as u64));
    g.bench_function("mailferry-wire", |b| {
        b.iter(|| black_box(ours_ehlo(black_box(EHLO), &opts)))
    });
    g.bench_function("smtp-proto", |b| {
        b.iter(|| black_box(theirs_ehlo(black_box(EHLO))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

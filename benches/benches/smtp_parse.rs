//! SMTP command and reply parsing: mailferry-wire against smtp-proto 0.2 (Stalwart's parser),
//! on the same inputs, in the same criterion group, so the throughput ratio is direct.
//!
//! Both sides start from the same CRLF-terminated bytes. smtp-proto scans for the line end
//! itself; mailferry-wire's parser takes a line without CRLF (the framer's job), so its side
//! includes a memchr for the LF to keep the comparison fair.
//!
//! For EHLO, each side goes from the reply's bytes to typed capabilities as its client does:
//! smtp-proto with `EhloResponse::parse`, mailferry-wire with a `Reply` (`Reply::parse` here,
//! the line assembler in smtp-client) moved into `Capabilities::from_ehlo`, as smtp-client's
//! EHLO handling does.
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailferry_wire::smtp::ReplyOptions;

#[path = "common/smtp_parse_inputs.rs"]
mod smtp_parse_inputs;
use smtp_parse_inputs::{
    COMMANDS, EHLO, REPLIES, ours_command, ours_ehlo, ours_reply, theirs_command, theirs_ehlo,
    theirs_reply,
};

fn total(inputs: &[&[u8]]) -> u64 {
    inputs.iter().map(|i| i.len() as u64).sum()
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

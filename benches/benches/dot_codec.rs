//! Throughput of the dot-stuffing codec (mailferry-wire `dot`) on fixed 10 KiB and 1 MiB bodies.
//!
//! The bodies are built deterministically: mail-like lines of varying length, about one in
//! sixteen starting with `.`, so the stuffing paths are exercised, not only the plain runs.
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mailferry_wire::dot::{BodyChunk, DotDecoder, DotEncoder, EncodeOptions};

/// A body of exactly `len` octets of CRLF-terminated lines.
fn body(len: usize) -> Vec<u8> {
    const WORDS: &[&[u8]] = &[
        b"mail", b"ferry", b"the", b"quick", b"relay", b"of", b"octets",
    ];
    let mut state: u32 = 0x2545_F491;
    let mut next = move || {
        // xorshift32: a fixed, portable sequence.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as usize
    };
    let mut out = Vec::with_capacity(len + 80);
    while out.len() < len {
        let r = next();
        if r % 16 == 0 {
            out.push(b'.');
        }
        let words = 3 + r % 12;
        for i in 0..words {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(WORDS[next() % WORDS.len()]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.truncate(len - 2);
    out.extend_from_slice(b"\r\n");
    out
}

fn encode(input: &[u8], out: &mut BytesMut) {
    let mut encoder = DotEncoder::new(EncodeOptions::default());
    out.clear();
    encoder
        .encode(input, out)
        .expect("the bench body is 7-bit with short lines");
    encoder
        .finish(out)
        .expect("the bench body is 7-bit with short lines");
}

fn bench_dot_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("dot_codec");
    for (name, len) in [("10KiB", 10 * 1024), ("1MiB", 1024 * 1024)] {
        let input = body(len);
        let mut wire = BytesMut::new();
        encode(&input, &mut wire);
        let wire = wire.freeze();

        group.throughput(Throughput::Bytes(input.len() as u64));
        let mut out = BytesMut::with_capacity(wire.len());
        group.bench_with_input(BenchmarkId::new("encode", name), &input, |b, input| {
            b.iter(|| {
                encode(black_box(input), &mut out);
                black_box(out.len())
            });
        });

        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode", name), &wire, |b, wire| {
            b.iter(|| {
                // The copy into the receive buffer is part of decoding: the framer does it too.
                let mut buf = BytesMut::from(&black_box(wire)[..]);
                let mut decoder = DotDecoder::new();
                let mut octets = 0;
                while let Some(step) = decoder.decode(&mut buf) {
                    match step {
                        BodyChunk::Data(data) => octets += data.len(),
                        BodyChunk::End => break,
                    }
                }
                black_box(octets)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_dot_codec);
criterion_main!(benches);

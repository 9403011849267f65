//! POP3 retrieval from a private Dovecot: 200 messages of 8 KiB, pipelined (`retrieve_many`)
//! against lock-step (`retrieve` one by one), and against the raw limit of the same mailbox
//! (login and every RETR written at once on a plain socket, replies only counted).
//!
//! Throughput is in messages; each run retrieves `COUNT * SIZE` octets (1.6 MB), so MB/s is
//! messages/s × 8 KiB. Skips with a note when Dovecot is not installed or cannot start
//! (it needs root); run `scripts/full-test.sh` to install it.
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailferry_pop3_client::{Config, Pop3Client};
use mailferry_sasl::{AuthPolicy, Credentials, Mechanism};
use mailferry_testkit::Dovecot;
use mailferry_wire::tls::TlsMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const COUNT: usize = 200;
const SIZE: usize = 8 * 1024;
const USER: &str = "bench";
const PASSWORD: &str = "bench-pw";

fn message(i: usize) -> Vec<u8> {
    let mut m = format!("Subject: bench {i}\r\n\r\n").into_bytes();
    while m.len() < SIZE {
        m.extend_from_slice(
            b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .\r\n",
        );
    }
    m
}

fn config(port: u16) -> Config {
    let mut c = Config::new(
        "127.0.0.1",
        TlsMode::Plaintext,
        Credentials::new(USER).with_password(PASSWORD),
    );
    c.port = Some(port);
    c.mechanisms = vec![Mechanism::User];
    // Loopback benchmark: plaintext keeps TLS cost out of the protocol comparison.
    c.auth_policy = AuthPolicy::with_insecure_auth(true);
    c
}

fn msgs() -> Vec<NonZeroU32> {
    (1..=COUNT as u32).filter_map(NonZeroU32::new).collect()
}

async fn pipelined(port: u16) -> u64 {
    let mut pop = Pop3Client::connect(&config(port)).await.expect("login");
    let results = pop
        .retrieve_many(&msgs(), |_| tokio::io::sink())
        .await
        .expect("retrieve_many");
    pop.quit().await.expect("quit");
    results.iter().map(|(_, r)| *r.as_ref().unwrap_or(&0)).sum()
}

async fn lock_step(port: u16) -> u64 {
    let mut pop = Pop3Client::connect(&config(port)).await.expect("login");
    let mut total = 0;
    for msg in msgs() {
        total += pop
            .retrieve(msg, tokio::io::sink())
            .await
            .expect("retrieve");
    }
    pop.quit().await.expect("quit");
    total
}

/// Every command in one write; counts `CRLF.CRLF` terminators until all bodies are in.
async fn raw(port: u16) -> u64 {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut script = format!("USER {USER}\r\nPASS {PASSWORD}\r\n");
    for i in 1..=COUNT {
        script.push_str(&format!("RETR {i}\r\n"));
    }
    script.push_str("QUIT\r\n");
    s.write_all(script.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    let (mut ends, mut total, mut tail) = (0, 0u64, Vec::<u8>::new());
    while ends < COUNT {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "server closed early");
        total += n as u64;
        // Keep the last 4 octets so a terminator cut by a read is still found.
        let mut window = std::mem::take(&mut tail);
        window.extend_from_slice(&buf[..n]);
        ends += memchr::memmem::find_iter(&window, b"\r\n.\r\n").count();
        tail = window[window.len().saturating_sub(4)..].to_vec();
    }
    total
}

fn bench(c: &mut Criterion) {
    if !std::path::Path::new("/usr/sbin/dovecot").exists() {
        eprintln!("pop3_retrieve: skipped, /usr/sbin/dovecot is not installed");
        return;
    }
    let dovecot = match Dovecot::builder().user(USER, PASSWORD).start() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("pop3_retrieve: skipped, Dovecot did not start: {e}");
            return;
        }
    };
    for i in 0..COUNT {
        dovecot
            .drop_message(USER, &message(i))
            .expect("drop message");
    }
    let port = dovecot.pop3_port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let octets = rt.block_on(pipelined(port));
    eprintln!("pop3_retrieve: {COUNT} messages, {octets} octets per run");
    let mut group = c.benchmark_group("pop3_retrieve");
    group.throughput(Throughput::Elements(COUNT as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("pipelined", |b| b.iter(|| rt.block_on(pipelined(port))));
    group.bench_function("lock_step", |b| b.iter(|| rt.block_on(lock_step(port))));
    group.bench_function("raw_limit", |b| b.iter(|| rt.block_on(raw(port))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

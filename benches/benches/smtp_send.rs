//! SMTP sending: messages/s over ONE connection to Postfix's smtp-sink, mailferry-smtp-client
//! against lettre 0.11 and mail-send 0.7, and against Postfix's own load generator smtp-source
//! (`-s 1 -d`: one session, every message over it), with the same message sizes (1 KiB, 8 KiB,
//! 64 KiB) in one criterion group per size, so the ratios are read off directly.
//!
//! Each client connects once per bench function, outside the timed part; one criterion
//! iteration sends a batch of [`BATCH`] messages over that open connection, so the time is the
//! per-message cost (`Throughput::Elements` counts messages). All three libraries get the same
//! bytes: a 5-line header and 78-column text lines, exactly the stated size, plaintext (smtp-sink
//! offers PIPELINING but neither CHUNKING nor STARTTLS, so everyone speaks DATA).
//!
//! smtp-source is an external process: each timed run is `smtp-source -s 1 -d -m N`; its
//! start-up, connect, greeting, HELO and QUIT (measured once per size with `-m 1`) are
//! subtracted. Its rate swings widely run to run, so the median, min and max of several
//! N-message runs are printed next to the criterion results. Its `-l` is payload only; its four headers add about 128 octets, so it
//! gets `-l SIZE-128`.
//!
//! `--quick` keeps the whole run under a minute. Skips with a note when smtp-sink or
//! smtp-source is missing or the sink cannot start (it needs root to switch to `postfix`).
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]
#![allow(clippy::print_stderr, reason = "a bench reports on stderr")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use mailferry_smtp_client::proto::Envelope;
use mailferry_smtp_client::{Config, SmtpClient};
use mailferry_testkit::{SmtpSink, smtp_source};
use mailferry_wire::tls::TlsMode;
use mailferry_wire::types::Domain;
use tokio::runtime::Runtime;

/// Messages per criterion iteration.
const BATCH: u64 = 10;
const SIZES: [(&str, usize); 3] = [("1KiB", 1024), ("8KiB", 8 * 1024), ("64KiB", 64 * 1024)];
const FROM: &str = "bench@bench.test";
const TO: &str = "sink@bench.test";
const HELO: &str = "bench.test";
/// The octets smtp-source's own From/To/Date/Message-Id headers add to its `-l` payload.
const SMTP_SOURCE_HEADERS: usize = 128;
const SMTP_SOURCE_LIMIT: Duration = Duration::from_secs(300);

/// A message of exactly `size` octets: a header, then 76 text columns + CRLF per line, the last
/// line cut short so the total fits; ASCII, so no client needs 8BITMIME.
fn message(size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: {FROM}\r\nTo: {TO}\r\nSubject: smtp_send bench, {size} octets\r\n\
         Message-ID: <{size}@bench.test>\r\nMIME-Version: 1.0\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs";
    let mut n = 0usize;
    while m.len() < size {
        let room = size - m.len();
        // A line needs at least one text octet and CRLF.
        if room < 3 {
            m.resize(size, b' ');
            m[size - 2..].copy_from_slice(b"\r\n");
            break;
        }
        let take = (room - 2).min(line.len());
        // Rotate the text so lines differ, as real text does.
        let start = n % 7;
        m.extend((0..take).map(|i| line[(start + i) % line.len()]));
        m.extend_from_slice(b"\r\n");
        n += 1;
    }
    debug_assert_eq!(m.len(), size);
    m
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn mailferry_config(addr: SocketAddr) -> Config {
    let mut c = Config::new(
        addr.ip().to_string(),
        Domain::try_from(HELO).expect("valid domain"),
    );
    c.port = Some(addr.port());
    // Loopback to a sink that offers no STARTTLS: plaintext, like the other two.
    c.tls_mode = TlsMode::Plaintext;
    c
}

async fn lettre_connect(addr: SocketAddr) -> lettre::transport::smtp::client::AsyncSmtpConnection {
    use lettre::transport::smtp::client::AsyncSmtpConnection;
    use lettre::transport::smtp::extension::ClientId;
    AsyncSmtpConnection::connect_tokio1(
        addr,
        Some(Duration::from_secs(60)),
        &ClientId::Domain(HELO.into()),
        None,
        None,
    )
    .await
    .expect("lettre connect")
}

fn lettre_envelope() -> lettre::address::Envelope {
    lettre::address::Envelope::new(
        Some(FROM.parse().expect("address")),
        vec![TO.parse().expect("address")],
    )
    .expect("envelope")
}

async fn mail_send_connect(addr: SocketAddr) -> mail_send::SmtpClient<tokio::net::TcpStream> {
    // A connector with an explicit provider: mail-send's default one wants a process-wide
    // CryptoProvider and the platform verifier; the connection stays plaintext either way.
    let roots = rustls::RootCertStore::empty();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    mail_send::SmtpClientBuilder::new_with_tls_connector(
        addr.ip().to_string(),
        addr.port(),
        connector,
    )
    .implicit_tls(false)
    .helo_host(HELO)
    .timeout(Duration::from_secs(60))
    .connect_plain()
    .await
    .expect("mail-send connect")
}

/// smtp-source arguments for `count` messages of about `size` octets over one session.
fn smtp_source_args(addr: SocketAddr, count: u64, size: usize) -> Vec<String> {
    [
        "-s",
        "1",
        "-d",
        "-m",
        &count.to_string(),
        "-l",
        &size.saturating_sub(SMTP_SOURCE_HEADERS).to_string(),
        "-f",
        FROM,
        "-t",
        TO,
        "-M",
        HELO,
        &addr.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Wall-clock time of one smtp-source run of `count` messages.
fn run_smtp_source(addr: SocketAddr, count: u64, size: usize) -> Duration {
    let args = smtp_source_args(addr, count, size);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = smtp_source(&args, SMTP_SOURCE_LIMIT).expect("smtp-source ran");
    assert!(
        out.success,
        "smtp-source {}: {} {}",
        args.join(" "),
        out.status,
        out.stderr
    );
    out.elapsed
}

/// smtp-source's fixed cost per run (process start, connect, greeting, HELO, QUIT, exit): the
/// best of 3 one-message runs (the one message is a few hundred microseconds of it).
fn smtp_source_fixed_cost(addr: SocketAddr, size: usize) -> Duration {
    (0..3)
        .map(|_| run_smtp_source(addr, 1, size))
        .min()
        .expect("three runs")
}

fn bench_size(c: &mut Criterion, sink: SocketAddr, label: &str, size: usize, quick: bool) {
    let rt = runtime();
    let body = message(size);
    let mut group = c.benchmark_group(format!("smtp_send/{label}"));
    group.throughput(Throughput::Elements(BATCH));
    // lettre and mail-send take ~40 ms a message: flat sampling keeps the full run bounded.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(if quick { 2 } else { 5 }));

    // mailferry, send_bytes: the body is checked (line lengths, 8-bit) and SIZE filled first.
    let mut client = rt
        .block_on(SmtpClient::connect(&mailferry_config(sink)))
        .expect("mailferry connect");
    let envelope = Envelope::from_strs(FROM, &[TO]).expect("envelope");
    group.bench_function(BenchmarkId::new("mailferry", "send_bytes"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters * BATCH {
                    let report = client
                        .send_bytes(&envelope, &body)
                        .await
                        .expect("mailferry send_bytes");
                    assert!(report.is_accepted(), "{report:?}");
                }
                start.elapsed()
            })
        })
    });
    // mailferry, send: the body streams from an AsyncRead (here the slice itself).
    group.bench_function(BenchmarkId::new("mailferry", "send"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters * BATCH {
                    let report = client
                        .send(&envelope, body.as_slice())
                        .await
                        .expect("mailferry send");
                    assert!(report.is_accepted(), "{report:?}");
                }
                start.elapsed()
            })
        })
    });
    rt.block_on(client.quit()).expect("mailferry quit");

    let mut conn = rt.block_on(lettre_connect(sink));
    let lettre_env = lettre_envelope();
    group.bench_function(BenchmarkId::new("lettre", "send"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters * BATCH {
                    let reply = conn.send(&lettre_env, &body).await.expect("lettre send");
                    assert!(reply.is_positive(), "{reply:?}");
                }
                start.elapsed()
            })
        })
    });
    rt.block_on(conn.quit()).expect("lettre quit");

    let mut ms = rt.block_on(mail_send_connect(sink));
    group.bench_function(BenchmarkId::new("mail-send", "send"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters * BATCH {
                    let message = mail_send::smtp::message::Message::new(FROM, [TO], &body[..]);
                    ms.send(message).await.expect("mail-send send");
                }
                start.elapsed()
            })
        })
    });
    rt.block_on(ms.quit()).expect("mail-send quit");

    // smtp-source: its fixed cost per run is measured once and subtracted from each timed run.
    let fixed = smtp_source_fixed_cost(sink, size);
    group.bench_function(BenchmarkId::new("smtp-source", "-s1 -d"), |b| {
        b.iter_custom(|iters| {
            run_smtp_source(sink, iters * BATCH, size)
                .saturating_sub(fixed)
                .max(Duration::from_nanos(1))
        })
    });
    group.finish();

    // smtp-source's rate swings run to run (it neither pipelines nor sets TCP_NODELAY, so a
    // message sometimes waits for a delayed ACK): print the spread of whole runs, each long
    // enough (>= 1,000 messages) that the subtracted fixed cost cannot dominate it.
    let (count, runs): (u64, usize) = if quick { (1_000, 5) } else { (2_000, 7) };
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let t = run_smtp_source(sink, count, size).saturating_sub(fixed);
            count as f64 / t.as_secs_f64().max(1e-9)
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    eprintln!(
        "smtp_send/{label}: smtp-source -s 1 -d -m {count} -l {}, {runs} runs, fixed {:.1} ms \
         per run subtracted: median {:.0} msg/s (min {:.0}, max {:.0})",
        size.saturating_sub(SMTP_SOURCE_HEADERS),
        fixed.as_secs_f64() * 1e3,
        rates[runs / 2],
        rates[0],
        rates[runs - 1],
    );
}

fn smtp_send(c: &mut Criterion) {
    for tool in ["/usr/sbin/smtp-sink", "/usr/sbin/smtp-source"] {
        if !Path::new(tool).exists() {
            eprintln!("smtp_send: skipped, {tool} is not installed (run scripts/full-test.sh)");
            return;
        }
    }
    let sink = match SmtpSink::start(&[]) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("smtp_send: skipped, smtp-sink did not start: {e}");
            return;
        }
    };
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    for (label, size) in SIZES {
        bench_size(c, sink.addr(), label, size, quick);
    }
}

criterion_group!(benches, smtp_send);
criterion_main!(benches);

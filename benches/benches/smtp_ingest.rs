//! SMTP ingestion: messages/s that Postfix's smtp-source (8 sessions, 8 KiB messages) gets
//! into a mailferry-smtp-server listener that discards bodies, against Postfix's smtp-sink in
//! the same run (the number worth quoting is the ratio; target ≥ 1.0); and the memory held by
//! idle connections (RSS delta of this process; target: under 256 MiB for 10,000).
//!
//! Full run: 10,000 messages per measurement, 3 alternating rounds, 10,000 idle connections.
//! `--quick` (or `--test`): 1,000 messages, 1 round, 2,000 idle connections (reported per
//! connection and projected to 10,000).
//!
//! The workload is a fixed run of an external load generator, so this bench times whole runs
//! itself instead of letting criterion pick iteration counts. The idle clients live in a child
//! process (this binary re-executed) so the fd limit and the RSS delta concern the server only.
//! Skips with a note when the Postfix tools are missing or the fd limit is too low.
#![allow(clippy::print_stderr, reason = "a bench reports on stderr")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use mailferry_smtp_server::net::{CancellationToken, Handler, Server};
use mailferry_smtp_server::proto::Options;
use mailferry_testkit::{SmtpSink, smtp_source};
use mailferry_wire::types::Domain;

const SESSIONS: &str = "8";
const SIZE: &str = "8192";
const CHILD_ENV: &str = "MAILFERRY_BENCH_IDLE_CLIENTS";

/// Discards every message (the default `Handler` methods accept and drop).
struct Discard;

impl Handler for Discard {
    type Conn = ();
}

fn server_options(max_connections: usize) -> Options {
    let mut o = Options::default();
    o.hostname = Domain::try_from("bench.test").expect("valid domain");
    o.max_connections = max_connections;
    o.max_connections_per_ip = max_connections;
    o
}

/// Runs the listener on its own thread with a single-threaded runtime (smtp-sink is one
/// single-threaded process too): its address, shutdown token and thread.
fn start_server(
    max_connections: usize,
) -> (SocketAddr, CancellationToken, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let server = Server::bind("127.0.0.1:0", server_options(max_connections), None)
                .await
                .expect("bind");
            let _ = tx.send((server.local_addr().expect("addr"), server.shutdown_token()));
            let _ = server.serve(Discard).await;
        });
    });
    let (addr, token) = rx.recv().expect("server started");
    (addr, token, thread)
}

/// Runs smtp-source once against `addr`; messages per second.
fn ingest(addr: SocketAddr, count: usize) -> Option<f64> {
    let count_s = count.to_string();
    let target = addr.to_string();
    let args = [
        "-s",
        SESSIONS,
        "-m",
        &count_s,
        "-l",
        SIZE,
        "-t",
        "bench@bench.test",
        &target,
    ];
    match smtp_source(&args, Duration::from_secs(300)) {
        Ok(out) if out.success => Some(count as f64 / out.elapsed.as_secs_f64()),
        Ok(out) => {
            eprintln!(
                "smtp_ingest: smtp-source failed: {} {}",
                out.status, out.stderr
            );
            None
        }
        Err(e) => {
            eprintln!("smtp_ingest: smtp-source: {e}");
            None
        }
    }
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// (soft, hard) open-file limits of this process.
fn nofile() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut it = line.split_whitespace().skip(3);
    let soft = it.next()?.parse().ok()?;
    let hard = it.next()?.parse().ok()?;
    Some((soft, hard))
}

/// Raises the soft fd limit to the hard one, with util-linux's prlimit (no libc here).
fn raise_nofile() {
    if let Some((soft, hard)) = nofile()
        && soft < hard
    {
        let _ = Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard}:{hard}"))
            .status();
    }
}

/// Child mode: open `count` connections to `addr`, read each greeting, say "ready", hold them
/// until stdin closes.
fn idle_client_child(spec: &str) {
    raise_nofile();
    let (addr, count) = spec.split_once(',').expect("addr,count");
    let addr: SocketAddr = addr.parse().expect("address");
    let count: usize = count.parse().expect("count");
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).expect("greeting");
        assert!(line.starts_with("220 "), "greeting: {line:?}");
        held.push(r);
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(held);
}

fn idle_memory(count: usize) {
    raise_nofile();
    let need = count as u64 + 256;
    match nofile() {
        Some((soft, _)) if soft >= need => {}
        other => {
            eprintln!(
                "smtp_ingest/idle: skipped, open-file limit {other:?} is below {need} for {count} \
                 connections"
            );
            return;
        }
    }
    let (addr, token, serve) = start_server(count + 16);
    std::thread::sleep(Duration::from_millis(100));
    let before = rss_bytes().unwrap_or(0);
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .env(CHILD_ENV, format!("{addr},{count}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn idle clients");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    if line.trim() != "ready" {
        eprintln!("smtp_ingest/idle: the client process failed");
        let _ = child.kill();
        let _ = child.wait();
        token.cancel();
        let _ = serve.join();
        return;
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_bytes().unwrap_or(0);
    let delta = after.saturating_sub(before);
    let per = delta / count as u64;
    eprintln!(
        "smtp_ingest/idle: {count} idle connections hold {:.1} MiB ({per} B each; 10,000 \
         → {:.1} MiB, target < 256 MiB)",
        delta as f64 / (1024.0 * 1024.0),
        (per * 10_000) as f64 / (1024.0 * 1024.0)
    );
    drop(child.stdin.take());
    let _ = child.wait();
    token.cancel();
    let _ = serve.join();
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        idle_client_child(&spec);
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // A name filter that does not match this bench: nothing to do.
    if let Some(filter) = args.iter().find(|a| !a.starts_with("--"))
        && !"smtp_ingest".contains(filter.as_str())
    {
        return;
    }
    let quick = args.iter().any(|a| a == "--quick" || a == "--test");
    let (count, rounds, idle) = if quick {
        (1_000, 1, 2_000)
    } else {
        (10_000, 3, 10_000)
    };
    if std::path::Path::new("/usr/sbin/smtp-source").exists()
        && std::path::Path::new("/usr/sbin/smtp-sink").exists()
    {
        let (ours, token, serve) = start_server(1000);
        match SmtpSink::start(&[]) {
            Ok(sink) => {
                let (mut best_ours, mut best_sink) = (0f64, 0f64);
                for _ in 0..rounds {
                    if let Some(r) = ingest(ours, count) {
                        best_ours = best_ours.max(r);
                    }
                    if let Some(r) = ingest(sink.addr(), count) {
                        best_sink = best_sink.max(r);
                    }
                }
                let mib = |r: f64| r * 8192.0 / (1024.0 * 1024.0);
                eprintln!(
                    "smtp_ingest: {count} x 8 KiB, {SESSIONS} sessions, best of {rounds}: \
                     mailferry {best_ours:.0} msg/s ({:.1} MiB/s), smtp-sink {best_sink:.0} \
                     msg/s ({:.1} MiB/s), ratio {:.2} (target >= 1.0)",
                    mib(best_ours),
                    mib(best_sink),
                    if best_sink > 0.0 {
                        best_ours / best_sink
                    } else {
                        0.0
                    }
                );
            }
            Err(e) => eprintln!("smtp_ingest: skipped, smtp-sink did not start: {e}"),
        }
        token.cancel();
        let _ = serve.join();
    } else {
        eprintln!("smtp_ingest: skipped, Postfix's smtp-source/smtp-sink are not installed");
    }
    idle_memory(idle);
}

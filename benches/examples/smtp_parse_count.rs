//! A fixed-iteration driver for the `smtp_parse` bench inputs, in two modes.
//!
//! Instruction counting: `valgrind --tool=callgrind target/release/examples/smtp_parse_count
//! <group> <n>`, where group is `commands`, `replies` or `ehlo` with `-ours` or `-theirs` (or
//! `cmd<i>-ours` / `cmd<i>-theirs` for one command line). The per-pass cost is the difference
//! of two runs with different `n`, divided by the difference of `n`.
//!
//! Wall clock: `smtp_parse_count ratio-<group> [rounds] [passes]` alternates short rounds of
//! both parsers in one process and prints the median of the per-round time ratios. On a shared
//! machine whose speed drifts, adjacent rounds see the same speed, so this ratio is steadier
//! than two criterion groups measured seconds apart.
#![allow(
    clippy::unwrap_used,
    reason = "a measurement driver on fixed, valid inputs"
)]

use std::hint::black_box;
use std::time::Instant;

use mailferry_wire::smtp::{Capabilities, Command, Reply, ReplyOptions};
use smtp_proto::{EhloResponse, Request, response::parser::ResponseReceiver};

#[path = "../benches/common/smtp_parse_inputs.rs"]
mod inputs;
use inputs::{COMMANDS, EHLO, REPLIES};

/// Our side takes the line without CRLF, as the framer delivers it: finding the LF is part of
/// the work, as it is inside smtp-proto's parser.
fn ours_command(l: &[u8]) -> bool {
    let end = memchr::memchr(b'\n', l).map_or(l.len(), |i| i.saturating_sub(1));
    Command::parse(&l[..end]).is_ok()
}

/// One pass of `group` over its inputs, consumed as the criterion bench consumes them; the
/// number of inputs accepted.
fn pass(group: &str, opts: &ReplyOptions) -> usize {
    let mut ok = 0usize;
    // One command line by index, for a per-line breakdown: `cmd3-ours`, `cmd3-theirs`.
    if let Some((i, side)) = group.strip_prefix("cmd").and_then(|g| g.split_once('-')) {
        let l = black_box(COMMANDS[i.parse::<usize>().unwrap()]);
        let accepted = match side {
            "ours" => ours_command(l),
            _ => Request::parse(&mut l.iter()).is_ok(),
        };
        return usize::from(black_box(accepted));
    }
    match group {
        "commands-ours" => {
            for l in black_box(COMMANDS) {
                ok += usize::from(black_box(ours_command(l)));
            }
        }
        "commands-theirs" => {
            for l in black_box(COMMANDS) {
                ok += usize::from(black_box(Request::parse(&mut l.iter()).is_ok()));
            }
        }
        "replies-ours" => {
            for r in black_box(REPLIES) {
                ok += usize::from(black_box(Reply::parse(r, opts).is_ok()));
            }
        }
        "replies-theirs" => {
            for r in black_box(REPLIES) {
                let res = ResponseReceiver::default().parse(&mut r.iter());
                ok += usize::from(black_box(res.is_ok()));
            }
        }
        "ehlo-ours" => {
            let caps = Reply::parse(black_box(EHLO), opts)
                .ok()
                .and_then(|r| Capabilities::from_ehlo(r).ok());
            ok += usize::from(black_box(caps.is_some()));
        }
        "ehlo-theirs" => {
            let res = EhloResponse::parse(&mut black_box(EHLO).iter());
            ok += usize::from(black_box(res.is_ok()));
        }
        other => panic!("unknown group {other}"),
    }
    ok
}

/// Nanoseconds per pass over `passes` passes.
fn timed(group: &str, passes: usize, opts: &ReplyOptions) -> f64 {
    let start = Instant::now();
    let mut ok = 0usize;
    for _ in 0..passes {
        ok += pass(group, opts);
    }
    assert!(ok > 0, "{group} accepted nothing");
    start.elapsed().as_nanos() as f64 / passes as f64
}

fn median(v: &mut [f64], q: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) * q / 4]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let group = args.get(1).map_or("commands-ours", String::as_str);
    let opts = ReplyOptions::default();
    if let Some(g) = group.strip_prefix("ratio-") {
        let rounds: usize = args.get(2).map_or(401, |s| s.parse().unwrap());
        let passes: usize = args.get(3).map_or(2_000, |s| s.parse().unwrap());
        let (ours, theirs) = (format!("{g}-ours"), format!("{g}-theirs"));
        let (mut o, mut t, mut r) = (Vec::new(), Vec::new(), Vec::new());
        // A warm-up round for each, not counted.
        timed(&ours, passes, &opts);
        timed(&theirs, passes, &opts);
        for _ in 0..rounds {
            let a = timed(&ours, passes, &opts);
            let b = timed(&theirs, passes, &opts);
            o.push(a);
            t.push(b);
            r.push(b / a);
        }
        println!(
            "{g}: ours {:.0} ns/pass, theirs {:.0} ns/pass (medians); throughput ratio {:.3} \
             (median of {rounds} paired rounds, quartiles {:.3}-{:.3})",
            median(&mut o, 2),
            median(&mut t, 2),
            median(&mut r, 2),
            median(&mut r, 1),
            median(&mut r, 3),
        );
        return;
    }
    let n: usize = args.get(2).map_or(1, |s| s.parse().unwrap());
    let mut ok = 0usize;
    for _ in 0..n {
        ok += pass(group, &opts);
    }
    println!("{group} x{n}: {ok} accepted");
}

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

use mailferry_wire::smtp::ReplyOptions;

#[path = "../benches/common/smtp_parse_inputs.rs"]
mod inputs;
use inputs::{
    COMMANDS, EHLO, REPLIES, ours_command, ours_ehlo, ours_reply, theirs_command, theirs_ehlo,
    theirs_reply,
};

/// One pass of `group` over its inputs, each result consumed as the criterion bench consumes
/// it; the number of inputs accepted.
fn pass(group: &str, opts: &ReplyOptions) -> usize {
    // One command line by index, for a per-line breakdown: `cmd3-ours`, `cmd3-theirs`.
    if let Some((i, side)) = group.strip_prefix("cmd").and_then(|g| g.split_once('-')) {
        let l = black_box(COMMANDS[i.parse::<usize>().unwrap()]);
        let accepted = match side {
            "ours" => ours_command(l),
            _ => theirs_command(l),
        };
        return usize::from(black_box(accepted));
    }
    match group {
        "commands-ours" => count(COMMANDS, ours_command),
        "commands-theirs" => count(COMMANDS, theirs_command),
        "replies-ours" => count(REPLIES, |r| ours_reply(r, opts)),
        "replies-theirs" => count(REPLIES, theirs_reply),
        "ehlo-ours" => count(&[EHLO], |r| ours_ehlo(r, opts)),
        "ehlo-theirs" => count(&[EHLO], theirs_ehlo),
        other => panic!("unknown group {other}"),
    }
}

/// How many of `inputs` `side` accepts; each call's result kept from the optimiser. Generic, so
/// each side's call is inlined as in the criterion bench, not made through a pointer.
fn count(inputs: &[&[u8]], side: impl Fn(&[u8]) -> bool) -> usize {
    black_box(inputs)
        .iter()
        .map(|i| usize::from(black_box(side(i))))
        .sum()
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

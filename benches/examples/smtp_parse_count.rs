//! A fixed-iteration driver for the `smtp_parse` bench inputs, for instruction counting:
//! `valgrind --tool=callgrind target/release/examples/smtp_parse_count <group> <n>`, where
//! group is `commands`, `replies` or `ehlo` with `-ours` or `-theirs`. The per-iteration cost
//! is the difference of two runs with different `n`, divided by the difference of `n`.
#![allow(
    clippy::unwrap_used,
    reason = "a measurement driver on fixed, valid inputs"
)]

use std::hint::black_box;

use mailferry_wire::smtp::{Capabilities, Command, Reply, ReplyOptions};
use smtp_proto::{EhloResponse, Request, response::parser::ResponseReceiver};

#[path = "../benches/common/smtp_parse_inputs.rs"]
mod inputs;
use inputs::{COMMANDS, EHLO, REPLIES};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let group = args.get(1).map_or("commands-ours", String::as_str);
    let n: usize = args.get(2).map_or(1, |s| s.parse().unwrap());
    let opts = ReplyOptions::default();
    let mut ok = 0usize;
    // One command line by index, for a per-line breakdown: `cmd3-ours`, `cmd3-theirs`.
    if let Some((i, side)) = group.strip_prefix("cmd").and_then(|g| g.split_once('-')) {
        let l = COMMANDS[i.parse::<usize>().unwrap()];
        for _ in 0..n {
            if side == "ours" {
                let end = memchr::memchr(b'\n', l).map_or(l.len(), |i| i.saturating_sub(1));
                ok += usize::from(black_box(Command::parse(black_box(&l[..end]))).is_ok());
            } else {
                ok += usize::from(black_box(Request::parse(&mut black_box(l).iter())).is_ok());
            }
        }
        println!("{group} x{n}: {ok} accepted");
        return;
    }
    for _ in 0..n {
        match group {
            "commands-ours" => {
                for l in black_box(COMMANDS) {
                    let end = memchr::memchr(b'\n', l).map_or(l.len(), |i| i.saturating_sub(1));
                    ok += usize::from(black_box(Command::parse(&l[..end])).is_ok());
                }
            }
            "commands-theirs" => {
                for l in black_box(COMMANDS) {
                    ok += usize::from(black_box(Request::parse(&mut l.iter())).is_ok());
                }
            }
            "replies-ours" => {
                for r in black_box(REPLIES) {
                    ok += usize::from(black_box(Reply::parse(r, &opts)).is_ok());
                }
            }
            "replies-theirs" => {
                for r in black_box(REPLIES) {
                    let res = ResponseReceiver::default().parse(&mut r.iter());
                    ok += usize::from(black_box(res).is_ok());
                }
            }
            "ehlo-ours" => {
                let caps = Reply::parse(black_box(EHLO), &opts)
                    .ok()
                    .and_then(|r| Capabilities::from_ehlo(r).ok());
                ok += usize::from(black_box(caps).is_some());
            }
            "ehlo-theirs" => {
                let res = EhloResponse::parse(&mut black_box(EHLO).iter());
                ok += usize::from(black_box(res).is_ok());
            }
            other => panic!("unknown group {other}"),
        }
    }
    println!("{group} x{n}: {ok} accepted");
}

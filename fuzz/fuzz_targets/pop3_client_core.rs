//! The POP3 client core fed arbitrary server bytes, after a fixed login prefix and a fixed
//! pipelined command sequence (STAT, LIST, LIST 1, UIDL, UIDL 1, RETR 1, TOP 1 0, DELE 1, RSET,
//! NOOP, QUIT).
//!
//! Invariants: no panic; every failure is one typed `ConnectionLost`, the last event; body
//! chunks are never empty and never add up to more than the input; the event sequence does not
//! depend on how the input is cut into reads (all commands are in flight at once, so the cuts
//! are the only variable); the output is exactly the commands that were due.
#![no_main]

use std::num::NonZeroU32;
use std::time::Instant;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mailferry_pop3_client::proto::{Client, Event, Options};
use mailferry_wire::pop3::{Command, Pop3Arg, Pop3Password};
use mailferry_wire::tls::ChannelSecurity;

/// The login replies, one read each: login is lock-step, so each is due only after the last.
const PREFIX: [&[u8]; 4] = [
    b"+OK hi <1.2@h>\r\n",
    b"+OK\r\nPIPELINING\r\nTOP\r\n.\r\n",
    b"+OK\r\n",
    b"+OK\r\n",
];

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

fn run(chunks: &[&[u8]], options: &Options) -> (Vec<Event>, Vec<u8>) {
    let now = Instant::now();
    let mut c = Client::new(options.clone(), ChannelSecurity::Plaintext, now);
    let mut out = BytesMut::new();
    c.submit(Command::Capa, now)
        .expect("CAPA is always allowed");
    c.submit(Command::User(Pop3Arg::try_from("u").expect("valid")), now)
        .expect("auth state");
    c.submit(
        Command::Pass(Pop3Password::try_from("p").expect("valid")),
        now,
    )
    .expect("auth");
    for reply in PREFIX {
        c.handle_input(reply, now);
    }
    for command in [
        Command::Stat,
        Command::List(None),
        Command::List(Some(one())),
        Command::Uidl(None),
        Command::Uidl(Some(one())),
        Command::Retr(one()),
        Command::Top {
            msg: one(),
            lines: 0,
        },
        Command::Dele(one()),
        Command::Rset,
        Command::Noop,
        Command::Quit,
    ] {
        c.submit(command, now)
            .expect("transaction state after the prefix");
    }
    c.poll_transmit(&mut out);
    let mut events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    for chunk in chunks {
        c.handle_input(chunk, now);
        c.poll_transmit(&mut out);
        events.extend(std::iter::from_fn(|| c.poll_event()));
    }
    c.handle_eof();
    events.extend(std::iter::from_fn(|| c.poll_event()));
    // Merge adjacent chunks of one body: their boundaries follow the reads.
    let mut merged: Vec<Event> = Vec::new();
    for e in events {
        if let (Some(Event::BodyChunk { id: a, chunk: acc }), Event::BodyChunk { id: b, chunk }) =
            (merged.last_mut(), &e)
            && a == b
        {
            *acc = [&acc[..], &chunk[..]].concat().into();
            continue;
        }
        merged.push(e);
    }
    (merged, out.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let mut options = Options::default();
    options.max_body_size = Some(4096);
    options.wire.max_listing_entries = 16;
    let (whole, sent) = run(&[input], &options);
    let expected: &[u8] =
        b"CAPA\r\nUSER u\r\nPASS p\r\nSTAT\r\nLIST\r\nLIST 1\r\nUIDL\r\nUIDL 1\r\n\
RETR 1\r\nTOP 1 0\r\nDELE 1\r\nRSET\r\nNOOP\r\nQUIT\r\n";
    assert_eq!(sent, expected, "exactly the commands due, once each");
    let lost = whole
        .iter()
        .filter(|e| matches!(e, Event::ConnectionLost(_)))
        .count();
    assert!(lost <= 1);
    if lost == 1 {
        assert!(matches!(whole.last(), Some(Event::ConnectionLost(_))));
    }
    let body: usize = whole
        .iter()
        .map(|e| match e {
            Event::BodyChunk { chunk, .. } => {
                assert!(!chunk.is_empty());
                chunk.len()
            }
            _ => 0,
        })
        .sum();
    assert!(body <= input.len());
    // Cut the input at pseudo-random points derived from the seed.
    let mut chunks = Vec::new();
    let mut rest = input;
    let mut state = u32::from(seed) | 1;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let take = (state >> 16) as usize % 9 + 1;
        let (head, tail) = rest.split_at(take.min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    let (split, _) = run(&chunks, &options);
    assert_eq!(whole, split, "events depend on how the input was cut");
});

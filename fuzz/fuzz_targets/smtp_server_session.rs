//! The SMTP server session fed arbitrary chunked input and timer events, the chunking, timer
//! ticks, TLS completions, shutdowns and option switches all derived from the fuzz bytes.
//!
//! Invariants: no panic; every reply line ends in CRLF and fits 512 octets; never two replies
//! to one command (the session's owed-reply count is 0 after every step, since decisions are
//! answered at once); the input buffer stays within the line limit plus one chunk; exactly one
//! `Closed` event, the last one.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mailferry_sasl::{CredentialStore, Secret, Verdict};
use mailferry_smtp_server::fuzzing;
use mailferry_smtp_server::proto::{
    ConnectionInfo, Event, Options, Session, SharedStore, WallClock,
};
use mailferry_wire::smtp::{Reply, ReplyOptions};
use mailferry_wire::tls::ChannelSecurity;

struct Store;

impl CredentialStore for Store {
    fn verify_password(&self, user: &str, pw: &Secret<String>, _: Option<&str>) -> Verdict {
        if user == "u" && pw.expose() == "p" {
            Verdict::Accept
        } else {
            Verdict::Reject
        }
    }
}

fn check_output(out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        let lf = rest
            .iter()
            .position(|&b| b == b'\n')
            .expect("every reply line ends in CRLF");
        assert!(lf >= 1 && rest[lf - 1] == b'\r', "line ends in CRLF");
        assert!(lf + 1 <= 512, "reply line over 512 octets");
        assert!(!rest[..lf - 1].contains(&b'\r'), "no bare CR in a reply");
        rest = &rest[lf + 1..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut data)) = data.split_first() else {
        return;
    };
    let mut options = Options::default();
    options.pipelining = flags & 1 != 0;
    options.auth_requires_tls = flags & 2 == 0;
    options.chunking = flags & 4 != 0;
    options.max_message_size = if flags & 8 != 0 { 64 } else { 0 };
    options.max_hop_count = 2;
    options.min_data_rate = u64::from(flags >> 6) * 10;
    options.add_date_header = flags & 16 != 0;
    options.vrfy = flags & 32 != 0;
    let max_line = options.max_auth_line.max(options.max_command_line);
    let t0 = Instant::now();
    let mut now = t0;
    let info = ConnectionInfo {
        peer: "192.0.2.1".parse().expect("valid"),
        time: WallClock::utc(1_700_000_000),
        security: ChannelSecurity::Plaintext,
    };
    let store: SharedStore = Arc::new(Store);
    let mut s = Session::new(Arc::new(options), Some(store), info, now);
    let refuse = Reply::parse(b"550 5.1.1 no\r\n", &ReplyOptions::default()).expect("valid");
    let mut tls_pending = false;
    let mut closed = 0;
    loop {
        // Drain: answer every decision at once, check the output.
        loop {
            let mut out = BytesMut::new();
            s.poll_transmit(&mut out);
            check_output(&out);
            let Some(e) = s.poll_event() else { break };
            assert_eq!(closed, 0, "no event after Closed");
            match e {
                Event::Connect { id, .. }
                | Event::Helo { id, .. }
                | Event::MailFrom { id, .. }
                | Event::DataEnd { id, .. }
                | Event::Vrfy { id, .. } => s.accept(id).expect("pending"),
                Event::RcptTo { id, to, .. } => {
                    if to.as_str().contains('x') {
                        s.respond(id, refuse.clone()).expect("pending");
                    } else {
                        s.accept(id).expect("pending");
                    }
                }
                Event::MessageChunk(c) => assert!(!c.is_empty()),
                Event::StartTls { .. } => tls_pending = true,
                Event::Closed(_) => closed += 1,
                _ => {}
            }
        }
        assert_eq!(fuzzing::owed(&s), 0, "one reply per command");
        let Some((&op, rest)) = data.split_first() else {
            break;
        };
        data = rest;
        match op {
            0..=199 => {
                let n = (usize::from(op) % 64 + 1).min(data.len());
                let (chunk, rest) = data.split_at(n);
                data = rest;
                s.handle_input(chunk, now);
                assert!(
                    s.buffered() <= max_line + chunk.len(),
                    "input buffer bounded"
                );
            }
            200..=239 => {
                now += Duration::from_secs(u64::from(op - 200) * 30);
                s.handle_timeout(now);
            }
            240 => {
                if tls_pending && closed == 0 {
                    s.handle_tls_established(ChannelSecurity::TlsUnverified, now)
                        .expect("STARTTLS pending");
                    tls_pending = false;
                }
            }
            241 => s.shutdown(),
            _ => s.handle_eof(),
        }
    }
    assert!(closed <= 1);
});

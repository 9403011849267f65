//! The SMTP client core fed arbitrary server bytes in arbitrary chunks across a whole session
//! (greeting, EHLO, STARTTLS, AUTH PLAIN, pipelined transactions, QUIT).
//!
//! Invariants: no panic; at most one `ConnectionLost`, and nothing after it; a body is never
//! requested outside the body phase; output per input stays bounded.

#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mailferry_sasl::{ClientOptions, ClientSession, Credentials, Mechanism};
use mailferry_smtp_client::proto::{Client, Envelope, Event, Options, StartTlsOutcome};
use mailferry_wire::tls::ChannelSecurity;
use mailferry_wire::types::Domain;

fn run(input: &[u8], cuts: &[u8]) -> (Vec<String>, Vec<u8>) {
    let start = Instant::now();
    let mut now = start;
    let mut c = Client::new(Options::default(), ChannelSecurity::Plaintext, now);
    let domain = Domain::try_from("client.example").unwrap();
    let envelope = Envelope::from_strs("a@x.test", &["b@x.test", "c@x.test"]).unwrap();
    let creds = Credentials::new("u").with_password("p");
    let mut events = Vec::new();
    let mut out = BytesMut::new();
    let mut lost = false;
    let mut rest = input;
    let mut i = 0;
    let mut tls_done = false;
    let mut authed = false;
    let mut txns = 0;
    while !rest.is_empty() {
        let n = (cuts.get(i % cuts.len().max(1)).copied().unwrap_or(255) as usize % 64 + 1)
            .min(rest.len());
        i += 1;
        now += Duration::from_secs(1);
        c.handle_input(&rest[..n], now);
        rest = &rest[n..];
        while let Some(e) = c.poll_event() {
            assert!(!lost, "event after ConnectionLost: {e:?}");
            match &e {
                Event::Greeting(_) => {
                    let _ = c.ehlo(&domain, true, now);
                }
                Event::Ehlo { .. } => {
                    let caps = c.capabilities().cloned();
                    if let Some(caps) = caps {
                        if caps.starttls && !tls_done {
                            let _ = c.starttls(now);
                        } else if caps.has_auth() && !authed {
                            authed = true;
                            let s = ClientSession::new(
                                Mechanism::Plain,
                                &creds,
                                &ClientOptions::default(),
                            )
                            .unwrap();
                            let _ = c.auth(s, now);
                        } else {
                            let _ = c.start_transaction(&envelope, now);
                        }
                    }
                }
                Event::StartTls { outcome, .. } => {
                    tls_done = true;
                    if *outcome == StartTlsOutcome::Ready {
                        // Fails only when a later reply in the same read already broke the
                        // connection (DataBeforeTls).
                        if c.handle_tls_established(ChannelSecurity::TlsVerified, now)
                            .is_ok()
                        {
                            c.ehlo(&domain, false, now).unwrap();
                        }
                    } else {
                        let _ = c.start_transaction(&envelope, now);
                    }
                }
                Event::Auth { .. } => {
                    let _ = c.start_transaction(&envelope, now);
                }
                Event::ReadyForBody { .. } => {
                    // Events are queued: a fatal error later in the same read may already have
                    // closed the connection.
                    if c.wants_body() {
                        c.body_chunk(b"Subject: x\r\n\r\n.body\r\n", now).unwrap();
                        c.finish_body(now).unwrap();
                    } else {
                        assert!(c.is_closed());
                    }
                }
                Event::TransactionDone { report, .. } => {
                    assert_eq!(report.recipients.len(), 2);
                    txns += 1;
                    if txns < 3 {
                        let _ = c.start_transaction(&envelope, now);
                    } else {
                        let _ = c.quit(now);
                    }
                }
                Event::ConnectionLost(_) => lost = true,
                _ => {}
            }
            events.push(format!("{e:?}"));
        }
        let before = out.len();
        c.poll_transmit(&mut out);
        // Each reply releases at most a bounded amount of output (the biggest is a pipelined
        // transaction with its RSET, or a body).
        assert!(out.len() - before <= 4096 * (n + 1));
        if lost {
            assert!(c.is_closed());
        }
    }
    c.handle_timeout(now + Duration::from_secs(3600));
    while let Some(e) = c.poll_event() {
        assert!(!lost, "event after ConnectionLost: {e:?}");
        if matches!(e, Event::ConnectionLost(_)) {
            lost = true;
        }
        events.push(format!("{e:?}"));
    }
    let _ = start;
    (events, out.to_vec())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let ncuts = (data[0] as usize % 16).min(data.len() - 1);
    let (cuts, input) = data[1..].split_at(ncuts);
    // No whole-vs-chunked comparison here: in an interactive session the cuts decide which
    // replies arrive before the command they answer (unsolicited, hence fatal). Reply-level
    // split invariance is a unit test (proto::tests::*_split_point_invariant).
    let _ = run(input, cuts);
});

//! RFC example sessions (RFC 1939 §10, RFC 2449 §5/§8, RFC 5034 §4/§7 with RFC 2595 STLS) replayed
//! against the core: every client line must come out byte for byte, whether the server's lines
//! arrive whole or one byte at a time.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is a failed test

use std::time::Instant;

use bytes::BytesMut;
use mailferry_pop3_client::proto::{Client, Event, Options, Response};
use mailferry_sasl::{ApopTimestamp, ClientOptions, ClientSession, Credentials, Mechanism};
use mailferry_sasl::{Secret, apop_digest};
use mailferry_wire::pop3::{ApopDigest, Command, Pop3Arg, RespCodeKind};
use mailferry_wire::tls::ChannelSecurity;

/// Replays `transcript`; `byte_by_byte` feeds each server group one octet per call. Returns
/// every event.
fn replay(transcript: &str, byte_by_byte: bool, sasl: &mut Option<ClientSession>) -> Vec<Event> {
    let now = Instant::now();
    let mut client = Client::new(Options::default(), ChannelSecurity::Plaintext, now);
    let mut events = Vec::new();
    let mut server = Vec::new();
    let mut greeting_text = None;
    let mut challenge_pending = None;
    let drain = |client: &mut Client, server: &mut Vec<u8>, events: &mut Vec<Event>| {
        if byte_by_byte {
            for b in server.iter() {
                client.handle_input(std::slice::from_ref(b), now);
            }
        } else {
            client.handle_input(server, now);
        }
        server.clear();
        while let Some(e) = client.poll_event() {
            events.push(e);
        }
    };
    for line in transcript.lines() {
        if let Some(s) = line.strip_prefix("S: ") {
            server.extend_from_slice(s.as_bytes());
            server.extend_from_slice(b"\r\n");
            continue;
        }
        drain(&mut client, &mut server, &mut events);
        for e in &events {
            match e {
                Event::Greeting(g) => greeting_text = g.apop_timestamp.clone(),
                Event::AuthChallenge { challenge, .. } => {
                    challenge_pending = Some(challenge.clone().unwrap());
                }
                Event::Completed { .. } => challenge_pending = None,
                _ => {}
            }
        }
        if let Some(c) = line.strip_prefix("C: ") {
            if let Some(challenge) = challenge_pending.take() {
                // The answer comes from the SASL mechanism, not from the transcript.
                let session = sasl.as_mut().unwrap();
                let response = session.step(&challenge).unwrap();
                client.auth_respond(response.expose(), now).unwrap();
            } else {
                let command = build(c, greeting_text.as_ref(), sasl);
                client.submit(command, now).unwrap();
            }
            let mut out = BytesMut::new();
            client.poll_transmit(&mut out);
            assert_eq!(
                out.escape_ascii().to_string(),
                format!("{c}\r\n").as_bytes().escape_ascii().to_string(),
                "client line"
            );
        } else if line == "-- TLS" {
            client.handle_tls_established(ChannelSecurity::TlsVerified, now);
        } else if line == "-- EOF" {
            client.handle_eof();
        }
    }
    while let Some(e) = client.poll_event() {
        events.push(e);
    }
    events
}

/// The command for a transcript's client line: APOP and AUTH are computed (digest, SASL
/// initial response) from the credentials the RFC names, the rest parsed from the line.
fn build(line: &str, ts: Option<&ApopTimestamp>, sasl: &mut Option<ClientSession>) -> Command {
    if line.starts_with("APOP mrose ") {
        let digest = apop_digest(ts.unwrap(), &Secret::new("tanstaaf".to_owned()));
        return Command::Apop {
            name: Pop3Arg::try_from("mrose").unwrap(),
            digest: ApopDigest::try_from(digest.expose().as_str()).unwrap(),
        };
    }
    if line.starts_with("AUTH PLAIN") {
        let creds = Credentials::new("test")
            .with_password("test")
            .with_authzid("test");
        let mut session =
            ClientSession::new(Mechanism::Plain, &creds, &ClientOptions::default()).unwrap();
        let initial_response = if line.len() > "AUTH PLAIN".len() {
            let ir = session.initial_response().unwrap().unwrap();
            let text = mailferry_sasl::framing::encode_initial_response(ir.expose());
            Some(text.expose().as_str().try_into().unwrap())
        } else {
            None
        };
        *sasl = Some(session);
        return Command::Auth {
            mechanism: "PLAIN".try_into().unwrap(),
            initial_response,
        };
    }
    Command::parse(line.as_bytes(), &Default::default()).unwrap()
}

fn run(transcript: &str) -> Vec<Event> {
    let whole = replay(transcript, false, &mut None);
    let bytes = replay(transcript, true, &mut None);
    let merge = |events: Vec<Event>| {
        let mut out: Vec<Event> = Vec::new();
        for e in events {
            if let (Some(Event::BodyChunk { chunk: acc, .. }), Event::BodyChunk { chunk, .. }) =
                (out.last_mut(), &e)
            {
                *acc = [&acc[..], &chunk[..]].concat().into();
                continue;
            }
            out.push(e);
        }
        out
    };
    let whole = merge(whole);
    assert_eq!(whole, merge(bytes), "split-point invariance");
    assert!(
        !whole.iter().any(|e| matches!(e, Event::ConnectionLost(_))),
        "{whole:#?}"
    );
    assert_eq!(whole.last(), Some(&Event::Closed));
    whole
}

#[test]
fn rfc1939_section10_session() {
    let events = run(include_str!("transcripts/rfc1939-s10.txt"));
    let bodies: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::BodyChunk { chunk, .. } => Some(chunk.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(
        bodies,
        vec![
            b"Subject: message 1\r\n\r\n.the POP3 server sends message 1\r\n".to_vec(),
            b"the POP3 server sends message 2\r\n".to_vec()
        ]
    );
    let listing = events.iter().find_map(|e| match e {
        Event::Completed {
            result: Ok(Response::ScanListing(l)),
            ..
        } => Some(l.clone()),
        _ => None,
    });
    assert_eq!(
        listing
            .unwrap()
            .iter()
            .map(|l| (l.msg.get(), l.size))
            .collect::<Vec<_>>(),
        vec![(1, 120), (2, 200)]
    );
}

#[test]
fn rfc2449_capa_resp_codes_and_uidl() {
    let events = run(include_str!("transcripts/rfc2449-capa.txt"));
    let caps = events.iter().find_map(|e| match e {
        Event::Completed {
            result: Ok(Response::Capabilities(c)),
            ..
        } => Some(c.clone()),
        _ => None,
    });
    let caps = caps.unwrap();
    assert!(caps.pipelining() && caps.top() && caps.uidl() && caps.resp_codes());
    let codes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Completed { result: Err(s), .. } => s.code().map(|c| c.kind()),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![RespCodeKind::InUse, RespCodeKind::SysPerm]);
}

#[test]
fn rfc5034_auth_after_stls() {
    let mut sasl = None;
    let events = replay(
        include_str!("transcripts/rfc5034-auth.txt"),
        false,
        &mut sasl,
    );
    assert_eq!(events.last(), Some(&Event::Closed));
    let codes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Completed { result: Err(s), .. } => s.code().map(|c| c.kind()),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![RespCodeKind::Auth]);
}

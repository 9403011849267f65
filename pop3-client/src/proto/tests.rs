use std::time::{Duration, Instant};

use bytes::BytesMut;
use mailferry_wire::pop3::{Command, Pop3Arg, Pop3Error, Pop3Password, RespCodeKind};
use mailferry_wire::testing::assert_split_invariant;

use super::*;

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

struct H {
    c: Client,
    now: Instant,
}

impl H {
    fn new(options: Options) -> H {
        let now = Instant::now();
        H {
            c: Client::new(options, ChannelSecurity::Plaintext, now),
            now,
        }
    }

    /// Greeted, logged in with USER/PASS, with the given CAPA lines read first.
    fn logged_in(capa: &[&str], options: Options) -> H {
        let mut h = H::new(options);
        h.feed(b"+OK ready\r\n");
        h.submit(Command::Capa);
        let mut resp = String::from("+OK\r\n");
        for line in capa {
            resp.push_str(line);
            resp.push_str("\r\n");
        }
        resp.push_str(".\r\n");
        h.feed(resp.as_bytes());
        h.submit(Command::User(Pop3Arg::try_from("u").unwrap()));
        h.feed(b"+OK\r\n");
        h.submit(Command::Pass(Pop3Password::try_from("p").unwrap()));
        h.feed(b"+OK\r\n");
        h.sent();
        h.events();
        h
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.c.handle_input(bytes, self.now);
    }

    fn submit(&mut self, command: Command) -> CommandId {
        self.c.submit(command, self.now).unwrap()
    }

    fn sent(&mut self) -> Vec<u8> {
        let mut buf = BytesMut::new();
        self.c.poll_transmit(&mut buf);
        buf.to_vec()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.c.poll_event()).collect()
    }

    fn lost(&mut self) -> ProtocolError {
        let events = self.events();
        let lost: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::ConnectionLost(err) => Some(err.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(lost.len(), 1, "exactly one ConnectionLost in {events:?}");
        lost[0].clone()
    }
}

fn completed(events: &[Event]) -> Vec<(CommandId, CommandResult)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Completed { id, result } => Some((*id, result.clone())),
            _ => None,
        })
        .collect()
}

/// Events with adjacent body chunks of one command merged, so that runs over different splits
/// of the same input compare equal.
fn normalized(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for e in events {
        if let (
            Some(Event::BodyChunk {
                id: last,
                chunk: acc,
            }),
            Event::BodyChunk { id, chunk },
        ) = (out.last_mut(), &e)
            && last == id
        {
            let mut merged = acc.to_vec();
            merged.extend_from_slice(chunk);
            *acc = Bytes::from(merged);
            continue;
        }
        out.push(e);
    }
    out
}

#[test]
fn greeting_with_apop_timestamp() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
    let events = h.events();
    let Event::Greeting(g) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        g.apop_timestamp.as_ref().map(ApopTimestamp::as_str),
        Some("<1896.697170952@dbc.mtview.ca.us>")
    );
    assert_eq!(h.c.state(), SessionState::Authorization);
}

#[test]
fn malformed_apop_timestamp_offers_no_apop() {
    for greeting in [
        &b"+OK ready <no-at-sign>\r\n"[..],
        b"+OK ready <a@b@c>\r\n",
        b"+OK ready <@host>\r\n",
        b"+OK ready\r\n",
    ] {
        let mut h = H::new(Options::default());
        h.feed(greeting);
        let events = h.events();
        assert!(
            matches!(
                &events[..],
                [Event::Greeting(Greeting {
                    apop_timestamp: None,
                    ..
                })]
            ),
            "{greeting:?}: {events:?}"
        );
    }
}

#[test]
fn negative_greeting_is_fatal() {
    let mut h = H::new(Options::default());
    h.feed(b"-ERR [SYS/TEMP] go away\r\n");
    let ProtocolError::GreetingRefused(s) = h.lost() else {
        panic!()
    };
    assert_eq!(s.code().map(|c| c.kind()), Some(RespCodeKind::SysTemp));
}

#[test]
fn commands_wait_for_the_greeting() {
    let mut h = H::new(Options::default());
    let id = h.submit(Command::Capa);
    assert!(h.sent().is_empty());
    h.feed(b"+OK hi\r\n");
    assert_eq!(h.sent(), b"CAPA\r\n");
    assert_eq!(id.get(), 0);
}

#[test]
fn lock_step_without_pipelining() {
    let mut h = H::logged_in(&["TOP", "UIDL"], Options::default());
    let a = h.submit(Command::Stat);
    let b = h.submit(Command::Dele(n(1)));
    assert_eq!(h.sent(), b"STAT\r\n");
    h.feed(b"+OK 2 320\r\n");
    assert_eq!(h.sent(), b"DELE 1\r\n");
    h.feed(b"+OK deleted\r\n");
    let done = completed(&h.events());
    assert_eq!(
        done[0],
        (
            a,
            Ok(Response::Stat(Stat {
                count: 2,
                size: 320
            }))
        )
    );
    assert_eq!(done[1].0, b);
    assert!(!h.c.is_pipelining());
}

#[test]
fn pipelining_fills_the_window_in_one_write() {
    let options = Options {
        max_in_flight: 3,
        ..Options::default()
    };
    let mut h = H::logged_in(&["PIPELINING"], options);
    assert!(h.c.is_pipelining());
    let ids: Vec<_> = (1..=5).map(|i| h.submit(Command::Retr(n(i)))).collect();
    assert_eq!(h.sent(), b"RETR 1\r\nRETR 2\r\nRETR 3\r\n");
    h.feed(b"+OK\r\na\r\n.\r\n+OK\r\nb\r\n");
    assert_eq!(h.sent(), b"RETR 4\r\n");
    h.feed(b".\r\n");
    assert_eq!(h.sent(), b"RETR 5\r\n");
    h.feed(b"+OK\r\n..c\r\n.\r\n+OK\r\n.\r\n+OK\r\n.\r\n");
    let events = normalized(h.events());
    let chunks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::BodyChunk { id, chunk } => Some((*id, chunk.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(
        chunks,
        vec![
            (ids[0], b"a\r\n".to_vec()),
            (ids[1], b"b\r\n".to_vec()),
            (ids[2], b".c\r\n".to_vec())
        ]
    );
    let done: Vec<_> = completed(&events).into_iter().map(|(id, _)| id).collect();
    assert_eq!(done, ids);
}

#[test]
fn login_commands_are_never_pipelined() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    h.submit(Command::Capa);
    h.feed(b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n");
    h.submit(Command::User(Pop3Arg::try_from("u").unwrap()));
    h.submit(Command::Pass(Pop3Password::try_from("p").unwrap()));
    assert_eq!(h.sent(), b"CAPA\r\nUSER u\r\n");
    h.feed(b"+OK\r\n");
    assert_eq!(h.sent(), b"PASS p\r\n");
}

#[test]
fn rejects_bytes_buffered_before_tls() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    h.submit(Command::Stls);
    h.events();
    h.feed(b"+OK Begin TLS\r\n+OK [injected]\r\n");
    // The `+OK` is never reported as a success a caller could start a handshake on.
    assert_eq!(
        h.events(),
        vec![Event::ConnectionLost(ProtocolError::DataBeforeTls)]
    );
    // Sticky: nothing more happens.
    h.feed(b"+OK\r\n");
    assert!(h.events().is_empty());
    assert_eq!(h.c.submit(Command::Capa, h.now), Err(UsageError::Closed));
}

#[test]
fn rejects_bytes_arriving_after_stls_ok_in_a_later_read() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    h.submit(Command::Stls);
    h.feed(b"+OK Begin TLS\r\n");
    assert_eq!(h.c.state(), SessionState::AwaitingTls);
    h.feed(b"-");
    assert_eq!(h.lost(), ProtocolError::DataBeforeTls);
}

#[test]
fn partial_line_after_stls_ok_is_data_before_tls() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    h.submit(Command::Stls);
    h.feed(b"+OK Begin TLS\r\n+O");
    assert_eq!(h.lost(), ProtocolError::DataBeforeTls);
}

#[test]
fn capabilities_are_forgotten_after_tls() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    h.submit(Command::Capa);
    h.feed(b"+OK\r\nSTLS\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n");
    assert!(h.c.capabilities().is_some_and(|c| c.stls()));
    h.submit(Command::Stls);
    let queued = h.submit(Command::Capa);
    assert_eq!(h.sent(), b"CAPA\r\nSTLS\r\n");
    h.feed(b"+OK go\r\n");
    // Nothing leaves before the handshake.
    assert!(h.sent().is_empty());
    assert_eq!(h.c.capabilities(), None);
    h.c.handle_tls_established(ChannelSecurity::TlsVerified, h.now);
    assert_eq!(h.c.channel(), ChannelSecurity::TlsVerified);
    assert_eq!(h.sent(), b"CAPA\r\n");
    h.feed(b"+OK\r\nSASL PLAIN SCRAM-SHA-256\r\n.\r\n");
    let done = completed(&h.events());
    assert_eq!(done.last().unwrap().0, queued);
    assert!(!h.c.capabilities().unwrap().stls());
    assert_eq!(
        h.c.submit(Command::Stls, h.now),
        Err(UsageError::AlreadyTls)
    );
}

#[test]
fn usage_errors_leave_state_intact() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    assert_eq!(
        h.c.submit(Command::Retr(n(1)), h.now),
        Err(UsageError::WrongState {
            command: "RETR",
            state: SessionState::Authorization
        })
    );
    assert_eq!(h.c.auth_respond(b"x", h.now), Err(UsageError::NoChallenge));
    assert!(h.sent().is_empty());
    let mut h = H::logged_in(&[], Options::default());
    assert_eq!(
        h.c.submit(Command::User(Pop3Arg::try_from("x").unwrap()), h.now),
        Err(UsageError::WrongState {
            command: "USER",
            state: SessionState::Transaction
        })
    );
    let mut implicit = Client::new(Options::default(), ChannelSecurity::TlsVerified, h.now);
    implicit.handle_input(b"+OK\r\n", h.now);
    assert_eq!(
        implicit.submit(Command::Stls, h.now),
        Err(UsageError::AlreadyTls)
    );
    h.submit(Command::Quit);
    assert_eq!(h.c.submit(Command::Noop, h.now), Err(UsageError::Closed));
}

#[test]
fn unsolicited_line_is_fatal() {
    let mut h = H::logged_in(&[], Options::default());
    h.feed(b"+OK surprise\r\n");
    assert_eq!(h.lost(), ProtocolError::Unsolicited);
}

#[test]
fn malformed_status_lines_are_fatal() {
    let table: &[(&[u8], ProtocolError)] = &[
        (b"+OKAY\r\n", ProtocolError::Malformed(Pop3Error::BadStatus)),
        (b"+ok\r\n", ProtocolError::Malformed(Pop3Error::BadStatus)),
        (b"OK\r\n", ProtocolError::Malformed(Pop3Error::BadStatus)),
        (
            b"-ERR [IN-USE\r\n",
            ProtocolError::Malformed(Pop3Error::BadRespCode),
        ),
        (b"+OK x\n", ProtocolError::Framing(FrameError::BareLf)),
        (b"+OK \rx\r\n", ProtocolError::Framing(FrameError::BareCr)),
        (b"+OK 1\r\n", ProtocolError::Malformed(Pop3Error::BadStat)),
        (
            b"+OK -1 2\r\n",
            ProtocolError::Malformed(Pop3Error::BadNumber),
        ),
        (
            b"+OK 99999999999 2\r\n",
            ProtocolError::Malformed(Pop3Error::NumberOverflow),
        ),
    ];
    for (reply, want) in table {
        let mut h = H::logged_in(&[], Options::default());
        h.submit(Command::Stat);
        h.feed(reply);
        assert_eq!(&h.lost(), want, "{}", reply.escape_ascii());
    }
}

#[test]
fn over_long_status_line_is_fatal_and_bounded() {
    let mut h = H::logged_in(&[], Options::default());
    h.submit(Command::Noop);
    let mut line = b"+OK ".to_vec();
    line.resize(600, b'a');
    line.extend_from_slice(b"\r\n");
    h.feed(&line);
    assert_eq!(
        h.lost(),
        ProtocolError::Malformed(Pop3Error::LineTooLong { len: 602, max: 512 })
    );
    // A line longer than even the AUTH limit never gets buffered whole.
    let mut h = H::logged_in(&[], Options::default());
    h.submit(Command::Noop);
    h.feed(&vec![b'a'; 20_000]);
    assert_eq!(
        h.lost(),
        ProtocolError::Framing(FrameError::LineTooLong { max_len: 12_288 })
    );
}

#[test]
fn listings_are_checked() {
    let table: &[(&[u8], ProtocolError)] = &[
        (
            b"+OK\r\n1 10\r\n1 10\r\n.\r\n",
            ProtocolError::Malformed(Pop3Error::DuplicateMessageNumber(1)),
        ),
        (
            b"+OK\r\n2 10\r\n1 10\r\n.\r\n",
            ProtocolError::Malformed(Pop3Error::OutOfOrder {
                previous: 2,
                got: 1,
            }),
        ),
        (
            b"+OK\r\n0 10\r\n.\r\n",
            ProtocolError::Malformed(Pop3Error::ZeroMessageNumber),
        ),
        (
            b"+OK\r\n1\r\n.\r\n",
            ProtocolError::Malformed(Pop3Error::BadScanListing),
        ),
        (
            b"+OK\r\n1 x\r\n.\r\n",
            ProtocolError::Malformed(Pop3Error::BadNumber),
        ),
        (
            b"+OK\r\n1 10\r\n3 10\r\n.\r\n",
            ProtocolError::MessageOutOfRange { msg: 3, count: 2 },
        ),
    ];
    for (reply, want) in table {
        let mut h = H::logged_in(&[], Options::default());
        h.submit(Command::Stat);
        h.feed(b"+OK 2 20\r\n");
        h.submit(Command::List(None));
        h.feed(reply);
        assert_eq!(&h.lost(), want, "{}", reply.escape_ascii());
    }
}

#[test]
fn listing_size_is_bounded() {
    let mut options = Options::default();
    options.wire.max_listing_entries = 2;
    let mut h = H::logged_in(&[], options);
    h.submit(Command::Uidl(None));
    h.feed(b"+OK\r\n1 a\r\n2 b\r\n3 c\r\n.\r\n");
    assert_eq!(
        h.lost(),
        ProtocolError::Malformed(Pop3Error::TooManyEntries { max: 2 })
    );
}

#[test]
fn hostile_uids_are_refused() {
    let long = format!("+OK\r\n1 {}\r\n.\r\n", "u".repeat(71));
    for reply in [
        &b"+OK\r\n1 ../../etc/passwd x\r\n.\r\n"[..],
        b"+OK\r\n1 a\x7fb\r\n.\r\n",
        b"+OK\r\n1 a\x01b\r\n.\r\n",
        b"+OK\r\n1 \xc3\xa9\r\n.\r\n",
        long.as_bytes(),
    ] {
        let mut h = H::logged_in(&[], Options::default());
        h.submit(Command::Uidl(None));
        h.feed(reply);
        let err = h.lost();
        assert!(
            matches!(
                err,
                ProtocolError::Malformed(Pop3Error::BadUid | Pop3Error::BadUidListing)
            ),
            "{}: {err:?}",
            reply.escape_ascii()
        );
    }
}

#[test]
fn single_listings_must_name_the_message_asked_for() {
    let mut h = H::logged_in(&[], Options::default());
    h.submit(Command::List(Some(n(2))));
    h.feed(b"+OK 3 100\r\n");
    assert_eq!(
        h.lost(),
        ProtocolError::MessageNumberMismatch { asked: 2, got: 3 }
    );
    let mut h = H::logged_in(&[], Options::default());
    let id = h.submit(Command::Uidl(Some(n(2))));
    h.feed(b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n");
    let done = completed(&h.events());
    let Ok(Response::Uid(uid)) = &done[0].1 else {
        panic!("{done:?}")
    };
    assert_eq!((done[0].0, uid.uid.as_str()), (id, "QhdPYR:00WBw1Ph7x7"));
}

#[test]
fn body_is_unstuffed_and_ends_only_at_crlf_dot_crlf() {
    let mut h = H::logged_in(&[], Options::default());
    let id = h.submit(Command::Retr(n(1)));
    h.feed(b"+OK 40 octets\r\n..leading\r\nnot.end\r\n.x\r\nbare\n.\nstill\r\n.\r\n+OK");
    let events = normalized(h.events());
    assert_eq!(
        events[0],
        Event::BodyChunk {
            id,
            chunk: Bytes::from_static(b".leading\r\nnot.end\r\nx\r\nbare\n.\nstill\r\n"),
        }
    );
    let Event::Completed {
        result: Ok(Response::Body { octets, .. }),
        ..
    } = &events[1]
    else {
        panic!("{events:?}")
    };
    assert_eq!(*octets, 36);
    // "+OK" after the terminator belongs to the next reply: unsolicited here once complete.
    h.feed(b"\r\n");
    assert_eq!(h.lost(), ProtocolError::Unsolicited);
}

#[test]
fn body_over_the_size_limit_is_fatal() {
    let options = Options {
        max_body_size: Some(10),
        ..Options::default()
    };
    let mut h = H::logged_in(&[], options);
    h.submit(Command::Retr(n(1)));
    h.feed(b"+OK\r\n0123456789\r\n");
    assert_eq!(h.lost(), ProtocolError::BodyTooLarge { max: 10 });
}

#[test]
fn body_that_never_ends_times_out_when_idle() {
    let mut h = H::logged_in(&[], Options::default());
    h.submit(Command::Retr(n(1)));
    h.feed(b"+OK\r\nline\r\n");
    let deadline = h.c.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(120));
    // Progress pushes the deadline out.
    h.now += Duration::from_secs(100);
    h.feed(b"more\r\n");
    h.c.handle_timeout(deadline);
    assert!(!h.c.is_failed());
    h.now += Duration::from_secs(120);
    h.c.handle_timeout(h.now);
    assert_eq!(h.lost(), ProtocolError::Timeout(TimeoutKind::BodyIdle));
    assert_eq!(h.c.poll_timeout(), None);
}

#[test]
fn stalled_server_times_out() {
    let mut h = H::new(Options::default());
    h.c.handle_timeout(h.now + Duration::from_secs(59));
    assert!(!h.c.is_failed());
    h.c.handle_timeout(h.now + Duration::from_secs(60));
    assert_eq!(h.lost(), ProtocolError::Timeout(TimeoutKind::Greeting));

    let mut h = H::logged_in(&[], Options::default());
    assert_eq!(h.c.poll_timeout(), None, "idle: nothing awaited");
    h.now += Duration::from_secs(500);
    h.submit(Command::Noop);
    assert_eq!(h.c.poll_timeout(), Some(h.now + Duration::from_secs(120)));
    h.c.handle_timeout(h.now + Duration::from_secs(120));
    assert_eq!(h.lost(), ProtocolError::Timeout(TimeoutKind::Command));
}

#[test]
fn resp_codes_are_typed_values() {
    let table = [
        ("-ERR [IN-USE] locked\r\n", RespCodeKind::InUse),
        ("-ERR [LOGIN-DELAY] wait\r\n", RespCodeKind::LoginDelay),
        ("-ERR [SYS/TEMP] later\r\n", RespCodeKind::SysTemp),
        ("-ERR [SYS/PERM] never\r\n", RespCodeKind::SysPerm),
        ("-ERR [AUTH] wrong\r\n", RespCodeKind::Auth),
    ];
    for (reply, kind) in table {
        let mut h = H::new(Options::default());
        h.feed(b"+OK\r\n");
        let id = h.submit(Command::Pass(Pop3Password::try_from("p").unwrap()));
        h.feed(reply.as_bytes());
        let done = completed(&h.events());
        let (got, Err(status)) = &done[0] else {
            panic!("{done:?}")
        };
        assert_eq!((*got, status.code().map(|c| c.kind())), (id, Some(kind)));
        assert_eq!(h.c.state(), SessionState::Authorization);
    }
}

#[test]
fn auth_exchange_with_continuations() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    let id = h.submit(Command::Auth {
        mechanism: SaslMechanism::try_from("CRAM-MD5").unwrap(),
        initial_response: None,
    });
    assert_eq!(h.sent(), b"AUTH CRAM-MD5\r\n");
    h.events();
    h.feed(b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n");
    assert_eq!(
        h.events(),
        vec![Event::AuthChallenge {
            id,
            challenge: Ok(b"<1896.697170952@postoffice.reston.mci.net>".to_vec())
        }]
    );
    assert_eq!(h.c.poll_timeout(), None, "the application owes the answer");
    h.c.auth_respond(b"tim b913a602c7eda7a495b4e6e7334d3890", h.now)
        .unwrap();
    assert_eq!(
        h.sent(),
        b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n"
    );
    h.feed(b"+OK ready\r\n");
    assert!(matches!(&completed(&h.events())[0], (i, Ok(Response::Ok(_))) if *i == id));
    assert_eq!(h.c.state(), SessionState::Transaction);
}

#[test]
fn garbled_challenge_is_reported_and_cancel_sends_star() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    let id = h.submit(Command::Auth {
        mechanism: SaslMechanism::try_from("PLAIN").unwrap(),
        initial_response: None,
    });
    h.sent();
    h.events();
    h.feed(b"+ not*base64\r\n");
    assert_eq!(
        h.events(),
        vec![Event::AuthChallenge {
            id,
            challenge: Err(FramingError::InvalidBase64)
        }]
    );
    // A second challenge before our answer is a protocol violation... after the answer, fine.
    h.c.auth_cancel(h.now).unwrap();
    assert_eq!(h.sent(), b"*\r\n");
    h.feed(b"-ERR cancelled\r\n");
    assert!(matches!(&completed(&h.events())[0], (_, Err(_))));
    assert_eq!(h.c.state(), SessionState::Authorization);
}

#[test]
fn continuation_outside_auth_is_malformed() {
    let mut h = H::logged_in(&[], Options::default());
    h.submit(Command::Noop);
    h.feed(b"+ abcd\r\n");
    assert_eq!(h.lost(), ProtocolError::Malformed(Pop3Error::BadStatus));
}

#[test]
fn second_challenge_before_answer_is_unsolicited() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    h.submit(Command::Auth {
        mechanism: SaslMechanism::try_from("LOGIN").unwrap(),
        initial_response: None,
    });
    h.feed(b"+ \r\n+ \r\n");
    assert_eq!(h.lost(), ProtocolError::Unsolicited);
}

#[test]
fn bare_auth_lists_mechanisms() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    let id = h.submit(Command::AuthList);
    h.feed(b"+OK methods\r\nCRAM-MD5\r\nPLAIN\r\n.\r\n");
    let done = completed(&h.events());
    assert_eq!(
        done,
        vec![(
            id,
            Ok(Response::Mechanisms(vec![
                SaslMechanism::try_from("CRAM-MD5").unwrap(),
                SaslMechanism::try_from("PLAIN").unwrap()
            ]))
        )]
    );
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    h.submit(Command::AuthList);
    h.feed(b"+OK\r\nNOT A MECH\r\n.\r\n");
    assert_eq!(h.lost(), ProtocolError::Malformed(Pop3Error::BadCapability));
}

#[test]
fn capa_refused_is_a_value() {
    let mut h = H::new(Options::default());
    h.feed(b"+OK\r\n");
    let id = h.submit(Command::Capa);
    h.feed(b"-ERR unknown command\r\n");
    let done = completed(&h.events());
    assert!(matches!(&done[..], [(i, Err(_))] if *i == id));
    assert_eq!(h.c.capabilities(), None);
}

#[test]
fn quit_outcomes() {
    let mut h = H::logged_in(&[], Options::default());
    h.submit(Command::Dele(n(1)));
    let q = h.submit(Command::Quit);
    h.feed(b"+OK\r\n");
    assert_eq!(h.sent(), b"DELE 1\r\nQUIT\r\n");
    h.feed(b"+OK bye\r\n");
    h.c.handle_eof();
    let events = h.events();
    assert!(matches!(&completed(&events)[1], (i, Ok(Response::Ok(_))) if *i == q));
    assert_eq!(events.last(), Some(&Event::Closed));

    let mut h = H::logged_in(&[], Options::default());
    h.submit(Command::Quit);
    h.feed(b"-ERR [SYS/PERM] some deleted messages not removed\r\n");
    h.c.handle_eof();
    let events = h.events();
    let (_, Err(s)) = &completed(&events)[0] else {
        panic!("{events:?}")
    };
    assert_eq!(s.code().map(|c| c.kind()), Some(RespCodeKind::SysPerm));
    assert_eq!(events.last(), Some(&Event::Closed));

    let mut h = H::logged_in(&[], Options::default());
    h.submit(Command::Quit);
    h.c.handle_eof();
    assert_eq!(h.lost(), ProtocolError::UnexpectedEof);
}

#[test]
fn every_response_kind_is_split_invariant() {
    let cases: Vec<(Vec<Command>, &[u8])> = vec![
        (vec![Command::Stat], b"+OK 2 320\r\n"),
        (
            vec![Command::List(None)],
            b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n",
        ),
        (vec![Command::List(Some(n(2)))], b"+OK 2 200\r\n"),
        (
            vec![Command::Uidl(None)],
            b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n",
        ),
        (
            vec![Command::Uidl(Some(n(1)))],
            b"+OK 1 whqtswO00WBw418f9t5JxYwZ\r\n",
        ),
        (
            vec![Command::Retr(n(1))],
            b"+OK 12 octets\r\n..a\r\n\r\n.\r.\r\nb\r\n.\r\n",
        ),
        (
            vec![Command::Top {
                msg: n(1),
                lines: 0,
            }],
            b"+OK\r\nSubject: x\r\n\r\n.\r\n",
        ),
        (vec![Command::Dele(n(1))], b"-ERR [SYS/TEMP] no\r\n"),
        (
            vec![Command::Capa],
            b"+OK\r\nTOP\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n",
        ),
        (vec![Command::Noop, Command::Rset], b"+OK\r\n+OK\r\n"),
        (vec![Command::Quit], b"+OK bye\r\n"),
        (vec![Command::Stat], b"+OK 1 1\r\n+OK unsolicited\r\n"),
        (vec![Command::Uidl(None)], b"+OK\r\n1 a\r\n1 a\r\n.\r\n"),
    ];
    for (commands, reply) in cases {
        assert_split_invariant(reply, |chunks| {
            let mut h = H::logged_in(&["PIPELINING"], Options::default());
            for c in &commands {
                h.submit(c.clone());
            }
            for chunk in chunks {
                h.feed(chunk);
            }
            normalized(h.events())
        });
    }
    // The greeting and an AUTH continuation too.
    assert_split_invariant(b"+OK hi <1.2@h>\r\n", |chunks| {
        let mut h = H::new(Options::default());
        for chunk in chunks {
            h.feed(chunk);
        }
        h.events()
    });
    assert_split_invariant(b"+ PDE+\r\n", |chunks| {
        let mut h = H::new(Options::default());
        h.feed(b"+OK\r\n");
        h.submit(Command::Auth {
            mechanism: SaslMechanism::try_from("CRAM-MD5").unwrap(),
            initial_response: None,
        });
        for chunk in chunks {
            h.feed(chunk);
        }
        h.events()
    });
}

#[test]
fn lost_is_reported_once_and_then_everything_is_a_no_op() {
    let mut h = H::logged_in(&[], Options::default());
    h.feed(b"garbage\r\n");
    assert_eq!(h.lost(), ProtocolError::Unsolicited);
    h.c.handle_eof();
    h.c.handle_timeout(h.now + Duration::from_secs(10_000));
    h.c.handle_tls_established(ChannelSecurity::TlsVerified, h.now);
    h.feed(b"+OK\r\n");
    assert!(h.events().is_empty());
    assert!(h.sent().is_empty());
    assert_eq!(h.c.poll_timeout(), None);
    assert_eq!(h.c.state(), SessionState::Closing);
}

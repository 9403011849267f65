//! Core tests: RFC transcripts replayed byte-exactly, split-point invariance, misbehaving
//! servers (SECURITY.md, SMTP client classes), timeouts on a fake clock.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use mailferry_sasl::{AttemptOutcome, ClientOptions, ClientSession, Credentials, Mechanism};
use mailferry_wire::dot::EncodeError;
use mailferry_wire::framer::FrameError;
use mailferry_wire::smtp::{Body, Notify, ReplyError};
use mailferry_wire::tls::ChannelSecurity;
use mailferry_wire::types::{Domain, ForwardPath};

use super::*;

fn t0() -> Instant {
    // A fixed origin: every test runs on its own fake clock.
    Instant::now()
}

/// Drives a core; the test plays the server.
struct H {
    c: Client,
    now: Instant,
    events: Vec<Event>,
}

impl H {
    fn new() -> H {
        H::with(Options::default())
    }

    fn with(options: Options) -> H {
        let now = t0();
        H {
            c: Client::new(options, ChannelSecurity::Plaintext, now),
            now,
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(e) = self.c.poll_event() {
            self.events.push(e);
        }
    }

    fn server(&mut self, bytes: &[u8]) {
        self.c.handle_input(bytes, self.now);
        self.drain();
    }

    fn sent(&mut self) -> Vec<u8> {
        let mut out = BytesMut::new();
        self.c.poll_transmit(&mut out);
        out.to_vec()
    }

    fn take_events(&mut self) -> Vec<Event> {
        self.drain();
        std::mem::take(&mut self.events)
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.c.handle_timeout(self.now);
        self.drain();
    }

    /// Greeting and EHLO with the given capability lines (after the domain line).
    fn ready(options: Options, caps: &[&str]) -> H {
        let mut h = H::with(options);
        h.server(b"220 mx.example.net ESMTP\r\n");
        h.c.ehlo(&dom("client.example.org"), true, h.now).unwrap();
        assert_eq!(h.sent(), b"EHLO client.example.org\r\n");
        let mut reply = String::from("250");
        reply.push_str(if caps.is_empty() { " " } else { "-" });
        reply.push_str("mx.example.net\r\n");
        for (i, c) in caps.iter().enumerate() {
            let sep = if i + 1 == caps.len() { ' ' } else { '-' };
            reply.push_str(&format!("250{sep}{c}\r\n"));
        }
        h.server(reply.as_bytes());
        h.take_events();
        h
    }
}

fn dom(s: &str) -> Domain {
    Domain::try_from(s).unwrap()
}

fn fwd(s: &str) -> ForwardPath {
    ForwardPath::try_from(format!("<{s}>").as_str()).unwrap()
}

fn lost(events: &[Event]) -> Vec<ProtocolError> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ConnectionLost(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn report(events: &[Event]) -> DeliveryReport {
    events
        .iter()
        .find_map(|e| match e {
            Event::TransactionDone { report, .. } => Some(report.clone()),
            _ => None,
        })
        .expect("a TransactionDone event")
}

// ----- transcript replay -----

/// Replays an RFC transcript: consecutive `S:` lines are fed as one read; consecutive `C:` lines
/// must be exactly what the client sent since the previous read, byte for byte. `app` reacts to
/// each event (the application side of the example).
fn replay(transcript: &str, h: &mut H, mut app: impl FnMut(&mut Client, &Event, Instant)) {
    let mut blocks: Vec<(char, Vec<u8>)> = Vec::new();
    for line in transcript.lines() {
        let line = line.trim_start();
        if line.is_empty() {
            continue;
        }
        let (who, text) = line.split_at(2);
        let who = who.chars().next().unwrap();
        let text = text.strip_prefix(' ').unwrap_or(text);
        let mut bytes = text.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        match blocks.last_mut() {
            Some((w, b)) if *w == who => b.extend_from_slice(&bytes),
            _ => blocks.push((who, bytes)),
        }
    }
    for (who, bytes) in blocks {
        match who {
            'S' => {
                h.c.handle_input(&bytes, h.now);
                while let Some(e) = h.c.poll_event() {
                    app(&mut h.c, &e, h.now);
                    h.events.push(e);
                }
            }
            'C' => {
                let sent = h.sent();
                assert_eq!(
                    sent.escape_ascii().to_string(),
                    bytes.escape_ascii().to_string(),
                    "client output differs"
                );
            }
            _ => panic!("bad transcript line"),
        }
    }
    assert!(h.sent().is_empty(), "client sent more than the transcript");
}

/// The application half of the simple examples: EHLO, one transaction, QUIT.
fn simple_app(
    ehlo: &'static str,
    envelope: Envelope,
    body: &'static [u8],
) -> impl FnMut(&mut Client, &Event, Instant) {
    move |c, e, now| match e {
        Event::Greeting(_) => {
            c.ehlo(&dom(ehlo), true, now).unwrap();
        }
        Event::Ehlo { .. } => {
            c.start_transaction(&envelope, now).unwrap();
        }
        Event::ReadyForBody { .. } => {
            c.body_chunk(body, now).unwrap();
            c.finish_body(now).unwrap();
        }
        Event::TransactionDone { .. } => {
            c.quit(now).unwrap();
        }
        _ => {}
    }
}

const RFC5321_D1: &str = "
S: 220 foo.com Simple Mail Transfer Service Ready
C: EHLO bar.com
S: 250-foo.com greets bar.com
S: 250-8BITMIME
S: 250-SIZE
S: 250-DSN
S: 250 HELP
C: MAIL FROM:<Smith@bar.com>
S: 250 OK
C: RCPT TO:<Jones@foo.com>
S: 250 OK
C: RCPT TO:<Green@foo.com>
S: 550 No such user here
C: RCPT TO:<Brown@foo.com>
S: 250 OK
C: DATA
S: 354 Start mail input; end with <CRLF>.<CRLF>
C: Blah blah blah...
C: ...etc. etc. etc.
C: .
S: 250 OK
C: QUIT
S: 221 foo.com Service closing transmission channel
";

#[test]
fn rfc5321_d1_typical_transaction() {
    let mut h = H::new();
    let env = Envelope::from_strs(
        "Smith@bar.com",
        &["Jones@foo.com", "Green@foo.com", "Brown@foo.com"],
    )
    .unwrap();
    // The RFC shows the wire: "...etc." is the stuffed form of the message line "..etc.".
    let app = simple_app("bar.com", env, b"Blah blah blah...\r\n..etc. etc. etc.\r\n");
    replay(RFC5321_D1, &mut h, app);
    let r = report(&h.events);
    let statuses: Vec<_> = r.recipients.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            RecipientStatus::Delivered,
            RecipientStatus::Permanent,
            RecipientStatus::Delivered
        ]
    );
    assert_eq!(r.recipients[1].reply.code().as_u16(), 550);
    assert_eq!(r.recipients[1].reply.text(), "No such user here");
    assert_eq!(r.data_reply.as_ref().unwrap().code().as_u16(), 250);
    assert!(matches!(h.events.last(), Some(Event::Closed)));
}

const RFC5321_D3_HOP1: &str = "
S: 220 foo.com Simple Mail Transfer Service Ready
C: EHLO bar.com
S: 250-foo.com greets bar.com
S: 250-8BITMIME
S: 250-SIZE
S: 250-DSN
S: 250 HELP
C: MAIL FROM:<JQP@bar.com>
S: 250 OK
C: RCPT TO:<Jones@XYZ.COM>
S: 250 OK
C: DATA
S: 354 Start mail input; end with <CRLF>.<CRLF>
C: Date: Thu, 21 May 1998 05:33:29 -0700
C: From: John Q. Public <JQP@bar.com>
C: Subject: The Next Meeting of the Board
C: To: Jones@xyz.com
C:
C: Bill:
C: The next meeting of the board of directors will be
C: on Tuesday.
C: John.
C: .
S: 250 OK
C: QUIT
S: 221 foo.com Service closing transmission channel
";

const RFC5321_D3_HOP2: &str = "
S: 220 xyz.com Simple Mail Transfer Service Ready
C: EHLO foo.com
S: 250 xyz.com is on the air
C: MAIL FROM:<JQP@bar.com>
S: 250 OK
C: RCPT TO:<Jones@XYZ.COM>
S: 250 OK
C: DATA
S: 354 Start mail input; end with <CRLF>.<CRLF>
C: Received: from bar.com by foo.com ; Thu, 21 May 1998
C:     05:33:29 -0700
C: Date: Thu, 21 May 1998 05:33:29 -0700
C: From: John Q. Public <JQP@bar.com>
C: Subject:  The Next Meeting of the Board
C: To: Jones@xyz.com
C:
C: Bill:
C: The next meeting of the board of directors will be
C: on Tuesday.
C: John.
C: .
S: 250 OK
C: QUIT
S: 221 foo.com Service closing transmission channel
";

#[test]
fn rfc5321_d3_relayed_both_hops() {
    let env = || Envelope::from_strs("JQP@bar.com", &["Jones@XYZ.COM"]).unwrap();
    // The relay hands the message on with bare-LF line endings, as a file read from a Unix
    // spool would have them: the encoder restores CRLF.
    let body1: &[u8] = b"Date: Thu, 21 May 1998 05:33:29 -0700\nFrom: John Q. Public <JQP@bar.com>\nSubject: The Next Meeting of the Board\nTo: Jones@xyz.com\n\nBill:\nThe next meeting of the board of directors will be\non Tuesday.\nJohn.\n";
    let mut h = H::new();
    replay(RFC5321_D3_HOP1, &mut h, simple_app("bar.com", env(), body1));
    assert!(report(&h.events).is_accepted());

    let body2: &[u8] = b"Received: from bar.com by foo.com ; Thu, 21 May 1998\r\n    05:33:29 -0700\r\nDate: Thu, 21 May 1998 05:33:29 -0700\r\nFrom: John Q. Public <JQP@bar.com>\r\nSubject:  The Next Meeting of the Board\r\nTo: Jones@xyz.com\r\n\r\nBill:\r\nThe next meeting of the board of directors will be\r\non Tuesday.\r\nJohn.";
    let mut h = H::new();
    // The single-line EHLO reply of hop 2: no extensions at all.
    replay(RFC5321_D3_HOP2, &mut h, simple_app("foo.com", env(), body2));
    assert!(report(&h.events).is_accepted());
}

const RFC2920_SUCCESS: &str = "
S: 220 innosoft.com SMTP service ready
C: EHLO dbc.mtview.ca.us
S: 250-innosoft.com
S: 250 PIPELINING
C: MAIL FROM:<mrose@dbc.mtview.ca.us>
C: RCPT TO:<ned@innosoft.com>
C: RCPT TO:<dan@innosoft.com>
C: RCPT TO:<kvc@innosoft.com>
C: DATA
S: 250 sender <mrose@dbc.mtview.ca.us> OK
S: 250 recipient <ned@innosoft.com> OK
S: 250 recipient <dan@innosoft.com> OK
S: 250 recipient <kvc@innosoft.com> OK
S: 354 enter mail, end with line containing only \".\"
C: Hi.
C: .
C: QUIT
S: 250 message sent
S: 221 goodbye
";

const RFC2920_FAILURE: &str = "
S: 220 innosoft.com SMTP service ready
C: EHLO dbc.mtview.ca.us
S: 250-innosoft.com
S: 250 PIPELINING
C: MAIL FROM:<mrose@dbc.mtview.ca.us>
C: RCPT TO:<ned@innosoft.com>
C: RCPT TO:<dan@innosoft.com>
C: RCPT TO:<kvc@innosoft.com>
C: DATA
S: 250 sender <mrose@dbc.mtview.ca.us> OK
S: 550 remote mail to <ned@innosoft.com> not allowed
S: 550 remote mail to <dan@innosoft.com> not allowed
S: 550 remote mail to <kvc@innosoft.com> not allowed
S: 554 no valid recipients given
C: QUIT
S: 221 goodbye
";

fn rfc2920_envelope() -> Envelope {
    Envelope::from_strs(
        "mrose@dbc.mtview.ca.us",
        &["ned@innosoft.com", "dan@innosoft.com", "kvc@innosoft.com"],
    )
    .unwrap()
}

#[test]
fn rfc2920_pipelined_group_and_quit_behind_the_dot() {
    let mut h = H::new();
    let env = rfc2920_envelope();
    replay(RFC2920_SUCCESS, &mut h, move |c, e, now| match e {
        Event::Greeting(_) => {
            c.ehlo(&dom("dbc.mtview.ca.us"), true, now).unwrap();
        }
        Event::Ehlo { .. } => {
            c.start_transaction(&env, now).unwrap();
        }
        Event::ReadyForBody { .. } => {
            c.body_chunk(b"Hi.", now).unwrap();
            c.finish_body(now).unwrap();
            // RFC 2920 §3.1: QUIT rides behind the end of data.
            c.quit(now).unwrap();
        }
        _ => {}
    });
    let r = report(&h.events);
    assert_eq!(r.delivered().count(), 3);
    assert_eq!(r.data_reply.unwrap().text(), "message sent");
}

#[test]
fn rfc2920_no_valid_recipients_data_reply_matched() {
    let mut h = H::new();
    let env = rfc2920_envelope();
    replay(RFC2920_FAILURE, &mut h, move |c, e, now| match e {
        Event::Greeting(_) => {
            c.ehlo(&dom("dbc.mtview.ca.us"), true, now).unwrap();
        }
        Event::Ehlo { .. } => {
            c.start_transaction(&env, now).unwrap();
        }
        Event::TransactionDone { .. } => {
            // The 554 to the pipelined DATA was expected; QUIT resets, no RSET needed.
            c.quit(now).unwrap();
        }
        Event::ReadyForBody { .. } => panic!("no recipient was accepted"),
        _ => {}
    });
    let r = report(&h.events);
    assert!(!r.is_accepted());
    assert_eq!(r.permanent().count(), 3);
    assert_eq!(r.data_reply, None);
    assert_eq!(
        r.recipients[0].reply.text(),
        "remote mail to <ned@innosoft.com> not allowed"
    );
}

const RFC3207: &str = "
S: 220 mail.imc.org SMTP service ready
C: EHLO mail.example.com
S: 250-mail.imc.org offers a warm hug of welcome
S: 250-8BITMIME
S: 250-STARTTLS
S: 250 DSN
C: STARTTLS
S: 220 Go ahead
";

#[test]
fn rfc3207_starttls_then_ehlo_with_new_capabilities() {
    let mut h = H::new();
    replay(RFC3207, &mut h, |c, e, now| match e {
        Event::Greeting(_) => {
            c.ehlo(&dom("mail.example.com"), false, now).unwrap();
        }
        Event::Ehlo { outcome, .. } => {
            let EhloOutcome::Extended(caps) = outcome else {
                panic!("{outcome:?}")
            };
            assert!(caps.starttls && caps.dsn && caps.eight_bit_mime);
            c.starttls(now).unwrap();
        }
        _ => {}
    });
    assert!(matches!(
        h.events.last(),
        Some(Event::StartTls {
            outcome: StartTlsOutcome::Ready,
            ..
        })
    ));
    // <TLS negotiation>: the core forgets the plaintext capability list.
    h.c.handle_tls_established(ChannelSecurity::TlsVerified, h.now)
        .unwrap();
    assert_eq!(h.c.capabilities(), None);
    assert_eq!(h.c.channel(), ChannelSecurity::TlsVerified);
    h.c.ehlo(&dom("mail.example.com"), false, h.now).unwrap();
    assert_eq!(h.sent(), b"EHLO mail.example.com\r\n");
    h.server(
        b"250-mail.imc.org touches your hand gently for a moment\r\n250-8BITMIME\r\n250 DSN\r\n",
    );
    let caps = h.c.capabilities().unwrap();
    assert!(!caps.starttls);
    assert_eq!(caps.greeting(), "touches your hand gently for a moment");
}

const RFC4954_PLAIN: &str = "
S: 220 smtp.example.com ESMTP Server
C: EHLO client.example.com
S: 250-smtp.example.com Hello client.example.com
S: 250 AUTH GSSAPI DIGEST-MD5 PLAIN
C: AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ=
S: 235 2.7.0 Authentication successful
";

fn session(m: Mechanism, creds: &Credentials) -> ClientSession {
    ClientSession::new(m, creds, &ClientOptions::default()).unwrap()
}

#[test]
fn rfc4954_plain_with_initial_response() {
    let mut h = H::new();
    let creds = Credentials::new("test")
        .with_password("1234")
        .with_authzid("test");
    replay(RFC4954_PLAIN, &mut h, move |c, e, now| match e {
        Event::Greeting(_) => {
            c.ehlo(&dom("client.example.com"), false, now).unwrap();
        }
        Event::Ehlo { .. } => {
            c.auth(session(Mechanism::Plain, &creds), now).unwrap();
        }
        _ => {}
    });
    assert!(matches!(
        h.events.last(),
        Some(Event::Auth {
            outcome: AttemptOutcome::Succeeded,
            ..
        })
    ));
    assert!(h.c.is_authenticated());
}

// RFC 4954 §4's CRAM-MD5 exchange shape, with RFC 2195's known answer.
const RFC4954_CRAM: &str = "
S: 220 smtp.example.com ESMTP server ready
C: EHLO jgm.example.com
S: 250-smtp.example.com
S: 250 AUTH DIGEST-MD5 CRAM-MD5
C: AUTH CRAM-MD5
S: 334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+
C: dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw
S: 235 Authentication successful.
";

#[test]
fn rfc4954_cram_md5_challenge_response() {
    let mut h = H::new();
    let creds = Credentials::new("tim").with_password("tanstaaftanstaaf");
    replay(RFC4954_CRAM, &mut h, move |c, e, now| match e {
        Event::Greeting(_) => {
            c.ehlo(&dom("jgm.example.com"), false, now).unwrap();
        }
        Event::Ehlo { .. } => {
            c.auth(session(Mechanism::CramMd5, &creds), now).unwrap();
        }
        _ => {}
    });
    assert!(h.c.is_authenticated());
}

#[test]
fn auth_login_two_steps_and_rejection_is_typed() {
    let mut h = H::ready(Options::default(), &["AUTH LOGIN"]);
    let creds = Credentials::new("alice").with_password("secret");
    h.c.auth(session(Mechanism::Login, &creds), h.now).unwrap();
    assert_eq!(h.sent(), b"AUTH LOGIN\r\n");
    h.server(b"334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.sent(), b"YWxpY2U=\r\n");
    h.server(b"334 UGFzc3dvcmQ6\r\n");
    assert_eq!(h.sent(), b"c2VjcmV0\r\n");
    h.server(b"535 5.7.8 Authentication credentials invalid\r\n");
    let ev = h.take_events();
    let Event::Auth { outcome, reply, .. } = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        *outcome,
        AttemptOutcome::Smtp(mailferry_sasl::SmtpAuthReply {
            code: 535,
            enhanced: Some(mailferry_sasl::EnhancedCode::new(5, 7, 8)),
        })
    );
    assert_eq!(reply.code().as_u16(), 535);
    assert!(!h.c.is_authenticated());
    assert!(h.c.is_idle());
}

#[test]
fn auth_garbled_challenge_is_cancelled_with_star() {
    let mut h = H::ready(Options::default(), &["AUTH CRAM-MD5"]);
    let creds = Credentials::new("tim").with_password("pw");
    h.c.auth(session(Mechanism::CramMd5, &creds), h.now)
        .unwrap();
    h.sent();
    h.server(b"334 not*base64\r\n");
    assert_eq!(h.sent(), b"*\r\n");
    h.server(b"501 5.7.0 cancelled\r\n");
    let ev = h.take_events();
    assert!(matches!(
        &ev[0],
        Event::Auth {
            outcome: AttemptOutcome::Garbled,
            ..
        }
    ));
}

#[test]
fn auth_long_initial_response_waits_for_empty_challenge() {
    let mut h = H::ready(Options::default(), &["AUTH PLAIN"]);
    let long = "p".repeat(600);
    let creds = Credentials::new("alice").with_password(long.as_str());
    h.c.auth(session(Mechanism::Plain, &creds), h.now).unwrap();
    // RFC 4954 §4: an initial response that would break the 512-octet line is not sent inline.
    assert_eq!(h.sent(), b"AUTH PLAIN\r\n");
    h.server(b"334 \r\n");
    let line = h.sent();
    assert!(line.len() > 512 && line.ends_with(b"\r\n"));
    h.server(b"235 2.7.0 ok\r\n");
    assert!(h.c.is_authenticated());
}

/// Postfix 3.7 + Cyrus SASL 2.1.28's NTLM CHALLENGE_MESSAGE, as captured on loopback: no
/// target information, no extended session security (INTEROP.md, "NTLM via Cyrus").
const CYRUS_NTLM_CHALLENGE: &str =
    "TlRMTVNTUAACAAAAEgASADAAAAAFggIAeWTCSZZc/dEAAAAAAAAAAAAAAAAAAAAATABPAEMAQQBMAEgATwBTAFQA";

#[test]
fn auth_ntlm_cyrus_exchange_is_answered_not_cancelled() {
    for initial_response in [false, true] {
        let options = Options {
            sasl_initial_response: initial_response,
            ..Options::default()
        };
        let mut h = H::ready(options, &["AUTH NTLM"]);
        let creds = Credentials::new("alice").with_password("secret");
        h.c.auth(session(Mechanism::Ntlm, &creds), h.now).unwrap();
        let negotiate = if initial_response {
            let line = h.sent();
            let line = String::from_utf8(line).unwrap();
            line.strip_prefix("AUTH NTLM ").unwrap().to_owned()
        } else {
            // Cyrus is client-first: without SASL-IR the first 334 is empty, and the
            // NEGOTIATE message answers it.
            assert_eq!(h.sent(), b"AUTH NTLM\r\n");
            h.server(b"334 \r\n");
            String::from_utf8(h.sent()).unwrap()
        };
        assert!(negotiate.starts_with("TlRMTVNTUAABAAAA"), "{negotiate:?}");
        h.server(format!("334 {CYRUS_NTLM_CHALLENGE}\r\n").as_bytes());
        let authenticate = String::from_utf8(h.sent()).unwrap();
        assert!(
            authenticate.starts_with("TlRMTVNTUAADAAAA") && authenticate.ends_with("\r\n"),
            "IR {initial_response}: {authenticate:?}"
        );
        h.server(b"235 2.7.0 Authentication successful\r\n");
        let ev = h.take_events();
        assert!(
            matches!(
                &ev[..],
                [Event::Auth {
                    outcome: AttemptOutcome::Succeeded,
                    ..
                }]
            ),
            "{ev:?}"
        );
        assert!(h.c.is_authenticated());
    }
}

// ----- split-point invariance -----

#[test]
fn pipelined_replies_are_split_point_invariant() {
    let replies: &[u8] = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n450 4.2.0 <b@x.test>: greylisted\r\n550-5.1.1 <c@x.test>:\r\n550 5.1.1 unknown\r\n354 End data with <CR><LF>.<CR><LF>\r\n";
    mailferry_wire::testing::assert_split_invariant(replies, |chunks| {
        let mut h = H::ready(Options::default(), &["PIPELINING", "8BITMIME"]);
        let env = Envelope::from_strs("a@x.test", &["a@x.test", "b@x.test", "c@x.test"]).unwrap();
        h.c.start_transaction(&env, h.now).unwrap();
        let group = h.sent();
        for c in chunks {
            h.server(c);
        }
        (group, h.take_events(), h.sent())
    });
}

#[test]
fn ehlo_reply_is_split_point_invariant() {
    let reply: &[u8] = b"250-mx.example.net hi\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n";
    let caps = mailferry_wire::testing::assert_split_invariant(reply, |chunks| {
        let mut h = H::new();
        h.server(b"220 mx ESMTP\r\n");
        h.c.ehlo(&dom("c.example"), true, h.now).unwrap();
        for c in chunks {
            h.server(c);
        }
        h.c.capabilities().cloned()
    })
    .unwrap();
    assert_eq!(caps.size, Some(10_240_000));
    assert_eq!(caps.auth().count(), 2);
}

// ----- greeting, EHLO / HELO -----

#[test]
fn greeting_554_is_a_typed_refusal_then_quit() {
    let mut h = H::new();
    h.server(b"554 5.3.2 no service for you\r\n");
    let ev = h.take_events();
    let Event::GreetingRefused(reply) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(reply.code().as_u16(), 554);
    assert_eq!(
        h.c.ehlo(&dom("c.example"), true, h.now),
        Err(UsageError::NotReady)
    );
    h.c.quit(h.now).unwrap();
    assert_eq!(h.sent(), b"QUIT\r\n");
    h.server(b"221 bye\r\n");
    assert_eq!(h.take_events(), [Event::Closed]);
}

#[test]
fn greeting_421_is_service_closing() {
    let mut h = H::new();
    h.server(b"421 4.3.2 busy\r\n");
    let l = lost(&h.take_events());
    assert!(matches!(&l[..], [ProtocolError::ServiceClosing(r)] if r.code().as_u16() == 421));
}

#[test]
fn ehlo_refused_with_500_or_502_falls_back_to_helo() {
    for code in ["500", "502"] {
        let mut h = H::new();
        h.server(b"220 old.example\r\n");
        h.take_events();
        let id = h.c.ehlo(&dom("c.example"), true, h.now).unwrap();
        h.sent();
        h.server(format!("{code} command not recognized\r\n").as_bytes());
        assert_eq!(h.sent(), b"HELO c.example\r\n");
        h.server(b"250 old.example\r\n");
        let ev = h.take_events();
        assert!(
            matches!(&ev[..], [Event::Ehlo { id: i, outcome: EhloOutcome::Helo(_) }] if *i == id),
            "{ev:?}"
        );
        assert_eq!(h.c.capabilities(), Some(&Capabilities::default()));
    }
}

#[test]
fn ehlo_421_never_falls_back_to_helo() {
    let mut h = H::new();
    h.server(b"220 mx\r\n");
    h.c.ehlo(&dom("c.example"), true, h.now).unwrap();
    h.sent();
    h.server(b"421 4.7.0 go away\r\n");
    assert!(h.sent().is_empty());
    assert!(matches!(
        &lost(&h.take_events())[..],
        [ProtocolError::ServiceClosing(_)]
    ));
}

#[test]
fn ehlo_refused_without_fallback_in_required_mode_sends_no_helo() {
    let mut h = H::new();
    h.server(b"220 mx\r\n");
    h.take_events();
    h.c.ehlo(&dom("c.example"), false, h.now).unwrap();
    h.sent();
    h.server(b"502 5.5.1 no EHLO\r\n");
    assert!(
        h.sent().is_empty(),
        "HELO offers no STARTTLS: never in REQUIRED mode"
    );
    let ev = h.take_events();
    assert!(
        matches!(&ev[..], [Event::Ehlo { outcome: EhloOutcome::Refused(r), .. }] if r.code().as_u16() == 502)
    );
    // A policy refusal is not a reason to try HELO either.
    let mut h = H::new();
    h.server(b"220 mx\r\n");
    h.c.ehlo(&dom("c.example"), true, h.now).unwrap();
    h.sent();
    h.server(b"550 5.7.1 not you\r\n");
    assert!(h.sent().is_empty());
}

// ----- STARTTLS (SECURITY.md) -----

#[test]
fn rejects_bytes_buffered_after_starttls_220_in_the_same_read() {
    let mut h = H::ready(Options::default(), &["STARTTLS"]);
    h.c.starttls(h.now).unwrap();
    h.sent();
    h.server(b"220 2.0.0 Ready to start TLS\r\n250-evil.example\r\n250 AUTH PLAIN\r\n");
    let ev = h.take_events();
    assert_eq!(ev, [Event::ConnectionLost(ProtocolError::DataBeforeTls)]);
    assert!(h.c.is_closed());
}

#[test]
fn rejects_bytes_arriving_after_starttls_220_before_the_handshake() {
    let mut h = H::ready(Options::default(), &["STARTTLS"]);
    h.c.starttls(h.now).unwrap();
    h.sent();
    h.server(b"220 go ahead\r\n");
    assert!(matches!(
        &h.take_events()[..],
        [Event::StartTls {
            outcome: StartTlsOutcome::Ready,
            ..
        }]
    ));
    h.server(b"2");
    assert_eq!(
        h.take_events(),
        [Event::ConnectionLost(ProtocolError::DataBeforeTls)]
    );
    assert_eq!(
        h.c.handle_tls_established(ChannelSecurity::TlsVerified, h.now),
        Err(UsageError::Closed)
    );
}

#[test]
fn starttls_refused_454_and_502_are_typed() {
    for code in [454u16, 502] {
        let mut h = H::ready(Options::default(), &["STARTTLS"]);
        h.c.starttls(h.now).unwrap();
        h.sent();
        h.server(format!("{code} TLS not available\r\n").as_bytes());
        let ev = h.take_events();
        assert!(
            matches!(&ev[..], [Event::StartTls { outcome: StartTlsOutcome::Refused(r), .. }] if r.code().as_u16() == code)
        );
    }
}

#[test]
fn capabilities_after_tls_replace_the_plaintext_list() {
    let mut h = H::ready(
        Options::default(),
        &["STARTTLS", "AUTH PLAIN LOGIN", "PIPELINING"],
    );
    h.c.starttls(h.now).unwrap();
    h.sent();
    h.server(b"220 go\r\n");
    h.c.handle_tls_established(ChannelSecurity::TlsVerified, h.now)
        .unwrap();
    assert_eq!(h.c.capabilities(), None);
    // Nothing that needs capabilities works before the new EHLO.
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    assert_eq!(
        h.c.start_transaction(&env, h.now),
        Err(UsageError::NotReady)
    );
    h.c.ehlo(&dom("c.example"), false, h.now).unwrap();
    h.sent();
    h.server(b"250-mx\r\n250 AUTH SCRAM-SHA-256\r\n");
    let caps = h.c.capabilities().unwrap();
    let mechs: Vec<_> = caps.auth().collect();
    assert_eq!(mechs.len(), 1);
    assert_eq!(mechs[0].as_str(), "SCRAM-SHA-256");
    assert!(!caps.pipelining && !caps.starttls);
}

// ----- malformed, endless, unsolicited replies -----

#[test]
fn malformed_replies_are_typed_errors() {
    let table: &[(&[u8], ProtocolError)] = &[
        (
            b"22X ready\r\n",
            ProtocolError::MalformedReply(ReplyError::InvalidCode),
        ),
        (
            b"220OK\r\n",
            ProtocolError::MalformedReply(ReplyError::MissingSeparator(b'O')),
        ),
        (
            b"220-a\r\n250 b\r\n",
            ProtocolError::MalformedReply(ReplyError::InconsistentCode {
                expected: 220,
                found: 250,
            }),
        ),
        (b"220 a\n", ProtocolError::Framing(FrameError::BareLf)),
        (b"220 a\rb\r\n", ProtocolError::Framing(FrameError::BareCr)),
        (
            b"620 what\r\n",
            ProtocolError::MalformedReply(ReplyError::CodeOutOfRange(620)),
        ),
        (b"354 go\r\n", ProtocolError::UnexpectedReply { code: 354 }),
    ];
    for (input, want) in table {
        let mut h = H::new();
        h.server(input);
        assert_eq!(
            lost(&h.take_events()),
            std::slice::from_ref(want),
            "{input:?}"
        );
    }
}

#[test]
fn endless_replies_are_bounded() {
    // Too many lines.
    let mut h = H::new();
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.extend_from_slice(b"220-more\r\n");
    }
    h.server(&flood);
    assert_eq!(
        lost(&h.take_events()),
        [ProtocolError::MalformedReply(ReplyError::TooManyLines {
            max: 128
        })]
    );
    // An endless line: reported once, before it ends; memory bounded by the line limit.
    let mut h = H::new();
    for _ in 0..100 {
        h.server(&[b'2'; 1000]);
    }
    assert_eq!(
        lost(&h.take_events()),
        [ProtocolError::Framing(FrameError::LineTooLong {
            max_len: 12_288
        })]
    );
    h.server(b"\r\n");
    assert!(h.take_events().is_empty());
}

#[test]
fn over_long_reply_line_is_refused() {
    let mut h = H::new();
    let mut line = b"220 ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 600));
    line.extend_from_slice(b"\r\n");
    h.server(&line);
    assert_eq!(
        lost(&h.take_events()),
        [ProtocolError::MalformedReply(ReplyError::LineTooLong {
            len: 606,
            max: 512
        })]
    );
}

#[test]
fn unsolicited_reply_is_fatal_and_sticky() {
    let mut h = H::ready(Options::default(), &[]);
    h.server(b"250 surprise\r\n");
    assert_eq!(
        lost(&h.take_events()),
        [ProtocolError::UnexpectedReply { code: 250 }]
    );
    // Sticky: nothing more is reported, every command refuses.
    h.server(b"250 more\r\n");
    h.c.handle_eof();
    h.advance(Duration::from_secs(10_000));
    assert!(h.take_events().is_empty());
    assert_eq!(h.c.noop(h.now), Err(UsageError::Closed));
    assert_eq!(h.c.quit(h.now), Err(UsageError::Closed));
    assert!(h.sent().is_empty());
}

#[test]
fn eof_mid_transaction_is_closed_by_peer() {
    let mut h = H::ready(Options::default(), &["PIPELINING"]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    h.c.handle_eof();
    assert_eq!(lost(&h.take_events()), [ProtocolError::ClosedByPeer]);
}

// ----- timeouts on a fake clock -----

#[test]
fn greeting_timeout_is_five_minutes() {
    let mut h = H::new();
    assert_eq!(h.c.poll_timeout(), Some(h.now + Duration::from_secs(300)));
    h.advance(Duration::from_secs(299));
    assert!(h.take_events().is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(
        lost(&h.take_events()),
        [ProtocolError::Timeout(Waiting::Greeting)]
    );
    assert_eq!(h.c.poll_timeout(), None);
}

#[test]
fn transaction_timeouts_follow_rfc5321_4_5_3_2() {
    // MAIL 5 min, RCPT 5 min, DATA initiation 2 min, data block 3 min, termination 10 min.
    let steps: &[(&[u8], u64, Waiting)] = &[
        (b"", 300, Waiting::Mail),
        (b"250 ok\r\n", 300, Waiting::Rcpt),
        (b"250 ok\r\n250 ok\r\n", 120, Waiting::DataInit),
        (b"250 ok\r\n250 ok\r\n354 go\r\n", 180, Waiting::DataBlock),
    ];
    for (replies, secs, waiting) in steps {
        let mut h = H::ready(Options::default(), &["PIPELINING"]);
        let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
        h.c.start_transaction(&env, h.now).unwrap();
        h.server(replies);
        h.advance(Duration::from_secs(secs - 1));
        assert!(lost(&h.take_events()).is_empty(), "{waiting:?}");
        h.advance(Duration::from_secs(1));
        assert_eq!(lost(&h.take_events()), [ProtocolError::Timeout(*waiting)]);
    }
    let mut h = H::ready(Options::default(), &["PIPELINING"]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    h.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    h.c.body_chunk(b"x", h.now).unwrap();
    h.c.finish_body(h.now).unwrap();
    h.take_events();
    h.advance(Duration::from_secs(599));
    assert!(h.take_events().is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(
        lost(&h.take_events()),
        [ProtocolError::Timeout(Waiting::DataTermination)]
    );
}

#[test]
fn slow_drip_reply_does_not_extend_the_deadline() {
    let mut h = H::ready(Options::default(), &[]);
    h.c.noop(h.now).unwrap();
    // One byte every 70 s: 350 s in all, but the reply was due after 300 s.
    for _ in 0..5 {
        h.now += Duration::from_secs(70);
        h.server(b"2");
        h.c.handle_timeout(h.now);
        h.drain();
    }
    assert_eq!(
        lost(&h.take_events()),
        [ProtocolError::Timeout(Waiting::Command)]
    );
}

// ----- bodies -----

fn data_session(body_chunks: &[&[u8]], caps: &[&str]) -> (Vec<u8>, H) {
    let mut h = H::ready(Options::default(), caps);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    h.sent();
    h.server(b"250 ok\r\n");
    h.sent();
    h.server(b"250 ok\r\n");
    h.sent();
    h.server(b"354 go\r\n");
    let mut wire = Vec::new();
    for c in body_chunks {
        h.c.body_chunk(c, h.now).unwrap();
        wire.extend(h.sent());
    }
    h.c.finish_body(h.now).unwrap();
    wire.extend(h.sent());
    (wire, h)
}

#[test]
fn body_dot_stuffing_and_line_ending_edge_cases() {
    let table: &[(&[u8], &[u8])] = &[
        (b".leading dot", b"..leading dot\r\n.\r\n"),
        (b"a\r\n\r\n.after empty", b"a\r\n\r\n..after empty\r\n.\r\n"),
        (b"lone\rCR", b"lone\r\nCR\r\n.\r\n"),
        (b"lone\nLF", b"lone\r\nLF\r\n.\r\n"),
        (b"no final crlf", b"no final crlf\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b"\r\n.\r\n", b"\r\n..\r\n.\r\n"),
        (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"", b".\r\n"),
    ];
    for (body, want) in table {
        mailferry_wire::testing::for_each_split(body, |chunks| {
            let (wire, _) = data_session(chunks, &[]);
            assert_eq!(
                wire.escape_ascii().to_string(),
                want.escape_ascii().to_string(),
                "{chunks:?}"
            );
        });
    }
}

#[test]
fn smuggling_attempt_in_body_cannot_end_data_early() {
    // CVE-2023-51764 shape: "\n.\r\n" and "\r\n.\n" inside the body.
    let (wire, _) = data_session(&[b"x\n.\r\nMAIL FROM:<evil@x>\r\n", b"y\r\n.\nz"], &[]);
    assert_eq!(
        wire,
        b"x\r\n..\r\nMAIL FROM:<evil@x>\r\ny\r\n..\r\nz\r\n.\r\n"
    );
    let ends = wire.windows(5).filter(|w| w == b"\r\n.\r\n").count();
    assert_eq!(ends, 1);
}

#[test]
fn last_chunk_and_terminator_leave_in_one_write() {
    let mut h = H::ready(Options::default(), &["PIPELINING"]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(
        h.sent(),
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
    );
    h.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    h.c.body_chunk(b"first\r\n", h.now).unwrap();
    // Held back: it may be the last chunk.
    assert!(h.sent().is_empty());
    h.c.body_chunk(b"second\r\n", h.now).unwrap();
    assert_eq!(h.sent(), b"first\r\n");
    h.c.finish_body(h.now).unwrap();
    assert_eq!(h.sent(), b"second\r\n.\r\n");
}

#[test]
fn eight_bit_body_without_8bitmime_is_refused_before_anything_is_sent() {
    let mut h = H::ready(Options::default(), &["PIPELINING"]);
    let mut env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    env.params.body = Some(Body::EightBitMime);
    assert_eq!(
        h.c.start_transaction(&env, h.now),
        Err(UsageError::EightBitNotSupported)
    );
    assert!(h.sent().is_empty());
    assert!(h.c.is_idle());
}

#[test]
fn undeclared_eight_bit_octet_aborts_by_closing_never_terminating() {
    let mut h = H::ready(Options::default(), &["PIPELINING", "8BITMIME"]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    h.sent();
    h.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    h.c.body_chunk(b"Subject: hi\r\n\r\n", h.now).unwrap();
    assert_eq!(
        h.c.body_chunk(b"caf\xc3\xa9\r\n", h.now),
        Err(UsageError::Body(EncodeError::EightBit {
            line: 3,
            offset: 18
        }))
    );
    // Not even the held first chunk leaves, and certainly no terminator.
    assert!(h.sent().is_empty());
    assert_eq!(
        lost(&h.take_events()),
        [ProtocolError::BodyRejected(EncodeError::EightBit {
            line: 3,
            offset: 18
        })]
    );
    assert_eq!(h.c.finish_body(h.now), Err(UsageError::Closed));
}

#[test]
fn long_body_line_aborts() {
    let mut h = H::ready(Options::default(), &["PIPELINING"]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    h.sent();
    h.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    let line = vec![b'x'; 999];
    assert_eq!(
        h.c.body_chunk(&line, h.now),
        Err(UsageError::Body(EncodeError::LineTooLong {
            line: 1,
            limit: 1000
        }))
    );
    assert!(h.sent().is_empty());
}

// ----- envelope parameters -----

#[test]
fn size_over_the_server_limit_is_refused_locally() {
    let mut h = H::ready(Options::default(), &["SIZE 1000"]);
    let mut env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    env.params.size = Some(1001);
    assert_eq!(
        h.c.start_transaction(&env, h.now),
        Err(UsageError::MessageTooLarge {
            size: 1001,
            limit: 1000
        })
    );
    assert!(h.sent().is_empty());
    env.params.size = Some(1000);
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(h.sent(), b"MAIL FROM:<a@x.test> SIZE=1000\r\n");
}

#[test]
fn parameters_adapt_to_the_server() {
    let mut env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    env.params.size = Some(10);
    env.params.body = Some(Body::SevenBit);
    env.params.ret = Some(mailferry_wire::smtp::Ret::Hdrs);
    env.recipients[0].params.notify = Some(Notify::Never);
    // A bare server: SIZE, BODY and DSN parameters are left out.
    let mut h = H::ready(Options::default(), &["PIPELINING"]);
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(
        h.sent(),
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
    );
    // A full server: all of them.
    let mut h = H::ready(
        Options::default(),
        &["PIPELINING", "SIZE 100", "8BITMIME", "DSN"],
    );
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(
        h.sent(),
        b"MAIL FROM:<a@x.test> SIZE=10 BODY=7BIT RET=HDRS\r\nRCPT TO:<b@x.test> NOTIFY=NEVER\r\nDATA\r\n"
    );
}

#[test]
fn utf8_address_needs_smtputf8() {
    let env = Envelope::from_strs("jörg@x.test", &["b@x.test"]).unwrap();
    let mut h = H::ready(Options::default(), &["8BITMIME"]);
    assert_eq!(
        h.c.start_transaction(&env, h.now),
        Err(UsageError::SmtpUtf8NotSupported)
    );
    let mut h = H::ready(Options::default(), &["8BITMIME", "SMTPUTF8"]);
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(h.sent(), "MAIL FROM:<jörg@x.test> SMTPUTF8\r\n".as_bytes());
}

#[test]
fn crlf_and_nul_in_caller_values_are_unconstructible() {
    for bad in [
        "a@x.test\r\nRCPT TO:<evil@x.test>",
        "a@x.test\n",
        "a\0@x.test",
        "a@x.test\r",
    ] {
        assert!(Envelope::from_strs(bad, &["b@x.test"]).is_err(), "{bad:?}");
        assert!(Envelope::from_strs("a@x.test", &[bad]).is_err(), "{bad:?}");
    }
    for bad in ["c.example\r\nMAIL FROM:<x>", "c\n", "c\0"] {
        assert!(Domain::try_from(bad).is_err());
    }
    assert!(mailferry_wire::smtp::XText::decode("a\r\nb").is_err());
}

// ----- per-recipient results, many messages, RSET -----

#[test]
fn per_recipient_results_and_rset_before_the_next_message() {
    let mut h = H::ready(Options::default(), &["PIPELINING"]);
    let env = Envelope::from_strs("a@x.test", &["ok@x.test", "later@x.test", "no@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    h.sent();
    h.server(b"250 ok\r\n250 ok\r\n450 4.2.1 try later\r\n550 5.1.1 unknown\r\n354 go\r\n");
    h.c.body_chunk(b"hi\r\n", h.now).unwrap();
    h.c.finish_body(h.now).unwrap();
    assert_eq!(h.sent(), b"hi\r\n.\r\n");
    h.server(b"250 2.0.0 queued as X\r\n");
    let r = report(&h.take_events());
    let got: Vec<_> = r
        .recipients
        .iter()
        .map(|x| (x.status, x.reply.code().as_u16()))
        .collect();
    assert_eq!(
        got,
        [
            (RecipientStatus::Delivered, 250),
            (RecipientStatus::Transient, 450),
            (RecipientStatus::Permanent, 550)
        ]
    );
    assert!(h.c.is_idle());

    // All refused: DATA's 503 is matched, then the next MAIL is preceded by RSET in the group.
    h.c.start_transaction(&env, h.now).unwrap();
    h.sent();
    h.server(b"250 ok\r\n550 a\r\n550 b\r\n550 c\r\n503 5.5.1 no valid recipients\r\n");
    let r = report(&h.take_events());
    assert_eq!(r.permanent().count(), 3);
    assert_eq!(r.data_reply, None);
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(
        h.sent(),
        b"RSET\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<ok@x.test>\r\nRCPT TO:<later@x.test>\r\nRCPT TO:<no@x.test>\r\nDATA\r\n"
    );
    h.server(b"250 reset\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    assert!(matches!(&h.take_events()[..], [Event::ReadyForBody { .. }]));
}

#[test]
fn refused_mail_without_pipelining_reports_the_mail_reply_for_everyone() {
    let mut h = H::ready(Options::default(), &[]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test", "c@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(h.sent(), b"MAIL FROM:<a@x.test>\r\n");
    h.server(b"451 4.3.0 try again\r\n");
    assert!(h.sent().is_empty(), "no RCPT after a refused MAIL");
    let r = report(&h.take_events());
    assert_eq!(r.transient().count(), 2);
    assert_eq!(r.recipients[0].rcpt_reply, None);
    // Nothing open on the server: no RSET before the next MAIL.
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(h.sent(), b"MAIL FROM:<a@x.test>\r\n");
}

#[test]
fn non_pipelined_all_refused_sends_rset_and_waits_before_mail() {
    let mut h = H::ready(Options::default(), &[]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    h.sent();
    h.server(b"250 ok\r\n");
    assert_eq!(h.sent(), b"RCPT TO:<b@x.test>\r\n");
    h.server(b"550 no\r\n");
    assert!(h.sent().is_empty(), "no DATA without an accepted recipient");
    assert_eq!(report(&h.take_events()).permanent().count(), 1);
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(h.sent(), b"RSET\r\n");
    h.server(b"250 ok\r\n");
    assert_eq!(h.sent(), b"MAIL FROM:<a@x.test>\r\n");
}

#[test]
fn pipelined_354_without_accepted_recipients_sends_an_empty_message_end() {
    let mut h = H::ready(Options::default(), &["PIPELINING"]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    h.sent();
    h.server(b"250 ok\r\n550 no\r\n354 go anyway\r\n");
    assert_eq!(h.sent(), b".\r\n");
    h.server(b"554 no valid recipients\r\n");
    let r = report(&h.take_events());
    assert!(!r.is_accepted());
    assert_eq!(r.data_reply, None);
}

#[test]
fn many_messages_over_one_connection() {
    let mut h = H::ready(Options::default(), &["PIPELINING", "8BITMIME"]);
    for i in 0..50 {
        let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
        h.c.start_transaction(&env, h.now).unwrap();
        h.sent();
        h.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
        h.c.body_chunk(format!("message {i}\r\n").as_bytes(), h.now)
            .unwrap();
        h.c.finish_body(h.now).unwrap();
        assert_eq!(h.sent(), format!("message {i}\r\n.\r\n").as_bytes());
        h.server(b"250 ok\r\n");
        assert!(report(&h.take_events()).is_accepted());
    }
    h.c.quit(h.now).unwrap();
    assert_eq!(h.sent(), b"QUIT\r\n");
    h.c.handle_eof();
    assert_eq!(h.take_events(), [Event::Closed]);
}

// ----- CHUNKING / BDAT -----

#[test]
fn bdat_last_with_the_body_in_one_write() {
    let mut h = H::ready(Options::default(), &["PIPELINING", "CHUNKING", "8BITMIME"]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(h.sent(), b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n");
    h.server(b"250 ok\r\n250 ok\r\n");
    assert!(matches!(&h.take_events()[..], [Event::ReadyForBody { .. }]));
    h.c.body_chunk(b".dot\nline", h.now).unwrap();
    assert!(h.sent().is_empty());
    h.c.body_chunk(b" two\n", h.now).unwrap();
    assert_eq!(h.sent(), b"BDAT 10\r\n.dot\r\nline");
    h.c.finish_body(h.now).unwrap();
    assert_eq!(h.sent(), b"BDAT 6 LAST\r\n two\r\n");
    h.server(b"250 2.0.0 ok\r\n250 2.0.0 queued\r\n");
    let r = report(&h.take_events());
    assert_eq!(r.data_reply.unwrap().text(), "queued");
}

#[test]
fn bdat_without_pipelining_waits_for_each_reply() {
    let mut h = H::ready(Options::default(), &["CHUNKING"]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    h.sent();
    h.server(b"250 ok\r\n");
    h.sent();
    h.server(b"250 ok\r\n");
    h.take_events();
    h.c.body_chunk(b"a\r\n", h.now).unwrap();
    h.c.body_chunk(b"b\r\n", h.now).unwrap();
    assert_eq!(h.sent(), b"BDAT 3\r\na\r\n");
    assert!(!h.c.wants_body());
    assert_eq!(h.c.body_chunk(b"c", h.now), Err(UsageError::NotInBody));
    h.server(b"250 ok\r\n");
    assert!(h.c.wants_body());
    h.c.finish_body(h.now).unwrap();
    assert_eq!(h.sent(), b"BDAT 3 LAST\r\nb\r\n");
}

#[test]
fn refused_bdat_abandons_the_message_and_resets() {
    let mut h = H::ready(Options::default(), &["CHUNKING"]);
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    h.c.start_transaction(&env, h.now).unwrap();
    h.sent();
    h.server(b"250 ok\r\n");
    h.sent();
    h.server(b"250 ok\r\n");
    h.take_events();
    h.c.body_chunk(b"a\r\n", h.now).unwrap();
    h.c.body_chunk(b"b\r\n", h.now).unwrap();
    h.sent();
    h.server(b"552 5.3.4 too big\r\n");
    assert!(!h.c.wants_body());
    let r = report(&h.take_events());
    assert_eq!(r.permanent().count(), 1);
    assert_eq!(r.data_reply.unwrap().code().as_u16(), 552);
    assert!(h.sent().is_empty(), "the held chunk is dropped");
    h.c.start_transaction(&env, h.now).unwrap();
    assert_eq!(h.sent(), b"RSET\r\n");
}

#[test]
fn binary_needs_binarymime_and_chunking() {
    let mut env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    env.params.body = Some(Body::BinaryMime);
    let mut h = H::ready(Options::default(), &["BINARYMIME", "8BITMIME"]);
    assert_eq!(
        h.c.start_transaction(&env, h.now),
        Err(UsageError::BinaryNotSupported)
    );
    let mut h = H::ready(
        Options::default(),
        &["BINARYMIME", "CHUNKING", "PIPELINING"],
    );
    h.c.start_transaction(&env, h.now).unwrap();
    h.sent();
    h.server(b"250 ok\r\n250 ok\r\n");
    h.c.body_chunk(b"\0\r\xff\n", h.now).unwrap();
    h.c.finish_body(h.now).unwrap();
    assert_eq!(h.sent(), b"BDAT 4 LAST\r\n\0\r\xff\n");
}

#[test]
fn usage_errors_leave_state_unchanged() {
    let mut h = H::new();
    let env = Envelope::from_strs("a@x.test", &["b@x.test"]).unwrap();
    assert_eq!(
        h.c.start_transaction(&env, h.now),
        Err(UsageError::NotReady)
    );
    assert_eq!(h.c.body_chunk(b"x", h.now), Err(UsageError::NotInBody));
    h.server(b"220 mx\r\n");
    assert_eq!(
        h.c.start_transaction(&env, h.now),
        Err(UsageError::NotReady)
    );
    let empty = Envelope::new(mailferry_wire::types::ReversePath::Null);
    let mut h = H::ready(Options::default(), &[]);
    assert_eq!(
        h.c.start_transaction(&empty, h.now),
        Err(UsageError::NoRecipients)
    );
    h.c.noop(h.now).unwrap();
    assert_eq!(h.c.noop(h.now), Err(UsageError::NotReady));
    assert_eq!(h.sent(), b"NOOP\r\n");
    let _ = fwd("x@y.test");
}

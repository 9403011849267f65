//! The smtp-client core against this core, in memory, on a fake clock: a whole session, a
//! refused recipient, and timeouts on both sides by advancing time (never sleeping).

// Helpers outside #[test] fns: a failed step should panic loudly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mailferry_smtp_client::proto::{
    Client, EhloOutcome, Envelope, Event as CEvent, Options as ClientOptions, RecipientStatus,
};
use mailferry_smtp_server::proto::{
    CloseReason, ConnectionInfo, Event as SEvent, Options, Session, WallClock,
};
use mailferry_wire::smtp::{Reply, ReplyOptions};
use mailferry_wire::tls::ChannelSecurity;
use mailferry_wire::types::Domain;

struct Pair {
    client: Client,
    server: Session,
    now: Instant,
    client_events: Vec<CEvent>,
    server_events: Vec<SEvent>,
    /// The server application answers decisions (`None`: leave it pending).
    decide: fn(&SEvent) -> Option<Option<Reply>>,
    body: Vec<u8>,
}

fn accept_all(_: &SEvent) -> Option<Option<Reply>> {
    Some(None)
}

impl Pair {
    fn new(decide: fn(&SEvent) -> Option<Option<Reply>>) -> Pair {
        let now = Instant::now();
        let mut options = Options::default();
        options.hostname = Domain::try_from("mx.test").unwrap();
        let info = ConnectionInfo {
            peer: "192.0.2.1".parse().unwrap(),
            time: WallClock::utc(1_700_000_000),
            security: ChannelSecurity::Plaintext,
        };
        let mut p = Pair {
            client: Client::new(ClientOptions::default(), ChannelSecurity::Plaintext, now),
            server: Session::new(Arc::new(options), None, info, now),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            decide,
            body: Vec::new(),
        };
        p.pump();
        p
    }

    /// Moves bytes both ways and answers server decisions until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(e) = self.server.poll_event() {
                let id = match &e {
                    SEvent::Connect { id, .. }
                    | SEvent::Helo { id, .. }
                    | SEvent::MailFrom { id, .. }
                    | SEvent::RcptTo { id, .. }
                    | SEvent::DataEnd { id, .. } => Some(*id),
                    SEvent::MessageChunk(c) => {
                        self.body.extend_from_slice(c);
                        None
                    }
                    _ => None,
                };
                if let Some(id) = id {
                    match (self.decide)(&e) {
                        Some(None) => self.server.accept(id).unwrap(),
                        Some(Some(r)) => self.server.respond(id, r).unwrap(),
                        None => {}
                    }
                }
                self.server_events.push(e);
                moved = true;
            }
            let mut buf = BytesMut::new();
            self.server.poll_transmit(&mut buf);
            if !buf.is_empty() {
                self.client.handle_input(&buf, self.now);
                moved = true;
            }
            if self.server.is_closed() && !self.client.is_closed() && buf.is_empty() {
                self.client.handle_eof();
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
                moved = true;
            }
            let mut buf = BytesMut::new();
            self.client.poll_transmit(&mut buf);
            if !buf.is_empty() {
                self.server.handle_input(&buf, self.now);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.pump();
    }

    fn ehlo(&mut self) {
        self.client
            .ehlo(&Domain::try_from("client.test").unwrap(), false, self.now)
            .unwrap();
        self.pump();
        assert!(matches!(
            self.client_events.last(),
            Some(CEvent::Ehlo {
                outcome: EhloOutcome::Extended(_),
                ..
            })
        ));
    }
}

fn refuse_carol(e: &SEvent) -> Option<Option<Reply>> {
    match e {
        SEvent::RcptTo { to, .. } if to.as_str().starts_with("carol") => Some(Some(
            Reply::parse(b"550 5.1.1 No such user\r\n", &ReplyOptions::default()).unwrap(),
        )),
        _ => Some(None),
    }
}

#[test]
fn client_and_server_cores_deliver_a_message() {
    let mut p = Pair::new(refuse_carol);
    assert!(matches!(p.client_events.first(), Some(CEvent::Greeting(_))));
    p.ehlo();
    let env = Envelope::from_strs("a@client.test", &["bob@mx.test", "carol@mx.test"]).unwrap();
    p.client.start_transaction(&env, p.now).unwrap();
    p.pump();
    assert!(matches!(
        p.client_events.last(),
        Some(CEvent::ReadyForBody { .. })
    ));
    p.client
        .body_chunk(b"Subject: pair\r\n\r\n.leading dot\r\n", p.now)
        .unwrap();
    p.client.finish_body(p.now).unwrap();
    p.pump();
    let Some(CEvent::TransactionDone { report, .. }) = p.client_events.last() else {
        panic!("{:?}", p.client_events.last())
    };
    let statuses: Vec<_> = report.recipients.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [RecipientStatus::Delivered, RecipientStatus::Permanent]
    );
    let body = String::from_utf8(p.body.clone()).unwrap();
    assert!(
        body.starts_with("Received: from client.test ([192.0.2.1])\r\n"),
        "{body}"
    );
    assert!(
        body.ends_with("Subject: pair\r\n\r\n.leading dot\r\n"),
        "{body}"
    );
    p.client.quit(p.now).unwrap();
    p.pump();
    assert!(p.server_events.contains(&SEvent::Closed(CloseReason::Quit)));
    assert!(matches!(p.client_events.last(), Some(CEvent::Closed)));
}

#[test]
fn silent_client_is_timed_out_by_the_server() {
    let mut p = Pair::new(accept_all);
    p.ehlo();
    // The client sits idle; the server's session timeout (15 min) fires first.
    p.advance(Duration::from_secs(15 * 60));
    assert!(
        p.server_events
            .contains(&SEvent::Closed(CloseReason::Timeout))
    );
    assert!(p.client.is_closed());
}

fn never_decide_mail(e: &SEvent) -> Option<Option<Reply>> {
    match e {
        SEvent::MailFrom { .. } => None,
        _ => Some(None),
    }
}

#[test]
fn stalled_server_is_timed_out_by_the_client() {
    let mut p = Pair::new(never_decide_mail);
    p.ehlo();
    let env = Envelope::from_strs("a@client.test", &["bob@mx.test"]).unwrap();
    p.client.start_transaction(&env, p.now).unwrap();
    p.pump();
    // The server waits for its application (no server timer), the client for its MAIL reply.
    assert_eq!(p.server.poll_timeout(), None);
    p.advance(Duration::from_secs(5 * 60));
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, CEvent::ConnectionLost(_))),
        "{:?}",
        p.client_events
    );
}

//! POP3 line parsers on hostile input. The input is cut into lines at LF (a trailing CR is
//! dropped, as the framer would) and every line goes through every POP3 parser.
//!
//! Invariants: no panic; whatever parses re-encodes to a line that parses back equal; parsed
//! values satisfy their validators (UIDs in 0x21-0x7E, at most 70 octets; message numbers
//! >= 1); accumulators keep at most their configured number of entries, in strictly increasing
//! message-number order.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mailferry_wire::pop3::{
    AuthResponse, CapaAccumulator, Capability, Command, ListingAccumulator, MultiLine, Options,
    ScanListing, ServerLine, Stat, StatusLine, UidListing, encode_multiline_line, multiline_line,
};

const MAX_ENTRIES: usize = 8;

/// Strips the CRLF an encoder appended, checking it is there and nowhere else.
fn body(out: &BytesMut) -> &[u8] {
    assert!(out.ends_with(b"\r\n"), "encoder did not end with CRLF");
    let line = &out[..out.len() - 2];
    assert!(
        !line.contains(&b'\n') && !line.contains(&b'\r'),
        "line break inside {line:?}"
    );
    line
}

fn check_line(line: &[u8], options: &Options) {
    if let Ok(status) = StatusLine::parse(line, options) {
        let mut out = BytesMut::new();
        status.encode(&mut out);
        assert_eq!(StatusLine::parse(body(&out), options).as_ref(), Ok(&status));
        // The log form never carries control characters.
        assert!(!status.to_string().bytes().any(|b| b < 0x20 || b == 0x7f));
    }
    if let Ok(server) = ServerLine::parse(line, options) {
        let mut out = BytesMut::new();
        server.encode(&mut out);
        assert_eq!(ServerLine::parse(body(&out), options).as_ref(), Ok(&server));
    }
    if let Ok(command) = Command::parse(line, options) {
        let mut out = BytesMut::new();
        command.encode(&mut out);
        assert_eq!(Command::parse(body(&out), options).as_ref(), Ok(&command));
    }
    if let Ok(resp) = AuthResponse::parse(line, options) {
        let mut out = BytesMut::new();
        resp.encode(&mut out);
        assert_eq!(AuthResponse::parse(body(&out), options).as_ref(), Ok(&resp));
    }
    if let Ok(stat) = Stat::parse(line) {
        assert_eq!(Stat::parse(stat.to_string().as_bytes()), Ok(stat));
    }
    if let Ok(scan) = ScanListing::parse(line) {
        assert!(scan.msg.get() >= 1);
        assert_eq!(ScanListing::parse(scan.to_string().as_bytes()), Ok(scan));
    }
    if let Ok(uidl) = UidListing::parse(line) {
        let uid = uidl.uid.as_str().as_bytes();
        assert!(
            !uid.is_empty() && uid.len() <= 70,
            "UID length {}",
            uid.len()
        );
        assert!(
            uid.iter().all(|b| (0x21..=0x7e).contains(b)),
            "UID octets {uid:?}"
        );
        assert_eq!(
            UidListing::parse(uidl.to_string().as_bytes()).as_ref(),
            Ok(&uidl)
        );
    }
    if let Ok(cap) = Capability::parse(line) {
        assert_eq!(
            Capability::parse(cap.to_string().as_bytes()).as_ref(),
            Ok(&cap)
        );
    }
    if let MultiLine::Line(data) = multiline_line(line) {
        let mut out = BytesMut::new();
        if encode_multiline_line(data, &mut out).is_ok() {
            assert_eq!(multiline_line(body(&out)), MultiLine::Line(data));
        }
    }
}

fn increasing<T>(entries: &[T], msg: impl Fn(&T) -> u32) {
    assert!(
        entries.len() <= MAX_ENTRIES,
        "{} entries over {MAX_ENTRIES}",
        entries.len()
    );
    assert!(
        entries.windows(2).all(|w| msg(&w[0]) < msg(&w[1])),
        "not strictly increasing"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut options = Options::default();
    options.max_listing_entries = MAX_ENTRIES;
    options.max_capabilities = MAX_ENTRIES;
    let mut list = ListingAccumulator::<ScanListing>::new(&options);
    let mut uidl = ListingAccumulator::<UidListing>::new(&options);
    let mut capa = CapaAccumulator::new(&options);
    for raw in data.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        check_line(line, &options);
        let _ = list.push_line(line);
        let _ = uidl.push_line(line);
        let _ = capa.push_line(line);
        increasing(list.entries(), |e| e.msg.get());
        increasing(uidl.entries(), |e| e.msg.get());
        assert!(capa.capabilities().iter().count() <= MAX_ENTRIES);
    }
    let done = list.is_done();
    match list.finish() {
        Ok(entries) => {
            assert!(done);
            increasing(&entries, |e| e.msg.get());
        }
        Err(_) => assert!(!done),
    }
    let _ = uidl.finish();
    let _ = capa.finish();
});

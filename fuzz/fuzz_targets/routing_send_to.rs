//! The Send To and CopyTo parsers: never panic; whatever parses writes back (Display) to text
//! that parses to an equal value and writes identically; a parsed configuration compiles into a
//! router that decides a fixed message without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailferry_routing::{CopyTo, Disposition, Router, ScanOptions, SendTo};

const MESSAGE: &[u8] = b"Return-Path: <a@example.net>\r\nFrom: a@example.net\r\n\
    To: Joe <joe@domain.com>, b@x.domain.com, c@other.org\r\nCc: d@Domain.COM\r\n\r\nbody\r\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(send_to) = SendTo::parse(text) {
        let written = send_to.to_string();
        let again = SendTo::parse(&written).expect("canonical Send To must parse");
        assert_eq!(again, send_to);
        assert_eq!(again.to_string(), written);
        let router = Router::new(send_to, CopyTo::default(), ScanOptions::default());
        let decision = router
            .decide(MESSAGE)
            .expect("fixed message is within limits");
        assert_eq!(
            decision.disposition == Disposition::Deliver,
            !decision.recipients.is_empty()
        );
        assert!(!decision.to_string().contains(['\r', '\n']));
    }
    if let Ok(copy_to) = CopyTo::parse(text) {
        let written = copy_to.to_string();
        let again = CopyTo::parse(&written).expect("canonical CopyTo must parse");
        assert_eq!(again, copy_to);
        assert_eq!(again.to_string(), written);
    }
});

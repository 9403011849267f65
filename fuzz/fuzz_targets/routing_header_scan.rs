//! The header scan and the Bcc stripper on arbitrary bytes: never panic; the scan's output is
//! bounded by `max_addresses`; the decision's one-line Display stays one line; stripping keeps
//! the body byte-for-byte, never grows the message, and is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailferry_routing::{
    CopyTo, EnvelopeHeader, Router, ScanError, ScanOptions, SendTo, header_block, strip_bcc,
};

const MAX_ADDRESSES: usize = 64;
const MAX_HEADER_BYTES: usize = 8192;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the envelope-header configuration, so both paths are explored.
    let (&selector, message) = data.split_first().unwrap_or((&0, &[]));
    let mut options = ScanOptions::default();
    options.max_addresses = MAX_ADDRESSES;
    options.max_header_bytes = MAX_HEADER_BYTES;
    options.envelope_header = match selector % 3 {
        0 => None,
        1 => Some(EnvelopeHeader::nth(
            "Delivered-To",
            usize::from(selector / 3 % 3),
        )),
        _ => Some(EnvelopeHeader::new("X-Original-To")),
    };
    let send_to = SendTo::parse("admin@example.org, {*.a.com, b.net}, {c.com, c.com, #KILL#}")
        .expect("fixed Send To");
    let copy_to = CopyTo::parse("copy@example.org").expect("fixed CopyTo");
    let router = Router::new(send_to, copy_to, options);

    match router.scanner().scan(message) {
        Ok(scan) => {
            assert!(scan.recipients.len() + scan.skipped.len() <= MAX_ADDRESSES);
            assert!(scan.senders.len() <= MAX_ADDRESSES);
            let decision = router.decide_scan(&scan);
            // MailTo + matches + CopyTo, each de-duplicated.
            assert!(decision.recipients.len() <= MAX_ADDRESSES + 2);
            let line = decision.to_string();
            assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        }
        Err(ScanError::HeaderTooLarge { limit }) => {
            assert_eq!(limit, MAX_HEADER_BYTES);
            assert!(header_block(message, usize::MAX).unwrap().len() > MAX_HEADER_BYTES);
        }
        Err(ScanError::TooManyAddresses { limit }) => assert_eq!(limit, MAX_ADDRESSES),
        Err(e) => panic!("unexpected scan error {e:?}"),
    }

    for also_resent in [false, true] {
        let stripped = strip_bcc(message, also_resent);
        assert!(stripped.len() <= message.len());
        let body = &message[header_block(message, usize::MAX).unwrap().len()..];
        assert!(stripped.ends_with(body));
        assert!(matches!(
            strip_bcc(&stripped, also_resent),
            std::borrow::Cow::Borrowed(_)
        ));
    }
});

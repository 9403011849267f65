//! SMTP reply assembly over arbitrary bytes cut into lines: never panics, stays within the
//! configured limits, and every reply it yields re-encodes and re-parses to the same value;
//! `Reply::parse` (fast path) agrees with the line-by-line reference parser on any input.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mailferry_wire::smtp::{
    Capabilities, EnhancedCode, Reply, ReplyAssembler, ReplyError, ReplyOptions,
};
use mailferry_wire::types::EsmtpKeyword;

fuzz_target!(|data: &[u8]| {
    // Small limits so the fuzzer reaches them.
    let mut opts = ReplyOptions::default();
    opts.max_line_len = 128;
    opts.max_lines = 8;
    opts.max_bytes = 512;
    // The one-pass fast path of `Reply::parse` agrees with the reference parser.
    assert_eq!(
        Reply::parse(data, &opts),
        mailferry_wire::fuzzing::reply_parse_general(data, &opts)
    );
    let mut asm = ReplyAssembler::new(opts.clone());
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(Some(reply)) = asm.push_line(line) else {
            continue;
        };
        let code = reply.code().as_u16();
        assert!((200..600).contains(&code), "code {code}");
        assert!(reply.line_count() <= opts.max_lines);
        assert!(reply.text().len() <= opts.max_bytes);
        let mut out = BytesMut::new();
        reply.encode(&mut out);
        // The enhanced code is repeated on each line, so the encoding may exceed the limits
        // the input respected; the value must survive with generous limits.
        let mut big = ReplyOptions::default();
        big.max_line_len = usize::MAX;
        big.max_bytes = usize::MAX;
        let again = Reply::parse(&out, &big).unwrap_or_else(|e| {
            panic!(
                "re-parse of {:?} failed: {e}",
                String::from_utf8_lossy(&out)
            )
        });
        assert_eq!(again, reply);
        // Escaped display never carries a control character.
        assert!(!reply.to_string().chars().any(char::is_control));
        if let Ok(caps) = Capabilities::from_ehlo_reply(&reply) {
            // The lists read from the kept text on demand: AUTH without repeats, extensions
            // with valid keywords this type has no flag for.
            let mechs: Vec<_> = caps.auth().collect();
            for (i, m) in mechs.iter().enumerate() {
                assert!(!mechs[..i].contains(m), "repeated mechanism {m}");
                assert!(caps.supports_auth(m.as_str()));
            }
            assert_eq!(caps.has_auth(), !mechs.is_empty());
            for e in caps.extensions() {
                assert!(
                    EsmtpKeyword::try_from(e.keyword()).is_ok(),
                    "{:?}",
                    e.keyword()
                );
                assert!(caps.supports(e.keyword()));
                assert!(e.params().all(|p| !p.is_empty() && !p.contains(' ')));
            }
            match caps.to_reply() {
                Ok(rebuilt) => {
                    assert_eq!(Capabilities::from_ehlo_reply(&rebuilt).as_ref(), Ok(&caps));
                }
                // Only a first line that reads as an enhanced code (`250 2.5.1 2.0.0` gives
                // the domain `2.0.0`) cannot be written back.
                Err(ReplyError::AmbiguousText) => {
                    let first = caps.server_domain();
                    let code = EnhancedCode::try_from(first)
                        .unwrap_or_else(|e| panic!("{first:?} refused as ambiguous: {e}"));
                    assert_eq!(code.class(), 2);
                }
                Err(e) => panic!("capabilities from a reply re-encode: {e}"),
            }
        }
    }
});

//! SMTP command round trip: any line that parses re-encodes to one CRLF-terminated line that
//! parses to the same value, and parsing never succeeds on a line with CR, LF or NUL. The
//! EHLO/HELO/MAIL/RCPT fast paths agree with the general parser on every input, errors included.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mailferry_wire::fuzzing::command_parse_general;
use mailferry_wire::smtp::{Command, CommandOptions};

fuzz_target!(|data: &[u8]| {
    let parsed = Command::parse(data);
    assert_eq!(
        parsed,
        command_parse_general(data, &CommandOptions::default()),
        "fast path disagrees on {:?}",
        String::from_utf8_lossy(data)
    );
    let Ok(cmd) = parsed else {
        return;
    };
    assert!(
        !data.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
        "accepted a line with CR, LF or NUL: {data:?}"
    );
    let mut out = BytesMut::new();
    cmd.encode(&mut out);
    let line = out.strip_suffix(b"\r\n").expect("encoding ends with CRLF");
    assert!(
        !line.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
        "encoded {cmd:?} to more than one line: {line:?}"
    );
    // Canonical encoding may be longer than the input (quoting, upper-case keywords), so the
    // second parse lifts the line limit; the value must not change.
    let mut opts = CommandOptions::default();
    opts.max_line_len = usize::MAX;
    opts.max_auth_line_len = usize::MAX;
    let again = Command::parse_with(line, &opts).unwrap_or_else(|e| {
        panic!(
            "re-parse of {:?} failed: {e}",
            String::from_utf8_lossy(line)
        )
    });
    assert_eq!(again, cmd);
    // Display never panics and never prints a credential.
    let shown = cmd.to_string();
    if let Command::Auth {
        initial_response: Some(_),
        ..
    } = &cmd
    {
        assert!(shown.ends_with("****"));
    }
});

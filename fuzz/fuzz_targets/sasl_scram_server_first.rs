//! SCRAM server-first-message parsing: never panics; an accepted message has a nonce extending
//! ours, a non-empty salt and an iteration count within bounds; the client session agrees with
//! the parser; and an arbitrary server-final-message is never taken as a valid signature unless
//! it is the one an honest server would compute.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailferry_sasl::fuzzing::scram_parse_server_first;
use mailferry_sasl::{ClientOptions, ClientSession, Credentials, Mechanism, SaslError};

const NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";

fuzz_target!(|data: &[u8]| {
    // server-first \n server-final
    let mut parts = data.splitn(2, |&b| b == b'\n');
    let first = parts.next().unwrap_or_default();
    let last = parts.next();
    let parsed = scram_parse_server_first(first, NONCE, 1, 64);
    if let Ok((nonce, salt, iterations)) = &parsed {
        assert!(nonce.starts_with(NONCE) && nonce.len() > NONCE.len());
        assert!(!nonce.contains(','));
        assert!(!salt.is_empty());
        assert!((1..=64).contains(iterations));
    }

    let mut options = ClientOptions::default();
    options.scram_client_nonce = Some(NONCE.into());
    options.scram_min_iterations = 1;
    options.scram_max_iterations = 64;
    let creds = Credentials::new("user").with_password("pencil");
    let mut session = ClientSession::new(Mechanism::ScramSha1, &creds, &options).expect("creds");
    session
        .initial_response()
        .expect("client-first")
        .expect("client speaks first");
    match (session.step(first), &parsed) {
        (Ok(reply), Ok((nonce, _, _))) => {
            let text = String::from_utf8(reply.expose().clone()).expect("ASCII");
            assert!(text.starts_with(&format!("c=biws,r={nonce},p=")));
        }
        (Err(SaslError::Scram(e)), Err(p)) => assert_eq!(&e, p),
        (got, want) => panic!("step {:?} disagrees with parse {:?}", got.map(|_| ()), want),
    }
    if let (Some(last), Ok(_)) = (last, &parsed) {
        // The fuzzer cannot forge HMAC-SHA-1: any acceptance here is a verification bug, except
        // for the one correct signature, which it will not find.
        assert!(
            session.step(last).is_err(),
            "forged server signature accepted"
        );
        assert!(session.finish().is_err());
    }
});

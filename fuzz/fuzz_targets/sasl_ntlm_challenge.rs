//! NTLM CHALLENGE_MESSAGE parsing: never panics, every accepted field lies inside the message,
//! and a full client step on the same bytes never panics either (ntlmclient serialises the
//! answer, and panics on over-long buffers: the bounds must stop those first).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailferry_sasl::fuzzing::ntlm_parse_challenge;
use mailferry_sasl::{ClientOptions, ClientSession, Credentials, Mechanism, SaslError};

fuzz_target!(|data: &[u8]| {
    let parsed = ntlm_parse_challenge(data);
    // No target information (Cyrus SASL sends none) is accepted: NTLMv2 is computed over a
    // bare MsvAvEOL.
    if let Ok((Some((offset, len)), _timestamp)) = parsed {
        assert!(offset >= 48, "target info inside the header");
        assert!(
            offset + len <= data.len(),
            "target info outside the message"
        );
        assert!(
            len >= 4 && data[offset + len - 4..offset + len] == [0, 0, 0, 0],
            "no MsvAvEOL"
        );
    }

    let creds = Credentials::new("User")
        .with_password("Password")
        .with_ntlm_domain("Domain")
        .with_ntlm_workstation("COMPUTER");
    let mut options = ClientOptions::default();
    options.ntlm_client_challenge = Some([0xaa; 8]);
    options.ntlm_timestamp = Some(0);
    let mut session = ClientSession::new(Mechanism::Ntlm, &creds, &options).expect("valid creds");
    session
        .initial_response()
        .expect("negotiate message")
        .expect("client speaks first");
    match (session.step(data), parsed) {
        (Ok(answer), Ok(_)) => {
            assert_eq!(&answer.expose()[..12], b"NTLMSSP\0\x03\0\0\0");
            assert!(session.is_complete());
        }
        (Err(SaslError::Ntlm(e)), Err(p)) => assert_eq!(e, p),
        (got, want) => panic!("step {:?} disagrees with parse {:?}", got.map(|_| ()), want),
    }
});

//! Server mechanisms against arbitrary client responses: success only when the fake store said
//! yes for exactly the credentials it accepts (PLAIN, LOGIN), when the digest is the one the
//! right password gives (CRAM-MD5), or for the one user with a secret after the server-final
//! message (SCRAM); at most one outcome per exchange.
#![no_main]

use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use mailferry_sasl::framing::{self, FramingOptions};
use mailferry_sasl::{
    ClientOptions, ClientSession, CredentialStore, Credentials, Lookup, Mechanism, Secret,
    ServerOptions, ServerSession, ServerStep, Verdict,
};

/// Accepts alice / wonderland without authzid; CRAM-MD5 knows tim / tanstaaftanstaaf.
struct Store {
    accepted: Cell<u32>,
}

impl CredentialStore for Store {
    fn verify_password(
        &self,
        authcid: &str,
        pw: &Secret<String>,
        authzid: Option<&str>,
    ) -> Verdict {
        if authcid == "alice" && pw.expose() == "wonderland" && authzid.is_none() {
            self.accepted.set(self.accepted.get() + 1);
            Verdict::Accept
        } else {
            Verdict::Reject
        }
    }

    fn cram_md5_secret(&self, authcid: &str) -> Lookup {
        match authcid {
            "tim" => Lookup::Found(Secret::from("tanstaaftanstaaf")),
            "down" => Lookup::TemporaryFailure,
            _ => Lookup::NotFound,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mechanism =
        ServerSession::MECHANISMS[usize::from(selector) % ServerSession::MECHANISMS.len()];
    let mut options = ServerOptions::default();
    options.hostname = "mx.example".into();
    options.challenge_nonce = Some("1.2".into());
    let store = Store {
        accepted: Cell::new(0),
    };
    let mut server = ServerSession::new(mechanism, &options).expect("implemented");
    let mut lines = rest.split(|&b| b == b'\n');
    let initial = if selector & 0x80 != 0 {
        lines.next()
    } else {
        None
    };
    // The framing must never panic on the same bytes either.
    for line in rest.split(|&b| b == b'\n') {
        let _ = framing::decode_response(line, &FramingOptions::default());
        let _ = framing::decode_initial_response(line, &FramingOptions::default());
    }

    let mut challenge = Vec::new();
    let mut last_response: &[u8] = &[];
    let mut step = server.start(initial, &store);
    let mut successes = 0;
    let mut finished = false;
    loop {
        match &step {
            ServerStep::Challenge(c) => {
                assert!(!finished, "challenge after the outcome");
                challenge = c.clone();
            }
            ServerStep::Success(who) => {
                successes += 1;
                assert!(!finished, "a second outcome");
                finished = true;
                match mechanism {
                    Mechanism::CramMd5 => {
                        assert_eq!(who.authcid, "tim");
                        let creds = Credentials::new("tim").with_password("tanstaaftanstaaf");
                        let mut client = ClientSession::new(
                            Mechanism::CramMd5,
                            &creds,
                            &ClientOptions::default(),
                        )
                        .expect("valid credentials");
                        let want = client.step(&challenge).expect("valid challenge");
                        assert_eq!(
                            want.expose().as_slice(),
                            last_response,
                            "digest not checked"
                        );
                    }
                    Mechanism::ScramSha256 | Mechanism::ScramSha1 => {
                        // Only a user with a secret, and only once the client took the
                        // server's signature.
                        assert_eq!(who.authcid, "tim");
                        assert!(challenge.starts_with(b"v="), "success before the verifier");
                        assert!(last_response.is_empty());
                    }
                    _ => {
                        assert_eq!(store.accepted.get(), 1, "success without the store's yes");
                        assert_eq!(who.authcid, "alice");
                        assert_eq!(who.authzid, None);
                    }
                }
            }
            ServerStep::Failure(_) => finished = true,
        }
        let Some(line) = lines.next() else { break };
        if line == b"*" {
            step = server.cancel();
        } else {
            last_response = line;
            step = server.step(line, &store);
        }
        if finished {
            assert!(
                !matches!(step, ServerStep::Success(_)),
                "success after the outcome"
            );
        }
    }
    assert!(successes <= 1);
});

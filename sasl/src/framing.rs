//! SASL framing shared by SMTP AUTH (RFC 4954 §4) and POP3 AUTH (RFC 5034 §4).
//!
//! The protocol crates cut lines and strip `334 ` / `+ ` and the CRLF; this module turns the
//! remaining text into bytes and back. Base64 is strict in both directions: the standard
//! alphabet, canonical `=` padding, no whitespace, no non-zero trailing bits (RFC 4648 §3.1-3.5).
//! Anything else is [`FramingError::InvalidBase64`]: the peer is either broken or probing.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::{FramingError, Secret};

/// RFC 4954 §4 and RFC 5034 §4: an AUTH line (command or continuation) may be 12,288 octets.
pub const MAX_LINE_LEN: usize = 12_288;

/// The continuation line a client sends to abandon an exchange (RFC 4954 §4, RFC 5034 §4).
pub const CANCEL: &str = "*";

/// Stated once so nobody swaps in a lenient engine: canonical padding required, trailing bits
/// refused.
const STRICT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_allow_trailing_bits(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Limits for SASL framing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FramingOptions {
    /// The longest base64 text accepted in one line, in octets. Default [`MAX_LINE_LEN`]
    /// (12,288, RFC 4954 §4 / RFC 5034 §4).
    pub max_line_len: usize,
}

impl Default for FramingOptions {
    fn default() -> Self {
        FramingOptions {
            max_line_len: MAX_LINE_LEN,
        }
    }
}

/// A client's continuation line, as the server reads it.
#[derive(Debug)]
pub enum ClientLine {
    /// A response (possibly empty: an empty line is an empty response).
    Response(Secret<Vec<u8>>),
    /// `*`: the client abandons the exchange; the server answers 501 (SMTP) or -ERR (POP3).
    Cancel,
}

fn check_len(text: &[u8], options: &FramingOptions) -> Result<(), FramingError> {
    if text.len() > options.max_line_len {
        return Err(FramingError::TooLong {
            limit: options.max_line_len,
        });
    }
    Ok(())
}

fn decode(text: &[u8]) -> Result<Vec<u8>, FramingError> {
    STRICT.decode(text).map_err(|_| FramingError::InvalidBase64)
}

/// Server side: decodes a client continuation line (without CRLF). `*` is
/// [`ClientLine::Cancel`]; an empty line is an empty response.
pub fn decode_response(line: &[u8], options: &FramingOptions) -> Result<ClientLine, FramingError> {
    check_len(line, options)?;
    if line == CANCEL.as_bytes() {
        return Ok(ClientLine::Cancel);
    }
    Ok(ClientLine::Response(Secret::new(decode(line)?)))
}

/// Server side: decodes the initial-response argument of `AUTH <mech> <initial-response>`
/// (RFC 4954 §4, RFC 5034 §4). `=` is an empty response; `*` is not allowed here and is
/// rejected as invalid base64.
pub fn decode_initial_response(
    arg: &[u8],
    options: &FramingOptions,
) -> Result<Secret<Vec<u8>>, FramingError> {
    check_len(arg, options)?;
    if arg == b"=" {
        return Ok(Secret::new(Vec::new()));
    }
    if arg.is_empty() {
        // An empty initial response must be written `=`; a bare empty argument is a syntax slip.
        return Err(FramingError::InvalidBase64);
    }
    Ok(Secret::new(decode(arg)?))
}

/// Client side: decodes the text of a server challenge (after `334 ` or `+ `, without CRLF).
/// An empty text is an empty challenge.
pub fn decode_challenge(text: &[u8], options: &FramingOptions) -> Result<Vec<u8>, FramingError> {
    check_len(text, options)?;
    decode(text)
}

/// Server side: encodes a challenge for `334 <text>` / `+ <text>`.
pub fn encode_challenge(challenge: &[u8]) -> String {
    STRICT.encode(challenge)
}

/// Client side: encodes a continuation response. An empty response is an empty line.
pub fn encode_response(response: &[u8]) -> Secret<String> {
    Secret::new(STRICT.encode(response))
}

/// Client side: encodes an initial response for `AUTH <mech> <text>` (SASL-IR, RFC 4954 §4):
/// an empty response is written `=`.
pub fn encode_initial_response(response: &[u8]) -> Secret<String> {
    if response.is_empty() {
        return Secret::new(String::from("="));
    }
    encode_response(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts() -> FramingOptions {
        FramingOptions::default()
    }

    fn response(line: &[u8]) -> Result<Vec<u8>, FramingError> {
        match decode_response(line, &opts())? {
            ClientLine::Response(r) => Ok(r.expose().clone()),
            ClientLine::Cancel => panic!("unexpected cancel"),
        }
    }

    #[test]
    fn known_answers() {
        assert_eq!(response(b"").unwrap(), b"");
        assert_eq!(response(b"Zm9v").unwrap(), b"foo");
        assert_eq!(response(b"Zm8=").unwrap(), b"fo");
        assert_eq!(response(b"Zg==").unwrap(), b"f");
        assert_eq!(
            response(b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap(),
            b"\0tim\0tanstaaftanstaaf"
        );
    }

    #[test]
    fn malformed_base64_is_rejected() {
        let table: &[&[u8]] = &[
            b"Zg",       // missing padding
            b"Zg=",      // short padding
            b"Zg===",    // extra padding
            b"Z===",     // impossible length
            b"=Zg=",     // padding first
            b"Zg==Zg==", // padding in the middle
            b"Zm9v\r\n", // line ending left in
            b"Zm 9v",    // embedded space
            b" Zm9v",    // leading space
            b"Zm9v ",    // trailing space
            b"Zm9v\t",   // tab
            b"Zm9-",     // URL-safe alphabet
            b"Zm9_",     // URL-safe alphabet
            b"Zh==",     // non-zero trailing bits
            b"Zm9=",     // non-zero trailing bits
            b"\xffZm9",  // non-ASCII
            b"=",        // '=' only means empty in an initial response
            b"**",       // not the cancel token
        ];
        for line in table {
            assert_eq!(response(line), Err(FramingError::InvalidBase64), "{line:?}");
            assert_eq!(
                decode_challenge(line, &opts()),
                Err(FramingError::InvalidBase64),
                "{line:?}"
            );
        }
    }

    #[test]
    fn star_cancels_only_on_continuation_lines() {
        assert!(matches!(
            decode_response(b"*", &opts()),
            Ok(ClientLine::Cancel)
        ));
        assert_eq!(
            decode_initial_response(b"*", &opts()).err(),
            Some(FramingError::InvalidBase64)
        );
    }

    #[test]
    fn equals_is_an_empty_initial_response() {
        assert_eq!(
            decode_initial_response(b"=", &opts()).unwrap().expose(),
            b""
        );
        assert_eq!(
            decode_initial_response(b"", &opts()).err(),
            Some(FramingError::InvalidBase64)
        );
        assert_eq!(
            decode_initial_response(b"Zm9v", &opts()).unwrap().expose(),
            b"foo"
        );
        assert_eq!(encode_initial_response(b"").expose(), "=");
        assert_eq!(encode_initial_response(b"foo").expose(), "Zm9v");
        assert_eq!(encode_response(b"").expose(), "");
    }

    #[test]
    fn lines_are_bounded() {
        let at_limit = "A".repeat(MAX_LINE_LEN);
        assert!(response(at_limit.as_bytes()).is_ok());
        let over = "A".repeat(MAX_LINE_LEN + 4);
        let err = Some(FramingError::TooLong {
            limit: MAX_LINE_LEN,
        });
        assert_eq!(response(over.as_bytes()).err(), err);
        assert_eq!(decode_challenge(over.as_bytes(), &opts()).err(), err);
        assert_eq!(decode_initial_response(over.as_bytes(), &opts()).err(), err);
        let small = FramingOptions { max_line_len: 4 };
        assert_eq!(
            decode_challenge(b"Zm9vYg==", &small),
            Err(FramingError::TooLong { limit: 4 })
        );
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = encode_response(&bytes);
            prop_assert_eq!(response(text.expose().as_bytes()).unwrap(), bytes.clone());
            let ir = encode_initial_response(&bytes);
            let back = decode_initial_response(ir.expose().as_bytes(), &opts()).unwrap();
            prop_assert_eq!(back.expose(), &bytes);
            prop_assert_eq!(decode_challenge(encode_challenge(&bytes).as_bytes(), &opts()).unwrap(), bytes);
        }

        #[test]
        fn decoding_never_panics(line in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_response(&line, &opts());
            let _ = decode_initial_response(&line, &opts());
            let _ = decode_challenge(&line, &opts());
        }
    }
}

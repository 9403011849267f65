//! The dot codec: decode(encode(x)) is x with normalised line endings; the decoder stops exactly
//! at the terminator; both directions give the same result however the input is cut; the
//! validating scan agrees with the encoder.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mailferry_wire::dot::{BodyCheck, BodyChunk, DotDecoder, DotEncoder, EncodeOptions};

/// CRLF, bare CR and bare LF each become CRLF; a non-empty body ends with CRLF.
fn normalise(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 2);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn encode(options: EncodeOptions, chunks: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut encoder = DotEncoder::new(options);
    let mut out = BytesMut::new();
    for chunk in chunks {
        encoder.encode(chunk, &mut out).map_err(|e| e.to_string())?;
    }
    let stats = encoder.finish(&mut out).map_err(|e| e.to_string())?;
    assert_eq!(stats.bytes_out, out.len() as u64);
    Ok(out.to_vec())
}

/// (body, ended, octets left in the buffer)
fn decode(chunks: &[&[u8]]) -> (Vec<u8>, bool, Vec<u8>) {
    let mut decoder = DotDecoder::new();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut ended = false;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(step) = decoder.decode(&mut buf) {
            match step {
                BodyChunk::Data(data) => {
                    assert!(!data.is_empty());
                    body.extend_from_slice(&data);
                }
                BodyChunk::End => ended = true,
            }
        }
        // Only an undecided tail (at most `CRLF.` pending) is ever held back.
        assert!(
            ended || buf.len() <= 2,
            "decoder holds {} octets",
            buf.len()
        );
    }
    (body, ended, buf.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let cut = usize::from(control).wrapping_mul(7919) % (input.len() + 1);
    let (head, tail) = input.split_at(cut);

    // Encoder: chunked == one-shot, and the round trip restores the normalised input.
    let wire = encode(EncodeOptions::unchecked(), &[input]).expect("unchecked encode fails");
    assert_eq!(
        encode(EncodeOptions::unchecked(), &[head, tail]).as_ref(),
        Ok(&wire)
    );
    let mut with_next = wire.clone();
    with_next.extend_from_slice(b"+OK next\r\n");
    let (body, ended, rest) = decode(&[&with_next]);
    assert!(ended, "encoded body did not end");
    assert_eq!(body, normalise(input));
    assert_eq!(rest, b"+OK next\r\n");

    // Checked encoding and the validating scan agree, chunked or not.
    let checked = EncodeOptions::default();
    let encoded = encode(checked, &[input]);
    assert_eq!(encode(checked, &[head, tail]), encoded);
    let mut scan = BodyCheck::new(checked);
    let scanned = scan
        .update(head)
        .and_then(|()| scan.update(tail))
        .and_then(|()| scan.finish());
    match (&encoded, scanned) {
        (Ok(wire_checked), Ok(stats)) => {
            assert_eq!(wire_checked, &wire);
            assert_eq!(stats.bytes_out, wire.len() as u64);
        }
        (Err(a), Err(b)) => assert_eq!(a, &b.to_string()),
        (a, b) => panic!("encoder {a:?} but scan {b:?}"),
    }

    // Decoder on arbitrary input: chunked == one-shot, nothing invented.
    let one_shot = decode(&[input]);
    assert_eq!(decode(&[head, tail]), one_shot);
    if control & 0x80 != 0 {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(decode(&bytes), one_shot);
    }
    let (body, ended, rest) = one_shot;
    assert!(body.len() + rest.len() <= input.len());
    if ended {
        // The terminator is there, right before what was left.
        let consumed = &input[..input.len() - rest.len()];
        assert!(consumed == b".\r\n" || consumed.ends_with(b"\r\n.\r\n"));
    }
});

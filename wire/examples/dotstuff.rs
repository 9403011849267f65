//! Dot-stuffs a file as SMTP `DATA` would send it, decodes it back as a POP3 client or SMTP
//! server would read it, checks the round trip and reports sizes and speeds.
//!
//! ```text
//! cargo run --release -p mailferry-wire --example dotstuff -- message.eml
//! ```

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mailferry_wire::dot::{
    BodyCheck, BodyChunk, DotDecoder, DotEncoder, EncodeOptions, EncodeStats,
};

/// The size of each read, and of each piece of wire data handed to the decoder.
const CHUNK: usize = 64 * 1024;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        eprintln!("usage: dotstuff FILE");
        eprintln!("  encodes FILE as SMTP DATA, decodes it back and verifies the round trip");
        return ExitCode::from(2);
    };
    match run(Path::new(&path)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("dotstuff: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Returns whether the round trip held.
fn run(path: &Path) -> Result<bool, String> {
    let shown = path.display();
    let mut file = File::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;

    // Encode chunk by chunk, as a client streams a spooled message. `unchecked`: any file goes
    // through; the baseline check below says whether a peer without extensions would take it.
    let mut encoder = DotEncoder::new(EncodeOptions::unchecked());
    let mut baseline = BodyCheck::new(EncodeOptions::default());
    let mut baseline_error = None;
    let mut input = Vec::new();
    let mut wire = BytesMut::new();
    let mut chunk = vec![0; CHUNK];
    let mut encode_time = Duration::ZERO;
    loop {
        let n = file
            .read(&mut chunk)
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        if n == 0 {
            break;
        }
        let started = Instant::now();
        encoder
            .encode(&chunk[..n], &mut wire)
            .map_err(|e| format!("encoding failed: {e}"))?;
        encode_time += started.elapsed();
        if baseline_error.is_none()
            && let Err(error) = baseline.update(&chunk[..n])
        {
            baseline_error = Some(error);
        }
        input.extend_from_slice(&chunk[..n]);
    }
    let started = Instant::now();
    let stats = encoder
        .finish(&mut wire)
        .map_err(|e| format!("encoding failed: {e}"))?;
    encode_time += started.elapsed();
    let baseline = match baseline_error {
        Some(error) => Err(error),
        None => baseline.finish(),
    };

    // Decode the wire form in reads of CHUNK octets, as it would arrive.
    let mut decoder = DotDecoder::new();
    let mut buf = BytesMut::with_capacity(2 * CHUNK);
    let mut decoded = Vec::with_capacity(input.len() + 2);
    let mut ended = false;
    let started = Instant::now();
    for piece in wire.chunks(CHUNK) {
        buf.extend_from_slice(piece);
        while let Some(step) = decoder.decode(&mut buf) {
            match step {
                BodyChunk::Data(data) => decoded.extend_from_slice(&data),
                BodyChunk::End => ended = true,
            }
        }
    }
    let decode_time = started.elapsed();

    let expected = normalise(&input);
    let ok = ended && buf.is_empty() && decoded == expected;
    report(
        &stats,
        baseline,
        encode_time,
        decode_time,
        decoder.unstuffed_lines(),
    );
    if ok {
        println!("round trip:       OK (decoded body equals the CRLF-normalised input)");
    } else {
        let at = decoded
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(decoded.len().min(expected.len()));
        println!(
            "round trip:       FAILED (terminator seen: {ended}, left over: {} octets, \
             first difference at octet {at})",
            buf.len()
        );
    }
    Ok(ok)
}

fn report(
    stats: &EncodeStats,
    baseline: Result<EncodeStats, mailferry_wire::dot::EncodeError>,
    encode_time: Duration,
    decode_time: Duration,
    unstuffed: u64,
) {
    println!("bytes in:         {}", stats.bytes_in);
    println!(
        "bytes on wire:    {} (terminator included)",
        stats.bytes_out
    );
    println!("lines:            {}", stats.lines);
    println!(
        "lines stuffed:    {} (un-stuffed on decode: {unstuffed})",
        stats.stuffed_lines
    );
    println!(
        "line ends fixed:  {} bare CR/LF -> CRLF",
        stats.normalised_line_endings
    );
    match baseline {
        Ok(_) => println!("plain SMTP:       OK (7-bit, lines <= 1000 octets)"),
        Err(error) => println!("plain SMTP:       needs extensions: {error}"),
    }
    println!("encode:           {}", speed(stats.bytes_in, encode_time));
    println!("decode:           {}", speed(stats.bytes_out, decode_time));
}

fn speed(bytes: u64, time: Duration) -> String {
    let seconds = time.as_secs_f64();
    if seconds == 0.0 {
        return "too fast to measure".to_owned();
    }
    // Precision loss in the conversion is irrelevant for a printed rate.
    #[allow(clippy::cast_precision_loss)]
    let mb = bytes as f64 / 1e6;
    format!("{:.1} MB/s ({:.3} ms)", mb / seconds, seconds * 1e3)
}

/// The reference the decoded body must equal: every CRLF, bare CR and bare LF becomes CRLF, and
/// a non-empty body ends with CRLF. Written independently of the encoder on purpose.
fn normalise(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 2);
    let mut bytes = input.iter().peekable();
    while let Some(&b) = bytes.next() {
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                bytes.next_if_eq(&&b'\n');
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

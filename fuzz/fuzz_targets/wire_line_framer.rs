//! The line framer: any input, cut anywhere, frames exactly as when it arrives in one piece;
//! lines respect `max_line_len`; the buffer stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailferry_wire::framer::{Frame, FrameError, FramerOptions, LineEndings, LineFramer, Mode};

/// Frames joined so that the result does not depend on where the input was cut.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Line(Vec<u8>),
    Error(FrameError),
    Body(Vec<u8>),
    BodyEnd,
}

/// Plays a server: `DATA` enters a dot body, `BDAT n` a counted body, as a core would.
fn run(options: FramerOptions, chunks: &[&[u8]]) -> (Vec<Event>, Vec<u8>) {
    let mut framer = LineFramer::new(options);
    let max = framer.options().max_line_len;
    let mut events = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        assert!(
            framer.buffered().len() <= max + chunk.len(),
            "buffer unbounded"
        );
        loop {
            match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Line(line))) => {
                    assert!(line.len() < max, "line of {} octets over {max}", line.len());
                    if &line[..] == b"DATA" {
                        framer.set_mode(Mode::DotBody);
                    } else if let Some(n) = line.strip_prefix(b"BDAT ") {
                        if let Some(n) = std::str::from_utf8(n).ok().and_then(|n| n.parse().ok()) {
                            framer.set_mode(Mode::Counted(n));
                        }
                    }
                    events.push(Event::Line(line.to_vec()));
                }
                Ok(Some(Frame::BodyChunk(data))) => {
                    assert!(!data.is_empty(), "empty body chunk");
                    match events.last_mut() {
                        Some(Event::Body(body)) => body.extend_from_slice(&data),
                        _ => events.push(Event::Body(data.to_vec())),
                    }
                }
                Ok(Some(Frame::BodyEnd)) => events.push(Event::BodyEnd),
                // Reported once per body, before a chunk whose boundaries depend on the cuts.
                Err(FrameError::BareLineEndingInBody) => {}
                Err(error) => events.push(Event::Error(error)),
                Ok(Some(other)) => panic!("unknown frame {other:?}"),
            }
        }
    }
    (events, framer.buffered().to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let mut options = FramerOptions::default();
    options.max_line_len = usize::from(control & 0x3F) + 2;
    options.line_endings = if control & 0x40 == 0 {
        LineEndings::Strict
    } else {
        LineEndings::Lenient
    };
    let one_shot = run(options, &[input]);
    let cut = usize::from(control).wrapping_mul(7919) % (input.len() + 1);
    let (head, tail) = input.split_at(cut);
    assert_eq!(run(options, &[head, tail]), one_shot, "cut at {cut}");
    if control & 0x80 != 0 {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(options, &bytes), one_shot, "byte by byte");
    }
});

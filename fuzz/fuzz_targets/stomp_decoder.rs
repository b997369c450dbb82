//! The STOMP decoder on arbitrary bytes: never a panic; the stream decodes the same
//! whole or in pieces; errors echo no control character; what decodes re-encodes and
//! decodes to the same frames. The first byte picks the version and the piece size.
#![no_main]

use bytes::BytesMut;
use herald_stomp::{DecodeError, Decoder, Frame, Limits, Version, encode};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_frame: 4096,
    max_headers: 16,
    max_header_line: 512,
};

fn decode(version: Version, pieces: &[&[u8]], limits: Limits) -> Result<Vec<Frame>, DecodeError> {
    let mut d = Decoder::new(limits);
    d.set_version(version);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        while let Some(f) = d.decode(&mut buf)? {
            frames.push(f);
        }
    }
    Ok(frames)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let version = [Version::V1_0, Version::V1_1, Version::V1_2][usize::from(control % 3)];
    let piece = 1 + usize::from(control / 3);
    let whole = decode(version, &[input], LIMITS);
    let pieces: Vec<&[u8]> = input.chunks(piece).collect();
    let split = decode(version, &pieces, LIMITS);
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "whole and in pieces of {piece}"),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?}, in pieces of {piece} {split:?}"),
    }
    let frames = match whole {
        Ok(frames) => frames,
        Err(e) => {
            let text = e.to_string();
            assert!(!text.chars().any(char::is_control), "{text:?}");
            return;
        }
    };
    let mut out = BytesMut::new();
    for f in &frames {
        encode(f, version, &mut out);
    }
    let roomy = Limits {
        max_frame: 1 << 20,
        max_headers: 64,
        max_header_line: 1 << 16,
    };
    let again = decode(version, &[&out], roomy).expect("what decoded re-encodes and decodes");
    let expected: Vec<Frame> = frames
        .into_iter()
        .map(|mut f| {
            if f.command.allows_body() && !f.headers.contains("content-length") {
                f.headers.push("content-length", f.body.len().to_string());
            }
            f
        })
        .collect();
    assert_eq!(again, expected);
});

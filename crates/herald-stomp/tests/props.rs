//! Property tests of the codec: what is encoded decodes to the same frame, in every
//! version, and any split of a byte stream decodes the same as the whole stream.

use bytes::{Bytes, BytesMut};
use herald_stomp::{Command, DecodeError, Decoder, Frame, Limits, Version, encode};
use proptest::prelude::*;

const COMMANDS: &[Command] = &[
    Command::Connect,
    Command::Stomp,
    Command::Send,
    Command::Subscribe,
    Command::Unsubscribe,
    Command::Ack,
    Command::Nack,
    Command::Begin,
    Command::Commit,
    Command::Abort,
    Command::Disconnect,
    Command::Connected,
    Command::Message,
    Command::Receipt,
    Command::Error,
];

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![
        Just(Version::V1_0),
        Just(Version::V1_1),
        Just(Version::V1_2)
    ]
}

/// Header text the decoder accepts: no control character but TAB in values, no ':' in
/// names; escaped frames (1.1/1.2 but CONNECT, CONNECTED) may carry CR and LF in
/// values too, as escapes.
fn text(escaped: bool, name: bool) -> BoxedStrategy<String> {
    let s = if name {
        "[^\u{0}-\u{1f}\u{7f}:]{0,12}"
    } else if escaped {
        "[^\u{0}-\u{8}\u{b}\u{c}\u{e}-\u{1f}\u{7f}]{0,12}"
    } else {
        "[^\u{0}-\u{8}\u{a}-\u{1f}\u{7f}]{0,12}"
    };
    s.prop_filter("content-length is the codec's own", |n| {
        n != "content-length"
    })
    .boxed()
}

fn frame_in(version: Version) -> impl Strategy<Value = Frame> {
    prop::sample::select(COMMANDS).prop_flat_map(move |command| {
        let escaped = command.escapes_headers(version);
        let headers = prop::collection::vec((text(escaped, true), text(escaped, false)), 0..6);
        let body = if command.allows_body() {
            prop::collection::vec(any::<u8>(), 0..200).boxed()
        } else {
            Just(vec![]).boxed()
        };
        (headers, body).prop_map(move |(headers, body)| Frame {
            command,
            headers: headers.into_iter().collect(),
            body: Bytes::from(body),
        })
    })
}

fn expected(mut f: Frame) -> Frame {
    if f.command.allows_body() {
        f.headers.push("content-length", f.body.len().to_string());
    }
    f
}

fn decode_chunks(version: Version, chunks: &[&[u8]]) -> Result<Vec<Frame>, DecodeError> {
    let mut d = Decoder::new(Limits::default());
    d.set_version(version);
    let mut buf = BytesMut::new();
    let mut out = vec![];
    for c in chunks {
        buf.extend_from_slice(c);
        while let Some(f) = d.decode(&mut buf)? {
            out.push(f);
        }
    }
    Ok(out)
}

fn split_at_points<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = vec![];
    let mut prev = 0;
    for c in cuts.into_iter().chain([bytes.len()]) {
        out.push(&bytes[prev..c]);
        prev = c;
    }
    out
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity((v, frame) in version().prop_flat_map(|v| (Just(v), frame_in(v)))) {
        let mut buf = BytesMut::new();
        encode(&frame, v, &mut buf);
        let decoded = decode_chunks(v, &[&buf])?;
        prop_assert_eq!(decoded, vec![expected(frame)]);
    }

    #[test]
    fn any_split_decodes_like_the_whole(
        (v, frames) in version().prop_flat_map(|v| (Just(v), prop::collection::vec(frame_in(v), 1..5))),
        heartbeats in prop::collection::vec(prop_oneof![Just(&b""[..]), Just(&b"\n"[..]), Just(&b"\r\n\n"[..]), Just(&b"\0\n\0"[..])], 5),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = BytesMut::new();
        for (i, f) in frames.iter().enumerate() {
            stream.extend_from_slice(heartbeats[i % heartbeats.len()]);
            encode(f, v, &mut stream);
        }
        let whole = decode_chunks(v, &[&stream])?;
        let split = decode_chunks(v, &split_at_points(&stream, &points))?;
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(whole, frames.into_iter().map(expected).collect::<Vec<_>>());
    }

    /// Arbitrary bytes never panic the decoder, and a split never turns an accepted
    /// stream into different frames.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(prop_oneof![
            any::<u8>(),
            Just(b'\n'), Just(b':'), Just(0u8), Just(b'\\'),
        ], 0..400),
        prefix in prop::sample::select(vec!["SEND\n", "MESSAGE\ncontent-length:3\n", "SUBSCRIBE\nid:1\n", ""]),
        points in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut input = prefix.as_bytes().to_vec();
        input.extend_from_slice(&bytes);
        let whole = decode_chunks(Version::V1_2, &[&input]);
        let split = decode_chunks(Version::V1_2, &split_at_points(&input, &points));
        if let Ok(frames) = whole {
            prop_assert_eq!(split, Ok(frames));
        }
    }

    /// Bytes that cannot begin a command are refused at once: no EOL needed.
    #[test]
    fn garbage_is_refused_without_an_eol(
        junk in prop::collection::vec(any::<u8>().prop_filter("no EOL", |b| *b != b'\n'), 1..40),
        lead in prop::sample::select(vec!["", "\n", "\0", "\r\n\0"]),
    ) {
        let start = junk.iter().position(|&b| b != 0).unwrap_or(junk.len());
        let line = junk[start..].strip_suffix(b"\r").unwrap_or(&junk[start..]);
        prop_assume!(!Command::could_start(line));
        let mut input = lead.as_bytes().to_vec();
        input.extend_from_slice(&junk);
        let refused = matches!(decode_chunks(Version::V1_2, &[&input]), Err(DecodeError::UnknownCommand(_)));
        prop_assert!(refused);
    }
}

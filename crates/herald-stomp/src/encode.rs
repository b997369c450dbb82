//! Writing frames. Header values are escaped for 1.1/1.2 (never on CONNECT, STOMP or
//! CONNECTED); 1.0 cannot carry an EOL in a value, so one is written as a space rather
//! than letting a value break the framing. No version can carry a NUL in a header:
//! it is written as a space too, so no header ever ends a frame early.

use bytes::{BufMut, BytesMut};

use crate::frame::{Frame, Version};

/// Appends `frame` to `out`. Frames that may carry a body get a `content-length`
/// header when they have none, so a body with NUL octets survives.
pub fn encode(frame: &Frame, version: Version, out: &mut BytesMut) {
    let escape = frame.command.escapes_headers(version);
    out.reserve(frame.body.len() + 64 + frame.headers.len() * 32);
    out.put_slice(frame.command.as_str().as_bytes());
    out.put_u8(b'\n');
    for (name, value) in frame.headers.iter() {
        write_header(out, name, value, escape);
    }
    if frame.command.allows_body() && !frame.headers.contains("content-length") {
        write_header(out, "content-length", &frame.body.len().to_string(), false);
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

/// Appends one `name:value\n` line.
pub fn write_header(out: &mut BytesMut, name: &str, value: &str, escape: bool) {
    encode_header_value(out, name, escape);
    out.put_u8(b':');
    encode_header_value(out, value, escape);
    out.put_u8(b'\n');
}

/// Appends a header name or value, escaped when `escape` is set.
pub fn encode_header_value(out: &mut BytesMut, s: &str, escape: bool) {
    let special = |b: &u8| matches!(b, b'\r' | b'\n' | b':' | b'\\' | 0);
    if !s.as_bytes().iter().any(special) {
        out.put_slice(s.as_bytes());
        return;
    }
    for &b in s.as_bytes() {
        match (b, escape) {
            (b'\r', true) => out.put_slice(b"\\r"),
            (b'\n', true) => out.put_slice(b"\\n"),
            (b':', true) => out.put_slice(b"\\c"),
            (b'\\', true) => out.put_slice(b"\\\\"),
            (b'\r' | b'\n', false) | (0, _) => out.put_u8(b' '),
            _ => out.put_u8(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Command;

    fn encoded(frame: &Frame, v: Version) -> String {
        let mut out = BytesMut::new();
        encode(frame, v, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn escapes_in_1_2_but_not_on_connected_or_1_0() {
        let f = Frame::new(Command::Message).header("a:b", "x\ny\\z");
        assert_eq!(
            encoded(&f, Version::V1_2),
            "MESSAGE\na\\cb:x\\ny\\\\z\ncontent-length:0\n\n\0"
        );
        assert_eq!(
            encoded(&f, Version::V1_0),
            "MESSAGE\na:b:x y\\z\ncontent-length:0\n\n\0"
        );
        let c = Frame::new(Command::Connected).header("server", "a:b");
        assert_eq!(encoded(&c, Version::V1_2), "CONNECTED\nserver:a:b\n\n\0");
    }

    #[test]
    fn no_header_carries_a_nul_or_a_raw_eol_in_any_version() {
        let f = Frame::new(Command::Message).header("n\0\r\n", "v\0x\r\n");
        for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
            let text = encoded(&f, v);
            let head = &text[..text.find("\n\n").unwrap()];
            assert_eq!(head.lines().count(), 3, "{v}: {head:?}");
            assert!(
                !head.contains('\0') && !head.contains('\r'),
                "{v}: {head:?}"
            );
        }
        let c = Frame::new(Command::Connected).header("server", "a\0\nb");
        assert_eq!(encoded(&c, Version::V1_2), "CONNECTED\nserver:a  b\n\n\0");
    }
}

//! The Redis bus's wire format: a message as one node publishes it and another reads
//! it back, and the `"<offset> <epoch> <message>"` envelope the topic script adds.
//! Everything here reads bytes from Redis, which other nodes (or anyone with access to
//! it) wrote: a malformed payload is `None`, never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use herald_stomp::Headers;

use crate::message::{Kind, Message};

/// One message on the wire: version 1, origin node, id, kind, key, destination,
/// content type, sender headers, body. Strings are u16-length-prefixed, header
/// values and the body u32.
pub(crate) fn encode(m: &Message, origin: &str) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(64 + m.key.len() * 2 + m.body.len());
    out.put_u8(1);
    put_str(&mut out, origin);
    put_str(&mut out, &m.id);
    out.put_u8(matches!(m.kind, Kind::Queue) as u8);
    put_str(&mut out, &m.key);
    put_str(&mut out, &m.destination);
    match &m.content_type {
        Some(ct) => {
            out.put_u8(1);
            put_str(&mut out, ct);
        }
        None => out.put_u8(0),
    }
    let headers: Vec<(&str, &str)> = m.headers.iter().collect();
    out.put_u16(headers.len() as u16);
    for (k, v) in headers {
        put_str(&mut out, k);
        out.put_u32(v.len() as u32);
        out.put_slice(v.as_bytes());
    }
    out.put_u32(m.body.len() as u32);
    out.put_slice(&m.body);
    out.to_vec()
}

fn put_str(out: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

pub(crate) fn decode(payload: &[u8]) -> Option<(String, Message)> {
    let mut b = payload;
    fn take(b: &mut &[u8], n: usize) -> Option<Vec<u8>> {
        (b.remaining() >= n).then(|| {
            let v = b[..n].to_vec();
            b.advance(n);
            v
        })
    }
    fn s16(b: &mut &[u8]) -> Option<String> {
        (b.remaining() >= 2).then_some(())?;
        let n = b.get_u16() as usize;
        String::from_utf8(take(b, n)?).ok()
    }
    (b.remaining() >= 1 && b.get_u8() == 1).then_some(())?;
    let origin = s16(&mut b)?;
    let id = s16(&mut b)?;
    (b.remaining() >= 1).then_some(())?;
    let kind = if b.get_u8() == 1 {
        Kind::Queue
    } else {
        Kind::Topic
    };
    let key = s16(&mut b)?;
    let destination = s16(&mut b)?;
    (b.remaining() >= 1).then_some(())?;
    let content_type = if b.get_u8() == 1 {
        Some(s16(&mut b)?)
    } else {
        None
    };
    (b.remaining() >= 2).then_some(())?;
    let n = b.get_u16();
    let mut headers = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let k = s16(&mut b)?;
        (b.remaining() >= 4).then_some(())?;
        let len = b.get_u32() as usize;
        let v = String::from_utf8(take(&mut b, len)?).ok()?;
        headers.push((k, v));
    }
    (b.remaining() >= 4).then_some(())?;
    let len = b.get_u32() as usize;
    let body = Bytes::from(take(&mut b, len)?);
    let headers: Headers = headers.into_iter().collect();
    Some((
        origin,
        Message::from_parts(id, kind, key, destination, content_type, headers, body),
    ))
}

/// `"<offset> <epoch> <payload>"` as the topic script publishes it.
pub(crate) fn split_published(p: &[u8]) -> Option<(u64, String, &[u8])> {
    let sp = p.iter().position(|&c| c == b' ')?;
    let offset = std::str::from_utf8(&p[..sp]).ok()?.parse().ok()?;
    let rest = &p[sp + 1..];
    let sp = rest.iter().position(|&c| c == b' ')?;
    let epoch = std::str::from_utf8(&rest[..sp]).ok()?.to_owned();
    Some((offset, epoch, &rest[sp + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Target;

    #[test]
    fn wire_round_trip() {
        let sent: Headers = [("content-type", "text/plain"), ("x-a", "1:2")]
            .into_iter()
            .collect();
        let m = Message::new(
            "n-1".into(),
            Target::broker(Kind::Topic, "/topic/a"),
            &sent,
            Bytes::from_static(b"hi\0there"),
        );
        let (origin, d) = decode(&encode(&m, "node")).unwrap();
        assert_eq!(origin, "node");
        assert_eq!(
            (d.id.as_str(), d.key.as_str(), d.destination.as_str()),
            ("n-1", "/topic/a", "/topic/a")
        );
        assert_eq!(d.content_type.as_deref(), Some("text/plain"));
        assert_eq!(d.headers.get("x-a"), Some("1:2"));
        assert_eq!(&d.body[..], b"hi\0there");
        assert!(decode(b"\x02junk").is_none());
    }

    #[test]
    fn envelopes_split() {
        assert_eq!(
            split_published(b"12 ep payload with spaces"),
            Some((12, "ep".into(), &b"payload with spaces"[..]))
        );
        assert_eq!(split_published(b"x ep p"), None);
        assert_eq!(split_published(b"12 ep"), None);
    }
}

//! A published message, serialized once.
//!
//! A MESSAGE frame differs between subscribers only in `subscription`, `message-id`'s
//! neighbour `ack`, and the escaping rules of the subscriber's version. So the part
//! that is the same for everyone — destination, content headers, the sender's own
//! headers, body, NUL — is encoded once per escaping style, lazily, and each delivery
//! writes a short head in front of it. Fan-out to N subscribers is N small heads and
//! N memcpys, never N encodings.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use herald_stomp::{Headers, Version, write_header};

use super::outbox::OutFrame;
use super::{Kind, Target};

/// Headers a sender may not set on a MESSAGE: the broker owns them.
const RESERVED: &[&str] = &[
    "destination",
    "offset",
    "epoch",
    "recovered",
    "message-id",
    "subscription",
    "ack",
    "content-length",
    "content-type",
    "receipt",
    "transaction",
];

#[derive(Debug)]
pub struct Message {
    pub id: String,
    /// How the broker delivers it and under which routing key (the destination, or
    /// for user destinations `/user/{name}/...`).
    pub kind: Kind,
    pub key: String,
    /// The `destination` header subscribers see.
    pub destination: String,
    pub content_type: Option<String>,
    /// The sender's own headers, each name once (the first occurrence wins).
    pub headers: Headers,
    pub body: Bytes,
    /// Where the message sits in its destination's history (`offset` and `epoch`
    /// headers); set by the bus before the message is shared.
    pub position: Option<Position>,
    /// The queue stream entry this message came from (cluster queues): acked there
    /// once a subscriber consumed it.
    pub entry: Option<Entry>,
    /// Encoded common part: [0] unescaped (1.0), [1] escaped (1.1/1.2).
    shared: [OnceLock<Bytes>; 2],
    utf8: bool,
}

/// A message's place in its destination's history: the offset grows by one per
/// message; a new epoch means earlier offsets are gone (history lost or restarted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// A queue message's entry in a cluster queue stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub stream: Arc<str>,
    pub id: String,
}

impl Message {
    /// Builds a message from a SEND's headers, keeping the sender's own headers.
    pub fn new(id: String, target: Target, sent: &Headers, body: Bytes) -> Message {
        let Target {
            kind,
            key,
            destination,
        } = target;
        let headers: Headers = sent
            .iter_first()
            .filter(|(k, _)| !RESERVED.contains(k))
            .collect();
        Message {
            id,
            kind,
            key,
            destination,
            content_type: sent.get("content-type").map(str::to_owned),
            utf8: std::str::from_utf8(&body).is_ok(),
            headers,
            body,
            position: None,
            entry: None,
            shared: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// A message as another node published it (the cluster bus), headers already
    /// filtered by the publishing node.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        id: String,
        kind: Kind,
        key: String,
        destination: String,
        content_type: Option<String>,
        headers: Headers,
        body: Bytes,
    ) -> Message {
        Message {
            id,
            kind,
            key,
            destination,
            content_type,
            utf8: std::str::from_utf8(&body).is_ok(),
            headers,
            body,
            position: None,
            entry: None,
            shared: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The MESSAGE frame for one subscriber.
    pub fn frame_for(&self, subscription: &str, ack: Option<&str>, version: Version) -> OutFrame {
        self.frame_with(subscription, ack, version, None)
    }

    /// [`Message::frame_for`] with one more header for this delivery alone (e.g.
    /// `recovered:true` on the first message replayed from history).
    pub fn frame_with(
        &self,
        subscription: &str,
        ack: Option<&str>,
        version: Version,
        extra: Option<(&str, &str)>,
    ) -> OutFrame {
        let escape = version.escapes_headers();
        let shared = self.shared[escape as usize].get_or_init(|| self.encode_shared(escape));
        let mut out =
            BytesMut::with_capacity(64 + subscription.len() + self.id.len() + shared.len());
        out.put_slice(b"MESSAGE\n");
        write_header(&mut out, "subscription", subscription, escape);
        write_header(&mut out, "message-id", &self.id, escape);
        if let Some(ack) = ack {
            write_header(&mut out, "ack", ack, escape);
        }
        if let Some((k, v)) = extra {
            write_header(&mut out, k, v, escape);
        }
        out.put_slice(shared);
        OutFrame {
            bytes: out.freeze(),
            text: self.utf8,
        }
    }

    /// The body alone, for recipients that are not STOMP clients.
    pub fn body_frame(&self) -> OutFrame {
        OutFrame {
            bytes: self.body.clone(),
            text: self.utf8,
        }
    }

    fn encode_shared(&self, escape: bool) -> Bytes {
        let mut out = BytesMut::with_capacity(128 + self.body.len());
        write_header(&mut out, "destination", &self.destination, escape);
        if let Some(ct) = &self.content_type {
            write_header(&mut out, "content-type", ct, escape);
        }
        write_header(
            &mut out,
            "content-length",
            &self.body.len().to_string(),
            false,
        );
        if let Some(p) = &self.position {
            let mut n = [0u8; 20];
            write_header(&mut out, "offset", fmt_u64(p.offset, &mut n), false);
            write_header(&mut out, "epoch", &p.epoch, escape);
        }
        for (k, v) in self.headers.iter() {
            write_header(&mut out, k, v, escape);
        }
        out.put_u8(b'\n');
        out.put_slice(&self.body);
        out.put_u8(0);
        out.freeze()
    }
}

/// `n` in decimal, without allocating.
fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("digits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use herald_stomp::{Command, Decoder, Limits};

    #[test]
    fn frames_decode_with_per_subscriber_headers_and_sender_headers() {
        let sent: Headers = [
            ("destination", "/topic/a"),
            ("content-type", "text/plain"),
            ("x-trace", "a:b"),
            ("x-trace", "second"),
            ("receipt", "r1"),
        ]
        .into_iter()
        .collect();
        let m = Message::new(
            "m-1".into(),
            Target::broker(Kind::Topic, "/topic/a"),
            &sent,
            Bytes::from_static(b"hi"),
        );
        for (v, sub) in [(Version::V1_2, "s:1"), (Version::V1_0, "s1")] {
            let f = m.frame_for(sub, Some("a-7"), v);
            let mut d = Decoder::new(Limits::default());
            d.set_version(v);
            let frame = d
                .decode(&mut BytesMut::from(&f.bytes[..]))
                .unwrap()
                .unwrap();
            assert_eq!(frame.command, Command::Message);
            assert_eq!(frame.get("subscription"), Some(sub));
            assert_eq!(frame.get("message-id"), Some("m-1"));
            assert_eq!(frame.get("ack"), Some("a-7"));
            assert_eq!(frame.get("destination"), Some("/topic/a"));
            assert_eq!(frame.get("content-type"), Some("text/plain"));
            assert_eq!(frame.get("content-length"), Some("2"));
            assert_eq!(frame.get("x-trace"), Some("a:b"));
            assert_eq!(
                frame
                    .headers
                    .iter()
                    .filter(|(k, _)| *k == "x-trace")
                    .count(),
                1
            );
            assert_eq!(frame.get("receipt"), None);
            assert_eq!(&frame.body[..], b"hi");
        }
    }
}

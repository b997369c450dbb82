//! A published message, serialized once.
//!
//! A MESSAGE frame differs between subscribers only in `subscription`, `message-id`'s
//! neighbour `ack`, and the escaping rules of the subscriber's version. So the part
//! that is the same for everyone — destination, content headers, the sender's own
//! headers, body, NUL — is encoded once per escaping style, lazily, and each delivery
//! writes a short head in front of it. Fan-out to N subscribers is N small heads and
//! N memcpys, never N encodings.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use herald_stomp::{Headers, Version, write_header};

use super::outbox::OutFrame;
use super::{Kind, Target};

/// Headers a sender may not set on a MESSAGE: the broker owns them.
const RESERVED: &[&str] = &[
    "destination",
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
    /// Encoded common part: [0] unescaped (1.0), [1] escaped (1.1/1.2).
    shared: [OnceLock<Bytes>; 2],
    utf8: bool,
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
            shared: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The MESSAGE frame for one subscriber.
    pub fn frame_for(&self, subscription: &str, ack: Option<&str>, version: Version) -> OutFrame {
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
        for (k, v) in self.headers.iter() {
            write_header(&mut out, k, v, escape);
        }
        out.put_u8(b'\n');
        out.put_slice(&self.body);
        out.put_u8(0);
        out.freeze()
    }
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

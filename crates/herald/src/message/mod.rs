//! The message model the broker and the cluster bus share: what a destination is
//! ([`Kind`], [`Target`]), a published [`Message`], its place in a destination's
//! history ([`Position`]) and its cluster queue entry ([`Entry`]). Neither `broker/`
//! nor `cluster/` owns it, so the bus can carry messages without knowing the broker.
//!
//! A published message is serialized once.
//!
//! A MESSAGE frame differs between subscribers only in `subscription`, `message-id`'s
//! neighbour `ack`, and the escaping rules of the subscriber's version. The first
//! delivery of a message (per escaping style) encodes the whole frame for its
//! subscription id, without `ack`, and keeps it. Every later delivery to a
//! subscription with the same id and no `ack` header (auto ack, or any ack mode
//! before STOMP 1.2) shares those very bytes: fan-out to N subscribers that all call
//! their subscription `0` or `sub-0` is N reference-count increments, no allocation
//! and no copy. Any other delivery writes its own short head in front of a copy of the
//! common part — destination, content headers, the sender's own headers, body, NUL —
//! which is a slice of the kept frame, never encoded twice.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use herald_stomp::{Headers, Version, write_header};

mod pressure;

pub use pressure::{Pressure, Relief};

/// One encoded frame, with whether its bytes are valid UTF-8 (a WebSocket text
/// message) or not (a binary message).
#[derive(Clone, Debug)]
pub struct OutFrame {
    pub bytes: Bytes,
    pub text: bool,
}

impl OutFrame {
    pub fn text(bytes: Bytes) -> Self {
        OutFrame { bytes, text: true }
    }
}

/// How a destination delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Topic,
    Queue,
}

/// Where a message goes or a subscription listens, as the router resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    /// Routing key: the destination itself, or `/user/{name}/...` for user destinations.
    pub key: String,
    /// The `destination` header subscribers see.
    pub destination: String,
}

impl Target {
    /// A broker destination, routed under its own name.
    pub fn broker(kind: Kind, destination: &str) -> Target {
        Target {
            kind,
            key: destination.to_owned(),
            destination: destination.to_owned(),
        }
    }
}

/// Headers a sender may not set on a MESSAGE: the broker owns them.
const RESERVED: &[&str] = &[
    "destination",
    "offset",
    "epoch",
    "recovered",
    "redelivered",
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
    /// The flow control of the local publisher, which waits while a delivery of this
    /// message left a subscriber's outbox above its high-water mark.
    pub(crate) pressure: Option<Arc<Pressure>>,
    /// Times a consumer gave this queue message back (NACK, or its session ended
    /// before an ACK); every delivery after the first carries `redelivered:true`.
    given_back: AtomicU32,
    /// The first frame encoded: [0] unescaped (1.0), [1] escaped (1.1/1.2).
    encoded: [OnceLock<Encoded>; 2],
    utf8: bool,
    /// What keeping the message costs, as the budgets count it ([`Message::footprint`]).
    footprint: usize,
}

/// What a kept message costs beyond its strings and body: the struct, its `Arc`, the
/// header list, allocator rounding.
const OVERHEAD: usize = 256;

/// A message's place in its destination's history: the offset grows by one per
/// message; a new epoch means earlier offsets are gone (history lost or restarted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// A whole MESSAGE frame for one subscription id, without `ack` or extra headers;
/// `frame[head..]` is the part every subscriber receives alike.
#[derive(Debug)]
struct Encoded {
    subscription: Box<str>,
    frame: Bytes,
    head: usize,
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
        let content_type = sent.get("content-type").map(str::to_owned);
        Message::from_parts(id, kind, key, destination, content_type, headers, body)
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
            pressure: None,
            given_back: AtomicU32::new(0),
            encoded: [OnceLock::new(), OnceLock::new()],
            footprint: 0,
        }
        .measured()
    }

    fn measured(mut self) -> Message {
        let strings = self.id.len()
            + self.key.len()
            + self.destination.len()
            + self.content_type.as_ref().map_or(0, String::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        self.footprint = OVERHEAD + strings + self.body.len();
        self
    }

    /// Paces `publisher` to this message's subscribers (producer flow control).
    pub fn paced_by(mut self, publisher: Option<Arc<Pressure>>) -> Message {
        self.pressure = publisher;
        self
    }

    /// Times a consumer gave this message back.
    pub fn given_back(&self) -> u32 {
        self.given_back.load(Ordering::Relaxed)
    }

    /// Whether it was delivered before (and given back): its next delivery is a
    /// redelivery.
    pub fn redelivered(&self) -> bool {
        self.given_back() > 0
    }

    /// A consumer gave it back: returns how many times that happened now. (A queue
    /// message has one holder at a time, so nothing races this count.)
    pub(crate) fn give_back(&self) -> u32 {
        self.given_back
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// The count the cluster kept for a queue entry read back from it.
    #[cfg(feature = "redis")]
    pub(crate) fn set_given_back(&self, n: u32) {
        self.given_back.store(n, Ordering::Relaxed);
    }

    /// Bytes the queue and history budgets count for keeping this message: body,
    /// headers and names, and a fixed overhead. The frames encoded from it for
    /// delivery are not counted.
    pub fn footprint(&self) -> usize {
        self.footprint
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
        let encoded =
            self.encoded[escape as usize].get_or_init(|| self.encode(subscription, escape));
        if ack.is_none() && extra.is_none() && *encoded.subscription == *subscription {
            return OutFrame {
                bytes: encoded.frame.clone(),
                text: self.utf8,
            };
        }
        let shared = &encoded.frame[encoded.head..];
        let mut out =
            BytesMut::with_capacity(64 + subscription.len() + self.id.len() + shared.len());
        self.write_head(&mut out, subscription, escape);
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

    fn write_head(&self, out: &mut BytesMut, subscription: &str, escape: bool) {
        out.put_slice(b"MESSAGE\n");
        write_header(out, "subscription", subscription, escape);
        write_header(out, "message-id", &self.id, escape);
    }

    /// The body alone, for recipients that are not STOMP clients.
    pub fn body_frame(&self) -> OutFrame {
        OutFrame {
            bytes: self.body.clone(),
            text: self.utf8,
        }
    }

    /// The whole frame for `subscription`, remembering where the common part starts.
    fn encode(&self, subscription: &str, escape: bool) -> Encoded {
        let mut out = BytesMut::with_capacity(
            192 + subscription.len() + self.id.len() + self.destination.len() + self.body.len(),
        );
        self.write_head(&mut out, subscription, escape);
        let head = out.len();
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
        Encoded {
            subscription: subscription.into(),
            frame: out.freeze(),
            head,
        }
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

    fn decode(f: &OutFrame, v: Version) -> herald_stomp::Frame {
        let mut d = Decoder::new(Limits::default());
        d.set_version(v);
        d.decode(&mut BytesMut::from(&f.bytes[..]))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn same_subscription_id_shares_the_frame_and_others_get_their_own_head() {
        let sent: Headers = [("destination", "/topic/a"), ("x-k", "v:1")]
            .into_iter()
            .collect();
        let m = Message::new(
            "m-9".into(),
            Target::broker(Kind::Topic, "/topic/a"),
            &sent,
            Bytes::from_static(b"body"),
        );
        let v = Version::V1_2;
        // The first delivery asks for an ack: the kept frame has none.
        let acked = decode(&m.frame_for("0", Some("41"), v), v);
        assert_eq!(
            (acked.get("subscription"), acked.get("ack")),
            (Some("0"), Some("41"))
        );
        let a = m.frame_for("0", None, v);
        let b = m.frame_for("0", None, v);
        assert_eq!(
            a.bytes.as_ptr(),
            b.bytes.as_ptr(),
            "one frame for every `0`"
        );
        let plain = decode(&a, v);
        assert_eq!(plain.get("ack"), None);
        let other = m.frame_for("sub:1", None, v);
        assert_ne!(other.bytes.as_ptr(), a.bytes.as_ptr());
        let with_ack = m.frame_for("0", Some("42"), v);
        let with_extra = m.frame_with("0", None, v, Some(("recovered", "true")));
        for (f, sub, ack, recovered) in [
            (&other, "sub:1", None, None),
            (&with_ack, "0", Some("42"), None),
            (&with_extra, "0", None, Some("true")),
        ] {
            let d = decode(f, v);
            assert_eq!(d.get("subscription"), Some(sub));
            assert_eq!(d.get("message-id"), Some("m-9"));
            assert_eq!(d.get("ack"), ack);
            assert_eq!(d.get("recovered"), recovered);
            assert_eq!(d.get("destination"), Some("/topic/a"));
            assert_eq!(d.get("x-k"), Some("v:1"));
            assert_eq!(&d.body[..], b"body");
        }
        // 1.0 does not escape: its frame is kept apart from 1.1/1.2's.
        let old = decode(&m.frame_for("0", None, Version::V1_0), Version::V1_0);
        assert_eq!(old.get("x-k"), Some("v:1"));
        assert_eq!(&old.body[..], b"body");
    }
}

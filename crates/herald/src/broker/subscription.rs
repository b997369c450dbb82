//! A subscription as the broker sees it: who receives (a [`Recipient`]), which
//! destinations, which ack mode, and the deliveries still waiting for an ACK.
//!
//! Unacked deliveries live here rather than in the session because the broker records
//! them at delivery time, from the publisher's task; the session reads them on ACK,
//! NACK and close. Once closed, a subscription refuses deliveries, so a message raced
//! into a closing session goes to another subscriber instead of being lost.
//!
//! At most `window` deliveries wait for an ACK (the prefetch window, `prefetch-count`).
//! A full queue subscription refuses more, so the message stays in the queue or goes to
//! a consumer with room; a full topic subscription has no queue to leave messages in,
//! and its session is closed as a slow consumer.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use herald_stomp::Version;
use parking_lot::Mutex;

use super::marks::Marks;
use super::outbox::{Level, Outbox, PushError};
use crate::destination::Pattern;
use crate::message::OutFrame;
use crate::message::{Kind, Message, Position, Target};

/// Unacknowledged deliveries per client-ack subscription by default (`stomp.prefetch`):
/// RabbitMQ's advice is 100 to 300; at 100 a subscription holds at most 100 messages
/// of `stomp.max_frame` (6.4 MiB by default) for a client that never ACKs.
pub const DEFAULT_PREFETCH: usize = 100;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

impl AckMode {
    /// As a SUBSCRIBE's `ack` header says it.
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

impl FromStr for AckMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AckMode::Auto),
            "client" => Ok(AckMode::Client),
            "client-individual" => Ok(AckMode::ClientIndividual),
            other => Err(format!(
                "invalid ack mode '{other}': use auto, client or client-individual"
            )),
        }
    }
}

/// The broker's view of a session: where its frames go and how to write them.
#[derive(Debug)]
pub struct Recipient {
    pub session_id: String,
    pub version: Version,
    pub outbox: Arc<Outbox>,
    next_ack: AtomicU64,
}

/// How a subscription's messages reach its session. STOMP sessions get frames; a
/// plain-socket endpoint (`transport::plain`) gets bodies or its own shape of each
/// message, with no headers and nothing to acknowledge (every mode but `Frames`
/// consumes a queue message at delivery, as `ack:auto` does).
#[derive(Clone, Default)]
pub enum Delivery {
    /// STOMP MESSAGE frames in the recipient's version, acked as the subscription says.
    #[default]
    Frames,
    /// Each message's body alone, as one text message.
    Bodies,
    /// What the function makes of each message (destination, headers, body), as one
    /// text message; `None` skips the message for this subscriber. It runs in the
    /// publisher's task for every delivery: keep it cheap.
    Shaped(Arc<Shape>),
}

/// A [`Delivery::Shaped`] function: the text a message becomes, or `None` to skip it.
pub type Shape = dyn Fn(&Message) -> Option<bytes::Bytes> + Send + Sync;

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Delivery::Frames => "Frames",
            Delivery::Bodies => "Bodies",
            Delivery::Shaped(_) => "Shaped",
        })
    }
}

impl Recipient {
    pub fn new(session_id: String, version: Version, outbox: Arc<Outbox>) -> Self {
        Recipient {
            session_id,
            version,
            outbox,
            next_ack: AtomicU64::new(1),
        }
    }

    fn next_ack_id(&self) -> String {
        format!("{}", self.next_ack.fetch_add(1, Ordering::Relaxed))
    }
}

/// A delivery waiting for ACK or NACK.
#[derive(Debug)]
pub struct Unacked {
    /// The value of the MESSAGE's `ack` header (1.2 ACK/NACK `id`).
    pub ack_id: String,
    pub message: Arc<Message>,
    /// Whether the message came from a queue, and so is redelivered if not acked.
    pub from_queue: bool,
}

#[derive(Debug, Default)]
struct AckState {
    unacked: VecDeque<Unacked>,
    closed: bool,
    /// While history is being replayed: live messages wait here, in order.
    recovering: Option<Vec<Arc<Message>>>,
    /// Footprint of `recovering`, bounded like the outbox (`stomp.outbound_queue`).
    recovering_bytes: usize,
    /// Where the client is in the destination's history, for a session that may be
    /// resumed ([`Subscription::resumable`]).
    marks: Option<Marks>,
}

#[derive(Debug)]
pub struct Subscription {
    pub id: String,
    /// What the client subscribed to, as it wrote it.
    pub destination: String,
    pub kind: Kind,
    /// Routing key (or pattern) matched against published messages' keys.
    pub key: String,
    pub ack: AckMode,
    pub recipient: Arc<Recipient>,
    /// Most deliveries waiting for an ACK at once (client acks only).
    window: usize,
    pub(crate) pattern: Option<Pattern>,
    /// Which concrete destinations a wildcard subscription may receive (access rules).
    guard: Option<DeliveryGuard>,
    delivery: Delivery,
    state: Mutex<AckState>,
}

/// Decides per destination whether a wildcard subscription may receive a message:
/// `/topic/**` must not carry what the rules keep from its subscriber.
pub struct DeliveryGuard(Box<dyn Fn(&str) -> bool + Send + Sync>);

impl DeliveryGuard {
    pub fn new(allow: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        DeliveryGuard(Box::new(allow))
    }
}

impl std::fmt::Debug for DeliveryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryGuard")
    }
}

impl Subscription {
    pub fn new(id: String, target: Target, ack: AckMode, recipient: Arc<Recipient>) -> Self {
        let Target {
            kind,
            key,
            destination,
        } = target;
        Subscription {
            pattern: Pattern::subscription(&key),
            id,
            destination,
            kind,
            key,
            ack,
            recipient,
            window: DEFAULT_PREFETCH,
            guard: None,
            delivery: Delivery::Frames,
            state: Mutex::new(AckState::default()),
        }
    }

    /// Sets the prefetch window: how many deliveries may wait for an ACK (at least 1).
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// Notes where the client is in the destination's history, so the session can
    /// be resumed from there ([`Subscription::resume_point`]).
    pub fn resumable(self) -> Self {
        self.state.lock().marks = Some(Marks::default());
        self
    }

    /// The last position in the destination's history the client can have seen:
    /// before the first delivery still waiting for an ACK, else the last one
    /// written to its connection. `None` when the subscription is not resumable or
    /// got nothing with a position.
    pub(crate) fn resume_point(&self) -> Option<Position> {
        let st = self.state.lock();
        let marks = st.marks.as_ref()?;
        if let Some(p) = st.unacked.iter().find_map(|u| u.message.position.as_ref()) {
            return Some(Position {
                offset: p.offset.saturating_sub(1),
                epoch: p.epoch.clone(),
            });
        }
        marks.seen(self.recipient.outbox.written_bytes())
    }

    /// Delivers as `delivery` says rather than as STOMP frames.
    pub fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// Whether deliveries wait for an ACK (client acks, as STOMP frames).
    pub fn acks(&self) -> bool {
        self.ack != AckMode::Auto && matches!(self.delivery, Delivery::Frames)
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Deliveries waiting for an ACK or NACK.
    pub fn unacked(&self) -> usize {
        self.state.lock().unacked.len()
    }

    /// How many more deliveries the prefetch window takes now (any number without acks).
    pub fn room(&self) -> usize {
        if !self.acks() {
            return usize::MAX;
        }
        self.window.saturating_sub(self.unacked())
    }

    /// Filters what this (wildcard) subscription receives by concrete destination.
    pub fn with_guard(mut self, guard: DeliveryGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Whether a message routed under `key` reaches this subscription.
    pub fn matches(&self, key: &str) -> bool {
        match &self.pattern {
            Some(p) => p.matches(key),
            None => self.key == key,
        }
    }

    /// Queues `message` for this subscriber, recording it as unacked when the ack
    /// mode asks for acknowledgements.
    pub(crate) fn deliver(
        &self,
        message: &Arc<Message>,
        from_queue: bool,
    ) -> Result<(), PushError> {
        if self
            .guard
            .as_ref()
            .is_some_and(|g| !(g.0)(&message.destination))
        {
            return Err(PushError::Refused);
        }
        let mut st = self.state.lock();
        if st.closed {
            return Err(PushError::Closed);
        }
        let st = &mut *st;
        if let Some(waiting) = &mut st.recovering {
            let limit = self.recipient.outbox.limit();
            if st.recovering_bytes + message.footprint() > limit {
                // Live messages outran the replay: they would wait here unbounded.
                self.recipient.outbox.overflow_with(format!(
                    "slow consumer: more than {limit} bytes arrived on subscription '{}' while its history was replayed (limit stomp.outbound_queue)",
                    self.id
                ));
                return Err(PushError::Overflow);
            }
            st.recovering_bytes += message.footprint();
            waiting.push(message.clone());
            return Ok(());
        }
        self.deliver_locked(st, message, from_queue, None)
    }

    fn deliver_locked(
        &self,
        st: &mut AckState,
        message: &Arc<Message>,
        from_queue: bool,
        extra: Option<(&str, &str)>,
    ) -> Result<(), PushError> {
        let r = &self.recipient;
        match &self.delivery {
            Delivery::Frames => {}
            Delivery::Bodies => return self.push(message, message.body_frame()).map(|_| ()),
            Delivery::Shaped(shape) => {
                return match shape(message) {
                    Some(text) => self.push(message, OutFrame::text(text)).map(|_| ()),
                    None => Ok(()),
                };
            }
        }
        // A first delivery keeps sharing the encoded frame; a redelivery says so.
        let extra = match extra {
            None if message.redelivered() => Some(("redelivered", "true")),
            extra => extra,
        };
        if self.ack == AckMode::Auto {
            let seq = self.push(
                message,
                message.frame_with(&self.id, None, r.version, extra),
            )?;
            self.mark(st, seq, message);
            return Ok(());
        }
        if st.unacked.len() >= self.window {
            return Err(self.window_full());
        }
        let ack_id = r.next_ack_id();
        // 1.2 names the delivery by `ack`; 1.0/1.1 acknowledge by message-id.
        let ack_header = (r.version == Version::V1_2).then_some(ack_id.as_str());
        let seq = self.push(
            message,
            message.frame_with(&self.id, ack_header, r.version, extra),
        )?;
        self.mark(st, seq, message);
        st.unacked.push_back(Unacked {
            ack_id,
            message: message.clone(),
            from_queue,
        });
        Ok(())
    }

    /// Queues `frame` of `message`; above the outbox's high-water mark, the message's
    /// publisher is told to wait for this subscriber. Returns the frame's number.
    fn push(&self, message: &Message, frame: OutFrame) -> Result<u64, PushError> {
        let outbox = &self.recipient.outbox;
        let (level, seq) = outbox.push_counted(frame)?;
        if level == Level::High
            && let Some(publisher) = &message.pressure
        {
            publisher.note(outbox.clone());
        }
        Ok(seq)
    }

    /// Notes a delivery of a resumable subscription with its history position.
    fn mark(&self, st: &mut AckState, seq: u64, message: &Message) {
        if let (Some(marks), Some(p)) = (st.marks.as_mut(), message.position.as_ref()) {
            marks.note(seq, p, || self.recipient.outbox.written_bytes());
        }
    }

    /// A full window: a queue subscription refuses the message (it waits in the queue
    /// or goes to a consumer with room); a topic subscription's session is closed.
    fn window_full(&self) -> PushError {
        if self.kind == Kind::Queue {
            return PushError::Full;
        }
        crate::ops::metrics::limit_hit("stomp.prefetch");
        self.recipient.outbox.overflow_with(format!(
            "slow consumer: {} messages on subscription '{}' wait for an ACK (limit prefetch-count, default stomp.prefetch)",
            self.window, self.id
        ));
        PushError::Overflow
    }

    /// Removes the deliveries an ACK/NACK names: with ack mode `client` the named one
    /// and every earlier one (cumulative), with `client-individual` only the named
    /// one. `by_message_id` selects by message-id (1.0/1.1) instead of ack id (1.2).
    /// `None` when nothing waits under that id; else the deliveries, and whether the
    /// window was full (so the queue may have kept messages for this subscription).
    pub(crate) fn take_acked(&self, id: &str, by_message_id: bool) -> Option<(Vec<Unacked>, bool)> {
        let mut st = self.state.lock();
        let pos = st.unacked.iter().position(|u| {
            if by_message_id {
                u.message.id == id
            } else {
                u.ack_id == id
            }
        })?;
        let was_full = st.unacked.len() >= self.window;
        let taken = match self.ack {
            AckMode::Client => st.unacked.drain(..=pos).collect(),
            _ => vec![st.unacked.remove(pos).expect("position is in range")],
        };
        Some((taken, was_full))
    }

    /// Live messages wait from now until [`Subscription::finish_recovery`].
    pub(crate) fn begin_recovery(&self) {
        self.state.lock().recovering = Some(Vec::new());
    }

    /// Delivers the messages missed since the client's offset (`history`, oldest
    /// first), then the live ones that waited meanwhile, skipping those the history
    /// already held. The first frame carries `recovered:true`; when the gap could
    /// not be filled, an empty MESSAGE with `recovered:false` comes first instead.
    pub(crate) fn finish_recovery(&self, history: Vec<Arc<Message>>, recovered: bool) {
        let mut st = self.state.lock();
        let waiting = st.recovering.take().unwrap_or_default();
        st.recovering_bytes = 0;
        if st.closed {
            return;
        }
        let mut flag = Some(("recovered", if recovered { "true" } else { "false" }));
        if !recovered {
            let notice = Arc::new(Message::from_parts(
                format!("{}-recovery", self.recipient.session_id),
                self.kind,
                self.key.clone(),
                self.destination.clone(),
                None,
                herald_stomp::Headers::new(),
                bytes::Bytes::new(),
            ));
            let _ = self.deliver_locked(&mut st, &notice, false, flag.take());
            // Auto-ack or not, the notice is nothing to acknowledge.
            st.unacked.retain(|u| !Arc::ptr_eq(&u.message, &notice));
        }
        let last = history
            .last()
            .and_then(|m| m.position.as_ref().map(|p| p.offset));
        for m in history
            .iter()
            .chain(waiting.iter().filter(|m| match (&m.position, last) {
                (Some(p), Some(last)) => p.offset > last,
                _ => true,
            }))
        {
            if self.deliver_locked(&mut st, m, false, flag.take()).is_err() {
                return;
            }
        }
    }

    /// Closes the subscription and hands back what was never acked.
    pub(crate) fn close(&self) -> Vec<Unacked> {
        let mut st = self.state.lock();
        st.closed = true;
        st.unacked.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::outbox::Drained;
    use bytes::Bytes;
    use herald_stomp::Headers;

    fn message() -> Arc<Message> {
        Arc::new(Message::new(
            "n-1".into(),
            Target::broker(Kind::Topic, "/topic/a"),
            &Headers::new(),
            Bytes::from(vec![b'x'; 100]),
        ))
    }

    #[test]
    fn live_messages_waiting_for_a_replay_are_bounded_by_the_outbox() {
        let outbox = Arc::new(Outbox::new(1000));
        let r = Arc::new(Recipient::new("s".into(), Version::V1_2, outbox.clone()));
        let sub = Subscription::new(
            "0".into(),
            Target::broker(Kind::Topic, "/topic/a"),
            AckMode::Auto,
            r,
        );
        sub.begin_recovery();
        let m = message();
        let fit = 1000 / m.footprint();
        for _ in 0..fit {
            assert_eq!(sub.deliver(&m, false), Ok(()));
        }
        assert_eq!(sub.deliver(&m, false), Err(PushError::Overflow));
        assert_eq!(outbox.drain(&mut Vec::new()), Drained::Overflowed);
        assert!(
            outbox
                .overflow_reason()
                .contains("while its history was replayed"),
            "{}",
            outbox.overflow_reason()
        );
    }
}

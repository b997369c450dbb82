//! A subscription as the broker sees it: who receives (a [`Recipient`]), which
//! destinations, which ack mode, and the deliveries still waiting for an ACK.
//!
//! Unacked deliveries live here rather than in the session because the broker records
//! them at delivery time, from the publisher's task; the session reads them on ACK,
//! NACK and close. Once closed, a subscription refuses deliveries, so a message raced
//! into a closing session goes to another subscriber instead of being lost.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use herald_stomp::Version;
use parking_lot::Mutex;

use super::destination::Pattern;
use super::message::Message;
use super::outbox::{Outbox, PushError};
use super::{Kind, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    Client,
    ClientIndividual,
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
    /// Receives only message bodies, not STOMP frames (the plain JSON chat socket).
    pub bodies_only: bool,
    next_ack: AtomicU64,
}

impl Recipient {
    pub fn new(session_id: String, version: Version, outbox: Arc<Outbox>) -> Self {
        Recipient {
            session_id,
            version,
            outbox,
            bodies_only: false,
            next_ack: AtomicU64::new(1),
        }
    }

    /// A recipient that is sent each message's body alone, as one WebSocket message.
    pub fn bodies_only(session_id: String, outbox: Arc<Outbox>) -> Self {
        Recipient {
            bodies_only: true,
            ..Recipient::new(session_id, Version::V1_2, outbox)
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
    pub(crate) pattern: Option<Pattern>,
    state: Mutex<AckState>,
}

impl Subscription {
    pub fn new(id: String, target: Target, ack: AckMode, recipient: Arc<Recipient>) -> Self {
        let Target {
            kind,
            key,
            destination,
        } = target;
        Subscription {
            pattern: Pattern::parse(&key),
            id,
            destination,
            kind,
            key,
            ack,
            recipient,
            state: Mutex::new(AckState::default()),
        }
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
        let r = &self.recipient;
        let mut st = self.state.lock();
        if st.closed {
            return Err(PushError::Closed);
        }
        if r.bodies_only {
            return r.outbox.push(message.body_frame());
        }
        if self.ack == AckMode::Auto {
            return r.outbox.push(message.frame_for(&self.id, None, r.version));
        }
        let ack_id = r.next_ack_id();
        // 1.2 names the delivery by `ack`; 1.0/1.1 acknowledge by message-id.
        let ack_header = (r.version == Version::V1_2).then_some(ack_id.as_str());
        r.outbox
            .push(message.frame_for(&self.id, ack_header, r.version))?;
        st.unacked.push_back(Unacked {
            ack_id,
            message: message.clone(),
            from_queue,
        });
        Ok(())
    }

    /// Removes the deliveries an ACK/NACK names: with ack mode `client` the named one
    /// and every earlier one (cumulative), with `client-individual` only the named
    /// one. `by_message_id` selects by message-id (1.0/1.1) instead of ack id (1.2).
    /// `None` when nothing waits under that id.
    pub(crate) fn take_acked(&self, id: &str, by_message_id: bool) -> Option<Vec<Unacked>> {
        let mut st = self.state.lock();
        let pos = st.unacked.iter().position(|u| {
            if by_message_id {
                u.message.id == id
            } else {
                u.ack_id == id
            }
        })?;
        Some(match self.ack {
            AckMode::Client => st.unacked.drain(..=pos).collect(),
            _ => vec![st.unacked.remove(pos).expect("position is in range")],
        })
    }

    /// Closes the subscription and hands back what was never acked.
    pub(crate) fn close(&self) -> Vec<Unacked> {
        let mut st = self.state.lock();
        st.closed = true;
        st.unacked.drain(..).collect()
    }
}

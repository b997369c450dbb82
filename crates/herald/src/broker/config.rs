//! `[broker]`: destination prefixes and grammar limits, queues' budgets, redelivery.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Destination prefixes with publish-subscribe semantics (every subscriber).
    pub topic_prefixes: Vec<String>,
    /// Destination prefixes with queue semantics (one subscriber per message).
    pub queue_prefixes: Vec<String>,
    /// Messages a queue keeps waiting for a subscriber (or for room in one).
    pub queue_capacity: usize,
    // Budgets: what clients can make the broker hold.
    /// Bytes of messages one queue keeps waiting.
    pub queue_max_bytes: usize,
    /// Bytes of messages all queues together keep waiting.
    pub queues_max_bytes: usize,
    /// Queues that may exist at once (holding messages or a round-robin position).
    pub max_queues: usize,
    /// What a full queue does with one more message.
    pub queue_overflow: QueueOverflow,
    /// Times a queue message may be given back (NACK, or its session ended or
    /// unsubscribed before an ACK) and still be redelivered; given back once more,
    /// it is dead-lettered. 0: dead-lettered at the first give-back.
    pub max_redeliveries: u32,
    /// Where dead-lettered queue messages go. A name without a leading `/` goes
    /// between the queue prefix and the queue's name (`"dlq."`: `/queue/orders` →
    /// `/queue/dlq.orders`); a destination (`/queue/dead-letters`) is one queue for
    /// every queue; empty: dead letters are dropped (and counted).
    pub dead_letter: String,

    // What a client may name (SUBSCRIBE, SEND, the publish API); over a limit is an
    // ERROR (400 over HTTP) naming the setting.
    /// Longest destination, bytes.
    pub max_destination_length: usize,
    /// Most segments in a destination (`/` and `.` separate them).
    pub max_destination_segments: usize,
    /// Most wildcards (`*`, `**`, `#`) in one destination.
    pub max_wildcards: usize,
}

/// `broker.max_redeliveries` by default: ActiveMQ's `maximumRedeliveries`.
pub const DEFAULT_MAX_REDELIVERIES: u32 = 6;

/// `broker.dead_letter` by default: `/queue/orders` dead-letters to `/queue/dlq.orders`.
pub const DEFAULT_DEAD_LETTER: &str = "dlq.";

/// What a queue at one of its limits does with a new message (RabbitMQ's `x-overflow`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum QueueOverflow {
    /// Refuse the publish: the sender gets ERROR "queue full" (REST: 503).
    RejectPublish,
    /// Drop the queue's oldest messages to make room; when that cannot make room
    /// (other queues use up `queues_max_bytes`), refuse as `reject-publish` does.
    DropHead,
}

impl BrokerConfig {
    pub fn destination_limits(&self) -> crate::destination::Limits {
        crate::destination::Limits {
            max_length: self.max_destination_length,
            max_segments: self.max_destination_segments,
            max_wildcards: self.max_wildcards,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            topic_prefixes: vec!["/topic/".into()],
            queue_prefixes: vec!["/queue/".into()],
            queue_capacity: 10_000,
            queue_max_bytes: 8 * 1024 * 1024,
            queues_max_bytes: 64 * 1024 * 1024,
            max_queues: 10_000,
            queue_overflow: QueueOverflow::RejectPublish,
            max_redeliveries: DEFAULT_MAX_REDELIVERIES,
            dead_letter: DEFAULT_DEAD_LETTER.into(),
            max_destination_length: 1024,
            max_destination_segments: 32,
            max_wildcards: 8,
        }
    }
}

impl BrokerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = ConfigError::check;
        check(
            self.max_destination_length >= 16,
            "broker.max_destination_length",
            "must be at least 16 bytes",
        )?;
        check(
            self.max_destination_segments >= 2,
            "broker.max_destination_segments",
            "must be at least 2",
        )?;
        check(
            self.max_wildcards >= 1,
            "broker.max_wildcards",
            "must be at least 1",
        )?;
        check(
            self.queue_capacity >= 1,
            "broker.queue_capacity",
            "must be at least 1",
        )?;
        check(
            self.queues_max_bytes >= self.queue_max_bytes,
            "broker.queues_max_bytes",
            "must be at least broker.queue_max_bytes",
        )?;
        check(
            self.max_queues >= 1,
            "broker.max_queues",
            "must be at least 1",
        )?;
        super::dead_letter::DeadLetters::check(self)
            .map_err(|problem| ConfigError::new("broker.dead_letter", problem))
    }
}

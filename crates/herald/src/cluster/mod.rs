//! The cluster bus: how a node's broker meets the other nodes' brokers.
//!
//! The [`Bus`] sits below the broker. The broker delivers to its own sessions and
//! tells the bus what it published and which routing keys its sessions listen to;
//! the bus carries messages to and from the other nodes and keeps each
//! destination's bounded history (offsets, epochs, recovery).
//!
//! - [`bus_local::LocalBus`] (the default): one node, nothing leaves the process;
//!   history is a ring buffer per destination.
//! - [`bus_redis::RedisBus`] (`cluster.redis_url`): Redis Pub/Sub between nodes,
//!   one channel per destination with local subscribers (one per user for user
//!   destinations), history in Redis Streams, cluster queues as Streams with a
//!   consumer group, presence in per-node hashes that expire with their node.

pub mod bus_local;
pub mod bus_redis;

use std::fmt;
use std::sync::{Arc, Weak};

use crate::broker::{Broker, Kind, Message, Subscription};

/// What a subscriber resubscribing after a gap last saw (`offset` and `epoch`
/// SUBSCRIBE headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Since {
    pub offset: u64,
    /// `None`: the client did not say, any epoch is taken as its own.
    pub epoch: Option<String>,
}

/// What `/health` reports about the bus.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BusStatus {
    /// "local" or "redis".
    pub kind: &'static str,
    /// False while Redis cannot be reached (local delivery goes on).
    pub connected: bool,
    /// Publishes that could not reach Redis since the start.
    pub failed_publishes: u64,
    /// Channels and patterns this node listens to.
    pub channels: usize,
}

/// The seam between a node's broker and the rest of the cluster.
///
/// The broker calls these from publishers' and sessions' tasks: none may block.
pub trait Bus: Send + Sync + fmt::Debug + 'static {
    /// Called once the broker exists, so the bus can deliver what other nodes send.
    fn attach(&self, broker: Weak<Broker>);

    /// A message published on this node (not a reply to one session). Returns the
    /// message to deliver locally now — stamped with its history position — or
    /// `None` when the bus delivers it later itself (after Redis assigned the
    /// offset, or for a cluster queue, to whichever node's consumer reads it).
    fn publish(&self, message: Message) -> Option<Arc<Message>>;

    /// A local subscription to `key` (a routing key or pattern) was added / removed.
    fn subscribed(&self, kind: Kind, key: &str);
    fn unsubscribed(&self, kind: Kind, key: &str);

    /// Replays what `sub` missed since `since` with
    /// [`Subscription::finish_recovery`]; `sub` is registered and buffering.
    fn recover(&self, sub: Arc<Subscription>, since: Since);

    /// A cluster queue message was consumed (auto-ack delivery or client ACK).
    fn consumed(&self, message: &Message);

    /// A cluster queue message this node held found no local consumer: it is left
    /// to the cluster (claimed by a node with consumers once it has waited long enough).
    fn released(&self, message: &Message);

    /// Whether queue messages are delivered by the bus (cluster queues) rather than
    /// kept pending by the broker.
    fn owns_queues(&self) -> bool {
        false
    }

    /// Shutdown began: take no more queue messages.
    fn stop_consuming(&self) {}

    /// Shutdown is done: stop every task.
    fn shutdown(&self) {}

    /// Whether the cluster already routes messages for a local subscription to `key`
    /// to this node (Redis confirmed the channel); always true alone.
    fn is_listening(&self, _kind: Kind, _key: &str) -> bool {
        true
    }

    fn status(&self) -> BusStatus;
}

/// The bus `config` asks for: Redis when `cluster.redis_url` is set, else local.
pub fn from_config(config: &crate::Config, node_id: &str) -> Result<Arc<dyn Bus>, String> {
    let cluster = &config.cluster;
    if cluster.redis_url.is_empty() {
        Ok(Arc::new(bus_local::LocalBus::new(cluster)))
    } else {
        Ok(Arc::new(bus_redis::RedisBus::new(
            cluster,
            node_id,
            &config.routing.user_prefix,
            config.broker.queue_capacity,
        )?))
    }
}

/// A random epoch: 16 hex digits.
pub(crate) fn new_epoch() -> String {
    let u = uuid::Uuid::new_v4();
    u.simple().to_string()[..16].to_owned()
}

//! The cluster bus: how a node's broker meets the other nodes' brokers.
//!
//! The bus sits below the broker and never names it. The broker delivers to its own
//! sessions and tells the bus what it published and which routing keys its sessions
//! listen to; the bus carries messages to and from the other nodes, keeps each
//! destination's bounded history (offsets, epochs, recovery), and hands what this
//! node must deliver to a [`Sink`] (the broker implements it). Messages are the
//! shared model of [`crate::message`].
//!
//! The seam is a few small traits, one job each, which one object implements so the
//! node holds one `Arc<dyn Bus>`:
//!
//! - [`PubSub`]: publish (stamped with a history position), topic interest,
//!   recovery by offset ([`Recovery`], [`Replay`]), confirmation barriers;
//! - [`ClusterQueues`]: queue consumers, consumed / released / handed-back entries;
//! - [`Presence`]: who is online or in a room, on every live node;
//! - [`SharedMaps`]: small maps every node sees (the room registry);
//! - [`Parking`]: sessions kept for resuming, taken back once on any node;
//! - [`Health`]: what `/health` reports;
//! - [`Bus`]: all of them, plus start ([`Bus::attach`]), drain and stop.
//!
//! Two implementations, of which the node builds the one its settings ask for:
//!
//! - [`local::LocalBus`] (the default): one node, nothing leaves the process;
//!   history is a ring buffer per destination, presence and maps are in memory
//!   ([`presence`]).
//! - [`redis::RedisBus`] (`cluster.redis_url`): Redis Pub/Sub between nodes,
//!   one channel per destination with local subscribers (one per user for user
//!   destinations), history in Redis Streams, cluster queues as Streams with a
//!   consumer group, presence and small shared maps in hashes whose entries expire
//!   with the node that refreshes them; on one server, a Redis Cluster (sharded
//!   Pub/Sub, every destination in one slot) or a master behind Sentinels
//!   ([`target::RedisTarget`]). One file per job under `redis/`.
//!
//! A confirmation (a SEND's RECEIPT, the REST API's 2xx, [`Outcome`] without an
//! error) means the message is in the cluster; while Redis is away publishes wait in
//! the Redis bus's outage spool and a confirmation waits for it, at most
//! `cluster.publish_timeout`.

pub mod config;
pub mod local;
mod parking;
pub mod presence;
#[cfg(feature = "redis")]
pub mod redis;
pub mod target;

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::message::{Kind, Message, Position};
pub(crate) use parking::{LocalParking, ParkBudget};

/// What the bus's asynchronous calls return: boxed, so the traits stay object-safe.
pub type BoxFuture<T> = futures_util::future::BoxFuture<'static, T>;

/// What became of a publish, for the callers that wait for it (a SEND's RECEIPT,
/// the REST API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Subscriptions on this node that received it (the other nodes deliver to
    /// theirs on their own).
    pub delivered: usize,
    /// Its place in the destination's history (topics with history).
    pub position: Option<Position>,
    /// Why the cluster did not accept it: it is not in Redis and is never written
    /// there later (this node's topic subscribers may have got it already). Starts
    /// with [`NOT_ACCEPTED`].
    pub error: Option<String>,
}

/// How every refusal of a publish by the cluster begins (ERROR `message`, 503 body).
pub const NOT_ACCEPTED: &str = "cluster unavailable: message not accepted";

impl Outcome {
    /// The cluster did not take the message, for `reason`.
    pub fn refused(reason: impl fmt::Display) -> Outcome {
        Outcome {
            error: Some(format!("{NOT_ACCEPTED} ({reason})")),
            ..Outcome::default()
        }
    }
}

/// Where [`PubSub::publish`] tells a waiting caller what became of its message.
pub type Confirm = oneshot::Sender<Outcome>;

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
    /// Publishes that could not reach Redis when sent, since the start.
    pub failed_publishes: u64,
    /// Publishes waiting in the outage spool for Redis to answer.
    pub spooled: usize,
    /// Channels and patterns this node listens to.
    pub channels: usize,
    /// Redis Cluster shards that do not answer (address, slots, why): the
    /// destinations they own wait in the outage spool, the others go on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards_down: Vec<String>,
}

/// Where a bus hands what this node's sessions must receive. The broker implements
/// it; the bus holds it weakly ([`Bus::attach`]) and never names the broker.
pub trait Sink: Send + Sync + 'static {
    /// Delivers to this node's subscribers: a message another node published, one
    /// this node published once the cluster stamped it, a cluster queue entry this
    /// node read, or what history filled in. Returns how many subscriptions got it.
    fn deliver(&self, message: Arc<Message>) -> usize;

    /// How many more entries of cluster queue `key` this node's consumers take now
    /// (the room in their prefetch windows): the bus reads no more than that.
    fn queue_room(&self, key: &str) -> usize;
}

/// What a resubscribing subscriber missed, read from a destination's history.
#[derive(Debug, Default)]
pub struct Replay {
    /// The messages after the subscriber's offset, oldest first (empty unless
    /// `recovered`).
    pub missed: Vec<Arc<Message>>,
    /// Whether `missed` is everything it missed (same epoch, nothing trimmed);
    /// false means the client must reload.
    pub recovered: bool,
}

/// A [`Replay`] at once (history kept in this process), or once the cluster
/// answered (the caller runs the future on a task of its own).
pub enum Recovery {
    Ready(Replay),
    Later(BoxFuture<Replay>),
}

/// The seam between a node's broker and the rest of the cluster: one object doing
/// every job below, so the node holds one `Arc<dyn Bus>`. Its own methods concern
/// the whole: start, drain, stop.
///
/// The broker and sessions call all of these from their own tasks: none may block.
pub trait Bus:
    PubSub
    + ClusterQueues
    + Presence
    + SharedMaps
    + Parking
    + Health
    + Send
    + Sync
    + fmt::Debug
    + 'static
{
    /// Called once the broker exists, so the bus can deliver what other nodes send.
    fn attach(&self, sink: Weak<dyn Sink>);

    /// Shutdown, once the sessions are gone: a last chance for what still waits for
    /// the cluster (the outage spool, queue messages handed back). The caller bounds
    /// the wait; what is left is logged.
    fn drain(&self) -> Option<BoxFuture<()>> {
        None
    }

    /// Shutdown is done: stop every task.
    fn shutdown(&self) {}
}

/// Topics between nodes, with history: what this node publishes, which routing keys
/// its sessions listen to, and what a resubscribing session missed.
pub trait PubSub {
    /// A message published on this node (not a reply to one session). Returns the
    /// message to deliver locally now — stamped with its history position — or
    /// `None` when the bus delivers it later itself (after Redis assigned the
    /// offset, or for a cluster queue, to whichever node's consumer reads it: a
    /// queue message is published here too, in order with the topics).
    ///
    /// With `None` returned, the bus answers `confirm` once the message is in the
    /// cluster, or with [`Outcome::error`] once it is sure it never will be (within
    /// `cluster.publish_timeout` while Redis is away); with a message returned it
    /// drops `confirm` and the caller reports the local delivery itself.
    fn publish(&self, message: Message, confirm: Option<Confirm>) -> Option<Arc<Message>>;

    /// Whether a publish is confirmed after [`PubSub::publish`] returns (Redis)
    /// rather than when it returns (alone): only then does a RECEIPT wait.
    fn confirms_later(&self) -> bool {
        false
    }

    /// Resolves once every command sent to the cluster before the call was handled
    /// (a SUBSCRIBE's RECEIPT waits for its channel). `None`: nothing is ever queued
    /// (alone). Publishes are confirmed one by one through [`PubSub::publish`].
    fn flushed(&self) -> Option<BoxFuture<()>> {
        None
    }

    /// A local subscription to topic routing key (or pattern) `key` was added /
    /// removed.
    fn subscribed(&self, key: &str);
    fn unsubscribed(&self, key: &str);

    /// What a subscriber to the exact topic `key` missed since `since`. The
    /// subscription is registered and buffers live messages meanwhile.
    fn recover(&self, key: &str, since: Since) -> Recovery;

    /// The newest position of exact topic `key`'s history this node knows of: where
    /// a resumed subscriber that had received nothing starts. `None`: nothing was
    /// published to it (that is still kept); `Err`: it cannot be known now. Asked
    /// before the subscriber goes, so what this node heard on its behalf counts.
    fn position(&self, key: &str) -> BoxFuture<Result<Option<Position>, String>>;

    /// History kept on this node: (destinations with a ring, bytes of their messages).
    /// Zero when the history lives elsewhere (Redis).
    fn history_usage(&self) -> (usize, usize) {
        (0, 0)
    }
}

/// Queues shared by the nodes: each message goes to one consumer on any node.
/// Alone there are none (the broker keeps queue messages itself), and every method
/// does nothing.
pub trait ClusterQueues {
    /// A local consumer of queue routing key (or pattern) `key` was added / removed.
    fn consumer_added(&self, _key: &str) {}
    fn consumer_removed(&self, _key: &str) {}

    /// A cluster queue message was consumed (auto-ack delivery or client ACK).
    fn consumed(&self, _message: &Message) {}

    /// A cluster queue message this node held found no local consumer: it is left
    /// to the cluster (claimed by a node with consumers once it has waited long enough).
    fn released(&self, _message: &Message) {}

    /// A cluster queue message a session received and never acked (it ended, or it
    /// NACKed) found no other local consumer: it goes back to the cluster at once,
    /// so another node's consumer gets it now rather than after `claim_after`.
    fn handed_back(&self, message: &Message) {
        self.released(message);
    }

    /// Shutdown began: take no more queue messages.
    fn stop_consuming(&self) {}
}

/// Who is online, and who is in which room, on every live node.
pub trait Presence {
    /// `member` (a session id) is in `scope` ("users", "room:{id}") with `info` (the
    /// user or display name) until it leaves or its node stops refreshing it.
    fn presence_join(&self, scope: &str, member: &str, info: &str);
    fn presence_leave(&self, scope: &str, member: &str);
    /// Everyone in `scope` on every live node: (member, info).
    fn presence(&self, scope: &str) -> BoxFuture<Result<Vec<(String, String)>, String>>;
}

/// Small maps shared by every node (the chat room registry).
pub trait SharedMaps {
    /// `only_new`: keep an existing value; returns whether `value` was stored.
    fn map_put(
        &self,
        map: &str,
        key: &str,
        value: &str,
        only_new: bool,
    ) -> BoxFuture<Result<bool, String>>;
    fn map_get(&self, map: &str, key: &str) -> BoxFuture<Result<Option<String>, String>>;
    fn map_all(&self, map: &str) -> BoxFuture<Result<Vec<(String, String)>, String>>;
    /// How many keys `map` holds.
    fn map_len(&self, map: &str) -> BoxFuture<Result<usize, String>>;
    /// Removes `key`; returns whether it was there.
    fn map_remove(&self, map: &str, key: &str) -> BoxFuture<Result<bool, String>>;
}

/// Sessions kept for resuming: a small value under an unguessable key for a while,
/// taken back at most once, on any node.
pub trait Parking {
    /// Keeps `value` under `key` for `ttl`; resolves once it is stored, or with why
    /// it could not be.
    fn park(&self, key: &str, value: String, ttl: Duration) -> BoxFuture<Result<(), String>>;
    /// Takes what is under `key`, which is gone afterwards: `None` when nothing is
    /// (never parked, taken already, or expired).
    fn unpark(&self, key: &str) -> BoxFuture<Result<Option<String>, String>>;
}

/// What `/health` and operators see of the bus.
pub trait Health {
    fn status(&self) -> BusStatus;

    /// Whether the cluster already routes messages for a local subscription to `key`
    /// to this node (Redis confirmed the channel, or the queue is read); always true
    /// alone.
    fn is_listening(&self, _kind: Kind, _key: &str) -> bool {
        true
    }
}

/// A random epoch: 16 hex digits.
pub(crate) fn new_epoch() -> String {
    let u = uuid::Uuid::new_v4();
    u.simple().to_string()[..16].to_owned()
}

//! The Redis bus: any number of nodes sharing one Redis.
//!
//! One job per file: `keys` (where everything lives), `scripts` (Lua),
//! `writer` (the ordered writer, pipelines, the outage `spool`), `pubsub`
//! (channels, receive, de-duplication, gap fill), `history` (recovery by offset),
//! `queues` (consumer, claim, prune, hand-back), `presence`, `maps`,
//! `health` (PING, outage end, status), `replies` (reading Redis' answers),
//! `wire` (the message codec), `outage` (how an outage is logged). This file
//! holds the state they share and starts the tasks.
//!
//! - **Topics.** A publish is one `EVALSHA` (one round trip, batched with the other
//!   publishes waiting): the script bumps the destination's offset, appends the
//!   message to its history stream (`MAXLEN history_size`) and `PUBLISH`es it with
//!   its offset and epoch. The publishing node delivers to its own sessions when the
//!   script answers (so they see the offset too) and ignores its echo; the others
//!   receive it on the destination's channel (`{p}:t:{key}`, or `{p}:u:{user}` for
//!   every user destination of one user). A node subscribes to a channel while a
//!   local session needs it (reference-counted); a wildcard subscription is a
//!   `PSUBSCRIBE` on its literal prefix, matched exactly by the broker.
//! - **Queues.** A `/queue` message is `XADD`ed to `{p}:q:{key}` (consumer group
//!   `herald`); nodes with local consumers `XREADGROUP` and deliver each entry to one
//!   local subscriber, `XACK`+`XDEL` once consumed (auto-ack delivery or client ACK).
//!   Entries a node took and never acked (it died, or no local consumer was left)
//!   are `XAUTOCLAIM`ed by a node with consumers after `claim_after`; entries still
//!   held by live sessions are kept fresh with `XCLAIM … JUSTID`.
//!   The script also records the queue in the set `{p}:queues`, so a node with a
//!   wildcard queue subscription (`/queue/jobs.*`) finds the streams it matches and
//!   reads them too. Consumers (one per node id) left behind by nodes that are gone
//!   are removed from the group once they hold nothing.
//! - **Presence and maps**: joins, leaves and queries go
//!   through the same ordered writer as publishes; the health task re-stamps this
//!   node's members once a `cluster.heartbeat`.
//! - **Confirmation.** A publish whose caller waits (a SEND's RECEIPT, the REST
//!   API) is answered once Redis ran its script; [`PubSub::flushed`](crate::cluster::PubSub::flushed) is a barrier for
//!   what came before (a SUBSCRIBE's RECEIPT waits for its channel).
//! - **Outage.** A publish that cannot reach Redis goes to the outage spool
//!   (`spool`): topic messages are delivered to this node's sessions at
//!   once, queue messages wait (so that exactly one node's consumer gets them). Once
//!   Redis answers the writer writes the spool in order before anything newer; a
//!   waiting caller gets its confirmation then, or a refusal at `publish_timeout`,
//!   after which the message is never written. The health task retries Redis with a
//!   short backoff (sooner when a publish waits), and the first command that succeeds
//!   ends the outage. ACKs and hand-backs that could not reach Redis are kept and
//!   sent once it is back. A node cut off from Pub/Sub fills what it missed on its
//!   exact topic subscriptions from the destinations' history.
//! - **Hand-back.** Unacked entries of a session that ended (or NACKed) with no other
//!   local consumer are re-added to their stream at once, for any node to read.
//! - **Redeliveries.** An entry's field `r` counts how many times consumers gave it
//!   back; a hand-back writes it into the new entry, and an entry claimed from a
//!   node that died holding it adds the claims Redis counted (`XPENDING`'s delivery
//!   count). Past `broker.max_redeliveries` the broker dead-letters it instead.

mod health;
mod history;
mod keys;
mod maps;
mod outage;
mod parked;
mod presence;
mod pubsub;
mod queues;
mod replies;
mod scripts;
mod spool;
pub(crate) mod wire;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use self::health::RETRY_MIN;
use self::keys::Keys;
use self::outage::OutageLog;
use self::pubsub::Heard;
use self::scripts::Scripts;
use self::writer::Cmd;
use super::presence::Members;
use super::{Bus, PubSub, Sink};
use crate::cluster::BoxFuture;
use crate::cluster::config::ClusterConfig;

#[derive(Debug)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    // The shared wiring (this file).
    node_id: String,
    keys: Keys,
    scripts: Scripts,
    history_size: usize,
    queue_capacity: usize,
    config: ClusterConfig,
    client: redis::Client,
    conn: OnceLock<ConnectionManager>,
    /// This node's broker, as the bus sees it.
    sink: OnceLock<Weak<dyn Sink>>,

    // The ordered writer (`writer.rs`): every command goes through it, in order.
    tx: mpsc::UnboundedSender<Cmd>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Cmd>>>,
    /// The writer's spool, for status and shutdown.
    spooled: AtomicUsize,
    spooled_bytes: AtomicUsize,

    // Pub/Sub (`pubsub.rs`).
    /// Channel (or pattern, `true`) → local subscriptions needing it.
    channels: Mutex<HashMap<(String, bool), usize>>,
    /// Channels Redis confirmed.
    listening: Mutex<HashSet<(String, bool)>>,
    /// Channels no longer wanted whose UNSUBSCRIBE waits for Redis.
    unsubscribe_later: Mutex<Vec<(String, bool)>>,
    /// Exact topic routing keys with local subscriptions → the last position this
    /// node heard on them, to notice (and fill) what Pub/Sub did not bring.
    heard: Mutex<HashMap<String, Heard>>,
    /// Redis answers again: the receiver catches up on what Pub/Sub missed.
    resync: Notify,

    // Cluster queues (`queues.rs`).
    /// Queue stream → local consumers.
    queues: Mutex<HashMap<String, usize>>,
    /// Wildcard queue subscription → local consumers.
    wild_queues: Mutex<HashMap<String, usize>>,
    queues_changed: Notify,
    /// Queue entries this node holds (delivered, unacked, or acked until Redis
    /// confirmed the XACK).
    inflight: Mutex<HashMap<Arc<str>, HashSet<String>>>,
    /// ACKs that did not reach Redis, sent again once it is back.
    retry_acks: Mutex<Vec<(Arc<str>, String)>>,
    /// Hand-backs that did not reach Redis, sent again once it is back.
    retry_hand_backs: Mutex<Vec<(Arc<str>, String, u32)>>,

    // Presence (`presence.rs`).
    /// This node's presence entries, re-stamped every health tick.
    members: Members,

    // Health (`health.rs`): whether Redis answers, and stopping.
    connected: AtomicBool,
    failed: AtomicU64,
    /// Redis answers again: the writer writes its spool.
    redis_back: Notify,
    /// A publish waits for Redis: try it now rather than at the next backoff step.
    probe_now: Notify,
    outage: OutageLog,
    /// Stops reading queues (shutdown began) / everything (shutdown done).
    stop_reading: CancellationToken,
    stop: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("node_id", &self.node_id)
            .field("prefix", &self.keys.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    pub fn new(
        config: &ClusterConfig,
        node_id: &str,
        user_prefix: &str,
        queue_capacity: usize,
    ) -> Result<RedisBus, String> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| format!("cluster.redis_url: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(RedisBus {
            inner: Arc::new(Inner {
                node_id: node_id.to_owned(),
                keys: Keys::new(&config.key_prefix, user_prefix),
                history_size: config.history_size,
                queue_capacity: queue_capacity.max(1),
                config: config.clone(),
                client,
                conn: OnceLock::new(),
                sink: OnceLock::new(),
                tx,
                rx: Mutex::new(Some(rx)),
                channels: Mutex::default(),
                listening: Mutex::default(),
                queues: Mutex::default(),
                wild_queues: Mutex::default(),
                queues_changed: Notify::new(),
                inflight: Mutex::default(),
                retry_acks: Mutex::default(),
                retry_hand_backs: Mutex::default(),
                unsubscribe_later: Mutex::default(),
                heard: Mutex::default(),
                members: Members::default(),
                connected: AtomicBool::new(true),
                failed: AtomicU64::new(0),
                redis_back: Notify::new(),
                resync: Notify::new(),
                probe_now: Notify::new(),
                outage: OutageLog::new(node_id),
                spooled: AtomicUsize::new(0),
                spooled_bytes: AtomicUsize::new(0),
                scripts: Scripts::new(),
                stop_reading: CancellationToken::new(),
                stop: CancellationToken::new(),
            }),
        })
    }

    /// Whether Redis confirmed this node's subscription for routing key `key`.
    pub fn is_listening(&self, key: &str) -> bool {
        let ch = self.inner.keys.channel_for(key);
        self.inner.listening.lock().contains(&ch)
    }
}

impl Inner {
    fn sink(&self) -> Option<Arc<dyn Sink>> {
        self.sink.get().and_then(Weak::upgrade)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.get().expect("started").clone()
    }

    fn is_up(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Records whether Redis answers; `why` says what failed. The first success after
    /// a failure ends the outage: the spool is written, the receiver catches up.
    fn set_connected(&self, up: bool, why: &str) {
        let was = self.connected.swap(up, Ordering::Relaxed);
        if was && !up {
            self.outage.started(why);
            self.probe_now.notify_one();
        } else if !was && up {
            crate::ops::metrics::redis_reconnected();
            self.outage.ended(self.spooled.load(Ordering::Relaxed));
            self.redis_back.notify_one();
            self.resync.notify_one();
        }
    }
}

impl Bus for RedisBus {
    fn attach(&self, sink: Weak<dyn Sink>) {
        let inner = &self.inner;
        let _ = inner.sink.set(sink);
        let Some(rx) = inner.rx.lock().take() else {
            return;
        };
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let info = match redis::IntoConnectionInfo::into_connection_info(
            inner.client.get_connection_info().clone(),
        ) {
            Ok(i) => i,
            Err(_) => return,
        };
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let resp3 = redis::Client::open(info.clone().set_redis_settings(settings))
            .expect("valid connection info");
        let retry = |c: ConnectionManagerConfig| {
            c.set_number_of_retries(3)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500))
                .set_connection_timeout(Some(Duration::from_secs(1)))
        };
        let main = ConnectionManager::new_lazy_with_config(
            resp3,
            retry(ConnectionManagerConfig::new())
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_push_sender(push_tx)
                .set_automatic_resubscription(),
        )
        .expect("connection manager");
        let reader = ConnectionManager::new_lazy_with_config(
            inner.client.clone(),
            retry(ConnectionManagerConfig::new())
                .set_response_timeout(Some(Duration::from_secs(5))),
        )
        .expect("connection manager");
        let _ = inner.conn.set(main);
        tokio::spawn(inner.clone().writer(rx));
        tokio::spawn(inner.clone().receive(push_rx));
        tokio::spawn(inner.clone().health());
        tokio::spawn(inner.clone().consume(reader));
    }

    fn drain(&self) -> Option<BoxFuture<()>> {
        let inner = self.inner.clone();
        let flushed = self.flushed();
        Some(Box::pin(async move {
            if let Some(f) = flushed {
                f.await;
            }
            let left = inner.spooled.load(Ordering::Relaxed);
            if left == 0 {
                return;
            }
            tracing::warn!(node = %inner.node_id, spooled = left,
                bytes = inner.spooled_bytes.load(Ordering::Relaxed),
                "shutting down with publishes waiting for Redis: trying once more");
            while inner.spooled.load(Ordering::Relaxed) > 0 {
                inner.probe_now.notify_one();
                tokio::time::sleep(RETRY_MIN).await;
            }
            tracing::info!(node = %inner.node_id, "outage spool written before shutdown");
        }))
    }

    fn shutdown(&self) {
        self.inner.stop_reading.cancel();
        self.inner.stop.cancel();
    }
}

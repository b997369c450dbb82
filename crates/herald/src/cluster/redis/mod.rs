//! The Redis bus: any number of nodes sharing one Redis, a Redis Cluster, or a
//! master behind Sentinels (`cluster::target`).
//!
//! One job per file: `conn` (the connection: one server or a cluster, pipelines
//! per slot), `sentinel` (following the master the Sentinels name), `wild`
//! (wildcards on a cluster), `keys` (where everything lives), `scripts` (Lua),
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

mod conn;
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
mod sentinel;
mod spool;
mod wild;
pub(crate) mod wire;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use self::conn::Conn;
use self::health::RETRY_MIN;
use self::keys::Keys;
use self::outage::OutageLog;
use self::pubsub::Heard;
use self::scripts::Scripts;
use self::wild::Wild;
use self::writer::Cmd;
use super::presence::Members;
use super::{Bus, PubSub, Sink};
use crate::cluster::BoxFuture;
use crate::cluster::config::ClusterConfig;
use crate::cluster::target::RedisTarget;

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
    /// One server, a cluster, or a Sentinel-watched master (`cluster.redis_url`).
    target: RedisTarget,
    /// The connections, once started; replaced when Sentinels name a new master.
    conns: RwLock<Option<Conns>>,
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
    /// Wildcard subscriptions on a cluster: who listens to classic copies (`wild.rs`).
    wild: Wild,

    // Cluster queues (`queues.rs`).
    /// Queue routing key → local consumers.
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
    /// Queues this node added to the registry set (a cluster writes it apart).
    registered: Mutex<HashSet<String>>,

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
    /// Cluster shards that did not answer the last health check, for `/health`.
    shards_down: Mutex<Vec<String>>,
    /// Cluster slots whose shard failed a write, and since when (`writer.rs`).
    slots_down: Mutex<HashMap<redis::cluster_routing::Slot, std::time::Instant>>,
    /// The master the Sentinels named last (`sentinel.rs`).
    master: Mutex<Option<String>>,
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
        let target = RedisTarget::parse(&config.redis_url)?;
        match &target {
            RedisTarget::Single(url) => {
                redis::Client::open(url.as_str()).map_err(|e| format!("cluster.redis_url: {e}"))?;
            }
            RedisTarget::Cluster(seeds) => {
                ClusterClientBuilder::new(seeds.clone())
                    .build()
                    .map_err(|e| format!("cluster.redis_url: {e}"))?;
            }
            RedisTarget::Sentinel { .. } => {}
        }
        let keys = match target {
            RedisTarget::Cluster(_) => Keys::cluster(&config.key_prefix, user_prefix),
            _ => Keys::new(&config.key_prefix, user_prefix),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(RedisBus {
            inner: Arc::new(Inner {
                node_id: node_id.to_owned(),
                keys,
                history_size: config.history_size,
                queue_capacity: queue_capacity.max(1),
                config: config.clone(),
                target,
                conns: RwLock::new(None),
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
                wild: Wild::default(),
                registered: Mutex::default(),
                shards_down: Mutex::default(),
                slots_down: Mutex::default(),
                master: Mutex::default(),
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

    /// The connection for commands and Pub/Sub.
    fn conn(&self) -> Conn {
        self.conns.read().as_ref().expect("started").main.clone()
    }

    /// The connection for blocking reads (`XREADGROUP`).
    fn reader(&self) -> Conn {
        self.conns.read().as_ref().expect("started").reader.clone()
    }

    /// Connections to one server (or a Sentinel's master) at `info`: RESP3 with
    /// pushes and automatic resubscription for commands and Pub/Sub, RESP2 for
    /// blocking reads.
    fn single_conns(
        &self,
        info: redis::ConnectionInfo,
        push_tx: mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Conns {
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let resp3 = redis::Client::open(info.clone().set_redis_settings(settings))
            .expect("valid connection info");
        let plain = redis::Client::open(info).expect("valid connection info");
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
            plain,
            retry(ConnectionManagerConfig::new())
                .set_response_timeout(Some(Duration::from_secs(5))),
        )
        .expect("connection manager");
        Conns {
            main: Conn::Single(main),
            reader: Conn::Single(reader),
        }
    }

    /// Connections to a Redis Cluster: the cluster connection follows the topology
    /// (MOVED/ASK, failovers) and resubscribes sharded channels where their slots
    /// move; a second one without pushes for blocking reads.
    fn cluster_conns(
        seeds: &[String],
        push_tx: mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<Conns, String> {
        let build = |push: Option<mpsc::UnboundedSender<redis::PushInfo>>, response: u64| {
            let mut b = ClusterClientBuilder::new(seeds.to_vec())
                .retries(5)
                .min_retry_wait(50)
                .max_retry_wait(500)
                .connection_timeout(Duration::from_secs(1))
                .response_timeout(Duration::from_secs(response));
            if let Some(tx) = push {
                b = b
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(tx);
            }
            let client = b.build().map_err(|e| format!("cluster.redis_url: {e}"))?;
            Ok::<_, String>(
                client.get_pending_async_connection_with_config(
                    redis::cluster::ClusterConfig::new()
                        .set_connection_timeout(Duration::from_secs(1))
                        .set_response_timeout(Duration::from_secs(response)),
                ),
            )
        };
        Ok(Conns {
            main: Conn::Cluster(build(Some(push_tx), 2)?),
            reader: Conn::Cluster(build(None, 5)?),
        })
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
            // A restarted Redis lost the queue registry: each queue is added again.
            self.registered.lock().clear();
            self.outage.ended(self.spooled.load(Ordering::Relaxed));
            self.redis_back.notify_one();
            self.resync.notify_one();
        }
    }
}

/// The bus's two connections.
struct Conns {
    main: Conn,
    reader: Conn,
}

impl Bus for RedisBus {
    fn attach(&self, sink: Weak<dyn Sink>) {
        let inner = &self.inner;
        let _ = inner.sink.set(sink);
        let Some(rx) = inner.rx.lock().take() else {
            return;
        };
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let conns = match &inner.target {
            RedisTarget::Single(url) => {
                let Ok(info) = redis::IntoConnectionInfo::into_connection_info(url.as_str()) else {
                    return;
                };
                inner.single_conns(info, push_tx.clone())
            }
            RedisTarget::Cluster(seeds) => match Inner::cluster_conns(seeds, push_tx.clone()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the Redis Cluster connection");
                    return;
                }
            },
            RedisTarget::Sentinel { .. } => {
                let info = inner.sentinel_first_master();
                inner.single_conns(info, push_tx.clone())
            }
        };
        *inner.conns.write() = Some(conns);
        if matches!(inner.target, RedisTarget::Sentinel { .. }) {
            tokio::spawn(inner.clone().follow_sentinels(push_tx.clone()));
        }
        if inner.keys.tagged {
            tokio::spawn(inner.clone().announce_wildcards());
        }
        tokio::spawn(inner.clone().writer(rx));
        tokio::spawn(inner.clone().receive(push_rx));
        tokio::spawn(inner.clone().health());
        tokio::spawn(inner.clone().consume());
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

//! The Redis bus: any number of nodes sharing one Redis.
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
//! - **Presence and maps** ([`super::presence`]): joins, leaves and queries go
//!   through the same ordered writer as publishes; the health task re-stamps this
//!   node's members once a `cluster.heartbeat`.
//! - **Confirmation.** A publish whose caller waits (a SEND's RECEIPT, the REST
//!   API) is answered once Redis ran its script; [`Bus::flushed`] is a barrier for
//!   what came before (a SUBSCRIBE's RECEIPT waits for its channel).
//! - **Outage.** A publish that cannot reach Redis goes to the outage spool
//!   ([`super::spool`]): topic messages are delivered to this node's sessions at
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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::outage::OutageLog;
use super::presence::{JOIN_SCRIPT, LIST_SCRIPT, Members, REFRESH_CHUNK};
use super::spool::{Spool, Spooled};
use super::wire::{decode, encode, split_published};
use super::{
    Bus, BusStatus, ClusterQueues, Confirm, Health, Outcome, Presence, PubSub, Recovery, Replay,
    SharedMaps, Since, Sink,
};
use crate::config::ClusterConfig;
use crate::destination::{Pattern, is_wildcard};
use crate::handler::BoxFuture;
use crate::message::{Entry, Kind, Message, Position};

const GROUP: &str = "herald";
/// Publishes and acks sent to Redis in one pipeline at most.
const BATCH: usize = 512;
/// Longest one pipeline waits for Redis' answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Shortest and longest pause between two attempts to reach Redis after a failure.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// KEYS: history stream, meta hash. ARGV: channel, payload, history size, a fresh
/// epoch, ttl seconds. Returns {offset, epoch}.
const TOPIC_SCRIPT: &str = r#"
local o = redis.call('HINCRBY', KEYS[2], 'o', 1)
local e = redis.call('HGET', KEYS[2], 'e')
if not e then
  e = ARGV[4]
  redis.call('HSET', KEYS[2], 'e', e)
  redis.call('DEL', KEYS[1])
end
local ttl = tonumber(ARGV[5])
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], o .. '-0', 'p', ARGV[2])
  if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
end
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
redis.call('PUBLISH', ARGV[1], o .. ' ' .. e .. ' ' .. ARGV[2])
return {o, e}
"#;

/// KEYS: queue stream, queue registry set. ARGV: payload, capacity, routing key.
/// Returns the entry id.
const QUEUE_SCRIPT: &str = r#"
redis.pcall('XGROUP', 'CREATE', KEYS[1], 'herald', '0', 'MKSTREAM')
redis.call('SADD', KEYS[2], ARGV[3])
return redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'p', ARGV[1])
"#;

/// KEYS: queue stream. ARGV: entry id, this node's consumer, capacity, times it was
/// given back. Re-adds an entry this node holds as a new one (any node's next
/// XREADGROUP reads it) with that count in field `r`, and removes the old; nothing
/// when another consumer holds it now. Returns 1 if moved.
const HAND_BACK_SCRIPT: &str = r#"
local held = redis.call('XPENDING', KEYS[1], 'herald', ARGV[1], ARGV[1], 1, ARGV[2])
if #held == 0 then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
redis.call('XACK', KEYS[1], 'herald', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if #e == 0 then return 0 end
local fields = {}
local f = e[1][2]
for i = 1, #f, 2 do
  if f[i] ~= 'r' then
    fields[#fields + 1] = f[i]
    fields[#fields + 1] = f[i + 1]
  end
end
fields[#fields + 1] = 'r'
fields[#fields + 1] = ARGV[4]
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', unpack(fields))
return 1
"#;

/// Every script, loaded again after a Redis restart emptied its script cache.
const SCRIPTS: [&str; 5] = [
    TOPIC_SCRIPT,
    QUEUE_SCRIPT,
    HAND_BACK_SCRIPT,
    JOIN_SCRIPT,
    LIST_SCRIPT,
];

/// What a caller of [`Inner::call`] gets back.
type Reply = oneshot::Sender<Result<Value, String>>;

/// A publish's waiting caller, and when it started waiting.
type Waiter = (Confirm, tokio::time::Instant);

// Publish is the common command and the large one; boxing it would cost an allocation
// per publish.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    Publish(Message, Option<Waiter>),
    Ack(Arc<str>, String),
    /// An entry this node holds goes back to its stream (its session ended), with
    /// the times it was given back.
    HandBack(Arc<str>, String, u32),
    /// A command run in order with the publishes; its answer goes to the reply.
    Call(redis::Cmd, Option<Reply>),
    /// Answered once everything sent before it was flushed.
    Barrier(oneshot::Sender<()>),
    Subscribe(String, bool),
    Unsubscribe(String, bool),
}

/// What this node heard last on one exact topic routing key.
#[derive(Default)]
struct Heard {
    /// Local subscriptions to the key.
    subscriptions: usize,
    last: Option<Position>,
}

/// How a message heard on Pub/Sub relates to what came before on its key.
enum Sequence {
    /// The next one (or the key is not followed).
    Next,
    /// Heard already (filled from history first).
    Again,
    /// Messages from this offset on were missed.
    After(u64),
}

/// What Redis made of one command of a pipeline.
enum Answer {
    Done(Value),
    /// Redis refused it for good (a wrong type, a script error): never retried.
    Rejected(String),
    /// Not run: Redis is away, loading or out of memory; retried once it answers.
    NotRun(String),
}

impl From<Value> for Answer {
    fn from(v: Value) -> Answer {
        match v {
            Value::ServerError(e) => match e.code() {
                "LOADING" | "BUSY" | "OOM" | "READONLY" | "MASTERDOWN" | "TRYAGAIN"
                | "CLUSTERDOWN" | "NOSCRIPT" => Answer::NotRun(e.to_string()),
                _ => Answer::Rejected(e.to_string()),
            },
            v => Answer::Done(v),
        }
    }
}

#[derive(Debug)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    prefix: String,
    user_prefix: String,
    history_size: usize,
    queue_capacity: usize,
    config: ClusterConfig,
    client: redis::Client,
    conn: OnceLock<ConnectionManager>,
    /// This node's broker, as the bus sees it.
    sink: OnceLock<Weak<dyn Sink>>,
    tx: mpsc::UnboundedSender<Cmd>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Cmd>>>,
    /// Channel (or pattern, `true`) → local subscriptions needing it.
    channels: Mutex<HashMap<(String, bool), usize>>,
    /// Channels Redis confirmed.
    listening: Mutex<HashSet<(String, bool)>>,
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
    /// Channels no longer wanted whose UNSUBSCRIBE waits for Redis.
    unsubscribe_later: Mutex<Vec<(String, bool)>>,
    /// Exact topic routing keys with local subscriptions → the last position this
    /// node heard on them, to notice (and fill) what Pub/Sub did not bring.
    heard: Mutex<HashMap<String, Heard>>,
    /// This node's presence entries, re-stamped every health tick.
    members: Members,
    connected: AtomicBool,
    failed: AtomicU64,
    /// Redis answers again: the writer writes its spool, the receiver catches up.
    redis_back: Notify,
    resync: Notify,
    /// A publish waits for Redis: try it now rather than at the next backoff step.
    probe_now: Notify,
    outage: OutageLog,
    /// The writer's spool, for status and shutdown.
    spooled: AtomicUsize,
    spooled_bytes: AtomicUsize,
    topic_sha: String,
    queue_sha: String,
    hand_back_sha: String,
    join_sha: String,
    list_sha: String,
    /// Stops reading queues (shutdown began) / everything (shutdown done).
    stop_reading: CancellationToken,
    stop: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("node_id", &self.node_id)
            .field("prefix", &self.prefix)
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
                prefix: config.key_prefix.clone(),
                user_prefix: user_prefix.to_owned(),
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
                topic_sha: redis::Script::new(TOPIC_SCRIPT).get_hash().to_owned(),
                queue_sha: redis::Script::new(QUEUE_SCRIPT).get_hash().to_owned(),
                hand_back_sha: redis::Script::new(HAND_BACK_SCRIPT).get_hash().to_owned(),
                join_sha: redis::Script::new(JOIN_SCRIPT).get_hash().to_owned(),
                list_sha: redis::Script::new(LIST_SCRIPT).get_hash().to_owned(),
                stop_reading: CancellationToken::new(),
                stop: CancellationToken::new(),
            }),
        })
    }

    /// Whether Redis confirmed this node's subscription for routing key `key`.
    pub fn is_listening(&self, key: &str) -> bool {
        let ch = self.inner.channel_for(Kind::Topic, key);
        ch.is_some_and(|c| self.inner.listening.lock().contains(&c))
    }
}

impl Inner {
    fn sink(&self) -> Option<Arc<dyn Sink>> {
        self.sink.get().and_then(Weak::upgrade)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.get().expect("started").clone()
    }

    /// The channel (and whether it is a pattern) a subscription to `key` needs.
    fn channel_for(&self, kind: Kind, key: &str) -> Option<(String, bool)> {
        if kind == Kind::Queue {
            return None;
        }
        if let Some(rest) = key.strip_prefix(self.user_prefix.as_str()) {
            let user = rest.split('/').next().unwrap_or(rest);
            return Some((format!("{}:u:{user}", self.prefix), false));
        }
        let channel = format!("{}:t:", self.prefix);
        Some(match Pattern::subscription(key) {
            None => (channel + key, false),
            Some(p) => (topic_glob(&channel, p.literal_prefix()), true),
        })
    }

    /// The channel a message routed under `key` is published on.
    fn publish_channel(&self, key: &str) -> String {
        match key.strip_prefix(self.user_prefix.as_str()) {
            Some(rest) => format!(
                "{}:u:{}",
                self.prefix,
                rest.split('/').next().unwrap_or(rest)
            ),
            None => format!("{}:t:{key}", self.prefix),
        }
    }

    fn queue_stream(&self, key: &str) -> String {
        format!("{}:q:{key}", self.prefix)
    }

    fn queue_registry(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    fn presence_keys(&self, scope: &str) -> (String, String) {
        (
            format!("{}:pr:{scope}", self.prefix),
            format!("{}:pz:{scope}", self.prefix),
        )
    }

    fn map_key(&self, map: &str) -> String {
        format!("{}:map:{map}", self.prefix)
    }

    /// Presence entries live this long unless re-stamped.
    fn presence_ttl_ms(&self) -> u64 {
        (self.config.heartbeat.as_millis() as u64).max(100) * 3
    }

    fn join_cmd(&self, scope: &str, entries: &[(String, String)]) -> redis::Cmd {
        let (hash, zset) = self.presence_keys(scope);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.join_sha)
            .arg(2)
            .arg(hash)
            .arg(zset)
            .arg(self.presence_ttl_ms());
        for (member, info) in entries {
            cmd.arg(member).arg(info);
        }
        cmd
    }

    /// Runs `cmd` in order with the publishes; the answer, or why there is none.
    fn call(
        &self,
        cmd: redis::Cmd,
    ) -> impl Future<Output = Result<Value, String>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = if self.connected.load(Ordering::Relaxed) {
            self.tx
                .send(Cmd::Call(cmd, Some(tx)))
                .map_err(|_| "the server is shutting down".to_owned())
        } else {
            Err("Redis is unreachable".to_owned())
        };
        async move {
            sent?;
            rx.await
                .map_err(|_| "the server is shutting down".to_owned())?
        }
    }

    /// Runs `cmd` in order with the publishes, answer unread (failures are logged).
    fn send_call(&self, cmd: redis::Cmd) {
        if self.connected.load(Ordering::Relaxed) {
            let _ = self.tx.send(Cmd::Call(cmd, None));
        }
    }

    fn history_keys(&self, key: &str) -> (String, String) {
        (
            format!("{}:h:{key}", self.prefix),
            format!("{}:m:{key}", self.prefix),
        )
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

    // ---------------------------------------------------------------- writer

    /// Sends commands to Redis in order, a batch per round trip. While Redis is away
    /// (or the spool still holds anything) publishes go to the spool instead, and the
    /// spool is written first once Redis answers.
    async fn writer(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut spool = Spool::new(self.config.spool_max_bytes);
        let mut carry: Option<Cmd> = None;
        loop {
            self.expire(&mut spool);
            if !spool.is_empty() && self.is_up() {
                self.replay(&mut spool).await;
                self.report(&spool);
                continue;
            }
            let deadline = spool.next_deadline();
            let cmd = match carry.take() {
                Some(c) => c,
                None => tokio::select! {
                    _ = self.stop.cancelled() => return self.abandon(&mut spool),
                    c = rx.recv() => match c { Some(c) => c, None => return self.abandon(&mut spool) },
                    _ = self.redis_back.notified(), if !spool.is_empty() => continue,
                    _ = sleep_until_some(deadline), if deadline.is_some() => continue,
                },
            };
            match cmd {
                Cmd::Subscribe(ch, pattern) => self.subscribe(ch, pattern).await,
                Cmd::Unsubscribe(ch, pattern) => self.unsubscribe(ch, pattern).await,
                first => {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(
                                c @ (Cmd::Publish(..)
                                | Cmd::Ack(..)
                                | Cmd::HandBack(..)
                                | Cmd::Call(..)
                                | Cmd::Barrier(_)),
                            ) => batch.push(c),
                            Ok(other) => {
                                carry = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if self.is_up() && !spool.is_empty() {
                        self.replay(&mut spool).await;
                    }
                    if self.is_up() && spool.is_empty() {
                        self.flush(batch, &mut spool).await;
                    } else {
                        self.hold(batch, &mut spool, "Redis is unreachable");
                    }
                }
            }
            self.report(&spool);
        }
    }

    /// The spool's size for status, shutdown and the metrics (when it changed).
    fn report(&self, spool: &Spool) {
        let (len, bytes) = (spool.len(), spool.bytes());
        let was = (
            self.spooled.swap(len, Ordering::Relaxed),
            self.spooled_bytes.swap(bytes, Ordering::Relaxed),
        );
        if was != (len, bytes) {
            crate::ops::metrics::bus_spool(len, bytes);
        }
    }

    /// Shutdown: what the spool still holds never reaches Redis.
    fn abandon(&self, spool: &mut Spool) {
        let left = spool.drain();
        self.report(spool);
        if left.is_empty() {
            return;
        }
        tracing::warn!(node = %self.node_id, lost = left.len(),
            "shutting down with publishes that never reached Redis");
        crate::ops::metrics::bus_refused("shutdown", left.len());
        for e in left {
            if let Some((c, _)) = e.waiter {
                let _ = c.send(Outcome {
                    delivered: e.delivered,
                    ..Outcome::refused("the server is shutting down")
                });
            }
        }
    }

    async fn subscribe(&self, ch: String, pattern: bool) {
        // Still wanted? (a quick subscribe/unsubscribe pair needs no round trip)
        if !self.channels.lock().contains_key(&(ch.clone(), pattern)) {
            return;
        }
        if !self.is_up() {
            return; // the health task subscribes what is missing once Redis is back
        }
        let mut conn = self.conn();
        let r = if pattern {
            conn.psubscribe(&ch).await
        } else {
            conn.subscribe(&ch).await
        };
        match r {
            Ok(()) => {
                self.listening.lock().insert((ch, pattern));
            }
            Err(e) => {
                // The manager resubscribes what it tracked; what failed is retried
                // by the health task.
                tracing::debug!(channel = %ch, error = %e, "Redis SUBSCRIBE failed; will retry");
                self.set_connected(false, &e.to_string());
            }
        }
    }

    async fn unsubscribe(&self, ch: String, pattern: bool) {
        if self.channels.lock().contains_key(&(ch.clone(), pattern)) {
            return;
        }
        self.listening.lock().remove(&(ch.clone(), pattern));
        if !self.is_up() {
            self.unsubscribe_later.lock().push((ch, pattern));
            return;
        }
        let mut conn = self.conn();
        let _ = if pattern {
            conn.punsubscribe(&ch).await
        } else {
            conn.unsubscribe(&ch).await
        };
    }

    fn add_publish(&self, pipe: &mut redis::Pipeline, kind: Kind, key: &str, payload: &[u8]) {
        if kind == Kind::Topic {
            let (hist, meta) = self.history_keys(key);
            pipe.cmd("EVALSHA")
                .arg(&self.topic_sha)
                .arg(2)
                .arg(hist)
                .arg(meta)
                .arg(self.publish_channel(key))
                .arg(payload)
                .arg(self.history_size)
                .arg(super::new_epoch())
                .arg(self.config.history_ttl.as_secs());
        } else {
            pipe.cmd("EVALSHA")
                .arg(&self.queue_sha)
                .arg(2)
                .arg(self.queue_stream(key))
                .arg(self.queue_registry())
                .arg(payload)
                .arg(self.queue_capacity)
                .arg(key);
        }
    }

    /// One pipeline for `batch`: every command in it has an answer (errors
    /// included), in order; an ACK is two commands, a barrier none.
    fn pipeline(&self, batch: &[Cmd]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for c in batch {
            match c {
                Cmd::Publish(m, _) => {
                    self.add_publish(&mut pipe, m.kind, &m.key, &encode(m, &self.node_id))
                }
                Cmd::Ack(stream, id) => {
                    pipe.cmd("XACK").arg(&**stream).arg(GROUP).arg(id);
                    pipe.cmd("XDEL").arg(&**stream).arg(id);
                }
                Cmd::HandBack(stream, id, given_back) => {
                    pipe.cmd("EVALSHA")
                        .arg(&self.hand_back_sha)
                        .arg(1)
                        .arg(&**stream)
                        .arg(id)
                        .arg(&self.node_id)
                        .arg(self.queue_capacity)
                        .arg(*given_back);
                }
                Cmd::Call(cmd, _) => {
                    pipe.add_command(cmd.clone());
                }
                Cmd::Barrier(_) | Cmd::Subscribe(..) | Cmd::Unsubscribe(..) => {}
            }
        }
        pipe
    }

    /// Runs `pipe`: every command's answer, or why Redis could not be asked (then
    /// none of it is known to have run). Scripts a restarted Redis lost are loaded
    /// and those commands run again.
    async fn run(&self, pipe: &redis::Pipeline) -> Result<Vec<Answer>, String> {
        if pipe.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let values: Vec<Value> =
            match tokio::time::timeout(ANSWER_TIMEOUT, pipe.query_async(&mut conn)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err(format!("Redis did not answer within {ANSWER_TIMEOUT:?}")),
            };
        let noscript: Vec<usize> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT"))
            .map(|(i, _)| i)
            .collect();
        let mut answers: Vec<Answer> = values.into_iter().map(Answer::from).collect();
        if !noscript.is_empty() && self.load_scripts().await.is_ok() {
            let cmds: Vec<&redis::Cmd> = pipe.cmd_iter().collect();
            let mut again = redis::pipe();
            again.ignore_errors();
            for &i in &noscript {
                again.add_command(cmds[i].clone());
            }
            let retried: Result<Vec<Value>, String> =
                match tokio::time::timeout(ANSWER_TIMEOUT, again.query_async(&mut conn)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("Redis did not answer within {ANSWER_TIMEOUT:?}")),
                };
            match retried {
                Ok(vs) => {
                    for (&i, v) in noscript.iter().zip(vs) {
                        answers[i] = Answer::from(v);
                    }
                }
                Err(e) => {
                    for &i in &noscript {
                        answers[i] = Answer::NotRun(e.clone());
                    }
                }
            }
        }
        Ok(answers)
    }

    async fn load_scripts(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        let mut load = redis::pipe();
        for script in SCRIPTS {
            load.cmd("SCRIPT").arg("LOAD").arg(script).ignore();
        }
        load.query_async(&mut conn).await
    }

    async fn flush(&self, batch: Vec<Cmd>, spool: &mut Spool) {
        if batch.iter().all(|c| matches!(c, Cmd::Barrier(_))) {
            // Nothing to send: what came before is done.
            for c in batch {
                if let Cmd::Barrier(b) = c {
                    let _ = b.send(());
                }
            }
            return;
        }
        let started = std::time::Instant::now();
        let result = self.run(&self.pipeline(&batch)).await;
        crate::ops::metrics::bus_publish_time(started.elapsed());
        let mut answers = match result {
            Ok(a) => a.into_iter(),
            Err(why) => {
                self.set_connected(false, &why);
                return self.hold(batch, spool, &why);
            }
        };
        self.set_connected(true, "");
        let sink = self.sink();
        let mut barriers = Vec::new();
        let mut not_run: Option<String> = None;
        for cmd in batch {
            match cmd {
                Cmd::Publish(mut m, waiter) => match answers.next() {
                    Some(Answer::Done(reply)) => {
                        let mut outcome = Outcome::default();
                        if m.kind == Kind::Topic {
                            // {offset, epoch}: this node's sessions get it now, stamped.
                            m.position = stamped(reply);
                            outcome.position = m.position.clone();
                            if let Some(s) = &sink {
                                outcome.delivered = s.deliver(Arc::new(m));
                            }
                        }
                        // Queue messages come back through XREADGROUP, to one consumer.
                        if let Some((c, _)) = waiter {
                            let _ = c.send(outcome);
                        }
                    }
                    Some(Answer::Rejected(why)) => self.reject(&m.key, waiter, &why),
                    other => {
                        self.spool_one(m, waiter, spool, sink.as_ref());
                        self.count_failed(1);
                        not_run = Some(match other {
                            Some(Answer::NotRun(why)) => why,
                            _ => "no answer from Redis".to_owned(),
                        });
                    }
                },
                Cmd::Ack(stream, id) => {
                    let (a, b) = (answers.next(), answers.next());
                    if matches!((a, b), (Some(Answer::Done(_)), Some(Answer::Done(_)))) {
                        if let Some(ids) = self.inflight.lock().get_mut(&stream) {
                            ids.remove(&id);
                        }
                    } else {
                        self.retry_acks.lock().push((stream, id));
                    }
                }
                Cmd::HandBack(stream, id, given_back) => match answers.next() {
                    Some(Answer::Done(v)) => {
                        if as_u64(&v) == Some(1) {
                            crate::ops::metrics::bus_handed_back(1);
                        }
                    }
                    Some(Answer::NotRun(_)) | None => {
                        self.retry_hand_backs.lock().push((stream, id, given_back));
                    }
                    Some(Answer::Rejected(why)) => {
                        tracing::warn!(queue = %stream, error = %why, "handing a queue message back failed; it is claimed after claim_after");
                    }
                },
                Cmd::Call(_, reply) => {
                    let v = match answers.next() {
                        Some(Answer::Done(v)) => Ok(v),
                        Some(Answer::Rejected(e) | Answer::NotRun(e)) => Err(e),
                        None => Err("no answer from Redis".to_owned()),
                    };
                    if let Some(r) = reply {
                        let _ = r.send(v);
                    }
                }
                Cmd::Barrier(b) => barriers.push(b),
                Cmd::Subscribe(..) | Cmd::Unsubscribe(..) => {}
            }
        }
        if let Some(why) = not_run {
            // Loading, out of memory: an outage until a PING gets through.
            self.set_connected(false, &why);
        }
        for b in barriers {
            let _ = b.send(());
        }
    }

    /// Redis is away: publishes go to the spool, ACKs and hand-backs wait, calls fail.
    fn hold(&self, batch: Vec<Cmd>, spool: &mut Spool, why: &str) {
        let sink = self.sink();
        let mut failed = 0;
        for cmd in batch {
            match cmd {
                Cmd::Publish(m, waiter) => {
                    failed += 1;
                    self.spool_one(m, waiter, spool, sink.as_ref());
                }
                Cmd::Ack(stream, id) => self.retry_acks.lock().push((stream, id)),
                Cmd::HandBack(stream, id, n) => self.retry_hand_backs.lock().push((stream, id, n)),
                Cmd::Call(_, Some(r)) => {
                    let _ = r.send(Err(why.to_owned()));
                }
                Cmd::Call(_, None) => {}
                Cmd::Barrier(b) => {
                    let _ = b.send(());
                }
                Cmd::Subscribe(..) | Cmd::Unsubscribe(..) => {}
            }
        }
        if failed > 0 {
            self.count_failed(failed);
            self.probe_now.notify_one();
        }
    }

    fn count_failed(&self, n: usize) {
        self.failed.fetch_add(n as u64, Ordering::Relaxed);
        crate::ops::metrics::bus_errors(n);
        self.outage.failed(n);
    }

    /// Keeps `m` for Redis: a topic message reaches this node's sessions now, a queue
    /// message waits. Past the spool's budget it is refused instead.
    fn spool_one(
        &self,
        m: Message,
        waiter: Option<Waiter>,
        spool: &mut Spool,
        sink: Option<&Arc<dyn Sink>>,
    ) {
        let payload = encode(&m, &self.node_id);
        if !spool.fits(payload.len()) {
            crate::ops::metrics::bus_refused("spool_full", 1);
            self.outage.refused(1);
            if let Some((c, _)) = waiter {
                let _ = c.send(Outcome::refused(format_args!(
                    "outage spool full: holds {} bytes, limit cluster.spool_max_bytes",
                    spool.bytes()
                )));
            }
            return;
        }
        let (kind, key) = (m.kind, m.key.clone());
        let delivered = match (kind, sink) {
            (Kind::Topic, Some(s)) => s.deliver(Arc::new(m)),
            _ => 0,
        };
        let waiter = waiter.map(|(c, since)| (c, since + self.config.publish_timeout));
        spool.push(Spooled {
            kind,
            key,
            payload,
            delivered,
            waiter,
        });
    }

    /// Redis answered a publish with an error that a retry would not change.
    fn reject(&self, key: &str, waiter: Option<Waiter>, why: &str) {
        tracing::warn!(destination = %key, error = %why, "Redis refused a publish");
        crate::ops::metrics::bus_refused("rejected", 1);
        if let Some((c, _)) = waiter {
            let _ = c.send(Outcome::refused(format_args!("Redis refused it: {why}")));
        }
    }

    /// Refuses the spooled messages whose publisher waited `publish_timeout`: they
    /// leave the spool and are never written.
    fn expire(&self, spool: &mut Spool) {
        if spool
            .next_deadline()
            .is_none_or(|d| d > tokio::time::Instant::now())
        {
            return;
        }
        let gone = spool.expire(tokio::time::Instant::now());
        if gone.is_empty() {
            return;
        }
        crate::ops::metrics::bus_refused("timeout", gone.len());
        self.outage.refused(gone.len());
        let limit = self.config.publish_timeout;
        for e in gone {
            if let Some((c, _)) = e.waiter {
                let _ = c.send(Outcome {
                    delivered: e.delivered,
                    ..Outcome::refused(format_args!(
                        "Redis did not take it within {limit:?}, cluster.publish_timeout"
                    ))
                });
            }
        }
    }

    /// Writes the spool to Redis, oldest first, until it is empty or Redis fails
    /// again. Topic messages were delivered here when they were spooled: their echo
    /// is ignored as always, and they are not delivered again.
    async fn replay(&self, spool: &mut Spool) {
        let mut written = 0;
        while !spool.is_empty() && self.is_up() {
            self.expire(spool);
            let chunk = spool.take(BATCH);
            if chunk.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (_, e) in &chunk {
                self.add_publish(&mut pipe, e.kind, &e.key, &e.payload);
            }
            let answers = match self.run(&pipe).await {
                Ok(a) => a,
                Err(why) => {
                    // Not known to have run: written again later (at least once).
                    spool.restore(chunk);
                    self.set_connected(false, &why);
                    break;
                }
            };
            let mut answers = answers.into_iter();
            let mut back = Vec::new();
            let mut not_run = None;
            for (seq, e) in chunk {
                match answers.next() {
                    Some(Answer::Done(reply)) => {
                        written += 1;
                        if let Some((c, _)) = e.waiter {
                            let position = match e.kind {
                                Kind::Topic => stamped(reply),
                                Kind::Queue => None,
                            };
                            let _ = c.send(Outcome {
                                delivered: e.delivered,
                                position,
                                error: None,
                            });
                        }
                    }
                    Some(Answer::Rejected(why)) => self.reject(&e.key, e.waiter, &why),
                    Some(Answer::NotRun(why)) => {
                        not_run = Some(why);
                        back.push((seq, e));
                    }
                    None => back.push((seq, e)),
                }
            }
            if !back.is_empty() {
                spool.restore(back);
                self.set_connected(false, not_run.as_deref().unwrap_or("no answer from Redis"));
                break;
            }
            self.report(spool);
        }
        if written > 0 {
            crate::ops::metrics::bus_replayed(written);
            tracing::info!(node = %self.node_id, written, left = spool.len(),
                "outage spool written to Redis");
        }
    }

    // ---------------------------------------------------------------- pub/sub in

    async fn receive(self: Arc<Self>, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
        loop {
            let push = tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.resync.notified() => {
                    self.catch_up().await;
                    continue;
                }
                p = pushes.recv() => match p { Some(p) => p, None => return },
            };
            let payload = match (push.kind, &push.data[..]) {
                (PushKind::Message, [_, Value::BulkString(p)]) => p,
                (PushKind::PMessage, [pattern, channel, Value::BulkString(p)]) => {
                    match (as_string(pattern), as_string(channel)) {
                        (Some(pat), Some(ch)) if self.first_listener(&pat, &ch) => p,
                        _ => continue,
                    }
                }
                (PushKind::Disconnection, _) => {
                    self.set_connected(false, "the connection to Redis was lost");
                    continue;
                }
                _ => continue,
            };
            let Some((offset, epoch, payload)) = split_published(payload) else {
                continue;
            };
            let Some((origin, mut m)) = decode(payload) else {
                tracing::warn!("undecodable message on a Herald channel");
                continue;
            };
            let position = Position {
                offset,
                epoch: epoch.into(),
            };
            match self.sequence(&m.key, &position) {
                Sequence::Next => {}
                Sequence::Again => continue,
                Sequence::After(from) => {
                    self.fill(&m.key, &position.epoch, from, offset - 1).await;
                }
            }
            if origin == self.node_id {
                continue; // our own echo: delivered when the script answered
            }
            m.position = Some(position);
            if let Some(s) = self.sink() {
                s.deliver(Arc::new(m));
            }
        }
    }

    /// Records that `key`'s message at `p` was heard, and how it follows the last one
    /// (keys with exact local subscriptions only).
    fn sequence(&self, key: &str, p: &Position) -> Sequence {
        let mut heard = self.heard.lock();
        let Some(h) = heard.get_mut(key) else {
            return Sequence::Next;
        };
        let seq = match &h.last {
            Some(l) if l.epoch == p.epoch && p.offset <= l.offset => return Sequence::Again,
            Some(l) if l.epoch == p.epoch && p.offset > l.offset + 1 => {
                Sequence::After(l.offset + 1)
            }
            // A new epoch began after the last message heard (Redis lost the history,
            // or it expired): all of it is news.
            Some(l) if l.epoch != p.epoch && p.offset > 1 => Sequence::After(1),
            _ => Sequence::Next,
        };
        h.last = Some(p.clone());
        seq
    }

    /// Delivers from `key`'s history what this node missed, offsets `from..=to` of
    /// `epoch` (other nodes' messages: this node's own were delivered when sent).
    async fn fill(&self, key: &str, epoch: &Arc<str>, from: u64, to: u64) {
        let (hist, meta) = self.history_keys(key);
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(&meta)
            .arg("e")
            .cmd("XRANGE")
            .arg(&hist)
            .arg(format!("{from}-0"))
            .arg(format!("{to}-0"))
            .arg("COUNT")
            .arg(self.history_size.max(1));
        let r: Result<redis::RedisResult<(Option<String>, Value)>, _> =
            tokio::time::timeout(ANSWER_TIMEOUT, pipe.query_async(&mut conn)).await;
        let (Ok(Ok((Some(e), entries))), Some(sink)) = (r, self.sink()) else {
            tracing::debug!(destination = %key, from, to, "missed messages could not be read from history");
            return;
        };
        if *e != **epoch {
            return;
        }
        let mut filled = 0;
        for (origin, m) in history(entries, epoch) {
            if origin != self.node_id {
                sink.deliver(Arc::new(m));
                filled += 1;
            }
        }
        if filled > 0 {
            tracing::debug!(destination = %key, filled, "delivered from history what Pub/Sub missed");
        }
    }

    /// After an outage: what each followed key got meanwhile that this node did not
    /// hear (Pub/Sub does not keep messages for a node that was away).
    async fn catch_up(&self) {
        let followed: Vec<(String, Position)> = self
            .heard
            .lock()
            .iter()
            .filter_map(|(k, h)| h.last.clone().map(|l| (k.clone(), l)))
            .collect();
        for chunk in followed.chunks(REFRESH_CHUNK) {
            let mut pipe = redis::pipe();
            for (key, _) in chunk {
                pipe.cmd("HMGET")
                    .arg(self.history_keys(key).1)
                    .arg("o")
                    .arg("e");
            }
            let mut conn = self.conn();
            let tops: Vec<(Option<u64>, Option<String>)> =
                match tokio::time::timeout(ANSWER_TIMEOUT, pipe.query_async(&mut conn)).await {
                    Ok(Ok(t)) => t,
                    _ => return,
                };
            for ((key, last), top) in chunk.iter().zip(tops) {
                let (Some(top), Some(epoch)) = top else {
                    continue;
                };
                let from = if *epoch == *last.epoch {
                    if top <= last.offset {
                        continue;
                    }
                    last.offset + 1
                } else {
                    1
                };
                let epoch: Arc<str> = epoch.into();
                match self.heard.lock().get_mut(key) {
                    Some(h) => {
                        h.last = Some(Position {
                            offset: top,
                            epoch: epoch.clone(),
                        })
                    }
                    None => continue,
                }
                self.fill(key, &epoch, from, top).await;
            }
        }
    }

    /// Redis sends a message once per matching subscription (the exact channel and
    /// each matching pattern); the broker matches every local subscription itself,
    /// so only one of them counts: the exact channel, else the least pattern.
    fn first_listener(&self, pattern: &str, channel: &str) -> bool {
        let listening = self.listening.lock();
        if listening.contains(&(channel.to_owned(), false)) {
            return false;
        }
        listening
            .iter()
            .filter(|(p, is_pattern)| *is_pattern && glob_matches(p, channel))
            .map(|(p, _)| p.as_str())
            .min()
            == Some(pattern)
    }

    // ---------------------------------------------------------------- health

    /// PINGs Redis once a heartbeat (at most a second apart) while it answers; after a
    /// failure, with a backoff from RETRY_MIN to RETRY_MAX, and sooner when a publish
    /// waits. The first PING that gets through ends the outage.
    async fn health(self: Arc<Self>) {
        let beat = self.config.heartbeat.min(Duration::from_secs(1));
        let mut backoff = RETRY_MIN;
        let mut stamped: Option<Instant> = None;
        let mut probed = tokio::time::Instant::now();
        loop {
            let wait = if self.is_up() { beat } else { backoff };
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = async {
                    self.probe_now.notified().await;
                    tokio::time::sleep_until(probed + RETRY_MIN).await;
                } => {}
            }
            probed = tokio::time::Instant::now();
            let was_up = self.is_up();
            let mut conn = self.conn();
            let ping = tokio::time::timeout(
                Duration::from_secs(1),
                redis::cmd("PING").query_async::<Value>(&mut conn),
            )
            .await;
            let failure = match ping {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("PING not answered within 1s".to_owned()),
            };
            if let Some(why) = failure {
                self.set_connected(false, &why);
                stamped = None;
                backoff = (backoff * 2).min(RETRY_MAX);
                self.outage.tick(
                    self.spooled.load(Ordering::Relaxed),
                    self.spooled_bytes.load(Ordering::Relaxed),
                );
                continue;
            }
            if !was_up {
                // A restarted Redis has no scripts: load them before the spool is written.
                let _ = tokio::time::timeout(ANSWER_TIMEOUT, self.load_scripts()).await;
            }
            self.set_connected(true, "");
            backoff = RETRY_MIN;
            // Channels whose SUBSCRIBE failed or waited during an outage.
            let missing: Vec<(String, bool)> = {
                let listening = self.listening.lock();
                self.channels
                    .lock()
                    .keys()
                    .filter(|c| !listening.contains(*c))
                    .cloned()
                    .collect()
            };
            for (ch, p) in missing {
                let _ = self.tx.send(Cmd::Subscribe(ch, p));
            }
            for (ch, p) in std::mem::take(&mut *self.unsubscribe_later.lock()) {
                let _ = self.tx.send(Cmd::Unsubscribe(ch, p));
            }
            // ACKs and hand-backs an outage kept back.
            for (stream, id) in std::mem::take(&mut *self.retry_acks.lock()) {
                let _ = self.tx.send(Cmd::Ack(stream, id));
            }
            for (stream, id, n) in std::mem::take(&mut *self.retry_hand_backs.lock()) {
                let _ = self.tx.send(Cmd::HandBack(stream, id, n));
            }
            // This node's presence, once a heartbeat: re-stamped (and re-written
            // after a Redis restart, or right after an outage).
            if stamped.is_none_or(|t| t.elapsed() >= self.config.heartbeat) {
                stamped = Some(Instant::now());
                for (scope, entries) in self.members.chunks(REFRESH_CHUNK) {
                    self.send_call(self.join_cmd(&scope, &entries));
                }
            }
            self.outage.tick(
                self.spooled.load(Ordering::Relaxed),
                self.spooled_bytes.load(Ordering::Relaxed),
            );
        }
    }

    // ---------------------------------------------------------------- queues

    async fn consume(self: Arc<Self>, mut conn: ConnectionManager) {
        let mut ready: HashSet<String> = HashSet::new();
        let mut last_claim = Instant::now();
        let claim_every = (self.config.claim_after / 3).max(Duration::from_millis(100));
        let block_ms = 500u64;
        // Streams that this node's wildcard queue subscriptions match, looked up
        // again every second.
        let mut matched: Vec<String> = Vec::new();
        let mut last_match: Option<Instant> = None;
        loop {
            if self.stop_reading.is_cancelled() {
                return;
            }
            let patterns: Vec<Pattern> = self
                .wild_queues
                .lock()
                .keys()
                .filter_map(|k| Pattern::subscription(k))
                .collect();
            if patterns.is_empty() {
                matched.clear();
            } else if last_match.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_match = Some(Instant::now());
                let keys: redis::RedisResult<Vec<String>> = redis::cmd("SMEMBERS")
                    .arg(self.queue_registry())
                    .query_async(&mut conn)
                    .await;
                if let Ok(keys) = keys {
                    matched = keys
                        .iter()
                        .filter(|k| patterns.iter().any(|p| p.matches(k)))
                        .map(|k| self.queue_stream(k))
                        .collect();
                }
            }
            let mut streams: Vec<String> = self.queues.lock().keys().cloned().collect();
            for m in &matched {
                if !streams.contains(m) {
                    streams.push(m.clone());
                }
            }
            if streams.is_empty() {
                tokio::select! {
                    _ = self.stop_reading.cancelled() => return,
                    _ = self.queues_changed.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let fresh: Vec<String> = streams
                .iter()
                .filter(|s| !ready.contains(*s))
                .cloned()
                .collect();
            for s in &fresh {
                let r: redis::RedisResult<Value> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(s)
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut conn)
                    .await;
                match r {
                    Ok(_) => {}
                    Err(e) if e.to_string().contains("BUSYGROUP") => {}
                    Err(_) => continue,
                }
                ready.insert(s.clone());
            }
            if last_claim.elapsed() >= claim_every {
                last_claim = Instant::now();
                self.claim(&mut conn, &streams).await;
            }
            // No more than the local prefetch windows take: an entry no consumer has
            // room for would wait `claim_after` to be claimed again.
            let mut most = 0;
            let streams: Vec<&String> = streams
                .iter()
                .filter(|s| {
                    let key = s.strip_prefix(&self.queue_stream("")).unwrap_or(s);
                    let room = self.sink().map_or(0, |s| s.queue_room(key));
                    most = most.max(room);
                    room > 0
                })
                .collect();
            if streams.is_empty() {
                tokio::select! {
                    _ = self.stop_reading.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(GROUP)
                .arg(&self.node_id)
                .arg("COUNT")
                .arg(most.min(256))
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&streams);
            for _ in &streams {
                cmd.arg(">");
            }
            let read = tokio::select! {
                _ = self.stop_reading.cancelled() => return,
                r = cmd.query_async::<Value>(&mut conn) => r,
            };
            match read {
                Ok(v) => {
                    for (stream, entries) in stream_entries(v) {
                        self.take_entries(&stream, entries);
                    }
                }
                Err(e) => {
                    if e.to_string().contains("NOGROUP") {
                        ready.clear(); // Redis lost the groups (restarted)
                    } else {
                        tracing::debug!(error = %e, "XREADGROUP failed");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        }
    }

    /// Keeps entries held by live sessions from being claimed, and claims those
    /// other nodes (or this one, with no consumer left then) took and never acked.
    async fn claim(&self, conn: &mut ConnectionManager, streams: &[String]) {
        let held: Vec<(Arc<str>, Vec<String>)> = self
            .inflight
            .lock()
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(s, ids)| (s.clone(), ids.iter().cloned().collect()))
            .collect();
        for (stream, ids) in held {
            let _: redis::RedisResult<Value> = redis::cmd("XCLAIM")
                .arg(&*stream)
                .arg(GROUP)
                .arg(&self.node_id)
                .arg(0)
                .arg(&ids)
                .arg("JUSTID")
                .query_async(conn)
                .await;
        }
        let min_idle = self.config.claim_after.as_millis() as u64;
        for s in streams {
            let r: redis::RedisResult<Value> = redis::cmd("XAUTOCLAIM")
                .arg(s)
                .arg(GROUP)
                .arg(&self.node_id)
                .arg(min_idle)
                .arg("0-0")
                .arg("COUNT")
                .arg(256)
                .query_async(conn)
                .await;
            if let Ok(Value::Array(v)) = r
                && let Some(entries) = v.into_iter().nth(1)
            {
                let mut entries = entry_list(entries);
                if !entries.is_empty() {
                    tracing::info!(queue = %s, count = entries.len(), "claimed queue messages a node never acked");
                    count_claims(conn, s, &mut entries).await;
                }
                self.take_entries(s, entries);
            }
            self.prune_consumers(conn, s).await;
        }
    }

    /// Removes from `stream`'s group the consumers of other nodes that hold nothing
    /// and did not read for `claim_after`: node ids are new at every start, so the
    /// group would otherwise keep one consumer per node that ever ran. (A live node
    /// that was pruned is simply added again by its next read.)
    async fn prune_consumers(&self, conn: &mut ConnectionManager, stream: &str) {
        let Ok(v) = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream)
            .arg(GROUP)
            .query_async::<Value>(conn)
            .await
        else {
            return;
        };
        let idle_limit = self.config.claim_after.as_millis() as u64;
        for (name, pending, idle) in consumer_list(v) {
            if name != self.node_id && pending == 0 && idle >= idle_limit {
                let r: redis::RedisResult<Value> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(stream)
                    .arg(GROUP)
                    .arg(&name)
                    .query_async(conn)
                    .await;
                if r.is_ok() {
                    tracing::debug!(queue = %stream, consumer = %name, "removed a gone node's consumer");
                }
            }
        }
    }

    fn take_entries(&self, stream: &str, entries: Vec<StreamEntry>) {
        let Some(sink) = self.sink() else { return };
        let stream: Arc<str> = stream.into();
        for StreamEntry {
            id,
            payload,
            given_back,
        } in entries
        {
            let Some((_, mut m)) = decode(&payload) else {
                // Not ours to read: ack it away so it does not come back.
                let _ = self.tx.send(Cmd::Ack(stream.clone(), id));
                continue;
            };
            {
                let mut inflight = self.inflight.lock();
                let held = inflight.entry(stream.clone()).or_default();
                if !held.insert(id.clone()) {
                    continue; // already held here (our own keep-alive claim)
                }
            }
            m.entry = Some(Entry {
                stream: stream.clone(),
                id,
            });
            m.set_given_back(given_back);
            sink.deliver(Arc::new(m));
        }
    }

    /// Whether this node still reads the queue `key` (a local consumer of it, or of
    /// a pattern matching it).
    fn consumes(&self, key: &str) -> bool {
        self.queues.lock().contains_key(&self.queue_stream(key))
            || self
                .wild_queues
                .lock()
                .keys()
                .any(|p| Pattern::subscription(p).is_some_and(|p| p.matches(key)))
    }

    fn forget(&self, message: &Message) -> Option<Entry> {
        let e = message.entry.as_ref()?;
        if let Some(ids) = self.inflight.lock().get_mut(&e.stream) {
            ids.remove(&e.id);
        }
        Some(e.clone())
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

impl PubSub for RedisBus {
    fn publish(&self, message: Message, confirm: Option<Confirm>) -> Option<Arc<Message>> {
        // The writer decides: Redis now, or the outage spool.
        let waiter = confirm.map(|c| (c, tokio::time::Instant::now()));
        if let Err(mpsc::error::SendError(Cmd::Publish(_, Some((c, _))))) =
            self.inner.tx.send(Cmd::Publish(message, waiter))
        {
            crate::ops::metrics::bus_refused("shutdown", 1);
            let _ = c.send(Outcome::refused("the server is shutting down"));
        }
        None
    }

    fn confirms_later(&self) -> bool {
        true
    }

    fn flushed(&self) -> Option<BoxFuture<()>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inner.tx.send(Cmd::Barrier(tx));
        Some(Box::pin(async move {
            let _ = rx.await;
        }))
    }

    fn subscribed(&self, key: &str) {
        let inner = &self.inner;
        let Some(ch) = inner.channel_for(Kind::Topic, key) else {
            return;
        };
        if !crate::destination::is_wildcard(key) {
            inner
                .heard
                .lock()
                .entry(key.to_owned())
                .or_default()
                .subscriptions += 1;
        }
        let mut channels = inner.channels.lock();
        let n = channels.entry(ch.clone()).or_default();
        *n += 1;
        if *n == 1 {
            let _ = inner.tx.send(Cmd::Subscribe(ch.0, ch.1));
        }
    }

    fn unsubscribed(&self, key: &str) {
        let inner = &self.inner;
        let Some(ch) = inner.channel_for(Kind::Topic, key) else {
            return;
        };
        {
            let mut heard = inner.heard.lock();
            if let Some(h) = heard.get_mut(key) {
                h.subscriptions -= 1;
                if h.subscriptions == 0 {
                    heard.remove(key);
                }
            }
        }
        let mut channels = inner.channels.lock();
        if let Some(n) = channels.get_mut(&ch) {
            *n -= 1;
            if *n == 0 {
                channels.remove(&ch);
                let _ = inner.tx.send(Cmd::Unsubscribe(ch.0, ch.1));
            }
        }
    }

    fn recover(&self, key: &str, since: Since) -> Recovery {
        let inner = self.inner.clone();
        let (hist, meta) = inner.history_keys(key);
        Recovery::Later(Box::pin(async move {
            let mut conn = inner.conn();
            let start = format!("{}-0", since.offset.saturating_add(1));
            let r: redis::RedisResult<(Vec<Option<String>>, Value)> = redis::pipe()
                .cmd("HMGET")
                .arg(&meta)
                .arg("o")
                .arg("e")
                .cmd("XRANGE")
                .arg(&hist)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(inner.history_size.max(1))
                .query_async(&mut conn)
                .await;
            let Ok((top, entries)) = r else {
                return Replay::default();
            };
            let last: u64 = top
                .first()
                .cloned()
                .flatten()
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            let epoch = top.get(1).cloned().flatten();
            let same_epoch = match (&since.epoch, &epoch) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => since.offset == 0,
                (None, _) => true,
            };
            let epoch: Arc<str> = epoch.unwrap_or_default().into();
            let missed: Vec<Arc<Message>> = history(entries, &epoch)
                .into_iter()
                .map(|(_, m)| Arc::new(m))
                .collect();
            let first = missed
                .first()
                .and_then(|m| m.position.as_ref().map(|p| p.offset));
            let complete = since.offset == last || first == Some(since.offset + 1);
            let recovered = same_epoch && since.offset <= last && complete;
            Replay {
                missed: if recovered { missed } else { Vec::new() },
                recovered,
            }
        }))
    }
}

impl ClusterQueues for RedisBus {
    fn consumer_added(&self, key: &str) {
        let inner = &self.inner;
        if is_wildcard(key) {
            *inner.wild_queues.lock().entry(key.to_owned()).or_default() += 1;
            inner.queues_changed.notify_one();
            return;
        }
        let mut q = inner.queues.lock();
        *q.entry(inner.queue_stream(key)).or_default() += 1;
        inner.queues_changed.notify_one();
    }

    fn consumer_removed(&self, key: &str) {
        let inner = &self.inner;
        if is_wildcard(key) {
            let mut w = inner.wild_queues.lock();
            if let Some(n) = w.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    w.remove(key);
                }
            }
            return;
        }
        let stream = inner.queue_stream(key);
        let mut q = inner.queues.lock();
        if let Some(n) = q.get_mut(&stream) {
            *n -= 1;
            if *n == 0 {
                q.remove(&stream);
            }
        }
    }

    fn consumed(&self, message: &Message) {
        // The entry stays held (kept from other nodes' claims) until Redis has the
        // XACK; while Redis is away the ACK waits for it.
        let Some(e) = message.entry.clone() else {
            return;
        };
        let inner = &self.inner;
        if !inner.connected.load(Ordering::Relaxed) {
            inner.retry_acks.lock().push((e.stream, e.id));
        } else if let Err(mpsc::error::SendError(Cmd::Ack(stream, id))) =
            inner.tx.send(Cmd::Ack(e.stream, e.id))
        {
            inner.retry_acks.lock().push((stream, id));
        }
    }

    fn released(&self, message: &Message) {
        let inner = &self.inner;
        if let Some(e) = inner.forget(message)
            && !inner.consumes(&message.key)
        {
            // Read just as its last local consumer left: another node's takes it now.
            let _ = inner
                .tx
                .send(Cmd::HandBack(e.stream, e.id, message.given_back()));
        }
    }

    fn handed_back(&self, message: &Message) {
        if let Some(e) = self.inner.forget(message) {
            let _ = self
                .inner
                .tx
                .send(Cmd::HandBack(e.stream, e.id, message.given_back()));
        }
    }

    fn stop_consuming(&self) {
        self.inner.stop_reading.cancel();
    }
}

impl Presence for RedisBus {
    fn presence_join(&self, scope: &str, member: &str, info: &str) {
        let inner = &self.inner;
        inner.members.join(scope, member, info);
        inner.send_call(inner.join_cmd(scope, &[(member.to_owned(), info.to_owned())]));
    }

    fn presence_leave(&self, scope: &str, member: &str) {
        let inner = &self.inner;
        if inner.members.leave(scope, member) {
            let (hash, zset) = inner.presence_keys(scope);
            let mut del = redis::cmd("HDEL");
            del.arg(hash).arg(member);
            inner.send_call(del);
            let mut rem = redis::cmd("ZREM");
            rem.arg(zset).arg(member);
            inner.send_call(rem);
        }
    }

    /// While Redis is unreachable, this node's own members (degraded, but a room
    /// still shows who is here).
    fn presence(&self, scope: &str) -> BoxFuture<Result<Vec<(String, String)>, String>> {
        let inner = self.inner.clone();
        let (hash, zset) = inner.presence_keys(scope);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&inner.list_sha).arg(2).arg(hash).arg(zset);
        let answer = inner.call(cmd);
        let scope = scope.to_owned();
        Box::pin(async move {
            match answer.await {
                Ok(v) => Ok(pairs(v)),
                Err(e) => {
                    tracing::debug!(scope = %scope, error = %e, "presence from this node only");
                    Ok(inner.members.list(&scope))
                }
            }
        })
    }
}

impl SharedMaps for RedisBus {
    fn map_put(
        &self,
        map: &str,
        key: &str,
        value: &str,
        only_new: bool,
    ) -> BoxFuture<Result<bool, String>> {
        let mut cmd = redis::cmd(if only_new { "HSETNX" } else { "HSET" });
        cmd.arg(self.inner.map_key(map)).arg(key).arg(value);
        let answer = self.inner.call(cmd);
        Box::pin(async move {
            let v = answer.await?;
            Ok(!only_new || as_u64(&v) == Some(1))
        })
    }

    fn map_get(&self, map: &str, key: &str) -> BoxFuture<Result<Option<String>, String>> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.inner.map_key(map)).arg(key);
        let answer = self.inner.call(cmd);
        Box::pin(async move { Ok(as_string(&answer.await?)) })
    }

    fn map_all(&self, map: &str) -> BoxFuture<Result<Vec<(String, String)>, String>> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.inner.map_key(map));
        let answer = self.inner.call(cmd);
        Box::pin(async move { Ok(pairs(answer.await?)) })
    }

    fn map_len(&self, map: &str) -> BoxFuture<Result<usize, String>> {
        let mut cmd = redis::cmd("HLEN");
        cmd.arg(self.inner.map_key(map));
        let answer = self.inner.call(cmd);
        Box::pin(async move {
            let v = answer.await?;
            as_u64(&v)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .ok_or_else(|| format!("HLEN answered {v:?}"))
        })
    }

    fn map_remove(&self, map: &str, key: &str) -> BoxFuture<Result<bool, String>> {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.inner.map_key(map)).arg(key);
        let answer = self.inner.call(cmd);
        Box::pin(async move { Ok(as_u64(&answer.await?) == Some(1)) })
    }
}

impl Health for RedisBus {
    fn status(&self) -> BusStatus {
        BusStatus {
            kind: "redis",
            connected: self.inner.connected.load(Ordering::Relaxed),
            failed_publishes: self.inner.failed.load(Ordering::Relaxed),
            spooled: self.inner.spooled.load(Ordering::Relaxed),
            channels: self.inner.listening.lock().len(),
        }
    }

    fn is_listening(&self, kind: Kind, key: &str) -> bool {
        if kind == Kind::Queue {
            return self
                .inner
                .queues
                .lock()
                .contains_key(&self.inner.queue_stream(key));
        }
        self.is_listening(key)
    }
}

/// The `PSUBSCRIBE` glob for a wildcard subscription: `channel` and the pattern's
/// literal prefix, glob characters escaped, each separator either separator (the
/// grammar reads `/` and `.` alike), then anything. It matches every channel the
/// pattern's destinations publish on, and more; the broker matches exactly.
fn topic_glob(channel: &str, literal: &str) -> String {
    let mut glob = String::with_capacity(channel.len() + literal.len() * 2 + 1);
    let chars = channel.chars().map(|c| (c, false));
    for (c, in_literal) in chars.chain(literal.chars().map(|c| (c, true))) {
        match c {
            '/' | '.' if in_literal => glob.push_str("[./]"),
            '*' | '?' | '[' | ']' | '\\' => {
                glob.push('\\');
                glob.push(c);
            }
            c => glob.push(c),
        }
    }
    glob.push('*');
    glob
}

/// Whether `channel` matches a glob [`topic_glob`] made.
fn glob_matches(glob: &str, channel: &str) -> bool {
    let (mut g, mut c) = (glob.as_bytes(), channel.as_bytes());
    loop {
        (g, c) = match (g, c) {
            ([b'*'], _) => return true,
            ([], rest) => return rest.is_empty(),
            ([b'[', b'.', b'/', b']', g @ ..], [b'.' | b'/', c @ ..]) => (g, c),
            ([b'\\', x, g @ ..], [y, c @ ..]) if x == y => (g, c),
            ([b'\\', ..], _) => return false,
            ([x, g @ ..], [y, c @ ..]) if x == y => (g, c),
            _ => return false,
        }
    }
}

/// Entries claimed from a node that died holding them were delivered and never
/// acked: each claim counts as a give-back. Redis counts the deliveries of an entry
/// (`XREADGROUP`, then one more per claim; this node's keep-alive `XCLAIM … JUSTID`
/// does not count), so a chain of dead holders is counted whole. When Redis cannot
/// say, one claim is assumed.
async fn count_claims(conn: &mut ConnectionManager, stream: &str, entries: &mut [StreamEntry]) {
    let mut pipe = redis::pipe();
    for e in entries.iter() {
        pipe.cmd("XPENDING")
            .arg(stream)
            .arg(GROUP)
            .arg(&e.id)
            .arg(&e.id)
            .arg(1);
    }
    let answers: Vec<Value> = pipe.query_async(conn).await.unwrap_or_default();
    for (i, e) in entries.iter_mut().enumerate() {
        // [[id, consumer, idle ms, deliveries]]
        let deliveries = match answers.get(i) {
            Some(Value::Array(rows)) => match rows.first() {
                Some(Value::Array(row)) => row.get(3).and_then(as_u64),
                _ => None,
            },
            _ => None,
        };
        let claims = deliveries.map_or(1, |d| d.saturating_sub(1)).max(1);
        e.given_back = e.given_back.saturating_add(saturate_u32(claims));
    }
}

/// History stream entries (`XRANGE`'s answer) as messages of `epoch`, stamped with
/// their offsets (the entry ids), with the node each came from.
fn history(entries: Value, epoch: &Arc<str>) -> Vec<(String, Message)> {
    entry_list(entries)
        .into_iter()
        .filter_map(|StreamEntry { id, payload, .. }| {
            let offset = id
                .split('-')
                .next()
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            let (origin, mut m) = decode(&payload)?;
            m.position = Some(Position {
                offset,
                epoch: epoch.clone(),
            });
            Some((origin, m))
        })
        .collect()
}

/// The topic script's answer `{offset, epoch}` as a position.
fn stamped(reply: Value) -> Option<Position> {
    if let Value::Array(v) = reply
        && let [o, e] = &v[..]
        && let (Some(o), Some(e)) = (as_u64(o), as_string(e))
    {
        return Some(Position {
            offset: o,
            epoch: e.into(),
        });
    }
    None
}

/// Sleeps until `at`; never wakes without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn saturate_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// HGETALL's answer (a flat RESP2 array or a RESP3 map) as pairs.
fn pairs(v: Value) -> Vec<(String, String)> {
    let flat: Vec<Value> = match v {
        Value::Array(a) => a,
        Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return Vec::new(),
    };
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Some(k), Some(v)) = (as_string(&k), as_string(&v)) {
            out.push((k, v));
        }
    }
    out
}

/// XINFO CONSUMERS' answer: (name, pending, idle ms) per consumer.
fn consumer_list(v: Value) -> Vec<(String, u64, u64)> {
    let Value::Array(consumers) = v else {
        return Vec::new();
    };
    consumers
        .into_iter()
        .filter_map(|c| {
            let fields = match c {
                Value::Array(f) => f,
                Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => return None,
            };
            let (mut name, mut pending, mut idle) = (None, None, None);
            let mut it = fields.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                match as_string(&k).as_deref() {
                    Some("name") => name = as_string(&v),
                    Some("pending") => pending = as_u64(&v),
                    Some("idle") => idle = as_u64(&v),
                    _ => {}
                }
            }
            Some((name?, pending?, idle?))
        })
        .collect()
}

/// Per stream, its entries.
type StreamEntries = Vec<(String, Vec<StreamEntry>)>;

/// XREADGROUP's answer: per stream, its entries (RESP2 arrays or a RESP3 map).
fn stream_entries(v: Value) -> StreamEntries {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop()?;
                    Some((kv.pop()?, entries))
                }
                _ => None,
            })
            .collect(),
        Value::Map(m) => m,
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(name, entries)| Some((as_string(&name)?, entry_list(entries))))
        .collect()
}

/// A stream entry as read: its id, payload (field `p`) and, for queue entries, the
/// times consumers gave it back (field `r`, 0 when absent).
struct StreamEntry {
    id: String,
    payload: Vec<u8>,
    given_back: u32,
}

/// `[[id, [field, value, ...]], ...]` → entries with a payload; deleted entries
/// (nil) are skipped.
fn entry_list(v: Value) -> Vec<StreamEntry> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|e| {
            let Value::Array(mut e) = e else { return None };
            if e.len() != 2 {
                return None;
            }
            let fields = e.pop()?;
            let id = as_string(&e.pop()?)?;
            let fields = match fields {
                Value::Array(f) => f,
                Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => return None,
            };
            let (mut payload, mut given_back) = (None, 0);
            let mut it = fields.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                match (as_string(&k).as_deref(), v) {
                    (Some("p"), Value::BulkString(p)) => payload = Some(p),
                    (Some("r"), v) => given_back = as_u64(&v).map_or(0, saturate_u32),
                    _ => {}
                }
            }
            Some(StreamEntry {
                id,
                payload: payload?,
                given_back,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_entries_carry_their_give_back_count() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry =
            |id: &str, fields: Vec<Value>| Value::Array(vec![bulk(id), Value::Array(fields)]);
        let read = entry_list(Value::Array(vec![
            entry("1-0", vec![bulk("p"), bulk("first")]),
            entry("2-0", vec![bulk("p"), bulk("again"), bulk("r"), bulk("3")]),
            entry("3-0", vec![bulk("r"), bulk("1")]),
            Value::Nil,
        ]));
        let got: Vec<(&str, &[u8], u32)> = read
            .iter()
            .map(|e| (e.id.as_str(), &e.payload[..], e.given_back))
            .collect();
        assert_eq!(
            got,
            [("1-0", &b"first"[..], 0), ("2-0", &b"again"[..], 3)],
            "an entry without a payload is skipped"
        );
    }

    #[test]
    fn wildcards_become_prefix_globs() {
        let bus = RedisBus::new(
            &ClusterConfig {
                redis_url: "redis://127.0.0.1:1".into(),
                ..Default::default()
            },
            "n",
            "/user/",
            10,
        )
        .unwrap();
        let i = &bus.inner;
        assert_eq!(
            i.channel_for(Kind::Topic, "/topic/a"),
            Some(("herald:t:/topic/a".into(), false))
        );
        let glob = "herald:t:[./]topic[./]x\\?*";
        assert_eq!(
            i.channel_for(Kind::Topic, "/topic/x?.*"),
            Some((glob.into(), true))
        );
        assert!(glob_matches(glob, "herald:t:/topic/x?.a"));
        assert!(glob_matches(glob, "herald:t:/topic/x?"));
        assert!(!glob_matches(glob, "herald:t:/topic/xy"));
        assert_eq!(
            i.channel_for(Kind::Topic, "/topic/a*b/**"),
            Some(("herald:t:[./]topic[./]a\\*b*".into(), true))
        );
        assert!(glob_matches(
            "herald:t:[./]topic[./]a\\*b*",
            "herald:t:/topic/a*b"
        ));
        assert_eq!(
            i.channel_for(Kind::Topic, "/user/bob/queue/*"),
            Some(("herald:u:bob".into(), false))
        );
        assert_eq!(i.publish_channel("/user/bob/queue/x"), "herald:u:bob");
    }
}

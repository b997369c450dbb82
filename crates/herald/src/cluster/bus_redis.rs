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
//! - **Confirmation.** A publish whose caller waits (the REST API) is answered after
//!   its batch was flushed; [`Bus::flushed`] waits for everything sent before it (a
//!   SEND's RECEIPT), so a receipt means the message is in the cluster's history.
//! - **Outage.** While Redis is unreachable, publishes are delivered locally only,
//!   counted and logged; the connection manager reconnects and resubscribes by
//!   itself (RESP3 push + automatic resubscription); `/health` shows degraded. ACKs
//!   that could not reach Redis are kept (their entries stay held by this node) and
//!   sent again once it is back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use herald_stomp::Headers;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::presence::{JOIN_SCRIPT, LIST_SCRIPT, Members, REFRESH_CHUNK};
use super::{Bus, BusStatus, Confirm, Outcome, Since};
use crate::broker::destination::Pattern;
use crate::broker::message::{Entry, Position};
use crate::broker::{Broker, Kind, Message, Subscription};
use crate::config::ClusterConfig;
use crate::handler::BoxFuture;

const GROUP: &str = "herald";
/// Publishes and acks sent to Redis in one pipeline at most.
const BATCH: usize = 512;

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

/// What a caller of [`Inner::call`] gets back.
type Reply = oneshot::Sender<Result<Value, String>>;

// Publish is the common command and the large one; boxing it would cost an allocation
// per publish.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    Publish(Message, Option<Confirm>),
    Ack(Arc<str>, String),
    /// A command run in order with the publishes; its answer goes to the reply.
    Call(redis::Cmd, Option<Reply>),
    /// Answered once everything sent before it was flushed.
    Barrier(oneshot::Sender<()>),
    Subscribe(String, bool),
    Unsubscribe(String, bool),
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
    broker: OnceLock<Weak<Broker>>,
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
    /// This node's presence entries, re-stamped every health tick.
    members: Members,
    connected: AtomicBool,
    failed: AtomicU64,
    topic_sha: String,
    queue_sha: String,
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
                broker: OnceLock::new(),
                tx,
                rx: Mutex::new(Some(rx)),
                channels: Mutex::default(),
                listening: Mutex::default(),
                queues: Mutex::default(),
                wild_queues: Mutex::default(),
                queues_changed: Notify::new(),
                inflight: Mutex::default(),
                retry_acks: Mutex::default(),
                members: Members::default(),
                connected: AtomicBool::new(true),
                failed: AtomicU64::new(0),
                topic_sha: redis::Script::new(TOPIC_SCRIPT).get_hash().to_owned(),
                queue_sha: redis::Script::new(QUEUE_SCRIPT).get_hash().to_owned(),
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
    fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get().and_then(Weak::upgrade)
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
        match first_wildcard(key) {
            None => Some((format!("{}:t:{key}", self.prefix), false)),
            Some(at) => {
                let mut glob = format!("{}:t:", self.prefix);
                for c in key[..at].chars() {
                    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                        glob.push('\\');
                    }
                    glob.push(c);
                }
                glob.push('*');
                Some((glob, true))
            }
        }
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

    fn set_connected(&self, up: bool) {
        let was = self.connected.swap(up, Ordering::Relaxed);
        if !was && up {
            crate::ops::metrics::redis_reconnected();
        }
        if was && !up {
            tracing::warn!(node = %self.node_id, "Redis unreachable: delivering locally only until it is back");
        } else if !was && up {
            tracing::info!(node = %self.node_id, failed_publishes = self.failed.load(Ordering::Relaxed), "Redis reachable again");
        }
    }

    fn count_failed(&self, n: usize, why: &str) {
        let total = self.failed.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        crate::ops::metrics::bus_errors(n);
        tracing::warn!(node = %self.node_id, failed = n, total, reason = why, "publishes did not reach Redis (delivered on this node only)");
    }

    // ---------------------------------------------------------------- writer

    async fn writer(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut carry: Option<Cmd> = None;
        loop {
            let cmd = match carry.take() {
                Some(c) => c,
                None => tokio::select! {
                    _ = self.stop.cancelled() => return,
                    c = rx.recv() => match c { Some(c) => c, None => return },
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
                    self.flush(batch).await;
                }
            }
        }
    }

    async fn subscribe(&self, ch: String, pattern: bool) {
        // Still wanted? (a quick subscribe/unsubscribe pair needs no round trip)
        if !self.channels.lock().contains_key(&(ch.clone(), pattern)) {
            return;
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
                tracing::warn!(channel = %ch, error = %e, "Redis SUBSCRIBE failed; will retry");
                self.set_connected(false);
            }
        }
    }

    async fn unsubscribe(&self, ch: String, pattern: bool) {
        if self.channels.lock().contains_key(&(ch.clone(), pattern)) {
            return;
        }
        self.listening.lock().remove(&(ch.clone(), pattern));
        let mut conn = self.conn();
        let _ = if pattern {
            conn.punsubscribe(&ch).await
        } else {
            conn.unsubscribe(&ch).await
        };
    }

    fn pipeline(&self, batch: &[Cmd]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for c in batch {
            match c {
                Cmd::Publish(m, _) if m.kind == Kind::Topic => {
                    let (hist, meta) = self.history_keys(&m.key);
                    pipe.cmd("EVALSHA")
                        .arg(&self.topic_sha)
                        .arg(2)
                        .arg(hist)
                        .arg(meta)
                        .arg(self.publish_channel(&m.key))
                        .arg(encode(m, &self.node_id))
                        .arg(self.history_size)
                        .arg(super::new_epoch())
                        .arg(self.config.history_ttl.as_secs());
                }
                Cmd::Publish(m, _) => {
                    pipe.cmd("EVALSHA")
                        .arg(&self.queue_sha)
                        .arg(2)
                        .arg(self.queue_stream(&m.key))
                        .arg(self.queue_registry())
                        .arg(encode(m, &self.node_id))
                        .arg(self.queue_capacity)
                        .arg(&m.key);
                }
                Cmd::Ack(stream, id) => {
                    pipe.cmd("XACK").arg(&**stream).arg(GROUP).arg(id).ignore();
                    pipe.cmd("XDEL").arg(&**stream).arg(id).ignore();
                }
                Cmd::Call(cmd, _) => {
                    pipe.add_command(cmd.clone());
                }
                Cmd::Barrier(_) | Cmd::Subscribe(..) | Cmd::Unsubscribe(..) => {}
            }
        }
        pipe
    }

    async fn flush(&self, batch: Vec<Cmd>) {
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
        let mut result = self.run(&batch).await;
        if matches!(&result, Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
            || e.to_string().contains("NOSCRIPT") || e.to_string().contains("no script"))
        {
            let mut conn = self.conn();
            let mut load = redis::pipe();
            for script in [TOPIC_SCRIPT, QUEUE_SCRIPT, JOIN_SCRIPT, LIST_SCRIPT] {
                load.cmd("SCRIPT").arg("LOAD").arg(script).ignore();
            }
            let loaded: redis::RedisResult<()> = load.query_async(&mut conn).await;
            if loaded.is_ok() {
                result = self.run(&batch).await;
            }
        }
        crate::ops::metrics::bus_publish_time(started.elapsed());
        let mut barriers = Vec::new();
        match result {
            Ok(replies) => {
                self.set_connected(true);
                let broker = self.broker();
                let mut replies = replies.into_iter();
                for cmd in batch {
                    match cmd {
                        Cmd::Publish(mut m, confirm) => {
                            let reply = replies.next();
                            let mut outcome = Outcome::default();
                            if m.kind == Kind::Topic {
                                // {offset, epoch}: this node's sessions get it now, stamped.
                                if let Some(Value::Array(v)) = reply
                                    && let [o, e] = &v[..]
                                    && let (Some(o), Some(e)) = (as_u64(o), as_string(e))
                                {
                                    m.position = Some(Position {
                                        offset: o,
                                        epoch: e.into(),
                                    });
                                }
                                outcome.position = m.position.clone();
                                if let Some(b) = &broker {
                                    outcome.delivered = b.deliver(Arc::new(m), None);
                                }
                            }
                            // Queue messages come back through XREADGROUP, to one consumer.
                            if let Some(c) = confirm {
                                let _ = c.send(outcome);
                            }
                        }
                        Cmd::Ack(stream, id) => {
                            if let Some(ids) = self.inflight.lock().get_mut(&stream) {
                                ids.remove(&id);
                            }
                        }
                        Cmd::Call(_, reply) => {
                            let v = replies
                                .next()
                                .ok_or_else(|| "no answer from Redis".to_owned());
                            if let Some(r) = reply {
                                let _ = r.send(v);
                            }
                        }
                        Cmd::Barrier(b) => barriers.push(b),
                        Cmd::Subscribe(..) | Cmd::Unsubscribe(..) => {}
                    }
                }
            }
            Err(e) => {
                self.set_connected(false);
                let why = e.to_string();
                let mut failed = 0;
                for cmd in batch {
                    match cmd {
                        Cmd::Publish(m, confirm) => {
                            failed += 1;
                            // Delivered on this node alone (a queue message waits
                            // with this node's broker).
                            let delivered =
                                self.broker().map_or(0, |b| b.deliver(Arc::new(m), None));
                            if let Some(c) = confirm {
                                let _ = c.send(Outcome {
                                    delivered,
                                    position: None,
                                    error: Some(format!("not in the cluster: {why}")),
                                });
                            }
                        }
                        Cmd::Ack(stream, id) => self.retry_acks.lock().push((stream, id)),
                        Cmd::Call(_, Some(r)) => {
                            let _ = r.send(Err(why.clone()));
                        }
                        Cmd::Call(_, None) => {}
                        Cmd::Barrier(b) => barriers.push(b),
                        Cmd::Subscribe(..) | Cmd::Unsubscribe(..) => {}
                    }
                }
                if failed > 0 {
                    self.count_failed(failed, &why);
                }
            }
        }
        for b in barriers {
            let _ = b.send(());
        }
    }

    async fn run(&self, batch: &[Cmd]) -> redis::RedisResult<Vec<Value>> {
        let pipe = self.pipeline(batch);
        let mut conn = self.conn();
        match tokio::time::timeout(Duration::from_secs(2), pipe.query_async(&mut conn)).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Redis did not answer within 2s",
            ))),
        }
    }

    // ---------------------------------------------------------------- pub/sub in

    async fn receive(self: Arc<Self>, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
        loop {
            let push = tokio::select! {
                _ = self.stop.cancelled() => return,
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
                    self.set_connected(false);
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
            if origin == self.node_id {
                continue; // our own echo: delivered when the script answered
            }
            m.position = Some(Position {
                offset,
                epoch: epoch.into(),
            });
            if let Some(b) = self.broker() {
                b.deliver(Arc::new(m), None);
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
            .filter(|(p, is_pattern)| *is_pattern && channel.starts_with(&glob_prefix(p)))
            .map(|(p, _)| p.as_str())
            .min()
            == Some(pattern)
    }

    // ---------------------------------------------------------------- health

    async fn health(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.config.heartbeat.min(Duration::from_secs(1)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stamped: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let mut conn = self.conn();
            let ping = tokio::time::timeout(
                Duration::from_secs(1),
                redis::cmd("PING").query_async::<Value>(&mut conn),
            )
            .await;
            let up = matches!(ping, Ok(Ok(_)));
            self.set_connected(up);
            if !up {
                stamped = None;
            }
            if up {
                // Channels whose SUBSCRIBE failed during an outage.
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
                // ACKs an outage kept back.
                for (stream, id) in std::mem::take(&mut *self.retry_acks.lock()) {
                    let _ = self.tx.send(Cmd::Ack(stream, id));
                }
                // This node's presence, once a heartbeat: re-stamped (and re-written
                // after a Redis restart, or right after an outage).
                if stamped.is_none_or(|t| t.elapsed() >= self.config.heartbeat) {
                    stamped = Some(Instant::now());
                    for (scope, entries) in self.members.chunks(REFRESH_CHUNK) {
                        self.send_call(self.join_cmd(&scope, &entries));
                    }
                }
            }
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
                .filter_map(|k| Pattern::parse(k))
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
                    let room = self.broker().map_or(0, |b| b.queue_room(key));
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
                let entries = entry_list(entries);
                if !entries.is_empty() {
                    tracing::info!(queue = %s, count = entries.len(), "claimed queue messages a node never acked");
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

    fn take_entries(&self, stream: &str, entries: Vec<(String, Vec<u8>)>) {
        let Some(broker) = self.broker() else { return };
        let stream: Arc<str> = stream.into();
        for (id, payload) in entries {
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
            broker.deliver(Arc::new(m), None);
        }
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
    fn attach(&self, broker: Weak<Broker>) {
        let inner = &self.inner;
        let _ = inner.broker.set(broker);
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

    fn publish(&self, message: Message, confirm: Option<Confirm>) -> Option<Arc<Message>> {
        let inner = &self.inner;
        if !inner.connected.load(Ordering::Relaxed) {
            inner.count_failed(1, "Redis unreachable");
            return Some(Arc::new(message));
        }
        match inner.tx.send(Cmd::Publish(message, confirm)) {
            Ok(()) => None,
            Err(mpsc::error::SendError(Cmd::Publish(m, _))) => Some(Arc::new(m)),
            Err(_) => None,
        }
    }

    fn flushed(&self) -> Option<BoxFuture<()>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inner.tx.send(Cmd::Barrier(tx));
        Some(Box::pin(async move {
            let _ = rx.await;
        }))
    }

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

    fn subscribed(&self, kind: Kind, key: &str) {
        let inner = &self.inner;
        if kind == Kind::Queue {
            if crate::broker::destination::is_wildcard(key) {
                *inner.wild_queues.lock().entry(key.to_owned()).or_default() += 1;
                inner.queues_changed.notify_one();
                return;
            }
            let mut q = inner.queues.lock();
            *q.entry(inner.queue_stream(key)).or_default() += 1;
            inner.queues_changed.notify_one();
            return;
        }
        let Some(ch) = inner.channel_for(kind, key) else {
            return;
        };
        let mut channels = inner.channels.lock();
        let n = channels.entry(ch.clone()).or_default();
        *n += 1;
        if *n == 1 {
            let _ = inner.tx.send(Cmd::Subscribe(ch.0, ch.1));
        }
    }

    fn unsubscribed(&self, kind: Kind, key: &str) {
        let inner = &self.inner;
        if kind == Kind::Queue {
            if crate::broker::destination::is_wildcard(key) {
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
            return;
        }
        let Some(ch) = inner.channel_for(kind, key) else {
            return;
        };
        let mut channels = inner.channels.lock();
        if let Some(n) = channels.get_mut(&ch) {
            *n -= 1;
            if *n == 0 {
                channels.remove(&ch);
                let _ = inner.tx.send(Cmd::Unsubscribe(ch.0, ch.1));
            }
        }
    }

    fn recover(&self, sub: Arc<Subscription>, since: Since) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let (hist, meta) = inner.history_keys(&sub.key);
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
                sub.finish_recovery(Vec::new(), false);
                return;
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
            let mut missed = Vec::new();
            for (id, payload) in entry_list(entries) {
                let offset = id
                    .split('-')
                    .next()
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(0);
                if let Some((_, mut m)) = decode(&payload) {
                    m.position = Some(Position {
                        offset,
                        epoch: epoch.clone(),
                    });
                    missed.push(Arc::new(m));
                }
            }
            let first = missed
                .first()
                .and_then(|m| m.position.as_ref().map(|p| p.offset));
            let complete = since.offset == last || first == Some(since.offset + 1);
            let recovered = same_epoch && since.offset <= last && complete;
            sub.finish_recovery(if recovered { missed } else { Vec::new() }, recovered);
        });
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
        self.inner.forget(message);
    }

    fn owns_queues(&self) -> bool {
        true
    }

    fn stop_consuming(&self) {
        self.inner.stop_reading.cancel();
    }

    fn shutdown(&self) {
        self.inner.stop_reading.cancel();
        self.inner.stop.cancel();
    }

    fn status(&self) -> BusStatus {
        BusStatus {
            kind: "redis",
            connected: self.inner.connected.load(Ordering::Relaxed),
            failed_publishes: self.inner.failed.load(Ordering::Relaxed),
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

/// The literal prefix a `prefix*` glob (as `channel_for` makes them) matches.
fn glob_prefix(glob: &str) -> String {
    let body = glob.strip_suffix('*').unwrap_or(glob);
    let mut out = String::with_capacity(body.len());
    let mut escaped = false;
    for c in body.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

/// Byte offset of the first wildcard segment of `key`, if any.
fn first_wildcard(key: &str) -> Option<usize> {
    let mut start = 0;
    for (i, c) in key.char_indices().chain([(key.len(), '/')]) {
        if c == '/' || c == '.' {
            if matches!(&key[start..i], "*" | "**" | "#") {
                return Some(start);
            }
            start = i + 1;
        }
    }
    None
}

// -------------------------------------------------------------------- wire format

/// One message on the wire: version 1, origin node, id, kind, key, destination,
/// content type, sender headers, body. Strings are u16-length-prefixed, header
/// values and the body u32.
fn encode(m: &Message, origin: &str) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(64 + m.key.len() * 2 + m.body.len());
    out.put_u8(1);
    put_str(&mut out, origin);
    put_str(&mut out, &m.id);
    out.put_u8(matches!(m.kind, Kind::Queue) as u8);
    put_str(&mut out, &m.key);
    put_str(&mut out, &m.destination);
    match &m.content_type {
        Some(ct) => {
            out.put_u8(1);
            put_str(&mut out, ct);
        }
        None => out.put_u8(0),
    }
    let headers: Vec<(&str, &str)> = m.headers.iter().collect();
    out.put_u16(headers.len() as u16);
    for (k, v) in headers {
        put_str(&mut out, k);
        out.put_u32(v.len() as u32);
        out.put_slice(v.as_bytes());
    }
    out.put_u32(m.body.len() as u32);
    out.put_slice(&m.body);
    out.to_vec()
}

fn put_str(out: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

fn decode(payload: &[u8]) -> Option<(String, Message)> {
    let mut b = payload;
    fn take(b: &mut &[u8], n: usize) -> Option<Vec<u8>> {
        (b.remaining() >= n).then(|| {
            let v = b[..n].to_vec();
            b.advance(n);
            v
        })
    }
    fn s16(b: &mut &[u8]) -> Option<String> {
        (b.remaining() >= 2).then_some(())?;
        let n = b.get_u16() as usize;
        String::from_utf8(take(b, n)?).ok()
    }
    (b.remaining() >= 1 && b.get_u8() == 1).then_some(())?;
    let origin = s16(&mut b)?;
    let id = s16(&mut b)?;
    (b.remaining() >= 1).then_some(())?;
    let kind = if b.get_u8() == 1 {
        Kind::Queue
    } else {
        Kind::Topic
    };
    let key = s16(&mut b)?;
    let destination = s16(&mut b)?;
    (b.remaining() >= 1).then_some(())?;
    let content_type = if b.get_u8() == 1 {
        Some(s16(&mut b)?)
    } else {
        None
    };
    (b.remaining() >= 2).then_some(())?;
    let n = b.get_u16();
    let mut headers = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let k = s16(&mut b)?;
        (b.remaining() >= 4).then_some(())?;
        let len = b.get_u32() as usize;
        let v = String::from_utf8(take(&mut b, len)?).ok()?;
        headers.push((k, v));
    }
    (b.remaining() >= 4).then_some(())?;
    let len = b.get_u32() as usize;
    let body = Bytes::from(take(&mut b, len)?);
    let headers: Headers = headers.into_iter().collect();
    Some((
        origin,
        Message::from_parts(id, kind, key, destination, content_type, headers, body),
    ))
}

/// `"<offset> <epoch> <payload>"` as the topic script publishes it.
fn split_published(p: &[u8]) -> Option<(u64, String, &[u8])> {
    let sp = p.iter().position(|&c| c == b' ')?;
    let offset = std::str::from_utf8(&p[..sp]).ok()?.parse().ok()?;
    let rest = &p[sp + 1..];
    let sp = rest.iter().position(|&c| c == b' ')?;
    let epoch = std::str::from_utf8(&rest[..sp]).ok()?.to_owned();
    Some((offset, epoch, &rest[sp + 1..]))
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
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

/// Per stream, its entries: (entry id, payload).
type StreamEntries = Vec<(String, Vec<(String, Vec<u8>)>)>;

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

/// `[[id, [field, value, ...]], ...]` → (id, value of field `p`); deleted entries
/// (nil) are skipped.
fn entry_list(v: Value) -> Vec<(String, Vec<u8>)> {
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
            let mut it = fields.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if as_string(&k).as_deref() == Some("p")
                    && let Value::BulkString(p) = v
                {
                    return Some((id, p));
                }
            }
            None
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Target;

    #[test]
    fn wire_round_trip() {
        let sent: Headers = [("content-type", "text/plain"), ("x-a", "1:2")]
            .into_iter()
            .collect();
        let m = Message::new(
            "n-1".into(),
            Target::broker(Kind::Topic, "/topic/a"),
            &sent,
            Bytes::from_static(b"hi\0there"),
        );
        let (origin, d) = decode(&encode(&m, "node")).unwrap();
        assert_eq!(origin, "node");
        assert_eq!(
            (d.id.as_str(), d.key.as_str(), d.destination.as_str()),
            ("n-1", "/topic/a", "/topic/a")
        );
        assert_eq!(d.content_type.as_deref(), Some("text/plain"));
        assert_eq!(d.headers.get("x-a"), Some("1:2"));
        assert_eq!(&d.body[..], b"hi\0there");
        assert!(decode(b"\x02junk").is_none());
    }

    #[test]
    fn wildcards_become_prefix_globs() {
        assert_eq!(first_wildcard("/topic/a"), None);
        assert_eq!(first_wildcard("/topic/chat.*"), Some(12));
        assert_eq!(first_wildcard("/topic/**"), Some(7));
        assert_eq!(first_wildcard("/topic/a*b/c"), None);
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
        assert_eq!(
            i.channel_for(Kind::Topic, "/topic/x?.*"),
            Some(("herald:t:/topic/x\\?.*".into(), true))
        );
        assert_eq!(
            i.channel_for(Kind::Topic, "/user/bob/queue/*"),
            Some(("herald:u:bob".into(), false))
        );
        assert_eq!(i.publish_channel("/user/bob/queue/x"), "herald:u:bob");
    }
}

//! Cluster queues: the consumer task reads the streams this node's consumers need
//! (no more than their prefetch windows take), claims what dead nodes held, keeps
//! what live sessions hold from being claimed, prunes gone consumers; entries are
//! acked, released or handed back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::Value;
use tokio::sync::mpsc;

use super::conn::Conn;
use super::keys::GROUP;
use super::replies::{
    StreamEntry, as_u64, consumer_list, entry_list, saturate_u32, stream_entries,
};
use super::wire::decode;
use super::writer::Cmd;
use super::{Inner, RedisBus};
use crate::cluster::ClusterQueues;
use crate::destination::{Pattern, is_wildcard};
use crate::message::{Entry, Message};

/// Pause between two rounds of non-blocking reads of queues in several slots.
const POLL: Duration = Duration::from_millis(20);

impl Inner {
    pub(super) async fn consume(self: Arc<Self>) {
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
            // Fetched each round: Sentinels may have moved the bus to a new master.
            let mut conn = self.reader();
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
                    .arg(self.keys.queue_registry())
                    .query_async(&mut conn)
                    .await;
                if let Ok(keys) = keys {
                    matched = keys
                        .into_iter()
                        .filter(|k| patterns.iter().any(|p| p.matches(k)))
                        .collect();
                }
            }
            let mut keys: Vec<String> = self.queues.lock().keys().cloned().collect();
            for m in &matched {
                if !keys.contains(m) {
                    keys.push(m.clone());
                }
            }
            let streams: Vec<String> = keys.iter().map(|k| self.keys.queue_stream(k)).collect();
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
                .zip(&keys)
                .filter(|(_, key)| {
                    let room = self.sink().map_or(0, |s| s.queue_room(key));
                    most = most.max(room);
                    room > 0
                })
                .map(|(s, _)| s)
                .collect();
            if streams.is_empty() {
                tokio::select! {
                    _ = self.stop_reading.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            // One XREADGROUP per slot on a cluster (a command's streams must share
            // one); each blocks only when it is the only one.
            let groups = self.slot_groups(&conn, streams);
            let block = (groups.len() == 1).then_some(block_ms);
            let mut got = 0;
            let mut failed = false;
            for group in &groups {
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.node_id)
                    .arg("COUNT")
                    .arg(most.min(256));
                if let Some(ms) = block {
                    cmd.arg("BLOCK").arg(ms);
                }
                cmd.arg("STREAMS").arg(group);
                for _ in group {
                    cmd.arg(">");
                }
                let read = tokio::select! {
                    _ = self.stop_reading.cancelled() => return,
                    r = cmd.query_async::<Value>(&mut conn) => r,
                };
                match read {
                    Ok(v) => {
                        for (stream, entries) in stream_entries(v) {
                            got += entries.len();
                            self.take_entries(&stream, entries);
                        }
                    }
                    Err(e) => {
                        if e.to_string().contains("NOGROUP") {
                            ready.clear(); // Redis lost the groups (restarted)
                        } else {
                            tracing::debug!(error = %e, "XREADGROUP failed");
                            failed = true;
                        }
                    }
                }
            }
            if failed {
                tokio::time::sleep(Duration::from_millis(250)).await;
            } else if block.is_none() && got == 0 {
                // Several slots polled without blocking: a short pause between rounds.
                tokio::select! {
                    _ = self.stop_reading.cancelled() => return,
                    _ = self.queues_changed.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }

    /// `streams` grouped by slot on a cluster (one group on one server).
    fn slot_groups<'s>(&self, conn: &Conn, streams: Vec<&'s String>) -> Vec<Vec<&'s String>> {
        if !conn.is_cluster() {
            return vec![streams];
        }
        let mut groups: std::collections::HashMap<_, Vec<&String>> =
            std::collections::HashMap::new();
        for s in streams {
            groups
                .entry(redis::cluster_routing::Slot::for_key(s.as_bytes()))
                .or_default()
                .push(s);
        }
        groups.into_values().collect()
    }

    /// Keeps entries held by live sessions from being claimed, and claims those
    /// other nodes (or this one, with no consumer left then) took and never acked.
    pub(super) async fn claim(&self, conn: &mut Conn, streams: &[String]) {
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
    pub(super) async fn prune_consumers(&self, conn: &mut Conn, stream: &str) {
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

    pub(super) fn take_entries(&self, stream: &str, entries: Vec<StreamEntry>) {
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
    pub(super) fn consumes(&self, key: &str) -> bool {
        self.queues.lock().contains_key(key)
            || self
                .wild_queues
                .lock()
                .keys()
                .any(|p| Pattern::subscription(p).is_some_and(|p| p.matches(key)))
    }

    pub(super) fn forget(&self, message: &Message) -> Option<Entry> {
        let e = message.entry.as_ref()?;
        if let Some(ids) = self.inflight.lock().get_mut(&e.stream) {
            ids.remove(&e.id);
        }
        Some(e.clone())
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
        *q.entry(key.to_owned()).or_default() += 1;
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
        let mut q = inner.queues.lock();
        if let Some(n) = q.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                q.remove(key);
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

/// Entries claimed from a node that died holding them were delivered and never
/// acked: each claim counts as a give-back. Redis counts the deliveries of an entry
/// (`XREADGROUP`, then one more per claim; this node's keep-alive `XCLAIM … JUSTID`
/// does not count), so a chain of dead holders is counted whole. When Redis cannot
/// say, one claim is assumed.
pub(super) async fn count_claims(conn: &mut Conn, stream: &str, entries: &mut [StreamEntry]) {
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

//! Whether Redis answers: the health task PINGs it, ends an outage at the first
//! success (scripts loaded again, channels subscribed, ACKs and hand-backs sent,
//! presence re-stamped), and `/health` reads the status.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::presence::REFRESH_CHUNK;
use super::writer::{ANSWER_TIMEOUT, Cmd};
use super::{Inner, RedisBus};
use crate::cluster::target::RedisTarget;
use crate::cluster::{BusStatus, Health};
use crate::message::Kind;

/// Shortest and longest pause between two attempts to reach Redis after a failure.
pub(super) const RETRY_MIN: Duration = Duration::from_millis(50);
pub(super) const RETRY_MAX: Duration = Duration::from_millis(500);

impl Inner {
    /// PINGs Redis once a heartbeat (at most a second apart) while it answers; after a
    /// failure, with a backoff from RETRY_MIN to RETRY_MAX, and sooner when a publish
    /// waits. The first PING that gets through ends the outage.
    pub(super) async fn health(self: Arc<Self>) {
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
            let ping = tokio::time::timeout(Duration::from_secs(1), conn.ping()).await;
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
            if self.keys.tagged {
                self.check_shards().await;
            }
            self.outage.tick(
                self.spooled.load(Ordering::Relaxed),
                self.spooled_bytes.load(Ordering::Relaxed),
            );
        }
    }

    /// Which cluster shards do not answer, for `/health` (logged when it changes).
    async fn check_shards(&self) {
        let mut conn = self.conn();
        let Ok(Ok(shards)) = tokio::time::timeout(ANSWER_TIMEOUT, conn.shards()).await else {
            return;
        };
        let down: Vec<String> = shards
            .into_iter()
            .filter_map(|(shard, state)| state.err().map(|why| format!("{shard}: {why}")))
            .collect();
        if down.is_empty() {
            // Every master answers (a replica took over): try the failed slots again.
            self.slots_down.lock().clear();
        }
        let mut was = self.shards_down.lock();
        if *was != down {
            if down.is_empty() {
                tracing::info!(node = %self.node_id, "every Redis Cluster shard answers again");
            } else {
                tracing::warn!(node = %self.node_id, down = ?down,
                    "Redis Cluster shards do not answer: their destinations wait");
            }
            *was = down;
        }
    }
}

impl Health for RedisBus {
    fn status(&self) -> BusStatus {
        BusStatus {
            kind: match self.inner.target {
                RedisTarget::Single(_) => "redis",
                RedisTarget::Cluster(_) => "redis-cluster",
                RedisTarget::Sentinel { .. } => "redis-sentinel",
            },
            connected: self.inner.connected.load(Ordering::Relaxed),
            failed_publishes: self.inner.failed.load(Ordering::Relaxed),
            spooled: self.inner.spooled.load(Ordering::Relaxed),
            channels: self.inner.listening.lock().len(),
            shards_down: self.inner.shards_down.lock().clone(),
        }
    }

    fn is_listening(&self, kind: Kind, key: &str) -> bool {
        if kind == Kind::Queue {
            return self.inner.queues.lock().contains_key(key);
        }
        self.is_listening(key)
    }
}

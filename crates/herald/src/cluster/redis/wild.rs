//! Wildcard topic subscriptions on a Redis Cluster.
//!
//! Topic messages travel on sharded channels, each on the shard owning its
//! destination, and sharded Pub/Sub has no patterns. A wildcard subscription
//! therefore `PSUBSCRIBE`s, as on one server, a glob over classic channels
//! `{p}:w:{key}`, and a publish puts a classic copy there only while some node has
//! a wildcard matching its destination. Classic messages reach every node of a
//! cluster, so only the traffic wildcards ask for pays that price; the rest stays on
//! its shard. (The alternative of one classic copy of every message would send all
//! traffic to every shard, undoing what the cluster is for.)
//!
//! The publishing node must know the wildcards: each node writes its globs to the
//! hash `{p}:wild` (glob → expiry, refreshed once a heartbeat, so a dead node's
//! globs age out) and announces a new one on the classic channel `{p}:wild`, which
//! every node listens to. A wildcard counts as listening (its SUBSCRIBE's RECEIPT,
//! `Health::is_listening`) once its pattern is subscribed and it is announced; a
//! node learns of it within a Pub/Sub hop of that, so a message another node
//! publishes in that moment can miss it, as a message published just before a
//! SUBSCRIBE would.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;

use super::Inner;
use super::keys::glob_matches;
use super::replies::pairs;
use super::writer::ANSWER_TIMEOUT;

/// Globs of wildcard subscriptions anywhere in the cluster.
#[derive(Debug, Default)]
pub(super) struct Wild {
    known: RwLock<HashMap<String, u64>>,
}

/// Least time a glob stays in the registry without a refresh: longer than a
/// heartbeat by far, since a glob kept too long costs only needless copies.
const MIN_TTL: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Inner {
    fn wild_key(&self) -> String {
        format!("{}:wild", self.keys.prefix)
    }

    fn wild_ttl(&self) -> Duration {
        (self.config.heartbeat * 3).max(MIN_TTL)
    }

    /// Whether a wildcard somewhere listens to what is published under `key`.
    pub(super) fn wildcard_listens(&self, key: &str) -> bool {
        let known = self.wild.known.read();
        if known.is_empty() {
            return false;
        }
        let channel = self.keys.pattern_channel(key);
        known.keys().any(|g| glob_matches(g, &channel))
    }

    /// A glob another node announced.
    pub(super) fn wildcard_announced(&self, glob: String) {
        let until = now_ms() + self.wild_ttl().as_millis() as u64;
        self.wild.known.write().insert(glob, until);
    }

    /// Whether `channel` is where wildcards are announced (cluster only).
    pub(super) fn is_announcement(&self, channel: &str) -> bool {
        self.keys.tagged && channel == self.wild_key()
    }

    /// Registers and announces this node's new wildcard `glob`, before its
    /// subscription counts as listening.
    pub(super) async fn announce(&self, glob: &str) -> redis::RedisResult<()> {
        let until = now_ms() + self.wild_ttl().as_millis() as u64;
        self.wild.known.write().insert(glob.to_owned(), until);
        let mut conn = self.conn();
        let _: redis::Value = redis::cmd("HSET")
            .arg(self.wild_key())
            .arg(glob)
            .arg(until)
            .query_async(&mut conn)
            .await?;
        let _: redis::Value = redis::cmd("PUBLISH")
            .arg(self.wild_key())
            .arg(glob)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Listens for announcements and, once a heartbeat, refreshes this node's globs
    /// in the registry and reads everyone's.
    pub(super) async fn announce_wildcards(self: Arc<Self>) {
        let beat = self.config.heartbeat.min(Duration::from_secs(1));
        let mut listening = false;
        loop {
            if !listening {
                let mut conn = self.conn();
                listening = conn.subscribe_classic(&self.wild_key()).await.is_ok();
            }
            let mine: Vec<String> = self
                .channels
                .lock()
                .keys()
                .filter(|(_, pattern)| *pattern)
                .map(|(g, _)| g.clone())
                .collect();
            let until = now_ms() + self.wild_ttl().as_millis() as u64;
            let mut pipe = redis::pipe();
            if !mine.is_empty() {
                let mut hset = redis::cmd("HSET");
                hset.arg(self.wild_key());
                for g in &mine {
                    hset.arg(g).arg(until);
                }
                pipe.add_command(hset).ignore();
            }
            pipe.cmd("HGETALL").arg(self.wild_key());
            let mut conn = self.conn();
            let read: Result<redis::RedisResult<(redis::Value,)>, _> =
                tokio::time::timeout(ANSWER_TIMEOUT, pipe.query_async(&mut conn)).await;
            if let Ok(Ok((all,))) = read {
                let now = now_ms();
                let mut gone = Vec::new();
                let fresh: HashMap<String, u64> = pairs(all)
                    .into_iter()
                    .filter_map(|(g, t)| {
                        let t: u64 = t.parse().unwrap_or(0);
                        if t > now {
                            Some((g, t))
                        } else {
                            gone.push(g);
                            None
                        }
                    })
                    .collect();
                // Merged: a glob announced while this read was on its way stays.
                let mut known = self.wild.known.write();
                known.retain(|g, t| *t > now && !gone.contains(g));
                known.extend(fresh);
                if !gone.is_empty() {
                    let mut del = redis::cmd("HDEL");
                    del.arg(self.wild_key()).arg(&gone);
                    self.send_call(del);
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(beat) => {}
            }
        }
    }
}

//! The in-process bus: a single node. Messages never leave the process; each topic
//! destination keeps its last `cluster.history_size` messages in a ring buffer for
//! recovery by offset. A ring's epoch is drawn when it is created: a restarted node's
//! offsets are new ones, and clients that resubscribe with an old epoch are told to
//! reload. A ring without a publish for `cluster.history_ttl` is dropped (checked
//! every ttl/4, at most once a second), so one-off destinations do not pile up.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::presence::LocalShared;
use super::{Bus, BusStatus, Confirm, Since};
use crate::broker::message::Position;
use crate::broker::{Broker, Kind, Message, Subscription};
use crate::config::ClusterConfig;
use crate::handler::BoxFuture;

/// Shards of the history map: publishers to different destinations rarely meet.
const SHARDS: usize = 64;

#[derive(Debug)]
struct Ring {
    epoch: Arc<str>,
    /// Offset of the newest message (0: none yet).
    last: u64,
    messages: VecDeque<Arc<Message>>,
    touched: Instant,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            epoch: super::new_epoch().into(),
            last: 0,
            messages: VecDeque::new(),
            touched: Instant::now(),
        }
    }
}

#[derive(Debug)]
pub struct LocalBus {
    capacity: usize,
    ttl: Duration,
    hasher: std::collections::hash_map::RandomState,
    shards: Arc<[Mutex<HashMap<String, Ring>>]>,
    shared: LocalShared,
}

impl LocalBus {
    pub fn new(config: &ClusterConfig) -> LocalBus {
        LocalBus {
            capacity: config.history_size,
            ttl: config.history_ttl,
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shared: LocalShared::default(),
        }
    }

    /// Drops the rings nobody published to for `ttl`; returns how many.
    fn sweep(shards: &[Mutex<HashMap<String, Ring>>], ttl: Duration) -> usize {
        let mut dropped = 0;
        for shard in shards {
            let mut shard = shard.lock();
            let before = shard.len();
            shard.retain(|_, ring| ring.touched.elapsed() < ttl);
            dropped += before - shard.len();
        }
        dropped
    }

    /// Topic destinations with a history ring (for tests and operators).
    pub fn history_destinations(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Ring>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }
}

impl Bus for LocalBus {
    fn attach(&self, _broker: Weak<Broker>) {
        let (shards, ttl) = (Arc::downgrade(&self.shards), self.ttl);
        if ttl.is_zero() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let every = (ttl / 4).max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(shards) = shards.upgrade() else {
                    return;
                };
                let dropped = LocalBus::sweep(&shards, ttl);
                if dropped > 0 {
                    tracing::debug!(dropped, "dropped idle history rings");
                }
            }
        });
    }

    fn publish(&self, mut message: Message, _confirm: Option<Confirm>) -> Option<Arc<Message>> {
        if message.kind != Kind::Topic || self.capacity == 0 {
            return Some(Arc::new(message));
        }
        let mut shard = self.shard(&message.key).lock();
        let ring = match shard.get_mut(message.key.as_str()) {
            Some(r) => r,
            None => shard.entry(message.key.clone()).or_insert_with(Ring::new),
        };
        ring.last += 1;
        ring.touched = Instant::now();
        message.position = Some(Position {
            offset: ring.last,
            epoch: ring.epoch.clone(),
        });
        let message = Arc::new(message);
        if ring.messages.len() == self.capacity {
            ring.messages.pop_front();
        }
        ring.messages.push_back(message.clone());
        Some(message)
    }

    fn subscribed(&self, _kind: Kind, _key: &str) {}
    fn unsubscribed(&self, _kind: Kind, _key: &str) {}

    fn recover(&self, sub: Arc<Subscription>, since: Since) {
        let (history, recovered) = {
            let shard = self.shard(&sub.key).lock();
            let ring = shard.get(sub.key.as_str());
            let last = ring.map_or(0, |r| r.last);
            // No ring: nothing was published since it was dropped (or ever), so only
            // a client that saw nothing (offset 0) is up to date.
            let same_epoch = match (since.epoch.as_deref(), ring) {
                (None, _) => true,
                (Some(e), Some(r)) => *e == *r.epoch,
                (Some(_), None) => since.offset == 0,
            };
            let missed: Vec<Arc<Message>> = ring
                .into_iter()
                .flat_map(|r| r.messages.iter())
                .filter(|m| m.position.as_ref().is_some_and(|p| p.offset > since.offset))
                .cloned()
                .collect();
            let first = missed
                .first()
                .and_then(|m| m.position.as_ref().map(|p| p.offset));
            let complete = since.offset == last || first == Some(since.offset + 1);
            (missed, same_epoch && since.offset <= last && complete)
        };
        sub.finish_recovery(if recovered { history } else { Vec::new() }, recovered);
    }

    fn consumed(&self, _message: &Message) {}
    fn released(&self, _message: &Message) {}

    fn presence_join(&self, scope: &str, member: &str, info: &str) {
        self.shared.members.join(scope, member, info);
    }

    fn presence_leave(&self, scope: &str, member: &str) {
        self.shared.members.leave(scope, member);
    }

    fn presence(&self, scope: &str) -> BoxFuture<Result<Vec<(String, String)>, String>> {
        let list = self.shared.members.list(scope);
        Box::pin(async move { Ok(list) })
    }

    fn map_put(
        &self,
        map: &str,
        key: &str,
        value: &str,
        only_new: bool,
    ) -> BoxFuture<Result<bool, String>> {
        let stored = self.shared.put(map, key, value, only_new);
        Box::pin(async move { Ok(stored) })
    }

    fn map_get(&self, map: &str, key: &str) -> BoxFuture<Result<Option<String>, String>> {
        let v = self.shared.get(map, key);
        Box::pin(async move { Ok(v) })
    }

    fn map_all(&self, map: &str) -> BoxFuture<Result<Vec<(String, String)>, String>> {
        let v = self.shared.all(map);
        Box::pin(async move { Ok(v) })
    }

    fn status(&self) -> BusStatus {
        BusStatus {
            kind: "local",
            connected: true,
            failed_publishes: 0,
            spooled: 0,
            channels: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Target;
    use bytes::Bytes;
    use herald_stomp::Headers;

    fn message(key: &str) -> Message {
        Message::new(
            "n-1".into(),
            Target::broker(Kind::Topic, key),
            &Headers::new(),
            Bytes::from_static(b"x"),
        )
    }

    #[test]
    fn idle_rings_are_dropped_and_come_back_with_a_new_epoch() {
        let bus = LocalBus::new(&ClusterConfig {
            history_size: 4,
            ..Default::default()
        });
        let first = bus.publish(message("/topic/a"), None).unwrap();
        bus.publish(message("/topic/b"), None).unwrap();
        assert_eq!(bus.history_destinations(), 2);
        assert_eq!(LocalBus::sweep(&bus.shards, Duration::from_secs(3600)), 0);
        assert_eq!(LocalBus::sweep(&bus.shards, Duration::ZERO), 2);
        assert_eq!(bus.history_destinations(), 0);
        let again = bus.publish(message("/topic/a"), None).unwrap();
        let (p1, p2) = (
            first.position.clone().unwrap(),
            again.position.clone().unwrap(),
        );
        assert_eq!((p1.offset, p2.offset), (1, 1));
        assert_ne!(
            p1.epoch, p2.epoch,
            "a recreated ring has a new epoch, so old offsets mean reload"
        );
    }
}

//! The in-process bus: a single node. Messages never leave the process; each topic
//! destination keeps its last `cluster.history_size` messages in a ring buffer for
//! recovery by offset. A ring's epoch is drawn when it is created: a restarted node's
//! offsets are new ones, and clients that resubscribe with an old epoch are told to
//! reload. A ring without a publish for `cluster.history_ttl` is dropped (checked
//! every ttl/4, at most once a second), so one-off destinations do not pile up; and
//! past `cluster.history_max_destinations` rings or `cluster.history_max_bytes` bytes
//! in all of them, the least recently published rings are dropped at once, down to
//! 7/8 of the limit so that one scan of the shards pays for many publishes.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::presence::LocalShared;
use super::{
    Bus, BusStatus, ClusterQueues, Confirm, Health, Parking, Presence, PubSub, Recovery, Replay,
    SharedMaps, Since, Sink,
};
use crate::cluster::BoxFuture;
use crate::cluster::config::ClusterConfig;
use crate::message::{Kind, Message, Position};

/// Shards of the history map: publishers to different destinations rarely meet.
const SHARDS: usize = 64;

#[derive(Debug)]
struct Ring {
    epoch: Arc<str>,
    /// Offset of the newest message (0: none yet).
    last: u64,
    messages: VecDeque<Arc<Message>>,
    /// Footprint of `messages`.
    bytes: usize,
    touched: Instant,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            epoch: super::new_epoch().into(),
            last: 0,
            messages: VecDeque::new(),
            bytes: 0,
            touched: Instant::now(),
        }
    }
}

/// Every ring, sharded, with what they hold in all (kept in step under the shard
/// locks publishers take anyway, so the budgets cost two atomic operations).
#[derive(Debug)]
struct Rings {
    shards: Box<[Mutex<HashMap<String, Ring>>]>,
    count: AtomicUsize,
    bytes: AtomicUsize,
    /// One eviction scan at a time; other publishers go on meanwhile.
    evicting: AtomicBool,
}

impl Rings {
    /// Drops the rings `doomed` picks; returns how many.
    fn drop_where(&self, doomed: impl Fn(&Ring) -> bool) -> usize {
        let mut dropped = 0;
        for shard in &self.shards {
            let mut shard = shard.lock();
            shard.retain(|_, ring| {
                let drop = doomed(ring);
                if drop {
                    dropped += 1;
                    self.bytes.fetch_sub(ring.bytes, Ordering::Relaxed);
                }
                !drop
            });
        }
        self.count.fetch_sub(dropped, Ordering::Relaxed);
        dropped
    }
}

#[derive(Debug)]
pub struct LocalBus {
    capacity: usize,
    ttl: Duration,
    max_destinations: usize,
    max_bytes: usize,
    hasher: std::collections::hash_map::RandomState,
    rings: Arc<Rings>,
    shared: LocalShared,
    parked: super::LocalParking,
}

impl LocalBus {
    pub fn new(config: &ClusterConfig) -> LocalBus {
        LocalBus {
            capacity: config.history_size,
            ttl: config.history_ttl,
            max_destinations: config.history_max_destinations.max(1),
            max_bytes: config.history_max_bytes,
            hasher: Default::default(),
            rings: Arc::new(Rings {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                count: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                evicting: AtomicBool::new(false),
            }),
            shared: LocalShared::default(),
            parked: Default::default(),
        }
    }

    /// Drops the rings nobody published to for `ttl`; returns how many.
    fn sweep(rings: &Rings, ttl: Duration) -> usize {
        rings.drop_where(|ring| ring.touched.elapsed() >= ttl)
    }

    /// Past a budget, drops the least recently published rings until both are under
    /// 7/8 of their limit. The newest ring always stays: it is the one just published.
    fn evict(&self) {
        let rings = &self.rings;
        let over =
            |count: usize, bytes: usize| count > self.max_destinations || bytes > self.max_bytes;
        if !over(
            rings.count.load(Ordering::Relaxed),
            rings.bytes.load(Ordering::Relaxed),
        ) || rings.evicting.swap(true, Ordering::Acquire)
        {
            return;
        }
        let mut ages: Vec<(Instant, usize)> = Vec::new();
        for shard in &rings.shards {
            ages.extend(shard.lock().values().map(|r| (r.touched, r.bytes)));
        }
        ages.sort_unstable_by_key(|(touched, _)| *touched);
        let (to_count, to_bytes) = (
            self.max_destinations - self.max_destinations / 8,
            self.max_bytes - self.max_bytes / 8,
        );
        let (mut count, mut bytes) = (ages.len(), ages.iter().map(|(_, b)| b).sum::<usize>());
        let limit = if count > self.max_destinations {
            "cluster.history_max_destinations"
        } else {
            "cluster.history_max_bytes"
        };
        let mut cutoff = None;
        for (touched, b) in &ages[..ages.len().saturating_sub(1)] {
            if count <= to_count && bytes <= to_bytes {
                break;
            }
            (count, bytes, cutoff) = (count - 1, bytes - b, Some(*touched));
        }
        if let Some(cutoff) = cutoff {
            let dropped = rings.drop_where(|ring| ring.touched <= cutoff);
            crate::ops::metrics::limit_hit(limit);
            tracing::debug!(
                dropped,
                limit,
                "history budget reached: dropped the least recently published rings"
            );
        }
        rings.evicting.store(false, Ordering::Release);
    }

    /// Topic destinations with a history ring, counted ring by ring.
    #[cfg(test)]
    fn history_destinations(&self) -> usize {
        self.rings.shards.iter().map(|s| s.lock().len()).sum()
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Ring>> {
        &self.rings.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }
}

impl Bus for LocalBus {
    fn attach(&self, _sink: Weak<dyn Sink>) {
        let (rings, ttl) = (Arc::downgrade(&self.rings), self.ttl);
        if ttl.is_zero() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let every = (ttl / 4).max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(rings) = rings.upgrade() else {
                    return;
                };
                let dropped = LocalBus::sweep(&rings, ttl);
                if dropped > 0 {
                    tracing::debug!(dropped, "dropped idle history rings");
                }
            }
        });
    }
}

impl PubSub for LocalBus {
    fn publish(&self, mut message: Message, _confirm: Option<Confirm>) -> Option<Arc<Message>> {
        if message.kind != Kind::Topic || self.capacity == 0 {
            return Some(Arc::new(message));
        }
        let mut shard = self.shard(&message.key).lock();
        let ring = match shard.get_mut(message.key.as_str()) {
            Some(r) => r,
            None => {
                self.rings.count.fetch_add(1, Ordering::Relaxed);
                shard.entry(message.key.clone()).or_insert_with(Ring::new)
            }
        };
        ring.last += 1;
        ring.touched = Instant::now();
        message.position = Some(Position {
            offset: ring.last,
            epoch: ring.epoch.clone(),
        });
        let message = Arc::new(message);
        let size = message.footprint();
        let before = ring.bytes;
        // One ring alone never holds the whole byte budget.
        while ring.messages.len() == self.capacity
            || (ring.bytes + size > self.max_bytes && !ring.messages.is_empty())
        {
            let old = ring.messages.pop_front().expect("not empty");
            ring.bytes -= old.footprint();
        }
        ring.messages.push_back(message.clone());
        ring.bytes += size;
        let after = ring.bytes;
        drop(shard);
        if after >= before {
            self.rings
                .bytes
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.rings
                .bytes
                .fetch_sub(before - after, Ordering::Relaxed);
        }
        self.evict();
        Some(message)
    }

    fn subscribed(&self, _key: &str) {}

    fn unsubscribed(&self, _key: &str) {}

    fn recover(&self, key: &str, since: Since) -> Recovery {
        let (history, recovered) = {
            let shard = self.shard(key).lock();
            let ring = shard.get(key);
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
        Recovery::Ready(Replay {
            missed: if recovered { history } else { Vec::new() },
            recovered,
        })
    }

    fn position(&self, key: &str) -> BoxFuture<Result<Option<Position>, String>> {
        let p = self.shard(key).lock().get(key).map(|r| Position {
            offset: r.last,
            epoch: r.epoch.clone(),
        });
        Box::pin(std::future::ready(Ok(p)))
    }

    fn history_usage(&self) -> (usize, usize) {
        (
            self.rings.count.load(Ordering::Relaxed),
            self.rings.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Alone, queues are the broker's: nothing to do.
impl ClusterQueues for LocalBus {}

impl Presence for LocalBus {
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
}

impl SharedMaps for LocalBus {
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

    fn map_len(&self, map: &str) -> BoxFuture<Result<usize, String>> {
        let n = self.shared.len(map);
        Box::pin(async move { Ok(n) })
    }

    fn map_remove(&self, map: &str, key: &str) -> BoxFuture<Result<bool, String>> {
        let removed = self.shared.remove(map, key);
        Box::pin(async move { Ok(removed) })
    }
}

impl Parking for LocalBus {
    fn park(&self, key: &str, value: String, ttl: Duration) -> BoxFuture<Result<(), String>> {
        self.parked.park(key, value, ttl);
        Box::pin(std::future::ready(Ok(())))
    }

    fn unpark(&self, key: &str) -> BoxFuture<Result<Option<String>, String>> {
        Box::pin(std::future::ready(Ok(self.parked.unpark(key))))
    }
}

impl Health for LocalBus {
    fn status(&self) -> BusStatus {
        BusStatus {
            kind: "local",
            connected: true,
            failed_publishes: 0,
            spooled: 0,
            channels: 0,
            shards_down: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Target;
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
    fn past_a_budget_the_least_recently_published_rings_go() {
        let bus = LocalBus::new(&ClusterConfig {
            history_max_destinations: 8,
            ..Default::default()
        });
        for n in 0..9 {
            bus.publish(message(&format!("/topic/{n}")), None).unwrap();
        }
        // Down to 7/8 of the limit in one go, the oldest first.
        assert_eq!(bus.history_usage().0, 7);
        let kept = |key: &str| bus.shard(key).lock().contains_key(key);
        assert!(!kept("/topic/0") && !kept("/topic/1") && kept("/topic/2"));

        let one = message("/topic/a").footprint();
        let bus = LocalBus::new(&ClusterConfig {
            history_max_bytes: 16 * one,
            ..Default::default()
        });
        for _ in 0..40 {
            bus.publish(message("/topic/a"), None).unwrap();
        }
        assert_eq!(
            bus.history_usage(),
            (1, 16 * one),
            "one ring holds at most the budget"
        );
        for _ in 0..10 {
            bus.publish(message("/topic/b"), None).unwrap();
        }
        assert_eq!(
            bus.history_usage(),
            (1, 10 * one),
            "/topic/a went, /topic/b stays"
        );
        assert!(bus.shard("/topic/b").lock().contains_key("/topic/b"));
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
        assert_eq!(LocalBus::sweep(&bus.rings, Duration::from_secs(3600)), 0);
        assert_eq!(LocalBus::sweep(&bus.rings, Duration::ZERO), 2);
        assert_eq!(bus.history_destinations(), 0);
        assert_eq!(bus.history_usage(), (0, 0));
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

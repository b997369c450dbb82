//! The in-process bus: a single node. Messages never leave the process; each topic
//! destination keeps its last `cluster.history_size` messages in a ring buffer for
//! recovery by offset. The epoch is drawn at start: a restarted node's offsets are
//! new ones, and clients that resubscribe with an old epoch are told to reload.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::{Bus, BusStatus, Since};
use crate::broker::message::Position;
use crate::broker::{Broker, Kind, Message, Subscription};
use crate::config::ClusterConfig;

/// Shards of the history map: publishers to different destinations rarely meet.
const SHARDS: usize = 64;

#[derive(Debug, Default)]
struct Ring {
    /// Offset of the newest message (0: none yet).
    last: u64,
    messages: VecDeque<Arc<Message>>,
}

#[derive(Debug)]
pub struct LocalBus {
    epoch: Arc<str>,
    capacity: usize,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<HashMap<String, Ring>>]>,
}

impl LocalBus {
    pub fn new(config: &ClusterConfig) -> LocalBus {
        LocalBus {
            epoch: super::new_epoch().into(),
            capacity: config.history_size,
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Ring>> {
        let mut h = self.hasher.build_hasher();
        key.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }
}

impl Bus for LocalBus {
    fn attach(&self, _broker: Weak<Broker>) {}

    fn publish(&self, mut message: Message) -> Option<Arc<Message>> {
        if message.kind != Kind::Topic || self.capacity == 0 {
            return Some(Arc::new(message));
        }
        let mut shard = self.shard(&message.key).lock();
        let ring = match shard.get_mut(message.key.as_str()) {
            Some(r) => r,
            None => shard.entry(message.key.clone()).or_default(),
        };
        ring.last += 1;
        message.position = Some(Position {
            offset: ring.last,
            epoch: self.epoch.clone(),
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
            let same_epoch = since.epoch.as_deref().is_none_or(|e| *e == *self.epoch);
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

    fn status(&self) -> BusStatus {
        BusStatus {
            kind: "local",
            connected: true,
            failed_publishes: 0,
            channels: 0,
        }
    }
}

//! Abuse limits: concurrent connections in total, per IP and per user, and a token
//! bucket on each session's inbound frames. A breach is refused with a clear reason; it
//! never delays anyone else. A [`Counter`] keeps only the keys that hold a slot now
//! (the last slot's drop removes its key), so clients that come and go from ever new
//! addresses or names cannot grow it.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::time::Instant;

/// Counts holders per key; a [`Slot`] gives its place back when dropped.
#[derive(Debug)]
pub struct Counter<K: Eq + Hash + Clone> {
    limit: usize,
    counts: Mutex<HashMap<K, usize>>,
}

#[derive(Debug)]
pub struct Slot<K: Eq + Hash + Clone> {
    counter: Arc<Counter<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Counter<K> {
    /// `limit` 0 means no limit.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Counter {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `key`, or `None` when `key` already holds `limit` of them.
    pub fn acquire(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        if self.limit == 0 {
            return Some(Slot {
                counter: self.clone(),
                key,
            });
        }
        let mut counts = self.counts.lock();
        let n = counts.entry(key.clone()).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            counter: self.clone(),
            key,
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many keys hold a slot now.
    pub fn keys(&self) -> usize {
        self.counts.lock().len()
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        if self.counter.limit == 0 {
            return;
        }
        let mut counts = self.counter.counts.lock();
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

pub type IpSlot = Slot<IpAddr>;

/// Counts holders of one shared budget without a lock; a [`Share`] gives its place
/// back when dropped.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    held: AtomicUsize,
}

#[derive(Debug)]
pub struct Share {
    budget: Arc<Budget>,
}

impl Budget {
    /// `limit` 0 means no limit.
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            held: AtomicUsize::new(0),
        })
    }

    /// A share, or `None` when `limit` are held.
    pub fn acquire(self: &Arc<Self>) -> Option<Share> {
        let held = self.held.fetch_add(1, Ordering::AcqRel);
        if self.limit != 0 && held >= self.limit {
            self.held.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Share {
            budget: self.clone(),
        })
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(1, Ordering::AcqRel);
    }
}
pub type UserSlot = Slot<String>;

/// Inbound frame rate of one session.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `None` when `rate` is 0 (no limit).
    pub fn new(rate: u32, burst: u32) -> Option<TokenBucket> {
        (rate > 0).then(|| {
            let burst = if burst == 0 { rate } else { burst } as f64;
            TokenBucket {
                rate: rate as f64,
                burst,
                tokens: burst,
                last: Instant::now(),
            }
        })
    }

    /// Takes one token; false when the bucket is empty.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_limits_and_releases() {
        let c = Counter::new(2);
        let a = c.acquire("x").unwrap();
        let _b = c.acquire("x").unwrap();
        assert!(c.acquire("x").is_none());
        assert!(c.acquire("y").is_some());
        drop(a);
        assert!(c.acquire("x").is_some());
    }

    #[test]
    fn counter_forgets_a_key_when_its_last_slot_goes() {
        let c = Counter::new(2);
        let slots: Vec<_> = (0..1000).map(|i| c.acquire(i).unwrap()).collect();
        let again = c.acquire(7).unwrap();
        assert!(c.acquire(7).is_none(), "a refusal holds nothing");
        assert_eq!(c.keys(), 1000);
        drop(slots);
        assert_eq!(c.keys(), 1, "key 7 still holds a slot");
        drop(again);
        assert_eq!(c.keys(), 0);
        // Without a limit nothing is counted at all.
        let unlimited = Counter::new(0);
        let _held: Vec<_> = (0..100).map(|i| unlimited.acquire(i).unwrap()).collect();
        assert_eq!(unlimited.keys(), 0);
    }

    #[test]
    fn budget_limits_and_releases() {
        let b = Budget::new(2);
        let x = b.acquire().unwrap();
        let _y = b.acquire().unwrap();
        assert!(b.acquire().is_none());
        assert_eq!(b.held(), 2);
        drop(x);
        assert!(b.acquire().is_some());
        assert!(Budget::new(0).acquire().is_some());
    }

    #[test]
    fn bucket_allows_burst_then_refuses() {
        let mut b = TokenBucket::new(10, 3).unwrap();
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
        assert!(TokenBucket::new(0, 0).is_none());
    }
}

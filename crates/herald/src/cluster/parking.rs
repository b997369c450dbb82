//! Sessions kept for resuming, on one node: each a small value under an unguessable
//! key until its time is up, taken back at most once; and the budget of how many a
//! node keeps.
//!
//! The node bounds how many it parks ([`ParkBudget`], `stomp.resume_max_parked`);
//! the store only forgets what expired, oldest first, whenever it is used.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Default)]
pub(crate) struct LocalParking {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    values: HashMap<String, (String, Instant)>,
    /// (expiry, key) in the order parked: every value is parked for the same window,
    /// so this is also the order they expire in.
    expiries: VecDeque<(Instant, String)>,
}

impl State {
    fn forget_expired(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiries.front()
            && *at <= now
        {
            let (at, key) = self.expiries.pop_front().expect("not empty");
            if self.values.get(&key).is_some_and(|(_, until)| *until == at) {
                self.values.remove(&key);
            }
        }
    }
}

impl LocalParking {
    pub(crate) fn park(&self, key: &str, value: String, ttl: Duration) {
        let now = Instant::now();
        let mut s = self.state.lock();
        s.forget_expired(now);
        let until = now + ttl;
        s.values.insert(key.to_owned(), (value, until));
        s.expiries.push_back((until, key.to_owned()));
    }

    pub(crate) fn unpark(&self, key: &str) -> Option<String> {
        let now = Instant::now();
        let mut s = self.state.lock();
        s.forget_expired(now);
        s.values
            .remove(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().values.len()
    }
}

/// How many sessions one node keeps for resuming at once (`stomp.resume_max_parked`),
/// on whichever store: each counts for its whole window from when it was parked,
/// taken back early or not (the node that parked it does not hear of a resume
/// elsewhere), so the count errs on the safe side.
#[derive(Debug)]
pub(crate) struct ParkBudget {
    window: Duration,
    max: usize,
    parked: Mutex<VecDeque<Instant>>,
}

impl ParkBudget {
    pub(crate) fn new(window: Duration, max: usize) -> ParkBudget {
        ParkBudget {
            window,
            max,
            parked: Mutex::default(),
        }
    }

    /// Counts one more parked session; false (nothing counted) when the budget is
    /// spent.
    pub(crate) fn take(&self) -> bool {
        let now = Instant::now();
        let mut parked = self.parked.lock();
        while parked
            .front()
            .is_some_and(|at| now.duration_since(*at) >= self.window)
        {
            parked.pop_front();
        }
        if parked.len() >= self.max {
            return false;
        }
        parked.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_taken_once_and_forgotten_when_expired() {
        let p = LocalParking::default();
        p.park("a", "1".into(), Duration::from_secs(60));
        assert_eq!(p.unpark("a").as_deref(), Some("1"));
        assert_eq!(p.unpark("a"), None, "taken once");
        // Every value is parked for the same window: those expired go first.
        let p = LocalParking::default();
        p.park("b", "2".into(), Duration::ZERO);
        assert_eq!(p.unpark("b"), None, "expired");
        p.park("c", "3".into(), Duration::ZERO);
        p.park("d", "4".into(), Duration::ZERO);
        assert_eq!(p.len(), 1, "the expired one is forgotten by the next park");
    }

    #[test]
    fn the_budget_counts_parks_within_the_window() {
        let b = ParkBudget::new(Duration::from_secs(60), 2);
        assert!(b.take() && b.take());
        assert!(!b.take(), "spent");
        let b = ParkBudget::new(Duration::ZERO, 1);
        assert!(
            b.take() && b.take(),
            "a park outside the window no longer counts"
        );
    }
}

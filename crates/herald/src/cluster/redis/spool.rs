//! The outage spool: publishes that could not reach Redis, in publish order, until
//! Redis answers again and the Redis bus's writer writes them there.
//!
//! Only the writer task touches it, so publish order holds without locks. Entries are
//! encoded once, when they enter; their bytes count against `cluster.spool_max_bytes`.
//! An entry whose publisher waits for a confirmation carries a deadline
//! (`cluster.publish_timeout`): at it the entry is taken out and refused, so a
//! refused message is never written later. Entries nobody waits for stay until they
//! are written.

use std::collections::VecDeque;

use tokio::time::Instant;

use crate::cluster::Confirm;
use crate::message::Kind;

/// One publish waiting for Redis.
pub(super) struct Spooled {
    pub kind: Kind,
    pub key: String,
    /// The wire form, as the topic and queue scripts take it.
    pub payload: Vec<u8>,
    /// This node's subscriptions that got it at once (topics; queue messages wait
    /// for Redis so that exactly one node's consumer gets them).
    pub delivered: usize,
    /// Who waits for the confirmation, and until when.
    pub waiter: Option<(Confirm, Instant)>,
}

pub(super) struct Spool {
    /// Oldest first; `None` where a waited-for entry was refused at its deadline.
    entries: VecDeque<Option<Spooled>>,
    /// Sequence number of `entries[0]`.
    front: u64,
    /// Deadlines of waited-for entries with their sequence numbers, oldest first.
    deadlines: VecDeque<(Instant, u64)>,
    len: usize,
    bytes: usize,
    max_bytes: usize,
}

impl Spool {
    pub(super) fn new(max_bytes: usize) -> Spool {
        Spool {
            entries: VecDeque::new(),
            front: 0,
            deadlines: VecDeque::new(),
            len: 0,
            bytes: 0,
            max_bytes,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `n` more bytes stay within the budget.
    pub(super) fn fits(&self, n: usize) -> bool {
        self.bytes + n <= self.max_bytes
    }

    /// Appends `entry` (the caller checked [`Spool::fits`]).
    pub(super) fn push(&mut self, entry: Spooled) {
        let seq = self.front + self.entries.len() as u64;
        if let Some((_, deadline)) = &entry.waiter {
            self.deadlines.push_back((*deadline, seq));
        }
        self.len += 1;
        self.bytes += entry.payload.len();
        self.entries.push_back(Some(entry));
    }

    /// Takes up to `n` of the oldest entries, with their sequence numbers.
    pub(super) fn take(&mut self, n: usize) -> Vec<(u64, Spooled)> {
        let mut out = Vec::with_capacity(n.min(self.len));
        while out.len() < n {
            let Some(slot) = self.entries.pop_front() else {
                break;
            };
            let seq = self.front;
            self.front += 1;
            if let Some(entry) = slot {
                self.len -= 1;
                self.bytes -= entry.payload.len();
                out.push((seq, entry));
            }
        }
        out
    }

    /// Puts back at the front, in order, what [`Spool::take`] took (a write that
    /// failed); entries whose deadline passed meanwhile go at the next
    /// [`Spool::expire`].
    pub(super) fn restore(&mut self, taken: Vec<(u64, Spooled)>) {
        for (seq, entry) in taken.into_iter().rev() {
            while self.front > seq + 1 {
                self.entries.push_front(None);
                self.front -= 1;
            }
            self.len += 1;
            self.bytes += entry.payload.len();
            self.entries.push_front(Some(entry));
            self.front = seq;
        }
    }

    /// The earliest deadline of a waited-for entry.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(d, _)| *d)
    }

    /// Takes out the waited-for entries whose deadline is past `now`: the caller
    /// refuses them.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<Spooled> {
        let mut out = Vec::new();
        while let Some(&(deadline, seq)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            // Entries already written (taken, not restored) are answered; skip them.
            let Some(slot) = seq
                .checked_sub(self.front)
                .and_then(|i| self.entries.get_mut(i as usize))
            else {
                continue;
            };
            if let Some(entry) = slot.take() {
                self.len -= 1;
                self.bytes -= entry.payload.len();
                out.push(entry);
            }
        }
        while matches!(self.entries.front(), Some(None)) {
            self.entries.pop_front();
            self.front += 1;
        }
        out
    }

    /// Everything left, oldest first (shutdown).
    pub(super) fn drain(&mut self) -> Vec<Spooled> {
        self.deadlines.clear();
        self.len = 0;
        self.bytes = 0;
        self.front += self.entries.len() as u64;
        self.entries.drain(..).flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(key: &str, waits_until: Option<Instant>) -> Spooled {
        Spooled {
            kind: Kind::Topic,
            key: key.into(),
            payload: vec![0; 10],
            delivered: 0,
            waiter: waits_until.map(|d| (tokio::sync::oneshot::channel().0, d)),
        }
    }

    fn keys(v: &[(u64, Spooled)]) -> Vec<&str> {
        v.iter().map(|(_, e)| e.key.as_str()).collect()
    }

    #[test]
    fn keeps_order_through_a_failed_write_and_refuses_at_deadlines() {
        let now = Instant::now();
        let mut s = Spool::new(45);
        s.push(entry("a", None));
        s.push(entry("b", Some(now + Duration::from_secs(1))));
        s.push(entry("c", Some(now + Duration::from_secs(3))));
        s.push(entry("d", None));
        assert!(!s.fits(10), "40 of 45 bytes used");
        let taken = s.take(3);
        assert_eq!(keys(&taken), ["a", "b", "c"]);
        s.restore(taken);
        assert_eq!((s.len(), s.bytes()), (4, 40));
        // b's deadline passed: refused, never written.
        let gone = s.expire(now + Duration::from_secs(2));
        assert_eq!(
            gone.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(s.next_deadline(), Some(now + Duration::from_secs(3)));
        let taken = s.take(10);
        assert_eq!(keys(&taken), ["a", "c", "d"]);
        s.restore(taken);
        let first = s.take(1);
        assert_eq!(keys(&first), ["a"]);
        // c was written before its deadline: nothing to refuse.
        let rest = s.take(10);
        assert_eq!(keys(&rest), ["c", "d"]);
        assert!(s.expire(now + Duration::from_secs(9)).is_empty());
        assert!(s.is_empty() && s.bytes() == 0);
    }
}

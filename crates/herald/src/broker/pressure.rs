//! Producer flow control: what a publisher waits for before it sends more.
//!
//! A publisher (a STOMP session, a REST request, a handler's replies) hands its
//! [`Pressure`] to the messages it publishes. A delivery that leaves a subscriber's
//! outbox above its high-water mark notes that outbox here; the publisher then stops
//! taking input — a session stops reading its socket, so TCP pushes back on the
//! client — until every noted outbox is relieved: under its low-water mark, or closed.
//! A subscriber that reads, however slowly, so paces its publishers instead of being
//! dropped by a burst; one that makes no progress at all is closed by its own
//! connection task after `stomp.send_timeout`, which relieves everyone it held.
//!
//! Deliveries made for this node by others (the cluster bus, a refill after an ACK)
//! carry no pressure of a local publisher; the outbox limit bounds those.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::outbox::Outbox;

#[derive(Debug, Default)]
pub struct Pressure {
    /// Whether any outbox is noted: read once per frame by the session, so it is an
    /// atomic rather than the lock.
    raised: AtomicBool,
    outboxes: Mutex<Vec<Arc<Outbox>>>,
}

impl Pressure {
    /// A delivery of this publisher's left `outbox` above its high-water mark.
    ///
    /// O(1), no search for a duplicate: a fan-out can note a thousand outboxes for
    /// one message, and a publisher stops after the frame that noted any, so an
    /// outbox is rarely noted twice (waiting for it again costs one lock).
    pub fn note(&self, outbox: &Arc<Outbox>) {
        let mut held = self.outboxes.lock();
        held.push(outbox.clone());
        self.raised.store(true, Ordering::Release);
    }

    /// Whether the publisher should wait for [`Pressure::relieved`] before it sends more.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Resolves once every noted outbox is relieved (outboxes noted meanwhile too).
    pub async fn relieved(&self) {
        loop {
            let outbox = {
                // `raised` changes under the lock, so it never says raised over an
                // empty list (a waiter would never be woken) or the other way round.
                let held = self.outboxes.lock();
                match held.last() {
                    Some(o) => o.clone(),
                    None => {
                        self.raised.store(false, Ordering::Release);
                        return;
                    }
                }
            };
            outbox.relieved().await;
            // Removed only once relieved, so a wait dropped half-way (the session's
            // select picks another branch) leaves the outbox noted. It is the last
            // one unless more were noted meanwhile.
            let mut held = self.outboxes.lock();
            match held.last() {
                Some(last) if Arc::ptr_eq(last, &outbox) => {
                    held.pop();
                }
                _ => held.retain(|o| !Arc::ptr_eq(o, &outbox)),
            }
        }
    }

    /// Like [`Pressure::relieved`], but gives up after `bound`; `false` if it did.
    /// The outboxes stay noted: a later wait picks them up again.
    pub async fn relieved_within(&self, bound: std::time::Duration) -> bool {
        tokio::time::timeout(bound, self.relieved()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::OutFrame;
    use bytes::Bytes;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn waits_for_every_noted_outbox() {
        let (a, b) = (
            Arc::new(Outbox::paced(1000, 10, 5)),
            Arc::new(Outbox::paced(1000, 10, 5)),
        );
        let frame = || OutFrame::text(Bytes::from(vec![b'x'; 20]));
        let p = Arc::new(Pressure::default());
        assert!(!p.is_raised());
        assert!(p.relieved().now_or_never().is_some(), "nothing noted");
        for o in [&a, &b] {
            o.push(frame()).unwrap();
            p.note(o);
        }
        p.note(&a);
        assert!(p.is_raised());
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.relieved().await }
        });
        a.drain(&mut Vec::new());
        a.written(20);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "b is still above its low-water mark");
        b.close();
        waiter.await.unwrap();
        assert!(!p.is_raised());
    }
}

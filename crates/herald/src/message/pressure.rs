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

use futures_util::future::BoxFuture;
use parking_lot::Mutex;

#[derive(Debug, Default)]
pub struct Pressure {
    /// Whether any outbox is noted: read once per frame by the session, so it is an
    /// atomic rather than the lock.
    raised: AtomicBool,
    outboxes: Mutex<Vec<Arc<dyn Relief>>>,
}

/// A backlog a publisher can wait on: a subscriber's outbox (`broker::Outbox`).
pub trait Relief: Send + Sync + std::fmt::Debug {
    /// Resolves once the backlog is under its low-water mark, or closed.
    fn relief(self: Arc<Self>) -> BoxFuture<'static, ()>;
}

impl Pressure {
    /// A delivery of this publisher's left `outbox` above its high-water mark.
    ///
    /// O(1), no search for a duplicate: a fan-out can note a thousand outboxes for
    /// one message, and a publisher stops after the frame that noted any, so an
    /// outbox is rarely noted twice (waiting for it again costs one lock).
    pub fn note(&self, outbox: Arc<dyn Relief>) {
        let mut held = self.outboxes.lock();
        held.push(outbox);
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
            outbox.clone().relief().await;
            // Removed only once relieved, so a wait dropped half-way (the session's
            // select picks another branch) leaves the outbox noted. It is the last
            // one unless more were noted meanwhile.
            let mut held = self.outboxes.lock();
            match held.last() {
                Some(last) if same(last, &outbox) => {
                    held.pop();
                }
                _ => held.retain(|o| !same(o, &outbox)),
            }
        }
    }

    /// Like [`Pressure::relieved`], but gives up after `bound`; `false` if it did.
    /// The outboxes stay noted: a later wait picks them up again.
    pub async fn relieved_within(&self, bound: std::time::Duration) -> bool {
        tokio::time::timeout(bound, self.relieved()).await.is_ok()
    }
}

/// The same backlog: compared by address alone (one type's vtable may be duplicated
/// across codegen units).
fn same(a: &Arc<dyn Relief>, b: &Arc<dyn Relief>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

//! Where a subscription is in its destination's history, as far as its client could
//! have seen: the point a resumed session replays from.
//!
//! A delivery is queued on the session's outbox long before it reaches the client,
//! and what is still queued when a connection breaks never does. So each delivery
//! with a history position is noted with where its frame ends in the session's output
//! ([`super::Outbox::push_counted`]); the connection counts the bytes it wrote, and
//! when the session ends takes back what the peer's TCP never acknowledged
//! ([`super::Outbox::written_bytes`], [`super::Outbox::unwritten`]). The last noted
//! delivery whose frame was written whole is what the client saw last. Notes of
//! written frames are dropped as new ones come (all but the last, a batch at a
//! time), so what is kept is bounded by what the outbox holds.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::message::Position;

/// Notes kept before those of written frames are dropped.
const PRUNE_EVERY: usize = 32;

/// A subscription's recent deliveries: (where the frame ends in the output, offset),
/// oldest first,
/// all of one epoch.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    epoch: Option<Arc<str>>,
    sent: VecDeque<(u64, u64)>,
}

impl Marks {
    /// The delivery at `p` went out in a frame ending at `seq`; `written()` says how
    /// many bytes are written. It is asked only every [`PRUNE_EVERY`] notes: the
    /// count is the connection task's, on another core, and a fan-out notes one
    /// delivery per subscriber.
    pub(crate) fn note(&mut self, seq: u64, p: &Position, written: impl FnOnce() -> u64) {
        let same = self
            .epoch
            .as_ref()
            .is_some_and(|e| Arc::ptr_eq(e, &p.epoch) || **e == *p.epoch);
        if !same {
            // A new epoch: offsets of the old one say nothing about it.
            self.epoch = Some(p.epoch.clone());
            self.sent.clear();
        }
        if self.sent.len() >= PRUNE_EVERY {
            let written = written();
            while self.sent.len() >= 2 && self.sent[1].0 <= written {
                self.sent.pop_front();
            }
        }
        self.sent.push_back((seq, p.offset));
    }

    /// The position of the last delivery written, once `written` bytes are; when
    /// none was written yet, the one before the first noted. `None`: nothing noted.
    pub(crate) fn seen(&self, written: u64) -> Option<Position> {
        let epoch = self.epoch.clone()?;
        let offset = match self.sent.iter().take_while(|(s, _)| *s <= written).last() {
            Some((_, offset)) => *offset,
            None => self.sent.front()?.1.saturating_sub(1),
        };
        Some(Position { offset, epoch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, epoch: &str) -> Position {
        Position {
            offset,
            epoch: epoch.into(),
        }
    }

    #[test]
    fn the_last_written_delivery_is_what_was_seen() {
        let mut m = Marks::default();
        assert_eq!(m.seen(0), None);
        m.note(3, &at(10, "e"), || 0);
        m.note(4, &at(11, "e"), || 0);
        m.note(6, &at(12, "e"), || 0);
        assert_eq!(
            m.seen(0),
            Some(at(9, "e")),
            "nothing written: before the first"
        );
        assert_eq!(m.seen(4), Some(at(11, "e")));
        assert_eq!(m.seen(5), Some(at(11, "e")));
        assert_eq!(m.seen(6), Some(at(12, "e")));
    }

    #[test]
    fn written_notes_are_dropped_but_the_last() {
        let mut m = Marks::default();
        for i in 1..=1000 {
            m.note(i, &at(i, "e"), || i - 1);
        }
        assert!(
            m.sent.len() <= PRUNE_EVERY + 1,
            "{} notes kept",
            m.sent.len()
        );
        assert_eq!(m.seen(999), Some(at(999, "e")));
    }

    #[test]
    fn a_new_epoch_starts_over() {
        let mut m = Marks::default();
        m.note(1, &at(50, "old"), || 0);
        m.note(2, &at(1, "new"), || 1);
        assert_eq!(m.seen(1), Some(at(0, "new")));
        assert_eq!(m.seen(2), Some(at(1, "new")));
    }
}

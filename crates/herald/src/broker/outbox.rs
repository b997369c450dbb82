//! A session's bounded outbound queue.
//!
//! Publishers push already-encoded frames and never wait inside a push. Two marks
//! govern how much may wait for one client:
//!
//! - Above the *high-water mark* a push still succeeds but says so
//!   ([`Level::High`]): the publisher is asked to stop sending more until the outbox
//!   is *relieved* — back under its low-water mark, or closed ([`Outbox::relieved`],
//!   [`crate::message::Pressure`]). A reader that keeps reading, however slowly,
//!   therefore loses nothing of a burst: its publishers are paced to it.
//! - Past the *limit* (`stomp.outbound_queue`) — reached only by what cannot be paced:
//!   other nodes' messages, many publishers at once — the outbox marks itself
//!   overflowed and refuses more, and the session's connection task closes it as a
//!   slow consumer.
//!
//! What the connection task drained and is still writing counts until the write is
//! done ([`Outbox::written`]): a client that does not read holds its publishers back
//! until its connection task gives up on it (`stomp.send_timeout` without progress).
//! The connection task is the only reader; it drains everything pending at once so
//! the transport can write it in one go.
//!
//! A push wakes the connection task only when the outbox goes from empty to
//! non-empty (or overflows): frames pushed after that are taken by the same drain, so
//! a fan-out pays one lock and no wake-up per delivery to a busy subscriber. A task
//! whose wake-up was used up elsewhere calls [`Outbox::wake_if_pending`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::message::{OutFrame, Relief};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The session is closing; the frame was not queued.
    Closed,
    /// The limit was passed just now or earlier; the session is being closed.
    Overflow,
    /// The subscription may not receive this message (access rules).
    Refused,
    /// The subscription's prefetch window is full: it takes no more until an ACK.
    Full,
}

/// How full an outbox is after a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Normal,
    /// Above the high-water mark: the publisher should wait for [`Outbox::relieved`].
    High,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<OutFrame>,
    bytes: usize,
    /// Bytes of every frame ever queued: where the last one ends in the session's
    /// output.
    pushed: u64,
    /// Drained by the connection task and not yet written, when more than the
    /// low-water mark (a smaller batch is not worth a second lock per write: it
    /// is written by the next time anyone looks).
    in_flight: usize,
    /// A push went above the high-water mark since the outbox was last relieved:
    /// publishers may be waiting.
    pressed: bool,
    overflowed: bool,
    closed: bool,
    /// Why the session is closed as a slow consumer, when not for this byte limit.
    reason: Option<String>,
}

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    /// Publishers waiting for the outbox to be relieved.
    relief: Notify,
    limit: usize,
    high_water: usize,
    low_water: usize,
    /// Bytes the connection wrote to the transport, of frames in the order they were
    /// queued: a frame ending at `n` ([`Outbox::push_counted`]) went out once this is
    /// `n` or more. Once the session ends, less what the peer never acknowledged
    /// ([`Outbox::unwritten`]). A resumed session starts after what was written.
    written_bytes: AtomicU64,
}

/// What a drain found.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    Frames,
    Overflowed,
}

impl Outbox {
    /// An outbox that refuses past `limit` and never asks publishers to wait.
    pub fn new(limit: usize) -> Self {
        Outbox::paced(limit, limit, limit)
    }

    /// An outbox that asks publishers to wait above `high_water` until it is back
    /// under `low_water`, and refuses past `limit`.
    pub fn paced(limit: usize, high_water: usize, low_water: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            relief: Notify::new(),
            limit,
            high_water: high_water.min(limit),
            low_water: low_water.min(high_water),
            written_bytes: AtomicU64::new(0),
        }
    }

    /// Queues a frame subject to the byte limit; [`Level::High`] asks the publisher
    /// to wait for [`Outbox::relieved`] before it sends more.
    pub fn push(&self, frame: OutFrame) -> Result<Level, PushError> {
        self.push_counted(frame).map(|(level, _)| level)
    }

    /// [`Outbox::push`], also giving where the frame ends in the session's output,
    /// which [`Outbox::written_bytes`] reaches once the frame is written.
    pub fn push_counted(&self, frame: OutFrame) -> Result<(Level, u64), PushError> {
        let level;
        let seq;
        {
            let mut s = self.state.lock();
            if s.closed {
                return Err(PushError::Closed);
            }
            if s.overflowed {
                return Err(PushError::Overflow);
            }
            let held = s.bytes + s.in_flight + frame.bytes.len();
            if held > self.limit {
                s.overflowed = true;
                s.frames.clear();
                s.bytes = 0;
                drop(s);
                self.notify.notify_one();
                self.relief.notify_waiters();
                return Err(PushError::Overflow);
            }
            level = if held > self.high_water {
                s.pressed = true;
                Level::High
            } else {
                Level::Normal
            };
            let was_empty = s.frames.is_empty();
            let frame_len = frame.bytes.len() as u64;
            s.bytes += frame.bytes.len();
            s.frames.push_back(frame);
            s.pushed += frame_len;
            seq = s.pushed;
            if !was_empty {
                // The wake-up of the first pending frame has not been drained yet.
                return Ok((level, seq));
            }
        }
        self.notify.notify_one();
        Ok((level, seq))
    }

    /// Queues a reply of the session's own (CONNECTED, RECEIPT, ERROR), which the
    /// byte limit does not apply to: the client asked for it.
    pub fn push_reply(&self, frame: OutFrame) {
        let mut s = self.state.lock();
        if s.closed {
            return;
        }
        let was_empty = s.frames.is_empty();
        s.bytes += frame.bytes.len();
        s.pushed += frame.bytes.len() as u64;
        s.frames.push_back(frame);
        drop(s);
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Moves every pending frame into `into`; more than the low-water mark of them
    /// count against the marks until [`Outbox::written`].
    pub fn drain(&self, into: &mut Vec<OutFrame>) -> Drained {
        let mut s = self.state.lock();
        if s.overflowed {
            return Drained::Overflowed;
        }
        s.in_flight = if s.bytes > self.low_water { s.bytes } else { 0 };
        s.bytes = 0;
        into.extend(s.frames.drain(..));
        let relieved = s.pressed && s.in_flight == 0;
        if relieved {
            s.pressed = false;
        }
        drop(s);
        if relieved {
            self.relief.notify_waiters();
        }
        Drained::Frames
    }

    /// The `bytes` drained last are written: publishers waiting for room are let go
    /// once what is left is under the low-water mark. No lock for a batch the marks
    /// did not count.
    pub fn written(&self, bytes: usize) {
        self.written_bytes
            .fetch_add(bytes as u64, Ordering::Release);
        if bytes <= self.low_water {
            return;
        }
        let mut s = self.state.lock();
        s.in_flight = 0;
        let relieved = s.pressed && s.bytes <= self.low_water;
        if relieved {
            s.pressed = false;
        }
        drop(s);
        if relieved {
            self.relief.notify_waiters();
        }
    }

    /// Bytes of frames, as [`Outbox::written`] takes them.
    pub fn bytes_of(frames: &[OutFrame]) -> usize {
        frames.iter().map(|f| f.bytes.len()).sum()
    }

    /// Resolves once the outbox is under its low-water mark, or closed or overflowed
    /// (a closed client holds no one back).
    pub async fn relieved(&self) {
        loop {
            let notified = self.relief.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.state.lock();
                if s.closed || s.overflowed || s.bytes + s.in_flight <= self.low_water {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Waits until something was pushed (or the outbox overflowed).
    pub async fn ready(&self) {
        self.notify.notified().await
    }

    pub fn is_overflowed(&self) -> bool {
        self.state.lock().overflowed
    }

    /// Overflows the outbox for another budget of the session's (a full prefetch
    /// window on a topic): the connection closes with ERROR `reason`.
    pub fn overflow_with(&self, reason: String) {
        let mut s = self.state.lock();
        if s.closed || s.overflowed {
            return;
        }
        s.overflowed = true;
        s.reason = Some(reason);
        s.frames.clear();
        s.bytes = 0;
        drop(s);
        self.notify.notify_one();
        self.relief.notify_waiters();
    }

    /// The ERROR message of an overflow: its own reason, or the byte limit's.
    pub fn overflow_reason(&self) -> String {
        self.state.lock().reason.clone().unwrap_or_else(|| {
            format!(
                "slow consumer: more than {} bytes waiting to be sent to this session",
                self.limit
            )
        })
    }

    /// Refuses every later push; called once the session is ending.
    pub fn close(&self) {
        let mut s = self.state.lock();
        s.closed = true;
        s.frames = VecDeque::new();
        s.bytes = 0;
        s.in_flight = 0;
        drop(s);
        self.relief.notify_waiters();
    }

    /// Re-arms [`Outbox::ready`] when frames wait (their wake-up was consumed elsewhere).
    pub fn wake_if_pending(&self) {
        if !self.state.lock().frames.is_empty() {
            self.notify.notify_one();
        }
    }

    /// How many bytes of frames were written so far ([`Outbox::push_counted`]'s
    /// numbers).
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes.load(Ordering::Acquire)
    }

    /// The session ended with `bytes` of its output never acknowledged by the peer
    /// (what the transport wrote includes its own framing and heart-beats, so this
    /// takes back at least the frames that were lost, never one that arrived).
    pub fn unwritten(&self, bytes: u64) {
        let _ = self
            .written_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(w.saturating_sub(bytes))
            });
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Relief for Outbox {
    fn relief(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.relieved().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Pressure;
    use bytes::Bytes;
    use futures_util::FutureExt;
    use std::sync::Arc;

    fn f(n: usize) -> OutFrame {
        OutFrame::text(Bytes::from(vec![b'x'; n]))
    }

    #[test]
    fn overflow_refuses_and_is_sticky() {
        let o = Outbox::new(10);
        assert!(o.push(f(6)).is_ok());
        assert_eq!(o.push(f(6)), Err(PushError::Overflow));
        assert_eq!(o.push(f(1)), Err(PushError::Overflow));
        let mut v = vec![];
        assert_eq!(o.drain(&mut v), Drained::Overflowed);
    }

    #[test]
    fn only_the_first_pending_frame_and_an_overflow_wake_the_reader() {
        use futures_util::FutureExt;
        let o = Outbox::new(20);
        let woken = |o: &Outbox| o.ready().now_or_never().is_some();
        assert!(!woken(&o));
        o.push(f(1)).unwrap();
        assert!(woken(&o), "the first frame wakes the reader");
        o.push(f(1)).unwrap();
        o.push_reply(f(1));
        assert!(!woken(&o), "frames behind it, not drained yet, do not");
        let mut v = vec![];
        o.drain(&mut v);
        assert_eq!(v.len(), 3);
        o.push_reply(f(1));
        assert!(woken(&o), "after a drain the next frame wakes it again");
        o.push(f(1)).unwrap();
        assert!(!woken(&o));
        assert_eq!(o.push(f(30)), Err(PushError::Overflow));
        assert!(woken(&o), "an overflow always wakes it");
        // A wake-up used up elsewhere is re-armed while frames wait.
        let o = Outbox::new(20);
        o.push(f(1)).unwrap();
        assert!(woken(&o));
        o.wake_if_pending();
        assert!(woken(&o));
    }

    #[test]
    fn drain_resets_the_count_and_close_refuses() {
        let o = Outbox::new(10);
        o.push(f(6)).unwrap();
        let mut v = vec![];
        assert_eq!(o.drain(&mut v), Drained::Frames);
        assert_eq!(v.len(), 1);
        o.written(Outbox::bytes_of(&v));
        o.push(f(6)).unwrap();
        o.close();
        assert_eq!(o.push(f(1)), Err(PushError::Closed));
    }

    #[test]
    fn what_is_being_written_counts_until_it_is_written() {
        let o = Outbox::paced(10, 5, 2);
        o.push(f(6)).unwrap();
        o.drain(&mut Vec::new());
        assert_eq!(
            o.push(f(6)),
            Err(PushError::Overflow),
            "a write in progress still holds its bytes"
        );
    }

    #[tokio::test]
    async fn above_the_high_water_mark_publishers_wait_until_the_low_water_mark() {
        use futures_util::FutureExt;
        let o = Arc::new(Outbox::paced(100, 20, 10));
        assert_eq!(o.push(f(15)), Ok(Level::Normal));
        assert_eq!(o.push(f(15)), Ok(Level::High), "30 bytes are above 20");
        assert!(o.relieved().now_or_never().is_none());
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.relieved().await }
        });
        let mut v = vec![];
        o.drain(&mut v);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "drained is not written");
        o.push(f(15)).unwrap();
        o.written(Outbox::bytes_of(&v));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "15 bytes left are above 10");
        v.clear();
        o.drain(&mut v);
        o.written(Outbox::bytes_of(&v));
        waiter.await.unwrap();
        assert!(o.relieved().now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_closed_or_overflowed_outbox_holds_no_one_back() {
        use futures_util::FutureExt;
        let o = Outbox::paced(100, 20, 10);
        o.push(f(50)).unwrap();
        assert!(o.relieved().now_or_never().is_none());
        o.close();
        assert!(o.relieved().now_or_never().is_some());
        let o = Outbox::paced(100, 20, 10);
        o.push(f(50)).unwrap();
        assert_eq!(o.push(f(60)), Err(PushError::Overflow));
        assert!(o.relieved().now_or_never().is_some());
    }

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
            p.note(o.clone());
        }
        p.note(a.clone());
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

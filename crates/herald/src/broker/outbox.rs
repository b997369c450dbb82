//! A session's bounded outbound queue.
//!
//! Publishers push already-encoded frames and never wait: when the queued bytes would
//! pass the limit the outbox marks itself overflowed and refuses more, and the session's
//! connection task closes it as a slow consumer. The connection task is the only reader;
//! it drains everything pending at once so the transport can write it in one go.
//!
//! A push wakes the connection task only when the outbox goes from empty to
//! non-empty (or overflows): frames pushed after that are taken by the same drain, so
//! a fan-out pays one lock and no wake-up per delivery to a busy subscriber. A task
//! whose wake-up was used up elsewhere calls [`Outbox::wake_if_pending`].

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// One encoded frame, with whether its bytes are valid UTF-8 (a WebSocket text
/// message) or not (a binary message).
#[derive(Clone, Debug)]
pub struct OutFrame {
    pub bytes: Bytes,
    pub text: bool,
}

impl OutFrame {
    pub fn text(bytes: Bytes) -> Self {
        OutFrame { bytes, text: true }
    }
}

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

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<OutFrame>,
    bytes: usize,
    overflowed: bool,
    closed: bool,
    /// Why the session is closed as a slow consumer, when not for this byte limit.
    reason: Option<String>,
}

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    limit: usize,
}

/// What a drain found.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    Frames,
    Overflowed,
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            limit,
        }
    }

    /// Queues a frame subject to the byte limit.
    pub fn push(&self, frame: OutFrame) -> Result<(), PushError> {
        {
            let mut s = self.state.lock();
            if s.closed {
                return Err(PushError::Closed);
            }
            if s.overflowed {
                return Err(PushError::Overflow);
            }
            if s.bytes + frame.bytes.len() > self.limit {
                s.overflowed = true;
                s.frames.clear();
                s.bytes = 0;
                drop(s);
                self.notify.notify_one();
                return Err(PushError::Overflow);
            }
            let was_empty = s.frames.is_empty();
            s.bytes += frame.bytes.len();
            s.frames.push_back(frame);
            if !was_empty {
                // The wake-up of the first pending frame has not been drained yet.
                return Ok(());
            }
        }
        self.notify.notify_one();
        Ok(())
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
        s.frames.push_back(frame);
        drop(s);
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Moves every pending frame into `into`.
    pub fn drain(&self, into: &mut Vec<OutFrame>) -> Drained {
        let mut s = self.state.lock();
        if s.overflowed {
            return Drained::Overflowed;
        }
        s.bytes = 0;
        into.extend(s.frames.drain(..));
        Drained::Frames
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
    }

    /// Re-arms [`Outbox::ready`] when frames wait (their wake-up was consumed elsewhere).
    pub fn wake_if_pending(&self) {
        if !self.state.lock().frames.is_empty() {
            self.notify.notify_one();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        o.push(f(6)).unwrap();
        o.close();
        assert_eq!(o.push(f(1)), Err(PushError::Closed));
    }
}

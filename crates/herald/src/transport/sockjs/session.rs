//! The state of a session of the HTTP transports, shared by its application's task
//! and its requests: what each side has not read yet, which receiving request is
//! attached, and how it ended.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};

use super::service::Opener;
use super::{ANOTHER_CONNECTION, BUSY_GRACE, INTERRUPTED, Options, frames};

/// The session state shared by its task and its HTTP requests.
pub(super) struct Session {
    pub(super) state: Mutex<SessionState>,
    /// Wakes the application (a message arrived, a receiver came or went, it closed).
    pub(super) to_app: Notify,
    /// Wakes the attached receiver (messages to send, closed).
    pub(super) to_client: Notify,
    /// Wakes sending requests waiting for the application to take their messages,
    /// and receiving requests waiting for the attached one to leave.
    pub(super) to_senders: Notify,
    pub(super) queue_limit: usize,
    pub(super) disconnect_delay: Duration,
    /// Who opened it (`None`: an endpoint that admits nothing).
    pub(super) opener: Option<Opener>,
}

pub(super) struct SessionState {
    pub(super) inbound: VecDeque<String>,
    pub(super) inbound_bytes: usize,
    /// Messages received, taken by the application, and taken before its latest
    /// read (so handled): a sending request answers once its messages are handled.
    pub(super) received: u64,
    pub(super) taken: u64,
    pub(super) handled: u64,
    pub(super) outbound: Vec<String>,
    pub(super) outbound_bytes: usize,
    /// The attached receiving request, if any.
    pub(super) receiver: Option<u64>,
    pub(super) receivers: u64,
    /// The `o` frame went out.
    pub(super) opened: bool,
    pub(super) closed: Option<(u16, String)>,
    /// When the last receiver left (or the session opened).
    pub(super) detached_at: Instant,
}

impl Session {
    pub(super) fn new(opts: &Options, opener: Option<Opener>) -> Session {
        Session {
            state: Mutex::new(SessionState {
                inbound: VecDeque::new(),
                inbound_bytes: 0,
                received: 0,
                taken: 0,
                handled: 0,
                outbound: Vec::new(),
                outbound_bytes: 0,
                receiver: None,
                receivers: 0,
                opened: false,
                closed: None,
                detached_at: Instant::now(),
            }),
            to_app: Notify::new(),
            to_client: Notify::new(),
            to_senders: Notify::new(),
            queue_limit: opts.queue_limit,
            disconnect_delay: opts.disconnect_delay,
            opener,
        }
    }

    pub(super) fn close_with(&self, (code, reason): (u16, &str)) {
        {
            let mut s = self.state.lock();
            if s.closed.is_none() {
                s.closed = Some((code, reason.to_owned()));
            }
        }
        self.to_client.notify_one();
        self.to_app.notify_one();
        self.to_senders.notify_waiters();
    }

    /// Queues messages from the client for the application, and waits (a second at
    /// most) until it has handled them: messages are handled in order as they arrive,
    /// and a client that sends faster than the application reads is slowed down.
    pub(super) async fn receive(&self, msgs: Vec<String>) -> Result<(), &'static str> {
        let seq = {
            let mut s = self.state.lock();
            if s.closed.is_some() {
                return Ok(());
            }
            let bytes: usize = msgs.iter().map(String::len).sum();
            if s.inbound_bytes + bytes > self.queue_limit {
                return Err("Too much data waiting for the session.");
            }
            s.inbound_bytes += bytes;
            s.received += msgs.len() as u64;
            s.inbound.extend(msgs);
            s.received
        };
        self.to_app.notify_one();
        let handled = async {
            loop {
                let notified = self.to_senders.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let s = self.state.lock();
                    if s.handled >= seq || s.closed.is_some() {
                        return;
                    }
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), handled).await;
        Ok(())
    }

    /// Attaches a receiving request; `Err` carries the frame to answer it with
    /// instead (another receiver is attached, or the session is closed). A client
    /// that hung up on its previous request and opened the next at once may be seen
    /// before its hang-up is (another connection's task notices it): so a busy
    /// session is given a moment for its receiver to leave.
    pub(super) async fn attach(self: &Arc<Self>) -> Result<Receiver, String> {
        let mut waited = false;
        loop {
            let left = self.to_senders.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            match self.try_attach() {
                Err(busy) if !waited && busy.starts_with("c[2010,") => {
                    waited = true;
                    let _ = tokio::time::timeout(BUSY_GRACE, left).await;
                }
                other => return other,
            }
        }
    }

    pub(super) fn try_attach(self: &Arc<Self>) -> Result<Receiver, String> {
        let mut s = self.state.lock();
        if s.opened
            && let Some((code, reason)) = &s.closed
        {
            return Err(frames::close(*code, reason));
        }
        if s.receiver.is_some() {
            let (code, reason) = ANOTHER_CONNECTION;
            return Err(frames::close(code, reason));
        }
        s.receivers += 1;
        s.receiver = Some(s.receivers);
        drop(s);
        self.to_app.notify_one();
        Ok(Receiver {
            session: self.clone(),
            attached: true,
        })
    }

    /// Resolves once no receiver has been attached for `delay`.
    pub(super) async fn unattached_for(&self, delay: Duration) {
        loop {
            let deadline = {
                let s = self.state.lock();
                s.receiver.is_none().then(|| s.detached_at + delay)
            };
            match deadline {
                Some(d) if Instant::now() >= d => return,
                Some(d) => {
                    tokio::select! {
                        _ = self.to_app.notified() => {}
                        _ = sleep_until(d) => {}
                    }
                }
                None => self.to_app.notified().await,
            }
        }
    }
}

/// A receiving request's hold on its session. Dropped without [`Receiver::finish`]
/// (the client went away mid-request), it closes the session: messages may be lost.
pub(super) struct Receiver {
    pub(super) session: Arc<Session>,
    pub(super) attached: bool,
}

pub(super) enum Next {
    /// `o`, `h` or `a[...]`.
    Frame(String),
    /// The close frame: the last one.
    Close(String),
}

impl Receiver {
    /// The next frame for the client; `h` after `heartbeat` of silence.
    pub(super) async fn next(&mut self, heartbeat: Duration) -> Next {
        let deadline = Instant::now() + heartbeat;
        loop {
            {
                let mut s = self.session.state.lock();
                if !s.opened {
                    s.opened = true;
                    return Next::Frame(frames::OPEN.into());
                }
                if !s.outbound.is_empty() {
                    let msgs = std::mem::take(&mut s.outbound);
                    s.outbound_bytes = 0;
                    drop(s);
                    // A writer may be waiting for room.
                    self.session.to_app.notify_one();
                    return Next::Frame(frames::messages(&msgs));
                }
                if let Some((code, reason)) = &s.closed {
                    return Next::Close(frames::close(*code, reason));
                }
            }
            tokio::select! {
                _ = self.session.to_client.notified() => {}
                _ = sleep_until(deadline) => return Next::Frame(frames::HEARTBEAT.into()),
            }
        }
    }

    /// The request ended normally: the session waits for the next one.
    pub(super) fn finish(mut self) {
        self.detach(false);
    }

    pub(super) fn detach(&mut self, interrupted: bool) {
        if !std::mem::take(&mut self.attached) {
            return;
        }
        {
            let mut s = self.session.state.lock();
            s.receiver = None;
            s.detached_at = Instant::now();
            if interrupted && s.closed.is_none() {
                let (code, reason) = INTERRUPTED;
                s.closed = Some((code, reason.to_owned()));
            }
        }
        self.session.to_app.notify_one();
        self.session.to_senders.notify_waiters();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.detach(true);
    }
}

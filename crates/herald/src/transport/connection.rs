//! The one connection loop, whatever the session speaks: STOMP ([`super::stomp`]) or
//! a plain-socket endpoint's JSON ([`super::plain`]).
//!
//! A [`Protocol`] turns bytes read into work and says how to end; everything else is
//! here, once: the outbox drained into one write watched for progress (a slow consumer
//! is closed), producer flow control, one application call at a time with reading
//! paused meanwhile, the frame rate, the heart-beat / ping, CONNECT and token-expiry
//! timer, shutdown and kicks, the session registry, presence, metrics, and at most one
//! final message before the close.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::{Instant, sleep_until, timeout};

use super::Transport;
use super::progress::{self, write_watched};
use crate::admission::Permit;
use crate::broker::outbox::Drained;
use crate::broker::{OutFrame, Outbox, Pressure};
use crate::error::{ErrorKind, StompError};
use crate::node::Node;
use crate::ops::metrics;
use crate::ops::sessions::SessionEntry;
use crate::session::Heartbeat;

/// Time allowed for the last frames (an ERROR, a RECEIPT) before closing.
const FINAL_WRITE: Duration = Duration::from_secs(2);

/// The presence scope of connected STOMP sessions: member = session id, info = user.
pub(crate) const PRESENCE_USERS: &str = "users";

/// What a session speaks on top of a [`Transport`]: the loop reads, the protocol
/// handles; the loop writes what the protocol queued on its outbox.
pub(crate) trait Protocol: Send {
    /// Work that runs while reading waits (an application call), one at a time.
    type Call: Future<Output: Send> + Unpin + Send;

    /// Handles what `buf` holds (whole frames or messages; a partial one stays).
    /// Synchronous: what must wait (STOMP's CONNECT, which authenticates) says
    /// [`Input::Pending`] and is awaited through [`Protocol::resume`], boxed, so the
    /// loop's future — every connection's task — stays small.
    fn input(&mut self, buf: &mut BytesMut) -> Result<Input, StompError>;
    /// Finishes what [`Protocol::input`] left pending.
    fn resume(&mut self) -> Pin<Box<dyn Future<Output = Result<Input, StompError>> + Send + '_>>;
    /// The next call to run, if any.
    fn next_call(&mut self) -> Option<Self::Call>;
    /// A call ended; `Err` ends the session with that error.
    fn finish_call(
        &mut self,
        call: Self::Call,
        output: <Self::Call as Future>::Output,
    ) -> Result<(), StompError>;
    /// While a subscriber this session published to has too much waiting.
    fn paced(&self) -> Option<&Arc<Pressure>>;
    /// The last message for a session ending with `err`.
    fn final_frame(&self, err: &StompError) -> OutFrame;
    /// The close code and reason to close the transport with (`None`: a plain close).
    fn close_reason(&self, err: Option<&StompError>) -> Option<(u16, String)>;
    /// The session is over (`err`: why, when it was not the client's doing):
    /// subscriptions go, nothing more is queued.
    fn close(&mut self, err: Option<&StompError>);
    /// What is left to do once the connection wrote its last frames (a STOMP
    /// session parks itself for resuming), awaited within the final write's time.
    fn farewell(&mut self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        None
    }
    /// When the token expired, the time left on a fresh one handed in since.
    fn refreshed_expiry(&self) -> Option<Duration> {
        None
    }
}

/// What came of handling input.
pub(crate) enum Input {
    /// Everything whole was handled.
    Done,
    /// Whole frames are left in the buffer: handle them before reading more.
    Backlog,
    /// The session is established (STOMP CONNECT, or a plain session at once).
    Connected(Connected),
    /// The client said goodbye: flush what is queued and close.
    Close,
    /// Handling waits for [`Protocol::resume`]; what follows in the buffer comes after.
    Pending,
}

/// An established session's terms.
pub(crate) struct Connected {
    pub user: String,
    pub heartbeat: Heartbeat,
    /// How long until the principal's token expires.
    pub expires_in: Option<Duration>,
    /// Whether the session counts in the `users` presence scope.
    pub presence: bool,
}

/// Why a connection ended.
enum End {
    /// The peer went away or DISCONNECTed; nothing more to say.
    Quiet,
    /// Say this, then close.
    Error(StompError),
    /// Shutdown found a write the client does not read: nothing more can be written.
    Abandoned,
}

/// How a write of the outbox ended.
enum Written {
    Done(io::Result<()>),
    /// The client took nothing for `stomp.send_timeout` (a slow consumer).
    NoProgress,
    /// The outbox overflowed meanwhile (a slow consumer).
    Overflowed,
    /// Shutdown came and the write still did not finish.
    Stalled,
}

/// A connection's bookkeeping, undone when it ends: the session registry, presence,
/// the connection gauge, its place in the connection budgets.
pub(crate) struct Ended {
    node: Arc<Node>,
    entry: Arc<SessionEntry>,
    kind: &'static str,
    in_presence: bool,
    _permit: Option<Arc<Permit>>,
}

impl Ended {
    /// Registers the session `id` (shown by the admin API, ended by shutdown or a
    /// kick) and counts its connection.
    pub(crate) fn register(
        node: &Arc<Node>,
        id: &str,
        kind: &'static str,
        shutdown: &tokio_util::sync::CancellationToken,
        permit: Option<Arc<Permit>>,
    ) -> Ended {
        let entry = node.sessions.register(id, kind, shutdown);
        metrics::connection_opened(kind);
        Ended {
            node: node.clone(),
            entry,
            kind,
            in_presence: false,
            _permit: permit,
        }
    }

    pub(crate) fn entry(&self) -> &Arc<SessionEntry> {
        &self.entry
    }

    /// The session is established: who it is, in presence if it counts there; its
    /// heart-beats and when its token expires.
    fn connected(&mut self, c: Connected) -> (Heartbeat, Option<Instant>) {
        self.entry.set_user(&c.user);
        if c.presence {
            self.node
                .broker
                .bus()
                .presence_join(PRESENCE_USERS, &self.entry.id, &c.user);
            self.in_presence = true;
        }
        tracing::Span::current().record("user", c.user.as_str());
        metrics::session_connected();
        (c.heartbeat, c.expires_in.map(|left| Instant::now() + left))
    }
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.node.sessions.deregister(&self.entry.id);
        if self.in_presence {
            self.node
                .broker
                .bus()
                .presence_leave(PRESENCE_USERS, &self.entry.id);
        }
        metrics::connection_closed(self.kind);
    }
}

/// Runs one connection to its end. `opened`: the session is established from the
/// start (a plain endpoint's, authenticated at the handshake); else the protocol
/// must say [`Input::Connected`] within `stomp.connect_timeout`.
// Not an `async fn`: see the comment on the block.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run<T: Transport, P: Protocol>(
    mut transport: T,
    node: Arc<Node>,
    mut protocol: P,
    outbox: Arc<Outbox>,
    opened: Option<Box<Connected>>,
    // Dropped last, when the connection is closed.
    mut ended: Ended,
) -> impl Future<Output = ()> + Send {
    // An `async` block rather than an `async fn`: an async fn keeps a second copy of
    // its arguments (the transport and the session: ~900 bytes) in its future.
    async move {
        let entry = ended.entry.clone();
        // Cancelled by shutdown or by an administrator.
        let shutdown = entry.stop.clone();
        let cfg = &node.config.stomp;
        let progress = transport.progress();
        let mut buf = BytesMut::new();
        let mut pending: Vec<OutFrame> = Vec::new();

        let mut connected = false;
        let mut heartbeat = Heartbeat::default();
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        let timer = sleep_until(last_read + cfg.connect_timeout);
        tokio::pin!(timer);
        let mut timer_armed = true;
        // When the principal's token expires (set once connected).
        let mut expiry: Option<Instant> = None;
        if let Some(c) = opened {
            connected = true;
            (heartbeat, expiry) = ended.connected(*c);
            timer_armed = next_deadline(&heartbeat, last_read, last_write, expiry)
                .map(|d| timer.as_mut().reset(d))
                .is_some();
        }
        // The application call running now; reading pauses until it is done, so a
        // session's messages are handled in order and a flood of them stays bounded.
        let mut call: Option<P::Call> = protocol.next_call();
        // Whole frames are left in `buf` unhandled: the session had as many calls queued
        // as it may, and handling goes on once they are done.
        let mut backlog = false;

        // Producer flow control: while a subscriber this session published to has too
        // much waiting, nothing more is read (TCP pushes back on the client); writes,
        // heart-beats and application calls go on.
        let mut pausing = false;

        let end = 'conn: loop {
            let paused = protocol.paced().cloned();
            if paused.is_some() != pausing {
                pausing = !pausing;
                metrics::publisher_paused(pausing);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break End::Error(if entry.was_kicked() {
                    StompError::of(ErrorKind::Admin, "disconnected by an administrator")
                } else if entry.was_replaced() {
                    StompError::of(ErrorKind::Replaced, "session resumed on another connection")
                } else {
                    StompError::of(ErrorKind::Shutdown, "server shutting down")
                }),
                _ = outbox.ready() => {
                    if outbox.drain(&mut pending) == Drained::Overflowed {
                        break End::Error(StompError::of(ErrorKind::SlowConsumer, outbox.overflow_reason()));
                    }
                    // While a write is blocked by a client that does not read, publishers
                    // keep filling the outbox; its overflow ends the session at once, and
                    // so does shutdown: the write gets the final write's time to finish
                    // (an ERROR cannot follow half a frame), then the socket is dropped.
                    let written = {
                        let write = write_watched(&mut transport, &pending, progress.as_ref(), cfg.send_timeout);
                        tokio::pin!(write);
                        let done = |r: Result<io::Result<()>, progress::Stalled>| match r {
                            Ok(r) => Written::Done(r),
                            Err(progress::Stalled) => Written::NoProgress,
                        };
                        loop {
                            tokio::select! {
                                biased;
                                r = &mut write => break done(r),
                                _ = outbox.ready() => if outbox.is_overflowed() { break Written::Overflowed },
                                _ = shutdown.cancelled() => break match timeout(FINAL_WRITE, &mut write).await {
                                    Ok(r) => done(r),
                                    Err(_) => Written::Stalled,
                                },
                            }
                        }
                    };
                    match written {
                        Written::Overflowed => break End::Error(StompError::of(ErrorKind::SlowConsumer, outbox.overflow_reason())),
                        Written::Stalled => break End::Abandoned,
                        Written::Done(Ok(())) => {}
                        Written::Done(Err(_)) => break End::Quiet,
                        Written::NoProgress => break End::Error(StompError::of(ErrorKind::SlowConsumer, format!(
                            "slow consumer: nothing was read for {:?}", cfg.send_timeout
                        ))),
                    }
                    let bytes = Outbox::bytes_of(&pending);
                    metrics::bytes_out(bytes);
                    outbox.written(bytes);
                    pending.clear();
                    last_write = Instant::now();
                    // Frames pushed during the write consumed their wake-up above.
                    outbox.wake_if_pending();
                }
                result = async { call.as_mut().expect("guarded").await }, if call.is_some() => {
                    let done = call.take().expect("guarded");
                    if let Err(e) = protocol.finish_call(done, result) {
                        break End::Error(e);
                    }
                    call = protocol.next_call();
                }
                _ = async { paused.as_ref().expect("guarded").relieved().await }, if paused.is_some() => {
                    // The client's silence meanwhile was this server's: heart-beats it sent
                    // wait unread in the socket.
                    last_read = Instant::now();
                }
                read = async {
                    if backlog { Ok(true) } else { transport.read(&mut buf).await }
                }, if call.is_none() && paused.is_none() => {
                    match read {
                        Ok(true) if backlog => backlog = false,
                        Ok(true) => {
                            last_read = Instant::now();
                            entry.touch();
                            metrics::bytes_in(buf.len());
                        }
                        Ok(false) | Err(_) => break End::Quiet,
                    }
                    let unread = buf.len();
                    let step = match protocol.input(&mut buf) {
                        Ok(Input::Pending) => {
                            // What followed is handled after it, before reading more.
                            backlog = !buf.is_empty();
                            protocol.resume().await
                        }
                        step => step,
                    };
                    match step {
                        Ok(Input::Done | Input::Pending) => {}
                        Ok(Input::Backlog) => backlog = true,
                        Ok(Input::Connected(c)) => {
                            connected = true;
                            (heartbeat, expiry) = ended.connected(c);
                            timer_armed = next_deadline(&heartbeat, last_read, last_write, expiry)
                                .map(|d| timer.as_mut().reset(d))
                                .is_some();
                            // What followed the CONNECT in the same read.
                            backlog = !buf.is_empty();
                        }
                        Ok(Input::Close) => break 'conn End::Quiet,
                        Err(e) => break 'conn End::Error(e),
                    }
                    call = protocol.next_call();
                    if buf.is_empty() && buf.capacity() > 0 {
                        // An idle connection keeps no read buffer.
                        buf = BytesMut::new();
                    } else if !backlog && buf.len() < unread {
                        // A partial frame after whole ones: it moves to a buffer of its own
                        // size, as the one it came in may be far larger (a WebSocket message
                        // of up to 1 MiB) and would stay until the frame is complete.
                        buf = BytesMut::from(&buf[..]);
                    }
                }
                _ = &mut timer, if timer_armed => {
                    let now = Instant::now();
                    if !connected {
                        break End::Error(StompError::of(ErrorKind::ConnectTimeout, format!(
                            "no CONNECT frame within {:?}", cfg.connect_timeout
                        )));
                    }
                    if expiry.is_some_and(|e| now >= e) {
                        match protocol.refreshed_expiry().filter(|left| !left.is_zero()) {
                            Some(left) => expiry = Some(now + left),
                            None => break End::Error(StompError::of(ErrorKind::TokenExpired, "token expired: reconnect with a fresh token")),
                        }
                    }
                    if let Some(r) = heartbeat.receive
                        && paused.is_none()
                        && now.duration_since(last_read) >= r * 2 {
                            break End::Error(StompError::of(ErrorKind::HeartbeatTimeout, format!(
                                "heart-beat timeout: nothing received for {} ms (expected every {} ms)",
                                now.duration_since(last_read).as_millis(), r.as_millis()
                            )));
                        }
                    if let Some(s) = heartbeat.send
                        && now.duration_since(last_write) >= s {
                            // Bounded like any write, and given up at shutdown.
                            let beat = tokio::select! {
                                biased;
                                r = timeout(cfg.send_timeout, transport.heartbeat()) => Some(r),
                                _ = shutdown.cancelled() => None,
                            };
                            match beat {
                                Some(Ok(Ok(()))) => {}
                                Some(Ok(Err(_))) => break End::Quiet,
                                Some(Err(_)) => break End::Error(StompError::of(ErrorKind::SlowConsumer, format!(
                                    "slow consumer: a write took longer than {:?}", cfg.send_timeout
                                ))),
                                None => break End::Abandoned,
                            }
                            last_write = Instant::now();
                        }
                    timer_armed = next_deadline(&heartbeat, last_read, last_write, expiry)
                        .map(|d| timer.as_mut().reset(d))
                        .is_some();
                }
            }
        };

        if pausing {
            metrics::publisher_paused(false);
        }
        // Whatever the session queued last (a RECEIPT for DISCONNECT), then the ERROR.
        pending.clear();
        if outbox.drain(&mut pending) == Drained::Overflowed {
            pending.clear();
        }
        let err = match &end {
            End::Error(e) => Some(e),
            _ => None,
        };
        if let Some(e) = err {
            tracing::debug!(error = %e.message, "closing session with an error");
            metrics::error_frame(e.kind);
            if e.kind == ErrorKind::Auth {
                metrics::auth_failure("connect");
            }
            pending.push(protocol.final_frame(e));
        }
        let close_reason = protocol.close_reason(err);
        protocol.close(err);
        let farewell = protocol.farewell();
        if connected {
            metrics::session_ended();
        }
        let last_write = async {
            if matches!(end, End::Abandoned) {
                tracing::debug!("shutdown: the client does not read; dropping the connection");
                return false;
            }
            if pending.is_empty() {
                return true;
            }
            match timeout(FINAL_WRITE, transport.write(&pending)).await {
                Ok(Ok(())) => {
                    outbox.written(Outbox::bytes_of(&pending));
                    true
                }
                Ok(Err(_)) => true,
                // Not read: a polite close would wait as long again.
                Err(_) => false,
            }
        };
        let polite = last_write.await;
        if let Some(farewell) = farewell {
            // What the peer never acknowledged did not reach it: resumed, it comes again.
            if let Some(p) = &progress {
                outbox.unwritten(p.unacknowledged());
            }
            let _ = timeout(FINAL_WRITE, farewell).await;
        }
        if !polite {
            return;
        }
        let close = async {
            match &close_reason {
                Some((code, reason)) => transport.close_with(*code, reason).await,
                None => transport.close().await,
            }
        };
        // Boxed: run once per connection, it would otherwise take room in every task.
        let _ = timeout(FINAL_WRITE, Box::pin(close)).await;
        drop(ended);
    }
}

/// The next moment the timer must look at the connection: when a heart-beat is due,
/// when the client's silence would pass two intervals, or when its token expires.
fn next_deadline(
    hb: &Heartbeat,
    last_read: Instant,
    last_write: Instant,
    expiry: Option<Instant>,
) -> Option<Instant> {
    let send = hb.send.map(|s| last_write + s);
    let recv = hb.receive.map(|r| last_read + r * 2);
    [send, recv, expiry].into_iter().flatten().min()
}

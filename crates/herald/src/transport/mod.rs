//! Transports carry bytes; [`drive`] turns them into a STOMP session.
//!
//! Each connection is one task running [`drive`]: it reads bytes from its
//! [`Transport`], decodes frames (herald-stomp) and hands them to the [`Session`],
//! drains the session's outbox into one write, keeps the heart-beats and the time to
//! CONNECT with a single timer, and on any ending — DISCONNECT, bad input, slow
//! consumer, heart-beat timeout, shutdown — writes at most one ERROR and closes.
//! A transport (WebSocket, TCP, SockJS) only implements read, write and close.

mod context;
pub(crate) mod progress;
pub(crate) mod sockjs;
pub(crate) mod tcp;
pub(crate) mod websocket;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use herald_stomp::{Command, Decoder, receipt_hint};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::admission::Permit;
use crate::auth::limits::TokenBucket;
use crate::broker::outbox::Drained;
use crate::broker::{OutFrame, Outbox};
use crate::error::{ErrorKind, StompError};
use crate::node::Node;
use crate::ops::metrics;
use crate::ops::sessions::SessionEntry;
use crate::session::{AppCall, Flow, Heartbeat, Session};
pub(crate) use context::{ConnectionPermit, Context, admit_headers};
pub(crate) use progress::Progress;
use progress::write_watched;

/// Time allowed for the last frames (an ERROR, a RECEIPT) before closing.
const FINAL_WRITE: Duration = Duration::from_secs(2);

pub(crate) trait Transport: Send {
    /// Appends received bytes to `buf`; `Ok(false)` when the peer closed.
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<bool>> + Send;
    /// Writes every frame and flushes.
    fn write(&mut self, frames: &[OutFrame]) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes a heart-beat EOL.
    fn heartbeat(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes the connection politely.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
    /// The transport's name in metrics and the admin API.
    fn kind(&self) -> &'static str {
        "other"
    }
    /// What the transport has handed to the peer so far, when it counts it: a write
    /// then fails only after no progress for `stomp.send_timeout`, not after taking
    /// that long in all.
    fn progress(&self) -> Option<Progress> {
        None
    }
}

/// Why a connection ended.
enum End {
    /// The peer went away or DISCONNECTed; nothing more to say.
    Quiet,
    /// Say this ERROR, then close.
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

pub(crate) use crate::admission::Admission;

/// The presence scope of connected STOMP sessions: member = session id, info = user.
pub(crate) const PRESENCE_USERS: &str = "users";

/// Runs one connection to its end. Not an `async fn` itself: the session is set up
/// here and the returned future is `run`'s alone, so a connection's task carries no
/// second copy of the transport and session (a wrapping `async fn` kept ~1 KiB more
/// per connection, docs/BENCHMARKS.md). What must happen at the end is [`Ended`]'s
/// drop, which also runs if the task is dropped early.
pub(crate) fn drive<T: Transport>(
    transport: T,
    node: Arc<Node>,
    shutdown: CancellationToken,
    admission: Admission,
) -> impl Future<Output = ()> + Send {
    let outbox = Arc::new(node.config.stomp.outbox());
    let session = Session::new(node.clone(), outbox.clone(), admission.handshake);
    let kind = transport.kind();
    let entry = node.sessions.register(session.id(), kind, &shutdown);
    metrics::connection_opened(kind);
    let span = tracing::info_span!("session", id = %session.id(), user = tracing::field::Empty);
    let ended = Ended {
        node: node.clone(),
        entry: entry.clone(),
        kind,
        _permit: admission.permit,
    };
    run(transport, node, entry, session, outbox, ended).instrument(span)
}

/// A connection's bookkeeping, undone when it ends: the session registry, presence,
/// the connection gauge, its place in the connection budgets.
struct Ended {
    node: Arc<Node>,
    entry: Arc<SessionEntry>,
    kind: &'static str,
    _permit: Option<Arc<Permit>>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.node.sessions.deregister(&self.entry.id);
        self.node
            .broker
            .bus()
            .presence_leave(PRESENCE_USERS, &self.entry.id);
        metrics::connection_closed(self.kind);
    }
}

async fn run<T: Transport>(
    mut transport: T,
    node: Arc<Node>,
    entry: Arc<SessionEntry>,
    mut session: Session,
    outbox: Arc<Outbox>,
    // Dropped last, when the connection is closed.
    _ended: Ended,
) {
    // Cancelled by shutdown or by an administrator.
    let shutdown = entry.stop.clone();
    let cfg = &node.config.stomp;
    let mut decoder = Decoder::new(node.config.stomp.frame_limits());
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
    // The application call running now; reading pauses until it is done, so a
    // session's SENDs are handled in order and a flood of them stays bounded.
    let mut call: Option<AppCall> = None;
    let limits = &node.config.limits;
    let mut bucket = TokenBucket::new(limits.frame_rate, limits.frame_burst);
    // When the principal's token expires (set at CONNECT).
    let mut expiry: Option<Instant> = None;
    // Whole frames are left in `buf` undecoded: the session had as many application
    // calls queued as it may, and decoding goes on once they are done.
    let mut backlog = false;

    // Producer flow control: while a subscriber this session published to has too
    // much waiting, nothing more is read (TCP pushes back on the client); writes,
    // heart-beats and application calls go on.
    let mut pausing = false;

    let end = 'conn: loop {
        let paused = session.paced().cloned();
        if paused.is_some() != pausing {
            pausing = !pausing;
            metrics::publisher_paused(pausing);
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break End::Error(if entry.was_kicked() {
                StompError::of(ErrorKind::Admin, "disconnected by an administrator")
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
                pending.clear();
                outbox.written(bytes);
                last_write = Instant::now();
                // Frames pushed during the write consumed their wake-up above.
                outbox.wake_if_pending();
            }
            result = async { call.as_mut().expect("guarded").future.as_mut().await }, if call.is_some() => {
                let done = call.take().expect("guarded");
                if let Err(e) = session.finish_call(done, result) {
                    break End::Error(e);
                }
                call = session.next_call();
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
                loop {
                    if session.calls_full() || session.paced().is_some() {
                        backlog = !buf.is_empty();
                        break;
                    }
                    let frame = match decoder.decode(&mut buf) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(e) => break 'conn End::Error(StompError::from(e).with_receipt(receipt_hint(&buf))),
                    };
                    if let Some(b) = bucket.as_mut()
                        && !b.take() {
                            break 'conn End::Error(StompError::of(ErrorKind::Limit, format!(
                                "frame rate limit exceeded: more than {} frames per second", b.rate()
                            )));
                        }
                    metrics::frame_in(frame.command.as_str());
                    let flow = if session.is_connected() {
                        session.handle(frame)
                    } else if matches!(frame.command, Command::Connect | Command::Stomp) {
                        // Boxed: the CONNECT future (authentication) is large and runs once;
                        // inline it would take room in every connection's task for good.
                        Box::pin(session.connect(frame)).await
                    } else {
                        session.handle(frame)
                    };
                    match flow {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Connected { version, heartbeat: hb }) => {
                            connected = true;
                            entry.set_user(session.user());
                            node.broker.bus().presence_join(PRESENCE_USERS, session.id(), session.user());
                            tracing::Span::current().record("user", session.user());
                            metrics::session_connected();
                            decoder.set_version(version);
                            heartbeat = hb;
                            expiry = session.expires_in().map(|left| Instant::now() + left);
                            timer_armed = next_deadline(&heartbeat, last_read, last_write, expiry)
                                .map(|d| timer.as_mut().reset(d))
                                .is_some();
                        }
                        Ok(Flow::Close) => break 'conn End::Quiet,
                        Err(e) => break 'conn End::Error(e),
                    }
                }
                call = session.next_call();
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
                    break End::Error(StompError::of(ErrorKind::TokenExpired, "token expired: reconnect with a fresh token"));
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
    if let End::Error(e) = &end {
        tracing::debug!(error = %e.message, "closing session with ERROR");
        metrics::error_frame(e.kind);
        if e.kind == ErrorKind::Auth {
            metrics::auth_failure("connect");
        }
        pending.push(session.error_frame(e));
    }
    session.close();
    if connected {
        metrics::session_ended();
    }
    if matches!(end, End::Abandoned) {
        tracing::debug!("shutdown: the client does not read; dropping the connection");
        return;
    }
    if !pending.is_empty()
        && timeout(FINAL_WRITE, transport.write(&pending))
            .await
            .is_err()
    {
        return; // not read: a polite close would wait as long again
    }
    let _ = timeout(FINAL_WRITE, transport.close()).await;
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

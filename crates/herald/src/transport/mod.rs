//! Transports carry bytes; the one connection loop turns them into a session.
//!
//! Each connection is one task running [`connection::run`]: it reads bytes from its
//! [`Transport`], hands them to the session's protocol — STOMP ([`drive`]: herald-stomp
//! Decoder → `Session`) or a plain-socket endpoint's JSON ([`plain`]) — drains the
//! session's outbox into one write, keeps the heart-beats / pings, the time to CONNECT
//! and the token's expiry with a single timer, and on any ending — DISCONNECT, bad
//! input, slow consumer, heart-beat timeout, shutdown — writes at most one last
//! message and closes. A transport (WebSocket, TCP, SockJS) only implements read,
//! write and close.

mod connection;
mod context;
pub mod plain;
pub(crate) mod progress;
pub(crate) mod sockjs;
mod stomp;
pub(crate) mod tcp;
pub(crate) mod websocket;

use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::OutFrame;
use crate::node::Node;
use crate::session::Session;
use connection::Ended;
pub(crate) use context::{ConnectionPermit, Context, admit_headers};
pub(crate) use progress::Progress;

pub(crate) trait Transport: Send {
    /// Appends received bytes to `buf`; `Ok(false)` when the peer closed.
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<bool>> + Send;
    /// Writes every frame and flushes.
    fn write(&mut self, frames: &[OutFrame]) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes a heart-beat EOL.
    fn heartbeat(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes the connection politely.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
    /// Closes the connection saying why, where the transport can (a WebSocket close
    /// frame's code and reason); else as [`Transport::close`].
    fn close_with(&mut self, code: u16, reason: &str) -> impl Future<Output = ()> + Send {
        let _ = (code, reason);
        self.close()
    }
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

pub(crate) use crate::admission::Admission;
pub(crate) use connection::PRESENCE_USERS;

/// Runs one STOMP connection to its end. Not an `async fn` itself: the session is set
/// up here and the returned future is the loop's alone, so a connection's task carries
/// no second copy of the transport and session (a wrapping `async fn` kept ~1 KiB more
/// per connection, docs/BENCHMARKS.md). What must happen at the end is
/// `connection::Ended`'s drop, which also runs if the task is dropped early.
pub(crate) fn drive<T: Transport>(
    transport: T,
    node: Arc<Node>,
    shutdown: CancellationToken,
    admission: Admission,
) -> impl Future<Output = ()> + Send {
    let outbox = Arc::new(node.config.stomp.outbox());
    let session = Session::new(node.clone(), outbox.clone(), admission.handshake);
    let span = tracing::info_span!("session", id = %session.id(), user = tracing::field::Empty);
    let ended = Ended::register(
        &node,
        session.id(),
        transport.kind(),
        &shutdown,
        admission.permit,
    );
    let protocol = stomp::Stomp::new(session, &node);
    connection::run(transport, node, protocol, outbox, None, ended).instrument(span)
}

//! What an application on a SockJS session reads and writes: a [`Conn`], one SockJS
//! message per read, over the HTTP transports ([`SockJsTransport`]) or a WebSocket.

use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::time::{Instant, sleep_until};

use super::session::Session;
use super::{GO_AWAY, websocket};
use crate::broker::OutFrame;
use crate::transport::Transport;

/// The application's side of an HTTP-transport session.
pub(crate) struct SockJsTransport {
    pub(super) session: Arc<Session>,
}

impl SockJsTransport {
    fn queue(&self, msgs: impl Iterator<Item = String>) -> io::Result<()> {
        {
            let mut s = self.session.state.lock();
            if s.closed.is_some() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            for m in msgs {
                s.outbound_bytes += m.len();
                s.outbound.push(m);
            }
        }
        self.session.to_client.notify_one();
        Ok(())
    }

    /// Waits while more than the queue limit waits for a receiver.
    async fn room(&self) -> io::Result<()> {
        loop {
            {
                let s = self.session.state.lock();
                if s.closed.is_some() {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                if s.outbound_bytes <= self.session.queue_limit {
                    return Ok(());
                }
            }
            self.session.to_app.notified().await;
        }
    }
}

impl Transport for SockJsTransport {
    /// One message per read; `Ok(false)` once the session closed or went without a
    /// receiving request for the disconnect delay.
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        {
            // Coming back to read means the messages taken before are handled.
            let mut s = self.session.state.lock();
            if s.handled < s.taken {
                s.handled = s.taken;
                drop(s);
                self.session.to_senders.notify_waiters();
            }
        }
        loop {
            let deadline = {
                let mut s = self.session.state.lock();
                if let Some(m) = s.inbound.pop_front() {
                    s.taken += 1;
                    s.inbound_bytes -= m.len();
                    buf.extend_from_slice(m.as_bytes());
                    return Ok(true);
                }
                if s.closed.is_some() {
                    return Ok(false);
                }
                s.receiver
                    .is_none()
                    .then(|| s.detached_at + self.session.disconnect_delay)
            };
            match deadline {
                Some(d) if Instant::now() >= d => {
                    tracing::debug!("SockJS session timed out without a receiving request");
                    self.session.close_with(GO_AWAY);
                    return Ok(false);
                }
                Some(d) => {
                    tokio::select! {
                        _ = self.session.to_app.notified() => {}
                        _ = sleep_until(d) => {}
                    }
                }
                None => self.session.to_app.notified().await,
            }
        }
    }

    async fn write(&mut self, frames: &[OutFrame]) -> io::Result<()> {
        self.queue(
            frames
                .iter()
                .map(|f| String::from_utf8_lossy(&f.bytes).into_owned()),
        )?;
        self.room().await
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        self.queue(std::iter::once("\n".to_owned()))?;
        self.room().await
    }

    async fn close(&mut self) {
        self.session.close_with(GO_AWAY);
    }
}

/// A SockJS connection of any transport, as an application sees it: every read is
/// one message, every written frame one message.
// One per connection, never moved once the session runs: boxing a variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Conn {
    Http(SockJsTransport),
    Ws(websocket::SockJsWs),
}

impl Transport for Conn {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        match self {
            Conn::Http(t) => t.read(buf).await,
            Conn::Ws(t) => t.read(buf).await,
        }
    }

    async fn write(&mut self, frames: &[OutFrame]) -> io::Result<()> {
        match self {
            Conn::Http(t) => t.write(frames).await,
            Conn::Ws(t) => t.write(frames).await,
        }
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        match self {
            Conn::Http(t) => t.heartbeat().await,
            Conn::Ws(t) => t.heartbeat().await,
        }
    }

    fn progress(&self) -> Option<crate::transport::Progress> {
        match self {
            // A write completes as soon as the session has room: the whole write is
            // the progress.
            Conn::Http(_) => None,
            Conn::Ws(t) => t.progress(),
        }
    }

    async fn close(&mut self) {
        match self {
            Conn::Http(t) => t.close().await,
            Conn::Ws(t) => t.close().await,
        }
    }
}

//! Whether a write to a client is getting anywhere.
//!
//! A slow consumer is one that makes no progress, not one that is slow: a client
//! reading a burst at a few KiB/s must keep its connection, one that reads nothing
//! for `stomp.send_timeout` must not hold its publishers (paced to it by flow
//! control) any longer. A whole-write timeout cannot tell them apart, so transports
//! over a byte stream count what the kernel took ([`Metered`]) and the connection
//! task watches that count while a write is pending ([`write_watched`]).

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, sleep};

use super::Transport;
use crate::broker::OutFrame;

/// How far a transport's output got: bytes handed to the kernel and, on a TCP socket
/// whose descriptor is known, less what the kernel still holds unsent or unacked —
/// i.e. what the peer took. The kernel wakes a blocked writer only once a third of
/// its send buffer (up to MiBs) is free, so the count of bytes handed over alone
/// moves in steps that a slow reader can take longer than `send_timeout` to make.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    written: Arc<AtomicU64>,
    socket: Option<RawFd>,
}

impl Progress {
    fn add(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes written that the peer has not acknowledged (0 when the kernel does not
    /// say). The counts stay after a reset, so this is what never arrived.
    pub(crate) fn unacknowledged(&self) -> u64 {
        self.socket.map_or(0, unsent)
    }

    fn get(&self) -> u64 {
        let written = self.written.load(Ordering::Relaxed);
        match self.socket {
            Some(fd) => written.saturating_sub(unsent(fd)),
            None => written,
        }
    }
}

/// Bytes in a TCP socket's send queue, not yet acknowledged by the peer (0 when the
/// kernel does not say).
#[allow(unsafe_code)]
fn unsent(fd: RawFd) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int; `fd` belongs to the transport that owns this
    // Progress and outlives every write it watches. A failure leaves `n` at 0.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) } == 0 {
        u64::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// A byte stream that counts what it writes.
#[derive(Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    progress: Progress,
}

impl<S> Metered<S> {
    /// Counts what `inner` writes; `socket`, the TCP socket underneath when known,
    /// makes the count what the peer took ([`Progress`]).
    pub(crate) fn new(inner: S, socket: Option<RawFd>) -> Self {
        Metered {
            inner,
            progress: Progress {
                written: Arc::default(),
                socket,
            },
        }
    }

    pub(crate) fn progress(&self) -> Progress {
        self.progress.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.progress.add(*n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            self.progress.add(*n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A write that made no progress for the allowed time.
#[derive(Debug)]
pub(crate) struct Stalled;

/// Writes `frames`, giving up once the transport took nothing for `limit`. Without a
/// progress count (a transport whose writes complete as soon as there is room, like
/// SockJS's HTTP sessions), the whole write gets `limit`.
pub(crate) async fn write_watched<T: Transport>(
    transport: &mut T,
    frames: &[OutFrame],
    progress: Option<&Progress>,
    limit: Duration,
) -> Result<io::Result<()>, Stalled> {
    let write = transport.write(frames);
    tokio::pin!(write);
    // Nearly every write is taken by the kernel at once: it costs no timer and no
    // look at the socket.
    if let Some(r) = futures_util::FutureExt::now_or_never(write.as_mut()) {
        return Ok(r);
    }
    let Some(progress) = progress else {
        return tokio::time::timeout(limit, write)
            .await
            .map_err(|_| Stalled);
    };
    // The count is looked at a few times per `limit`, from the first look on: a
    // stall is noticed between `limit` and 1.5 × `limit` after the last byte went.
    let tick = (limit / 4).max(Duration::from_millis(5));
    let mut seen = None;
    let mut moved_at = Instant::now();
    loop {
        tokio::select! {
            biased;
            r = &mut write => return Ok(r),
            _ = sleep(tick) => {
                let now = progress.get();
                if seen != Some(now) {
                    seen = Some(now);
                    moved_at = Instant::now();
                } else if moved_at.elapsed() >= limit {
                    return Err(Stalled);
                }
            }
        }
    }
}

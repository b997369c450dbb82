//! Plain STOMP over TCP (port 61613 by default), for backends and stomp.py.

use std::io;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Transport;
use super::progress::{Metered, Progress};
use crate::broker::OutFrame;

/// Read size: enough for typical frames, small enough that an idle peer costs little
/// (the buffer is released between frames).
const READ_CHUNK: usize = 4096;

pub(crate) struct Tcp {
    stream: Metered<TcpStream>,
    out: BytesMut,
}

impl Tcp {
    pub(crate) fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        Tcp {
            stream: Metered::new(stream, Some(fd)),
            out: BytesMut::new(),
        }
    }
}

impl Transport for Tcp {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        buf.reserve(READ_CHUNK);
        Ok(self.stream.read_buf(buf).await? > 0)
    }

    async fn write(&mut self, frames: &[OutFrame]) -> io::Result<()> {
        if let [one] = frames {
            return self.stream.write_all(&one.bytes).await;
        }
        // Many small frames become one write.
        self.out.reserve(frames.iter().map(|f| f.bytes.len()).sum());
        for f in frames {
            self.out.put_slice(&f.bytes);
        }
        let result = self.stream.write_all(&self.out).await;
        self.out = BytesMut::new();
        result
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        self.stream.write_all(b"\n").await
    }

    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn progress(&self) -> Option<Progress> {
        Some(self.stream.progress())
    }

    async fn close(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

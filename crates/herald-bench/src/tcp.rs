//! One STOMP 1.2 session over plain TCP (Herald's `server.stomp` listener), for
//! scenarios that exercise both transports: the same source-address spread and
//! CONNECT as a WebSocket [`crate::client::Session`], frames read with the same
//! decoder.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};
use bytes::BytesMut;
use herald_stomp::{Decoder, Frame, Version, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{CONNECT_TIMEOUT, Target, decoder, expect_connected};

pub struct TcpSession {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl TcpSession {
    /// TCP connect to `addr` with `target`'s source spread and login, CONNECT, and
    /// wait for CONNECTED.
    pub async fn connect(
        target: &Target,
        addr: SocketAddr,
        idx: usize,
        heartbeat: (u32, u32),
        login: Option<&str>,
    ) -> Result<TcpSession> {
        let fut = async {
            let stream = target.open_tcp(addr, idx).await?;
            let mut s = TcpSession {
                stream,
                decoder: decoder(),
                buf: BytesMut::new(),
            };
            s.send(&target.connect_frame(heartbeat, login)).await?;
            expect_connected(s.recv().await?)?;
            Ok(s)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| anyhow!("connect timed out after {CONNECT_TIMEOUT:?}"))?
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<()> {
        let mut out = BytesMut::with_capacity(frame.body.len() + 128);
        encode(frame, Version::V1_2, &mut out);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// The next frame, or `None` once the peer has closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(f));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Shuts the write side down and waits briefly for the server to close too.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.stream.shutdown().await;
            let mut sink = [0u8; 4096];
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }

    /// Drops the connection with a TCP reset, without DISCONNECT.
    pub fn reset(self) {
        let _ = self.stream.set_zero_linger();
    }
}

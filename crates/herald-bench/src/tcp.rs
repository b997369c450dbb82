//! One STOMP 1.2 session over plain TCP (Herald's `server.stomp` listener), for
//! scenarios that exercise both transports: the same source-address spread and
//! CONNECT as a WebSocket [`crate::client::Session`], frames through the same
//! herald-stomp client.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};
use herald_stomp::Frame;
use herald_stomp::client::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{CONNECT_TIMEOUT, Target, expect_connected};

pub(crate) struct TcpSession {
    conn: Connection<TcpStream>,
}

impl TcpSession {
    /// TCP connect to `addr` with `target`'s source spread and login, CONNECT, and
    /// wait for CONNECTED.
    pub(crate) async fn connect(
        target: &Target,
        addr: SocketAddr,
        idx: usize,
        heartbeat: (u32, u32),
        login: Option<&str>,
    ) -> Result<TcpSession> {
        let fut = async {
            let stream = target.open_tcp(addr, idx).await?;
            let mut conn = Connection::new(stream);
            expect_connected(conn.connect(&target.connect_frame(heartbeat, login)).await)?;
            Ok(TcpSession { conn })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| anyhow!("connect timed out after {CONNECT_TIMEOUT:?}"))?
    }

    pub(crate) async fn send(&mut self, frame: &Frame) -> Result<()> {
        Ok(self.conn.send(frame).await?)
    }

    /// The next frame, or `None` once the peer has closed the connection.
    pub(crate) async fn recv(&mut self) -> Result<Option<Frame>> {
        Ok(self.conn.recv().await?)
    }

    /// Shuts the write side down and waits briefly for the server to close too.
    pub(crate) async fn close(mut self) {
        let stream = self.conn.link_mut();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }

    /// Drops the connection with a TCP reset, without DISCONNECT.
    pub(crate) fn reset(self) {
        let _ = self.conn.link().set_zero_linger();
    }
}

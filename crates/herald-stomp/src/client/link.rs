//! What carries the bytes: a TCP stream or a WebSocket, whole or split in halves.
//!
//! STOMP over TCP is a byte stream; over WebSocket each frame travels as one message.
//! [`Inbound`] and [`Outbound`] hide that difference, so the frame reader and writer
//! are written once. Both return `Send` futures: benchmark tasks are spawned with them.

use std::future::Future;
use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_websockets::{Message, WebSocketStream};

/// A WebSocket client connection over plain TCP.
pub type WebSocket = WebSocketStream<TcpStream>;

/// Bytes from the server.
pub trait Inbound {
    /// Appends what arrives next to `buf`; `false` once the peer has closed.
    fn read_into(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<bool>> + Send;
}

/// Bytes to the server.
pub trait Outbound {
    /// Sends `bytes` now: one TCP write, or one WebSocket message (text when the bytes
    /// are UTF-8, binary otherwise).
    fn write(&mut self, bytes: Bytes) -> impl Future<Output = io::Result<()>> + Send;

    /// Queues `bytes` where the link buffers (a WebSocket sink flushes by itself past
    /// a threshold); writes at once where it does not.
    fn feed(&mut self, bytes: Bytes) -> impl Future<Output = io::Result<()>> + Send {
        self.write(bytes)
    }

    /// Sends whatever [`Outbound::feed`] queued.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Ends the sending side: a WebSocket close, or a TCP shutdown.
    fn close(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

async fn read_tcp<R: AsyncRead + Unpin + Send>(
    stream: &mut R,
    buf: &mut BytesMut,
) -> io::Result<bool> {
    buf.reserve(16 * 1024);
    Ok(stream.read_buf(buf).await? > 0)
}

impl Inbound for TcpStream {
    fn read_into(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<bool>> + Send {
        read_tcp(self, buf)
    }
}

impl Inbound for OwnedReadHalf {
    fn read_into(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<bool>> + Send {
        read_tcp(self, buf)
    }
}

impl Outbound for TcpStream {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.write_all(&bytes).await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.shutdown().await
    }
}

impl Outbound for OwnedWriteHalf {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.write_all(&bytes).await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.shutdown().await
    }
}

fn ws_error(e: tokio_websockets::Error) -> io::Error {
    match e {
        tokio_websockets::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// The next data message's payload appended to `buf`. A close from the server is
/// not the end yet: polling on lets the stream flush its close reply, then it ends.
async fn read_ws<M>(messages: &mut M, buf: &mut BytesMut) -> io::Result<bool>
where
    M: Stream<Item = Result<Message, tokio_websockets::Error>> + Unpin + Send,
{
    loop {
        match messages.next().await {
            None => return Ok(false),
            Some(Err(e)) => return Err(ws_error(e)),
            Some(Ok(m)) if m.is_text() || m.is_binary() => {
                buf.extend_from_slice(m.as_payload());
                return Ok(true);
            }
            // Close (its reply goes out on the next poll), ping and pong (answered by
            // tokio-websockets).
            Some(Ok(_)) => {}
        }
    }
}

fn to_message(bytes: Bytes) -> Message {
    if std::str::from_utf8(&bytes).is_ok() {
        Message::text(bytes)
    } else {
        Message::binary(bytes)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Inbound for WebSocketStream<S> {
    fn read_into(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<bool>> + Send {
        read_ws(self, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Inbound for SplitStream<WebSocketStream<S>> {
    fn read_into(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<bool>> + Send {
        read_ws(self, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Outbound for WebSocketStream<S> {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.send(to_message(bytes)).await.map_err(ws_error)
    }

    async fn feed(&mut self, bytes: Bytes) -> io::Result<()> {
        SinkExt::feed(self, to_message(bytes))
            .await
            .map_err(ws_error)
    }

    async fn flush(&mut self) -> io::Result<()> {
        SinkExt::flush(self).await.map_err(ws_error)
    }

    async fn close(&mut self) -> io::Result<()> {
        SinkExt::close(self).await.map_err(ws_error)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Outbound for SplitSink<WebSocketStream<S>, Message> {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.send(to_message(bytes)).await.map_err(ws_error)
    }

    async fn feed(&mut self, bytes: Bytes) -> io::Result<()> {
        SinkExt::feed(self, to_message(bytes))
            .await
            .map_err(ws_error)
    }

    async fn flush(&mut self) -> io::Result<()> {
        SinkExt::flush(self).await.map_err(ws_error)
    }

    async fn close(&mut self) -> io::Result<()> {
        SinkExt::close(self).await.map_err(ws_error)
    }
}

/// Either transport, chosen at run time (tests run one scenario over both).
pub enum Link {
    /// STOMP straight over TCP.
    Tcp(TcpStream),
    /// Boxed: a WebSocket stream is several times the size of a TCP one.
    WebSocket(Box<WebSocket>),
}

impl Link {
    /// The TCP socket underneath, for socket options (linger, buffer sizes).
    pub fn tcp_stream(&self) -> &TcpStream {
        match self {
            Link::Tcp(s) => s,
            Link::WebSocket(ws) => ws.get_ref(),
        }
    }

    /// Whether frames travel as WebSocket messages.
    pub fn is_websocket(&self) -> bool {
        matches!(self, Link::WebSocket(_))
    }
}

impl Inbound for Link {
    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        match self {
            Link::Tcp(s) => s.read_into(buf).await,
            Link::WebSocket(ws) => ws.read_into(buf).await,
        }
    }
}

impl Outbound for Link {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        match self {
            Link::Tcp(s) => Outbound::write(s, bytes).await,
            Link::WebSocket(ws) => Outbound::write(&mut **ws, bytes).await,
        }
    }

    async fn close(&mut self) -> io::Result<()> {
        match self {
            Link::Tcp(s) => Outbound::close(s).await,
            Link::WebSocket(ws) => Outbound::close(&mut **ws).await,
        }
    }
}

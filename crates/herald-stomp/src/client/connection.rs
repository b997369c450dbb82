//! One STOMP connection: frames both ways over one link, and the CONNECT exchange.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use http::{HeaderName, HeaderValue, Uri};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, Message};

use super::link::{Inbound, Link, Outbound, WebSocket};
use super::reader::FrameReader;
use super::writer::{FrameEncoder, FrameWriter};
use super::{Error, client_decoder};
use crate::{Command, Decoder, Frame, Version};

/// A STOMP connection over `L`. Frames go out encoded for [`Connection::version`],
/// which [`Connection::connect`] sets to what the server negotiated.
pub struct Connection<L = Link> {
    reader: FrameReader<L>,
    encoder: FrameEncoder,
}

impl<L: Inbound + Outbound> Connection<L> {
    /// A connection over `link` that has sent nothing yet (STOMP 1.2 until CONNECTED
    /// says otherwise).
    pub fn new(link: L) -> Self {
        Connection::with_decoder(link, client_decoder())
    }

    /// Like [`Connection::new`], with a decoder of the caller's [`Limits`](crate::Limits).
    pub fn with_decoder(link: L, decoder: Decoder) -> Self {
        let mut c = Connection {
            reader: FrameReader::new(link, decoder),
            encoder: FrameEncoder::new(Version::V1_2),
        };
        c.set_version(Version::V1_2);
        c
    }

    /// The version frames are encoded and decoded for.
    pub fn version(&self) -> Version {
        self.encoder.version()
    }

    /// Encodes and decodes for `version` from now on.
    pub fn set_version(&mut self, version: Version) {
        self.encoder.set_version(version);
        self.reader.decoder_mut().set_version(version);
    }

    /// Encodes and sends `frame` (one TCP write, one WebSocket message); fails with
    /// [`Error::Io`] when the link does.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), Error> {
        let bytes = self.encoder.encode(frame);
        self.send_bytes(bytes).await
    }

    /// Sends bytes as they are (one TCP write, one WebSocket message): for frames a
    /// well-behaved client would never encode.
    pub async fn send_bytes(&mut self, bytes: Bytes) -> Result<(), Error> {
        Ok(self.reader.link_mut().write(bytes).await?)
    }

    /// The next frame, or `None` once the server has closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Frame>, Error> {
        self.reader.recv().await
    }

    /// The next frame within `limit` ([`Error::Timeout`] otherwise).
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Frame>, Error> {
        self.reader.recv_within(limit).await
    }

    /// Sends `connect` (a CONNECT or STOMP frame) and returns the server's answer,
    /// CONNECTED or ERROR. On CONNECTED the connection switches to the version the
    /// server chose (1.0 when it names none). Fails with [`Error::Closed`] when the
    /// server closes the connection without answering.
    pub async fn connect(&mut self, connect: &Frame) -> Result<Frame, Error> {
        self.send(connect).await?;
        let answer = self.recv().await?.ok_or(Error::Closed)?;
        if answer.command == Command::Connected {
            let version = answer
                .get("version")
                .and_then(Version::parse)
                .unwrap_or(Version::V1_0);
            self.set_version(version);
        }
        Ok(answer)
    }

    /// The frame reader: its unread bytes and its decoder.
    pub fn reader(&self) -> &FrameReader<L> {
        &self.reader
    }

    /// The frame reader, to consume bytes before the decoder does.
    pub fn reader_mut(&mut self) -> &mut FrameReader<L> {
        &mut self.reader
    }

    /// The link underneath (for socket options).
    pub fn link(&self) -> &L {
        self.reader.link()
    }

    /// The link underneath, to write to or close it directly.
    pub fn link_mut(&mut self) -> &mut L {
        self.reader.link_mut()
    }
}

impl Connection<WebSocket> {
    /// A writer and a reader for two tasks (one publishes while the other receives).
    pub fn split(
        self,
    ) -> (
        FrameWriter<SplitSink<WebSocket, Message>>,
        FrameReader<SplitStream<WebSocket>>,
    ) {
        let version = self.version();
        let (ws, decoder, buf) = self.reader.into_parts();
        let (sink, stream) = ws.split();
        (
            FrameWriter::new(sink, version),
            FrameReader::from_parts(stream, decoder, buf),
        )
    }
}

/// A TCP stream to `addr` (Nagle off: frames are small and latency matters).
pub async fn tcp(addr: SocketAddr) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A WebSocket to `url` (`ws://host:port/path?query`) whose upgrade request
/// carries `headers` (a `Sec-WebSocket-Protocol` among them offers subprotocols). Also
/// returns the subprotocol the server chose, if any.
pub async fn websocket(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(WebSocket, Option<String>), Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::Handshake(format!("{url}: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| Error::Handshake(format!("{url}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = TcpStream::connect((host, uri.port_u16().unwrap_or(80))).await?;
    stream.set_nodelay(true)?;
    let mut parsed = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| Error::Handshake(format!("header {name}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| Error::Handshake(format!("header {name}: {e}")))?;
        parsed.push((name, value));
    }
    websocket_on(stream, uri, parsed).await
}

/// The WebSocket upgrade on a TCP stream the caller opened (from a chosen source
/// address, say); returns the stream and the subprotocol the server chose.
pub async fn websocket_on(
    stream: TcpStream,
    uri: Uri,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> Result<(WebSocket, Option<String>), Error> {
    let mut builder = ClientBuilder::from_uri(uri);
    for (name, value) in headers {
        builder = builder
            .add_header(name, value)
            .map_err(|e| Error::Handshake(e.to_string()))?;
    }
    let (ws, response) = builder
        .connect_on(stream)
        .await
        .map_err(|e| Error::Handshake(e.to_string()))?;
    let protocol = response
        .headers()
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((ws, protocol))
}

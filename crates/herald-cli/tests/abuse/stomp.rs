//! A STOMP client over TCP or WebSocket that reports instead of panicking: the
//! bystander must keep going (and say what went wrong) when the server misbehaves.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use herald_stomp::{Command, Decoder, Frame, Limits, Version, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

/// Longest a connection, a handshake or one write may take.
pub const WAIT: Duration = Duration::from_secs(10);

#[allow(clippy::large_enum_variant)]
enum Conn {
    Tcp(TcpStream),
    Ws(WebSocketStream<TcpStream>),
}

pub struct Stomp {
    conn: Conn,
    decoder: Decoder,
    buf: BytesMut,
    closed: bool,
    receipts: u64,
    /// Everything received, for assertions on how it frames.
    pub received: Vec<u8>,
}

/// A TCP connection to `to`, from `from` when given.
pub async fn connect_from(to: SocketAddr, from: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let s = tokio::time::timeout(WAIT, socket.connect(to))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))??;
    s.set_nodelay(true)?;
    Ok(s)
}

impl Stomp {
    pub async fn tcp(addr: SocketAddr) -> Result<Stomp, String> {
        let s = connect_from(addr, None).await.map_err(|e| e.to_string())?;
        Ok(Stomp::new(Conn::Tcp(s)))
    }

    /// A WebSocket at `/ws` of `http`, from `from` when given.
    pub async fn ws(http: SocketAddr, from: Option<IpAddr>) -> Result<Stomp, String> {
        let s = connect_from(http, from).await.map_err(|e| e.to_string())?;
        let builder = ClientBuilder::new()
            .uri(&format!("ws://{http}/ws"))
            .map_err(|e| e.to_string())?;
        let (ws, _) = tokio::time::timeout(WAIT, builder.connect_on(s))
            .await
            .map_err(|_| "WebSocket handshake timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok(Stomp::new(Conn::Ws(ws)))
    }

    fn new(conn: Conn) -> Stomp {
        Stomp {
            conn,
            decoder: Decoder::new(Limits {
                max_frame: 64 << 20,
                max_headers: 1024,
                max_header_line: 1 << 20,
            }),
            buf: BytesMut::new(),
            closed: false,
            receipts: 0,
            received: Vec::new(),
        }
    }

    /// CONNECT with accept-version 1.2; the answer (CONNECTED or ERROR).
    pub async fn connect(&mut self) -> Result<Frame, String> {
        self.connect_version("1.2").await
    }

    pub async fn connect_version(&mut self, accept: &str) -> Result<Frame, String> {
        self.send(
            &Frame::new(Command::Connect)
                .header("accept-version", accept)
                .header("host", "localhost"),
        )
        .await?;
        let f = self.recv(WAIT).await?.ok_or("closed before CONNECTED")?;
        if f.command == Command::Connected {
            let v = f
                .get("version")
                .and_then(Version::parse)
                .unwrap_or(Version::V1_0);
            self.decoder.set_version(v);
        }
        Ok(f)
    }

    /// Encodes `frame` (STOMP 1.2) and sends it as one write / WebSocket message.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), String> {
        let mut out = BytesMut::new();
        encode(frame, Version::V1_2, &mut out);
        self.send_raw(&out).await
    }

    /// Sends bytes as they are: one TCP write, or one binary WebSocket message.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        let write = async {
            match &mut self.conn {
                Conn::Tcp(s) => s.write_all(bytes).await.map_err(|e| e.to_string()),
                Conn::Ws(ws) => ws
                    .send(Message::binary(Bytes::copy_from_slice(bytes)))
                    .await
                    .map_err(|e| e.to_string()),
            }
        };
        tokio::time::timeout(WAIT, write)
            .await
            .map_err(|_| format!("a write did not complete within {WAIT:?}"))?
    }

    /// `frame` with a receipt, then waits for that RECEIPT (frames before it are
    /// dropped); an ERROR or a close instead is the error.
    pub async fn request(&mut self, frame: Frame) -> Result<(), String> {
        self.receipts += 1;
        let id = format!("rq-{}", self.receipts);
        self.send(&frame.header("receipt", id.clone())).await?;
        loop {
            match self.recv(WAIT).await? {
                Some(f) if f.command == Command::Receipt && f.get("receipt-id") == Some(&id) => {
                    return Ok(());
                }
                Some(f) if f.command == Command::Error => return Err(format!("ERROR {f:?}")),
                Some(_) => {}
                None => return Err("closed before the RECEIPT".into()),
            }
        }
    }

    /// The next frame within `limit`; `Ok(None)` when the connection ended.
    pub async fn recv(&mut self, limit: Duration) -> Result<Option<Frame>, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(e) => return Err(format!("undecodable bytes: {e}")),
            }
            if self.closed {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, self.read_more()).await {
                Err(_) => return Err(format!("nothing within {limit:?}")),
                Ok(false) => self.closed = true,
                Ok(true) => {}
            }
        }
    }

    /// Frames until the server closes, within `limit`.
    pub async fn until_closed(&mut self, limit: Duration) -> Result<Vec<Frame>, String> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return Ok(frames),
                Err(e) => return Err(format!("{e}; frames so far: {frames:?}")),
            }
        }
    }

    /// The first ERROR within `limit`, skipping other frames; `Err` when the
    /// connection ends or stays silent first.
    pub async fn error_within(&mut self, limit: Duration) -> Result<Frame, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await? {
                Some(f) if f.command == Command::Error => return Ok(f),
                Some(_) => {}
                None => return Err("closed without an ERROR".into()),
            }
        }
    }

    async fn read_more(&mut self) -> bool {
        match &mut self.conn {
            Conn::Tcp(s) => {
                let mut tmp = vec![0u8; 64 * 1024];
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        self.received.extend_from_slice(&tmp[..n]);
                        self.buf.extend_from_slice(&tmp[..n]);
                        true
                    }
                }
            }
            Conn::Ws(ws) => loop {
                match ws.next().await {
                    None | Some(Err(_)) => return false,
                    Some(Ok(m)) if m.is_text() || m.is_binary() => {
                        let p = m.into_payload();
                        self.received.extend_from_slice(&p);
                        self.buf.extend_from_slice(&p);
                        return true;
                    }
                    Some(Ok(_)) => continue,
                }
            },
        }
    }
}

/// A SEND frame.
pub fn send(destination: &str, body: impl Into<Bytes>) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination)
        .body(body)
}

//! Shared fixture for the integration tests: a real Herald server started in-process
//! on ephemeral ports, and a small STOMP client over TCP or WebSocket.
//!
//! Every wait is bounded ([`WAIT`] unless a test says otherwise), so a server that
//! stops answering fails the test instead of hanging the suite.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use herald::Config;
use herald::node::Node;
use herald_stomp::{Command, Decoder, Frame, Limits, Version, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

/// Longest any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Longest an HTTP request may take: some do real work (a notification to 1,200 users
/// is a bulk insert plus 1,200 publishes in a debug build, on a busy machine).
pub const HTTP_WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Server fixture
// ---------------------------------------------------------------------------

pub struct TestServer {
    pub http: SocketAddr,
    pub stomp: SocketAddr,
    pub node: Arc<Node>,
    token: CancellationToken,
    handle: Option<JoinHandle<Result<(), String>>>,
}

impl TestServer {
    /// A server with default settings on 127.0.0.1 ephemeral ports.
    pub async fn start() -> TestServer {
        TestServer::with(|_| {}).await
    }

    /// A server whose settings `tweak` adjusts first.
    pub async fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::with_handlers(herald::handler::Handlers::new(), tweak).await
    }

    /// A server with application `handlers` (`Server::bind_with`), settings adjusted by
    /// `tweak`.
    pub async fn with_handlers(
        handlers: herald::handler::Handlers,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let mut cfg = Config::default();
        cfg.server.http = "127.0.0.1:0".parse().unwrap();
        cfg.server.stomp = Some("127.0.0.1:0".parse().unwrap());
        cfg.server.drain_timeout = Duration::from_secs(2);
        // Notifications: an in-memory SQLite database, so no test leaves herald.db behind.
        cfg.database.url = "sqlite::memory:".into();
        tweak(&mut cfg);
        let server = herald::Server::bind_with(cfg, handlers)
            .await
            .expect("server binds");
        let http = server.http_addr();
        let stomp = server.stomp_addr().expect("STOMP listener configured");
        let node = server.node().clone();
        let token = server.shutdown_token();
        let handle = tokio::spawn(async move { server.run().await.map_err(|e| e.to_string()) });
        TestServer {
            http,
            stomp,
            node,
            token,
            handle: Some(handle),
        }
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    /// Cancels the shutdown token and waits (bounded by `limit`) for `run` to return;
    /// returns how long that took.
    pub async fn shutdown_within(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        self.token.cancel();
        let handle = self.handle.take().expect("server still running");
        match tokio::time::timeout(limit, handle).await {
            Ok(Ok(Ok(()))) => start.elapsed(),
            Ok(Ok(Err(e))) => panic!("server run returned an error: {e}"),
            Ok(Err(e)) => panic!("server task panicked: {e}"),
            Err(_) => panic!("server did not stop within {limit:?} of the shutdown token"),
        }
    }

    /// An unconnected client (no CONNECT sent yet) over `transport`.
    pub async fn open(&self, transport: Transport) -> Client {
        match transport {
            Transport::Tcp => Client::tcp(self.stomp).await,
            Transport::Ws => Client::ws(&self.ws_url(), &[]).await.0,
        }
    }

    /// A client over `transport` that has completed CONNECT with accept-version 1.2.
    pub async fn connect(&self, transport: Transport) -> Client {
        self.connect_version(transport, "1.2").await
    }

    /// A connected client that negotiated from `accept_version` (e.g. "1.0,1.1").
    pub async fn connect_version(&self, transport: Transport, accept_version: &str) -> Client {
        let mut c = self.open(transport).await;
        let connected = c.connect(accept_version).await;
        assert_eq!(
            connected.command,
            Command::Connected,
            "CONNECT answered by {connected:?}"
        );
        c
    }

    pub async fn tcp(&self) -> Client {
        self.connect(Transport::Tcp).await
    }

    pub async fn ws(&self) -> Client {
        self.connect(Transport::Ws).await
    }

    /// A client over `transport` connected (1.2) with `login` as its principal name;
    /// also returns the CONNECTED frame (its `session` header names the session).
    pub async fn connect_as(&self, transport: Transport, login: &str) -> (Client, Frame) {
        let mut c = self.open(transport).await;
        let connected = c
            .connect_with(
                Frame::new(Command::Connect)
                    .header("accept-version", "1.2")
                    .header("host", "localhost")
                    .header("login", login)
                    .header("passcode", "secret"),
            )
            .await;
        assert_eq!(
            connected.command,
            Command::Connected,
            "CONNECT as {login} answered by {connected:?}"
        );
        (c, connected)
    }

    /// Plain HTTP request with an optional content type; returns (status, body).
    pub async fn http_request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let fut = async {
            let mut s = TcpStream::connect(self.http).await.unwrap();
            let mut req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
                self.http,
                body.len()
            );
            if let Some(ct) = content_type {
                req.push_str(&format!("Content-Type: {ct}\r\n"));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            s.write_all(body).await.unwrap();
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).await.unwrap();
            resp
        };
        let resp = tokio::time::timeout(HTTP_WAIT, fut)
            .await
            .expect("HTTP response in time");
        let text = String::from_utf8_lossy(&resp);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        (status, resp[split + 4..].to_vec())
    }

    /// POST a JSON text; returns (status, body parsed as JSON, or the text as a JSON
    /// string when it is not JSON).
    pub async fn http_post_json(&self, path: &str, json: &str) -> (u16, serde_json::Value) {
        let (status, body) = self
            .http_request("POST", path, Some("application/json"), json.as_bytes())
            .await;
        let v = serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        });
        (status, v)
    }

    /// Plain HTTP GET; returns (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, Vec<u8>) {
        let fut = async {
            let mut s = TcpStream::connect(self.http).await.unwrap();
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.http
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).await.unwrap();
            resp
        };
        let resp = tokio::time::timeout(HTTP_WAIT, fut)
            .await
            .expect("HTTP response in time");
        let text = String::from_utf8_lossy(&resp);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        (status, resp[split + 4..].to_vec())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Ws,
}

pub const BOTH: [Transport; 2] = [Transport::Tcp, Transport::Ws];

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

#[allow(clippy::large_enum_variant)]
enum Conn {
    Tcp(TcpStream),
    Ws(WebSocketStream<MaybeTlsStream<TcpStream>>),
}

/// What came off the connection.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    /// The peer closed the connection (EOF, WebSocket close, reset).
    Closed,
    /// The bytes did not decode (e.g. a frame cut short by a timed-out write).
    Garbage(String),
    /// Heart-beat EOLs arrived (only from [`Client::wait_heartbeats`]).
    Heartbeat,
}

pub struct Client {
    conn: Conn,
    decoder: Decoder,
    buf: BytesMut,
    /// Version used to encode outgoing frames (set by CONNECTED).
    pub version: Version,
    /// When each heart-beat EOL arrived.
    pub heartbeats: Vec<Instant>,
    /// Every byte received, for wire-level assertions.
    pub received: Vec<u8>,
    closed: bool,
    next_receipt: u64,
    /// Frames that arrived while [`Client::request`] waited for its RECEIPT; handed
    /// out first by the receive methods.
    stash: VecDeque<Frame>,
}

impl Client {
    pub async fn tcp(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("TCP connect in time")
            .expect("TCP connect");
        stream.set_nodelay(true).unwrap();
        Client::new(Conn::Tcp(stream))
    }

    /// A TCP client whose receive buffer is as small as the kernel allows, so a client
    /// that stops reading pushes back on the server quickly.
    pub async fn tcp_small_buffer(addr: SocketAddr) -> Client {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("TCP connect in time")
            .expect("TCP connect");
        stream.set_nodelay(true).unwrap();
        Client::new(Conn::Tcp(stream))
    }

    /// A WebSocket client offering `protocols` (none when empty); also returns the
    /// subprotocol the server chose, if any.
    pub async fn ws(url: &str, protocols: &[&str]) -> (Client, Option<String>) {
        let mut builder = ClientBuilder::new().uri(url).unwrap();
        if !protocols.is_empty() {
            builder = builder
                .add_header(
                    http::header::SEC_WEBSOCKET_PROTOCOL,
                    http::HeaderValue::from_str(&protocols.join(", ")).unwrap(),
                )
                .unwrap();
        }
        let (ws, resp) = tokio::time::timeout(WAIT, builder.connect())
            .await
            .expect("WebSocket handshake in time")
            .expect("WebSocket handshake");
        let chosen = resp
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .map(|v| v.to_str().unwrap().to_owned());
        (Client::new(Conn::Ws(ws)), chosen)
    }

    fn new(conn: Conn) -> Client {
        Client {
            conn,
            decoder: Decoder::new(Limits {
                max_frame: 64 << 20,
                max_headers: 1024,
                max_header_line: 1 << 20,
            }),
            buf: BytesMut::new(),
            version: Version::V1_2,
            heartbeats: Vec::new(),
            received: Vec::new(),
            closed: false,
            next_receipt: 1,
            stash: VecDeque::new(),
        }
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.conn, Conn::Ws(_))
    }

    /// Sends CONNECT with `accept-version` (omitted when empty) and returns the answer
    /// (CONNECTED or ERROR). On CONNECTED the client switches to the negotiated version.
    pub async fn connect(&mut self, accept_version: &str) -> Frame {
        let mut f = Frame::new(Command::Connect).header("host", "localhost");
        if !accept_version.is_empty() {
            f = f.header("accept-version", accept_version);
        }
        self.connect_with(f).await
    }

    /// Sends a CONNECT/STOMP frame built by the caller and returns the answer.
    pub async fn connect_with(&mut self, frame: Frame) -> Frame {
        self.send_frame(&frame).await;
        let answer = self.recv_frame().await;
        if answer.command == Command::Connected {
            let v = answer
                .get("version")
                .and_then(Version::parse)
                .unwrap_or(Version::V1_0);
            self.set_version(v);
        }
        answer
    }

    pub fn set_version(&mut self, v: Version) {
        self.version = v;
        self.decoder.set_version(v);
    }

    /// Encodes `frame` for the negotiated version and sends it (one WebSocket message).
    pub async fn send_frame(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        encode(frame, self.version, &mut out);
        self.send_raw(&out).await;
    }

    /// Sends bytes as they are: one TCP write, or one WebSocket message (text when the
    /// bytes are UTF-8, else binary).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let r = tokio::time::timeout(WAIT, self.try_send_raw(bytes)).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("send failed: {e}"),
            Err(_) => panic!("send did not complete within {WAIT:?}"),
        }
    }

    /// Like [`send_raw`] but reports failure (for writes to a connection the server
    /// may already have closed).
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.conn {
            Conn::Tcp(s) => s.write_all(bytes).await.map_err(|e| e.to_string()),
            Conn::Ws(ws) => {
                let payload = Bytes::copy_from_slice(bytes);
                let msg = if std::str::from_utf8(bytes).is_ok() {
                    Message::text(payload)
                } else {
                    Message::binary(payload)
                };
                ws.send(msg).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Sends `bytes` in pieces of `chunk` bytes: separate TCP writes (with a pause so
    /// the server reads them separately) or separate WebSocket messages.
    pub async fn send_split(&mut self, bytes: &[u8], chunk: usize, pause: Duration) {
        for piece in bytes.chunks(chunk) {
            self.send_raw(piece).await;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Sends `frame` with a fresh `receipt` header and waits for its RECEIPT. Frames
    /// that arrive first (MESSAGEs) are kept for the next receive; an ERROR panics.
    pub async fn request(&mut self, frame: Frame) {
        let id = format!("rcpt-{}", self.next_receipt);
        self.next_receipt += 1;
        self.send_frame(&frame.header("receipt", id.clone())).await;
        let mut before = Vec::new();
        loop {
            let f = match self.next_event(WAIT).await {
                Some(Event::Frame(f)) => f,
                other => panic!("waiting for RECEIPT {id}: got {other:?}"),
            };
            if f.command == Command::Receipt && f.get("receipt-id") == Some(id.as_str()) {
                self.stash.extend(before);
                return;
            }
            assert_ne!(
                f.command,
                Command::Error,
                "ERROR while waiting for RECEIPT {id}: {f:?}"
            );
            before.push(f);
        }
    }

    /// SUBSCRIBE (ack mode `auto`) and wait until the server confirmed it.
    pub async fn subscribe(&mut self, id: &str, destination: &str) {
        self.subscribe_ack(id, destination, "auto").await;
    }

    pub async fn subscribe_ack(&mut self, id: &str, destination: &str, ack: &str) {
        let f = Frame::new(Command::Subscribe)
            .header("id", id)
            .header("destination", destination)
            .header("ack", ack);
        self.request(f).await;
    }

    pub async fn unsubscribe(&mut self, id: &str) {
        self.request(Frame::new(Command::Unsubscribe).header("id", id))
            .await;
    }

    /// SEND a text body and wait for its RECEIPT (so it has been published).
    pub async fn publish(&mut self, destination: &str, body: &str) {
        let f = Frame::new(Command::Send)
            .header("destination", destination)
            .header("content-type", "text/plain")
            .body(body.to_owned());
        self.request(f).await;
    }

    /// SEND without waiting for anything.
    pub async fn publish_nowait(&mut self, destination: &str, body: &str) {
        let f = Frame::new(Command::Send)
            .header("destination", destination)
            .body(body.to_owned());
        self.send_frame(&f).await;
    }

    /// Next frame within [`WAIT`]; panics on timeout, close or garbage.
    pub async fn recv_frame(&mut self) -> Frame {
        self.recv_frame_within(WAIT).await
    }

    pub async fn recv_frame_within(&mut self, limit: Duration) -> Frame {
        match self.next_event(limit).await {
            Some(Event::Frame(f)) => f,
            Some(other) => panic!("expected a frame, got {other:?}"),
            None => panic!("no frame within {limit:?}"),
        }
    }

    /// The next MESSAGE; panics on anything else.
    pub async fn recv_message(&mut self) -> Frame {
        let f = self.recv_frame().await;
        assert_eq!(f.command, Command::Message, "expected MESSAGE, got {f:?}");
        f
    }

    /// Body of the next MESSAGE as text.
    pub async fn recv_body(&mut self) -> String {
        let f = self.recv_message().await;
        String::from_utf8(f.body.to_vec()).expect("UTF-8 body")
    }

    /// The next frame, closing or decoding failure, or `None` when nothing happened
    /// within `limit`. Heart-beat EOLs are recorded in `heartbeats`, not returned.
    pub async fn next_event(&mut self, limit: Duration) -> Option<Event> {
        self.poll_event(limit, false).await
    }

    async fn poll_event(&mut self, limit: Duration, stop_on_heartbeat: bool) -> Option<Event> {
        let beats = self.heartbeats.len();
        if let Some(f) = self.stash.pop_front() {
            return Some(Event::Frame(f));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(e) = self.decode_buffered() {
                return Some(e);
            }
            if stop_on_heartbeat && self.heartbeats.len() > beats {
                return Some(Event::Heartbeat);
            }
            if self.closed {
                return Some(Event::Closed);
            }
            match tokio::time::timeout_at(deadline, self.read_more()).await {
                Err(_) => return None,
                Ok(false) => self.closed = true,
                Ok(true) => {}
            }
        }
    }

    /// Waits for at least `n` heart-beats in total (bounded by `limit`); frames that
    /// arrive meanwhile are returned.
    pub async fn wait_heartbeats(&mut self, n: usize, limit: Duration) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut frames = Vec::new();
        while self.heartbeats.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.poll_event(left, true).await {
                Some(Event::Frame(f)) => frames.push(f),
                Some(Event::Heartbeat) => {}
                Some(other) => panic!(
                    "waiting for heart-beats, got {other:?} after {} of {n}",
                    self.heartbeats.len()
                ),
                None if self.heartbeats.len() >= n => break,
                None => panic!(
                    "only {} of {n} heart-beats within {limit:?}",
                    self.heartbeats.len()
                ),
            }
        }
        frames
    }

    fn decode_buffered(&mut self) -> Option<Event> {
        // The buffer always starts at a frame boundary (the decoder advances it only
        // by whole frames), so leading EOLs are heart-beats.
        loop {
            if self.buf.starts_with(b"\n") {
                let _ = self.buf.split_to(1);
            } else if self.buf.starts_with(b"\r\n") {
                let _ = self.buf.split_to(2);
            } else {
                break;
            }
            self.heartbeats.push(Instant::now());
        }
        match self.decoder.decode(&mut self.buf) {
            Ok(Some(f)) => Some(Event::Frame(f)),
            Ok(None) => None,
            Err(e) => {
                self.buf.clear();
                self.closed = true;
                Some(Event::Garbage(e.to_string()))
            }
        }
    }

    /// Reads one chunk; `false` when the connection is over.
    async fn read_more(&mut self) -> bool {
        match &mut self.conn {
            Conn::Tcp(s) => {
                let mut tmp = [0u8; 16 * 1024];
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
                    Some(Ok(m)) if m.is_close() => {
                        // Keep polling so the close reply is flushed; the stream then ends.
                        continue;
                    }
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

    /// Reads raw bytes (into `received`) until the connection ends, without decoding;
    /// `false` if it was still open after `limit`.
    pub async fn read_raw_until_closed(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.closed {
            match tokio::time::timeout_at(deadline, self.read_more()).await {
                Err(_) => return false,
                Ok(false) => self.closed = true,
                Ok(true) => self.buf.clear(),
            }
        }
        true
    }

    /// Reads until the server closes the connection (bounded by [`WAIT`]) and returns
    /// the frames that came first. Panics if the connection stays open.
    pub async fn expect_closed(&mut self) -> Vec<Frame> {
        self.expect_closed_within(WAIT).await
    }

    pub async fn expect_closed_within(&mut self, limit: Duration) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(Event::Frame(f)) => frames.push(f),
                Some(Event::Closed) => return frames,
                Some(Event::Heartbeat) => {}
                Some(Event::Garbage(e)) => {
                    panic!("undecodable bytes before close: {e}; frames: {frames:?}")
                }
                None => {
                    panic!("connection still open {limit:?} later; frames received: {frames:?}")
                }
            }
        }
    }

    /// The next frame must be an ERROR, and the connection must close right after it.
    /// Returns the ERROR.
    pub async fn expect_error_and_close(&mut self) -> Frame {
        let f = self.recv_frame().await;
        assert_eq!(f.command, Command::Error, "expected ERROR, got {f:?}");
        let after = self.expect_closed().await;
        assert!(after.is_empty(), "frames after ERROR: {after:?}");
        f
    }

    /// Asserts nothing but heart-beats arrives for `d` (use sparingly: prefer sentinels).
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Some(e) = self.next_event(d).await {
            panic!("expected nothing for {d:?}, got {e:?}");
        }
    }

    /// DISCONNECT with a receipt; waits for the RECEIPT and the close.
    pub async fn disconnect(mut self) {
        self.request(Frame::new(Command::Disconnect)).await;
        self.expect_closed().await;
    }
}

/// Polls `cond` until it holds; panics after [`WAIT`] naming `what`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Shorthand for a SEND frame.
pub fn send(destination: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination)
        .body(body.to_owned())
}

/// `message` header of an ERROR frame (empty when absent).
pub fn message_of(f: &Frame) -> &str {
    f.get("message").unwrap_or("")
}

// ---------------------------------------------------------------------------
// Auth helpers (used by the auth_*.rs tests)
// ---------------------------------------------------------------------------

/// A tests-only HMAC secret (at least 32 bytes, as `auth.issuers[].secret` requires).
pub const TEST_SECRET: &str = "herald-tests-only-hmac-secret-0123456789";

/// Path of a file under `tests/fixtures/auth/`.
pub fn auth_fixture(name: &str) -> String {
    format!("{}/tests/fixtures/auth/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An issuer entry verifying with `TEST_SECRET`.
pub fn secret_issuer(iss: &str) -> herald::config::IssuerConfig {
    herald::config::IssuerConfig {
        issuer: iss.into(),
        secret: TEST_SECRET.into(),
        ..Default::default()
    }
}

/// Signs `claims` with `alg`: HMAC algorithms use `key` as the secret bytes, the others
/// read `key` as the path of a PEM private key.
pub fn sign_jwt(
    alg: jsonwebtoken::Algorithm,
    key: &[u8],
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    use jsonwebtoken::{Algorithm::*, EncodingKey, Header};
    let encoding = match alg {
        HS256 | HS384 | HS512 => EncodingKey::from_secret(key),
        _ => {
            let path = std::str::from_utf8(key).expect("key path");
            let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            match alg {
                RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                    EncodingKey::from_rsa_pem(&pem).expect("RSA PEM")
                }
                ES256 | ES384 => EncodingKey::from_ec_pem(&pem).expect("EC PEM"),
                _ => EncodingKey::from_ed_pem(&pem).expect("Ed25519 PEM"),
            }
        }
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding).expect("token signs")
}

/// Standard claims: `sub`, `iss` (omitted when empty), `roles`, `iat`/`nbf`, and `exp`
/// `ttl` seconds from now.
pub fn claims(iss: &str, sub: &str, roles: &[&str], ttl: i64) -> serde_json::Value {
    let now = unix_now() as i64;
    let mut c = serde_json::json!({
        "sub": sub,
        "roles": roles,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    });
    if !iss.is_empty() {
        c["iss"] = serde_json::json!(iss);
    }
    c
}

/// An HS256 token from `TEST_SECRET` for `sub` with `roles`, valid for an hour.
pub fn hs_token(iss: &str, sub: &str, roles: &[&str]) -> String {
    sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET.as_bytes(),
        None,
        &claims(iss, sub, roles, 3600),
    )
}

/// The CONNECT frame (1.2) of a client with `extra` headers.
pub fn connect_frame(extra: &[(&str, &str)]) -> Frame {
    let mut f = Frame::new(Command::Connect)
        .header("accept-version", "1.2")
        .header("host", "localhost");
    for (k, v) in extra {
        f = f.header(*k, *v);
    }
    f
}

impl TestServer {
    /// Opens `transport` and sends CONNECT with `extra` headers; returns the client and
    /// the answer (CONNECTED or ERROR).
    pub async fn connect_headers(
        &self,
        transport: Transport,
        extra: &[(&str, &str)],
    ) -> (Client, Frame) {
        let mut c = self.open(transport).await;
        let answer = c.connect_with(connect_frame(extra)).await;
        (c, answer)
    }

    /// Like [`connect_headers`] but the CONNECT must succeed.
    pub async fn connect_ok(
        &self,
        transport: Transport,
        extra: &[(&str, &str)],
    ) -> (Client, Frame) {
        let (c, answer) = self.connect_headers(transport, extra).await;
        assert_eq!(
            answer.command,
            Command::Connected,
            "CONNECT with {extra:?} over {transport:?} answered by {answer:?}"
        );
        (c, answer)
    }

    /// A WebSocket client on `path_and_query` (like `/ws?access_token=x`) whose
    /// handshake carries `headers`; `Err` describes a refused handshake.
    pub async fn ws_with(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, String> {
        let url = format!("ws://{}{path_and_query}", self.http);
        let mut builder = ClientBuilder::new().uri(&url).unwrap();
        for (k, v) in headers {
            builder = builder
                .add_header(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v).unwrap(),
                )
                .unwrap();
        }
        let (ws, _) = tokio::time::timeout(WAIT, builder.connect())
            .await
            .expect("WebSocket handshake answered in time")
            .map_err(|e| e.to_string())?;
        Ok(Client::new(Conn::Ws(ws)))
    }

    /// A raw WebSocket upgrade request on `path_and_query` with `headers`; returns the
    /// status and body of the answer (the body is empty for a 101).
    pub async fn ws_handshake_raw(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let mut req = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            self.http
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.raw_http(req.as_bytes()).await
    }

    /// HTTP request with extra `headers`; returns (status, body as text).
    pub async fn http_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
            self.http,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.raw_http(req.as_bytes()).await
    }

    /// Writes `request` and reads one response: the status line, the headers and a
    /// `Content-Length` (or chunked, or close-delimited) body.
    pub async fn raw_http(&self, request: &[u8]) -> (u16, String) {
        let fut = async {
            let mut s = TcpStream::connect(self.http).await.unwrap();
            s.write_all(request).await.unwrap();
            let mut resp = Vec::new();
            let mut tmp = [0u8; 4096];
            loop {
                if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
                    let status: u16 = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("not an HTTP response: {head:?}"));
                    if status == 101 {
                        return (status, String::new());
                    }
                    let length = head.lines().find_map(|l| {
                        l.strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse::<usize>().ok())
                    });
                    let chunked = head.contains("transfer-encoding: chunked");
                    let body = &resp[end + 4..];
                    match length {
                        Some(n) if body.len() >= n => {
                            return (status, String::from_utf8_lossy(&body[..n]).into_owned());
                        }
                        None if chunked && body.ends_with(b"0\r\n\r\n") => {
                            return (status, dechunk(body));
                        }
                        _ => {}
                    }
                }
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => {
                        let text = String::from_utf8_lossy(&resp).into_owned();
                        let status: u16 = text
                            .split_whitespace()
                            .nth(1)
                            .and_then(|s| s.parse().ok())
                            .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
                        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                        return (status, body.to_owned());
                    }
                    Ok(n) => resp.extend_from_slice(&tmp[..n]),
                }
            }
        };
        tokio::time::timeout(HTTP_WAIT, fut)
            .await
            .expect("HTTP response in time")
    }
}

fn dechunk(mut body: &[u8]) -> String {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&body[..eol]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Client {
    /// Checks the session still works: a SUBSCRIBE, a SEND to it and its MESSAGE.
    pub async fn assert_works(&mut self, topic: &str) {
        let id = format!("alive-{}", self.next_receipt);
        self.subscribe(&id, topic).await;
        self.publish(topic, "still here").await;
        assert_eq!(self.recv_body().await, "still here");
        self.unsubscribe(&id).await;
    }
}

impl TestServer {
    /// An HTTP request with extra `headers` and an optional JSON body; returns (status,
    /// body parsed as JSON, or the text as a JSON string when it is not JSON).
    pub async fn http_call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        json: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let body = json.unwrap_or("");
        let fut = async {
            let mut s = TcpStream::connect(self.http).await.unwrap();
            let mut req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
                self.http,
                body.len()
            );
            if json.is_some() {
                req.push_str("Content-Type: application/json\r\n");
            }
            for (name, value) in headers {
                req.push_str(&format!("{name}: {value}\r\n"));
            }
            req.push_str("\r\n");
            req.push_str(body);
            s.write_all(req.as_bytes()).await.unwrap();
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).await.unwrap();
            resp
        };
        let resp = tokio::time::timeout(HTTP_WAIT, fut)
            .await
            .expect("HTTP response in time");
        let text = String::from_utf8_lossy(&resp);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let body = &resp[split + 4..];
        let v = serde_json::from_slice(body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(body).into_owned())
        });
        (status, v)
    }
}

//! The tests' STOMP client: [`herald_stomp::client::Connection`] over TCP or WebSocket,
//! with what a test needs on top — every wait bounded, failures as panics that say what
//! was expected, heart-beat arrival times, every received byte for wire-level checks,
//! and frames that arrived while waiting for a RECEIPT kept for the next receive.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_stomp::client::{self, Connection, Link};
use herald_stomp::{Command, Frame, Version};
use tokio::net::TcpSocket;

use super::WAIT;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Ws,
}

pub const BOTH: [Transport; 2] = [Transport::Tcp, Transport::Ws];

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
    conn: Connection<Link>,
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
        let stream = tokio::time::timeout(WAIT, client::tcp(addr))
            .await
            .expect("TCP connect in time")
            .expect("TCP connect");
        Client::new(Link::Tcp(stream))
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
        Client::new(Link::Tcp(stream))
    }

    /// A WebSocket client offering `protocols` (none when empty); also returns the
    /// subprotocol the server chose, if any.
    pub async fn ws(url: &str, protocols: &[&str]) -> (Client, Option<String>) {
        let offer = protocols.join(", ");
        let headers: &[(&str, &str)] = if protocols.is_empty() {
            &[]
        } else {
            &[("Sec-WebSocket-Protocol", &offer)]
        };
        Client::ws_with_headers(url, headers)
            .await
            .unwrap_or_else(|e| panic!("WebSocket handshake: {e}"))
    }

    /// A WebSocket client whose upgrade request carries `headers`; `Err` describes a
    /// refused handshake. Also returns the subprotocol the server chose, if any.
    pub async fn ws_with_headers(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Client, Option<String>), String> {
        let (ws, chosen) = tokio::time::timeout(WAIT, client::websocket(url, headers))
            .await
            .expect("WebSocket handshake answered in time")
            .map_err(|e| e.to_string())?;
        Ok((Client::new(Link::WebSocket(Box::new(ws))), chosen))
    }

    fn new(link: Link) -> Client {
        Client {
            conn: Connection::new(link),
            heartbeats: Vec::new(),
            received: Vec::new(),
            closed: false,
            next_receipt: 1,
            stash: VecDeque::new(),
        }
    }

    pub fn is_ws(&self) -> bool {
        self.conn.link().is_websocket()
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

    /// Version used to encode outgoing frames (set by CONNECTED).
    pub fn version(&self) -> Version {
        self.conn.version()
    }

    pub fn set_version(&mut self, v: Version) {
        self.conn.set_version(v);
    }

    /// Encodes `frame` for the negotiated version and sends it (one WebSocket message).
    pub async fn send_frame(&mut self, frame: &Frame) {
        let r = tokio::time::timeout(WAIT, self.conn.send(frame)).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("send failed: {e}"),
            Err(_) => panic!("send did not complete within {WAIT:?}"),
        }
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
        self.conn
            .send_bytes(Bytes::copy_from_slice(bytes))
            .await
            .map_err(|e| e.to_string())
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
        let reader = self.conn.reader_mut();
        loop {
            let buf = reader.buffer_mut();
            if buf.starts_with(b"\n") {
                let _ = buf.split_to(1);
            } else if buf.starts_with(b"\r\n") {
                let _ = buf.split_to(2);
            } else {
                break;
            }
            self.heartbeats.push(Instant::now());
        }
        match reader.try_decode() {
            Ok(Some(f)) => Some(Event::Frame(f)),
            Ok(None) => None,
            Err(e) => {
                reader.buffer_mut().clear();
                self.closed = true;
                Some(Event::Garbage(e.to_string()))
            }
        }
    }

    /// Reads one chunk (recorded in `received`); `false` when the connection is over.
    async fn read_more(&mut self) -> bool {
        let reader = self.conn.reader_mut();
        let before = reader.buffer().len();
        // An error is the end of the connection, as for a peer that resets it.
        let more = reader.fill().await.unwrap_or(false);
        self.received.extend_from_slice(&reader.buffer()[before..]);
        more
    }

    /// Reads raw bytes (into `received`) until the connection ends, without decoding;
    /// `false` if it was still open after `limit`.
    pub async fn read_raw_until_closed(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.closed {
            match tokio::time::timeout_at(deadline, self.read_more()).await {
                Err(_) => return false,
                Ok(false) => self.closed = true,
                Ok(true) => self.conn.reader_mut().buffer_mut().clear(),
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

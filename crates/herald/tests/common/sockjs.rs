//! A SockJS client for the SockJS tests: a server with the protocol test endpoints,
//! HTTP exchanges and streaming responses (reqwest), text WebSockets, and
//! [`Receiver`], which reads SockJS frames (`o`, `h`, `a[...]`, `c[...]`) out of
//! whichever transport wraps them, so one test body runs over every transport.
//! [`SockJsStomp`] speaks STOMP through it with herald-stomp's client.

use std::collections::VecDeque;
use std::future::Future;
use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use herald::Config;
use herald_stomp::client::{self, Connection, Inbound, Outbound, WebSocket};
use herald_stomp::{Command, Frame};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;
use tokio_websockets::Message;

use super::WAIT;
use super::server::TestServer;

/// A server with the SockJS test endpoints, and an HTTP client for it.
pub struct Sj {
    pub server: TestServer,
    pub http: reqwest::Client,
}

/// One finished HTTP exchange.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    pub fn content_type(&self) -> Option<String> {
        self.header("content-type").map(|v| v.replace(' ', ""))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// A fresh session path under a base: `/000/<uuid>`.
pub fn session() -> String {
    format!("/000/{}", uuid::Uuid::new_v4())
}

impl Sj {
    /// Default settings plus the test endpoints.
    pub async fn start() -> Sj {
        Sj::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Sj {
        let server = TestServer::with(|c| {
            c.sockjs.test_endpoints = true;
            tweak(c);
        })
        .await;
        Sj {
            server,
            http: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.http)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.server.http)
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let mut req = self.http.request(method.clone(), self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.body(body.to_owned());
        }
        let fut = async {
            let r = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body = r.text().await.expect("response body");
            Resp {
                status,
                headers,
                body,
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no complete answer within {WAIT:?}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(reqwest::Method::GET, path, &[], "").await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(reqwest::Method::GET, path, headers, "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        self.request(reqwest::Method::POST, path, &[], body).await
    }

    pub async fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        self.request(reqwest::Method::POST, path, headers, body)
            .await
    }

    pub async fn options(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(reqwest::Method::OPTIONS, path, headers, "")
            .await
    }

    /// `xhr_send`s `body` and expects 204.
    pub async fn send(&self, session: &str, body: &str) {
        let r = self.post(&format!("{session}/xhr_send"), body).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (204, ""),
            "xhr_send {body}: {r:?}"
        );
    }

    /// One `xhr` poll; returns its body.
    pub async fn poll(&self, session: &str) -> String {
        let r = self.post(&format!("{session}/xhr"), "").await;
        assert_eq!(r.status, 200, "xhr poll: {r:?}");
        r.body
    }

    /// Opens a streaming response (the status and headers are in; the body streams).
    pub async fn stream(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Stream {
        let mut req = self.http.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = tokio::time::timeout(WAIT, req.send())
            .await
            .unwrap_or_else(|_| panic!("{path}: no response head within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        Stream {
            resp,
            buf: Vec::new(),
            ended: false,
        }
    }

    pub async fn websocket(&self, path: &str) -> Ws {
        let (ws, _) = tokio::time::timeout(WAIT, client::websocket(&self.ws_url(path), &[]))
            .await
            .unwrap_or_else(|_| panic!("{path}: no handshake within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{path}: handshake failed: {e}"));
        Ws(ws)
    }
}

/// A streaming HTTP response read piece by piece.
pub struct Stream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    ended: bool,
}

impl Stream {
    pub fn status(&self) -> u16 {
        self.resp.status().as_u16()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.resp
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Reads more of the body; `false` once it ended.
    pub async fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        match tokio::time::timeout(WAIT, self.resp.chunk()).await {
            Err(_) => panic!(
                "streaming response: nothing new within {WAIT:?}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(Err(e)) => panic!("streaming response broke: {e}"),
            Ok(Ok(None)) => {
                self.ended = true;
                false
            }
            Ok(Ok(Some(b))) => {
                self.buf.extend_from_slice(&b);
                true
            }
        }
    }

    /// The body up to and including the next `sep` (without it); `None` when the
    /// response ended first (with nothing left over).
    pub async fn until(&mut self, sep: &str) -> Option<String> {
        loop {
            if let Some(i) = self
                .buf
                .windows(sep.len())
                .position(|w| w == sep.as_bytes())
            {
                let piece: Vec<u8> = self.buf.drain(..i + sep.len()).collect();
                return Some(String::from_utf8(piece[..i].to_vec()).expect("UTF-8 body"));
            }
            if !self.fill().await {
                assert!(
                    self.buf.is_empty(),
                    "the response ended in the middle of {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
        }
    }

    /// The next `\n`-terminated line (xhr_streaming frames).
    pub async fn line(&mut self) -> Option<String> {
        self.until("\n").await
    }

    /// The next xhr_streaming frame that is no heartbeat.
    pub async fn frame(&mut self) -> Option<String> {
        loop {
            match self.line().await {
                Some(l) if l == "h" => continue,
                other => return other,
            }
        }
    }

    /// Everything until the response ends.
    pub async fn rest(&mut self) -> String {
        while self.fill().await {}
        String::from_utf8(std::mem::take(&mut self.buf)).expect("UTF-8 body")
    }
}

/// A WebSocket client speaking text messages.
pub struct Ws(pub WebSocket);

impl Ws {
    pub async fn send(&mut self, text: &str) {
        tokio::time::timeout(WAIT, self.0.send(Message::text(text.to_owned())))
            .await
            .expect("WebSocket send in time")
            .expect("WebSocket send");
    }

    /// The next text message, or `Err` with the close (code, reason) or `None` when the
    /// connection ended without one.
    pub async fn recv(&mut self) -> Result<String, Option<(u16, String)>> {
        loop {
            let m = tokio::time::timeout(WAIT, self.0.next())
                .await
                .unwrap_or_else(|_| panic!("no WebSocket message within {WAIT:?}"));
            match m {
                None | Some(Err(_)) => return Err(None),
                Some(Ok(m)) => {
                    if let Some((code, reason)) = m.as_close() {
                        return Err(Some((u16::from(code), reason.to_owned())));
                    }
                    if let Some(t) = m.as_text() {
                        return Ok(t.to_owned());
                    }
                }
            }
        }
    }

    pub async fn text(&mut self) -> String {
        self.recv()
            .await
            .unwrap_or_else(|c| panic!("expected a message, the WebSocket closed: {c:?}"))
    }

    /// The next SockJS frame that is no heartbeat.
    pub async fn frame(&mut self) -> String {
        loop {
            let t = self.text().await;
            if t != "h" {
                return t;
            }
        }
    }

    /// Expects the connection to close; returns the close code and reason, if any.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        match self.recv().await {
            Ok(t) => panic!("expected the WebSocket to close, got {t:?}"),
            Err(close) => close,
        }
    }
}

/// The messages of an `a[...]` frame.
pub fn messages(frame: &str) -> Vec<String> {
    let json = frame
        .strip_prefix('a')
        .unwrap_or_else(|| panic!("not a message frame: {frame:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("bad a[...] frame ({e}): {frame:?}"))
}

/// The transports a SockJS client receives on. Sending is `xhr_send` for all but
/// the websocket, which sends on itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockJsTransport {
    Websocket,
    XhrStreaming,
    XhrPolling,
    EventSource,
    HtmlFile,
    JsonpPolling,
}

impl SockJsTransport {
    pub const ALL: [SockJsTransport; 6] = [
        SockJsTransport::Websocket,
        SockJsTransport::XhrStreaming,
        SockJsTransport::XhrPolling,
        SockJsTransport::EventSource,
        SockJsTransport::HtmlFile,
        SockJsTransport::JsonpPolling,
    ];

    /// Those that keep one HTTP response open and write frames into it.
    pub const STREAMING: [SockJsTransport; 3] = [
        SockJsTransport::XhrStreaming,
        SockJsTransport::EventSource,
        SockJsTransport::HtmlFile,
    ];

    /// The URL under a session, with the callback the script transports need.
    pub fn path(self) -> &'static str {
        match self {
            SockJsTransport::Websocket => "websocket",
            SockJsTransport::XhrStreaming => "xhr_streaming",
            SockJsTransport::XhrPolling => "xhr",
            SockJsTransport::EventSource => "eventsource",
            SockJsTransport::HtmlFile => "htmlfile?c=cb",
            SockJsTransport::JsonpPolling => "jsonp?c=cb",
        }
    }

    /// The method sockjs-client uses (the other one is refused).
    pub fn method(self) -> Method {
        match self {
            SockJsTransport::XhrStreaming | SockJsTransport::XhrPolling => Method::POST,
            _ => Method::GET,
        }
    }

    /// The `Content-Type` of its responses (spaces removed).
    pub fn content_type(self) -> &'static str {
        match self {
            SockJsTransport::Websocket => "",
            SockJsTransport::XhrStreaming
            | SockJsTransport::XhrPolling
            | SockJsTransport::JsonpPolling => "application/javascript;charset=UTF-8",
            SockJsTransport::EventSource => "text/event-stream",
            SockJsTransport::HtmlFile => "text/html;charset=UTF-8",
        }
    }

    pub fn is_polling(self) -> bool {
        matches!(
            self,
            SockJsTransport::XhrPolling | SockJsTransport::JsonpPolling
        )
    }
}

enum Receiving {
    Websocket(Ws),
    Streaming(Stream),
    Polling,
}

/// A receiver on one SockJS session over one transport, yielding SockJS frames with
/// the transport's own wrapping (lines, events, script tags, callbacks) taken off.
pub struct Receiver {
    pub transport: SockJsTransport,
    http: reqwest::Client,
    /// `http://host/base/server/session`.
    url: String,
    receiving: Receiving,
    /// The first response of an HTTP transport: its status and headers.
    pub status: u16,
    pub headers: HeaderMap,
}

impl Receiver {
    /// Opens `transport` on `session` (a path like `/echo/000/id`). A streaming
    /// response's prelude is read and checked; nothing else is.
    pub async fn open(sj: &Sj, transport: SockJsTransport, session: &str) -> Receiver {
        Receiver::open_with(sj, transport, session, &[]).await
    }

    pub async fn open_with(
        sj: &Sj,
        transport: SockJsTransport,
        session: &str,
        headers: &[(&str, &str)],
    ) -> Receiver {
        let path = format!("{session}/{}", transport.path());
        let mut r = Receiver {
            transport,
            http: sj.http.clone(),
            url: sj.url(session),
            receiving: Receiving::Polling,
            status: 101,
            headers: HeaderMap::new(),
        };
        match transport {
            SockJsTransport::Websocket => {
                r.receiving = Receiving::Websocket(sj.websocket(&path).await)
            }
            SockJsTransport::XhrPolling | SockJsTransport::JsonpPolling => {}
            _ => {
                let mut st = sj.stream(transport.method(), &path, headers).await;
                r.status = st.status();
                r.headers = st.resp.headers().clone();
                expect_prelude(transport, &mut st).await;
                r.receiving = Receiving::Streaming(st);
            }
        }
        r
    }

    /// The next SockJS frame, heart-beats included; `None` when the response or the
    /// WebSocket ended. A polling transport makes one request per call.
    pub async fn next(&mut self) -> Option<String> {
        let t = self.transport;
        match &mut self.receiving {
            Receiving::Websocket(ws) => ws.recv().await.ok(),
            Receiving::Streaming(st) => match t {
                SockJsTransport::XhrStreaming => st.line().await,
                SockJsTransport::EventSource => st.until("\r\n\r\n").await.map(|e| {
                    e.strip_prefix("data: ")
                        .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                        .to_owned()
                }),
                _ => st.until("\r\n").await.map(|s| {
                    let call = s
                        .strip_prefix("<script>\np(")
                        .and_then(|s| s.strip_suffix(");\n</script>"))
                        .unwrap_or_else(|| panic!("not a script frame: {s:?}"));
                    json_string(call)
                }),
            },
            Receiving::Polling => {
                let r = self
                    .http
                    .request(t.method(), format!("{}/{}", self.url, t.path()))
                    .send();
                let r = tokio::time::timeout(WAIT, r)
                    .await
                    .expect("a poll answered in time")
                    .expect("a poll");
                self.status = r.status().as_u16();
                self.headers = r.headers().clone();
                let body = r.text().await.expect("poll body");
                assert_eq!(self.status, 200, "{t:?} poll: {body}");
                Some(match t {
                    SockJsTransport::XhrPolling => body
                        .strip_suffix('\n')
                        .unwrap_or_else(|| panic!("no newline after {body:?}"))
                        .to_owned(),
                    _ => {
                        let call = body
                            .strip_prefix("/**/cb(")
                            .and_then(|s| s.strip_suffix(");\r\n"))
                            .unwrap_or_else(|| panic!("not a callback: {body:?}"));
                        json_string(call)
                    }
                })
            }
        }
    }

    /// The next frame that is no heart-beat; panics when the transport ended.
    pub async fn frame(&mut self) -> String {
        loop {
            match self.next().await {
                Some(f) if f == "h" => continue,
                Some(f) => return f,
                None => panic!("{:?} ended while a frame was expected", self.transport),
            }
        }
    }

    /// Sends SockJS messages (a JSON array) the way a client on this transport does.
    pub async fn send(&mut self, sj: &Sj, session: &str, body: &str) {
        match &mut self.receiving {
            Receiving::Websocket(ws) => ws.send(body).await,
            _ => sj.send(session, body).await,
        }
    }

    /// The WebSocket under a websocket receiver.
    pub fn websocket(&mut self) -> Option<&mut Ws> {
        match &mut self.receiving {
            Receiving::Websocket(ws) => Some(ws),
            _ => None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }
}

/// Reads the bytes a streaming transport writes before its first frame, and checks
/// them: browsers hand a streaming body to the page only once enough has arrived.
pub async fn expect_prelude(transport: SockJsTransport, st: &mut Stream) {
    match transport {
        SockJsTransport::XhrStreaming => {
            // 2 KiB of 'h' first: some browsers hand a streaming body over only after that.
            assert_eq!(st.line().await.unwrap(), "h".repeat(2048));
        }
        SockJsTransport::EventSource => {
            // A blank line first, then one event per frame.
            assert_eq!(st.until("\r\n").await.as_deref(), Some(""));
        }
        SockJsTransport::HtmlFile => {
            let head = st.until("\r\n\r\n").await.unwrap();
            assert!(
                head.len() > 1024,
                "the page is padded past 1 KiB ({} bytes)",
                head.len()
            );
            assert!(head.contains("var c = parent.cb;"), "{head}");
        }
        other => panic!("{other:?} is no streaming transport"),
    }
}

/// A JSON string literal's text.
fn json_string(literal: &str) -> String {
    serde_json::from_str(literal).unwrap_or_else(|e| panic!("not a JSON string ({e}): {literal}"))
}

/// STOMP over a SockJS session: received on xhr_streaming (reopened when a response
/// reaches its limit) or on the websocket transport; each frame sent as one SockJS
/// message (`xhr_send`, or the websocket).
pub struct SockJsLink {
    http: reqwest::Client,
    /// `http://host/ws-sockjs/server/session`.
    url: String,
    receiving: Receiving,
    /// Messages of the last SockJS frame not yet handed to the decoder: one at a time,
    /// so a frame cut across two messages shows as a partial frame.
    pending: VecDeque<String>,
}

impl SockJsLink {
    async fn next_frame(&mut self) -> String {
        loop {
            let frame = match &mut self.receiving {
                Receiving::Websocket(ws) => ws.frame().await,
                Receiving::Streaming(st) => match st.frame().await {
                    Some(f) => f,
                    None => {
                        // The response limit: the next request carries on.
                        let r = self.http.post(format!("{}/xhr_streaming", self.url)).send();
                        let resp = tokio::time::timeout(WAIT, r)
                            .await
                            .expect("xhr_streaming reopened in time")
                            .expect("xhr_streaming reopened");
                        *st = Stream {
                            resp,
                            buf: Vec::new(),
                            ended: false,
                        };
                        st.line().await.expect("prelude");
                        continue;
                    }
                },
                Receiving::Polling => unreachable!("STOMP over SockJS polls nothing"),
            };
            assert!(
                !frame.starts_with('c'),
                "the SockJS session closed: {frame}"
            );
            return frame;
        }
    }
}

impl Inbound for SockJsLink {
    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        while self.pending.is_empty() {
            let frame = self.next_frame().await;
            self.pending.extend(messages(&frame));
        }
        let m = self.pending.pop_front().expect("a message");
        buf.extend_from_slice(m.as_bytes());
        Ok(true)
    }
}

impl Outbound for SockJsLink {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        let text = String::from_utf8(bytes.to_vec()).expect("a text frame");
        let body = json!([text]).to_string();
        match &mut self.receiving {
            Receiving::Websocket(ws) => ws.send(&body).await,
            _ => {
                let r = self
                    .http
                    .post(format!("{}/xhr_send", self.url))
                    .body(body.clone())
                    .send();
                let r = tokio::time::timeout(WAIT, r)
                    .await
                    .expect("xhr_send answered in time")
                    .expect("xhr_send");
                assert_eq!(r.status().as_u16(), 204, "xhr_send {body}");
            }
        }
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A STOMP client over SockJS.
pub struct SockJsStomp {
    conn: Connection<SockJsLink>,
    /// Frames that arrived while [`SockJsStomp::request`] waited for its RECEIPT.
    frames: VecDeque<Frame>,
}

impl SockJsStomp {
    /// Receives on `transport` (websocket or xhr_streaming) on a new `/ws-sockjs`
    /// session, and connects.
    pub async fn connect(sj: &Sj, transport: SockJsTransport) -> SockJsStomp {
        SockJsStomp::connect_at(sj, "/ws-sockjs", transport).await
    }

    /// [`SockJsStomp::connect`] to the SockJS endpoint at `endpoint`.
    pub async fn connect_at(sj: &Sj, endpoint: &str, transport: SockJsTransport) -> SockJsStomp {
        let session = format!("{endpoint}{}", session());
        let mut r = Receiver::open(sj, transport, &session).await;
        assert!(matches!(r.status, 101 | 200), "{transport:?}: {}", r.status);
        assert_eq!(r.next().await.as_deref(), Some("o"));
        let link = SockJsLink {
            http: sj.http.clone(),
            url: r.url,
            receiving: r.receiving,
            pending: VecDeque::new(),
        };
        let mut c = SockJsStomp {
            conn: Connection::with_decoder(
                link,
                herald_stomp::Decoder::new(herald_stomp::Limits {
                    max_frame: 1 << 20,
                    max_headers: 64,
                    max_header_line: 8192,
                }),
            ),
            frames: VecDeque::new(),
        };
        let f = c
            .conn
            .connect(&stomp_connect_frame())
            .await
            .expect("CONNECT");
        assert_eq!(f.command, Command::Connected, "{f:?}");
        c
    }

    pub async fn send(&mut self, f: &Frame) {
        self.conn.send(f).await.expect("STOMP over SockJS send");
    }

    /// The next STOMP frame; a SockJS message holding a partial frame fails.
    pub async fn recv(&mut self) -> Frame {
        if let Some(f) = self.frames.pop_front() {
            return f;
        }
        let reader = self.conn.reader_mut();
        loop {
            match reader.try_decode() {
                Ok(Some(f)) => return f,
                Ok(None) => {}
                Err(e) => panic!("undecodable STOMP frame ({e})"),
            }
            // Heart-beat EOLs (messages of their own) and EOLs after a frame.
            let buf = reader.buffer_mut();
            while buf.first().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                let _ = buf.split_to(1);
            }
            assert!(
                buf.is_empty(),
                "a SockJS message held a partial STOMP frame: {:?}",
                String::from_utf8_lossy(buf)
            );
            reader.fill().await.expect("SockJS receive");
        }
    }

    /// Sends `f` with a receipt and waits for it; other frames are kept.
    pub async fn request(&mut self, f: Frame, receipt: &str) {
        self.send(&f.header("receipt", receipt)).await;
        let mut before = Vec::new();
        loop {
            let g = self.recv().await;
            if g.command == Command::Receipt && g.get("receipt-id") == Some(receipt) {
                break;
            }
            assert_ne!(g.command, Command::Error, "{g:?}");
            before.push(g);
        }
        for g in before.into_iter().rev() {
            self.frames.push_front(g);
        }
    }

    pub async fn recv_body(&mut self) -> String {
        let f = self.recv().await;
        assert_eq!(f.command, Command::Message, "{f:?}");
        String::from_utf8(f.body.to_vec()).unwrap()
    }
}

pub fn stomp_connect_frame() -> Frame {
    Frame::new(Command::Connect)
        .header("accept-version", "1.2")
        .header("host", "localhost")
}

/// A STOMP frame as the text of one SockJS message.
pub fn stomp_text(f: &Frame) -> String {
    let mut out = BytesMut::new();
    herald_stomp::encode(f, herald_stomp::Version::V1_2, &mut out);
    String::from_utf8(out.to_vec()).expect("text frame")
}

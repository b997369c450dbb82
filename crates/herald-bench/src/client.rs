//! One STOMP 1.2 session over a WebSocket (subprotocol `v12.stomp`).
//!
//! [`Target`] holds where to connect and how to log in; [`Target::connect`] opens
//! the TCP socket from one of the local source addresses 127.0.0.1..=127.0.0.k
//! (so that more than 64k client connections fit), performs the WebSocket upgrade
//! and the CONNECT/CONNECTED exchange, and returns a [`Session`]. A session can be
//! [`Session::split`] into a writer and a reader for tasks that do both at once.
//!
//! Frames move through herald-stomp's client (the same one herald's tests use); what
//! is the benchmark's own is the source-address spread and [`Session::recv_fast`],
//! which counts MESSAGE frames without decoding them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use herald_stomp::client::{self, Connection, FrameWriter, Inbound, WebSocket};
use herald_stomp::{Command, Frame};
use http::header::SEC_WEBSOCKET_PROTOCOL;
use http::{HeaderValue, Uri};
use tokio::net::{TcpSocket, TcpStream};
use tokio_websockets::Message;

pub(crate) type Ws = WebSocket;

/// How long a single connect (TCP + upgrade + CONNECTED) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to connect. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    uri: Uri,
    addr: SocketAddr,
    /// Number of local source addresses to spread over: 127.0.0.1..=127.0.0.N.
    sources: u8,
    login: Option<String>,
    passcode: Option<String>,
    /// Value of the STOMP `host` header (RabbitMQ reads it as the vhost).
    host: String,
    /// Raw WebSocket to the floor server: no subprotocol, no STOMP handshake; a
    /// connection is ready once the server's `READY` message has arrived.
    pub raw: bool,
}

/// Timings of one connect, for the connection-storm scenario.
#[derive(Debug, Clone, Copy)]
pub struct ConnectTimings {
    /// TCP connect plus WebSocket upgrade.
    pub upgrade: Duration,
    /// From the start to the CONNECTED frame.
    pub total: Duration,
}

impl Target {
    /// Parses a `ws://` URL and refuses anything that is not a loopback address:
    /// this tool generates load and must never be pointed at another machine.
    pub fn new(
        url: &str,
        login: Option<String>,
        passcode: Option<String>,
        host: String,
        sources: u8,
    ) -> Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
        match uri.scheme_str() {
            Some("ws") => {}
            Some(other) => bail!("unsupported scheme {other}: only ws:// on loopback"),
            None => bail!("URL {url} has no scheme (use ws://127.0.0.1:PORT/ws)"),
        }
        let addr = url_addr(&uri, url)?;
        Ok(Target {
            url: url.to_owned(),
            uri,
            addr,
            sources: sources.max(1),
            login,
            passcode,
            host,
            raw: false,
        })
    }

    /// The server's socket address (the REST scenarios use the same port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The local address connection number `idx` binds to.
    fn source_for(&self, idx: usize) -> Option<IpAddr> {
        match self.addr.ip() {
            IpAddr::V4(_) => {
                let k = 1 + (idx % self.sources as usize) as u8;
                Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, k)))
            }
            IpAddr::V6(_) => None,
        }
    }

    /// TCP connect to `addr` from the source address of connection number `idx`.
    pub async fn open_tcp(&self, addr: SocketAddr, idx: usize) -> Result<TcpStream> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = self.source_for(idx) {
            // Let the kernel pick the port at connect time, per 4-tuple, so each
            // source address offers the whole ephemeral range.
            set_bind_no_port(&socket);
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("binding {ip}"))?;
        }
        let stream = socket
            .connect(addr)
            .await
            .with_context(|| format!("TCP connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// TCP connect (from a spread source address) and WebSocket upgrade.
    pub async fn open_ws(&self, idx: usize) -> Result<Ws> {
        let stream = self.open_tcp(self.addr, idx).await?;
        let protocol = (!self.raw).then(|| {
            (
                SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static("v12.stomp"),
            )
        });
        let (ws, _protocol) = client::websocket_on(stream, self.uri.clone(), protocol)
            .await
            .context("WebSocket upgrade")?;
        Ok(ws)
    }

    /// A CONNECT frame for STOMP 1.2 with the given heart-beat (ms, ms).
    pub fn connect_frame(&self, heartbeat: (u32, u32), login: Option<&str>) -> Frame {
        let mut f = Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("host", self.host.clone())
            .header("heart-beat", format!("{},{}", heartbeat.0, heartbeat.1));
        if let Some(l) = login.or(self.login.as_deref()) {
            f = f.header("login", l.to_owned());
        }
        if let Some(p) = &self.passcode {
            f = f.header("passcode", p.clone());
        }
        f
    }

    /// Opens a STOMP session: upgrade, CONNECT, wait for CONNECTED.
    pub async fn connect(&self, idx: usize, heartbeat: (u32, u32)) -> Result<Session> {
        Ok(self.connect_timed(idx, heartbeat).await?.0)
    }

    /// Like [`Target::connect`] with this CONNECT `login` (a user name in Herald's
    /// anonymous mode) instead of `--login`.
    pub async fn connect_as(
        &self,
        idx: usize,
        heartbeat: (u32, u32),
        login: &str,
    ) -> Result<Session> {
        Ok(self.connect_timed_as(idx, heartbeat, Some(login)).await?.0)
    }

    /// Like [`Target::connect`], also returning how long each step took.
    pub async fn connect_timed(
        &self,
        idx: usize,
        heartbeat: (u32, u32),
    ) -> Result<(Session, ConnectTimings)> {
        self.connect_timed_as(idx, heartbeat, None).await
    }

    async fn connect_timed_as(
        &self,
        idx: usize,
        heartbeat: (u32, u32),
        login: Option<&str>,
    ) -> Result<(Session, ConnectTimings)> {
        let fut = async {
            let t0 = Instant::now();
            let ws = self.open_ws(idx).await?;
            let upgrade = t0.elapsed();
            let mut s = Session::new(ws, self.raw);
            if self.raw {
                // The floor server greets a registered connection with READY.
                let reader = s.conn.reader_mut();
                if !reader.fill().await? {
                    bail!("connection closed before READY");
                }
                if &reader.buffer()[..] != b"READY" {
                    bail!("expected READY from the floor server");
                }
                reader.buffer_mut().clear();
                return Ok((
                    s,
                    ConnectTimings {
                        upgrade,
                        total: t0.elapsed(),
                    },
                ));
            }
            expect_connected(s.conn.connect(&self.connect_frame(heartbeat, login)).await)?;
            Ok((
                s,
                ConnectTimings {
                    upgrade,
                    total: t0.elapsed(),
                },
            ))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| anyhow!("connect timed out after {:?}", CONNECT_TIMEOUT))?
    }
}

/// The address of a URL's host and port (80 by default), which must be loopback.
pub(crate) fn url_addr(uri: &Uri, url: &str) -> Result<SocketAddr> {
    let host = uri
        .host()
        .ok_or_else(|| anyhow!("URL {url} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    loopback_addr(host, port).with_context(|| format!("target {url}"))
}

/// Resolves a host and port, refusing anything that is not a loopback address: this
/// tool generates load and must never be pointed at another machine.
pub(crate) fn loopback_addr(host: &str, port: u16) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
    if !addrs.iter().all(|a| a.ip().is_loopback()) {
        bail!("refusing non-loopback target {host} ({addr}): herald-bench only targets loopback");
    }
    Ok(addr)
}

#[allow(unsafe_code)]
fn set_bind_no_port(socket: &TcpSocket) {
    let one: libc::c_int = 1;
    // SAFETY: a valid fd and a pointer to a c_int of the stated size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The server's answer to CONNECT: CONNECTED, or why not.
pub(crate) fn expect_connected(answer: Result<Frame, client::Error>) -> Result<()> {
    match answer {
        Ok(f) if f.command == Command::Connected => Ok(()),
        Ok(f) if f.command == Command::Error => bail!("CONNECT refused: {}", error_text(&f)),
        Ok(f) => bail!("expected CONNECTED, got {}", f.command),
        Err(client::Error::Closed) => bail!("connection closed before CONNECTED"),
        Err(e) => Err(e.into()),
    }
}

/// The `message` header of an ERROR frame, or its body.
pub(crate) fn error_text(f: &Frame) -> String {
    match f.get("message") {
        Some(m) => m.to_owned(),
        None => String::from_utf8_lossy(&f.body).trim().to_owned(),
    }
}

/// What [`Session::recv_fast`] found.
pub enum Event {
    /// A MESSAGE frame, skipped without decoding; its `bench-ts` header if any.
    Message { ts: Option<u64> },
    /// Any other frame, decoded.
    Frame(Frame),
}

/// Outcome of scanning the front of the buffer for a MESSAGE frame.
enum Scan {
    /// A whole MESSAGE frame of this many bytes (EOLs before it included).
    Message { len: usize, ts: Option<u64> },
    /// The front is a MESSAGE frame that has not fully arrived.
    Partial,
    /// Something else: leave it to the decoder.
    Other,
}

/// Finds a whole MESSAGE frame at the front of `buf` and reads only its
/// `content-length` and `bench-ts` headers: no allocation per message, which
/// matters when one process receives for a thousand subscribers.
fn scan_message(buf: &[u8]) -> Scan {
    let mut i = 0;
    while i < buf.len() && (buf[i] == b'\n' || buf[i] == b'\r') {
        i += 1;
    }
    let rest = &buf[i..];
    const CMD: &[u8] = b"MESSAGE";
    if rest.len() < CMD.len() + 1 {
        return if CMD.starts_with(rest) {
            Scan::Partial
        } else {
            Scan::Other
        };
    }
    if !rest.starts_with(CMD) || !matches!(rest[CMD.len()], b'\n' | b'\r') {
        return Scan::Other;
    }
    let mut pos = i + CMD.len();
    if buf[pos] == b'\r' {
        pos += 1;
    }
    if pos >= buf.len() {
        return Scan::Partial;
    }
    pos += 1; // the command line's \n
    let (mut content_length, mut ts) = (None, None);
    loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            return Scan::Partial;
        };
        let mut line = &buf[pos..pos + nl];
        pos += nl + 1;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix(b"content-length:") {
            content_length = content_length.or(parse_u64(v));
        } else if let Some(v) = line.strip_prefix(b"bench-ts:") {
            ts = ts.or(parse_u64(v));
        }
    }
    let end = match content_length {
        Some(len) => {
            let end = pos + len as usize;
            if end >= buf.len() {
                return Scan::Partial;
            }
            if buf[end] != 0 {
                return Scan::Other; // let the decoder report it
            }
            end
        }
        None => match memchr::memchr(0, &buf[pos..]) {
            Some(n) => pos + n,
            None => return Scan::Partial,
        },
    };
    // Notifications carry their timestamp in the JSON body: `"benchTs":123`.
    let ts = ts.or_else(|| {
        const KEY: &[u8] = b"\"benchTs\":";
        let body = &buf[pos..end];
        let at = memchr::memmem::find(body, KEY)? + KEY.len();
        let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        parse_u64(&body[at..at + digits])
    });
    Scan::Message { len: end + 1, ts }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + (d - b'0') as u64)
    })
}

/// Whether the decoder holds the head of a frame whose body has not arrived yet: the
/// skim may only look at the buffer when it starts at a frame boundary.
#[derive(Default)]
struct Skim {
    in_decoder: bool,
}

impl Skim {
    /// Like [`Skim::recv`], but MESSAGE frames are only counted and their `bench-ts`
    /// read, not decoded. `None` once the peer has closed.
    async fn recv_fast<S: Inbound>(
        &mut self,
        frames: &mut client::FrameReader<S>,
    ) -> Result<Option<Event>> {
        loop {
            if !self.in_decoder {
                match scan_message(frames.buffer()) {
                    Scan::Message { len, ts } => {
                        let _ = frames.buffer_mut().split_to(len);
                        return Ok(Some(Event::Message { ts }));
                    }
                    Scan::Partial => {
                        if !frames.fill().await? {
                            return Ok(None);
                        }
                        continue;
                    }
                    Scan::Other => {}
                }
            }
            match frames.try_decode()? {
                Some(f) => {
                    self.in_decoder = false;
                    return Ok(Some(Event::Frame(f)));
                }
                None => {
                    self.in_decoder = !frames.buffer().is_empty();
                    if !frames.fill().await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The next frame, or `None` once the peer has closed the connection.
    async fn recv<S: Inbound>(
        &mut self,
        frames: &mut client::FrameReader<S>,
    ) -> Result<Option<Frame>> {
        loop {
            if let Some(f) = frames.try_decode()? {
                self.in_decoder = false;
                return Ok(Some(f));
            }
            self.in_decoder = !frames.buffer().is_empty();
            if !frames.fill().await? {
                return Ok(None);
            }
        }
    }
}

/// A STOMP session that is read and written from one task.
pub struct Session {
    conn: Connection<Ws>,
    skim: Skim,
    raw: bool,
}

impl Session {
    fn new(ws: Ws, raw: bool) -> Self {
        Session {
            conn: Connection::new(ws),
            skim: Skim::default(),
            raw,
        }
    }

    pub async fn recv(&mut self) -> Result<Option<Frame>> {
        self.skim.recv(self.conn.reader_mut()).await
    }

    pub async fn recv_fast(&mut self) -> Result<Option<Event>> {
        self.skim.recv_fast(self.conn.reader_mut()).await
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<()> {
        Ok(self.conn.send(frame).await?)
    }

    /// SUBSCRIBE with a receipt, and wait for that RECEIPT (MESSAGE frames that
    /// arrive first are dropped: nothing is published before all receipts).
    pub async fn subscribe(&mut self, id: &str, destination: &str) -> Result<()> {
        if self.raw {
            return Ok(()); // the floor server sends everything to everyone
        }
        let receipt = format!("sub-{id}");
        let f = Frame::new(Command::Subscribe)
            .header("id", id)
            .header("destination", destination)
            .header("ack", "auto")
            .header("receipt", receipt.clone());
        self.send(&f).await?;
        loop {
            match self.recv().await? {
                Some(f) if f.command == Command::Receipt => {
                    if f.get("receipt-id") == Some(receipt.as_str()) {
                        return Ok(());
                    }
                }
                Some(f) if f.command == Command::Error => {
                    bail!("SUBSCRIBE refused: {}", error_text(&f))
                }
                Some(_) => {}
                None => bail!("connection closed before RECEIPT of SUBSCRIBE"),
            }
        }
    }

    /// Sends a WebSocket close and waits briefly for the server to close too.
    pub async fn close(mut self) {
        let ws = self.conn.link_mut();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = SinkExt::close(ws).await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }

    /// Drops the connection with a TCP reset: no WebSocket close, no DISCONNECT.
    pub fn reset(self) {
        let _ = self.conn.link().get_ref().set_zero_linger();
    }

    /// Splits into a writer and a reader usable from two tasks.
    pub fn split(self) -> (Writer, Reader<SplitStream<Ws>>) {
        let (frames_out, frames) = self.conn.split();
        (
            Writer { frames: frames_out },
            Reader {
                frames,
                skim: self.skim,
            },
        )
    }
}

/// The reading half of a split session.
pub struct Reader<S> {
    frames: client::FrameReader<S>,
    skim: Skim,
}

impl<S: Inbound> Reader<S> {
    pub async fn recv(&mut self) -> Result<Option<Frame>> {
        self.skim.recv(&mut self.frames).await
    }

    pub async fn recv_fast(&mut self) -> Result<Option<Event>> {
        self.skim.recv_fast(&mut self.frames).await
    }
}

/// The writing half of a split session.
pub struct Writer {
    frames: FrameWriter<SplitSink<Ws, Message>>,
}

impl Writer {
    /// Queues a frame without flushing (flushes by itself past a threshold).
    pub async fn feed(&mut self, frame: &Frame) -> Result<()> {
        Ok(self.frames.feed(frame).await?)
    }

    pub async fn flush(&mut self) -> Result<()> {
        Ok(self.frames.flush().await?)
    }

    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.frames.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(extra: &str, body: &str, with_len: bool) -> Vec<u8> {
        let mut f = format!("MESSAGE\nsubscription:0\nmessage-id:1\n{extra}");
        if with_len {
            f.push_str(&format!("content-length:{}\n", body.len()));
        }
        f.push('\n');
        f.push_str(body);
        f.push('\0');
        f.into_bytes()
    }

    #[test]
    fn scans_whole_messages_and_reads_bench_ts() {
        for with_len in [true, false] {
            let m = msg("bench-ts:12345\nbench-ts:9\n", "hello", with_len);
            match scan_message(&m) {
                Scan::Message { len, ts } => {
                    assert_eq!(len, m.len());
                    assert_eq!(ts, Some(12345));
                }
                _ => panic!("not scanned"),
            }
            for cut in 0..m.len() {
                assert!(
                    matches!(scan_message(&m[..cut]), Scan::Partial),
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn leading_eols_crlf_and_nul_in_body() {
        let mut m = b"\r\n\nMESSAGE\r\nbench-ts:7\r\ncontent-length:3\r\n\r\na\0b\0".to_vec();
        m.extend_from_slice(b"RECEIPT\n");
        match scan_message(&m) {
            Scan::Message { len, ts } => {
                assert_eq!(&m[len..], b"RECEIPT\n");
                assert_eq!(ts, Some(7));
            }
            _ => panic!("not scanned"),
        }
    }

    #[test]
    fn reads_bench_ts_from_a_json_body() {
        let m = msg("", r#"{"id":1,"payload":{"benchTs":4242},"x":2}"#, true);
        match scan_message(&m) {
            Scan::Message { ts, .. } => assert_eq!(ts, Some(4242)),
            _ => panic!("not scanned"),
        }
    }

    #[test]
    fn other_frames_go_to_the_decoder() {
        assert!(matches!(
            scan_message(b"RECEIPT\nreceipt-id:1\n\n\0"),
            Scan::Other
        ));
        assert!(matches!(scan_message(b"MESSAGES\n"), Scan::Other));
        assert!(matches!(scan_message(b"ERR"), Scan::Other));
        assert!(matches!(scan_message(b"MESS"), Scan::Partial));
    }
}

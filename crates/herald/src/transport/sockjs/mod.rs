//! SockJS 0.3.3 (as sockjs-client 1.6 speaks it): WebSocket emulation over HTTP for
//! clients that cannot open a WebSocket.
//!
//! A SockJS endpoint (a [`Service`] at a prefix, `/ws-sockjs` for STOMP) answers
//! `GET {prefix}` (greeting), `/info`, `/iframe*.html`, the raw `/websocket`, and the
//! session URLs `/{server}/{session}/{transport}` for the transports `websocket`,
//! `xhr`, `xhr_send`, `xhr_streaming`, `eventsource`, `htmlfile`, `jsonp`, `jsonp_send`.
//!
//! - A session of the HTTP transports is a [`Session`] in the service's registry: the
//!   messages the client sent (`inbound`), the messages waiting for it (`outbound`),
//!   which receiving request is attached, and the close frame once closed. Sending
//!   requests (`xhr_send`, `jsonp_send`) append to `inbound`; receiving requests
//!   (`xhr`, `jsonp`, the streaming ones) attach, take `outbound` as `a[...]` frames,
//!   and get an `h` frame after `heartbeat` of silence. A session without a receiving
//!   request holds only its queues; after `disconnect_delay` without one it closes.
//! - The application on a session (STOMP's [`super::drive`], the plain JSON chat, the
//!   test suite's echo) sees a [`Conn`], a [`Transport`] whose every read is one
//!   SockJS message: it runs in the session's one task, spawned at open, which also
//!   lingers `disconnect_delay` after the end so that late requests get the close
//!   frame, then leaves the registry.
//! - The websocket transports (`websocket.rs`) are a [`Transport`] on the socket
//!   itself and never enter the registry.
//! - Every request of a session is admitted like the first (`admission::Gate::admit`:
//!   host, origin, token) and must come from the session's [`Opener`] — the same
//!   client address and the same principal — since the session id is the client's
//!   choice and anyone who learns it could otherwise send and read as its opener.
//!   Sessions are counted against `sockjs.max_sessions` and `sockjs.max_sessions_per_ip`.
//!
//! `frames.rs` has the wire formats, `polling.rs` and `streaming.rs` the HTTP transports.

pub mod frames;
mod polling;
mod streaming;
mod websocket;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use axum::routing::any;
use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};

use super::{Admission, Transport};
use crate::admission::Entry;
use crate::auth::Handshake;
use crate::broker::OutFrame;
use crate::config::SockJsConfig;
use crate::http::HttpState;

/// The close frame a session gets when the server ends it.
pub const GO_AWAY: (u16, &str) = (3000, "Go away!");
const ANOTHER_CONNECTION: (u16, &str) = (2010, "Another connection still open");
const INTERRUPTED: (u16, &str) = (1002, "Connection interrupted");
/// How long a receiving request waits for a busy session's receiver to leave.
const BUSY_GRACE: Duration = Duration::from_millis(250);

/// What runs on a session: it gets the connection and the HTTP state, and returns
/// when the session is over.
pub type App = Arc<dyn Fn(Conn, Opened) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What an application gets besides its connection.
pub struct Opened {
    pub state: HttpState,
    /// The origin/IP/token checks of the opening request (empty for test endpoints).
    pub admission: Admission,
}

/// Which transports an endpoint offers (`sockjs.transports`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transports {
    pub websocket: bool,
    pub xhr_streaming: bool,
    pub xhr_polling: bool,
    pub eventsource: bool,
    pub htmlfile: bool,
    pub jsonp: bool,
}

impl Transports {
    pub const ALL: Transports = Transports {
        websocket: true,
        xhr_streaming: true,
        xhr_polling: true,
        eventsource: true,
        htmlfile: true,
        jsonp: true,
    };

    /// From sockjs-client's names (validated by `Config::validate`).
    pub fn from_names(names: &[String]) -> Transports {
        let has = |n: &str| names.iter().any(|t| t == n);
        Transports {
            websocket: has("websocket"),
            xhr_streaming: has("xhr-streaming"),
            xhr_polling: has("xhr-polling"),
            eventsource: has("eventsource"),
            htmlfile: has("htmlfile"),
            jsonp: has("jsonp-polling"),
        }
    }

    /// `xhr_send` carries the messages of every transport but jsonp.
    fn xhr_send(self) -> bool {
        self.xhr_streaming || self.xhr_polling || self.eventsource || self.htmlfile
    }

    /// Whether the URL transport `name` (`xhr`, `jsonp_send`, ...) is offered.
    fn offers(self, name: &str) -> bool {
        match name {
            "websocket" => self.websocket,
            "xhr" => self.xhr_polling,
            "xhr_streaming" => self.xhr_streaming,
            "xhr_send" => self.xhr_send(),
            "eventsource" => self.eventsource,
            "htmlfile" => self.htmlfile,
            "jsonp" | "jsonp_send" => self.jsonp,
            _ => false,
        }
    }
}

/// Who opened a session: every later request of it must come from the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Opener {
    ip: IpAddr,
    /// The handshake's principal (`None`: no token came with it).
    principal: Option<String>,
}

/// A request that passed admission.
pub(crate) struct Admitted {
    handshake: Handshake,
    opener: Opener,
}

/// The settings of one SockJS endpoint.
#[derive(Clone, Debug)]
pub struct Options {
    pub transports: Transports,
    pub cookie_needed: bool,
    pub heartbeat: Duration,
    pub disconnect_delay: Duration,
    pub response_limit: usize,
    pub client_url: String,
    /// Bytes of messages that may wait on either side of a session.
    pub queue_limit: usize,
    /// Largest request body or WebSocket message.
    pub max_message: usize,
    /// Admit every request (host, origin, token, the session's opener) and count
    /// sessions against the budgets; off for the protocol suite's test endpoints.
    pub admit: bool,
}

impl Options {
    pub fn from_config(sj: &SockJsConfig, node: &crate::node::Node) -> Options {
        let stomp = &node.config.stomp;
        Options {
            transports: Transports::from_names(&sj.transports),
            cookie_needed: sj.cookie_needed,
            heartbeat: sj.heartbeat,
            disconnect_delay: sj.disconnect_delay,
            response_limit: sj.response_limit,
            client_url: sj.client_url.clone(),
            queue_limit: stomp.outbound_queue,
            max_message: stomp.max_frame.saturating_mul(4).max(1 << 20),
            admit: true,
        }
    }
}

/// One SockJS endpoint: its prefix, settings, application and live sessions.
pub struct Service {
    prefix: String,
    /// STOMP, or an application that reads no CONNECT frame (the token check differs).
    entry: Entry,
    /// Set at construction, or from the node's configuration at the first request.
    opts: OnceLock<Options>,
    app: App,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Service {
    /// An endpoint at `prefix`; `opts` `None` takes them from `[sockjs]` at the first
    /// request (for routes built before the node exists, like the apps').
    pub fn new(
        prefix: impl Into<String>,
        entry: Entry,
        opts: Option<Options>,
        app: App,
    ) -> Arc<Service> {
        let cell = OnceLock::new();
        if let Some(o) = opts {
            let _ = cell.set(o);
        }
        Arc::new(Service {
            prefix: prefix.into(),
            entry,
            opts: cell,
            app,
            sessions: Mutex::default(),
        })
    }

    fn opts(&self) -> &Options {
        self.opts
            .get()
            .expect("options are set before the first request is served")
    }

    /// The routes of this endpoint: `{prefix}`, `{prefix}/` and everything under it.
    pub fn routes(self: &Arc<Self>) -> Router<HttpState> {
        let p = self.prefix.trim_end_matches('/').to_owned();
        let handler = {
            let service = self.clone();
            move |State(state): State<HttpState>,
                  ConnectInfo(peer): ConnectInfo<SocketAddr>,
                  req: Request<Body>| {
                let service = service.clone();
                async move { service.dispatch(state, peer, req).await }
            }
        };
        Router::new()
            .route(&p, any(handler.clone()))
            .route(&format!("{p}/"), any(handler.clone()))
            .route(&format!("{p}/{{*rest}}"), any(handler))
    }

    async fn dispatch(
        self: Arc<Self>,
        state: HttpState,
        peer: SocketAddr,
        req: Request<Body>,
    ) -> Response<Body> {
        self.opts
            .get_or_init(|| Options::from_config(&state.node.config.sockjs, &state.node));
        let path = req.uri().path();
        let rest = path
            .strip_prefix(self.prefix.trim_end_matches('/'))
            .unwrap_or("");
        let rest = rest.strip_prefix('/').unwrap_or(rest).to_owned();
        let method = req.method().clone();
        let cors = self.cors_allowed(&state, req.headers());
        let offered = self.opts().transports;
        match rest.as_str() {
            "" => match method {
                Method::GET | Method::HEAD => text(StatusCode::OK, "Welcome to SockJS!\n"),
                _ => not_allowed("GET"),
            },
            "info" => match method {
                Method::GET => self.info(req.headers(), cors),
                Method::OPTIONS => options(req.headers(), cors, "OPTIONS, GET"),
                _ => not_allowed("OPTIONS, GET"),
            },
            "websocket" if offered.websocket => {
                websocket::upgrade(self, state, peer, req, false).await
            }
            r if is_iframe(r) => match method {
                Method::GET => iframe(req.headers(), &self.opts().client_url),
                _ => not_allowed("GET"),
            },
            r => {
                let parts: Vec<&str> = r.split('/').collect();
                let [_server, session, transport] = parts[..] else {
                    return not_found();
                };
                if parts[..2].iter().any(|p| p.is_empty() || p.contains('.')) {
                    return not_found();
                }
                let session = session.to_owned();
                match (transport, method) {
                    (t, _) if !offered.offers(t) => not_found(),
                    ("websocket", Method::GET) => {
                        websocket::upgrade(self, state, peer, req, true).await
                    }
                    ("websocket", _) => not_allowed("GET"),
                    ("xhr" | "xhr_send" | "xhr_streaming", Method::OPTIONS) => {
                        options(req.headers(), cors, "OPTIONS, POST")
                    }
                    ("xhr", Method::POST) => polling::xhr(self, state, peer, req, session).await,
                    ("jsonp", Method::GET) => polling::jsonp(self, state, peer, req, session).await,
                    ("xhr_send", Method::POST) => {
                        polling::send(self, state, peer, req, session, polling::Sender::Xhr).await
                    }
                    ("jsonp_send", Method::POST) => {
                        polling::send(self, state, peer, req, session, polling::Sender::Jsonp).await
                    }
                    ("xhr_streaming", Method::POST) => {
                        streaming::serve(self, state, peer, req, session, streaming::Kind::Xhr)
                            .await
                    }
                    ("eventsource", Method::GET) => {
                        streaming::serve(
                            self,
                            state,
                            peer,
                            req,
                            session,
                            streaming::Kind::EventSource,
                        )
                        .await
                    }
                    ("htmlfile", Method::GET) => {
                        streaming::serve(self, state, peer, req, session, streaming::Kind::HtmlFile)
                            .await
                    }
                    ("xhr" | "xhr_send" | "xhr_streaming" | "jsonp_send", _) => {
                        not_allowed("OPTIONS, POST")
                    }
                    ("jsonp" | "eventsource" | "htmlfile", _) => not_allowed("GET"),
                    _ => not_found(),
                }
            }
        }
    }

    fn info(&self, headers: &HeaderMap, cors_ok: bool) -> Response<Body> {
        let body = serde_json::json!({
            "websocket": self.opts().transports.websocket,
            "cookie_needed": self.opts().cookie_needed,
            "origins": ["*:*"],
            "entropy": rand_u32(),
        })
        .to_string();
        let mut r = text(StatusCode::OK, body);
        set(
            &mut r,
            header::CONTENT_TYPE,
            "application/json;charset=UTF-8",
        );
        no_cache(&mut r);
        cors(headers, cors_ok, &mut r);
        r
    }

    /// Whether CORS lets the request's origin read the answer: an allowed origin, or
    /// any for the test endpoints.
    fn cors_allowed(&self, state: &HttpState, headers: &HeaderMap) -> bool {
        !self.opts().admit || state.node.gate.origin_allowed(headers)
    }

    /// Admits one request of a session (`None`: this endpoint admits nothing).
    /// Takes the request's parts: a borrowed body (not `Sync`) would make the future
    /// not `Send`.
    async fn admit(
        &self,
        state: &HttpState,
        peer: SocketAddr,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Option<Admitted>, Response<Body>> {
        if !self.opts().admit {
            return Ok(None);
        }
        let node = &state.node;
        let handshake = node
            .gate
            .admit(&node.auth, peer, headers, query, self.entry)
            .await
            .map_err(|r| r.response())?;
        let principal = match &handshake {
            Handshake::Authenticated(p) => Some(p.name.clone()),
            Handshake::NoToken => None,
        };
        Ok(Some(Admitted {
            handshake,
            opener: Opener {
                ip: peer.ip(),
                principal,
            },
        }))
    }

    /// `Err` (403) when a request by `by` does not come from the session's opener.
    fn check_opener(
        &self,
        state: &HttpState,
        session: &Session,
        by: Option<&Opener>,
    ) -> Result<(), Response<Body>> {
        match (&session.opener, by) {
            (Some(opener), Some(by)) if opener != by => {
                tracing::info!(?opener, ?by, "SockJS request from another client refused");
                Err(state.node.gate.not_the_opener().response())
            }
            _ => Ok(()),
        }
    }

    /// The session a receiving request is for, opened (counted against the budgets,
    /// task spawned) when it does not exist yet.
    async fn open(
        self: &Arc<Self>,
        state: &HttpState,
        admitted: Option<Admitted>,
        peer: SocketAddr,
        id: &str,
    ) -> Result<Arc<Session>, Response<Body>> {
        if let Some(s) = self.find(id) {
            self.check_opener(state, &s, admitted.as_ref().map(|a| &a.opener))?;
            return Ok(s);
        }
        let slot = match admitted {
            Some(_) => Some(
                state
                    .node
                    .gate
                    .sockjs_session(peer.ip())
                    .map_err(|r| r.response())?,
            ),
            None => None,
        };
        let (handshake, opener) = match admitted {
            Some(a) => (Some(a.handshake), Some(a.opener)),
            None => (None, None),
        };
        let session = {
            let mut sessions = self.sessions.lock();
            if let Some(s) = sessions.get(id) {
                let s = s.clone();
                drop(sessions);
                self.check_opener(state, &s, opener.as_ref())?;
                return Ok(s);
            }
            let s = Arc::new(Session::new(self.opts(), opener));
            sessions.insert(id.to_owned(), s.clone());
            s
        };
        let admission = Admission {
            handshake,
            permit: None,
        };
        let conn = Conn::Http(SockJsTransport {
            session: session.clone(),
        });
        let run = (self.app)(
            conn,
            Opened {
                state: state.clone(),
                admission,
            },
        );
        let (service, s, id, shutdown) = (
            self.clone(),
            session.clone(),
            id.to_owned(),
            state.shutdown.clone(),
        );
        state.tasks.spawn(async move {
            // The session's place in the budgets, until it leaves the registry.
            let _slot = slot;
            run.await;
            s.close_with(GO_AWAY);
            // Late requests still get the close frame until the session has been
            // without a receiver for the disconnect delay.
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = s.unattached_for(service.opts().disconnect_delay) => {}
            }
            let mut sessions = service.sessions.lock();
            if sessions.get(&id).is_some_and(|cur| Arc::ptr_eq(cur, &s)) {
                sessions.remove(&id);
            }
        });
        Ok(session)
    }

    fn find(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(id).cloned()
    }

    /// `JSESSIONID` for endpoints that need it: the client's own, or `dummy`.
    fn cookie(&self, headers: &HeaderMap, r: &mut Response<Body>) {
        if !self.opts().cookie_needed {
            return;
        }
        let id = crate::params::cookie(headers, "JSESSIONID")
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b';'))
            .unwrap_or("dummy");
        if let Ok(v) = HeaderValue::from_str(&format!("JSESSIONID={id}; path=/")) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
}

/// The SockJS endpoints the configuration asks for: STOMP at `sockjs.path`, and the
/// protocol test suite's endpoints when `sockjs.test_endpoints` is on.
pub(crate) fn routes(node: &Arc<crate::node::Node>) -> Router<HttpState> {
    let sj = &node.config.sockjs;
    let mut router = Router::new();
    if sj.enabled {
        let stomp: App = Arc::new(|conn, opened: Opened| {
            let Opened { state, admission } = opened;
            Box::pin(super::drive(conn, state.node, state.shutdown, admission))
        });
        let opts = Options::from_config(sj, node);
        router = router.merge(Service::new(&sj.path, Entry::Stomp, Some(opts), stomp).routes());
    }
    if sj.test_endpoints {
        // The configured settings (the suite wants `response_limit = 4096`; its script
        // sets that), without admission checks.
        // Every transport, jsonp and htmlfile included: the suite tests them all.
        let mut opts = Options::from_config(sj, node);
        opts.admit = false;
        opts.transports = Transports::ALL;
        let echo: App = Arc::new(|conn, opened| Box::pin(echo(conn, opened)));
        let close: App = Arc::new(|mut conn: Conn, _| Box::pin(async move { conn.close().await }));
        let no_ws = Options {
            transports: Transports {
                websocket: false,
                ..Transports::ALL
            },
            ..opts.clone()
        };
        let cookie = Options {
            cookie_needed: true,
            ..opts.clone()
        };
        for (prefix, opts, app) in [
            ("/echo", opts.clone(), echo.clone()),
            ("/close", opts, close),
            ("/disabled_websocket_echo", no_ws, echo.clone()),
            ("/cookie_needed_echo", cookie, echo),
        ] {
            router = router.merge(Service::new(prefix, Entry::Stomp, Some(opts), app).routes());
        }
    }
    router
}

/// The test suite's echo service: every message comes back as it was (on the raw
/// WebSocket, with its opcode: binary in, binary out).
async fn echo(mut conn: Conn, opened: Opened) {
    let mut buf = BytesMut::new();
    loop {
        tokio::select! {
            _ = opened.state.shutdown.cancelled() => break,
            read = conn.read(&mut buf) => {
                if !matches!(read, Ok(true)) {
                    break;
                }
                let text = !matches!(&conn, Conn::Ws(ws) if ws.read_binary());
                let msg = OutFrame { text, bytes: buf.split().freeze() };
                if conn.write(&[msg]).await.is_err() {
                    break;
                }
            }
        }
    }
    conn.close().await;
}

/// The session state shared by its task and its HTTP requests.
pub struct Session {
    state: Mutex<SessionState>,
    /// Wakes the application (a message arrived, a receiver came or went, it closed).
    to_app: Notify,
    /// Wakes the attached receiver (messages to send, closed).
    to_client: Notify,
    /// Wakes sending requests waiting for the application to take their messages,
    /// and receiving requests waiting for the attached one to leave.
    to_senders: Notify,
    queue_limit: usize,
    disconnect_delay: Duration,
    /// Who opened it (`None`: an endpoint that admits nothing).
    opener: Option<Opener>,
}

struct SessionState {
    inbound: VecDeque<String>,
    inbound_bytes: usize,
    /// Messages received, taken by the application, and taken before its latest
    /// read (so handled): a sending request answers once its messages are handled.
    received: u64,
    taken: u64,
    handled: u64,
    outbound: Vec<String>,
    outbound_bytes: usize,
    /// The attached receiving request, if any.
    receiver: Option<u64>,
    receivers: u64,
    /// The `o` frame went out.
    opened: bool,
    closed: Option<(u16, String)>,
    /// When the last receiver left (or the session opened).
    detached_at: Instant,
}

impl Session {
    fn new(opts: &Options, opener: Option<Opener>) -> Session {
        Session {
            state: Mutex::new(SessionState {
                inbound: VecDeque::new(),
                inbound_bytes: 0,
                received: 0,
                taken: 0,
                handled: 0,
                outbound: Vec::new(),
                outbound_bytes: 0,
                receiver: None,
                receivers: 0,
                opened: false,
                closed: None,
                detached_at: Instant::now(),
            }),
            to_app: Notify::new(),
            to_client: Notify::new(),
            to_senders: Notify::new(),
            queue_limit: opts.queue_limit,
            disconnect_delay: opts.disconnect_delay,
            opener,
        }
    }

    fn close_with(&self, (code, reason): (u16, &str)) {
        {
            let mut s = self.state.lock();
            if s.closed.is_none() {
                s.closed = Some((code, reason.to_owned()));
            }
        }
        self.to_client.notify_one();
        self.to_app.notify_one();
        self.to_senders.notify_waiters();
    }

    /// Queues messages from the client for the application, and waits (a second at
    /// most) until it has handled them: messages are handled in order as they arrive,
    /// and a client that sends faster than the application reads is slowed down.
    async fn receive(&self, msgs: Vec<String>) -> Result<(), &'static str> {
        let seq = {
            let mut s = self.state.lock();
            if s.closed.is_some() {
                return Ok(());
            }
            let bytes: usize = msgs.iter().map(String::len).sum();
            if s.inbound_bytes + bytes > self.queue_limit {
                return Err("Too much data waiting for the session.");
            }
            s.inbound_bytes += bytes;
            s.received += msgs.len() as u64;
            s.inbound.extend(msgs);
            s.received
        };
        self.to_app.notify_one();
        let handled = async {
            loop {
                let notified = self.to_senders.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let s = self.state.lock();
                    if s.handled >= seq || s.closed.is_some() {
                        return;
                    }
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), handled).await;
        Ok(())
    }

    /// Attaches a receiving request; `Err` carries the frame to answer it with
    /// instead (another receiver is attached, or the session is closed). A client
    /// that hung up on its previous request and opened the next at once may be seen
    /// before its hang-up is (another connection's task notices it): so a busy
    /// session is given a moment for its receiver to leave.
    async fn attach(self: &Arc<Self>) -> Result<Receiver, String> {
        let mut waited = false;
        loop {
            let left = self.to_senders.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            match self.try_attach() {
                Err(busy) if !waited && busy.starts_with("c[2010,") => {
                    waited = true;
                    let _ = tokio::time::timeout(BUSY_GRACE, left).await;
                }
                other => return other,
            }
        }
    }

    fn try_attach(self: &Arc<Self>) -> Result<Receiver, String> {
        let mut s = self.state.lock();
        if s.opened
            && let Some((code, reason)) = &s.closed
        {
            return Err(frames::close(*code, reason));
        }
        if s.receiver.is_some() {
            let (code, reason) = ANOTHER_CONNECTION;
            return Err(frames::close(code, reason));
        }
        s.receivers += 1;
        s.receiver = Some(s.receivers);
        drop(s);
        self.to_app.notify_one();
        Ok(Receiver {
            session: self.clone(),
            attached: true,
        })
    }

    /// Resolves once no receiver has been attached for `delay`.
    async fn unattached_for(&self, delay: Duration) {
        loop {
            let deadline = {
                let s = self.state.lock();
                s.receiver.is_none().then(|| s.detached_at + delay)
            };
            match deadline {
                Some(d) if Instant::now() >= d => return,
                Some(d) => {
                    tokio::select! {
                        _ = self.to_app.notified() => {}
                        _ = sleep_until(d) => {}
                    }
                }
                None => self.to_app.notified().await,
            }
        }
    }
}

/// A receiving request's hold on its session. Dropped without [`Receiver::finish`]
/// (the client went away mid-request), it closes the session: messages may be lost.
struct Receiver {
    session: Arc<Session>,
    attached: bool,
}

enum Next {
    /// `o`, `h` or `a[...]`.
    Frame(String),
    /// The close frame: the last one.
    Close(String),
}

impl Receiver {
    /// The next frame for the client; `h` after `heartbeat` of silence.
    async fn next(&mut self, heartbeat: Duration) -> Next {
        let deadline = Instant::now() + heartbeat;
        loop {
            {
                let mut s = self.session.state.lock();
                if !s.opened {
                    s.opened = true;
                    return Next::Frame(frames::OPEN.into());
                }
                if !s.outbound.is_empty() {
                    let msgs = std::mem::take(&mut s.outbound);
                    s.outbound_bytes = 0;
                    drop(s);
                    // A writer may be waiting for room.
                    self.session.to_app.notify_one();
                    return Next::Frame(frames::messages(&msgs));
                }
                if let Some((code, reason)) = &s.closed {
                    return Next::Close(frames::close(*code, reason));
                }
            }
            tokio::select! {
                _ = self.session.to_client.notified() => {}
                _ = sleep_until(deadline) => return Next::Frame(frames::HEARTBEAT.into()),
            }
        }
    }

    /// The request ended normally: the session waits for the next one.
    fn finish(mut self) {
        self.detach(false);
    }

    fn detach(&mut self, interrupted: bool) {
        if !std::mem::take(&mut self.attached) {
            return;
        }
        {
            let mut s = self.session.state.lock();
            s.receiver = None;
            s.detached_at = Instant::now();
            if interrupted && s.closed.is_none() {
                let (code, reason) = INTERRUPTED;
                s.closed = Some((code, reason.to_owned()));
            }
        }
        self.session.to_app.notify_one();
        self.session.to_senders.notify_waiters();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.detach(true);
    }
}

/// The application's side of an HTTP-transport session.
pub struct SockJsTransport {
    session: Arc<Session>,
}

impl SockJsTransport {
    fn queue(&self, msgs: impl Iterator<Item = String>) -> io::Result<()> {
        {
            let mut s = self.session.state.lock();
            if s.closed.is_some() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            for m in msgs {
                s.outbound_bytes += m.len();
                s.outbound.push(m);
            }
        }
        self.session.to_client.notify_one();
        Ok(())
    }

    /// Waits while more than the queue limit waits for a receiver.
    async fn room(&self) -> io::Result<()> {
        loop {
            {
                let s = self.session.state.lock();
                if s.closed.is_some() {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                if s.outbound_bytes <= self.session.queue_limit {
                    return Ok(());
                }
            }
            self.session.to_app.notified().await;
        }
    }
}

impl Transport for SockJsTransport {
    /// One message per read; `Ok(false)` once the session closed or went without a
    /// receiving request for the disconnect delay.
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        {
            // Coming back to read means the messages taken before are handled.
            let mut s = self.session.state.lock();
            if s.handled < s.taken {
                s.handled = s.taken;
                drop(s);
                self.session.to_senders.notify_waiters();
            }
        }
        loop {
            let deadline = {
                let mut s = self.session.state.lock();
                if let Some(m) = s.inbound.pop_front() {
                    s.taken += 1;
                    s.inbound_bytes -= m.len();
                    buf.extend_from_slice(m.as_bytes());
                    return Ok(true);
                }
                if s.closed.is_some() {
                    return Ok(false);
                }
                s.receiver
                    .is_none()
                    .then(|| s.detached_at + self.session.disconnect_delay)
            };
            match deadline {
                Some(d) if Instant::now() >= d => {
                    tracing::debug!("SockJS session timed out without a receiving request");
                    self.session.close_with(GO_AWAY);
                    return Ok(false);
                }
                Some(d) => {
                    tokio::select! {
                        _ = self.session.to_app.notified() => {}
                        _ = sleep_until(d) => {}
                    }
                }
                None => self.session.to_app.notified().await,
            }
        }
    }

    async fn write(&mut self, frames: &[OutFrame]) -> io::Result<()> {
        self.queue(
            frames
                .iter()
                .map(|f| String::from_utf8_lossy(&f.bytes).into_owned()),
        )?;
        self.room().await
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        self.queue(std::iter::once("\n".to_owned()))?;
        self.room().await
    }

    async fn close(&mut self) {
        self.session.close_with(GO_AWAY);
    }
}

/// A SockJS connection of any transport, as an application sees it: every read is
/// one message, every written frame one message.
// One per connection, never moved once the session runs: boxing a variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    Http(SockJsTransport),
    Ws(websocket::SockJsWs),
}

impl Transport for Conn {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        match self {
            Conn::Http(t) => t.read(buf).await,
            Conn::Ws(t) => t.read(buf).await,
        }
    }

    async fn write(&mut self, frames: &[OutFrame]) -> io::Result<()> {
        match self {
            Conn::Http(t) => t.write(frames).await,
            Conn::Ws(t) => t.write(frames).await,
        }
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        match self {
            Conn::Http(t) => t.heartbeat().await,
            Conn::Ws(t) => t.heartbeat().await,
        }
    }

    fn progress(&self) -> Option<crate::transport::Progress> {
        match self {
            // A write completes as soon as the session has room: the whole write is
            // the progress.
            Conn::Http(_) => None,
            Conn::Ws(t) => t.progress(),
        }
    }

    async fn close(&mut self) {
        match self {
            Conn::Http(t) => t.close().await,
            Conn::Ws(t) => t.close().await,
        }
    }
}

// ------------------------------------------------------------------ HTTP helpers

fn is_iframe(path: &str) -> bool {
    path.strip_prefix("iframe")
        .and_then(|r| r.strip_suffix(".html"))
        .is_some_and(|mid| {
            mid.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"-._".contains(&b))
        })
}

fn rand_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

fn set(r: &mut Response<Body>, name: header::HeaderName, value: &'static str) {
    r.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

fn text(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    set(&mut r, header::CONTENT_TYPE, "text/plain;charset=UTF-8");
    r
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "Not found.\n")
}

/// 405 with `Allow` and no body (nor content type).
fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    set(&mut r, header::ALLOW, allow);
    r
}

/// A 500 with the spec's message (bad payload, missing callback).
fn error(msg: &str) -> Response<Body> {
    text(StatusCode::INTERNAL_SERVER_ERROR, msg.to_owned())
}

fn no_cache(r: &mut Response<Body>) {
    set(
        r,
        header::CACHE_CONTROL,
        "no-store, no-cache, no-transform, must-revalidate, max-age=0",
    );
}

const ONE_YEAR: Duration = Duration::from_secs(31_536_000);

fn cache_for_a_year(r: &mut Response<Body>) {
    set(r, header::CACHE_CONTROL, "public, max-age=31536000");
    if let Ok(v) = HeaderValue::from_str(&frames::http_date(ONE_YEAR)) {
        r.headers_mut().insert(header::EXPIRES, v);
    }
}

/// An allowed origin (`allowed`) may read the response, with cookies; without an
/// Origin anyone may, without them. Other origins get no CORS headers, so their pages
/// cannot read it. The answer depends on `Origin`, so caches are told (`Vary`).
fn cors(req: &HeaderMap, allowed: bool, r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    match req.get(header::ORIGIN) {
        Some(_) if !allowed => return,
        Some(origin) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    if let Some(asked) = req
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| !v.is_empty())
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
}

/// A CORS preflight answer, cacheable for a year.
fn options(req: &HeaderMap, cors_ok: bool, methods: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    cache_for_a_year(&mut r);
    set(&mut r, header::ACCESS_CONTROL_MAX_AGE, "31536000");
    set(&mut r, header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    cors(req, cors_ok, &mut r);
    r
}

fn iframe(req: &HeaderMap, client_url: &str) -> Response<Body> {
    let page = frames::iframe_page(client_url);
    let mut sha = sha1_smol::Sha1::new();
    sha.update(page.as_bytes());
    let etag = format!("\"{}\"", sha.digest());
    let mut r = if req
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(page));
        set(&mut r, header::CONTENT_TYPE, "text/html;charset=UTF-8");
        r
    };
    cache_for_a_year(&mut r);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// A JSONP callback from `?c=`, or the spec's 500.
fn callback(req: &Request<Body>) -> Result<String, Response<Body>> {
    let Some(c) = crate::params::query_value(req.uri().query(), "c") else {
        return Err(error("\"callback\" parameter required"));
    };
    if !frames::valid_callback(&c) {
        return Err(error("invalid \"callback\" parameter"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iframe_paths() {
        for ok in [
            "iframe.html",
            "iframe-a.html",
            "iframe-.html",
            "iframe-0.1.2abc-dirty.2144.html",
        ] {
            assert!(is_iframe(ok), "{ok}");
        }
        for bad in [
            "iframe.htm",
            "iframe",
            "IFRAME.HTML",
            "iframe.HTML",
            "iframe.xml",
            "iframe-/.html",
        ] {
            assert!(!is_iframe(bad), "{bad}");
        }
    }
}

//! Plain-socket endpoints: JSON text over WebSocket (and SockJS) without STOMP, for
//! clients that open `new WebSocket(url)` and exchange their own messages.
//!
//! An [`Endpoint`] is a path, optionally a SockJS prefix, and three callbacks. Every
//! connection is admitted like `/ws` (`Context::admit` with `Entry::Plain`: host,
//! origin, token at the handshake, connection budgets), authenticated as a CONNECT
//! would be (`?login=` standing for the `login` header), and then runs in the same
//! connection loop as a STOMP session: same outbox and slow-consumer limits, frame
//! rate, token expiry, shutdown, admin kicks, metrics and session registry. The
//! WebSocket is kept alive by pings (every `stomp.heartbeat_send`; no pong or message
//! for two of them ends it). The application gets a [`Socket`] per connection: it
//! subscribes it to destinations it chooses (the client receives each message's
//! body, or the application's [`Delivery::Shaped`] rendering of it, as one text
//! message), writes JSON to it, and sees every client message, in order, one at a
//! time. A message callback's error is answered with an error message and the
//! session stays open; only the loop's limits close it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::connection::{self, Connected, Ended, Input, Protocol};
use super::{Admission, ConnectionPermit, Context, Transport, sockjs, websocket};
use crate::admission::Entry;
use crate::auth::limits::TokenBucket;
/// How a subscription's messages reach the client ([`Socket::subscribe_with`]).
pub use crate::broker::Delivery;
use crate::broker::{AckMode, OutFrame, Outbox, Pressure, Recipient, Subscription};
use crate::error::{ErrorKind, StompError};
use crate::handler::{BoxFuture, HandlerError, Messaging, Principal, Reply, SessionInfo};
/// What a [`Delivery::Shaped`] function sees of a message: its `destination`,
/// `headers` and `body`.
pub use crate::message::Message;
use crate::node::Node;
use crate::ops::sessions::SessionEntry;
use crate::session::Heartbeat;

/// Why a client message (or the opening) was not handled: told to that client alone,
/// as the endpoint's error message; the session stays open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageError(pub String);

impl MessageError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> MessageError {
        MessageError(message.into())
    }
}

impl From<HandlerError> for MessageError {
    fn from(e: HandlerError) -> MessageError {
        MessageError(e.message)
    }
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a client message as `T`; the error names `what` and serde's reason
/// ("invalid chat message: expected value at line 1 column 1").
pub fn parse<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, MessageError> {
    serde_json::from_str(text).map_err(|e| MessageError(format!("invalid {what}: {e}")))
}

type OpenFn = dyn Fn(Socket) -> BoxFuture<Result<(), MessageError>> + Send + Sync;
type MessageFn = dyn Fn(Socket, String) -> BoxFuture<Result<(), MessageError>> + Send + Sync;
type CloseFn = dyn Fn(Socket) -> BoxFuture<()> + Send + Sync;
type ErrorFn = dyn Fn(&str) -> serde_json::Value + Send + Sync;

/// A plain-socket endpoint: where it is served and what it does with a connection.
///
/// ```no_run
/// use herald::plain::{Endpoint, MessageError, Socket};
/// let echo = Endpoint::new("/ws/echo")
///     .on_open(|socket: Socket| async move {
///         socket.subscribe("/topic/news")?; // bodies published there reach the client
///         socket.send(&serde_json::json!({ "type": "HELLO", "user": socket.principal().name }));
///         Ok(())
///     })
///     .on_message(|socket: Socket, text: String| async move {
///         let v: serde_json::Value = herald::plain::parse(&text, "message")?;
///         socket.send(&v);
///         Ok::<_, MessageError>(())
///     });
/// ```
#[derive(Clone)]
pub struct Endpoint {
    path: String,
    /// SockJS prefixes the endpoint is also served at.
    sockjs: Vec<String>,
    handlers: Arc<Callbacks>,
}

#[derive(Clone)]
struct Callbacks {
    open: Option<Arc<OpenFn>>,
    message: Option<Arc<MessageFn>>,
    close: Option<Arc<CloseFn>>,
    error: Arc<ErrorFn>,
}

impl Endpoint {
    /// An endpoint at `path` (an axum route path: it starts with `/`) that accepts
    /// connections and ignores what they say until callbacks are given.
    pub fn new(path: impl Into<String>) -> Endpoint {
        Endpoint {
            path: path.into(),
            sockjs: Vec::new(),
            handlers: Arc::new(Callbacks {
                open: None,
                message: None,
                close: None,
                error: Arc::new(|m| serde_json::json!({ "type": "ERROR", "message": m })),
            }),
        }
    }

    fn callbacks(&mut self) -> &mut Callbacks {
        // A clone being built leaves the endpoint it came from as it was.
        Arc::make_mut(&mut self.handlers)
    }

    /// Also serves the endpoint over SockJS at `prefix` (when `sockjs.enabled`): one
    /// JSON message per SockJS message. A prefix equal to the endpoint's own path is
    /// Spring's `addHandler(handler, path).withSockJS()`: `new SockJS(path)` reads
    /// `{path}/info` and opens the sessions below it, while a plain WebSocket upgrade
    /// at the path itself stays the endpoint's. May be called for several prefixes.
    pub fn sockjs(mut self, prefix: impl Into<String>) -> Endpoint {
        self.sockjs.push(prefix.into());
        self
    }

    /// Runs when a connection is admitted and authenticated, before any client
    /// message is read: subscribe it, greet it, note its metadata. An error is told
    /// to the client and ends the session.
    pub fn on_open<F, Fut>(mut self, f: F) -> Endpoint
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), MessageError>> + Send + 'static,
    {
        self.callbacks().open = Some(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    /// Runs for each client message (one WebSocket text message or SockJS message,
    /// valid UTF-8), one at a time and in order: nothing more is read meanwhile. An
    /// error is told to the client as the endpoint's error message; the session goes on.
    pub fn on_message<F, Fut>(mut self, f: F) -> Endpoint
    where
        F: Fn(Socket, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), MessageError>> + Send + 'static,
    {
        self.callbacks().message = Some(Arc::new(move |s, t| Box::pin(f(s, t))));
        self
    }

    /// Runs once the session has ended, whatever ended it (its subscriptions are
    /// already gone): leave rooms, tell others.
    pub fn on_close<F, Fut>(mut self, f: F) -> Endpoint
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.callbacks().close = Some(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    /// The JSON of an error message for `message` (default `{"type": "ERROR",
    /// "message": message}`): what a failed callback, a message that is not UTF-8
    /// and the session's last word (shutdown, slow consumer) are written as.
    pub fn errors(
        mut self,
        f: impl Fn(&str) -> serde_json::Value + Send + Sync + 'static,
    ) -> Endpoint {
        self.callbacks().error = Arc::new(f);
        self
    }

    /// The path the WebSocket is served at.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The endpoint's HTTP routes (the WebSocket upgrade at its path, and the SockJS
    /// endpoint when asked for and `sockjs.enabled`), for `Server::endpoint` and the
    /// demo apps' routes.
    pub(crate) fn routes(&self, sockjs_enabled: bool) -> axum::Router<Context> {
        let mut router = axum::Router::new();
        for prefix in self.sockjs.iter().filter(|_| sockjs_enabled) {
            let handlers = self.handlers.clone();
            let app: sockjs::App = Arc::new(move |conn, opened| {
                let handlers = handlers.clone();
                Box::pin(async move {
                    let sockjs::Opened { state, admission } = opened;
                    serve(conn, handlers, state, admission, None, "sockjs").await;
                })
            });
            let service = sockjs::Service::new(prefix, Entry::Plain, None, app);
            router = router.merge(if *prefix == self.path {
                service.routes_below()
            } else {
                service.routes()
            });
        }
        let handlers = self.handlers.clone();
        router.route(
            &self.path,
            get(
                move |State(state): State<Context>,
                      ConnectInfo(peer): ConnectInfo<SocketAddr>,
                      req: Request<Body>| {
                    let handlers = handlers.clone();
                    async move { upgrade(handlers, state, peer, req).await }
                },
            ),
        )
    }
}

async fn upgrade(
    handlers: Arc<Callbacks>,
    state: Context,
    peer: SocketAddr,
    req: Request<Body>,
) -> Response<Body> {
    let admission = match state.admit(peer, &req, Entry::Plain).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let query = req.uri().query().map(str::to_owned);
    let socket = req.extensions().get::<ConnectionPermit>().map(|p| p.1);
    let upgrade = match websocket::accept(req) {
        Ok(u) => u,
        Err(response) => return response,
    };
    let max_message = state.node.config.stomp.max_frame;
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        match upgrade.on_upgrade.await {
            Ok(upgraded) => {
                let ws = websocket::WebSocket::new(upgraded, max_message, socket).with_pings();
                serve(ws, handlers, state, admission, query, "websocket").await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    upgrade.response
}

/// Authenticates the connection as a CONNECT would be, then runs it in the
/// connection loop.
async fn serve<T: Transport>(
    mut transport: T,
    handlers: Arc<Callbacks>,
    state: Context,
    admission: Admission,
    query: Option<String>,
    over: &'static str,
) {
    let node = state.node;
    let id = node.next_session_id();
    let login = crate::params::query_value(query.as_deref(), "login");
    let principal = match node
        .auth
        .connect(
            admission.handshake.as_ref(),
            login.as_deref(),
            None,
            None,
            format!("anonymous-{id}"),
        )
        .await
    {
        Ok(p) => p,
        Err(e) => {
            // Admission refuses what this would; a token the handshake lacked ends here.
            crate::ops::metrics::auth_failure("connect");
            let text = (handlers.error)(&format!("authentication failed: {e}")).to_string();
            let _ = transport.write(&[OutFrame::text(text.into())]).await;
            transport
                .close_with(POLICY_VIOLATION, "authentication failed")
                .await;
            return;
        }
    };
    let span = tracing::info_span!("session", id = %id, user = tracing::field::Empty);
    let ended = Ended::register(
        &node,
        &id,
        transport.kind(),
        &state.shutdown,
        admission.permit,
    );
    ended.entry().set_meta("protocol", "plain");
    let outbox = Arc::new(node.config.stomp.outbox());
    let socket = Socket(Arc::new(Inner {
        recipient: Arc::new(Recipient::new(
            id.clone(),
            herald_stomp::Version::V1_2,
            outbox.clone(),
        )),
        info: SessionInfo { id, principal },
        node: node.clone(),
        outbox: outbox.clone(),
        entry: ended.entry().clone(),
        subscriptions: Mutex::default(),
        pressure: Arc::default(),
        query,
        closing: Mutex::default(),
    }));
    let cfg = &node.config.stomp;
    // Over a WebSocket, pings keep it alive; SockJS has its own heart-beat frames.
    let ping = (over == "websocket" && !cfg.heartbeat_send.is_zero()).then_some(cfg.heartbeat_send);
    let opened = Connected {
        user: socket.principal().name.clone(),
        heartbeat: Heartbeat {
            send: ping,
            receive: ping,
        },
        expires_in: socket.principal().time_left(),
        presence: false,
    };
    let limits = &node.config.limits;
    let limit = node.config.apps.handler_timeout;
    let protocol = Plain {
        pending: handlers
            .open
            .as_ref()
            .map(|open| guarded(open(socket.clone()), limit, "opening")),
        bucket: TokenBucket::new(limits.frame_rate, limits.frame_burst),
        socket,
        opening: handlers.open.is_some(),
        handlers,
        limit,
        closed: false,
    };
    use tracing::Instrument;
    connection::run(
        transport,
        node,
        protocol,
        outbox,
        Some(Box::new(opened)),
        ended,
    )
    .instrument(span)
    .await;
}

const GOING_AWAY: u16 = 1001;
const POLICY_VIOLATION: u16 = 1008;
const INTERNAL_ERROR: u16 = 1011;

/// One connection of a plain-socket endpoint, as its application holds it: cheap to
/// clone, usable from any task while the session lives (writes after its end are
/// dropped).
#[derive(Clone)]
pub struct Socket(Arc<Inner>);

struct Inner {
    info: SessionInfo,
    node: Arc<Node>,
    outbox: Arc<Outbox>,
    recipient: Arc<Recipient>,
    entry: Arc<SessionEntry>,
    /// Destination → its subscription.
    subscriptions: Mutex<HashMap<String, Arc<Subscription>>>,
    /// Producer flow control of what this socket publishes.
    pressure: Arc<Pressure>,
    query: Option<String>,
    /// Set by [`Socket::close`]: the session ends after the running callback.
    closing: Mutex<Option<String>>,
}

impl Socket {
    /// The session id (as the admin API lists it).
    pub fn id(&self) -> &str {
        &self.0.info.id
    }

    /// Who is connected: the handshake's token, or an anonymous name.
    pub fn principal(&self) -> &Principal {
        &self.0.info.principal
    }

    /// The session as handlers and `Messaging` name a sender.
    pub fn info(&self) -> &SessionInfo {
        &self.0.info
    }

    /// A parameter of the WebSocket handshake's query string (none over SockJS).
    /// Client-chosen: never an identity.
    pub fn query(&self, name: &str) -> Option<String> {
        crate::params::query_value(self.0.query.as_deref(), name)
    }

    /// Publishing from the application, and the cluster bus (presence, shared maps).
    pub fn messaging(&self) -> &Messaging {
        &self.0.node.messaging
    }

    /// Subscribes the connection to `destination` (a topic, a queue, or a user
    /// destination `/user/queue/...` of this principal): each message's body reaches
    /// the client as one text message. The server chooses the destination: the
    /// destination rules are not asked (as for `Messaging`), only its limits; check
    /// what a client names before subscribing to it. Subscribing twice is once.
    pub fn subscribe(&self, destination: &str) -> Result<(), MessageError> {
        self.subscribe_with(destination, Delivery::Bodies)
    }

    /// [`Socket::subscribe`] with another delivery: [`Delivery::Shaped`] writes what
    /// its function makes of each message (destination, headers, body).
    pub fn subscribe_with(
        &self,
        destination: &str,
        delivery: Delivery,
    ) -> Result<(), MessageError> {
        let user = self.principal().name.clone();
        self.subscribe_as(&user, destination, delivery)
    }

    /// [`Socket::subscribe_with`] where a user destination (`/user/queue/...`) is
    /// `user`'s, not the principal's: for an endpoint that learns whose session it
    /// is otherwise (in a trusted setting only; the principal is what was proven).
    pub fn subscribe_as(
        &self,
        user: &str,
        destination: &str,
        delivery: Delivery,
    ) -> Result<(), MessageError> {
        let node = &self.0.node;
        let refused = |e: StompError| MessageError(e.message);
        node.router.check_limits(destination).map_err(refused)?;
        let target = node
            .router
            .for_subscribe(destination, user)
            .map_err(refused)?;
        let delivery = match delivery {
            Delivery::Frames => Delivery::Bodies,
            other => other,
        };
        let mut subs = self.0.subscriptions.lock();
        if subs.contains_key(destination) || self.0.outbox.is_closed() {
            return Ok(());
        }
        let sub = Arc::new(
            Subscription::new(
                destination.to_owned(),
                target,
                AckMode::Auto,
                self.0.recipient.clone(),
            )
            .with_delivery(delivery),
        );
        subs.insert(destination.to_owned(), sub.clone());
        // Under the lock: a close meanwhile finds it subscribed, and unsubscribes it.
        node.broker.subscribe(sub);
        Ok(())
    }

    /// Ends the subscription to `destination`; false when there was none.
    pub fn unsubscribe(&self, destination: &str) -> bool {
        let sub = self.0.subscriptions.lock().remove(destination);
        match sub {
            Some(sub) => {
                self.0.node.broker.unsubscribe(&sub);
                true
            }
            None => false,
        }
    }

    /// Writes `value` as one JSON text message. Counted against the session's outbox
    /// like a delivery: a client that does not read is closed as a slow consumer.
    /// False when the session is over (or `value` does not serialize).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> bool {
        match serde_json::to_vec(value) {
            Ok(v) => self.send_text(Bytes::from(v)),
            Err(_) => false,
        }
    }

    /// Writes `text` (UTF-8) as one text message; see [`Socket::send`].
    pub fn send_text(&self, text: impl Into<Bytes>) -> bool {
        self.0.outbox.push(OutFrame::text(text.into())).is_ok()
    }

    /// Publishes `reply` as this session (`Messaging::publish` with it as sender),
    /// paced like a STOMP session's SEND: while a subscriber has too much waiting,
    /// this connection's input waits.
    pub fn publish(&self, reply: Reply) -> Result<usize, MessageError> {
        self.messaging()
            .publish_paced(reply, Some(&self.0.info), Some(self.0.pressure.clone()))
            .map_err(MessageError::from)
    }

    /// Sets what the admin API shows about this session under `meta` (a device, a
    /// status).
    pub fn set_meta(&self, key: &str, value: &str) {
        self.0.entry.set_meta(key, value);
    }

    /// Ends the session once the running callback returns, with `reason` as its last
    /// error message and a policy-violation close frame.
    pub fn close(&self, reason: impl Into<String>) {
        *self.0.closing.lock() = Some(reason.into());
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.0.outbox.is_closed()
    }
}

/// A plain session as the connection loop drives it.
struct Plain {
    socket: Socket,
    handlers: Arc<Callbacks>,
    /// The callback to run next: the opening, then one per client message.
    pending: Option<BoxFuture<Result<(), MessageError>>>,
    bucket: Option<TokenBucket>,
    /// `apps.handler_timeout`: the longest one callback may take.
    limit: std::time::Duration,
    /// While the opening callback runs: its error ends the session.
    opening: bool,
    closed: bool,
}

/// A callback within `limit`, its panic caught: either is the client's error message,
/// and the connection goes on.
fn guarded(
    call: BoxFuture<Result<(), MessageError>>,
    limit: std::time::Duration,
    what: &'static str,
) -> BoxFuture<Result<(), MessageError>> {
    use futures_util::FutureExt;
    Box::pin(async move {
        match tokio::time::timeout(limit, std::panic::AssertUnwindSafe(call).catch_unwind()).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                tracing::error!(callback = what, "plain-socket callback panicked");
                Err(MessageError::new(format!("{what} failed")))
            }
            Err(_) => Err(MessageError::new(format!(
                "{what} timed out after {limit:?}"
            ))),
        }
    })
}

impl Plain {
    fn tell(&self, message: &str) {
        let text = (self.handlers.error)(message).to_string();
        // The client's own answer: not counted against the outbox's byte limit.
        self.socket.0.outbox.push_reply(OutFrame::text(text.into()));
    }

    fn closing(&self) -> Result<(), StompError> {
        match self.socket.0.closing.lock().take() {
            Some(reason) => Err(StompError::of(ErrorKind::Handler, reason)),
            None => Ok(()),
        }
    }
}

impl Protocol for Plain {
    type Call = Pin<Box<dyn Future<Output = Result<(), MessageError>> + Send>>;

    fn input(&mut self, buf: &mut BytesMut) -> Result<Input, StompError> {
        if buf.is_empty() {
            // A pong (or an empty message): the client is alive, nothing to handle.
            return Ok(Input::Done);
        }
        let bytes = buf.split();
        if let Some(b) = self.bucket.as_mut()
            && !b.take()
        {
            return Err(StompError::of(
                ErrorKind::Limit,
                format!(
                    "message rate limit exceeded: more than {} messages per second",
                    b.rate()
                ),
            ));
        }
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => {
                if let Some(on_message) = &self.handlers.message {
                    let call = on_message(self.socket.clone(), text);
                    self.pending = Some(guarded(call, self.limit, "message handling"));
                }
            }
            Err(_) => self.tell("messages must be UTF-8 text"),
        }
        Ok(Input::Done)
    }

    fn resume(&mut self) -> Pin<Box<dyn Future<Output = Result<Input, StompError>> + Send + '_>> {
        Box::pin(std::future::ready(Ok(Input::Done)))
    }

    fn next_call(&mut self) -> Option<Self::Call> {
        self.pending.take()
    }

    fn finish_call(
        &mut self,
        _: Self::Call,
        output: Result<(), MessageError>,
    ) -> Result<(), StompError> {
        let opening = std::mem::take(&mut self.opening);
        match output {
            // A session that could not be set up says why (the last message) and ends.
            Err(e) if opening => return Err(StompError::of(ErrorKind::Handler, e.0)),
            Err(e) => self.tell(&e.0),
            Ok(()) => {}
        }
        self.closing()
    }

    fn paced(&self) -> Option<&Arc<Pressure>> {
        Some(&self.socket.0.pressure).filter(|p| p.is_raised())
    }

    fn final_frame(&self, err: &StompError) -> OutFrame {
        OutFrame::text((self.handlers.error)(&err.message).to_string().into())
    }

    fn close_reason(&self, err: Option<&StompError>) -> Option<(u16, String)> {
        let e = err?;
        let code = match e.kind {
            ErrorKind::Shutdown => GOING_AWAY,
            ErrorKind::Cluster => INTERNAL_ERROR,
            _ => POLICY_VIOLATION,
        };
        Some((code, e.message.clone()))
    }

    fn close(&mut self, _: Option<&StompError>) {
        if self.closed {
            return;
        }
        self.closed = true;
        let inner = &self.socket.0;
        inner.outbox.close();
        let subs: Vec<_> = inner.subscriptions.lock().drain().map(|(_, s)| s).collect();
        for sub in subs {
            inner.node.broker.unsubscribe(&sub);
        }
        if let (Some(on_close), Ok(rt)) =
            (&self.handlers.close, tokio::runtime::Handle::try_current())
        {
            rt.spawn(on_close(self.socket.clone()));
        }
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        // A task dropped early (the runtime ending) still leaves the broker clean.
        self.close(None);
    }
}

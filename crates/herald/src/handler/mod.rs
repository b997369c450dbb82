//! Application handlers: what a SEND to `/app/**` runs, and what answers a SUBSCRIBE
//! to one.
//!
//! In the spirit of Spring's `@MessageMapping` and axum's `Router`: async functions are
//! registered by destination pattern (`/chat/rooms/{id}/send`), receive a typed JSON
//! payload with the path variables, the principal and the session, and return
//! [`Reply`]s that are published (`@SendTo`, `@SendToUser`). A handler's error reaches
//! the sender alone. [`Messaging`] publishes from anywhere, like `SimpMessagingTemplate`.
//! [`Handlers::subscribe`] is Spring's `@SubscribeMapping`: a SUBSCRIBE to
//! `/app/rooms/7` runs it, and what it returns goes to that subscription alone, once —
//! the snapshot a page shows before the live updates of a topic.
//!
//! ```no_run
//! use herald::handler::{Handlers, Reply, Request, HandlerError};
//! #[derive(serde::Deserialize)] struct Hello { name: String }
//! let handlers = Handlers::new().route("/hello", |req: Request<Hello>| async move {
//!     Ok::<_, HandlerError>(Reply::to("/topic/greetings", &format!("Hello, {}!", req.payload.name)))
//! });
//! ```

pub(crate) mod backend;
pub mod config;
mod messaging;

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use herald_stomp::Headers;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::destination::Pattern;

pub use messaging::Messaging;

/// What a handler's future is boxed as: one type for every route.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pub use crate::auth::Principal;

/// The session a frame came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id on this node (the admin API's and the logs').
    pub id: String,
    /// Who the session authenticated as (or its anonymous name).
    pub principal: Principal,
}

/// A handler failure; `message` is what the sender is told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// The ERROR frame's `message` (or the error queue's body).
    pub message: String,
    /// How the sender's ERROR is counted: a handler's own failure, or the cluster or
    /// a queue refusing what it published.
    kind: crate::error::ErrorKind,
}

impl HandlerError {
    /// The handler's own failure, told to the sender as `message`.
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError::of(crate::error::ErrorKind::Handler, message)
    }

    pub(crate) fn of(kind: crate::error::ErrorKind, message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            kind,
        }
    }

    pub(crate) fn kind(&self) -> crate::error::ErrorKind {
        self.kind
    }
}

/// Where a reply goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyTarget {
    /// A broker destination (`@SendTo`).
    Destination(String),
    /// Every session of a user, e.g. `/queue/messages` of `bob` (`convertAndSendToUser`).
    User {
        /// The user whose sessions receive it.
        user: String,
        /// The destination under the user prefix, e.g. `/queue/messages`.
        destination: String,
    },
    /// Every session of the sender (`@SendToUser`).
    Sender {
        /// The destination under the user prefix.
        destination: String,
    },
    /// Only the session that sent the frame (`@SendToUser(broadcast = false)`).
    SenderSession {
        /// The destination under the user prefix.
        destination: String,
    },
    /// The subscription whose SUBSCRIBE a subscribe handler answers
    /// ([`Handlers::subscribe`]); nothing else may reply there.
    Subscriber,
}

/// A message a handler publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Where it goes.
    pub target: ReplyTarget,
    /// Headers of the MESSAGE (`content-type` is set for JSON bodies).
    pub headers: Headers,
    /// The MESSAGE body.
    pub body: Bytes,
}

impl Reply {
    fn json(target: ReplyTarget, payload: &impl Serialize) -> Reply {
        let body = serde_json::to_vec(payload).unwrap_or_else(|e| {
            serde_json::to_vec(&serde_json::json!({ "error": e.to_string() })).unwrap_or_default()
        });
        let mut headers = Headers::new();
        headers.push("content-type", "application/json");
        Reply {
            target,
            headers,
            body: Bytes::from(body),
        }
    }

    /// JSON `payload` to a broker destination.
    pub fn to(destination: impl Into<String>, payload: &impl Serialize) -> Reply {
        Reply::json(ReplyTarget::Destination(destination.into()), payload)
    }

    /// JSON `payload` to `destination` (like `/queue/messages`) of every session of `user`.
    pub fn to_user(
        user: impl Into<String>,
        destination: impl Into<String>,
        payload: &impl Serialize,
    ) -> Reply {
        Reply::json(
            ReplyTarget::User {
                user: user.into(),
                destination: destination.into(),
            },
            payload,
        )
    }

    /// JSON `payload` to `destination` of every session of the sender.
    pub fn to_sender(destination: impl Into<String>, payload: &impl Serialize) -> Reply {
        Reply::json(
            ReplyTarget::Sender {
                destination: destination.into(),
            },
            payload,
        )
    }

    /// JSON `payload` to `destination` of the sending session only.
    pub fn to_sender_session(destination: impl Into<String>, payload: &impl Serialize) -> Reply {
        Reply::json(
            ReplyTarget::SenderSession {
                destination: destination.into(),
            },
            payload,
        )
    }

    /// Adds a header to the published MESSAGE.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.set(&name.into(), value);
        self
    }
}

/// What a handler may return.
pub trait IntoReplies {
    /// The replies to publish, in order.
    fn into_replies(self) -> Vec<Reply>;
}

impl IntoReplies for () {
    fn into_replies(self) -> Vec<Reply> {
        Vec::new()
    }
}

impl IntoReplies for Reply {
    fn into_replies(self) -> Vec<Reply> {
        vec![self]
    }
}

impl IntoReplies for Vec<Reply> {
    fn into_replies(self) -> Vec<Reply> {
        self
    }
}

impl IntoReplies for Option<Reply> {
    fn into_replies(self) -> Vec<Reply> {
        self.into_iter().collect()
    }
}

/// One SEND to an application destination, with its payload decoded as `T`.
pub struct Request<T> {
    /// The body, decoded from JSON (or the raw text for `String`).
    pub payload: T,
    /// The full destination, e.g. `/app/chat/rooms/7/send`.
    pub destination: String,
    /// Path variables of the matched pattern.
    pub params: HashMap<String, String>,
    /// The SEND frame's headers.
    pub headers: Headers,
    /// The SEND frame's body as it came.
    pub body: Bytes,
    /// The session that sent it.
    pub session: SessionInfo,
    /// For publishing beyond the replies (to other users, to other destinations).
    pub messaging: Messaging,
}

impl<T> Request<T> {
    /// Who sent it.
    pub fn principal(&self) -> &Principal {
        &self.session.principal
    }

    /// A path variable; an error naming it when the pattern has none of that name.
    pub fn param(&self, name: &str) -> Result<&str, HandlerError> {
        self.params
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| HandlerError::new(format!("no path variable '{name}'")))
    }
}

/// The untyped call a route receives before its payload is decoded.
pub struct Call {
    /// The full destination, e.g. `/app/chat/rooms/7/send`.
    pub destination: String,
    /// The destination without its application prefix, e.g. `/chat/rooms/7/send`.
    pub path: String,
    /// The SEND frame's headers.
    pub headers: Headers,
    /// The SEND frame's body.
    pub body: Bytes,
    /// The session that sent it.
    pub session: SessionInfo,
    /// For publishing beyond the replies.
    pub messaging: Messaging,
}

type RouteFn = dyn Fn(Call, HashMap<String, String>) -> BoxFuture<Result<Vec<Reply>, HandlerError>>
    + Send
    + Sync;
type DisconnectFn = dyn Fn(SessionInfo, Messaging) -> BoxFuture<()> + Send + Sync;

/// The registry of application handlers.
#[derive(Clone, Default)]
pub struct Handlers {
    routes: Vec<(Pattern, Arc<RouteFn>)>,
    subscriptions: Vec<(Pattern, Arc<RouteFn>)>,
    on_disconnect: Vec<Arc<DisconnectFn>>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.routes.iter().map(|(p, _)| p))
            .entries(self.subscriptions.iter().map(|(p, _)| p))
            .finish()
    }
}

/// The future of the first of `routes` whose pattern matches `call.path`.
fn first_match(
    routes: &[(Pattern, Arc<RouteFn>)],
    call: Call,
) -> Result<BoxFuture<Result<Vec<Reply>, HandlerError>>, Call> {
    for (pattern, route) in routes {
        if let Some(params) = pattern.params(&call.path) {
            return Ok(route(call, params));
        }
    }
    Err(call)
}

/// A handler's future with its panic caught (the sender is told the route failed)
/// and its output made replies.
fn caught<R, Fut>(
    route_name: String,
    future: Fut,
    replies: impl FnOnce(R) -> Vec<Reply> + Send + 'static,
) -> BoxFuture<Result<Vec<Reply>, HandlerError>>
where
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
{
    Box::pin(async move {
        match AssertUnwindSafe(future).catch_unwind().await {
            Ok(r) => r.map(replies),
            Err(_) => {
                tracing::error!(route = %route_name, "application handler panicked");
                Err(HandlerError::new(format!(
                    "handler for {route_name} failed"
                )))
            }
        }
    })
}

impl Handlers {
    /// No routes, no hooks.
    pub fn new() -> Self {
        Handlers::default()
    }

    /// Registers `handler` for application paths matching `pattern` (after the
    /// application prefix: `/chat.send`, `/chat/rooms/{id}/send`). The body is decoded
    /// as JSON into `T`; a body that is not valid `T` is an error to the sender.
    pub fn route<T, F, Fut, R>(mut self, pattern: &str, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Request<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
        R: IntoReplies + 'static,
    {
        let pattern = Pattern::path(pattern);
        let route_name = pattern.to_string();
        let handler = Arc::new(handler);
        let route = move |call: Call,
                          params: HashMap<String, String>|
              -> BoxFuture<Result<Vec<Reply>, HandlerError>> {
            let payload: T = match serde_json::from_slice(&call.body) {
                Ok(p) => p,
                Err(e) => {
                    let msg = format!("invalid payload for {}: {e}", call.destination);
                    return Box::pin(async move { Err(HandlerError::new(msg)) });
                }
            };
            let req = Request {
                payload,
                destination: call.destination,
                params,
                headers: call.headers,
                body: call.body,
                session: call.session,
                messaging: call.messaging,
            };
            caught(route_name.clone(), handler(req), IntoReplies::into_replies)
        };
        self.routes.push((pattern, Arc::new(route)));
        self
    }

    /// Registers `handler` for SUBSCRIBEs to application paths matching `pattern`
    /// (Spring's `@SubscribeMapping`): it gets the same [`Request`] a SEND handler
    /// does (no payload: a SUBSCRIBE has no body), and what it returns is sent once,
    /// as JSON, to that subscription alone — the snapshot before a topic's live
    /// updates. The subscription takes nothing else; UNSUBSCRIBE ends it.
    ///
    /// ```no_run
    /// use herald::handler::{Handlers, Request, HandlerError};
    /// let handlers = Handlers::new().subscribe("/rooms/{id}", |req: Request<()>| async move {
    ///     Ok::<_, HandlerError>(serde_json::json!({ "room": req.param("id")?, "members": [] }))
    /// });
    /// ```
    pub fn subscribe<F, Fut, S>(mut self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request<()>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, HandlerError>> + Send + 'static,
        S: Serialize + 'static,
    {
        let pattern = Pattern::path(pattern);
        let route_name = pattern.to_string();
        let handler = Arc::new(handler);
        let route = move |call: Call,
                          params: HashMap<String, String>|
              -> BoxFuture<Result<Vec<Reply>, HandlerError>> {
            let req = Request {
                payload: (),
                destination: call.destination,
                params,
                headers: call.headers,
                body: call.body,
                session: call.session,
                messaging: call.messaging,
            };
            caught(route_name.clone(), handler(req), |snapshot| {
                vec![Reply::json(ReplyTarget::Subscriber, &snapshot)]
            })
        };
        self.subscriptions.push((pattern, Arc::new(route)));
        self
    }

    /// Runs `hook` when a session ends (to announce leaves, drop presence...).
    pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(SessionInfo, Messaging) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnect
            .push(Arc::new(move |s, m| Box::pin(hook(s, m))));
        self
    }

    /// Adds every route and hook of `other`.
    pub fn merge(mut self, other: Handlers) -> Self {
        self.routes.extend(other.routes);
        self.subscriptions.extend(other.subscriptions);
        self.on_disconnect.extend(other.on_disconnect);
        self
    }

    /// Whether no route (SEND or SUBSCRIBE) is registered.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.subscriptions.is_empty()
    }

    /// The future of the first route matching `call.path`, or the call back.
    pub fn dispatch(
        &self,
        call: Call,
    ) -> Result<BoxFuture<Result<Vec<Reply>, HandlerError>>, Call> {
        first_match(&self.routes, call)
    }

    /// The future of the first subscribe handler matching `call.path`, or the call back.
    pub fn dispatch_subscribe(
        &self,
        call: Call,
    ) -> Result<BoxFuture<Result<Vec<Reply>, HandlerError>>, Call> {
        first_match(&self.subscriptions, call)
    }

    pub(crate) fn disconnected(&self, session: &SessionInfo, messaging: &Messaging) {
        for hook in &self.on_disconnect {
            tokio::spawn(hook(session.clone(), messaging.clone()));
        }
    }
}

//! The HTTP listener's routes: `/ws` (STOMP over WebSocket, at each of
//! `server.websocket_paths`), `/health`, the publish REST API (`publish.rs`), who is
//! online (`presence.rs`), and the routes apps bring (`/api/rooms`, `/ws/chat`). A plain
//! `/ws` upgrade usually never reaches the router: `direct.rs` answers it ahead of hyper.

mod admin;
mod asyncapi;
pub(crate) mod direct;
mod notifications;
pub(crate) mod notify_socket;
mod openapi;
pub(crate) mod presence;
pub(crate) mod publish;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::admission::Entry;
use crate::transport::{self, ConnectionPermit, Context, websocket};

/// `sockets` are plain WebSocket endpoints of the server's own (path, routes): the
/// notifications socket. One at a web page's path shares it with the page.
pub(crate) fn router(
    state: Context,
    apps: Router<Context>,
    sockets: &[(String, Router<Context>)],
) -> Router {
    let hosts = axum::middleware::from_fn_with_state(state.clone(), allowed_host);
    let bodies = axum::middleware::from_fn_with_state(state.clone(), body_budget);
    let max_body = state.node.config.server.max_body;
    let mut router = Router::new();
    for path in &state.node.config.server.websocket_paths {
        router = router.route(path, get(ws_upgrade));
    }
    router
        .route("/health", get(health))
        .route("/api/openapi.json", get(openapi::spec))
        .route("/api/asyncapi.json", get(asyncapi::spec))
        .route("/api/publish", post(publish::publish))
        .route("/api/users/{user}/messages", post(publish::to_user))
        .route("/api/presence/users", get(presence::users))
        .route("/api/presence/users/{user}", get(presence::user))
        .merge(transport::sockjs::routes(&state.node))
        .merge(notifications::routes())
        .merge(apps)
        .merge(admin::routes())
        .merge(crate::web::routes(sockets))
        .merge(
            sockets
                .iter()
                .filter(|(path, _)| !crate::web::is_page(path))
                .fold(Router::new(), |r, (_, socket)| r.merge(socket.clone())),
        )
        .layer(bodies)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(hosts)
        .with_state(state)
}

/// Every HTTP request's `Host` must be one this server answers to (DNS rebinding),
/// and a state-changing request the browser sent with the auth cookie must come from
/// an allowed origin (CSRF): a cookie authenticates whoever's page made the request.
async fn allowed_host(
    State(state): State<Context>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.as_bytes())
        .or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes()));
    let gate = &state.node.gate;
    if let Err(refusal) = gate.check_host(host) {
        return refusal.response();
    }
    let changes_state = !req.method().is_safe();
    let cookie = &state.node.auth.config.cookie_name;
    if changes_state
        && crate::params::cookie(req.headers(), cookie).is_some()
        && let Err(refusal) = gate.check_origin(req.headers())
    {
        return refusal.response();
    }
    next.run(req).await
}

/// The REST API's request bodies (`/api/**`) are read here, at most
/// `server.max_body` bytes: a larger one is refused with 413 as soon as its
/// `Content-Length` says so or the bytes read pass the budget, before any handler
/// buffers or parses it. Session transports (`/ws`, SockJS) bound their own messages.
async fn body_budget(
    State(state): State<Context>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let max = state.node.config.server.max_body;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return body_too_large(max);
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, max).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                body_too_large(max)
            } else {
                json_answer(
                    axum::http::StatusCode::BAD_REQUEST,
                    serde_json::json!({
                        "error": format!("the request body could not be read: {e}"),
                        "code": "bad_body",
                    }),
                )
            }
        }
    }
}

/// 413 {"error": "request body exceeds server.max_body (N bytes)", "code": "too_large",
/// "limit": "server.max_body"}.
fn body_too_large(max: usize) -> Response<Body> {
    crate::ops::metrics::limit_hit("server.max_body");
    let mut r = json_answer(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        serde_json::json!({
            "error": format!("request body exceeds server.max_body ({max} bytes)"),
            "code": "too_large",
            "limit": "server.max_body",
        }),
    );
    // The rest of the body is not read: the connection cannot carry another request.
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

fn json_answer(status: axum::http::StatusCode, body: serde_json::Value) -> Response<Body> {
    (status, axum::Json(body)).into_response()
}

/// `/health`: this node and its cluster bus.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `degraded` while Redis is unreachable (this node goes on delivering
    /// to its own sessions).
    status: &'static str,
    node: String,
    version: &'static str,
    #[schema(value_type = openapi::ClusterStatus)]
    cluster: crate::cluster::BusStatus,
}

/// The node, its version and its cluster bus.
#[utoipa::path(
    get, path = "/health", tag = "operations",
    responses((status = 200, description = "Serving", body = Health)),
)]
async fn health(State(state): State<Context>) -> axum::Json<Health> {
    let cluster = state.node.broker.bus().status();
    // Degraded: Redis (or some of a Redis Cluster's shards) is unreachable; this node
    // goes on delivering to its own sessions.
    let status = if cluster.connected && cluster.shards_down.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    axum::Json(Health {
        status,
        node: state.node.id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        cluster,
    })
}

async fn ws_upgrade(
    State(state): State<Context>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let admission = match state.admit(peer, &req, Entry::Stomp).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let socket = req.extensions().get::<ConnectionPermit>().map(|p| p.1);
    let upgrade = match websocket::accept(req) {
        Ok(u) => u,
        Err(response) => return response,
    };
    let max_message = websocket::max_message(&state.node);
    let Context {
        node,
        shutdown,
        tasks,
    } = state;
    tasks.spawn(async move {
        match upgrade.on_upgrade.await {
            Ok(upgraded) => {
                let ws = websocket::WebSocket::new(upgraded, max_message, socket);
                transport::drive(ws, node, shutdown, admission).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    upgrade.response
}

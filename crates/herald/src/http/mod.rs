//! The HTTP listener's routes: `/ws` (STOMP over WebSocket), `/health`, the publish
//! REST API (`publish.rs`), who is online (`presence.rs`), and the routes apps bring
//! (`/api/rooms`, `/ws/chat`). A plain `/ws` upgrade usually never reaches the router:
//! `direct.rs` answers it ahead of hyper.

pub(crate) mod direct;
pub(crate) mod presence;
pub(crate) mod publish;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::node::Node;
use crate::transport::{self, Admission, websocket};

#[derive(Clone)]
pub(crate) struct HttpState {
    pub node: Arc<Node>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

pub(crate) fn router(state: HttpState, apps: Router<HttpState>) -> Router {
    Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/health", get(health))
        .route("/api/publish", post(publish::publish))
        .route("/api/users/{user}/messages", post(publish::to_user))
        .route("/api/presence/users", get(presence::users))
        .route("/api/presence/users/{user}", get(presence::user))
        .merge(transport::sockjs::routes(&state.node))
        .merge(crate::notify::http::routes())
        .merge(apps)
        .merge(crate::ops::routes())
        .merge(crate::web::routes())
        .with_state(state)
}

async fn health(State(state): State<HttpState>) -> impl IntoResponse {
    let cluster = state.node.broker.bus().status();
    // Degraded: Redis is unreachable; this node goes on delivering to its own sessions.
    let status = if cluster.connected { "ok" } else { "degraded" };
    axum::Json(serde_json::json!({
        "status": status,
        "node": state.node.id,
        "version": env!("CARGO_PKG_VERSION"),
        "cluster": cluster,
    }))
}

/// Checks a browser-facing handshake before it upgrades: the origin, the per-IP
/// connection limit, and the token it carries. `Err` is the HTTP answer that says why.
pub(crate) fn admit(
    state: &HttpState,
    peer: SocketAddr,
    req: &Request<Body>,
) -> impl std::future::Future<Output = Result<Admission, Response<Body>>> + Send + 'static {
    // Owned copies: the request body is not Sync, so it must not be borrowed across awaits.
    admit_headers(
        state.node.clone(),
        peer,
        req.headers().clone(),
        req.uri().query().map(str::to_owned),
    )
}

/// [`admit`] for a request already taken apart (the direct `/ws` path).
pub(crate) async fn admit_headers(
    node: Arc<Node>,
    peer: SocketAddr,
    headers: HeaderMap,
    query: Option<String>,
) -> Result<Admission, Response<Body>> {
    let refuse = |status: StatusCode, reason: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(reason))
            .expect("static response")
    };
    node.origins
        .check(&headers)
        .map_err(|e| refuse(StatusCode::FORBIDDEN, e))?;
    let ip_slot = node.connections_per_ip.acquire(peer.ip()).ok_or_else(|| {
        refuse(
            StatusCode::TOO_MANY_REQUESTS,
            crate::server::too_many_from(&node, peer.ip()),
        )
    })?;
    let handshake = node
        .auth
        .handshake(&headers, query.as_deref())
        .await
        .map_err(|e| {
            tracing::info!(%peer, reason = %e, "handshake refused");
            crate::ops::metrics::auth_failure("handshake");
            refuse(
                StatusCode::UNAUTHORIZED,
                format!("authentication failed: {e}"),
            )
        })?;
    Ok(Admission {
        handshake: Some(handshake),
        ip_slot: Some(ip_slot),
    })
}

/// The largest WebSocket message a STOMP session accepts: room for a few frames.
pub(crate) fn ws_max_message(node: &Node) -> usize {
    node.config.stomp.max_frame.saturating_mul(4).max(1 << 20)
}

async fn ws_upgrade(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let admission = match admit(&state, peer, &req).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let upgrade = match websocket::accept(req) {
        Ok(u) => u,
        Err(response) => return response,
    };
    let max_message = ws_max_message(&state.node);
    let HttpState {
        node,
        shutdown,
        tasks,
    } = state;
    tasks.spawn(async move {
        match upgrade.on_upgrade.await {
            Ok(upgraded) => {
                let ws = websocket::WebSocket::new(upgraded, max_message);
                transport::drive(ws, node, shutdown, admission).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    upgrade.response
}

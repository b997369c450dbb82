//! The HTTP listener's routes: `/ws` (STOMP over WebSocket), `/health`, the publish
//! REST API (`publish.rs`), and the routes apps bring (`/api/rooms`, `/ws/chat`).

mod publish;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::node::Node;
use crate::transport::{self, websocket};

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
        .merge(apps)
        .with_state(state)
}

async fn health(State(state): State<HttpState>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "ok",
        "node": state.node.id,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn ws_upgrade(State(state): State<HttpState>, req: Request<Body>) -> Response<Body> {
    let upgrade = match websocket::accept(req) {
        Ok(u) => u,
        Err(response) => return response,
    };
    let max_message = state.node.config.stomp.max_frame.saturating_mul(4).max(1 << 20);
    let HttpState { node, shutdown, tasks } = state;
    tasks.spawn(async move {
        match upgrade.on_upgrade.await {
            Ok(upgraded) => {
                let ws = websocket::WebSocket::new(upgraded, max_message);
                transport::drive(ws, node, shutdown).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    upgrade.response
}

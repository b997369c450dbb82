//! Who is online, across every node (like Spring's `SimpUserRegistry` with a
//! multi-server registry):
//! - `GET /api/presence/users` → {"users": [{"name", "sessions"}], "count"}
//! - `GET /api/presence/users/{user}` → {"name", "online", "sessions"}
//!
//! A backend asks before it chooses between a live push and an e-mail. Both need a
//! service identity, like the publish API. Sessions on a node that died drop out
//! within three `cluster.heartbeat`s.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::cluster::presence::tally;
use crate::error::ApiError;
use crate::transport::{Context, PRESENCE_USERS};

type ApiResult = Result<Json<Value>, ApiError>;

async fn online(state: &Context) -> Result<Vec<(String, usize)>, ApiError> {
    let entries = state
        .node
        .messaging
        .cluster()
        .presence(PRESENCE_USERS)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "presence_unavailable",
                format!("presence unavailable: {e}"),
            )
        })?;
    Ok(tally(&entries))
}

pub(crate) async fn users(State(state): State<Context>, headers: HeaderMap) -> ApiResult {
    state.node.auth.service(&headers).await?;
    let users: Vec<Value> = online(&state)
        .await?
        .into_iter()
        .map(|(name, sessions)| json!({ "name": name, "sessions": sessions }))
        .collect();
    Ok(Json(json!({ "count": users.len(), "users": users })))
}

pub(crate) async fn user(
    State(state): State<Context>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    state.node.auth.service(&headers).await?;
    let sessions = online(&state)
        .await?
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, s)| s);
    Ok(Json(
        json!({ "name": name, "online": sessions > 0, "sessions": sessions }),
    ))
}

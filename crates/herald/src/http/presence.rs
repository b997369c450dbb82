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
use serde::Serialize;
use utoipa::ToSchema;

use crate::cluster::presence::tally;
use crate::error::{ApiError, ErrorBody};
use crate::transport::{Context, PRESENCE_USERS};

/// Everyone online, on any node.
#[derive(Serialize, ToSchema)]
pub(crate) struct OnlineUsers {
    count: usize,
    users: Vec<OnlineUser>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OnlineUser {
    name: String,
    /// Sessions of this user, on every node.
    sessions: usize,
}

/// Whether one user is online.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserPresence {
    name: String,
    online: bool,
    sessions: usize,
}

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

/// Every user with a session on any node.
#[utoipa::path(
    get, path = "/api/presence/users", tag = "presence",
    responses(
        (status = 200, description = "Who is online", body = OnlineUsers),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not a service", body = ErrorBody),
        (status = 503, description = "`presence_unavailable`", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = []), ()),
)]
pub(crate) async fn users(
    State(state): State<Context>,
    headers: HeaderMap,
) -> Result<Json<OnlineUsers>, ApiError> {
    state.node.auth.service(&headers).await?;
    let users: Vec<OnlineUser> = online(&state)
        .await?
        .into_iter()
        .map(|(name, sessions)| OnlineUser { name, sessions })
        .collect();
    Ok(Json(OnlineUsers {
        count: users.len(),
        users,
    }))
}

/// Whether `user` has a session on any node.
#[utoipa::path(
    get, path = "/api/presence/users/{user}", tag = "presence",
    params(("user" = String, Path, description = "The user's name")),
    responses(
        (status = 200, description = "The user's presence", body = UserPresence),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not a service", body = ErrorBody),
        (status = 503, description = "`presence_unavailable`", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = []), ()),
)]
pub(crate) async fn user(
    State(state): State<Context>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<UserPresence>, ApiError> {
    state.node.auth.service(&headers).await?;
    let sessions = online(&state)
        .await?
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, s)| s);
    Ok(Json(UserPresence {
        name,
        online: sessions > 0,
        sessions,
    }))
}

//! Operators' HTTP endpoints: `/metrics`, `/health/live`, `/health/ready`, and the
//! admin API under `/api/admin/` — sessions (list, disconnect one or a user's),
//! destinations with subscriber counts, and server info with secrets redacted.
//!
//! The admin API needs the admin role (`auth.admin_role`): an `X-API-Key` whose
//! principal has it, or a bearer token that does. The peer's address counts for
//! nothing: behind a reverse proxy every client is loopback. `/metrics` needs any API
//! key or an admin token when `ops.metrics_auth` is on.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::ops::sessions::{SessionView, SubscriptionView};
use crate::transport::Context;

/// `/health/live`, and `/health/ready` when ready.
#[derive(Serialize, ToSchema)]
pub(crate) struct Status {
    /// `live`, `ready`, `not ready` or `shutting down`.
    status: &'static str,
    /// The dependencies that do not answer, and why (503 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    failing: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DestinationView {
    /// A routing key or pattern with subscribers on this node.
    destination: String,
    subscribers: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Disconnected {
    /// Sessions of the user this node ended.
    disconnected: usize,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerInfo {
    version: &'static str,
    node: String,
    uptime_seconds: u64,
    sessions: usize,
    /// Every setting, secrets redacted (`***`).
    #[schema(value_type = Object)]
    settings: Value,
}

type Refusal = ApiError;

pub(crate) fn routes() -> axum::Router<Context> {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/api/admin/sessions", get(sessions))
        .route("/api/admin/sessions/{id}", delete(disconnect_session))
        .route("/api/admin/users/{user}/sessions", delete(disconnect_user))
        .route("/api/admin/destinations", get(destinations))
        .route("/api/admin/info", get(info))
}

/// Prometheus metrics (text format 0.0.4); every family from the first scrape.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "`unauthorized` (only with `ops.metrics_auth`)", body = ErrorBody),
        (status = 403, description = "`forbidden` (only with `ops.metrics_auth`)", body = ErrorBody),
    ),
    security((), ("apiKey" = []), ("bearer" = [])),
)]
pub(crate) async fn metrics(State(state): State<Context>, headers: HeaderMap) -> Response {
    let node = &state.node;
    if node.config.ops.metrics_auth {
        let key = headers
            .get("x-api-key")
            .or_else(|| headers.get(header::AUTHORIZATION))
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v));
        if key.is_none_or(|k| node.auth.api_keys.lookup(k).is_none())
            && let Err(refusal) = node.auth.admin(&headers).await
        {
            return refusal.into_response();
        }
    }
    crate::ops::metrics::registry_size(
        node.broker.subscription_count(),
        node.broker.destination_count(),
    );
    crate::ops::metrics::budgets(&node.broker.budgets());
    crate::ops::metrics::runtime_size();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        node.metrics.render(),
    )
        .into_response()
}

/// Liveness: 200 while the process serves HTTP.
#[utoipa::path(
    get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Live", body = Status)),
)]
pub(crate) async fn live() -> Json<Status> {
    Json(Status {
        status: "live",
        failing: None,
    })
}

/// Readiness: ready when serving and every dependency (cluster bus, database)
/// answers.
#[utoipa::path(
    get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "Not ready (`failing` names why) or shutting down", body = Status),
    ),
)]
pub(crate) async fn ready(State(state): State<Context>) -> (StatusCode, Json<Status>) {
    if state.shutdown.is_cancelled() {
        let status = Status {
            status: "shutting down",
            failing: None,
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(status));
    }
    let checks = state.node.readiness().await;
    let failing: BTreeMap<String, String> = checks
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| (name.to_owned(), e)))
        .collect();
    if failing.is_empty() {
        let status = Status {
            status: "ready",
            failing: None,
        };
        (StatusCode::OK, Json(status))
    } else {
        let status = Status {
            status: "not ready",
            failing: Some(failing),
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(status))
    }
}

/// This node's sessions with their subscriptions, oldest first.
#[utoipa::path(
    get, path = "/api/admin/sessions", tag = "admin",
    responses(
        (status = 200, description = "The sessions", body = Vec<SessionView>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller lacks `auth.admin_role`", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = [])),
)]
pub(crate) async fn sessions(
    State(state): State<Context>,
    headers: HeaderMap,
) -> Result<Json<Vec<SessionView>>, Refusal> {
    state.node.auth.admin(&headers).await?;
    let node = &state.node;
    let mut subs: BTreeMap<String, Vec<SubscriptionView>> = BTreeMap::new();
    node.broker.for_each_subscription(|s| {
        subs.entry(s.recipient.session_id.clone())
            .or_default()
            .push(SubscriptionView {
                id: s.id.clone(),
                destination: s.destination.clone(),
                ack: format!("{:?}", s.ack).to_lowercase(),
            });
    });
    let mut list: Vec<_> = node
        .sessions
        .all()
        .into_iter()
        .map(|e| {
            let s = subs.remove(&e.id).unwrap_or_default();
            e.view(&node.id, s)
        })
        .collect();
    list.sort_by(|a, b| a.connected_at.cmp(&b.connected_at).then(a.id.cmp(&b.id)));
    Ok(Json(list))
}

/// Ends one session: its client gets ERROR "disconnected by an administrator".
#[utoipa::path(
    delete, path = "/api/admin/sessions/{id}", tag = "admin",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Disconnected"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller lacks `auth.admin_role`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such session on this node", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = [])),
)]
pub(crate) async fn disconnect_session(
    State(state): State<Context>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, Refusal> {
    state.node.auth.admin(&headers).await?;
    if state.node.sessions.kick(&id) {
        tracing::info!(session = %id, "disconnected by an administrator");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no session '{id}'")))
    }
}

/// Ends every session of a user on this node.
#[utoipa::path(
    delete, path = "/api/admin/users/{user}/sessions", tag = "admin",
    params(("user" = String, Path, description = "The user's name")),
    responses(
        (status = 200, description = "How many were ended", body = Disconnected),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller lacks `auth.admin_role`", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = [])),
)]
pub(crate) async fn disconnect_user(
    State(state): State<Context>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Json<Disconnected>, Refusal> {
    state.node.auth.admin(&headers).await?;
    let n = state.node.sessions.kick_user(&user);
    tracing::info!(%user, sessions = n, "user disconnected by an administrator");
    Ok(Json(Disconnected { disconnected: n }))
}

/// Destinations with subscribers on this node.
#[utoipa::path(
    get, path = "/api/admin/destinations", tag = "admin",
    responses(
        (status = 200, description = "The destinations", body = Vec<DestinationView>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller lacks `auth.admin_role`", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = [])),
)]
pub(crate) async fn destinations(
    State(state): State<Context>,
    headers: HeaderMap,
) -> Result<Json<Vec<DestinationView>>, Refusal> {
    state.node.auth.admin(&headers).await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    state
        .node
        .broker
        .for_each_subscription(|s| *counts.entry(s.key.clone()).or_default() += 1);
    let list = counts
        .into_iter()
        .map(|(destination, subscribers)| DestinationView {
            destination,
            subscribers,
        })
        .collect();
    Ok(Json(list))
}

/// Version, node, uptime, and every setting with secrets redacted.
#[utoipa::path(
    get, path = "/api/admin/info", tag = "admin",
    responses(
        (status = 200, description = "The server", body = ServerInfo),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller lacks `auth.admin_role`", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = [])),
)]
pub(crate) async fn info(
    State(state): State<Context>,
    headers: HeaderMap,
) -> Result<Json<ServerInfo>, Refusal> {
    state.node.auth.admin(&headers).await?;
    let node = &state.node;
    let mut settings = serde_json::to_value(&node.config).unwrap_or_default();
    redact(&mut settings);
    Ok(Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION"),
        node: node.id.to_string(),
        uptime_seconds: node.started.elapsed().as_secs(),
        sessions: node.sessions.len(),
        settings,
    }))
}

/// Hides secrets: values of secret-like keys, and passwords inside URLs.
pub(crate) fn redact(value: &mut Value) {
    const SECRET_KEYS: &[&str] = &["secret", "api_keys", "password", "passcode"];
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let empty = matches!(v, Value::String(s) if s.is_empty())
                    || matches!(v, Value::Array(a) if a.is_empty());
                if SECRET_KEYS.contains(&k.as_str()) && !empty {
                    *v = json!("***");
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            // scheme://user:password@host → scheme://user:***@host
            if let Some((scheme, rest)) = s.split_once("://")
                && let Some((userinfo, host)) = rest.split_once('@')
                && let Some((user, _)) = userinfo.split_once(':')
            {
                *s = format!("{scheme}://{user}:***@{host}");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_and_url_passwords() {
        let mut v = json!({ "auth": { "secret": "s3cret", "api_keys": ["k"], "issuers": [{ "secret": "" }] },
                            "cluster": { "redis_url": "redis://:pw@h:6379" }, "db": "mysql://root:pw@h/db" });
        redact(&mut v);
        assert_eq!(v["auth"]["secret"], "***");
        assert_eq!(v["auth"]["api_keys"], "***");
        assert_eq!(v["auth"]["issuers"][0]["secret"], "");
        assert_eq!(v["cluster"]["redis_url"], "redis://:***@h:6379");
        assert_eq!(v["db"], "mysql://root:***@h/db");
    }
}

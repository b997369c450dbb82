//! The server-side publish REST API for other services:
//! - `POST /api/publish` {destination, body, headers?} — a broker destination or
//!   `/user/{name}/...`;
//! - `POST /api/users/{user}/messages` {destination, body, headers?} — `destination`
//!   (like `/queue/messages`) of every session of `user`.
//!
//! Both need a service identity (see [`require_service`]) and obey the destination rules
//! as that principal, as a STOMP SEND would (403 {"error", "code": "access_denied",
//! "rule", "destination"}); `herald-*` headers are the server's (400 {"code":
//! "reserved_header"}). `body` is a string (sent as
//! is, `text/plain` unless `headers` say otherwise) or any other JSON value
//! (serialized, `application/json`). The answer comes once the message is in the
//! cluster: 202 {"delivered": n, "offset"?: o, "epoch"?: e} — `delivered` counts the
//! subscriptions on the node that took the request (the other nodes deliver to theirs),
//! `offset`/`epoch` its place in the destination's history; 503 {"error": "cluster
//! unavailable: message not accepted (...)", "code": "cluster_unavailable"} when the
//! cluster did not take it (Redis away past `cluster.publish_timeout`, or the outage
//! spool full): it is never delivered later; 503 {"error": "queue full: ...", "code":
//! "queue_full"} when a queue's budget refused the message; or 400 {"error": "..."}
//! naming the problem.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use herald_stomp::Headers;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::auth::rules::{self, Operation};
use crate::broker::Refused;
use crate::cluster::Outcome;
use crate::error::{ApiError, ErrorBody};
use crate::transport::Context;

/// A message to publish.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"destination": "/topic/orders", "body": {"id": 7, "state": "paid"}, "headers": {"x-priority": "high"}}))]
pub(crate) struct PublishRequest {
    /// A broker destination (`/topic/x`, `/queue/x`, `/user/{name}/queue/x`); for
    /// `/api/users/{user}/messages`, the user's destination (`/queue/messages`).
    #[schema(pattern = "^/")]
    destination: String,
    /// A string is sent as it is (`text/plain`), any other JSON value serialized
    /// (`application/json`).
    body: Value,
    /// STOMP headers for the MESSAGE; none named `herald-*`, no control characters.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// 202: the cluster took the message.
#[derive(Serialize, ToSchema)]
pub(crate) struct Published {
    /// Subscriptions on the node that took the request (other nodes deliver to theirs).
    delivered: usize,
    /// The message's place in the destination's history (topics).
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    /// The history's epoch: an offset is only comparable within one.
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
}

type ApiResult = Result<(StatusCode, Json<Published>), ApiError>;

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// Headers as a STOMP client may send them: no control characters, no ':' in a name
/// (a 1.0 subscriber has no escaping to carry them), none of the server's own.
fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if let Some(name) = rules::reserved_header(headers.keys().map(String::as_str)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "reserved_header",
            rules::reserved_header_message(name),
        )
        .with("header", name));
    }
    for (name, value) in headers {
        herald_stomp::check_header(name, value)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_header", e.to_string()))?;
    }
    Ok(())
}

/// A destination over a `[broker]` limit is a 400 naming the setting.
fn check_destination(state: &Context, destination: &str) -> Result<(), ApiError> {
    state
        .node
        .router
        .check_limits(destination)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "destination_limit", e.message))
}

/// The destination rules, as for a STOMP SEND by `principal`.
fn check_rules(state: &Context, destination: &str, principal: &Principal) -> Result<(), ApiError> {
    let auth = &state.node.auth;
    auth.rules
        .check(Operation::Send, destination, principal)
        .map_err(|e| {
            tracing::warn!(user = %principal.name, "publish API: {e}");
            ApiError::new(StatusCode::FORBIDDEN, "access_denied", e.to_string())
                .with("rule", e.rule.clone())
                .with("destination", e.destination.clone())
        })
}

fn accepted(sent: Result<Outcome, Refused>) -> ApiResult {
    let outcome = sent.map_err(|e| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", e.message)
            .with("limit", e.limit)
    })?;
    if let Some(e) = outcome.error {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_unavailable",
            e,
        ));
    }
    let (offset, epoch) = match outcome.position {
        Some(p) => (Some(p.offset), Some(p.epoch.to_string())),
        None => (None, None),
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(Published {
            delivered: outcome.delivered,
            offset,
            epoch,
        }),
    ))
}

/// The message body and its headers, with a content-type chosen from the JSON type.
fn encode(req: PublishRequest) -> (String, Headers, Bytes) {
    let mut headers: Headers = req.headers.into_iter().collect();
    let (content_type, body) = match req.body {
        Value::String(s) => ("text/plain;charset=UTF-8", Bytes::from(s)),
        other => ("application/json", Bytes::from(other.to_string())),
    };
    if !headers.contains("content-type") {
        headers.push("content-type", content_type);
    }
    (req.destination, headers, body)
}

/// Publishes a message to a destination, as a STOMP SEND by the caller would.
#[utoipa::path(
    post, path = "/api/publish", tag = "publish",
    request_body = PublishRequest,
    responses(
        (status = 202, description = "Taken by the cluster", body = Published),
        (status = 400, description = "`bad_request`, `invalid_header`, `reserved_header`, `destination_limit`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no or a bad credential", body = ErrorBody),
        (status = 403, description = "`forbidden` (not a service), `access_denied` (a destination rule)", body = ErrorBody),
        (status = 503, description = "`queue_full`, `cluster_unavailable`: not delivered, never later", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = []), ()),
)]
pub(crate) async fn publish(
    State(state): State<Context>,
    headers: HeaderMap,
    req: Result<Json<PublishRequest>, JsonRejection>,
) -> ApiResult {
    let principal = state.node.auth.service(&headers).await?;
    let Json(req) = req.map_err(|e| bad_request(e.body_text()))?;
    check_headers(&req.headers)?;
    let (destination, message_headers, body) = encode(req);
    check_destination(&state, &destination)?;
    check_rules(&state, &destination, &principal)?;
    let sent = state
        .node
        .messaging
        .send_confirmed(&destination, &message_headers, body)
        .map_err(|e| bad_request(e.message))?;
    accepted(sent.await)
}

/// Publishes a message to `destination` of every session of `user`.
#[utoipa::path(
    post, path = "/api/users/{user}/messages", tag = "publish",
    params(("user" = String, Path, description = "The user's name (a principal)")),
    request_body = PublishRequest,
    responses(
        (status = 202, description = "Taken by the cluster", body = Published),
        (status = 400, description = "`bad_request`, `invalid_header`, `reserved_header`, `destination_limit`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`, `access_denied`", body = ErrorBody),
        (status = 503, description = "`queue_full`, `cluster_unavailable`", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = []), ()),
)]
pub(crate) async fn to_user(
    State(state): State<Context>,
    Path(user): Path<String>,
    headers: HeaderMap,
    req: Result<Json<PublishRequest>, JsonRejection>,
) -> ApiResult {
    let principal = state.node.auth.service(&headers).await?;
    let Json(req) = req.map_err(|e| bad_request(e.body_text()))?;
    check_headers(&req.headers)?;
    let (destination, message_headers, body) = encode(req);
    if !destination.starts_with('/') {
        return Err(bad_request(format!(
            "destination '{destination}' must start with '/'"
        )));
    }
    check_destination(&state, &destination)?;
    // The rules read what a STOMP client would SEND to: `/user/{user}/queue/x`. A `/`
    // in the name is escaped, so it stays one `{user}` segment.
    let as_sent = format!(
        "{}{}{destination}",
        state.node.config.routing.user_prefix,
        user.replace('%', "%25").replace('/', "%2F")
    );
    check_rules(&state, &as_sent, &principal)?;
    let sent =
        state
            .node
            .messaging
            .send_to_user_confirmed(&user, &destination, &message_headers, body);
    accepted(sent.await)
}

//! The server-side publish REST API for other services:
//! - `POST /api/publish` {destination, body, headers?} — a broker destination or
//!   `/user/{name}/...`;
//! - `POST /api/users/{user}/messages` {destination, body, headers?} — `destination`
//!   (like `/queue/messages`) of every session of `user`.
//!
//! Both need a service identity (see [`require_service`]). `body` is a string (sent as
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
use serde::Deserialize;
use serde_json::{Value, json};

use super::HttpState;
use crate::broker::Refused;
use crate::cluster::Outcome;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishRequest {
    destination: String,
    body: Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

type ApiResult = Result<(StatusCode, Json<Value>), (StatusCode, Json<Value>)>;

fn bad_request(msg: impl Into<String>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": msg.into() })),
    )
}

/// Headers as a STOMP client may send them: no control characters, no ':' in a name
/// (a 1.0 subscriber has no escaping to carry them).
fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), (StatusCode, Json<Value>)> {
    for (name, value) in headers {
        herald_stomp::check_header(name, value).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": e.to_string(), "code": "invalid_header" })),
            )
        })?;
    }
    Ok(())
}

/// A destination over a `[broker]` limit is a 400 naming the setting.
fn check_destination(
    state: &HttpState,
    destination: &str,
) -> Result<(), (StatusCode, Json<Value>)> {
    state.node.router.check_limits(destination).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": e.message, "code": "destination_limit" })),
        )
    })
}

fn accepted(sent: Result<Outcome, Refused>) -> ApiResult {
    let outcome = sent.map_err(|e| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": e.message, "code": "queue_full", "limit": e.limit })),
        )
    })?;
    if let Some(e) = outcome.error {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": e, "code": "cluster_unavailable" })),
        ));
    }
    let mut body = json!({ "delivered": outcome.delivered });
    if let Some(p) = &outcome.position {
        body["offset"] = json!(p.offset);
        body["epoch"] = json!(&*p.epoch);
    }
    Ok((StatusCode::ACCEPTED, Json(body)))
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

/// The REST API's caller must be a service: an `X-API-Key` from `auth.api_keys`, or a
/// bearer token with `auth.service_role` or `auth.admin_role`. With neither keys nor
/// issuers configured (anonymous development mode) the API is open.
pub(crate) async fn require_service(
    state: &HttpState,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, Json<Value>)> {
    let auth = &state.node.auth;
    let keys = &auth.config.api_keys;
    let deny = |status: u16, reason: String| {
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED),
            Json(json!({ "error": reason })),
        )
    };
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return if auth.api_keys.lookup(key).is_some() {
            Ok(())
        } else {
            Err(deny(401, "unknown API key".into()))
        };
    }
    if keys.is_empty() && auth.is_anonymous() {
        return Ok(());
    }
    let roles = [
        auth.config.service_role.as_str(),
        auth.config.admin_role.as_str(),
    ];
    auth.bearer_with_role(headers, &roles)
        .await
        .map(|_| ())
        .map_err(|(status, reason)| deny(status, reason))
}

pub(crate) async fn publish(
    State(state): State<HttpState>,
    headers: HeaderMap,
    req: Result<Json<PublishRequest>, JsonRejection>,
) -> ApiResult {
    require_service(&state, &headers).await?;
    let Json(req) = req.map_err(|e| bad_request(e.body_text()))?;
    check_headers(&req.headers)?;
    let (destination, message_headers, body) = encode(req);
    check_destination(&state, &destination)?;
    let sent = state
        .node
        .messaging
        .send_confirmed(&destination, &message_headers, body)
        .map_err(|e| bad_request(e.message))?;
    accepted(sent.await)
}

pub(crate) async fn to_user(
    State(state): State<HttpState>,
    Path(user): Path<String>,
    headers: HeaderMap,
    req: Result<Json<PublishRequest>, JsonRejection>,
) -> ApiResult {
    require_service(&state, &headers).await?;
    let Json(req) = req.map_err(|e| bad_request(e.body_text()))?;
    check_headers(&req.headers)?;
    let (destination, message_headers, body) = encode(req);
    if !destination.starts_with('/') {
        return Err(bad_request(format!(
            "destination '{destination}' must start with '/'"
        )));
    }
    check_destination(&state, &destination)?;
    let sent =
        state
            .node
            .messaging
            .send_to_user_confirmed(&user, &destination, &message_headers, body);
    accepted(sent.await)
}

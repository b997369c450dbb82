//! The notifications REST API.
//!
//! Services (an API key or a service/admin token, see `Auth::service`):
//! - `POST /api/notifications` {user | users | memberId | broadcast: true, message,
//!   type, title?, redirectPath?, payload?, idempotencyKey?} (or an `Idempotency-Key`
//!   header) → 201 {count, ids, notifications, more, delivered, duplicate: false}:
//!   `ids` in the order of the users, `notifications` the first [`ECHOED`] rows only
//!   (`more` when there are others), so a request to many users is not answered with
//!   a copy of every row. A key this caller used before for these recipients → 200
//!   with the earlier notifications and `duplicate: true`. Over a budget
//!   (`notifications.max_recipients`, `max_message`, `max_payload`) → 413
//!   {"error": "... exceeds notifications.max_… (…)", "code": "too_large", "limit"}.
//! - `POST /api/jobs/{id}/progress` {user, percent, status, result?, message?, title?,
//!   redirectPath?} → 202 {delivered, notification}.
//!
//! Idempotency keys belong to the caller (the API key's or token's principal) and
//! name one notification per recipient.
//!
//! The user themself (bearer token, cookie or query token; in anonymous mode an
//! `X-User` header or `?user=`):
//! - `GET /api/notifications?unread=true&limit=20&cursor=ID` → {items, nextCursor,
//!   unreadCount}, newest first;
//! - `GET /api/notifications/unread-count` → {unreadCount};
//! - `POST /api/notifications/{id}/read` → {id, read: true, changed, unreadCount};
//! - `POST /api/notifications/read-all` → {ids, unreadCount: 0}.
//!
//! A database failure answers 503 {"error": "notification store unavailable: ...",
//! "code": "database_unavailable"} and publishes nothing; so does every call while a
//! database that was down at startup has not answered yet.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Handshake;
use crate::error::ApiError;
use crate::notify::{JobProgress, NewNotification, Notifier, NotifyError, Recipients, view};
use crate::params::query_value;
use crate::transport::Context;

type Answer = ApiError;
type ApiResult = Result<(StatusCode, Json<Value>), ApiError>;

const MAX_PAGE: i64 = 200;
/// Rows a create answers with in full; the others by id.
pub(crate) const ECHOED: usize = 10;

pub(crate) fn routes() -> Router<Context> {
    Router::new()
        .route("/api/notifications", get(list).post(create))
        .route("/api/notifications/unread-count", get(unread_count))
        .route("/api/notifications/read-all", post(read_all))
        .route("/api/notifications/{id}/read", post(read_one))
        .route("/api/jobs/{id}/progress", post(job_progress))
}

/// 400 `bad_request`, 401 `unauthorized` or 404 `not_found`.
fn error(status: StatusCode, msg: impl Into<String>) -> Answer {
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        _ => "bad_request",
    };
    ApiError::new(status, code, msg)
}

fn failed(e: NotifyError) -> Answer {
    match e {
        NotifyError::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
        NotifyError::TooLarge { limit, message } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message).with("limit", limit)
        }
        NotifyError::Store(ref db) => {
            tracing::warn!(error = %db, "notification store error");
            unavailable(&e)
        }
        NotifyError::NotReady(_) => unavailable(&e),
    }
}

/// 503 {"error": "notification store unavailable: …", "code": "database_unavailable"}.
fn unavailable(e: &NotifyError) -> Answer {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        e.to_string(),
    )
}

fn notifier(state: &Context) -> Result<&Arc<Notifier>, Answer> {
    state.node.notifications.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "notifications_disabled",
            "notifications are turned off (notifications.enabled = false)",
        )
    })
}

/// The service creating notifications (authorized by `Auth::service`), by name:
/// whose idempotency keys these are. Empty when anonymous.
async fn caller(state: &Context, headers: &HeaderMap) -> Result<String, Answer> {
    let principal = state.node.auth.service(headers).await?;
    let auth = &state.node.auth;
    Ok(if headers.contains_key("x-api-key") {
        format!("key:{}", principal.name)
    } else if auth.services_open() {
        String::new()
    } else {
        format!("token:{}", principal.name)
    })
}

/// The user a read-state request is about: the principal of a valid cookie, bearer or
/// query token; in anonymous mode (no issuer configured) the `X-User` header or the
/// `user` query parameter.
async fn owner(
    state: &Context,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<String, Answer> {
    let auth = &state.node.auth;
    let unauthorized = |m: String| error(StatusCode::UNAUTHORIZED, m);
    if auth.is_anonymous() {
        let named = headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| query_value(query, "user"))
            .filter(|u| !u.trim().is_empty());
        return named.ok_or_else(|| {
            unauthorized("name the user with an X-User header or ?user= (anonymous mode)".into())
        });
    }
    match auth.handshake(headers, query).await {
        Ok(Handshake::Authenticated(p)) => Ok(p.name),
        Ok(Handshake::NoToken) => Err(unauthorized(
            "no access token: send a bearer token, the auth cookie or the query token".into(),
        )),
        Err(e) => Err(unauthorized(format!("authentication failed: {e}"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRequest {
    user: Option<String>,
    users: Option<Vec<String>>,
    /// The Spring notification DTO's name; a number or a string.
    member_id: Option<Value>,
    #[serde(default)]
    broadcast: bool,
    message: String,
    #[serde(rename = "type", default = "default_kind")]
    kind: String,
    #[serde(default)]
    title: String,
    redirect_path: Option<String>,
    payload: Option<Value>,
    idempotency_key: Option<String>,
}

fn default_kind() -> String {
    "info".into()
}

async fn create(
    State(state): State<Context>,
    headers: HeaderMap,
    req: Result<Json<CreateRequest>, JsonRejection>,
) -> ApiResult {
    let caller = caller(&state, &headers).await?;
    let notifier = notifier(&state)?;
    let Json(req) = req.map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
    let member = match req.member_id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "'memberId' must be a string or a number",
            ));
        }
    };
    let named = [
        req.user.is_some(),
        req.users.is_some(),
        member.is_some(),
        req.broadcast,
    ];
    if named.iter().filter(|b| **b).count() != 1 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "give exactly one of 'user', 'users', 'memberId' or 'broadcast': true",
        ));
    }
    let to = if req.broadcast {
        Recipients::Everyone
    } else {
        Recipients::Users(
            req.users
                .or(req.user.map(|u| vec![u]))
                .or(member.map(|m| vec![m]))
                .unwrap_or_default(),
        )
    };
    let header_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let created = notifier
        .notify(NewNotification {
            to,
            kind: req.kind,
            title: req.title,
            message: req.message,
            redirect_path: req.redirect_path,
            payload: req.payload,
            idempotency_key: req.idempotency_key.or(header_key),
            caller,
        })
        .await
        .map_err(failed)?;
    let status = if created.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let rows = &created.notifications;
    Ok((
        status,
        Json(json!({
            "count": rows.len(),
            "ids": rows.iter().map(|n| n.id).collect::<Vec<_>>(),
            "notifications": rows.iter().take(ECHOED).map(view).collect::<Vec<_>>(),
            "more": rows.len() > ECHOED,
            "delivered": created.delivered,
            "duplicate": created.duplicate,
        })),
    ))
}

async fn list(
    State(state): State<Context>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let notifier = notifier(&state)?;
    let user = owner(&state, &headers, query.as_deref()).await?;
    let q = query.as_deref();
    let unread = matches!(query_value(q, "unread").as_deref(), Some("true" | "1"));
    let limit = match query_value(q, "limit") {
        None => notifier.config().page_size as i64,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("'limit' must be 1 to {MAX_PAGE}"),
                )
            })?,
    };
    let before = match query_value(q, "cursor").or_else(|| query_value(q, "before")) {
        None => None,
        Some(c) if c.is_empty() => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "'cursor' must be a cursor from nextCursor",
            )
        })?),
    };
    let items = notifier
        .list(&user, before, limit + 1, unread)
        .await
        .map_err(failed)?;
    let more = items.len() as i64 > limit;
    let items = &items[..items.len().min(limit as usize)];
    let next = more
        .then(|| items.last().map(|n| n.id.to_string()))
        .flatten();
    let unread_count = notifier.unread_count(&user).await.map_err(failed)?;
    Ok((
        StatusCode::OK,
        Json(json!({
            "items": items.iter().map(view).collect::<Vec<_>>(),
            "nextCursor": next,
            "unreadCount": unread_count,
        })),
    ))
}

async fn unread_count(
    State(state): State<Context>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let notifier = notifier(&state)?;
    let user = owner(&state, &headers, query.as_deref()).await?;
    let n = notifier.unread_count(&user).await.map_err(failed)?;
    Ok((StatusCode::OK, Json(json!({ "unreadCount": n }))))
}

async fn read_one(
    State(state): State<Context>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let notifier = notifier(&state)?;
    let user = owner(&state, &headers, query.as_deref()).await?;
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            format!("no notification {id} for this user"),
        )
    };
    let Ok(n) = id.parse::<i64>() else {
        return Err(not_found());
    };
    match notifier.mark_read(&user, n).await.map_err(failed)? {
        None => Err(not_found()),
        Some((changed, unread)) => Ok((
            StatusCode::OK,
            Json(json!({ "id": n, "read": true, "changed": changed, "unreadCount": unread })),
        )),
    }
}

async fn read_all(
    State(state): State<Context>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let notifier = notifier(&state)?;
    let user = owner(&state, &headers, query.as_deref()).await?;
    let ids = notifier.mark_all_read(&user).await.map_err(failed)?;
    Ok((
        StatusCode::OK,
        Json(json!({ "ids": ids, "unreadCount": 0 })),
    ))
}

async fn job_progress(
    State(state): State<Context>,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Result<Json<JobProgress>, JsonRejection>,
) -> ApiResult {
    let caller = caller(&state, &headers).await?;
    let notifier = notifier(&state)?;
    let Json(mut job) = req.map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
    job.id = id;
    let (delivered, created) = notifier.job_progress(&job, &caller).await.map_err(failed)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "delivered": delivered,
            "notification": created.and_then(|c| c.notifications.first().map(view)),
        })),
    ))
}

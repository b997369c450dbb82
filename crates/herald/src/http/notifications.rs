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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Handshake;
use crate::error::{ApiError, ErrorBody};
use crate::notify::{JobProgress, NewNotification, Notifier, NotifyError, Recipients, View, view};
use crate::params::query_value;
use crate::transport::Context;

type Answer = ApiError;
type ApiResult<T> = Result<(StatusCode, Json<T>), ApiError>;

/// 201 (200 for a repeated idempotency key): a summary, not a copy of every row.
#[derive(Serialize, ToSchema)]
pub(crate) struct Created {
    count: usize,
    /// Every id, in the order of the request's users.
    ids: Vec<i64>,
    /// The first 10 rows.
    #[schema(value_type = Vec<View>)]
    notifications: Vec<Value>,
    /// Rows beyond those in `notifications` exist.
    more: bool,
    /// Sessions on this node the live copies reached.
    delivered: usize,
    /// The idempotency key named earlier notifications: nothing was written.
    duplicate: bool,
}

/// A page of the user's notifications, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Page {
    #[schema(value_type = Vec<View>)]
    items: Vec<Value>,
    /// The `cursor` of the next page; null on the last.
    next_cursor: Option<String>,
    unread_count: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UnreadCount {
    unread_count: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MarkedRead {
    id: i64,
    read: bool,
    /// False when it was read already.
    changed: bool,
    unread_count: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MarkedAllRead {
    /// The notifications this marked read.
    ids: Vec<i64>,
    unread_count: i64,
}

/// 202: the progress was published to the user's job destination.
#[derive(Serialize, ToSchema)]
pub(crate) struct JobAccepted {
    /// Sessions on this node that got it.
    delivered: usize,
    /// The notification stored for a `done` or `failed` status.
    #[schema(value_type = Option<View>)]
    notification: Option<Value>,
}

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

/// One of `user`, `users`, `memberId` or `broadcast: true` names the recipients.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"user": "alice", "type": "comment", "title": "New comment", "message": "Bob replied", "redirectPath": "/posts/7", "payload": {"postId": 7}}))]
pub(crate) struct CreateRequest {
    #[schema(min_length = 1)]
    user: Option<String>,
    #[schema(min_items = 1, inline)]
    users: Option<Vec<String>>,
    /// The Spring notification DTO's name; a number or a string.
    #[schema(value_type = Option<String>)]
    member_id: Option<Value>,
    #[serde(default)]
    broadcast: bool,
    #[schema(min_length = 1)]
    message: String,
    /// The notification's kind (`info` when left out).
    #[serde(rename = "type", default = "default_kind")]
    #[schema(min_length = 1)]
    kind: String,
    #[serde(default)]
    title: String,
    /// A path on this site (`/posts/7`) or an http(s) URL.
    redirect_path: Option<String>,
    payload: Option<Value>,
    idempotency_key: Option<String>,
}

fn default_kind() -> String {
    "info".into()
}

/// Stores a notification for users (or everyone), then delivers it live.
#[utoipa::path(
    post, path = "/api/notifications", tag = "notifications",
    params(("Idempotency-Key" = Option<String>, Header, description = "Names one notification per recipient for this caller (or `idempotencyKey`)")),
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Stored and published", body = Created),
        (status = 200, description = "A repeated idempotency key: the earlier notifications", body = Created),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not a service", body = ErrorBody),
        (status = 404, description = "`notifications_disabled`", body = ErrorBody),
        (status = 413, description = "`too_large`: `notifications.max_recipients`, `max_message`, `max_payload`", body = ErrorBody),
        (status = 503, description = "`database_unavailable`: nothing was published", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = []), ()),
)]
pub(crate) async fn create(
    State(state): State<Context>,
    headers: HeaderMap,
    req: Result<Json<CreateRequest>, JsonRejection>,
) -> ApiResult<Created> {
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
        Json(Created {
            count: rows.len(),
            ids: rows.iter().map(|n| n.id).collect(),
            notifications: rows.iter().take(ECHOED).map(view).collect(),
            more: rows.len() > ECHOED,
            delivered: created.delivered,
            duplicate: created.duplicate,
        }),
    ))
}

/// The calling user's notifications, newest first.
#[utoipa::path(
    get, path = "/api/notifications", tag = "notifications",
    params(
        ("unread" = Option<bool>, Query, description = "Only unread ones (`true` or `1`)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size (default `notifications.page_size`)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
        ("user" = Option<String>, Query, description = "The user, in anonymous mode only"),
        ("access_token" = Option<String>, Query, description = "The user's token (`auth.query_param`)"),
    ),
    responses(
        (status = 200, description = "A page", body = Page),
        (status = 400, description = "`bad_request`: `limit` or `cursor`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no user (a token, or in anonymous mode `X-User` / `?user=`)", body = ErrorBody),
        (status = 404, description = "`notifications_disabled`", body = ErrorBody),
        (status = 503, description = "`database_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []), ("queryToken" = []), ("userHeader" = [])),
)]
pub(crate) async fn list(
    State(state): State<Context>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Page> {
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
        Json(Page {
            items: items.iter().map(view).collect(),
            next_cursor: next,
            unread_count,
        }),
    ))
}

/// How many of the calling user's notifications are unread.
#[utoipa::path(
    get, path = "/api/notifications/unread-count", tag = "notifications",
    params(("user" = Option<String>, Query, description = "The user, in anonymous mode only"),
        ("access_token" = Option<String>, Query, description = "The user's token (`auth.query_param`)")),
    responses(
        (status = 200, description = "The count", body = UnreadCount),
        (status = 401, description = "`unauthorized`: no user (a token, or in anonymous mode `X-User` / `?user=`)", body = ErrorBody),
        (status = 404, description = "`notifications_disabled`", body = ErrorBody),
        (status = 503, description = "`database_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []), ("queryToken" = []), ("userHeader" = [])),
)]
pub(crate) async fn unread_count(
    State(state): State<Context>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<UnreadCount> {
    let notifier = notifier(&state)?;
    let user = owner(&state, &headers, query.as_deref()).await?;
    let n = notifier.unread_count(&user).await.map_err(failed)?;
    Ok((StatusCode::OK, Json(UnreadCount { unread_count: n })))
}

/// Marks one of the calling user's notifications read; the user's other sessions
/// are told.
#[utoipa::path(
    post, path = "/api/notifications/{id}/read", tag = "notifications",
    params(("id" = String, Path, description = "The notification's id"), ("user" = Option<String>, Query, description = "The user, in anonymous mode only"),
        ("access_token" = Option<String>, Query, description = "The user's token (`auth.query_param`)")),
    responses(
        (status = 200, description = "Read", body = MarkedRead),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such notification for this user; `notifications_disabled`", body = ErrorBody),
        (status = 503, description = "`database_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []), ("queryToken" = []), ("userHeader" = [])),
)]
pub(crate) async fn read_one(
    State(state): State<Context>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<MarkedRead> {
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
            Json(MarkedRead {
                id: n,
                read: true,
                changed,
                unread_count: unread,
            }),
        )),
    }
}

/// Marks every notification of the calling user read.
#[utoipa::path(
    post, path = "/api/notifications/read-all", tag = "notifications",
    params(("user" = Option<String>, Query, description = "The user, in anonymous mode only"),
        ("access_token" = Option<String>, Query, description = "The user's token (`auth.query_param`)")),
    responses(
        (status = 200, description = "All read", body = MarkedAllRead),
        (status = 401, description = "`unauthorized`: no user (a token, or in anonymous mode `X-User` / `?user=`)", body = ErrorBody),
        (status = 404, description = "`notifications_disabled`", body = ErrorBody),
        (status = 503, description = "`database_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []), ("queryToken" = []), ("userHeader" = [])),
)]
pub(crate) async fn read_all(
    State(state): State<Context>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<MarkedAllRead> {
    let notifier = notifier(&state)?;
    let user = owner(&state, &headers, query.as_deref()).await?;
    let ids = notifier.mark_all_read(&user).await.map_err(failed)?;
    Ok((
        StatusCode::OK,
        Json(MarkedAllRead {
            ids,
            unread_count: 0,
        }),
    ))
}

/// Publishes a job's progress to its user; `done` and `failed` are stored as a
/// notification too.
#[utoipa::path(
    post, path = "/api/jobs/{id}/progress", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    request_body = JobProgress,
    responses(
        (status = 202, description = "Published", body = JobAccepted),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not a service", body = ErrorBody),
        (status = 404, description = "`notifications_disabled`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 503, description = "`database_unavailable`", body = ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []), ("cookie" = []), ()),
)]
pub(crate) async fn job_progress(
    State(state): State<Context>,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Result<Json<JobProgress>, JsonRejection>,
) -> ApiResult<JobAccepted> {
    let caller = caller(&state, &headers).await?;
    let notifier = notifier(&state)?;
    let Json(mut job) = req.map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
    job.id = id;
    let (delivered, created) = notifier.job_progress(&job, &caller).await.map_err(failed)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(JobAccepted {
            delivered,
            notification: created.and_then(|c| c.notifications.first().map(view)),
        }),
    ))
}

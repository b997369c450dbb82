//! What goes wrong, as a client is told it: a STOMP session's one ERROR frame
//! ([`StompError`]), a REST request's JSON answer ([`ApiError`]); and, as an
//! operator is told it, a setting that cannot work ([`ConfigError`]).
//!
//! Below the router, the session and the HTTP routes, so all of them can name an
//! error without importing each other. The [`ErrorKind`] is chosen where the error is
//! made, not read back from its text: metrics count ERROR frames by kind, and the
//! wording of a message can change without moving a dashboard. Every REST error has
//! one shape, `{"error": "<what is wrong, for a person>", "code": "<stable, for a
//! program>", ...details}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_stomp::DecodeError;
use serde_json::{Map, Value};

/// What an ERROR frame reports; its [`ErrorKind::as_str`] is the `reason` label of
/// `herald_error_frames_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The client broke the protocol: a malformed frame, a missing header, an
    /// unknown transaction or subscription.
    Protocol,
    /// The client did not take what was sent to it (no progress for
    /// `stomp.send_timeout`, the outbound limit, a full prefetch window on a topic).
    SlowConsumer,
    HeartbeatTimeout,
    /// No CONNECT within `stomp.connect_timeout`.
    ConnectTimeout,
    Shutdown,
    /// An administrator ended the session.
    Admin,
    /// The credentials were refused at CONNECT.
    Auth,
    /// The principal's token expired during the session.
    TokenExpired,
    /// The destination rules (or a reserved header) refused the frame.
    AccessDenied,
    /// A budget was reached: queues, transactions, subscriptions, frame rate, the
    /// size of a frame or destination.
    Limit,
    /// The destination is outside every configured prefix.
    Destination,
    /// An application handler (or the HTTP backend) failed or is missing.
    Handler,
    /// The cluster did not take a message the client asked to be confirmed.
    Cluster,
    /// The client resumed the session on a new connection: the old one ends.
    Replaced,
}

impl ErrorKind {
    /// The metric label, stable across releases.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::SlowConsumer => "slow_consumer",
            ErrorKind::HeartbeatTimeout => "heartbeat_timeout",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Shutdown => "shutdown",
            ErrorKind::Admin => "admin",
            ErrorKind::Auth => "auth",
            ErrorKind::TokenExpired => "token_expired",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Limit => "limit",
            ErrorKind::Destination => "destination",
            ErrorKind::Handler => "handler",
            ErrorKind::Cluster => "cluster",
            ErrorKind::Replaced => "replaced",
        }
    }

    /// Every kind: the `reason` label takes no other values.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Protocol,
        ErrorKind::SlowConsumer,
        ErrorKind::HeartbeatTimeout,
        ErrorKind::ConnectTimeout,
        ErrorKind::Shutdown,
        ErrorKind::Admin,
        ErrorKind::Auth,
        ErrorKind::TokenExpired,
        ErrorKind::AccessDenied,
        ErrorKind::Limit,
        ErrorKind::Destination,
        ErrorKind::Handler,
        ErrorKind::Cluster,
        ErrorKind::Replaced,
    ];
}

/// A session's error: the `message` header of the ERROR frame, and the receipt of the
/// frame that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StompError {
    pub kind: ErrorKind,
    pub message: String,
    pub receipt: Option<String>,
    /// Further headers for the ERROR frame (e.g. `version` after a failed negotiation).
    pub headers: Vec<(&'static str, String)>,
}

impl StompError {
    /// A protocol error.
    pub fn new(message: impl Into<String>) -> Self {
        StompError::of(ErrorKind::Protocol, message)
    }

    pub fn of(kind: ErrorKind, message: impl Into<String>) -> Self {
        StompError {
            kind,
            message: message.into(),
            receipt: None,
            headers: Vec::new(),
        }
    }

    /// Names the frame that caused it by its `receipt`.
    pub fn with_receipt(mut self, receipt: Option<String>) -> Self {
        self.receipt = receipt;
        self
    }
}

impl From<DecodeError> for StompError {
    fn from(e: DecodeError) -> Self {
        let kind = match e {
            DecodeError::HeaderLineTooLong { .. }
            | DecodeError::TooManyHeaders { .. }
            | DecodeError::FrameTooLarge { .. } => ErrorKind::Limit,
            _ => ErrorKind::Protocol,
        };
        StompError::of(kind, e.to_string())
    }
}

/// A REST error: its status and `{"error", "code", ...details}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    /// Stable across releases: what a client program matches on.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    details: Map<String, Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(
            ErrorCode::is_listed(code),
            "error code '{code}' is not in ErrorCode::ALL (the API's documented codes)"
        );
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// 400 `bad_request`: the request is malformed (JSON, parameters, values).
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Adds a detail beside `error` and `code` (`limit`, `rule`, `header`...).
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        let mut body = self.details.clone();
        body.insert("error".into(), Value::from(self.message.clone()));
        body.insert("code".into(), Value::from(self.code));
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Every `code` a REST error carries: stable across releases, what a client program
/// matches on (the `error` text beside it is for people and may change). The OpenAPI
/// document lists them; [`ApiError::new`] refuses, in debug builds, a code not here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    /// 400: malformed JSON, a missing or wrong field, a bad parameter.
    BadRequest,
    /// 400: the request body could not be read.
    BadBody,
    /// 400: a room name that cannot be one.
    Invalid,
    /// 400: a message header with a control character or a `:` in its name.
    InvalidHeader,
    /// 400: a message header named `herald-*` (the server's own).
    ReservedHeader,
    /// 400: a destination over a `[broker]` limit (length, segments, wildcards).
    DestinationLimit,
    /// 401: no credential, or one that does not verify.
    Unauthorized,
    /// 403: a verified caller without the role the call needs.
    Forbidden,
    /// 403: a destination rule refused the caller.
    AccessDenied,
    /// 403: no credentials are configured and the client is not on loopback.
    ProtectedMode,
    /// 403: a browser `Origin` that `auth.allowed_origins` does not allow.
    OriginNotAllowed,
    /// 403: a request without `Origin` that the browser marks as cross-site.
    CrossSite,
    /// 403: a SockJS request by another client than the session's opener.
    SockjsSessionOwner,
    /// 404: no such notification, session, room, or the feature is off.
    NotFound,
    /// 404: `notifications.enabled = false`.
    NotificationsDisabled,
    /// 409: the request cannot work with this configuration.
    Conflict,
    /// 413: a body or a field over its budget (`limit` names the setting).
    TooLarge,
    /// 421: a `Host` outside `server.allowed_hosts`.
    HostNotAllowed,
    /// 429: `apps.max_rooms` rooms exist.
    MaxRooms,
    /// 429: `limits.max_connections_per_ip`.
    MaxConnectionsPerIp,
    /// 429: `sockjs.max_sessions_per_ip`.
    SockjsMaxSessionsPerIp,
    /// 500: the server failed (minting a development token).
    Internal,
    /// 503: `limits.max_connections`.
    MaxConnections,
    /// 503: `sockjs.max_sessions`.
    SockjsMaxSessions,
    /// 503: a queue's budget refused the message (`limit` names it).
    QueueFull,
    /// 503: the cluster did not take the message; it is never delivered later.
    ClusterUnavailable,
    /// 503: the notification store does not answer; nothing was published.
    DatabaseUnavailable,
    /// 503: the cluster's presence does not answer.
    PresenceUnavailable,
    /// 503: the cluster's shared maps (the rooms) do not answer.
    Unavailable,
}

impl ErrorCode {
    /// Every code: `code` takes no other values.
    pub(crate) const ALL: [ErrorCode; 29] = [
        ErrorCode::BadRequest,
        ErrorCode::BadBody,
        ErrorCode::Invalid,
        ErrorCode::InvalidHeader,
        ErrorCode::ReservedHeader,
        ErrorCode::DestinationLimit,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::AccessDenied,
        ErrorCode::ProtectedMode,
        ErrorCode::OriginNotAllowed,
        ErrorCode::CrossSite,
        ErrorCode::SockjsSessionOwner,
        ErrorCode::NotFound,
        ErrorCode::NotificationsDisabled,
        ErrorCode::Conflict,
        ErrorCode::TooLarge,
        ErrorCode::HostNotAllowed,
        ErrorCode::MaxRooms,
        ErrorCode::MaxConnectionsPerIp,
        ErrorCode::SockjsMaxSessionsPerIp,
        ErrorCode::Internal,
        ErrorCode::MaxConnections,
        ErrorCode::SockjsMaxSessions,
        ErrorCode::QueueFull,
        ErrorCode::ClusterUnavailable,
        ErrorCode::DatabaseUnavailable,
        ErrorCode::PresenceUnavailable,
        ErrorCode::Unavailable,
    ];

    /// The wire name, as `serde` writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadBody => "bad_body",
            ErrorCode::Invalid => "invalid",
            ErrorCode::InvalidHeader => "invalid_header",
            ErrorCode::ReservedHeader => "reserved_header",
            ErrorCode::DestinationLimit => "destination_limit",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ProtectedMode => "protected_mode",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::CrossSite => "cross_site",
            ErrorCode::SockjsSessionOwner => "sockjs_session_owner",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotificationsDisabled => "notifications_disabled",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::HostNotAllowed => "host_not_allowed",
            ErrorCode::MaxRooms => "max_rooms",
            ErrorCode::MaxConnectionsPerIp => "max_connections_per_ip",
            ErrorCode::SockjsMaxSessionsPerIp => "sockjs_max_sessions_per_ip",
            ErrorCode::Internal => "internal",
            ErrorCode::MaxConnections => "max_connections",
            ErrorCode::SockjsMaxSessions => "sockjs_max_sessions",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::ClusterUnavailable => "cluster_unavailable",
            ErrorCode::DatabaseUnavailable => "database_unavailable",
            ErrorCode::PresenceUnavailable => "presence_unavailable",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// Whether `code` is one of [`ErrorCode::ALL`].
    pub(crate) fn is_listed(code: &str) -> bool {
        ErrorCode::ALL.iter().any(|c| c.as_str() == code)
    }
}

/// The body of every REST error (the OpenAPI schema of [`ApiError::body`]).
#[derive(utoipa::ToSchema)]
#[schema(as = Error)]
#[allow(dead_code, reason = "a schema only: ApiError::body writes this shape")]
pub(crate) struct ErrorBody {
    /// What went wrong, for a person.
    error: String,
    code: ErrorCode,
    /// The setting whose budget was reached (`too_large`, `queue_full`, `max_rooms`).
    #[schema(nullable = false)]
    limit: Option<String>,
    /// The destination rule that refused (`access_denied`).
    #[schema(nullable = false)]
    rule: Option<String>,
    /// The destination a rule refused (`access_denied`).
    #[schema(nullable = false)]
    destination: Option<String>,
    /// The header refused (`reserved_header`).
    #[schema(nullable = false)]
    header: Option<String>,
}

/// A setting that cannot work, named by its key: "stomp.max_frame: must be at least
/// 256 bytes". Each configuration section checks its own keys; the composed `Config`
/// checks the relations between sections.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// "`key`: `problem`".
    pub fn new(key: &str, problem: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!("{key}: {problem}"))
    }

    /// `Err` for `key` unless `ok`.
    pub fn check(ok: bool, key: &str, problem: &str) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(ConfigError::new(key, problem))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_every_kind_is_listed() {
        let labels: std::collections::HashSet<_> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn an_api_error_has_error_code_and_its_details() {
        let e = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "too big")
            .with("limit", "server.max_body");
        assert_eq!(
            e.body(),
            serde_json::json!({"error": "too big", "code": "too_large", "limit": "server.max_body"})
        );
    }

    #[test]
    fn error_codes_are_distinct_and_named_as_serde_names_them() {
        let names: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    /// Every code literal the crate hands to an error is documented, and every
    /// documented one is used: `ApiError::new`,
    /// the admission's refusals (`Refusal::new`, its budgets' codes) and the JSON the
    /// HTTP layer writes itself.
    #[test]
    fn every_code_in_the_source_is_listed() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src];
        let mut found = std::collections::BTreeSet::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.split("#[cfg(test)]").next().unwrap();
            for code in code_literals(text) {
                assert!(
                    ErrorCode::is_listed(&code),
                    "{}: error code '{code}' is not in ErrorCode::ALL",
                    path.display()
                );
                found.insert(code);
            }
        }
        // And the list holds no code nothing answers with (the patterns would have
        // gone stale, or a code is gone).
        for c in ErrorCode::ALL {
            assert!(
                found.contains(c.as_str()),
                "'{}' is listed but never used",
                c.as_str()
            );
        }
    }

    /// `"code": "x"` in JSON, `(StatusCode::X, "x", message)` (`ApiError::new`,
    /// `Refusal::new` and the tuples mapped to them), `StatusCode::X => "x"`, `let code = ..;`, and `("x", "section.key")`
    /// pairs (the admission budgets' code and setting).
    fn code_literals(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let word = |s: &str| -> Option<String> {
            let s = s.trim_start().strip_prefix('"')?;
            let end = s.find('"')?;
            let w = &s[..end];
            (!w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .then(|| w.to_owned())
        };
        for (i, _) in text.match_indices("\"code\":") {
            out.extend(word(&text[i + 7..]));
        }
        for (i, _) in text.match_indices("StatusCode::") {
            let rest = &text[i..];
            // `StatusCode::X => "x"`: the status-to-code maps of the error helpers.
            if let Some(arrow) = rest.find(" => ")
                && rest[..arrow]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            {
                out.extend(word(&rest[arrow + 4..]));
                continue;
            }
            let Some(comma) = rest.find(',') else {
                continue;
            };
            if rest[..comma]
                .contains(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            {
                continue;
            }
            // (status, code, message): a third argument follows the code.
            let after = &rest[comma + 1..];
            if let Some(code) = word(after)
                && after.trim_start()[code.len() + 2..]
                    .trim_start()
                    .starts_with(',')
            {
                out.push(code);
            }
        }
        // `let code = if .. { "x" } else { "y" };`
        for (i, _) in text.match_indices("let code = ") {
            let binding = &text[i..i + text[i..].find(';').unwrap_or(0)];
            out.extend(
                binding
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .filter_map(|w| word(&format!("\"{w}\""))),
            );
        }
        for (i, _) in text.match_indices(": (\"") {
            let rest = &text[i + 3..];
            if let Some(code) = word(rest)
                && rest[code.len() + 2..].starts_with(", \"")
            {
                out.push(code);
            }
        }
        out
    }

    #[test]
    fn a_size_limit_of_the_decoder_is_a_limit() {
        let e: StompError = DecodeError::FrameTooLarge { limit: 10 }.into();
        assert_eq!(e.kind, ErrorKind::Limit);
        let e: StompError = DecodeError::MissingNul.into();
        assert_eq!(e.kind, ErrorKind::Protocol);
    }
}

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
    fn a_size_limit_of_the_decoder_is_a_limit() {
        let e: StompError = DecodeError::FrameTooLarge { limit: 10 }.into();
        assert_eq!(e.kind, ErrorKind::Limit);
        let e: StompError = DecodeError::MissingNul.into();
        assert_eq!(e.kind, ErrorKind::Protocol);
    }
}

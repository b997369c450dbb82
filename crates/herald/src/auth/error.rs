//! Why a caller is not let in, and what each kind of refusal becomes: a 401 or 403
//! with `{error, code}` on the REST API, an ERROR frame on a STOMP session.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorKind, StompError};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential, or one that does not verify (unknown key, bad signature,
    /// expired, no user claim): 401 `unauthorized`.
    #[error("{0}")]
    Unauthenticated(String),
    /// A verified caller without the role the call needs: 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
}

impl AuthError {
    pub fn unauthenticated(reason: impl Into<String>) -> AuthError {
        AuthError::Unauthenticated(reason.into())
    }

    pub fn forbidden(reason: impl Into<String>) -> AuthError {
        AuthError::Forbidden(reason.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The REST API's stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated(_) => "unauthorized",
            AuthError::Forbidden(_) => "forbidden",
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        ApiError::new(e.status(), e.code(), e.to_string())
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// A CONNECT refused: "authentication failed: <reason>", counted as an auth error.
impl From<AuthError> for StompError {
    fn from(e: AuthError) -> StompError {
        StompError::of(ErrorKind::Auth, format!("authentication failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_and_code() {
        let e = ApiError::from(AuthError::unauthenticated("unknown API key"));
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(e.body()["code"], "unauthorized");
        assert_eq!(e.body()["error"], "unknown API key");
        let e = ApiError::from(AuthError::forbidden("this needs role admin"));
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.body()["code"], "forbidden");
        let s = StompError::from(AuthError::unauthenticated("token expired"));
        assert_eq!(s.kind, ErrorKind::Auth);
        assert_eq!(s.message, "authentication failed: token expired");
    }
}

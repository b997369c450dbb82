//! Handing a live session a fresh token before its own expires, from any STOMP
//! client: a SEND to [`TOKEN_DESTINATION`] with the token in a `token` header (or
//! `Authorization: Bearer …`, or `passcode`, as CONNECT takes it), best with a
//! `receipt`. The token must verify and name the session's user; then the session's
//! roles are the new token's and its expiry moves to the new `exp`. Anything else is
//! an ERROR saying why, and the session ends — as it would have when its token
//! expired.

use std::sync::Arc;

use herald_stomp::Frame;
use parking_lot::Mutex;

use crate::error::ErrorKind;
use crate::handler::{BoxFuture, HandlerError, Principal, Reply};
use crate::node::Node;

/// The reserved destination a fresh token is sent to.
pub(crate) const TOKEN_DESTINATION: &str = "/herald/token";

/// Where a verified token's principal waits for the session to take it.
pub(crate) type Refreshed = Arc<Mutex<Option<Principal>>>;

/// The token a refresh SEND carries.
fn token_of(frame: &Frame) -> Option<String> {
    if let Some(t) = frame.get("token").filter(|t| !t.is_empty()) {
        return Some(t.to_owned());
    }
    let bearer = frame
        .get("authorization")
        .or_else(|| frame.get("Authorization"))
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    bearer
        .or_else(|| frame.get("passcode"))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn refused(why: impl std::fmt::Display) -> HandlerError {
    crate::ops::metrics::token_refresh(false);
    HandlerError::of(ErrorKind::Auth, format!("token refresh refused: {why}"))
}

/// Verifies the token of a refresh SEND from `current`'s session: the future to run
/// as the session's next call, and where its principal lands when it is good.
pub(crate) fn verify(
    node: &Arc<Node>,
    frame: &Frame,
    current: &Principal,
) -> (BoxFuture<Result<Vec<Reply>, HandlerError>>, Refreshed) {
    let refreshed: Refreshed = Arc::default();
    let slot = refreshed.clone();
    let node = node.clone();
    let token = token_of(frame);
    let (user, authenticated) = (current.name.clone(), current.authenticated);
    let future = Box::pin(async move {
        let Some(token) = token else {
            return Err(refused(format!(
                "no token: send it in a 'token' header to {TOKEN_DESTINATION}"
            )));
        };
        if !authenticated {
            return Err(refused(
                "this session has no token to refresh (it did not connect with one)",
            ));
        }
        let principal = node.auth.verify(&token).await.map_err(refused)?;
        if principal.name != user {
            return Err(refused(format!(
                "the token names user '{}', this session is '{user}'",
                principal.name
            )));
        }
        if principal.time_left().is_some_and(|t| t.is_zero()) {
            return Err(refused("the token has expired"));
        }
        crate::ops::metrics::token_refresh(true);
        *slot.lock() = Some(principal);
        Ok(Vec::new())
    });
    (future, refreshed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_stomp::Command;

    #[test]
    fn the_token_comes_from_token_then_authorization_then_passcode() {
        let f = |h: &[(&str, &str)]| {
            let mut frame = Frame::new(Command::Send);
            for (k, v) in h {
                frame = frame.header(*k, *v);
            }
            token_of(&frame)
        };
        assert_eq!(
            f(&[("token", "a"), ("passcode", "b")]).as_deref(),
            Some("a")
        );
        assert_eq!(f(&[("Authorization", "Bearer c")]).as_deref(), Some("c"));
        assert_eq!(f(&[("passcode", "d")]).as_deref(), Some("d"));
        assert_eq!(f(&[("token", "")]), None);
    }
}

//! Chat rooms as Spring chat-room apps build them, reachable three ways that all meet
//! on the room's topic, `{first of broker.topic_prefixes}chat/room/{id}`
//! (`/topic/chat/room/{id}`): STOMP ([`stomp`]), the plain JSON WebSocket `/ws/chat`
//! and its SockJS twin ([`socket`]), and REST ([`rest`]); the rooms, their members
//! and their expiry are the cluster's ([`registry`]).
//!
//! The writer of every event is the session's principal; a `writer` in the payload
//! (the seed's clients send one) is ignored, so nobody speaks under another's name.
//! At most `apps.max_rooms` rooms exist; one without members for
//! `apps.room_idle_timeout` is removed by every node's sweep.

mod registry;
mod rest;
mod socket;
mod stomp;

pub(crate) use registry::{CreateError, Rooms};

use crate::handler::{Handlers, Messaging, Reply, SessionInfo};
use crate::transport::Context;

impl Rooms {
    /// The rooms' application handlers (`/app/chat/*`).
    pub(crate) fn handlers(&self) -> Handlers {
        stomp::handlers(self)
    }

    /// `GET/POST /api/rooms`, `GET /api/rooms/{id}`, `/ws/chat`, and (when `sockjs`
    /// is on, as `sockjs.enabled` says) `/ws/chat-sockjs`.
    pub(crate) fn routes(&self, sockjs: bool) -> axum::Router<Context> {
        rest::routes(self).merge(socket::endpoint(self).routes(sockjs))
    }
}

/// Publishes room events; one that fails is logged, the others go on.
fn publish_all(
    messaging: &Messaging,
    replies: impl IntoIterator<Item = Reply>,
    sender: Option<&SessionInfo>,
) {
    for r in replies {
        if let Err(e) = messaging.publish(r, sender) {
            tracing::warn!(error = %e, "room event not published");
        }
    }
}

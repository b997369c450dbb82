//! The seeds' apps, built on the public handler API and on by default (`apps.demo`):
//! - [`chat`] (Spring's STOMP chat tutorials): `/app/chat.send` → `/topic/chat`, `/app/chat.private` →
//!   the recipient's `/user/queue/messages`;
//! - [`greeting`] (Spring's WebSocket guide): `/app/hello` → `/topic/greetings`;
//! - [`rooms`] (Spring chat-room apps): chat rooms over STOMP (`/app/chat/join`, `/app/chat/message`)
//!   and over a plain JSON WebSocket (`/ws/chat`), with presence and a REST API.
//!
//! They are examples as much as features. Their sessions go through the library's
//! API only — `handler::` (application destinations, `Messaging`) and `plain` (the
//! plain JSON socket), as an application outside the crate would write them; the
//! rooms' registry and REST routes also use what such an application brings itself:
//! the cluster bus's presence and shared maps, the HTTP state (`transport::Context`),
//! the REST error shape (`error::ApiError`) and a gauge (`ops::metrics`).

pub(crate) mod chat;
pub(crate) mod config;
pub(crate) mod greeting;
pub(crate) mod rooms;

use std::time::SystemTime;

use crate::handler::Handlers;

/// Every demo app's handlers.
pub(crate) fn handlers(rooms: &rooms::Rooms) -> Handlers {
    chat::handlers()
        .merge(greeting::handlers())
        .merge(rooms.handlers())
}

/// The server's clock as RFC 3339 with milliseconds, for message timestamps.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

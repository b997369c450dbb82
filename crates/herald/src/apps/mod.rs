//! The seeds' apps, built on the public handler API and on by default (`apps.demo`):
//! - [`chat`] (Spring's STOMP chat tutorials): `/app/chat.send` → `/topic/chat`, `/app/chat.private` →
//!   the recipient's `/user/queue/messages`;
//! - [`greeting`] (Spring's WebSocket guide): `/app/hello` → `/topic/greetings`;
//! - [`rooms`] (Spring chat-room apps): chat rooms over STOMP (`/app/chat/join`, `/app/chat/message`)
//!   and over a plain JSON WebSocket (`/ws/chat`), with presence and a REST API.
//!
//! The destinations shown are the defaults: an app publishes under the first of
//! `broker.topic_prefixes` (and of `broker.queue_prefixes` for a user's queue), as a
//! Spring app's `@SendTo` follows `enableSimpleBroker(...)`, and is called under each
//! of `routing.app_prefixes`; start-up refuses a configuration that leaves them none.
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

use crate::config::Config;
use crate::handler::Handlers;

/// Every demo app's handlers.
pub(crate) fn handlers(config: &Config, rooms: &rooms::Rooms) -> Handlers {
    let to = Destinations::of(config);
    chat::handlers(&to)
        .merge(greeting::handlers(&to))
        .merge(rooms.handlers())
}

/// Where the demo apps publish, under the configured prefixes.
#[derive(Clone, Debug)]
pub(crate) struct Destinations {
    topics: String,
    queues: String,
}

impl Destinations {
    /// Topics under the first topic prefix; a user's queues under the first queue
    /// prefix, or the topic prefix when there is none (Spring's
    /// `enableSimpleBroker("/subscribe")` has one prefix for both).
    pub(crate) fn of(config: &Config) -> Destinations {
        let b = &config.broker;
        let topics = b.topic_prefixes.first().cloned().unwrap_or_default();
        let queues = b
            .queue_prefixes
            .first()
            .cloned()
            .unwrap_or_else(|| topics.clone());
        Destinations { topics, queues }
    }

    /// `/topic/{name}` by default.
    pub(crate) fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topics)
    }

    /// `/queue/{name}` by default: a user destination's part after the user prefix.
    pub(crate) fn queue(&self, name: &str) -> String {
        format!("{}{name}", self.queues)
    }
}

/// The server's clock as RFC 3339 with milliseconds, for message timestamps.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

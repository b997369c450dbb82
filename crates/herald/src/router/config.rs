//! `[routing]`: which prefixes go to application handlers and user destinations.

use serde::{Deserialize, Serialize};

/// `[routing]`: the prefixes a SEND or SUBSCRIBE is routed by, beside the broker's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Prefixes of application destinations: a SEND there goes to a handler.
    pub app_prefixes: Vec<String>,
    /// Prefix of user destinations (`/user/queue/x`, `/user/{name}/queue/x`).
    pub user_prefix: String,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            app_prefixes: vec!["/app/".into()],
            user_prefix: "/user/".into(),
        }
    }
}

/// How a handler's error reaches the sender.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ErrorDelivery {
    /// An ERROR frame, which closes the connection (STOMP's only error frame).
    Frame,
    /// A MESSAGE on the sender's `apps.error_destination` (`/user/queue/errors`), like
    /// Spring's `@MessageExceptionHandler` + `@SendToUser("/queue/errors")`.
    Queue,
}

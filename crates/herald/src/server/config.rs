//! `[server]`: the listeners, the node's name, how it drains, what it answers to.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// `[server]`: the listeners and this node's place in a cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP listener: WebSocket at `/ws`, `/health`.
    pub http: SocketAddr,
    /// Plain STOMP over TCP; `None` turns it off.
    pub stomp: Option<SocketAddr>,
    /// Node id, unique in a cluster; generated at start when empty.
    pub node_id: String,
    /// How long shutdown waits for sessions to close after telling them.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Host names the HTTP listener answers to (the `Host` header), against DNS
    /// rebinding: "chat.example.com", "*.example.com" (any subdomain), "*" (any).
    /// Localhost names and IP addresses are always allowed.
    pub allowed_hosts: Vec<String>,
    /// Serve HTTP/2 with prior knowledge (h2c) besides HTTP/1.1.
    pub http2: bool,
    /// Paths where a WebSocket upgrade opens a STOMP session (Spring's
    /// `registry.addEndpoint(...)`): `/ws` by default; a Spring guide's
    /// `/gs-guide-websocket` works as well. Empty: STOMP over SockJS and TCP only.
    pub websocket_paths: Vec<String>,
    /// Largest request body of a REST endpoint (`/api/**`), refused with 413 while
    /// it is read, so a client cannot make the server buffer more.
    pub max_body: usize,
}

/// `server.max_body` by default: 1 MiB, room for a notification to
/// `notifications.max_recipients` users with the largest message and payload.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: ([0, 0, 0, 0], 8080).into(),
            stomp: Some(([0, 0, 0, 0], 61613).into()),
            node_id: String::new(),
            drain_timeout: Duration::from_secs(5),
            allowed_hosts: Vec::new(),
            http2: false,
            websocket_paths: vec!["/ws".into()],
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Paths the server answers itself, which no STOMP endpoint may take.
const TAKEN: [&str; 5] = ["/", "/health", "/metrics", "/ws/chat", "/ws/chat-sockjs"];

impl ServerConfig {
    /// Checks this section's settings; `Err` names the key and what is wrong with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check(
            self.max_body >= 1024,
            "server.max_body",
            "must be at least 1024 bytes",
        )?;
        for (i, p) in self.websocket_paths.iter().enumerate() {
            ConfigError::check(
                p.starts_with('/') && p.len() >= 2 && !p.ends_with('/'),
                "server.websocket_paths",
                "each must start with '/' and not end with '/', like \"/ws\"",
            )?;
            let taken = TAKEN.contains(&p.as_str())
                || ["/api/", "/web/", "/health/"]
                    .iter()
                    .any(|t| p.starts_with(t))
                || self.websocket_paths[..i].contains(p);
            ConfigError::check(
                !taken,
                "server.websocket_paths",
                &format!("'{p}' is taken (by the server's own routes, or named twice)"),
            )?;
        }
        Ok(())
    }
}

//! `[sockjs]`: the SockJS endpoint and its fallback transports.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The transports `sockjs.transports` may name (sockjs-client's names).
pub const SOCKJS_TRANSPORTS: [&str; 6] = [
    "websocket",
    "xhr-streaming",
    "xhr-polling",
    "eventsource",
    "htmlfile",
    "jsonp-polling",
];

/// SockJS fallback transports (`transport::sockjs`), for browsers that cannot open a
/// WebSocket: the same STOMP sessions over xhr, xhr-streaming, eventsource, htmlfile
/// and jsonp.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SockJsConfig {
    /// Serve STOMP over SockJS at `path` (and, with the demo apps, the plain JSON chat
    /// at `/ws/chat-sockjs`).
    pub enabled: bool,
    /// The SockJS endpoint (the URL given to `new SockJS(url)`).
    pub path: String,
    /// Further paths serving the same endpoint. By default `/ws`, where Spring's
    /// `addEndpoint("/ws").withSockJS()` puts it: `new SockJS('/ws')` opens
    /// `/ws/info` and `/ws/{server}/{session}/{transport}`, while the plain WebSocket
    /// upgrade at `/ws` itself stays STOMP over WebSocket.
    pub also_at: Vec<String>,
    /// The sockjs-client script the `/iframe.html` page loads (for iframe transports):
    /// by default Herald's own copy (`/web/vendor/sockjs.min.js`), so no CDN is needed.
    pub client_url: String,
    /// The transports offered, by sockjs-client's names: "websocket", "xhr-streaming",
    /// "xhr-polling", "eventsource", "htmlfile", "jsonp-polling". htmlfile and jsonp are
    /// off by default: a page of any site can open them with a plain navigation.
    pub transports: Vec<String>,
    /// SockJS sessions of the HTTP transports open at once, in all.
    pub max_sessions: usize,
    /// SockJS sessions of the HTTP transports open at once from one client address.
    pub max_sessions_per_ip: usize,
    /// Tell clients a `JSESSIONID` cookie is needed (sticky load balancers).
    pub cookie_needed: bool,
    /// How often a receiving request gets an `h` frame when nothing else is sent.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long a session lives with no receiving request before it is closed.
    #[serde(with = "humantime_serde")]
    pub disconnect_delay: Duration,
    /// Bytes a streaming response carries before it ends and the client opens another.
    pub response_limit: usize,
    /// Serve the protocol test suite's endpoints (`/echo`, `/close`,
    /// `/disabled_websocket_echo`, `/cookie_needed_echo`): for conformance tests only.
    pub test_endpoints: bool,
}

impl Default for SockJsConfig {
    fn default() -> Self {
        SockJsConfig {
            enabled: true,
            path: "/ws-sockjs".into(),
            also_at: vec!["/ws".into()],
            client_url: "/web/vendor/sockjs.min.js".into(),
            transports: ["websocket", "xhr-streaming", "xhr-polling", "eventsource"]
                .map(String::from)
                .to_vec(),
            max_sessions: 10_000,
            max_sessions_per_ip: 100,
            cookie_needed: false,
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            response_limit: 128 * 1024,
            test_endpoints: false,
        }
    }
}

impl SockJsConfig {
    /// Checks this section's settings; `Err` names the key and what is wrong with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = ConfigError::check;
        let endpoint = |p: &str| p.starts_with('/') && p.len() >= 2 && !p.ends_with('/');
        check(
            endpoint(&self.path),
            "sockjs.path",
            "must start with '/' and not end with '/', like \"/ws-sockjs\"",
        )?;
        for (i, p) in self.also_at.iter().enumerate() {
            check(
                endpoint(p),
                "sockjs.also_at",
                "each must start with '/' and not end with '/', like \"/ws\"",
            )?;
            check(
                *p != self.path && !self.also_at[..i].contains(p),
                "sockjs.also_at",
                &format!("'{p}' is named twice (with sockjs.path or in the list)"),
            )?;
        }
        check(
            !self.heartbeat.is_zero() && !self.disconnect_delay.is_zero(),
            "sockjs.heartbeat/disconnect_delay",
            "must be more than 0s",
        )?;
        check(
            !self.client_url.trim().is_empty(),
            "sockjs.client_url",
            "must name the sockjs-client script, like \"/web/vendor/sockjs.min.js\"",
        )?;
        check(
            self.response_limit > 0,
            "sockjs.response_limit",
            "must be more than 0 bytes",
        )?;
        match self
            .transports
            .iter()
            .find(|t| !SOCKJS_TRANSPORTS.contains(&t.as_str()))
        {
            Some(t) => Err(ConfigError::new(
                "sockjs.transports",
                format!(
                    "unknown transport '{t}' (known: {})",
                    SOCKJS_TRANSPORTS.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }
}

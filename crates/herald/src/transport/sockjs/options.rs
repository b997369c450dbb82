//! The settings of one SockJS endpoint: which transports it offers (`sockjs.transports`),
//! its timings and its budgets.

use std::time::Duration;

use super::config::SockJsConfig;

/// Which transports an endpoint offers (`sockjs.transports`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transports {
    pub websocket: bool,
    pub xhr_streaming: bool,
    pub xhr_polling: bool,
    pub eventsource: bool,
    pub htmlfile: bool,
    pub jsonp: bool,
}

impl Transports {
    pub(crate) const ALL: Transports = Transports {
        websocket: true,
        xhr_streaming: true,
        xhr_polling: true,
        eventsource: true,
        htmlfile: true,
        jsonp: true,
    };

    /// From sockjs-client's names (validated by `Config::validate`).
    pub(crate) fn from_names(names: &[String]) -> Transports {
        let has = |n: &str| names.iter().any(|t| t == n);
        Transports {
            websocket: has("websocket"),
            xhr_streaming: has("xhr-streaming"),
            xhr_polling: has("xhr-polling"),
            eventsource: has("eventsource"),
            htmlfile: has("htmlfile"),
            jsonp: has("jsonp-polling"),
        }
    }

    /// `xhr_send` carries the messages of every transport but jsonp.
    pub(super) fn xhr_send(self) -> bool {
        self.xhr_streaming || self.xhr_polling || self.eventsource || self.htmlfile
    }

    /// Whether the URL transport `name` (`xhr`, `jsonp_send`, ...) is offered.
    pub(super) fn offers(self, name: &str) -> bool {
        match name {
            "websocket" => self.websocket,
            "xhr" => self.xhr_polling,
            "xhr_streaming" => self.xhr_streaming,
            "xhr_send" => self.xhr_send(),
            "eventsource" => self.eventsource,
            "htmlfile" => self.htmlfile,
            "jsonp" | "jsonp_send" => self.jsonp,
            _ => false,
        }
    }
}

/// The settings of one SockJS endpoint.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub transports: Transports,
    pub cookie_needed: bool,
    pub heartbeat: Duration,
    pub disconnect_delay: Duration,
    pub response_limit: usize,
    pub client_url: String,
    /// Bytes of messages that may wait on either side of a session.
    pub queue_limit: usize,
    /// Largest request body or WebSocket message.
    pub max_message: usize,
    /// Admit every request (host, origin, token, the session's opener) and count
    /// sessions against the budgets; off for the protocol suite's test endpoints.
    pub admit: bool,
}

impl Options {
    pub(crate) fn from_config(sj: &SockJsConfig, node: &crate::node::Node) -> Options {
        let stomp = &node.config.stomp;
        Options {
            transports: Transports::from_names(&sj.transports),
            cookie_needed: sj.cookie_needed,
            heartbeat: sj.heartbeat,
            disconnect_delay: sj.disconnect_delay,
            response_limit: sj.response_limit,
            client_url: sj.client_url.clone(),
            queue_limit: stomp.outbound_queue,
            max_message: stomp.max_frame.saturating_mul(4).max(1 << 20),
            admit: true,
        }
    }
}

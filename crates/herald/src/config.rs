//! Settings: defaults, then a TOML file, then `HERALD_*` environment variables
//! (`HERALD_STOMP__MAX_FRAME=1024`: sections split by a double underscore), then flags.
//! `herald.example.toml` at the repository root documents every key; keep them in step.
//!
//! Each section is defined, with its defaults and its own checks, beside the code it
//! configures (`broker/config.rs`, `session/config.rs`, …); this file composes them,
//! loads them, and checks what relates one section to another.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::admission::Gate;
pub use crate::apps::config::AppsConfig;
use crate::auth::Auth;
pub use crate::auth::config::{
    AnonymousAccess, ApiKeyConfig, AuthConfig, Grants, IssuerConfig, LimitsConfig, RuleConfig,
    TokenSource,
};
use crate::auth::rules::Rules;
pub use crate::broker::config::{
    BrokerConfig, DEFAULT_DEAD_LETTER, DEFAULT_MAX_REDELIVERIES, QueueOverflow,
};
pub use crate::cluster::config::ClusterConfig;
pub use crate::error::ConfigError;
pub use crate::handler::config::BackendConfig;
pub use crate::notify::config::{DatabaseConfig, NotificationsConfig};
pub use crate::ops::config::OpsConfig;
pub use crate::router::config::{ErrorDelivery, RoutingConfig};
pub use crate::server::config::{DEFAULT_MAX_BODY, ServerConfig};
pub use crate::session::config::StompConfig;
pub use crate::transport::sockjs::config::{SOCKJS_TRANSPORTS, SockJsConfig};
pub use crate::web::config::WebConfig;

/// Every setting of a server, one field per section of the TOML file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listeners, node id, shutdown drain, allowed hosts, request bodies.
    pub server: ServerConfig,
    /// `[stomp]`: frame limits, outbound queue and flow control, heart-beats, budgets
    /// of one session.
    pub stomp: StompConfig,
    /// `[broker]`: topic and queue prefixes, destination limits, queue budgets,
    /// redelivery and dead letters.
    pub broker: BrokerConfig,
    /// `[routing]`: application and user destination prefixes.
    pub routing: RoutingConfig,
    /// `[apps]`: demo apps, handler timeout and errors, the HTTP backend.
    pub apps: AppsConfig,
    /// `[auth]`: token issuers, API keys, token sources, destination rules.
    pub auth: AuthConfig,
    /// `[limits]`: connections per address and user, subscriptions, frame rate,
    /// handshake and HTTP/2 timeouts.
    pub limits: LimitsConfig,
    /// `[database]`: the notification store.
    pub database: DatabaseConfig,
    /// `[notifications]`: the notifications API and its destinations.
    pub notifications: NotificationsConfig,
    /// `[cluster]`: the bus between nodes (Redis) and the history kept for recovery.
    pub cluster: ClusterConfig,
    /// `[ops]`: the stats line and `/metrics` access.
    pub ops: OpsConfig,
    /// `[web]`: the web UI.
    pub web: WebConfig,
    /// `[sockjs]`: the SockJS endpoint and its transports.
    pub sockjs: SockJsConfig,
}

impl Config {
    /// Defaults, overlaid by `file` (if any) and the `HERALD_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file(path));
        }
        // Only sectioned names are settings, so HERALD_BIN and the like are left alone.
        fig = fig.merge(
            Env::prefixed("HERALD_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        let config: Config = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every section, then the relations between sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.stomp.validate()?;
        self.broker.validate()?;
        self.apps.validate()?;
        self.auth.validate()?;
        Rules::new(
            &self.auth,
            &self.routing.user_prefix,
            self.first_topic_prefix(),
            &self.notifications.reserved(),
        )
        .map_err(|(key, problem)| ConfigError::new(&key, problem))?;
        self.limits.validate()?;
        self.ops.validate()?;
        self.cluster.validate()?;
        self.sockjs.validate()?;
        self.notifications.validate(&self.database)?;
        self.validate_budgets()?;
        ConfigError::check(
            !self.ops.metrics_auth
                || !self.auth.api_keys.is_empty()
                || !self.auth.issuers.is_empty(),
            "ops.metrics_auth",
            "needs an API key (auth.api_keys) or a token issuer (auth.issuers)",
        )?;
        if self.apps.demo {
            ConfigError::check(
                !self.broker.topic_prefixes.is_empty(),
                "broker.topic_prefixes",
                "is empty, but the demo apps (apps.demo) publish under its first prefix",
            )?;
            ConfigError::check(
                !self.routing.app_prefixes.is_empty(),
                "routing.app_prefixes",
                "is empty, but the demo apps (apps.demo) are called under it",
            )?;
        }
        ConfigError::check(
            !self.notifications.enabled
                || !self
                    .notifications
                    .socket_paths
                    .iter()
                    .any(|p| self.server.websocket_paths.contains(p) || *p == self.sockjs.path),
            "notifications.socket_paths",
            "must not name a STOMP path (server.websocket_paths, sockjs.path)",
        )?;
        ConfigError::check(
            !self.sockjs.enabled || !self.server.websocket_paths.contains(&self.sockjs.path),
            "server.websocket_paths",
            "must not name sockjs.path: SockJS answers there",
        )?;
        self.validate_prefixes()
    }

    /// Principals, API keys and destination rules as these settings make them.
    pub fn new_auth(&self) -> Result<Auth, String> {
        Auth::new(
            &self.auth,
            &self.routing.user_prefix,
            self.first_topic_prefix(),
            &self.notifications.reserved(),
        )
    }

    /// Where the server's own topics go (the admins', the demo apps'): under the first
    /// of `broker.topic_prefixes`.
    pub fn first_topic_prefix(&self) -> Option<&str> {
        self.broker.topic_prefixes.first().map(String::as_str)
    }

    /// The admission gate as these settings make it.
    pub fn new_gate(&self) -> Result<Gate, String> {
        Gate::new(
            &self.auth,
            &self.limits,
            &self.server.allowed_hosts,
            (self.sockjs.max_sessions, self.sockjs.max_sessions_per_ip),
        )
    }

    /// The budgets must each hold at least one frame of `stomp.max_frame`, or a valid
    /// message could never get in.
    fn validate_budgets(&self) -> Result<(), ConfigError> {
        let frame = self.stomp.max_frame;
        let at_least_a_frame = "must be at least stomp.max_frame";
        ConfigError::check(
            self.broker.queue_max_bytes >= frame,
            "broker.queue_max_bytes",
            at_least_a_frame,
        )?;
        ConfigError::check(
            self.cluster.history_max_bytes >= frame,
            "cluster.history_max_bytes",
            at_least_a_frame,
        )
    }

    /// Every destination prefix, the broker's and the router's, is well formed and
    /// claims destinations no other prefix claims.
    fn validate_prefixes(&self) -> Result<(), ConfigError> {
        let (b, r) = (&self.broker, &self.routing);
        let all: Vec<&String> = b
            .topic_prefixes
            .iter()
            .chain(&b.queue_prefixes)
            .chain(&r.app_prefixes)
            .chain([&r.user_prefix])
            .collect();
        let key = "broker/routing prefixes";
        for p in &all {
            if !p.starts_with('/') || !p.ends_with('/') || p.len() < 3 {
                return Err(ConfigError::new(
                    key,
                    format!("'{p}' must start and end with '/', like \"/topic/\""),
                ));
            }
        }
        for (i, p) in all.iter().enumerate() {
            if let Some(q) = all[i + 1..]
                .iter()
                .find(|q| q.starts_with(p.as_str()) || p.starts_with(q.as_str()))
            {
                return Err(ConfigError::new(key, format!("'{p}' and '{q}' overlap")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_to_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../herald.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let parsed: Config = toml_from_str(&text);
        let mut expected = Config::default();
        expected.server.node_id = parsed.server.node_id.clone();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = std::env::temp_dir().join(format!("herald-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[stomp]\nmax_frme = 10\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("max_frme"), "{e}");
        std::fs::write(&path, "[stomp]\nmax_frame = 10\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("stomp.max_frame"), "{e}");
    }

    #[test]
    fn a_grant_is_one_string_or_a_list() {
        let c = toml_from_str(
            "[[auth.rules]]\npattern = \"/topic/a/**\"\nsubscribe = \"anyone\"\n\
             send = [\"owner\", \"role:SERVICE\"]\n",
        );
        let rule = &c.auth.rules[0];
        assert_eq!(rule.subscribe, Some(Grants::One("anyone".into())));
        assert_eq!(
            rule.send.as_ref().map(|g| g.iter().collect::<Vec<_>>()),
            Some(vec!["owner", "role:SERVICE"])
        );
        c.validate().unwrap();
        let c = toml_from_str("[[auth.rules]]\npattern = \"/topic/a\"\nsend = []\n");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("auth.rules[0].send"), "{e}");
    }

    #[test]
    fn a_dead_letter_setting_that_is_no_queue_is_refused_by_name() {
        for bad in ["/topic/dlq", "/queue/", "dlq.*"] {
            let c = toml_from_str(&format!("[broker]\ndead_letter = \"{bad}\"\n"));
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("broker.dead_letter"), "{bad}: {e}");
        }
        for ok in ["", "dlq.", "/queue/dead-letters"] {
            let c = toml_from_str(&format!("[broker]\ndead_letter = \"{ok}\"\n"));
            assert!(c.validate().is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_sockjs_path_named_twice_is_refused_by_name() {
        for twice in [vec!["/ws", "/ws"], vec!["/ws-sockjs"], vec!["/ws/"]] {
            let mut c = Config::default();
            c.sockjs.also_at = twice.iter().map(|p| p.to_string()).collect();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("sockjs.also_at"), "{twice:?}: {e}");
        }
    }

    #[test]
    fn a_websocket_path_the_server_answers_otherwise_is_refused() {
        for taken in ["/api/publish", "/health", "/ws-sockjs", "ws", "/ws/"] {
            let mut c = Config::default();
            c.server.websocket_paths = vec![taken.into()];
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("server.websocket_paths"), "{taken}: {e}");
        }
        let mut c = Config::default();
        c.server.websocket_paths = vec!["/gs-guide-websocket".into()];
        c.validate().unwrap();
    }

    #[test]
    fn a_notifications_socket_on_a_stomp_path_is_refused_by_name() {
        for path in ["/ws", "/ws-sockjs", "notify", "/ws/notify/"] {
            let mut c = Config::default();
            c.notifications.socket_paths = vec![path.into()];
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("notifications.socket_paths"), "{path}: {e}");
        }
    }

    fn toml_from_str(text: &str) -> Config {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .unwrap()
    }
}

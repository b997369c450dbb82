//! `[database]` and `[notifications]`: the notification store and its API's budgets.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::rules::Reserved;
use crate::error::ConfigError;

/// The most `notifications.max_message` may allow (MySQL's `TEXT` column).
pub const MAX_MESSAGE: usize = 65_535;
/// The most `notifications.max_payload` may allow.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The most `notifications.max_recipients` may allow.
pub const MAX_RECIPIENTS: usize = 10_000;

/// The notification store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://herald.db` (a file, created when missing; a plain path works too),
    /// `sqlite::memory:`, `mysql://user:pass@host:3306/db` (MariaDB too) or
    /// `postgres://user@host:5432/db`. Flag: --database-url
    pub url: String,
    /// Connections in the pool (an in-memory SQLite database always has one).
    pub max_connections: u32,
    /// Longest a request waits for a connection before it fails (503).
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://herald.db".into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Notifications: REST API, live delivery, read state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Off: no store is opened and the notification API answers 404.
    pub enabled: bool,
    /// User destination a user's notifications go to: clients subscribe to the user
    /// prefix + this (`/user/queue/notifications`). Spring notification services often use "/queue/notification".
    pub destination: String,
    /// Where broadcasts are published (every subscriber).
    pub broadcast_destination: String,
    /// User destination for long-running job progress (`/user/queue/jobs`).
    pub jobs_destination: String,
    /// Plain JSON WebSocket endpoints (no STOMP) where a user's notifications, read
    /// events and job progress, and every broadcast, arrive as
    /// `{"type":"notification"|"read"|"job", ...}` (Spring's `TextWebSocketHandler`
    /// at `/notifications`; `/ws/notify` by URL convention). Empty: none.
    pub socket_paths: Vec<String>,
    /// Read notifications (and broadcasts) older than this are deleted; "0s" keeps all.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often retention runs.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// Default page size of GET /api/notifications.
    pub page_size: u32,
    /// Most users one `POST /api/notifications` names: each is a row written in the
    /// request's transaction.
    pub max_recipients: usize,
    /// Largest `message`, in bytes (stored once per recipient).
    pub max_message: usize,
    /// Largest `payload`, in bytes of its JSON (stored once per recipient).
    pub max_payload: usize,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            enabled: true,
            destination: "/queue/notifications".into(),
            broadcast_destination: "/topic/notifications".into(),
            jobs_destination: "/queue/jobs".into(),
            socket_paths: vec!["/ws/notify".into(), "/notifications".into()],
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_interval: Duration::from_secs(3600),
            page_size: 20,
            max_recipients: 1000,
            max_message: 4 * 1024,
            max_payload: 16 * 1024,
        }
    }
}

impl NotificationsConfig {
    /// Checks this section, and that `database` names a store when it is on.
    pub fn validate(&self, database: &DatabaseConfig) -> Result<(), ConfigError> {
        let check = ConfigError::check;
        check(
            (1..=MAX_RECIPIENTS).contains(&self.max_recipients),
            "notifications.max_recipients",
            &format!("must be 1 to {MAX_RECIPIENTS}"),
        )?;
        check(
            (1..=MAX_MESSAGE).contains(&self.max_message),
            "notifications.max_message",
            &format!("must be 1 to {MAX_MESSAGE} bytes"),
        )?;
        check(
            (2..=MAX_PAYLOAD).contains(&self.max_payload),
            "notifications.max_payload",
            &format!("must be 2 to {MAX_PAYLOAD} bytes"),
        )?;
        if !self.enabled {
            return Ok(());
        }
        check(
            !database.url.is_empty(),
            "database.url",
            "must name a database (or set notifications.enabled = false)",
        )?;
        for r in self.reserved() {
            check(r.destination.starts_with('/'), r.key, "must start with '/'")?;
        }
        for (i, p) in self.socket_paths.iter().enumerate() {
            check(
                p.starts_with('/') && p.len() >= 2 && !p.ends_with('/'),
                "notifications.socket_paths",
                "each must start with '/' and not end with '/', like \"/ws/notify\"",
            )?;
            check(
                !self.socket_paths[..i].contains(p),
                "notifications.socket_paths",
                &format!("'{p}' is named twice"),
            )?;
        }
        check(
            (1..=200).contains(&self.page_size),
            "notifications.page_size",
            "must be 1 to 200",
        )
    }

    /// The destinations the server publishes notifications to, which clients may not
    /// send to (`auth::rules`); none while notifications are off.
    pub fn reserved(&self) -> Vec<Reserved<'_>> {
        if !self.enabled {
            return Vec::new();
        }
        vec![
            Reserved {
                key: "notifications.destination",
                destination: &self.destination,
                per_user: true,
            },
            Reserved {
                key: "notifications.jobs_destination",
                destination: &self.jobs_destination,
                per_user: true,
            },
            Reserved {
                key: "notifications.broadcast_destination",
                destination: &self.broadcast_destination,
                per_user: false,
            },
        ]
    }
}

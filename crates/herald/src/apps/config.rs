//! `[apps]`: the demo apps and the HTTP backend that owns application destinations.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::handler::config::BackendConfig;
use crate::router::config::ErrorDelivery;

/// `[apps]`: the demo apps (chat, greeting, rooms), how application handlers run,
/// and the HTTP backend for the application destinations no handler takes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AppsConfig {
    /// The seeds' demo apps (chat, greeting, rooms, /ws/chat).
    pub demo: bool,
    /// How a handler's error reaches the sender: "frame" or "queue".
    pub errors: ErrorDelivery,
    /// With `errors = "queue"`: the user destination errors go to.
    pub error_destination: String,
    /// Longest an application handler may take.
    #[serde(with = "humantime_serde")]
    pub handler_timeout: Duration,
    /// Most chat rooms that may exist at once (the three starting rooms included):
    /// creating one more is refused.
    pub max_rooms: usize,
    /// A room without members this long is removed (the starting rooms stay).
    #[serde(with = "humantime_serde")]
    pub room_idle_timeout: Duration,
    /// `[apps.backend]`.
    pub backend: BackendConfig,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            demo: true,
            errors: ErrorDelivery::Frame,
            error_destination: "/queue/errors".into(),
            handler_timeout: Duration::from_secs(10),
            max_rooms: 1000,
            room_idle_timeout: Duration::from_secs(300),
            backend: BackendConfig::default(),
        }
    }
}

impl AppsConfig {
    /// Checks this section's settings; `Err` names the key and what is wrong with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.backend.validate()?;
        let check = ConfigError::check;
        check(
            self.error_destination.starts_with('/'),
            "apps.error_destination",
            "must start with '/'",
        )?;
        check(self.max_rooms >= 1, "apps.max_rooms", "must be at least 1")?;
        check(
            !self.room_idle_timeout.is_zero(),
            "apps.room_idle_timeout",
            "must be more than 0",
        )
    }
}

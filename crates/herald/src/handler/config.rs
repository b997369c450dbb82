//! `[apps.backend]`: the HTTP backend that answers application destinations.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// `[apps.backend]`: an HTTP service that answers the application destinations no
/// in-process handler takes (Spring's `@MessageMapping` controllers, moved behind HTTP).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// URL Herald POSTs application SENDs to; empty turns the proxy off.
    pub url: String,
    /// Longest a backend call may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Application paths the backend owns (after the prefix); in-process handlers win.
    pub destinations: Vec<String>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            url: String::new(),
            timeout: Duration::from_secs(5),
            destinations: vec!["/**".into()],
        }
    }
}

impl BackendConfig {
    /// Checks this section's settings; `Err` names the key and what is wrong with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check(
            self.url.is_empty()
                || self.url.starts_with("http://")
                || self.url.starts_with("https://"),
            "apps.backend.url",
            "must be an http:// or https:// URL",
        )
    }
}

//! `[ops]`: the stats line and who may read `/metrics`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// `[ops]`: what the server tells its operators.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// How often a stats line is logged (like Spring's WebSocketMessageBrokerStats).
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// `/metrics` needs an API key (`X-API-Key`, or `Authorization: Bearer <key>`) or
    /// a token with `auth.admin_role`.
    pub metrics_auth: bool,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            stats_interval: Duration::from_secs(30 * 60),
            metrics_auth: false,
        }
    }
}

impl OpsConfig {
    /// Checks this section's settings; `Err` names the key and what is wrong with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check(
            !self.stats_interval.is_zero(),
            "ops.stats_interval",
            "must be longer than 0s",
        )
    }
}

//! `[cluster]`: the bus between nodes and the history kept for recovery.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Several nodes as one server (`cluster::Bus`): Redis when `redis_url` is set,
/// else this node alone. Also the history kept per destination for recovery.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:6379/0` (or `rediss://`): all the nodes need in common. Empty:
    /// a single node.
    pub redis_url: String,
    /// Prefix of every Redis key and channel Herald uses.
    pub key_prefix: String,
    /// Messages kept per topic destination for recovery by offset (0: none).
    pub history_size: usize,
    /// A destination's history is dropped after this long without a message (Redis).
    #[serde(with = "humantime_serde")]
    pub history_ttl: Duration,
    /// A cluster queue message a node took but did not ack within this time (its
    /// node died) is delivered again by another node.
    #[serde(with = "humantime_serde")]
    pub claim_after: Duration,
    /// How often a node renews its presence and checks Redis; its presence expires
    /// after three of these.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    // Budgets of the history a single node keeps (the local bus).
    /// Destinations with a history ring at once; past it the least recently
    /// published one is dropped.
    pub history_max_destinations: usize,
    /// Bytes of messages all history rings together keep; past it the least
    /// recently published destinations are dropped.
    pub history_max_bytes: usize,
    /// Longest a confirmed publish (a SEND or COMMIT with a `receipt`, the REST API,
    /// `Messaging::send_confirmed`) waits for Redis to take it while Redis is away;
    /// past it the message is refused and never written later.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Bytes of publishes kept in order while Redis is away, written to it once it
    /// answers; past it new publishes are refused.
    pub spool_max_bytes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            key_prefix: "herald".into(),
            history_size: 100,
            history_ttl: Duration::from_secs(3600),
            claim_after: Duration::from_secs(30),
            heartbeat: Duration::from_secs(2),
            history_max_destinations: 10_000,
            history_max_bytes: 64 * 1024 * 1024,
            publish_timeout: Duration::from_secs(5),
            spool_max_bytes: 64 << 20,
        }
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = ConfigError::check;
        let url = &self.redis_url;
        check(
            url.is_empty()
                || url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://"),
            "cluster.redis_url",
            "must be a redis:// or rediss:// URL",
        )?;
        check(
            !self.heartbeat.is_zero() && !self.claim_after.is_zero(),
            "cluster.heartbeat/claim_after",
            "must be more than 0s",
        )?;
        check(
            !self.publish_timeout.is_zero(),
            "cluster.publish_timeout",
            "must be more than 0s",
        )?;
        check(
            self.history_max_destinations >= 1,
            "cluster.history_max_destinations",
            "must be at least 1",
        )
    }
}

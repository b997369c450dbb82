//! `[cluster]`: the bus between nodes and the history kept for recovery.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::target::RedisTarget;
use crate::error::ConfigError;

/// Several nodes as one server (`cluster::Bus`): Redis when `redis_url` is set,
/// else this node alone. Also the history kept per destination for recovery.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:6379/0` (or `rediss://`): all the nodes need in common. Empty:
    /// a single node. `redis+cluster://h1:7000,h2:7001` for a Redis Cluster,
    /// `redis+sentinel://s1:26379,s2:26379/mymaster` for a master behind Sentinels
    /// (`cluster::target`).
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
    /// Replicas that must have a publish (Redis `WAIT`) before it is confirmed: with
    /// 1, a confirmed message survives its master's failover. 0: the master's
    /// answer is enough.
    pub replica_acks: u32,
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
            replica_acks: 0,
        }
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = ConfigError::check;
        let url = &self.redis_url;
        if !url.is_empty() {
            let target = RedisTarget::parse(url).map_err(|e| {
                let why = e.strip_prefix("cluster.redis_url: ").unwrap_or(&e);
                ConfigError::new("cluster.redis_url", why)
            })?;
            // A Redis Cluster hashes what is between the first `{` and `}` of a key:
            // braces in the prefix would put every key in one slot.
            check(
                !matches!(target, RedisTarget::Cluster(_)) || !self.key_prefix.contains(['{', '}']),
                "cluster.key_prefix",
                "must not contain '{' or '}' with a Redis Cluster (they choose the slot)",
            )?;
        }
        check(
            self.replica_acks <= 16,
            "cluster.replica_acks",
            "must be at most 16",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(tweak: impl FnOnce(&mut ClusterConfig)) -> Result<(), String> {
        let mut c = ClusterConfig::default();
        tweak(&mut c);
        c.validate().map_err(|e| e.0)
    }

    #[test]
    fn redis_urls_and_their_settings_are_checked() {
        assert!(with(|c| c.redis_url = "redis+cluster://h1:7000,h2:7001".into()).is_ok());
        assert!(with(|c| c.redis_url = "redis+sentinel://s1,s2/main".into()).is_ok());
        let e = with(|c| c.redis_url = "redis+sentinel://s1:26379".into()).unwrap_err();
        assert!(
            e.starts_with("cluster.redis_url: ") && e.contains("master"),
            "{e}"
        );
        let e = with(|c| {
            c.redis_url = "redis+cluster://h1:7000".into();
            c.key_prefix = "app{1}".into();
        })
        .unwrap_err();
        assert!(e.starts_with("cluster.key_prefix: "), "{e}");
        // Braces matter only to a cluster.
        assert!(
            with(|c| {
                c.redis_url = "redis://h:6379".into();
                c.key_prefix = "app{1}".into();
            })
            .is_ok()
        );
        let e = with(|c| c.replica_acks = 17).unwrap_err();
        assert!(e.starts_with("cluster.replica_acks: "), "{e}");
    }
}

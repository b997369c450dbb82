//! Destination prefixes decide where a frame goes.
//!
//! - application prefixes (`/app/`): SENDs go to application handlers, never straight
//!   to subscribers;
//! - the user prefix (`/user/`): SUBSCRIBE `/user/queue/x` listens to one's own
//!   `/queue/x`; SEND `/user/{name}/queue/x` reaches every session of `name`;
//! - broker prefixes (`/topic/`, `/queue/`): the broker, by their delivery kind.
//!
//! The router only resolves names to [`Target`]s; it delivers nothing.

pub(crate) mod config;

use crate::broker::config::BrokerConfig;
use crate::broker::{Kind, Target};
use crate::destination::Limits;
use crate::error::{ErrorKind, StompError};
use crate::ops::metrics;
use config::RoutingConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendRoute {
    Broker(Target),
    /// An application destination; `path` is what follows the prefix, with its `/`.
    App {
        path: String,
    },
}

#[derive(Debug)]
pub struct Router {
    topic_prefixes: Vec<String>,
    queue_prefixes: Vec<String>,
    app_prefixes: Vec<String>,
    user_prefix: String,
    limits: Limits,
}

impl Router {
    pub fn new(broker: &BrokerConfig, routing: &RoutingConfig) -> Router {
        Router {
            topic_prefixes: broker.topic_prefixes.clone(),
            queue_prefixes: broker.queue_prefixes.clone(),
            app_prefixes: routing.app_prefixes.clone(),
            user_prefix: routing.user_prefix.clone(),
            limits: broker.destination_limits(),
        }
    }

    /// Refuses a destination a client gave that is over a `[broker]` limit, before
    /// anything matches or stores it.
    pub fn check_limits(&self, destination: &str) -> Result<(), StompError> {
        self.limits.check(destination).map_err(|e| {
            metrics::destination_refused(e.limit());
            StompError::of(ErrorKind::Limit, e.to_string())
        })
    }

    pub fn for_send(&self, destination: &str) -> Result<SendRoute, StompError> {
        if let Some(path) = strip_any(&self.app_prefixes, destination) {
            return Ok(SendRoute::App {
                path: format!("/{path}"),
            });
        }
        if let Some(rest) = strip(&self.user_prefix, destination) {
            let (user, dest) = rest.split_once('/').filter(|(u, d)| !u.is_empty() && !d.is_empty()).ok_or_else(|| {
                StompError::new(format!(
                    "user destination '{destination}' names no user: send to {}{{user}}/queue/...",
                    self.user_prefix
                ))
            })?;
            return Ok(SendRoute::Broker(
                self.user_target(user, &format!("/{dest}")),
            ));
        }
        self.broker_target(destination).map(SendRoute::Broker)
    }

    /// Where a SUBSCRIBE by `user` listens.
    pub fn for_subscribe(&self, destination: &str, user: &str) -> Result<Target, StompError> {
        if strip_any(&self.app_prefixes, destination).is_some() {
            return Err(StompError::new(format!(
                "cannot subscribe to application destination '{destination}': subscribe to the destination its handler publishes to"
            )));
        }
        if let Some(rest) = strip(&self.user_prefix, destination) {
            return Ok(self.user_target(user, &format!("/{rest}")));
        }
        self.broker_target(destination)
    }

    /// The target for `dest` (like `/queue/x`) of user `user`: every session of that
    /// user subscribed to `/user/queue/x` receives it.
    pub fn user_target(&self, user: &str, dest: &str) -> Target {
        let prefix = self.user_prefix.trim_end_matches('/');
        Target {
            kind: Kind::Topic,
            key: format!("{prefix}/{}{dest}", escape_user(user)),
            destination: format!("{prefix}{dest}"),
        }
    }

    pub fn broker_target(&self, destination: &str) -> Result<Target, StompError> {
        if strip_any(&self.queue_prefixes, destination).is_some() {
            Ok(Target::broker(Kind::Queue, destination))
        } else if strip_any(&self.topic_prefixes, destination).is_some() {
            Ok(Target::broker(Kind::Topic, destination))
        } else {
            Err(self.unknown(destination))
        }
    }

    fn unknown(&self, destination: &str) -> StompError {
        let prefixes: Vec<&str> = self
            .topic_prefixes
            .iter()
            .chain(&self.queue_prefixes)
            .chain(&self.app_prefixes)
            .chain([&self.user_prefix])
            .map(String::as_str)
            .collect();
        StompError::of(
            ErrorKind::Destination,
            format!(
                "unknown destination '{destination}': destinations start with {}",
                prefixes.join(", ")
            ),
        )
    }
}

fn strip<'a>(prefix: &str, destination: &'a str) -> Option<&'a str> {
    destination
        .strip_prefix(prefix)
        .filter(|rest| !rest.is_empty())
}

fn strip_any<'a>(prefixes: &[String], destination: &'a str) -> Option<&'a str> {
    prefixes.iter().find_map(|p| strip(p, destination))
}

/// A user name inside a routing key: segment separators and wildcards in the name
/// are percent-escaped, so `a.b` or `*` can never widen a match.
fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for c in user.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '.' => out.push_str("%2E"),
            '*' => out.push_str("%2A"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(&BrokerConfig::default(), &RoutingConfig::default())
    }

    #[test]
    fn prefixes_route_sends() {
        let r = router();
        assert_eq!(
            r.for_send("/app/chat.send"),
            Ok(SendRoute::App {
                path: "/chat.send".into()
            })
        );
        assert_eq!(
            r.for_send("/topic/a"),
            Ok(SendRoute::Broker(Target::broker(Kind::Topic, "/topic/a")))
        );
        assert_eq!(
            r.for_send("/queue/a"),
            Ok(SendRoute::Broker(Target::broker(Kind::Queue, "/queue/a")))
        );
        let SendRoute::Broker(t) = r.for_send("/user/bob.smith/queue/x").unwrap() else {
            panic!()
        };
        assert_eq!(
            (t.key.as_str(), t.destination.as_str()),
            ("/user/bob%2Esmith/queue/x", "/user/queue/x")
        );
        assert!(
            r.for_send("/user/bob")
                .unwrap_err()
                .message
                .contains("names no user")
        );
        let e = r.for_send("/other/x").unwrap_err().message;
        assert!(
            e.contains("unknown destination '/other/x'") && e.contains("/app/"),
            "{e}"
        );
    }

    #[test]
    fn user_subscriptions_are_keyed_by_the_subscriber() {
        let r = router();
        let t = r.for_subscribe("/user/queue/x", "alice").unwrap();
        assert_eq!(t.key, "/user/alice/queue/x");
        assert!(r.for_subscribe("/app/x", "alice").is_err());
        assert_eq!(r.user_target("*", "/queue/x").key, "/user/%2A/queue/x");
    }
}

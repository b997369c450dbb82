//! Destination rules: who may SUBSCRIBE to or SEND to a destination.
//!
//! Rules are tried in order; the first whose pattern matches and that says something
//! about the operation decides, and it admits whoever any of its grants admits. The
//! order: the reserved rules (the server's own notification, broadcast and job
//! destinations: a client that could SEND there would speak as the server), then
//! `auth.rules`, then the default rules (user destinations, `/topic/admin/**` under the
//! first topic prefix), which
//! configured rules can refine; `auth.default_rules = false` drops the defaults
//! (the reserved rules stay while notifications are on). With no deciding rule, a destination is open to authenticated
//! principals when auth is required, and to anyone otherwise.
//!
//! The same check serves STOMP SENDs and the publish REST API, so no way in reaches
//! a destination that another way is refused.
//!
//! Headers named `herald-*` are the server's own (`herald-event` tells a notification
//! from a read push): a client SEND or a REST publish carrying one is refused, so a
//! subscriber can trust them to come from Herald.

use std::fmt;

use super::config::{AuthConfig, Grants};
use crate::auth::Principal;
use crate::destination::Pattern;

/// The prefix of the headers only the server sets, compared without case.
pub const RESERVED_HEADER_PREFIX: &str = "herald-";

/// The first reserved header among `names`.
pub fn reserved_header<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let prefix = RESERVED_HEADER_PREFIX.as_bytes();
    names.into_iter().find(|n| {
        n.as_bytes()
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    })
}

/// The refusal of a message carrying the reserved header `name`.
pub fn reserved_header_message(name: &str) -> String {
    format!(
        "reserved header '{}': {RESERVED_HEADER_PREFIX}* headers are set by the server only",
        herald_stomp::printable(name.as_bytes())
    )
}

/// What `admin` parses to before the configured admin role replaces it.
const ADMIN_PLACEHOLDER: &str = "\u{0}admin";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Anyone,
    Authenticated,
    Role(String),
    /// The pattern's `{user}` segment must be the principal's name.
    Owner,
    Deny,
}

impl Access {
    pub fn parse(s: &str) -> Result<Access, String> {
        Ok(match s.trim() {
            "anyone" => Access::Anyone,
            "authenticated" => Access::Authenticated,
            "owner" => Access::Owner,
            "deny" => Access::Deny,
            // The configured `auth.admin_role` (Rules::new substitutes it).
            "admin" => Access::Role(ADMIN_PLACEHOLDER.to_owned()),
            r if r.starts_with("role:") && r.len() > 5 => Access::Role(r[5..].to_owned()),
            other => {
                return Err(format!(
                    "unknown access '{other}': use anyone, authenticated, role:NAME, owner or deny"
                ));
            }
        })
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Anyone => f.write_str("anyone"),
            Access::Authenticated => f.write_str("an authenticated user"),
            Access::Role(r) => write!(f, "role {r}"),
            Access::Owner => f.write_str("its owner (the {user} segment)"),
            Access::Deny => f.write_str("no one (deny)"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Subscribe,
    Send,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Subscribe => "SUBSCRIBE",
            Operation::Send => "SEND",
        })
    }
}

/// A rule's pattern reads as subscriptions do (`/topic/admin/**` also covers
/// `/topic/admin.x`); its `{user}` takes a whole `/` segment, so a name like
/// `alice@example.com` is compared whole.
#[derive(Debug)]
struct Rule {
    pattern: Pattern,
    subscribe: Option<Vec<Access>>,
    send: Option<Vec<Access>>,
    /// Why a built-in rule exists, told with its refusals.
    reason: Option<&'static str>,
}

/// A refusal: the destination, the rule that refused (none for `auth.required`'s
/// fallback) and a message naming both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub destination: String,
    pub rule: Option<String>,
    message: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A destination only the server publishes to (notifications): services and admins
/// may send there, no client may, whatever the other rules say.
pub struct Reserved<'a> {
    /// The setting that names it, for errors.
    pub key: &'static str,
    pub destination: &'a str,
    /// Under each user's `routing.user_prefix` (`/user/{user}/…`), or one destination.
    pub per_user: bool,
}

#[derive(Debug)]
pub struct Rules {
    rules: Vec<Rule>,
    fallback: Access,
}

const RESERVED: &str = "reserved: the server publishes there";
const USER_DEFAULT: &str =
    "default: a user's destinations take messages from their owner, services and admins";
const ADMIN_DEFAULT: &str = "default: admins only";

impl Rules {
    /// The rules `config` sets: reserved, configured, default. `Err` is the setting at
    /// fault and the problem (`Config::validate` reports it at start).
    /// `user_prefix` is `routing.user_prefix`, `topic_prefix` the first of
    /// `broker.topic_prefixes` (where the admins' topics are); `reserved` the
    /// destinations only the server publishes to. `Err` is the setting's key and what
    /// is wrong with it.
    pub fn new(
        auth: &AuthConfig,
        user_prefix: &str,
        topic_prefix: Option<&str>,
        reserved: &[Reserved],
    ) -> Result<Rules, (String, String)> {
        let admin = Access::Role(auth.admin_role.clone());
        let service = Access::Role(auth.service_role.clone());
        let built_in =
            |pattern: String, subscribe, send, reason| -> Result<Rule, (String, String)> {
                let pattern = Pattern::rule(&pattern)
                    .map_err(|e| ("routing.user_prefix".to_owned(), e.to_string()))?;
                Ok(Rule {
                    pattern,
                    subscribe,
                    send,
                    reason: Some(reason),
                })
            };
        let mut rules = Vec::new();
        // Not switched off with the default rules: no configuration should let a
        // client speak as the server. Without notifications nothing is published there.
        for &Reserved {
            key,
            destination,
            per_user: user,
        } in reserved
        {
            let plain = destination.starts_with('/')
                && !crate::destination::is_wildcard(destination)
                && !destination.contains(['{', '}']);
            if !plain {
                return Err((
                    key.to_owned(),
                    format!(
                        "'{destination}' must start with '/' and name one destination (no *, **, # or {{name}})"
                    ),
                ));
            }
            let destination = destination.trim_end_matches('/');
            let pattern = if user {
                format!("{user_prefix}{{user}}{destination}/**")
            } else {
                format!("{destination}/**")
            };
            let send = vec![service.clone(), admin.clone()];
            rules.push(built_in(pattern, None, Some(send), RESERVED)?);
        }
        for (i, r) in auth.rules.iter().enumerate() {
            let grants = |g: &Option<Grants>, op: &str| {
                g.as_ref()
                    .map(|g| parse_grants(g, &auth.admin_role))
                    .transpose()
                    .map_err(|e| (format!("auth.rules[{i}].{op}"), e))
            };
            rules.push(Rule {
                pattern: Pattern::rule(&r.pattern)
                    .map_err(|e| (format!("auth.rules[{i}].pattern"), e.to_string()))?,
                subscribe: grants(&r.subscribe, "subscribe")?,
                send: grants(&r.send, "send")?,
                reason: None,
            });
        }
        if auth.default_rules {
            rules.push(built_in(
                format!("{user_prefix}{{user}}/**"),
                None,
                Some(vec![Access::Owner, service, admin.clone()]),
                USER_DEFAULT,
            )?);
            if let Some(topics) = topic_prefix {
                rules.push(built_in(
                    format!("{topics}admin/**"),
                    Some(vec![admin.clone()]),
                    Some(vec![admin]),
                    ADMIN_DEFAULT,
                )?);
            }
        }
        Ok(Rules {
            rules,
            fallback: if auth.required {
                Access::Authenticated
            } else {
                Access::Anyone
            },
        })
    }

    /// `Err` names the destination, the operation and the rule that refused.
    pub fn check(
        &self,
        op: Operation,
        destination: &str,
        principal: &Principal,
    ) -> Result<(), Denied> {
        for rule in &self.rules {
            let grants = match op {
                Operation::Subscribe => &rule.subscribe,
                Operation::Send => &rule.send,
            };
            let Some(grants) = grants else { continue };
            if !rule.pattern.matches(destination) {
                continue;
            }
            if grants
                .iter()
                .any(|a| admits(a, rule, destination, principal))
            {
                return Ok(());
            }
            let needs = grants
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" or ");
            let reason = rule.reason.map(|r| format!("; {r}")).unwrap_or_default();
            return Err(Denied {
                destination: destination.to_owned(),
                rule: Some(rule.pattern.to_string()),
                message: format!(
                    "access denied: {op} to '{destination}' requires {needs} (rule '{}'{reason})",
                    rule.pattern
                ),
            });
        }
        match (&self.fallback, principal.authenticated) {
            (Access::Authenticated, false) => Err(Denied {
                destination: destination.to_owned(),
                rule: None,
                message: format!(
                    "access denied: {op} to '{destination}' needs an authenticated user (auth.required)"
                ),
            }),
            _ => Ok(()),
        }
    }
}

fn parse_grants(grants: &Grants, admin_role: &str) -> Result<Vec<Access>, String> {
    let parsed = grants
        .iter()
        .map(|g| {
            Access::parse(g).map(|a| match a {
                Access::Role(r) if r == ADMIN_PLACEHOLDER => Access::Role(admin_role.to_owned()),
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.is_empty() {
        return Err("an empty list admits no one: write \"deny\"".to_owned());
    }
    Ok(parsed)
}

fn admits(access: &Access, rule: &Rule, destination: &str, principal: &Principal) -> bool {
    match access {
        Access::Anyone => true,
        Access::Authenticated => principal.authenticated,
        Access::Role(r) => principal.authenticated && principal.has_role(r),
        Access::Owner => rule.pattern.captures(destination).is_some_and(|c| {
            c.iter()
                .any(|&(name, value)| name == "user" && value == principal.name)
        }),
        Access::Deny => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RuleConfig};

    /// The rules a whole configuration makes.
    fn of(config: &Config) -> Result<Rules, (String, String)> {
        Rules::new(
            &config.auth,
            &config.routing.user_prefix,
            config.first_topic_prefix(),
            &config.notifications.reserved(),
        )
    }

    fn p(name: &str, roles: &[&str], authenticated: bool) -> Principal {
        Principal {
            name: name.into(),
            display_name: name.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            authenticated,
            expires_at: None,
        }
    }

    /// With Spring's `enableSimpleBroker("/subscribe")` the admins' topics are
    /// `/subscribe/admin/**`: the default rule follows the first topic prefix.
    #[test]
    fn the_admin_rule_follows_the_topic_prefix() {
        let mut config = Config::default();
        config.broker.topic_prefixes = vec!["/subscribe/".into()];
        let rules = of(&config).unwrap();
        let (alice, root) = (p("alice", &[], true), p("root", &["ADMIN"], true));
        let e = rules
            .check(Operation::Subscribe, "/subscribe/admin/stats", &alice)
            .unwrap_err();
        assert_eq!(e.rule.as_deref(), Some("/subscribe/admin/**"), "{e}");
        assert!(
            rules
                .check(Operation::Subscribe, "/subscribe/admin/stats", &root)
                .is_ok()
        );
        assert!(
            rules
                .check(Operation::Subscribe, "/subscribe/chat/room/1", &alice)
                .is_ok()
        );
    }

    #[test]
    fn default_rules() {
        let rules = of(&Config::default()).unwrap();
        let alice = p("alice", &[], true);
        assert!(
            rules
                .check(Operation::Send, "/user/alice/queue/x", &alice)
                .is_ok()
        );
        let e = rules
            .check(Operation::Send, "/user/bob/queue/x", &alice)
            .unwrap_err();
        assert!(
            e.rule.as_deref() == Some("/user/{user}/**")
                && e.to_string().contains("/user/bob/queue/x"),
            "{e}"
        );
        assert!(
            rules
                .check(Operation::Subscribe, "/topic/admin/stats", &alice)
                .is_err()
        );
        assert!(
            rules
                .check(Operation::Send, "/topic/admin.stats", &alice)
                .is_err(),
            "dots separate too"
        );
        let dotted = p("a.b@example.com", &[], true);
        assert!(
            rules
                .check(Operation::Send, "/user/a.b@example.com/queue/x", &dotted)
                .is_ok()
        );
        assert!(
            rules
                .check(
                    Operation::Subscribe,
                    "/topic/admin/stats",
                    &p("root", &["ADMIN"], true)
                )
                .is_ok()
        );
        assert!(
            rules
                .check(Operation::Subscribe, "/topic/news", &p("x", &[], false))
                .is_ok()
        );
        let mut config = Config::default();
        config.auth.required = true;
        let required = of(&config).unwrap();
        assert!(
            required
                .check(Operation::Subscribe, "/topic/news", &p("x", &[], false))
                .is_err()
        );
    }

    #[test]
    fn reserved_destinations_take_sends_from_services_and_admins() {
        let mut config = Config::default();
        config.routing.user_prefix = "/member/".into();
        config.notifications.destination = "/queue/notification".into();
        let rules = of(&config).unwrap();
        let alice = p("alice", &[], true);
        let service = p("billing", &["SERVICE"], true);
        let admin = p("root", &["ADMIN"], true);
        for d in [
            "/topic/notifications",
            "/topic/notifications.x",
            "/member/alice/queue/notification",
            "/member/bob/queue/notification",
            "/member/bob/queue/jobs",
        ] {
            let e = rules.check(Operation::Send, d, &alice).unwrap_err();
            assert!(e.to_string().contains("reserved"), "{e}");
            assert!(rules.check(Operation::Send, d, &service).is_ok(), "{d}");
            assert!(rules.check(Operation::Send, d, &admin).is_ok(), "{d}");
        }
        assert!(
            rules
                .check(Operation::Subscribe, "/topic/notifications", &alice)
                .is_ok()
        );
        // The user prefix is /member/: owner, service or admin.
        assert!(
            rules
                .check(Operation::Send, "/member/bob/queue/x", &alice)
                .is_err()
        );
        for who in [&service, &admin, &p("bob", &[], true)] {
            assert!(
                rules
                    .check(Operation::Send, "/member/bob/queue/x", who)
                    .is_ok()
            );
        }
        // Unauthenticated principals never hold a role.
        assert!(
            rules
                .check(
                    Operation::Send,
                    "/topic/notifications",
                    &p("x", &["SERVICE"], false)
                )
                .is_err()
        );
    }

    #[test]
    fn several_grants_and_the_order_of_rules() {
        let mut config = Config::default();
        config.auth.rules = vec![
            RuleConfig {
                pattern: "/topic/ops/**".into(),
                subscribe: Some(["role:OPS", "admin"].as_slice().into()),
                send: None,
            },
            // Configured rules come before the defaults and after the reserved rules.
            RuleConfig {
                pattern: "/topic/**".into(),
                subscribe: Some("anyone".into()),
                send: Some("anyone".into()),
            },
        ];
        let rules = of(&config).unwrap();
        let sub = |d, who: &Principal| rules.check(Operation::Subscribe, d, who);
        assert!(sub("/topic/ops/x", &p("o", &["OPS"], true)).is_ok());
        assert!(sub("/topic/ops/x", &p("r", &["ADMIN"], true)).is_ok());
        let e = sub("/topic/ops/x", &p("a", &[], true)).unwrap_err();
        assert!(
            e.to_string().contains("requires role OPS or role ADMIN"),
            "{e}"
        );
        assert!(sub("/topic/admin/x", &p("a", &[], true)).is_ok());
        let anyone = p("a", &[], true);
        assert!(
            rules
                .check(Operation::Send, "/topic/notifications", &anyone)
                .is_err()
        );
        config.auth.default_rules = false;
        let rules = of(&config).unwrap();
        // The reserved rules stay: only the notifier's destinations need them.
        assert!(
            rules
                .check(Operation::Send, "/topic/notifications", &anyone)
                .is_err()
        );
        config.notifications.enabled = false;
        let rules = of(&config).unwrap();
        assert!(
            rules
                .check(Operation::Send, "/topic/notifications", &anyone)
                .is_ok()
        );
        assert!(
            rules
                .check(Operation::Send, "/user/bob/queue/x", &anyone)
                .is_ok()
        );
    }

    #[test]
    fn reserved_headers() {
        assert_eq!(
            reserved_header(["content-type", "Herald-Event"]),
            Some("Herald-Event")
        );
        assert_eq!(reserved_header(["herald", "x-herald-event", "é"]), None);
    }

    #[test]
    fn bad_grants_name_the_setting() {
        let mut config = Config::default();
        config.auth.rules = vec![RuleConfig {
            pattern: "/topic/x".into(),
            subscribe: None,
            send: Some(Grants::Any(vec!["owner".into(), "nobody".into()])),
        }];
        let (key, problem) = of(&config).unwrap_err();
        assert_eq!(key, "auth.rules[0].send");
        assert!(problem.contains("nobody"), "{problem}");
        config.auth.rules[0].send = Some(Grants::Any(Vec::new()));
        assert!(of(&config).is_err());
        config.auth.rules.clear();
        config.notifications.broadcast_destination = "/topic/*".into();
        let (key, _) = of(&config).unwrap_err();
        assert_eq!(key, "notifications.broadcast_destination");
    }
}

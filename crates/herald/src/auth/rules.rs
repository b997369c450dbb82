//! Destination rules: who may SUBSCRIBE to or SEND to a destination.
//!
//! Rules are tried in order; the first whose pattern matches and that says something
//! about the operation decides. With no such rule, a destination is open to
//! authenticated principals when auth is required, and to anyone otherwise.

use std::fmt;

use crate::auth::Principal;
use crate::config::AuthConfig;
use crate::destination::Pattern;

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
    subscribe: Option<Access>,
    send: Option<Access>,
}

#[derive(Debug)]
pub struct Rules {
    rules: Vec<Rule>,
    fallback: Access,
}

impl Rules {
    pub fn new(config: &AuthConfig) -> Rules {
        let parse = |a: &Option<String>| {
            a.as_deref()
                .map(|s| match Access::parse(s).expect("validated at start") {
                    Access::Role(r) if r == ADMIN_PLACEHOLDER => {
                        Access::Role(config.admin_role.clone())
                    }
                    other => other,
                })
        };
        Rules {
            rules: config
                .rules
                .iter()
                .map(|r| Rule {
                    pattern: Pattern::rule(&r.pattern).expect("validated at start"),
                    subscribe: parse(&r.subscribe),
                    send: parse(&r.send),
                })
                .collect(),
            fallback: if config.required {
                Access::Authenticated
            } else {
                Access::Anyone
            },
        }
    }

    /// `Err` names the destination, the operation and the rule that refused.
    pub fn check(
        &self,
        op: Operation,
        destination: &str,
        principal: &Principal,
    ) -> Result<(), String> {
        for rule in &self.rules {
            let access = match op {
                Operation::Subscribe => &rule.subscribe,
                Operation::Send => &rule.send,
            };
            let Some(access) = access else { continue };
            if !rule.pattern.matches(destination) {
                continue;
            }
            let ok = match access {
                Access::Anyone => true,
                Access::Authenticated => principal.authenticated,
                Access::Role(r) => principal.authenticated && principal.has_role(r),
                Access::Owner => rule.pattern.captures(destination).is_some_and(|c| {
                    c.iter()
                        .any(|&(name, value)| name == "user" && value == principal.name)
                }),
                Access::Deny => false,
            };
            return if ok {
                Ok(())
            } else {
                Err(format!(
                    "access denied: {op} to '{destination}' requires {access} (rule '{}')",
                    rule.pattern
                ))
            };
        }
        match (&self.fallback, principal.authenticated) {
            (Access::Authenticated, false) => Err(format!(
                "access denied: {op} to '{destination}' needs an authenticated user (auth.required)"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, roles: &[&str], authenticated: bool) -> Principal {
        Principal {
            name: name.into(),
            display_name: name.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            authenticated,
            expires_at: None,
        }
    }

    #[test]
    fn default_rules() {
        let rules = Rules::new(&AuthConfig::default());
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
            e.contains("/user/bob/queue/x") && e.contains("/user/{user}/**"),
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
        let required = Rules::new(&AuthConfig {
            required: true,
            ..AuthConfig::default()
        });
        assert!(
            required
                .check(Operation::Subscribe, "/topic/news", &p("x", &[], false))
                .is_err()
        );
    }
}

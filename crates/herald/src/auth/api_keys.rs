//! API keys (`auth.api_keys`): each stands for a service principal with roles. A key
//! is looked up in constant time — every configured key is compared in full whatever
//! matches — so response times do not tell an attacker how much of a guess was right.

use subtle::ConstantTimeEq;

use super::Principal;
use super::config::ApiKeyConfig;

#[derive(Debug, Default)]
pub struct ApiKeys {
    keys: Vec<(Vec<u8>, Principal)>,
}

impl ApiKeys {
    /// A plain-string key is a service named "service" with `service_role`.
    pub fn new(configured: &[ApiKeyConfig], service_role: &str) -> ApiKeys {
        let keys = configured
            .iter()
            .map(|k| {
                let (key, name, roles) = match k {
                    ApiKeyConfig::Plain(key) => (key, "service", vec![service_role.to_owned()]),
                    ApiKeyConfig::Full {
                        key,
                        principal,
                        roles,
                    } => (key, principal.as_str(), roles.clone()),
                };
                let mut principal = Principal::anonymous(name.to_owned());
                principal.roles = roles;
                principal.authenticated = true;
                (key.as_bytes().to_vec(), principal)
            })
            .collect();
        ApiKeys { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The principal of `presented`, if it is a configured key.
    pub fn lookup(&self, presented: &str) -> Option<&Principal> {
        let presented = presented.trim().as_bytes();
        let mut found = None;
        for (key, principal) in &self.keys {
            if bool::from(key.as_slice().ct_eq(presented)) {
                found = Some(principal);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_full_keys() {
        let keys = ApiKeys::new(
            &[
                ApiKeyConfig::Plain("plain-key".into()),
                ApiKeyConfig::Full {
                    key: "admin-key".into(),
                    principal: "ops".into(),
                    roles: vec!["ADMIN".into()],
                },
            ],
            "SERVICE",
        );
        let p = keys.lookup("plain-key").unwrap();
        assert_eq!((p.name.as_str(), p.has_role("SERVICE")), ("service", true));
        let p = keys.lookup("admin-key").unwrap();
        assert_eq!((p.name.as_str(), p.has_role("ADMIN")), ("ops", true));
        assert!(keys.lookup("admin-ke").is_none());
        assert!(keys.lookup("").is_none());
    }
}

//! Who is connecting, and what they may do.
//!
//! - [`jwt`]: token verification with per-issuer keys (secret, PEM, JWKS).
//! - [`api_keys`]: API keys and the service principals they stand for.
//! - [`rules`]: destination rules for SUBSCRIBE and SEND.
//! - [`limits`]: connection and session counters, frame rate.
//!
//! Modes: with no issuer configured Herald is anonymous — each session is named by its
//! `login` header or a generated name. With issuers, a valid token makes an
//! authenticated [`Principal`]; `auth.required` refuses everyone else.

pub mod api_keys;
pub mod config;
mod error;
pub mod jwt;
pub mod limits;
pub mod rules;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use serde_json::Value;

use crate::params;
use api_keys::ApiKeys;
use config::{AuthConfig, TokenSource};
pub use error::AuthError;
use jwt::{Claims, Verifier};
use rules::{Reserved, Rules};

/// Who sent a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user id (`sub` by default): user destinations and `owner` rules use it.
    pub name: String,
    pub display_name: String,
    pub roles: Vec<String>,
    /// Whether a verified token stands behind the name.
    pub authenticated: bool,
    /// When the token expires; the session is closed then.
    pub expires_at: Option<SystemTime>,
}

impl Principal {
    pub fn anonymous(name: String) -> Principal {
        Principal {
            display_name: name.clone(),
            name,
            roles: Vec::new(),
            authenticated: false,
            expires_at: None,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Time left before the token expires (zero once expired).
    pub fn time_left(&self) -> Option<Duration> {
        self.expires_at
            .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
    }
}

/// What a handshake said about its token.
#[derive(Debug, Clone, PartialEq)]
pub enum Handshake {
    /// A valid token came with the handshake.
    Authenticated(Principal),
    /// No token in the handshake sources; CONNECT may still bring one.
    NoToken,
}

#[derive(Debug)]
pub struct Auth {
    pub config: AuthConfig,
    pub verifier: Option<Verifier>,
    pub rules: Rules,
    pub api_keys: ApiKeys,
}

impl Auth {
    /// The destinations as [`Rules::new`] takes them. Fails when a configured key
    /// cannot be loaded or a rule does not parse.
    pub fn new(
        auth: &AuthConfig,
        user_prefix: &str,
        topic_prefix: Option<&str>,
        reserved: &[Reserved],
    ) -> Result<Auth, String> {
        Ok(Auth {
            verifier: Verifier::new(auth)?,
            rules: Rules::new(auth, user_prefix, topic_prefix, reserved)
                .map_err(|(key, problem)| format!("{key}: {problem}"))?,
            api_keys: ApiKeys::new(&auth.api_keys, &auth.service_role),
            config: auth.clone(),
        })
    }

    /// Anonymous mode: no issuer configured.
    pub fn is_anonymous(&self) -> bool {
        self.verifier.is_none()
    }

    /// Neither API keys nor issuers configured (development): the service REST API
    /// is open, and its callers are one anonymous service.
    pub fn services_open(&self) -> bool {
        self.config.api_keys.is_empty() && self.is_anonymous()
    }

    /// Checks the token a WebSocket or SockJS handshake carries (cookie, header or
    /// query, in the configured order).
    pub async fn handshake(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Handshake, AuthError> {
        if self.verifier.is_none() {
            return Ok(Handshake::NoToken);
        };
        for source in &self.config.token_sources {
            let token = match source {
                TokenSource::Cookie => params::cookie(headers, &self.config.cookie_name)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned),
                TokenSource::Header => {
                    bearer(headers.get("authorization").and_then(|v| v.to_str().ok()))
                }
                TokenSource::Query => {
                    params::query_value(query, &self.config.query_param).filter(|v| !v.is_empty())
                }
                TokenSource::Connect => continue,
            };
            if let Some(token) = token {
                return self.verify(&token).await.map(Handshake::Authenticated);
            }
        }
        if self.config.required && !self.config.token_sources.contains(&TokenSource::Connect) {
            return Err(self.no_token());
        }
        Ok(Handshake::NoToken)
    }

    /// The principal of a CONNECT frame. `handshake` is what the connection's handshake
    /// established (TCP has none); `login`, `authorization` and `passcode` are the
    /// frame's headers; `fallback_name` names an anonymous session.
    pub async fn connect(
        &self,
        handshake: Option<&Handshake>,
        login: Option<&str>,
        authorization: Option<&str>,
        passcode: Option<&str>,
        fallback_name: String,
    ) -> Result<Principal, AuthError> {
        if self.verifier.is_none() {
            // Anonymous mode: the login header names the session.
            let name = login.filter(|l| !l.trim().is_empty()).map(str::to_owned);
            return Ok(Principal::anonymous(name.unwrap_or(fallback_name)));
        };
        for source in &self.config.token_sources {
            match source {
                TokenSource::Connect => {
                    // A passcode that is not a JWT (a password like "guest") is no token.
                    let token = bearer(authorization).or_else(|| {
                        passcode
                            .filter(|p| p.matches('.').count() == 2)
                            .map(str::to_owned)
                    });
                    if let Some(token) = token {
                        return self.verify(&token).await;
                    }
                }
                _ => {
                    if let Some(Handshake::Authenticated(p)) = handshake {
                        return Ok(p.clone());
                    }
                }
            }
        }
        if self.config.required {
            return Err(self.no_token());
        }
        // Not required: an anonymous session may not pick a name (it could be a user's).
        Ok(Principal::anonymous(fallback_name))
    }

    /// Checks a bearer token for a role (REST API).
    ///
    /// Without an `Authorization` header the auth cookie counts (when "cookie" is one
    /// of `auth.token_sources`): the web UI's session. The HTTP layer refuses a
    /// state-changing request with that cookie from another origin before it gets here.
    pub async fn bearer_with_role(
        &self,
        headers: &HeaderMap,
        roles: &[&str],
    ) -> Result<Principal, AuthError> {
        if self.verifier.is_none() {
            return Err(AuthError::unauthenticated(
                "no token issuer is configured; use an API key",
            ));
        }
        let cookie = || {
            self.config
                .token_sources
                .contains(&TokenSource::Cookie)
                .then(|| params::cookie(headers, &self.config.cookie_name))
                .flatten()
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let token = bearer(headers.get("authorization").and_then(|v| v.to_str().ok()))
            .or_else(cookie)
            .ok_or_else(|| {
                AuthError::unauthenticated(
                    "missing Authorization: Bearer token, the auth cookie or X-API-Key",
                )
            })?;
        let principal = self.verify(&token).await?;
        if roles.iter().any(|r| principal.has_role(r)) {
            Ok(principal)
        } else {
            Err(AuthError::forbidden(format!(
                "this needs role {}",
                roles.join(" or ")
            )))
        }
    }

    /// A service calling the REST API: an API key's principal, or a bearer token with
    /// the service or admin role. With neither keys nor issuers configured (anonymous
    /// development mode) the API is open, and its callers are the service a plain API
    /// key would be.
    pub async fn service(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return self
                .api_keys
                .lookup(key)
                .cloned()
                .ok_or_else(|| AuthError::unauthenticated("unknown API key"));
        }
        if self.services_open() {
            let mut service = Principal::anonymous("service".to_owned());
            service.roles = vec![self.config.service_role.clone()];
            service.authenticated = true;
            return Ok(service);
        }
        let roles = [
            self.config.service_role.as_str(),
            self.config.admin_role.as_str(),
        ];
        self.bearer_with_role(headers, &roles).await
    }

    /// An administrator: the admin role, from an API key's principal or a bearer token.
    pub async fn admin(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let admin = self.config.admin_role.as_str();
        if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return match self.api_keys.lookup(key) {
                Some(p) if p.has_role(admin) => Ok(p.clone()),
                Some(p) => Err(AuthError::forbidden(format!(
                    "the admin API needs role {admin}; API key '{}' lacks it",
                    p.name
                ))),
                None => Err(AuthError::unauthenticated("unknown API key")),
            };
        }
        if self.is_anonymous() {
            return Err(AuthError::unauthenticated(format!(
                "the admin API needs role {admin}: an API key with it (auth.api_keys) or a token with it (auth.issuers)"
            )));
        }
        self.bearer_with_role(headers, &[admin]).await
    }

    /// A token's principal, if it verifies and names a user.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let verifier = self
            .verifier
            .as_ref()
            .ok_or_else(|| AuthError::unauthenticated("no token issuer is configured"))?;
        let claims = verifier
            .verify(token)
            .await
            .map_err(AuthError::Unauthenticated)?;
        self.principal(&claims).map_err(AuthError::Unauthenticated)
    }

    fn no_token(&self) -> AuthError {
        AuthError::unauthenticated(format!(
            "no access token (looked in: {})",
            self.where_to_look()
        ))
    }

    fn where_to_look(&self) -> String {
        let c = &self.config;
        c.token_sources
            .iter()
            .map(|s| match s {
                TokenSource::Cookie => format!("cookie '{}'", c.cookie_name),
                TokenSource::Header => "Authorization: Bearer header".to_owned(),
                TokenSource::Query => format!("query parameter '{}'", c.query_param),
                TokenSource::Connect => "CONNECT Authorization or passcode header".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Claims → principal.
    fn principal(&self, claims: &Claims) -> Result<Principal, String> {
        let c = &self.config;
        let name = claim(claims, &c.user_claim)
            .and_then(as_name)
            .ok_or_else(|| format!("token has no '{}' claim", c.user_claim))?;
        let display_name = claim(claims, &c.name_claim)
            .and_then(as_name)
            .unwrap_or_else(|| name.clone());
        let roles = match claim(claims, &c.roles_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        // The session ends when verification would start refusing the token: at
        // `exp` plus the leeway. A far-future `exp` means no end.
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
            .and_then(|t| t.checked_add(c.leeway));
        Ok(Principal {
            name,
            display_name,
            roles,
            authenticated: true,
            expires_at,
        })
    }
}

/// A claim by dotted path (`realm_access.roles`).
fn claim<'a>(claims: &'a Claims, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for p in parts {
        value = value.get(p)?;
    }
    Some(value)
}

fn as_name(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `Bearer x` → `x`; a bare token is accepted too (Spring STOMP chat tutorials send one).
fn bearer(value: Option<&str>) -> Option<String> {
    let v = value?.trim();
    let token = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .unwrap_or(v)
        .trim();
    (!token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources_parse() {
        assert_eq!(bearer(Some("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(bearer(Some("abc")).as_deref(), Some("abc"));
    }
}

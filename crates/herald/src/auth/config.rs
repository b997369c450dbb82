//! `[auth]` (token issuers, API keys, rules, where tokens come from) and `[limits]`
//! (what one address, user or session may open and send).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse handshakes and CONNECTs without a valid token.
    pub required: bool,
    /// Where a token is looked for, in order: "cookie", "header" (Authorization:
    /// Bearer on the handshake), "query" (`?access_token=`), "connect" (the CONNECT
    /// frame's `Authorization` or `passcode` header).
    pub token_sources: Vec<TokenSource>,
    pub cookie_name: String,
    pub query_param: String,
    /// Claim paths (dotted, e.g. "realm_access.roles") for the principal.
    pub user_claim: String,
    pub name_claim: String,
    pub roles_claim: String,
    /// Clock skew allowed on exp and nbf.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// How often keys from a JWKS URL or file are reloaded.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Token issuers and their keys; none configured means anonymous mode.
    pub issuers: Vec<IssuerConfig>,
    /// Destination rules, first match wins (per SUBSCRIBE and SEND). They come after
    /// the reserved rules and before the default rules (see `default_rules`).
    pub rules: Vec<RuleConfig>,
    /// The built-in rules: the server's own destinations (notifications, broadcasts,
    /// jobs) SEND by `service_role`/`admin_role` only, checked before `rules`; user
    /// destinations SEND by their owner, a service or an admin, and `/topic/admin/**`
    /// by admins, checked after `rules`. Off: the default rules go; the reserved ones
    /// stay while `notifications.enabled`.
    pub default_rules: bool,
    /// Allowed Origin patterns for WebSocket and SockJS handshakes ("https://*.example.com",
    /// "http://localhost:*", "*"). Empty: the server's own origin and localhost.
    pub allowed_origins: Vec<String>,
    /// API keys (header `X-API-Key`): `{ key, principal, roles }` tables, or plain
    /// strings, which are keys of a service (`service_role`).
    pub api_keys: Vec<ApiKeyConfig>,
    /// Who may connect while no issuer and no API key is configured: "loopback"
    /// (protected mode: loopback clients only) or "open" (anyone who can reach it).
    pub anonymous: AnonymousAccess,
    /// Role a token needs for the publishing REST API (the admin role works too).
    pub service_role: String,
    /// Role for the admin API and `/topic/admin/**`.
    pub admin_role: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    Cookie,
    Header,
    Query,
    Connect,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: false,
            token_sources: vec![
                TokenSource::Cookie,
                TokenSource::Header,
                TokenSource::Query,
                TokenSource::Connect,
            ],
            cookie_name: "access_token".into(),
            query_param: "access_token".into(),
            user_claim: "sub".into(),
            name_claim: "name".into(),
            roles_claim: "roles".into(),
            leeway: Duration::from_secs(30),
            jwks_refresh: Duration::from_secs(300),
            issuers: Vec::new(),
            rules: Vec::new(),
            default_rules: true,
            allowed_origins: Vec::new(),
            api_keys: Vec::new(),
            anonymous: AnonymousAccess::Loopback,
            service_role: "SERVICE".into(),
            admin_role: "ADMIN".into(),
        }
    }
}

/// An API key and the service principal it stands for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ApiKeyConfig {
    /// A bare key: a service (`auth.service_role`) named "service".
    Plain(String),
    Full {
        key: String,
        /// The principal's name (REST publishes are sent as it).
        principal: String,
        /// Its roles: `auth.admin_role` opens the admin API.
        #[serde(default)]
        roles: Vec<String>,
    },
}

impl From<&str> for ApiKeyConfig {
    fn from(key: &str) -> Self {
        ApiKeyConfig::Plain(key.to_owned())
    }
}

/// Access to a server without credentials configured (no issuer, no API key).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousAccess {
    /// Protected mode: only loopback clients are answered.
    Loopback,
    /// Anyone who can reach the listeners: for a trusted network.
    Open,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` the tokens carry; "" matches tokens without `iss`.
    pub issuer: String,
    /// Accepted audiences; empty means `aud` is not checked.
    pub audience: Vec<String>,
    /// HMAC secret (HS256/384/512).
    pub secret: String,
    /// PEM public key: RSA (RS*/PS*), EC (ES256/384) or Ed25519 (EdDSA).
    pub public_key_file: String,
    /// PEM private key, used only by `herald token` to mint development tokens.
    pub private_key_file: String,
    /// A JWKS document on disk, or at a URL; keys matched by `kid`.
    pub jwks_file: String,
    pub jwks_url: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// Destination pattern: `*` one segment, `**` (or `#`) any number, `/` and `.` both
    /// separate segments; `{user}` a whole `/` segment that `owner` compares with the
    /// principal.
    pub pattern: String,
    /// Who may SUBSCRIBE: "anyone", "authenticated", "role:X", "admin", "owner", "deny",
    /// or a list of them, any of which admits (`["owner", "role:SERVICE"]`).
    pub subscribe: Option<Grants>,
    /// Who may SEND, same values.
    pub send: Option<Grants>,
}

/// A rule's access for one operation: one grant, or several of which any admits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Grants {
    One(String),
    Any(Vec<String>),
}

impl Grants {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let all: &[String] = match self {
            Grants::One(g) => std::slice::from_ref(g),
            Grants::Any(list) => list,
        };
        all.iter().map(String::as_str)
    }
}

impl From<&str> for Grants {
    fn from(grant: &str) -> Self {
        Grants::One(grant.to_owned())
    }
}

impl From<&[&str]> for Grants {
    fn from(grants: &[&str]) -> Self {
        Grants::Any(grants.iter().map(|g| (*g).to_owned()).collect())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Concurrent connections from one IP address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Concurrent STOMP sessions of one user (0: no limit).
    pub max_connections_per_user: usize,
    /// Subscriptions one session may hold (0: no limit).
    pub max_subscriptions_per_session: usize,
    /// Inbound frames per second per session, a token bucket (0: no limit).
    pub frame_rate: u32,
    /// Burst the bucket allows (defaults to frame_rate when 0).
    pub frame_burst: u32,
    /// Time for a client to send its HTTP request headers (the WebSocket handshake);
    /// also how long an HTTP/1.1 keep-alive connection may wait for its next request.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Open connections on all listeners together (0: RLIMIT_NOFILE less 256).
    pub max_connections: usize,
    /// An HTTP/2 connection without a request in flight for this long is closed.
    #[serde(with = "humantime_serde")]
    pub http2_idle_timeout: Duration,
    /// HTTP/2 keep-alive ping interval; a peer that does not answer within it is dropped.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections_per_ip: 0,
            max_connections_per_user: 0,
            max_subscriptions_per_session: 1000,
            frame_rate: 0,
            frame_burst: 0,
            handshake_timeout: Duration::from_secs(10),
            max_connections: 0,
            http2_idle_timeout: Duration::from_secs(60),
            http2_keepalive: Duration::from_secs(20),
        }
    }
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, issuer) in self.issuers.iter().enumerate() {
            let keys = [
                &issuer.secret,
                &issuer.public_key_file,
                &issuer.jwks_file,
                &issuer.jwks_url,
            ]
            .iter()
            .filter(|k| !k.is_empty())
            .count();
            ConfigError::check(
                keys > 0,
                &format!("auth.issuers[{i}]"),
                "needs a key: secret, public_key_file, jwks_file or jwks_url",
            )?;
            ConfigError::check(
                issuer.secret.is_empty() || issuer.secret.len() >= 32,
                &format!("auth.issuers[{i}].secret"),
                "must be at least 32 bytes",
            )?;
        }
        ConfigError::check(
            !self.required || !self.issuers.is_empty(),
            "auth.required",
            "needs at least one entry in auth.issuers",
        )?;
        for (i, key) in self.api_keys.iter().enumerate() {
            let (key, principal) = match key {
                ApiKeyConfig::Plain(k) => (k, "service"),
                ApiKeyConfig::Full { key, principal, .. } => (key, principal.as_str()),
            };
            ConfigError::check(
                !key.trim().is_empty() && !principal.trim().is_empty(),
                &format!("auth.api_keys[{i}]"),
                "needs a key and a principal that are not empty",
            )?;
        }
        Ok(())
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check(
            !self.http2_idle_timeout.is_zero() && !self.http2_keepalive.is_zero(),
            "limits.http2_idle_timeout/http2_keepalive",
            "must be more than 0s",
        )
    }
}

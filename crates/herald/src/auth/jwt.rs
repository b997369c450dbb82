//! JWT verification with per-issuer keys.
//!
//! A token is matched to its issuer by its (unverified) `iss` claim first, then to a
//! key of that issuer by `kid` — never by `kid` alone across issuers. Only the
//! algorithms of the key's family are allowed, so an RSA public key can never be used
//! as an HMAC secret (algorithm confusion), and `alg: none` is refused outright.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use parking_lot::RwLock;
use serde_json::Value;

use super::config::{AuthConfig, IssuerConfig};

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    /// The one algorithm a JWK names in its `alg`, if it does.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

struct Issuer {
    config: IssuerConfig,
    /// Keys from `secret` and `public_key_file`.
    fixed: Vec<Key>,
    /// Keys from the JWKS file or URL, replaced on refresh.
    jwks: RwLock<Vec<Key>>,
    /// When a token with an unknown `kid` last triggered a JWKS refresh.
    last_on_demand: parking_lot::Mutex<Option<Instant>>,
}

/// Verifies tokens of the configured issuers.
pub struct Verifier {
    issuers: Vec<Arc<Issuer>>,
    leeway: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "issuers",
                &self
                    .issuers
                    .iter()
                    .map(|i| &i.config.issuer)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Claims of a verified token.
pub type Claims = serde_json::Map<String, Value>;

impl Verifier {
    /// `Ok(None)` in anonymous mode (no issuer configured).
    pub fn new(config: &AuthConfig) -> Result<Option<Verifier>, String> {
        if config.issuers.is_empty() {
            return Ok(None);
        }
        let mut issuers = Vec::new();
        for (i, ic) in config.issuers.iter().enumerate() {
            let mut fixed = Vec::new();
            if !ic.secret.is_empty() {
                fixed.push(Key {
                    kid: None,
                    alg: None,
                    key: DecodingKey::from_secret(ic.secret.as_bytes()),
                });
            }
            if !ic.public_key_file.is_empty() {
                let pem = std::fs::read(&ic.public_key_file).map_err(|e| {
                    format!(
                        "auth.issuers[{i}].public_key_file {}: {e}",
                        ic.public_key_file
                    )
                })?;
                let key = DecodingKey::from_rsa_pem(&pem)
                    .or_else(|_| DecodingKey::from_ec_pem(&pem))
                    .or_else(|_| DecodingKey::from_ed_pem(&pem))
                    .map_err(|_| {
                        format!(
                            "auth.issuers[{i}].public_key_file {}: not an RSA, EC or Ed25519 public key in PEM",
                            ic.public_key_file
                        )
                    })?;
                fixed.push(Key {
                    kid: None,
                    alg: None,
                    key,
                });
            }
            let issuer = Arc::new(Issuer {
                config: ic.clone(),
                fixed,
                jwks: RwLock::new(Vec::new()),
                last_on_demand: parking_lot::Mutex::new(None),
            });
            if !ic.jwks_file.is_empty() {
                let text = std::fs::read_to_string(&ic.jwks_file)
                    .map_err(|e| format!("auth.issuers[{i}].jwks_file {}: {e}", ic.jwks_file))?;
                *issuer.jwks.write() =
                    parse_jwks(&text).map_err(|e| format!("auth.issuers[{i}].jwks_file: {e}"))?;
            }
            issuers.push(issuer);
        }
        Ok(Some(Verifier {
            issuers,
            leeway: config.leeway,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?,
        }))
    }

    /// Loads every JWKS URL (and reloads JWKS files); called at start and periodically.
    pub async fn refresh(&self) {
        for issuer in &self.issuers {
            self.refresh_issuer(issuer).await;
        }
    }

    async fn refresh_issuer(&self, issuer: &Issuer) {
        let c = &issuer.config;
        let text = if !c.jwks_url.is_empty() {
            match self
                .http
                .get(&c.jwks_url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
            {
                Ok(r) => r.text().await.ok(),
                Err(e) => {
                    tracing::warn!(url = %c.jwks_url, error = %e, "JWKS fetch failed; keeping the keys we have");
                    None
                }
            }
        } else if !c.jwks_file.is_empty() {
            tokio::fs::read_to_string(&c.jwks_file).await.ok()
        } else {
            None
        };
        if let Some(text) = text {
            match parse_jwks(&text) {
                Ok(keys) => *issuer.jwks.write() = keys,
                Err(e) => {
                    tracing::warn!(issuer = %c.issuer, error = %e, "JWKS unusable; keeping the keys we have")
                }
            }
        }
    }

    /// Verifies `token`; the error is the reason given to the client.
    pub async fn verify(&self, token: &str) -> Result<Claims, String> {
        let token = token.trim();
        refuse_unsigned(token)?;
        let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let unverified: Claims = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| format!("malformed token: {e}"))?;
        let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or("");
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| format!("wrong issuer: tokens from '{iss}' are not accepted"))?;
        let mut keys = issuer.candidates(header.kid.as_deref());
        if keys.is_empty() && !issuer.config.jwks_url.is_empty() && issuer.may_refresh() {
            // A key rotated in since the last refresh.
            self.refresh_issuer(issuer).await;
            keys = issuer.candidates(header.kid.as_deref());
        }
        if keys.is_empty() {
            return Err(match &header.kid {
                Some(kid) => format!("no key with kid '{kid}' for issuer '{iss}'"),
                None => format!("no key for issuer '{iss}'"),
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        if !issuer.config.issuer.is_empty() {
            validation.set_issuer(&[&issuer.config.issuer]);
        }
        if issuer.config.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&issuer.config.audience);
            // jsonwebtoken checks `aud` only when present; a configured audience
            // must be there.
            validation.required_spec_claims.insert("aud".to_owned());
        }
        let mut last = String::new();
        for key in keys {
            if !allowed(header.alg, &key.key) || key.alg.is_some_and(|a| a != header.alg) {
                last = format!(
                    "algorithm {:?} is not allowed for this issuer's key",
                    header.alg
                );
                continue;
            }
            match decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = reason(e),
            }
        }
        Err(last)
    }
}

impl Issuer {
    fn candidates(&self, kid: Option<&str>) -> Vec<Key> {
        let jwks = self.jwks.read();
        self.fixed
            .iter()
            .chain(jwks.iter())
            .filter(|k| match (kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .cloned()
            .collect()
    }

    /// At most one on-demand JWKS refresh every 10 s (periodic refreshes do not count).
    fn may_refresh(&self) -> bool {
        let mut last = self.last_on_demand.lock();
        if last.is_some_and(|t| t.elapsed() <= Duration::from_secs(10)) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// `alg: none` (any case) is refused before anything else is read.
fn refuse_unsigned(token: &str) -> Result<(), String> {
    let head = token.split('.').next().unwrap_or_default();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .map_err(|_| "malformed token: header is not base64url".to_owned())?;
    let header: Value = serde_json::from_slice(&json)
        .map_err(|_| "malformed token: header is not JSON".to_owned())?;
    match header.get("alg").and_then(Value::as_str) {
        Some(a) if a.eq_ignore_ascii_case("none") => {
            Err("unsigned tokens (alg none) are not accepted".into())
        }
        Some(_) => Ok(()),
        None => Err("malformed token: no alg in header".into()),
    }
}

/// Only the algorithms of the key's own family: HMAC secrets sign HS*, RSA keys RS*/PS*,
/// EC keys ES*, Ed25519 keys EdDSA.
fn allowed(alg: Algorithm, key: &DecodingKey) -> bool {
    alg.family() == key.family()
}

fn reason(e: jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind::*;
    match e.kind() {
        ExpiredSignature => "token expired".into(),
        ImmatureSignature => "token not yet valid (nbf)".into(),
        InvalidIssuer => "wrong issuer".into(),
        InvalidAudience => "wrong audience".into(),
        InvalidSignature => "invalid signature".into(),
        InvalidAlgorithm => "algorithm not allowed for this key".into(),
        MissingRequiredClaim(c) => format!("token has no '{c}' claim"),
        other => format!("invalid token: {other:?}"),
    }
}

fn parse_jwks(text: &str) -> Result<Vec<Key>, String> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| {
            DecodingKey::from_jwk(jwk).ok().map(|key| Key {
                kid: jwk.common.key_id.clone(),
                alg: jwk
                    .common
                    .key_algorithm
                    .and_then(|a| a.to_string().parse::<Algorithm>().ok()),
                key,
            })
        })
        .collect())
}

/// Mints a token with a configured issuer's key, for development (`herald token`) and
/// tests: HS256 with the issuer's `secret`, or RS256 / ES256 / EdDSA with its
/// `private_key_file`. `issuer` picks the issuer by its `iss` (default: the first that
/// can sign).
pub fn mint(
    config: &AuthConfig,
    issuer: Option<&str>,
    sub: &str,
    name: Option<&str>,
    roles: &[String],
    ttl: Duration,
) -> Result<String, String> {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let can_sign = |i: &&IssuerConfig| !i.secret.is_empty() || !i.private_key_file.is_empty();
    let ic = config
        .issuers
        .iter()
        .filter(can_sign)
        .find(|i| issuer.is_none_or(|want| i.issuer == want))
        .ok_or("no configured issuer can sign: give one a secret or a private_key_file")?;
    let (alg, key) = if !ic.secret.is_empty() {
        (
            Algorithm::HS256,
            EncodingKey::from_secret(ic.secret.as_bytes()),
        )
    } else {
        let pem = std::fs::read(&ic.private_key_file)
            .map_err(|e| format!("{}: {e}", ic.private_key_file))?;
        if let Ok(k) = EncodingKey::from_rsa_pem(&pem) {
            (Algorithm::RS256, k)
        } else if let Ok(k) = EncodingKey::from_ec_pem(&pem) {
            (Algorithm::ES256, k)
        } else if let Ok(k) = EncodingKey::from_ed_pem(&pem) {
            (Algorithm::EdDSA, k)
        } else {
            return Err(format!(
                "{}: not an RSA, EC or Ed25519 private key in PEM",
                ic.private_key_file
            ));
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut claims = serde_json::json!({
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs(),
    });
    let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
    set_path(
        &mut claims,
        &path(&config.roles_claim),
        serde_json::json!(roles),
    );
    if let Some(name) = name {
        set_path(
            &mut claims,
            &path(&config.name_claim),
            serde_json::json!(name),
        );
    }
    if !ic.issuer.is_empty() {
        claims["iss"] = serde_json::json!(ic.issuer);
    }
    if let Some(aud) = ic.audience.first() {
        claims["aud"] = serde_json::json!(aud);
    }
    encode(&Header::new(alg), &claims, &key).map_err(|e| e.to_string())
}

fn set_path(value: &mut Value, path: &[String], leaf: Value) {
    match path.split_first() {
        None => *value = leaf,
        Some((head, rest)) => {
            if !value.get(head).is_some_and(Value::is_object) && !rest.is_empty() {
                value[head.as_str()] = serde_json::json!({});
            }
            set_path(&mut value[head.as_str()], rest, leaf);
        }
    }
}

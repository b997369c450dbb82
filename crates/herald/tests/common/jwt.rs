//! Credentials for the auth tests: an HMAC secret and issuer entries that use it,
//! key fixtures, and signed JWTs with the claims Herald reads.

/// A tests-only HMAC secret (at least 32 bytes, as `auth.issuers[].secret` requires).
pub const TEST_SECRET: &str = "herald-tests-only-hmac-secret-0123456789";

/// Path of a file under `tests/fixtures/auth/`.
pub fn auth_fixture(name: &str) -> String {
    format!("{}/tests/fixtures/auth/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An issuer entry verifying with `TEST_SECRET`.
pub fn secret_issuer(iss: &str) -> herald::config::IssuerConfig {
    herald::config::IssuerConfig {
        issuer: iss.into(),
        secret: TEST_SECRET.into(),
        ..Default::default()
    }
}

/// Signs `claims` with `alg`: HMAC algorithms use `key` as the secret bytes, the others
/// read `key` as the path of a PEM private key.
pub fn sign_jwt(
    alg: jsonwebtoken::Algorithm,
    key: &[u8],
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    use jsonwebtoken::{Algorithm::*, EncodingKey, Header};
    let encoding = match alg {
        HS256 | HS384 | HS512 => EncodingKey::from_secret(key),
        _ => {
            let path = std::str::from_utf8(key).expect("key path");
            let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            match alg {
                RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                    EncodingKey::from_rsa_pem(&pem).expect("RSA PEM")
                }
                ES256 | ES384 => EncodingKey::from_ec_pem(&pem).expect("EC PEM"),
                _ => EncodingKey::from_ed_pem(&pem).expect("Ed25519 PEM"),
            }
        }
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding).expect("token signs")
}

/// Standard claims: `sub`, `iss` (omitted when empty), `roles`, `iat`/`nbf`, and `exp`
/// `ttl` seconds from now.
pub fn claims(iss: &str, sub: &str, roles: &[&str], ttl: i64) -> serde_json::Value {
    let now = unix_now() as i64;
    let mut c = serde_json::json!({
        "sub": sub,
        "roles": roles,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    });
    if !iss.is_empty() {
        c["iss"] = serde_json::json!(iss);
    }
    c
}

/// An HS256 token from `TEST_SECRET` for `sub` with `roles`, valid for an hour.
pub fn hs_token(iss: &str, sub: &str, roles: &[&str]) -> String {
    sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET.as_bytes(),
        None,
        &claims(iss, sub, roles, 3600),
    )
}

//! Token verification ([auth]): every algorithm family with its right key, and every
//! way a token is refused — forged, expired, not yet valid, wrong issuer or audience,
//! `alg: none`, algorithm confusion, unknown or foreign `kid` — with JWKS from a file
//! and from a URL (refresh, rotation).
//!
//! Tokens go in the CONNECT frame's `Authorization` header over TCP unless a test says
//! otherwise; a refusal is an ERROR whose message carries the reason, then a close.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use common::*;
use herald::config::IssuerConfig;
use herald_stomp::Command;
use jsonwebtoken::Algorithm::{self, *};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn pem_issuer(iss: &str, public_key: &str) -> IssuerConfig {
    IssuerConfig {
        issuer: iss.into(),
        public_key_file: auth_fixture(public_key),
        ..Default::default()
    }
}

fn jwks_issuer(iss: &str, file: &str) -> IssuerConfig {
    IssuerConfig {
        issuer: iss.into(),
        jwks_file: auth_fixture(file),
        ..Default::default()
    }
}

/// One issuer per key kind, plus JWKS issuers.
async fn server() -> TestServer {
    TestServer::with(|cfg| {
        cfg.auth.issuers = vec![
            secret_issuer("https://hs.test"),
            pem_issuer("https://rsa.test", "rsa1.pub.pem"),
            pem_issuer("https://ec256.test", "ec256.pub.pem"),
            pem_issuer("https://ec384.test", "ec384.pub.pem"),
            pem_issuer("https://ed.test", "ed25519.pub.pem"),
            IssuerConfig {
                audience: vec!["herald".into(), "herald-staging".into()],
                ..secret_issuer("https://aud.test")
            },
            jwks_issuer("https://jwks.test", "jwks.json"),
            jwks_issuer("https://a.test", "jwks_a.json"),
            jwks_issuer("https://b.test", "jwks_b.json"),
        ];
    })
    .await
}

fn key(name: &str) -> Vec<u8> {
    auth_fixture(name).into_bytes()
}

/// CONNECT over TCP with `Authorization: Bearer token`: `Ok(user-name)` or
/// `Err(ERROR message)` (and then the connection must close).
async fn try_token(s: &TestServer, token: &str) -> Result<String, String> {
    let bearer = format!("Bearer {token}");
    let (mut c, answer) = s
        .connect_headers(Transport::Tcp, &[("Authorization", &bearer)])
        .await;
    match answer.command {
        Command::Connected => Ok(answer.get("user-name").unwrap_or("").to_owned()),
        Command::Error => {
            let after = c.expect_closed().await;
            assert!(after.is_empty(), "frames after ERROR: {after:?}");
            Err(message_of(&answer).to_owned())
        }
        _ => panic!("CONNECT answered by {answer:?}"),
    }
}

async fn accepted(s: &TestServer, token: &str, what: &str) {
    match try_token(s, token).await {
        Ok(user) => assert_eq!(user, "alice", "{what}: CONNECTED names the sub"),
        Err(e) => panic!("{what}: refused with '{e}'"),
    }
}

async fn refused(s: &TestServer, token: &str, what: &str, reason: &str) {
    match try_token(s, token).await {
        Ok(user) => panic!("{what}: accepted as '{user}'"),
        Err(e) => {
            assert!(e.starts_with("authentication failed"), "{what}: {e}");
            assert!(
                e.to_lowercase().contains(&reason.to_lowercase()),
                "{what}: expected a reason containing '{reason}', got '{e}'"
            );
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Every algorithm a key family allows, paired with its issuer and signing key.
fn all_algorithms() -> Vec<(Algorithm, &'static str, Vec<u8>)> {
    let secret = TEST_SECRET.as_bytes().to_vec();
    vec![
        (HS256, "https://hs.test", secret.clone()),
        (HS384, "https://hs.test", secret.clone()),
        (HS512, "https://hs.test", secret),
        (RS256, "https://rsa.test", key("rsa1.key.pem")),
        (RS384, "https://rsa.test", key("rsa1.key.pem")),
        (RS512, "https://rsa.test", key("rsa1.key.pem")),
        (PS256, "https://rsa.test", key("rsa1.key.pem")),
        (ES256, "https://ec256.test", key("ec256.key.pem")),
        (ES384, "https://ec384.test", key("ec384.key.pem")),
        (EdDSA, "https://ed.test", key("ed25519.key.pem")),
    ]
}

#[tokio::test]
async fn every_algorithm_is_accepted_with_its_key() {
    let s = server().await;
    for (alg, iss, key) in all_algorithms() {
        let token = sign_jwt(alg, &key, None, &claims(iss, "alice", &[], 600));
        accepted(&s, &token, &format!("{alg:?}")).await;
    }
    // Over WebSocket too, the token in the handshake.
    let token = sign_jwt(
        EdDSA,
        &key("ed25519.key.pem"),
        None,
        &claims("https://ed.test", "alice", &[], 600),
    );
    let mut c = s
        .ws_with("/ws", &[("Authorization", &format!("Bearer {token}"))])
        .await
        .expect("handshake with a valid EdDSA token");
    let connected = c.connect("1.2").await;
    assert_eq!(connected.get("user-name"), Some("alice"), "{connected:?}");
}

#[tokio::test]
async fn forged_signatures_are_refused() {
    let s = server().await;
    for (alg, iss, key) in all_algorithms() {
        // The payload changed after signing (alice → root).
        let token = sign_jwt(alg, &key, None, &claims(iss, "alice", &[], 600));
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload =
            b64(&serde_json::to_vec(&claims(iss, "root", &["ADMIN"], 600)).unwrap());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        refused(
            &s,
            &forged,
            &format!("{alg:?} with a changed payload"),
            "signature",
        )
        .await;
    }
    // Signed by a key the issuer does not have.
    let other_secret = b"another-secret-that-is-long-enough-0123456789";
    let t = sign_jwt(
        HS256,
        other_secret,
        None,
        &claims("https://hs.test", "alice", &[], 600),
    );
    refused(&s, &t, "HS256 with another secret", "invalid signature").await;
    let t = sign_jwt(
        RS256,
        &key("rsa2.key.pem"),
        None,
        &claims("https://rsa.test", "alice", &[], 600),
    );
    refused(&s, &t, "RS256 with another RSA key", "invalid signature").await;
    let t = sign_jwt(
        ES256,
        &key("ec256.key.pem"),
        None,
        &claims("https://ed.test", "alice", &[], 600),
    );
    refused(&s, &t, "ES256 for an Ed25519 issuer", "not allowed").await;
    // A truncated signature, and garbage.
    let good = sign_jwt(
        RS256,
        &key("rsa1.key.pem"),
        None,
        &claims("https://rsa.test", "alice", &[], 600),
    );
    refused(&s, &good[..good.len() - 10], "truncated signature", "").await;
    refused(&s, "not-a-token", "garbage", "malformed token").await;
}

#[tokio::test]
async fn expired_tokens_are_refused_beyond_the_leeway() {
    let s = server().await;
    // Default leeway is 30 s; this one expired two minutes ago.
    let mut c = claims("https://hs.test", "alice", &[], -120);
    c["nbf"] = json!(unix_now() - 600);
    c["iat"] = json!(unix_now() - 600);
    let token = sign_jwt(HS256, TEST_SECRET.as_bytes(), None, &c);
    refused(&s, &token, "expired", "token expired").await;
    // The WebSocket handshake refuses it with 401 and the reason.
    let (status, body) = s
        .ws_handshake_raw("/ws", &[("Authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("token expired"), "{body}");
    // An RS256 one too.
    let token = sign_jwt(
        RS256,
        &key("rsa1.key.pem"),
        None,
        &c_with_iss(&c, "https://rsa.test"),
    );
    refused(&s, &token, "expired RS256", "token expired").await;
}

fn c_with_iss(c: &serde_json::Value, iss: &str) -> serde_json::Value {
    let mut c = c.clone();
    c["iss"] = json!(iss);
    c
}

#[tokio::test]
async fn tokens_not_yet_valid_are_refused() {
    let s = server().await;
    let mut c = claims("https://hs.test", "alice", &[], 3600);
    c["nbf"] = json!(unix_now() + 600);
    let token = sign_jwt(HS256, TEST_SECRET.as_bytes(), None, &c);
    refused(&s, &token, "nbf in 10 minutes", "not yet valid").await;
    // Within the leeway (30 s) it is fine: clocks differ a little.
    c["nbf"] = json!(unix_now() + 5);
    let token = sign_jwt(HS256, TEST_SECRET.as_bytes(), None, &c);
    accepted(&s, &token, "nbf 5 s ahead (leeway 30 s)").await;
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let s = server().await;
    let mut c = claims("https://hs.test", "alice", &[], 3600);
    c.as_object_mut().unwrap().remove("exp");
    let token = sign_jwt(HS256, TEST_SECRET.as_bytes(), None, &c);
    refused(&s, &token, "no exp", "exp").await;
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    let s = server().await;
    let t = hs_token("https://evil.test", "alice", &[]);
    refused(&s, &t, "unknown iss", "wrong issuer").await;
    // No iss at all: no issuer is configured for tokens without one.
    let t = hs_token("", "alice", &[]);
    refused(&s, &t, "no iss", "wrong issuer").await;
    // An issuer's key cannot vouch for another issuer: the HS secret does not belong
    // to the RSA issuer.
    let t = hs_token("https://rsa.test", "alice", &[]);
    refused(&s, &t, "HS secret for the RSA issuer", "not allowed").await;
}

#[tokio::test]
async fn audience_is_checked_when_configured() {
    let s = server().await;
    let with_aud = |aud: serde_json::Value| {
        let mut c = claims("https://aud.test", "alice", &[], 600);
        c["aud"] = aud;
        sign_jwt(HS256, TEST_SECRET.as_bytes(), None, &c)
    };
    accepted(&s, &with_aud(json!("herald")), "aud herald").await;
    accepted(&s, &with_aud(json!("herald-staging")), "aud herald-staging").await;
    accepted(
        &s,
        &with_aud(json!(["other", "herald"])),
        "aud list containing herald",
    )
    .await;
    refused(
        &s,
        &with_aud(json!("other-service")),
        "aud other-service",
        "wrong audience",
    )
    .await;
    refused(
        &s,
        &with_aud(json!(["a", "b"])),
        "aud list without herald",
        "wrong audience",
    )
    .await;
    // An issuer without audiences does not look at aud.
    let mut c = claims("https://hs.test", "alice", &[], 600);
    c["aud"] = json!("anything");
    accepted(
        &s,
        &sign_jwt(HS256, TEST_SECRET.as_bytes(), None, &c),
        "aud unchecked",
    )
    .await;
}

/// An issuer that names its audiences must not accept a token that names none: such
/// a token was not meant for this service.
#[tokio::test]
async fn audience_is_required_when_configured() {
    let s = server().await;
    let c = claims("https://aud.test", "alice", &[], 600);
    let t = sign_jwt(HS256, TEST_SECRET.as_bytes(), None, &c);
    refused(&s, &t, "no aud claim, issuer with audience", "aud").await;
}

#[tokio::test]
async fn unsigned_tokens_are_refused() {
    let s = server().await;
    let payload =
        b64(&serde_json::to_vec(&claims("https://hs.test", "alice", &["ADMIN"], 600)).unwrap());
    let valid = hs_token("https://hs.test", "alice", &[]);
    let valid_sig = valid.rsplit('.').next().unwrap();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        refused(
            &s,
            &format!("{header}.{payload}."),
            &format!("alg {alg}"),
            "alg none",
        )
        .await;
        refused(
            &s,
            &format!("{header}.{payload}.{valid_sig}"),
            &format!("alg {alg} with a signature"),
            "alg none",
        )
        .await;
    }
    // In the WebSocket handshake: 401.
    let header = b64(br#"{"alg":"none"}"#);
    let (status, body) = s
        .ws_handshake_raw(&format!("/ws?access_token={header}.{payload}."), &[])
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("alg none"), "{body}");
    // No alg at all.
    let header = b64(br#"{"typ":"JWT"}"#);
    refused(
        &s,
        &format!("{header}.{payload}.{valid_sig}"),
        "no alg",
        "malformed",
    )
    .await;
}

/// The classic confusion: the issuer verifies with an RSA (or EC, Ed25519) public key;
/// the attacker signs HS256 using that public key's PEM bytes as the HMAC secret.
#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let s = server().await;
    for (iss, pem) in [
        ("https://rsa.test", "rsa1.pub.pem"),
        ("https://ec256.test", "ec256.pub.pem"),
        ("https://ed.test", "ed25519.pub.pem"),
    ] {
        let public = std::fs::read(auth_fixture(pem)).unwrap();
        for alg in [HS256, HS384, HS512] {
            let t = sign_jwt(alg, &public, None, &claims(iss, "alice", &["ADMIN"], 600));
            refused(&s, &t, &format!("{alg:?} keyed with {pem}"), "not allowed").await;
        }
    }
    // A JWKS key cannot be used as an HMAC secret either: the JWK's `n` as the secret.
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(auth_fixture("jwks.json")).unwrap()).unwrap();
    let n = jwks["keys"][0]["n"].as_str().unwrap();
    let t = sign_jwt(
        HS256,
        n.as_bytes(),
        Some("k1"),
        &claims("https://jwks.test", "alice", &[], 600),
    );
    refused(&s, &t, "HS256 keyed with the JWK modulus", "not allowed").await;
    // Nor across families of asymmetric keys: ES256 for the RSA key's kid.
    let t = sign_jwt(
        ES256,
        &key("ec256.key.pem"),
        Some("k1"),
        &claims("https://jwks.test", "alice", &[], 600),
    );
    refused(&s, &t, "ES256 under an RSA kid", "not allowed").await;
}

#[tokio::test]
async fn kid_picks_the_key_within_an_issuer() {
    let s = server().await;
    let c = claims("https://jwks.test", "alice", &[], 600);
    accepted(
        &s,
        &sign_jwt(RS256, &key("rsa1.key.pem"), Some("k1"), &c),
        "kid k1 (RSA)",
    )
    .await;
    accepted(
        &s,
        &sign_jwt(ES256, &key("ec256.key.pem"), Some("k2"), &c),
        "kid k2 (EC)",
    )
    .await;
    refused(
        &s,
        &sign_jwt(RS256, &key("rsa1.key.pem"), Some("k9"), &c),
        "unknown kid",
        "no key with kid 'k9'",
    )
    .await;
    // The right kid with another key's signature.
    refused(
        &s,
        &sign_jwt(RS256, &key("rsa2.key.pem"), Some("k1"), &c),
        "kid k1 signed by another key",
        "invalid signature",
    )
    .await;
    // Without a kid every key of the issuer is tried.
    accepted(
        &s,
        &sign_jwt(RS256, &key("rsa1.key.pem"), None, &c),
        "no kid",
    )
    .await;
}

/// Issuers A and B both publish a key with kid `shared` (different keys). A token
/// claiming A but signed with B's key must not be accepted by looking the kid up at B.
#[tokio::test]
async fn kid_never_matches_across_issuers() {
    let s = server().await;
    let a = claims("https://a.test", "alice", &["ADMIN"], 600);
    let b = claims("https://b.test", "alice", &["ADMIN"], 600);
    accepted(
        &s,
        &sign_jwt(RS256, &key("rsa1.key.pem"), Some("shared"), &a),
        "A signed by A",
    )
    .await;
    accepted(
        &s,
        &sign_jwt(RS256, &key("rsa2.key.pem"), Some("shared"), &b),
        "B signed by B",
    )
    .await;
    refused(
        &s,
        &sign_jwt(RS256, &key("rsa2.key.pem"), Some("shared"), &a),
        "iss A signed by B's key",
        "invalid signature",
    )
    .await;
    refused(
        &s,
        &sign_jwt(RS256, &key("rsa1.key.pem"), Some("shared"), &b),
        "iss B signed by A's key",
        "invalid signature",
    )
    .await;
    // B's key under an unknown kid, claiming A: no fallback to any other issuer.
    refused(
        &s,
        &sign_jwt(RS256, &key("rsa2.key.pem"), Some("b-only"), &a),
        "iss A, unknown kid",
        "no key with kid",
    )
    .await;
}

/// A token from a trusted issuer that practically never expires must not break the
/// session (no overflow computing its expiry).
#[tokio::test]
async fn far_future_expiry_is_handled() {
    let s = server().await;
    for exp in [253_402_300_799u64, i64::MAX as u64, u64::MAX] {
        let mut c = claims("https://hs.test", "alice", &[], 0);
        c["exp"] = json!(exp);
        let t = sign_jwt(HS256, TEST_SECRET.as_bytes(), None, &c);
        let bearer = format!("Bearer {t}");
        let (mut c, answer) = s
            .connect_headers(Transport::Tcp, &[("Authorization", &bearer)])
            .await;
        assert!(
            matches!(answer.command, Command::Connected | Command::Error),
            "exp {exp}: {answer:?}"
        );
        if answer.command == Command::Connected {
            c.assert_works("/topic/far-future").await;
        }
    }
    // The server is still fine.
    accepted(
        &s,
        &hs_token("https://hs.test", "alice", &[]),
        "after far-future tokens",
    )
    .await;
}

// ---------------------------------------------------------------------------
// JWKS from a URL
// ---------------------------------------------------------------------------

/// A tiny HTTP server answering every request with the current JWKS document.
struct JwksServer {
    url: String,
    body: Arc<parking_lot::Mutex<String>>,
    hits: Arc<AtomicUsize>,
    delay: Arc<parking_lot::Mutex<Duration>>,
}

impl JwksServer {
    async fn start(body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let body = Arc::new(parking_lot::Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let delay = Arc::new(parking_lot::Mutex::new(Duration::ZERO));
        let (b, h, d) = (body.clone(), hits.clone(), delay.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (b, h, d) = (b.clone(), h.clone(), d.clone());
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut tmp = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&tmp[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let delay = *d.lock();
                    tokio::time::sleep(delay).await;
                    let body = b.lock().clone();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        JwksServer {
            url,
            body,
            hits,
            delay,
        }
    }

    fn set(&self, body: String) {
        *self.body.lock() = body;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn jwks_text(file: &str) -> String {
    std::fs::read_to_string(auth_fixture(file)).unwrap()
}

/// jwks.json with only its first key (k1, RSA).
fn jwks_k1_only() -> String {
    let mut v: serde_json::Value = serde_json::from_str(&jwks_text("jwks.json")).unwrap();
    v["keys"].as_array_mut().unwrap().truncate(1);
    v.to_string()
}

fn url_issuer(url: &str) -> IssuerConfig {
    IssuerConfig {
        issuer: "https://idp.test".into(),
        jwks_url: url.into(),
        ..Default::default()
    }
}

fn idp_token(key_file: &str, kid: &str) -> String {
    sign_jwt(
        RS256,
        &key(key_file),
        Some(kid),
        &claims("https://idp.test", "alice", &[], 600),
    )
}

/// Polls until `token` is accepted (bounded), for keys that arrive asynchronously.
async fn eventually_accepted(s: &TestServer, token: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match try_token(s, token).await {
            Ok(user) => {
                assert_eq!(user, "alice");
                return;
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: still refused after {WAIT:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn jwks_url_keys_are_loaded_and_rotation_is_picked_up() {
    let idp = JwksServer::start(jwks_k1_only()).await;
    let s = TestServer::with(|cfg| {
        cfg.auth.issuers = vec![url_issuer(&idp.url)];
        cfg.auth.jwks_refresh = Duration::from_millis(300);
    })
    .await;
    eventually_accepted(&s, &idp_token("rsa1.key.pem", "k1"), "k1 from the URL").await;
    refused(
        &s,
        &idp_token("rsa2.key.pem", "k3"),
        "k3 before rotation",
        "no key with kid 'k3'",
    )
    .await;
    // The identity provider rotates in k3; the periodic refresh picks it up.
    idp.set(jwks_text("jwks_rotated.json"));
    eventually_accepted(&s, &idp_token("rsa2.key.pem", "k3"), "k3 after rotation").await;
    accepted(&s, &idp_token("rsa1.key.pem", "k1"), "k1 still there").await;
    // A key the provider dropped stops working at the next refresh.
    idp.set(json!({ "keys": [] }).to_string());
    let deadline = tokio::time::Instant::now() + WAIT;
    while try_token(&s, &idp_token("rsa1.key.pem", "k1"))
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dropped key still verifies"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Without waiting for the periodic refresh: an unknown kid makes the verifier fetch
/// the JWKS again (at most once per interval, so random kids cannot hammer the IdP).
#[tokio::test]
async fn unknown_kid_triggers_one_jwks_refresh() {
    let idp = JwksServer::start(jwks_k1_only()).await;
    let mut cfg = herald::Config::default();
    cfg.auth.issuers = vec![url_issuer(&idp.url)];
    let verifier = herald::auth::jwt::Verifier::new(&cfg.auth)
        .unwrap()
        .expect("issuers configured");
    verifier.refresh().await;
    assert_eq!(idp.hits(), 1);
    let claims = tokio::time::timeout(WAIT, verifier.verify(&idp_token("rsa1.key.pem", "k1")))
        .await
        .unwrap()
        .expect("k1 verifies");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(idp.hits(), 1, "a known kid needs no fetch");

    let fresh = herald::auth::jwt::Verifier::new(&cfg.auth)
        .unwrap()
        .unwrap();
    idp.set(jwks_text("jwks_rotated.json"));
    // First use, nothing loaded yet: the unknown kid fetches the rotated set.
    let claims = tokio::time::timeout(WAIT, fresh.verify(&idp_token("rsa2.key.pem", "k3")))
        .await
        .unwrap()
        .expect("k3 verifies after an on-demand refresh");
    assert_eq!(claims["sub"], "alice");
    let hits = idp.hits();
    assert_eq!(hits, 2, "one on-demand fetch");
    for kid in ["x1", "x2", "x3", "x4"] {
        let e = tokio::time::timeout(WAIT, fresh.verify(&idp_token("rsa2.key.pem", kid)))
            .await
            .unwrap()
            .unwrap_err();
        assert!(e.contains(&format!("no key with kid '{kid}'")), "{e}");
    }
    assert_eq!(
        idp.hits(),
        hits,
        "unknown kids right after a refresh do not fetch again"
    );
}

/// Clients reconnecting right after a restart must not be refused because the first
/// JWKS fetch has not answered yet.
#[tokio::test]
async fn tokens_arriving_during_the_first_jwks_fetch_are_not_refused() {
    let idp = JwksServer::start(jwks_k1_only()).await;
    *idp.delay.lock() = Duration::from_millis(800);
    let s = TestServer::with(|cfg| {
        cfg.auth.issuers = vec![url_issuer(&idp.url)];
    })
    .await;
    // Connect while the first fetch is in flight, over WebSocket (the HTTP listener
    // serves from the start) and over TCP.
    wait_until("the first JWKS fetch to start", || idp.hits() >= 1).await;
    let t = idp_token("rsa1.key.pem", "k1");
    let (status, body) = s
        .ws_handshake_raw(&format!("/ws?access_token={t}"), &[])
        .await;
    assert_eq!(
        status, 101,
        "WebSocket handshake with a valid token while the JWKS was loading: {status} {body}"
    );
    match try_token(&s, &t).await {
        Ok(user) => assert_eq!(user, "alice"),
        Err(e) => panic!("a valid token was refused while the JWKS was loading: {e}"),
    }
}

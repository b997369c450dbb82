//! Browser origins, abuse limits and the REST API's credentials ([auth]).
//!
//! Every limit is checked while another session keeps working: a breach is refused
//! with a reason and never stalls anyone else.

mod common;

use std::time::{Duration, Instant};

use common::*;
use herald_stomp::{Command, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ISS: &str = "https://idp.test";

// ---------------------------------------------------------------------------
// Origins
// ---------------------------------------------------------------------------

#[tokio::test]
async fn default_origins_are_same_origin_and_localhost_in_protected_mode() {
    // No credentials configured: protected mode, where localhost pages are this
    // machine's own.
    let s = TestServer::start().await;
    let own = format!("http://{}", s.http);
    let port = s.http.port();
    for origin in [
        own.as_str(),
        "http://localhost:3000",
        "http://localhost",
        "https://127.0.0.1:8443",
        &format!("http://localhost:{port}"),
    ] {
        let mut c = s
            .ws_with("/ws", &[("Origin", origin)])
            .await
            .unwrap_or_else(|e| panic!("origin {origin} refused: {e}"));
        assert_eq!(c.connect("1.2").await.command, Command::Connected);
    }
    for origin in [
        "https://evil.example",
        "http://localhost.evil.example",
        "null",
        "http://127.0.0.2:3000",
    ] {
        let (status, body) = s.ws_handshake_raw("/ws", &[("Origin", origin)]).await;
        assert_eq!(status, 403, "origin {origin}: {body}");
        assert!(
            body.contains(&format!("'{origin}'")),
            "the reason names the origin: {body}"
        );
    }
    // Out of protected mode only the server's own origin: scheme, host and port.
    let s =
        TestServer::with(|cfg| cfg.auth.anonymous = herald::config::AnonymousAccess::Open).await;
    let own = format!("http://{}", s.http);
    s.ws_with("/ws", &[("Origin", own.as_str())])
        .await
        .expect("own origin");
    for origin in [
        "http://localhost:3000".to_owned(),
        "https://127.0.0.1:8443".to_owned(),
        format!("http://127.0.0.1:{}", s.http.port() + 1),
    ] {
        let (status, body) = s.ws_handshake_raw("/ws", &[("Origin", &origin)]).await;
        assert_eq!(status, 403, "origin {origin}: {body}");
    }
}

#[tokio::test]
async fn requests_without_origin_are_not_from_browsers_and_pass() {
    let s =
        TestServer::with(|cfg| cfg.auth.allowed_origins = vec!["https://app.example.com".into()])
            .await;
    let mut c = s.ws_with("/ws", &[]).await.expect("no Origin: accepted");
    assert_eq!(c.connect("1.2").await.command, Command::Connected);
}

#[tokio::test]
async fn configured_origin_patterns() {
    let s = TestServer::with(|cfg| {
        cfg.auth.allowed_origins = vec![
            "https://*.example.com".into(),
            "http://localhost:5173".into(),
        ];
    })
    .await;
    for ok in [
        "https://app.example.com",
        "https://a.b.example.com",
        "http://localhost:5173",
    ] {
        s.ws_with("/ws", &[("Origin", ok)])
            .await
            .unwrap_or_else(|e| panic!("{ok} refused: {e}"));
    }
    // Patterns replace the defaults: localhost on another port and the server's own
    // origin are no longer implied.
    for bad in [
        "https://example.com.evil.net",
        "http://app.example.com",
        "https://example.org",
        "http://localhost:3000",
    ] {
        let (status, body) = s.ws_handshake_raw("/ws", &[("Origin", bad)]).await;
        assert_eq!(status, 403, "{bad}: {body}");
        assert!(body.contains(bad), "{body}");
    }
    let s = TestServer::with(|cfg| cfg.auth.allowed_origins = vec!["*".into()]).await;
    s.ws_with("/ws", &[("Origin", "https://anything.test")])
        .await
        .expect("* allows all");
}

#[tokio::test]
async fn origin_is_checked_before_the_token() {
    let s = TestServer::with(|cfg| {
        cfg.auth.issuers = vec![secret_issuer(ISS)];
        cfg.auth.required = true;
    })
    .await;
    let t = hs_token(ISS, "alice", &[]);
    let (status, body) = s
        .ws_handshake_raw(
            &format!("/ws?access_token={t}"),
            &[("Origin", "https://evil.example")],
        )
        .await;
    assert_eq!(
        status, 403,
        "a valid token from a foreign page is still refused: {body}"
    );
}

// ---------------------------------------------------------------------------
// Abuse limits
// ---------------------------------------------------------------------------

#[tokio::test]
async fn connections_per_ip_are_limited() {
    let s = TestServer::with(|cfg| cfg.limits.max_connections_per_ip = 2).await;
    let mut a = s.tcp().await;
    let mut b = s.ws().await;
    // Third over TCP: an ERROR frame naming the limit, then the close.
    let mut c = s.open(Transport::Tcp).await;
    let e = c.expect_error_and_close().await;
    let m = message_of(&e);
    assert!(
        m.contains("too many connections from 127.0.0.1") && m.contains("limit 2"),
        "{m}"
    );
    // Third over WebSocket: 429 with the reason.
    let (status, body) = s.ws_handshake_raw("/ws", &[]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("limit 2"), "{body}");
    // The two admitted keep working.
    a.assert_works("/topic/ip-a").await;
    b.assert_works("/topic/ip-b").await;
    // Every connection counts, plain HTTP too.
    let (status, body) = s.http_get_raw("/health").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("limits.max_connections_per_ip"), "{body}");
    // A closed connection gives its place back.
    a.disconnect().await;
    let mut d = None;
    for _ in 0..50 {
        let mut c = s.open(Transport::Tcp).await;
        let answer = c.connect("1.2").await;
        if answer.command == Command::Connected {
            d = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.expect("a place is free again after a disconnect")
        .assert_works("/topic/ip-d")
        .await;
}

#[tokio::test]
async fn sessions_per_user_are_limited() {
    let s = TestServer::with(|cfg| {
        cfg.auth.issuers = vec![secret_issuer(ISS)];
        cfg.limits.max_connections_per_user = 2;
    })
    .await;
    let t = hs_token(ISS, "alice", &[]);
    let (mut a1, _) = s.connect_ok(Transport::Tcp, &[("passcode", &t)]).await;
    let (a2, _) = s.connect_ok(Transport::Ws, &[("passcode", &t)]).await;
    for transport in BOTH {
        let (mut c, answer) = s.connect_headers(transport, &[("passcode", &t)]).await;
        assert_eq!(answer.command, Command::Error, "{answer:?}");
        let m = message_of(&answer);
        assert!(
            m.contains("too many sessions for user 'alice'") && m.contains("limit 2"),
            "{m}"
        );
        c.expect_closed().await;
    }
    // Others are not affected; alice's sessions keep working.
    let (mut bob, _) = s
        .connect_ok(Transport::Tcp, &[("passcode", &hs_token(ISS, "bob", &[]))])
        .await;
    bob.assert_works("/topic/u-bob").await;
    a1.assert_works("/topic/u-a1").await;
    // Anonymous sessions have distinct generated names: not limited together.
    let _anon: Vec<_> =
        futures_util::future::join_all((0..3).map(|_| s.connect_ok(Transport::Tcp, &[]))).await;
    // A session that ends frees its place.
    a2.disconnect().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_c, answer) = s.connect_headers(Transport::Tcp, &[("passcode", &t)]).await;
        if answer.command == Command::Connected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's place was not given back: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sessions_per_user_in_anonymous_mode_count_login_names() {
    let s = TestServer::with(|cfg| cfg.limits.max_connections_per_user = 1).await;
    let (mut a, _) = s.connect_as(Transport::Tcp, "alice").await;
    let mut c = s.open(Transport::Ws).await;
    let answer = c.connect_with(connect_frame(&[("login", "alice")])).await;
    assert_eq!(answer.command, Command::Error, "{answer:?}");
    assert!(
        message_of(&answer).contains("too many sessions for user 'alice'"),
        "{answer:?}"
    );
    a.assert_works("/topic/anon-limit").await;
}

#[tokio::test]
async fn subscriptions_per_session_are_limited() {
    let s = TestServer::with(|cfg| cfg.limits.max_subscriptions_per_session = 3).await;
    for transport in BOTH {
        let mut other = s.connect(transport).await;
        other.subscribe("o", "/topic/sub-other").await;
        let mut c = s.connect(transport).await;
        for i in 0..3 {
            c.subscribe(&format!("s{i}"), &format!("/topic/sub/{i}"))
                .await;
        }
        // Freeing one makes room.
        c.unsubscribe("s0").await;
        c.subscribe("s3", "/topic/sub/3").await;
        c.send_frame(
            &Frame::new(Command::Subscribe)
                .header("id", "s4")
                .header("destination", "/topic/sub/4"),
        )
        .await;
        let e = c.expect_error_and_close().await;
        assert!(
            message_of(&e).contains("too many subscriptions for this session (limit 3)"),
            "{e:?}"
        );
        other.publish("/topic/sub-other", "fine").await;
        assert_eq!(other.recv_body().await, "fine");
    }
}

#[tokio::test]
async fn inbound_frame_rate_is_limited() {
    let s = TestServer::with(|cfg| {
        cfg.limits.frame_rate = 20;
        cfg.limits.frame_burst = 10;
    })
    .await;
    for transport in BOTH {
        let mut calm = s.connect(transport).await;
        let mut flood = s.connect(transport).await;
        // A burst well over the bucket: 60 SENDs at once.
        let mut bytes = Vec::new();
        for i in 0..60 {
            let mut out = bytes::BytesMut::new();
            herald_stomp::encode(
                &send("/topic/flood", &format!("{i}")),
                herald_stomp::Version::V1_2,
                &mut out,
            );
            bytes.extend_from_slice(&out);
        }
        let _ = flood.try_send_raw(&bytes).await;
        let frames = flood.expect_closed().await;
        let e = frames.last().expect("an ERROR before the close");
        assert_eq!(e.command, Command::Error, "{frames:?}");
        assert!(message_of(e).contains("frame rate limit exceeded"), "{e:?}");
        // A session under the rate is never refused: 15 frames at 10 per second.
        calm.subscribe("c", "/topic/calm").await;
        for i in 0..15 {
            calm.publish_nowait("/topic/calm", &format!("{i}")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for i in 0..15 {
            assert_eq!(calm.recv_body().await, format!("{i}"));
        }
    }
}

#[tokio::test]
async fn connect_timeout_closes_silent_connections() {
    let s = TestServer::with(|cfg| cfg.stomp.connect_timeout = Duration::from_millis(400)).await;
    let mut other = s.tcp().await;
    for transport in BOTH {
        let start = Instant::now();
        let mut c = s.open(transport).await;
        let frames = c.expect_closed_within(Duration::from_secs(3)).await;
        let e = frames.last().expect("an ERROR before the close");
        assert!(message_of(e).contains("no CONNECT frame within"), "{e:?}");
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
    }
    // Connected sessions are not bound by it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    other.assert_works("/topic/ct").await;
}

/// Reads from `stream` until the server closes it; `false` if still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn handshake_timeout_closes_clients_that_never_send_headers() {
    let s = TestServer::with(|cfg| cfg.limits.handshake_timeout = Duration::from_millis(500)).await;
    let mut other = s.ws().await;
    // Part of a request, then nothing (slowloris).
    let mut partial = TcpStream::connect(s.http).await.unwrap();
    partial
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Nothing at all.
    let mut silent = TcpStream::connect(s.http).await.unwrap();
    let start = Instant::now();
    assert!(
        closed_within(&mut partial, Duration::from_secs(3)).await,
        "partial headers: still open after 3 s"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)).await,
        "a client that never sent a byte is still connected {:?} later (handshake_timeout 500 ms)",
        start.elapsed()
    );
    other.assert_works("/topic/hs").await;
}

// ---------------------------------------------------------------------------
// REST API credentials
// ---------------------------------------------------------------------------

const PUBLISH: &str = r#"{"destination":"/topic/rest","body":"hello"}"#;
const TO_USER: &str = r#"{"destination":"/queue/inbox","body":"hello"}"#;

async fn post(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let body = if path == "/api/publish" {
        PUBLISH
    } else {
        TO_USER
    };
    s.http_with_headers("POST", path, headers, body).await
}

const PATHS: [&str; 2] = ["/api/publish", "/api/users/alice/messages"];

#[tokio::test]
async fn rest_api_is_open_in_anonymous_mode_without_api_keys() {
    let s = TestServer::start().await;
    let mut sub = s.tcp().await;
    sub.subscribe("r", "/topic/rest").await;
    for path in PATHS {
        let (status, body) = post(&s, path, &[]).await;
        assert_eq!(status, 202, "{path}: {body}");
    }
    assert_eq!(sub.recv_body().await, "hello");
}

#[tokio::test]
async fn rest_api_with_api_keys() {
    let s = TestServer::with(|cfg| cfg.auth.api_keys = vec!["k-123".into(), "k-456".into()]).await;
    for path in PATHS {
        for key in ["k-123", "k-456"] {
            let (status, body) = post(&s, path, &[("X-API-Key", key)]).await;
            assert_eq!(status, 202, "{path} {key}: {body}");
        }
        for key in ["wrong", "k-12", ""] {
            let (status, body) = post(&s, path, &[("X-API-Key", key)]).await;
            assert_eq!(status, 401, "{path} '{key}': {body}");
        }
        let (status, body) = post(&s, path, &[]).await;
        assert_eq!(status, 401, "{path} without a key: {body}");
        // A bearer token is no use without issuers.
        let (status, body) = post(
            &s,
            path,
            &[(
                "Authorization",
                &format!("Bearer {}", hs_token(ISS, "svc", &["SERVICE"])),
            )],
        )
        .await;
        assert_eq!(status, 401, "{path} bearer without issuers: {body}");
    }
}

#[tokio::test]
async fn rest_api_with_issuers_needs_the_service_or_admin_role() {
    let s = TestServer::with(|cfg| cfg.auth.issuers = vec![secret_issuer(ISS)]).await;
    let mut alice = s
        .connect_ok(
            Transport::Tcp,
            &[("passcode", &hs_token(ISS, "alice", &[]))],
        )
        .await
        .0;
    alice.subscribe("i", "/user/queue/inbox").await;
    for path in PATHS {
        for roles in [&["SERVICE"][..], &["ADMIN"], &["USER", "SERVICE"]] {
            let t = hs_token(ISS, "svc", roles);
            let (status, body) = post(&s, path, &[("Authorization", &format!("Bearer {t}"))]).await;
            assert_eq!(status, 202, "{path} {roles:?}: {body}");
        }
        let t = hs_token(ISS, "svc", &["USER"]);
        let (status, body) = post(&s, path, &[("Authorization", &format!("Bearer {t}"))]).await;
        assert_eq!(status, 403, "{path} without the role: {body}");
        assert!(body.contains("SERVICE"), "{body}");
        let (status, body) = post(&s, path, &[]).await;
        assert_eq!(status, 401, "{path} without credentials: {body}");
        let bad = hs_token("https://evil.test", "svc", &["SERVICE"]);
        let (status, body) = post(&s, path, &[("Authorization", &format!("Bearer {bad}"))]).await;
        assert_eq!(status, 401, "{path} with a foreign token: {body}");
        let mut c = claims(ISS, "svc", &["SERVICE"], -300);
        c["nbf"] = serde_json::json!(unix_now() - 600);
        let expired = sign_jwt(
            jsonwebtoken::Algorithm::HS256,
            TEST_SECRET.as_bytes(),
            None,
            &c,
        );
        let (status, body) =
            post(&s, path, &[("Authorization", &format!("Bearer {expired}"))]).await;
        assert_eq!(status, 401, "{path} with an expired token: {body}");
        assert!(body.contains("token expired"), "{body}");
    }
    assert_eq!(alice.recv_body().await, "hello");
}

#[tokio::test]
async fn rest_api_service_role_is_configurable_and_keys_work_alongside_tokens() {
    let s = TestServer::with(|cfg| {
        cfg.auth.issuers = vec![secret_issuer(ISS)];
        cfg.auth.api_keys = vec!["k-1".into()];
        cfg.auth.service_role = "publisher".into();
    })
    .await;
    let t = hs_token(ISS, "svc", &["publisher"]);
    assert_eq!(
        post(
            &s,
            "/api/publish",
            &[("Authorization", &format!("Bearer {t}"))]
        )
        .await
        .0,
        202
    );
    let t = hs_token(ISS, "svc", &["SERVICE"]);
    assert_eq!(
        post(
            &s,
            "/api/publish",
            &[("Authorization", &format!("Bearer {t}"))]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        post(&s, "/api/publish", &[("X-API-Key", "k-1")]).await.0,
        202
    );
    assert_eq!(
        post(&s, "/api/publish", &[("X-API-Key", "nope")]).await.0,
        401
    );
}

/// The per-user counter keeps only users with a live session: many users that come
/// and go leave nothing behind.
#[tokio::test]
async fn per_user_counts_are_forgotten_when_sessions_end() {
    let s = TestServer::with(|cfg| cfg.limits.max_connections_per_user = 2).await;
    let mut clients = Vec::new();
    for i in 0..30 {
        clients.push(s.connect_as(Transport::Tcp, &format!("passer-{i}")).await.0);
    }
    let counter = s.node.sessions_per_user.clone();
    assert!(counter.keys() >= 30, "{} users counted", counter.keys());
    for c in clients {
        c.disconnect().await;
    }
    wait_until("every user's count is removed", || counter.keys() == 0).await;
}

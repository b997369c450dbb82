//! Operations: metric names on /metrics, health states, and the admin API (sessions,
//! disconnects, destinations, info without secrets) with its access rules.

mod common;

use std::time::Duration;

use common::*;
use herald::config::IssuerConfig;
use herald_stomp::Command;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "ops-test-secret-0123456789abcdef0123";
const ADMIN_KEY: &str = "admin-key-0123456789";
const ADMIN: (&str, &str) = ("X-API-Key", ADMIN_KEY);

/// An API key whose principal has the admin role.
fn admin_key() -> herald::config::ApiKeyConfig {
    herald::config::ApiKeyConfig::Full {
        key: ADMIN_KEY.into(),
        principal: "ops".into(),
        roles: vec!["ADMIN".into()],
    }
}

/// A server whose admin API the tests reach with [`ADMIN`]: the admin API goes by
/// role only, never by the (loopback) peer address.
async fn admin_server() -> TestServer {
    TestServer::with(|c| c.auth.api_keys = vec![admin_key()]).await
}

/// An HTTP request with extra headers; returns (status, body as JSON or as a string).
async fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let fut = async {
        let mut s = TcpStream::connect(server.http).await.unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n",
            server.http
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.unwrap();
        resp
    };
    let resp = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("HTTP answer in time");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

#[tokio::test]
async fn metrics_expose_the_documented_names() {
    let server = TestServer::start().await;
    let mut sub = server.ws().await;
    sub.subscribe("s", "/topic/metrics").await;
    let mut tcp = server.tcp().await;
    tcp.publish("/topic/metrics", "hello").await;
    assert_eq!(sub.recv_body().await, "hello");
    let mut bad = server.tcp().await;
    bad.send_raw(b"NOPE\n\n\0").await;
    bad.expect_error_and_close().await;
    // An application handler runs (the greeting app): its time is recorded.
    tcp.request(send("/app/hello", r#"{"name":"metrics"}"#))
        .await;

    let (status, _) = server
        .http_post_json("/api/notifications", r#"{"user":"m-user","message":"hi"}"#)
        .await;
    assert_eq!(status, 201, "a notification is created");

    let (status, body) = request(&server, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("text exposition").to_owned();
    for name in [
        "herald_connections_opened_total{transport=\"websocket\"}",
        "herald_connections_opened_total{transport=\"tcp\"}",
        "herald_connections{",
        "herald_sessions",
        "herald_subscriptions",
        "herald_destinations",
        "herald_frames_in_total{command=\"SEND\"}",
        "herald_frames_out_total{command=\"MESSAGE\"}",
        "herald_bytes_in_total",
        "herald_bytes_out_total",
        "herald_messages_published_total",
        "herald_messages_delivered_total",
        "herald_error_frames_total{reason=\"protocol\"}",
        "herald_notifications_created_total",
        "herald_notifications_delivered_total",
        "herald_database_seconds",
        "herald_app_handler_seconds",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
}

/// The value of a sample (a name with its labels, if any) in a /metrics text.
fn gauge_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_the_runtime_tasks() {
    let server = TestServer::start().await;
    let tasks = || async {
        let (status, body) = request(&server, "GET", "/metrics", &[]).await;
        assert_eq!(status, 200);
        let text = body.as_str().expect("text exposition").to_owned();
        gauge_value(&text, "herald_runtime_tasks")
            .unwrap_or_else(|| panic!("/metrics lacks herald_runtime_tasks:\n{text}"))
    };
    // The gauge is process-wide, and another test of this file may scrape its own
    // runtime between our set and render: a few attempts ride over that.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let before = tasks().await;
        let mut sessions = Vec::new();
        for _ in 0..5 {
            let mut c = server.ws().await;
            c.subscribe("s", "/topic/tasks").await;
            sessions.push(c);
        }
        let after = tasks().await;
        drop(sessions);
        seen.push((before, after));
        if before >= 1.0 && after >= before + 5.0 {
            return;
        }
    }
    panic!("5 sessions should add 5 connection tasks; (before, after): {seen:?}");
}

#[tokio::test]
async fn health_live_and_ready() {
    let server = TestServer::start().await;
    assert_eq!(request(&server, "GET", "/health/live", &[]).await.0, 200);
    let (status, body) = request(&server, "GET", "/health/ready", &[]).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let (status, _) = request(&server, "GET", "/health", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_failing_dependency_makes_ready_answer_503() {
    let server = TestServer::start().await;
    server.node.add_ready_check(
        "database",
        std::sync::Arc::new(|| Box::pin(async { Err("connection refused".to_owned()) })),
    );
    let (status, body) = request(&server, "GET", "/health/ready", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(body["failing"]["database"], "connection refused");
    assert_eq!(
        request(&server, "GET", "/health/live", &[]).await.0,
        200,
        "live is not readiness"
    );
}

#[tokio::test]
async fn admin_lists_sessions_and_destinations() {
    let server = admin_server().await;
    let (mut alice, _) = server.connect_as(Transport::Ws, "alice").await;
    alice.subscribe("a1", "/topic/news").await;
    alice.subscribe("a2", "/queue/jobs").await;
    let (mut bob, _) = server.connect_as(Transport::Tcp, "bob").await;
    bob.subscribe("b1", "/topic/news").await;

    let (status, list) = request(&server, "GET", "/api/admin/sessions", &[ADMIN]).await;
    assert_eq!(status, 200, "{list}");
    let sessions = list.as_array().unwrap();
    let a = sessions
        .iter()
        .find(|s| s["user"] == "alice")
        .expect("alice listed");
    assert_eq!(a["transport"], "websocket");
    assert_eq!(a["node"], server.node.id.as_str());
    assert!(a["connectedAt"].as_str().unwrap().ends_with('Z'));
    assert!(a["lastActivity"].as_str().is_some());
    let subs: Vec<&str> = a["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["destination"].as_str().unwrap())
        .collect();
    assert_eq!(subs.len(), 2);
    assert!(subs.contains(&"/topic/news") && subs.contains(&"/queue/jobs"));
    let b = sessions
        .iter()
        .find(|s| s["user"] == "bob")
        .expect("bob listed");
    assert_eq!(b["transport"], "tcp");

    let (status, dests) = request(&server, "GET", "/api/admin/destinations", &[ADMIN]).await;
    assert_eq!(status, 200);
    let news = dests
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == "/topic/news")
        .expect("news listed");
    assert_eq!(news["subscribers"], 2);
}

#[tokio::test]
async fn admin_disconnects_one_session_or_every_session_of_a_user() {
    let server = admin_server().await;
    let (mut a1, c1) = server.connect_as(Transport::Tcp, "alice").await;
    let (mut a2, _) = server.connect_as(Transport::Ws, "alice").await;
    let (mut a3, _) = server.connect_as(Transport::Tcp, "alice").await;
    let (mut bob, _) = server.connect_as(Transport::Tcp, "bob").await;
    let id = c1.get("session").unwrap().to_owned();

    let (status, _) = request(
        &server,
        "DELETE",
        &format!("/api/admin/sessions/{id}"),
        &[ADMIN],
    )
    .await;
    assert_eq!(status, 204);
    let e = a1.expect_error_and_close().await;
    assert_eq!(e.command, Command::Error);
    assert!(
        message_of(&e).contains("disconnected by an administrator"),
        "{e:?}"
    );
    let (status, body) = request(
        &server,
        "DELETE",
        &format!("/api/admin/sessions/{id}"),
        &[ADMIN],
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = request(
        &server,
        "DELETE",
        "/api/admin/users/alice/sessions",
        &[ADMIN],
    )
    .await;
    assert_eq!((status, body["disconnected"].as_u64()), (200, Some(2)));
    for c in [&mut a2, &mut a3] {
        assert!(message_of(&c.expect_error_and_close().await).contains("administrator"));
    }
    bob.subscribe("b", "/topic/still").await;
    bob.publish("/topic/still", "here").await;
    assert_eq!(bob.recv_body().await, "here", "other users are untouched");
}

#[tokio::test]
async fn admin_info_hides_secrets() {
    let server = TestServer::with(|c| {
        c.auth.api_keys = vec!["k-123".into(), admin_key()];
        c.auth.issuers = vec![IssuerConfig {
            issuer: "ops".into(),
            secret: SECRET.into(),
            ..IssuerConfig::default()
        }];
    })
    .await;
    let (status, info) = request(&server, "GET", "/api/admin/info", &[ADMIN]).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["node"], server.node.id.as_str());
    assert!(info["uptimeSeconds"].as_u64().is_some());
    let text = info.to_string();
    assert!(
        !text.contains(SECRET) && !text.contains("k-123") && !text.contains(ADMIN_KEY),
        "secret leaked: {text}"
    );
    assert_eq!(info["settings"]["auth"]["issuers"][0]["secret"], "***");
}

#[tokio::test]
async fn admin_api_needs_a_key_or_an_admin_token() {
    let server = TestServer::with(|c| {
        c.auth.api_keys = vec!["k-123".into(), admin_key()];
        c.auth.issuers = vec![IssuerConfig {
            issuer: "ops".into(),
            secret: SECRET.into(),
            ..IssuerConfig::default()
        }];
    })
    .await;
    let path = "/api/admin/sessions";
    assert_eq!(
        request(&server, "GET", path, &[]).await.0,
        401,
        "no credentials"
    );
    assert_eq!(
        request(&server, "GET", path, &[("X-API-Key", "wrong")])
            .await
            .0,
        401
    );
    // A plain key is a service's, not an administrator's.
    let (status, body) = request(&server, "GET", path, &[("X-API-Key", "k-123")]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    assert!(body["error"].as_str().unwrap().contains("ADMIN"), "{body}");
    assert_eq!(request(&server, "GET", path, &[ADMIN]).await.0, 200);
    let mint = |roles: &[&str]| {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        herald::auth::jwt::mint(
            &server.node.config.auth,
            None,
            "op",
            None,
            &roles,
            Duration::from_secs(60),
        )
        .unwrap()
    };
    let admin = format!("Bearer {}", mint(&["ADMIN"]));
    let user = format!("Bearer {}", mint(&["USER"]));
    assert_eq!(
        request(&server, "GET", path, &[("Authorization", &admin)])
            .await
            .0,
        200
    );
    let (status, body) = request(&server, "GET", path, &[("Authorization", &user)]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("ADMIN"));
}

/// ERROR frames are counted by what went wrong, not by what their text happens to
/// say: a destination that contains "slow consumer" is still an unknown destination.
#[tokio::test]
async fn error_frames_are_counted_by_kind_not_by_text() {
    let server = TestServer::start().await;
    let mut c = server.tcp().await;
    c.send_raw(b"SEND\ndestination:/elsewhere/slow consumer\n\nx\0")
        .await;
    let e = c.expect_error_and_close().await;
    assert!(message_of(&e).contains("unknown destination"), "{e:?}");
    let (status, body) = request(&server, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("text exposition").to_owned();
    assert!(
        text.contains("herald_error_frames_total{reason=\"destination\"}"),
        "{text}"
    );
    // No test of this file closes a slow consumer: a count would be the text's doing.
    assert_eq!(
        gauge_value(&text, "herald_error_frames_total{reason=\"slow_consumer\"}"),
        Some(0.0),
        "{text}"
    );
}

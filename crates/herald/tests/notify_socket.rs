//! Notifications over the plain JSON WebSocket (`/ws/notify`, `/notifications`): seed
//! 003's client, which names its user with `?userId=` or an INIT message, in protected
//! mode; the principal of a token everywhere else, whatever the client claims.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::Duration;

use common::*;
use herald::broker::Kind;
use redis_server::{RedisServer, listening, node_with};
use serde_json::{Value, json};

const ISS: &str = "https://notify-socket.test";
const KEY: &str = "notify-socket-service-key";

/// A notification through the REST API, as a backend sends one; its id.
async fn notify(server: &TestServer, headers: &[(&str, &str)], body: Value) -> i64 {
    let (status, answer) = server
        .http_call(
            "POST",
            "/api/notifications",
            headers,
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    answer["ids"][0].as_i64().expect("an id")
}

/// PING answered: the session is open and every earlier message was handled.
async fn alive(ws: &mut PlainWs) {
    ws.send(json!({ "type": "PING" })).await;
    assert_eq!(ws.recv().await, json!({ "type": "PONG" }));
}

async fn open(server: &TestServer, path: &str) -> PlainWs {
    PlainWs::open(server.http, path).await
}

#[tokio::test]
async fn seed_003s_client_gets_its_users_notifications_and_the_broadcasts() {
    let server = TestServer::start().await;
    // The seed's two ways to say who it is: the query, or INIT after opening.
    let mut by_query = open(&server, "/notifications?userId=123").await;
    let mut by_init = open(&server, "/ws/notify").await;
    by_init
        .send(json!({ "type": "INIT", "userId": 456, "device": "web" }))
        .await;
    alive(&mut by_query).await;
    alive(&mut by_init).await;

    let id = notify(
        &server,
        &[],
        json!({ "user": "123", "type": "alarm", "message": "새 알림이 도착했습니다." }),
    )
    .await;
    let got = by_query.recv().await;
    assert_eq!(got["type"], "notification", "{got}");
    assert_eq!(got["kind"], "alarm", "{got}");
    assert_eq!(got["message"], "새 알림이 도착했습니다.");
    assert_eq!(got["memberId"], "123");
    assert_eq!(got["notificationId"], id);
    notify(&server, &[], json!({ "user": "456", "message": "for 456" })).await;
    assert_eq!(by_init.recv().await["message"], "for 456");
    // Each got only its own.
    alive(&mut by_query).await;

    notify(
        &server,
        &[],
        json!({ "broadcast": true, "message": "to everyone" }),
    )
    .await;
    for ws in [&mut by_query, &mut by_init] {
        let got = ws.recv().await;
        assert_eq!(
            (got["type"].as_str(), got["broadcast"].as_bool()),
            (Some("notification"), Some(true))
        );
        assert_eq!(got["message"], "to everyone");
    }

    // READ marks read; every session of the user gets the read event.
    by_query.send(json!({ "type": "READ", "ids": [id] })).await;
    let read = by_query.recv().await;
    assert_eq!(read["type"], "read", "{read}");
    assert_eq!(read["ids"], json!([id]));
    assert_eq!(read["unreadCount"], 1, "the broadcast is still unread");

    // Job progress reaches the job's user.
    let (status, answer) = server
        .http_call(
            "POST",
            "/api/jobs/export-1/progress",
            &[],
            Some(&json!({ "user": "456", "percent": 40, "status": "running" }).to_string()),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let job = by_init.recv().await;
    assert_eq!(
        (job["type"].as_str(), job["percent"].as_f64()),
        (Some("job"), Some(40.0)),
        "{job}"
    );

    // Anything else is an ERROR naming the problem; the session stays.
    by_init
        .send(json!({ "type": "SUBSCRIBE", "destination": "/topic/x" }))
        .await;
    let e = by_init.recv().await;
    assert_eq!(e["type"], "ERROR");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("INIT, READ or PING"),
        "{e}"
    );
    by_init.send_text("not json").await;
    assert_eq!(by_init.recv().await["type"], "ERROR");
    by_init
        .send(json!({ "type": "INIT", "userId": "789" }))
        .await;
    let e = by_init.recv().await;
    assert!(
        e["message"].as_str().unwrap().contains("456"),
        "named once: {e}"
    );
    alive(&mut by_init).await;
}

/// With a token the session is the token's user: neither `?userId=` nor INIT's
/// `userId` makes it deliver another user's notifications.
#[tokio::test]
async fn a_token_decides_whose_notifications_arrive() {
    let server = TestServer::with(|c| {
        c.auth.issuers = vec![secret_issuer(ISS)];
        c.auth.api_keys = vec![KEY.into()];
    })
    .await;
    let alice = hs_token(ISS, "alice", &[]);
    let mut ws = open(
        &server,
        &format!("/ws/notify?access_token={alice}&userId=bob"),
    )
    .await;
    ws.send(json!({ "type": "INIT", "userId": "bob", "device": "phone" }))
        .await;
    let e = ws.recv().await;
    assert_eq!(e["type"], "ERROR");
    assert!(e["message"].as_str().unwrap().contains("alice"), "{e}");

    let key = [("X-API-Key", KEY)];
    notify(
        &server,
        &key,
        json!({ "user": "bob", "message": "bob's secret" }),
    )
    .await;
    notify(
        &server,
        &key,
        json!({ "user": "alice", "message": "for alice" }),
    )
    .await;
    let got = ws.recv().await;
    assert_eq!(got["message"], "for alice", "bob's never arrives: {got}");
    alive(&mut ws).await;

    // INIT's device is kept for the admin API, beside the user.
    let root = format!("Bearer {}", hs_token(ISS, "root", &["ADMIN"]));
    let (status, sessions) = server
        .http_call(
            "GET",
            "/api/admin/sessions",
            &[("Authorization", &root)],
            None,
        )
        .await;
    assert_eq!(status, 200, "{sessions}");
    let metas: Vec<&Value> = sessions
        .as_array()
        .unwrap_or_else(|| panic!("{sessions}"))
        .iter()
        .filter_map(|s| s.get("meta"))
        .collect();
    assert_eq!(
        metas,
        [&json!({ "device": "phone", "protocol": "plain", "user": "alice" })],
        "{sessions}"
    );

    // Without a token, where credentials are configured, the query names nobody.
    let mut anonymous = open(&server, "/notifications?userId=bob").await;
    notify(&server, &key, json!({ "user": "bob", "message": "again" })).await;
    alive(&mut anonymous).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    alive(&mut anonymous).await;
}

/// Created on one node, a user's notification and a broadcast reach the plain sockets
/// on another (the cluster bus over a real Redis).
#[tokio::test]
async fn notifications_reach_plain_sockets_on_another_node() {
    let redis = RedisServer::start();
    let (a, b) = (
        node_with(&redis, |_| {}).await,
        node_with(&redis, |_| {}).await,
    );
    let mut on_b = open(&b, "/ws/notify?userId=123").await;
    alive(&mut on_b).await;
    listening(&b, Kind::Topic, "/topic/notifications").await;
    listening(&b, Kind::Topic, "/user/123/queue/notifications").await;

    notify(&a, &[], json!({ "user": "123", "message": "from node a" })).await;
    let got = on_b.recv().await;
    assert_eq!(
        (got["type"].as_str(), got["message"].as_str()),
        (Some("notification"), Some("from node a"))
    );
    notify(
        &a,
        &[],
        json!({ "broadcast": true, "message": "everyone, from a" }),
    )
    .await;
    assert_eq!(on_b.recv().await["message"], "everyone, from a");
}

//! Cluster presence, shared rooms, confirmed publishes, wildcard queues and
//! consumer-group hygiene over a real redis-server.

mod common;
#[path = "common/redis_cluster.rs"]
mod redis_cluster;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::Duration;

use common::*;
use herald::broker::Kind;
use herald_stomp::{Command, Frame};
use redis_cluster::RedisCluster;
use redis_server::{RedisServer, RedisUrl, listening, node_with};
use serde_json::Value;

async fn node(redis: &impl RedisUrl) -> TestServer {
    node_with(redis, |c| c.auth.default_rules = false).await
}

async fn get_json(server: &TestServer, path: &str) -> (u16, Value) {
    let (status, body) = server.http_get(path).await;
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, v)
}

/// Online users as {name: sessions}, as `server` sees them.
async fn online(server: &TestServer) -> Vec<(String, u64)> {
    let (status, v) = get_json(server, "/api/presence/users").await;
    assert_eq!(status, 200, "{v}");
    let users = v["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users in {v}"));
    assert_eq!(v["count"].as_u64(), Some(users.len() as u64));
    users
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_owned(),
                u["sessions"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Polls `server`'s online list until it equals `want` (presence is eventually
/// consistent: joins travel through Redis, expiry takes three heartbeats).
async fn online_becomes(server: &TestServer, want: &[(&str, u64)]) {
    let want: Vec<(String, u64)> = want.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = online(server).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "online users: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn users_online_across_nodes_and_a_dead_node_expires() {
    users_online_across_nodes_and_a_dead_node_expires_on(&RedisServer::start()).await;
}

#[tokio::test]
async fn users_online_across_nodes_and_a_dead_node_expires_on_a_cluster() {
    users_online_across_nodes_and_a_dead_node_expires_on(&RedisCluster::start()).await;
}

async fn users_online_across_nodes_and_a_dead_node_expires_on(redis: &impl RedisUrl) {
    let (a, b, c) = (node(redis).await, node(redis).await, node(redis).await);
    let (alice_a, _) = a.connect_as(Transport::Tcp, "alice").await;
    let (_alice_b, _) = b.connect_as(Transport::Ws, "alice").await;
    let (_bob, _) = c.connect_as(Transport::Tcp, "bob").await;
    for server in [&a, &b, &c] {
        online_becomes(server, &[("alice", 2), ("bob", 1)]).await;
    }
    let (status, v) = get_json(&b, "/api/presence/users/alice").await;
    assert_eq!(
        (status, v["online"].as_bool(), v["sessions"].as_u64()),
        (200, Some(true), Some(2)),
        "{v}"
    );
    let (_, v) = get_json(&b, "/api/presence/users/nobody").await;
    assert_eq!(
        (v["online"].as_bool(), v["sessions"].as_u64()),
        (Some(false), Some(0)),
        "{v}"
    );

    // A session that ends leaves at once.
    alice_a.disconnect().await;
    online_becomes(&c, &[("alice", 1), ("bob", 1)]).await;

    // Node C stops talking to Redis without a word (as if it died): bob expires.
    c.node.broker.bus().shutdown();
    online_becomes(&a, &[("alice", 1)]).await;
}

#[tokio::test]
async fn presence_is_refilled_after_redis_restarts() {
    let mut redis = RedisServer::start();
    let a = node(&redis).await;
    let (_alice, _) = a.connect_as(Transport::Tcp, "alice").await;
    online_becomes(&a, &[("alice", 1)]).await;
    redis.restart();
    // Empty Redis; the node's next refresh writes its members again.
    online_becomes(&a, &[("alice", 1)]).await;
}

#[tokio::test]
async fn rooms_are_shared_and_members_span_nodes() {
    rooms_are_shared_and_members_span_nodes_on(&RedisServer::start()).await;
}

#[tokio::test]
async fn rooms_are_shared_and_members_span_nodes_on_a_cluster() {
    rooms_are_shared_and_members_span_nodes_on(&RedisCluster::start()).await;
}

async fn rooms_are_shared_and_members_span_nodes_on(redis: &impl RedisUrl) {
    let (a, b) = (node(redis).await, node(redis).await);
    // The starting rooms have the same ids on every node.
    let (_, rooms_a) = get_json(&a, "/api/rooms").await;
    let (_, rooms_b) = get_json(&b, "/api/rooms").await;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&rooms_a), ids(&rooms_b));
    assert_eq!(rooms_a[0]["name"], "Room 1");

    // A room created on A exists on B.
    let (status, created) = a.http_post_json("/api/rooms", r#"{"name":"Shared"}"#).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, on_b) = get_json(&b, &format!("/api/rooms/{id}")).await;
    assert_eq!(
        (status, on_b["name"].as_str()),
        (200, Some("Shared")),
        "{on_b}"
    );
    let topic = format!("/topic/chat/room/{id}");

    // Ann joins over STOMP on A; Ben over STOMP on B: Ben's JOIN lists both.
    let (mut ann, _) = a.connect_as(Transport::Tcp, "Ann").await;
    ann.subscribe("r", &topic).await;
    let (mut ben, _) = b.connect_as(Transport::Ws, "Ben").await;
    ben.subscribe("r", &topic).await;
    listening(&a, Kind::Topic, &topic).await;
    listening(&b, Kind::Topic, &topic).await;
    let join = |writer: &str| {
        Frame::new(Command::Send)
            .header("destination", "/app/chat/join")
            .header("content-type", "application/json")
            .body(format!(r#"{{"chatRoomId":"{id}","writer":"{writer}"}}"#).into_bytes())
    };
    ann.request(join("Ann")).await;
    let first: Value = serde_json::from_str(&ann.recv_body().await).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["members"].clone()),
        (Some("JOIN"), serde_json::json!(["Ann"]))
    );
    let seen_by_ben: Value = serde_json::from_str(&ben.recv_body().await).unwrap();
    assert_eq!(seen_by_ben, first, "Ann's JOIN reaches the other node");
    ben.request(join("Ben")).await;
    for c in [&mut ann, &mut ben] {
        let ev: Value = serde_json::from_str(&c.recv_body().await).unwrap();
        assert_eq!(
            (ev["type"].as_str(), ev["writer"].as_str()),
            (Some("JOIN"), Some("Ben"))
        );
        assert_eq!(
            ev["members"],
            serde_json::json!(["Ann", "Ben"]),
            "members on both nodes: {ev}"
        );
    }
    // Either node's REST API lists both members.
    let (_, room) = get_json(&a, &format!("/api/rooms/{id}")).await;
    assert_eq!(room["members"], serde_json::json!(["Ann", "Ben"]), "{room}");

    // Ben's session ends: the LEAVE reaches Ann with Ann alone left.
    ben.disconnect().await;
    let ev: Value = serde_json::from_str(&ann.recv_body().await).unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["writer"].as_str()),
        (Some("LEAVE"), Some("Ben")),
        "{ev}"
    );
    assert_eq!(ev["members"], serde_json::json!(["Ann"]));
}

#[tokio::test]
async fn receipts_and_the_rest_api_wait_until_the_cluster_has_the_message() {
    receipts_and_the_rest_api_wait_until_the_cluster_has_the_message_on(&RedisServer::start())
        .await;
}

#[tokio::test]
async fn receipts_and_the_rest_api_wait_until_the_cluster_has_the_message_on_a_cluster() {
    receipts_and_the_rest_api_wait_until_the_cluster_has_the_message_on(&RedisCluster::start())
        .await;
}

async fn receipts_and_the_rest_api_wait_until_the_cluster_has_the_message_on(
    redis: &impl RedisUrl,
) {
    let (a, b) = (node(redis).await, node(redis).await);
    let mut p = a.tcp().await;
    // `publish` waits for each SEND's RECEIPT; no subscriber anywhere.
    for n in 1..=3 {
        p.publish("/topic/receipted", &format!("r{n}")).await;
    }
    // So the history on Redis already holds all three, readable from the other node.
    let mut late = b.tcp().await;
    late.request(
        Frame::new(Command::Subscribe)
            .header("id", "l")
            .header("destination", "/topic/receipted")
            .header("offset", "0"),
    )
    .await;
    for n in 1..=3 {
        let m = late.recv_message().await;
        assert_eq!(
            (
                String::from_utf8_lossy(&m.body).into_owned(),
                m.get("offset")
            ),
            (format!("r{n}"), Some(n.to_string().as_str()))
        );
    }

    // The REST API answers with the local deliveries and the history position.
    let mut here = a.tcp().await;
    here.subscribe("h", "/topic/rest").await;
    let (status, v) = a
        .http_post_json(
            "/api/publish",
            r#"{"destination":"/topic/rest","body":"x"}"#,
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        (v["delivered"].as_u64(), v["offset"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert!(v["epoch"].is_string() && v.get("warning").is_none(), "{v}");
    assert_eq!(here.recv_body().await, "x");
}

#[tokio::test]
async fn wildcard_queue_subscriptions_read_every_nodes_queues() {
    wildcard_queue_subscriptions_read_every_nodes_queues_on(&RedisServer::start()).await;
}

#[tokio::test]
async fn wildcard_queue_subscriptions_read_every_nodes_queues_on_a_cluster() {
    wildcard_queue_subscriptions_read_every_nodes_queues_on(&RedisCluster::start()).await;
}

async fn wildcard_queue_subscriptions_read_every_nodes_queues_on(redis: &impl RedisUrl) {
    let (a, b) = (node(redis).await, node(redis).await);
    let mut worker = b.tcp().await;
    worker.subscribe("w", "/queue/jobs.*").await;
    let mut p = a.tcp().await;
    // Queues that exist before and after the subscription.
    p.publish("/queue/jobs.resize", "j1").await;
    p.publish("/queue/jobs.encode", "j2").await;
    p.publish("/queue/other", "not for the worker").await;
    let mut got = vec![worker.recv_body().await, worker.recv_body().await];
    got.sort();
    assert_eq!(got, ["j1", "j2"]);
    worker.expect_silence(Duration::from_millis(300)).await;
    // Exactly once: a second wildcard worker on A shares the queue's messages.
    let mut other = a.ws().await;
    other.subscribe("w", "/queue/jobs.**").await;
    for n in 0..10 {
        p.publish("/queue/jobs.resize", &format!("k{n}")).await;
    }
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while all.len() < 10 && tokio::time::Instant::now() < deadline {
        for c in [&mut worker, &mut other] {
            if let Some(Event::Frame(f)) = c.next_event(Duration::from_millis(20)).await {
                all.push(String::from_utf8_lossy(&f.body).into_owned());
            }
        }
    }
    worker.expect_silence(Duration::from_millis(300)).await;
    other.expect_silence(Duration::from_millis(50)).await;
    all.sort();
    let mut want: Vec<String> = (0..10).map(|n| format!("k{n}")).collect();
    want.sort();
    assert_eq!(all, want, "each job once");
}

#[tokio::test]
async fn consumers_of_gone_nodes_leave_the_group() {
    let redis = RedisServer::start();
    let (mut a, b) = (node(&redis).await, node(&redis).await);
    let mut gone = a.tcp().await;
    gone.subscribe("w", "/queue/tidy").await;
    listening(&a, Kind::Queue, "/queue/tidy").await;
    let mut p = b.tcp().await;
    p.publish("/queue/tidy", "t1").await;
    assert_eq!(gone.recv_body().await, "t1");
    let a_id = a.node.id.clone();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let consumers = async |conn: &mut redis::aio::MultiplexedConnection| -> String {
        let v: redis::Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg("herald:q:/queue/tidy")
            .arg("herald")
            .query_async(conn)
            .await
            .unwrap();
        // Names as text (RESP bulk strings print as bytes).
        match v {
            redis::Value::Array(cs) => cs
                .into_iter()
                .map(|c| {
                    format!(
                        "{:?}",
                        redis::from_redis_value::<Vec<String>>(c).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
            other => panic!("XINFO CONSUMERS: {other:?}"),
        }
    };
    let before = consumers(&mut conn).await;
    assert!(
        before.contains(&a_id),
        "A read the queue, so it is a consumer: {before}"
    );
    a.shutdown_within(Duration::from_secs(10)).await;
    // B reads the queue; A's consumer, holding nothing, is pruned after claim_after.
    let mut stay = b.tcp().await;
    stay.subscribe("w", "/queue/tidy").await;
    listening(&b, Kind::Queue, "/queue/tidy").await;
    p.publish("/queue/tidy", "t2").await;
    assert_eq!(stay.recv_body().await, "t2");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let names = consumers(&mut conn).await;
        // B's own consumer (it reads the queue) is never pruned.
        if !names.contains(&a_id) && names.contains(&b.node.id) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "want B's consumer and not A's ({a_id}): {names}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

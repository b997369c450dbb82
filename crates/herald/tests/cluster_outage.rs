//! Redis restarted mid-stream: local delivery goes on, /health says degraded,
//! publishes that missed Redis wait in the spool and reach the other node once it is
//! back, and cross-node delivery resumes by itself.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::Duration;

use common::*;
use herald::broker::Kind;
use redis_server::{RedisServer, node_with};

async fn node(redis: &RedisServer) -> TestServer {
    node_with(redis, |_| {}).await
}

async fn health(server: &TestServer) -> serde_json::Value {
    let (status, body) = server.http_get("/health").await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn redis_restart_mid_stream() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut on_a = a.tcp().await;
    let mut on_b = b.tcp().await;
    on_a.subscribe("t", "/topic/t").await;
    on_b.subscribe("t", "/topic/t").await;
    let bus_b = b.node.broker.bus().clone();
    wait_until("B listening", || {
        bus_b.is_listening(Kind::Topic, "/topic/t")
    })
    .await;
    let mut p = a.tcp().await;
    p.publish("/topic/t", "before").await;
    assert_eq!(on_a.recv_body().await, "before");
    assert_eq!(on_b.recv_body().await, "before");
    assert_eq!(health(&a).await["status"], "ok");

    redis.kill();
    let bus_a = a.node.broker.bus().clone();
    // Local delivery continues while Redis is gone; the messages wait in the spool.
    p.publish_nowait("/topic/t", "during").await;
    assert_eq!(on_a.recv_body().await, "during");
    wait_until("A degraded", || !bus_a.status().connected).await;
    let h = health(&a).await;
    assert_eq!(h["status"], "degraded", "{h}");
    let (status, ready) = a.http_get("/health/ready").await;
    assert_eq!(
        status,
        503,
        "not ready while Redis is gone: {}",
        String::from_utf8_lossy(&ready)
    );
    assert!(String::from_utf8_lossy(&ready).contains("cluster"));
    p.publish_nowait("/topic/t", "during2").await;
    assert_eq!(on_a.recv_body().await, "during2");
    wait_until("failed publishes counted", || {
        bus_a.status().failed_publishes >= 1 && bus_a.status().spooled == 2
    })
    .await;

    redis.restart();
    // The RECEIPT comes once Redis is back and took it (after the spool).
    p.publish("/topic/t", "after").await;
    assert_eq!(on_a.recv_body().await, "after");
    // B gets what was published during the outage, once, in order: live, or from the
    // history if it resubscribed after A wrote its spool.
    for want in ["during", "during2", "after"] {
        assert_eq!(on_b.recv_body().await, want);
    }
    on_b.expect_silence(Duration::from_millis(300)).await;
    on_a.expect_silence(Duration::from_millis(50)).await;
    wait_until("A connected", || bus_a.status().connected).await;
    assert_eq!(health(&a).await["status"], "ok");
    assert_eq!(a.http_get("/health/ready").await.0, 200);
}

#[tokio::test]
async fn an_ack_sent_while_redis_is_away_is_not_lost() {
    let redis = RedisServer::start();
    // Long enough for the outage below not to make the held entry claimable.
    let claiming = |c: &mut herald::config::Config| c.cluster.claim_after = Duration::from_secs(5);
    let (a, b) = (
        node_with(&redis, claiming).await,
        node_with(&redis, claiming).await,
    );
    let mut holder = a.tcp().await;
    holder
        .subscribe_ack("w", "/queue/acks", "client-individual")
        .await;
    let bus_a = a.node.broker.bus().clone();
    wait_until("A consuming", || {
        bus_a.is_listening(Kind::Queue, "/queue/acks")
    })
    .await;
    let mut p = a.tcp().await;
    p.publish("/queue/acks", "m1").await;
    let m = holder.recv_message().await;
    assert_eq!(String::from_utf8_lossy(&m.body), "m1");
    // Another node's consumer would get m1 if A's ACK were lost.
    let mut other = b.tcp().await;
    other.subscribe("w", "/queue/acks").await;
    let bus_b = b.node.broker.bus().clone();
    wait_until("B consuming", || {
        bus_b.is_listening(Kind::Queue, "/queue/acks")
    })
    .await;

    redis.pause();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while health(&a).await["status"] != "degraded" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never noticed the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ack_id = m.get("ack").expect("ack header").to_owned();
    holder
        .send_frame(&herald_stomp::Frame::new(herald_stomp::Command::Ack).header("id", ack_id))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.resume();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while health(&a).await["status"] != "ok" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never saw Redis back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past claim_after: a lost ACK would have let B claim m1 by now.
    other.expect_silence(Duration::from_secs(7)).await;
    holder.expect_silence(Duration::from_millis(50)).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg("herald:q:/queue/acks")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        len, 0,
        "the ACK reached Redis once it was back (XACK + XDEL)"
    );
}

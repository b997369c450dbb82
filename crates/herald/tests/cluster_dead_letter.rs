//! Redelivery counts and dead letters across cluster nodes over a real redis-server:
//! the count travels with the queue entry (a NACK or an ended session on one node
//! counts on every other), an entry claimed from a dead node counts its claims, and
//! past `broker.max_redeliveries` the message reaches its dead-letter queue once.

mod common;
#[path = "common/redis_cluster.rs"]
mod redis_cluster;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use herald::broker::Kind;
use herald_stomp::{Command, Frame, Version, encode};
use redis_cluster::RedisCluster;
use redis_server::{RedisServer, RedisUrl, listening, node_with};

async fn node(redis: &impl RedisUrl, max_redeliveries: u32) -> TestServer {
    node_with(redis, |c| c.broker.max_redeliveries = max_redeliveries).await
}

async fn consumer(server: &TestServer, queue: &str) -> Client {
    let mut c = server.tcp().await;
    c.subscribe_ack("w", queue, "client-individual").await;
    listening(server, Kind::Queue, queue).await;
    c
}

/// NACKs `m` and unsubscribes in one write, so the entry goes back to the cluster
/// and this session is gone before any node reads it again.
async fn nack_and_leave(c: &mut Client, m: &Frame) {
    let mut out = BytesMut::new();
    let nack = Frame::new(Command::Nack).header("id", m.get("ack").expect("an ack header"));
    encode(&nack, Version::V1_2, &mut out);
    let leave = Frame::new(Command::Unsubscribe)
        .header("id", "w")
        .header("receipt", "left");
    encode(&leave, Version::V1_2, &mut out);
    c.send_raw(&out).await;
    let r = c.recv_frame().await;
    assert_eq!(
        (r.command, r.get("receipt-id")),
        (Command::Receipt, Some("left")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_message_nacked_on_each_node_in_turn_is_dead_lettered_once_after_the_limit() {
    a_message_nacked_on_each_node_in_turn_is_dead_lettered_once_after_the_limit_on(
        &RedisServer::start(),
    )
    .await;
}

#[tokio::test]
async fn a_message_nacked_on_each_node_in_turn_is_dead_lettered_once_after_the_limit_on_a_cluster()
{
    a_message_nacked_on_each_node_in_turn_is_dead_lettered_once_after_the_limit_on(
        &RedisCluster::start(),
    )
    .await;
}

async fn a_message_nacked_on_each_node_in_turn_is_dead_lettered_once_after_the_limit_on(
    redis: &impl RedisUrl,
) {
    let (a, b) = (node(redis, 3).await, node(redis, 3).await);
    let mut dlq = a.tcp().await;
    dlq.subscribe("d", "/queue/dlq.poison").await;
    listening(&a, Kind::Queue, "/queue/dlq.poison").await;
    let mut holder = consumer(&a, "/queue/poison").await;
    let mut p = b.tcp().await;
    p.publish("/queue/poison", "bad").await;
    // A, B, A, B: each delivery is NACKed by the node that has it, and the next
    // one comes from the other node.
    for round in 0..4 {
        let m = holder.recv_message().await;
        assert_eq!(&m.body[..], b"bad");
        let mark = if round == 0 { None } else { Some("true") };
        assert_eq!(m.get("redelivered"), mark, "round {round}: {m:?}");
        let other = if round % 2 == 0 { &b } else { &a };
        let next = consumer(other, "/queue/poison").await;
        nack_and_leave(&mut holder, &m).await;
        holder = next;
    }
    let letter = dlq.recv_message().await;
    assert_eq!(&letter.body[..], b"bad");
    assert_eq!(letter.get("original-destination"), Some("/queue/poison"));
    assert_eq!(letter.get("dead-letter-reason"), Some("max-redeliveries"));
    assert_eq!(letter.get("delivery-count"), Some("4"));
    dlq.expect_silence(Duration::from_millis(500)).await;
    holder.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_consumer_that_ends_holding_a_message_counts_a_redelivery_on_every_node() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, 1).await, node(&redis, 1).await);
    let mut dlq = a.tcp().await;
    dlq.subscribe("d", "/queue/dlq.held").await;
    listening(&a, Kind::Queue, "/queue/dlq.held").await;
    let holder = {
        let mut holder = consumer(&a, "/queue/held").await;
        let mut p = a.tcp().await;
        p.publish("/queue/held", "h").await;
        let m = holder.recv_message().await;
        assert_eq!(m.get("redelivered"), None);
        holder
    };
    let mut taker = consumer(&b, "/queue/held").await;
    drop(holder);
    let m = taker.recv_message().await;
    assert_eq!(
        (&m.body[..], m.get("redelivered")),
        (&b"h"[..], Some("true"))
    );
    // B's consumer ends holding it too: twice given back, once more than allowed.
    drop(taker);
    let letter = dlq.recv_message().await;
    assert_eq!(&letter.body[..], b"h");
    assert_eq!(letter.get("delivery-count"), Some("2"));
    dlq.expect_silence(Duration::from_millis(500)).await;
}

/// The ids of the entries `consumer` reads from `stream` as a node would, then never
/// acks (a node that died).
async fn read_and_die(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> Vec<String> {
    let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("herald")
        .arg("ghost")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(conn)
        .await
        .expect("XREADGROUP");
    reply
        .keys
        .into_iter()
        .flat_map(|k| k.ids)
        .map(|e| e.id)
        .collect()
}

#[tokio::test]
async fn entries_claimed_from_a_dead_node_count_every_claim() {
    let redis = RedisServer::start();
    let b = node(&redis, 1).await;
    let mut p = b.tcp().await;
    p.publish("/queue/ghost", "once").await;
    p.publish("/queue/ghost", "twice").await;
    // A node that is gone read both; another gone node claimed the second again.
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let stream = "herald:q:/queue/ghost";
    let ids = read_and_die(&mut conn, stream).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(stream)
        .arg("herald")
        .arg("ghost2")
        .arg(0)
        .arg(&ids[1])
        .query_async(&mut conn)
        .await
        .expect("XCLAIM");

    let mut dlq = b.tcp().await;
    dlq.subscribe("d", "/queue/dlq.ghost").await;
    let mut c = consumer(&b, "/queue/ghost").await;
    // Claimed after cluster.claim_after: delivered once before, so a redelivery.
    let m = c.recv_message().await;
    assert_eq!(
        (&m.body[..], m.get("redelivered")),
        (&b"once"[..], Some("true"))
    );
    // Delivered twice before (read, then claimed): over the limit of 1.
    let letter = dlq.recv_message().await;
    assert_eq!(&letter.body[..], b"twice");
    assert_eq!(letter.get("delivery-count"), Some("2"));
    assert_eq!(letter.get("dead-letter-reason"), Some("max-redeliveries"));
    c.expect_silence(Duration::from_millis(500)).await;
}

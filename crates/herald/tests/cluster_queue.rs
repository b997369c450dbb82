//! Cluster queues over a real redis-server: each /queue message is consumed once
//! cluster-wide, and what a dead node never acked goes to another node.

mod common;
#[path = "common/redis_cluster.rs"]
mod redis_cluster;
#[path = "common/redis.rs"]
mod redis_server;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use herald::broker::Kind;
use redis_cluster::RedisCluster;
use redis_server::{RedisServer, RedisUrl, listening, node_with};

async fn node(redis: &impl RedisUrl) -> TestServer {
    node_with(redis, |_| {}).await
}

async fn consuming(server: &TestServer, key: &str) {
    listening(server, Kind::Queue, key).await;
}

/// Whatever arrives on any of `clients` within `quiet` of the last message.
async fn drain(clients: &mut [&mut Client], want: usize) -> Vec<Vec<String>> {
    let mut got: Vec<Vec<String>> = clients.iter().map(|_| Vec::new()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.iter().map(Vec::len).sum::<usize>() < want && tokio::time::Instant::now() < deadline {
        for (i, c) in clients.iter_mut().enumerate() {
            if let Some(Event::Frame(f)) = c.next_event(Duration::from_millis(20)).await {
                got[i].push(String::from_utf8_lossy(&f.body).into_owned());
            }
        }
    }
    // Anything more would be a duplicate.
    for (i, c) in clients.iter_mut().enumerate() {
        while let Some(Event::Frame(f)) = c.next_event(Duration::from_millis(300)).await {
            got[i].push(String::from_utf8_lossy(&f.body).into_owned());
        }
    }
    got
}

#[tokio::test]
async fn queue_messages_are_consumed_once_across_nodes() {
    queue_messages_are_consumed_once_across_nodes_on(&RedisServer::start()).await;
}

#[tokio::test]
async fn queue_messages_are_consumed_once_across_nodes_on_a_cluster() {
    queue_messages_are_consumed_once_across_nodes_on(&RedisCluster::start()).await;
}

async fn queue_messages_are_consumed_once_across_nodes_on(redis: &impl RedisUrl) {
    let (a, b, c) = (node(redis).await, node(redis).await, node(redis).await);
    let mut ca = a.tcp().await;
    let mut cb = b.ws().await;
    let mut cc = c.tcp().await;
    for s in [&mut ca, &mut cb, &mut cc] {
        s.subscribe("w", "/queue/jobs").await;
    }
    for n in [&a, &b, &c] {
        consuming(n, "/queue/jobs").await;
    }
    let mut p = a.tcp().await;
    let mut q = b.tcp().await;
    // One at a time (each SEND's RECEIPT comes once its XADD is done), so the nodes'
    // blocked reads take turns rather than one read taking a whole burst.
    for n in 0..60 {
        p.publish("/queue/jobs", &format!("a{n}")).await;
        q.publish("/queue/jobs", &format!("b{n}")).await;
    }
    let got = drain(&mut [&mut ca, &mut cb, &mut cc], 120).await;
    let all: Vec<&String> = got.iter().flatten().collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), 120, "every message once: {got:?}");
    assert_eq!(unique.len(), 120);
    assert!(
        got.iter().filter(|g| !g.is_empty()).count() >= 2,
        "several nodes consumed: {:?}",
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn messages_wait_in_redis_for_a_consumer_on_any_node() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut p = a.tcp().await;
    for n in 0..5 {
        p.publish("/queue/later", &format!("l{n}")).await;
    }
    let mut late = b.tcp().await;
    late.subscribe("l", "/queue/later").await;
    for n in 0..5 {
        assert_eq!(late.recv_body().await, format!("l{n}"));
    }
}

#[tokio::test]
async fn unacked_messages_of_a_killed_node_go_to_another_node() {
    unacked_messages_of_a_killed_node_go_to_another_node_on(&RedisServer::start()).await;
}

#[tokio::test]
async fn unacked_messages_of_a_killed_node_go_to_another_node_on_a_cluster() {
    unacked_messages_of_a_killed_node_go_to_another_node_on(&RedisCluster::start()).await;
}

async fn unacked_messages_of_a_killed_node_go_to_another_node_on(redis: &impl RedisUrl) {
    let (mut a, b, c) = (node(redis).await, node(redis).await, node(redis).await);
    // A takes messages and never acks them.
    let mut holder = a.tcp().await;
    holder
        .subscribe_ack("w", "/queue/work", "client-individual")
        .await;
    consuming(&a, "/queue/work").await;
    let mut p = c.tcp().await;
    for n in 0..10 {
        p.publish("/queue/work", &format!("w{n}")).await;
    }
    let mut held = HashSet::new();
    for _ in 0..10 {
        held.insert(holder.recv_body().await);
    }
    // B consumes too, acking; A dies mid-stream.
    let mut taker = b.ws().await;
    taker.subscribe("w", "/queue/work").await;
    consuming(&b, "/queue/work").await;
    a.shutdown_within(Duration::from_secs(10)).await;
    for n in 10..15 {
        p.publish("/queue/work", &format!("w{n}")).await;
    }
    let got = drain(&mut [&mut taker], 15).await.remove(0);
    let got_set: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), got_set.len(), "no duplicates: {got:?}");
    for w in &held {
        assert!(
            got_set.contains(w),
            "{w} redelivered after its node died: {got:?}"
        );
    }
    assert_eq!(got.len(), 15, "{got:?}");
}

#[tokio::test]
async fn a_full_prefetch_window_leaves_entries_in_redis_for_consumers_with_room() {
    use herald_stomp::{Command, Frame};
    let redis = RedisServer::start();
    // Claims far off: what comes must come because a window has room.
    let slow_claims = |c: &mut herald::Config| c.cluster.claim_after = Duration::from_secs(60);
    let (a, b) = (
        node_with(&redis, slow_claims).await,
        node_with(&redis, slow_claims).await,
    );
    let mut slow = a.tcp().await;
    slow.request(
        Frame::new(Command::Subscribe)
            .header("id", "w")
            .header("destination", "/queue/window")
            .header("ack", "client-individual")
            .header("prefetch-count", "2"),
    )
    .await;
    consuming(&a, "/queue/window").await;
    let mut p = b.tcp().await;
    for n in 1..=5 {
        p.publish("/queue/window", &format!("m{n}")).await;
    }
    let first = slow.recv_message().await;
    slow.recv_message().await;
    slow.expect_silence(Duration::from_millis(500)).await;
    // An ACK makes room: the next entry comes without waiting for claim_after.
    slow.send_frame(&Frame::new(Command::Ack).header("id", first.get("ack").unwrap()))
        .await;
    let third = slow.recv_frame_within(Duration::from_secs(3)).await;
    assert_eq!(third.command, Command::Message, "{third:?}");
    slow.expect_silence(Duration::from_millis(300)).await;
    // A consumer with room on the other node takes the rest.
    let mut fast = b.tcp().await;
    fast.subscribe("w", "/queue/window").await;
    consuming(&b, "/queue/window").await;
    let got = drain(&mut [&mut fast], 2).await;
    assert_eq!(got[0].len(), 2, "{got:?}");
}

/// A session that ends on a live node hands its unacked messages back at once:
/// another node's consumer gets each once within a second, long before
/// `claim_after` (left at its default here: it is for dead nodes).
#[tokio::test]
async fn an_ended_sessions_unacked_messages_go_to_another_node_at_once() {
    an_ended_sessions_unacked_messages_go_to_another_node_at_once_on(&RedisServer::start()).await;
}

#[tokio::test]
async fn an_ended_sessions_unacked_messages_go_to_another_node_at_once_on_a_cluster() {
    an_ended_sessions_unacked_messages_go_to_another_node_at_once_on(&RedisCluster::start()).await;
}

async fn an_ended_sessions_unacked_messages_go_to_another_node_at_once_on(redis: &impl RedisUrl) {
    let claim_late = |c: &mut herald::config::Config| {
        c.cluster.claim_after = herald::config::ClusterConfig::default().claim_after;
    };
    let (a, b) = (
        node_with(redis, claim_late).await,
        node_with(redis, claim_late).await,
    );
    let mut holder = a.tcp().await;
    holder
        .subscribe_ack("w", "/queue/handback", "client-individual")
        .await;
    consuming(&a, "/queue/handback").await;
    let mut p = a.tcp().await;
    for n in 0..5 {
        p.publish("/queue/handback", &format!("h{n}")).await;
    }
    let mut held = HashSet::new();
    for _ in 0..5 {
        held.insert(holder.recv_body().await);
    }
    let mut taker = b.tcp().await;
    taker.subscribe("w", "/queue/handback").await;
    consuming(&b, "/queue/handback").await;
    // The holder goes away without acking; its node lives on.
    drop(holder);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut got = Vec::new();
    while got.len() < held.len() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match taker.next_event(left).await {
            Some(Event::Frame(f)) => got.push(String::from_utf8_lossy(&f.body).into_owned()),
            other => panic!("within a second B got {got:?}, then {other:?}"),
        }
    }
    taker.expect_silence(Duration::from_millis(300)).await;
    let got_set: HashSet<String> = got.iter().cloned().collect();
    assert_eq!((got.len(), got_set), (held.len(), held), "each once");
}

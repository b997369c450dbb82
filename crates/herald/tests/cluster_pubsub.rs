//! Cluster over a real redis-server: three in-process nodes on one Redis; topics,
//! wildcards, user destinations across nodes, echoes, history and recovery by
//! offset after reconnecting to another node. The same on a Redis Cluster (three
//! masters with a replica each: sharded channels, wildcards over classic copies).

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

async fn node(redis: &impl RedisUrl) -> TestServer {
    // Any client may send to any user's destinations here.
    node_with(redis, |c| c.auth.default_rules = false).await
}

fn header<'a>(f: &'a Frame, name: &str) -> &'a str {
    f.get(name)
        .unwrap_or_else(|| panic!("no {name} header in {f:?}"))
}

#[tokio::test]
async fn three_nodes_fan_out_with_offsets_and_no_echo() {
    three_nodes_fan_out_with_offsets_and_no_echo_on(&RedisServer::start()).await;
}

#[tokio::test]
async fn three_nodes_fan_out_with_offsets_and_no_echo_on_a_cluster() {
    three_nodes_fan_out_with_offsets_and_no_echo_on(&RedisCluster::start()).await;
}

async fn three_nodes_fan_out_with_offsets_and_no_echo_on(redis: &impl RedisUrl) {
    let (a, b, c) = (node(redis).await, node(redis).await, node(redis).await);
    assert_ne!(a.node.id, b.node.id);
    let mut on_a = a.tcp().await;
    let mut on_b = b.ws().await;
    let mut on_c = c.tcp().await;
    for s in [&mut on_a, &mut on_b, &mut on_c] {
        s.subscribe("news", "/topic/news").await;
    }
    listening(&b, Kind::Topic, "/topic/news").await;
    listening(&c, Kind::Topic, "/topic/news").await;
    let mut publisher = a.tcp().await;
    for n in 1..=20 {
        publisher.publish("/topic/news", &format!("m{n}")).await;
    }
    let mut epochs = Vec::new();
    for s in [&mut on_a, &mut on_b, &mut on_c] {
        for n in 1..=20u64 {
            let m = s.recv_message().await;
            assert_eq!(String::from_utf8_lossy(&m.body), format!("m{n}"));
            assert_eq!(header(&m, "offset"), n.to_string());
            assert_eq!(header(&m, "destination"), "/topic/news");
            epochs.push(header(&m, "epoch").to_owned());
        }
    }
    epochs.dedup();
    assert_eq!(
        epochs.len(),
        1,
        "one epoch for the destination on every node"
    );
    // No echo on the publishing node: the next message is the next one.
    publisher.publish("/topic/news", "last").await;
    assert_eq!(on_a.recv_body().await, "last");
    assert_eq!(on_b.recv_body().await, "last");
    on_a.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn subscribers_only_on_other_nodes_and_wildcards() {
    subscribers_only_on_other_nodes_and_wildcards_on(&RedisServer::start()).await;
}

#[tokio::test]
async fn subscribers_only_on_other_nodes_and_wildcards_on_a_cluster() {
    subscribers_only_on_other_nodes_and_wildcards_on(&RedisCluster::start()).await;
}

async fn subscribers_only_on_other_nodes_and_wildcards_on(redis: &impl RedisUrl) {
    let (a, b) = (node(redis).await, node(redis).await);
    let mut wild = b.tcp().await;
    wild.subscribe("w", "/topic/chat.*").await;
    let mut exact = b.ws().await;
    exact.subscribe("e", "/topic/chat.room1").await;
    // Overlapping patterns and an exact channel: each message still arrives once.
    let mut every = b.tcp().await;
    every.subscribe("all", "/topic/**").await;
    listening(&b, Kind::Topic, "/topic/**").await;
    listening(&b, Kind::Topic, "/topic/chat.*").await;
    listening(&b, Kind::Topic, "/topic/chat.room1").await;
    // On a cluster the other node learns of b's wildcards a Pub/Sub hop later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut p = a.tcp().await;
    p.publish("/topic/chat.room1", "hello").await;
    p.publish("/topic/chat.room2", "other room").await;
    p.publish("/topic/chatter", "not matching").await;
    p.publish("/topic/chat.room1.deep", "too deep").await;
    // Order holds per destination; across destinations a cluster's shards (and
    // their classic copies) may interleave differently, hence the sorting.
    let mut got = vec![wild.recv_body().await, wild.recv_body().await];
    got.sort();
    assert_eq!(got, ["hello", "other room"]);
    assert_eq!(exact.recv_body().await, "hello");
    p.publish("/topic/chat.end", "end").await;
    assert_eq!(wild.recv_body().await, "end");
    exact.expect_silence(Duration::from_millis(200)).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(every.recv_body().await);
    }
    got.sort();
    assert_eq!(
        got,
        ["end", "hello", "not matching", "other room", "too deep"]
    );
    every.expect_silence(Duration::from_millis(200)).await;
    wild.expect_silence(Duration::from_millis(50)).await;
    // The last local subscriber leaving unsubscribes the node from the channel.
    exact.unsubscribe("e").await;
    let bus = b.node.broker.bus().clone();
    wait_until("channel unsubscribed", || {
        !bus.is_listening(Kind::Topic, "/topic/chat.room1")
    })
    .await;
}

#[tokio::test]
async fn one_user_with_sessions_on_two_nodes() {
    one_user_with_sessions_on_two_nodes_on(&RedisServer::start()).await;
}

#[tokio::test]
async fn one_user_with_sessions_on_two_nodes_on_a_cluster() {
    one_user_with_sessions_on_two_nodes_on(&RedisCluster::start()).await;
}

async fn one_user_with_sessions_on_two_nodes_on(redis: &impl RedisUrl) {
    let (a, b, c) = (node(redis).await, node(redis).await, node(redis).await);
    let (mut alice_a, _) = a.connect_as(Transport::Tcp, "alice").await;
    let (mut alice_b, _) = b.connect_as(Transport::Ws, "alice").await;
    let (mut carol, _) = b.connect_as(Transport::Tcp, "carol").await;
    alice_a.subscribe("in", "/user/queue/inbox").await;
    alice_b.subscribe("in", "/user/queue/inbox").await;
    carol.subscribe("in", "/user/queue/inbox").await;
    listening(&a, Kind::Topic, "/user/alice/queue/inbox").await;
    listening(&b, Kind::Topic, "/user/alice/queue/inbox").await;
    let (mut bob, _) = c.connect_as(Transport::Tcp, "bob").await;
    bob.publish("/user/alice/queue/inbox", "hi alice").await;
    for s in [&mut alice_a, &mut alice_b] {
        let m = s.recv_message().await;
        assert_eq!(String::from_utf8_lossy(&m.body), "hi alice");
        assert_eq!(header(&m, "destination"), "/user/queue/inbox");
    }
    bob.publish("/user/carol/queue/inbox", "hi carol").await;
    assert_eq!(carol.recv_body().await, "hi carol");
    alice_a.expect_silence(Duration::from_millis(200)).await;
    alice_b.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn recovery_by_offset_after_reconnecting_to_another_node() {
    recovery_by_offset_after_reconnecting_to_another_node_on(&RedisServer::start()).await;
}

#[tokio::test]
async fn recovery_by_offset_after_reconnecting_to_another_node_on_a_cluster() {
    recovery_by_offset_after_reconnecting_to_another_node_on(&RedisCluster::start()).await;
}

async fn recovery_by_offset_after_reconnecting_to_another_node_on(redis: &impl RedisUrl) {
    let (a, b) = (node(redis).await, node(redis).await);
    let mut x = a.tcp().await;
    x.subscribe("f", "/topic/feed").await;
    let mut p = b.tcp().await;
    listening(&a, Kind::Topic, "/topic/feed").await;
    for n in 1..=5 {
        p.publish("/topic/feed", &format!("f{n}")).await;
    }
    let mut last = None;
    for _ in 1..=5 {
        last = Some(x.recv_message().await);
    }
    let last = last.unwrap();
    let (offset, epoch) = (
        header(&last, "offset").to_owned(),
        header(&last, "epoch").to_owned(),
    );
    assert_eq!(offset, "5");
    x.disconnect().await;
    for n in 6..=8 {
        p.publish("/topic/feed", &format!("f{n}")).await;
    }
    // Back on the other node, with the last offset seen.
    let mut y = b.ws().await;
    y.request(
        Frame::new(Command::Subscribe)
            .header("id", "f")
            .header("destination", "/topic/feed")
            .header("offset", offset)
            .header("epoch", epoch.clone()),
    )
    .await;
    let first = y.recv_message().await;
    assert_eq!(header(&first, "recovered"), "true");
    assert_eq!(String::from_utf8_lossy(&first.body), "f6");
    assert_eq!(y.recv_body().await, "f7");
    assert_eq!(y.recv_body().await, "f8");
    p.publish("/topic/feed", "f9").await;
    let live = y.recv_message().await;
    assert_eq!(
        (
            String::from_utf8_lossy(&live.body).as_ref(),
            header(&live, "offset")
        ),
        ("f9", "9")
    );
    assert!(live.get("recovered").is_none());

    // A gap that cannot be filled: another epoch (history lost).
    let mut z = a.tcp().await;
    z.request(
        Frame::new(Command::Subscribe)
            .header("id", "f")
            .header("destination", "/topic/feed")
            .header("offset", "2")
            .header("epoch", "not-the-epoch"),
    )
    .await;
    let notice = z.recv_message().await;
    assert_eq!(header(&notice, "recovered"), "false");
    assert!(notice.body.is_empty());
}

#[tokio::test]
async fn history_is_bounded() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = TestServer::with(move |c| {
        c.cluster.redis_url = url;
        c.cluster.history_size = 3;
    })
    .await;
    // A live subscriber: in Redis mode local delivery follows the script's answer,
    // so once it has h6 all six are in the history stream (the SEND's RECEIPT comes
    // before the publish reaches Redis).
    let mut w = a.tcp().await;
    w.subscribe("w", "/topic/h").await;
    let mut p = a.tcp().await;
    for n in 1..=6 {
        p.publish("/topic/h", &format!("h{n}")).await;
    }
    for n in 1..=6 {
        assert_eq!(w.recv_body().await, format!("h{n}"));
    }
    let mut s = a.tcp().await;
    s.request(
        Frame::new(Command::Subscribe)
            .header("id", "h")
            .header("destination", "/topic/h")
            .header("offset", "1"),
    )
    .await;
    let m = s.recv_message().await;
    assert_eq!(header(&m, "recovered"), "false", "offsets 2 and 3 are gone");
    // Close enough to the end, the gap is filled.
    let mut t = a.tcp().await;
    t.request(
        Frame::new(Command::Subscribe)
            .header("id", "h")
            .header("destination", "/topic/h")
            .header("offset", "4"),
    )
    .await;
    let m = t.recv_message().await;
    assert_eq!(
        (
            header(&m, "recovered"),
            String::from_utf8_lossy(&m.body).as_ref()
        ),
        ("true", "h5")
    );
    assert_eq!(t.recv_body().await, "h6");
}

#[tokio::test]
async fn single_node_history_in_a_ring_buffer() {
    let a = TestServer::with(|c| c.cluster.history_size = 4).await;
    let mut p = a.tcp().await;
    let mut s = a.tcp().await;
    s.subscribe("r", "/topic/ring").await;
    for n in 1..=3 {
        p.publish("/topic/ring", &format!("r{n}")).await;
    }
    let mut epoch = String::new();
    for n in 1..=3 {
        let m = s.recv_message().await;
        assert_eq!(header(&m, "offset"), n.to_string());
        epoch = header(&m, "epoch").to_owned();
    }
    s.disconnect().await;
    for n in 4..=6 {
        p.publish("/topic/ring", &format!("r{n}")).await;
    }
    let mut again = a.ws().await;
    again
        .request(
            Frame::new(Command::Subscribe)
                .header("id", "r")
                .header("destination", "/topic/ring")
                .header("offset", "3")
                .header("epoch", epoch),
        )
        .await;
    let m = again.recv_message().await;
    assert_eq!(
        (
            header(&m, "recovered"),
            String::from_utf8_lossy(&m.body).as_ref()
        ),
        ("true", "r4")
    );
    assert_eq!(again.recv_body().await, "r5");
    assert_eq!(again.recv_body().await, "r6");
    let mut late = a.tcp().await;
    late.request(
        Frame::new(Command::Subscribe)
            .header("id", "r")
            .header("destination", "/topic/ring")
            .header("offset", "1"),
    )
    .await;
    assert_eq!(header(&late.recv_message().await, "recovered"), "false");
}

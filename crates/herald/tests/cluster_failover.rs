//! Herald on a Redis Cluster (three masters, a replica each) and behind Sentinels,
//! with real servers: a master killed mid-traffic, its replica promoted, delivery
//! going on without restarting Herald, and nothing that was confirmed lost.

mod common;
#[path = "common/redis_cluster.rs"]
mod redis_cluster;
#[path = "common/redis.rs"]
mod redis_server;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use herald::broker::Kind;
use herald::config::Config;
use redis_cluster::{RedisCluster, RedisSentinels};
use redis_server::{listening, node_with};

/// Confirmations wait for a replica, so that a failover cannot lose them.
fn durable(c: &mut Config) {
    c.auth.default_rules = false;
    c.cluster.replica_acks = 1;
    c.cluster.publish_timeout = Duration::from_secs(20);
}

/// Publishes `/topic/{topic}` bodies `{prefix}{n}` through node `at`'s REST API
/// until `stop`, one at a time; what was confirmed (202) and what refused (503).
async fn publish_until(
    at: Arc<TestServer>,
    topic: &'static str,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> (Vec<String>, Vec<String>) {
    let (mut confirmed, mut refused) = (Vec::new(), Vec::new());
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = format!("{prefix}{n}");
        let (status, v) = at
            .http_post_json(
                "/api/publish",
                &format!(r#"{{"destination":"/topic/{topic}","body":"{body}"}}"#),
            )
            .await;
        match status {
            202 => confirmed.push(body),
            503 => refused.push(body),
            other => panic!("POST /api/publish answered {other}: {v}"),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (confirmed, refused)
}

/// Every body `client` receives until it has been quiet for a second.
async fn received(client: &mut Client) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    while let Some(Event::Frame(f)) = client.next_event(Duration::from_secs(1)).await {
        got.insert(String::from_utf8_lossy(&f.body).into_owned());
    }
    got
}

/// Publishes from node `at` until `more` more were confirmed.
async fn confirm_more(at: &TestServer, topic: &str, prefix: &str, more: usize) -> Vec<String> {
    let mut confirmed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while confirmed.len() < more {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishes not confirmed again after the failover"
        );
        let body = format!("{prefix}{n}");
        let (status, _) = at
            .http_post_json(
                "/api/publish",
                &format!(r#"{{"destination":"/topic/{topic}","body":"{body}"}}"#),
            )
            .await;
        if status == 202 {
            confirmed.push(body);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        n += 1;
    }
    confirmed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_killed_mid_traffic_fails_over_and_nothing_confirmed_is_lost() {
    let mut redis = RedisCluster::start();
    let a = Arc::new(node_with(&redis, durable).await);
    let (b, c) = (
        node_with(&redis, durable).await,
        node_with(&redis, durable).await,
    );
    // A topic on the shard that dies and one on another shard.
    let victim = redis.master_of("{/topic/doomed}");
    let other = ["/topic/calm", "/topic/calm2", "/topic/calm3"]
        .into_iter()
        .find(|t| redis.master_of(&format!("{{{t}}}")) != victim)
        .expect("a topic on another shard");
    let mut on_b = b.tcp().await;
    let mut on_c = c.ws().await;
    let mut calm = c.tcp().await;
    on_b.subscribe("d", "/topic/doomed").await;
    on_c.subscribe("d", "/topic/doomed").await;
    calm.subscribe("c", other).await;
    listening(&b, Kind::Topic, "/topic/doomed").await;
    listening(&c, Kind::Topic, "/topic/doomed").await;
    listening(&c, Kind::Topic, other).await;

    let stop = Arc::new(AtomicBool::new(false));
    let doomed = tokio::spawn(publish_until(a.clone(), "doomed", "d", stop.clone()));
    let other_topic: &'static str = other.strip_prefix("/topic/").expect("a topic");
    let steady = tokio::spawn(publish_until(a.clone(), other_topic, "c", stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The master dies; /health names its shard until its replica takes over;
    // Herald is not restarted.
    let victim_port = redis.nodes[victim].port;
    redis.nodes[victim].kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = a.http_get("/health").await;
        let health: serde_json::Value = serde_json::from_slice(&health).expect("JSON");
        let down = health["cluster"]["shards_down"].to_string();
        if health["status"] == "degraded" && down.contains(&format!(":{victim_port} (slots ")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health never named the dead shard: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut redis = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !redis.is_ok() {
            assert!(std::time::Instant::now() < deadline, "no replica took over");
            std::thread::sleep(Duration::from_millis(100));
        }
        redis
    })
    .await
    .expect("failover");
    // The killed master comes back as the new master's replica, so that
    // confirmations (one replica each) are possible again on that shard.
    let redis = tokio::task::spawn_blocking(move || {
        redis.nodes[victim].restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !redis.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the old master did not rejoin"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        redis
    })
    .await
    .expect("rejoin");
    let after = confirm_more(&a, "doomed", "after", 10).await;
    stop.store(true, Ordering::Relaxed);
    let (mut confirmed, refused) = doomed.await.expect("publisher");
    let (steady_confirmed, _) = steady.await.expect("publisher");
    confirmed.extend(after.iter().cloned());
    eprintln!(
        "failed shard: {} confirmed, {} refused; healthy shard: {} confirmed",
        confirmed.len(),
        refused.len(),
        steady_confirmed.len()
    );

    // Delivery resumed on the failed shard: what was confirmed after it reached
    // both subscribers, and nothing confirmed at any time is missing.
    for (name, got) in [
        ("b", received(&mut on_b).await),
        ("c", received(&mut on_c).await),
    ] {
        for m in &confirmed {
            assert!(
                got.contains(m),
                "{m} was confirmed but never reached the subscriber on {name} \
                 ({} confirmed, {} refused, {} received)",
                confirmed.len(),
                refused.len(),
                got.len()
            );
        }
    }
    // The other shard went on meanwhile.
    assert!(steady_confirmed.len() >= 10, "{steady_confirmed:?}");
    let got = received(&mut calm).await;
    for m in &steady_confirmed {
        assert!(
            got.contains(m),
            "{m} confirmed on a healthy shard but not received"
        );
    }
    // Every shard answers again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, health) = a.http_get("/health").await;
        assert_eq!(status, 200);
        let health: serde_json::Value = serde_json::from_slice(&health).expect("JSON");
        assert_eq!(health["cluster"]["kind"], "redis-cluster", "{health}");
        if health["status"] == "ok" && health["cluster"].get("shards_down").is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health still degraded: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_moves_every_node_to_the_new_master() {
    let mut redis = RedisSentinels::start();
    let a = Arc::new(node_with(&redis, durable).await);
    let b = node_with(&redis, durable).await;
    let mut on_b = b.tcp().await;
    on_b.subscribe("s", "/topic/sentinel").await;
    let mut queue = b.tcp().await;
    queue.subscribe("q", "/queue/sentinel").await;
    listening(&b, Kind::Topic, "/topic/sentinel").await;
    listening(&b, Kind::Queue, "/queue/sentinel").await;

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish_until(a.clone(), "sentinel", "s", stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = redis.master.port;
    let mut redis = tokio::task::spawn_blocking(move || {
        redis.fail_over();
        redis
    })
    .await
    .expect("failover");
    assert_ne!(redis.named_master(), Some(old));
    // The old master comes back as a replica of the new one: confirmations (one
    // replica) are possible again.
    let redis = tokio::task::spawn_blocking(move || {
        let new = redis.replica.port;
        redis.master.restart();
        let _ = redis_cluster::cli(
            redis.master.port,
            &["REPLICAOF", "127.0.0.1", &new.to_string()],
        );
        redis
    })
    .await
    .expect("rejoin");
    let after = confirm_more(&a, "sentinel", "after", 10).await;
    stop.store(true, Ordering::Relaxed);
    let (mut confirmed, refused) = publisher.await.expect("publisher");
    confirmed.extend(after);
    eprintln!(
        "{} confirmed, {} refused across the failover",
        confirmed.len(),
        refused.len()
    );
    let got = received(&mut on_b).await;
    for m in &confirmed {
        assert!(
            got.contains(m),
            "{m} was confirmed but never reached the subscriber ({} confirmed, {} refused)",
            confirmed.len(),
            refused.len()
        );
    }
    // Queues work on the new master too.
    let (status, v) = a
        .http_post_json(
            "/api/publish",
            r#"{"destination":"/queue/sentinel","body":"job"}"#,
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(queue.recv_body().await, "job");
    let (_, health) = a.http_get("/health").await;
    let health: serde_json::Value = serde_json::from_slice(&health).expect("JSON");
    assert_eq!(health["cluster"]["kind"], "redis-sentinel", "{health}");
    assert_eq!(health["cluster"]["connected"], true, "{health}");
    drop(redis);
}

/// A shard with neither master nor replica: its destinations are refused (503 at
/// `publish_timeout`) while the other shards' go on, `/health` names it, and once
/// it is back its destinations work again. (`cluster-require-full-coverage no`:
/// the other shards keep serving while some slots have no node.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_down_stalls_only_its_destinations() {
    let mut redis = RedisCluster::start_with(&["--cluster-require-full-coverage", "no"]);
    let quick = |c: &mut Config| {
        c.auth.default_rules = false;
        c.cluster.publish_timeout = Duration::from_millis(500);
    };
    let (a, b) = (
        node_with(&redis, quick).await,
        node_with(&redis, quick).await,
    );
    let victim = redis.master_of("{/topic/doomed}");
    let other = ["/topic/calm", "/topic/calm2", "/topic/calm3"]
        .into_iter()
        .find(|t| redis.master_of(&format!("{{{t}}}")) != victim)
        .expect("a topic on another shard");
    let mut doomed = b.tcp().await;
    doomed.subscribe("d", "/topic/doomed").await;
    let mut calm = b.tcp().await;
    calm.subscribe("c", other).await;
    listening(&b, Kind::Topic, "/topic/doomed").await;
    listening(&b, Kind::Topic, other).await;
    let publish =
        |to: &str, body: &str| serde_json::json!({ "destination": to, "body": body }).to_string();
    assert_eq!(
        a.http_post_json("/api/publish", &publish("/topic/doomed", "d0"))
            .await
            .0,
        202
    );
    assert_eq!(doomed.recv_body().await, "d0");

    let replica = redis.replica_of(victim);
    let victim_port = redis.nodes[victim].port;
    redis.nodes[replica].kill();
    redis.nodes[victim].kill();
    let (status, v) = a
        .http_post_json("/api/publish", &publish("/topic/doomed", "lost"))
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (503, Some("cluster_unavailable")),
        "{v}"
    );
    // The other shard's destination goes on, promptly.
    for n in 1..=20 {
        let started = std::time::Instant::now();
        let (status, v) = a
            .http_post_json("/api/publish", &publish(other, &format!("c{n}")))
            .await;
        assert_eq!(status, 202, "{v}");
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "a healthy shard's publish took {:?}",
            started.elapsed()
        );
        assert_eq!(calm.recv_body().await, format!("c{n}"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = a.http_get("/health").await;
        let health: serde_json::Value = serde_json::from_slice(&health).expect("JSON");
        if health["status"] == "degraded"
            && health["cluster"]["shards_down"]
                .to_string()
                .contains(&format!(":{victim_port} (slots "))
        {
            assert_eq!(health["cluster"]["connected"], true, "{health}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health never named the dead shard: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Back (empty: no persistence), with the same slots.
    let redis = tokio::task::spawn_blocking(move || {
        redis.nodes[victim].restart();
        redis.nodes[replica].restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !redis.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the shard did not come back"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        redis
    })
    .await
    .expect("restart");
    let after = confirm_more(&a, "doomed", "back", 3).await;
    for m in &after {
        assert_eq!(&doomed.recv_body().await, m);
    }
    // What was refused never arrives.
    doomed.expect_silence(Duration::from_millis(300)).await;
    drop(redis);
}

/// A destination's slot moved to another master mid-traffic (resharding: ASK while
/// its keys migrate, then MOVED): publishes follow it, its history moves with it,
/// subscribers on other nodes keep receiving, nothing confirmed is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_moved_to_another_shard_mid_traffic_keeps_flowing() {
    let redis = RedisCluster::start();
    let quick = |c: &mut Config| c.auth.default_rules = false;
    let a = Arc::new(node_with(&redis, quick).await);
    let b = node_with(&redis, quick).await;
    let mut on_b = b.tcp().await;
    on_b.subscribe("m", "/topic/moving").await;
    listening(&b, Kind::Topic, "/topic/moving").await;
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish_until(a.clone(), "moving", "m", stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from = redis.master_of("{/topic/moving}");
    let to = (0..redis.nodes.len())
        .find(|&i| i != from && redis.master_of(&format!("{{x{i}}}")) == i)
        .or_else(|| {
            (0..redis.nodes.len()).find(|&i| {
                i != from
                    && redis_cluster::cli(redis.nodes[i].port, &["ROLE"])
                        .is_some_and(|r| r.starts_with("master"))
            })
        })
        .expect("another master");
    let redis = tokio::task::spawn_blocking(move || {
        redis.move_slot("{/topic/moving}", to);
        redis
    })
    .await
    .expect("reshard");
    let after = confirm_more(&a, "moving", "after", 10).await;
    stop.store(true, Ordering::Relaxed);
    let (mut confirmed, refused) = publisher.await.expect("publisher");
    confirmed.extend(after);
    eprintln!(
        "{} confirmed, {} refused across the move",
        confirmed.len(),
        refused.len()
    );
    let got = received(&mut on_b).await;
    for m in &confirmed {
        assert!(
            got.contains(m),
            "{m} confirmed but not received across the move; received {got:?}"
        );
    }
    // The history moved with the slot: a late subscriber recovers from offset 1.
    let mut late = b.tcp().await;
    late.request(
        herald_stomp::Frame::new(herald_stomp::Command::Subscribe)
            .header("id", "l")
            .header("destination", "/topic/moving")
            .header("offset", "1"),
    )
    .await;
    let first = late.recv_message().await;
    assert_eq!(first.get("recovered"), Some("true"), "{first:?}");
    assert_eq!(first.get("offset"), Some("2"));
    drop(redis);
}

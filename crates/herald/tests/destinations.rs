//! The destination grammar through the real server: a wildcard pattern built to make
//! matching explode costs nothing, limits on what a client may name are ERRORs (400
//! over HTTP) naming the setting, and nodes on Redis agree with the broker on which
//! destinations a pattern covers.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::Duration;

use common::*;
use herald::broker::Kind;
use herald_stomp::{Command, Frame};
use redis_server::{RedisServer, listening, node_with};

/// SUBSCRIBE with many `**` then a SEND to a long destination: a matcher that tries
/// every split of the destination per `**` takes hours; this one answers at once, and
/// others are served meanwhile. (Several worker threads, so that a matcher stuck on
/// one cannot stop the test's own clock.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wildcard_built_to_explode_is_matched_promptly() {
    let server = TestServer::with(|c| {
        c.broker.max_wildcards = 64;
        c.broker.max_destination_segments = 128;
    })
    .await;
    let mut attacker = server.connect(Transport::Tcp).await;
    let pattern = format!("/topic{}/zzz", "/**".repeat(16));
    attacker.subscribe("evil", &pattern).await;
    let mut bystander = server.connect(Transport::Ws).await;
    bystander.subscribe("news", "/topic/news").await;

    let long = format!("/topic{}", "/a".repeat(60));
    attacker
        .send_frame(&send(&long, "x").header("receipt", "slow"))
        .await;
    let (status, _) = server.http_get("/health").await;
    assert_eq!(status, 200, "/health answers while the publish is matched");
    bystander.publish("/topic/news", "still here").await;
    assert_eq!(bystander.recv_body().await, "still here");
    let r = attacker.recv_frame().await;
    assert_eq!(
        (r.command, r.get("receipt-id")),
        (Command::Receipt, Some("slow")),
        "{r:?}"
    );
    // The pattern still means what it says.
    attacker.publish(&format!("{long}/zzz"), "match").await;
    assert_eq!(attacker.recv_body().await, "match");
}

async fn refused(server: &TestServer, frame: Frame, expect: &[&str]) {
    let mut c = server.connect(Transport::Tcp).await;
    c.send_frame(&frame.header("receipt", "r")).await;
    let e = c.expect_error_and_close().await;
    let msg = message_of(&e);
    for want in expect {
        assert!(msg.contains(want), "{msg:?} should mention {want:?}");
    }
    assert_eq!(e.get("receipt-id"), Some("r"));
}

#[tokio::test]
async fn destinations_over_a_limit_are_refused_naming_the_setting() {
    let server = TestServer::start().await;
    let subscribe = |d: &str| {
        Frame::new(Command::Subscribe)
            .header("id", "1")
            .header("destination", d)
    };
    refused(
        &server,
        subscribe(&format!("/topic{}/zzz", "/**".repeat(10))),
        &["too many wildcards: 10", "broker.max_wildcards = 8"],
    )
    .await;
    refused(
        &server,
        send(&format!("/topic/{}", "a".repeat(2000)), "x"),
        &[
            "destination too long: 2007 bytes",
            "broker.max_destination_length = 1024",
        ],
    )
    .await;
    refused(
        &server,
        send(&format!("/topic{}", ".a".repeat(40)), "x"),
        &[
            "too many segments: 41",
            "broker.max_destination_segments = 32",
        ],
    )
    .await;
    // Inside a transaction the SEND is refused when it arrives.
    let mut c = server.connect(Transport::Ws).await;
    c.send_frame(&Frame::new(Command::Begin).header("transaction", "t"))
        .await;
    c.send_frame(&send(&format!("/queue/{}", "q".repeat(1100)), "x").header("transaction", "t"))
        .await;
    let e = c.expect_error_and_close().await;
    assert!(
        message_of(&e).contains("broker.max_destination_length"),
        "{e:?}"
    );

    // At the limits everything works.
    let mut ok = server.connect(Transport::Tcp).await;
    let at_limit = format!("/topic{}", "/*".repeat(8));
    ok.subscribe("w", &at_limit).await;
    let d = format!("/topic{}", "/b".repeat(8));
    ok.publish(&d, "fits").await;
    assert_eq!(ok.recv_body().await, "fits");

    // The REST API answers 400 with the same text.
    let long = format!("/topic/{}", "a".repeat(2000));
    let (status, body) = server
        .http_post_json(
            "/api/publish",
            &format!(r#"{{"destination":"{long}","body":"x"}}"#),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "destination_limit", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("broker.max_destination_length"),
        "{body}"
    );
    let (status, body) = server
        .http_post_json(
            "/api/users/bob/messages",
            &format!(
                r#"{{"destination":"/queue{}","body":"x"}}"#,
                "/q".repeat(40)
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("broker.max_destination_segments"),
        "{body}"
    );
}

/// `/topic/a/**` covers `/topic/a` and `/topic/a.b` (no segment; `.` separates like
/// `/`): the PSUBSCRIBE a node makes for it must cover them too, or messages
/// published on another node never arrive.
#[tokio::test]
async fn nodes_on_redis_cover_what_the_pattern_covers() {
    let redis = RedisServer::start();
    let (a, b) = (
        node_with(&redis, |_| {}).await,
        node_with(&redis, |_| {}).await,
    );
    let mut wild = b.tcp().await;
    wild.subscribe("w", "/topic/a/**").await;
    wild.subscribe("s", "/topic/x/*/z").await;
    listening(&b, Kind::Topic, "/topic/a/**").await;
    listening(&b, Kind::Topic, "/topic/x/*/z").await;
    let mut p = a.tcp().await;
    for d in [
        "/topic/a",
        "/topic/a.b",
        "/topic/a/b/c",
        "/topic/ab",
        "/topic/x.y.z",
    ] {
        p.publish(d, d).await;
    }
    for want in ["/topic/a", "/topic/a.b", "/topic/a/b/c", "/topic/x.y.z"] {
        assert_eq!(wild.recv_body().await, want);
    }
    wild.expect_silence(Duration::from_millis(200)).await;
}

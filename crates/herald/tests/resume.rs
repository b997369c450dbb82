//! Resuming a session whose connection broke (`resume-token` / `resume`), refreshing
//! the token of a live session (`/herald/token`), and subscribe handlers (SUBSCRIBE
//! to an application destination answered once).

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::Duration;

use common::*;
use herald::broker::Kind;
use herald_stomp::{Command, Frame};

/// Connects with `resume` set to `token` (when given) as `login`.
async fn connect_resuming(
    server: &TestServer,
    login: &str,
    token: Option<&str>,
) -> (Client, Frame) {
    let mut extra = vec![("login", login)];
    if let Some(t) = token {
        extra.push(("resume", t));
    }
    server.connect_ok(Transport::Tcp, &extra).await
}

fn token_of(connected: &Frame) -> String {
    connected
        .get("resume-token")
        .unwrap_or_else(|| panic!("CONNECTED without resume-token: {connected:?}"))
        .to_owned()
}

/// Waits until the node has no session but `keep` left (the dropped one parked).
async fn gone(server: &TestServer, keep: usize) {
    let sessions = &server.node.sessions;
    wait_until("the dropped session to end", || sessions.len() == keep).await;
}

async fn publish_numbered(
    publisher: &mut Client,
    destination: &str,
    range: std::ops::RangeInclusive<u32>,
) {
    for i in range {
        publisher
            .request(
                Frame::new(Command::Send)
                    .header("destination", destination)
                    .body(format!("m{i}")),
            )
            .await;
    }
}

/// Receives MESSAGEs and returns their bodies, `n` of them.
async fn bodies(client: &mut Client, n: usize) -> Vec<(String, Frame)> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = client.recv_message().await;
        out.push((String::from_utf8_lossy(&f.body).into_owned(), f));
    }
    out
}

fn numbered(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

#[tokio::test]
async fn a_dropped_session_resumes_with_what_it_missed_once_and_in_order() {
    let server = TestServer::start().await;
    let (mut alice, connected) = connect_resuming(&server, "alice", None).await;
    assert_eq!(connected.get("resumed"), Some("false"));
    let token = token_of(&connected);
    alice.subscribe("sub-0", "/topic/resume").await;
    let mut publisher = server.tcp().await;
    publish_numbered(&mut publisher, "/topic/resume", 1..=5).await;
    let got: Vec<String> = bodies(&mut alice, 5)
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert_eq!(got, numbered(1..=5));

    // The connection breaks (no DISCONNECT); messages go on meanwhile.
    drop(alice);
    gone(&server, 1).await;
    publish_numbered(&mut publisher, "/topic/resume", 6..=10).await;

    let (mut again, connected) = connect_resuming(&server, "alice", Some(&token)).await;
    assert_eq!(connected.get("resumed"), Some("true"), "{connected:?}");
    assert_ne!(token_of(&connected), token, "a fresh token each time");
    // What a stompjs app does in onConnect: the same SUBSCRIBE again.
    again.subscribe("sub-0", "/topic/resume").await;
    publish_numbered(&mut publisher, "/topic/resume", 11..=12).await;
    let got = bodies(&mut again, 7).await;
    let names: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(
        names,
        numbered(6..=12),
        "missed ones first, in order, then live, once"
    );
    assert_eq!(got[0].1.get("recovered"), Some("true"));
    assert!(
        got.iter()
            .all(|(_, f)| f.get("subscription") == Some("sub-0"))
    );
    // Nothing else arrives (no second copy of anything).
    publish_numbered(&mut publisher, "/topic/resume", 13..=13).await;
    assert_eq!(again.recv_body().await, "m13");
}

#[tokio::test]
async fn a_token_resumes_once_for_its_own_user_within_the_window() {
    let server = TestServer::with(|c| c.stomp.resume_window = Duration::from_millis(300)).await;
    let (mut alice, connected) = connect_resuming(&server, "alice", None).await;
    let token = token_of(&connected);
    alice.subscribe("sub-0", "/topic/w").await;
    drop(alice);
    gone(&server, 0).await;

    // Another user presenting alice's token gets a session of their own.
    let (_bob, c) = connect_resuming(&server, "bob", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("false"));
    assert_eq!(c.get("user-name"), Some("bob"));
    // The token was spent by that attempt, and a made-up one resumes nothing.
    let (_a, c) = connect_resuming(&server, "alice", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("false"));
    let (_a2, c) = connect_resuming(&server, "alice", Some("../../etc:passwd")).await;
    assert_eq!(c.get("resumed"), Some("false"));

    // Past the window: a clean new session.
    let (mut alice, connected) = connect_resuming(&server, "alice", None).await;
    let token = token_of(&connected);
    alice.subscribe("sub-0", "/topic/w").await;
    drop(alice);
    gone(&server, 3).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (mut late, c) = connect_resuming(&server, "alice", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("false"));
    // Nothing was restored: the old id is free; subscribing again, the client is told
    // that what it missed is gone.
    late.subscribe("sub-0", "/topic/w").await;
    let notice = late.recv_message().await;
    assert_eq!(notice.get("recovered"), Some("false"), "{notice:?}");
    assert_eq!(notice.get("subscription"), Some("sub-0"));
    late.publish("/topic/w", "live").await;
    assert_eq!(late.recv_body().await, "live");
}

#[tokio::test]
async fn a_disconnect_ends_the_session_for_good() {
    let server = TestServer::start().await;
    let (mut alice, connected) = connect_resuming(&server, "alice", None).await;
    let token = token_of(&connected);
    alice.subscribe("sub-0", "/topic/d").await;
    alice.request(Frame::new(Command::Disconnect)).await;
    drop(alice);
    gone(&server, 0).await;
    let (_again, c) = connect_resuming(&server, "alice", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("false"));
}

#[tokio::test]
async fn what_history_cannot_fill_is_told_per_subscription() {
    let server = TestServer::with(|c| c.cluster.history_size = 2).await;
    let (mut alice, connected) = connect_resuming(&server, "alice", None).await;
    let token = token_of(&connected);
    alice.subscribe("kept", "/topic/small").await;
    alice.subscribe("wild", "/topic/wild.*").await;
    let mut publisher = server.tcp().await;
    publish_numbered(&mut publisher, "/topic/small", 1..=1).await;
    assert_eq!(alice.recv_body().await, "m1");
    drop(alice);
    gone(&server, 1).await;
    // More than the history keeps.
    publish_numbered(&mut publisher, "/topic/small", 2..=6).await;

    let (mut again, c) = connect_resuming(&server, "alice", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("true"));
    let mut notices = Vec::new();
    for _ in 0..2 {
        let f = again.recv_message().await;
        assert_eq!(f.get("recovered"), Some("false"), "{f:?}");
        assert!(f.body.is_empty());
        notices.push(f.get("subscription").unwrap().to_owned());
    }
    notices.sort();
    assert_eq!(notices, ["kept", "wild"]);
    // Both subscriptions are live again.
    publish_numbered(&mut publisher, "/topic/small", 7..=7).await;
    assert_eq!(again.recv_body().await, "m7");
    publish_numbered(&mut publisher, "/topic/wild.x", 8..=8).await;
    assert_eq!(again.recv_body().await, "m8");
}

#[tokio::test]
async fn client_acked_topics_resume_after_the_last_ack_and_queues_redeliver() {
    let server = TestServer::start().await;
    let (mut alice, connected) = connect_resuming(&server, "alice", None).await;
    let token = token_of(&connected);
    alice
        .subscribe_ack("t", "/topic/acked", "client-individual")
        .await;
    alice
        .subscribe_ack("q", "/queue/jobs", "client-individual")
        .await;
    let mut publisher = server.tcp().await;
    publish_numbered(&mut publisher, "/topic/acked", 1..=3).await;
    publish_numbered(&mut publisher, "/queue/jobs", 100..=100).await;
    let got = bodies(&mut alice, 4).await;
    // m1 is acked; m2, m3 and the job were received but never acked.
    let m1 = got.iter().find(|(b, _)| b == "m1").unwrap();
    alice
        .send_frame(&Frame::new(Command::Ack).header("id", m1.1.get("ack").unwrap()))
        .await;
    alice
        .request(Frame::new(Command::Begin).header("transaction", "sync"))
        .await;
    drop(alice);
    gone(&server, 1).await;

    let (mut again, c) = connect_resuming(&server, "alice", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("true"));
    let mut got: Vec<(String, Option<String>)> = bodies(&mut again, 3)
        .await
        .into_iter()
        .map(|(b, f)| (b, f.get("subscription").map(str::to_owned)))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("m100".to_owned(), Some("q".to_owned())),
            ("m2".to_owned(), Some("t".to_owned())),
            ("m3".to_owned(), Some("t".to_owned())),
        ]
    );
}

#[tokio::test]
async fn a_session_resumes_on_the_other_node_of_a_cluster() {
    let redis = redis_server::RedisServer::start();
    let a = redis_server::node_with(&redis, |_| {}).await;
    let b = redis_server::node_with(&redis, |_| {}).await;
    let (mut alice, connected) = connect_resuming(&a, "alice", None).await;
    let token = token_of(&connected);
    alice.subscribe("sub-0", "/topic/moving").await;
    let mut publisher = b.tcp().await;
    publish_numbered(&mut publisher, "/topic/moving", 1..=3).await;
    let got: Vec<String> = bodies(&mut alice, 3)
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert_eq!(got, numbered(1..=3));
    drop(alice);
    gone(&a, 0).await;
    publish_numbered(&mut publisher, "/topic/moving", 4..=6).await;

    let (mut again, c) = connect_resuming(&b, "alice", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("true"), "{c:?}");
    again.subscribe("sub-0", "/topic/moving").await;
    redis_server::listening(&b, Kind::Topic, "/topic/moving").await;
    publish_numbered(&mut publisher, "/topic/moving", 7..=8).await;
    let got = bodies(&mut again, 5).await;
    let names: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(names, numbered(4..=8));
    assert_eq!(got[0].1.get("recovered"), Some("true"));
}

#[tokio::test]
async fn resuming_a_session_whose_old_connection_lingers_ends_that_one_first() {
    let server = TestServer::start().await;
    let (mut old, connected) = connect_resuming(&server, "alice", None).await;
    let token = token_of(&connected);
    old.subscribe("sub-0", "/topic/linger").await;
    let mut publisher = server.tcp().await;
    publish_numbered(&mut publisher, "/topic/linger", 1..=2).await;
    let got: Vec<String> = bodies(&mut old, 2)
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert_eq!(got, numbered(1..=2));

    // The client lost track of its connection (half-open: the server still has it)
    // and comes back on a new one.
    let (mut again, c) = connect_resuming(&server, "alice", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("true"), "{c:?}");
    let frames = old.expect_closed().await;
    let error = frames.last().expect("the old connection is told");
    assert!(
        message_of(error).contains("resumed on another connection"),
        "{error:?}"
    );
    publish_numbered(&mut publisher, "/topic/linger", 3..=4).await;
    let got = bodies(&mut again, 2).await;
    assert_eq!(got[0].0, "m3");
    assert_eq!(got[1].0, "m4");
    assert!(
        got.iter()
            .all(|(_, f)| f.get("subscription") == Some("sub-0"))
    );
}

#[tokio::test]
async fn a_deploy_parks_sessions_and_they_resume_on_a_node_still_up() {
    let redis = redis_server::RedisServer::start();
    let mut a = redis_server::node_with(&redis, |_| {}).await;
    let b = redis_server::node_with(&redis, |_| {}).await;
    let (mut alice, connected) = connect_resuming(&a, "alice", None).await;
    let token = token_of(&connected);
    alice.subscribe("sub-0", "/topic/deploy").await;
    let mut publisher = b.tcp().await;
    publish_numbered(&mut publisher, "/topic/deploy", 1..=1).await;
    assert_eq!(alice.recv_body().await, "m1");
    // Node a stops: its sessions get ERROR "server shutting down" and are parked.
    a.shutdown_within(Duration::from_secs(10)).await;
    let frames = alice.expect_closed().await;
    assert!(message_of(frames.last().unwrap()).contains("shutting down"));
    publish_numbered(&mut publisher, "/topic/deploy", 2..=3).await;

    let (mut again, c) = connect_resuming(&b, "alice", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("true"), "{c:?}");
    let got: Vec<String> = bodies(&mut again, 2)
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert_eq!(got, numbered(2..=3));
}

#[tokio::test]
async fn what_the_old_connection_never_took_is_replayed_on_resume() {
    let server = TestServer::start().await;
    // A client that stops reading: what the server writes waits in its socket, taken
    // by no one (as on a link that died).
    let mut old = Client::tcp_small_buffer(server.stomp).await;
    let connected = old
        .connect_with(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "localhost")
                .header("login", "alice")
                .header("heart-beat", "0,0"),
        )
        .await;
    let token = token_of(&connected);
    old.subscribe("sub-0", "/topic/stuck").await;
    let mut publisher = server.tcp().await;
    let filler = "x".repeat(2000);
    const N: u32 = 100;
    for i in 1..=N {
        publisher
            .publish_nowait("/topic/stuck", &format!("m{i} {filler}"))
            .await;
    }
    publisher.publish("/topic/sentinel", "flushed").await;

    let (mut again, c) = connect_resuming(&server, "alice", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("true"), "{c:?}");
    again.subscribe("sub-0", "/topic/stuck").await;
    // The new connection gets an unbroken run of messages up to the last one...
    let mut replayed = Vec::new();
    loop {
        let f = again.recv_message().await;
        let n: u32 = String::from_utf8_lossy(&f.body)
            .split(' ')
            .next()
            .and_then(|m| m.strip_prefix('m'))
            .and_then(|n| n.parse().ok())
            .expect("a numbered message");
        replayed.push(n);
        if n == N {
            break;
        }
    }
    let first = replayed[0];
    assert_eq!(
        replayed,
        (first..=N).collect::<Vec<_>>(),
        "in order, none missing"
    );
    assert!(first < N, "the messages stuck in the old socket come again");
    // ...starting no later than right after the last one the old connection got.
    let mut seen_by_old = 0;
    while let Some(Event::Frame(f)) = old.next_event(Duration::from_secs(2)).await {
        if f.command == Command::Message
            && let Some(n) = String::from_utf8_lossy(&f.body)
                .split(' ')
                .next()
                .and_then(|m| m.strip_prefix('m'))
                .and_then(|n| n.parse::<u32>().ok())
        {
            seen_by_old = seen_by_old.max(n);
        }
    }
    assert!(
        first <= seen_by_old + 1,
        "replay started at m{first}, the old connection had only up to m{seen_by_old}"
    );
}

#[tokio::test]
async fn a_resumed_client_that_knows_its_offset_is_taken_at_its_word() {
    let server = TestServer::start().await;
    let (mut alice, connected) = connect_resuming(&server, "alice", None).await;
    let token = token_of(&connected);
    alice.subscribe("sub-0", "/topic/own-offset").await;
    let mut publisher = server.tcp().await;
    publish_numbered(&mut publisher, "/topic/own-offset", 1..=4).await;
    let got = bodies(&mut alice, 4).await;
    // Say the last two never reached the page (a proxy took them): it saw m2.
    let offset = got[1].1.get("offset").unwrap().to_owned();
    let epoch = got[1].1.get("epoch").unwrap().to_owned();
    drop(alice);
    gone(&server, 1).await;

    let (mut again, c) = connect_resuming(&server, "alice", Some(&token)).await;
    assert_eq!(c.get("resumed"), Some("true"));
    again
        .request(
            Frame::new(Command::Subscribe)
                .header("id", "sub-0")
                .header("destination", "/topic/own-offset")
                .header("offset", offset)
                .header("epoch", epoch),
        )
        .await;
    publish_numbered(&mut publisher, "/topic/own-offset", 5..=5).await;
    let got: Vec<String> = bodies(&mut again, 3)
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert_eq!(got, numbered(3..=5), "from the client's offset, once each");
}

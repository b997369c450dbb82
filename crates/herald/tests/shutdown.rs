//! /health, and shutdown: every session gets ERROR "server shutting down" and is
//! closed within the drain timeout.

mod common;

use std::time::{Duration, Instant};

use common::*;
use herald_stomp::Command;

#[tokio::test]
async fn health_answers_200_json_while_serving() {
    let server = TestServer::start().await;
    let mut c = server.tcp().await;
    c.subscribe("s", "/topic/h").await;
    let (status, body) = server.http_get("/health").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(json["status"], "ok", "{json}");
    // Serving STOMP at the same time.
    c.publish("/topic/h", "x").await;
    assert_eq!(c.recv_body().await, "x");
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = TestServer::start().await;
    let (status, _) = server.http_get("/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn plain_get_on_ws_endpoint_is_refused() {
    let server = TestServer::start().await;
    let (status, body) = server.http_get("/ws").await;
    assert!((400..500).contains(&status), "status {status}");
    assert!(
        String::from_utf8_lossy(&body)
            .to_lowercase()
            .contains("websocket")
    );
}

#[tokio::test]
async fn shutdown_tells_every_session_and_closes_them() {
    let drain = Duration::from_secs(2);
    let mut server = TestServer::with(|c| c.server.drain_timeout = drain).await;
    let mut clients = [
        server.tcp().await,
        server.ws().await,
        server.connect_version(Transport::Tcp, "1.0").await,
        server.connect_version(Transport::Ws, "1.1").await,
    ];
    for (i, c) in clients.iter_mut().enumerate() {
        c.subscribe(&format!("s{i}"), "/topic/bye").await;
    }
    // A connection that has not sent CONNECT yet is closed too.
    let mut unconnected = server.open(Transport::Tcp).await;

    let mut publisher = server.tcp().await;
    publisher.publish("/topic/bye", "before").await;
    for c in clients.iter_mut() {
        assert_eq!(c.recv_body().await, "before");
    }

    let t0 = Instant::now();
    server.token().cancel();

    for (i, c) in clients.iter_mut().chain([&mut publisher]).enumerate() {
        let frames = c.expect_closed_within(drain + Duration::from_secs(1)).await;
        let err = frames
            .iter()
            .find(|f| f.command == Command::Error)
            .unwrap_or_else(|| panic!("client {i} closed without ERROR: {frames:?}"));
        assert!(
            message_of(err).contains("server shutting down"),
            "client {i}: {err:?}"
        );
        assert_eq!(
            frames.last().map(|f| f.command),
            Some(Command::Error),
            "client {i}: ERROR is the last frame: {frames:?}"
        );
    }
    let frames = unconnected
        .expect_closed_within(drain + Duration::from_secs(1))
        .await;
    assert!(
        frames.iter().all(|f| f.command == Command::Error),
        "{frames:?}"
    );

    // run() returns within the drain timeout (plus slack for the HTTP listener).
    server.shutdown_within(drain + Duration::from_secs(2)).await;
    let took = t0.elapsed();
    assert!(
        took <= drain + Duration::from_secs(1),
        "run() took {took:?} to return"
    );

    // Nothing listens any more.
    assert!(
        tokio::net::TcpStream::connect(server.stomp).await.is_err(),
        "STOMP port still accepting"
    );
    assert!(
        tokio::net::TcpStream::connect(server.http).await.is_err(),
        "HTTP port still accepting"
    );
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_client_that_never_reads() {
    let drain = Duration::from_millis(800);
    let mut server = TestServer::with(|c| {
        c.server.drain_timeout = drain;
        // No flow control: the publisher must not wait for the client that stalls.
        c.stomp.outbound_high_water = Some(c.stomp.outbound_queue);
    })
    .await;
    // A client that stopped reading and has a full socket: the server cannot even
    // deliver its ERROR, but must still stop within the drain timeout.
    let _stuck = stalled_client(&server).await;
    let took = server.shutdown_within(drain + Duration::from_secs(3)).await;
    assert!(
        took <= drain + Duration::from_millis(1500),
        "run() took {took:?} with drain_timeout {drain:?}"
    );
}

/// A session blocked writing to a client that stopped reading is reached by the
/// shutdown too: the process does not wait for the drain timeout (or the write's
/// send_timeout), both set far beyond the bound here.
#[tokio::test]
async fn shutdown_reaches_a_session_blocked_writing_to_a_stalled_client() {
    let mut server = TestServer::with(|c| {
        c.server.drain_timeout = Duration::from_secs(60);
        c.stomp.send_timeout = Duration::from_secs(60);
        c.stomp.outbound_queue = 64 << 20;
        c.stomp.outbound_high_water = Some(64 << 20);
    })
    .await;
    // Its outbox (64 MiB) holds what the kernel does not: the session sits in a
    // write that does not finish.
    let _stuck = stalled_client(&server).await;
    server.shutdown_within(Duration::from_secs(10)).await;
}

/// A subscriber that stopped reading, with 8 MiB published to it: more than the
/// kernel buffers between it and the server.
async fn stalled_client(server: &TestServer) -> Client {
    let mut stuck = Client::tcp_small_buffer(server.stomp).await;
    assert_eq!(stuck.connect("1.2").await.command, Command::Connected);
    stuck.subscribe("s", "/topic/flood").await;
    let mut p = server.tcp().await;
    let body = "z".repeat(4096);
    for _ in 0..100 {
        for _ in 0..20 {
            p.publish_nowait("/topic/flood", &body).await;
        }
        p.publish("/topic/flood", "tick").await;
    }
    stuck
}

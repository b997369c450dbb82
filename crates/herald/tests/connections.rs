//! Connections that must not stay or pile up: HTTP/2 prior knowledge off unless
//! configured and, when on, closed when idle; a total connection cap; every accepted
//! connection (plain HTTP too) counted against the per-IP limit for its life; idle
//! HTTP/1.1 keep-alive connections closed.

mod common;

use std::time::Duration;

use common::*;
use herald_stomp::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The HTTP/2 connection preface and an empty SETTINGS frame: what an h2c client with
/// prior knowledge sends first.
const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Reads until the server closes; what it sent, or `None` if still open after `limit`.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read_all = async {
        let mut tmp = [0u8; 4096];
        loop {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&tmp[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.ok()?;
    Some(got)
}

/// `/health` is answered again (bounded): a closed connection gave its place back.
async fn health_answers_again(s: &TestServer) {
    for _ in 0..100 {
        if s.http_get_raw("/health").await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no place is free again after a connection closed");
}

#[tokio::test]
async fn http2_prior_knowledge_is_off_by_default() {
    let s = TestServer::start().await;
    let mut c = TcpStream::connect(s.http).await.unwrap();
    c.write_all(H2_START).await.unwrap();
    let got = read_until_closed(&mut c, WAIT)
        .await
        .expect("an h2c connection is closed when HTTP/2 is off");
    // No HTTP/2 SETTINGS frame (type 4) came back.
    assert!(
        got.get(3) != Some(&4) || got.starts_with(b"HTTP/1.1"),
        "{got:?}"
    );
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let s = TestServer::with(|c| {
        c.server.http2 = true;
        c.limits.http2_idle_timeout = Duration::from_millis(500);
        c.limits.http2_keepalive = Duration::from_millis(500);
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(s.http).await.unwrap();
        c.write_all(H2_START).await.unwrap();
        idle.push(c);
    }
    for c in &mut idle {
        let got = read_until_closed(c, WAIT)
            .await
            .expect("an idle h2c connection is closed after http2_idle_timeout");
        // It was served as HTTP/2: the server's SETTINGS (type 4), then GOAWAY (type 7).
        assert_eq!(got.get(3), Some(&4), "{got:?}");
        assert!(
            got.windows(4).any(|w| w == [0, 0, 8, 7]),
            "a GOAWAY frame: {got:?}"
        );
    }
}

#[tokio::test]
async fn the_total_connection_cap_holds_on_every_listener() {
    let s = TestServer::with(|c| c.limits.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(s.http).await.unwrap());
    }
    // Accepted in order: the two held ones come before the next on the same listener.
    let mut tcp = s.tcp().await;
    // A fourth, plain HTTP: 503 naming the setting.
    let (status, body) = s.http_get_raw("/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("limits.max_connections") && body.contains("\"code\""),
        "{body}"
    );
    // Over TCP: an ERROR frame.
    let mut c = Client::tcp(s.stomp).await;
    let e = c.expect_error_and_close().await;
    assert!(message_of(&e).contains("limits.max_connections"), "{e:?}");
    // The admitted ones work; a closed one gives its place back.
    tcp.assert_works("/topic/cap").await;
    drop(held.pop());
    health_answers_again(&s).await;
}

#[tokio::test]
async fn plain_http_connections_count_against_the_per_ip_limit() {
    let s = TestServer::with(|c| c.limits.max_connections_per_ip = 2).await;
    // Two connections that never send a request hold both places for their life.
    let a = TcpStream::connect(s.http).await.unwrap();
    let _b = TcpStream::connect(s.http).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = s.http_get_raw("/health").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("limits.max_connections_per_ip"), "{body}");
    drop(a);
    health_answers_again(&s).await;
    let metrics = String::from_utf8(s.http_get("/metrics").await.1).unwrap_or_default();
    for name in [
        "herald_connections_refused_total{reason=\"max_connections_per_ip\"}",
        "herald_listener_connections{listener=\"http\"}",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let s = TestServer::with(|c| c.limits.handshake_timeout = Duration::from_millis(500)).await;
    let mut c = TcpStream::connect(s.http).await.unwrap();
    let request = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", s.http);
    c.write_all(request.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut c, WAIT)
        .await
        .expect("a keep-alive connection without a next request is closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn a_websocket_session_holds_its_connections_place() {
    let s = TestServer::with(|c| c.limits.max_connections_per_ip = 1).await;
    // Routed through hyper (a split head) and direct: each holds the one place.
    let mut ws = s.ws().await;
    let (status, body) = s.ws_handshake_raw("/ws", &[]).await;
    assert_eq!(status, 429, "{body}");
    ws.assert_works("/topic/held").await;
    ws.disconnect().await;
    let mut c = None;
    for _ in 0..100 {
        let mut t = s.open(Transport::Tcp).await;
        if t.connect("1.2").await.command == Command::Connected {
            c = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.expect("the place is given back when the session ends");
}

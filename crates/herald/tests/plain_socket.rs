//! Plain-socket endpoints (`transport::plain`) defined through the public API, as an
//! application outside the crate would: subscriptions deliver bodies (or the
//! application's shape of each message), client messages reach the callback in order
//! and bad ones are answered without a close, and the connection loop's limits apply
//! — admission, slow consumers, pings, shutdown close frames, the session registry.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{PlainWs, WAIT, wait_until};
use futures_util::{SinkExt, StreamExt};
use herald::node::Node;
use herald::plain::{self, Delivery, Endpoint, MessageError, Socket};
use herald::{Config, Server};
use herald_stomp::Headers;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_websockets::{ClientBuilder, Message};

struct Running {
    http: SocketAddr,
    node: Arc<Node>,
    token: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A server with `endpoint` mounted (`Server::endpoint`), settings adjusted by `tweak`.
async fn start(endpoint: Endpoint, tweak: impl FnOnce(&mut Config)) -> Running {
    let mut cfg = Config::default();
    cfg.server.http = "127.0.0.1:0".parse().unwrap();
    cfg.server.stomp = None;
    cfg.server.drain_timeout = Duration::from_secs(2);
    cfg.database.url = "sqlite::memory:".into();
    cfg.apps.demo = false;
    tweak(&mut cfg);
    let server = Server::bind(cfg).await.expect("binds").endpoint(&endpoint);
    let (http, node, token) = (
        server.http_addr(),
        server.node().clone(),
        server.shutdown_token(),
    );
    let handle = tokio::spawn(server.run());
    Running {
        http,
        node,
        token,
        handle: Some(handle),
    }
}

fn publish(node: &Node, destination: &str, body: &str) {
    node.messaging
        .send(destination, &Headers::new(), Bytes::from(body.to_owned()))
        .expect("published");
}

/// Subscribes each connection to `/topic/news` (bodies), its user's
/// `/user/queue/alerts` (shaped as {"type":"alert", ...}), and echoes what it is sent.
fn news() -> Endpoint {
    Endpoint::new("/ws/news")
        .on_open(|socket: Socket| async move {
            socket.subscribe("/topic/news")?;
            let shape = Delivery::Shaped(Arc::new(|m: &plain::Message| {
                let body: Value = serde_json::from_slice(&m.body).ok()?;
                Some(Bytes::from(
                    json!({ "type": "alert", "alert": body }).to_string(),
                ))
            }));
            socket.subscribe_with("/user/queue/alerts", shape)?;
            socket.set_meta("device", socket.query("device").as_deref().unwrap_or("?"));
            socket.send(&json!({ "type": "HELLO", "user": socket.principal().name }));
            Ok(())
        })
        .on_message(|socket: Socket, text: String| async move {
            let v: Value = plain::parse(&text, "message")?;
            match v["type"].as_str() {
                Some("ECHO") => {
                    socket.send(&v);
                }
                Some("BYE") => socket.close("goodbye"),
                Some("PANIC") => panic!("a bug in the application"),
                Some("LEAVE") => {
                    socket.unsubscribe("/topic/news");
                    socket.send(&json!({ "type": "LEFT" }));
                }
                _ => return Err(MessageError::new("unknown type")),
            }
            Ok(())
        })
}

#[tokio::test]
async fn subscriptions_deliver_bodies_and_shapes() {
    let r = start(news(), |_| {}).await;
    let mut ws = PlainWs::open(r.http, "/ws/news?login=pat&device=phone").await;
    assert_eq!(ws.recv().await, json!({ "type": "HELLO", "user": "pat" }));

    publish(&r.node, "/topic/news", r#"{"headline":"hi"}"#);
    assert_eq!(ws.recv_text().await, r#"{"headline":"hi"}"#);
    r.node
        .messaging
        .send_to_user("pat", "/queue/alerts", &Headers::new(), Bytes::from("7"));
    assert_eq!(ws.recv().await, json!({ "type": "alert", "alert": 7 }));
    // Not JSON: the shape skips it; another user's alert never comes.
    r.node
        .messaging
        .send_to_user("pat", "/queue/alerts", &Headers::new(), Bytes::from("x"));
    r.node
        .messaging
        .send_to_user("sam", "/queue/alerts", &Headers::new(), Bytes::from("8"));
    publish(&r.node, "/topic/news", "after");
    assert_eq!(ws.recv_text().await, "after");

    // The registry lists it like a STOMP session, with its metadata.
    let entries = r.node.sessions.all();
    assert_eq!(entries.len(), 1);
    let view = entries[0].view(&r.node.id, Vec::new());
    assert_eq!(view.user.as_deref(), Some("pat"));
    assert_eq!(view.meta.get("device").map(String::as_str), Some("phone"));

    ws.send_text(r#"{"type":"LEAVE"}"#).await;
    assert_eq!(ws.recv().await, json!({ "type": "LEFT" }));
    publish(&r.node, "/topic/news", "unheard");
    ws.send_text(r#"{"type":"ECHO","n":1}"#).await;
    assert_eq!(ws.recv().await, json!({ "type": "ECHO", "n": 1 }));

    drop(ws);
    wait_until("the session ends with its socket", || {
        r.node.sessions.is_empty()
    })
    .await;
    assert_eq!(r.node.broker.subscription_count(), 0, "subscriptions left");
}

#[tokio::test]
async fn bad_messages_are_answered_and_the_session_stays_open() {
    let r = start(news(), |_| {}).await;
    let mut ws = PlainWs::open(r.http, "/ws/news").await;
    let hello = ws.recv().await;
    assert!(
        hello["user"].as_str().unwrap().starts_with("anonymous-"),
        "{hello}"
    );

    ws.send_text("{{{ not json").await;
    let v = ws.recv().await;
    assert_eq!(v["type"], "ERROR");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid message"),
        "{v}"
    );
    ws.send_text(r#"{"type":"SHOUT"}"#).await;
    assert_eq!(
        ws.recv().await,
        json!({ "type": "ERROR", "message": "unknown type" })
    );
    ws.0.send(Message::binary(Bytes::from_static(&[0xff, 0xfe])))
        .await
        .unwrap();
    let v = ws.recv().await;
    assert!(v["message"].as_str().unwrap().contains("UTF-8"), "{v}");
    // A callback that panics is an error message too; the server carries on.
    ws.send_text(r#"{"type":"PANIC"}"#).await;
    assert_eq!(
        ws.recv().await,
        json!({ "type": "ERROR", "message": "message handling failed" })
    );
    // In order, and still open.
    for n in 0..20 {
        ws.send_text(&json!({ "type": "ECHO", "n": n }).to_string())
            .await;
    }
    for n in 0..20 {
        assert_eq!(ws.recv().await["n"], n);
    }

    // The application ends it: its reason, then a policy-violation close frame.
    ws.send_text(r#"{"type":"BYE"}"#).await;
    let (texts, close) = ws.until_close().await;
    assert_eq!(
        texts,
        [json!({ "type": "ERROR", "message": "goodbye" }).to_string()]
    );
    let (code, reason) = close.expect("a close frame");
    assert_eq!((u16::from(code), reason.as_str()), (1008, "goodbye"));
}

#[tokio::test]
async fn shutdown_says_so_with_a_going_away_close_frame() {
    let mut r = start(news(), |_| {}).await;
    let mut ws = PlainWs::open(r.http, "/ws/news").await;
    ws.recv().await;
    r.token.cancel();
    let (texts, close) = ws.until_close().await;
    assert_eq!(
        texts,
        [json!({ "type": "ERROR", "message": "server shutting down" }).to_string()]
    );
    let (code, reason) = close.expect("a close frame");
    assert_eq!(
        (u16::from(code), reason.as_str()),
        (1001, "server shutting down")
    );
    let handle = r.handle.take().unwrap();
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_client_that_reads_nothing_is_closed_as_a_slow_consumer() {
    let r = start(news(), |c| {
        c.stomp.outbound_queue = 64 * 1024;
        c.stomp.outbound_high_water = Some(64 * 1024);
        c.stomp.send_timeout = Duration::from_millis(500);
    })
    .await;
    let mut ws = PlainWs::open(r.http, "/ws/news").await;
    ws.recv().await;
    let body = "x".repeat(32 * 1024);
    // Far more than the socket buffers and the outbox hold, never read.
    for _ in 0..1000 {
        publish(&r.node, "/topic/news", &body);
        if r.node.sessions.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    wait_until("the slow consumer is closed", || r.node.sessions.is_empty()).await;
    assert_eq!(r.node.broker.subscription_count(), 0);
}

#[tokio::test]
async fn a_client_that_answers_no_ping_is_closed() {
    let r = start(news(), |c| {
        c.stomp.heartbeat_send = Duration::from_millis(100);
    })
    .await;
    let mut quiet = PlainWs::open(r.http, "/ws/news").await;
    let mut lively = PlainWs::open(r.http, "/ws/news").await;
    lively.recv().await;
    // `lively` polls (and so answers pings) all along; `quiet` never does.
    let polled = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, lively.0.next()).await {}
        lively
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut lively = polled.await.unwrap();
    let (texts, close) = quiet.until_close().await;
    assert!(
        texts.iter().any(|t| t.contains("heart-beat timeout")),
        "{texts:?}"
    );
    assert_eq!(close.map(|(c, _)| u16::from(c)), Some(1008));
    lively.send_text(r#"{"type":"ECHO"}"#).await;
    assert_eq!(lively.recv().await["type"], "ECHO");
}

#[tokio::test]
async fn an_opening_that_fails_ends_the_session_saying_why() {
    let refuse = Endpoint::new("/ws/picky").on_open(|socket: Socket| async move {
        match socket.query("device") {
            Some(_) => Ok(()),
            None => Err(MessageError::new("say which device")),
        }
    });
    let r = start(refuse, |_| {}).await;
    let mut ws = PlainWs::open(r.http, "/ws/picky").await;
    let (texts, close) = ws.until_close().await;
    assert_eq!(
        texts,
        [json!({ "type": "ERROR", "message": "say which device" }).to_string()]
    );
    assert_eq!(close.map(|(c, _)| u16::from(c)), Some(1008));
    drop(ws);
    wait_until("the refused session ends", || r.node.sessions.is_empty()).await;
    let mut ws = PlainWs::open(r.http, "/ws/picky?device=phone").await;
    ws.send_text("hello").await;
    // No message callback: nothing is said, and the session stays.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), ws.0.next())
            .await
            .is_err()
    );
    assert_eq!(r.node.sessions.len(), 1);
}

#[tokio::test]
async fn admission_refuses_like_any_session() {
    let r = start(news(), |c| {
        c.auth.issuers = vec![herald::config::IssuerConfig {
            issuer: "https://idp.test".into(),
            secret: "a-secret-of-at-least-thirty-two-bytes!!".into(),
            ..Default::default()
        }];
        c.auth.required = true;
    })
    .await;
    let url = format!("ws://{}/ws/news", r.http);
    let refused = tokio::time::timeout(WAIT, ClientBuilder::new().uri(&url).unwrap().connect())
        .await
        .expect("answered in time");
    assert!(refused.is_err(), "let in without a token");

    let r = start(news(), |_| {}).await;
    let url = format!("ws://{}/ws/news", r.http);
    let foreign = ClientBuilder::new()
        .uri(&url)
        .unwrap()
        .add_header(
            http::header::ORIGIN,
            http::HeaderValue::from_static("https://evil.example"),
        )
        .unwrap();
    let refused = tokio::time::timeout(WAIT, foreign.connect())
        .await
        .expect("answered in time");
    assert!(refused.is_err(), "let in from a foreign origin");
    assert!(r.node.sessions.is_empty());
}

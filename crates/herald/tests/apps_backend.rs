//! The HTTP backend proxy (`apps.backend.url`) against a real HTTP
//! backend (axum on an ephemeral port): what the backend receives, how its answers are
//! published, its errors, timeouts and absence, and that a slow backend call of one
//! session blocks nobody else.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::*;
use herald::config::ErrorDelivery;
use herald::handler::{HandlerError, Handlers, Reply, Request};
use herald_stomp::{Command, Frame};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

/// A backend on 127.0.0.1:0 that records every request and answers by `path`.
struct Backend {
    url: String,
    requests: mpsc::UnboundedReceiver<Value>,
    /// Releases a pending `/hang` request.
    release: Arc<Notify>,
}

impl Backend {
    async fn start() -> Backend {
        let (tx, requests) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let hang = release.clone();
        let app = axum::Router::new().route(
            "/herald",
            axum::routing::post(move |Json(req): Json<Value>| {
                let tx = tx.clone();
                let hang = hang.clone();
                async move {
                    let _ = tx.send(req.clone());
                    answer(req, hang).await
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/herald", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Backend {
            url,
            requests,
            release,
        }
    }

    async fn next_request(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("the backend received a request in time")
            .expect("backend running")
    }
}

async fn answer(req: Value, hang: Arc<Notify>) -> Response {
    // `/shop/x` answers like `/x` (for the `destinations` test).
    let path = req["path"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("/shop")
        .to_owned();
    let user = req["user"].as_str().unwrap_or_default().to_owned();
    match path.as_str() {
        "/orders.create" => {
            let order: Value =
                serde_json::from_str(req["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
            Json(json!({ "messages": [
                { "destination": "/topic/orders", "body": { "created": order, "by": user } },
                { "destination": "/queue/confirmations", "user": user, "body": "order confirmed",
                  "headers": { "x-order": "1" } },
            ]}))
            .into_response()
        }
        "/rooms/7/snapshot" if req["frame"] == "SUBSCRIBE" => Json(json!({ "messages": [
            { "body": { "room": 7, "members": [user], "subscription": req["subscription"] } },
            { "destination": "/topic/orders", "body": "someone looked at room 7" },
        ]}))
        .into_response(),
        "/nodest" => Json(json!({ "messages": [{ "body": "where to?" }] })).into_response(),
        "/bare" => {
            Json(json!([{ "destination": "/topic/orders", "body": "bare array" }])).into_response()
        }
        "/nothing" => StatusCode::NO_CONTENT.into_response(),
        "/rejected" => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "order has no items" })),
        )
            .into_response(),
        "/broken" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": "database down" })),
        )
            .into_response(),
        "/plain500" => (StatusCode::INTERNAL_SERVER_ERROR, "kaboom in plain text").into_response(),
        "/garbage" => (StatusCode::OK, "this is not json").into_response(),
        "/hang" => {
            // Until the test releases it, or far past any configured timeout.
            let _ = tokio::time::timeout(Duration::from_secs(30), hang.notified()).await;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no route {path}") })),
        )
            .into_response(),
    }
}

async fn server_for(backend: &Backend, tweak: impl FnOnce(&mut herald::Config)) -> TestServer {
    let url = backend.url.clone();
    let handlers = Handlers::new().route("/local", |req: Request<Value>| async move {
        Ok::<_, HandlerError>(Reply::to("/topic/orders", &json!({ "local": req.payload })))
    });
    TestServer::with_handlers(handlers, move |c| {
        c.apps.backend.url = url;
        c.apps.backend.timeout = Duration::from_secs(2);
        tweak(c);
    })
    .await
}

fn app_send(destination: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination)
        .header("content-type", "application/json")
        .body(body.to_owned())
}

fn json_of(f: &Frame) -> Value {
    serde_json::from_slice(&f.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {f:?}"))
}

#[tokio::test]
async fn backend_receives_the_send_and_its_messages_are_published() {
    let mut backend = Backend::start().await;
    let server = server_for(&backend, |_| {}).await;
    let (mut alice, connected) = server.connect_as(Transport::Tcp, "alice").await;
    let session = connected.get("session").unwrap().to_owned();
    let (mut bob, _) = server.connect_as(Transport::Ws, "bob").await;
    alice.subscribe("orders", "/topic/orders").await;
    alice.subscribe("conf", "/user/queue/confirmations").await;
    bob.subscribe("orders", "/topic/orders").await;
    bob.subscribe("conf", "/user/queue/confirmations").await;

    alice
        .request(
            app_send("/app/orders.create", r#"{"item":"book","qty":2}"#).header("x-trace", "t-1"),
        )
        .await;
    let req = backend.next_request().await;
    assert_eq!(req["destination"], "/app/orders.create", "{req}");
    assert_eq!(req["path"], "/orders.create", "{req}");
    assert_eq!(req["body"], r#"{"item":"book","qty":2}"#, "{req}");
    assert_eq!(req["user"], "alice", "{req}");
    assert_eq!(req["roles"], json!([]), "{req}");
    assert_eq!(req["session"], session.as_str(), "{req}");
    assert_eq!(req["headers"]["x-trace"], "t-1", "{req}");
    assert_eq!(req["headers"]["destination"], "/app/orders.create", "{req}");
    assert_eq!(req["headers"]["content-type"], "application/json", "{req}");

    // Published before the RECEIPT: `request` stashed them, they come first.
    let mut got = [alice.recv_message().await, alice.recv_message().await];
    got.sort_by_key(|m| m.get("subscription").unwrap_or("").to_owned());
    let (conf, orders) = (&got[0], &got[1]);
    assert_eq!(orders.get("destination"), Some("/topic/orders"));
    assert_eq!(orders.get("content-type"), Some("application/json"));
    assert_eq!(
        json_of(orders),
        json!({ "created": { "item": "book", "qty": 2 }, "by": "alice" })
    );
    assert_eq!(conf.get("destination"), Some("/user/queue/confirmations"));
    assert_eq!(&conf.body[..], b"order confirmed");
    assert!(
        conf.get("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{conf:?}"
    );
    assert_eq!(conf.get("x-order"), Some("1"));

    // Bob sees the topic message, not alice's confirmation.
    let m = bob.recv_message().await;
    assert_eq!(m.get("subscription"), Some("orders"));
    bob.subscribe("sentinel", "/topic/sentinel").await;
    alice.publish("/topic/sentinel", "s").await;
    let m = bob.recv_message().await;
    assert_eq!(
        m.get("subscription"),
        Some("sentinel"),
        "bob got alice's confirmation: {m:?}"
    );
}

#[tokio::test]
async fn bare_array_answer_and_204_and_in_process_handlers_win() {
    let mut backend = Backend::start().await;
    let server = server_for(&backend, |_| {}).await;
    let mut c = server.ws().await;
    c.subscribe("orders", "/topic/orders").await;
    c.subscribe("sentinel", "/topic/sentinel").await;

    c.request(app_send("/app/bare", "{}")).await;
    assert_eq!(&c.recv_message().await.body[..], b"bare array");
    assert_eq!(backend.next_request().await["path"], "/bare");

    // 204: nothing published, RECEIPT still comes, connection stays.
    c.request(app_send("/app/nothing", "{}")).await;
    assert_eq!(backend.next_request().await["path"], "/nothing");
    c.publish("/topic/sentinel", "s").await;
    let m = c.recv_message().await;
    assert_eq!(
        m.get("subscription"),
        Some("sentinel"),
        "204 published something: {m:?}"
    );

    // An in-process handler owns /local; the backend never hears of it.
    c.request(app_send("/app/local", r#"{"x":1}"#)).await;
    assert_eq!(
        json_of(&c.recv_message().await),
        json!({ "local": { "x": 1 } })
    );
    c.request(app_send("/app/nothing", "{}")).await;
    assert_eq!(
        backend.next_request().await["path"],
        "/nothing",
        "the backend was called for /local"
    );
}

#[tokio::test]
async fn backend_errors_reach_the_sender_only() {
    let backend = Backend::start().await;
    let server = server_for(&backend, |_| {}).await;
    let mut bystander = server.ws().await;
    bystander.subscribe("orders", "/topic/orders").await;
    let cases = [
        ("/app/rejected", &["422", "order has no items"][..]),
        ("/app/broken", &["500", "database down"][..]),
        ("/app/plain500", &["500", "kaboom in plain text"][..]),
        ("/app/garbage", &["invalid JSON"][..]),
    ];
    for (dest, words) in cases {
        let mut c = server.tcp().await;
        c.send_frame(&app_send(dest, "{}").header("receipt", "r-err"))
            .await;
        let e = c.expect_error_and_close().await;
        let m = message_of(&e);
        for w in words {
            assert!(m.contains(w), "{dest}: ERROR {m:?} should mention {w:?}");
        }
        assert!(
            m.contains(dest),
            "{dest}: ERROR {m:?} should name the destination"
        );
        assert_eq!(e.get("receipt-id"), Some("r-err"), "{dest}");
    }
    let mut p = server.tcp().await;
    p.publish("/topic/orders", "bystander fine").await;
    assert_eq!(bystander.recv_body().await, "bystander fine");
}

#[tokio::test]
async fn backend_errors_with_errors_queue() {
    let backend = Backend::start().await;
    let server = server_for(&backend, |c| c.apps.errors = ErrorDelivery::Queue).await;
    let (mut c, _) = server.connect_as(Transport::Tcp, "alice").await;
    c.subscribe("errors", "/user/queue/errors").await;
    c.request(app_send("/app/rejected", "{}")).await;
    let m = c.recv_message().await;
    let v = json_of(&m);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("order has no items"),
        "{v}"
    );
    assert_eq!(v["destination"], "/app/rejected");
}

#[tokio::test]
async fn backend_timeout_errors_the_sender_while_others_carry_on() {
    let mut backend = Backend::start().await;
    let server = server_for(&backend, |c| {
        c.apps.backend.timeout = Duration::from_secs(2)
    })
    .await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    let (mut bob, _) = server.connect_as(Transport::Ws, "bob").await;
    bob.subscribe("orders", "/topic/orders").await;
    bob.subscribe("conf", "/user/queue/confirmations").await;

    alice
        .send_frame(&app_send("/app/hang", "{}").header("receipt", "r-hang"))
        .await;
    assert_eq!(backend.next_request().await["path"], "/hang");
    // While alice's call hangs in the backend, bob's traffic (broker and backend) flows.
    bob.publish("/topic/orders", "plain").await;
    assert_eq!(bob.recv_body().await, "plain");
    bob.request(app_send("/app/orders.create", r#"{"item":"pen"}"#))
        .await;
    assert_eq!(backend.next_request().await["user"], "bob");
    let _ = bob.recv_message().await;
    let _ = bob.recv_message().await;
    // ...and alice's answer is still pending (nothing arrived for her yet).
    assert!(
        alice.next_event(Duration::ZERO).await.is_none(),
        "alice's call finished before bob's round trip"
    );

    let e = alice.expect_error_and_close().await;
    let m = message_of(&e);
    assert!(m.contains("timed out") && m.contains("/app/hang"), "{m}");
    assert_eq!(e.get("receipt-id"), Some("r-hang"));
    backend.release.notify_waiters();
}

#[tokio::test]
async fn unreachable_backend_is_a_clear_error() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server =
        TestServer::with(|c| c.apps.backend.url = format!("http://127.0.0.1:{port}/herald")).await;
    let mut c = server.tcp().await;
    c.send_frame(&app_send("/app/orders.create", "{}").header("receipt", "r-u"))
        .await;
    let e = c.expect_error_and_close().await;
    let m = message_of(&e);
    assert!(
        m.contains("unreachable") && m.contains("/app/orders.create"),
        "{m}"
    );
    assert_eq!(e.get("receipt-id"), Some("r-u"));
    // The seed apps still work next to the broken backend.
    let mut c = server.ws().await;
    c.subscribe("g", "/topic/greetings").await;
    c.request(app_send("/app/hello", r#"{"name":"x"}"#)).await;
    assert_eq!(
        json_of(&c.recv_message().await),
        json!({ "content": "Hello, x!" })
    );
}

#[tokio::test]
async fn backend_destinations_limit_what_it_owns() {
    let mut backend = Backend::start().await;
    let server = server_for(&backend, |c| {
        c.apps.backend.destinations = vec!["/shop/**".into()]
    })
    .await;
    let mut c = server.tcp().await;
    c.request(app_send("/app/shop/nothing", "{}")).await;
    assert_eq!(backend.next_request().await["path"], "/shop/nothing");
    c.send_frame(&app_send("/app/nothing", "{}").header("receipt", "r-n"))
        .await;
    let e = c.expect_error_and_close().await;
    assert!(
        message_of(&e).contains("no application handler for '/app/nothing'"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_subscribe_to_a_backend_destination_is_answered_to_that_subscription_once() {
    let mut backend = Backend::start().await;
    let server = server_for(&backend, |_| {}).await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    alice.subscribe("orders", "/topic/orders").await;
    alice
        .request(
            Frame::new(Command::Subscribe)
                .header("id", "snap")
                .header("destination", "/app/rooms/7/snapshot"),
        )
        .await;
    let req = backend.next_request().await;
    assert_eq!(req["frame"], "SUBSCRIBE", "{req}");
    assert_eq!(req["subscription"], "snap", "{req}");
    assert_eq!(req["path"], "/rooms/7/snapshot", "{req}");
    assert_eq!(req["body"], "", "{req}");
    let mut got = [alice.recv_message().await, alice.recv_message().await];
    got.sort_by_key(|m| m.get("subscription").unwrap_or("").to_owned());
    let (orders, snap) = (&got[0], &got[1]);
    assert_eq!(snap.get("subscription"), Some("snap"));
    assert_eq!(snap.get("destination"), Some("/app/rooms/7/snapshot"));
    assert_eq!(
        json_of(snap),
        json!({ "room": 7, "members": ["alice"], "subscription": "snap" })
    );
    assert_eq!(orders.get("subscription"), Some("orders"));
    // Once: the subscription takes nothing more, and UNSUBSCRIBE ends it.
    alice.unsubscribe("snap").await;
    alice.publish("/topic/orders", "after").await;
    let m = alice.recv_message().await;
    assert_eq!(m.get("subscription"), Some("orders"), "{m:?}");
    // Only a SUBSCRIBE's answer may leave out the destination.
    alice.send_frame(&app_send("/app/nodest", "{}")).await;
    let e = alice.expect_error_and_close().await;
    assert!(
        message_of(&e).contains("answered a message without a destination"),
        "{e:?}"
    );
}

//! Application destinations through real STOMP clients.
//! - routing by prefix (`/app` → handlers only, `/topic` `/queue` → broker, `/user` →
//!   user destinations, configurable prefixes);
//! - the library API (`Server::bind_with(config, Handlers::new().route(...))`): path
//!   variables, typed payloads, principal and session, every `Reply` target, errors
//!   (ERROR frame or `/user/queue/errors`), timeouts, panics, `Messaging` from outside,
//!   RECEIPT after the handler's message;
//! - user destinations across sessions and transports;
//! - the publish REST API;
//! - the seeds' chat, greeting and rooms apps (STOMP, REST and the plain `/ws/chat`).

mod common;

use std::time::Duration;

use common::*;
use herald::config::{ErrorDelivery, RuleConfig};
use herald::handler::{HandlerError, Handlers, Reply, Request};
use herald_stomp::{Command, Frame};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_websockets::ClientBuilder;

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn json_of(f: &Frame) -> Value {
    serde_json::from_slice(&f.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {f:?}"))
}

fn body_of(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}

/// A SEND of a JSON text to `destination` with a receipt header.
fn send_json(destination: &str, body: &str, receipt: &str) -> Frame {
    app(destination, body).header("receipt", receipt)
}

/// A SEND of a JSON text (for `Client::request`, which adds its own receipt).
fn app(destination: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination)
        .header("content-type", "application/json")
        .body(body.to_owned())
}

/// The next frame must be `command`.
async fn expect_command(c: &mut Client, command: Command) -> Frame {
    let f = c.recv_frame().await;
    assert_eq!(f.command, command, "expected {command}, got {f:?}");
    f
}

/// The next frame must be the RECEIPT `id`.
async fn expect_receipt(c: &mut Client, id: &str) {
    let f = expect_command(c, Command::Receipt).await;
    assert_eq!(f.get("receipt-id"), Some(id), "{f:?}");
}

/// Sends a sentinel on `/topic/sentinel-{tag}` which `c` must be subscribed to (as
/// `sentinel`), then returns every frame that arrived before the sentinel: proves "nothing
/// else came" without sleeping.
async fn frames_before_sentinel(c: &mut Client, publisher: &mut Client, tag: &str) -> Vec<Frame> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dest = format!("/topic/sentinel-{tag}");
    let body = format!(
        "sentinel-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    publisher.publish(&dest, &body).await;
    let mut before = Vec::new();
    loop {
        let f = c.recv_frame().await;
        if f.command == Command::Message && f.get("destination") == Some(dest.as_str()) {
            if f.body[..] == *body.as_bytes() {
                return before;
            }
            continue; // an earlier sentinel meant for another client
        }
        before.push(f);
    }
}

#[derive(Deserialize)]
struct RoomMsg {
    text: String,
    n: u32,
}

/// The handlers the library-API tests register.
fn test_handlers() -> Handlers {
    Handlers::new()
        .route("/echo", |req: Request<Value>| async move {
            Ok::<_, HandlerError>(Reply::to("/topic/echoed", &json!({ "got": req.payload })))
        })
        .route(
            "/chat/rooms/{id}/send",
            |req: Request<RoomMsg>| async move {
                let id = req.param("id")?.to_owned();
                let body = json!({
                    "id": id,
                    "text": req.payload.text,
                    "n": req.payload.n,
                    "user": req.principal().name,
                    "session": req.session.id,
                    "destination": req.destination,
                });
                Ok::<_, HandlerError>(Reply::to(format!("/topic/rooms/{id}"), &body))
            },
        )
        .route("/reply/{kind}", |req: Request<Value>| async move {
            let kind = req.param("kind")?.to_owned();
            let body = json!({ "kind": kind, "from": req.session.id });
            let reply = match kind.as_str() {
                "to" => Reply::to("/topic/replies", &body),
                "user" => Reply::to_user("bob", "/queue/replies", &body),
                "sender" => Reply::to_sender("/queue/replies", &body),
                "session" => Reply::to_sender_session("/queue/replies", &body),
                other => return Err(HandlerError::new(format!("unknown reply kind '{other}'"))),
            };
            Ok(reply.header("x-kind", kind))
        })
        .route("/fail", |_req: Request<Value>| async move {
            Err::<(), _>(HandlerError::new("order rejected: out of stock"))
        })
        .route("/slow", |_req: Request<Value>| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, HandlerError>(())
        })
        .route("/panic", |req: Request<Value>| async move {
            if req.payload.is_object() {
                panic!("handler blew up on purpose");
            }
            Ok::<_, HandlerError>(())
        })
        .route("/delayed", |req: Request<Value>| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, HandlerError>(Reply::to("/topic/delayed", &req.payload))
        })
        .subscribe("/rooms/{id}/info", |req: Request<()>| async move {
            let id = req.param("id")?.to_owned();
            if id == "secret" {
                return Err(HandlerError::new("room 'secret' is not for you"));
            }
            Ok::<_, HandlerError>(json!({
                "room": id,
                "user": req.principal().name,
                "destination": req.destination,
                "trace": req.headers.get("x-trace"),
            }))
        })
}

async fn app_server() -> TestServer {
    TestServer::with_handlers(test_handlers(), |_| {}).await
}

/// A server whose rules let any client SEND to any user's destinations (by default
/// only to one's own, see the auth tests), to test how user destinations route.
async fn open_user_sends_server() -> TestServer {
    TestServer::with_handlers(test_handlers(), |c| {
        c.auth.rules = vec![RuleConfig {
            pattern: "/user/**".into(),
            subscribe: None,
            send: Some("anyone".into()),
        }];
    })
    .await
}

// ---------------------------------------------------------------------------
// 1. Routing by prefix
// ---------------------------------------------------------------------------

#[tokio::test]
async fn app_send_reaches_the_handler_never_subscribers_directly() {
    let server = app_server().await;
    let mut watcher = server.ws().await;
    watcher.subscribe("all-topics", "/topic/**").await;
    watcher.subscribe("hash", "/topic/#").await;
    watcher.subscribe("echoed", "/topic/echoed").await;
    let mut sender = server.tcp().await;
    sender
        .send_frame(&send_json("/app/echo", r#"{"raw":true}"#, "r-1").header("x-raw-marker", "yes"))
        .await;
    expect_receipt(&mut sender, "r-1").await;

    let frames = frames_before_sentinel(&mut watcher, &mut sender, "route").await;
    // Exactly the handler's message, once per matching subscription, and never the raw SEND.
    let mut subs: Vec<&str> = frames
        .iter()
        .map(|f| f.get("subscription").unwrap_or("?"))
        .collect();
    subs.sort();
    assert_eq!(subs, ["all-topics", "echoed", "hash"], "frames: {frames:?}");
    for f in &frames {
        assert_eq!(f.command, Command::Message, "{f:?}");
        assert_eq!(
            f.get("destination"),
            Some("/topic/echoed"),
            "raw app SEND leaked: {f:?}"
        );
        assert_eq!(
            f.get("x-raw-marker"),
            None,
            "raw SEND headers leaked: {f:?}"
        );
        assert_eq!(json_of(f), json!({ "got": { "raw": true } }));
    }
}

#[tokio::test]
async fn a_subscribe_handler_answers_that_subscription_once() {
    let server = app_server().await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    let (mut bob, _) = server.connect_as(Transport::Ws, "bob").await;
    bob.subscribe("other", "/topic/rooms/7").await;
    alice
        .request(
            Frame::new(Command::Subscribe)
                .header("id", "info")
                .header("destination", "/app/rooms/7/info")
                .header("x-trace", "t-7"),
        )
        .await;
    // The answer comes before the RECEIPT (stashed by `request`).
    let m = alice.recv_message().await;
    assert_eq!(m.get("subscription"), Some("info"));
    assert_eq!(m.get("destination"), Some("/app/rooms/7/info"));
    assert_eq!(m.get("content-type"), Some("application/json"));
    assert_eq!(
        json_of(&m),
        json!({ "room": "7", "user": "alice", "destination": "/app/rooms/7/info", "trace": "t-7" })
    );
    // To that subscription alone: bob's topic and bob get nothing of it.
    bob.publish("/topic/rooms/7", "sentinel").await;
    assert_eq!(bob.recv_body().await, "sentinel");
    // The id stays taken until UNSUBSCRIBE, then is free again.
    alice
        .send_frame(
            &Frame::new(Command::Subscribe)
                .header("id", "info")
                .header("destination", "/topic/x"),
        )
        .await;
    let e = alice.expect_error_and_close().await;
    assert!(message_of(&e).contains("already in use"), "{e:?}");
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    alice
        .request(
            Frame::new(Command::Subscribe)
                .header("id", "info")
                .header("destination", "/app/rooms/8/info"),
        )
        .await;
    assert_eq!(json_of(&alice.recv_message().await)["room"], "8");
    alice.unsubscribe("info").await;
    alice.subscribe("info", "/topic/x").await;
    // A subscribe handler's error goes to the subscriber like a SEND handler's.
    alice
        .send_frame(
            &Frame::new(Command::Subscribe)
                .header("id", "s")
                .header("destination", "/app/rooms/secret/info")
                .header("receipt", "r-secret"),
        )
        .await;
    let e = alice.expect_error_and_close().await;
    assert!(message_of(&e).contains("not for you"), "{e:?}");
    assert_eq!(e.get("receipt-id"), Some("r-secret"));
}

#[tokio::test]
async fn the_rooms_demo_answers_a_room_subscribe_with_members_and_recent_messages() {
    let server = TestServer::start().await;
    let room = "00000000-0000-4000-8000-000000000001";
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    alice
        .subscribe("room", &format!("/topic/chat/room/{room}"))
        .await;
    alice
        .request(app(
            "/app/chat/join",
            &format!(r#"{{"chatRoomId":"{room}"}}"#),
        ))
        .await;
    alice
        .request(app(
            "/app/chat/message",
            &format!(r#"{{"chatRoomId":"{room}","message":"hello room"}}"#),
        ))
        .await;
    let (mut bob, _) = server.connect_as(Transport::Ws, "bob").await;
    bob.request(
        Frame::new(Command::Subscribe)
            .header("id", "snapshot")
            .header("destination", format!("/app/chat/rooms/{room}")),
    )
    .await;
    let snap = json_of(&bob.recv_message().await);
    assert_eq!(snap["chatRoomId"], room, "{snap}");
    assert_eq!(snap["members"], json!(["alice"]), "{snap}");
    let recent = snap["recent"].as_array().expect("recent messages");
    assert_eq!(recent.len(), 1, "{snap}");
    assert_eq!(recent[0]["message"], "hello room");
    assert_eq!(recent[0]["writer"], "alice");
}

#[tokio::test]
async fn app_destinations_without_a_subscribe_handler_cannot_be_subscribed() {
    let server = app_server().await;
    let mut c = server.tcp().await;
    c.send_frame(
        &Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/app/echo")
            .header("receipt", "r-sub"),
    )
    .await;
    let e = c.expect_error_and_close().await;
    assert!(message_of(&e).contains("/app/echo"), "{e:?}");
    assert_eq!(e.get("receipt-id"), Some("r-sub"));
}

#[tokio::test]
async fn app_send_without_handler_is_an_error_naming_it() {
    let server = TestServer::with_handlers(test_handlers(), |c| c.apps.demo = false).await;
    let mut c = server.tcp().await;
    c.send_frame(&send_json("/app/chat.send", r#"{"content":"x"}"#, "r-none"))
        .await;
    let e = c.expect_error_and_close().await;
    assert!(
        message_of(&e).contains("no application handler for '/app/chat.send'"),
        "{e:?}"
    );
    assert_eq!(e.get("receipt-id"), Some("r-none"));
}

#[tokio::test]
async fn topic_and_queue_sends_go_to_the_broker() {
    let server = app_server().await;
    let mut t1 = server.tcp().await;
    let mut t2 = server.ws().await;
    t1.subscribe("t", "/topic/plain").await;
    t2.subscribe("t", "/topic/plain").await;
    let mut q1 = server.tcp().await;
    let mut q2 = server.ws().await;
    q1.subscribe("q", "/queue/work").await;
    q2.subscribe("q", "/queue/work").await;
    let mut p = server.tcp().await;
    p.publish("/topic/plain", "to-all").await;
    assert_eq!(t1.recv_body().await, "to-all");
    assert_eq!(t2.recv_body().await, "to-all");
    p.publish("/queue/work", "job-1").await;
    p.publish("/queue/work", "job-2").await;
    let (a, b) = (q1.recv_body().await, q2.recv_body().await);
    let mut got = [a, b];
    got.sort();
    assert_eq!(
        got,
        ["job-1", "job-2"],
        "each queue subscriber gets one of the two"
    );
}

#[tokio::test]
async fn unknown_prefix_is_an_error_listing_the_prefixes() {
    let server = app_server().await;
    let mut c = server.tcp().await;
    c.send_frame(&send_json("/nowhere/x", "{}", "r-x")).await;
    let e = c.expect_error_and_close().await;
    let m = message_of(&e);
    assert!(
        m.contains("/nowhere/x") && m.contains("/app/") && m.contains("/user/"),
        "{m}"
    );
}

#[tokio::test]
async fn configurable_prefixes_publish_and_member() {
    let server = TestServer::with_handlers(test_handlers(), |c| {
        c.routing.app_prefixes = vec!["/publish/".into()];
        c.routing.user_prefix = "/member/".into();
    })
    .await;
    let (mut bob, _) = server.connect_as(Transport::Ws, "bob").await;
    bob.subscribe("inbox", "/member/queue/replies").await;
    bob.subscribe("direct", "/member/queue/x").await;
    bob.subscribe("chat", "/topic/chat").await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;

    // /publish/ is the application prefix: handlers and the demo chat.
    alice.request(app("/publish/reply/user", "{}")).await;
    let m = bob.recv_message().await;
    assert_eq!(m.get("subscription"), Some("inbox"));
    assert_eq!(m.get("destination"), Some("/member/queue/replies"));
    assert_eq!(json_of(&m)["kind"], "user");
    alice
        .request(app("/publish/chat.send", r#"{"content":"hi"}"#))
        .await;
    let m = bob.recv_message().await;
    assert_eq!(m.get("destination"), Some("/topic/chat"));
    assert_eq!(json_of(&m)["content"], "hi");

    // /member/{name}/... is a user destination (its owner's to send to, by default).
    let (mut bob2, _) = server.connect_as(Transport::Tcp, "bob").await;
    bob2.publish("/member/bob/queue/x", "direct").await;
    let m = bob.recv_message().await;
    assert_eq!(
        (m.get("subscription"), body_of(&m).as_str()),
        (Some("direct"), "direct")
    );

    // The defaults are no longer prefixes.
    alice.send_frame(&send_json("/app/echo", "{}", "r-2")).await;
    let e = alice.expect_error_and_close().await;
    assert!(
        message_of(&e).contains("unknown destination '/app/echo'"),
        "{e:?}"
    );
    bob.send_frame(
        &Frame::new(Command::Subscribe)
            .header("id", "u")
            .header("destination", "/user/queue/x"),
    )
    .await;
    let e = bob.expect_error_and_close().await;
    assert!(
        message_of(&e).contains("unknown destination '/user/queue/x'"),
        "{e:?}"
    );
}

#[tokio::test]
async fn several_app_prefixes_all_reach_handlers() {
    let server = TestServer::with_handlers(test_handlers(), |c| {
        c.routing.app_prefixes = vec!["/app/".into(), "/publish/".into()];
    })
    .await;
    let mut c = server.tcp().await;
    c.subscribe("e", "/topic/echoed").await;
    c.request(app("/app/echo", r#"{"via":"app"}"#)).await;
    assert_eq!(json_of(&c.recv_message().await)["got"]["via"], "app");
    c.request(app("/publish/echo", r#"{"via":"publish"}"#))
        .await;
    assert_eq!(json_of(&c.recv_message().await)["got"]["via"], "publish");
}

// ---------------------------------------------------------------------------
// 2. Library API
// ---------------------------------------------------------------------------

#[tokio::test]
async fn path_variables_typed_payload_principal_and_session() {
    let server = app_server().await;
    for t in BOTH {
        let (mut alice, connected) = server.connect_as(t, "alice").await;
        let session = connected
            .get("session")
            .expect("CONNECTED has a session header")
            .to_owned();
        alice.subscribe("room", "/topic/rooms/42").await;
        alice
            .request(app("/app/chat/rooms/42/send", r#"{"text":"hello","n":7}"#))
            .await;
        let m = alice.recv_message().await;
        assert_eq!(m.get("destination"), Some("/topic/rooms/42"));
        assert_eq!(m.get("content-type"), Some("application/json"));
        assert_eq!(
            json_of(&m),
            json!({
                "id": "42", "text": "hello", "n": 7, "user": "alice",
                "session": session, "destination": "/app/chat/rooms/42/send",
            }),
            "{t:?}"
        );
    }
}

#[tokio::test]
async fn payload_not_matching_the_type_is_an_error_naming_it() {
    let server = app_server().await;
    let mut c = server.tcp().await;
    c.send_frame(&send_json(
        "/app/chat/rooms/1/send",
        r#"{"text":"no n"}"#,
        "r-bad",
    ))
    .await;
    let e = c.expect_error_and_close().await;
    let m = message_of(&e);
    assert!(
        m.contains("invalid payload for /app/chat/rooms/1/send") && m.contains("`n`"),
        "{m}"
    );
    assert_eq!(e.get("receipt-id"), Some("r-bad"));

    let mut c = server.tcp().await;
    c.send_frame(&send_json("/app/chat/rooms/1/send", "not json", "r-nj"))
        .await;
    let e = c.expect_error_and_close().await;
    assert!(message_of(&e).contains("invalid payload"), "{e:?}");
}

#[tokio::test]
async fn reply_targets_to_user_sender_and_session() {
    let server = app_server().await;
    let (mut a1, c1) = server.connect_as(Transport::Tcp, "alice").await;
    let (mut a2, _) = server.connect_as(Transport::Ws, "alice").await;
    let (mut bob, _) = server.connect_as(Transport::Tcp, "bob").await;
    let a1_session = c1.get("session").unwrap().to_owned();
    for c in [&mut a1, &mut a2, &mut bob] {
        c.subscribe("topic", "/topic/replies").await;
        c.subscribe("mine", "/user/queue/replies").await;
        c.subscribe("sentinel", "/topic/sentinel-replies").await;
    }
    let mut publisher = server.tcp().await;

    // (kind, who receives it on which subscription: [a1, a2, bob])
    let cases: [(&str, [Option<&str>; 3]); 4] = [
        ("to", [Some("topic"), Some("topic"), Some("topic")]),
        ("user", [None, None, Some("mine")]),
        ("sender", [Some("mine"), Some("mine"), None]),
        ("session", [Some("mine"), None, None]),
    ];
    for (kind, expect) in cases {
        a1.request(app(&format!("/app/reply/{kind}"), "{}")).await;
        for (i, c) in [&mut a1, &mut a2, &mut bob].into_iter().enumerate() {
            let got = frames_before_sentinel(c, &mut publisher, "replies").await;
            match expect[i] {
                Some(sub) => {
                    assert_eq!(got.len(), 1, "{kind}: client {i} got {got:?}");
                    let m = &got[0];
                    assert_eq!(
                        m.get("subscription"),
                        Some(sub),
                        "{kind}: client {i}: {m:?}"
                    );
                    assert_eq!(m.get("x-kind"), Some(kind), "reply header");
                    let dest = if sub == "topic" {
                        "/topic/replies"
                    } else {
                        "/user/queue/replies"
                    };
                    assert_eq!(m.get("destination"), Some(dest));
                    assert_eq!(json_of(m), json!({ "kind": kind, "from": a1_session }));
                }
                None => assert!(
                    got.is_empty(),
                    "{kind}: client {i} should get nothing, got {got:?}"
                ),
            }
        }
    }
}

#[tokio::test]
async fn handler_error_is_an_error_frame_to_the_sender_only() {
    let server = app_server().await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    let (mut alice2, _) = server.connect_as(Transport::Ws, "alice").await;
    let (mut bob, _) = server.connect_as(Transport::Ws, "bob").await;
    for c in [&mut alice2, &mut bob] {
        c.subscribe("news", "/topic/news").await;
        c.subscribe("errors", "/user/queue/errors").await;
    }
    alice
        .send_frame(&send_json("/app/fail", "{}", "r-fail"))
        .await;
    let e = alice.expect_error_and_close().await;
    assert!(
        message_of(&e).contains("order rejected: out of stock"),
        "{e:?}"
    );
    assert_eq!(e.get("receipt-id"), Some("r-fail"));

    // Others: still connected, nothing received but what is published next.
    let mut p = server.tcp().await;
    p.publish("/topic/news", "after").await;
    for c in [&mut alice2, &mut bob] {
        let m = c.recv_message().await;
        assert_eq!(
            (m.get("subscription"), body_of(&m).as_str()),
            (Some("news"), "after")
        );
    }
    bob.request(app("/app/echo", "{}")).await;
}

#[tokio::test]
async fn handler_error_without_receipt_has_no_receipt_id() {
    let server = app_server().await;
    let mut c = server.tcp().await;
    c.send_frame(&send("/app/fail", "{}")).await;
    let e = c.expect_error_and_close().await;
    assert!(message_of(&e).contains("order rejected"), "{e:?}");
    assert_eq!(e.get("receipt-id"), None);
}

#[tokio::test]
async fn errors_queue_delivers_to_the_sending_session_and_keeps_it_open() {
    let server =
        TestServer::with_handlers(test_handlers(), |c| c.apps.errors = ErrorDelivery::Queue).await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    let (mut alice2, _) = server.connect_as(Transport::Ws, "alice").await;
    alice.subscribe("errors", "/user/queue/errors").await;
    alice2.subscribe("errors", "/user/queue/errors").await;
    alice2.subscribe("sentinel", "/topic/sentinel-errq").await;

    alice
        .send_frame(&send_json("/app/fail", "{}", "r-fail"))
        .await;
    let m = expect_command(&mut alice, Command::Message).await;
    assert_eq!(m.get("subscription"), Some("errors"));
    assert_eq!(m.get("destination"), Some("/user/queue/errors"));
    assert!(
        m.get("message")
            .unwrap_or("")
            .contains("order rejected: out of stock"),
        "{m:?}"
    );
    assert_eq!(
        json_of(&m),
        json!({ "error": "order rejected: out of stock", "destination": "/app/fail" })
    );
    expect_receipt(&mut alice, "r-fail").await;

    // Still open and working.
    alice.subscribe("e", "/topic/echoed").await;
    alice.request(app("/app/echo", r#"{"still":"open"}"#)).await;
    assert_eq!(json_of(&alice.recv_message().await)["got"]["still"], "open");

    // The other session of the same user got nothing.
    let mut p = server.tcp().await;
    let got = frames_before_sentinel(&mut alice2, &mut p, "errq").await;
    assert!(got.is_empty(), "other session of alice got {got:?}");

    // Timeouts and panics also go to the queue.
    alice
        .send_frame(&send_json("/app/panic", "{}", "r-3"))
        .await;
    let m = expect_command(&mut alice, Command::Message).await;
    assert!(
        json_of(&m)["error"].as_str().unwrap().contains("/panic"),
        "{m:?}"
    );
    expect_receipt(&mut alice, "r-3").await;
}

#[tokio::test]
async fn handler_timeout_is_a_clear_error() {
    let server = TestServer::with_handlers(test_handlers(), |c| {
        c.apps.handler_timeout = Duration::from_millis(200);
    })
    .await;
    let mut bystander = server.ws().await;
    bystander.subscribe("n", "/topic/n").await;
    let mut c = server.tcp().await;
    c.send_frame(&send_json("/app/slow", "{}", "r-slow")).await;
    let e = c.expect_error_and_close().await;
    let m = message_of(&e);
    assert!(m.contains("timed out") && m.contains("/app/slow"), "{m}");
    assert_eq!(e.get("receipt-id"), Some("r-slow"));
    let mut p = server.tcp().await;
    p.publish("/topic/n", "fine").await;
    assert_eq!(bystander.recv_body().await, "fine");
}

#[tokio::test]
async fn panicking_handler_is_an_error_and_the_server_carries_on() {
    let server = app_server().await;
    let mut bystander = server.ws().await;
    bystander.subscribe("e", "/topic/echoed").await;
    for _ in 0..3 {
        let mut c = server.tcp().await;
        c.send_frame(&send_json("/app/panic", "{}", "r-p")).await;
        let e = c.expect_error_and_close().await;
        assert!(
            message_of(&e).contains("handler for /panic failed"),
            "{e:?}"
        );
        assert_eq!(e.get("receipt-id"), Some("r-p"));
    }
    let mut c = server.tcp().await;
    c.request(app("/app/echo", r#"{"after":"panic"}"#)).await;
    assert_eq!(
        json_of(&bystander.recv_message().await)["got"]["after"],
        "panic"
    );
    let (status, _) = server.http_get("/health").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn messaging_from_outside_a_handler() {
    let server = app_server().await;
    let (mut bob1, _) = server.connect_as(Transport::Tcp, "bob").await;
    let (mut bob2, _) = server.connect_as(Transport::Ws, "bob").await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    for c in [&mut bob1, &mut bob2, &mut alice] {
        c.subscribe("ext", "/user/queue/ext").await;
        c.subscribe("sentinel", "/topic/sentinel-ext").await;
    }
    alice.subscribe("topic", "/topic/ext").await;
    let messaging = &server.node.messaging;

    assert_eq!(
        messaging.convert_and_send("/topic/ext", &json!({ "n": 1 })),
        Ok(1)
    );
    let m = alice.recv_message().await;
    assert_eq!(
        (m.get("destination"), m.get("content-type")),
        (Some("/topic/ext"), Some("application/json"))
    );
    assert_eq!(json_of(&m), json!({ "n": 1 }));

    assert_eq!(
        messaging.convert_and_send_to_user("bob", "/queue/ext", &json!({ "n": 2 })),
        Ok(2)
    );
    assert_eq!(
        messaging.convert_and_send("/user/bob/queue/ext", &json!({ "n": 3 })),
        Ok(2)
    );
    for bob in [&mut bob1, &mut bob2] {
        for n in [2, 3] {
            let m = bob.recv_message().await;
            assert_eq!(m.get("destination"), Some("/user/queue/ext"));
            assert_eq!(json_of(&m), json!({ "n": n }));
        }
    }
    let mut p = server.tcp().await;
    let got = frames_before_sentinel(&mut alice, &mut p, "ext").await;
    assert!(got.is_empty(), "alice got bob's messages: {got:?}");

    let e = messaging
        .convert_and_send("/app/echo", &json!({}))
        .unwrap_err();
    assert!(e.message.contains("application destination"), "{e}");
    let e = messaging
        .convert_and_send("/elsewhere", &json!({}))
        .unwrap_err();
    assert!(e.message.contains("unknown destination"), "{e}");
}

#[tokio::test]
async fn receipt_of_an_app_send_comes_after_the_handlers_message() {
    let server = app_server().await;
    for t in BOTH {
        let mut c = server.connect(t).await;
        c.subscribe("d", "/topic/delayed").await;
        c.subscribe("e", "/topic/echoed").await;
        for i in 0..5 {
            c.send_frame(&send_json(
                "/app/delayed",
                &format!("{{\"i\":{i}}}"),
                &format!("r-d{i}"),
            ))
            .await;
            let m = expect_command(&mut c, Command::Message).await;
            assert_eq!(json_of(&m), json!({ "i": i }), "{t:?}");
            expect_receipt(&mut c, &format!("r-d{i}")).await;
            c.send_frame(&send_json(
                "/app/echo",
                &format!("{{\"i\":{i}}}"),
                &format!("r-e{i}"),
            ))
            .await;
            let m = expect_command(&mut c, Command::Message).await;
            assert_eq!(json_of(&m)["got"], json!({ "i": i }), "{t:?}");
            expect_receipt(&mut c, &format!("r-e{i}")).await;
        }
    }
}

// ---------------------------------------------------------------------------
// 4. User destinations
// ---------------------------------------------------------------------------

#[tokio::test]
async fn user_destinations_reach_every_session_of_that_user_only() {
    let server = open_user_sends_server().await;
    let (mut bob_tcp, _) = server.connect_as(Transport::Tcp, "bob").await;
    let (mut bob_ws, _) = server.connect_as(Transport::Ws, "bob").await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    let (mut bob_smith, _) = server.connect_as(Transport::Ws, "bob.smith").await;
    for c in [&mut bob_tcp, &mut bob_ws, &mut alice, &mut bob_smith] {
        c.subscribe("x", "/user/queue/x").await;
        c.subscribe("sentinel", "/topic/sentinel-user").await;
    }
    let mut sender = server.tcp().await;
    sender.publish("/user/bob/queue/x", "for bob").await;
    for bob in [&mut bob_tcp, &mut bob_ws] {
        let m = bob.recv_message().await;
        assert_eq!(body_of(&m), "for bob");
        assert_eq!(m.get("destination"), Some("/user/queue/x"));
        assert_eq!(m.get("subscription"), Some("x"));
    }
    for other in [&mut alice, &mut bob_smith] {
        let got = frames_before_sentinel(other, &mut sender, "user").await;
        assert!(got.is_empty(), "not bob, but got {got:?}");
    }
    sender
        .publish("/user/bob.smith/queue/x", "for bob.smith")
        .await;
    assert_eq!(bob_smith.recv_body().await, "for bob.smith");
    for c in [&mut bob_tcp, &mut bob_ws, &mut alice] {
        let got = frames_before_sentinel(c, &mut sender, "user").await;
        assert!(got.is_empty(), "not bob.smith, but got {got:?}");
    }
    // A user destination naming no user is an error.
    sender
        .send_frame(&send_json("/user/bob", "{}", "r-nouser"))
        .await;
    let e = sender.expect_error_and_close().await;
    assert!(message_of(&e).contains("names no user"), "{e:?}");
}

#[tokio::test]
async fn a_user_cannot_listen_to_another_users_queue() {
    let server = open_user_sends_server().await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    // Whatever alice subscribes under /user/, it is keyed by her own name.
    alice.subscribe("a", "/user/bob/queue/x").await;
    alice.subscribe("b", "/user/*/queue/x").await;
    alice.subscribe("c", "/user/**").await;
    alice.subscribe("sentinel", "/topic/sentinel-spy").await;
    let mut sender = server.tcp().await;
    sender.publish("/user/bob/queue/x", "secret").await;
    let got = frames_before_sentinel(&mut alice, &mut sender, "spy").await;
    assert!(got.is_empty(), "alice saw bob's message: {got:?}");
}

// ---------------------------------------------------------------------------
// 5. REST publish API
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rest_publish_string_and_json_bodies() {
    let server = app_server().await;
    let mut sub = server.ws().await;
    sub.subscribe("r", "/topic/rest").await;
    let (status, v) = server
        .http_post_json(
            "/api/publish",
            r#"{"destination":"/topic/rest","body":"plain text","headers":{"x-a":"1"}}"#,
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        (&v["delivered"], &v["offset"]),
        (&json!(1), &json!(1)),
        "{v}"
    );
    assert!(v["epoch"].is_string() && v.get("warning").is_none(), "{v}");
    let m = sub.recv_message().await;
    assert_eq!(body_of(&m), "plain text");
    assert!(
        m.get("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{m:?}"
    );
    assert_eq!(m.get("x-a"), Some("1"));

    let (status, _) = server
        .http_post_json(
            "/api/publish",
            r#"{"destination":"/topic/rest","body":{"a":[1,2]}}"#,
        )
        .await;
    assert_eq!(status, 202);
    let m = sub.recv_message().await;
    assert_eq!(m.get("content-type"), Some("application/json"));
    assert_eq!(json_of(&m), json!({ "a": [1, 2] }));

    // To a user destination through /api/publish.
    let (mut bob, _) = server.connect_as(Transport::Tcp, "bob").await;
    bob.subscribe("m", "/user/queue/messages").await;
    let (status, v) = server
        .http_post_json(
            "/api/publish",
            r#"{"destination":"/user/bob/queue/messages","body":"via publish"}"#,
        )
        .await;
    assert_eq!((status, &v["delivered"]), (202, &json!(1)), "{v}");
    assert_eq!(bob.recv_body().await, "via publish");
}

#[tokio::test]
async fn rest_publish_bad_requests_name_the_problem() {
    let server = app_server().await;
    let mut sub = server.ws().await;
    sub.subscribe("all", "/topic/**").await;
    let cases: [(&str, &[&str]); 5] = [
        (r#"{"destination": "/topic/x", "body": "#, &["JSON"]),
        (r#"{"body":"no destination"}"#, &["destination"]),
        (
            r#"{"destination":"/nowhere/x","body":"x"}"#,
            &["unknown destination", "/nowhere/x"],
        ),
        (
            r#"{"destination":"/app/chat.send","body":{"content":"x"}}"#,
            &["application destination", "/app/chat.send"],
        ),
        (r#"{"destination":"/topic/x"}"#, &["body"]),
    ];
    for (body, words) in cases {
        let (status, v) = server.http_post_json("/api/publish", body).await;
        assert_eq!(status, 400, "{body} → {v}");
        let err = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{body} → no \"error\": {v}"));
        for w in words {
            assert!(
                err.contains(w),
                "{body} → error {err:?} should mention {w:?}"
            );
        }
    }
    // None of it was published: the next message is the sentinel.
    let (status, _) = server
        .http_post_json("/api/publish", r#"{"destination":"/topic/ok","body":"ok"}"#)
        .await;
    assert_eq!(status, 202);
    let m = sub.recv_message().await;
    assert_eq!(
        (m.get("destination"), body_of(&m).as_str()),
        (Some("/topic/ok"), "ok")
    );
}

#[tokio::test]
async fn rest_user_messages_reach_that_user_only() {
    let server = app_server().await;
    let (mut bob1, _) = server.connect_as(Transport::Tcp, "bob").await;
    let (mut bob2, _) = server.connect_as(Transport::Ws, "bob").await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    for c in [&mut bob1, &mut bob2, &mut alice] {
        c.subscribe("m", "/user/queue/messages").await;
        c.subscribe("sentinel", "/topic/sentinel-restuser").await;
    }
    let (status, v) = server
        .http_post_json(
            "/api/users/bob/messages",
            r#"{"destination":"/queue/messages","body":{"hi":"bob"},"headers":{"x-from":"rest"}}"#,
        )
        .await;
    assert_eq!((status, &v["delivered"]), (202, &json!(2)), "{v}");
    for bob in [&mut bob1, &mut bob2] {
        let m = bob.recv_message().await;
        assert_eq!(m.get("destination"), Some("/user/queue/messages"));
        assert_eq!(m.get("x-from"), Some("rest"));
        assert_eq!(json_of(&m), json!({ "hi": "bob" }));
    }
    let mut p = server.tcp().await;
    assert!(
        frames_before_sentinel(&mut alice, &mut p, "restuser")
            .await
            .is_empty()
    );

    let (status, v) = server
        .http_post_json(
            "/api/users/bob/messages",
            r#"{"destination":"queue/messages","body":"x"}"#,
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("must start with '/'"),
        "{v}"
    );
    let (status, v) = server
        .http_post_json("/api/users/bob/messages", "{oops")
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].is_string(), "{v}");
}

// ---------------------------------------------------------------------------
// 6. Seed apps (demo on by default)
// ---------------------------------------------------------------------------

fn assert_recent_timestamp(v: &Value) {
    let ts = v["timestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("no timestamp: {v}"));
    let t = humantime::parse_rfc3339(ts)
        .unwrap_or_else(|e| panic!("timestamp {ts:?} is not RFC 3339: {e}"));
    let age = std::time::SystemTime::now()
        .duration_since(t)
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(60),
        "timestamp {ts} is not the server's now"
    );
}

#[tokio::test]
async fn seed_chat_and_greeting() {
    let server = TestServer::start().await;
    let (mut alice, _) = server.connect_as(Transport::Ws, "alice").await;
    let (mut bob, _) = server.connect_as(Transport::Tcp, "bob").await;
    alice.subscribe("chat", "/topic/chat").await;
    alice.subscribe("greet", "/topic/greetings").await;
    alice.subscribe("pm", "/user/queue/messages").await;
    bob.subscribe("pm", "/user/queue/messages").await;

    bob.request(app("/app/chat.send", r#"{"content":"hello all"}"#))
        .await;
    let v = json_of(&alice.recv_message().await);
    assert_eq!(
        (v["sender"].as_str(), v["content"].as_str()),
        (Some("bob"), Some("hello all"))
    );
    assert_recent_timestamp(&v);

    bob.request(app(
        "/app/chat.private",
        r#"{"recipient":"alice","content":"psst"}"#,
    ))
    .await;
    let m = alice.recv_message().await;
    assert_eq!(m.get("subscription"), Some("pm"));
    let v = json_of(&m);
    assert_eq!(
        (
            v["sender"].as_str(),
            v["recipient"].as_str(),
            v["content"].as_str()
        ),
        (Some("bob"), Some("alice"), Some("psst"))
    );
    assert_recent_timestamp(&v);

    bob.request(app("/app/hello", r#"{"name":"<b>"}"#)).await;
    let m = alice.recv_message().await;
    assert_eq!(m.get("destination"), Some("/topic/greetings"));
    assert_eq!(json_of(&m), json!({ "content": "Hello, &lt;b&gt;!" }));
}

/// A client of `/ws/chat`; `query` is the handshake's query string (`login=pat`,
/// `access_token=...`).
async fn chat_socket(server: &TestServer, query: &str) -> PlainWs {
    PlainWs::open(server.http, &format!("/ws/chat?{query}")).await
}

async fn first_room(server: &TestServer) -> Value {
    let (status, body) = server.http_get("/api/rooms").await;
    assert_eq!(status, 200);
    let rooms: Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = rooms
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Room 1", "Room 2", "Room 3"]);
    rooms[0].clone()
}

#[tokio::test]
async fn seed_rooms_rest_api() {
    let server = TestServer::start().await;
    first_room(&server).await;
    let (status, v) = server
        .http_post_json("/api/rooms", r#"{"name":"Lobby"}"#)
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["name"], "Lobby");
    assert_eq!(v["members"], json!([]));
    let id = v["id"].as_str().unwrap().to_owned();
    let (status, body) = server.http_get(&format!("/api/rooms/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["name"],
        "Lobby"
    );
    let (_, body) = server.http_get("/api/rooms").await;
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list.as_array().unwrap().last().unwrap()["id"], id.as_str());

    for bad in [r#"{"name":""}"#, r#"{"name":"   "}"#, r#"{}"#, "nope"] {
        let (status, v) = server.http_post_json("/api/rooms", bad).await;
        assert_eq!(status, 400, "{bad} → {v}");
        assert!(v["error"].is_string(), "{bad} → {v}");
    }
    let (status, v) = server.http_post_json("/api/rooms", r#"{"name":""}"#).await;
    assert!(
        v["error"].as_str().unwrap().contains("name"),
        "{status} {v}"
    );
    let (status, body) = server.http_get("/api/rooms/no-such-room").await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("unknown room"));
}

#[tokio::test]
async fn seed_rooms_stomp_and_plain_websocket_meet() {
    let server = TestServer::start().await;
    let room = first_room(&server).await;
    let id = room["id"].as_str().unwrap().to_owned();
    let topic = format!("/topic/chat/room/{id}");

    let (mut stomp, _) = server.connect_as(Transport::Tcp, "alice").await;
    stomp.subscribe("room", &topic).await;
    stomp
        .request(app(
            "/app/chat/join",
            &json!({ "chatRoomId": id, "writer": "Alice" }).to_string(),
        ))
        .await;
    let v = json_of(&stomp.recv_message().await);
    assert_eq!(
        (v["type"].as_str(), v["writer"].as_str()),
        (Some("JOIN"), Some("alice"))
    );
    assert_eq!(v["chatRoomId"], id.as_str());
    assert_eq!(v["members"], json!(["alice"]));

    let mut plain = chat_socket(&server, "login=pat").await;
    plain
        .send(json!({ "chatRoomId": id, "type": "JOIN", "writer": "Pat" }))
        .await;
    let v = plain.recv().await;
    assert_eq!(
        (v["type"].as_str(), v["writer"].as_str()),
        (Some("JOIN"), Some("pat"))
    );
    assert_eq!(v["members"], json!(["alice", "pat"]));
    assert_eq!(
        json_of(&stomp.recv_message().await),
        v,
        "both see the same event"
    );

    let (_, body) = server.http_get(&format!("/api/rooms/{id}")).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["members"],
        json!(["alice", "pat"])
    );

    plain
        .send(json!({ "chatRoomId": id, "type": "CHAT", "writer": "Pat", "message": "hi from ws" }))
        .await;
    for v in [plain.recv().await, json_of(&stomp.recv_message().await)] {
        assert_eq!(
            (v["type"].as_str(), v["message"].as_str()),
            (Some("CHAT"), Some("hi from ws"))
        );
        assert_recent_timestamp(&v);
    }
    stomp
        .request(app(
            "/app/chat/message",
            &json!({ "chatRoomId": id, "writer": "Alice", "message": "hi from stomp" }).to_string(),
        ))
        .await;
    for v in [plain.recv().await, json_of(&stomp.recv_message().await)] {
        assert_eq!(
            (
                v["type"].as_str(),
                v["writer"].as_str(),
                v["message"].as_str()
            ),
            (Some("CHAT"), Some("alice"), Some("hi from stomp"))
        );
    }

    // Bad plain messages: an ERROR message to that socket alone, which stays open.
    let bad: [(Value, &str); 4] = [
        (json!("not an object"), "invalid chat message"),
        (
            json!({ "type": "CHAT", "writer": "Pat", "message": "x" }),
            "chatRoomId",
        ),
        (
            json!({ "chatRoomId": "no-such-room", "type": "CHAT", "writer": "Pat", "message": "x" }),
            "unknown room",
        ),
        (
            json!({ "chatRoomId": id, "type": "SHOUT", "writer": "Pat", "message": "x" }),
            "unknown message type",
        ),
    ];
    for (msg, word) in bad {
        plain.send(msg.clone()).await;
        let v = plain.recv().await;
        assert_eq!(v["type"], "ERROR", "{msg} → {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(word),
            "{msg} → {v} should mention {word}"
        );
    }
    plain.send_text("{{{ not json").await;
    let v = plain.recv().await;
    assert_eq!(v["type"], "ERROR");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("invalid chat message"),
        "{v}"
    );

    // STOMP side: bad payloads are errors to that sender only.
    let (mut bad_stomp, _) = server.connect_as(Transport::Ws, "mallory").await;
    bad_stomp
        .send_frame(&send_json(
            "/app/chat/message",
            &json!({ "chatRoomId": "nope", "writer": "M", "message": "x" }).to_string(),
            "rb",
        ))
        .await;
    let e = bad_stomp.expect_error_and_close().await;
    assert!(message_of(&e).contains("unknown room 'nope'"), "{e:?}");

    // Nobody else was disturbed: the next event each sees is the next chat.
    stomp
        .request(app(
            "/app/chat/message",
            &json!({ "chatRoomId": id, "writer": "Alice", "message": "still here" }).to_string(),
        ))
        .await;
    for v in [plain.recv().await, json_of(&stomp.recv_message().await)] {
        assert_eq!(v["message"], "still here");
    }

    // LEAVE by message, then by disconnect.
    stomp
        .request(app(
            "/app/chat/leave",
            &json!({ "chatRoomId": id }).to_string(),
        ))
        .await;
    for v in [plain.recv().await, json_of(&stomp.recv_message().await)] {
        assert_eq!(
            (v["type"].as_str(), v["writer"].as_str()),
            (Some("LEAVE"), Some("alice"))
        );
        assert_eq!(v["members"], json!(["pat"]));
    }
    drop(plain);
    let v = json_of(&stomp.recv_message().await);
    assert_eq!(
        (v["type"].as_str(), v["writer"].as_str()),
        (Some("LEAVE"), Some("pat"))
    );
    assert_eq!(v["members"], json!([]));
    let (_, body) = server.http_get(&format!("/api/rooms/{id}")).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["members"],
        json!([])
    );
}

#[tokio::test]
async fn seed_rooms_stomp_disconnect_leaves() {
    let server = TestServer::start().await;
    let id = first_room(&server).await["id"].as_str().unwrap().to_owned();
    let mut watcher = server.ws().await;
    watcher
        .subscribe("room", &format!("/topic/chat/room/{id}"))
        .await;
    let (mut joiner, _) = server.connect_as(Transport::Tcp, "Jo").await;
    joiner
        .request(app(
            "/app/chat/join",
            &json!({ "chatRoomId": id, "writer": "Jo" }).to_string(),
        ))
        .await;
    assert_eq!(json_of(&watcher.recv_message().await)["type"], "JOIN");
    joiner.disconnect().await;
    let v = json_of(&watcher.recv_message().await);
    assert_eq!(
        (v["type"].as_str(), v["writer"].as_str()),
        (Some("LEAVE"), Some("Jo"))
    );
    assert_eq!(v["members"], json!([]));

    let mut unknown = server.tcp().await;
    unknown
        .send_frame(&send_json(
            "/app/chat/join",
            r#"{"chatRoomId":"nope","writer":"Jo"}"#,
            "ru",
        ))
        .await;
    let e = unknown.expect_error_and_close().await;
    assert!(message_of(&e).contains("unknown room 'nope'"), "{e:?}");
    assert_eq!(e.get("receipt-id"), Some("ru"));
}

// ---------------------------------------------------------------------------
// 7. The demo apps speak for the principal; rooms have a budget
// ---------------------------------------------------------------------------

const ISS: &str = "https://idp.test";

#[tokio::test]
async fn demo_chat_writes_as_the_principal_never_as_the_payload_says() {
    let server = TestServer::with(|c| {
        c.auth.issuers = vec![secret_issuer(ISS)];
        c.auth.required = true;
    })
    .await;
    let id = first_room(&server).await["id"].as_str().unwrap().to_owned();
    let topic = format!("/topic/chat/room/{id}");
    let bearer = format!("Bearer {}", hs_token(ISS, "alice", &[]));
    let (mut alice, answer) = server
        .connect_headers(Transport::Ws, &[("Authorization", &bearer)])
        .await;
    assert_eq!(answer.command, Command::Connected, "{answer:?}");
    alice.subscribe("room", &topic).await;
    alice.subscribe("chat", "/topic/chat").await;

    // No token: the plain chat is not let in at all.
    let url = format!("ws://{}/ws/chat", server.http);
    let refused = tokio::time::timeout(WAIT, ClientBuilder::new().uri(&url).unwrap().connect())
        .await
        .expect("/ws/chat answers in time");
    assert!(refused.is_err(), "/ws/chat without a token was let in");

    // Mallory's token, claiming to be "admin" by login and by payload.
    let mallory = hs_token(ISS, "mallory", &[]);
    let mut plain = chat_socket(&server, &format!("access_token={mallory}&login=admin")).await;
    plain
        .send(json!({ "chatRoomId": id, "type": "JOIN", "writer": "admin" }))
        .await;
    let v = plain.recv().await;
    assert_eq!(
        (v["type"].as_str(), v["writer"].as_str()),
        (Some("JOIN"), Some("mallory"))
    );
    assert_eq!(v["members"], json!(["mallory"]));
    assert_eq!(json_of(&alice.recv_message().await), v);
    plain
        .send(json!({ "chatRoomId": id, "type": "CHAT", "writer": "admin", "message": "hi" }))
        .await;
    for v in [plain.recv().await, json_of(&alice.recv_message().await)] {
        assert_eq!(
            (v["writer"].as_str(), v["message"].as_str()),
            (Some("mallory"), Some("hi"))
        );
    }

    // STOMP: the payload's writer and sender are ignored too.
    alice
        .request(app(
            "/app/chat/join",
            &json!({ "chatRoomId": id, "writer": "admin" }).to_string(),
        ))
        .await;
    let v = json_of(&alice.recv_message().await);
    assert_eq!(
        (v["type"].as_str(), v["writer"].as_str()),
        (Some("JOIN"), Some("alice"))
    );
    assert_eq!(v["members"], json!(["alice", "mallory"]));
    alice
        .request(app(
            "/app/chat/message",
            &json!({ "chatRoomId": id, "writer": "admin", "message": "yo" }).to_string(),
        ))
        .await;
    assert_eq!(json_of(&alice.recv_message().await)["writer"], "alice");
    alice
        .request(app(
            "/app/chat.send",
            r#"{"sender":"admin","content":"from me"}"#,
        ))
        .await;
    let v = json_of(&alice.recv_message().await);
    assert_eq!(
        (v["sender"].as_str(), v["content"].as_str()),
        (Some("alice"), Some("from me"))
    );
}

#[tokio::test]
async fn anonymous_plain_chat_is_named_like_a_connect_never_by_the_payload() {
    let server = TestServer::start().await;
    let id = first_room(&server).await["id"].as_str().unwrap().to_owned();
    let mut nameless = chat_socket(&server, "").await;
    nameless
        .send(json!({ "chatRoomId": id, "type": "JOIN", "writer": "admin" }))
        .await;
    let v = nameless.recv().await;
    let writer = v["writer"].as_str().unwrap();
    assert!(writer.starts_with("anonymous-"), "{v}");
}

/// Creates a room by REST: (status, answer).
async fn create_room(server: &TestServer, name: &str) -> (u16, Value) {
    server
        .http_post_json("/api/rooms", &json!({ "name": name }).to_string())
        .await
}

/// Polls `GET /api/rooms/{id}` until it answers `status` (within a generous bound).
async fn until_room_status(server: &TestServer, id: &str, status: u16) {
    let deadline = tokio::time::Instant::now() + HTTP_WAIT;
    loop {
        let (got, _) = server.http_get(&format!("/api/rooms/{id}")).await;
        if got == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "room {id} still answers {got}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rooms_are_limited_and_the_refusal_names_the_limit() {
    let server = TestServer::with(|c| c.apps.max_rooms = 5).await;
    first_room(&server).await;
    for name in ["a", "b"] {
        let (status, v) = create_room(&server, name).await;
        assert_eq!(status, 201, "{v}");
    }
    let (status, v) = create_room(&server, "c").await;
    assert_eq!(status, 429, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("too many rooms") && msg.contains("apps.max_rooms = 5"),
        "{v}"
    );
    assert_eq!(v["code"], "max_rooms");
    let (_, body) = server.http_get("/api/rooms").await;
    let rooms: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rooms.as_array().unwrap().len(), 5);
    let (status, body) = server.http_get("/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("herald_limit_hits_total{limit=\"apps.max_rooms\"}"),
        "{text}"
    );
    assert!(text.contains("herald_rooms "), "{text}");
}

#[tokio::test]
async fn idle_rooms_expire_and_free_their_place() {
    let server = TestServer::with(|c| {
        c.apps.max_rooms = 5;
        c.apps.room_idle_timeout = Duration::from_millis(300);
    })
    .await;
    first_room(&server).await;
    let (_, busy) = create_room(&server, "busy").await;
    let busy = busy["id"].as_str().unwrap().to_owned();
    let (_, idle) = create_room(&server, "idle").await;
    let idle = idle["id"].as_str().unwrap().to_owned();
    let (mut member, _) = server.connect_as(Transport::Tcp, "bo").await;
    member
        .subscribe("room", &format!("/topic/chat/room/{busy}"))
        .await;
    member
        .request(app(
            "/app/chat/join",
            &json!({ "chatRoomId": busy }).to_string(),
        ))
        .await;
    assert_eq!(json_of(&member.recv_message().await)["type"], "JOIN");
    assert_eq!(create_room(&server, "full").await.0, 429);

    // The empty room goes; the occupied one and the starting rooms stay.
    until_room_status(&server, &idle, 404).await;
    let (status, _) = server.http_get(&format!("/api/rooms/{busy}")).await;
    assert_eq!(status, 200, "a room with a member was removed");
    let (_, body) = server.http_get("/api/rooms").await;
    let names: Vec<String> = serde_json::from_slice::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["Room 1", "Room 2", "Room 3", "busy"]);
    let (status, v) = create_room(&server, "now there is room").await;
    assert_eq!(status, 201, "{v}");

    // Once its member leaves, the busy room goes too.
    member
        .request(app(
            "/app/chat/leave",
            &json!({ "chatRoomId": busy }).to_string(),
        ))
        .await;
    until_room_status(&server, &busy, 404).await;
}

#[tokio::test]
async fn rooms_follow_a_custom_topic_prefix() {
    let server = TestServer::with(|c| c.broker.topic_prefixes = vec!["/exchange/".into()]).await;
    let id = first_room(&server).await["id"].as_str().unwrap().to_owned();
    let (mut watcher, _) = server.connect_as(Transport::Ws, "watcher").await;
    watcher
        .subscribe("room", &format!("/exchange/chat/room/{id}"))
        .await;
    let mut plain = chat_socket(&server, "login=pat").await;
    plain
        .send(json!({ "chatRoomId": id, "type": "JOIN" }))
        .await;
    let v = plain.recv().await;
    assert_eq!(
        (v["type"].as_str(), v["writer"].as_str()),
        (Some("JOIN"), Some("pat"))
    );
    assert_eq!(json_of(&watcher.recv_message().await), v);
    plain
        .send(json!({ "chatRoomId": id, "type": "CHAT", "message": "still alive" }))
        .await;
    assert_eq!(plain.recv().await["message"], "still alive");
}

/// Spring's `enableSimpleBroker("/subscribe")` with
/// `setApplicationDestinationPrefixes("/publish")` (seed 001): the demo apps are
/// called under the configured prefix and publish under the configured topic prefix,
/// a user's queue included, never under `/topic/`.
#[tokio::test]
async fn the_demo_apps_follow_the_configured_prefixes() {
    let server = TestServer::with(|c| {
        c.broker.topic_prefixes = vec!["/subscribe/".into()];
        c.broker.queue_prefixes = vec![];
        c.routing.app_prefixes = vec!["/publish/".into()];
    })
    .await;
    let (mut alice, _) = server.connect_as(Transport::Tcp, "alice").await;
    let (mut bob, _) = server.connect_as(Transport::Ws, "bob").await;
    alice.subscribe("chat", "/subscribe/chat").await;
    alice.subscribe("greetings", "/subscribe/greetings").await;
    bob.subscribe("dm", "/user/subscribe/messages").await;

    alice
        .request(app("/publish/chat.send", r#"{"content":"hi all"}"#))
        .await;
    let m = alice.recv_message().await;
    assert_eq!(m.get("destination"), Some("/subscribe/chat"));
    assert_eq!(json_of(&m)["content"], "hi all");
    alice
        .request(app("/publish/hello", r#"{"name":"Fred"}"#))
        .await;
    let m = alice.recv_message().await;
    assert_eq!(m.get("destination"), Some("/subscribe/greetings"));
    assert_eq!(json_of(&m)["content"], "Hello, Fred!");
    alice
        .request(app(
            "/publish/chat.private",
            r#"{"recipient":"bob","content":"psst"}"#,
        ))
        .await;
    let m = bob.recv_message().await;
    assert_eq!(m.get("destination"), Some("/user/subscribe/messages"));
    assert_eq!(json_of(&m)["content"], "psst");

    // A room's events go to /subscribe/chat/room/{id}.
    let (status, body) = server.http_get("/api/rooms").await;
    assert_eq!(status, 200);
    let rooms: Value = serde_json::from_slice(&body).unwrap();
    let id = rooms[0]["id"].as_str().unwrap().to_owned();
    let room = format!("/subscribe/chat/room/{id}");
    bob.subscribe("room", &room).await;
    bob.request(app(
        "/publish/chat/join",
        &json!({ "chatRoomId": id }).to_string(),
    ))
    .await;
    let m = bob.recv_message().await;
    assert_eq!(m.get("destination"), Some(room.as_str()));
    assert_eq!(json_of(&m)["type"], "JOIN");
}

/// The demo apps need somewhere to publish and to be called: start-up says which
/// setting leaves them none.
#[test]
fn demo_apps_without_a_topic_or_app_prefix_are_refused_by_name() {
    let mut c = herald::Config::default();
    c.broker.topic_prefixes.clear();
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("broker.topic_prefixes") && e.contains("apps.demo"),
        "{e}"
    );
    let mut c = herald::Config::default();
    c.routing.app_prefixes.clear();
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("routing.app_prefixes") && e.contains("apps.demo"),
        "{e}"
    );
    let mut c = herald::Config::default();
    c.apps.demo = false;
    c.broker.topic_prefixes.clear();
    c.validate().unwrap();
}

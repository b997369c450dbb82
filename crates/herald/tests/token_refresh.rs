//! A live session handed a fresh token (SEND to /herald/token): the expiry moves,
//! the user must stay the same, anything wrong is an ERROR that says why.

mod common;

use std::time::Duration;

use common::*;
use herald_stomp::{Command, Frame};

const ISS: &str = "https://idp.test";

fn short_token(sub: &str, ttl: i64) -> String {
    sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET.as_bytes(),
        None,
        &claims(ISS, sub, &[], ttl),
    )
}

async fn server() -> TestServer {
    TestServer::with(|cfg| {
        cfg.auth.issuers = vec![secret_issuer(ISS)];
        cfg.auth.leeway = Duration::ZERO;
        cfg.stomp.heartbeat_send = Duration::ZERO;
        cfg.stomp.heartbeat_receive = Duration::ZERO;
    })
    .await
}

fn refresh(token: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", "/herald/token")
        .header("token", token)
}

/// Sends `frame` with a receipt and returns the ERROR that ends the session.
async fn refused(c: &mut Client, frame: Frame) -> String {
    c.send_frame(&frame.header("receipt", "r")).await;
    let frames = c.expect_closed().await;
    let error = frames
        .iter()
        .find(|f| f.command == Command::Error)
        .unwrap_or_else(|| panic!("closed without ERROR: {frames:?}"));
    assert_eq!(error.get("receipt-id"), Some("r"), "{error:?}");
    message_of(error).to_owned()
}

#[tokio::test]
async fn a_token_refreshed_three_times_keeps_the_session_past_its_first_expiry() {
    let s = server().await;
    let (mut c, _) = s
        .connect_ok(Transport::Tcp, &[("passcode", &short_token("alice", 2))])
        .await;
    c.subscribe("s", "/topic/refresh").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        c.request(refresh(&short_token("alice", 2))).await;
    }
    // Three seconds in: the first token (2 s) has expired, the session goes on.
    c.publish("/topic/refresh", "still here").await;
    assert_eq!(c.recv_body().await, "still here");
    // Without another refresh the last token's expiry ends it as before.
    let frames = c.expect_closed_within(Duration::from_secs(5)).await;
    let error = frames.last().expect("an ERROR before the close");
    assert!(message_of(error).contains("token expired"), "{error:?}");
}

#[tokio::test]
async fn a_refresh_naming_another_user_or_failing_to_verify_is_refused() {
    let s = server().await;
    let alice = short_token("alice", 60);
    let (mut c, _) = s.connect_ok(Transport::Tcp, &[("passcode", &alice)]).await;
    let why = refused(&mut c, refresh(&short_token("bob", 60))).await;
    assert!(
        why.contains("token refresh refused") && why.contains("'bob'") && why.contains("'alice'"),
        "{why}"
    );

    let (mut c, _) = s.connect_ok(Transport::Ws, &[("passcode", &alice)]).await;
    let why = refused(&mut c, refresh("not.a.jwt")).await;
    assert!(why.starts_with("token refresh refused"), "{why}");

    let (mut c, _) = s.connect_ok(Transport::Tcp, &[("passcode", &alice)]).await;
    let why = refused(&mut c, refresh(&short_token("alice", -10))).await;
    assert!(why.starts_with("token refresh refused"), "{why}");

    let (mut c, _) = s.connect_ok(Transport::Tcp, &[("passcode", &alice)]).await;
    let why = refused(
        &mut c,
        Frame::new(Command::Send).header("destination", "/herald/token"),
    )
    .await;
    assert!(why.contains("no token"), "{why}");

    // A session that connected without a token has none to refresh.
    let (mut c, _) = s.connect_ok(Transport::Tcp, &[]).await;
    let why = refused(&mut c, refresh(&alice)).await;
    assert!(why.contains("no token to refresh"), "{why}");
}

#[tokio::test]
async fn a_refresh_in_a_bearer_header_is_taken_like_connect_takes_it() {
    let s = server().await;
    let (mut c, _) = s
        .connect_ok(Transport::Tcp, &[("passcode", &short_token("alice", 2))])
        .await;
    c.request(
        Frame::new(Command::Send)
            .header("destination", "/herald/token")
            .header(
                "Authorization",
                format!("Bearer {}", short_token("alice", 30)),
            ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.assert_works("/topic/bearer-refresh").await;
}

//! What cannot be STOMP is refused at once, and headers stay headers: bytes that
//! cannot begin a command get an ERROR without waiting for an EOL (or the CONNECT
//! timeout); control characters in headers and ':' in a header name are refused, so a
//! 1.2 sender cannot make a 1.0 subscriber — who has no escaping — read a frame it
//! did not get. What an ERROR echoes of the input is escaped.

mod common;

use std::time::Duration;

use common::*;
use herald_stomp::Command;

/// Well before `stomp.connect_timeout` (60 s): refused at once means now.
const AT_ONCE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn garbage_before_connect_is_refused_at_once_and_not_echoed_raw() {
    let server = TestServer::start().await;
    for t in BOTH {
        let mut c = server.open(t).await;
        c.send_raw(b"\xff\xfe garbage \0\0").await;
        let e = c.recv_frame_within(AT_ONCE).await;
        assert_eq!(e.command, Command::Error, "{t:?}: {e:?}");
        let msg = message_of(&e);
        assert!(
            msg.contains(r"unknown command '\xff\xfe garbage \x00\x00'"),
            "{t:?}: {msg:?}"
        );
        assert!(!msg.chars().any(char::is_control), "{t:?}: {msg:?}");
        assert!(c.expect_closed().await.is_empty());
    }
    // A command line longer than any command, and a NUL inside one.
    for raw in [&b"SUBSCRIBEXXXXXXXXXXXXXXX"[..], b"CONN\0ECT"] {
        let mut c = server.open(Transport::Tcp).await;
        c.send_raw(raw).await;
        let e = c.recv_frame_within(AT_ONCE).await;
        assert!(message_of(&e).contains("unknown command"), "{e:?}");
    }
    // What real clients send between frames is fine: EOLs, CRLF, a stray NUL.
    let mut c = server.open(Transport::Tcp).await;
    c.send_raw(b"\r\n\n\0\r\n").await;
    c.send_raw(b"CONNECT\r\naccept-version:1.2\r\nhost:x\r\n\r\n\0\0\n")
        .await;
    assert_eq!(
        c.recv_frame_within(AT_ONCE).await.command,
        Command::Connected
    );
}

/// Splits what a subscriber received the way a client that frames by NUL does.
fn nul_framed(received: &[u8]) -> Vec<String> {
    received
        .split(|&b| b == 0)
        .map(|f| {
            String::from_utf8_lossy(f)
                .trim_start_matches(['\r', '\n'])
                .to_owned()
        })
        .filter(|f| !f.is_empty())
        .collect()
}

#[tokio::test]
async fn a_1_2_sender_cannot_forge_a_frame_for_a_1_0_subscriber() {
    let server = TestServer::start().await;
    let mut v10 = server.connect_version(Transport::Tcp, "1.0").await;
    v10.subscribe("s", "/topic/news").await;

    // A raw NUL ends the frame early for the 1.0 subscriber; the escaped names that
    // follow would become its next frame's headers.
    let mut attacker = server.connect_version(Transport::Tcp, "1.2").await;
    attacker
        .send_raw(
            b"SEND\ndestination:/topic/news\nx:y\0MESSAGE\ndestination\\c/topic/admin:1\n\
              message-id\\cforged:1\nsubscription\\cs:1\nreceipt:r\n\nforged body\0",
        )
        .await;
    // Its answer (RECEIPT when it was published, else ERROR) comes first.
    let answer = attacker.recv_frame().await;
    let mut publisher = server.connect(Transport::Tcp).await;
    publisher.publish("/topic/news", "real").await;
    while v10.recv_body().await != "real" {}
    v10.expect_silence(Duration::from_millis(200)).await;
    let frames = nul_framed(&v10.received);
    let commands: Vec<&str> = frames
        .iter()
        .map(|f| f.lines().next().unwrap_or_default())
        .collect();
    assert_eq!(commands, ["CONNECTED", "RECEIPT", "MESSAGE"], "{frames:?}");
    assert!(frames[2].ends_with("\n\nreal"), "{frames:?}");
    let e = answer;
    assert_eq!(
        (e.command, e.get("receipt-id")),
        (Command::Error, Some("r"))
    );
    assert!(
        message_of(&e).contains(r"header 'x' has a control character (\x00) in its value"),
        "{e:?}"
    );

    // A name that unescapes to one with ':' is refused as well.
    let mut attacker = server.connect_version(Transport::Ws, "1.2").await;
    attacker
        .send_raw(b"SEND\ndestination:/topic/news\ndestination\\c/topic/admin:1\n\nx\0")
        .await;
    let e = attacker.expect_error_and_close().await;
    assert!(
        message_of(&e).contains("invalid header name 'destination:/topic/admin': it contains ':'"),
        "{e:?}"
    );
}

#[tokio::test]
async fn the_publish_api_refuses_headers_a_client_could_not_send() {
    let server = TestServer::start().await;
    let mut v10 = server.connect_version(Transport::Tcp, "1.0").await;
    v10.subscribe("s", "/topic/api").await;
    for headers in [
        r#"{"x":"a\u0000b"}"#,
        r#"{"a:b":"c"}"#,
        r#"{"x\u0001":"c"}"#,
    ] {
        let (status, body) = server
            .http_post_json(
                "/api/publish",
                &format!(r#"{{"destination":"/topic/api","body":"x","headers":{headers}}}"#),
            )
            .await;
        assert_eq!(status, 400, "{headers}: {body}");
        assert_eq!(body["code"], "invalid_header", "{body}");
    }
    // A value with an EOL is fine: escaped for 1.1/1.2, a space for 1.0.
    let (status, body) = server
        .http_post_json(
            "/api/publish",
            r#"{"destination":"/topic/api","body":"ok","headers":{"x":"a\nb"}}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let m = v10.recv_message().await;
    assert_eq!(m.get("x"), Some("a b"), "{m:?}");
    assert_eq!(nul_framed(&v10.received).len(), 3);
}

#[tokio::test]
async fn control_characters_in_headers_are_refused_naming_the_header() {
    let server = TestServer::start().await;
    let cases: &[(&[u8], &str)] = &[
        (
            b"SEND\ndestination:/topic/a\x01\n\nx\0",
            r"header 'destination' has a control character (\x01)",
        ),
        (
            b"SUBSCRIBE\nid:1\x1b[2J\ndestination:/topic/a\n\n\0",
            r"header 'id' has a control character (\x1b)",
        ),
        (
            b"SEND\ndestination:/topic/a\nbad\x7fname:v\n\nx\0",
            r"invalid header name 'bad\x7fname'",
        ),
    ];
    for (raw, want) in cases {
        let mut c = server.connect(Transport::Tcp).await;
        c.send_raw(raw).await;
        let e = c.expect_error_and_close().await;
        assert!(message_of(&e).contains(want), "{want}: {e:?}");
    }
    // TAB in a value is text.
    let mut c = server.connect(Transport::Tcp).await;
    c.subscribe("t", "/topic/tab").await;
    c.request(send("/topic/tab", "x").header("x-note", "a\tb"))
        .await;
    assert_eq!(c.recv_message().await.get("x-note"), Some("a\tb"));
}

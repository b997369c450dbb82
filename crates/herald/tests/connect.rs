//! CONNECT/STOMP, version negotiation, CONNECTED headers, WebSocket subprotocols.

mod common;

use common::*;
use herald_stomp::{Command, Frame};

#[tokio::test]
async fn connect_and_stomp_commands_are_both_accepted() {
    let server = TestServer::start().await;
    for t in BOTH {
        for cmd in [Command::Connect, Command::Stomp] {
            let mut c = server.open(t).await;
            let f = Frame::new(cmd)
                .header("accept-version", "1.2")
                .header("host", "localhost");
            let answer = c.connect_with(f).await;
            assert_eq!(
                answer.command,
                Command::Connected,
                "{t:?} {cmd}: {answer:?}"
            );
            assert_eq!(answer.get("version"), Some("1.2"), "{t:?} {cmd}");
            // The session works afterwards.
            c.subscribe("s1", "/topic/connect").await;
            c.publish("/topic/connect", "hi").await;
            assert_eq!(c.recv_body().await, "hi");
            c.disconnect().await;
        }
    }
}

#[tokio::test]
async fn absent_accept_version_means_1_0() {
    let server = TestServer::start().await;
    for t in BOTH {
        let mut c = server.open(t).await;
        let answer = c.connect("").await;
        assert_eq!(answer.command, Command::Connected, "{answer:?}");
        // A 1.0 server may omit `version`; if present it must say 1.0.
        assert_eq!(
            answer.get("version").unwrap_or("1.0"),
            "1.0",
            "{t:?}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn highest_common_version_is_chosen() {
    let server = TestServer::start().await;
    let cases = [
        ("1.1,1.2", "1.2"),
        ("1.2,1.1", "1.2"),
        ("1.0,1.1", "1.1"),
        ("1.0", "1.0"),
        ("1.1", "1.1"),
        ("1.1,2.0", "1.1"),
    ];
    for (offer, expected) in cases {
        let mut c = server.open(Transport::Tcp).await;
        let answer = c.connect(offer).await;
        assert_eq!(
            answer.command,
            Command::Connected,
            "offer {offer}: {answer:?}"
        );
        assert_eq!(answer.get("version"), Some(expected), "offer {offer}");
    }
}

#[tokio::test]
async fn unsupported_version_gets_error_with_version_header() {
    let server = TestServer::start().await;
    for t in BOTH {
        let mut c = server.open(t).await;
        let answer = c.connect("2.0").await;
        assert_eq!(answer.command, Command::Error, "{answer:?}");
        let versions = answer
            .get("version")
            .expect("ERROR carries the supported versions");
        for v in ["1.0", "1.1", "1.2"] {
            assert!(
                versions.split(',').any(|x| x.trim() == v),
                "version header {versions:?} lacks {v}"
            );
        }
        assert!(
            message_of(&answer).contains("2.0"),
            "message should name the offered version: {answer:?}"
        );
        let after = c.expect_closed().await;
        assert!(after.is_empty(), "{after:?}");
    }
}

#[tokio::test]
async fn connected_has_version_session_server_heart_beat() {
    let server = TestServer::start().await;
    let mut sessions = Vec::new();
    for t in BOTH {
        let mut c = server.open(t).await;
        let answer = c
            .connect_with(
                Frame::new(Command::Connect)
                    .header("accept-version", "1.1,1.2")
                    .header("host", "localhost")
                    .header("heart-beat", "0,0"),
            )
            .await;
        assert_eq!(answer.command, Command::Connected);
        assert_eq!(answer.get("version"), Some("1.2"));
        let session = answer.get("session").expect("session header");
        assert!(!session.is_empty());
        sessions.push(session.to_owned());
        let server_name = answer.get("server").expect("server header");
        assert!(
            server_name.starts_with("Herald/"),
            "server header {server_name:?} should be name/version"
        );
        let hb = answer.get("heart-beat").expect("heart-beat header");
        let parts: Vec<&str> = hb.split(',').collect();
        assert_eq!(parts.len(), 2, "heart-beat {hb:?}");
        assert!(
            parts.iter().all(|p| p.trim().parse::<u64>().is_ok()),
            "heart-beat {hb:?}"
        );
    }
    assert_ne!(sessions[0], sessions[1], "session ids are unique");
}

#[tokio::test]
async fn websocket_subprotocol_negotiation() {
    let server = TestServer::start().await;
    let url = server.ws_url();

    let (mut c, chosen) = Client::ws(&url, &["v10.stomp", "v11.stomp", "custom"]).await;
    assert_eq!(chosen.as_deref(), Some("v11.stomp"));
    let answer = c.connect("1.0,1.1").await;
    assert_eq!(answer.command, Command::Connected);

    let (_, chosen) = Client::ws(&url, &["v12.stomp", "v10.stomp"]).await;
    assert_eq!(chosen.as_deref(), Some("v12.stomp"));

    // Offering no subprotocol is accepted (stomp.py does that); none is echoed.
    let (mut c, chosen) = Client::ws(&url, &[]).await;
    assert_eq!(chosen, None);
    let answer = c.connect("1.2").await;
    assert_eq!(answer.command, Command::Connected);
    assert_eq!(answer.get("version"), Some("1.2"));
}

#[tokio::test]
async fn websocket_with_only_unknown_subprotocols_gets_none() {
    let server = TestServer::start().await;
    let (mut c, chosen) = Client::ws(&server.ws_url(), &["custom", "mqtt"]).await;
    assert_eq!(
        chosen, None,
        "the server must not pick a protocol the client did not offer"
    );
    let answer = c.connect("1.2").await;
    assert_eq!(answer.command, Command::Connected);
}

#[tokio::test]
async fn login_is_echoed_as_user_name() {
    let server = TestServer::start().await;
    let mut c = server.open(Transport::Tcp).await;
    let answer = c
        .connect_with(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "localhost")
                .header("login", "alice")
                .header("passcode", "x"),
        )
        .await;
    assert_eq!(answer.command, Command::Connected);
    assert_eq!(answer.get("user-name"), Some("alice"));
}

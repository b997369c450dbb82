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

/// Sends a WebSocket upgrade for `/ws` by hand (in two writes 100 ms apart when
/// `split`), then CONNECT in one masked frame; returns the response head and the
/// first frame's text.
async fn raw_upgrade_and_connect(
    server: &TestServer,
    extra: &str,
    split: bool,
) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: v12.stomp\r\n{extra}\r\n",
        server.http
    );
    if split {
        let (a, b) = head.as_bytes().split_at(30);
        tcp.write_all(a).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        tcp.write_all(b).await.unwrap();
    } else {
        tcp.write_all(head.as_bytes()).await.unwrap();
    }
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
            .await
            .expect("response in time")
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    let response = String::from_utf8(got).unwrap();
    // CONNECT as one masked text frame (mask key 0: the payload goes as it is).
    let connect = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0";
    let mut frame = vec![0x81, 0x80 | connect.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(connect);
    tcp.write_all(&frame).await.unwrap();
    let mut header = [0u8; 2];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut header))
        .await
        .expect("frame in time")
        .unwrap();
    assert_eq!(header[0], 0x81, "a final text frame");
    let len = match header[1] {
        126 => {
            let mut l = [0u8; 2];
            tcp.read_exact(&mut l).await.unwrap();
            u16::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    (response, String::from_utf8(payload).unwrap())
}

#[tokio::test]
async fn upgrades_are_answered_alike_whole_split_or_with_large_heads() {
    // A whole head is answered by the direct path, a split one and one larger than
    // what the direct path peeks (a big cookie) by hyper: the same answer each time.
    let server = TestServer::start().await;
    let cookie = format!("Cookie: session={}\r\n", "c".repeat(6000));
    for (what, extra, split) in [
        ("whole", "", false),
        ("split over two segments", "", true),
        ("with a 6 KB cookie", cookie.as_str(), false),
    ] {
        let (response, first) = raw_upgrade_and_connect(&server, extra, split).await;
        let lower = response.to_ascii_lowercase();
        assert!(response.starts_with("HTTP/1.1 101 "), "{what}: {response}");
        assert!(
            lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
            "{what}: {response}"
        );
        assert!(
            lower.contains("sec-websocket-protocol: v12.stomp\r\n"),
            "{what}: {response}"
        );
        assert!(
            lower.contains("upgrade: websocket\r\n"),
            "{what}: {response}"
        );
        assert!(first.starts_with("CONNECTED\n"), "{what}: {first}");
        assert!(first.contains("version:1.2\n"), "{what}: {first}");
    }
    // A refused negotiation is the router's answer.
    let (status, body) = server.ws_handshake_raw("/ws", &[]).await;
    assert_eq!(status, 101, "{body}");
    let (status, body) = server
        .raw_http(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        .await;
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("unsupported Sec-WebSocket-Version"), "{body}");
}

/// Clients that end CONNECT with an extra EOL (a one-EOL body) connect, as they do on
/// RabbitMQ and ActiveMQ, over both transports; any other body is still refused.
#[tokio::test]
async fn a_connect_whose_body_is_only_eols_connects() {
    let server = TestServer::start().await;
    for transport in [Transport::Tcp, Transport::Ws] {
        for raw in [
            &b"CONNECT\naccept-version:1.2\nhost:x\n\n\n\0"[..],
            b"STOMP\r\naccept-version:1.2\r\nhost:x\r\n\r\n\r\n\0",
        ] {
            let mut c = server.open(transport).await;
            c.send_raw(raw).await;
            let f = c.recv_frame().await;
            assert_eq!(
                f.command,
                Command::Connected,
                "{transport:?} {raw:?}: {f:?}"
            );
            c.subscribe("s", "/topic/eol").await;
        }
        let mut c = server.open(transport).await;
        c.send_raw(b"CONNECT\naccept-version:1.2\nhost:x\n\nhello\0")
            .await;
        let e = c.expect_error_and_close().await;
        assert!(message_of(&e).contains("must not have a body"), "{e:?}");
    }
}

/// Spring's `registry.addEndpoint("/gs-guide-websocket")`: STOMP over WebSocket where
/// `server.websocket_paths` says, and nowhere else.
#[tokio::test]
async fn stomp_over_websocket_answers_at_the_configured_paths() {
    let server = TestServer::with(|c| {
        c.server.websocket_paths = vec!["/gs-guide-websocket".into(), "/stomp".into()];
    })
    .await;
    for path in ["/gs-guide-websocket", "/stomp"] {
        let (mut c, _) = Client::ws(&format!("ws://{}{path}", server.http), &[]).await;
        let connected = c.connect("1.2").await;
        assert_eq!(
            connected.command,
            Command::Connected,
            "{path}: {connected:?}"
        );
        c.assert_works(&format!("/topic/at{}", path.replace('/', ".")))
            .await;
    }
    let (status, _) = server.http_get("/ws").await;
    assert_eq!(status, 404, "/ws is not one of the paths");
}

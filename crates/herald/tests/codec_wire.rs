//! Wire format through the real server: header escaping per version, NUL bytes in
//! bodies, CRLF, heart-beat EOLs between frames, and arbitrary splits of the byte
//! stream over WebSocket messages and TCP writes.

mod common;

use std::time::Duration;

use common::*;
use herald_stomp::{Command, Frame};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn escaped_headers_round_trip_in_1_1_and_1_2() {
    let server = TestServer::start().await;
    let mut v12 = server.connect_version(Transport::Tcp, "1.2").await;
    let mut v11 = server.connect_version(Transport::Ws, "1.1").await;
    v12.subscribe("s", "/topic/esc").await;
    v11.subscribe("s", "/topic/esc").await;

    let mut p = server.connect_version(Transport::Tcp, "1.2").await;
    p.send_raw(
        b"SEND\ndestination:/topic/esc\nx-esc:a\\cb\\nc\\\\d\\re\nk\\\\ey:v\nreceipt:r1\n\nbody\0",
    )
    .await;
    let r = p.recv_frame().await;
    assert_eq!(
        (r.command, r.get("receipt-id")),
        (Command::Receipt, Some("r1")),
        "{r:?}"
    );

    for (name, c) in [("1.2", &mut v12), ("1.1", &mut v11)] {
        let m = c.recv_message().await;
        assert_eq!(m.get("x-esc"), Some("a:b\nc\\d\re"), "{name}: {m:?}");
        assert_eq!(
            m.get("k\\ey"),
            Some("v"),
            "{name}: escaped header name: {m:?}"
        );
        // On the wire the value is escaped again, never raw.
        assert!(
            contains(&c.received, b"x-esc:a\\cb\\nc\\\\d\\re\n"),
            "{name}: {:?}",
            String::from_utf8_lossy(&c.received)
        );
        assert!(contains(&c.received, b"k\\\\ey:v\n"), "{name}");
    }
}

#[tokio::test]
async fn no_escaping_in_1_0() {
    let server = TestServer::start().await;
    let mut v10 = server.connect_version(Transport::Tcp, "1.0").await;
    let mut v12 = server.connect_version(Transport::Ws, "1.2").await;
    v10.subscribe("s", "/topic/raw").await;
    v12.subscribe("s", "/topic/raw").await;

    // A 1.0 sender's backslashes are literal characters, and a colon after the
    // first one belongs to the value.
    let mut p = server.connect_version(Transport::Tcp, "1.0").await;
    p.send_raw(b"SEND\ndestination:/topic/raw\nx-raw:a\\nb\\c\nx-colon:a:b\nreceipt:r1\n\nbody\0")
        .await;
    let r = p.recv_frame().await;
    assert_eq!(
        (r.command, r.get("receipt-id")),
        (Command::Receipt, Some("r1")),
        "{r:?}"
    );

    let m = v10.recv_message().await;
    assert_eq!(m.get("x-raw"), Some("a\\nb\\c"), "{m:?}");
    assert_eq!(m.get("x-colon"), Some("a:b"), "{m:?}");
    assert!(
        contains(&v10.received, b"x-raw:a\\nb\\c\n"),
        "{:?}",
        String::from_utf8_lossy(&v10.received)
    );
    assert!(contains(&v10.received, b"x-colon:a:b\n"));

    // The 1.2 subscriber sees the same values, escaped for its version.
    let m = v12.recv_message().await;
    assert_eq!(m.get("x-raw"), Some("a\\nb\\c"), "{m:?}");
    assert_eq!(m.get("x-colon"), Some("a:b"), "{m:?}");
    assert!(
        contains(&v12.received, b"x-raw:a\\\\nb\\\\c\n"),
        "{:?}",
        String::from_utf8_lossy(&v12.received)
    );
    assert!(contains(&v12.received, b"x-colon:a\\cb\n"));

    // A 1.2 sender's colon reaches a 1.0 subscriber unescaped.
    let mut p12 = server.connect_version(Transport::Tcp, "1.2").await;
    p12.request(
        Frame::new(Command::Send)
            .header("destination", "/topic/raw")
            .header("x-c", "p:q"),
    )
    .await;
    let m = v10.recv_message().await;
    assert_eq!(m.get("x-c"), Some("p:q"));
    assert!(contains(&v10.received, b"x-c:p:q\n"));
}

#[tokio::test]
async fn body_with_nul_bytes_and_content_length() {
    let server = TestServer::start().await;
    let mut tcp = server.tcp().await;
    let mut ws = server.ws().await;
    tcp.subscribe("s", "/topic/bin").await;
    ws.subscribe("s", "/topic/bin").await;
    let body: &[u8] = b"a\0b\0\xff\xfe\0c";
    for t in BOTH {
        let mut p = server.connect(t).await;
        let mut raw = format!(
            "SEND\ndestination:/topic/bin\ncontent-length:{}\nreceipt:r\n\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        raw.push(0);
        p.send_raw(&raw).await;
        let r = p.recv_frame().await;
        assert_eq!(r.command, Command::Receipt, "{t:?}: {r:?}");
        for c in [&mut tcp, &mut ws] {
            let m = c.recv_message().await;
            assert_eq!(
                &m.body[..],
                body,
                "{t:?} -> {}",
                if c.is_ws() { "ws" } else { "tcp" }
            );
            assert_eq!(
                m.get("content-length"),
                Some(body.len().to_string().as_str())
            );
        }
    }
}

#[tokio::test]
async fn body_without_content_length_ends_at_first_nul() {
    let server = TestServer::start().await;
    let mut sub = server.tcp().await;
    sub.subscribe("s", "/topic/nul").await;
    let mut p = server.tcp().await;
    p.send_raw(b"SEND\ndestination:/topic/nul\n\nhello\0SEND\ndestination:/topic/nul\nreceipt:r\n\nworld\0").await;
    let r = p.recv_frame().await;
    assert_eq!(r.get("receipt-id"), Some("r"), "{r:?}");
    assert_eq!(sub.recv_body().await, "hello");
    let m = sub.recv_message().await;
    assert_eq!(&m.body[..], b"world");
    assert_eq!(m.get("content-length"), Some("5"));
}

#[tokio::test]
async fn crlf_line_endings() {
    let server = TestServer::start().await;
    for t in BOTH {
        let mut sub = server.tcp().await;
        sub.subscribe("s", "/topic/crlf").await;
        let mut p = server.open(t).await;
        p.send_raw(b"CONNECT\r\naccept-version:1.2\r\nhost:localhost\r\n\r\n\0")
            .await;
        let c = p.recv_frame().await;
        assert_eq!(c.command, Command::Connected, "{t:?}: {c:?}");
        p.send_raw(b"SEND\r\ndestination:/topic/crlf\r\nx-h:v\r\nreceipt:r1\r\n\r\nhello\0")
            .await;
        let r = p.recv_frame().await;
        assert_eq!(
            (r.command, r.get("receipt-id")),
            (Command::Receipt, Some("r1")),
            "{t:?}: {r:?}"
        );
        let m = sub.recv_message().await;
        assert_eq!(m.get("destination"), Some("/topic/crlf"), "{t:?}");
        assert_eq!(m.get("x-h"), Some("v"), "{t:?}: no trailing CR in values");
        assert_eq!(&m.body[..], b"hello");
    }
}

#[tokio::test]
async fn heart_beat_eols_between_frames() {
    let server = TestServer::start().await;
    for t in BOTH {
        let mut sub = server.tcp().await;
        sub.subscribe("s", "/topic/eol").await;
        let mut p = server.open(t).await;
        p.send_raw(b"\n\r\n\nCONNECT\naccept-version:1.2\nhost:h\n\n\0\n")
            .await;
        assert_eq!(p.recv_frame().await.command, Command::Connected);
        p.send_raw(b"\n\n\r\nSEND\ndestination:/topic/eol\n\none\0\n\r\n\nSEND\ndestination:/topic/eol\nreceipt:r\n\ntwo\0\n").await;
        // EOL-only writes / WebSocket messages are heart-beats too.
        p.send_raw(b"\n").await;
        p.send_raw(b"\r\n").await;
        p.send_raw(b"SEND\ndestination:/topic/eol\nreceipt:r3\n\nthree\0")
            .await;
        assert_eq!(p.recv_frame().await.get("receipt-id"), Some("r"), "{t:?}");
        assert_eq!(p.recv_frame().await.get("receipt-id"), Some("r3"), "{t:?}");
        for b in ["one", "two", "three"] {
            assert_eq!(sub.recv_body().await, b, "{t:?}");
        }
    }
}

#[tokio::test]
async fn several_frames_in_one_websocket_message() {
    let server = TestServer::start().await;
    let mut sub = server.tcp().await;
    sub.subscribe("s", "/topic/multi").await;
    let mut p = server.ws().await;
    p.send_raw(
        b"SEND\ndestination:/topic/multi\nreceipt:a\n\n1\0\
          SEND\ndestination:/topic/multi\nreceipt:b\ncontent-length:1\n\n2\0\n\
          SUBSCRIBE\nid:x\ndestination:/topic/other\nreceipt:c\n\n\0\
          SEND\ndestination:/topic/multi\nreceipt:d\n\n3\0",
    )
    .await;
    for r in ["a", "b", "c", "d"] {
        let f = p.recv_frame().await;
        assert_eq!(
            (f.command, f.get("receipt-id")),
            (Command::Receipt, Some(r)),
            "{f:?}"
        );
    }
    for b in ["1", "2", "3"] {
        assert_eq!(sub.recv_body().await, b);
    }
}

#[tokio::test]
async fn one_frame_split_over_several_websocket_messages() {
    let server = TestServer::start().await;
    let mut sub = server.ws().await;
    sub.subscribe("s", "/topic/big").await;
    let body: Vec<u8> = (0..40 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut p = server.ws().await;

    // As stomp.js does: 16 KiB WebSocket messages, with and without content-length.
    for with_len in [true, false] {
        let mut raw = b"SEND\ndestination:/topic/big\nreceipt:big\n".to_vec();
        if with_len {
            raw.extend_from_slice(format!("content-length:{}\n", body.len()).as_bytes());
        }
        raw.extend_from_slice(b"\n");
        raw.extend_from_slice(&body);
        raw.push(0);
        p.send_split(&raw, 16 * 1024, Duration::ZERO).await;
        let r = p.recv_frame().await;
        assert_eq!(
            r.get("receipt-id"),
            Some("big"),
            "with content-length {with_len}: {r:?}"
        );
        let m = sub.recv_message().await;
        assert_eq!(m.body.len(), body.len(), "with content-length {with_len}");
        assert!(
            m.body[..] == body[..],
            "body intact (with content-length {with_len})"
        );
    }

    // Splits inside the command, a header line and between CR and LF.
    let raw = b"SEND\r\ndestination:/topic/big\r\nreceipt:small\r\n\r\nsmall\0";
    for cut in [2usize, 5, 7, 11] {
        p.send_split(raw, cut, Duration::ZERO).await;
        let r = p.recv_frame().await;
        assert_eq!(r.get("receipt-id"), Some("small"), "chunks of {cut}: {r:?}");
        assert_eq!(sub.recv_body().await, "small", "chunks of {cut}");
    }
}

#[tokio::test]
async fn byte_by_byte_over_tcp() {
    let server = TestServer::start().await;
    let mut sub = server.tcp().await;
    sub.subscribe("s", "/topic/bytes").await;
    let mut p = server.open(Transport::Tcp).await;
    let pause = Duration::from_millis(1);
    p.send_split(
        b"CONNECT\r\naccept-version:1.1,1.2\r\nhost:h\r\n\r\n\0",
        1,
        pause,
    )
    .await;
    let c = p.recv_frame().await;
    assert_eq!(c.get("version"), Some("1.2"), "{c:?}");
    p.set_version(herald_stomp::Version::V1_2);
    let frame =
        b"\nSEND\ndestination:/topic/bytes\nx-e:a\\cb\ncontent-length:5\nreceipt:r\n\nab\0cd\0\n";
    p.send_split(frame, 1, pause).await;
    let r = p.recv_frame().await;
    assert_eq!(r.get("receipt-id"), Some("r"), "{r:?}");
    let m = sub.recv_message().await;
    assert_eq!(&m.body[..], b"ab\0cd");
    assert_eq!(m.get("x-e"), Some("a:b"));
}

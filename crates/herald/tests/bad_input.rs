//! Bad input: every protocol error gets one ERROR whose `message` names the problem
//! (with `receipt-id` when the offending frame asked for a receipt), then the
//! connection closes — and other sessions on the server are unaffected.

mod common;

use std::time::{Duration, Instant};

use common::*;
use herald_stomp::Command;

const MAX_FRAME: usize = 1024;
const MAX_HEADERS: usize = 8;
const MAX_HEADER_LINE: usize = 128;

async fn limited_server() -> TestServer {
    TestServer::with(|c| {
        c.stomp.max_frame = MAX_FRAME;
        c.stomp.max_headers = MAX_HEADERS;
        c.stomp.max_header_line = MAX_HEADER_LINE;
    })
    .await
}

struct Case {
    name: &'static str,
    /// CONNECT (accept-version 1.2) before sending `raw`.
    connect: bool,
    raw: Vec<u8>,
    /// Substrings the ERROR's `message` must contain (case-insensitive).
    expect: &'static [&'static str],
    /// The `receipt-id` the ERROR must carry.
    receipt: Option<&'static str>,
}

fn case(
    name: &'static str,
    connect: bool,
    raw: impl Into<Vec<u8>>,
    expect: &'static [&'static str],
    receipt: Option<&'static str>,
) -> Case {
    Case {
        name,
        connect,
        raw: raw.into(),
        expect,
        receipt,
    }
}

/// Runs `c` over `t` and checks the ERROR, the close, and that a witness session
/// subscribed on the same server still gets its messages.
async fn check(server: &TestServer, witness: &mut Client, t: Transport, c: &Case) {
    let mut client = if c.connect {
        server.connect(t).await
    } else {
        server.open(t).await
    };
    client.send_raw(&c.raw).await;
    let f = client.recv_frame().await;
    assert_eq!(
        f.command,
        Command::Error,
        "{} over {t:?}: expected ERROR, got {f:?}",
        c.name
    );
    let msg = message_of(&f).to_lowercase();
    for e in c.expect {
        assert!(
            msg.contains(&e.to_lowercase()),
            "{} over {t:?}: message {msg:?} should mention {e:?}",
            c.name
        );
    }
    assert_eq!(
        f.get("receipt-id"),
        c.receipt,
        "{} over {t:?}: receipt-id of {f:?}",
        c.name
    );
    let after = client.expect_closed().await;
    assert!(
        after.is_empty(),
        "{} over {t:?}: frames after ERROR: {after:?}",
        c.name
    );

    let body = format!("after {} over {t:?}", c.name);
    witness.publish("/topic/witness", &body).await;
    assert_eq!(witness.recv_body().await, body);
}

async fn run(cases: &[Case]) {
    let server = limited_server().await;
    let mut witness = server.ws().await;
    witness.subscribe("w", "/topic/witness").await;
    for t in BOTH {
        for c in cases {
            check(&server, &mut witness, t, c).await;
        }
    }
}

#[tokio::test]
async fn unknown_command() {
    run(&[case(
        "unknown command",
        true,
        "FOO\nx:y\n\n\0",
        &["unknown command", "FOO"],
        None,
    )])
    .await;
}

#[tokio::test]
async fn client_sends_a_server_command() {
    run(&[case(
        "MESSAGE from client",
        true,
        "MESSAGE\ndestination:/topic/a\nreceipt:r\n\n\0",
        &["MESSAGE"],
        Some("r"),
    )])
    .await;
}

#[tokio::test]
async fn send_without_destination() {
    run(&[case(
        "SEND without destination",
        true,
        "SEND\nreceipt:r-send\n\nbody\0",
        &["destination"],
        Some("r-send"),
    )])
    .await;
}

#[tokio::test]
async fn subscribe_without_id() {
    run(&[
        case(
            "SUBSCRIBE without id",
            true,
            "SUBSCRIBE\ndestination:/topic/a\nreceipt:r-sub\n\n\0",
            &["id"],
            Some("r-sub"),
        ),
        case(
            "SUBSCRIBE without destination",
            true,
            "SUBSCRIBE\nid:1\nreceipt:r-sub\n\n\0",
            &["destination"],
            Some("r-sub"),
        ),
    ])
    .await;
}

#[tokio::test]
async fn bad_content_length() {
    run(&[
        case(
            "content-length not a number",
            true,
            "SEND\ndestination:/topic/a\ncontent-length:abc\n\nx\0",
            &["content-length", "abc"],
            None,
        ),
        case(
            "negative content-length",
            true,
            "SEND\ndestination:/topic/a\ncontent-length:-1\n\nx\0",
            &["content-length"],
            None,
        ),
        case(
            "body longer than content-length",
            true,
            "SEND\ndestination:/topic/a\ncontent-length:1\n\nabc\0",
            &["NUL"],
            None,
        ),
    ])
    .await;
}

#[tokio::test]
async fn frame_over_the_limit() {
    let mut big_body = b"SEND\ndestination:/topic/a\n\n".to_vec();
    big_body.extend(std::iter::repeat_n(b'x', 2 * MAX_FRAME));
    big_body.push(0);
    let declared = format!(
        "SEND\ndestination:/topic/a\ncontent-length:{}\n\n",
        5 * MAX_FRAME
    );
    run(&[
        case(
            "body over max_frame",
            true,
            big_body,
            &["larger than 1024"],
            None,
        ),
        case(
            "content-length over max_frame",
            true,
            declared,
            &["larger than 1024"],
            None,
        ),
    ])
    .await;
}

#[tokio::test]
async fn too_many_headers() {
    let mut raw = "SEND\ndestination:/topic/a\n".to_owned();
    for i in 0..MAX_HEADERS + 2 {
        raw.push_str(&format!("h{i}:v\n"));
    }
    raw.push_str("\n\0");
    run(&[case(
        "too many headers",
        true,
        raw,
        &["too many headers", "8"],
        None,
    )])
    .await;
}

#[tokio::test]
async fn over_long_header_line() {
    let raw = format!(
        "SEND\ndestination:/topic/a\nx:{}\n\n\0",
        "y".repeat(2 * MAX_HEADER_LINE)
    );
    run(&[case(
        "over-long header line",
        true,
        raw,
        &["header line", "128"],
        None,
    )])
    .await;
}

#[tokio::test]
async fn invalid_utf8_in_a_header() {
    let raw = b"SEND\ndestination:/topic/a\nx:\xff\xfe\n\n\0".to_vec();
    run(&[case("invalid UTF-8", true, raw, &["UTF-8", "header"], None)]).await;
}

#[tokio::test]
async fn header_line_without_colon() {
    run(&[case(
        "header without colon",
        true,
        "SEND\ndestination:/topic/a\nnocolon\n\n\0",
        &["':'"],
        None,
    )])
    .await;
}

#[tokio::test]
async fn body_on_a_frame_that_has_none() {
    run(&[case(
        "SUBSCRIBE with body",
        true,
        "SUBSCRIBE\nid:1\ndestination:/topic/a\n\nbody\0",
        &["SUBSCRIBE", "body"],
        None,
    )])
    .await;
}

#[tokio::test]
async fn any_frame_before_connect() {
    run(&[
        case(
            "SEND before CONNECT",
            false,
            "SEND\ndestination:/topic/a\nreceipt:r0\n\nx\0",
            &["CONNECT"],
            Some("r0"),
        ),
        case(
            "SUBSCRIBE before CONNECT",
            false,
            "SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0",
            &["CONNECT"],
            None,
        ),
        case(
            "DISCONNECT before CONNECT",
            false,
            "DISCONNECT\nreceipt:r0\n\n\0",
            &["CONNECT"],
            Some("r0"),
        ),
    ])
    .await;
}

#[tokio::test]
async fn second_connect() {
    run(&[
        case(
            "second CONNECT",
            true,
            "CONNECT\naccept-version:1.2\nhost:h\nreceipt:r-c\n\n\0",
            &["CONNECT"],
            Some("r-c"),
        ),
        case(
            "STOMP after CONNECT",
            true,
            "STOMP\naccept-version:1.2\nhost:h\n\n\0",
            &["connect"],
            None,
        ),
    ])
    .await;
}

#[tokio::test]
async fn ack_or_nack_of_unknown_id() {
    run(&[
        case(
            "ACK unknown id",
            true,
            "ACK\nid:nope\nreceipt:r-a\n\n\0",
            &["ACK", "nope"],
            Some("r-a"),
        ),
        case(
            "NACK unknown id",
            true,
            "NACK\nid:nope\nreceipt:r-n\n\n\0",
            &["NACK", "nope"],
            Some("r-n"),
        ),
        case(
            "ACK without id",
            true,
            "ACK\nreceipt:r-a\n\n\0",
            &["id"],
            Some("r-a"),
        ),
    ])
    .await;
}

#[tokio::test]
async fn unsubscribe_of_unknown_id() {
    run(&[case(
        "UNSUBSCRIBE unknown id",
        true,
        "UNSUBSCRIBE\nid:nope\nreceipt:r-u\n\n\0",
        &["nope"],
        Some("r-u"),
    )])
    .await;
}

#[tokio::test]
async fn duplicate_subscription_id() {
    let raw = "SUBSCRIBE\nid:s1\ndestination:/topic/a\n\n\0SUBSCRIBE\nid:s1\ndestination:/topic/b\nreceipt:r-d\n\n\0";
    run(&[case(
        "duplicate subscription id",
        true,
        raw,
        &["s1"],
        Some("r-d"),
    )])
    .await;
}

#[tokio::test]
async fn invalid_ack_mode() {
    let raw = "SUBSCRIBE\nid:s1\ndestination:/topic/a\nack:sometimes\nreceipt:r\n\n\0";
    run(&[case(
        "invalid ack mode",
        true,
        raw,
        &["ack", "sometimes"],
        Some("r"),
    )])
    .await;
}

#[tokio::test]
async fn unsupported_version() {
    run(&[
        case(
            "accept-version 3.0",
            false,
            "CONNECT\naccept-version:3.0\nhost:h\n\n\0",
            &["version", "3.0"],
            None,
        ),
        case(
            "accept-version garbage",
            false,
            "STOMP\naccept-version:abc\nhost:h\nreceipt:r\n\n\0",
            &["version", "abc"],
            Some("r"),
        ),
    ])
    .await;
}

#[tokio::test]
async fn unknown_destination_prefix() {
    run(&[
        case(
            "SEND to unknown prefix",
            true,
            "SEND\ndestination:/foo/bar\nreceipt:r-p\n\nx\0",
            &["/foo/bar"],
            Some("r-p"),
        ),
        case(
            "SUBSCRIBE to unknown prefix",
            true,
            "SUBSCRIBE\nid:1\ndestination:/foo/bar\nreceipt:r-p\n\n\0",
            &["/foo/bar"],
            Some("r-p"),
        ),
        case(
            "SEND to the bare prefix",
            true,
            "SEND\ndestination:/topic/\n\nx\0",
            &["/topic/"],
            None,
        ),
    ])
    .await;
}

#[tokio::test]
async fn invalid_escape() {
    run(&[
        case(
            "invalid escape \\t",
            true,
            "SEND\ndestination:/topic/a\nx:a\\tb\n\n\0",
            &["escape", "\\t"],
            None,
        ),
        case(
            "escape at end of value",
            true,
            "SEND\ndestination:/topic/a\nx:ab\\\n\n\0",
            &["escape"],
            None,
        ),
    ])
    .await;
}

/// The spec: "if the frame included a receipt header, the ERROR frame SHOULD set the
/// receipt-id header". These frames' headers are readable even though the frame is
/// wrong, so the receipt can be echoed.
#[tokio::test]
async fn frame_level_errors_echo_the_receipt_when_headers_are_readable() {
    run(&[
        case(
            "bad content-length with receipt",
            true,
            "SEND\nreceipt:r-cl\ndestination:/topic/a\ncontent-length:abc\n\nx\0",
            &["content-length"],
            Some("r-cl"),
        ),
        case(
            "invalid escape with receipt",
            true,
            "SEND\nreceipt:r-esc\ndestination:/topic/a\nx:a\\tb\n\n\0",
            &["escape"],
            Some("r-esc"),
        ),
        case(
            "SUBSCRIBE with body and receipt",
            true,
            "SUBSCRIBE\nreceipt:r-body\nid:1\ndestination:/topic/a\n\nbody\0",
            &["body"],
            Some("r-body"),
        ),
    ])
    .await;
}

#[tokio::test]
async fn time_to_connect_exceeded() {
    let server = TestServer::with(|c| c.stomp.connect_timeout = Duration::from_millis(300)).await;
    let mut witness = server.tcp().await;
    witness.subscribe("w", "/topic/witness").await;
    for t in BOTH {
        let mut c = server.open(t).await;
        let start = Instant::now();
        let e = c.expect_error_and_close().await;
        let elapsed = start.elapsed();
        assert!(message_of(&e).contains("CONNECT"), "{t:?}: {e:?}");
        assert!(
            elapsed >= Duration::from_millis(250),
            "{t:?}: closed after {elapsed:?}, before the timeout"
        );
        // Partial bytes are not a CONNECT either.
        let mut c = server.open(t).await;
        c.send_raw(b"CONNECT\naccept-version:1.2\n").await;
        let e = c.expect_error_and_close().await;
        assert!(message_of(&e).contains("CONNECT"), "{t:?}: {e:?}");
    }
    witness.publish("/topic/witness", "alive").await;
    assert_eq!(witness.recv_body().await, "alive");
    // A client that does CONNECT in time stays (the witness connected before).
    let mut late = server.tcp().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    late.publish("/topic/witness", "late").await;
    assert_eq!(witness.recv_body().await, "late");
}

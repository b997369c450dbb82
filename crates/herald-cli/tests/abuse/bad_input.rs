//! Input that is not what it should be: a bad percent escape before multi-byte text
//! (a panic once), garbage before CONNECT (refused at once, not at the CONNECT
//! timeout), and headers forged to make a STOMP 1.0 subscriber, who has no escaping,
//! read a frame it was never sent.

use std::time::Duration;

use herald_stomp::{Command, Frame};

use crate::harness::{BYSTANDER_IP, Herald, PROMPT, Watch, message_of, serial};
use crate::http;
use crate::stomp::{Stomp, send};

/// Well before `stomp.connect_timeout` (60 s): refused at once means now.
const AT_ONCE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_percent_escape_before_utf8_is_answered() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("bad escape", &herald).await;
    // "%a" then "é" as raw UTF-8 (two bytes) in the request line.
    let mut req = b"GET /api/notifications?user=%a\xc3\xa9 HTTP/1.1\r\n".to_vec();
    req.extend_from_slice(format!("Host: {}\r\nConnection: close\r\n\r\n", herald.http).as_bytes());
    for _ in 0..3 {
        let (status, body) = http::raw(herald.http, &req, PROMPT)
            .await
            .expect("the request is answered, the connection not dropped");
        // Read as text (the user "%aé", who has nothing) or refused as a bad request.
        assert!(
            status == 200 || (400..500).contains(&status),
            "{status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    watch.finish(&mut herald, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_connect_is_refused_at_once() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("garbage", &herald).await;
    for ws in [false, true] {
        let mut c = herald.open(ws).await;
        c.send_raw(b"\xff\xfe garbage \0\0").await.unwrap();
        let e = c
            .error_within(AT_ONCE)
            .await
            .unwrap_or_else(|e| panic!("ws={ws}: {e}"));
        assert!(message_of(&e).contains("unknown command"), "ws={ws}: {e:?}");
        c.until_closed(AT_ONCE)
            .await
            .unwrap_or_else(|e| panic!("ws={ws}: still open: {e}"));
    }
    watch.finish(&mut herald, 16).await;
}

/// What a client that frames by NUL makes of the bytes it received.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_headers_are_refused_and_a_1_0_subscriber_reads_no_forged_frame() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("forged headers", &herald).await;
    let mut v10 = Stomp::tcp(herald.stomp).await.unwrap();
    let f = v10.connect_version("1.0").await.unwrap();
    assert_eq!(f.command, Command::Connected, "{f:?}");
    v10.request(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/topic/abuse.news"),
    )
    .await
    .unwrap();

    let attacks: [(bool, &[u8]); 3] = [
        // A NUL in a value ends the frame early for a 1.0 reader; the escaped names
        // after it would make its next frame.
        (
            false,
            b"SEND\ndestination:/topic/abuse.news\nx:y\0MESSAGE\ndestination\\c/topic/admin:1\n\
              message-id\\cforged:1\nsubscription\\cs:1\nreceipt:r\n\nforged body\0",
        ),
        // A name that unescapes to one with ':'.
        (
            true,
            b"SEND\ndestination:/topic/abuse.news\ndestination\\c/topic/admin:1\nreceipt:r\n\nx\0",
        ),
        // A ':' smuggled into a name by an escape, over TCP.
        (
            false,
            b"SEND\ndestination:/topic/abuse.news\nmessage-id\\cforged:1\nreceipt:r\n\nx\0",
        ),
    ];
    for (ws, raw) in attacks {
        let mut attacker = herald.attacker(ws).await;
        attacker.send_raw(raw).await.unwrap();
        let answer = attacker.recv(PROMPT).await.unwrap().expect("an answer");
        assert_eq!(answer.command, Command::Error, "{answer:?}");
        assert!(message_of(&answer).contains("header"), "{answer:?}");
    }
    let mut publisher = Stomp::ws(herald.http, Some(BYSTANDER_IP)).await.unwrap();
    publisher.connect().await.unwrap();
    publisher
        .request(send("/topic/abuse.news", "real"))
        .await
        .unwrap();
    loop {
        let f = v10.recv(PROMPT).await.unwrap().expect("the real message");
        if f.command == Command::Message && &f.body[..] == b"real" {
            break;
        }
    }
    let frames = nul_framed(&v10.received);
    let commands: Vec<&str> = frames
        .iter()
        .map(|f| f.lines().next().unwrap_or_default())
        .collect();
    assert_eq!(commands, ["CONNECTED", "RECEIPT", "MESSAGE"], "{frames:?}");
    assert!(frames[2].ends_with("\n\nreal"), "{frames:?}");
    watch.finish(&mut herald, 16).await;
}

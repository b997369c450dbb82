//! Producer flow control: a burst reaches every subscriber that reads, however
//! slowly; one that reads nothing is closed after `stomp.send_timeout` and holds its
//! publishers no longer than that.

mod common;

use std::time::{Duration, Instant};

use common::*;
use herald_stomp::{Command, Frame};

/// The scenario: 3,000 messages of 2 KB in a burst, then one more with a
/// receipt.
const BURST: usize = 3000;
const BODY: usize = 2048;
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// A bound on a wait, not a speed claim: how long past `send_timeout` the last
/// RECEIPT may take on a shared, noisy machine (the stall is noticed within 1.5 ×
/// `send_timeout`, the rest of the burst is a few MiB on loopback).
const SLACK: Duration = Duration::from_secs(15);

fn numbered(n: usize, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", "/topic/burst")
        .header("n", n.to_string())
        .body(body.to_owned())
}

/// Reads `count` MESSAGEs and checks they come in order, none missing; with
/// `pause`, sleeps that long after every `every` messages (a slow reader).
fn read_all(
    mut client: Client,
    count: usize,
    pause: Option<(usize, Duration)>,
) -> tokio::task::JoinHandle<Client> {
    tokio::spawn(async move {
        for n in 0..count {
            let m = match client.next_event(Duration::from_secs(60)).await {
                Some(Event::Frame(f)) => f,
                other => panic!("reader: message {n} of {count}: got {other:?}"),
            };
            assert_eq!(m.command, Command::Message, "reader got {m:?}");
            assert_eq!(
                m.get("n"),
                Some(n.to_string().as_str()),
                "reader lost or reordered a message"
            );
            if let Some((every, d)) = pause
                && n % every == every - 1
            {
                tokio::time::sleep(d).await;
            }
        }
        client
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    let (status, body) = server.http_get("/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn burst_case(transport: Transport) {
    let server = TestServer::with(|c| c.stomp.send_timeout = SEND_TIMEOUT).await;
    let mut stalled = Client::tcp_small_buffer(server.stomp).await;
    assert_eq!(stalled.connect("1.2").await.command, Command::Connected);
    stalled.subscribe("stalled", "/topic/burst").await;
    // From here on `stalled` reads nothing.
    let mut reader = server.connect(transport).await;
    reader.subscribe("reader", "/topic/burst").await;
    let reader = read_all(reader, BURST + 1, None);
    let mut publisher = server.connect(transport).await;

    let body = "x".repeat(BODY);
    let start = Instant::now();
    for n in 0..BURST {
        publisher.send_frame(&numbered(n, &body)).await;
    }
    publisher
        .send_frame(&numbered(BURST, &body).header("receipt", "last"))
        .await;
    let receipt = publisher.recv_frame_within(SEND_TIMEOUT + SLACK).await;
    let took = start.elapsed();
    assert_eq!(receipt.command, Command::Receipt, "{receipt:?}");
    assert_eq!(receipt.get("receipt-id"), Some("last"));
    eprintln!("{transport:?}: the last RECEIPT came {took:?} after the burst began");

    let reader = tokio::time::timeout(SEND_TIMEOUT + SLACK, reader)
        .await
        .expect("the reader gets the whole burst")
        .expect("reader task");
    drop(reader);

    // The stalled subscriber was closed as a slow consumer, and said so if it could.
    assert!(
        stalled.read_raw_until_closed(WAIT).await,
        "the stalled subscriber is still connected"
    );
    if contains(&stalled.received, b"ERROR\n") {
        assert!(contains(&stalled.received, b"slow consumer"));
    }
    // Metrics are per process, shared by the tests running beside this one: these
    // can only be lower bounds.
    assert!(metric(&server, "herald_publisher_pauses_total").await >= 1.0);
    assert!(metric(&server, "herald_slow_consumer_closes_total").await >= 1.0);
}

/// A reader on TCP gets all 3,001 of a burst that a stalled subscriber shares; the
/// stalled one is closed and the publisher's last RECEIPT comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_the_reader_and_the_stalled_subscriber_is_closed_tcp() {
    burst_case(Transport::Tcp).await;
}

/// The same over WebSocket (reader and publisher).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_the_reader_and_the_stalled_subscriber_is_closed_ws() {
    burst_case(Transport::Ws).await;
}

/// A reader slower than the publisher by far — single writes to it take several
/// `send_timeout`s once the kernel's buffers are full — loses nothing and keeps its
/// connection: only a reader that takes nothing for `send_timeout` is a slow
/// consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_that_keeps_reading_loses_nothing() {
    const COUNT: usize = 3000;
    let server = TestServer::with(|c| {
        c.stomp.send_timeout = Duration::from_millis(500);
        // Writes of up to 2 MiB: at the reader's pace one takes ~2.5 s.
        c.stomp.outbound_queue = 4 << 20;
        c.stomp.outbound_high_water = Some(2 << 20);
        c.stomp.outbound_low_water = Some(1 << 20);
    })
    .await;
    let mut slow = Client::tcp_small_buffer(server.stomp).await;
    assert_eq!(slow.connect("1.2").await.command, Command::Connected);
    slow.subscribe("slow", "/topic/burst").await;
    // 16 KiB every 20 ms: ~800 KiB/s, and never still for long.
    let slow = read_all(slow, COUNT, Some((8, Duration::from_millis(20))));
    let mut publisher = server.tcp().await;
    let body = "y".repeat(BODY);
    for n in 0..COUNT - 1 {
        publisher.send_frame(&numbered(n, &body)).await;
    }
    publisher.send_frame(&numbered(COUNT - 1, &body)).await;
    let mut slow = tokio::time::timeout(Duration::from_secs(120), slow)
        .await
        .expect("the slow reader gets everything")
        .expect("reader task");
    // Still connected: a message published now reaches it.
    publisher.request(numbered(COUNT, "after")).await;
    let m = slow.recv_message().await;
    assert_eq!(m.get("n"), Some(COUNT.to_string().as_str()));
}

/// The REST publish API is paced the same way: callers sending request after
/// request, several at once, each answered 202, and a reader slower than all of
/// them together loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_publishes_are_paced_to_a_slow_reader() {
    const CALLERS: usize = 8;
    const EACH: usize = 15;
    let server = TestServer::with(|c| c.stomp.send_timeout = Duration::from_secs(2)).await;
    let mut slow = Client::tcp_small_buffer(server.stomp).await;
    assert_eq!(slow.connect("1.2").await.command, Command::Connected);
    slow.subscribe("slow", "/topic/burst").await;
    // 32 KiB every 50 ms: 640 KiB/s, slower than the callers together.
    let reader = tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        while seen.len() < CALLERS * EACH {
            let m = match slow.next_event(Duration::from_secs(60)).await {
                Some(Event::Frame(f)) => f,
                other => panic!("reader, after {} messages: got {other:?}", seen.len()),
            };
            assert_eq!(m.command, Command::Message, "reader got {m:?}");
            assert!(seen.insert(m.get("n").unwrap().to_owned()), "a duplicate");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // Bodies of 32 KiB: 3.75 MiB in all, past the outbox limit (1 MiB), so without
    // pacing the reader would be closed as a slow consumer.
    let body = "z".repeat(32 * 1024);
    let callers = (0..CALLERS).map(|caller| {
        let (server, body) = (&server, &body);
        async move {
            for i in 0..EACH {
                let n = caller * EACH + i;
                let json = serde_json::json!({
                    "destination": "/topic/burst",
                    "body": body,
                    "headers": { "n": n.to_string() },
                });
                let (status, answer) = server
                    .http_post_json("/api/publish", &json.to_string())
                    .await;
                assert_eq!(status, 202, "publish {n}: {answer}");
            }
        }
    });
    futures_util::future::join_all(callers).await;
    tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("the slow reader gets every REST publish")
        .expect("reader task");
}

/// With the high-water mark at the limit there is no flow control: the outbox limit
/// alone closes a subscriber that falls behind, as before (Spring's behaviour).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_flow_control_the_limit_closes_a_reader_that_falls_behind() {
    let server = TestServer::with(|c| {
        c.stomp.outbound_high_water = Some(c.stomp.outbound_queue);
        c.stomp.send_timeout = Duration::from_secs(30);
    })
    .await;
    let mut slow = Client::tcp_small_buffer(server.stomp).await;
    assert_eq!(slow.connect("1.2").await.command, Command::Connected);
    slow.subscribe("slow", "/topic/burst").await;
    let mut publisher = server.tcp().await;
    let body = "w".repeat(BODY);
    let start = Instant::now();
    let mut n = 0;
    while server.node.broker.subscription_count() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the reader is still subscribed after {n} messages"
        );
        publisher.send_frame(&numbered(n, &body)).await;
        n += 1;
        if n % 100 == 0 {
            publisher.request(numbered(n, &body)).await;
            n += 1;
        }
    }
}

//! A subscriber that stops reading is closed as a slow consumer, while the publisher
//! and a fast subscriber keep going (flow control holds the publisher no longer than
//! `stomp.send_timeout`; tests/flow_control.rs has the burst cases).

mod common;

use std::time::{Duration, Instant};

use common::*;
use herald_stomp::{Command, Frame};

/// Messages (1 KiB each) published between two reads of the fast subscriber; well
/// under OUTBOUND_QUEUE, so a subscriber that reads after every batch is never slow.
const BATCH: usize = 20;
const OUTBOUND_QUEUE: usize = 64 * 1024;
/// Upper bound on what the test publishes before giving up (the slow client's socket
/// buffers must fill first; they are a few hundred KiB to a few MiB on Linux).
const MAX_BYTES: usize = 32 << 20;
/// A generous bound on how long closing a slow consumer may take: a bound on a wait,
/// not a speed claim (CI machines are shared and can be starved).
const SETTLE: Duration = Duration::from_secs(30);

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Publishes 1 KiB messages in batches (each batch confirmed by a receipt) until the
/// slow subscriber's session is gone. The fast subscriber must receive every message,
/// in order, after each batch. Returns how many messages were published.
async fn publish_until_slow_one_closes(
    server: &TestServer,
    publisher: &mut Client,
    fast: &mut Client,
    limit: Duration,
) -> usize {
    let body = "x".repeat(1024);
    let start = Instant::now();
    let mut sent = 0usize;
    while server.node.broker.subscription_count() > 1 {
        assert!(
            sent * body.len() < MAX_BYTES,
            "slow subscriber still open after {} MiB were published to it",
            MAX_BYTES >> 20
        );
        assert!(
            start.elapsed() < limit,
            "slow subscriber still open after {limit:?} ({sent} messages)"
        );
        let batch_start = Instant::now();
        for i in 0..BATCH {
            let f = Frame::new(Command::Send)
                .header("destination", "/topic/firehose")
                .header("n", (sent + i).to_string())
                .body(body.clone());
            if i + 1 == BATCH {
                publisher.request(f).await;
            } else {
                publisher.send_frame(&f).await;
            }
        }
        for i in 0..BATCH {
            let m = fast.recv_message().await;
            assert_eq!(
                m.get("n"),
                Some((sent + i).to_string().as_str()),
                "fast subscriber lost or reordered a message"
            );
        }
        // Everyone but the slow subscriber is served promptly.
        assert!(
            batch_start.elapsed() < Duration::from_secs(2),
            "a batch of {BATCH} took {:?} for the publisher and the fast subscriber",
            batch_start.elapsed()
        );
        sent += BATCH;
    }
    sent
}

async fn slow_consumer_case(server: TestServer, limit: Duration) {
    let mut fast = server.ws().await;
    fast.subscribe("fast", "/topic/firehose").await;
    let mut slow = Client::tcp_small_buffer(server.stomp).await;
    assert_eq!(slow.connect("1.2").await.command, Command::Connected);
    slow.subscribe("slow", "/topic/firehose").await;
    // From here on `slow` reads nothing.
    let mut publisher = server.tcp().await;
    assert_eq!(server.node.broker.subscription_count(), 2);

    let sent = publish_until_slow_one_closes(&server, &mut publisher, &mut fast, limit).await;
    eprintln!("slow subscriber closed after {sent} messages");

    // The publisher and the fast subscriber carry on after the slow one is gone.
    publisher.publish("/topic/firehose", "after").await;
    assert_eq!(fast.recv_body().await, "after");

    // The slow client finds its connection closed; if the ERROR got through at all,
    // it names the reason.
    assert!(
        slow.read_raw_until_closed(WAIT).await,
        "the slow client's connection is still open"
    );
    if contains(&slow.received, b"ERROR\n") {
        assert!(
            contains(&slow.received, b"slow consumer"),
            "ERROR without 'slow consumer': {:?}",
            String::from_utf8_lossy(&slow.received[slow.received.len().saturating_sub(300)..])
        );
    }
}

/// Without flow control (high-water mark = limit) the outbound queue limit alone
/// closes the slow consumer: it must not wait for the (long) send timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_outbound_queue_closes_the_slow_consumer() {
    let server = TestServer::with(|c| {
        c.stomp.max_frame = 4096;
        c.stomp.outbound_queue = OUTBOUND_QUEUE;
        c.stomp.outbound_high_water = Some(OUTBOUND_QUEUE);
        c.stomp.send_timeout = Duration::from_secs(30);
    })
    .await;
    slow_consumer_case(server, SETTLE).await;
}

/// A write that makes no progress for send_timeout closes the slow consumer; its
/// publisher, paced to it meanwhile, goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_write_closes_the_slow_consumer() {
    let server = TestServer::with(|c| {
        c.stomp.send_timeout = Duration::from_millis(500);
    })
    .await;
    slow_consumer_case(server, SETTLE).await;
}

/// A queue subscriber that stops reading loses its place; the queue's other consumer
/// gets the messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_queue_consumer_is_closed_and_others_get_the_messages() {
    let server = TestServer::with(|c| {
        c.stomp.max_frame = 4096;
        c.stomp.outbound_queue = OUTBOUND_QUEUE;
        c.stomp.send_timeout = Duration::from_millis(500);
    })
    .await;
    let mut slow = Client::tcp_small_buffer(server.stomp).await;
    assert_eq!(slow.connect("1.2").await.command, Command::Connected);
    slow.subscribe("slow", "/queue/work").await;
    let mut fast = server.ws().await;
    fast.subscribe("fast", "/queue/work").await;
    let mut publisher = server.tcp().await;
    let body = "y".repeat(1024);
    let start = Instant::now();
    let mut sent = 0;
    while server.node.broker.subscription_count() > 1 {
        assert!(
            start.elapsed() < SETTLE,
            "slow queue consumer still open after {sent} messages"
        );
        assert!(sent * 1024 < MAX_BYTES);
        for _ in 0..BATCH {
            publisher.publish_nowait("/queue/work", &body).await;
        }
        publisher.publish("/queue/work", &body).await;
        sent += BATCH + 1;
        // The fast consumer gets its share (at least half) promptly.
        while fast.next_event(Duration::from_millis(1)).await.is_some() {}
    }
    // Once the slow one is gone, everything goes to the fast one.
    for n in 0..10 {
        publisher
            .publish("/queue/work", &format!("later-{n}"))
            .await;
    }
    let mut got = Vec::new();
    while got.len() < 10 {
        let b = fast.recv_body().await;
        if b.starts_with("later-") {
            got.push(b);
        }
    }
    assert!(
        slow.read_raw_until_closed(WAIT).await,
        "the slow client's connection is still open"
    );
}

//! Budgets: everything a client can make the server keep is bounded, and the limit
//! it reaches is named — queued messages (bytes per queue, in all queues, count of
//! queues, the overflow policy), history rings (count, bytes), transactions (open,
//! frames, bytes), the prefetch window of client-ack subscriptions (queue and topic),
//! and the application calls a session may queue.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald::config::{Config, QueueOverflow};
use herald::handler::{HandlerError, Handlers, Request};
use herald_stomp::{Command, Frame};
use serde_json::Value;

/// Small frames, so budgets fill with a few messages.
fn small(c: &mut Config) {
    c.stomp.max_frame = 1024;
}

fn body(n: usize) -> String {
    "x".repeat(n)
}

fn ack(id: &str) -> Frame {
    Frame::new(Command::Ack).header("id", id)
}

/// SENDs `body` to `destination` with receipts until the server answers with an
/// ERROR; returns how many were receipted and the ERROR (whose `receipt-id` names
/// the refused SEND).
async fn send_until_error(c: &mut Client, destination: &str, body: &str) -> (usize, Frame) {
    for i in 0..200 {
        let receipt = format!("r{i}");
        c.send_frame(&send(destination, body).header("receipt", receipt.clone()))
            .await;
        let f = c.recv_frame().await;
        match f.command {
            Command::Receipt => assert_eq!(f.get("receipt-id"), Some(receipt.as_str())),
            Command::Error => {
                assert_eq!(f.get("receipt-id"), Some(receipt.as_str()), "{f:?}");
                assert!(c.expect_closed().await.is_empty());
                return (i, f);
            }
            _ => panic!("expected RECEIPT or ERROR, got {f:?}"),
        }
    }
    panic!("200 SENDs to {destination} were all taken: no budget applies");
}

/// Bodies of what a new subscriber to `queue` receives, up to a sentinel.
async fn drain(server: &TestServer, queue: &str) -> Vec<String> {
    let mut c = server.tcp().await;
    c.subscribe("s", queue).await;
    let mut p = server.tcp().await;
    p.publish(queue, "sentinel").await;
    let mut got = Vec::new();
    loop {
        match c.recv_body().await {
            b if b == "sentinel" => return got,
            b => got.push(b),
        }
    }
}

async fn metrics(server: &TestServer) -> String {
    let (status, body) = server.http_get("/metrics").await;
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

#[tokio::test]
async fn a_full_queue_refuses_the_send_naming_the_limit_and_keeps_what_waits() {
    let server = TestServer::with(|c| {
        small(c);
        c.broker.queue_max_bytes = 4096;
        c.broker.queues_max_bytes = 6144;
    })
    .await;
    let before = metrics(&server).await;
    assert!(
        before.contains(r#"herald_limit_hits_total{limit="broker.queue_max_bytes"}"#),
        "the family reads 0 before the first hit:\n{before}"
    );
    let mut c = server.tcp().await;
    let (taken, error) = send_until_error(&mut c, "/queue/a", &body(600)).await;
    assert!(taken >= 2, "only {taken} messages fit in 4096 bytes");
    let text = message_of(&error);
    assert!(
        text.starts_with("queue full: '/queue/a' holds ")
            && text.ends_with(" bytes (limit broker.queue_max_bytes)"),
        "{text}"
    );
    let usage = server.node.broker.budgets();
    assert_eq!(usage.queued_messages, taken);
    assert!(usage.queued_bytes <= 4096, "{usage:?}");

    // The REST API says 503 and names it too.
    let (status, json) = server
        .http_post_json(
            "/api/publish",
            &format!(r#"{{"destination": "/queue/a", "body": "{}"}}"#, body(900)),
        )
        .await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["code"], "queue_full");
    assert_eq!(json["limit"], "broker.queue_max_bytes");

    // Another queue has room of its own, until all queues hold queues_max_bytes.
    let mut c = server.tcp().await;
    let (_, error) = send_until_error(&mut c, "/queue/b", &body(600)).await;
    assert!(
        message_of(&error).ends_with("(limit broker.queues_max_bytes)"),
        "{error:?}"
    );
    let text = metrics(&server).await;
    assert!(text.contains("herald_queued_bytes"), "{text}");

    // What was taken before the refusal is all there, in order.
    let got = drain(&server, "/queue/a").await;
    assert_eq!(got.len(), taken);
    assert!(got.iter().all(|b| b.len() == 600));
}

#[tokio::test]
async fn drop_head_makes_room_by_dropping_the_oldest() {
    let server = TestServer::with(|c| {
        small(c);
        c.broker.queue_max_bytes = 4096;
        c.broker.queue_overflow = QueueOverflow::DropHead;
    })
    .await;
    let mut p = server.tcp().await;
    for n in 0..20 {
        p.publish("/queue/d", &format!("{n:03}{}", body(600))).await;
    }
    let got = drain(&server, "/queue/d").await;
    assert!(!got.is_empty() && got.len() < 20, "{} kept", got.len());
    let first: usize = got[0][..3].parse().unwrap();
    let numbers: Vec<usize> = (first..20).collect();
    let kept: Vec<usize> = got.iter().map(|b| b[..3].parse().unwrap()).collect();
    assert_eq!(kept, numbers, "the newest are kept, in order");
}

#[tokio::test]
async fn queues_are_counted_and_one_nobody_uses_holds_nothing() {
    let server = TestServer::with(|c| c.broker.max_queues = 3).await;
    let mut p = server.tcp().await;
    for q in ["/queue/q1", "/queue/q2", "/queue/q3"] {
        p.publish(q, "m").await;
    }
    let (taken, error) = send_until_error(&mut p, "/queue/q4", "m").await;
    assert_eq!(taken, 0);
    assert_eq!(
        message_of(&error),
        "too many queues: 3 exist (limit broker.max_queues)"
    );
    assert_eq!(server.node.broker.budgets().queues, 3);

    // Drained and unsubscribed: nothing is left of them.
    for q in ["/queue/q1", "/queue/q2", "/queue/q3"] {
        let mut c = server.tcp().await;
        c.subscribe("s", q).await;
        assert_eq!(c.recv_body().await, "m");
        c.unsubscribe("s").await;
    }
    // Two wildcard consumers keep round-robin positions while they read.
    let (mut a, mut b) = (server.tcp().await, server.tcp().await);
    a.subscribe("w", "/queue/w.*").await;
    b.subscribe("w", "/queue/w.*").await;
    let mut p = server.tcp().await;
    for n in 0..4 {
        p.publish(&format!("/queue/w.{}", n % 2), "m").await;
    }
    for _ in 0..2 {
        a.recv_body().await;
        b.recv_body().await;
    }
    a.unsubscribe("w").await;
    b.unsubscribe("w").await;
    let usage = server.node.broker.budgets();
    assert_eq!(
        (usage.queues, usage.queued_messages, usage.queued_bytes),
        (0, 0, 0)
    );
}

/// Subscribes to `topic` with `offset` (and `epoch`) and returns the first frame.
async fn resubscribe(server: &TestServer, topic: &str, offset: &str, epoch: Option<&str>) -> Frame {
    let mut c = server.tcp().await;
    let mut f = Frame::new(Command::Subscribe)
        .header("id", "r")
        .header("destination", topic)
        .header("offset", offset);
    if let Some(e) = epoch {
        f = f.header("epoch", e);
    }
    c.request(f).await;
    c.recv_message().await
}

#[tokio::test]
async fn history_keeps_the_most_recently_published_destinations() {
    let server = TestServer::with(|c| c.cluster.history_max_destinations = 4).await;
    let mut s = server.tcp().await;
    s.subscribe("h", "/topic/h0").await;
    let mut p = server.tcp().await;
    p.publish("/topic/h0", "first").await;
    let m = s.recv_message().await;
    let epoch = m.get("epoch").unwrap().to_owned();
    for n in 1..=5 {
        p.publish(&format!("/topic/h{n}"), "m").await;
    }
    let usage = server.node.broker.budgets();
    assert!(usage.history_destinations <= 4, "{usage:?}");
    // The least recently published ring went: its offsets mean "reload".
    let first = resubscribe(&server, "/topic/h0", "1", Some(&epoch)).await;
    assert_eq!(first.get("recovered"), Some("false"), "{first:?}");
    // The newest is whole.
    let first = resubscribe(&server, "/topic/h5", "0", None).await;
    assert_eq!(first.get("recovered"), Some("true"), "{first:?}");
    assert_eq!(&first.body[..], b"m");
}

#[tokio::test]
async fn history_bytes_are_bounded_and_the_oldest_destination_goes_first() {
    let limit = 16 * 1024;
    let server = TestServer::with(|c| {
        small(c);
        c.cluster.history_max_bytes = limit;
    })
    .await;
    let mut s = server.tcp().await;
    s.subscribe("b", "/topic/b1").await;
    let mut p = server.tcp().await;
    for n in 1..=30 {
        p.publish("/topic/b1", &format!("{n:02}{}", body(900)))
            .await;
    }
    let mut last = None;
    for _ in 1..=30 {
        last = Some(s.recv_message().await);
    }
    let last = last.unwrap();
    let (offset, epoch) = (last.get("offset").unwrap(), last.get("epoch").unwrap());
    assert!(server.node.broker.budgets().history_bytes <= limit);
    // Up to date, and the ring is still there: nothing to replay.
    let mut c = server.tcp().await;
    c.request(
        Frame::new(Command::Subscribe)
            .header("id", "r")
            .header("destination", "/topic/b1")
            .header("offset", offset)
            .header("epoch", epoch),
    )
    .await;
    c.expect_silence(Duration::from_millis(200)).await;
    for n in 1..=30 {
        p.publish("/topic/b2", &format!("{n:02}{}", body(900)))
            .await;
    }
    let usage = server.node.broker.budgets();
    assert!(usage.history_bytes <= limit, "{usage:?}");
    let first = resubscribe(&server, "/topic/b1", offset, Some(epoch)).await;
    assert_eq!(first.get("recovered"), Some("false"), "{first:?}");
}

#[tokio::test]
async fn transactions_are_bounded_in_number_frames_and_bytes() {
    let server = TestServer::with(|c| {
        small(c);
        c.stomp.max_transactions = 2;
        c.stomp.transaction_max_frames = 3;
        c.stomp.transaction_max_bytes = 2048;
    })
    .await;
    let begin = |tx: &str| Frame::new(Command::Begin).header("transaction", tx);
    let mut c = server.tcp().await;
    c.request(begin("t1")).await;
    c.request(begin("t2")).await;
    c.send_frame(&begin("t3").header("receipt", "b3")).await;
    let e = c.expect_error_and_close().await;
    assert_eq!(
        message_of(&e),
        "too many transactions: 2 are open (limit stomp.max_transactions)"
    );
    assert_eq!(e.get("receipt-id"), Some("b3"));

    let mut c = server.tcp().await;
    c.request(begin("t")).await;
    for _ in 0..3 {
        c.request(send("/topic/x", "m").header("transaction", "t"))
            .await;
    }
    c.send_frame(&send("/topic/x", "m").header("transaction", "t"))
        .await;
    let e = c.expect_error_and_close().await;
    assert_eq!(
        message_of(&e),
        "transaction full: 't' holds 3 frames (limit stomp.transaction_max_frames)"
    );

    let mut c = server.tcp().await;
    c.request(begin("t")).await;
    for _ in 0..2 {
        c.request(send("/topic/x", &body(900)).header("transaction", "t"))
            .await;
    }
    c.send_frame(&send("/topic/x", &body(900)).header("transaction", "t"))
        .await;
    let e = c.expect_error_and_close().await;
    let text = message_of(&e);
    assert!(
        text.starts_with("transaction full: 't' holds ")
            && text.ends_with(" bytes (limit stomp.transaction_max_bytes)"),
        "{text}"
    );
}

fn subscribe_prefetch(id: &str, destination: &str, ack: &str, prefetch: Option<&str>) -> Frame {
    let f = Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", destination)
        .header("ack", ack);
    match prefetch {
        Some(n) => f.header("prefetch-count", n),
        None => f,
    }
}

#[tokio::test]
async fn a_full_prefetch_window_leaves_queue_messages_in_the_queue() {
    let server = TestServer::start().await;
    let mut c = server.tcp().await;
    c.request(subscribe_prefetch("s", "/queue/p", "client", Some("2")))
        .await;
    let mut p = server.tcp().await;
    for n in 1..=5 {
        p.publish("/queue/p", &format!("m{n}")).await;
    }
    let m1 = c.recv_message().await;
    let m2 = c.recv_message().await;
    assert_eq!((&m1.body[..], &m2.body[..]), (&b"m1"[..], &b"m2"[..]));
    c.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(server.node.broker.budgets().queued_messages, 3);
    assert_eq!(server.node.broker.budgets().unacked, 2);

    // A cumulative ACK frees both places: the queue refills the window.
    c.send_frame(&ack(m2.get("ack").unwrap())).await;
    let m3 = c.recv_message().await;
    assert_eq!(&m3.body[..], b"m3");
    assert_eq!(c.recv_body().await, "m4");
    c.expect_silence(Duration::from_millis(200)).await;

    // A NACK gives m3 back; with no other consumer it comes back here.
    c.send_frame(&Frame::new(Command::Nack).header("id", m3.get("ack").unwrap()))
        .await;
    assert_eq!(c.recv_body().await, "m3");

    // A consumer with room takes what waits.
    let mut other = server.tcp().await;
    other.subscribe("o", "/queue/p").await;
    assert_eq!(other.recv_body().await, "m5");
    c.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn prefetch_defaults_to_the_setting_and_is_clamped_to_the_maximum() {
    let server = TestServer::with(|c| {
        c.stomp.prefetch = 3;
        c.stomp.prefetch_max = 4;
    })
    .await;
    let mut d = server.tcp().await;
    d.request(subscribe_prefetch(
        "d",
        "/queue/default",
        "client-individual",
        None,
    ))
    .await;
    let mut big = server.tcp().await;
    big.request(subscribe_prefetch(
        "b",
        "/queue/big",
        "client-individual",
        Some("100000"),
    ))
    .await;
    let mut p = server.tcp().await;
    for n in 0..10 {
        p.publish("/queue/default", &format!("{n}")).await;
        p.publish("/queue/big", &format!("{n}")).await;
    }
    for _ in 0..3 {
        d.recv_message().await;
    }
    for _ in 0..4 {
        big.recv_message().await;
    }
    d.expect_silence(Duration::from_millis(200)).await;
    big.expect_silence(Duration::from_millis(10)).await;

    let mut bad = server.tcp().await;
    bad.send_frame(&subscribe_prefetch("x", "/queue/q", "client", Some("many")))
        .await;
    let e = bad.expect_error_and_close().await;
    assert_eq!(
        message_of(&e),
        "invalid prefetch-count 'many': expected a number of messages"
    );
}

#[tokio::test]
async fn a_topic_subscriber_that_never_acks_is_closed_naming_prefetch() {
    let server = TestServer::start().await;
    let mut lazy = server.ws().await;
    lazy.request(subscribe_prefetch(
        "t",
        "/topic/t",
        "client-individual",
        Some("2"),
    ))
    .await;
    let mut bystander = server.tcp().await;
    bystander.subscribe("t", "/topic/t").await;
    let mut p = server.tcp().await;
    for n in 1..=3 {
        p.publish("/topic/t", &format!("m{n}")).await;
    }
    let frames = lazy.expect_closed().await;
    let (messages, rest): (Vec<_>, Vec<_>) =
        frames.iter().partition(|f| f.command == Command::Message);
    assert_eq!(messages.len(), 2, "{frames:?}");
    assert_eq!(rest.len(), 1, "{frames:?}");
    assert_eq!(
        message_of(rest[0]),
        "slow consumer: 2 messages on subscription 't' wait for an ACK (limit prefetch-count, default stomp.prefetch)"
    );
    for n in 1..=3 {
        assert_eq!(bystander.recv_body().await, format!("m{n}"));
    }
    p.publish("/topic/t", "after").await;
    assert_eq!(bystander.recv_body().await, "after");
}

#[tokio::test]
async fn a_flood_of_application_sends_is_decoded_no_faster_than_it_is_handled() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handlers = {
        let gate = gate.clone();
        Handlers::new().route("/block", move |_req: Request<Value>| {
            let gate = gate.clone();
            async move {
                let _permit = gate.acquire().await;
                Ok::<_, HandlerError>(())
            }
        })
    };
    let server = TestServer::with_handlers(handlers, |_| {}).await;
    let mut watcher = server.tcp().await;
    watcher.subscribe("a", "/topic/after").await;
    // One WebSocket message: 200 application SENDs, then a SEND to a topic.
    let mut flood = String::new();
    for _ in 0..200 {
        flood.push_str("SEND\ndestination:/app/block\n\n1\0");
    }
    flood.push_str("SEND\ndestination:/topic/after\n\nlast\0");
    let mut c = server.ws().await;
    c.send_raw(flood.as_bytes()).await;
    // The topic SEND waits behind the calls instead of all 200 being queued at once.
    watcher.expect_silence(Duration::from_millis(300)).await;
    gate.add_permits(1000);
    assert_eq!(watcher.recv_body().await, "last");
}

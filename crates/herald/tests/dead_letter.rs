//! Redelivery marking, the redelivery limit and dead-letter queues: `redelivered:true`
//! on every delivery after the first, `broker.max_redeliveries`, NACK `requeue:false`,
//! `broker.dead_letter`, and dead letters that are dropped (and counted) rather than
//! looping through `dlq.dlq.` queues.

mod common;

use std::time::Duration;

use common::*;
use herald_stomp::{Command, Frame};

fn nack(m: &Frame) -> Frame {
    Frame::new(Command::Nack).header("id", m.get("ack").expect("an ack header"))
}

fn limit(max_redeliveries: u32) -> impl FnOnce(&mut herald::Config) {
    move |c| c.broker.max_redeliveries = max_redeliveries
}

/// `herald_messages_dead_lettered_total{reason, outcome}` now.
async fn dead_lettered(server: &TestServer, reason: &str, outcome: &str) -> f64 {
    let (status, body) = server.http_get("/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).expect("text exposition");
    let (r, o) = (
        format!("reason=\"{reason}\""),
        format!("outcome=\"{outcome}\""),
    );
    text.lines()
        .filter(|l| l.starts_with("herald_messages_dead_lettered_total{"))
        .find(|l| l.contains(&r) && l.contains(&o))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("/metrics lacks the {reason}/{outcome} dead letters:\n{text}"))
}

#[tokio::test]
async fn a_redelivery_says_redelivered_and_a_first_delivery_does_not() {
    let server = TestServer::start().await;
    let mut a = server.tcp().await;
    a.subscribe_ack("a", "/queue/marked", "client-individual")
        .await;
    let mut p = server.tcp().await;
    p.publish("/queue/marked", "m1").await;
    let first = a.recv_message().await;
    assert_eq!(first.get("redelivered"), None, "{first:?}");
    a.request(nack(&first)).await;
    let again = a.recv_message().await;
    assert_eq!(&again.body[..], b"m1");
    assert_eq!(again.get("redelivered"), Some("true"), "{again:?}");

    // A session that ends holding it gives it back too; an auto-ack subscriber
    // (which otherwise shares the first delivery's frame) sees the mark.
    let mut b = server.ws().await;
    b.subscribe("0", "/queue/marked").await;
    drop(a);
    let m = b.recv_message().await;
    assert_eq!(
        (&m.body[..], m.get("redelivered")),
        (&b"m1"[..], Some("true"))
    );
    p.publish("/queue/marked", "m2").await;
    let fresh = b.recv_message().await;
    assert_eq!(
        (&fresh.body[..], fresh.get("redelivered")),
        (&b"m2"[..], None)
    );
}

#[tokio::test]
async fn a_message_every_consumer_nacks_goes_to_its_dlq_after_max_redeliveries() {
    let server = TestServer::with(limit(3)).await;
    let mut a = server.tcp().await;
    let mut b = server.ws().await;
    for c in [&mut a, &mut b] {
        c.subscribe_ack("w", "/queue/poison", "client-individual")
            .await;
    }
    let mut dlq = server.tcp().await;
    dlq.subscribe("d", "/queue/dlq.poison").await;
    let mut p = server.tcp().await;
    p.request(
        Frame::new(Command::Send)
            .header("destination", "/queue/poison")
            .header("content-type", "text/plain")
            .header("x-order", "42")
            .body("bad"),
    )
    .await;
    // Every delivery is NACKed by whichever consumer gets it.
    let mut deliveries = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let mut quiet = true;
        for c in [&mut a, &mut b] {
            if let Some(Event::Frame(m)) = c.next_event(Duration::from_millis(50)).await {
                assert_eq!(m.command, Command::Message, "{m:?}");
                deliveries.push(m.get("redelivered").map(str::to_owned));
                c.request(nack(&m)).await;
                quiet = false;
            }
        }
        if quiet && deliveries.len() >= 4 {
            break;
        }
    }
    let t = Some("true".to_owned());
    assert_eq!(
        deliveries,
        [None, t.clone(), t.clone(), t],
        "one delivery and max_redeliveries redeliveries"
    );
    let letter = dlq.recv_message().await;
    assert_eq!(&letter.body[..], b"bad");
    assert_eq!(letter.get("destination"), Some("/queue/dlq.poison"));
    assert_eq!(letter.get("original-destination"), Some("/queue/poison"));
    assert_eq!(letter.get("dead-letter-reason"), Some("max-redeliveries"));
    assert_eq!(letter.get("delivery-count"), Some("4"));
    assert_eq!(letter.get("x-order"), Some("42"));
    assert_eq!(letter.get("content-type"), Some("text/plain"));
    assert!(letter.get("original-message-id").is_some(), "{letter:?}");
    assert_ne!(letter.get("message-id"), letter.get("original-message-id"));
    dlq.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn nack_with_requeue_false_dead_letters_at_once() {
    let server = TestServer::start().await;
    let mut dlq = server.tcp().await;
    dlq.subscribe("d", "/queue/dlq.reject").await;
    let mut p = server.tcp().await;

    // client-individual: that one message.
    let mut a = server.tcp().await;
    a.subscribe_ack("a", "/queue/reject", "client-individual")
        .await;
    p.publish("/queue/reject", "r1").await;
    let m = a.recv_message().await;
    a.request(nack(&m).header("requeue", "false")).await;
    let letter = dlq.recv_message().await;
    assert_eq!(&letter.body[..], b"r1");
    assert_eq!(letter.get("dead-letter-reason"), Some("nack"));
    assert_eq!(letter.get("delivery-count"), Some("1"));
    a.unsubscribe("a").await;

    // client (cumulative): everything up to it; inside a transaction, at COMMIT.
    a.subscribe_ack("c", "/queue/reject", "client").await;
    p.publish("/queue/reject", "r2").await;
    p.publish("/queue/reject", "r3").await;
    a.recv_message().await;
    let last = a.recv_message().await;
    a.request(Frame::new(Command::Begin).header("transaction", "tx"))
        .await;
    a.request(
        nack(&last)
            .header("requeue", "false")
            .header("transaction", "tx"),
    )
    .await;
    dlq.expect_silence(Duration::from_millis(200)).await;
    a.request(Frame::new(Command::Commit).header("transaction", "tx"))
        .await;
    assert_eq!(dlq.recv_body().await, "r2");
    assert_eq!(dlq.recv_body().await, "r3");
    a.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_requeue_header_that_is_neither_true_nor_false_is_an_error() {
    let server = TestServer::start().await;
    let mut a = server.tcp().await;
    a.subscribe_ack("a", "/queue/requeue-typo", "client-individual")
        .await;
    a.publish("/queue/requeue-typo", "x").await;
    let m = a.recv_message().await;
    a.send_frame(&nack(&m).header("requeue", "no")).await;
    let e = a.expect_error_and_close().await;
    assert!(message_of(&e).contains("invalid requeue 'no'"), "{e:?}");
}

#[tokio::test]
async fn with_dead_lettering_off_a_dead_letter_is_dropped_and_counted() {
    let server = TestServer::with(|c| c.broker.dead_letter = String::new()).await;
    let before = dead_lettered(&server, "nack", "dropped").await;
    let mut a = server.tcp().await;
    a.subscribe_ack("a", "/queue/off", "client-individual")
        .await;
    a.publish("/queue/off", "gone").await;
    let m = a.recv_message().await;
    a.request(nack(&m).header("requeue", "false")).await;
    a.expect_silence(Duration::from_millis(200)).await;
    let after = dead_lettered(&server, "nack", "dropped").await;
    assert!(after >= before + 1.0, "{before} -> {after}");
    a.unsubscribe("a").await;
    let mut late = server.tcp().await;
    late.subscribe("l", "/queue/off").await;
    late.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_dead_letter_given_back_too_often_is_dropped_not_looped() {
    let server = TestServer::with(limit(1)).await;
    let before = dead_lettered(&server, "max-redeliveries", "dropped").await;
    let mut deeper = server.tcp().await;
    deeper.subscribe("dd", "/queue/dlq.dlq.loop").await;
    let mut d = server.tcp().await;
    d.subscribe_ack("d", "/queue/dlq.loop", "client-individual")
        .await;
    d.publish("/queue/dlq.loop", "letter").await;
    for _ in 0..2 {
        let m = d.recv_message().await;
        d.request(nack(&m)).await;
    }
    d.expect_silence(Duration::from_millis(300)).await;
    deeper.expect_silence(Duration::from_millis(100)).await;
    let after = dead_lettered(&server, "max-redeliveries", "dropped").await;
    assert!(after >= before + 1.0, "{before} -> {after}");
    // Nothing waits anywhere either.
    d.unsubscribe("d").await;
    let mut late = server.tcp().await;
    late.subscribe("l", "/queue/dlq.loop").await;
    late.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_full_dead_letter_queue_drops_the_letter_and_the_consumer_goes_on() {
    let server = TestServer::with(|c| {
        c.broker.max_redeliveries = 0;
        c.broker.dead_letter = "/queue/dead".into();
        c.broker.queue_capacity = 1;
    })
    .await;
    let before = dead_lettered(&server, "max-redeliveries", "queued").await;
    let mut a = server.tcp().await;
    a.subscribe_ack("a", "/queue/many", "client-individual")
        .await;
    let mut p = server.tcp().await;
    p.publish("/queue/many", "1").await;
    p.publish("/queue/many", "2").await;
    for _ in 0..2 {
        let m = a.recv_message().await;
        a.request(nack(&m)).await;
    }
    a.assert_works("/topic/still-here").await;
    let mut dead = server.tcp().await;
    dead.subscribe("d", "/queue/dead").await;
    let letter = dead.recv_message().await;
    assert_eq!(&letter.body[..], b"1");
    assert_eq!(letter.get("original-destination"), Some("/queue/many"));
    dead.expect_silence(Duration::from_millis(300)).await;
    let after = dead_lettered(&server, "max-redeliveries", "queued").await;
    assert!(after >= before + 1.0, "{before} -> {after}");
}

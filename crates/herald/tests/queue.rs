//! Queue destinations: round-robin, waiting messages, ack modes, NACK and
//! redelivery, 1.1 vs 1.2 ACK addressing.

mod common;

use common::*;
use herald_stomp::{Command, Frame};

fn ack(id: &str) -> Frame {
    Frame::new(Command::Ack).header("id", id)
}

fn ack_header(m: &Frame) -> String {
    m.get("ack")
        .unwrap_or_else(|| panic!("1.2 MESSAGE needing an ACK has an ack header: {m:?}"))
        .to_owned()
}

#[tokio::test]
async fn round_robin_across_subscribers() {
    let server = TestServer::start().await;
    let mut a = server.tcp().await;
    let mut b = server.ws().await;
    a.subscribe("a", "/queue/work").await;
    b.subscribe("b", "/queue/work").await;
    let mut p = server.tcp().await;
    for n in 0..6 {
        p.publish("/queue/work", &format!("job{n}")).await;
    }
    let got_a: Vec<String> = [
        a.recv_body().await,
        a.recv_body().await,
        a.recv_body().await,
    ]
    .into();
    let got_b: Vec<String> = [
        b.recv_body().await,
        b.recv_body().await,
        b.recv_body().await,
    ]
    .into();
    // Each message goes to exactly one subscriber, alternating.
    let mut all: Vec<String> = got_a.iter().chain(&got_b).cloned().collect();
    all.sort();
    assert_eq!(all, ["job0", "job1", "job2", "job3", "job4", "job5"]);
    let parity = |v: &[String]| v.iter().map(|s| s.as_bytes()[3] % 2).collect::<Vec<_>>();
    let pa = parity(&got_a);
    assert!(
        pa.iter().all(|&x| x == pa[0]),
        "round-robin should alternate: a={got_a:?} b={got_b:?}"
    );

    // Nobody gets a 4th: a sentinel topic message is next for both.
    a.subscribe("t", "/topic/sentinel").await;
    b.subscribe("t", "/topic/sentinel").await;
    p.publish("/topic/sentinel", "end").await;
    assert_eq!(a.recv_body().await, "end");
    assert_eq!(b.recv_body().await, "end");
}

#[tokio::test]
async fn message_without_subscriber_waits() {
    let server = TestServer::start().await;
    let mut p = server.tcp().await;
    p.publish("/queue/later", "w1").await;
    p.publish("/queue/later", "w2").await;
    let mut c = server.ws().await;
    c.subscribe("s", "/queue/later").await;
    assert_eq!(c.recv_body().await, "w1");
    assert_eq!(c.recv_body().await, "w2");
}

#[tokio::test]
async fn wildcard_subscriber_receives_waiting_queue_messages() {
    let server = TestServer::start().await;
    let mut p = server.tcp().await;
    p.publish("/queue/jobs.eu", "eu").await;
    let mut c = server.tcp().await;
    c.subscribe("s", "/queue/jobs.*").await;
    let m = c.recv_message().await;
    assert_eq!(&m.body[..], b"eu");
    assert_eq!(m.get("destination"), Some("/queue/jobs.eu"));
}

/// Subscribes `c` on `queue` with `mode`, has `n` messages published, and returns them.
async fn take(
    server: &TestServer,
    c: &mut Client,
    queue: &str,
    mode: &str,
    n: usize,
) -> Vec<Frame> {
    c.subscribe_ack("s", queue, mode).await;
    let mut p = server.tcp().await;
    for i in 1..=n {
        p.publish(queue, &format!("m{i}")).await;
    }
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.recv_message().await);
    }
    out
}

/// What a fresh subscriber gets from `queue`, up to a sentinel published after it
/// subscribed.
async fn leftovers(server: &TestServer, queue: &str) -> Vec<String> {
    let mut c = server.tcp().await;
    c.subscribe("late", queue).await;
    let mut p = server.tcp().await;
    p.publish(queue, "sentinel").await;
    let mut got = Vec::new();
    loop {
        let b = c.recv_body().await;
        if b == "sentinel" {
            return got;
        }
        got.push(b);
    }
}

#[tokio::test]
async fn client_ack_is_cumulative() {
    let server = TestServer::start().await;
    let mut a = server.tcp().await;
    let ms = take(&server, &mut a, "/queue/cumulative", "client", 3).await;
    a.request(ack(&ack_header(&ms[1]))).await;
    a.disconnect().await;
    // m1 and m2 were acknowledged by the one ACK; only m3 comes back.
    assert_eq!(leftovers(&server, "/queue/cumulative").await, ["m3"]);
}

#[tokio::test]
async fn client_individual_ack_is_single() {
    let server = TestServer::start().await;
    let mut a = server.ws().await;
    let ms = take(&server, &mut a, "/queue/individual", "client-individual", 3).await;
    a.request(ack(&ack_header(&ms[1]))).await;
    a.disconnect().await;
    assert_eq!(leftovers(&server, "/queue/individual").await, ["m1", "m3"]);
}

#[tokio::test]
async fn auto_ack_needs_no_ack() {
    let server = TestServer::start().await;
    let mut a = server.tcp().await;
    let ms = take(&server, &mut a, "/queue/auto", "auto", 2).await;
    assert!(
        ms.iter().all(|m| m.get("ack").is_none()),
        "auto mode MESSAGEs carry no ack: {ms:?}"
    );
    a.disconnect().await;
    assert!(leftovers(&server, "/queue/auto").await.is_empty());
}

#[tokio::test]
async fn nack_redelivers_to_the_other_subscriber() {
    let server = TestServer::start().await;
    let mut a = server.tcp().await;
    let ms = take(&server, &mut a, "/queue/nack", "client-individual", 1).await;
    let mut b = server.ws().await;
    b.subscribe_ack("b", "/queue/nack", "client-individual")
        .await;
    a.request(Frame::new(Command::Nack).header("id", ack_header(&ms[0])))
        .await;
    let m = b.recv_message().await;
    assert_eq!(&m.body[..], b"m1");
    assert_eq!(m.get("subscription"), Some("b"));
    // `a` does not get it back.
    a.subscribe("t", "/topic/sentinel").await;
    b.publish("/topic/sentinel", "end").await;
    assert_eq!(a.recv_body().await, "end");
}

#[tokio::test]
async fn nack_with_a_single_subscriber_redelivers_to_it() {
    let server = TestServer::start().await;
    let mut a = server.tcp().await;
    let ms = take(&server, &mut a, "/queue/nack1", "client-individual", 1).await;
    a.request(Frame::new(Command::Nack).header("id", ack_header(&ms[0])))
        .await;
    let again = a.recv_message().await;
    assert_eq!(&again.body[..], b"m1");
    assert_ne!(
        again.get("ack"),
        ms[0].get("ack"),
        "a redelivery is a new delivery with a new ack id"
    );
}

#[tokio::test]
async fn unacked_at_disconnect_are_redelivered() {
    let server = TestServer::start().await;
    // Graceful DISCONNECT.
    let mut a = server.tcp().await;
    let mut b = server.tcp().await;
    let _ = take(&server, &mut a, "/queue/redeliver", "client", 2).await;
    b.subscribe("b", "/queue/redeliver").await;
    a.disconnect().await;
    assert_eq!(b.recv_body().await, "m1");
    assert_eq!(b.recv_body().await, "m2");

    // Connection dropped without DISCONNECT (WebSocket).
    let mut a = server.ws().await;
    let _ = take(&server, &mut a, "/queue/redeliver2", "client-individual", 1).await;
    b.subscribe("b2", "/queue/redeliver2").await;
    drop(a);
    assert_eq!(b.recv_body().await, "m1");
}

#[tokio::test]
async fn ack_in_1_2_uses_the_ack_header_as_id() {
    let server = TestServer::start().await;
    let mut a = server.connect_version(Transport::Tcp, "1.2").await;
    let ms = take(&server, &mut a, "/queue/v12", "client-individual", 2).await;
    let ack_id = ack_header(&ms[0]);
    a.request(ack(&ack_id)).await;
    a.disconnect().await;
    assert_eq!(leftovers(&server, "/queue/v12").await, ["m2"]);
}

#[tokio::test]
async fn ack_in_1_1_uses_message_id_and_subscription() {
    let server = TestServer::start().await;
    let mut a = server.connect_version(Transport::Ws, "1.1").await;
    let ms = take(&server, &mut a, "/queue/v11", "client-individual", 2).await;
    let mid = ms[0].get("message-id").unwrap().to_owned();
    assert_eq!(ms[0].get("subscription"), Some("s"));
    a.request(
        Frame::new(Command::Ack)
            .header("message-id", mid)
            .header("subscription", "s"),
    )
    .await;
    a.disconnect().await;
    assert_eq!(leftovers(&server, "/queue/v11").await, ["m2"]);
}

#[tokio::test]
async fn ack_in_1_0_uses_message_id() {
    let server = TestServer::start().await;
    let mut a = server.connect_version(Transport::Tcp, "1.0").await;
    let ms = take(&server, &mut a, "/queue/v10", "client", 2).await;
    let mid = ms[1].get("message-id").unwrap().to_owned();
    a.request(Frame::new(Command::Ack).header("message-id", mid))
        .await;
    a.disconnect().await;
    assert!(leftovers(&server, "/queue/v10").await.is_empty());
}

#[tokio::test]
async fn ack_in_1_2_by_message_id_is_refused() {
    let server = TestServer::start().await;
    let mut a = server.connect_version(Transport::Tcp, "1.2").await;
    let ms = take(&server, &mut a, "/queue/v12b", "client-individual", 1).await;
    let mid = ms[0].get("message-id").unwrap().to_owned();
    assert_ne!(
        Some(mid.as_str()),
        ms[0].get("ack"),
        "ack ids and message ids differ here"
    );
    a.send_frame(
        &Frame::new(Command::Ack)
            .header("id", mid.clone())
            .header("receipt", "r"),
    )
    .await;
    let e = a.expect_error_and_close().await;
    assert!(message_of(&e).contains(&mid), "{e:?}");
    assert_eq!(e.get("receipt-id"), Some("r"));
    // The delivery was never acknowledged, so it goes back to the queue.
    assert_eq!(leftovers(&server, "/queue/v12b").await, ["m1"]);
}

//! The session state machine on its own: frames in, the frames it queues out (or the
//! error that ends it), on a node of its own with the local bus. No socket.

use std::sync::Arc;

use bytes::BytesMut;
use herald_stomp::{Command, Decoder, Frame, Limits};

use super::{ErrorKind, Flow, Session, StompError};
use crate::broker::Outbox;
use crate::config::Config;
use crate::handler::Handlers;
use crate::node::Node;

fn node_with(tweak: impl FnOnce(&mut Config)) -> Arc<Node> {
    let mut config = Config::default();
    tweak(&mut config);
    Node::new(config, Handlers::new()).expect("a node on the local bus")
}

/// A session and its outbox, connected with STOMP 1.2.
async fn connected(node: &Arc<Node>) -> (Session, Arc<Outbox>) {
    let outbox = Arc::new(node.config.stomp.outbox());
    let mut s = Session::new(node.clone(), outbox.clone(), None);
    let flow = s
        .connect(Frame::new(Command::Connect).header("accept-version", "1.2"))
        .await
        .expect("CONNECT accepted");
    assert!(matches!(flow, Flow::Connected { .. }), "{flow:?}");
    let connected = drained(&outbox);
    assert_eq!(connected.len(), 1);
    assert_eq!(connected[0].command, Command::Connected);
    (s, outbox)
}

/// Everything queued for the client since the last look, decoded.
fn drained(outbox: &Outbox) -> Vec<Frame> {
    let mut frames = Vec::new();
    outbox.drain(&mut frames);
    outbox.written(Outbox::bytes_of(&frames));
    let mut buf = BytesMut::new();
    for f in &frames {
        buf.extend_from_slice(&f.bytes);
    }
    let mut decoder = Decoder::new(Limits {
        max_frame: 1 << 20,
        max_headers: 64,
        max_header_line: 8192,
    });
    let mut out = Vec::new();
    while let Some(f) = decoder
        .decode(&mut buf)
        .expect("the server's frames decode")
    {
        out.push(f);
    }
    out
}

fn send(destination: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination)
        .body(body.to_owned())
}

fn subscribe(id: &str, destination: &str) -> Frame {
    Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", destination)
}

fn error_of(r: Result<Flow, StompError>) -> StompError {
    r.expect_err("the frame is refused")
}

#[tokio::test]
async fn connect_picks_the_highest_version_and_says_who_is_connected() {
    let node = node_with(|_| {});
    let outbox = Arc::new(node.config.stomp.outbox());
    let mut s = Session::new(node.clone(), outbox.clone(), None);
    let flow = s
        .connect(
            Frame::new(Command::Connect)
                .header("accept-version", "1.0,1.1,1.2")
                .header("login", "ada"),
        )
        .await
        .unwrap();
    assert!(
        matches!(flow, Flow::Connected { version, .. } if version == herald_stomp::Version::V1_2)
    );
    let f = &drained(&outbox)[0];
    assert_eq!(f.get("version"), Some("1.2"));
    assert_eq!(f.get("user-name"), Some("ada"));
    assert_eq!(s.user(), "ada");
    let e = error_of(
        s.connect(Frame::new(Command::Connect).header("accept-version", "1.2"))
            .await,
    );
    assert!(e.message.contains("second CONNECT"), "{e:?}");
}

#[tokio::test]
async fn an_unsupported_version_is_refused_with_the_versions_spoken() {
    let node = node_with(|_| {});
    let outbox = Arc::new(node.config.stomp.outbox());
    let mut s = Session::new(node, outbox, None);
    let e = error_of(
        s.connect(Frame::new(Command::Connect).header("accept-version", "3.0"))
            .await,
    );
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert!(
        e.headers
            .iter()
            .any(|(k, v)| *k == "version" && v.as_str() == "1.0,1.1,1.2")
    );
}

#[tokio::test]
async fn nothing_but_connect_comes_first() {
    let node = node_with(|_| {});
    let outbox = Arc::new(node.config.stomp.outbox());
    let mut s = Session::new(node, outbox, None);
    let e = error_of(s.handle(send("/topic/a", "x").header("receipt", "r1")));
    assert!(e.message.contains("CONNECT"), "{e:?}");
    assert_eq!(
        e.receipt.as_deref(),
        Some("r1"),
        "the ERROR names the frame"
    );
}

#[tokio::test]
async fn a_receipted_send_reaches_the_subscriber_then_its_receipt() {
    let node = node_with(|_| {});
    let (mut s, outbox) = connected(&node).await;
    s.handle(subscribe("0", "/topic/a")).unwrap();
    s.handle(send("/topic/a", "hi").header("receipt", "r1"))
        .unwrap();
    let out = drained(&outbox);
    let commands: Vec<_> = out.iter().map(|f| f.command).collect();
    assert_eq!(commands, [Command::Message, Command::Receipt]);
    assert_eq!(&out[0].body[..], b"hi");
    assert_eq!(out[0].get("subscription"), Some("0"));
    assert_eq!(out[1].get("receipt-id"), Some("r1"));
}

#[tokio::test]
async fn subscription_ids_are_unique_and_unsubscribe_names_one() {
    let node = node_with(|_| {});
    let (mut s, _outbox) = connected(&node).await;
    s.handle(subscribe("0", "/topic/a")).unwrap();
    let e = error_of(s.handle(subscribe("0", "/topic/b")));
    assert!(e.message.contains("already in use"), "{e:?}");
    s.handle(Frame::new(Command::Unsubscribe).header("id", "0"))
        .unwrap();
    assert_eq!(node.broker.subscription_count(), 0);
    let e = error_of(s.handle(Frame::new(Command::Unsubscribe).header("id", "0")));
    assert!(e.message.contains("no subscription"), "{e:?}");
}

#[tokio::test]
async fn a_transaction_delivers_at_commit_and_nothing_at_abort() {
    let node = node_with(|_| {});
    let (mut s, outbox) = connected(&node).await;
    s.handle(subscribe("0", "/topic/tx")).unwrap();
    let mut delivered = Vec::new();
    for (tx, end) in [("t1", Command::Commit), ("t2", Command::Abort)] {
        s.handle(Frame::new(Command::Begin).header("transaction", tx))
            .unwrap();
        s.handle(send("/topic/tx", tx).header("transaction", tx))
            .unwrap();
        assert!(drained(&outbox).is_empty(), "nothing before {end:?}");
        s.handle(Frame::new(end).header("transaction", tx)).unwrap();
        delivered.extend(drained(&outbox));
    }
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(&delivered[0].body[..], b"t1");
    let e = error_of(s.handle(Frame::new(Command::Commit).header("transaction", "t2")));
    assert!(e.message.contains("unknown transaction"), "{e:?}");
}

#[tokio::test]
async fn budgets_are_refused_as_limits() {
    let node = node_with(|c| c.stomp.max_transactions = 1);
    let (mut s, _outbox) = connected(&node).await;
    s.handle(Frame::new(Command::Begin).header("transaction", "a"))
        .unwrap();
    let e = error_of(s.handle(Frame::new(Command::Begin).header("transaction", "b")));
    assert_eq!(e.kind, ErrorKind::Limit);
    assert!(e.message.contains("stomp.max_transactions"), "{e:?}");
}

#[tokio::test]
async fn a_reserved_header_is_refused_as_access_denied() {
    let node = node_with(|_| {});
    let (mut s, _outbox) = connected(&node).await;
    let e = error_of(s.handle(send("/topic/a", "x").header("herald-event", "read")));
    assert_eq!(e.kind, ErrorKind::AccessDenied);
}

#[tokio::test]
async fn acks_name_a_delivery_and_a_nack_with_requeue_false_dead_letters() {
    let node = node_with(|_| {});
    let (mut s, outbox) = connected(&node).await;
    s.handle(subscribe("dead", "/queue/dlq.jobs")).unwrap();
    s.handle(subscribe("0", "/queue/jobs").header("ack", "client-individual"))
        .unwrap();
    let e = error_of(s.handle(Frame::new(Command::Ack).header("id", "nope")));
    assert!(e.message.contains("unknown id"), "{e:?}");
    s.handle(send("/queue/jobs", "job")).unwrap();
    let m = drained(&outbox).remove(0);
    let ack = m.get("ack").expect("a 1.2 ack id").to_owned();
    let e = error_of(
        s.handle(
            Frame::new(Command::Nack)
                .header("id", ack.clone())
                .header("requeue", "maybe"),
        ),
    );
    assert!(e.message.contains("requeue"), "{e:?}");
    s.handle(
        Frame::new(Command::Nack)
            .header("id", ack)
            .header("requeue", "false"),
    )
    .unwrap();
    let letter = drained(&outbox).remove(0);
    assert_eq!(letter.get("subscription"), Some("dead"));
    assert_eq!(letter.get("dead-letter-reason"), Some("nack"));
}

#[tokio::test]
async fn a_closed_session_gives_its_unacked_queue_messages_to_another_consumer() {
    let node = node_with(|_| {});
    let (mut a, a_out) = connected(&node).await;
    a.handle(subscribe("0", "/queue/q").header("ack", "client"))
        .unwrap();
    a.handle(send("/queue/q", "one")).unwrap();
    assert_eq!(drained(&a_out).len(), 1);
    let (mut b, b_out) = connected(&node).await;
    b.handle(subscribe("0", "/queue/q")).unwrap();
    a.close();
    let got = drained(&b_out);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].get("redelivered"), Some("true"));
}

#[tokio::test]
async fn a_subscriber_above_its_high_water_mark_pauses_the_publisher() {
    let node = node_with(|c| {
        c.stomp.outbound_high_water = Some(4096);
        c.stomp.outbound_low_water = Some(1024);
    });
    let (mut reader, reader_out) = connected(&node).await;
    reader.handle(subscribe("0", "/topic/burst")).unwrap();
    let (mut publisher, _out) = connected(&node).await;
    let body = "x".repeat(1024);
    let mut sent = 0;
    while publisher.paced().is_none() {
        publisher.handle(send("/topic/burst", &body)).unwrap();
        sent += 1;
        assert!(sent < 10, "still not paced after {sent} KiB");
    }
    // The reader takes what waits: the publisher is relieved.
    let pressure = publisher.paced().expect("paced").clone();
    assert_eq!(drained(&reader_out).len(), sent);
    tokio::time::timeout(std::time::Duration::from_secs(5), pressure.relieved())
        .await
        .expect("relieved once the reader took everything");
    assert!(publisher.paced().is_none());
}

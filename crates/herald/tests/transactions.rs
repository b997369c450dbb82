//! BEGIN/COMMIT/ABORT: transacted SENDs and ACKs take effect at COMMIT only.

mod common;

use common::*;
use herald_stomp::{Command, Frame};

fn begin(tx: &str) -> Frame {
    Frame::new(Command::Begin).header("transaction", tx)
}
fn commit(tx: &str) -> Frame {
    Frame::new(Command::Commit).header("transaction", tx)
}
fn abort(tx: &str) -> Frame {
    Frame::new(Command::Abort).header("transaction", tx)
}

#[tokio::test]
async fn sends_take_effect_at_commit() {
    let server = TestServer::start().await;
    for t in BOTH {
        let mut sub = server.tcp().await;
        sub.subscribe("s", "/topic/tx").await;
        let mut p = server.connect(t).await;
        p.request(begin("t1")).await;
        p.request(send("/topic/tx", "tx-1").header("transaction", "t1"))
            .await;
        p.request(send("/topic/tx", "tx-2").header("transaction", "t1"))
            .await;
        // Not transacted: goes out at once, so it arrives before the transacted ones.
        p.publish("/topic/tx", "plain").await;
        assert_eq!(
            sub.recv_body().await,
            "plain",
            "{t:?}: transacted SENDs leaked before COMMIT"
        );

        p.request(commit("t1")).await;
        let m1 = sub.recv_message().await;
        let m2 = sub.recv_message().await;
        assert_eq!(
            (&m1.body[..], &m2.body[..]),
            (&b"tx-1"[..], &b"tx-2"[..]),
            "{t:?}: in order"
        );
        assert_eq!(
            m1.get("transaction"),
            None,
            "the transaction header must not leak: {m1:?}"
        );
    }
}

#[tokio::test]
async fn sends_are_dropped_at_abort() {
    let server = TestServer::start().await;
    let mut sub = server.ws().await;
    sub.subscribe("s", "/topic/abort").await;
    let mut p = server.tcp().await;
    p.request(begin("t1")).await;
    p.request(send("/topic/abort", "dropped").header("transaction", "t1"))
        .await;
    p.request(abort("t1")).await;
    p.publish("/topic/abort", "sentinel").await;
    assert_eq!(sub.recv_body().await, "sentinel");
    // The transaction is gone: committing it now is an error.
    p.send_frame(&commit("t1")).await;
    let e = p.expect_error_and_close().await;
    assert!(message_of(&e).contains("t1"), "{e:?}");
}

#[tokio::test]
async fn sends_are_dropped_at_disconnect() {
    let server = TestServer::start().await;
    let mut sub = server.tcp().await;
    sub.subscribe("s", "/topic/dc").await;

    let mut p = server.tcp().await;
    p.request(begin("t1")).await;
    p.request(send("/topic/dc", "dropped-1").header("transaction", "t1"))
        .await;
    p.disconnect().await;

    let mut p = server.ws().await;
    p.subscribe("marker", "/topic/marker").await; // makes its end observable
    p.request(begin("t1")).await;
    p.request(send("/topic/dc", "dropped-2").header("transaction", "t1"))
        .await;
    assert_eq!(server.node.broker.subscription_count(), 2);
    drop(p); // no DISCONNECT at all
    wait_until("the dropped session to close", || {
        server.node.broker.subscription_count() == 1
    })
    .await;

    let mut other = server.tcp().await;
    other.publish("/topic/dc", "sentinel").await;
    assert_eq!(sub.recv_body().await, "sentinel");
}

#[tokio::test]
async fn acks_take_effect_at_commit_only() {
    let server = TestServer::start().await;
    for (tx_end, expect_left) in [(Some("commit"), false), (Some("abort"), true), (None, true)] {
        let q = format!("/queue/txack-{}", tx_end.unwrap_or("disconnect"));
        let mut a = server.tcp().await;
        a.subscribe_ack("s", &q, "client-individual").await;
        let mut p = server.tcp().await;
        p.publish(&q, "m1").await;
        let m = a.recv_message().await;
        let ack_id = m.get("ack").expect("ack header").to_owned();

        a.request(begin("t")).await;
        a.request(
            Frame::new(Command::Ack)
                .header("id", ack_id)
                .header("transaction", "t"),
        )
        .await;
        match tx_end {
            Some("commit") => a.request(commit("t")).await,
            Some("abort") => a.request(abort("t")).await,
            _ => {}
        }
        a.disconnect().await;

        // An unacked message goes back to the queue when its subscriber leaves.
        let mut late = server.ws().await;
        late.subscribe("late", &q).await;
        p.publish(&q, "sentinel").await;
        let first = late.recv_body().await;
        if expect_left {
            assert_eq!(
                first, "m1",
                "ACK in a transaction that ended by {tx_end:?} must not count"
            );
            assert_eq!(late.recv_body().await, "sentinel");
        } else {
            assert_eq!(
                first, "sentinel",
                "ACK committed in a transaction must count"
            );
        }
    }
}

#[tokio::test]
async fn unknown_transaction_is_an_error() {
    let server = TestServer::start().await;
    let cases = [
        send("/topic/x", "b").header("transaction", "nope"),
        commit("nope"),
        abort("nope"),
        Frame::new(Command::Ack)
            .header("id", "1")
            .header("transaction", "nope"),
    ];
    for t in BOTH {
        for frame in &cases {
            let mut witness = server.tcp().await;
            witness.subscribe("w", "/topic/witness").await;
            let mut c = server.connect(t).await;
            c.send_frame(&frame.clone().header("receipt", "r-1")).await;
            let e = c.expect_error_and_close().await;
            assert!(
                message_of(&e).contains("transaction") && message_of(&e).contains("nope"),
                "{t:?} {}: {e:?}",
                frame.command
            );
            assert_eq!(
                e.get("receipt-id"),
                Some("r-1"),
                "{t:?} {}: {e:?}",
                frame.command
            );
            witness.publish("/topic/witness", "still here").await;
            assert_eq!(witness.recv_body().await, "still here");
        }
    }
}

#[tokio::test]
async fn begin_of_an_open_transaction_is_an_error() {
    let server = TestServer::start().await;
    let mut c = server.tcp().await;
    c.request(begin("t1")).await;
    c.send_frame(&begin("t1")).await;
    let e = c.expect_error_and_close().await;
    assert!(message_of(&e).contains("t1"), "{e:?}");
}

#[tokio::test]
async fn transactions_are_per_session() {
    let server = TestServer::start().await;
    let mut a = server.tcp().await;
    a.request(begin("shared-name")).await;
    let mut b = server.tcp().await;
    b.send_frame(&commit("shared-name")).await;
    let e = b.expect_error_and_close().await;
    assert!(message_of(&e).contains("shared-name"), "{e:?}");
    a.request(commit("shared-name")).await;
}

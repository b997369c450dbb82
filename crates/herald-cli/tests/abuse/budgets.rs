//! What a client can make the server hold is bounded: a queue nobody reads (the
//! queue byte budget), WebSocket messages padded around a tiny frame (a message's
//! body must not keep its whole read buffer alive), history rings (the history
//! budget), an endless transaction (the transaction budget), and a client-ack
//! subscriber that never ACKs (the prefetch window; the rest waits in the queue).
//! Each test's RSS bound is the number passed to `Watch::finish`, in MiB.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use herald_stomp::{Command, Frame, Version, encode};

use crate::harness::{Herald, Watch, message_of, serial};
use crate::stomp::{Stomp, WAIT, send};

const KIB: usize = 1024;

/// How a flood of frames ended.
struct Flood {
    /// Frames the server confirmed with a RECEIPT (a batch's receipt covers it all).
    receipted: usize,
    /// The ERROR that ended it, if one did.
    error: Option<Frame>,
}

/// Sends `total` frames made by `frame`, `batch` per write, the last of each batch
/// with a receipt that is waited for; ends at an ERROR or a close.
async fn flood(c: &mut Stomp, total: usize, batch: usize, frame: impl Fn(usize) -> Frame) -> Flood {
    let mut done = 0;
    while done < total {
        let n = batch.min(total - done);
        let last = done + n - 1;
        let mut out = BytesMut::new();
        for i in done..=last {
            let f = if i == last {
                frame(i).header("receipt", format!("b{i}"))
            } else {
                frame(i)
            };
            encode(&f, Version::V1_2, &mut out);
        }
        // A write the server refused half-way still leaves its ERROR to read.
        let _ = c.send_raw(&out).await;
        loop {
            match c.recv(WAIT).await {
                Ok(Some(f)) if f.command == Command::Receipt => {
                    if f.get("receipt-id") == Some(format!("b{last}").as_str()) {
                        break;
                    }
                }
                Ok(Some(f)) if f.command == Command::Error => {
                    return Flood {
                        receipted: done,
                        error: Some(f),
                    };
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Flood {
                        receipted: done,
                        error: None,
                    };
                }
                Err(e) => panic!("after {done} frames: {e}"),
            }
        }
        done += n;
    }
    Flood {
        receipted: done,
        error: None,
    }
}

/// The ERROR that ended `flood`, asserted to mention `word`.
fn refused(flood: &Flood, total: usize, word: &str) -> String {
    let error = flood.error.as_ref().unwrap_or_else(|| {
        panic!(
            "{} of {total} frames were taken and no ERROR came: nothing refused them",
            flood.receipted
        )
    });
    let text = message_of(error).to_owned();
    assert!(
        text.contains(word),
        "the ERROR should mention {word:?}: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_nobody_reads_is_refused_at_its_byte_budget() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("queue flood", &herald).await;
    let body = "q".repeat(60 * KIB);
    let mut attacker = herald.attacker(false).await;
    let total = 8000;
    let result = flood(&mut attacker, total, 16, |_| {
        send("/queue/abuse.flood", body.clone())
    })
    .await;
    let text = refused(&result, total, "queue");
    eprintln!(
        "[abuse] queue flood: {} SENDs taken, then {text:?}",
        result.receipted
    );
    drop(attacker);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // broker.queue_max_bytes (8 MiB) stays held for a consumer; the rest goes.
    let report = watch.finish(&mut herald, 48).await;
    assert!(
        report.end_growth_kib < 24 * 1024,
        "after the client left RSS is still {} MiB over the baseline",
        report.end_growth_kib / 1024
    );
}

/// One binary WebSocket message: a SEND with a 1-byte body, then heart-beat EOLs up
/// to `size` bytes.
fn padded(destination: &str, size: usize, receipt: Option<&str>) -> Vec<u8> {
    let mut f = send(destination, "x");
    if let Some(r) = receipt {
        f = f.header("receipt", r);
    }
    let mut out = BytesMut::new();
    encode(&f, Version::V1_2, &mut out);
    let mut bytes = out.to_vec();
    bytes.resize(size.max(bytes.len()), b'\n');
    bytes
}

/// Sends `count` padded messages to `destination`, each of `size` bytes; the last
/// one's receipt says all were taken.
async fn padded_flood(c: &mut Stomp, destination: &str, count: usize, size: usize) {
    for n in 0..count {
        let receipt = (n + 1 == count).then_some("last");
        c.send_raw(&padded(destination, size, receipt))
            .await
            .unwrap_or_else(|e| panic!("message {n}: {e}"));
    }
    loop {
        let f = c.recv(WAIT).await.unwrap().expect("an answer");
        match f.command {
            Command::Receipt if f.get("receipt-id") == Some("last") => return,
            Command::Error => panic!("{f:?}"),
            _ => {}
        }
    }
}

/// Half the 1 MiB a WebSocket message may carry: large next to a 1-byte body.
const PADDED: usize = 512 * KIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padded_websocket_messages_do_not_keep_their_buffers() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("padded ws messages", &herald).await;
    let mut attacker = herald.attacker(true).await;
    // Legitimate frames (every message is taken): what must not happen is that each
    // 1-byte body keeps its 512 KiB message alive in the queue.
    padded_flood(&mut attacker, "/queue/abuse.padded", 400, PADDED).await;
    watch.finish(&mut herald, 48).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_rings_are_bounded_by_the_history_budget() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("history rings", &herald).await;
    let mut attacker = herald.attacker(true).await;
    for topic in ["/topic/abuse.ring1", "/topic/abuse.ring2"] {
        padded_flood(&mut attacker, topic, 150, PADDED).await;
    }
    // And many topics, each with a ring of its own.
    let mut tcp = herald.attacker(false).await;
    let total = 20_000;
    let result = flood(&mut tcp, total, 500, |n| {
        send(&format!("/topic/abuse.many.{n}"), "m")
    })
    .await;
    assert_eq!(
        (result.receipted, result.error),
        (total, None),
        "publishing to topics is not refused"
    );
    watch.finish(&mut herald, 64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_transaction_is_refused_at_its_budget() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("endless transaction", &herald).await;
    let mut attacker = herald.attacker(false).await;
    attacker
        .request(Frame::new(Command::Begin).header("transaction", "t"))
        .await
        .unwrap();
    let body = "t".repeat(16 * KIB);
    let total = 6000;
    let result = flood(&mut attacker, total, 50, |_| {
        send("/topic/abuse.tx", body.clone()).header("transaction", "t")
    })
    .await;
    let text = refused(&result, total, "transaction");
    eprintln!(
        "[abuse] transaction: {} SENDs taken, then {text:?}",
        result.receipted
    );
    watch.finish(&mut herald, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_acks_gets_no_more_than_its_prefetch_window() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("never acks", &herald).await;
    let mut lazy = herald.attacker(true).await;
    lazy.request(
        Frame::new(Command::Subscribe)
            .header("id", "lazy")
            .header("destination", "/queue/abuse.unacked")
            .header("ack", "client-individual"),
    )
    .await
    .unwrap();
    // It reads everything it gets (a reader that stops is a slow consumer).
    let published = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let published = published.clone();
        async move {
            let mut delivered = 0;
            loop {
                match lazy.recv(Duration::from_millis(1000)).await {
                    Ok(Some(f)) if f.command == Command::Message => delivered += 1,
                    Ok(Some(f)) => panic!("the subscriber got {f:?}"),
                    Ok(None) => panic!("the subscriber was closed after {delivered} messages"),
                    // Nothing more comes once everything was published.
                    Err(_) if published.load(Ordering::Relaxed) => return delivered,
                    Err(_) => {}
                }
            }
        }
    });
    // Padded messages: one that is not acked must not keep its read buffer either.
    let mut publisher = herald.attacker(true).await;
    let total = 400;
    padded_flood(&mut publisher, "/queue/abuse.unacked", total, PADDED).await;
    published.store(true, Ordering::Relaxed);
    let delivered = reader.await.expect("the subscriber read");
    eprintln!("[abuse] never acks: {total} published, {delivered} delivered");
    // stomp.prefetch: 100 by default.
    assert!(
        delivered <= 100,
        "{delivered} messages wait for an ACK on one subscription"
    );
    watch.finish(&mut herald, 48).await;
}

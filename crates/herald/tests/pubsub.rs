//! Topic publish/subscribe: fan-out, MESSAGE headers, UNSUBSCRIBE, wildcards,
//! receipts, and TCP ⇄ WebSocket.

mod common;

use common::*;
use herald_stomp::{Command, Frame};

#[tokio::test]
async fn topic_delivers_to_every_subscriber() {
    let server = TestServer::start().await;
    let mut subs = Vec::new();
    for (i, t) in [Transport::Tcp, Transport::Ws, Transport::Tcp]
        .into_iter()
        .enumerate()
    {
        let mut c = server.connect(t).await;
        c.subscribe(&format!("sub-{i}"), "/topic/news").await;
        subs.push(c);
    }
    let mut publisher = server.tcp().await;
    for n in 0..3 {
        publisher.publish("/topic/news", &format!("n{n}")).await;
    }
    for (i, c) in subs.iter_mut().enumerate() {
        for n in 0..3 {
            let m = c.recv_message().await;
            assert_eq!(&m.body[..], format!("n{n}").as_bytes(), "subscriber {i}");
            assert_eq!(m.get("subscription"), Some(format!("sub-{i}").as_str()));
        }
    }
}

#[tokio::test]
async fn message_headers() {
    let server = TestServer::start().await;
    let mut sub = server.tcp().await;
    sub.subscribe("s-1", "/topic/h").await;
    let mut publisher = server.ws().await;
    publisher
        .request(
            Frame::new(Command::Send)
                .header("destination", "/topic/h")
                .header("content-type", "application/json")
                .header("x-trace", "first")
                .header("x-trace", "second")
                .header("priority", "7")
                .body(&b"{\"a\":1}"[..]),
        )
        .await;
    publisher.publish("/topic/h", "again").await;

    let m = sub.recv_message().await;
    assert_eq!(m.get("destination"), Some("/topic/h"));
    assert_eq!(m.get("subscription"), Some("s-1"));
    let id1 = m.get("message-id").expect("message-id").to_owned();
    assert!(!id1.is_empty());
    assert_eq!(m.get("content-type"), Some("application/json"));
    assert_eq!(m.get("content-length"), Some("7"));
    assert_eq!(&m.body[..], b"{\"a\":1}");
    assert_eq!(
        m.get("x-trace"),
        Some("first"),
        "first of repeated headers wins"
    );
    assert_eq!(
        m.headers.iter().filter(|(k, _)| *k == "x-trace").count(),
        1,
        "a repeated header is passed on once: {m:?}"
    );
    assert_eq!(m.get("priority"), Some("7"));
    assert_eq!(
        m.get("receipt"),
        None,
        "the sender's receipt must not leak: {m:?}"
    );
    assert_eq!(m.get("transaction"), None);
    for name in [
        "destination",
        "message-id",
        "subscription",
        "content-length",
    ] {
        assert_eq!(
            m.headers.iter().filter(|(k, _)| *k == name).count(),
            1,
            "{name} once: {m:?}"
        );
    }

    let m2 = sub.recv_message().await;
    assert_ne!(
        m2.get("message-id"),
        Some(id1.as_str()),
        "message ids are unique"
    );
}

#[tokio::test]
async fn sender_cannot_override_broker_headers() {
    let server = TestServer::start().await;
    let mut sub = server.tcp().await;
    sub.subscribe("real", "/topic/o").await;
    let mut publisher = server.tcp().await;
    publisher
        .request(
            Frame::new(Command::Send)
                .header("destination", "/topic/o")
                .header("subscription", "fake")
                .header("message-id", "fake")
                .body("x"),
        )
        .await;
    let m = sub.recv_message().await;
    assert_eq!(m.get("subscription"), Some("real"));
    assert_ne!(m.get("message-id"), Some("fake"));
    assert_eq!(
        m.headers
            .iter()
            .filter(|(k, _)| *k == "subscription")
            .count(),
        1
    );
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = TestServer::start().await;
    let mut sub = server.tcp().await;
    sub.subscribe("a", "/topic/a").await;
    sub.subscribe("b", "/topic/b").await;
    let mut publisher = server.tcp().await;
    publisher.publish("/topic/a", "a1").await;
    assert_eq!(sub.recv_body().await, "a1");

    sub.unsubscribe("a").await;
    publisher.publish("/topic/a", "a2").await;
    publisher.publish("/topic/b", "sentinel").await;
    // Deliveries to one session keep publish order, so a2 would come first.
    let m = sub.recv_message().await;
    assert_eq!(&m.body[..], b"sentinel", "got {m:?} after UNSUBSCRIBE");
    assert_eq!(m.get("subscription"), Some("b"));

    // The id may be reused after UNSUBSCRIBE.
    sub.subscribe("a", "/topic/a").await;
    publisher.publish("/topic/a", "a3").await;
    assert_eq!(sub.recv_body().await, "a3");
}

/// Publishes each destination in turn, then a sentinel on `/topic/sentinel`, and
/// returns the destinations the subscriber received before the sentinel.
async fn received_destinations(server: &TestServer, pattern: &str, sends: &[&str]) -> Vec<String> {
    let mut sub = server.tcp().await;
    sub.subscribe("w", pattern).await;
    sub.subscribe("end", "/topic/sentinel").await;
    let mut publisher = server.ws().await;
    for d in sends {
        publisher.publish(d, d).await;
    }
    publisher.publish("/topic/sentinel", "end").await;
    let mut got = Vec::new();
    loop {
        let m = sub.recv_message().await;
        if m.get("subscription") == Some("end") {
            return got;
        }
        assert_eq!(m.get("subscription"), Some("w"));
        // The MESSAGE names the actual destination, not the pattern.
        assert_eq!(m.get("destination").map(str::as_bytes), Some(&m.body[..]));
        got.push(m.get("destination").unwrap().to_owned());
    }
}

#[tokio::test]
async fn wildcard_single_segment() {
    let server = TestServer::start().await;
    let got = received_destinations(
        &server,
        "/topic/chat.*",
        &[
            "/topic/chat.room",
            "/topic/chat/lobby",
            "/topic/chat.room.1",
            "/topic/chat",
            "/topic/other.room",
        ],
    )
    .await;
    assert_eq!(got, ["/topic/chat.room", "/topic/chat/lobby"]);

    let got = received_destinations(
        &server,
        "/topic/*/price",
        &[
            "/topic/aapl/price",
            "/topic/aapl.price",
            "/topic/aapl/volume",
            "/topic/a/b/price",
        ],
    )
    .await;
    assert_eq!(got, ["/topic/aapl/price", "/topic/aapl.price"]);
}

#[tokio::test]
async fn wildcard_multi_segment() {
    let server = TestServer::start().await;
    let got = received_destinations(
        &server,
        "/topic/stocks/**",
        &[
            "/topic/stocks/a",
            "/topic/stocks/a/b.c",
            "/topic/stocks.x.y",
            "/topic/stocksx",
            "/topic/bonds/a",
        ],
    )
    .await;
    assert_eq!(
        got,
        [
            "/topic/stocks/a",
            "/topic/stocks/a/b.c",
            "/topic/stocks.x.y"
        ]
    );

    let got = received_destinations(
        &server,
        "/topic/**.price",
        &["/topic/us.aapl.price", "/topic/price", "/topic/a/b/volume"],
    )
    .await;
    assert_eq!(got, ["/topic/us.aapl.price", "/topic/price"]);
}

#[tokio::test]
async fn exact_and_wildcard_subscriptions_of_one_session_both_receive() {
    let server = TestServer::start().await;
    let mut sub = server.tcp().await;
    sub.subscribe("exact", "/topic/x.y").await;
    sub.subscribe("wild", "/topic/x.*").await;
    let mut publisher = server.tcp().await;
    publisher.publish("/topic/x.y", "m").await;
    let mut ids = vec![
        sub.recv_message()
            .await
            .get("subscription")
            .unwrap()
            .to_owned(),
        sub.recv_message()
            .await
            .get("subscription")
            .unwrap()
            .to_owned(),
    ];
    ids.sort();
    assert_eq!(ids, ["exact", "wild"]);
}

/// Sends `frame` with `receipt:rid` and checks the RECEIPT; MESSAGEs that come first
/// go to `messages`, anything else fails.
async fn receipted(
    c: &mut Client,
    t: Transport,
    frame: Frame,
    rid: &str,
    messages: &mut Vec<Frame>,
) {
    c.send_frame(&frame.header("receipt", rid)).await;
    loop {
        let f = c.recv_frame().await;
        if f.command == Command::Message {
            messages.push(f);
            continue;
        }
        assert_eq!(
            f.command,
            Command::Receipt,
            "{t:?}: answer to receipt {rid}: {f:?}"
        );
        assert_eq!(f.get("receipt-id"), Some(rid), "{t:?}");
        return;
    }
}

#[tokio::test]
async fn receipt_for_every_frame_that_asks() {
    let server = TestServer::start().await;
    for t in BOTH {
        let mut c = server.connect(t).await;
        let mut msgs = Vec::new();
        let sub = Frame::new(Command::Subscribe)
            .header("id", "q")
            .header("destination", "/queue/receipts")
            .header("ack", "client-individual");
        receipted(&mut c, t, sub, "r-subscribe", &mut msgs).await;
        receipted(
            &mut c,
            t,
            send("/queue/receipts", "one"),
            "r-send",
            &mut msgs,
        )
        .await;
        receipted(
            &mut c,
            t,
            send("/queue/receipts", "two"),
            "r-send2",
            &mut msgs,
        )
        .await;
        while msgs.len() < 2 {
            msgs.push(c.recv_message().await);
        }
        let (m1, m2) = (msgs[0].clone(), msgs[1].clone());
        let ack1 = m1
            .get("ack")
            .expect("1.2 MESSAGE in client mode has ack")
            .to_owned();
        let ack2 = m2.get("ack").expect("ack").to_owned();
        receipted(
            &mut c,
            t,
            Frame::new(Command::Ack).header("id", ack1),
            "r-ack",
            &mut msgs,
        )
        .await;
        receipted(
            &mut c,
            t,
            Frame::new(Command::Nack).header("id", ack2),
            "r-nack",
            &mut msgs,
        )
        .await;
        receipted(
            &mut c,
            t,
            Frame::new(Command::Begin).header("transaction", "t1"),
            "r-begin",
            &mut msgs,
        )
        .await;
        receipted(
            &mut c,
            t,
            Frame::new(Command::Commit).header("transaction", "t1"),
            "r-commit",
            &mut msgs,
        )
        .await;
        receipted(
            &mut c,
            t,
            Frame::new(Command::Begin).header("transaction", "t2"),
            "r-begin2",
            &mut msgs,
        )
        .await;
        receipted(
            &mut c,
            t,
            Frame::new(Command::Abort).header("transaction", "t2"),
            "r-abort",
            &mut msgs,
        )
        .await;
        receipted(
            &mut c,
            t,
            Frame::new(Command::Unsubscribe).header("id", "q"),
            "r-unsubscribe",
            &mut msgs,
        )
        .await;
        receipted(
            &mut c,
            t,
            Frame::new(Command::Disconnect),
            "r-disconnect",
            &mut msgs,
        )
        .await;
        let after = c.expect_closed().await;
        assert!(
            after.is_empty(),
            "{t:?}: frames after DISCONNECT receipt: {after:?}"
        );
    }
}

#[tokio::test]
async fn tcp_and_websocket_clients_see_each_other() {
    let server = TestServer::start().await;
    let mut tcp = server.tcp().await;
    let mut ws = server.ws().await;
    tcp.subscribe("t", "/topic/cross").await;
    ws.subscribe("w", "/topic/cross").await;

    tcp.publish("/topic/cross", "from tcp").await;
    assert_eq!(ws.recv_body().await, "from tcp");
    assert_eq!(tcp.recv_body().await, "from tcp");

    ws.publish("/topic/cross", "from ws").await;
    assert_eq!(tcp.recv_body().await, "from ws");
    assert_eq!(ws.recv_body().await, "from ws");
}

#[tokio::test]
async fn versions_mix_on_one_topic() {
    let server = TestServer::start().await;
    let mut v10 = server.connect_version(Transport::Tcp, "1.0").await;
    let mut v11 = server.connect_version(Transport::Ws, "1.1").await;
    let mut v12 = server.connect_version(Transport::Tcp, "1.2").await;
    v10.subscribe("a", "/topic/mix").await;
    v11.subscribe("b", "/topic/mix").await;
    v12.subscribe("c", "/topic/mix").await;
    v11.publish("/topic/mix", "hello").await;
    for c in [&mut v10, &mut v11, &mut v12] {
        assert_eq!(c.recv_body().await, "hello");
    }
}

#[tokio::test]
async fn stomp_1_0_subscribe_without_id_uses_destination() {
    let server = TestServer::start().await;
    let mut c = server.connect_version(Transport::Tcp, "1.0").await;
    c.request(Frame::new(Command::Subscribe).header("destination", "/topic/ten"))
        .await;
    c.publish("/topic/ten", "x").await;
    let m = c.recv_message().await;
    assert_eq!(&m.body[..], b"x");
    // UNSUBSCRIBE by destination, as 1.0 allows.
    c.request(Frame::new(Command::Unsubscribe).header("destination", "/topic/ten"))
        .await;
    c.subscribe("s", "/topic/ten2").await;
    c.publish("/topic/ten", "gone").await;
    c.publish("/topic/ten2", "sentinel").await;
    assert_eq!(c.recv_body().await, "sentinel");
}

//! Heart-beats: negotiation, server EOLs at the negotiated interval, closing a
//! silent client, keeping a client that sends EOLs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use herald_stomp::{Command, Frame};

const HB: Duration = Duration::from_millis(200);

async fn server() -> TestServer {
    TestServer::with(|c| {
        c.stomp.heartbeat_send = HB;
        c.stomp.heartbeat_receive = HB;
    })
    .await
}

async fn connect_hb(server: &TestServer, t: Transport, hb: &str) -> Client {
    let mut c = server.open(t).await;
    let answer = c
        .connect_with(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "h")
                .header("heart-beat", hb),
        )
        .await;
    assert_eq!(answer.command, Command::Connected, "{answer:?}");
    assert_eq!(
        answer.get("heart-beat"),
        Some("200,200"),
        "server states its own sx,sy"
    );
    c
}

#[tokio::test]
async fn server_sends_eols_at_the_negotiated_interval() {
    let server = server().await;
    for t in BOTH {
        // The client can send nothing (0) and wants one every 100 ms: the server
        // offers 200 ms, so 200 ms it is.
        let mut c = connect_hb(&server, t, "0,100").await;
        let start = Instant::now();
        let frames = c.wait_heartbeats(6, Duration::from_secs(4)).await;
        assert!(frames.is_empty(), "{frames:?}");
        let elapsed = start.elapsed();
        let gaps: Vec<Duration> = c.heartbeats.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = (c.heartbeats[5] - c.heartbeats[0]) / 5;
        assert!(
            mean >= Duration::from_millis(150) && mean <= Duration::from_millis(400),
            "{t:?}: mean interval {mean:?}, gaps {gaps:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(900),
            "{t:?}: 6 heart-beats in {elapsed:?} is too fast"
        );
        // The client never sent anything and was not closed (it promised nothing).
        c.publish("/topic/hb", "alive").await;
    }
}

#[tokio::test]
async fn larger_client_interval_wins() {
    let server = server().await;
    let mut c = connect_hb(&server, Transport::Tcp, "0,500").await;
    let start = Instant::now();
    c.wait_heartbeats(3, Duration::from_secs(4)).await;
    let mean = (c.heartbeats[2] - c.heartbeats[0]) / 2;
    assert!(
        mean >= Duration::from_millis(400),
        "asked for 500 ms, got every {mean:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(1200));
}

#[tokio::test]
async fn no_heart_beats_when_the_client_wants_none() {
    let server = server().await;
    for hb in [Some("0,0"), None] {
        let mut c = server.open(Transport::Tcp).await;
        let mut f = Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("host", "h");
        if let Some(hb) = hb {
            f = f.header("heart-beat", hb);
        }
        assert_eq!(c.connect_with(f).await.command, Command::Connected);
        c.expect_silence(Duration::from_millis(700)).await;
        assert!(
            c.heartbeats.is_empty(),
            "heart-beat {hb:?}: got {} EOLs",
            c.heartbeats.len()
        );
        // Not closed for silence either.
        c.publish("/topic/hb", "alive").await;
    }
}

#[tokio::test]
async fn silent_client_is_closed_with_error() {
    let server = server().await;
    for t in BOTH {
        let mut witness = server.tcp().await;
        witness.subscribe("w", "/topic/w").await;
        // The client promises to send every 100 ms (server wants 200: 200 it is),
        // then says nothing.
        let mut c = connect_hb(&server, t, "100,0").await;
        let start = Instant::now();
        let frames = c.expect_closed_within(Duration::from_secs(3)).await;
        let elapsed = start.elapsed();
        let err = frames.iter().find(|f| f.command == Command::Error);
        let err = err.unwrap_or_else(|| panic!("{t:?}: closed without ERROR: {frames:?}"));
        assert!(message_of(err).contains("heart-beat"), "{t:?}: {err:?}");
        assert!(
            elapsed >= Duration::from_millis(350),
            "{t:?}: closed after {elapsed:?}, before two intervals of 200 ms passed"
        );
        witness.publish("/topic/w", "still here").await;
        assert_eq!(witness.recv_body().await, "still here");
    }
}

#[tokio::test]
async fn client_sending_eols_stays_connected() {
    let server = server().await;
    for t in BOTH {
        let mut c = connect_hb(&server, t, "100,0").await;
        c.subscribe("s", "/topic/keep").await;
        let start = Instant::now();
        // Three times the server's tolerance of 400 ms.
        while start.elapsed() < Duration::from_millis(1200) {
            c.send_raw(b"\n").await;
            if let Some(e) = c.next_event(Duration::from_millis(100)).await {
                panic!("{t:?}: {e:?} while sending heart-beats");
            }
        }
        c.publish("/topic/keep", "still here").await;
        assert_eq!(c.recv_body().await, "still here");
    }
}

#[tokio::test]
async fn frames_count_as_heart_beats() {
    let server = server().await;
    let mut c = connect_hb(&server, Transport::Tcp, "100,0").await;
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(1000) {
        n += 1;
        c.publish("/topic/nobody", &format!("{n}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.publish("/topic/nobody", "last").await;
}

#[tokio::test]
async fn invalid_heart_beat_header_is_an_error() {
    let server = server().await;
    let mut c = server.open(Transport::Tcp).await;
    let answer = c
        .connect_with(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "h")
                .header("heart-beat", "fast"),
        )
        .await;
    assert_eq!(answer.command, Command::Error, "{answer:?}");
    assert!(message_of(&answer).contains("heart-beat"), "{answer:?}");
    c.expect_closed().await;
}

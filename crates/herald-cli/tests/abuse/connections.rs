//! Connections that must not stay or pile up: idle HTTP/2 prior-knowledge (h2c)
//! connections (HTTP/2 is off by default; on, an idle one is closed), plain HTTP
//! connections count against the per-IP cap, and a total cap holds.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::harness::{Herald, Watch, serial};
use crate::http;
use crate::stomp::connect_from;

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// How long the idle connections get to be closed.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

/// Opens `n` connections from the attacker's address, each sending `first` (if any).
async fn open_many(herald: &Herald, n: usize, first: &'static [u8]) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    for chunk in 0..n.div_ceil(100) {
        for _ in 0..100.min(n - chunk * 100) {
            let to = herald.http;
            set.spawn(async move {
                let mut s = connect_from(to, None).await.expect("connects");
                if !first.is_empty() {
                    // The server may have closed it already: that is fine.
                    let _ = s.write_all(first).await;
                }
                s
            });
        }
        while let Some(s) = set.join_next().await {
            streams.push(s.expect("opened"));
        }
    }
    streams
}

/// How many of `streams` the server had not closed after `limit` (what they
/// received is read and dropped).
async fn still_open(streams: Vec<TcpStream>, limit: Duration) -> usize {
    let mut set = JoinSet::new();
    for mut s in streams {
        set.spawn(async move {
            let mut tmp = [0u8; 4096];
            let closed = async {
                loop {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            };
            tokio::time::timeout(limit, closed).await.is_err()
        });
    }
    let mut open = 0;
    while let Some(r) = set.join_next().await {
        open += usize::from(r.expect("read"));
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_refused_by_default() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("h2c, default", &herald).await;
    let idle = open_many(&herald, 2000, H2_START).await;
    let open = still_open(idle, CLOSED_WITHIN).await;
    assert_eq!(
        open, 0,
        "{open} of 2000 h2c connections still open after {CLOSED_WITHIN:?}"
    );
    watch.finish(&mut herald, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_when_http2_is_on() {
    let _serial = serial().await;
    let mut herald = Herald::with(&[
        ("server.http2", "true"),
        ("limits.http2_idle_timeout", "1s"),
        ("limits.http2_keepalive", "1s"),
    ])
    .await;
    let watch = Watch::start("h2c, http2 on", &herald).await;
    let idle = open_many(&herald, 2000, H2_START).await;
    let open = still_open(idle, CLOSED_WITHIN).await;
    assert_eq!(
        open, 0,
        "{open} of 2000 h2c connections still open after {CLOSED_WITHIN:?}"
    );
    watch.finish(&mut herald, 64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_connections_count_against_the_per_ip_cap() {
    let _serial = serial().await;
    let mut herald = Herald::with(&[("limits.max_connections_per_ip", "20")]).await;
    let watch = Watch::start("per-IP cap", &herald).await;
    // Connections that never send a request hold their places.
    let held = open_many(&herald, 100, b"").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = http::get(herald.http, "/health", Duration::from_secs(5))
        .await
        .expect("an answer");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("max_connections_per_ip"), "{body}");
    drop(held);
    watch.finish(&mut herald, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_connection_cap_holds() {
    let _serial = serial().await;
    let mut herald = Herald::with(&[("limits.max_connections", "100")]).await;
    let watch = Watch::start("total cap", &herald).await;
    let held = open_many(&herald, 150, b"").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = http::get(herald.http, "/health", Duration::from_secs(5))
        .await
        .expect("an answer");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max_connections"), "{body}");
    drop(held);
    watch.finish(&mut herald, 32).await;
}

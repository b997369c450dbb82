//! Shared fixture for the integration tests, one file per job:
//!
//! - [`server`]: a real Herald server started in-process on ephemeral ports;
//! - [`stomp`]: the tests' STOMP client over TCP or WebSocket (on herald-stomp's client);
//! - [`http`]: HTTP requests to it (reqwest; a raw socket only for requests a
//!   well-behaved client cannot send);
//! - [`sockjs`]: a SockJS client, every transport behind one [`Receiver`];
//! - [`jwt`]: secrets, issuers and signed tokens for the auth tests;
//! - `redis.rs` (included on its own by the cluster tests): a private redis-server.
//!
//! Every wait is bounded ([`WAIT`] unless a test says otherwise), so a server that
//! stops answering fails the test instead of hanging the suite.

// Shared between the test files with `pub`: there is no API here to keep small.
#![allow(unreachable_pub)]
#![allow(dead_code, unused_imports)]

mod http;
mod jwt;
mod plain;
mod server;
mod sockjs;
mod stomp;

use std::time::{Duration, Instant};

pub use jwt::*;
pub use plain::*;
pub use server::*;
pub use sockjs::*;
pub use stomp::*;

/// Longest any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Longest an HTTP request may take: some do real work (a notification to 1,200 users
/// is a bulk insert plus 1,200 publishes in a debug build, on a busy machine).
pub const HTTP_WAIT: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds; panics after [`WAIT`] naming `what`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

//! Publishing from server code, like Spring's `SimpMessagingTemplate`:
//! a background task sends the time to `/topic/clock` every second and a counter to
//! one user's `/user/queue/ticks` (`convertAndSend` / `convertAndSendToUser`).
//!
//! Run: `cargo run -p herald-examples --example publish_from_server`, then subscribe to
//! `/topic/clock`, or connect with `login:alice` and subscribe to `/user/queue/ticks`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::{Config, Server};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Server::bind(Config::load(None)?).await?;
    let messaging = server.node().messaging.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for n in 0u64.. {
            tick.tick().await;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let _ = messaging.convert_and_send("/topic/clock", &json!({ "unix": now }));
            let _ = messaging.convert_and_send_to_user("alice", "/queue/ticks", &json!({ "n": n }));
        }
    });
    println!(
        "publish_from_server example on ws://{}/ws",
        server.http_addr()
    );
    server.run().await
}

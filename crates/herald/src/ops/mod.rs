//! Operating Herald: Prometheus metrics ([`metrics`]), the live session registry
//! ([`sessions`]) and the periodic stats line (like Spring's
//! `WebSocketMessageBrokerStats`). The HTTP side — `/metrics`, health, the admin API —
//! is with the other routes (`http/admin.rs`).

pub mod metrics;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Logs one line of statistics every `interval` until shutdown; also keeps the
/// metrics recorder's histograms drained.
pub async fn stats_loop(node: Arc<Node>, interval: Duration, shutdown: CancellationToken) {
    let mut upkeep = tokio::time::interval(Duration::from_secs(5));
    let mut stats = tokio::time::interval(interval);
    stats.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = upkeep.tick() => node.metrics.run_upkeep(),
            _ = stats.tick() => {
                let by_transport: Vec<String> = node
                    .sessions
                    .by_transport()
                    .into_iter()
                    .map(|(t, n)| format!("{t}={n}"))
                    .collect();
                tracing::info!(
                    sessions = node.sessions.len(),
                    transports = %by_transport.join(","),
                    subscriptions = node.broker.subscription_count(),
                    destinations = node.broker.destination_count(),
                    uptime_s = node.started.elapsed().as_secs(),
                    "stats"
                );
            }
        }
    }
}

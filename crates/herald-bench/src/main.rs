//! herald-bench: a load generator speaking STOMP 1.2 over WebSocket to any
//! STOMP-over-WebSocket server on this machine (Herald, RabbitMQ Web-STOMP, ...).
//!
//! Scenarios, one module each: [`fanout`] (one topic, many subscribers),
//! [`pairs`] (many publisher/subscriber pairs), [`connect`] (connection storm),
//! [`idle`] (many idle sessions, memory per connection), [`churn`] (a soak: sessions
//! opened and ended in a loop while the server's memory, descriptors and tasks are
//! watched). [`client`] is the STOMP-over-WebSocket connection, [`tcp`] the same over
//! plain TCP, [`stats`] the histograms and the report, [`proc`] the /proc sampling of
//! the server (and of the bench itself), [`scrape`] the reading of its /metrics.

mod churn;
mod client;
mod connect;
mod fanout;
mod floor;
mod http;
mod idle;
mod notify;
mod pairs;
mod proc;
mod pubsub;
mod scrape;
mod stats;
mod tcp;

use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::client::Target;

#[derive(Parser, Debug)]
#[command(name = "herald-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Runtime worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// N subscribers on one topic, one publisher: delivered msg/s and latency.
    Fanout(fanout::FanoutArgs),
    /// N publishers, each to its own topic with one subscriber.
    Pairs(pairs::PairsArgs),
    /// Connection storm: CONNECT/CONNECTED per second and handshake latency.
    Connect(connect::ConnectArgs),
    /// N idle sessions with one subscription each: server memory per connection.
    Idle(idle::IdleArgs),
    /// A soak: clients connect, subscribe, publish, ACK and disconnect (or drop the
    /// connection) in a loop; the server's RSS, descriptors and tasks over time.
    Churn(churn::ChurnArgs),
    /// Notifications through the REST API (POST /api/notifications) to N connected
    /// users: persisted+delivered notifications/s, POST-to-arrival latency.
    Notify(notify::NotifyArgs),
    /// The floor: a minimal WebSocket broadcast server (no STOMP) to measure
    /// `fanout --raw` against.
    FloorServer(floor::FloorArgs),
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// WebSocket URL of the server (loopback only), e.g. ws://127.0.0.1:8080/ws.
    #[arg(long)]
    pub url: String,
    /// STOMP login header (RabbitMQ: guest).
    #[arg(long)]
    pub login: Option<String>,
    /// STOMP passcode header (RabbitMQ: guest).
    #[arg(long)]
    pub passcode: Option<String>,
    /// STOMP host header on CONNECT (RabbitMQ reads it as the vhost).
    #[arg(long, default_value = "/")]
    pub vhost: String,
    /// Server process to sample: CPU% from /proc/PID/stat, VmRSS from /proc/PID/status.
    /// Repeatable (the nodes of a cluster): reported summed, and per PID.
    #[arg(long)]
    pub pid: Vec<u32>,
    /// Print the result as one JSON line instead of a human summary.
    #[arg(long)]
    pub json: bool,
    /// Spread client sockets over local addresses 127.0.0.1..=127.0.0.N.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_addrs: u8,
    /// Speak raw WebSocket to `herald-bench floor-server` instead of STOMP.
    #[arg(long)]
    pub raw: bool,
    /// Exit with status 1 if the run had errors or delivered nothing (smoke tests).
    #[arg(long)]
    pub check: bool,
}

impl Common {
    /// The server `--url` names, with the login and client options given.
    pub fn target(&self) -> Result<Arc<Target>> {
        self.target_at(&self.url)
    }

    /// Another server (a node of the same cluster) with the same login and options.
    pub fn target_at(&self, url: &str) -> Result<Arc<Target>> {
        let mut t = Target::new(
            url,
            self.login.clone(),
            self.passcode.clone(),
            self.vhost.clone(),
            self.source_addrs,
        )?;
        t.raw = self.raw;
        Ok(Arc::new(t))
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let nofile = proc::raise_nofile(1 << 20);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = cli.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build()?;
    stats::now_ns(); // start the shared clock
    let failures = rt.block_on(async move {
        let (report, common) = match cli.scenario {
            Scenario::Fanout(a) => (fanout::run(&a).await?, a.common),
            Scenario::Pairs(a) => (pairs::run(&a).await?, a.common),
            Scenario::Connect(a) => (connect::run(&a).await?, a.common),
            Scenario::Idle(a) => (idle::run(&a, nofile).await?, a.common),
            Scenario::Churn(a) => (churn::run(&a).await?, a.common),
            Scenario::Notify(a) => (notify::run(&a).await?, a.common),
            Scenario::FloorServer(a) => {
                floor::run(&a).await?;
                return anyhow::Ok(Vec::new());
            }
        };
        report.print(common.json);
        anyhow::Ok(if common.check {
            report.failures()
        } else {
            Vec::new()
        })
    })?;
    // Do not wait for lingering connection tasks.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    if !failures.is_empty() {
        eprintln!("herald-bench --check failed: {}", failures.join("; "));
        std::process::exit(1);
    }
    Ok(())
}

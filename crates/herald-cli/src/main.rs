//! The `herald` command: `herald serve` runs the server; `herald config check FILE`
//! validates a configuration file.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::{Config, Server};

/// mimalloc instead of the system allocator: publishers allocate what connection
/// tasks on other threads free, glibc's slow path (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its index in `mi_option_t`, mimalloc 3.x;
/// the test below checks it still names the purge delay).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the system at once rather than after a delay: memory a
/// connection's handshake used is otherwise kept by a thread that then sits idle,
/// which cost ~4 KiB of RSS per idle connection (docs/BENCHMARKS.md). mimalloc's own
/// `MIMALLOC_PURGE_DELAY` (milliseconds) still wins when it is set.
#[allow(unsafe_code)]
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets a plain integer option; mimalloc allows this at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// "0.1.0 (abc1234)": the version and the git revision it was built from
/// (`build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("HERALD_GIT_REV"), ")");

#[derive(Parser)]
#[command(name = "herald", version = VERSION, about = "Real-time STOMP messaging server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (needs no configuration at all).
    Serve(ServeArgs),
    /// Mint a development token with a key from the configuration.
    Token(TokenArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see herald.example.toml).
    #[arg(long, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP address: WebSocket at /ws, /health [default: 0.0.0.0:8080]
    #[arg(long)]
    http: Option<SocketAddr>,
    /// STOMP-over-TCP address [default: 0.0.0.0:61613]
    #[arg(long)]
    stomp: Option<SocketAddr>,
    /// Turn the STOMP-over-TCP listener off.
    #[arg(long, conflicts_with = "stomp")]
    no_stomp: bool,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Notification database: sqlite://herald.db (default), sqlite::memory:,
    /// mysql://user:pass@host/db or postgres://user@host/db.
    #[arg(long, env = "HERALD_DATABASE_URL")]
    database_url: Option<String>,
    /// Join a cluster: every node given the same Redis (redis://host:6379), Redis
    /// Cluster (redis+cluster://h1:7000,h2:7001) or Sentinel-watched master
    /// (redis+sentinel://s1:26379,s2:26379/mymaster) serves the same destinations
    /// (config: cluster.redis_url).
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// TOML configuration file with [[auth.issuers]] (see herald.example.toml).
    #[arg(long, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// The user id (`sub` claim).
    #[arg(long)]
    sub: String,
    /// A role (repeat for several).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: std::time::Duration,
    /// Which issuer's key signs (its `iss`); default: the first that can sign.
    #[arg(long)]
    issuer: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and print the settings it results in.
    Check { file: PathBuf },
}

fn main() -> anyhow::Result<()> {
    purge_freed_memory_at_once();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Token(args) => {
            let config = Config::load(args.config.as_deref())?;
            let token = herald::auth::jwt::mint(
                &config.auth,
                args.issuer.as_deref(),
                &args.sub,
                args.name.as_deref(),
                &args.roles,
                args.ttl,
            )
            .map_err(|e| anyhow::anyhow!(e))?;
            println!("{token}");
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let config = Config::load(Some(&file))?;
            println!("{} is valid", file.display());
            println!("{config:#?}");
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_json);
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(http) = args.http {
        config.server.http = http;
    }
    if let Some(stomp) = args.stomp {
        config.server.stomp = Some(stomp);
    }
    if args.no_stomp {
        config.server.stomp = None;
    }
    if let Some(url) = args.database_url {
        config.database.url = url;
    }
    if let Some(url) = args.redis_url {
        config.cluster.redis_url = url;
        config.validate()?;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        let stomp = server
            .stomp_addr()
            .map_or_else(|| "off".to_owned(), |a| a.to_string());
        // One stable line on stdout that scripts and tests wait for.
        println!("herald listening http={} stomp={stomp}", server.http_addr());
        tracing::info!(
            node = %server.node().id,
            "serving WebSocket STOMP on ws://{}/ws, TCP STOMP on {stomp}",
            server.http_addr()
        );
        let token = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        server.run().await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    // The redis crate's cluster client warns at every reconnection attempt (dozens a
    // second while a cluster is unreachable); Herald's own outage log says it once.
    let filter = EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,redis::cluster_handling=error"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use libmimalloc_sys::mi_option_get;

    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc 3.x's default purge delay is 1000 ms: another index (a reordered
        // `mi_option_t` in a later mimalloc) would read some other option.
        // SAFETY: reads a plain integer option.
        assert_eq!(unsafe { mi_option_get(super::MI_OPTION_PURGE_DELAY) }, 1000);
        super::purge_freed_memory_at_once();
        assert_eq!(unsafe { mi_option_get(super::MI_OPTION_PURGE_DELAY) }, 0);
    }
}

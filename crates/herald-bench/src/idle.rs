//! `idle`: N STOMP sessions (heart-beat 0,0) that each SUBSCRIBE once and then
//! stay idle. With `--pid`, the server's VmRSS is read before the first
//! connection and after all are open (and a settle time), giving bytes per
//! connection (with several `--pid`, their sum).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::StreamExt;
use herald_stomp::Command;
use serde_json::json;
use tokio::sync::watch;

use crate::Common;
use crate::client::error_text;
use crate::proc::{Servers, rss_sum};
use crate::stats::{Errors, Report, bytes};

#[derive(Args, Debug, Clone)]
pub(crate) struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Idle sessions to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Sessions being opened at the same time.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to wait after the last session is open before reading RSS.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// Seconds to keep the sessions open after the measurement.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
    /// Destination prefix: session i subscribes to PREFIX-i (or PREFIX with
    /// --shared-destination).
    #[arg(long, default_value = "/topic/idle")]
    pub destination: String,
    /// All sessions subscribe to the same destination.
    #[arg(long)]
    pub shared_destination: bool,
}

pub(crate) async fn run(a: &IdleArgs, nofile: u64) -> Result<Report> {
    let target = a.common.target()?;
    if (a.connections as u64) + 64 > nofile {
        bail!(
            "RLIMIT_NOFILE is {nofile}, too low for {} connections",
            a.connections
        );
    }
    let pids = &a.common.pid;
    let rss_before = rss_sum(pids)?;
    let errors = Arc::new(Errors::default());
    let stopping = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);

    let t0 = Instant::now();
    let mut opened = futures_util::stream::iter((0..a.connections).map(|i| {
        let target = target.clone();
        let dest = if a.shared_destination {
            a.destination.clone()
        } else {
            format!("{}-{i}", a.destination)
        };
        async move {
            let mut s = target.connect(i, (0, 0)).await?;
            s.subscribe("0", &dest).await?;
            anyhow::Ok(s)
        }
    }))
    .buffer_unordered(a.concurrency.max(1));
    let mut tasks = Vec::with_capacity(a.connections);
    let mut last_report = Instant::now();
    while let Some(r) = opened.next().await {
        match r {
            Ok(mut s) => {
                let (errors, stopping, mut stop) =
                    (errors.clone(), stopping.clone(), stop_rx.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let r = tokio::select! {
                            _ = stop.changed() => break,
                            r = s.recv() => r,
                        };
                        match r {
                            Ok(Some(f)) if f.command == Command::Error => {
                                errors.error_frame(error_text(&f))
                            }
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => {
                                if !stopping.load(Relaxed) {
                                    errors.disconnect("idle session closed by server".into());
                                }
                                return;
                            }
                        }
                    }
                    s.close().await;
                }));
            }
            Err(e) => errors.connect_failure(format!("{e:#}")),
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!("  {} sessions open, {} errors", tasks.len(), errors.total());
            last_report = Instant::now();
        }
    }
    drop(opened);
    let open_secs = t0.elapsed().as_secs_f64();
    let open = tasks.len();
    eprintln!("herald-bench idle: {open} sessions open in {open_secs:.2}s; settling");

    let server = Servers::start(pids)?;
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let rss_after = rss_sum(pids)?;
    let alive = tasks.iter().filter(|t| !t.is_finished()).count();
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let server_usage = server.finish()?;

    stopping.store(true, Relaxed);
    let _ = stop_tx.send(true);
    let closing = Instant::now();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let close_secs = closing.elapsed().as_secs_f64();

    let mut r = Report::new("idle");
    if alive < a.connections {
        r.fail(format!(
            "{alive} of {} sessions alive after settling",
            a.connections
        ));
    }
    r.field("url", json!(target.url), target.url.clone());
    r.field(
        "setup",
        json!({"connections": a.connections, "concurrency": a.concurrency,
               "shared_destination": a.shared_destination}),
        format!(
            "{} sessions, each with one subscription ({})",
            a.connections,
            if a.shared_destination {
                "one shared destination"
            } else {
                "own destination each"
            }
        ),
    );
    r.count("opened", open as u64);
    r.count("alive_after_settle", alive as u64);
    r.num("open_secs", open_secs, 2, " s");
    r.num("open_per_sec", open as f64 / open_secs, 0, " sessions/s");
    r.num("close_secs", close_secs, 2, " s");
    if let (Some(b), Some(a2)) = (rss_before, rss_after) {
        let per = (a2 as f64 - b as f64) / (open.max(1) as f64);
        r.field(
            "server_rss",
            json!({"before_bytes": b, "after_bytes": a2}),
            format!("before {}, after {}", bytes(b as f64), bytes(a2 as f64)),
        );
        r.field(
            "server_rss_per_connection_bytes",
            json!(per),
            format!("{per:.0} B ({})", bytes(per)),
        );
    }
    if !pids.is_empty() {
        let cpu = server_usage.cpu_pct();
        r.num("server_idle_cpu_pct", cpu, 2, " % of one core (while idle)");
    }
    errors.report(&mut r);
    Ok(r)
}

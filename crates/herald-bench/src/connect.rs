//! `connect`: a connection storm. C workers each open connections one after
//! another (TCP, WebSocket upgrade, CONNECT/CONNECTED), then close them, until N
//! have been attempted or the duration runs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::Common;
use crate::proc::{Machine, Servers, Watch, Who, report_machine};
use crate::stats::{Errors, Latency, Report};

#[derive(Args, Debug, Clone)]
pub(crate) struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open in total.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connections being opened at the same time.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Stop opening new connections after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
}

pub(crate) async fn run(a: &ConnectArgs) -> Result<Report> {
    let target = a.common.target()?;
    let server = Servers::start(&a.common.pid)?;
    let me = Watch::start(Who::Myself)?;
    let machine = Machine::start()?;
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    let upgrade = Arc::new(Latency::default());
    let total = Arc::new(Latency::default());
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(a.duration);
    let mut workers = Vec::new();
    for w in 0..a.concurrency.max(1) {
        let (target, next, ok, errors, upgrade, total) = (
            target.clone(),
            next.clone(),
            ok.clone(),
            errors.clone(),
            upgrade.clone(),
            total.clone(),
        );
        let n = a.connections;
        workers.push(tokio::spawn(async move {
            let mut closers = Vec::new();
            loop {
                let idx = next.fetch_add(1, Relaxed);
                if idx >= n || Instant::now() >= deadline {
                    break;
                }
                match target.connect_timed(idx, (0, 0)).await {
                    Ok((session, t)) => {
                        ok.fetch_add(1, Relaxed);
                        upgrade.record_ns(w, t.upgrade.as_nanos() as u64);
                        total.record_ns(w, t.total.as_nanos() as u64);
                        closers.push(tokio::spawn(session.close()));
                    }
                    Err(e) => errors.connect_failure(format!("{e:#}")),
                }
                if closers.len() >= 64 {
                    for c in closers.drain(..) {
                        let _ = c.await;
                    }
                }
            }
            for c in closers {
                let _ = c.await;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = t0.elapsed();
    let ok = ok.load(Relaxed);

    let mut r = Report::new("connect");
    if ok == 0 {
        r.fail("no connection opened");
    }
    r.field("url", json!(target.url), target.url.clone());
    r.field(
        "setup",
        json!({"connections": a.connections, "concurrency": a.concurrency}),
        format!("{} connections, {} at a time", a.connections, a.concurrency),
    );
    r.num(
        "connects_per_sec",
        ok as f64 / elapsed.as_secs_f64(),
        0,
        " CONNECTED/s",
    );
    r.count("connected", ok);
    r.num("elapsed_secs", elapsed.as_secs_f64(), 2, " s");
    r.latency("handshake_latency", &total.merged());
    r.latency("upgrade_latency", &upgrade.merged());
    errors.report(&mut r);
    let machine_pct = machine.busy_pct()?;
    let server = server.finish()?;
    server.report(&mut r);
    let u = me.finish()?;
    u.report(&mut r, "bench");
    report_machine(&mut r, machine_pct, server.cpu_pct() + u.cpu_pct);
    Ok(r)
}

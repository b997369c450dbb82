//! `notify`: notifications through Herald's REST API to N connected users.
//!
//! N STOMP sessions connect as users `PREFIX0..PREFIX{N-1}` (the CONNECT `login`
//! names the user in Herald's anonymous mode) and SUBSCRIBE to
//! `/user/queue/notifications` (with a receipt). Then `--http-connections` keep-alive
//! HTTP connections POST `/api/notifications` `{"user": u, "type", "title",
//! "message", "payload": {"benchTs": ns}}` (or `{"users": [..]}` with
//! `--per-request K`), round-robin over the users, at `--rate` requests/s or as fast
//! as the server answers (`--max`). A 201 means the notifications were persisted; the
//! live copy arrives on the user's session with the timestamp inside its JSON body.
//!
//! Reported: requests/s, notifications persisted/s (201s × recipients), notifications
//! delivered/s (arrivals), latency from just before the POST is written to the
//! arrival at the client, and the POST's own response time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::StreamExt;
use herald_stomp::Command;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Common;
use crate::client::{Event, error_text};
use crate::http::HttpConn;
use crate::proc::{Machine, Servers, Watch, Who, report_machine};
use crate::stats::{Errors, Latency, Report, now_ns};

#[derive(Args, Debug, Clone)]
pub(crate) struct NotifyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connected users (one STOMP session each).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// User names are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "bench-user-")]
    pub user_prefix: String,
    /// What each user subscribes to.
    #[arg(long, default_value = "/user/queue/notifications")]
    pub destination: String,
    /// POST requests per second in total.
    #[arg(long, conflicts_with = "max", required_unless_present = "max")]
    pub rate: Option<f64>,
    /// POST as fast as the server answers (bounded by --http-connections and --window).
    #[arg(long)]
    pub max: bool,
    /// Recipients per request: 1 sends `{"user": ..}`, more send `{"users": [..]}`.
    #[arg(long, default_value_t = 1)]
    pub per_request: usize,
    /// JSON key naming one recipient.
    #[arg(long, default_value = "user")]
    pub user_key: String,
    /// JSON key naming several recipients.
    #[arg(long, default_value = "users")]
    pub users_key: String,
    /// Concurrent keep-alive HTTP connections (requests in flight at most).
    #[arg(long, default_value_t = 8)]
    pub http_connections: usize,
    /// Path of the notifications API on the same host and port as --url.
    #[arg(long, default_value = "/api/notifications")]
    pub api_path: String,
    /// `X-API-Key` header for the REST API.
    #[arg(long)]
    pub api_key: Option<String>,
    /// `Authorization: Bearer` token for the REST API.
    #[arg(long)]
    pub bearer: Option<String>,
    /// How long to post, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// After posting stops, how long to wait for the rest to arrive.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Most notifications persisted but not yet received before posting pauses.
    #[arg(long, default_value_t = 2000)]
    pub window: u64,
    /// Sessions opened at once while setting up.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
}

#[derive(Default)]
struct Shared {
    errors: Errors,
    /// POST-to-arrival latency.
    latency: Latency,
    /// POST response time.
    post_latency: Latency,
    requests_ok: AtomicU64,
    persisted: AtomicU64,
    /// What the server said the live copies reached (`delivered` in its answer).
    server_delivered: AtomicU64,
    delivered: AtomicU64,
    last_recv_ns: AtomicU64,
    stopping: AtomicBool,
    window_waits: AtomicU64,
    next_ticket: AtomicU64,
}

pub(crate) async fn run(a: &NotifyArgs) -> Result<Report> {
    if a.common.raw {
        bail!("notify needs Herald's REST API; --raw (floor server) does not apply");
    }
    if a.users == 0 || a.per_request == 0 || a.per_request > a.users {
        bail!("need 1 <= --per-request <= --users");
    }
    let target = a.common.target()?;
    let addr: SocketAddr = target.addr();
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    // 1. Users: connect as PREFIXi, SUBSCRIBE with a receipt, then read.
    let setup_t0 = Instant::now();
    let mut opened = futures_util::stream::iter((0..a.users).map(|i| {
        let target = target.clone();
        let (name, dest) = (format!("{}{i}", a.user_prefix), a.destination.clone());
        async move {
            let mut s = target.connect_as(i, (0, 0), &name).await?;
            s.subscribe("0", &dest).await?;
            anyhow::Ok(s)
        }
    }))
    .buffer_unordered(a.connect_concurrency.max(1));
    let mut tasks = Vec::with_capacity(a.users);
    let mut idx = 0usize;
    while let Some(r) = opened.next().await {
        match r {
            Ok(mut s) => {
                let (shared, mut stop) = (shared.clone(), stop_rx.clone());
                let who = idx;
                idx += 1;
                tasks.push(tokio::spawn(async move {
                    let mut last = 0u64;
                    loop {
                        let r = tokio::select! {
                            _ = stop.changed() => break,
                            r = s.recv_fast() => r,
                        };
                        match r {
                            Ok(Some(Event::Message { ts })) => {
                                let now = now_ns();
                                if let Some(ts) = ts {
                                    shared.latency.record_ns(who, now.saturating_sub(ts));
                                }
                                last = now;
                                shared.delivered.fetch_add(1, Relaxed);
                            }
                            Ok(Some(Event::Frame(f))) if f.command == Command::Error => {
                                shared.errors.error_frame(error_text(&f))
                            }
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => {
                                if !shared.stopping.load(Relaxed) {
                                    shared
                                        .errors
                                        .disconnect("user session closed by server".into());
                                }
                                break;
                            }
                        }
                    }
                    shared.last_recv_ns.fetch_max(last, Relaxed);
                    s.close().await;
                }));
            }
            Err(e) => shared.errors.connect_failure(format!("{e:#}")),
        }
    }
    drop(opened);
    let setup = setup_t0.elapsed();
    eprintln!(
        "herald-bench notify: {}/{} users subscribed in {:.2}s",
        tasks.len(),
        a.users,
        setup.as_secs_f64()
    );
    if tasks.len() < a.users {
        bail!(
            "only {} of {} users could connect: {}",
            tasks.len(),
            a.users,
            shared.errors.total()
        );
    }

    // 2. Posters.
    let server = Servers::start(&a.common.pid)?;
    let me = Watch::start(Who::Myself)?;
    let machine = Machine::start()?;
    let t0 = Instant::now();
    let t0_ns = now_ns();
    let deadline = t0 + Duration::from_secs_f64(a.duration);
    let mut headers = Vec::new();
    if let Some(k) = &a.api_key {
        headers.push(("x-api-key".to_owned(), k.clone()));
    }
    if let Some(t) = &a.bearer {
        headers.push(("authorization".to_owned(), format!("Bearer {t}")));
    }
    let headers = Arc::new(headers);
    let mut posters = Vec::new();
    for w in 0..a.http_connections.max(1) {
        let (shared, a, headers) = (shared.clone(), a.clone(), headers.clone());
        let host = addr.to_string();
        posters.push(tokio::spawn(async move {
            let mut conn = HttpConn::new(addr, host);
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                // Window: not too many persisted but not yet received.
                let outstanding = shared
                    .persisted
                    .load(Relaxed)
                    .saturating_sub(shared.delivered.load(Relaxed));
                if outstanding >= a.window {
                    shared.window_waits.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let ticket = shared.next_ticket.fetch_add(1, Relaxed);
                if let (Some(rate), false) = (a.rate, a.max) {
                    let at = t0 + Duration::from_secs_f64(ticket as f64 / rate);
                    if at >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                }
                let first = (ticket as usize * a.per_request) % a.users;
                let names: Vec<String> = (0..a.per_request)
                    .map(|k| format!("{}{}", a.user_prefix, (first + k) % a.users))
                    .collect();
                let ts = now_ns();
                let mut body = json!({
                    "type": "bench",
                    "title": "herald-bench",
                    "message": format!("notification {ticket}"),
                    "payload": {"benchTs": ts},
                });
                if a.per_request == 1 {
                    body[&a.user_key] = json!(names[0]);
                } else {
                    body[&a.users_key] = json!(names);
                }
                let bytes = serde_json::to_vec(&body).expect("JSON");
                let sent = Instant::now();
                match conn.post_json(&a.api_path, &headers, &bytes).await {
                    Ok(r) if (200..300).contains(&r.status) => {
                        shared
                            .post_latency
                            .record_ns(w, sent.elapsed().as_nanos() as u64);
                        shared.requests_ok.fetch_add(1, Relaxed);
                        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                        // Herald answers many recipients with a summary: `count`.
                        let n = v["count"].as_u64().map(|c| c as usize).unwrap_or_else(|| {
                            v["notifications"]
                                .as_array()
                                .map_or(a.per_request, |n| n.len())
                        });
                        shared.persisted.fetch_add(n as u64, Relaxed);
                        if let Some(d) = v["delivered"].as_u64() {
                            shared.server_delivered.fetch_add(d, Relaxed);
                        }
                    }
                    Ok(r) => {
                        let text = String::from_utf8_lossy(&r.body);
                        shared.errors.http_error(format!(
                            "{} {}",
                            r.status,
                            text.chars().take(200).collect::<String>()
                        ));
                        if r.status == 404 {
                            break; // the API is not there: no point in hammering it
                        }
                    }
                    Err(e) => {
                        shared.errors.http_error(format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let d = shared.delivered.load(Relaxed);
                eprintln!(
                    "  t={:>5.1}s requests {:>8} persisted {:>8} delivered {:>8}/s errors {}",
                    t0.elapsed().as_secs_f64(),
                    shared.requests_ok.load(Relaxed),
                    shared.persisted.load(Relaxed),
                    d - last,
                    shared.errors.total()
                );
                last = d;
            }
        })
    };
    for p in posters {
        let _ = p.await;
    }
    let post_time = t0.elapsed();
    let server_usage = server.usage()?;
    let my_usage = me.usage()?;
    let machine_pct = machine.busy_pct()?;

    // 3. Drain.
    let drain_t0 = Instant::now();
    let drain_deadline = drain_t0 + Duration::from_secs_f64(a.drain);
    while shared.delivered.load(Relaxed) < shared.persisted.load(Relaxed)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = drain_t0.elapsed();
    progress.abort();
    shared.stopping.store(true, Relaxed);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let server_final = server.finish()?;
    let _ = me.finish();

    // 4. Report.
    let requests = shared.requests_ok.load(Relaxed);
    let persisted = shared.persisted.load(Relaxed);
    let delivered = shared.delivered.load(Relaxed);
    let missing = persisted.saturating_sub(delivered);
    let last_recv = shared.last_recv_ns.load(Relaxed);
    let deliver_secs = if last_recv > t0_ns {
        (last_recv - t0_ns) as f64 / 1e9
    } else {
        post_time.as_secs_f64()
    };
    let mut r = Report::new("notify");
    if delivered == 0 {
        r.fail("no notification delivered");
    }
    if missing > 0 {
        r.fail(format!(
            "{missing} notifications persisted but not delivered"
        ));
    }
    r.field("url", json!(target.url), target.url.clone());
    r.field(
        "setup",
        json!({"users": a.users, "per_request": a.per_request, "rate": a.rate, "max": a.max,
               "http_connections": a.http_connections, "duration_s": a.duration,
               "subscribe_secs": setup.as_secs_f64()}),
        format!(
            "{} users on {}, {} recipient(s) per POST, {}, {} HTTP connections; subscribed in {:.2} s",
            a.users,
            a.destination,
            a.per_request,
            match a.rate {
                Some(r) => format!("{r} POST/s"),
                None => "max rate".into(),
            },
            a.http_connections,
            setup.as_secs_f64()
        ),
    );
    r.num(
        "requests_per_sec",
        requests as f64 / post_time.as_secs_f64(),
        0,
        " POST/s answered 2xx",
    );
    r.num(
        "persisted_per_sec",
        persisted as f64 / post_time.as_secs_f64(),
        0,
        " notifications/s persisted",
    );
    r.num(
        "delivered_msgs_per_sec",
        delivered as f64 / deliver_secs,
        0,
        " notifications/s delivered",
    );
    r.count("persisted", persisted);
    r.count("delivered", delivered);
    r.count(
        "server_reported_delivered",
        shared.server_delivered.load(Relaxed),
    );
    r.field(
        "missing",
        json!(missing),
        format!(
            "{missing} persisted notifications not received (drain took {:.2} s)",
            drain.as_secs_f64()
        ),
    );
    r.latency("latency", &shared.latency.merged());
    r.latency("post_latency", &shared.post_latency.merged());
    r.count("window_waits", shared.window_waits.load(Relaxed));
    shared.errors.report(&mut r);
    // CPU over the posting window; RSS peak over the whole run.
    let server_usage = server_usage.with_peaks_of(&server_final);
    server_usage.report(&mut r);
    my_usage.report(&mut r, "bench");
    let accounted = my_usage.cpu_pct + server_usage.cpu_pct();
    report_machine(&mut r, machine_pct, accounted);
    Ok(r)
}

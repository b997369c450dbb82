//! The publish/subscribe engine behind `fanout` and `pairs`: a set of groups, each
//! one publisher sending to one destination that some subscribers listen on.
//!
//! Every SEND carries `bench-ts` (ns on the process-wide clock of
//! [`stats::now_ns`]) so each subscriber measures publish-to-receive latency.
//! A publisher never runs more than `--window` messages ahead of the *slowest*
//! subscriber of its group: when it would, it waits until that subscriber has
//! caught up to half the window. This keeps the server's per-connection queues
//! bounded, so `--max` measures what subscribers can take instead of provoking
//! slow-consumer disconnects.
//!
//! Publishers connect to one server; subscribers may be spread round-robin over
//! several (the nodes of a cluster), with a latency histogram per server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use clap::Args;
use futures_util::StreamExt;
use herald_stomp::{Command, Frame};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::client::{Event, Session, Target, Writer, error_text};
use crate::proc::{Machine, Servers, Watch, Who, report_machine};
use crate::stats::{Errors, Latency, Report, latency_summary, now_ns};

/// Load shape shared by the publish/subscribe scenarios.
#[derive(Args, Debug, Clone)]
pub(crate) struct LoadArgs {
    /// Messages per second, per publisher.
    #[arg(long, conflicts_with = "max", required_unless_present = "max")]
    pub rate: Option<f64>,
    /// Publish as fast as the subscribers keep up (bounded by --window).
    #[arg(long)]
    pub max: bool,
    /// Body size of each message, in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// How long to publish, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Most messages a publisher may be ahead of its slowest subscriber.
    #[arg(long, default_value_t = 32)]
    pub window: u64,
    /// After publishing stops, how long to wait for subscribers to receive the rest.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Seconds to wait after the last subscriber's RECEIPT before publishing: a
    /// cluster node subscribes to Redis after it has answered the SUBSCRIBE.
    #[arg(long, default_value_t = 0.0)]
    pub settle: f64,
}

/// One publisher and the subscribers of its destination.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub destination: String,
    pub subscribers: usize,
}

/// Shared progress of one group.
struct GroupState {
    destination: String,
    /// Messages received by each subscriber.
    counts: Vec<AtomicU64>,
    /// Subscribers that never connected or were disconnected.
    dead: Vec<AtomicBool>,
    /// The count the publisher waits for its slowest subscriber to reach.
    target: AtomicU64,
    notify: Notify,
    published: AtomicU64,
}

impl GroupState {
    /// Count of the slowest live subscriber (`u64::MAX` if none is left).
    fn min_count(&self) -> u64 {
        self.counts
            .iter()
            .zip(&self.dead)
            .filter(|(_, d)| !d.load(Relaxed))
            .map(|(c, _)| c.load(Relaxed))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn live(&self) -> usize {
        self.dead.iter().filter(|d| !d.load(Relaxed)).count()
    }

    /// Deliveries that live subscribers have not received.
    fn missing(&self) -> u64 {
        let published = self.published.load(Relaxed);
        self.counts
            .iter()
            .zip(&self.dead)
            .filter(|(_, d)| !d.load(Relaxed))
            .map(|(c, _)| published.saturating_sub(c.load(Relaxed)))
            .sum()
    }

    fn kill(&self, slot: usize) {
        self.dead[slot].store(true, Relaxed);
        self.notify.notify_one();
    }
}

/// State shared by every task of a run.
#[derive(Default)]
struct Shared {
    errors: Errors,
    /// One histogram per server the subscribers are spread over.
    latency: Vec<Latency>,
    delivered: AtomicU64,
    /// Latest receive time of any message (ns on the shared clock).
    last_recv_ns: AtomicU64,
    stopping: AtomicBool,
    window_waits: AtomicU64,
}

/// Runs the groups: publishers connect to `target`, subscriber `i` (counted over
/// all groups) to `subscribe_to[i % len]`; `pids` are the server processes to sample.
pub(crate) async fn run(
    scenario: &'static str,
    target: Arc<Target>,
    subscribe_to: Vec<Arc<Target>>,
    load: &LoadArgs,
    groups: Vec<Group>,
    pids: &[u32],
) -> Result<Report> {
    if subscribe_to.is_empty() {
        bail!("no server to subscribe to");
    }
    let shared = Arc::new(Shared {
        latency: subscribe_to.iter().map(|_| Latency::default()).collect(),
        ..Shared::default()
    });
    let states: Vec<Arc<GroupState>> = groups
        .iter()
        .map(|g| {
            Arc::new(GroupState {
                destination: g.destination.clone(),
                counts: (0..g.subscribers).map(|_| AtomicU64::new(0)).collect(),
                dead: (0..g.subscribers).map(|_| AtomicBool::new(false)).collect(),
                target: AtomicU64::new(u64::MAX),
                notify: Notify::new(),
                published: AtomicU64::new(0),
            })
        })
        .collect();
    let (stop_tx, stop_rx) = watch::channel(false);

    // 1. Subscribers: connect, SUBSCRIBE, wait for the RECEIPT, then start reading.
    let total_subs: usize = groups.iter().map(|g| g.subscribers).sum();
    let setup_t0 = Instant::now();
    let mut slots = Vec::with_capacity(total_subs);
    for (gi, g) in groups.iter().enumerate() {
        for si in 0..g.subscribers {
            slots.push((gi, si));
        }
    }
    let mut subscriber_tasks: Vec<JoinHandle<()>> = Vec::with_capacity(total_subs);
    let mut opened =
        futures_util::stream::iter(slots.into_iter().enumerate().map(|(idx, (gi, si))| {
            let target = subscribe_to[idx % subscribe_to.len()].clone();
            let dest = states[gi].destination.clone();
            async move {
                let r = async {
                    let mut s = target.connect(idx, (0, 0)).await?;
                    s.subscribe("0", &dest).await?;
                    anyhow::Ok(s)
                }
                .await;
                (idx, gi, si, r)
            }
        }))
        .buffer_unordered(load.connect_concurrency.max(1));
    while let Some((idx, gi, si, r)) = opened.next().await {
        match r {
            Ok(session) => subscriber_tasks.push(tokio::spawn(subscriber(
                idx,
                idx % subscribe_to.len(),
                session,
                states[gi].clone(),
                si,
                shared.clone(),
                stop_rx.clone(),
            ))),
            Err(e) => {
                shared.errors.connect_failure(format!("{e:#}"));
                states[gi].kill(si);
            }
        }
    }
    drop(opened);
    let setup = setup_t0.elapsed();
    let live_subs: usize = states.iter().map(|s| s.live()).sum();
    eprintln!(
        "herald-bench {scenario}: {live_subs}/{total_subs} subscribers ready in {:.2}s",
        setup.as_secs_f64()
    );
    if live_subs == 0 {
        bail!("no subscriber could connect: {}", first_error(&shared));
    }
    tokio::time::sleep(Duration::from_secs_f64(load.settle)).await;

    // 2. Publishers.
    let mut writers = Vec::with_capacity(groups.len());
    for (gi, _) in groups.iter().enumerate() {
        match target.connect(total_subs + gi, (0, 0)).await {
            Ok(s) => writers.push((gi, s)),
            Err(e) => {
                shared.errors.connect_failure(format!("publisher: {e:#}"));
            }
        }
    }
    if writers.is_empty() {
        bail!("no publisher could connect: {}", first_error(&shared));
    }

    let server = Servers::start(pids)?;
    let me = Watch::start(Who::Myself)?;
    let machine = Machine::start()?;
    let pub_t0 = Instant::now();
    let pub_t0_ns = now_ns();
    let deadline = pub_t0 + Duration::from_secs_f64(load.duration);
    let body = Bytes::from(vec![b'x'; load.size]);
    let mut publishers = Vec::new();
    for (gi, s) in writers {
        publishers.push(tokio::spawn(publisher(
            s,
            states[gi].clone(),
            shared.clone(),
            load.clone(),
            body.clone(),
            deadline,
            target.raw,
        )));
    }

    // Progress, once a second, on stderr.
    let progress = {
        let (shared, states) = (shared.clone(), states.clone());
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let d: u64 = states
                    .iter()
                    .flat_map(|s| s.counts.iter())
                    .map(|c| c.load(Relaxed))
                    .sum();
                let p: u64 = states.iter().map(|s| s.published.load(Relaxed)).sum();
                let live: usize = states.iter().map(|s| s.live()).sum();
                eprintln!(
                    "  t={:>5.1}s published {p:>10} delivered {:>10}/s live subscribers {live} errors {}",
                    pub_t0.elapsed().as_secs_f64(),
                    d - last,
                    shared.errors.total()
                );
                last = d;
            }
        })
    };

    let mut publisher_conns = Vec::new();
    for p in publishers {
        if let Ok(conn) = p.await {
            publisher_conns.push(conn);
        }
    }
    let publish_time = pub_t0.elapsed();
    let server_usage = server.usage()?;
    let my_usage = me.usage()?;
    let machine_pct = machine.busy_pct()?;

    // 3. Drain: wait until every live subscriber has everything (or time runs out).
    let drain_t0 = Instant::now();
    let drain_deadline = drain_t0 + Duration::from_secs_f64(load.drain);
    loop {
        let done = states
            .iter()
            .all(|s| s.min_count() >= s.published.load(Relaxed));
        if done || Instant::now() >= drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = drain_t0.elapsed();
    progress.abort();
    shared.stopping.store(true, Relaxed);
    let _ = stop_tx.send(true);
    for t in subscriber_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    for (mut w, reader) in publisher_conns {
        w.close().await;
        reader.abort();
    }
    let server_final = server.finish()?;
    let _ = me.finish();

    // 4. Report.
    let published: u64 = states.iter().map(|s| s.published.load(Relaxed)).sum();
    let missing: u64 = states.iter().map(|s| s.missing()).sum();
    let delivered = shared.delivered.load(Relaxed);
    let last_recv = shared.last_recv_ns.load(Relaxed);
    let deliver_secs = if last_recv > pub_t0_ns {
        (last_recv - pub_t0_ns) as f64 / 1e9
    } else {
        publish_time.as_secs_f64()
    };
    let live_end: usize = states.iter().map(|s| s.live()).sum();
    let mut r = Report::new(scenario);
    if delivered == 0 {
        r.fail("nothing delivered");
    }
    if missing > 0 {
        r.fail(format!("{missing} messages missing"));
    }
    r.field("url", json!(target.url), target.url.clone());
    let spread = subscribe_to.len() > 1 || subscribe_to[0].url != target.url;
    if spread {
        let urls: Vec<&str> = subscribe_to.iter().map(|t| t.url.as_str()).collect();
        r.field("subscribe_urls", json!(urls), urls.join(" "));
    }
    r.field(
        "setup",
        json!({"publishers": groups.len(), "subscribers": total_subs, "size": load.size,
               "rate": load.rate, "max": load.max, "window": load.window,
               "duration_s": load.duration, "settle_s": load.settle,
               "subscribe_secs": setup.as_secs_f64()}),
        format!(
            "{} publisher(s), {total_subs} subscriber(s), {} B bodies, {}, window {}; \
             subscribed in {:.2} s",
            groups.len(),
            load.size,
            match load.rate {
                Some(r) => format!("{r} msg/s per publisher"),
                None => "max rate".into(),
            },
            load.window,
            setup.as_secs_f64()
        ),
    );
    r.num(
        "delivered_msgs_per_sec",
        delivered as f64 / deliver_secs,
        0,
        " msg/s",
    );
    r.num(
        "published_msgs_per_sec",
        published as f64 / publish_time.as_secs_f64(),
        0,
        " msg/s",
    );
    r.count("published", published);
    r.count("delivered", delivered);
    r.field(
        "missing",
        json!(missing),
        format!(
            "{missing} messages not received by subscribers still alive (drain took {:.2} s)",
            drain.as_secs_f64()
        ),
    );
    let per_server: Vec<_> = shared.latency.iter().map(Latency::merged).collect();
    let mut all = per_server[0].clone();
    for h in &per_server[1..] {
        all.add(h)?;
    }
    r.latency("latency", &all);
    if spread {
        // Subscribers on the publisher's server and on the others, side by side.
        let (json, human): (Vec<_>, Vec<_>) = subscribe_to
            .iter()
            .zip(&per_server)
            .map(|(t, h)| {
                let (v, text) = latency_summary(h);
                (
                    json!({"url": t.url, "latency": v}),
                    format!("{}: {text}", t.url),
                )
            })
            .unzip();
        r.field("latency_by_server", json!(json), human.join("; "));
    }
    r.field(
        "subscribers_alive",
        json!(live_end),
        format!("{live_end} of {total_subs} at the end"),
    );
    r.count("window_waits", shared.window_waits.load(Relaxed));
    shared.errors.report(&mut r);
    // CPU over the publishing window; RSS peak over the whole run.
    let server_usage = server_usage.with_peaks_of(&server_final);
    server_usage.report(&mut r);
    my_usage.report(&mut r, "bench");
    let accounted = my_usage.cpu_pct + server_usage.cpu_pct();
    report_machine(&mut r, machine_pct, accounted);
    Ok(r)
}

fn first_error(shared: &Shared) -> String {
    format!(
        "{} failed connects, {} ERROR frames",
        shared.errors.connect_failures.load(Relaxed),
        shared.errors.error_frames.load(Relaxed)
    )
}

/// Reads MESSAGE frames, records their latency (into the histogram of `server`, the
/// index of the server it is connected to) and counts them.
async fn subscriber(
    idx: usize,
    server: usize,
    mut session: Session,
    group: Arc<GroupState>,
    slot: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut count = 0u64;
    let mut batch: Vec<u64> = Vec::with_capacity(128);
    let mut unflushed = 0u64;
    let mut last = 0u64;
    let flush = |batch: &mut Vec<u64>, unflushed: &mut u64| {
        shared.latency[server].record_many_ns(idx, batch);
        batch.clear();
        shared.delivered.fetch_add(*unflushed, Relaxed);
        *unflushed = 0;
    };
    loop {
        let r = tokio::select! {
            _ = stop.changed() => break,
            r = session.recv_fast() => r,
        };
        match r {
            Ok(Some(Event::Message { ts })) => {
                let now = now_ns();
                if let Some(ts) = ts {
                    batch.push(now.saturating_sub(ts));
                }
                last = now;
                count += 1;
                unflushed += 1;
                group.counts[slot].store(count, Relaxed);
                if count == group.target.load(Relaxed) {
                    group.notify.notify_one();
                }
                if batch.len() == batch.capacity() {
                    flush(&mut batch, &mut unflushed);
                }
            }
            Ok(Some(Event::Frame(f))) => match f.command {
                Command::Message => {
                    let now = now_ns();
                    if let Some(ts) = f.get("bench-ts").and_then(|v| v.parse::<u64>().ok()) {
                        batch.push(now.saturating_sub(ts));
                    }
                    last = now;
                    count += 1;
                    unflushed += 1;
                    group.counts[slot].store(count, Relaxed);
                    if count == group.target.load(Relaxed) {
                        group.notify.notify_one();
                    }
                    if batch.len() == batch.capacity() {
                        flush(&mut batch, &mut unflushed);
                    }
                }
                Command::Error => shared.errors.error_frame(error_text(&f)),
                _ => {}
            },
            Ok(None) => {
                if !shared.stopping.load(Relaxed) {
                    shared
                        .errors
                        .disconnect("subscriber closed by server".into());
                }
                group.kill(slot);
                break;
            }
            Err(e) => {
                if !shared.stopping.load(Relaxed) {
                    shared.errors.disconnect(format!("subscriber: {e:#}"));
                }
                group.kill(slot);
                break;
            }
        }
    }
    flush(&mut batch, &mut unflushed);
    shared.last_recv_ns.fetch_max(last, Relaxed);
    session.close().await;
}

/// Publishes until the deadline, paced by --rate or by the window alone.
async fn publisher(
    session: Session,
    group: Arc<GroupState>,
    shared: Arc<Shared>,
    load: LoadArgs,
    body: Bytes,
    deadline: Instant,
    raw: bool,
) -> (Writer, JoinHandle<()>) {
    let (mut w, mut reader) = session.split();
    let reader_task = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                match reader.recv().await {
                    Ok(Some(f)) if f.command == Command::Error => shared
                        .errors
                        .error_frame(format!("publisher: {}", error_text(&f))),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        if !shared.stopping.load(Relaxed) {
                            shared
                                .errors
                                .disconnect("publisher closed by server".into());
                        }
                        break;
                    }
                }
            }
        })
    };
    let window = load.window.max(2);
    let start = Instant::now();
    let mut sent = 0u64;
    'outer: loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // How many the rate allows by now.
        let allowed = match load.rate {
            Some(rate) if !load.max => (now - start).as_secs_f64() * rate + 1.0,
            _ => f64::INFINITY,
        };
        if (sent as f64) >= allowed {
            let rate = load.rate.unwrap_or(1.0);
            let next = start + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(next.min(deadline).into()).await;
            continue;
        }
        // How many the window allows.
        let min = group.min_count();
        if min == u64::MAX {
            break; // no subscriber left
        }
        if sent >= min + window {
            shared.window_waits.fetch_add(1, Relaxed);
            let want = sent - window / 2;
            group.target.store(want, Relaxed);
            while group.min_count() < want {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break 'outer;
                }
                let _ = tokio::time::timeout(
                    left.min(Duration::from_millis(50)),
                    group.notify.notified(),
                )
                .await;
            }
            continue;
        }
        let room = (min + window - sent).min(64);
        let n = if allowed.is_finite() {
            ((allowed - sent as f64) as u64).clamp(1, room)
        } else {
            room
        };
        for _ in 0..n {
            let f = if raw {
                // What Herald would deliver, so the floor forwards the same bytes.
                Frame::new(Command::Message)
                    .header("subscription", "0")
                    .header("message-id", format!("0a1b2c3d-{sent}"))
                    .header("destination", group.destination.clone())
                    .header("content-length", body.len().to_string())
                    .header("bench-ts", now_ns().to_string())
                    .body(body.clone())
            } else {
                Frame::new(Command::Send)
                    .header("destination", group.destination.clone())
                    .header("bench-ts", now_ns().to_string())
                    .body(body.clone())
            };
            if let Err(e) = w.feed(&f).await {
                shared.errors.disconnect(format!("publisher send: {e:#}"));
                break 'outer;
            }
            sent += 1;
        }
        if let Err(e) = w.flush().await {
            shared.errors.disconnect(format!("publisher flush: {e:#}"));
            break;
        }
        group.published.store(sent, Relaxed);
        tokio::task::yield_now().await;
    }
    group.published.store(sent, Relaxed);
    // The connection stays open through the drain; its reader still reports ERRORs.
    (w, reader_task)
}

//! `churn`: a soak. `--clients` loops run for `--duration`, each cycle opening a
//! session (WebSocket, or every other client over TCP with `--tcp`) under a new user
//! name, subscribing to its topic, its client-ack queue and a user destination,
//! publishing `--messages` to each, receiving and ACKing them, and ending in one of
//! four ways in turn, so that every path that releases a session's resources is
//! taken:
//!
//! - `unsubscribe`: UNSUBSCRIBE both, DISCONNECT, wait for its RECEIPT, close;
//! - `disconnect`: DISCONNECT with the subscriptions still live;
//! - `close`: an open transaction and an unacknowledged queue message, then the
//!   transport is closed (WebSocket close, TCP FIN) without DISCONNECT;
//! - `reset`: the same, then the socket is reset (RST).
//!
//! The message left unacknowledged must come back to the client's next cycle; a
//! message sent in the open transaction must never arrive. Every message a cycle
//! expects and does not get within `--timeout`, and every one it did not expect, is
//! counted.
//!
//! Every `--sample-every` the clients pause between cycles, the server is given up
//! to 5 s to end the last sessions (its `herald_sessions` and `herald_connections`
//! reach 0), and then it is sampled: VmRSS, open descriptors and threads of each
//! `--pid`, and `herald_runtime_tasks` from `--metrics-url`. With no session open,
//! descriptors and tasks are exact counts of what the server keeps for nobody. The
//! verdict compares the last sample with the first one after `--warmup`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use herald_stomp::{Command, Frame};
use serde_json::{Value, json};
use tokio::sync::RwLock;
use tokio::time::timeout_at;

use crate::Common;
use crate::client::{Session, Target, error_text, loopback_addr};
use crate::proc::{Who, fd_count, rss_bytes, thread_count};
use crate::scrape::Scraper;
use crate::stats::{Errors, Report};
use crate::tcp::TcpSession;

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
    /// How long to run cycles: "20m", "90s", "1h 30m".
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub duration: Duration,
    /// Client loops running at the same time.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// The server's STOMP-over-TCP listener (host:port, loopback): every other
    /// client connects there instead of to --url.
    #[arg(long)]
    pub tcp: Option<String>,
    /// Messages a cycle publishes to each of its three destinations.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Body size of each message, in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Pause of each client between two cycles.
    #[arg(long, default_value = "0s", value_parser = duration)]
    pub pause: Duration,
    /// Longest wait for a frame a cycle expects (CONNECTED, RECEIPT, MESSAGE).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub timeout: Duration,
    /// How often the server is sampled.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub sample_every: Duration,
    /// Samples taken before this are warm-up: the verdict compares the last sample
    /// with the first one after it.
    #[arg(long, default_value = "2m", value_parser = duration)]
    pub warmup: Duration,
    /// The server's Prometheus metrics (herald_runtime_tasks, herald_sessions,
    /// herald_connections), repeatable; default: --url's host and port + /metrics.
    #[arg(long)]
    pub metrics_url: Vec<String>,
    /// RSS growth after warm-up, in percent, above which the verdict says it grows.
    #[arg(long, default_value_t = 5.0)]
    pub max_rss_growth: f64,
}

/// How a cycle ends, in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Unsubscribe,
    Disconnect,
    Close,
    Reset,
}

impl Ending {
    const ALL: [Ending; 4] = [
        Ending::Unsubscribe,
        Ending::Disconnect,
        Ending::Close,
        Ending::Reset,
    ];

    fn name(self) -> &'static str {
        match self {
            Ending::Unsubscribe => "unsubscribe",
            Ending::Disconnect => "disconnect",
            Ending::Close => "close",
            Ending::Reset => "reset",
        }
    }

    /// Leaves a transaction open and a queue message unacknowledged.
    fn abrupt(self) -> bool {
        matches!(self, Ending::Close | Ending::Reset)
    }
}

/// What the client loops count together.
#[derive(Default)]
struct Shared {
    errors: Errors,
    cycles: AtomicU64,
    endings: [AtomicU64; 4],
    /// MESSAGE frames received that a cycle expected.
    received: AtomicU64,
    /// Unacknowledged messages of an abruptly ended cycle that came back.
    redelivered: AtomicU64,
    /// Queue messages of a cycle that failed, received by a later one.
    stale: AtomicU64,
    /// Expected messages that did not arrive in time.
    missing: AtomicU64,
    /// Messages no cycle expected (duplicates, another client's, a transaction's
    /// that was never committed).
    unexpected: AtomicU64,
    /// The first few problems with messages, for the report.
    examples: Mutex<Vec<String>>,
    /// Held for reading by a running cycle; the sampler takes it for writing, so
    /// samples see the server with no session of ours open.
    gate: RwLock<()>,
}

impl Shared {
    /// Every error of the run: failed cycles, missing and unexpected messages.
    fn error_count(&self) -> u64 {
        self.errors.total() + self.missing.load(Relaxed) + self.unexpected.load(Relaxed)
    }

    fn unexpected(&self, why: String) {
        self.unexpected.fetch_add(1, Relaxed);
        self.example(format!("unexpected message: {why}"));
    }

    fn missing(&self, n: u64, why: String) {
        self.missing.fetch_add(n, Relaxed);
        self.example(format!("{n} messages missing: {why}"));
    }

    /// Keeps (and prints) the first few problems; the counters keep the rest.
    fn example(&self, what: String) {
        let mut ex = self.examples.lock().unwrap();
        if ex.len() < 10 {
            eprintln!("  {what}");
            ex.push(what);
        }
    }
}

/// One STOMP session over either transport.
enum Conn {
    Ws(Box<Session>),
    Tcp(TcpSession),
}

impl Conn {
    async fn send(&mut self, f: &Frame) -> Result<()> {
        match self {
            Conn::Ws(s) => s.send(f).await,
            Conn::Tcp(s) => s.send(f).await,
        }
    }

    async fn recv(&mut self) -> Result<Option<Frame>> {
        match self {
            Conn::Ws(s) => s.recv().await,
            Conn::Tcp(s) => s.recv().await,
        }
    }

    async fn close(self) {
        match self {
            Conn::Ws(s) => s.close().await,
            Conn::Tcp(s) => s.close().await,
        }
    }

    fn reset(self) {
        match self {
            Conn::Ws(s) => s.reset(),
            Conn::Tcp(s) => s.reset(),
        }
    }
}

/// What a run needs to know, shared by the client loops.
struct Plan {
    target: Arc<Target>,
    tcp: Option<SocketAddr>,
    clients: usize,
    messages: u64,
    size: usize,
    timeout: Duration,
}

/// A message's body: `client:cycle:kind:n:` and padding to `--size`. Kinds: `t`
/// topic, `q` queue, `u` user destination, `x` sent in a transaction never committed.
fn body(size: usize, client: usize, cycle: u64, kind: char, n: u64) -> String {
    let mut b = format!("{client}:{cycle}:{kind}:{n}:");
    while b.len() < size {
        b.push('.');
    }
    b
}

fn parse_body(b: &[u8]) -> Option<(usize, u64, char, u64)> {
    let s = std::str::from_utf8(b).ok()?;
    let mut f = s.splitn(5, ':');
    let client = f.next()?.parse().ok()?;
    let cycle = f.next()?.parse().ok()?;
    let kind = f.next()?.chars().next()?;
    let n = f.next()?.parse().ok()?;
    Some((client, cycle, kind, n))
}

/// Why a cycle stopped early.
enum Failure {
    Connect(anyhow::Error),
    ErrorFrame(String),
    Closed(String),
    Timeout(String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Closed(format!("{e:#}"))
    }
}

/// The state of one client loop between cycles.
#[derive(Default)]
struct Loop {
    /// Queue messages (cycle, n) left unacknowledged by the previous cycle.
    carried: Vec<(u64, u64)>,
    /// The previous cycle failed: queue messages of earlier cycles may still come.
    uncertain: bool,
}

/// One cycle in progress.
struct Cycle<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    client: usize,
    cycle: u64,
    conn: Conn,
    /// (kind, n) of this cycle's messages not received yet.
    expected: HashSet<(char, u64)>,
    carried: Vec<(u64, u64)>,
    uncertain: bool,
    /// `ack` header values of queue messages received, with the number of each one
    /// this cycle published.
    acks: Vec<(String, Option<u64>)>,
}

impl Cycle<'_> {
    fn topic(&self) -> String {
        format!("/topic/churn.{}", self.client)
    }

    fn queue(&self) -> String {
        format!("/queue/churn.{}", self.client)
    }

    fn user(&self) -> String {
        format!("churn-{}-{}", self.client, self.cycle)
    }

    /// Accounts for a frame that arrived; an ERROR ends the cycle.
    fn on_frame(&mut self, f: Frame) -> Result<(), Failure> {
        match f.command {
            Command::Message => {}
            Command::Error => return Err(Failure::ErrorFrame(error_text(&f))),
            _ => return Ok(()),
        }
        let (me, cycle) = (self.client, self.cycle);
        let Some((client, c, kind, n)) = parse_body(&f.body) else {
            self.shared.unexpected(format!(
                "client {me}: a body that is not ours: {:?}",
                String::from_utf8_lossy(&f.body[..f.body.len().min(40)])
            ));
            return Ok(());
        };
        let queue = kind == 'q';
        if queue && let Some(ack) = f.get("ack") {
            self.acks.push((ack.to_owned(), (c == cycle).then_some(n)));
        }
        if client != me || kind == 'x' {
            self.shared.unexpected(format!(
                "client {me} cycle {cycle} got {client}:{c}:{kind}:{n}"
            ));
        } else if c == cycle {
            if self.expected.remove(&(kind, n)) {
                self.shared.received.fetch_add(1, Relaxed);
            } else {
                self.shared
                    .unexpected(format!("client {me} cycle {cycle} got {kind}:{n} twice"));
            }
        } else if let Some(at) = self
            .carried
            .iter()
            .position(|m| *m == (c, n))
            .filter(|_| queue)
        {
            self.carried.swap_remove(at);
            self.shared.redelivered.fetch_add(1, Relaxed);
        } else if queue && self.uncertain {
            self.shared.stale.fetch_add(1, Relaxed);
        } else {
            self.shared.unexpected(format!(
                "client {me} cycle {cycle} got {c}:{kind}:{n} of an earlier cycle"
            ));
        }
        Ok(())
    }

    /// Reads until the RECEIPT `id`, accounting for frames on the way.
    async fn receipt(&mut self, id: &str) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + self.plan.timeout;
        loop {
            let f = timeout_at(deadline, self.conn.recv())
                .await
                .map_err(|_| Failure::Timeout(format!("no RECEIPT {id}")))??;
            match f {
                Some(f) if f.command == Command::Receipt && f.get("receipt-id") == Some(id) => {
                    return Ok(());
                }
                Some(f) => self.on_frame(f)?,
                None => return Err(Failure::Closed(format!("closed before RECEIPT {id}"))),
            }
        }
    }

    /// Reads until every expected message (and every carried one) is in, or the
    /// timeout; what did not come is counted missing.
    async fn collect(&mut self) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + self.plan.timeout;
        while !self.expected.is_empty() || !self.carried.is_empty() {
            match timeout_at(deadline, self.conn.recv()).await {
                Err(_) => break,
                Ok(Ok(Some(f))) => self.on_frame(f)?,
                Ok(Ok(None)) => return Err(Failure::Closed("closed while receiving".into())),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        let missing = (self.expected.len() + self.carried.len()) as u64;
        if missing > 0 {
            let mut what: Vec<String> = self
                .expected
                .iter()
                .map(|(k, n)| format!("{k}:{n}"))
                .collect();
            what.extend(
                self.carried
                    .iter()
                    .map(|(c, n)| format!("{c}:q:{n} (unacked before)")),
            );
            self.shared.missing(
                missing,
                format!(
                    "client {} cycle {} after {:?}: {}",
                    self.client,
                    self.cycle,
                    self.plan.timeout,
                    what.join(", ")
                ),
            );
            self.expected.clear();
            self.carried.clear();
        }
        Ok(())
    }

    async fn send(&mut self, f: Frame) -> Result<(), Failure> {
        Ok(self.conn.send(&f).await?)
    }

    /// Runs the cycle after CONNECTED; returns what the next cycle must receive.
    async fn run(mut self, ending: Ending) -> Result<Vec<(u64, u64)>, Failure> {
        let (topic, queue) = (self.topic(), self.queue());
        let receipt = format!("sub-{}", self.cycle);
        self.send(
            Frame::new(Command::Subscribe)
                .header("id", "t")
                .header("destination", topic.clone()),
        )
        .await?;
        self.send(
            Frame::new(Command::Subscribe)
                .header("id", "u")
                .header("destination", "/user/queue/churn"),
        )
        .await?;
        self.send(
            Frame::new(Command::Subscribe)
                .header("id", "q")
                .header("destination", queue.clone())
                .header("ack", "client-individual")
                .header("receipt", receipt.clone()),
        )
        .await?;
        self.receipt(&receipt).await?;

        let user_dest = format!("/user/{}/queue/churn", self.user());
        for n in 0..self.plan.messages {
            for (kind, dest) in [('t', &topic), ('q', &queue), ('u', &user_dest)] {
                let b = body(self.plan.size, self.client, self.cycle, kind, n);
                self.expected.insert((kind, n));
                self.send(
                    Frame::new(Command::Send)
                        .header("destination", dest.clone())
                        .header("content-type", "text/plain")
                        .body(b),
                )
                .await?;
            }
        }
        self.collect().await?;

        // An abrupt ending keeps one of this cycle's queue messages unacknowledged:
        // the next cycle must get it back.
        let mut back = Vec::new();
        if ending.abrupt()
            && let Some(at) = self.acks.iter().position(|(_, own)| own.is_some())
        {
            let (_, n) = self.acks.swap_remove(at);
            back.extend(n.map(|n| (self.cycle, n)));
        }
        let acks = std::mem::take(&mut self.acks);
        let last = acks.len();
        for (k, (id, _)) in acks.into_iter().enumerate() {
            let mut f = Frame::new(Command::Ack).header("id", id);
            if k + 1 == last {
                f = f.header("receipt", format!("ack-{}", self.cycle));
            }
            self.send(f).await?;
        }
        if last > 0 {
            self.receipt(&format!("ack-{}", self.cycle)).await?;
        }

        match ending {
            Ending::Unsubscribe | Ending::Disconnect => {
                if ending == Ending::Unsubscribe {
                    for id in ["t", "u", "q"] {
                        self.send(Frame::new(Command::Unsubscribe).header("id", id))
                            .await?;
                    }
                }
                let bye = format!("bye-{}", self.cycle);
                self.send(Frame::new(Command::Disconnect).header("receipt", bye.clone()))
                    .await?;
                self.receipt(&bye).await?;
                self.conn.close().await;
                Ok(Vec::new())
            }
            Ending::Close | Ending::Reset => {
                let tx = format!("tx-{}", self.cycle);
                self.send(Frame::new(Command::Begin).header("transaction", tx.clone()))
                    .await?;
                self.send(
                    Frame::new(Command::Send)
                        .header("destination", topic)
                        .header("transaction", tx)
                        .body(body(self.plan.size, self.client, self.cycle, 'x', 0)),
                )
                .await?;
                if ending == Ending::Close {
                    self.conn.close().await;
                } else {
                    self.conn.reset();
                }
                Ok(back)
            }
        }
    }
}

/// One client loop until `deadline`.
async fn client(
    i: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    deadline: Instant,
    pause: Duration,
) {
    let mut state = Loop::default();
    let mut c: u64 = 0;
    while Instant::now() < deadline {
        let gate = shared.gate.read().await;
        if Instant::now() >= deadline {
            break;
        }
        let ending = Ending::ALL[(i + c as usize) % Ending::ALL.len()];
        match one_cycle(i, c, &plan, &shared, &mut state, ending).await {
            Ok(()) => {
                shared.cycles.fetch_add(1, Relaxed);
                shared.endings[ending as usize].fetch_add(1, Relaxed);
            }
            Err(f) => {
                state.carried.clear();
                state.uncertain = true;
                match f {
                    Failure::Connect(e) => shared.errors.connect_failure(format!("{e:#}")),
                    Failure::ErrorFrame(m) => shared.errors.error_frame(m),
                    Failure::Closed(m) | Failure::Timeout(m) => shared.errors.disconnect(m),
                }
            }
        }
        drop(gate);
        c += 1;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        } else {
            // Let the sampler in between cycles (tokio's RwLock is fair).
            tokio::task::yield_now().await;
        }
    }
}

async fn one_cycle(
    i: usize,
    c: u64,
    plan: &Plan,
    shared: &Shared,
    state: &mut Loop,
    ending: Ending,
) -> Result<(), Failure> {
    let user = format!("churn-{i}-{c}");
    // Rotate the source addresses over cycles: every client meets every per-IP slot.
    let idx = i + c as usize * plan.clients;
    let conn = match plan.tcp {
        Some(addr) if i % 2 == 1 => {
            TcpSession::connect(&plan.target, addr, idx, (0, 0), Some(&user))
                .await
                .map(Conn::Tcp)
        }
        _ => plan
            .target
            .connect_as(idx, (0, 0), &user)
            .await
            .map(|s| Conn::Ws(Box::new(s))),
    }
    .map_err(Failure::Connect)?;
    let carried = std::mem::take(&mut state.carried);
    let cycle = Cycle {
        plan,
        shared,
        client: i,
        cycle: c,
        conn,
        expected: HashSet::new(),
        carried,
        uncertain: state.uncertain,
        acks: Vec::new(),
    };
    state.carried = cycle.run(ending).await?;
    state.uncertain = false;
    Ok(())
}

/// The server at one moment, with no session of ours open.
#[derive(Debug, Clone)]
struct Sample {
    elapsed: f64,
    cycles: u64,
    errors: u64,
    /// Summed over the `--pid`s; `None` without `--pid`.
    rss: Option<u64>,
    fds: Option<u64>,
    threads: Option<u64>,
    /// `herald_runtime_tasks`, summed over the metrics URLs.
    tasks: Option<u64>,
    /// The server had ended every session before the sample (or cannot tell).
    quiet: bool,
}

impl Sample {
    fn json(&self) -> Value {
        json!({"elapsed_secs": self.elapsed, "cycles": self.cycles, "errors": self.errors,
               "rss_bytes": self.rss, "fds": self.fds, "threads": self.threads,
               "tasks": self.tasks, "quiet": self.quiet})
    }
}

const HEADER: &str = "  elapsed     cycles  cycles/s   errors   RSS MiB     fds  threads    tasks";

/// `m:ss` (or `h:mm:ss`).
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn row(s: &Sample, prev: Option<&Sample>) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let rate = prev.map_or(0.0, |p| {
        (s.cycles - p.cycles) as f64 / (s.elapsed - p.elapsed).max(1e-9)
    });
    format!(
        "  {:>7} {:>10} {:>9.1} {:>8} {:>9} {:>7} {:>8} {:>8}{}",
        clock(s.elapsed),
        s.cycles,
        rate,
        s.errors,
        s.rss
            .map_or("-".to_owned(), |r| format!("{:.1}", r as f64 / MIB)),
        opt(s.fds),
        opt(s.threads),
        opt(s.tasks),
        if s.quiet {
            ""
        } else {
            "  (sessions still open)"
        }
    )
}

const MIB: f64 = 1024.0 * 1024.0;

/// Pauses the clients, waits for the server to end their sessions, and samples it.
async fn sample(
    t0: Instant,
    shared: &Shared,
    pids: &[u32],
    scrapers: &mut [Scraper],
    sample_errors: &mut Vec<String>,
) -> Sample {
    let _paused = shared.gate.write().await;
    let settle = Instant::now() + Duration::from_secs(5);
    let mut quiet = false;
    let tasks = loop {
        let mut open = Some(0.0);
        let mut t = Some(0.0);
        for s in scrapers.iter_mut() {
            match s.scrape().await {
                Ok(e) => {
                    let tasks = e.sum("herald_runtime_tasks");
                    // Herald's gauges appear with their first session: absent is 0.
                    let sessions = tasks.map(|_| {
                        e.sum("herald_sessions").unwrap_or(0.0)
                            + e.sum("herald_connections").unwrap_or(0.0)
                    });
                    open = open.zip(sessions).map(|(a, b)| a + b);
                    t = t.zip(tasks).map(|(a, b)| a + b);
                }
                Err(e) => {
                    sample_errors.push(format!("{}: {e:#}", s.url));
                    open = None;
                    t = None;
                }
            }
        }
        let tasks = t.map(|t| t as u64);
        match open {
            // Not Herald, or no answer: nothing tells when the sessions have ended,
            // so give the server a moment.
            None => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                quiet = true;
                break tasks;
            }
            // The task count of the second scrape after the last session ended: a
            // connection's task ends just after its gauges go down.
            Some(0.0) => {
                if quiet {
                    break tasks;
                }
                quiet = true;
            }
            Some(_) if Instant::now() >= settle => break tasks,
            Some(_) => quiet = false,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sum = |f: fn(Who) -> Result<u64>| -> Option<u64> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|&p| f(Who::Pid(p)).ok()).sum()
    };
    Sample {
        elapsed: t0.elapsed().as_secs_f64(),
        cycles: shared.cycles.load(Relaxed),
        errors: shared.error_count(),
        rss: sum(rss_bytes),
        fds: sum(fd_count),
        threads: sum(thread_count),
        tasks,
        quiet,
    }
}

/// Growth between two samples and whether each figure stayed flat.
struct Verdict {
    base: Sample,
    end: Sample,
    rss_growth: Option<f64>,
    rss_growth_pct: Option<f64>,
    /// Least-squares slope of RSS over the samples after warm-up, MiB per hour.
    rss_slope: Option<f64>,
    fd_growth: Option<i64>,
    task_growth: Option<i64>,
    thread_growth: Option<i64>,
    growing: Vec<&'static str>,
    not_quiet: usize,
}

fn verdict(samples: &[Sample], warmup: f64, max_rss_growth: f64) -> Option<Verdict> {
    let end = samples.last()?;
    let from = samples.iter().position(|s| s.elapsed >= warmup)?;
    if from + 1 >= samples.len() {
        return None;
    }
    let base = &samples[from];
    let diff = |f: fn(&Sample) -> Option<u64>| Some(f(end)? as i64 - f(base)? as i64);
    let rss_growth = diff(|s| s.rss).map(|d| d as f64);
    let rss_growth_pct = rss_growth
        .zip(base.rss)
        .map(|(g, b)| g / b.max(1) as f64 * 100.0);
    let after = &samples[from..];
    let points: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|s| Some((s.elapsed / 3600.0, s.rss? as f64 / MIB)))
        .collect();
    let rss_slope = (points.len() >= 2).then(|| {
        let n = points.len() as f64;
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        sxy / sxx.max(1e-12)
    });
    let (fd_growth, task_growth) = (diff(|s| s.fds), diff(|s| s.tasks));
    let mut growing = Vec::new();
    if rss_growth_pct.is_some_and(|p| p > max_rss_growth) {
        growing.push("RSS");
    }
    if fd_growth.is_some_and(|g| g > 0) {
        growing.push("fds");
    }
    if task_growth.is_some_and(|g| g > 0) {
        growing.push("tasks");
    }
    Some(Verdict {
        base: base.clone(),
        end: end.clone(),
        rss_growth,
        rss_growth_pct,
        rss_slope,
        fd_growth,
        task_growth,
        thread_growth: diff(|s| s.threads),
        growing,
        not_quiet: after.iter().filter(|s| !s.quiet).count(),
    })
}

impl Verdict {
    fn human(&self) -> String {
        let signed = |g: Option<i64>| g.map_or("n/a".to_owned(), |g| format!("{g:+}"));
        let rss = match (self.rss_growth, self.rss_growth_pct) {
            (Some(g), Some(p)) => format!(
                "RSS {:+.1} MiB ({p:+.1}%, slope {:+.1} MiB/h)",
                g / MIB,
                self.rss_slope.unwrap_or(0.0)
            ),
            _ => "RSS n/a (no --pid)".to_owned(),
        };
        let mut v = format!(
            "{} → {}: {rss}, fds {}, tasks {}, threads {}: ",
            clock(self.base.elapsed),
            clock(self.end.elapsed),
            signed(self.fd_growth),
            signed(self.task_growth),
            signed(self.thread_growth),
        );
        if self.growing.is_empty() {
            v.push_str("flat");
        } else {
            v.push_str(&format!("GROWS ({})", self.growing.join(", ")));
        }
        if self.not_quiet > 0 {
            v.push_str(&format!(
                "; {} samples found sessions still open 5 s after the clients paused",
                self.not_quiet
            ));
        }
        v
    }

    fn json(&self) -> Value {
        json!({"from_secs": self.base.elapsed, "to_secs": self.end.elapsed,
               "rss_growth_bytes": self.rss_growth, "rss_growth_pct": self.rss_growth_pct,
               "rss_slope_mib_per_hour": self.rss_slope, "fd_growth": self.fd_growth,
               "task_growth": self.task_growth, "thread_growth": self.thread_growth,
               "growing": self.growing, "samples_not_quiet": self.not_quiet,
               "flat": self.growing.is_empty() && self.not_quiet == 0})
    }
}

pub(crate) async fn run(a: &ChurnArgs) -> Result<Report> {
    let target = a.common.target()?;
    let tcp = match &a.tcp {
        Some(addr) => {
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| anyhow!("--tcp {addr}: expected HOST:PORT"))?;
            let port = port
                .parse()
                .with_context(|| format!("--tcp {addr}: bad port"))?;
            Some(loopback_addr(host.trim_matches(['[', ']']), port)?)
        }
        None => None,
    };
    let urls = if a.metrics_url.is_empty() {
        vec![format!("http://{}/metrics", target.addr())]
    } else {
        a.metrics_url.clone()
    };
    let mut scrapers = urls
        .iter()
        .map(|u| Scraper::new(u))
        .collect::<Result<Vec<_>>>()?;
    if a.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let pids = &a.common.pid;
    let plan = Arc::new(Plan {
        target: target.clone(),
        tcp,
        clients: a.clients,
        messages: a.messages,
        size: a.size,
        timeout: a.timeout,
    });
    let shared = Arc::new(Shared::default());
    let mut sample_errors = Vec::new();

    eprintln!(
        "herald-bench churn: {} clients for {}, sampling every {} (warm-up {})",
        a.clients,
        humantime::format_duration(a.duration),
        humantime::format_duration(a.sample_every),
        humantime::format_duration(a.warmup)
    );
    eprintln!("{HEADER}");
    let t0 = Instant::now();
    let mut samples = vec![sample(t0, &shared, pids, &mut scrapers, &mut sample_errors).await];
    eprintln!("{}", row(&samples[0], None));
    let t0 = Instant::now() - Duration::from_secs_f64(samples[0].elapsed);
    let deadline = t0 + a.duration;
    let clients: Vec<_> = (0..a.clients)
        .map(|i| tokio::spawn(client(i, plan.clone(), shared.clone(), deadline, a.pause)))
        .collect();
    let mut next = t0 + a.sample_every;
    while next < deadline {
        tokio::time::sleep_until(next.into()).await;
        let s = sample(t0, &shared, pids, &mut scrapers, &mut sample_errors).await;
        eprintln!("{}", row(&s, samples.last()));
        samples.push(s);
        next += a.sample_every;
    }
    for c in clients {
        let _ = c.await;
    }
    let last = sample(t0, &shared, pids, &mut scrapers, &mut sample_errors).await;
    eprintln!("{}", row(&last, samples.last()));
    samples.push(last);

    report(a, &target, &shared, &samples, &sample_errors)
}

fn report(
    a: &ChurnArgs,
    target: &Target,
    shared: &Shared,
    samples: &[Sample],
    sample_errors: &[String],
) -> Result<Report> {
    let mut r = Report::new("churn");
    let elapsed = samples.last().map_or(0.0, |s| s.elapsed);
    let cycles = shared.cycles.load(Relaxed);
    if cycles == 0 {
        r.fail("no cycle completed");
    }
    r.field("url", json!(target.url), target.url.clone());
    r.field(
        "setup",
        json!({"clients": a.clients, "tcp": a.tcp, "messages": a.messages, "size": a.size,
               "duration_secs": a.duration.as_secs_f64(),
               "sample_every_secs": a.sample_every.as_secs_f64(),
               "warmup_secs": a.warmup.as_secs_f64()}),
        format!(
            "{} clients ({}), {} messages to each of topic, client-ack queue and user \
             destination per cycle, for {}",
            a.clients,
            if a.tcp.is_some() {
                "half WebSocket, half TCP"
            } else {
                "WebSocket"
            },
            a.messages,
            humantime::format_duration(a.duration)
        ),
    );
    r.count("cycles", cycles);
    r.num(
        "cycles_per_sec",
        cycles as f64 / elapsed.max(1e-9),
        1,
        " cycles/s",
    );
    let endings: serde_json::Map<String, Value> = Ending::ALL
        .iter()
        .map(|e| {
            (
                e.name().to_owned(),
                json!(shared.endings[*e as usize].load(Relaxed)),
            )
        })
        .collect();
    let human = Ending::ALL
        .iter()
        .map(|e| format!("{} {}", shared.endings[*e as usize].load(Relaxed), e.name()))
        .collect::<Vec<_>>()
        .join(", ");
    r.field("endings", Value::Object(endings), human);
    r.count("messages_received", shared.received.load(Relaxed));
    r.count("redelivered", shared.redelivered.load(Relaxed));
    let stale = shared.stale.load(Relaxed);
    if stale > 0 {
        r.count("stale_after_failed_cycle", stale);
    }
    let (missing, unexpected) = (
        shared.missing.load(Relaxed),
        shared.unexpected.load(Relaxed),
    );
    r.count("missing_messages", missing);
    r.count("unexpected_messages", unexpected);
    if missing > 0 {
        r.fail(format!("{missing} messages missing"));
    }
    if unexpected > 0 {
        r.fail(format!("{unexpected} unexpected messages"));
    }
    let examples = shared.examples.lock().unwrap();
    if !examples.is_empty() {
        r.field(
            "message_problems",
            json!(*examples),
            examples.iter().map(|e| format!("\n    {e}")).collect(),
        );
    }
    shared.errors.report(&mut r);
    if !sample_errors.is_empty() {
        r.fail(format!("{} failed metrics scrapes", sample_errors.len()));
        r.field(
            "sample_errors",
            json!(sample_errors),
            format!("{} (first: {})", sample_errors.len(), sample_errors[0]),
        );
    }
    let mut table = format!("\n{HEADER}");
    for (k, s) in samples.iter().enumerate() {
        table.push('\n');
        table.push_str(&row(s, k.checked_sub(1).map(|p| &samples[p])));
    }
    r.field(
        "samples",
        Value::Array(samples.iter().map(Sample::json).collect()),
        table,
    );
    match verdict(samples, a.warmup.as_secs_f64(), a.max_rss_growth) {
        Some(v) => {
            eprintln!("verdict: {}", v.human());
            if !v.growing.is_empty() {
                r.fail(format!("{} grow after warm-up", v.growing.join(", ")));
            }
            if v.not_quiet > 0 {
                r.fail("sessions outlived their clients");
            }
            r.field("verdict", v.json(), v.human());
        }
        None => r.field(
            "verdict",
            Value::Null,
            format!(
                "none: no two samples after the warm-up ({}) in a run of {}",
                clock(a.warmup.as_secs_f64()),
                clock(elapsed)
            ),
        ),
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(elapsed: f64, rss_mib: f64, fds: u64, tasks: u64) -> Sample {
        Sample {
            elapsed,
            cycles: elapsed as u64 * 100,
            errors: 0,
            rss: Some((rss_mib * MIB) as u64),
            fds: Some(fds),
            threads: Some(4),
            tasks: Some(tasks),
            quiet: true,
        }
    }

    #[test]
    fn bodies_round_trip() {
        let b = body(100, 7, 12345, 'q', 3);
        assert_eq!(b.len(), 100);
        assert_eq!(parse_body(b.as_bytes()), Some((7, 12345, 'q', 3)));
        assert_eq!(parse_body(b"hello"), None);
    }

    #[test]
    fn the_verdict_starts_after_the_warm_up() {
        // Growth during the warm-up does not count; after it, flat.
        let s = [
            at(0.0, 20.0, 10, 5),
            at(10.0, 40.0, 12, 7),
            at(20.0, 40.5, 12, 7),
            at(30.0, 40.2, 12, 7),
        ];
        let v = verdict(&s, 10.0, 5.0).expect("a verdict");
        assert!(v.growing.is_empty(), "{}", v.human());
        assert_eq!((v.fd_growth, v.task_growth), (Some(0), Some(0)));
        // One descriptor or task more, or RSS past the tolerance, is growth.
        let s = [
            at(0.0, 20.0, 10, 5),
            at(10.0, 40.0, 12, 7),
            at(20.0, 43.0, 13, 8),
        ];
        let v = verdict(&s, 10.0, 5.0).expect("a verdict");
        assert_eq!(v.growing, ["RSS", "fds", "tasks"], "{}", v.human());
        // No two samples after the warm-up: no verdict.
        assert!(verdict(&s, 20.0, 5.0).is_none());
    }
}

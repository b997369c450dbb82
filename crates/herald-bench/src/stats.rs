//! Counters, latency histograms and the result report (human text or one JSON line).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

/// The clock shared by every task of the process: timestamps embedded in messages
/// are nanoseconds since this instant, so publisher and subscribers agree.
pub(crate) fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

const SHARDS: usize = 64;
/// Highest latency recorded, in microseconds (anything above is clamped).
const MAX_US: u64 = 120_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("histogram bounds")
}

/// A latency histogram (microsecond resolution) that many tasks record into; it is
/// sharded so that tasks rarely contend for one lock.
pub(crate) struct Latency {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }
}

impl Latency {
    /// Records one latency given in nanoseconds, from the task numbered `who`.
    pub(crate) fn record_ns(&self, who: usize, ns: u64) {
        let us = (ns / 1000).clamp(1, MAX_US);
        let mut h = self.shards[who % SHARDS].lock().unwrap();
        let _ = h.record(us);
    }

    /// Records many latencies (ns) at once: one lock for a batch.
    pub(crate) fn record_many_ns(&self, who: usize, ns: &[u64]) {
        if ns.is_empty() {
            return;
        }
        let mut h = self.shards[who % SHARDS].lock().unwrap();
        for &n in ns {
            let _ = h.record((n / 1000).clamp(1, MAX_US));
        }
    }

    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for s in &self.shards {
            let _ = all.add(&*s.lock().unwrap());
        }
        all
    }
}

/// Failures seen by any connection.
#[derive(Default)]
pub(crate) struct Errors {
    /// ERROR frames received.
    pub error_frames: AtomicU64,
    /// Connections that closed or failed while the bench still needed them.
    pub disconnects: AtomicU64,
    /// Connections that could not be opened (TCP, upgrade, CONNECT or SUBSCRIBE).
    pub connect_failures: AtomicU64,
    /// REST requests that failed or were answered with a non-2xx status.
    pub http_errors: AtomicU64,
    first: Mutex<Option<String>>,
    /// Distinct error messages with their counts (bounded).
    kinds: Mutex<Vec<(String, u64)>>,
}

impl Errors {
    fn note(&self, what: String) {
        {
            let mut first = self.first.lock().unwrap();
            if first.is_none() {
                *first = Some(what.clone());
            }
        }
        let mut kinds = self.kinds.lock().unwrap();
        if let Some(k) = kinds.iter_mut().find(|(m, _)| *m == what) {
            k.1 += 1;
        } else if kinds.len() < 16 {
            kinds.push((what, 1));
        }
    }

    pub(crate) fn error_frame(&self, message: String) {
        self.error_frames.fetch_add(1, Relaxed);
        self.note(format!("ERROR frame: {message}"));
    }

    pub(crate) fn disconnect(&self, why: String) {
        self.disconnects.fetch_add(1, Relaxed);
        self.note(format!("disconnect: {why}"));
    }

    pub(crate) fn connect_failure(&self, why: String) {
        self.connect_failures.fetch_add(1, Relaxed);
        self.note(format!("connect failed: {why}"));
    }

    pub(crate) fn http_error(&self, why: String) {
        self.http_errors.fetch_add(1, Relaxed);
        self.note(format!("HTTP: {why}"));
    }

    pub(crate) fn total(&self) -> u64 {
        self.http_errors.load(Relaxed)
            + self.error_frames.load(Relaxed)
            + self.disconnects.load(Relaxed)
            + self.connect_failures.load(Relaxed)
    }

    /// Adds the error counters (and the distinct messages) to a report.
    pub(crate) fn report(&self, r: &mut Report) {
        let ef = self.error_frames.load(Relaxed);
        let dc = self.disconnects.load(Relaxed);
        let cf = self.connect_failures.load(Relaxed);
        let he = self.http_errors.load(Relaxed);
        let mut human = format!("{ef} ERROR frames, {dc} disconnects, {cf} failed connects");
        if he > 0 {
            human.push_str(&format!(", {he} failed HTTP requests"));
        }
        r.field(
            "errors",
            json!({"error_frames": ef, "disconnects": dc, "connect_failures": cf,
                   "http_errors": he}),
            human.clone(),
        );
        if ef + dc + cf + he > 0 {
            r.fail(human);
        }
        let kinds = self.kinds.lock().unwrap();
        if !kinds.is_empty() {
            let list: Vec<Value> = kinds
                .iter()
                .map(|(m, n)| json!({"message": m, "count": n}))
                .collect();
            let human = kinds
                .iter()
                .map(|(m, n)| format!("\n    {n} x {m}"))
                .collect::<String>();
            r.field("error_kinds", Value::Array(list), human);
        }
    }
}

/// A scenario's result: named fields, each with a JSON value and a human rendering.
pub(crate) struct Report {
    scenario: &'static str,
    fields: Vec<(String, Value, String)>,
    /// Why a `--check` run fails (errors, nothing delivered, ...).
    failures: Vec<String>,
}

impl Report {
    pub(crate) fn new(scenario: &'static str) -> Report {
        Report {
            scenario,
            fields: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Marks the run as failed for `--check`.
    pub(crate) fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }

    pub(crate) fn failures(&self) -> Vec<String> {
        self.failures.clone()
    }

    pub(crate) fn field(&mut self, key: &str, value: Value, human: String) {
        self.fields.push((key.to_owned(), value, human));
    }

    /// A plain number, shown with `unit` and `decimals` digits.
    pub(crate) fn num(&mut self, key: &str, value: f64, decimals: usize, unit: &str) {
        let v = if value.is_finite() {
            json!(value)
        } else {
            Value::Null
        };
        self.field(key, v, format!("{value:.decimals$}{unit}"));
    }

    pub(crate) fn count(&mut self, key: &str, value: u64) {
        self.field(key, json!(value), value.to_string());
    }

    /// p50/p90/p99/p99.9/max/mean of a histogram of microseconds, in milliseconds.
    pub(crate) fn latency(&mut self, key: &str, h: &Histogram<u64>) {
        let (v, human) = latency_summary(h);
        self.field(key, v, human);
    }

    pub(crate) fn print(&self, as_json: bool) {
        if as_json {
            let mut m = Map::new();
            m.insert("scenario".into(), json!(self.scenario));
            for (k, v, _) in &self.fields {
                m.insert(k.clone(), v.clone());
            }
            println!("{}", Value::Object(m));
        } else {
            println!("== herald-bench {} ==", self.scenario);
            let width = self
                .fields
                .iter()
                .map(|(k, _, _)| k.len())
                .max()
                .unwrap_or(0);
            for (k, _, h) in &self.fields {
                println!("  {k:<width$}  {h}");
            }
        }
    }
}

/// p50/p90/p99/p99.9/max/mean of a histogram of microseconds, in milliseconds: as
/// JSON (null without samples) and as text.
pub(crate) fn latency_summary(h: &Histogram<u64>) -> (Value, String) {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return (Value::Null, "no samples".into());
    }
    let (p50, p90, p99, p999) = (
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
    );
    let max = ms(h.max());
    let mean = h.mean() / 1000.0;
    (
        json!({"samples": h.len(), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
               "p999_ms": p999, "max_ms": max, "mean_ms": mean}),
        format!(
            "p50 {p50:.3} ms, p90 {p90:.3} ms, p99 {p99:.3} ms, p99.9 {p999:.3} ms, \
             max {max:.3} ms, mean {mean:.3} ms ({} samples)",
            h.len()
        ),
    )
}

/// Human-readable byte count.
pub(crate) fn bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = n;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

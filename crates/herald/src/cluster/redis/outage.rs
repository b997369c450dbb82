//! How a Redis outage is told in the log: one line when it starts, one count every
//! few seconds while publishes fail, one line when it ends. A line per failed publish
//! would grow with the traffic; the exact numbers are metrics (`ops::metrics`).

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Between two count lines at least this long.
const EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(super) struct OutageLog {
    node: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the current outage began.
    since: Option<Instant>,
    last_line: Option<Instant>,
    /// Since the last line.
    failed: u64,
    refused: u64,
    /// Since the outage began.
    failed_total: u64,
    refused_total: u64,
}

impl OutageLog {
    pub(super) fn new(node: &str) -> OutageLog {
        OutageLog {
            node: node.to_owned(),
            state: Mutex::default(),
        }
    }

    pub(super) fn started(&self, why: &str) {
        let mut st = self.state.lock();
        if st.since.is_none() {
            let now = Instant::now();
            st.since = Some(now);
            st.last_line = Some(now);
            tracing::warn!(node = %self.node, reason = why,
                "Redis unreachable: publishes wait in the outage spool until it answers");
        }
    }

    /// `n` publishes could not reach Redis when sent (they went to the spool).
    pub(super) fn failed(&self, n: usize) {
        let mut st = self.state.lock();
        st.failed += n as u64;
        st.failed_total += n as u64;
    }

    /// `n` publishes were refused (spool full, confirmation timed out).
    pub(super) fn refused(&self, n: usize) {
        let mut st = self.state.lock();
        st.refused += n as u64;
        st.refused_total += n as u64;
    }

    /// Called every health tick: the count line, when one is due.
    pub(super) fn tick(&self, spooled: usize, spool_bytes: usize) {
        let mut st = self.state.lock();
        let now = Instant::now();
        let due = st.last_line.is_none_or(|t| now.duration_since(t) >= EVERY);
        if !due || (st.failed == 0 && st.refused == 0) {
            return;
        }
        let secs = st
            .last_line
            .map_or(EVERY, |t| now.duration_since(t))
            .as_secs_f64();
        tracing::warn!(node = %self.node, spooled, spool_bytes,
            "{} publishes failed in the last {secs:.0} s, {} refused", st.failed, st.refused);
        st.failed = 0;
        st.refused = 0;
        st.last_line = Some(now);
    }

    pub(super) fn ended(&self, spooled: usize) {
        let mut st = self.state.lock();
        if let Some(since) = st.since.take() {
            tracing::info!(node = %self.node, spooled,
                "Redis reachable again after {:.1} s: {} publishes failed meanwhile, {} refused; writing the spool",
                since.elapsed().as_secs_f64(), st.failed_total, st.refused_total);
        }
        *st = State::default();
    }
}

//! Prometheus metrics: every name Herald exports is declared here, once, with its
//! help text, and recorded through the small functions below so call sites stay one
//! line and the names cannot drift.
//!
//! Every family is registered when the recorder is installed, with each label value
//! it can take, so the first scrape of a fresh server lists all of them at 0 with
//! their HELP text: an alert or a panel on a family reads 0 rather than "no data"
//! until its first event. The exporter renders only what was registered; describing
//! a name is not enough.
//!
//! The recorder is process-global (the `metrics` facade); several servers in one
//! process (tests) share it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Counter, Gauge, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub(crate) const CONNECTIONS_OPENED: &str = "herald_connections_opened_total";
pub(crate) const CONNECTIONS: &str = "herald_connections";
pub(crate) const SESSIONS: &str = "herald_sessions";
pub(crate) const SUBSCRIPTIONS: &str = "herald_subscriptions";
pub(crate) const DESTINATIONS: &str = "herald_destinations";
pub(crate) const FRAMES_IN: &str = "herald_frames_in_total";
pub(crate) const FRAMES_OUT: &str = "herald_frames_out_total";
pub(crate) const BYTES_IN: &str = "herald_bytes_in_total";
pub(crate) const BYTES_OUT: &str = "herald_bytes_out_total";
pub(crate) const MESSAGES_PUBLISHED: &str = "herald_messages_published_total";
pub(crate) const MESSAGES_DELIVERED: &str = "herald_messages_delivered_total";
pub(crate) const MESSAGES_DROPPED: &str = "herald_messages_dropped_total";
pub(crate) const MESSAGES_DEAD_LETTERED: &str = "herald_messages_dead_lettered_total";
pub(crate) const SLOW_CONSUMER_CLOSES: &str = "herald_slow_consumer_closes_total";
// Producer flow control (stomp.outbound_high_water / outbound_low_water).
pub(crate) const PUBLISHERS_PAUSED: &str = "herald_publishers_paused";
pub(crate) const PUBLISHER_PAUSES: &str = "herald_publisher_pauses_total";
pub(crate) const ERRORS: &str = "herald_error_frames_total";
pub(crate) const AUTH_FAILURES: &str = "herald_auth_failures_total";
pub(crate) const HANDLER_SECONDS: &str = "herald_app_handler_seconds";
pub(crate) const BUS_PUBLISH_SECONDS: &str = "herald_bus_publish_seconds";
pub(crate) const BUS_ERRORS: &str = "herald_bus_publish_errors_total";
pub(crate) const REDIS_RECONNECTS: &str = "herald_redis_reconnects_total";
// The outage spool of the Redis bus (cluster.spool_max_bytes, cluster.publish_timeout).
pub(crate) const BUS_SPOOL_BYTES: &str = "herald_bus_spool_bytes";
pub(crate) const BUS_SPOOL_MESSAGES: &str = "herald_bus_spool_messages";
pub(crate) const BUS_REFUSED: &str = "herald_bus_publishes_refused_total";
pub(crate) const BUS_REPLAYED: &str = "herald_bus_publishes_replayed_total";
pub(crate) const BUS_HANDED_BACK: &str = "herald_bus_queue_handed_back_total";
pub(crate) const DB_SECONDS: &str = "herald_database_seconds";
pub(crate) const NOTIFICATIONS_CREATED: &str = "herald_notifications_created_total";
pub(crate) const NOTIFICATIONS_DELIVERED: &str = "herald_notifications_delivered_total";
// Resuming sessions (stomp.resume_window) and refreshing their tokens.
pub(crate) const RESUMES: &str = "herald_session_resumes_total";
pub(crate) const TOKEN_REFRESHES: &str = "herald_token_refreshes_total";

// Budgets: what clients can make the server hold, and how often a limit was reached.
pub(crate) const LIMIT_HITS: &str = "herald_limit_hits_total";
pub(crate) const QUEUED_MESSAGES: &str = "herald_queued_messages";
pub(crate) const QUEUED_BYTES: &str = "herald_queued_bytes";
pub(crate) const QUEUES: &str = "herald_queues";
pub(crate) const HISTORY_DESTINATIONS: &str = "herald_history_destinations";
pub(crate) const HISTORY_BYTES: &str = "herald_history_bytes";
pub(crate) const UNACKED: &str = "herald_unacked_deliveries";
// The demo chat rooms (apps.max_rooms, apps.room_idle_timeout).
pub(crate) const ROOMS: &str = "herald_rooms";

/// The `limit` label of [`LIMIT_HITS`]: the setting whose budget was reached.
const LIMITS: [&str; 16] = [
    "broker.queue_capacity",
    "broker.queue_max_bytes",
    "broker.queues_max_bytes",
    "broker.max_queues",
    "cluster.history_max_destinations",
    "cluster.history_max_bytes",
    "stomp.max_transactions",
    "stomp.transaction_max_frames",
    "stomp.transaction_max_bytes",
    "stomp.prefetch",
    "server.max_body",
    "notifications.max_recipients",
    "notifications.max_message",
    "notifications.max_payload",
    "apps.max_rooms",
    "stomp.resume_max_parked",
];
// The runtime: what the process keeps alive, read when /metrics is scraped. A task
// that outlives its session shows here first (`herald-bench churn` watches it).
pub(crate) const RUNTIME_TASKS: &str = "herald_runtime_tasks";
// Admission: accepted connections (HTTP and STOMP listeners), refusals, SockJS sessions.
pub(crate) const LISTENER_CONNECTIONS: &str = "herald_listener_connections";
pub(crate) const CONNECTIONS_REFUSED: &str = "herald_connections_refused_total";
pub(crate) const SOCKJS_SESSIONS: &str = "herald_sockjs_sessions";
// Destinations refused for a `[broker]` limit (length, segments, wildcards).
pub(crate) const DESTINATIONS_REFUSED: &str = "herald_destinations_refused_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once per process) and returns the handle `/metrics` renders.
pub(crate) fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .expect("bucket list is not empty")
                .install_recorder()
                .unwrap_or_else(|_| {
                    // Another recorder is installed (an embedding application's): render ours anyway.
                    PrometheusBuilder::new().build_recorder().handle()
                });
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(CONNECTIONS_OPENED, "Connections accepted, by transport");
    describe_gauge!(CONNECTIONS, "Open connections, by transport");
    describe_gauge!(SESSIONS, "Connected STOMP sessions");
    describe_gauge!(SUBSCRIPTIONS, "Active subscriptions");
    describe_gauge!(
        DESTINATIONS,
        "Destinations (routing keys and patterns) with subscribers"
    );
    describe_counter!(FRAMES_IN, "Frames received, by command");
    describe_counter!(FRAMES_OUT, "Frames sent, by command");
    describe_counter!(BYTES_IN, Unit::Bytes, "Bytes received by transports");
    describe_counter!(BYTES_OUT, Unit::Bytes, "Bytes written by transports");
    describe_counter!(
        MESSAGES_PUBLISHED,
        "Messages published to the broker, by destination kind (topic, queue)"
    );
    describe_counter!(
        MESSAGES_DELIVERED,
        "Message deliveries to subscriptions, by destination kind (topic, queue)"
    );
    describe_counter!(MESSAGES_DROPPED, "Messages not delivered, by reason");
    describe_counter!(
        MESSAGES_DEAD_LETTERED,
        "Queue messages that will not be redelivered, by reason (nack: NACK requeue:false; max-redeliveries: broker.max_redeliveries) and outcome (queued on the dead-letter queue, or dropped: broker.dead_letter is empty, the message was in a dead-letter queue already, or that queue is full)"
    );
    for reason in ["nack", "max-redeliveries"] {
        for outcome in ["queued", "dropped"] {
            counter!(MESSAGES_DEAD_LETTERED, "reason" => reason, "outcome" => outcome).increment(0);
        }
    }
    describe_counter!(SLOW_CONSUMER_CLOSES, "Sessions closed as slow consumers");
    describe_gauge!(
        PUBLISHERS_PAUSED,
        "Publishers (sessions, REST requests) waiting for a subscriber above its outbound high-water mark"
    );
    describe_counter!(
        PUBLISHER_PAUSES,
        "Times a publisher was paused by producer flow control"
    );
    describe_counter!(ERRORS, "ERROR frames sent, by reason");
    describe_counter!(AUTH_FAILURES, "Refused authentications, by stage");
    describe_histogram!(
        HANDLER_SECONDS,
        Unit::Seconds,
        "Application handler run time"
    );
    describe_histogram!(
        BUS_PUBLISH_SECONDS,
        Unit::Seconds,
        "Cluster bus publish latency"
    );
    describe_counter!(
        BUS_ERRORS,
        "Cluster bus publishes that could not reach Redis when sent (spooled or refused)"
    );
    describe_counter!(REDIS_RECONNECTS, "Reconnections to Redis");
    describe_gauge!(
        BUS_SPOOL_BYTES,
        Unit::Bytes,
        "Publishes waiting in the outage spool for Redis (limit cluster.spool_max_bytes)"
    );
    describe_gauge!(
        BUS_SPOOL_MESSAGES,
        "Messages waiting in the outage spool for Redis"
    );
    describe_counter!(
        BUS_REFUSED,
        "Publishes the cluster did not accept, by reason (spool_full, timeout, rejected, shutdown)"
    );
    describe_counter!(
        BUS_REPLAYED,
        "Publishes written to Redis from the outage spool"
    );
    describe_counter!(
        BUS_HANDED_BACK,
        "Unacked cluster queue messages handed back to the queue when their session ended"
    );
    describe_histogram!(DB_SECONDS, Unit::Seconds, "Database query latency");
    describe_counter!(NOTIFICATIONS_CREATED, "Notifications persisted");
    describe_counter!(
        NOTIFICATIONS_DELIVERED,
        "Notification deliveries to sessions"
    );
    describe_counter!(
        RESUMES,
        "CONNECTs that asked to resume a session, by outcome (resumed, unknown, other_user, failed)"
    );
    describe_counter!(
        TOKEN_REFRESHES,
        "Fresh tokens handed in on live sessions, by outcome (accepted, refused)"
    );
    describe_gauge!(
        LISTENER_CONNECTIONS,
        "Accepted connections open, by listener (limits.max_connections)"
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections and session requests refused at admission, by reason"
    );
    describe_gauge!(
        SOCKJS_SESSIONS,
        "SockJS sessions of the HTTP transports (sockjs.max_sessions)"
    );
    describe_gauge!(
        RUNTIME_TASKS,
        "Tasks alive in the tokio runtime that serves /metrics"
    );
    describe_counter!(
        DESTINATIONS_REFUSED,
        "Destinations refused for a broker limit, by limit"
    );
    describe_budgets();
    register_at_zero();
}

/// The `reason` label of [`MESSAGES_DROPPED`].
const DROP_REASONS: [&str; 1] = ["queue_full"];
/// The `stage` label of [`AUTH_FAILURES`].
const AUTH_STAGES: [&str; 2] = ["handshake", "connect"];
/// The `operation` label of [`DB_SECONDS`].
const DB_OPERATIONS: [&str; 2] = ["insert", "list"];
/// The `reason` label of [`BUS_REFUSED`].
const BUS_REFUSALS: [&str; 4] = ["spool_full", "timeout", "rejected", "shutdown"];
/// The `limit` label of [`DESTINATIONS_REFUSED`] (`destination::LimitError::limit`).
const DESTINATION_LIMITS: [&str; 3] = ["length", "segments", "wildcards"];
/// The `reason` label of [`CONNECTIONS_REFUSED`]: the admission's refusal codes.
const REFUSALS: [&str; 10] = [
    "protected_mode",
    "host_not_allowed",
    "origin_not_allowed",
    "cross_site",
    "unauthorized",
    "sockjs_session_owner",
    "max_connections",
    "max_connections_per_ip",
    "sockjs_max_sessions",
    "sockjs_max_sessions_per_ip",
];
/// The `outcome` label of [`RESUMES`].
const RESUME_OUTCOMES: [&str; 4] = ["resumed", "unknown", "other_user", "failed"];

/// The `kind` label of [`MESSAGES_PUBLISHED`] and [`MESSAGES_DELIVERED`].
const KINDS: [&str; 2] = ["topic", "queue"];

/// Every family (but those [`describe_budgets`] registers), with each of its label
/// values, at 0. Gauges are moved by 0, never set, so nothing counted before
/// (another server of the process) is lost.
fn register_at_zero() {
    for t in TRANSPORTS {
        counter!(CONNECTIONS_OPENED, "transport" => t).increment(0);
        gauge!(CONNECTIONS, "transport" => t).increment(0.0);
    }
    for l in LISTENERS {
        gauge!(LISTENER_CONNECTIONS, "listener" => l).increment(0.0);
    }
    for c in COMMANDS {
        counter!(FRAMES_IN, "command" => c).increment(0);
        counter!(FRAMES_OUT, "command" => c).increment(0);
    }
    for k in KINDS {
        counter!(MESSAGES_PUBLISHED, "kind" => k).increment(0);
        counter!(MESSAGES_DELIVERED, "kind" => k).increment(0);
    }
    for r in DROP_REASONS {
        counter!(MESSAGES_DROPPED, "reason" => r).increment(0);
    }
    for k in crate::error::ErrorKind::ALL {
        counter!(ERRORS, "reason" => k.as_str()).increment(0);
    }
    for s in AUTH_STAGES {
        counter!(AUTH_FAILURES, "stage" => s).increment(0);
    }
    for o in DB_OPERATIONS {
        // Registered by taking its handle.
        let _ = histogram!(DB_SECONDS, "operation" => o);
    }
    for r in BUS_REFUSALS {
        counter!(BUS_REFUSED, "reason" => r).increment(0);
    }
    for l in DESTINATION_LIMITS {
        counter!(DESTINATIONS_REFUSED, "limit" => l).increment(0);
    }
    for r in REFUSALS {
        counter!(CONNECTIONS_REFUSED, "reason" => r).increment(0);
    }
    for o in RESUME_OUTCOMES {
        counter!(RESUMES, "outcome" => o).increment(0);
    }
    for o in ["accepted", "refused"] {
        counter!(TOKEN_REFRESHES, "outcome" => o).increment(0);
    }
    for c in [
        BYTES_IN,
        BYTES_OUT,
        SLOW_CONSUMER_CLOSES,
        PUBLISHER_PAUSES,
        BUS_ERRORS,
        REDIS_RECONNECTS,
        BUS_REPLAYED,
        BUS_HANDED_BACK,
        NOTIFICATIONS_CREATED,
        NOTIFICATIONS_DELIVERED,
    ] {
        counter!(c).increment(0);
    }
    for g in [
        SESSIONS,
        SUBSCRIPTIONS,
        DESTINATIONS,
        PUBLISHERS_PAUSED,
        BUS_SPOOL_BYTES,
        BUS_SPOOL_MESSAGES,
        SOCKJS_SESSIONS,
        RUNTIME_TASKS,
        ROOMS,
    ] {
        gauge!(g).increment(0.0);
    }
    for h in [HANDLER_SECONDS, BUS_PUBLISH_SECONDS] {
        let _ = histogram!(h);
    }
}

/// The budget families, registered at zero so they read 0 before the first event.
fn describe_budgets() {
    describe_counter!(
        LIMIT_HITS,
        "Times a budget was reached, by its setting: the client got an ERROR (or 503), a queue dropped its oldest message, or history dropped a destination"
    );
    for limit in LIMITS {
        counter!(LIMIT_HITS, "limit" => limit).increment(0);
    }
    describe_gauge!(QUEUED_MESSAGES, "Messages waiting in queues");
    describe_gauge!(
        QUEUED_BYTES,
        Unit::Bytes,
        "Bytes of messages waiting in queues"
    );
    describe_gauge!(QUEUES, "Queues holding messages or a round-robin position");
    describe_gauge!(HISTORY_DESTINATIONS, "Destinations with a history ring");
    describe_gauge!(
        HISTORY_BYTES,
        Unit::Bytes,
        "Bytes of messages kept in history rings"
    );
    describe_gauge!(UNACKED, "Deliveries waiting for an ACK or NACK");
    describe_gauge!(ROOMS, "Chat rooms of the demo apps, in the cluster");
    budgets(&Budgets::default());
}

/// What the budgets hold now, read when `/metrics` is rendered (so the publish path
/// pays nothing for the gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budgets {
    pub queued_messages: usize,
    pub queued_bytes: usize,
    pub queues: usize,
    pub history_destinations: usize,
    pub history_bytes: usize,
    pub unacked: usize,
}

pub(crate) fn budgets(b: &Budgets) {
    gauge!(QUEUED_MESSAGES).set(b.queued_messages as f64);
    gauge!(QUEUED_BYTES).set(b.queued_bytes as f64);
    gauge!(QUEUES).set(b.queues as f64);
    gauge!(HISTORY_DESTINATIONS).set(b.history_destinations as f64);
    gauge!(HISTORY_BYTES).set(b.history_bytes as f64);
    gauge!(UNACKED).set(b.unacked as f64);
}

/// How many chat rooms exist (as last counted by this node).
pub(crate) fn rooms(n: usize) {
    gauge!(ROOMS).set(n as f64);
}

/// A CONNECT asked to resume a session: `outcome` is "resumed", "unknown" (no such
/// session: never given, taken, or its window passed), "other_user" or "failed"
/// (the cluster could not be asked).
pub(crate) fn session_resume(outcome: &'static str) {
    counter!(RESUMES, "outcome" => outcome).increment(1);
}

/// A session handed in a fresh token: accepted, or refused (the session ends).
pub(crate) fn token_refresh(accepted: bool) {
    let outcome = if accepted { "accepted" } else { "refused" };
    counter!(TOKEN_REFRESHES, "outcome" => outcome).increment(1);
}

/// A budget was reached; `limit` is its setting (one of [`LIMITS`]).
pub(crate) fn limit_hit(limit: &'static str) {
    static HITS: PerLabel<Counter, 16> = PerLabel::new(LIMITS);
    HITS.with(
        limit,
        || counter!(LIMIT_HITS, "limit" => limit),
        |c| c.increment(1),
    );
}

/// A metric handle looked up once. Looking a metric up by name (and labels) costs a
/// key build, a hash and a registry lock on every call; the hot paths (every frame,
/// every write, every publish, every connection) keep the handle instead. Handles
/// are kept only once a recorder is installed: one taken earlier would stay a no-op.
struct Cached<T>(OnceLock<T>);

impl<T> Cached<T> {
    const fn new() -> Self {
        Cached(OnceLock::new())
    }

    fn with(&self, make: impl FnOnce() -> T, f: impl FnOnce(&T)) {
        match self.0.get() {
            Some(h) => f(h),
            None if HANDLE.get().is_some() => f(self.0.get_or_init(make)),
            None => f(&make()),
        }
    }
}

/// Handles per value of a label with a known, short list of values; other values
/// are looked up each time.
struct PerLabel<T, const N: usize> {
    values: [&'static str; N],
    handles: [Cached<T>; N],
}

impl<T, const N: usize> PerLabel<T, N> {
    const fn new(values: [&'static str; N]) -> Self {
        PerLabel {
            values,
            handles: [const { Cached::new() }; N],
        }
    }

    fn with(&self, value: &'static str, make: impl FnOnce() -> T, f: impl FnOnce(&T)) {
        match self.values.iter().position(|v| *v == value) {
            Some(i) => self.handles[i].with(make, f),
            None => f(&make()),
        }
    }
}

const TRANSPORTS: [&str; 4] = ["websocket", "sockjs", "tcp", "other"];
const COMMANDS: [&str; 15] = herald_stomp::Command::NAMES;

pub(crate) fn connection_opened(transport: &'static str) {
    static OPENED: PerLabel<Counter, 4> = PerLabel::new(TRANSPORTS);
    static OPEN: PerLabel<Gauge, 4> = PerLabel::new(TRANSPORTS);
    OPENED.with(
        transport,
        || counter!(CONNECTIONS_OPENED, "transport" => transport),
        |c| c.increment(1),
    );
    OPEN.with(
        transport,
        || gauge!(CONNECTIONS, "transport" => transport),
        |g| g.increment(1.0),
    );
}

pub(crate) fn connection_closed(transport: &'static str) {
    static OPEN: PerLabel<Gauge, 4> = PerLabel::new(TRANSPORTS);
    OPEN.with(
        transport,
        || gauge!(CONNECTIONS, "transport" => transport),
        |g| g.decrement(1.0),
    );
}

static SESSIONS_GAUGE: Cached<Gauge> = Cached::new();

pub(crate) fn session_connected() {
    SESSIONS_GAUGE.with(|| gauge!(SESSIONS), |g| g.increment(1.0));
}

pub(crate) fn session_ended() {
    SESSIONS_GAUGE.with(|| gauge!(SESSIONS), |g| g.decrement(1.0));
}

pub(crate) fn frame_in(command: &'static str) {
    static IN: PerLabel<Counter, 15> = PerLabel::new(COMMANDS);
    IN.with(
        command,
        || counter!(FRAMES_IN, "command" => command),
        |c| c.increment(1),
    );
}

pub(crate) fn frames_out(command: &'static str, n: u64) {
    static OUT: PerLabel<Counter, 15> = PerLabel::new(COMMANDS);
    OUT.with(
        command,
        || counter!(FRAMES_OUT, "command" => command),
        |c| c.increment(n),
    );
}

pub(crate) fn bytes_in(n: usize) {
    static C: Cached<Counter> = Cached::new();
    C.with(|| counter!(BYTES_IN), |c| c.increment(n as u64));
}

pub(crate) fn bytes_out(n: usize) {
    static C: Cached<Counter> = Cached::new();
    C.with(|| counter!(BYTES_OUT), |c| c.increment(n as u64));
}

/// One publish to a destination of `kind` ("topic" or "queue") that reached
/// `delivered` subscriptions.
pub(crate) fn published(kind: &'static str, delivered: usize) {
    static PUBLISHED: PerLabel<Counter, 2> = PerLabel::new(KINDS);
    static DELIVERED: PerLabel<Counter, 2> = PerLabel::new(KINDS);
    PUBLISHED.with(
        kind,
        || counter!(MESSAGES_PUBLISHED, "kind" => kind),
        |c| c.increment(1),
    );
    DELIVERED.with(
        kind,
        || counter!(MESSAGES_DELIVERED, "kind" => kind),
        |c| c.increment(delivered as u64),
    );
    frames_out("MESSAGE", delivered as u64);
}

pub(crate) fn dropped(reason: &'static str) {
    counter!(MESSAGES_DROPPED, "reason" => reason).increment(1);
}

/// A queue message became a dead letter for `reason`, and was `outcome` ("queued"
/// on its dead-letter queue or "dropped").
pub(crate) fn dead_lettered(reason: &'static str, outcome: &'static str) {
    counter!(MESSAGES_DEAD_LETTERED, "reason" => reason, "outcome" => outcome).increment(1);
}

/// An ERROR frame that ended a session, counted by its kind.
pub(crate) fn error_frame(kind: crate::error::ErrorKind) {
    counter!(ERRORS, "reason" => kind.as_str()).increment(1);
    if kind == crate::error::ErrorKind::SlowConsumer {
        counter!(SLOW_CONSUMER_CLOSES).increment(1);
    }
}

/// A publisher started (`true`) or stopped waiting for a subscriber (flow control).
pub(crate) fn publisher_paused(paused: bool) {
    static PAUSED: Cached<Gauge> = Cached::new();
    static PAUSES: Cached<Counter> = Cached::new();
    if paused {
        PAUSES.with(|| counter!(PUBLISHER_PAUSES), |c| c.increment(1));
        PAUSED.with(|| gauge!(PUBLISHERS_PAUSED), |g| g.increment(1.0));
    } else {
        PAUSED.with(|| gauge!(PUBLISHERS_PAUSED), |g| g.decrement(1.0));
    }
}

pub(crate) fn auth_failure(stage: &'static str) {
    counter!(AUTH_FAILURES, "stage" => stage).increment(1);
}

/// What only the Redis bus records: a build without the `redis` feature has no such
/// bus.
#[cfg(feature = "redis")]
mod bus {
    use super::*;

    pub(crate) fn bus_publish_time(elapsed: Duration) {
        histogram!(BUS_PUBLISH_SECONDS).record(elapsed.as_secs_f64());
    }

    pub(crate) fn bus_errors(n: usize) {
        counter!(BUS_ERRORS).increment(n as u64);
    }

    pub(crate) fn redis_reconnected() {
        counter!(REDIS_RECONNECTS).increment(1);
    }

    pub(crate) fn bus_spool(messages: usize, bytes: usize) {
        gauge!(BUS_SPOOL_MESSAGES).set(messages as f64);
        gauge!(BUS_SPOOL_BYTES).set(bytes as f64);
    }

    pub(crate) fn bus_refused(reason: &'static str, n: usize) {
        counter!(BUS_REFUSED, "reason" => reason).increment(n as u64);
    }

    pub(crate) fn bus_replayed(n: usize) {
        counter!(BUS_REPLAYED).increment(n as u64);
    }

    pub(crate) fn bus_handed_back(n: usize) {
        counter!(BUS_HANDED_BACK).increment(n as u64);
    }
}
#[cfg(feature = "redis")]
pub(crate) use bus::*;

pub(crate) fn database_time(operation: &'static str, elapsed: Duration) {
    histogram!(DB_SECONDS, "operation" => operation).record(elapsed.as_secs_f64());
}

pub(crate) fn notifications_created(n: usize) {
    counter!(NOTIFICATIONS_CREATED).increment(n as u64);
}

pub(crate) fn notifications_delivered(n: usize) {
    counter!(NOTIFICATIONS_DELIVERED).increment(n as u64);
}

pub(crate) fn destination_refused(limit: &'static str) {
    counter!(DESTINATIONS_REFUSED, "limit" => limit).increment(1);
}

pub(crate) fn handler_time(elapsed: Duration) {
    histogram!(HANDLER_SECONDS).record(elapsed.as_secs_f64());
}

pub(crate) fn registry_size(subscriptions: usize, destinations: usize) {
    gauge!(SUBSCRIPTIONS).set(subscriptions as f64);
    gauge!(DESTINATIONS).set(destinations as f64);
}

/// Sets the runtime gauges from the runtime this runs on (the server's: /metrics is
/// one of its tasks).
pub(crate) fn runtime_size() {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        gauge!(RUNTIME_TASKS).set(rt.metrics().num_alive_tasks() as f64);
    }
}

const LISTENERS: [&str; 2] = ["http", "stomp"];
static LISTENER_OPEN: PerLabel<Gauge, 2> = PerLabel::new(LISTENERS);

pub(crate) fn connection_accepted(listener: &'static str) {
    LISTENER_OPEN.with(
        listener,
        || gauge!(LISTENER_CONNECTIONS, "listener" => listener),
        |g| g.increment(1.0),
    );
}

pub(crate) fn connection_released(listener: &'static str) {
    LISTENER_OPEN.with(
        listener,
        || gauge!(LISTENER_CONNECTIONS, "listener" => listener),
        |g| g.decrement(1.0),
    );
}

/// `reason` is a refusal's code (`protected_mode`, `max_connections`, `origin_not_allowed`...).
pub(crate) fn connection_refused(reason: &'static str) {
    counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

static SOCKJS_GAUGE: Cached<Gauge> = Cached::new();

pub(crate) fn sockjs_session_opened() {
    SOCKJS_GAUGE.with(|| gauge!(SOCKJS_SESSIONS), |g| g.increment(1.0));
}

pub(crate) fn sockjs_session_closed() {
    SOCKJS_GAUGE.with(|| gauge!(SOCKJS_SESSIONS), |g| g.decrement(1.0));
}

//! Prometheus metrics: every name Herald exports is declared here, once, with its
//! help text, and recorded through the small functions below so call sites stay one
//! line and the names cannot drift.
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

pub const CONNECTIONS_OPENED: &str = "herald_connections_opened_total";
pub const CONNECTIONS: &str = "herald_connections";
pub const SESSIONS: &str = "herald_sessions";
pub const SUBSCRIPTIONS: &str = "herald_subscriptions";
pub const DESTINATIONS: &str = "herald_destinations";
pub const FRAMES_IN: &str = "herald_frames_in_total";
pub const FRAMES_OUT: &str = "herald_frames_out_total";
pub const BYTES_IN: &str = "herald_bytes_in_total";
pub const BYTES_OUT: &str = "herald_bytes_out_total";
pub const MESSAGES_PUBLISHED: &str = "herald_messages_published_total";
pub const MESSAGES_DELIVERED: &str = "herald_messages_delivered_total";
pub const MESSAGES_DROPPED: &str = "herald_messages_dropped_total";
pub const SLOW_CONSUMER_CLOSES: &str = "herald_slow_consumer_closes_total";
pub const ERRORS: &str = "herald_error_frames_total";
pub const AUTH_FAILURES: &str = "herald_auth_failures_total";
pub const HANDLER_SECONDS: &str = "herald_app_handler_seconds";
pub const BUS_PUBLISH_SECONDS: &str = "herald_bus_publish_seconds";
pub const BUS_ERRORS: &str = "herald_bus_publish_errors_total";
pub const REDIS_RECONNECTS: &str = "herald_redis_reconnects_total";
pub const DB_SECONDS: &str = "herald_database_seconds";
pub const NOTIFICATIONS_CREATED: &str = "herald_notifications_created_total";
pub const NOTIFICATIONS_DELIVERED: &str = "herald_notifications_delivered_total";

// Admission: accepted connections (HTTP and STOMP listeners), refusals, SockJS sessions.
pub const LISTENER_CONNECTIONS: &str = "herald_listener_connections";
pub const CONNECTIONS_REFUSED: &str = "herald_connections_refused_total";
pub const SOCKJS_SESSIONS: &str = "herald_sockjs_sessions";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once per process) and returns the handle `/metrics` renders.
pub fn install() -> PrometheusHandle {
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
    describe_counter!(MESSAGES_PUBLISHED, "Messages published to the broker");
    describe_counter!(MESSAGES_DELIVERED, "Message deliveries to subscriptions");
    describe_counter!(MESSAGES_DROPPED, "Messages not delivered, by reason");
    describe_counter!(SLOW_CONSUMER_CLOSES, "Sessions closed as slow consumers");
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
    describe_counter!(BUS_ERRORS, "Cluster bus publishes that failed");
    describe_counter!(REDIS_RECONNECTS, "Reconnections to Redis");
    describe_histogram!(DB_SECONDS, Unit::Seconds, "Database query latency");
    describe_counter!(NOTIFICATIONS_CREATED, "Notifications persisted");
    describe_counter!(
        NOTIFICATIONS_DELIVERED,
        "Notification deliveries to sessions"
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
const COMMANDS: [&str; 15] = [
    "CONNECT",
    "STOMP",
    "SEND",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "ACK",
    "NACK",
    "BEGIN",
    "COMMIT",
    "ABORT",
    "DISCONNECT",
    "CONNECTED",
    "MESSAGE",
    "RECEIPT",
    "ERROR",
];

pub fn connection_opened(transport: &'static str) {
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

pub fn connection_closed(transport: &'static str) {
    static OPEN: PerLabel<Gauge, 4> = PerLabel::new(TRANSPORTS);
    OPEN.with(
        transport,
        || gauge!(CONNECTIONS, "transport" => transport),
        |g| g.decrement(1.0),
    );
}

static SESSIONS_GAUGE: Cached<Gauge> = Cached::new();

pub fn session_connected() {
    SESSIONS_GAUGE.with(|| gauge!(SESSIONS), |g| g.increment(1.0));
}

pub fn session_ended() {
    SESSIONS_GAUGE.with(|| gauge!(SESSIONS), |g| g.decrement(1.0));
}

pub fn frame_in(command: &'static str) {
    static IN: PerLabel<Counter, 15> = PerLabel::new(COMMANDS);
    IN.with(
        command,
        || counter!(FRAMES_IN, "command" => command),
        |c| c.increment(1),
    );
}

pub fn frames_out(command: &'static str, n: u64) {
    static OUT: PerLabel<Counter, 15> = PerLabel::new(COMMANDS);
    OUT.with(
        command,
        || counter!(FRAMES_OUT, "command" => command),
        |c| c.increment(n),
    );
}

pub fn bytes_in(n: usize) {
    static C: Cached<Counter> = Cached::new();
    C.with(|| counter!(BYTES_IN), |c| c.increment(n as u64));
}

pub fn bytes_out(n: usize) {
    static C: Cached<Counter> = Cached::new();
    C.with(|| counter!(BYTES_OUT), |c| c.increment(n as u64));
}

/// One publish that reached `delivered` subscriptions.
pub fn published(delivered: usize) {
    static PUBLISHED: Cached<Counter> = Cached::new();
    static DELIVERED: Cached<Counter> = Cached::new();
    PUBLISHED.with(|| counter!(MESSAGES_PUBLISHED), |c| c.increment(1));
    DELIVERED.with(
        || counter!(MESSAGES_DELIVERED),
        |c| c.increment(delivered as u64),
    );
    frames_out("MESSAGE", delivered as u64);
}

pub fn dropped(reason: &'static str) {
    counter!(MESSAGES_DROPPED, "reason" => reason).increment(1);
}

pub fn error_frame(reason: &'static str) {
    counter!(ERRORS, "reason" => reason).increment(1);
    if reason == "slow_consumer" {
        counter!(SLOW_CONSUMER_CLOSES).increment(1);
    }
}

pub fn auth_failure(stage: &'static str) {
    counter!(AUTH_FAILURES, "stage" => stage).increment(1);
}

pub fn bus_publish_time(elapsed: Duration) {
    histogram!(BUS_PUBLISH_SECONDS).record(elapsed.as_secs_f64());
}

pub fn bus_errors(n: usize) {
    counter!(BUS_ERRORS).increment(n as u64);
}

pub fn redis_reconnected() {
    counter!(REDIS_RECONNECTS).increment(1);
}

pub fn database_time(operation: &'static str, elapsed: Duration) {
    histogram!(DB_SECONDS, "operation" => operation).record(elapsed.as_secs_f64());
}

pub fn notifications_created(n: usize) {
    counter!(NOTIFICATIONS_CREATED).increment(n as u64);
}

pub fn notifications_delivered(n: usize) {
    counter!(NOTIFICATIONS_DELIVERED).increment(n as u64);
}

pub fn handler_time(elapsed: Duration) {
    histogram!(HANDLER_SECONDS).record(elapsed.as_secs_f64());
}

pub fn registry_size(subscriptions: usize, destinations: usize) {
    gauge!(SUBSCRIPTIONS).set(subscriptions as f64);
    gauge!(DESTINATIONS).set(destinations as f64);
}

const LISTENERS: [&str; 2] = ["http", "stomp"];
static LISTENER_OPEN: PerLabel<Gauge, 2> = PerLabel::new(LISTENERS);

pub fn connection_accepted(listener: &'static str) {
    LISTENER_OPEN.with(
        listener,
        || gauge!(LISTENER_CONNECTIONS, "listener" => listener),
        |g| g.increment(1.0),
    );
}

pub fn connection_released(listener: &'static str) {
    LISTENER_OPEN.with(
        listener,
        || gauge!(LISTENER_CONNECTIONS, "listener" => listener),
        |g| g.decrement(1.0),
    );
}

/// `reason` is a refusal's code (`protected_mode`, `max_connections`, `origin_not_allowed`...).
pub fn connection_refused(reason: &'static str) {
    counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

static SOCKJS_GAUGE: Cached<Gauge> = Cached::new();

pub fn sockjs_session_opened() {
    SOCKJS_GAUGE.with(|| gauge!(SOCKJS_SESSIONS), |g| g.increment(1.0));
}

pub fn sockjs_session_closed() {
    SOCKJS_GAUGE.with(|| gauge!(SOCKJS_SESSIONS), |g| g.decrement(1.0));
}

/// A low-cardinality label for an ERROR frame's message.
pub fn error_reason(message: &str) -> &'static str {
    const KINDS: &[(&str, &str)] = &[
        ("slow consumer", "slow_consumer"),
        ("heart-beat timeout", "heartbeat_timeout"),
        ("server shutting down", "shutdown"),
        ("disconnected by an administrator", "admin"),
        ("authentication failed", "auth"),
        ("token expired", "token_expired"),
        ("access denied", "access_denied"),
        ("too many", "limit"),
        ("frame rate limit", "limit"),
        ("no CONNECT frame", "connect_timeout"),
        ("unknown destination", "destination"),
        ("no application handler", "handler"),
        ("invalid payload", "handler"),
        ("handler", "handler"),
        ("backend", "handler"),
    ];
    KINDS
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map_or("protocol", |(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_are_classified() {
        use super::error_reason;
        assert_eq!(
            error_reason("slow consumer: more than 10 bytes"),
            "slow_consumer"
        );
        assert_eq!(error_reason("unknown command 'FOO'"), "protocol");
        assert_eq!(error_reason("access denied: SEND to '/x'"), "access_denied");
    }
}

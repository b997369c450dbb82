//! This server node: its id, settings and the services every session shares.
//! One `Arc<Node>` is handed to every transport and session; nothing here is per
//! connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::admission::Gate;
use crate::auth::Auth;
use crate::auth::limits::Counter;
use crate::broker::Broker;
use crate::cluster::Bus;
use crate::config::Config;
use crate::handler::backend::Backend;
use crate::handler::{BoxFuture, Handlers, Messaging};
use crate::ops::sessions::SessionRegistry;
use crate::router::Router;

/// A dependency check for `/health/ready`: `Err` says what is wrong.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<Result<(), String>> + Send + Sync>;

pub struct Node {
    pub id: String,
    pub config: Config,
    pub broker: Arc<Broker>,
    pub router: Arc<Router>,
    /// Publishing from server code (handlers, REST API).
    pub messaging: Messaging,
    /// In-process application handlers.
    pub handlers: Handlers,
    /// The HTTP backend that owns the application destinations no handler matched.
    pub backend: Option<Backend>,
    pub auth: Auth,
    /// Who may come in: protected mode, connection budgets, hosts, origins.
    pub gate: Gate,
    /// Sessions per user (auth limits).
    pub sessions_per_user: Arc<Counter<String>>,
    /// The notification service, set by `Server::bind` when `notifications.enabled`.
    pub notifications: std::sync::OnceLock<Arc<crate::notify::Notifier>>,
    /// Live sessions, for the admin API.
    pub sessions: SessionRegistry,
    /// How many ended sessions this node keeps for resuming (`stomp.resume_max_parked`).
    pub(crate) parking: crate::cluster::ParkBudget,
    /// The resume token of each live session on this node → its session id: a
    /// client resuming a session whose old connection is not known to be gone yet
    /// (half-open) ends that one first.
    pub(crate) live_tokens: parking_lot::Mutex<std::collections::HashMap<String, String>>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    pub started: Instant,
    ready_checks: RwLock<Vec<(&'static str, ReadyCheck)>>,
    next_session: AtomicU64,
}

impl Node {
    /// Fails when a configured key cannot be loaded.
    pub fn new(mut config: Config, handlers: Handlers) -> Result<Arc<Node>, String> {
        if config.server.node_id.is_empty() {
            config.server.node_id = generated_id();
        }
        let id = config.server.node_id.clone();
        let bus = new_bus(&config, &id)?;
        let broker = Arc::new(Broker::new(config.broker.clone(), id.clone(), bus.clone()));
        // The broker is the bus's sink: what other nodes publish comes in through it.
        let sink: std::sync::Weak<Broker> = Arc::downgrade(&broker);
        bus.attach(sink);
        let router = Arc::new(Router::new(&config.broker, &config.routing));
        Ok(Arc::new(Node {
            messaging: Messaging::new(broker.clone(), router.clone(), config.stomp.send_timeout),
            backend: Backend::new(&config.apps.backend),
            auth: config.new_auth()?,
            gate: config.new_gate()?,
            sessions_per_user: Counter::new(config.limits.max_connections_per_user),
            sessions: SessionRegistry::default(),
            live_tokens: Default::default(),
            parking: crate::cluster::ParkBudget::new(
                config.stomp.resume_window,
                config.stomp.resume_max_parked,
            ),
            metrics: crate::ops::metrics::install(),
            started: Instant::now(),
            ready_checks: RwLock::new(Vec::new()),
            broker,
            router,
            handlers,
            id,
            config,
            next_session: AtomicU64::new(1),
            notifications: std::sync::OnceLock::new(),
        }))
    }

    /// Adds a dependency `/health/ready` checks (the cluster bus, the database).
    pub fn add_ready_check(&self, name: &'static str, check: ReadyCheck) {
        self.ready_checks.write().push((name, check));
    }

    /// Every readiness check's result.
    pub async fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let checks: Vec<_> = self
            .ready_checks
            .read()
            .iter()
            .map(|(n, c)| (*n, c.clone()))
            .collect();
        let mut results = Vec::with_capacity(checks.len());
        for (name, check) in checks {
            results.push((name, check().await));
        }
        results
    }

    /// A session id unique on this node and, with the node id, in a cluster.
    pub fn next_session_id(&self) -> String {
        format!(
            "{}-s{}",
            self.id,
            self.next_session.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Sixteen random hex digits (64 bits of a v4 UUID): node ids prefix session and
/// message ids, so they must not collide across a cluster (for 1000 nodes the odds
/// of a collision are about 3e-14).
fn generated_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// The bus `config` asks for: Redis when `cluster.redis_url` is set, else local.
fn new_bus(config: &Config, node_id: &str) -> Result<Arc<dyn Bus>, String> {
    let cluster = &config.cluster;
    if cluster.redis_url.is_empty() {
        return Ok(Arc::new(crate::cluster::local::LocalBus::new(cluster)));
    }
    #[cfg(feature = "redis")]
    {
        Ok(Arc::new(crate::cluster::redis::RedisBus::new(
            cluster,
            node_id,
            &config.routing.user_prefix,
            config.broker.queue_capacity,
        )?))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = node_id;
        Err(
            "cluster.redis_url is set, but this herald was built without the 'redis' feature"
                .into(),
        )
    }
}

/// Logs one line of statistics (like Spring's `WebSocketMessageBrokerStats`) every `interval` until shutdown; also keeps the
/// metrics recorder's histograms drained.
pub async fn stats_loop(node: Arc<Node>, interval: Duration, shutdown: CancellationToken) {
    let mut upkeep = tokio::time::interval(Duration::from_secs(5));
    let mut stats = tokio::time::interval(interval);
    stats.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = upkeep.tick() => node.metrics.run_upkeep(),
            _ = stats.tick() => {
                let by_transport: Vec<String> = node
                    .sessions
                    .by_transport()
                    .into_iter()
                    .map(|(t, n)| format!("{t}={n}"))
                    .collect();
                tracing::info!(
                    sessions = node.sessions.len(),
                    transports = %by_transport.join(","),
                    subscriptions = node.broker.subscription_count(),
                    destinations = node.broker.destination_count(),
                    uptime_s = node.started.elapsed().as_secs(),
                    "stats"
                );
            }
        }
    }
}

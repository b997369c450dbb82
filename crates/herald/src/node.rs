//! This server node: its id, settings and the services every session shares.
//! One `Arc<Node>` is handed to every transport and session; nothing here is per
//! connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::net::IpAddr;

use crate::auth::Auth;
use crate::auth::limits::Counter;
use crate::auth::origin::Origins;
use crate::broker::Broker;
use crate::config::Config;
use crate::handler::backend::Backend;
use crate::handler::{Handlers, Messaging};
use crate::router::Router;

#[derive(Debug)]
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
    pub origins: Origins,
    /// Open connections per client IP and sessions per user (auth limits).
    pub connections_per_ip: Arc<Counter<IpAddr>>,
    pub sessions_per_user: Arc<Counter<String>>,
    next_session: AtomicU64,
}

impl Node {
    /// Fails when a configured key cannot be loaded.
    pub fn new(mut config: Config, handlers: Handlers) -> Result<Arc<Node>, String> {
        if config.server.node_id.is_empty() {
            config.server.node_id = generated_id();
        }
        let id = config.server.node_id.clone();
        let broker = Arc::new(Broker::new(config.broker.clone(), id.clone()));
        let router = Arc::new(Router::new(&config.broker, &config.routing));
        Ok(Arc::new(Node {
            messaging: Messaging::new(broker.clone(), router.clone()),
            backend: Backend::new(&config.apps.backend),
            auth: Auth::new(&config.auth)?,
            origins: Origins::new(&config.auth.allowed_origins),
            connections_per_ip: Counter::new(config.limits.max_connections_per_ip),
            sessions_per_user: Counter::new(config.limits.max_connections_per_user),
            broker,
            router,
            handlers,
            id,
            config,
            next_session: AtomicU64::new(1),
        }))
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

/// Eight hex digits from the clock and the process id: distinct across nodes
/// started at different moments or on different hosts.
fn generated_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

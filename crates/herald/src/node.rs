//! This server node: its id, settings and the services every session shares.
//! One `Arc<Node>` is handed to every transport and session; nothing here is per
//! connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    next_session: AtomicU64,
}

impl Node {
    pub fn new(mut config: Config, handlers: Handlers) -> Arc<Node> {
        if config.server.node_id.is_empty() {
            config.server.node_id = generated_id();
        }
        let id = config.server.node_id.clone();
        let broker = Arc::new(Broker::new(config.broker.clone(), id.clone()));
        let router = Arc::new(Router::new(&config.broker, &config.routing));
        Arc::new(Node {
            messaging: Messaging::new(broker.clone(), router.clone()),
            backend: Backend::new(&config.apps.backend),
            broker,
            router,
            handlers,
            id,
            config,
            next_session: AtomicU64::new(1),
        })
    }

    /// A session id unique on this node and, with the node id, in a cluster.
    pub fn next_session_id(&self) -> String {
        format!("{}-s{}", self.id, self.next_session.fetch_add(1, Ordering::Relaxed))
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

//! What every listener hands the sessions it opens: the node, the shutdown signal and
//! the task tracker they run on, and the one way a request that opens a session is
//! admitted. Everything that serves sessions over HTTP (the `/ws` upgrade, SockJS,
//! the apps' plain sockets) and the REST routes take it as their axum state.

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, Entry, Permit};
use crate::node::Node;

#[derive(Clone)]
pub(crate) struct Context {
    pub node: Arc<Node>,
    /// Fires when the server shuts down: every session says goodbye and closes.
    pub shutdown: CancellationToken,
    /// The sessions' tasks, which shutdown waits for.
    pub tasks: TaskTracker,
}

/// The connection's place in the connection budgets, on every request hyper reads from
/// it: a session the request upgrades to holds it on. Also its TCP socket, which a
/// WebSocket upgraded from it watches for progress (`transport::Progress`).
#[derive(Clone)]
pub(crate) struct ConnectionPermit(pub Arc<Permit>, pub RawFd);

impl Context {
    /// Admits a request that opens a session (`admission::Gate::admit`: host, origin,
    /// token), with its connection's permit. `Err` is the HTTP answer that says why.
    pub(crate) fn admit(
        &self,
        peer: SocketAddr,
        req: &Request<Body>,
        entry: Entry,
    ) -> impl Future<Output = Result<Admission, Response<Body>>> + Send + 'static {
        let permit = req
            .extensions()
            .get::<ConnectionPermit>()
            .map(|p| p.0.clone());
        // Owned copies: the request body is not Sync, so it must not be borrowed across
        // awaits.
        admit_headers(
            self.node.clone(),
            peer,
            req.headers().clone(),
            req.uri().query().map(str::to_owned),
            entry,
            permit,
        )
    }
}

/// [`Context::admit`] for a request already taken apart (the direct `/ws` path).
pub(crate) async fn admit_headers(
    node: Arc<Node>,
    peer: SocketAddr,
    headers: HeaderMap,
    query: Option<String>,
    entry: Entry,
    permit: Option<Arc<Permit>>,
) -> Result<Admission, Response<Body>> {
    let handshake = node
        .gate
        .admit(&node.auth, peer, &headers, query.as_deref(), entry)
        .await
        .map_err(|refusal| refusal.response())?;
    Ok(Admission {
        handshake: Some(handshake),
        permit,
    })
}

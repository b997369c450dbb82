//! Binding the listeners, running them, and shutting down.
//!
//! [`Server::bind`] opens every listener first (so port 0 resolves and a test knows
//! where to connect), [`Server::run`] serves until the shutdown token fires, then
//! tells every session "server shutting down" and waits up to the drain timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apps;
use crate::config::Config;
use crate::handler::Handlers;
use crate::http::{HttpState, router};
use crate::node::Node;
use crate::transport::{self, tcp::Tcp};

pub struct Server {
    node: Arc<Node>,
    /// HTTP routes the apps bring.
    app_routes: axum::Router<HttpState>,
    http: TcpListener,
    stomp: Option<TcpListener>,
    shutdown: CancellationToken,
}

impl Server {
    /// Binds with the built-in demo apps (when `apps.demo` is on) and no other handlers.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        Server::bind_with(config, Handlers::new()).await
    }

    /// Binds with `handlers` for application destinations (and the demo apps when
    /// `apps.demo` is on).
    pub async fn bind_with(config: Config, handlers: Handlers) -> anyhow::Result<Server> {
        config.validate()?;
        let (handlers, app_routes) = if config.apps.demo {
            let rooms = apps::rooms::Rooms::new();
            (handlers.merge(apps::handlers(&rooms)), rooms.routes())
        } else {
            (handlers, axum::Router::new())
        };
        let http = TcpListener::bind(config.server.http)
            .await
            .with_context(|| format!("cannot listen on {} (server.http)", config.server.http))?;
        let stomp = match config.server.stomp {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (server.stomp)"))?,
            ),
            None => None,
        };
        Ok(Server {
            node: Node::new(config, handlers),
            app_routes,
            http,
            stomp,
            shutdown: CancellationToken::new(),
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound listener")
    }

    pub fn stomp_addr(&self) -> Option<SocketAddr> {
        self.stomp.as_ref().map(|l| l.local_addr().expect("bound listener"))
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Cancel this token to shut the server down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let tasks = TaskTracker::new();
        let Server { node, app_routes, http, stomp, shutdown } = self;
        let app = router(
            HttpState {
                node: node.clone(),
                shutdown: shutdown.clone(),
                tasks: tasks.clone(),
            },
            app_routes,
        );
        let http_task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                axum::serve(http, app)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await
            }
        });
        if let Some(listener) = stomp {
            tasks.spawn(accept_stomp(listener, node.clone(), shutdown.clone(), tasks.clone()));
        }
        shutdown.cancelled().await;
        tracing::info!("shutting down: telling sessions, draining");
        tasks.close();
        let drain = node.config.server.drain_timeout;
        if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
            tracing::warn!(?drain, "drain timeout passed with sessions still open");
        }
        let _ = tokio::time::timeout(drain, http_task).await;
        Ok(())
    }
}

async fn accept_stomp(listener: TcpListener, node: Arc<Node>, shutdown: CancellationToken, tasks: TaskTracker) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    tasks.spawn(transport::drive(Tcp::new(stream), node.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed on the STOMP listener");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

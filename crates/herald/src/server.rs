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
            (
                handlers.merge(apps::handlers(&rooms)),
                rooms.routes(config.sockjs.enabled),
            )
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
        let node = Node::new(config, handlers)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        if node.config.notifications.enabled {
            let (db, cfg) = (&node.config.database, &node.config.notifications);
            // Fails only on a URL that does not parse; a database that is down leaves the
            // notifier degraded (503s, not ready) until it answers.
            let notifier = crate::notify::Notifier::open(db, cfg, node.messaging.clone())
                .await
                .with_context(|| {
                    format!(
                        "invalid notification database URL {} (database.url)",
                        db.url
                    )
                })?;
            let check = notifier.clone();
            node.add_ready_check(
                "database",
                Arc::new(move || {
                    let check = check.clone();
                    Box::pin(async move { check.check_ready().await })
                }),
            );
            let _ = node.notifications.set(notifier);
        }
        let broker = node.broker.clone();
        node.add_ready_check(
            "cluster",
            Arc::new(move || {
                let status = broker.bus().status();
                Box::pin(async move {
                    if status.connected {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} bus unreachable ({} publishes failed)",
                            status.kind, status.failed_publishes
                        ))
                    }
                })
            }),
        );
        Ok(Server {
            node,
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
        self.stomp
            .as_ref()
            .map(|l| l.local_addr().expect("bound listener"))
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
        let Server {
            node,
            app_routes,
            http,
            stomp,
            shutdown,
        } = self;
        let state = HttpState {
            node: node.clone(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        };
        let app = router(state.clone(), app_routes);
        // Keys first: a token arriving with the first connections must find its key.
        if let Some(verifier) = &node.auth.verifier {
            verifier.refresh().await;
        }
        let http_task = tokio::spawn(serve_http(http, app, state));
        if node.auth.verifier.is_some() {
            let (node, shutdown) = (node.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(node.config.auth.jwks_refresh);
                every.tick().await;
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = every.tick() => {
                            if let Some(v) = &node.auth.verifier {
                                v.refresh().await;
                            }
                        }
                    }
                }
            });
        }
        tokio::spawn(crate::ops::stats_loop(
            node.clone(),
            node.config.ops.stats_interval,
            shutdown.clone(),
        ));
        if let Some(notifier) = node.notifications.get() {
            notifier.spawn_retention(shutdown.clone());
        }
        if let Some(listener) = stomp {
            tasks.spawn(accept_stomp(
                listener,
                node.clone(),
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        shutdown.cancelled().await;
        tracing::info!("shutting down: telling sessions, draining");
        // Queue messages this node has not taken yet are left to the other nodes.
        node.broker.bus().stop_consuming();
        tasks.close();
        let drain = node.config.server.drain_timeout;
        if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
            tracing::warn!(?drain, "drain timeout passed with sessions still open");
        }
        let _ = tokio::time::timeout(drain, http_task).await;
        // Publishes still waiting for Redis (an outage) get one more chance.
        if let Some(flushed) = node.broker.bus().drain()
            && tokio::time::timeout(drain, flushed).await.is_err()
        {
            tracing::warn!(
                ?drain,
                "drain timeout passed with publishes still waiting for Redis"
            );
        }
        node.broker.bus().shutdown();
        Ok(())
    }
}

/// HTTP/1.1 and HTTP/2 on the HTTP listener. The request headers must arrive within
/// `limits.handshake_timeout`; upgraded WebSocket connections leave hyper and are
/// tracked by their own tasks. Each request carries the peer address. A plain `/ws`
/// upgrade is answered by the direct path without hyper (`http/direct.rs`).
async fn serve_http(listener: TcpListener, app: axum::Router, state: HttpState) {
    use crate::http::direct::{self, Peeked};
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use tower::ServiceExt;

    let node = state.node.clone();
    let shutdown = state.shutdown.clone();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(node.config.limits.handshake_timeout);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (app, state) = (app.clone(), state.clone());
                    let (builder, watcher) = (builder.clone(), graceful.watcher());
                    let first_byte = node.config.limits.handshake_timeout;
                    tokio::spawn(async move {
                        // hyper's header timeout starts with the first byte; a client that
                        // sends nothing at all is dropped after the same time.
                        let stream = match direct::peek(&stream, first_byte).await {
                            Peeked::Nothing => return,
                            Peeked::WebSocket(head) => {
                                match direct::upgrade(stream, head, peer, &state).await {
                                    Ok(()) => return,
                                    Err(stream) => stream,
                                }
                            }
                            Peeked::Other => stream,
                        };
                        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                            app.clone().oneshot(req)
                        });
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        // Boxed: hyper's connection future is large, and tokio copies a
                        // task's future several times; the direct path stays cheap.
                        let _ = Box::pin(watcher.watch(conn.into_owned())).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the HTTP listener");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
    let _ = tokio::time::timeout(node.config.server.drain_timeout, graceful.shutdown()).await;
}

async fn accept_stomp(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = node.connections_per_ip.acquire(peer.ip()) else {
                        tasks.spawn(refuse_tcp(stream, too_many_from(&node, peer.ip())));
                        continue;
                    };
                    let admission = transport::Admission { handshake: None, ip_slot: Some(slot) };
                    tasks.spawn(transport::drive(Tcp::new(stream), node.clone(), shutdown.clone(), admission));
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

pub(crate) fn too_many_from(node: &Node, ip: std::net::IpAddr) -> String {
    format!(
        "too many connections from {ip} (limit {})",
        node.connections_per_ip.limit()
    )
}

/// Tells a TCP client why it is refused, in the one frame it will understand.
async fn refuse_tcp(mut stream: tokio::net::TcpStream, reason: String) {
    use tokio::io::AsyncWriteExt;
    let frame = herald_stomp::Frame::new(herald_stomp::Command::Error).header("message", reason);
    let mut out = bytes::BytesMut::new();
    herald_stomp::encode(&frame, herald_stomp::Version::V1_2, &mut out);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.write_all(&out)).await;
    let _ = stream.shutdown().await;
}

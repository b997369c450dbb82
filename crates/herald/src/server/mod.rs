//! Binding the listeners, running them, and shutting down.
//!
//! [`Server::bind`] opens every listener first (so port 0 resolves and a test knows
//! where to connect), [`Server::run`] serves until the shutdown token fires, then
//! tells every session "server shutting down" and waits up to the drain timeout.

pub mod config;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Listener, PROTECTED_MODE, Refusal};
use crate::apps;
use crate::config::Config;
use crate::handler::Handlers;
use crate::http::router;
use crate::node::Node;
use crate::transport::{self, tcp::Tcp};

/// A server with its listeners bound: [`Server::run`] serves until shut down.
pub struct Server {
    node: Arc<Node>,
    /// HTTP routes the apps bring.
    app_routes: axum::Router<transport::Context>,
    /// The notifications socket's endpoints: (path, routes).
    sockets: Vec<(String, axum::Router<transport::Context>)>,
    /// The demo chat rooms, whose idle ones a task removes while the server runs.
    rooms: Option<apps::rooms::Rooms>,
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
        let (handlers, app_routes, rooms) = if config.apps.demo {
            let rooms = apps::rooms::Rooms::new(&config);
            (
                handlers.merge(apps::handlers(&config, &rooms)),
                rooms.routes(config.sockjs.enabled),
                Some(rooms),
            )
        } else {
            (handlers, axum::Router::new(), None)
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
        let mut sockets = Vec::new();
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
            let sockjs = node.config.sockjs.enabled;
            sockets = crate::http::notify_socket::endpoints(&node)
                .iter()
                .map(|e| (e.path().to_owned(), e.routes(sockjs)))
                .collect();
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
            sockets,
            rooms,
            http,
            stomp,
            shutdown: CancellationToken::new(),
        })
    }

    /// Where the HTTP listener (WebSocket, SockJS, REST API, web UI) is bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound listener")
    }

    /// Where the STOMP-over-TCP listener is bound, when `server.stomp` is on.
    pub fn stomp_addr(&self) -> Option<SocketAddr> {
        self.stomp
            .as_ref()
            .map(|l| l.local_addr().expect("bound listener"))
    }

    /// The node every session shares: for tests that observe or inject faults.
    #[doc(hidden)]
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Serves a plain-socket endpoint (`transport::plain`) beside the built-in routes.
    pub fn endpoint(mut self, endpoint: &transport::plain::Endpoint) -> Server {
        let sockjs = self.node.config.sockjs.enabled;
        self.app_routes = self.app_routes.merge(endpoint.routes(sockjs));
        self
    }

    /// The HTTP routes as `run` serves them, for `state`.
    pub(crate) fn routes(&self, state: &transport::Context) -> axum::Router {
        router(state.clone(), self.app_routes.clone(), &self.sockets)
    }

    /// Cancel this token to shut the server down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves every listener until the shutdown token fires, then tells every session
    /// the server is shutting down and waits up to `server.drain_timeout` for them.
    pub async fn run(self) -> anyhow::Result<()> {
        let tasks = TaskTracker::new();
        let state = transport::Context {
            node: self.node.clone(),
            shutdown: self.shutdown.clone(),
            tasks: tasks.clone(),
        };
        let app = self.routes(&state);
        let Server {
            node,
            rooms,
            http,
            stomp,
            shutdown,
            ..
        } = self;
        if node.gate.is_protected() {
            tracing::warn!("{PROTECTED_MODE}");
        }
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
        tokio::spawn(crate::node::stats_loop(
            node.clone(),
            node.config.ops.stats_interval,
            shutdown.clone(),
        ));
        if let Some(notifier) = node.notifications.get() {
            notifier.spawn_retention(shutdown.clone());
        }
        if let Some(rooms) = &rooms {
            rooms.spawn_expiry(node.messaging.cluster().clone(), shutdown.clone());
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

/// HTTP/1.1 (and HTTP/2 with prior knowledge, with `server.http2`) on the HTTP
/// listener. Every connection is admitted first (`admission::Gate::accept`) and holds
/// its permit for its life. HTTP/1.1 request headers must arrive within
/// `limits.handshake_timeout`, the first and each next one on a keep-alive connection;
/// an HTTP/2 connection is told to go away after `limits.http2_idle_timeout` without a
/// request in flight. Upgraded WebSocket connections leave hyper and are tracked by
/// their own tasks. Each request carries the peer address and the permit. A plain
/// `/ws` upgrade is answered by the direct path without hyper (`http/direct.rs`).
async fn serve_http(listener: TcpListener, app: axum::Router, state: transport::Context) {
    use crate::http::direct::{self, Peeked};
    use hyper::server::conn::{http1, http2};
    use hyper_util::rt::{TokioExecutor, TokioTimer};

    let node = state.node.clone();
    let shutdown = state.shutdown.clone();
    let limits = &node.config.limits;
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keepalive)
        .keep_alive_timeout(limits.http2_keepalive);
    let builders = Arc::new((h1, h2));
    // Connections still being served by hyper, waited for (bounded) at shutdown.
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = match node.gate.accept(peer.ip(), Listener::Http) {
                        Ok(permit) => Arc::new(permit),
                        Err(refusal) => {
                            tokio::spawn(refuse_http(stream, refusal));
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let (app, state, builders) = (app.clone(), state.clone(), builders.clone());
                    let first_byte = node.config.limits.handshake_timeout;
                    connections.spawn(async move {
                        // hyper's header timeout starts with the first byte; a client that
                        // sends nothing at all is dropped after the same time.
                        let stream = match direct::peek(&stream, first_byte, &state.node.config.server.websocket_paths).await {
                            Peeked::Nothing => return,
                            Peeked::WebSocket(head) => {
                                match direct::upgrade(stream, head, peer, &state, &permit).await {
                                    Ok(()) => return,
                                    Err(stream) => stream,
                                }
                            }
                            Peeked::Http2 if state.node.config.server.http2 => {
                                let conn = Connection { stream, peer, permit, app, state };
                                return conn.serve_http2(&builders.1).await;
                            }
                            // HTTP/2 is off: hyper's HTTP/1 parser refuses the preface.
                            Peeked::Http2 | Peeked::Other => stream,
                        };
                        Connection { stream, peer, permit, app, state }.serve_http1(&builders.0).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the HTTP listener");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
    connections.close();
    let _ = tokio::time::timeout(node.config.server.drain_timeout, connections.wait()).await;
}

/// One HTTP connection served by hyper.
struct Connection {
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: Arc<crate::admission::Permit>,
    app: axum::Router,
    state: transport::Context,
}

impl Connection {
    /// The request as the router takes it: the peer address and the connection's permit.
    fn route(
        app: &axum::Router,
        peer: SocketAddr,
        permit: &Arc<crate::admission::Permit>,
        socket: std::os::fd::RawFd,
        mut req: hyper::Request<hyper::body::Incoming>,
    ) -> tower::util::Oneshot<axum::Router, hyper::Request<hyper::body::Incoming>> {
        use tower::ServiceExt;
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req.extensions_mut()
            .insert(crate::transport::ConnectionPermit(permit.clone(), socket));
        app.clone().oneshot(req)
    }

    /// HTTP/1.1 with upgrades, until the peer or the shutdown ends it.
    async fn serve_http1(self, builder: &hyper::server::conn::http1::Builder) {
        let Connection {
            stream,
            peer,
            permit,
            app,
            state,
        } = self;
        let socket = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let service = hyper::service::service_fn(move |req| {
            Connection::route(&app, peer, &permit, socket, req)
        });
        let conn = builder
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades();
        // Boxed: hyper's connection future is large, and tokio copies a task's future
        // several times; the direct path stays cheap.
        let mut conn = Box::pin(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = state.shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
        }
        let _ = conn.await;
    }

    /// HTTP/2: hyper has no idle timeout of its own, so requests in flight are counted
    /// (until their response body is done) and the connection is told to go away
    /// after `limits.http2_idle_timeout` without one, or at shutdown.
    async fn serve_http2(
        self,
        builder: &hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::time::{Instant, sleep_until};

        /// Requests in flight; each change wakes the watcher.
        struct InFlight {
            count: AtomicUsize,
            changed: tokio::sync::Notify,
        }
        struct Guard(Arc<InFlight>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.count.fetch_sub(1, Ordering::AcqRel);
                self.0.changed.notify_one();
            }
        }

        let Connection {
            stream,
            peer,
            permit,
            app,
            state,
        } = self;
        let socket = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let in_flight = Arc::new(InFlight {
            count: AtomicUsize::new(0),
            changed: tokio::sync::Notify::new(),
        });
        let counted = in_flight.clone();
        let service = hyper::service::service_fn(move |req| {
            counted.count.fetch_add(1, Ordering::AcqRel);
            counted.changed.notify_one();
            let guard = Guard(counted.clone());
            let response = Connection::route(&app, peer, &permit, socket, req);
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(response.map(move |body| {
                    axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |f| {
                        let _held = &guard;
                        f
                    }))
                }))
            }
        });
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut conn = Box::pin(conn);
        let idle = state.node.config.limits.http2_idle_timeout;
        let mut idle_since = Instant::now();
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = state.shutdown.cancelled() => break,
                _ = in_flight.changed.notified() => idle_since = Instant::now(),
                _ = sleep_until(idle_since + idle) => {
                    if in_flight.count.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    idle_since = Instant::now();
                }
            }
        }
        // GOAWAY; a peer that does not answer its ping is not waited for beyond the
        // keep-alive time.
        conn.as_mut().graceful_shutdown();
        let keepalive = state.node.config.limits.http2_keepalive;
        let _ = tokio::time::timeout(keepalive, conn).await;
    }
}

/// Tells an HTTP client why its connection is refused (`admission::Refusal` as a
/// JSON response), then reads what it sent until it hangs up, so that the answer is
/// not lost to a reset.
async fn refuse_http(mut stream: tokio::net::TcpStream, refusal: Refusal) {
    use tokio::io::AsyncReadExt;
    let answer = async {
        crate::http::direct::write_refusal(&mut stream, refusal.response()).await;
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), answer).await;
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
                    let permit = match node.gate.accept(peer.ip(), Listener::Stomp) {
                        Ok(permit) => permit,
                        Err(refusal) => {
                            tasks.spawn(refuse_tcp(stream, refusal.message));
                            continue;
                        }
                    };
                    let admission = transport::Admission { handshake: None, permit: Some(Arc::new(permit)) };
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

/// Tells a TCP client why it is refused, in the one frame it will understand.
async fn refuse_tcp(mut stream: tokio::net::TcpStream, reason: String) {
    use tokio::io::AsyncWriteExt;
    let frame = herald_stomp::Frame::new(herald_stomp::Command::Error).header("message", reason);
    let mut out = bytes::BytesMut::new();
    herald_stomp::encode(&frame, herald_stomp::Version::V1_2, &mut out);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.write_all(&out)).await;
    let _ = stream.shutdown().await;
}

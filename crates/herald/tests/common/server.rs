//! The server under test: a real Herald started in-process on ephemeral ports, and
//! the ways a test opens STOMP clients on it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::Config;
use herald::node::Node;
use herald_stomp::{Command, Frame};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::stomp::{Client, Transport, connect_frame};

pub struct TestServer {
    pub http: SocketAddr,
    pub stomp: SocketAddr,
    pub node: Arc<Node>,
    /// One HTTP client per server: a client's connection pool belongs to the runtime
    /// it first ran on, and every test has its own.
    pub(super) http_client: reqwest::Client,
    token: CancellationToken,
    handle: Option<JoinHandle<Result<(), String>>>,
}

impl TestServer {
    /// A server with default settings on 127.0.0.1 ephemeral ports.
    pub async fn start() -> TestServer {
        TestServer::with(|_| {}).await
    }

    /// A server whose settings `tweak` adjusts first.
    pub async fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::with_handlers(herald::handler::Handlers::new(), tweak).await
    }

    /// A server with application `handlers` (`Server::bind_with`), settings adjusted by
    /// `tweak`.
    pub async fn with_handlers(
        handlers: herald::handler::Handlers,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let mut cfg = Config::default();
        cfg.server.http = "127.0.0.1:0".parse().unwrap();
        cfg.server.stomp = Some("127.0.0.1:0".parse().unwrap());
        cfg.server.drain_timeout = Duration::from_secs(2);
        // Notifications: an in-memory SQLite database, so no test leaves herald.db behind.
        cfg.database.url = "sqlite::memory:".into();
        tweak(&mut cfg);
        let server = herald::Server::bind_with(cfg, handlers)
            .await
            .expect("server binds");
        let http = server.http_addr();
        let stomp = server.stomp_addr().expect("STOMP listener configured");
        let node = server.node().clone();
        let token = server.shutdown_token();
        let handle = tokio::spawn(async move { server.run().await.map_err(|e| e.to_string()) });
        TestServer {
            http,
            stomp,
            node,
            http_client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("HTTP client"),
            token,
            handle: Some(handle),
        }
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    /// Cancels the shutdown token and waits (bounded by `limit`) for `run` to return;
    /// returns how long that took.
    pub async fn shutdown_within(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        self.token.cancel();
        let handle = self.handle.take().expect("server still running");
        match tokio::time::timeout(limit, handle).await {
            Ok(Ok(Ok(()))) => start.elapsed(),
            Ok(Ok(Err(e))) => panic!("server run returned an error: {e}"),
            Ok(Err(e)) => panic!("server task panicked: {e}"),
            Err(_) => panic!("server did not stop within {limit:?} of the shutdown token"),
        }
    }

    /// An unconnected client (no CONNECT sent yet) over `transport`.
    pub async fn open(&self, transport: Transport) -> Client {
        match transport {
            Transport::Tcp => Client::tcp(self.stomp).await,
            Transport::Ws => Client::ws(&self.ws_url(), &[]).await.0,
        }
    }

    /// A client over `transport` that has completed CONNECT with accept-version 1.2.
    pub async fn connect(&self, transport: Transport) -> Client {
        self.connect_version(transport, "1.2").await
    }

    /// A connected client that negotiated from `accept_version` (e.g. "1.0,1.1").
    pub async fn connect_version(&self, transport: Transport, accept_version: &str) -> Client {
        let mut c = self.open(transport).await;
        let connected = c.connect(accept_version).await;
        assert_eq!(
            connected.command,
            Command::Connected,
            "CONNECT answered by {connected:?}"
        );
        c
    }

    pub async fn tcp(&self) -> Client {
        self.connect(Transport::Tcp).await
    }

    pub async fn ws(&self) -> Client {
        self.connect(Transport::Ws).await
    }

    /// A client over `transport` connected (1.2) with `login` as its principal name;
    /// also returns the CONNECTED frame (its `session` header names the session).
    pub async fn connect_as(&self, transport: Transport, login: &str) -> (Client, Frame) {
        let mut c = self.open(transport).await;
        let connected = c
            .connect_with(
                Frame::new(Command::Connect)
                    .header("accept-version", "1.2")
                    .header("host", "localhost")
                    .header("login", login)
                    .header("passcode", "secret"),
            )
            .await;
        assert_eq!(
            connected.command,
            Command::Connected,
            "CONNECT as {login} answered by {connected:?}"
        );
        (c, connected)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl TestServer {
    /// Opens `transport` and sends CONNECT with `extra` headers; returns the client and
    /// the answer (CONNECTED or ERROR).
    pub async fn connect_headers(
        &self,
        transport: Transport,
        extra: &[(&str, &str)],
    ) -> (Client, Frame) {
        let mut c = self.open(transport).await;
        let answer = c.connect_with(connect_frame(extra)).await;
        (c, answer)
    }

    /// Like [`connect_headers`] but the CONNECT must succeed.
    pub async fn connect_ok(
        &self,
        transport: Transport,
        extra: &[(&str, &str)],
    ) -> (Client, Frame) {
        let (c, answer) = self.connect_headers(transport, extra).await;
        assert_eq!(
            answer.command,
            Command::Connected,
            "CONNECT with {extra:?} over {transport:?} answered by {answer:?}"
        );
        (c, answer)
    }

    /// A WebSocket client on `path_and_query` (like `/ws?access_token=x`) whose
    /// handshake carries `headers`; `Err` describes a refused handshake.
    pub async fn ws_with(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, String> {
        let url = format!("ws://{}{path_and_query}", self.http);
        Ok(Client::ws_with_headers(&url, headers).await?.0)
    }
}

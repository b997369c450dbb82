//! SockJS 0.3.3 (as sockjs-client 1.6 speaks it): WebSocket emulation over HTTP for
//! clients that cannot open a WebSocket.
//!
//! A SockJS endpoint (a [`Service`] at a prefix, `/ws-sockjs` for STOMP) answers
//! `GET {prefix}` (greeting), `/info`, `/iframe*.html`, the raw `/websocket`, and the
//! session URLs `/{server}/{session}/{transport}` for the transports `websocket`,
//! `xhr`, `xhr_send`, `xhr_streaming`, `eventsource`, `htmlfile`, `jsonp`, `jsonp_send`.
//!
//! - A session of the HTTP transports is a [`Session`] in the service's registry: the
//!   messages the client sent (`inbound`), the messages waiting for it (`outbound`),
//!   which receiving request is attached, and the close frame once closed. Sending
//!   requests (`xhr_send`, `jsonp_send`) append to `inbound`; receiving requests
//!   (`xhr`, `jsonp`, the streaming ones) attach, take `outbound` as `a[...]` frames,
//!   and get an `h` frame after `heartbeat` of silence. A session without a receiving
//!   request holds only its queues; after `disconnect_delay` without one it closes.
//! - The application on a session (STOMP's [`super::drive`], the plain JSON chat, the
//!   test suite's echo) sees a [`Conn`], a [`Transport`] whose every read is one
//!   SockJS message: it runs in the session's one task, spawned at open, which also
//!   lingers `disconnect_delay` after the end so that late requests get the close
//!   frame, then leaves the registry.
//! - The websocket transports (`websocket.rs`) are a [`Transport`] on the socket
//!   itself and never enter the registry.
//! - Every request of a session is admitted like the first (`admission::Gate::admit`:
//!   host, origin, token) and must come from the session's [`Opener`] — the same
//!   client address and the same principal — since the session id is the client's
//!   choice and anyone who learns it could otherwise send and read as its opener.
//!   Sessions are counted against `sockjs.max_sessions` and `sockjs.max_sessions_per_ip`.
//!
//! `service.rs` is an endpoint (URL dispatch, sessions, admission), `session.rs` a
//! session's state, `conn.rs` what an application reads and writes, `polling.rs` and
//! `streaming.rs` the HTTP transports, `websocket.rs` the WebSocket ones, `frames.rs`
//! the wire formats, `answers.rs` CORS, caching and the iframe page, `options.rs` an
//! endpoint's settings, `test_apps.rs` the protocol suite's endpoints.

mod answers;
pub(crate) mod config;
mod conn;
pub(crate) mod frames;
mod options;
mod polling;
mod service;
mod session;
mod streaming;
mod test_apps;
mod websocket;

use answers::{callback, cors, error, no_cache, not_found, set, text};
pub(crate) use conn::Conn;
pub(crate) use options::{Options, Transports};
pub(crate) use service::Service;
use session::{Next, Receiver};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use super::Admission;
use crate::admission::Entry;
use crate::transport::Context;

/// The close frame a session gets when the server ends it.
pub(crate) const GO_AWAY: (u16, &str) = (3000, "Go away!");
const ANOTHER_CONNECTION: (u16, &str) = (2010, "Another connection still open");
const INTERRUPTED: (u16, &str) = (1002, "Connection interrupted");
/// How long a receiving request waits for a busy session's receiver to leave.
const BUSY_GRACE: Duration = Duration::from_millis(250);

/// What runs on a session: it gets the connection and the HTTP state, and returns
/// when the session is over.
pub(crate) type App =
    Arc<dyn Fn(Conn, Opened) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What an application gets besides its connection.
pub(crate) struct Opened {
    pub state: Context,
    /// The origin/IP/token checks of the opening request (empty for test endpoints).
    pub admission: Admission,
}

/// The SockJS endpoints the configuration asks for: STOMP at `sockjs.path` and each
/// of `sockjs.also_at`, and the protocol test suite's endpoints when
/// `sockjs.test_endpoints` is on.
pub(crate) fn routes(node: &Arc<crate::node::Node>) -> Router<Context> {
    let sj = &node.config.sockjs;
    let mut router = Router::new();
    if sj.enabled {
        let stomp: App = Arc::new(|conn, opened: Opened| {
            let Opened { state, admission } = opened;
            Box::pin(super::drive(conn, state.node, state.shutdown, admission))
        });
        let opts = Options::from_config(sj, node);
        router = router.merge(
            Service::new(&sj.path, Entry::Stomp, Some(opts.clone()), stomp.clone()).routes(),
        );
        for path in &sj.also_at {
            let service = Service::new(path, Entry::Stomp, Some(opts.clone()), stomp.clone());
            router = router.merge(service.routes_below());
        }
    }
    if sj.test_endpoints {
        router = router.merge(test_apps::routes(node));
    }
    router
}

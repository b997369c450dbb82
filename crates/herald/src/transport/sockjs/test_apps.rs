//! The sockjs-protocol test suite's endpoints (`sockjs.test_endpoints`): `/echo`,
//! `/close`, `/disabled_websocket_echo`, `/cookie_needed_echo`.

use std::sync::Arc;

use axum::Router;
use bytes::BytesMut;

use super::{App, Conn, Opened, Options, Service, Transports};
use crate::admission::Entry;
use crate::broker::OutFrame;
use crate::transport::Context;
use crate::transport::Transport;

/// The test endpoints, with the configured settings but every transport and no
/// admission.
pub(super) fn routes(node: &Arc<crate::node::Node>) -> Router<Context> {
    let sj = &node.config.sockjs;
    let mut router = Router::new();
    // The configured settings (the suite wants `response_limit = 4096`; its script
    // sets that), without admission checks.
    // Every transport, jsonp and htmlfile included: the suite tests them all.
    let mut opts = Options::from_config(sj, node);
    opts.admit = false;
    opts.transports = Transports::ALL;
    let echo: App = Arc::new(|conn, opened| Box::pin(echo(conn, opened)));
    let close: App = Arc::new(|mut conn: Conn, _| Box::pin(async move { conn.close().await }));
    let no_ws = Options {
        transports: Transports {
            websocket: false,
            ..Transports::ALL
        },
        ..opts.clone()
    };
    let cookie = Options {
        cookie_needed: true,
        ..opts.clone()
    };
    for (prefix, opts, app) in [
        ("/echo", opts.clone(), echo.clone()),
        ("/close", opts, close),
        ("/disabled_websocket_echo", no_ws, echo.clone()),
        ("/cookie_needed_echo", cookie, echo),
    ] {
        router = router.merge(Service::new(prefix, Entry::Stomp, Some(opts), app).routes());
    }
    router
}

/// The test suite's echo service: every message comes back as it was (on the raw
/// WebSocket, with its opcode: binary in, binary out).
async fn echo(mut conn: Conn, opened: Opened) {
    let mut buf = BytesMut::new();
    loop {
        tokio::select! {
            _ = opened.state.shutdown.cancelled() => break,
            read = conn.read(&mut buf) => {
                if !matches!(read, Ok(true)) {
                    break;
                }
                let text = !matches!(&conn, Conn::Ws(ws) if ws.read_binary());
                let msg = OutFrame { text, bytes: buf.split().freeze() };
                if conn.write(&[msg]).await.is_err() {
                    break;
                }
            }
        }
    }
    conn.close().await;
}

//! SockJS over a real WebSocket: `/{server}/{session}/websocket` carries SockJS frames
//! (`o`, `h`, `a[...]`, `c[...]`; the client sends JSON arrays of strings), and the raw
//! `/websocket` carries the messages as they are. Both are a [`Transport`] on the
//! socket (tokio-websockets, like `transport::websocket`) and stay out of the session
//! registry: the connection is the session.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, sleep_until};
use tokio_websockets::proto::CloseCode;
use tokio_websockets::{Limits, Message, WebSocketStream};

use super::{Conn, GO_AWAY, Opened, Service, frames, text};
use crate::broker::OutFrame;
use crate::transport::Context;
use crate::transport::progress::{Metered, Progress};
use crate::transport::{Admission, Transport, websocket as ws};

pub(super) async fn upgrade(
    service: Arc<Service>,
    state: Context,
    peer: SocketAddr,
    req: Request<Body>,
    framed: bool,
) -> Response<Body> {
    if let Err(r) = check_upgrade(req.headers()) {
        return r;
    }
    let admission = if service.opts().admit {
        match state.admit(peer, &req, service.entry).await {
            Ok(a) => a,
            Err(r) => return r,
        }
    } else {
        Admission::default()
    };
    let upgrade = match ws::accept(req) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        let upgraded = match upgrade.on_upgrade.await {
            Ok(u) => u,
            Err(e) => return tracing::debug!(error = %e, "SockJS WebSocket upgrade failed"),
        };
        let Some(conn) = SockJsWs::open(upgraded, service.opts(), framed).await else {
            return;
        };
        (service.app)(Conn::Ws(conn), Opened { state, admission }).await;
    });
    upgrade.response
}

/// The spec's answers to a GET that is no WebSocket upgrade.
fn check_upgrade(h: &axum::http::HeaderMap) -> Result<(), Response<Body>> {
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::UPGRADE, "websocket") {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "Can \"Upgrade\" only to \"WebSocket\".",
        ));
    }
    if !has(header::CONNECTION, "upgrade") {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "\"Connection\" must be \"Upgrade\".",
        ));
    }
    Ok(())
}

pub(crate) struct SockJsWs {
    ws: WebSocketStream<Metered<TokioIo<Upgraded>>>,
    progress: Progress,
    /// SockJS framing (`/{server}/{session}/websocket`) or raw (`/websocket`).
    framed: bool,
    /// Messages received in one array and not read yet.
    inbound: VecDeque<String>,
    heartbeat: Duration,
    last_write: Instant,
    closed: bool,
    /// Close without a `c[...]` frame (the client broke the framing).
    abrupt: bool,
    /// Raw: the last message read was binary (the echo answers in kind).
    binary: bool,
}

impl SockJsWs {
    /// Wraps the socket and, framed, says `o`.
    async fn open(upgraded: Upgraded, opts: &super::Options, framed: bool) -> Option<SockJsWs> {
        // No socket: SockJS's WebSocket counts bytes handed over (a coarse measure).
        let stream = Metered::new(TokioIo::new(upgraded), None);
        let progress = stream.progress();
        let ws = tokio_websockets::ServerBuilder::new()
            .limits(Limits::default().max_payload_len(Some(opts.max_message)))
            .serve(stream);
        let mut conn = SockJsWs {
            ws,
            progress,
            framed,
            inbound: VecDeque::new(),
            heartbeat: opts.heartbeat,
            last_write: Instant::now(),
            closed: false,
            abrupt: false,
            binary: false,
        };
        if framed {
            conn.send(frames::OPEN.into()).await.ok()?;
        }
        Some(conn)
    }

    /// Raw: whether the last message read was binary, not text.
    pub(super) fn read_binary(&self) -> bool {
        self.binary
    }

    async fn send(&mut self, text: String) -> io::Result<()> {
        self.last_write = Instant::now();
        self.ws
            .send(Message::text(text))
            .await
            .map_err(io::Error::other)
    }
}

impl Transport for SockJsWs {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        loop {
            if let Some(m) = self.inbound.pop_front() {
                buf.extend_from_slice(m.as_bytes());
                return Ok(true);
            }
            let beat = self.last_write + self.heartbeat;
            tokio::select! {
                msg = self.ws.next() => match msg {
                    None => return Ok(false),
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    Some(Ok(m)) if m.is_close() => return Ok(false),
                    Some(Ok(m)) if m.is_text() || m.is_binary() => {
                        self.binary = m.is_binary();
                        let payload = m.into_payload();
                        if !self.framed {
                            buf.extend_from_slice(&payload);
                            return Ok(true);
                        }
                        match frames::decode(&payload) {
                            Ok(msgs) => self.inbound.extend(msgs),
                            Err(frames::PayloadError::Empty) => {}
                            // The spec: broken JSON closes the connection, with no
                            // close frame of SockJS's own.
                            Err(frames::PayloadError::Broken) => {
                                self.abrupt = true;
                                return Err(io::Error::new(io::ErrorKind::InvalidData, "broken JSON"));
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                },
                _ = sleep_until(beat), if self.framed => self.send(frames::HEARTBEAT.into()).await?,
            }
        }
    }

    async fn write(&mut self, out: &[OutFrame]) -> io::Result<()> {
        self.last_write = Instant::now();
        if self.framed {
            let msgs: Vec<std::borrow::Cow<'_, str>> = out
                .iter()
                .map(|f| String::from_utf8_lossy(&f.bytes))
                .collect();
            return self.send(frames::messages(&msgs)).await;
        }
        ws::write_frames(&mut self.ws, out).await
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        if self.framed {
            self.send(frames::messages(&["\n"])).await
        } else {
            self.last_write = Instant::now();
            self.ws
                .send(Message::text(Bytes::from_static(b"\n")))
                .await
                .map_err(io::Error::other)
        }
    }

    async fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        let (code, reason) = GO_AWAY;
        if self.framed && !self.abrupt {
            let _ = self.send(frames::close(code, reason)).await;
        }
        let code = CloseCode::try_from(code).ok();
        let _ = self.ws.send(Message::close(code, reason)).await;
        let _ = self.ws.close().await;
    }

    fn progress(&self) -> Option<Progress> {
        Some(self.progress.clone())
    }
}

//! STOMP over WebSocket (RFC 6455) at `/ws`.
//!
//! The HTTP upgrade is answered here (axum/hyper hand over the socket); frames are
//! read and written by `tokio-websockets`, which is the only code that knows the
//! WebSocket wire format — swapping it touches this file alone. Subprotocols
//! `v10.stomp`, `v11.stomp`, `v12.stomp` are negotiated; a client offering none
//! (stomp.py) is still served STOMP. One WebSocket message may carry several STOMP
//! frames and one frame may span several messages: the decoder sees only bytes.

use std::io;
use std::os::fd::RawFd;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use base64::Engine;
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use herald_stomp::Version;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_websockets::{Limits, Message, WebSocketStream};

use super::Transport;
use super::progress::{Metered, Progress};
use crate::broker::OutFrame;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A validated upgrade request: the response to send and the socket to come.
pub(crate) struct Upgrade {
    pub response: Response<Body>,
    pub on_upgrade: OnUpgrade,
}

/// What a valid upgrade request asks for: the accept key and the STOMP version
/// whose subprotocol to answer with (`None` when the client offered none).
pub(crate) struct Negotiated {
    pub accept_key: String,
    pub protocol: Option<Version>,
}

/// Checks the headers of an upgrade request, or gives the error response whose
/// body names the problem. Has no side effects: the direct `/ws` path may call it
/// and still leave the request to hyper.
pub(crate) fn negotiate(headers: &HeaderMap) -> Result<Negotiated, Response<Body>> {
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(bad_request(
            "expected a WebSocket upgrade (Upgrade: websocket)",
        ));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(bad_request("expected 'Connection: Upgrade'"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(Response::builder()
            .status(StatusCode::UPGRADE_REQUIRED)
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .body(Body::from(
                "unsupported Sec-WebSocket-Version: this server speaks 13",
            ))
            .expect("static response"));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(bad_request("missing Sec-WebSocket-Key header"));
    };
    Ok(Negotiated {
        accept_key: accept_key(key.as_bytes()),
        protocol: choose_subprotocol(headers),
    })
}

fn bad_request(msg: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(msg.to_owned()))
        .expect("static response")
}

/// Checks an upgrade request and builds the 101 response, or an error response
/// whose body names the problem.
pub(crate) fn accept(mut req: Request<Body>) -> Result<Upgrade, Response<Body>> {
    let Negotiated {
        accept_key,
        protocol,
    } = negotiate(req.headers())?;
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return Err(bad_request(
            "this connection cannot be upgraded (HTTP/1.1 required)",
        ));
    };
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key);
    if let Some(v) = protocol {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, v.subprotocol());
    }
    Ok(Upgrade {
        response: response.body(Body::empty()).expect("valid response"),
        on_upgrade,
    })
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// The highest STOMP version among the offered subprotocols.
fn choose_subprotocol(headers: &HeaderMap) -> Option<Version> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(Version::from_subprotocol)
        .max()
}

/// A WebSocket connection after its handshake: an upgraded hyper connection, or a
/// TCP stream whose upgrade the direct `/ws` path answered.
pub(crate) struct WebSocket<S = TokioIo<Upgraded>> {
    ws: WebSocketStream<Metered<S>>,
    progress: Progress,
    /// Keep-alive by WebSocket pings (plain-socket endpoints) rather than STOMP's EOL
    /// heart-beats: a pong then counts as a read.
    pings: bool,
}

impl WebSocket {
    /// Wraps an upgraded connection; `max_message` bounds one WebSocket message;
    /// `socket` is the TCP socket underneath, when known ([`Progress`]).
    pub(crate) fn new(upgraded: Upgraded, max_message: usize, socket: Option<RawFd>) -> Self {
        WebSocket::over(TokioIo::new(upgraded), max_message, socket)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Speaks WebSocket over `stream`, whose handshake is done; `socket` is the TCP
    /// socket underneath, when known ([`Progress`]).
    pub(crate) fn over(stream: S, max_message: usize, socket: Option<RawFd>) -> Self {
        let stream = Metered::new(stream, socket);
        let progress = stream.progress();
        let ws = tokio_websockets::ServerBuilder::new()
            .limits(Limits::default().max_payload_len(Some(max_message)))
            .serve(stream);
        WebSocket {
            ws,
            progress,
            pings: false,
        }
    }

    /// Heart-beats become WebSocket pings and each pong an (empty) read: how a
    /// plain-socket endpoint, whose clients send nothing unasked, sees they are alive.
    pub(crate) fn with_pings(mut self) -> Self {
        self.pings = true;
        self
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for WebSocket<S> {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        loop {
            match self.ws.next().await {
                None => return Ok(false),
                Some(Err(e)) => return Err(io::Error::other(e)),
                Some(Ok(msg)) if msg.is_text() || msg.is_binary() => {
                    let payload = msg.into_payload();
                    if buf.is_empty() {
                        *buf = payload.into();
                    } else {
                        buf.extend_from_slice(&payload);
                    }
                    return Ok(true);
                }
                Some(Ok(msg)) if msg.is_close() => return Ok(false),
                Some(Ok(msg)) if self.pings && msg.is_pong() => return Ok(true),
                // Pings are answered by tokio-websockets; pongs carry nothing.
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn write(&mut self, frames: &[OutFrame]) -> io::Result<()> {
        write_frames(&mut self.ws, frames).await
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        let beat = if self.pings {
            Message::ping(bytes::Bytes::new())
        } else {
            Message::text(bytes::Bytes::from_static(b"\n"))
        };
        self.ws.send(beat).await.map_err(io::Error::other)
    }

    fn kind(&self) -> &'static str {
        "websocket"
    }

    fn progress(&self) -> Option<Progress> {
        Some(self.progress.clone())
    }

    async fn close(&mut self) {
        // Sends a close frame, waits for the peer's, then shuts the socket down.
        let _ = self.ws.close().await;
    }

    async fn close_with(&mut self, code: u16, reason: &str) {
        // A reserved code would panic in tokio-websockets: those close plainly.
        if let Ok(code) = tokio_websockets::CloseCode::try_from(code)
            && !code.is_reserved()
        {
            let _ = self
                .ws
                .send(Message::close(Some(code), close_reason(reason)))
                .await;
        }
        let _ = self.ws.close().await;
    }
}

/// At most the 123 bytes a close frame's reason may hold, cut at a character.
fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Writes each frame as one WebSocket message — text when it is UTF-8, else binary —
/// and flushes once: vectored writes, one syscall for many small frames.
pub(crate) async fn write_frames<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    frames: &[OutFrame],
) -> io::Result<()> {
    for f in frames {
        let msg = if f.text {
            Message::text(f.bytes.clone())
        } else {
            Message::binary(f.bytes.clone())
        };
        ws.feed(msg).await.map_err(io::Error::other)?;
    }
    ws.flush().await.map_err(io::Error::other)
}

/// The largest WebSocket message a STOMP session accepts: room for a few frames.
pub(crate) fn max_message(node: &crate::node::Node) -> usize {
    node.config.stomp.max_frame.saturating_mul(4).max(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && cut.chars().all(|c| c == 'é'), "{cut}");
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn picks_highest_offered_stomp_version() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v10.stomp, v11.stomp, my-team-custom"),
        );
        assert_eq!(choose_subprotocol(&h), Some(Version::V1_1));
        assert_eq!(choose_subprotocol(&HeaderMap::new()), None);
    }
}

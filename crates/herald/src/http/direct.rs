//! The direct `/ws` path: the HTTP listener's connections are looked at before hyper.
//!
//! Almost every connection a STOMP server accepts is `GET /ws` with `Upgrade:
//! websocket`, sent whole in one segment. Such a request is parsed here (httparse,
//! the parser hyper uses) from bytes that were only *peeked*, checked by the same
//! code as the routed path ([`websocket::negotiate`], [`admit_headers`]), answered
//! with a 101 written straight to the socket, and its session runs on the bare
//! `TcpStream`: no hyper connection, no router, no upgrade hand-over. Everything else — other paths, a head split over segments or larger
//! than [`PEEK`], a request the negotiation refuses — goes to hyper untouched, so
//! its answer is exactly the routed one.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::admission::{Entry, Permit};
use crate::transport::{self, Context, admit_headers, websocket};

/// Bytes of a request head the direct path looks at; larger heads (big cookies) go
/// to hyper.
const PEEK: usize = 4096;
/// Headers the direct path parses; a request with more goes to hyper.
const MAX_HEADERS: usize = 32;

/// What the first bytes of a connection said.
pub(crate) enum Peeked {
    /// Nothing arrived within the handshake timeout, or the peer closed.
    Nothing,
    /// A whole `GET` head of a STOMP WebSocket path: the direct path may answer it.
    WebSocket(Head),
    /// The HTTP/2 connection preface (prior knowledge, h2c): hyper's, if `server.http2`.
    Http2,
    /// Anything else: hyper's.
    Other,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// A STOMP WebSocket upgrade's request head, still unread on the socket.
pub(crate) struct Head {
    /// Length of the head on the socket.
    len: usize,
    headers: HeaderMap,
    query: Option<String>,
}

/// Waits up to `wait` for the first bytes and looks at them without reading them;
/// `paths` are where a WebSocket upgrade opens a STOMP session.
pub(crate) async fn peek(stream: &TcpStream, wait: Duration, paths: &[String]) -> Peeked {
    let looked = std::future::poll_fn(|cx| {
        // On the thread's stack, only while the kernel copies and httparse reads: no
        // allocation, and nothing in the task's future. Not zeroed: the kernel fills
        // what is looked at.
        let mut space = [MaybeUninit::<u8>::uninit(); PEEK];
        let mut buf = ReadBuf::uninit(&mut space);
        match ready!(stream.poll_peek(cx, &mut buf)) {
            Ok(n) if n > 0 => Poll::Ready(match parse(buf.filled(), paths) {
                Some(head) => Peeked::WebSocket(head),
                None if buf.filled().starts_with(H2_PREFACE) => Peeked::Http2,
                None => Peeked::Other,
            }),
            _ => Poll::Ready(Peeked::Nothing),
        }
    });
    tokio::time::timeout(wait, looked)
        .await
        .unwrap_or(Peeked::Nothing)
}

/// A complete HTTP/1.1 `GET` head of one of `paths` without a body, or `None`.
fn parse(bytes: &[u8], paths: &[String]) -> Option<Head> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let httparse::Status::Complete(len) = req.parse(bytes).ok()? else {
        return None;
    };
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    let (path, query) = match req.path?.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (req.path?, None),
    };
    if !paths.iter().any(|p| p == path) {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && h.value != b"0") {
            return None;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    Some(Head {
        len,
        headers,
        query: query.map(str::to_owned),
    })
}

/// Answers the upgrade and starts the STOMP session's task, which holds the
/// connection's `permit`. Gives the stream back, unread, when the request is one the
/// routed path must answer (a refused negotiation: hyper and the router then produce
/// the same error response).
pub(crate) async fn upgrade(
    mut stream: TcpStream,
    head: Head,
    peer: SocketAddr,
    state: &Context,
    permit: &Arc<Permit>,
) -> Result<(), TcpStream> {
    let Ok(negotiated) = websocket::negotiate(&head.headers) else {
        return Err(stream);
    };
    let admission = admit_headers(
        state.node.clone(),
        peer,
        head.headers,
        head.query,
        Entry::Stomp,
        Some(permit.clone()),
    )
    .await;
    // The head was only peeked: take it off the socket before answering.
    let mut consumed = vec![0u8; head.len];
    if stream.read_exact(&mut consumed).await.is_err() {
        return Ok(());
    }
    drop(consumed);
    let admission = match admission {
        Ok(admission) => admission,
        Err(refusal) => {
            write_refusal(&mut stream, refusal).await;
            return Ok(());
        }
    };
    let mut answer = Vec::with_capacity(160);
    answer.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ",
    );
    answer.extend_from_slice(negotiated.accept_key.as_bytes());
    if let Some(version) = negotiated.protocol {
        answer.extend_from_slice(b"\r\nsec-websocket-protocol: ");
        answer.extend_from_slice(version.subprotocol().as_bytes());
    }
    answer.extend_from_slice(b"\r\n\r\n");
    if stream.write_all(&answer).await.is_err() {
        return Ok(());
    }
    drop(answer);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let ws = websocket::WebSocket::over(stream, websocket::max_message(&state.node), Some(fd));
    // Its own task, tracked like the routed path's sessions (shutdown waits for them).
    // Running the session on in this task would save a spawn but keep this task's
    // state (hyper's builder, the router, the upgrade) for the connection's life:
    // +2.4 KiB RSS per idle connection, measured (docs/BENCHMARKS.md).
    state.tasks.spawn(transport::drive(
        ws,
        state.node.clone(),
        state.shutdown.clone(),
        admission,
    ));
    Ok(())
}

/// Writes an admission refusal (403, 421, 429, 401 with a JSON body) and closes.
pub(crate) async fn write_refusal(stream: &mut TcpStream, refusal: Response<Body>) {
    let (parts, body) = refusal.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut out = format!("HTTP/1.1 {}\r\n", parts.status).into_bytes();
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    if stream.write_all(&out).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /ws?access_token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nCONNECT";

    fn ws() -> Vec<String> {
        vec!["/ws".to_owned()]
    }

    #[test]
    fn takes_a_whole_ws_upgrade_head_and_leaves_what_follows() {
        let head = parse(UPGRADE, &ws()).expect("direct");
        assert_eq!(head.len, UPGRADE.len() - b"CONNECT".len());
        assert_eq!(head.query.as_deref(), Some("access_token=abc"));
        assert_eq!(head.headers["upgrade"], "websocket");
        assert!(websocket::negotiate(&head.headers).is_ok());
    }

    #[test]
    fn leaves_everything_else_to_hyper() {
        let cut = &UPGRADE[..40];
        assert!(parse(cut, &ws()).is_none(), "a head split over segments");
        let other = String::from_utf8_lossy(UPGRADE).replace("/ws?", "/ws/chat?");
        assert!(parse(other.as_bytes(), &ws()).is_none(), "another path");
        let guide = vec!["/gs-guide-websocket".to_owned()];
        assert!(
            parse(UPGRADE, &guide).is_none(),
            "/ws is not one of the paths"
        );
        let moved = String::from_utf8_lossy(UPGRADE).replace("/ws?", "/gs-guide-websocket?");
        assert!(
            parse(moved.as_bytes(), &guide).is_some(),
            "a configured path"
        );
        let post = String::from_utf8_lossy(UPGRADE).replace("GET", "POST");
        assert!(parse(post.as_bytes(), &ws()).is_none(), "another method");
        let old = String::from_utf8_lossy(UPGRADE).replace("HTTP/1.1", "HTTP/1.0");
        assert!(parse(old.as_bytes(), &ws()).is_none(), "HTTP/1.0");
        let body = String::from_utf8_lossy(UPGRADE).replace("Host: x", "Content-Length: 5");
        assert!(parse(body.as_bytes(), &ws()).is_none(), "a body");
        let many = String::from_utf8_lossy(UPGRADE)
            .replace("Host: x\r\n", &"X-A: 1\r\n".repeat(MAX_HEADERS + 1));
        assert!(parse(many.as_bytes(), &ws()).is_none(), "too many headers");
    }
}

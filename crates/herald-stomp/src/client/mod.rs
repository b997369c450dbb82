//! A small async STOMP client over TCP or WebSocket (feature `client`), shared by
//! herald's integration tests and herald-bench.
//!
//! - [`link`]: what carries the bytes — [`Inbound`] and [`Outbound`] for a TCP stream,
//!   a WebSocket, their split halves, and [`Link`] for either chosen at run time.
//! - [`FrameReader`]: decoder plus unread bytes; [`FrameWriter`]: encoder plus a link.
//! - [`Connection`]: both over one link, with the CONNECT exchange; [`tcp`],
//!   [`websocket`] and [`websocket_on`] open the link it runs on.
//!
//! It only moves frames: no retries, no subscriptions, no policy. Callers decide what
//! a timeout or an ERROR means (a test fails, a benchmark counts it).

mod connection;
pub mod link;
mod reader;
mod writer;

use std::io;
use std::time::Duration;

pub use connection::{Connection, tcp, websocket, websocket_on};
pub use link::{Inbound, Link, Outbound, WebSocket};
pub use reader::FrameReader;
pub use writer::{FrameEncoder, FrameWriter};

use crate::{DecodeError, Decoder, Limits};

/// What went wrong on a client connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading from or writing to the link failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The server sent bytes that are not valid STOMP, or exceed the decoder's limits.
    #[error("undecodable bytes from the server: {0}")]
    Decode(#[from] DecodeError),
    /// The WebSocket upgrade failed, or its URL or a header was invalid.
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    /// No whole frame arrived within the given time.
    #[error("nothing arrived within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection where a frame was expected.
    #[error("the server closed the connection")]
    Closed,
}

/// A decoder that accepts what a server may legitimately send a client: large bodies
/// (a benchmark's own payload size, a test's oversize message) and many headers.
pub fn client_decoder() -> Decoder {
    Decoder::new(Limits {
        max_frame: 64 << 20,
        max_headers: 1024,
        max_header_line: 1 << 20,
    })
}

//! STOMP 1.0, 1.1 and 1.2 frames, with no I/O.
//!
//! - [`frame`]: the protocol value — [`Command`], [`Headers`], [`Frame`], [`Version`].
//! - [`decode`]: an incremental decoder; feed it bytes as they arrive, in any split,
//!   and it yields whole frames or a [`DecodeError`] that names the problem.
//! - [`encode`](mod@encode): writes frames, escaping header values as the version requires.
//!
//! Transports (WebSocket, TCP, SockJS) own the sockets; this crate only turns bytes
//! into frames and back, so it can be property-tested and fuzzed on its own.
//! The one exception is opt-in: feature `client` adds [`client`], a small async
//! client that herald's tests and herald-bench share; the server never enables it.

#[cfg(feature = "client")]
pub mod client;
pub mod decode;
pub mod encode;
pub mod frame;

pub use decode::{DecodeError, Decoder, Limits, check_header, printable, receipt_hint};
pub use encode::{encode, encode_header_value, write_header};
pub use frame::{Command, Frame, Headers, Version};

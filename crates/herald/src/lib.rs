//! Herald: a real-time messaging server speaking STOMP 1.0–1.2 over WebSocket and TCP.
//!
//! Layers, top to bottom (see docs/ARCHITECTURE.md):
//! - [`transport`]: WebSocket (`/ws`) and TCP; bytes ⇄ frames; one task per connection
//!   drives a session, its outbox, heart-beats and the final ERROR.
//! - [`session`]: the STOMP state machine — CONNECT, SUBSCRIBE, SEND, ACK/NACK,
//!   transactions, receipts — with no I/O.
//! - [`router`]: destination prefixes → application handlers, user destinations, broker.
//! - [`broker`]: subscriptions (exact and wildcard), topic fan-out, queue round-robin
//!   and redelivery, per-session bounded outboxes.
//! - [`node`], [`config`], [`server`], [`http`]: the running server around them.

pub mod broker;
pub mod config;
mod http;
pub mod node;
pub mod router;
pub mod server;
pub mod session;
pub mod transport;

pub use config::Config;
pub use server::Server;

//! Herald: a real-time messaging server speaking STOMP 1.0–1.2 over WebSocket and TCP.
//!
//! Layers, top to bottom (see docs/ARCHITECTURE.md):
//! - [`transport`]: WebSocket (`/ws`), TCP, and SockJS (`/ws-sockjs`, xhr/streaming/jsonp
//!   fallbacks); bytes ⇄ frames; one task per connection drives a session, its outbox,
//!   heart-beats and the final ERROR.
//! - [`session`]: the STOMP state machine — CONNECT, SUBSCRIBE, SEND, ACK/NACK,
//!   transactions, receipts — with no I/O.
//! - [`handler`]: application handlers (`/app/**`), the HTTP backend proxy, and
//!   [`handler::Messaging`] for publishing from server code.
//! - [`router`]: destination prefixes → application handlers, user destinations, broker.
//! - [`broker`]: subscriptions (exact and wildcard), topic fan-out, queue round-robin
//!   and redelivery, per-session bounded outboxes.
//! - [`message`]: the message model the broker and the bus share (kinds, targets,
//!   messages serialized once, history positions, queue entries).
//! - [`destination`]: the destination grammar (segments, `*`, `**`, captures) and the
//!   limits on what a client may name; used by the broker, the rules and the bus.
//! - [`admission`]: the one way in — protected mode, connection budgets, allowed
//!   hosts and origins, the handshake's token — for every listener and endpoint.
//! - [`auth`]: JWT principals, API keys, destination rules, abuse limits.
//! - [`cluster`]: the bus between nodes (local, or Redis): cross-node delivery,
//!   cluster queues, history and recovery by offset, presence.
//! - [`apps`]: the seeds' chat, greeting and rooms apps, written on [`handler`].
//! - [`ops`]: metrics, the session registry, admin API, health, stats line.
//! - [`notify`]: notifications — persisted (SQLite, MySQL, PostgreSQL), delivered live,
//!   read state, job progress.
//! - [`node`], [`config`], [`server`], [`http`]: the running server around them.
//! - `web`: the web UI (chat, notifications, admin, sign-in) embedded in the binary.

// Refusals are returned as the HTTP response (or the unrouted call) itself; they are
// built only on the refusal path, where boxing them would buy nothing.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod apps;
pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod destination;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
mod http;
pub mod message;
pub mod node;
pub mod notify;
pub mod ops;
mod params;
pub mod router;
pub mod server;
pub mod session;
pub mod transport;
mod web;

pub use config::Config;
pub use server::Server;

//! Herald: a real-time messaging server speaking STOMP 1.0–1.2 over WebSocket and TCP.
//!
//! Layers, top to bottom (see docs/ARCHITECTURE.md):
//! - [`transport`]: WebSocket (`/ws`), TCP, and SockJS (`/ws-sockjs`, xhr/streaming/jsonp
//!   fallbacks); bytes ⇄ frames; one connection loop per connection drives a session —
//!   STOMP, or a [`plain`] endpoint's JSON — its outbox, heart-beats and the last
//!   message.
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
//! - [`apps`]: the seeds' chat, greeting and rooms apps, written on [`handler`] and
//!   [`plain`] (plain JSON WebSocket endpoints without STOMP).
//! - [`ops`]: metrics, the session registry, admin API, health, stats line.
//! - [`notify`]: notifications — persisted (SQLite, MySQL, PostgreSQL), delivered live,
//!   read state, job progress.
//! - [`node`], [`config`], [`server`], [`http`]: the running server around them.
//! - `web`: the web UI (chat, notifications, admin, sign-in) embedded in the binary.

// Refusals are returned as the HTTP response (or the unrouted call) itself; they are
// built only on the refusal path, where boxing them would buy nothing.
#![allow(clippy::result_large_err)]

// The library API: configure a server, give it application handlers, run it.
pub mod config;
pub mod handler;
pub mod server;

// The server's insides, reachable (and hidden from the documentation) for the
// integration tests, the fuzz targets and the command line, which observe, inject
// faults and mint tokens through them. Not an API: they change without notice.
#[doc(hidden)]
pub mod auth;
#[doc(hidden)]
pub mod broker;
#[doc(hidden)]
pub mod cluster;
#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod message;
#[doc(hidden)]
pub mod node;
#[doc(hidden)]
pub mod notify;

mod admission;
mod apps;
mod destination;
mod error;
mod http;
mod ops;
mod params;
mod router;
mod session;
mod transport;
mod web;

pub use config::Config;
pub use server::Server;
/// Plain JSON WebSocket endpoints without STOMP (`Endpoint`, `Socket`), mounted with
/// [`Server::endpoint`].
pub use transport::plain;

//! Herald: a real-time messaging server speaking STOMP 1.0–1.2 over WebSocket, SockJS
//! and TCP, with Spring's destinations (`/topic`, `/queue`, `/app`, `/user`), a Redis
//! cluster bus, and notifications kept in SQLite, MySQL or PostgreSQL.
//!
//! Embedding it takes four parts:
//! - [`config`]: every setting ([`Config`]), loaded from defaults, a TOML file and
//!   `HERALD_*` variables, each section checked;
//! - [`handler`]: application handlers for `/app/**` destinations (Spring's
//!   `@MessageMapping`), and [`handler::Messaging`] for publishing from server code;
//! - [`plain`]: JSON WebSocket endpoints without STOMP (Spring's
//!   `TextWebSocketHandler`), which subscribe their sockets to destinations;
//! - [`server`]: [`Server::bind_with`] the handlers, [`Server::endpoint`] the plain
//!   endpoints, then [`Server::run`].
//!
//! The layers inside (transports, the STOMP session, router, broker, cluster bus,
//! admission, auth, notifications) are drawn in docs/ARCHITECTURE.md.

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

//! The abuse suite: attacks a client can make, each against a real `herald serve`
//! process (this package's build, or `HERALD_BIN`), on the default configuration
//! unless the attack needs a setting.
//!
//! Every attack asserts three things: the attacker is told what it ran into (an
//! ERROR frame or an HTTP 4xx naming the problem or the limit); meanwhile a bystander
//! on its own WebSocket session and `/health` are answered promptly throughout
//! ([`harness::Watch`]); and the server's RSS grows by less than a bound the test
//! states. The attacks run one at a time ([`harness::serial`]).
//!
//! - `destinations`: wildcard patterns built to make matching explode.
//! - `budgets`: a queue nobody reads, padded WebSocket messages, history rings, an
//!   endless transaction, a client-ack subscriber that never ACKs.
//! - `connections`: idle HTTP/2 connections, the per-IP and total connection caps.
//! - `bad_input`: a bad percent escape, garbage before CONNECT, forged headers.
//! - `rooms`: the demo chat's rooms created without end.
//! - `notify`: one huge notification request.

// Shared between the test files with `pub`: there is no API here to keep small.
#![allow(unreachable_pub)]

mod harness;
mod http;
mod stomp;

mod bad_input;
mod budgets;
mod connections;
mod destinations;
mod notify;
mod rooms;

//! Operating Herald: Prometheus metrics ([`metrics`]) and the live session registry
//! ([`sessions`]). They sit low, so every layer can count and register without
//! looking up; the HTTP side — `/metrics`, health, the admin API — is with the other
//! routes (`http/admin.rs`), the periodic stats line with the node.

pub(crate) mod config;
pub(crate) mod metrics;
pub(crate) mod sessions;

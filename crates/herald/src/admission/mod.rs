//! The one way into Herald: every connection and every request that opens or carries a
//! session passes here, by whichever door — `/ws` (direct and routed), each SockJS
//! request, `/ws/chat` and `/ws/chat-sockjs`, STOMP over TCP.
//!
//! - [`Gate::accept`], when a listener accepts a connection: protected mode (while no
//!   issuer and no API key is configured, only loopback clients are answered unless
//!   `auth.anonymous = "open"`), the total connection cap and the per-IP cap. Its
//!   [`Permit`] is held for the connection's life, by the session when it upgrades.
//! - [`Gate::admit`], when an HTTP request asks for a session: the `Host`
//!   (`hosts.rs`, against DNS rebinding), the `Origin` (`origin.rs`, exact), then the
//!   token (`auth::Auth::handshake`). [`Gate::check_origin`] alone guards every
//!   state-changing request that the auth cookie authenticates (CSRF).
//!
//! A refusal is a [`Refusal`]: an HTTP status with a JSON body, or an ERROR frame's
//! text for TCP. This module looks only down and beside (auth, config, ops::metrics);
//! the listeners and transports call it, never the other way round.

pub(crate) mod hosts;
pub(crate) mod origin;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode, header};

use crate::auth::config::{AnonymousAccess, AuthConfig, LimitsConfig};
use crate::auth::limits::{Budget, Counter, IpSlot, Share};
use crate::auth::{Auth, AuthError, Handshake};
use crate::ops::metrics;
use hosts::AllowedHosts;
use origin::Origins;

/// File descriptors kept free of connections by the default `limits.max_connections`:
/// listeners, the database pool, Redis, logs, and the sockets of refusals.
const FD_HEADROOM: usize = 256;

/// What the accepting side learned before a session starts.
#[derive(Default)]
pub(crate) struct Admission {
    /// The handshake's token check (WebSocket, SockJS); `None` for TCP.
    pub handshake: Option<Handshake>,
    /// The connection's place in the connection budgets, held until the session ends.
    pub permit: Option<Arc<Permit>>,
}

/// What the token check needs to know about the way in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// STOMP: the CONNECT frame may still bring the token.
    Stomp,
    /// A client that sends no CONNECT (the demo's plain JSON chat): the token comes
    /// with the handshake or not at all.
    Plain,
}

/// Which listener accepted a connection (a label of the connection metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Http,
    Stomp,
}

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Listener::Http => "http",
            Listener::Stomp => "stomp",
        }
    }
}

/// A connection's place in `limits.max_connections` and `limits.max_connections_per_ip`.
#[derive(Debug)]
pub struct Permit {
    listener: Listener,
    _total: Share,
    _ip: IpSlot,
}

impl Drop for Permit {
    fn drop(&mut self) {
        metrics::connection_released(self.listener.name());
    }
}

/// A SockJS session's place in `sockjs.max_sessions` and `sockjs.max_sessions_per_ip`.
#[derive(Debug)]
pub struct SockJsSlot {
    _total: Share,
    _ip: IpSlot,
}

impl Drop for SockJsSlot {
    fn drop(&mut self) {
        metrics::sockjs_session_closed();
    }
}

/// Why a connection or request is not let in.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    /// A stable name for the reason: the JSON body's `code` and the metric's label.
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        metrics::connection_refused(code);
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    /// The HTTP answer: the status with `{"error": ..., "code": ...}`.
    pub fn response(&self) -> Response<Body> {
        let body = serde_json::json!({ "error": self.message, "code": self.code }).to_string();
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// The admission rules and budgets of one node.
#[derive(Debug)]
pub struct Gate {
    protected: bool,
    hosts: AllowedHosts,
    origins: Origins,
    connections: Arc<Budget>,
    per_ip: Arc<Counter<IpAddr>>,
    sockjs_sessions: Arc<Budget>,
    sockjs_per_ip: Arc<Counter<IpAddr>>,
}

impl Gate {
    /// `allowed_hosts` is `server.allowed_hosts`, `sockjs_sessions` the SockJS
    /// sessions allowed in all and per address. `Err` names a setting that does not
    /// parse (an origin pattern).
    pub fn new(
        auth: &AuthConfig,
        limits: &LimitsConfig,
        allowed_hosts: &[String],
        sockjs_sessions: (usize, usize),
    ) -> Result<Gate, String> {
        let protected = auth.anonymous == AnonymousAccess::Loopback
            && auth.issuers.is_empty()
            && auth.api_keys.is_empty();
        let max = match limits.max_connections {
            0 => derived_max_connections(),
            n => n,
        };
        Ok(Gate {
            protected,
            hosts: AllowedHosts::new(allowed_hosts),
            origins: Origins::new(&auth.allowed_origins)?,
            connections: Budget::new(max),
            per_ip: Counter::new(limits.max_connections_per_ip),
            sockjs_sessions: Budget::new(sockjs_sessions.0),
            sockjs_per_ip: Counter::new(sockjs_sessions.1),
        })
    }

    /// Protected mode: no credentials configured and `auth.anonymous = "loopback"`.
    pub fn is_protected(&self) -> bool {
        self.protected
    }

    /// The total connection cap in force (`limits.max_connections`, or derived).
    pub fn max_connections(&self) -> usize {
        self.connections.limit()
    }

    /// Lets a freshly accepted connection in, or says why not.
    pub fn accept(&self, peer: IpAddr, listener: Listener) -> Result<Permit, Refusal> {
        if self.protected && !peer.to_canonical().is_loopback() {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "protected_mode",
                PROTECTED_MODE,
            ));
        }
        let (total, ip) = take_places(&self.connections, &self.per_ip, peer, &CONNECTIONS)?;
        metrics::connection_accepted(listener.name());
        Ok(Permit {
            listener,
            _total: total,
            _ip: ip,
        })
    }

    /// The `Host` check alone (every HTTP request, against DNS rebinding): `host` is
    /// the `Host` header, or HTTP/2's `:authority`.
    pub fn check_host(&self, host: Option<&[u8]>) -> Result<(), Refusal> {
        let Some(host) = host else {
            return Ok(());
        };
        if std::str::from_utf8(host).is_ok_and(|h| self.hosts.allows(h)) {
            return Ok(());
        }
        Err(Refusal::new(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            format!(
                "host '{}' is not served here (server.allowed_hosts)",
                String::from_utf8_lossy(host)
            ),
        ))
    }

    /// Whether the request's `Origin` may read answers (CORS); false without one.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| self.origins.allows(o, headers, self.protected))
    }

    /// The `Origin` check alone (`origin.rs`): a request that opens a session, and
    /// every state-changing request a browser's cookie authenticates (against CSRF).
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        self.origins.check(headers, self.protected).map_err(|e| {
            let code = if headers.contains_key(header::ORIGIN) {
                "origin_not_allowed"
            } else {
                "cross_site"
            };
            Refusal::new(StatusCode::FORBIDDEN, code, e)
        })
    }

    /// Checks a request that opens or carries a session: host, origin, then the token.
    pub async fn admit(
        &self,
        auth: &Auth,
        peer: SocketAddr,
        headers: &HeaderMap,
        query: Option<&str>,
        entry: Entry,
    ) -> Result<Handshake, Refusal> {
        self.check_host(headers.get(header::HOST).map(|h| h.as_bytes()))?;
        self.check_origin(headers)?;
        let refuse = |e: AuthError| {
            tracing::info!(%peer, reason = %e, "handshake refused");
            metrics::auth_failure("handshake");
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("authentication failed: {e}"),
            )
        };
        let handshake = auth.handshake(headers, query).await.map_err(refuse)?;
        if entry == Entry::Plain && auth.config.required && handshake == Handshake::NoToken {
            return Err(refuse(AuthError::unauthenticated(
                "no access token with the handshake (this endpoint reads no CONNECT frame)",
            )));
        }
        Ok(handshake)
    }

    /// A place for a new SockJS session of the HTTP transports.
    pub fn sockjs_session(&self, peer: IpAddr) -> Result<SockJsSlot, Refusal> {
        let (total, ip) = take_places(
            &self.sockjs_sessions,
            &self.sockjs_per_ip,
            peer,
            &SOCKJS_SESSIONS,
        )?;
        metrics::sockjs_session_opened();
        Ok(SockJsSlot {
            _total: total,
            _ip: ip,
        })
    }

    /// A request of a SockJS session from someone other than its opener.
    pub fn not_the_opener(&self) -> Refusal {
        Refusal::new(
            StatusCode::FORBIDDEN,
            "sockjs_session_owner",
            "this SockJS session belongs to another client (address or credentials differ)",
        )
    }
}

/// A budget in total and per IP: what is counted, and the codes and settings that name
/// each limit in a refusal.
struct Places {
    what: &'static str,
    total: (&'static str, &'static str),
    per_ip: (&'static str, &'static str),
}

const CONNECTIONS: Places = Places {
    what: "connections",
    total: ("max_connections", "limits.max_connections"),
    per_ip: ("max_connections_per_ip", "limits.max_connections_per_ip"),
};

const SOCKJS_SESSIONS: Places = Places {
    what: "SockJS sessions",
    total: ("sockjs_max_sessions", "sockjs.max_sessions"),
    per_ip: ("sockjs_max_sessions_per_ip", "sockjs.max_sessions_per_ip"),
};

/// A place in `total` and in `per_ip` for `peer`, or the refusal naming the full one
/// (503 for the total, 429 for the address).
fn take_places(
    total: &Arc<Budget>,
    per_ip: &Arc<Counter<IpAddr>>,
    peer: IpAddr,
    places: &Places,
) -> Result<(Share, IpSlot), Refusal> {
    let Some(share) = total.acquire() else {
        let (code, setting) = places.total;
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            format!(
                "too many {}: {} open (limit {setting})",
                places.what,
                total.limit()
            ),
        ));
    };
    let Some(slot) = per_ip.acquire(peer) else {
        let (code, setting) = places.per_ip;
        return Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            code,
            format!(
                "too many {} from {peer} (limit {}, {setting})",
                places.what,
                per_ip.limit()
            ),
        ));
    };
    Ok((share, slot))
}

/// What protected mode tells the log at start and every refused client.
pub(crate) const PROTECTED_MODE: &str = "Herald is in protected mode: no token issuer (auth.issuers) and no API key (auth.api_keys) is configured, so only loopback clients are answered. Configure credentials, or set auth.anonymous = \"open\" to serve a trusted network without them.";

/// `RLIMIT_NOFILE` less [`FD_HEADROOM`]: what the process can hold open; 0 (no
/// limit) where the limit cannot be read.
#[allow(unsafe_code)]
fn derived_max_connections() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out-pointer to an rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            let soft = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
            return soft.saturating_sub(FD_HEADROOM).max(16);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn protected_mode_answers_loopback_only() {
        let gate = Config::default().new_gate().unwrap();
        assert!(gate.is_protected());
        assert!(
            gate.accept("127.0.0.1".parse().unwrap(), Listener::Http)
                .is_ok()
        );
        assert!(gate.accept("::1".parse().unwrap(), Listener::Http).is_ok());
        assert!(
            gate.accept("::ffff:127.0.0.1".parse().unwrap(), Listener::Http)
                .is_ok()
        );
        let r = gate
            .accept("192.0.2.7".parse().unwrap(), Listener::Stomp)
            .unwrap_err();
        assert_eq!(
            (r.status, r.code),
            (StatusCode::FORBIDDEN, "protected_mode")
        );
        assert!(r.message.contains("auth.anonymous"));

        let mut open = Config::default();
        open.auth.anonymous = AnonymousAccess::Open;
        let gate = open.new_gate().unwrap();
        assert!(!gate.is_protected());
        assert!(
            gate.accept("192.0.2.7".parse().unwrap(), Listener::Http)
                .is_ok()
        );
    }

    #[test]
    fn connection_budgets_are_held_by_permits() {
        let mut c = Config::default();
        c.limits.max_connections = 2;
        c.limits.max_connections_per_ip = 1;
        let gate = c.new_gate().unwrap();
        let a = gate
            .accept("127.0.0.1".parse().unwrap(), Listener::Http)
            .unwrap();
        let e = gate
            .accept("127.0.0.1".parse().unwrap(), Listener::Http)
            .unwrap_err();
        assert!(
            e.message.contains("limits.max_connections_per_ip"),
            "{}",
            e.message
        );
        let _b = gate
            .accept("127.0.0.2".parse().unwrap(), Listener::Http)
            .unwrap();
        let e = gate
            .accept("127.0.0.3".parse().unwrap(), Listener::Http)
            .unwrap_err();
        assert!(
            e.message.contains("limits.max_connections)"),
            "{}",
            e.message
        );
        drop(a);
        assert!(
            gate.accept("127.0.0.1".parse().unwrap(), Listener::Http)
                .is_ok()
        );
    }

    #[test]
    fn the_default_cap_leaves_descriptors_free() {
        let gate = Config::default().new_gate().unwrap();
        assert!(gate.max_connections() >= 16);
    }
}

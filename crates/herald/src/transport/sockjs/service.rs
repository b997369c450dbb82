//! One SockJS endpoint: its URLs (dispatch), its live sessions, and the admission
//! of every request of a session.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use axum::routing::{MethodRouter, any};
use parking_lot::Mutex;

use super::answers::*;
use super::conn::{Conn, SockJsTransport};
use super::session::Session;
use super::{App, GO_AWAY, Opened, Options, polling, streaming, websocket};
use crate::admission::Entry;
use crate::auth::Handshake;
use crate::transport::Admission;
use crate::transport::Context;

/// Who opened a session: every later request of it must come from the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Opener {
    pub(super) ip: IpAddr,
    /// The handshake's principal (`None`: no token came with it).
    pub(super) principal: Option<String>,
}

/// A request that passed admission.
pub(crate) struct Admitted {
    pub(super) handshake: Handshake,
    pub(super) opener: Opener,
}

/// One SockJS endpoint: its prefix, settings, application and live sessions.
pub(crate) struct Service {
    pub(super) prefix: String,
    /// STOMP, or an application that reads no CONNECT frame (the token check differs).
    pub(super) entry: Entry,
    /// Set at construction, or from the node's configuration at the first request.
    pub(super) opts: OnceLock<Options>,
    pub(super) app: App,
    pub(super) sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Service {
    /// An endpoint at `prefix`; `opts` `None` takes them from `[sockjs]` at the first
    /// request (for routes built before the node exists, like the apps').
    pub(crate) fn new(
        prefix: impl Into<String>,
        entry: Entry,
        opts: Option<Options>,
        app: App,
    ) -> Arc<Service> {
        let cell = OnceLock::new();
        if let Some(o) = opts {
            let _ = cell.set(o);
        }
        Arc::new(Service {
            prefix: prefix.into(),
            entry,
            opts: cell,
            app,
            sessions: Mutex::default(),
        })
    }

    pub(super) fn opts(&self) -> &Options {
        self.opts
            .get()
            .expect("options are set before the first request is served")
    }

    /// The routes of this endpoint: `{prefix}`, `{prefix}/` and everything under it.
    pub(crate) fn routes(self: &Arc<Self>) -> Router<Context> {
        let p = self.prefix.trim_end_matches('/').to_owned();
        self.routes_below()
            .route(&p, self.handler())
            .route(&format!("{p}/"), self.handler())
    }

    /// Only what lies below the prefix (`/info`, the sessions, `/websocket`, the iframe
    /// page): for a prefix whose own path answers something else, such as `/ws` (the
    /// plain WebSocket upgrade). Clients never ask for the greeting at the prefix.
    pub(crate) fn routes_below(self: &Arc<Self>) -> Router<Context> {
        let p = self.prefix.trim_end_matches('/').to_owned();
        Router::new().route(&format!("{p}/{{*rest}}"), self.handler())
    }

    fn handler(self: &Arc<Self>) -> MethodRouter<Context> {
        let service = self.clone();
        any(
            move |State(state): State<Context>,
                  ConnectInfo(peer): ConnectInfo<SocketAddr>,
                  req: Request<Body>| {
                let service = service.clone();
                async move { service.dispatch(state, peer, req).await }
            },
        )
    }

    pub(super) async fn dispatch(
        self: Arc<Self>,
        state: Context,
        peer: SocketAddr,
        req: Request<Body>,
    ) -> Response<Body> {
        self.opts
            .get_or_init(|| Options::from_config(&state.node.config.sockjs, &state.node));
        let path = req.uri().path();
        let rest = path
            .strip_prefix(self.prefix.trim_end_matches('/'))
            .unwrap_or("");
        let rest = rest.strip_prefix('/').unwrap_or(rest).to_owned();
        let method = req.method().clone();
        let cors = self.cors_allowed(&state, req.headers());
        let offered = self.opts().transports;
        match rest.as_str() {
            "" => match method {
                Method::GET | Method::HEAD => text(StatusCode::OK, "Welcome to SockJS!\n"),
                _ => not_allowed("GET"),
            },
            "info" => match method {
                Method::GET => self.info(req.headers(), cors),
                Method::OPTIONS => options(req.headers(), cors, "OPTIONS, GET"),
                _ => not_allowed("OPTIONS, GET"),
            },
            "websocket" if offered.websocket => {
                websocket::upgrade(self, state, peer, req, false).await
            }
            r if is_iframe(r) => match method {
                Method::GET => iframe(req.headers(), &self.opts().client_url),
                _ => not_allowed("GET"),
            },
            r => {
                let parts: Vec<&str> = r.split('/').collect();
                let [_server, session, transport] = parts[..] else {
                    return not_found();
                };
                if parts[..2].iter().any(|p| p.is_empty() || p.contains('.')) {
                    return not_found();
                }
                let session = session.to_owned();
                match (transport, method) {
                    (t, _) if !offered.offers(t) => not_found(),
                    ("websocket", Method::GET) => {
                        websocket::upgrade(self, state, peer, req, true).await
                    }
                    ("websocket", _) => not_allowed("GET"),
                    ("xhr" | "xhr_send" | "xhr_streaming", Method::OPTIONS) => {
                        options(req.headers(), cors, "OPTIONS, POST")
                    }
                    ("xhr", Method::POST) => polling::xhr(self, state, peer, req, session).await,
                    ("jsonp", Method::GET) => polling::jsonp(self, state, peer, req, session).await,
                    ("xhr_send", Method::POST) => {
                        polling::send(self, state, peer, req, session, polling::Sender::Xhr).await
                    }
                    ("jsonp_send", Method::POST) => {
                        polling::send(self, state, peer, req, session, polling::Sender::Jsonp).await
                    }
                    ("xhr_streaming", Method::POST) => {
                        streaming::serve(self, state, peer, req, session, streaming::Kind::Xhr)
                            .await
                    }
                    ("eventsource", Method::GET) => {
                        streaming::serve(
                            self,
                            state,
                            peer,
                            req,
                            session,
                            streaming::Kind::EventSource,
                        )
                        .await
                    }
                    ("htmlfile", Method::GET) => {
                        streaming::serve(self, state, peer, req, session, streaming::Kind::HtmlFile)
                            .await
                    }
                    ("xhr" | "xhr_send" | "xhr_streaming" | "jsonp_send", _) => {
                        not_allowed("OPTIONS, POST")
                    }
                    ("jsonp" | "eventsource" | "htmlfile", _) => not_allowed("GET"),
                    _ => not_found(),
                }
            }
        }
    }

    pub(super) fn info(&self, headers: &HeaderMap, cors_ok: bool) -> Response<Body> {
        let body = serde_json::json!({
            "websocket": self.opts().transports.websocket,
            "cookie_needed": self.opts().cookie_needed,
            "origins": ["*:*"],
            "entropy": rand_u32(),
        })
        .to_string();
        let mut r = text(StatusCode::OK, body);
        set(
            &mut r,
            header::CONTENT_TYPE,
            "application/json;charset=UTF-8",
        );
        no_cache(&mut r);
        cors(headers, cors_ok, &mut r);
        r
    }

    /// Whether CORS lets the request's origin read the answer: an allowed origin, or
    /// any for the test endpoints.
    pub(super) fn cors_allowed(&self, state: &Context, headers: &HeaderMap) -> bool {
        !self.opts().admit || state.node.gate.origin_allowed(headers)
    }

    /// Admits one request of a session (`None`: this endpoint admits nothing).
    /// Takes the request's parts: a borrowed body (not `Sync`) would make the future
    /// not `Send`.
    pub(super) async fn admit(
        &self,
        state: &Context,
        peer: SocketAddr,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Option<Admitted>, Response<Body>> {
        if !self.opts().admit {
            return Ok(None);
        }
        let node = &state.node;
        let handshake = node
            .gate
            .admit(&node.auth, peer, headers, query, self.entry)
            .await
            .map_err(|r| r.response())?;
        let principal = match &handshake {
            Handshake::Authenticated(p) => Some(p.name.clone()),
            Handshake::NoToken => None,
        };
        Ok(Some(Admitted {
            handshake,
            opener: Opener {
                ip: peer.ip(),
                principal,
            },
        }))
    }

    /// `Err` (403) when a request by `by` does not come from the session's opener.
    pub(super) fn check_opener(
        &self,
        state: &Context,
        session: &Session,
        by: Option<&Opener>,
    ) -> Result<(), Response<Body>> {
        match (&session.opener, by) {
            (Some(opener), Some(by)) if opener != by => {
                tracing::info!(?opener, ?by, "SockJS request from another client refused");
                Err(state.node.gate.not_the_opener().response())
            }
            _ => Ok(()),
        }
    }

    /// The session a receiving request is for, opened (counted against the budgets,
    /// task spawned) when it does not exist yet.
    pub(super) async fn open(
        self: &Arc<Self>,
        state: &Context,
        admitted: Option<Admitted>,
        peer: SocketAddr,
        id: &str,
    ) -> Result<Arc<Session>, Response<Body>> {
        if let Some(s) = self.find(id) {
            self.check_opener(state, &s, admitted.as_ref().map(|a| &a.opener))?;
            return Ok(s);
        }
        let slot = match admitted {
            Some(_) => Some(
                state
                    .node
                    .gate
                    .sockjs_session(peer.ip())
                    .map_err(|r| r.response())?,
            ),
            None => None,
        };
        let (handshake, opener) = match admitted {
            Some(a) => (Some(a.handshake), Some(a.opener)),
            None => (None, None),
        };
        let session = {
            let mut sessions = self.sessions.lock();
            if let Some(s) = sessions.get(id) {
                let s = s.clone();
                drop(sessions);
                self.check_opener(state, &s, opener.as_ref())?;
                return Ok(s);
            }
            let s = Arc::new(Session::new(self.opts(), opener));
            sessions.insert(id.to_owned(), s.clone());
            s
        };
        let admission = Admission {
            handshake,
            permit: None,
        };
        let conn = Conn::Http(SockJsTransport {
            session: session.clone(),
        });
        let run = (self.app)(
            conn,
            Opened {
                state: state.clone(),
                admission,
            },
        );
        let (service, s, id, shutdown) = (
            self.clone(),
            session.clone(),
            id.to_owned(),
            state.shutdown.clone(),
        );
        state.tasks.spawn(async move {
            // The session's place in the budgets, until it leaves the registry.
            let _slot = slot;
            run.await;
            s.close_with(GO_AWAY);
            // Late requests still get the close frame until the session has been
            // without a receiver for the disconnect delay.
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = s.unattached_for(service.opts().disconnect_delay) => {}
            }
            let mut sessions = service.sessions.lock();
            if sessions.get(&id).is_some_and(|cur| Arc::ptr_eq(cur, &s)) {
                sessions.remove(&id);
            }
        });
        Ok(session)
    }

    pub(super) fn find(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(id).cloned()
    }

    /// `JSESSIONID` for endpoints that need it: the client's own, or `dummy`.
    pub(super) fn cookie(&self, headers: &HeaderMap, r: &mut Response<Body>) {
        if !self.opts().cookie_needed {
            return;
        }
        let id = crate::params::cookie(headers, "JSESSIONID")
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b';'))
            .unwrap_or("dummy");
        if let Ok(v) = HeaderValue::from_str(&format!("JSESSIONID={id}; path=/")) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
}

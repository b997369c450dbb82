//! The web UI: plain HTML, CSS and ES modules from `crates/herald/web/`, embedded in the
//! binary with rust-embed (no front-end build step), and the two small endpoints the
//! pages need besides the STOMP and REST APIs they use like any client:
//!
//! - pages: `/` (what this server is), `/chat`, `/notifications`, `/admin`, `/signin`;
//!   assets under `/web/...` (`/web/vendor/` holds @stomp/stompjs and sockjs-client,
//!   copied from npm by `scripts/vendor-web.sh`; `/web/js/herald-client.js` is the
//!   client library, whose one copy is the npm package in `clients/herald-client/`);
//! - `GET /api/web/session`: the auth mode, whether the development login is on, and
//!   who the request's cookie or bearer token names;
//! - `POST /api/web/signin` {token}: verifies a pasted token and sets it as the
//!   HttpOnly `auth.cookie_name` cookie; `POST /api/web/signout` clears it;
//! - `POST /api/dev/login` {sub, roles?, name?} (only with `web.dev_login = true` and an
//!   issuer that can sign, and only for loopback clients): mints a token
//!   (`auth::jwt::mint`) and sets it as that cookie; `POST /api/dev/logout` clears it.
//!
//! The pages hold no token: the cookie, out of the scripts' reach, authenticates the
//! WebSocket, SockJS and REST requests. Every answer carries a Content-Security-Policy
//! without inline script ([`CSP`]), `frame-ancestors 'none'`, a same-origin
//! Referrer-Policy and `nosniff`, so an injected tag runs nothing and the pages cannot
//! be framed.
//!
//! Caching: every asset carries an `ETag` (its SHA-256) and is revalidated
//! (`Cache-Control: no-cache`, 304 on `If-None-Match`); the vendored libraries, which
//! change only with a new version, may be kept for a day.

pub(crate) mod config;

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Handshake;
use crate::error::ApiError;
use crate::transport::Context;

#[derive(rust_embed::RustEmbed)]
#[folder = "web/"]
struct Assets;

/// herald-client, served to the pages and to other sites' scripts, is also an npm
/// package: its folder holds the one copy, so the two never drift apart.
const HERALD_CLIENT: (&str, &[u8]) = (
    "js/herald-client.js",
    include_bytes!("../../../../clients/herald-client/herald-client.js"),
);

/// An asset's bytes and a digest of them (for the ETag).
fn asset_file(path: &str) -> Option<(std::borrow::Cow<'static, [u8]>, String)> {
    if path == HERALD_CLIENT.0 {
        let digest = sha1_smol::Sha1::from(HERALD_CLIENT.1).digest().to_string();
        return Some((std::borrow::Cow::Borrowed(HERALD_CLIENT.1), digest));
    }
    let file = Assets::get(path)?;
    let digest = hex(&file.metadata.sha256_hash()[..16]);
    Some((file.data, digest))
}

/// Page paths and the file each serves.
const PAGES: &[(&str, &str)] = &[
    ("/", "index.html"),
    ("/chat", "chat.html"),
    ("/notifications", "notifications.html"),
    ("/admin", "admin.html"),
    ("/signin", "signin.html"),
];

/// How long a development login's token lives.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// The pages' Content-Security-Policy: scripts only from files of this origin (no
/// inline script, no eval), connections only to this origin (`'self'` covers its
/// `ws:`/`wss:`), no plugins, no `<base>` rewriting, forms to this origin, never
/// framed. Inline `style` attributes are allowed: they cannot run code.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The web UI's routes. A page whose path is also one of `sockets` (a plain
/// WebSocket endpoint, such as the notifications socket at `/notifications`) answers
/// a WebSocket upgrade with that endpoint and any other GET with the page.
pub(crate) fn routes(sockets: &[(String, axum::Router<Context>)]) -> axum::Router<Context> {
    let mut router = axum::Router::new()
        .route("/web/{*path}", get(asset))
        .route("/api/web/session", get(session))
        .route("/api/web/signin", post(signin))
        .route("/api/web/signout", post(signout))
        .route("/api/dev/login", post(dev_login))
        .route("/api/dev/logout", post(dev_logout));
    for (path, file) in PAGES {
        router = match sockets.iter().find(|(p, _)| p == path) {
            Some((_, socket)) => {
                let socket = socket.clone();
                router.route(
                    path,
                    get(move |State(state): State<Context>, req: Request<Body>| {
                        let socket = socket.clone();
                        async move { page_or_socket(file, socket, state, req).await }
                    }),
                )
            }
            None => router.route(
                path,
                get(move |headers: HeaderMap| async move { serve(file, &headers) }),
            ),
        };
    }
    router
}

/// Whether a page's path is taken by the web UI.
pub(crate) fn is_page(path: &str) -> bool {
    PAGES.iter().any(|(p, _)| *p == path)
}

/// The socket for a WebSocket upgrade, else the page.
async fn page_or_socket(
    file: &'static str,
    socket: axum::Router<Context>,
    state: Context,
    req: Request<Body>,
) -> Response {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgrade {
        return serve(file, req.headers());
    }
    match tower::ServiceExt::oneshot(socket.with_state(state), req).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// The content type by file extension (the assets are ours: a short list suffices).
pub(crate) fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt" | "LICENSE") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some((data, digest)) = asset_file(path) else {
        let mut response = (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "not found",
        )
            .into_response();
        secure(response.headers_mut());
        return response;
    };
    let etag = format!("\"{digest}\"");
    let cache = if path.starts_with("vendor/") {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(path))],
            data.into_owned(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secure(h);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

/// The security headers every page and asset carries.
fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the sign-in page and the others need to know about authentication.
async fn session(State(state): State<Context>, headers: HeaderMap) -> Response {
    let node = &state.node;
    let auth = &node.auth;
    let (user, error) = match auth.handshake(&headers, None).await {
        Ok(Handshake::Authenticated(p)) => (
            Some(json!({ "name": p.name, "displayName": p.display_name, "roles": p.roles })),
            None,
        ),
        Ok(Handshake::NoToken) => (None, None),
        Err(e) => (None, Some(e.to_string())),
    };
    Json(json!({
        "mode": if auth.is_anonymous() { "anonymous" } else { "jwt" },
        "required": auth.config.required,
        "devLogin": dev_login_on(&state),
        "adminRole": auth.config.admin_role,
        "node": node.id,
        "version": env!("CARGO_PKG_VERSION"),
        "user": user,
        "error": error,
    }))
    .into_response()
}

fn dev_login_on(state: &Context) -> bool {
    state.node.config.web.dev_login && !state.node.auth.is_anonymous()
}

#[derive(Deserialize)]
struct DevLogin {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    name: Option<String>,
}

/// 400 `bad_request` or 401 `unauthorized`.
fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        _ => "bad_request",
    };
    ApiError::new(status, code, msg).into_response()
}

/// The `Set-Cookie` value that signs the browser in with `token` for `max_age`.
fn session_cookie(state: &Context, token: &str, max_age: Duration) -> Option<HeaderValue> {
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        state.node.auth.config.cookie_name,
        max_age.as_secs()
    );
    HeaderValue::from_str(&cookie).ok()
}

/// A sign-in must come from a page of an allowed origin: another site must not sign
/// the browser in as someone else (login CSRF).
fn same_origin(state: &Context, headers: &HeaderMap) -> Result<(), Response> {
    state
        .node
        .gate
        .check_origin(headers)
        .map_err(|r| ApiError::new(r.status, r.code, r.message).into_response())
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// Verifies a pasted token and keeps it in the HttpOnly cookie for its lifetime.
async fn signin(
    State(state): State<Context>,
    headers: HeaderMap,
    body: Result<Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(refused) = same_origin(&state, &headers) {
        return refused;
    }
    let auth = &state.node.auth;
    if auth.is_anonymous() {
        return error(
            StatusCode::NOT_FOUND,
            "no token issuer is configured (auth.issuers): anonymous mode has no sign-in",
        );
    }
    if !auth
        .config
        .token_sources
        .contains(&crate::auth::config::TokenSource::Cookie)
    {
        return error(
            StatusCode::CONFLICT,
            "the web UI signs in with the auth cookie, and \"cookie\" is not one of auth.token_sources",
        );
    }
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let token = req.token.trim();
    let principal = match auth.verify(token).await {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNAUTHORIZED, format!("token refused: {e}")),
    };
    let max_age = principal.time_left().unwrap_or(DEV_TOKEN_TTL);
    let mut response = Json(json!({
        "name": principal.name,
        "displayName": principal.display_name,
        "roles": principal.roles,
        "expiresIn": max_age.as_secs(),
    }))
    .into_response();
    if let Some(v) = session_cookie(&state, token, max_age) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// Clears the cookie; from this site only (the Lax cookie does not come along on a
/// foreign site's form POST, so the cookie check of the HTTP layer does not see it).
async fn signout(State(state): State<Context>, headers: HeaderMap) -> Response {
    if let Err(refused) = same_origin(&state, &headers) {
        return refused;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(v) = session_cookie(&state, "", Duration::ZERO) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn dev_login(
    State(state): State<Context>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<DevLogin>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(refused) = same_origin(&state, &headers) {
        return refused;
    }
    if !dev_login_on(&state) {
        return error(
            StatusCode::NOT_FOUND,
            "the development login is off (web.dev_login = false, or no token issuer is configured)",
        );
    }
    // Anyone who can use it becomes anyone: never for a client on the network.
    // Behind a reverse proxy on this host every client is loopback: a request the
    // proxy says it forwarded is from the network.
    let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    if !peer.ip().to_canonical().is_loopback() || forwarded {
        return error(
            StatusCode::FORBIDDEN,
            "the development login answers loopback clients only, never through a proxy (web.dev_login)",
        );
    }
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let sub = req.sub.trim();
    if sub.is_empty() || sub.len() > 255 {
        return error(StatusCode::BAD_REQUEST, "'sub' must be 1 to 255 bytes");
    }
    let config = &state.node.auth.config;
    let token = match crate::auth::jwt::mint(
        config,
        None,
        sub,
        req.name.as_deref(),
        &req.roles,
        DEV_TOKEN_TTL,
    ) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot mint a token: {e}"),
            );
        }
    };
    tracing::info!(sub, roles = ?req.roles, "development login");
    let mut response = Json(json!({
        "sub": sub,
        "roles": req.roles,
        // For scripts and tests that call the APIs themselves; the pages keep none.
        "token": token,
        "expiresIn": DEV_TOKEN_TTL.as_secs(),
    }))
    .into_response();
    if let Some(v) = session_cookie(&state, &token, DEV_TOKEN_TTL) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn dev_logout(state: State<Context>, headers: HeaderMap) -> Response {
    signout(state, headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_vendored_libraries_are_embedded() {
        for (_, file) in PAGES {
            assert!(Assets::get(file).is_some(), "{file} is not embedded");
        }
        for f in [
            "vendor/stomp.umd.min.js",
            "vendor/sockjs.min.js",
            "vendor/stompjs.LICENSE",
            "vendor/sockjs-client.LICENSE",
        ] {
            assert!(Assets::get(f).is_some(), "{f} is not embedded");
        }
        let client = serve("js/herald-client.js", &HeaderMap::new());
        assert_eq!(client.status(), StatusCode::OK);
        assert_eq!(
            client.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("vendor/stompjs.LICENSE"),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn every_answer_carries_the_security_headers() {
        for response in [
            serve("index.html", &HeaderMap::new()),
            serve("js/herald.js", &HeaderMap::new()),
            serve("nope.html", &HeaderMap::new()),
        ] {
            let h = response.headers();
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "same-origin");
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        }
    }

    #[test]
    fn no_page_has_an_inline_script() {
        for (_, file) in PAGES {
            let html = String::from_utf8(Assets::get(file).unwrap().data.into_owned()).unwrap();
            for tag in html.split("<script").skip(1) {
                let open = &tag[..tag.find('>').unwrap()];
                assert!(open.contains("src="), "{file} has an inline script");
            }
            assert!(!html.contains(" onclick="), "{file} has an inline handler");
        }
    }

    #[test]
    fn etag_revalidation_answers_304() {
        let first = serve("index.html", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = first.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve("index.html", &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("nope.html", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}

//! The HTTP answers SockJS asks for: plain-text errors, caching, CORS for allowed
//! origins, the iframe page, JSONP callbacks.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};

use super::frames;

pub(super) fn is_iframe(path: &str) -> bool {
    path.strip_prefix("iframe")
        .and_then(|r| r.strip_suffix(".html"))
        .is_some_and(|mid| {
            mid.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"-._".contains(&b))
        })
}

pub(super) fn rand_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

pub(super) fn set(r: &mut Response<Body>, name: header::HeaderName, value: &'static str) {
    r.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

pub(super) fn text(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    set(&mut r, header::CONTENT_TYPE, "text/plain;charset=UTF-8");
    r
}

pub(super) fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "Not found.\n")
}

/// 405 with `Allow` and no body (nor content type).
pub(super) fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    set(&mut r, header::ALLOW, allow);
    r
}

/// A 500 with the spec's message (bad payload, missing callback).
pub(super) fn error(msg: &str) -> Response<Body> {
    text(StatusCode::INTERNAL_SERVER_ERROR, msg.to_owned())
}

pub(super) fn no_cache(r: &mut Response<Body>) {
    set(
        r,
        header::CACHE_CONTROL,
        "no-store, no-cache, no-transform, must-revalidate, max-age=0",
    );
}

const ONE_YEAR: Duration = Duration::from_secs(31_536_000);

pub(super) fn cache_for_a_year(r: &mut Response<Body>) {
    set(r, header::CACHE_CONTROL, "public, max-age=31536000");
    if let Ok(v) = HeaderValue::from_str(&frames::http_date(ONE_YEAR)) {
        r.headers_mut().insert(header::EXPIRES, v);
    }
}

/// An allowed origin (`allowed`) may read the response, with cookies; without an
/// Origin anyone may, without them. Other origins get no CORS headers, so their pages
/// cannot read it. The answer depends on `Origin`, so caches are told (`Vary`).
pub(super) fn cors(req: &HeaderMap, allowed: bool, r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    match req.get(header::ORIGIN) {
        Some(_) if !allowed => return,
        Some(origin) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    if let Some(asked) = req
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| !v.is_empty())
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
}

/// A CORS preflight answer, cacheable for a year.
pub(super) fn options(req: &HeaderMap, cors_ok: bool, methods: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    cache_for_a_year(&mut r);
    set(&mut r, header::ACCESS_CONTROL_MAX_AGE, "31536000");
    set(&mut r, header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    cors(req, cors_ok, &mut r);
    r
}

pub(super) fn iframe(req: &HeaderMap, client_url: &str) -> Response<Body> {
    let page = frames::iframe_page(client_url);
    let mut sha = sha1_smol::Sha1::new();
    sha.update(page.as_bytes());
    let etag = format!("\"{}\"", sha.digest());
    let mut r = if req
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(page));
        set(&mut r, header::CONTENT_TYPE, "text/html;charset=UTF-8");
        r
    };
    cache_for_a_year(&mut r);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// A JSONP callback from `?c=`, or the spec's 500.
pub(super) fn callback(req: &Request<Body>) -> Result<String, Response<Body>> {
    let Some(c) = crate::params::query_value(req.uri().query(), "c") else {
        return Err(error("\"callback\" parameter required"));
    };
    if !frames::valid_callback(&c) {
        return Err(error("invalid \"callback\" parameter"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iframe_paths() {
        for ok in [
            "iframe.html",
            "iframe-a.html",
            "iframe-.html",
            "iframe-0.1.2abc-dirty.2144.html",
        ] {
            assert!(is_iframe(ok), "{ok}");
        }
        for bad in [
            "iframe.htm",
            "iframe",
            "IFRAME.HTML",
            "iframe.HTML",
            "iframe.xml",
            "iframe-/.html",
        ] {
            assert!(!is_iframe(bad), "{bad}");
        }
    }
}

//! The polling transports: `xhr` and `jsonp` receive one frame per request;
//! `xhr_send` and `jsonp_send` deliver the client's messages.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};

use super::{Next, Service, cors, error, frames, no_cache, set, text};
use crate::transport::Context;

/// Waits for the next frame of the session (opening it on first use).
async fn poll(
    service: &Arc<Service>,
    state: &Context,
    peer: SocketAddr,
    (headers, query): (&HeaderMap, Option<&str>),
    id: &str,
) -> Result<String, Response<Body>> {
    let admitted = service.admit(state, peer, headers, query).await?;
    let session = service.open(state, admitted, peer, id).await?;
    Ok(match session.attach().await {
        Err(frame) => frame,
        Ok(mut receiver) => match receiver.next(service.opts().heartbeat).await {
            Next::Frame(f) | Next::Close(f) => {
                receiver.finish();
                f
            }
        },
    })
}

pub(super) async fn xhr(
    service: Arc<Service>,
    state: Context,
    peer: SocketAddr,
    req: Request<Body>,
    id: String,
) -> Response<Body> {
    let mut r = match poll(
        &service,
        &state,
        peer,
        (req.headers(), req.uri().query()),
        &id,
    )
    .await
    {
        Ok(frame) => {
            let mut r = text(StatusCode::OK, frame + "\n");
            set(
                &mut r,
                header::CONTENT_TYPE,
                "application/javascript;charset=UTF-8",
            );
            r
        }
        Err(r) => r,
    };
    no_cache(&mut r);
    cors(
        req.headers(),
        service.cors_allowed(&state, req.headers()),
        &mut r,
    );
    service.cookie(req.headers(), &mut r);
    r
}

pub(super) async fn jsonp(
    service: Arc<Service>,
    state: Context,
    peer: SocketAddr,
    req: Request<Body>,
    id: String,
) -> Response<Body> {
    let callback = match super::callback(&req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut r = match poll(
        &service,
        &state,
        peer,
        (req.headers(), req.uri().query()),
        &id,
    )
    .await
    {
        Ok(frame) => {
            // `/**/` keeps a callback from being read as a content type sniff (Rosetta Flash).
            let body = format!("/**/{callback}({});\r\n", frames::quote(&frame));
            let mut r = text(StatusCode::OK, body);
            set(
                &mut r,
                header::CONTENT_TYPE,
                "application/javascript;charset=UTF-8",
            );
            r
        }
        Err(r) => r,
    };
    no_cache(&mut r);
    service.cookie(req.headers(), &mut r);
    r
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sender {
    /// `xhr_send`: the body is the JSON array; 204.
    Xhr,
    /// `jsonp_send`: a form field `d` or the raw body; 200 "ok".
    Jsonp,
}

pub(super) async fn send(
    service: Arc<Service>,
    state: Context,
    peer: SocketAddr,
    req: Request<Body>,
    id: String,
    kind: Sender,
) -> Response<Body> {
    let admitted = match service
        .admit(&state, peer, req.headers(), req.uri().query())
        .await
    {
        Ok(a) => a,
        Err(r) => return r,
    };
    let cors_ok = service.cors_allowed(&state, req.headers());
    let (parts, body) = req.into_parts();
    let session = service.find(&id).map(|s| {
        service
            .check_opener(&state, &s, admitted.as_ref().map(|a| &a.opener))
            .map(|()| s)
    });
    let mut r = match session {
        None => super::not_found(),
        Some(Err(refused)) => refused,
        Some(Ok(session)) => match axum::body::to_bytes(body, service.opts().max_message).await {
            Err(_) => error("Payload too large or interrupted."),
            Ok(bytes) => {
                let form = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| {
                    v.as_bytes()
                        .starts_with(b"application/x-www-form-urlencoded")
                });
                let payload = if kind == Sender::Jsonp && form {
                    crate::params::form_value(&bytes, "d")
                        .unwrap_or_default()
                        .into_bytes()
                } else {
                    bytes.to_vec()
                };
                match frames::decode(&payload) {
                    Err(e) => error(e.message()),
                    Ok(msgs) => match session.receive(msgs).await {
                        Err(e) => error(e),
                        Ok(()) if kind == Sender::Xhr => {
                            let mut r = text(StatusCode::NO_CONTENT, Body::empty());
                            set(&mut r, header::CONTENT_TYPE, "text/plain;charset=UTF-8");
                            r
                        }
                        Ok(()) => text(StatusCode::OK, "ok"),
                    },
                }
            }
        },
    };
    no_cache(&mut r);
    if kind == Sender::Xhr {
        cors(&parts.headers, cors_ok, &mut r);
    }
    service.cookie(&parts.headers, &mut r);
    r
}

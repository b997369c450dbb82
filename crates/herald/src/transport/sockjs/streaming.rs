//! The streaming transports: `xhr_streaming`, `eventsource` and `htmlfile` keep one
//! response open and write each frame as it comes (one HTTP chunk per frame) until
//! the session closes or `response_limit` bytes went out; the client then opens the
//! next request. Nothing runs between frames but the response body's own future.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use bytes::Bytes;

use super::{Next, Receiver, Service, cors, frames, no_cache, set};
use crate::transport::Context;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Xhr,
    EventSource,
    HtmlFile,
}

impl Kind {
    fn content_type(self) -> &'static str {
        match self {
            Kind::Xhr => "application/javascript;charset=UTF-8",
            Kind::EventSource => "text/event-stream",
            Kind::HtmlFile => "text/html;charset=UTF-8",
        }
    }

    fn prelude(self, callback: &str) -> String {
        match self {
            // Some browsers only hand over a streaming response after 2 KiB.
            Kind::Xhr => "h".repeat(2048) + "\n",
            Kind::EventSource => "\r\n".into(),
            Kind::HtmlFile => frames::htmlfile_head(callback),
        }
    }

    fn frame(self, f: &str) -> String {
        match self {
            Kind::Xhr => format!("{f}\n"),
            Kind::EventSource => format!("data: {f}\r\n\r\n"),
            // `<` only ever occurs inside the string literal, where `\u003c` means the
            // same: a message saying `</script>` cannot end the script element.
            Kind::HtmlFile => format!(
                "<script>\np({});\n</script>\r\n",
                frames::quote(f).replace('<', "\\u003c")
            ),
        }
    }
}

struct Stream {
    kind: Kind,
    receiver: Option<Receiver>,
    /// A frame to send before the receiver's (the refusal of a busy or closed session).
    last: Option<String>,
    sent: usize,
    limit: usize,
    heartbeat: std::time::Duration,
}

pub(super) async fn serve(
    service: Arc<Service>,
    state: Context,
    peer: SocketAddr,
    req: Request<Body>,
    id: String,
    kind: Kind,
) -> Response<Body> {
    let callback = if kind == Kind::HtmlFile {
        match super::callback(&req) {
            Ok(c) => c,
            Err(r) => return r,
        }
    } else {
        String::new()
    };
    let admitted = service
        .admit(&state, peer, req.headers(), req.uri().query())
        .await;
    let session = match admitted {
        Ok(admitted) => service.open(&state, admitted, peer, &id).await,
        Err(r) => Err(r),
    };
    let session = match session {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (receiver, last) = match session.attach().await {
        Ok(r) => (Some(r), None),
        Err(frame) => (None, Some(frame)),
    };
    let stream = Stream {
        kind,
        receiver,
        last,
        sent: 0,
        limit: service.opts().response_limit,
        heartbeat: service.opts().heartbeat,
    };
    let prelude = Bytes::from(kind.prelude(&callback));
    let frames = futures_util::stream::unfold(stream, |mut st| async move {
        if let Some(f) = st.last.take() {
            return Some((Ok::<_, Infallible>(Bytes::from(st.kind.frame(&f))), st));
        }
        let receiver = st.receiver.as_mut()?;
        let (f, end) = match receiver.next(st.heartbeat).await {
            Next::Frame(f) => (f, false),
            Next::Close(f) => (f, true),
        };
        let chunk = st.kind.frame(&f);
        st.sent += chunk.len();
        if end || st.sent >= st.limit {
            // Detach before the last chunk goes out: the client may hang up as soon
            // as it has it, and that is no interruption.
            st.receiver.take().expect("attached").finish();
        }
        Some((Ok(Bytes::from(chunk)), st))
    });
    let body = futures_util::stream::once(async move { Ok(prelude) });
    let body = futures_util::StreamExt::chain(body, frames);
    let mut r = Response::new(Body::from_stream(body));
    *r.status_mut() = StatusCode::OK;
    set(&mut r, header::CONTENT_TYPE, kind.content_type());
    no_cache(&mut r);
    if kind == Kind::Xhr {
        cors(
            req.headers(),
            service.cors_allowed(&state, req.headers()),
            &mut r,
        );
    }
    service.cookie(req.headers(), &mut r);
    r
}

//! SockJS 0.3.3 conformance, Herald's own: a real server started in-process with the
//! protocol test endpoints on (`sockjs.test_endpoints`: `/echo`, `/close`,
//! `/disabled_websocket_echo`, `/cookie_needed_echo`), spoken to over real HTTP
//! (reqwest) and real WebSockets (tokio-websockets).
//!
//! Covers what a SockJS server owes sockjs-client: the greeting, `/info` (fields,
//! entropy, CORS, preflight, caching), `/iframe.html` (ETag revalidation, the
//! configurable client URL, served by Herald itself by default), session URL checks,
//! every transport (websocket, raw `/websocket`, xhr, xhr_send, xhr_streaming,
//! eventsource, htmlfile, jsonp, jsonp_send) with their framing and errors, heartbeats,
//! the response limit, disconnect delay and session timeout, close frames, JSESSIONID,
//! and then STOMP and the seed-001 JSON chat over SockJS meeting plain WebSocket and
//! TCP clients. The external suite (scripts/sockjs-conformance.sh) checks the same
//! ground from outside when a checkout of it is at hand.
//!
//! Behaviour every receiving transport shares is one test body run over
//! [`SockJsTransport::ALL`] (or its streaming ones); what a transport does alone has
//! its own test.
//!
//! No assertion is about speed: waits are bounded (so a hang fails), never measured.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use herald::Config;
use herald_stomp::client;
use herald_stomp::{Command, Frame};
use serde_json::{Value, json};
use tokio_websockets::Message;

/// What every SockJS response that must not be cached says.
const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
const GO_AWAY: &str = "c[3000,\"Go away!\"]";

// ---------------------------------------------------------------------------
// Greeting, /info, /iframe.html, session URLs
// ---------------------------------------------------------------------------

#[tokio::test]
async fn greeting_and_unknown_paths() {
    let sj = Sj::start().await;
    for path in ["/echo", "/echo/", "/ws-sockjs", "/ws-sockjs/"] {
        let r = sj.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, "Welcome to SockJS!\n", "{path}");
        assert_eq!(
            r.content_type().as_deref(),
            Some("text/plain;charset=UTF-8")
        );
        assert_eq!(r.header("set-cookie"), None, "{path}");
    }
    for path in [
        "/echo/a",
        "/echo/a.html",
        "/echo//",
        "/echo///",
        "/echo/a/a",
        "/echo/a/a/",
    ] {
        assert_eq!(sj.get(path).await.status, 404, "{path}");
    }
    let r = sj.post("/echo", "x").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    assert_eq!((r.header("content-type"), r.body.as_str()), (None, ""));
}

#[tokio::test]
async fn info_fields_cors_and_caching() {
    let sj = Sj::start().await;
    let r = sj
        .get_with("/echo/info", &[("Origin", "http://app.example")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.content_type().as_deref(),
        Some("application/json;charset=UTF-8")
    );
    assert_eq!(r.header("cache-control"), Some(NO_CACHE));
    assert_eq!(
        (r.header("expires"), r.header("last-modified")),
        (None, None)
    );
    assert_eq!(r.header("set-cookie"), None);
    // The origin is echoed, with credentials, so cookies can flow.
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let info: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(info["websocket"], true);
    assert_eq!(info["cookie_needed"], false);
    assert_eq!(info["origins"], json!(["*:*"]));
    assert!(info["entropy"].is_u64(), "{info}");

    // Without an Origin: anyone, and no credentials.
    let r = sj.get("/echo/info").await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);

    // Entropy is fresh per answer (three equal 32-bit draws would be a broken source).
    let mut entropy = Vec::new();
    for _ in 0..3 {
        let v: Value = serde_json::from_str(&sj.get("/echo/info").await.body).unwrap();
        entropy.push(v["entropy"].as_u64().expect("integer entropy"));
    }
    assert!(
        entropy.windows(2).any(|w| w[0] != w[1]),
        "entropy never changes: {entropy:?}"
    );

    let v: Value =
        serde_json::from_str(&sj.get("/disabled_websocket_echo/info").await.body).unwrap();
    assert_eq!(v["websocket"], false);
    let r = sj.get("/cookie_needed_echo/info").await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["cookie_needed"], true);
    assert_eq!(r.header("set-cookie"), None, "/info itself sets no cookie");

    // STOMP's endpoint answers the same way.
    let v: Value = serde_json::from_str(&sj.get("/ws-sockjs/info").await.body).unwrap();
    assert_eq!(
        (v["websocket"].as_bool(), v["cookie_needed"].as_bool()),
        (Some(true), Some(false))
    );

    let r = sj.post("/echo/info", "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("OPTIONS, GET"));
}

/// A CORS preflight: cacheable for long, the methods, the origin echoed.
fn assert_preflight(r: &Resp, origin: &str, methods: &[&str]) {
    assert!(r.status == 204 || r.status == 200, "{r:?}");
    assert_eq!(r.body, "");
    let cache = r.header("cache-control").unwrap_or_default();
    assert!(
        cache.contains("public") && cache.contains("max-age=31536000"),
        "{cache}"
    );
    assert!(
        r.header("expires").is_some_and(|e| e.ends_with(" GMT")),
        "{r:?}"
    );
    let max_age: u64 = r.header("access-control-max-age").unwrap().parse().unwrap();
    assert!(max_age >= 1_000_000, "{max_age}");
    let allowed = r.header("access-control-allow-methods").unwrap_or_default();
    for m in methods {
        assert!(allowed.contains(m), "{m} not in {allowed}");
    }
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    // Cached for a year, per origin.
    assert_eq!(r.header("vary"), Some("Origin"));
}

#[tokio::test]
async fn preflight_requests() {
    let sj = Sj::start().await;
    for origin in ["http://app.example", "null"] {
        let r = sj
            .options(
                "/echo/info",
                &[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "GET"),
                    (
                        "Access-Control-Request-Headers",
                        "x-requested-with, content-type",
                    ),
                ],
            )
            .await;
        assert_preflight(&r, origin, &["OPTIONS", "GET"]);
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("x-requested-with, content-type"),
            "asked-for headers are allowed"
        );
        let s = session();
        for transport in ["xhr", "xhr_send", "xhr_streaming"] {
            let r = sj
                .options(
                    &format!("/echo{s}/{transport}"),
                    &[
                        ("Origin", origin),
                        ("Access-Control-Request-Method", "POST"),
                    ],
                )
                .await;
            assert_preflight(&r, origin, &["OPTIONS", "POST"]);
        }
    }
}

#[tokio::test]
async fn iframe_page_is_cacheable_and_loads_herald_own_client() {
    let sj = Sj::start().await;
    let first = sj.get("/echo/iframe.html").await;
    for path in [
        "/echo/iframe.html",
        "/echo/iframe-a.html",
        "/echo/iframe-.html",
        "/echo/iframe-0.1.2.html",
        "/echo/iframe-0.1.2abc-dirty.2144.html?t=qwe123",
        "/ws-sockjs/iframe.html",
    ] {
        let r = sj.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.content_type().as_deref(),
            Some("text/html;charset=UTF-8"),
            "{path}"
        );
        let cache = r.header("cache-control").unwrap_or_default();
        assert!(
            cache.contains("public") && cache.contains("max-age=31536000"),
            "{path}: {cache}"
        );
        assert!(r.header("expires").is_some(), "{path}");
        assert_eq!(r.header("last-modified"), None, "{path}");
        assert_eq!(r.header("set-cookie"), None, "{path}");
        assert_eq!(
            r.header("etag"),
            first.header("etag"),
            "{path}: one page, one ETag"
        );
        assert!(r.body.starts_with("<!DOCTYPE html>"), "{path}: {}", r.body);
        assert!(
            r.body
                .contains(r#"<script src="/web/vendor/sockjs.min.js"></script>"#),
            "{}",
            r.body
        );
        assert!(r.body.contains("SockJS.bootstrap_iframe();"), "{}", r.body);
    }
    for path in [
        "/echo/iframe.htm",
        "/echo/iframe",
        "/echo/IFRAME.HTML",
        "/echo/iframe.HTML",
        "/echo/iframe.xml",
        "/echo/iframe-/.html",
    ] {
        assert_eq!(sj.get(path).await.status, 404, "{path}");
    }

    // Revalidation: the ETag it gave gets a bodiless 304.
    let etag = first.header("etag").expect("ETag").to_owned();
    let r = sj
        .get_with("/echo/iframe.html", &[("If-None-Match", &etag)])
        .await;
    assert_eq!(r.status, 304);
    assert_eq!((r.body.as_str(), r.header("content-type")), ("", None));
    assert_eq!(
        sj.get_with("/echo/iframe.html", &[("If-None-Match", "\"other\"")])
            .await
            .status,
        200
    );
    assert_eq!(sj.post("/echo/iframe.html", "").await.status, 405);

    // The script it loads is Herald's own copy of sockjs-client: no CDN needed.
    let js = sj.get("/web/vendor/sockjs.min.js").await;
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type").unwrap().contains("javascript"),
        "{:?}",
        js.headers
    );
    assert!(
        js.body.contains("SockJS") && js.body.len() > 10_000,
        "not sockjs-client"
    );
}

#[tokio::test]
async fn iframe_client_url_is_configurable() {
    let url = "https://static.example/js/sockjs-1.6.1.min.js?a=1&b=2";
    let sj = Sj::with(|c| c.sockjs.client_url = url.into()).await;
    let r = sj.get("/ws-sockjs/iframe.html").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(
            r#"<script src="https://static.example/js/sockjs-1.6.1.min.js?a=1&amp;b=2"></script>"#
        ),
        "{}",
        r.body
    );
    // Another page, another ETag: caches do not serve the old page for the new one.
    let default = Sj::start().await;
    let other = default.get("/ws-sockjs/iframe.html").await;
    assert_ne!(r.header("etag"), other.header("etag"));

    // An empty one is refused up front, like a zero response limit.
    let mut cfg = Config::default();
    cfg.sockjs.client_url = "  ".into();
    let e = cfg
        .validate()
        .expect_err("an empty client_url is refused")
        .to_string();
    assert!(e.contains("sockjs.client_url"), "{e}");
    let mut cfg = Config::default();
    cfg.sockjs.response_limit = 0;
    let e = cfg
        .validate()
        .expect_err("a zero response limit is refused")
        .to_string();
    assert!(e.contains("sockjs.response_limit"), "{e}");
}

#[tokio::test]
async fn session_urls() {
    let sj = Sj::start().await;
    let n = rand_suffix();
    for part in [
        format!("/a/a{n}"),
        format!("/_/_{n}"),
        format!("/1/{n}"),
        format!("/abcdefgh_i-j%20/abcdefg_i-j%20{n}"),
    ] {
        let r = sj.post(&format!("/echo{part}/xhr"), "").await;
        assert_eq!((r.status, r.body.as_str()), (200, "o\n"), "{part}");
    }
    for part in ["//", "/a./a", "/a/a.", "/./.", "/", "///"] {
        let path = format!("/echo{part}/xhr");
        assert_eq!(sj.get(&path).await.status, 404, "GET {path}");
        assert_eq!(sj.post(&path, "").await.status, 404, "POST {path}");
    }
    assert_eq!(
        sj.post(&format!("/echo{}/nonsense", session()), "")
            .await
            .status,
        404
    );
    assert_eq!(sj.post("/echo/a/b/c/xhr", "").await.status, 404);

    // The server id is the client's business (load balancers): any value finds the session.
    let id = uuid::Uuid::new_v4();
    assert_eq!(sj.poll(&format!("/echo/000/{id}")).await, "o\n");
    sj.send(&format!("/echo/000/{id}"), r#"["a"]"#).await;
    assert_eq!(sj.poll(&format!("/echo/999/{id}")).await, "a[\"a\"]\n");
}

fn rand_suffix() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32 % 1024
}

// ---------------------------------------------------------------------------
// xhr polling and xhr_send
// ---------------------------------------------------------------------------

#[tokio::test]
async fn xhr_polling_session() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    let r = sj.post(&format!("{s}/xhr"), "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "o\n"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("set-cookie"),
        None,
        "no cookie unless cookie_needed"
    );

    let r = sj.post(&format!("{s}/xhr_send"), r#"["a"]"#).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(
        r.content_type().as_deref(),
        Some("text/plain;charset=UTF-8")
    );
    assert_eq!(sj.poll(&s).await, "a[\"a\"]\n");

    // What arrives while nobody polls goes out as one frame, in order.
    sj.send(&s, r#"["b","c"]"#).await;
    sj.send(&s, r#"["d"]"#).await;
    assert_eq!(sj.poll(&s).await, "a[\"b\",\"c\",\"d\"]\n");

    // An empty array is a valid (empty) send; the session goes on.
    sj.send(&s, "[]").await;
    sj.send(&s, r#"["e"]"#).await;
    assert_eq!(sj.poll(&s).await, "a[\"e\"]\n");
}

#[tokio::test]
async fn xhr_send_errors() {
    let sj = Sj::start().await;
    // Sending to a session nobody opened: 404, and it opens nothing.
    let s = format!("/echo{}", session());
    let r = sj.post(&format!("{s}/xhr_send"), r#"["x"]"#).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(sj.poll(&s).await, "o\n");

    for (body, expected) in [
        ("", "Payload expected."),
        ("   ", "Payload expected."),
        ("[", "Broken JSON encoding."),
        (r#"["a""#, "Broken JSON encoding."),
        ("[1]", "Broken JSON encoding."),
        ("{}", "Broken JSON encoding."),
    ] {
        let r = sj.post(&format!("{s}/xhr_send"), body).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (500, expected),
            "body {body:?}"
        );
    }
    // The session survived the bad sends.
    sj.send(&s, r#"["still here"]"#).await;
    assert_eq!(sj.poll(&s).await, "a[\"still here\"]\n");
}

#[tokio::test]
async fn a_second_receiver_gets_another_connection_still_open() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    assert_eq!(sj.poll(&s).await, "o\n");
    // Two polls at once with nothing to say (the heartbeat is 25 s): one of them waits,
    // the other is refused, and the waiting one is untouched by that.
    let poll = |sj: &Sj| {
        let req = sj.http.post(sj.url(&format!("{s}/xhr"))).send();
        tokio::spawn(async move { req.await.expect("xhr poll").text().await.expect("body") })
    };
    let (mut a, mut b) = (poll(&sj), poll(&sj));
    let (first, mut waiting) = tokio::time::timeout(WAIT, async {
        tokio::select! {
            r = &mut a => (r.unwrap(), b),
            r = &mut b => (r.unwrap(), a),
        }
    })
    .await
    .expect("one poll is refused in time");
    assert_eq!(first, "c[2010,\"Another connection still open\"]\n");
    // A streaming request is refused the same way, after its prelude.
    let r = sj.post(&format!("{s}/xhr_streaming"), "").await;
    assert_eq!(
        r.body,
        format!(
            "{}\nc[2010,\"Another connection still open\"]\n",
            "h".repeat(2048)
        )
    );
    // The waiting poll gets the next message.
    sj.send(&s, r#"["x"]"#).await;
    let got = tokio::time::timeout(WAIT, &mut waiting)
        .await
        .expect("the waiting poll answers")
        .unwrap();
    assert_eq!(got, "a[\"x\"]\n");
    // Once it finished, polling works again.
    sj.send(&s, r#"["y"]"#).await;
    assert_eq!(sj.poll(&s).await, "a[\"y\"]\n");
}

#[tokio::test]
async fn close_endpoint_says_go_away_on_every_transport() {
    let sj = Sj::start().await;
    for t in SockJsTransport::ALL {
        let s = format!("/close{}", session());
        let mut r = Receiver::open(&sj, t, &s).await;
        assert_eq!(r.next().await.as_deref(), Some("o"), "{t:?}");
        assert_eq!(r.next().await.as_deref(), Some(GO_AWAY), "{t:?}");
        if t.is_polling() {
            // The close frame, to this request and to every later one.
            assert_eq!(r.next().await.as_deref(), Some(GO_AWAY), "{t:?}");
        } else if let Some(ws) = r.websocket() {
            // Then a WebSocket close with the code.
            assert_eq!(ws.closed().await, Some((3000, "Go away!".into())));
        } else {
            assert_eq!(
                r.next().await,
                None,
                "{t:?}: the response ends after the close frame"
            );
        }
    }
}

#[tokio::test]
async fn an_interrupted_receiver_closes_the_session() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    let mut st = sj
        .stream(reqwest::Method::POST, &format!("{s}/xhr_streaming"), &[])
        .await;
    st.line().await.expect("prelude");
    assert_eq!(st.line().await.as_deref(), Some("o"));
    drop(st);
    // The server notices the hang-up on its own time: until then the session is busy.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let frame = sj.poll(&s).await;
        if frame == "c[1002,\"Connection interrupted\"]\n" {
            break;
        }
        assert_eq!(frame, "c[2010,\"Another connection still open\"]\n");
        assert!(
            std::time::Instant::now() < deadline,
            "the hang-up was never noticed"
        );
    }
    // And it stays closed.
    assert_eq!(sj.poll(&s).await, "c[1002,\"Connection interrupted\"]\n");
}

#[tokio::test]
async fn json_escaping_both_ways() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    assert_eq!(sj.poll(&s).await, "o\n");
    // Characters SockJS servers must escape (browsers and proxies mangle them raw).
    let tricky = "x\u{2028}\u{2029}\u{200c}\u{200f}\u{2060}\u{fff0}\u{ffff}\u{1}\"\\ é 😀";
    let body = serde_json::to_string(&[tricky]).unwrap();
    sj.send(&s, &body).await;
    let frame = sj.poll(&s).await;
    for escaped in [
        "\\u2028", "\\u2029", "\\u200c", "\\u200f", "\\u2060", "\\ufff0", "\\uffff", "\\u0001",
    ] {
        assert!(
            frame.contains(escaped),
            "{escaped} not escaped in {frame:?}"
        );
    }
    assert!(
        !frame.contains('\u{2028}') && !frame.contains('\u{ffff}'),
        "{frame:?}"
    );
    assert_eq!(
        messages(frame.trim_end()),
        vec![tricky.to_owned()],
        "round trip"
    );

    // The client may escape anything; the server decodes it.
    sj.send(&s, r#"["\u0061\u00e9\ud83d\ude00"]"#).await;
    assert_eq!(
        messages(sj.poll(&s).await.trim_end()),
        vec!["aé😀".to_owned()]
    );
}

// ---------------------------------------------------------------------------
// Streaming transports
// ---------------------------------------------------------------------------

/// What every receiving transport owes: its content type, no caching, the open frame,
/// then messages in order (in one frame or several).
#[tokio::test]
async fn every_transport_opens_and_delivers_in_order() {
    let sj = Sj::start().await;
    for t in SockJsTransport::ALL {
        let s = format!("/echo{}", session());
        let mut r = Receiver::open(&sj, t, &s).await;
        assert_eq!(r.next().await.as_deref(), Some("o"), "{t:?}");
        if t != SockJsTransport::Websocket {
            assert_eq!(r.status, 200, "{t:?}");
            assert_eq!(
                r.header("content-type")
                    .map(|v| v.replace(' ', ""))
                    .as_deref(),
                Some(t.content_type()),
                "{t:?}"
            );
            assert_eq!(r.header("cache-control"), Some(NO_CACHE), "{t:?}");
        }
        r.send(&sj, &s, r#"["x"]"#).await;
        assert_eq!(r.frame().await, "a[\"x\"]", "{t:?}");
        r.send(&sj, &s, r#"["y","z"]"#).await;
        let mut got = messages(&r.frame().await);
        if got.len() == 1 {
            got.extend(messages(&r.frame().await));
        }
        assert_eq!(got, ["y", "z"], "{t:?}");
    }
}

/// Each transport answers the method sockjs-client does not use with 405.
#[tokio::test]
async fn every_transport_refuses_the_other_method() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    assert_eq!(sj.poll(&s).await, "o\n");
    for (method, transport, allow) in [
        (reqwest::Method::GET, "xhr", None),
        (reqwest::Method::GET, "xhr_send", Some("OPTIONS, POST")),
        (reqwest::Method::GET, "xhr_streaming", None),
        (reqwest::Method::POST, "eventsource", None),
        (reqwest::Method::POST, "htmlfile?c=cb", None),
        (reqwest::Method::POST, "jsonp?c=cb", None),
        (reqwest::Method::GET, "jsonp_send", None),
        (reqwest::Method::POST, "websocket", Some("GET")),
    ] {
        let r = sj
            .request(method.clone(), &format!("{s}/{transport}"), &[], "")
            .await;
        assert_eq!(r.status, 405, "{method} {transport}: {r:?}");
        if allow.is_some() {
            assert_eq!(r.header("allow"), allow, "{method} {transport}");
        }
    }
}

/// The script transports call back into the page: the callback name is required and
/// may not smuggle script in.
#[tokio::test]
async fn script_transports_need_a_safe_callback() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    for transport in ["htmlfile", "jsonp"] {
        let r = sj.get(&format!("{s}/{transport}")).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (500, "\"callback\" parameter required"),
            "{transport}"
        );
        for bad in ["%20", "abc(", "a%3Bb", "x%22y"] {
            let r = sj.get(&format!("{s}/{transport}?c={bad}")).await;
            assert_eq!(
                (r.status, r.body.as_str()),
                (500, "invalid \"callback\" parameter"),
                "{transport}?c={bad}"
            );
        }
    }
}

#[tokio::test]
async fn xhr_streaming_transport_answers_cors() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    let mut r = Receiver::open_with(
        &sj,
        SockJsTransport::XhrStreaming,
        &s,
        &[("Origin", "http://app.example")],
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.next().await.as_deref(), Some("o"));
}

#[tokio::test]
async fn eventsource_keeps_a_message_with_line_breaks_in_one_event() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    let mut st = sj
        .stream(reqwest::Method::GET, &format!("{s}/eventsource"), &[])
        .await;
    expect_prelude(SockJsTransport::EventSource, &mut st).await;
    assert_eq!(st.until("\r\n\r\n").await.as_deref(), Some("data: o"));
    // Messages with line breaks stay one event (they are JSON-escaped).
    sj.send(&s, r#"["a\r\nb"]"#).await;
    assert_eq!(
        st.until("\r\n\r\n").await.as_deref(),
        Some("data: a[\"a\\r\\nb\"]")
    );
}

#[tokio::test]
async fn htmlfile_decodes_the_callback_and_escapes_script_ends() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    let mut st = sj
        .stream(
            reqwest::Method::GET,
            &format!("{s}/htmlfile?c=%63allback"),
            &[],
        )
        .await;
    assert_eq!(st.status(), 200);
    let head = st.until("\r\n\r\n").await.unwrap();
    assert!(head.contains("var c = parent.callback;"), "{head}");
    assert_eq!(
        st.until("\r\n").await.as_deref(),
        Some("<script>\np(\"o\");\n</script>")
    );
    // A message cannot end the script element early: `<` goes out escaped.
    sj.send(&s, r#"["</script><b>x"]"#).await;
    let frame = st.until("\r\n").await.unwrap();
    assert_eq!(
        frame,
        r#"<script>
p("a[\"\u003c/script>\u003cb>x\"]");
</script>"#
    );
}

#[tokio::test]
async fn response_limit_ends_streams_at_128_kib_by_default() {
    let sj = Sj::start().await;
    let limit = 128 * 1024;
    assert_eq!(Config::default().sockjs.response_limit, limit);
    let s = format!("/echo{}", session());
    let mut st = sj
        .stream(reqwest::Method::POST, &format!("{s}/xhr_streaming"), &[])
        .await;
    st.line().await.expect("prelude");
    assert_eq!(st.line().await.as_deref(), Some("o"));
    // Bytes of frames sent on this response (the prelude does not count).
    let mut sent = "o\n".len();
    let msg = "m".repeat(4000);
    let body = serde_json::to_string(&[&msg]).unwrap();
    while sent < limit {
        sj.send(&s, &body).await;
        let line = st
            .line()
            .await
            .unwrap_or_else(|| panic!("the response ended at {sent} bytes, before the limit"));
        sent += line.len() + 1;
        if line != "h" {
            assert_eq!(messages(&line), [msg.as_str()]);
        }
    }
    // The frame that reached the limit was the last one.
    assert_eq!(
        st.rest().await,
        "",
        "the response ends at the limit ({sent} bytes)"
    );
    // The session lives on: the client opens the next streaming request.
    let mut next = sj
        .stream(reqwest::Method::POST, &format!("{s}/xhr_streaming"), &[])
        .await;
    next.line().await.expect("prelude");
    sj.send(&s, r#"["after"]"#).await;
    assert_eq!(
        next.frame().await.as_deref(),
        Some("a[\"after\"]"),
        "no second open frame"
    );
}

#[tokio::test]
async fn response_limit_is_configurable_for_every_streaming_transport() {
    let limit = 4096;
    let sj = Sj::with(|c| c.sockjs.response_limit = limit).await;
    let msg = format!("[\"{}\"]", "x".repeat(128));
    for transport in SockJsTransport::STREAMING {
        let s = format!("/echo{}", session());
        let mut st = sj
            .stream(
                transport.method(),
                &format!("{s}/{}", transport.path()),
                &[],
            )
            .await;
        // Each transport's prelude (not counted), then frames separated by `sep`.
        expect_prelude(transport, &mut st).await;
        let sep = match transport {
            SockJsTransport::XhrStreaming => "\n",
            SockJsTransport::EventSource => "\r\n\r\n",
            _ => "\r\n",
        };
        let open = st.until(sep).await.expect("open frame");
        assert!(open.contains('o'), "{transport:?}: {open:?}");
        let mut sent = open.len() + sep.len();
        let mut delivered = 0;
        while sent < limit {
            sj.send(&s, &msg).await;
            let piece = st.until(sep).await.unwrap_or_else(|| {
                panic!("{transport:?}: ended at {sent} bytes, before the limit")
            });
            assert!(piece.contains(&"x".repeat(128)), "{transport:?}: {piece:?}");
            sent += piece.len() + sep.len();
            delivered += 1;
        }
        assert!(delivered > 20, "{transport:?}: {delivered} messages");
        assert_eq!(
            st.rest().await,
            "",
            "{transport:?}: the response ends at the limit"
        );
    }
}

// ---------------------------------------------------------------------------
// jsonp
// ---------------------------------------------------------------------------

#[tokio::test]
async fn jsonp_and_jsonp_send() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    let r = sj.get(&format!("{s}/jsonp?c=%63allback")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "/**/callback(\"o\");\r\n")
    );

    // A form field d=..., as sockjs-client's hidden form sends it.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = sj
        .post_with(&format!("{s}/jsonp_send"), &form, "d=%5B%22x%22%5D")
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(
        r.content_type().as_deref(),
        Some("text/plain;charset=UTF-8")
    );
    // Or the raw JSON body.
    let r = sj
        .post_with(
            &format!("{s}/jsonp_send"),
            &[("Content-Type", "text/plain")],
            r#"["y"]"#,
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let r = sj.get(&format!("{s}/jsonp?c=cb.x_1-2")).await;
    assert_eq!(r.body, "/**/cb.x_1-2(\"a[\\\"x\\\",\\\"y\\\"]\");\r\n");

    for (headers, body, expected) in [
        (&form[..], "", "Payload expected."),
        (&form[..], "d=", "Payload expected."),
        (&form[..], "p=p", "Payload expected."),
        (&[][..], "", "Payload expected."),
        (&form[..], "d=%5B%22x", "Broken JSON encoding."),
        (&[][..], "[\"x", "Broken JSON encoding."),
    ] {
        let r = sj
            .post_with(&format!("{s}/jsonp_send"), headers, body)
            .await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (500, expected),
            "body {body:?}"
        );
    }
    let r = sj
        .post_with(
            &format!("/echo{}/jsonp_send", session()),
            &form,
            "d=%5B%22x%22%5D",
        )
        .await;
    assert_eq!(r.status, 404, "unknown session");
}

// ---------------------------------------------------------------------------
// WebSocket transports
// ---------------------------------------------------------------------------

#[tokio::test]
async fn websocket_transport() {
    let sj = Sj::start().await;
    let mut ws = sj.websocket(&format!("/echo{}/websocket", session())).await;
    assert_eq!(ws.text().await, "o");
    ws.send(r#"["a"]"#).await;
    assert_eq!(ws.frame().await, "a[\"a\"]");
    ws.send(r#"["b","c"]"#).await;
    let mut got = messages(&ws.frame().await);
    if got.len() == 1 {
        got.extend(messages(&ws.frame().await));
    }
    assert_eq!(got, ["b", "c"]);
    // One bare JSON string is one message; an empty array and an empty frame are nothing.
    ws.send(r#""d""#).await;
    assert_eq!(ws.frame().await, "a[\"d\"]");
    ws.send("[]").await;
    ws.send("").await;
    ws.send(r#"["e"]"#).await;
    assert_eq!(ws.frame().await, "a[\"e\"]");

    // Broken JSON ends the connection, without a SockJS close frame.
    ws.send(r#"["x"#).await;
    if let Ok(t) = ws.recv().await {
        panic!("expected the connection to end, got {t:?}")
    }

    // A session id is no lock for websockets: the same URL twice is two connections.
    let s = session();
    let mut a = sj.websocket(&format!("/echo{s}/websocket")).await;
    let mut b = sj.websocket(&format!("/echo{s}/websocket")).await;
    assert_eq!((a.text().await, b.text().await), ("o".into(), "o".into()));
    a.send(r#"["to a"]"#).await;
    assert_eq!(a.frame().await, "a[\"to a\"]");
    b.send(r#"["to b"]"#).await;
    assert_eq!(b.frame().await, "a[\"to b\"]");
}

#[tokio::test]
async fn websocket_http_errors() {
    let sj = Sj::start().await;
    let path = format!("/echo{}/websocket", session());
    let r = sj.get(&path).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Can \"Upgrade\" only to \"WebSocket\".")
    );
    let r = sj
        .get_with(&path, &[("Upgrade", "WebSocket"), ("Connection", "close")])
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "\"Connection\" must be \"Upgrade\".")
    );
    let r = sj.get("/echo/websocket").await;
    assert_eq!(r.status, 400, "raw endpoint, no upgrade: {r:?}");
}

#[tokio::test]
async fn disabled_websocket_is_refused() {
    let sj = Sj::start().await;
    for path in [
        format!("/disabled_websocket_echo{}/websocket", session()),
        "/disabled_websocket_echo/websocket".to_owned(),
    ] {
        let r = sj
            .get_with(
                &path,
                &[
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Version", "13"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ],
            )
            .await;
        assert_eq!(r.status, 404, "{path}");
        let handshake = tokio::time::timeout(WAIT, client::websocket(&sj.ws_url(&path), &[]))
            .await
            .expect("an answer in time");
        assert!(handshake.is_err(), "{path}: the handshake must fail");
    }
    // The HTTP transports still work there.
    let s = format!("/disabled_websocket_echo{}", session());
    assert_eq!(sj.poll(&s).await, "o\n");
    sj.send(&s, r#"["x"]"#).await;
    assert_eq!(sj.poll(&s).await, "a[\"x\"]\n");
}

#[tokio::test]
async fn raw_websocket_endpoint() {
    let sj = Sj::start().await;
    let mut ws = sj.websocket("/echo/websocket").await;
    // No SockJS framing at all: no open frame, the message comes back as it was sent.
    ws.send("hello [\"not json\"").await;
    assert_eq!(ws.text().await, "hello [\"not json\"");
    ws.send("second").await;
    assert_eq!(ws.text().await, "second");
    // The opcode comes back too: binary in, binary out (also bytes that are not UTF-8).
    let bytes = vec![0u8, 0xff, 0xfe, b'x'];
    tokio::time::timeout(WAIT, ws.0.send(Message::binary(bytes.clone())))
        .await
        .expect("WebSocket send in time")
        .expect("WebSocket send");
    let m = tokio::time::timeout(WAIT, ws.0.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("a message");
    assert!(m.is_binary(), "binary echoed as {m:?}");
    assert_eq!(&*m.into_payload(), &bytes[..]);
    ws.send("text again").await;
    assert_eq!(ws.text().await, "text again");

    let mut ws = sj.websocket("/close/websocket").await;
    assert_eq!(ws.closed().await, Some((3000, "Go away!".into())));
}

// ---------------------------------------------------------------------------
// Heartbeats, disconnect delay, session timeout
// ---------------------------------------------------------------------------

#[tokio::test]
async fn heartbeat_frames_on_every_transport() {
    let defaults = Config::default().sockjs;
    assert_eq!(defaults.heartbeat, Duration::from_secs(25));
    assert_eq!(defaults.disconnect_delay, Duration::from_secs(5));

    let sj = Sj::with(|c| c.sockjs.heartbeat = Duration::from_millis(100)).await;
    // `h` between frames: a poll with nothing to say answers it, a stream writes it.
    for t in SockJsTransport::ALL {
        let s = format!("/echo{}", session());
        let mut r = Receiver::open(&sj, t, &s).await;
        assert_eq!(r.next().await.as_deref(), Some("o"), "{t:?}");
        assert_eq!(r.next().await.as_deref(), Some("h"), "{t:?}");
        assert_eq!(r.next().await.as_deref(), Some("h"), "{t:?}");
        r.send(&sj, &s, r#"["x"]"#).await;
        assert_eq!(r.frame().await, "a[\"x\"]", "{t:?}");
    }
    // The raw endpoint has no heartbeats: the echo is the first thing back.
    let mut raw = sj.websocket("/echo/websocket").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    raw.send("ping").await;
    assert_eq!(raw.text().await, "ping");
}

/// Polls `xhr_send` on `s` until it answers 404 (the session is gone).
async fn wait_until_gone(sj: &Sj, s: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        // An empty send: valid while the session exists, and no message for it.
        let r = sj.post(&format!("{s}/xhr_send"), "[]").await;
        if r.status == 404 {
            return;
        }
        assert!(r.status == 204, "{r:?}");
        assert!(std::time::Instant::now() < deadline, "{s} never timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_session_without_a_receiver_times_out_after_the_disconnect_delay() {
    let sj = Sj::with(|c| {
        c.sockjs.disconnect_delay = Duration::from_millis(300);
        c.sockjs.heartbeat = Duration::from_millis(100);
    })
    .await;
    let s = format!("/echo{}", session());
    assert_eq!(sj.poll(&s).await, "o\n");
    sj.send(&s, r#"["a"]"#).await;
    wait_until_gone(&sj, &s).await;
    // The id is free again: the next poll opens a new session.
    assert_eq!(sj.poll(&s).await, "o\n");

    // A session whose client keeps a receiver attached does not time out, however long
    // that takes (here: many disconnect delays).
    let s = format!("/echo{}", session());
    let mut st = sj
        .stream(reqwest::Method::POST, &format!("{s}/xhr_streaming"), &[])
        .await;
    st.line().await.expect("prelude");
    assert_eq!(st.line().await.as_deref(), Some("o"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sj.send(&s, r#"["still open"]"#).await;
    assert_eq!(st.frame().await.as_deref(), Some("a[\"still open\"]"));

    // A STOMP session over SockJS ends with its SockJS session: the client disappears
    // (no more polls) and the server closes the STOMP session.
    let s = format!("/ws-sockjs{}", session());
    assert_eq!(sj.poll(&s).await, "o\n");
    sj.send(&s, &json!([stomp_text(&stomp_connect_frame())]).to_string())
        .await;
    let connected = sj.poll(&s).await;
    assert!(connected.starts_with("a[\"CONNECTED\\n"), "{connected}");
    let sessions = || sj.server.node.sessions.len();
    wait_until("the STOMP session to be registered", || sessions() == 1).await;
    wait_until_gone(&sj, &s).await;
    wait_until("the STOMP session to end", || sessions() == 0).await;
}

// ---------------------------------------------------------------------------
// JSESSIONID and CORS
// ---------------------------------------------------------------------------

fn assert_cookie(r: Option<&str>, value: &str) {
    let c = r.unwrap_or_else(|| panic!("no Set-Cookie (expected JSESSIONID={value})"));
    let parts: Vec<&str> = c.split(';').map(str::trim).collect();
    assert_eq!(parts[0], format!("JSESSIONID={value}"), "{c}");
    assert_eq!(parts[1].to_ascii_lowercase(), "path=/", "{c}");
}

#[tokio::test]
async fn jsessionid_cookie_when_needed() {
    let sj = Sj::start().await;
    let base = "/cookie_needed_echo";
    let s = format!("{base}{}", session());
    let r = sj.post(&format!("{s}/xhr"), "").await;
    assert_eq!(r.body, "o\n");
    assert_cookie(r.header("set-cookie"), "dummy");
    // The client's own cookie is echoed back.
    let r = sj
        .post_with(
            &format!("{s}/xhr_send"),
            &[("Cookie", "a=b; JSESSIONID=abcdef")],
            r#"["x"]"#,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_cookie(r.header("set-cookie"), "abcdef");
    let r = sj
        .post_with(
            &format!("{base}{}/xhr", session()),
            &[("Cookie", "JSESSIONID=abcdef")],
            "",
        )
        .await;
    assert_cookie(r.header("set-cookie"), "abcdef");

    // Every HTTP transport sets it when the client brings none.
    for t in SockJsTransport::ALL {
        if t == SockJsTransport::Websocket {
            continue;
        }
        let mut r = Receiver::open(&sj, t, &format!("{base}{}", session())).await;
        if t.is_polling() {
            assert_eq!(r.next().await.as_deref(), Some("o"), "{t:?}");
        }
        assert_cookie(r.header("set-cookie"), "dummy");
    }
    let s = format!("{base}{}", session());
    assert_eq!(
        sj.get(&format!("{s}/jsonp?c=cb")).await.body,
        "/**/cb(\"o\");\r\n"
    );
    let r = sj
        .post_with(
            &format!("{s}/jsonp_send"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "d=%5B%22x%22%5D",
        )
        .await;
    assert_eq!(r.body, "ok");
    assert_cookie(r.header("set-cookie"), "dummy");

    // Endpoints that do not need it set none.
    let r = sj.post(&format!("/echo{}/xhr", session()), "").await;
    assert_eq!(r.header("set-cookie"), None);

    // The STOMP endpoint asks for it when sockjs.cookie_needed is on.
    let sj = Sj::with(|c| c.sockjs.cookie_needed = true).await;
    let v: Value = serde_json::from_str(&sj.get("/ws-sockjs/info").await.body).unwrap();
    assert_eq!(v["cookie_needed"], true);
    let r = sj.post(&format!("/ws-sockjs{}/xhr", session()), "").await;
    assert_eq!(r.body, "o\n");
    assert_cookie(r.header("set-cookie"), "dummy");
}

#[tokio::test]
async fn cors_on_the_xhr_transports() {
    let sj = Sj::start().await;
    let s = format!("/echo{}", session());
    let origin = [
        ("Origin", "https://app.example:8443"),
        ("Access-Control-Request-Headers", "x-custom"),
    ];
    let r = sj.post_with(&format!("{s}/xhr"), &origin, "").await;
    assert_eq!(r.body, "o\n");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example:8443")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-allow-headers"), Some("x-custom"));
    let r = sj
        .post_with(&format!("{s}/xhr_send"), &origin, r#"["x"]"#)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example:8443")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = sj
        .post_with(&format!("{s}/xhr"), &[("Origin", "null")], "")
        .await;
    assert_eq!(r.body, "a[\"x\"]\n");
    assert_eq!(r.header("access-control-allow-origin"), Some("null"));
    // No Origin: `*`, and then credentials may not be allowed.
    sj.send(&s, r#"["y"]"#).await;
    let r = sj.post(&format!("{s}/xhr"), "").await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let r = sj.post(&format!("{s}/xhr_send"), r#"["z"]"#).await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

// ---------------------------------------------------------------------------
// STOMP and the seed-001 chat over SockJS
// ---------------------------------------------------------------------------

fn subscribe(id: &str, destination: &str) -> Frame {
    Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", destination)
}

fn send_text(destination: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination)
        .header("content-type", "text/plain")
        .body(body.to_owned())
}

#[tokio::test]
async fn stomp_over_sockjs_and_websocket_share_a_topic() {
    let sj = Sj::start().await;
    let topic = "/topic/sockjs-meets-ws";
    let mut streaming = SockJsStomp::connect(&sj, SockJsTransport::XhrStreaming).await;
    let mut sockjs_ws = SockJsStomp::connect(&sj, SockJsTransport::Websocket).await;
    let mut plain = sj.server.ws().await;
    streaming.request(subscribe("s", topic), "r1").await;
    sockjs_ws.request(subscribe("s", topic), "r1").await;
    plain.subscribe("s", topic).await;

    streaming
        .request(send_text(topic, "from xhr-streaming"), "r2")
        .await;
    sockjs_ws
        .request(send_text(topic, "from sockjs websocket"), "r2")
        .await;
    plain.publish(topic, "from plain websocket").await;

    let expected = [
        "from xhr-streaming",
        "from sockjs websocket",
        "from plain websocket",
    ];
    let mut got = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..3 {
        got[0].push(streaming.recv_body().await);
        got[1].push(sockjs_ws.recv_body().await);
        got[2].push(plain.recv_body().await);
    }
    for g in &got {
        assert_eq!(
            g, &expected,
            "every client sees every message, in publish order"
        );
    }

    // More than a streaming response carries (128 KiB) reaches the SockJS client whole,
    // over the next responses.
    let big: Vec<String> = (0..4).map(|i| format!("{i}").repeat(50 * 1024)).collect();
    for b in &big {
        plain.publish(topic, b).await;
    }
    for b in &big {
        assert_eq!(&streaming.recv_body().await, b);
        assert_eq!(&sockjs_ws.recv_body().await, b);
        assert_eq!(&plain.recv_body().await, b);
    }
}

/// The seed-001 JSON chat over SockJS xhr polling, meeting a STOMP subscriber.
#[tokio::test]
async fn seed_chat_over_sockjs() {
    let sj = Sj::start().await;
    let (status, body) = sj.server.http_get("/api/rooms").await;
    assert_eq!(status, 200);
    let rooms: Value = serde_json::from_slice(&body).unwrap();
    let id = rooms[0]["id"].as_str().unwrap().to_owned();

    let (mut stomp, _) = sj.server.connect_as(Transport::Tcp, "alice").await;
    stomp
        .subscribe("room", &format!("/topic/chat/room/{id}"))
        .await;

    let s = format!("/ws/chat-sockjs{}", session());
    assert_eq!(sj.poll(&s).await, "o\n");
    let join = json!({ "chatRoomId": id, "type": "JOIN", "writer": "Pat" }).to_string();
    sj.send(&s, &json!([join]).to_string()).await;
    let event: Value = serde_json::from_str(&messages(sj.poll(&s).await.trim_end())[0]).unwrap();
    // Named as an anonymous CONNECT without a login is; the payload's writer is ignored.
    let writer = event["writer"].as_str().unwrap_or_default().to_owned();
    assert_eq!(event["type"], "JOIN");
    assert!(writer.starts_with("anonymous-"), "{event}");
    assert_eq!(event["members"], json!([writer]));
    let seen: Value = serde_json::from_slice(&stomp.recv_message().await.body).unwrap();
    assert_eq!(seen, event, "the STOMP subscriber sees the same event");

    stomp
        .request(
            Frame::new(Command::Send)
                .header("destination", "/app/chat/message")
                .header("content-type", "application/json")
                .body(
                    json!({ "chatRoomId": id, "writer": "Alice", "message": "hi Pat" }).to_string(),
                ),
        )
        .await;
    let mut got = Vec::new();
    while got.is_empty() {
        let frame = sj.poll(&s).await;
        if frame != "h\n" {
            got = messages(frame.trim_end());
        }
    }
    let event: Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(
        (event["writer"].as_str(), event["message"].as_str()),
        (Some("alice"), Some("hi Pat"))
    );

    // Bad input gets an error message; the session stays.
    sj.send(&s, r#"["not json"]"#).await;
    let err: Value = serde_json::from_str(&messages(sj.poll(&s).await.trim_end())[0]).unwrap();
    assert_eq!(err["type"], "ERROR", "{err}");
}

/// Spring's `addEndpoint("/ws").withSockJS()`: with no configuration `new
/// SockJS('/ws')` works, while `/ws` itself stays the plain STOMP WebSocket and the
/// apps' `/ws/chat` endpoints are untouched.
#[tokio::test]
async fn sockjs_is_also_where_spring_puts_it() {
    let sj = Sj::start().await;
    let r = sj.get("/ws/info").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let info: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(info["websocket"], true, "{info}");
    assert_eq!(sj.get("/ws/iframe.html").await.status, 200);

    let topic = "/topic/spring-endpoint";
    let mut plain = sj.server.ws().await;
    plain.subscribe("s", topic).await;
    for transport in [SockJsTransport::XhrStreaming, SockJsTransport::Websocket] {
        let mut c = SockJsStomp::connect_at(&sj, "/ws", transport).await;
        c.request(subscribe("s", topic), "r1").await;
        let body = format!("over {transport:?} at /ws");
        c.request(send_text(topic, &body), "r2").await;
        assert_eq!(c.recv_body().await, body);
        assert_eq!(plain.recv_body().await, body);
    }
    let mut chat = sj.websocket("/ws/chat").await;
    chat.send("nope").await;
    let err: Value = serde_json::from_str(&chat.text().await).unwrap();
    assert_eq!(
        err["type"], "ERROR",
        "the plain JSON chat still answers at /ws/chat"
    );
    assert_eq!(sj.get("/ws/chat-sockjs/info").await.status, 200);
    // The plain chat's own addHandler("/ws/chat").withSockJS(): SockJS below its path.
    let s = format!("/ws/chat{}", session());
    assert_eq!(sj.get("/ws/chat/info").await.status, 200);
    assert_eq!(sj.poll(&s).await, "o\n");

    // Named elsewhere (or nowhere), /ws/info is no longer SockJS.
    let moved = Sj::with(|c| c.sockjs.also_at.clear()).await;
    assert_eq!(moved.get("/ws/info").await.status, 404);
    assert_eq!(moved.get("/ws-sockjs/info").await.status, 200);
}

#[tokio::test]
async fn sockjs_disabled_serves_no_sockjs_endpoint() {
    let sj = Sj::with(|c| {
        c.sockjs.enabled = false;
        c.sockjs.test_endpoints = false;
    })
    .await;
    for path in [
        "/ws-sockjs",
        "/ws-sockjs/info",
        "/ws/info",
        "/ws/chat-sockjs",
        "/ws/chat-sockjs/info",
        "/ws/chat-sockjs/iframe.html",
        "/echo/info",
    ] {
        assert_eq!(sj.get(path).await.status, 404, "{path}");
    }
    for s in ["/ws-sockjs", "/ws/chat-sockjs"] {
        assert_eq!(
            sj.post(&format!("{s}{}/xhr", session()), "").await.status,
            404,
            "{s}"
        );
    }
    // The rest of the demo apps is still there.
    assert_eq!(sj.get("/api/rooms").await.status, 200);
    let mut chat = sj.websocket("/ws/chat").await;
    chat.send("nope").await;
    let err: Value = serde_json::from_str(&chat.text().await).unwrap();
    assert_eq!(err["type"], "ERROR");

    // On: both are served.
    let on = Sj::with(|c| c.sockjs.test_endpoints = false).await;
    for path in ["/ws-sockjs/info", "/ws/chat-sockjs/info"] {
        assert_eq!(on.get(path).await.status, 200, "{path}");
    }
    assert_eq!(
        on.get("/echo/info").await.status,
        404,
        "test endpoints are off by default"
    );
}

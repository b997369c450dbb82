//! Query strings are read one way across the server: a bad percent escape next to
//! multi-byte text is text, never a panic, and `+` and `%20` both mean a space, in
//! the notification API as in the token query parameter and SockJS's callbacks.

mod common;

use common::*;
use serde_json::json;

async fn server() -> TestServer {
    TestServer::with(|c| c.database.url = "sqlite::memory:".into()).await
}

#[tokio::test]
async fn a_bad_escape_before_multibyte_text_is_just_text() {
    let s = server().await;
    // Raw UTF-8 after a '%' with one hex digit: "%a" then "é" (two bytes).
    let (status, body) = s
        .http_call("GET", "/api/notifications?user=%a\u{e9}", &[], None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"], json!([]), "{body}");
    // The server is still there.
    let (status, _) = s.http_get("/health").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn plus_and_percent_20_name_the_same_user() {
    let s = server().await;
    let (status, body) = s
        .http_call(
            "POST",
            "/api/notifications",
            &[],
            Some(&json!({"user": "ann lee", "message": "hi"}).to_string()),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for query in ["user=ann+lee", "user=ann%20lee", "us%65r=ann%20lee"] {
        let (status, body) = s
            .http_call("GET", &format!("/api/notifications?{query}"), &[], None)
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(
            body["items"].as_array().map(Vec::len),
            Some(1),
            "{query}: {body}"
        );
    }
    let (_, body) = s
        .http_call("GET", "/api/notifications?user=ann%2Blee", &[], None)
        .await;
    assert_eq!(body["items"], json!([]), "'%2B' is a plus sign: {body}");
}

#[tokio::test]
async fn sockjs_callbacks_decode_like_every_other_query() {
    // jsonp is off by default (a page of any site can open it with a navigation).
    let s = TestServer::with(|c| {
        c.database.url = "sqlite::memory:".into();
        c.sockjs.transports.push("jsonp-polling".into());
    })
    .await;
    let (status, body) = s
        .http_get("/ws-sockjs/000/cbtest/jsonp?c=my%2Ecallback")
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).starts_with("/**/my.callback(\"o\");"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _) = s.http_get("/ws-sockjs/000/cbtest2/jsonp?c=a+b").await;
    assert_eq!(status, 500, "'+' is a space, which a callback may not hold");
}

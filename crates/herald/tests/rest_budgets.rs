//! What one REST request may make the server hold: `server.max_body` (refused while the
//! body is read, whether its length is declared or chunked), and a notification's
//! `notifications.max_recipients`, `max_message` and `max_payload`; each refusal names
//! its setting and counts in `herald_limit_hits_total`. And `redirectPath`, which the
//! web UI makes a link: only a path on the site or an http(s) URL is stored.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn post(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    s.http_call("POST", path, &[], Some(&body.to_string()))
        .await
}

/// Sends `head` (ending in the blank line) and then `body`, stopping at a write error
/// (the server may stop reading), and returns the status and JSON body of the answer.
async fn raw(s: &TestServer, head: &str, body: &[u8]) -> (u16, Value) {
    let mut c = TcpStream::connect(s.http).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    let _ = c.write_all(body).await;
    let mut resp = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut resp)).await;
    assert!(read.is_ok(), "an answer in time");
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

async fn metrics(s: &TestServer) -> String {
    let (_, body) = s.http_get("/metrics").await;
    String::from_utf8_lossy(&body).into_owned()
}

fn assert_names(answer: &(u16, Value), status: u16, limit: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["limit"], limit, "{}", answer.1);
    assert_eq!(answer.1["code"], "too_large", "{}", answer.1);
    let message = answer.1["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(limit),
        "the message names {limit}: {message}"
    );
}

#[tokio::test]
async fn a_body_over_max_body_is_refused_before_it_is_read() {
    let s = TestServer::with(|c| c.server.max_body = 4096).await;
    // Declared: answered from the head alone, the body is never sent.
    let head = format!(
        "POST /api/notifications HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
        s.http
    );
    let declared = raw(&s, &head, b"").await;
    assert_names(&declared, 413, "server.max_body");
    assert!(declared.1["error"].as_str().unwrap().contains("4096 bytes"));
    // Chunked: refused once the bytes read pass the budget; the rest is never awaited.
    let head = format!(
        "POST /api/notifications HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.http
    );
    let chunk = format!("{:x}\r\n{}\r\n", 5000, "x".repeat(5000));
    assert_names(
        &raw(&s, &head, chunk.as_bytes()).await,
        413,
        "server.max_body",
    );
    // Every REST endpoint, not only notifications.
    let big = json!({"destination": "/topic/x", "body": "y".repeat(5000)});
    assert_names(&post(&s, "/api/publish", big).await, 413, "server.max_body");
    // Under the budget, a request goes through.
    let (status, body) = post(
        &s,
        "/api/notifications",
        json!({"user": "u", "message": "hi"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        metrics(&s)
            .await
            .contains("herald_limit_hits_total{limit=\"server.max_body\"}"),
        "the refusals are counted"
    );
}

#[tokio::test]
async fn notification_budgets_name_their_setting() {
    let s = TestServer::with(|c| {
        c.notifications.max_recipients = 50;
        c.notifications.max_message = 100;
        c.notifications.max_payload = 200;
    })
    .await;
    let users: Vec<String> = (0..51).map(|i| format!("u{i}")).collect();
    let too_many = post(
        &s,
        "/api/notifications",
        json!({"users": users, "message": "m"}),
    )
    .await;
    assert_names(&too_many, 413, "notifications.max_recipients");
    let long = post(
        &s,
        "/api/notifications",
        json!({"user": "u", "message": "m".repeat(101)}),
    )
    .await;
    assert_names(&long, 413, "notifications.max_message");
    let payload = json!({"user": "u", "message": "m", "payload": {"x": "p".repeat(200)}});
    let heavy = post(&s, "/api/notifications", payload).await;
    assert_names(&heavy, 413, "notifications.max_payload");
    // A job's result is the stored payload, and is pushed live.
    let job = json!({"user": "u", "status": "running", "percent": 5, "result": "r".repeat(300)});
    let heavy_job = post(&s, "/api/jobs/7/progress", job).await;
    assert_names(&heavy_job, 413, "notifications.max_payload");
    // At the budgets, accepted.
    let users: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
    let payload = json!({"users": users, "message": "m".repeat(100), "payload": "p".repeat(150)});
    let (status, body) = post(&s, "/api/notifications", payload).await;
    assert_eq!((status, body["count"].clone()), (201, json!(50)), "{body}");
    assert_eq!(body["notifications"].as_array().unwrap().len(), 10);
    assert_eq!(body["ids"].as_array().unwrap().len(), 50);
    let text = metrics(&s).await;
    for limit in [
        "notifications.max_recipients",
        "notifications.max_message",
        "notifications.max_payload",
    ] {
        assert!(
            text.contains(&format!("herald_limit_hits_total{{limit=\"{limit}\"}}")),
            "{limit} counted"
        );
    }
}

#[tokio::test]
async fn a_single_recipient_is_answered_in_full() {
    let s = TestServer::start().await;
    let (status, body) = post(
        &s,
        "/api/notifications",
        json!({"user": "solo", "message": "hi"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["count"].clone(), body["more"].clone()),
        (json!(1), json!(false))
    );
    let n = &body["notifications"][0];
    assert_eq!(
        (n["memberId"].as_str(), n["message"].as_str()),
        (Some("solo"), Some("hi"))
    );
    assert_eq!(body["ids"][0], n["notificationId"]);
}

#[tokio::test]
async fn redirect_path_is_a_site_path_or_an_http_url() {
    let s = TestServer::start().await;
    for bad in [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/x",
        "/\\evil.example/x",
        "/\t/evil.example",
        "/ok\nSet-Cookie: x",
        "evil.example/x",
        "ftp://evil.example/x",
        "https://",
    ] {
        let (status, body) = post(
            &s,
            "/api/notifications",
            json!({"user": "v", "message": "m", "redirectPath": bad}),
        )
        .await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("redirectPath"),
            "{body}"
        );
        // A job's final notification is checked the same way.
        let job = json!({"user": "v", "status": "done", "percent": 100, "redirectPath": bad});
        let (status, body) = post(&s, "/api/jobs/j1/progress", job).await;
        assert_eq!(status, 400, "job {bad:?}: {body}");
    }
    for good in [
        "/posts/7",
        "/",
        "/a?b=c#d",
        "https://app.example/x",
        "http://localhost:3000/",
    ] {
        let (status, body) = post(
            &s,
            "/api/notifications",
            json!({"user": "v", "message": "m", "redirectPath": good}),
        )
        .await;
        assert_eq!(status, 201, "{good:?}: {body}");
    }
    let (_, list) = s
        .http_call(
            "GET",
            "/api/notifications?limit=50",
            &[("X-User", "v")],
            None,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 5, "{list}");
}

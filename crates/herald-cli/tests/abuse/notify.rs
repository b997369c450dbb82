//! One huge notification request (`POST /api/notifications`: 8,000 users, a 16 KB
//! message, a 60 KB payload, 1.3 MB in all) is refused quickly with a 4xx naming the
//! limit, instead of being stored and delivered 8,000 times.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Herald, Watch, serial};
use crate::http::KeepAlive;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_notification_is_refused_naming_a_limit() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("huge notification", &herald).await;
    let users: Vec<String> = (0..8000)
        .map(|n| format!("user-{n:05}-{}", "u".repeat(140)))
        .collect();
    let body = json!({
        "users": users,
        "message": "m".repeat(16 * 1024),
        "payload": {"blob": "p".repeat(60 * 1024)},
    })
    .to_string();
    assert!(body.len() > 1_250_000, "{} bytes", body.len());
    let mut api = KeepAlive::new(herald.http, None);
    let (status, answer) = tokio::time::timeout(
        Duration::from_secs(20),
        api.request("POST", "/api/notifications", Some(body.as_bytes())),
    )
    .await
    .expect("an answer within 20 s")
    .expect("an answer");
    let text = String::from_utf8_lossy(&answer).to_lowercase();
    eprintln!("[abuse] huge notification: {status} {text}");
    assert!(matches!(status, 400 | 413 | 422), "{status} {text}");
    assert!(
        ["max_", "limit", "too large", "too many"]
            .iter()
            .any(|w| text.contains(w)),
        "the answer should name the limit: {text}"
    );
    watch.finish(&mut herald, 64).await;
}

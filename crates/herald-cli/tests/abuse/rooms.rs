//! The demo chat's rooms (`POST /api/rooms`) are not created without end: past
//! `apps.max_rooms` a create is refused with an error that names rooms.

use std::time::Duration;

use crate::harness::{Herald, Watch, serial};
use crate::http::KeepAlive;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_not_created_without_end() {
    let _serial = serial().await;
    let limit = 1000;
    let mut herald = Herald::with(&[("apps.max_rooms", &limit.to_string())]).await;
    let watch = Watch::start("rooms", &herald).await;
    let mut api = KeepAlive::new(herald.http, None);
    let mut refusal = None;
    for n in 0..5000 {
        let body = format!(r#"{{"name":"abuse room {n}"}}"#);
        let (status, answer) = tokio::time::timeout(
            Duration::from_secs(5),
            api.request("POST", "/api/rooms", Some(body.as_bytes())),
        )
        .await
        .unwrap_or_else(|_| panic!("room {n}: no answer"))
        .unwrap_or_else(|e| panic!("room {n}: {e}"));
        if status != 201 {
            refusal = Some((n, status, String::from_utf8_lossy(&answer).into_owned()));
            break;
        }
    }
    let (created, status, text) =
        refusal.expect("5000 rooms were created: nothing limits how many");
    eprintln!("[abuse] rooms: {created} created, then {status} {text}");
    assert!((400..500).contains(&status), "{status} {text}");
    assert!(text.to_lowercase().contains("room"), "{text}");
    assert!(
        created <= limit,
        "{created} rooms were created past apps.max_rooms = {limit}"
    );
    watch.finish(&mut herald, 32).await;
}

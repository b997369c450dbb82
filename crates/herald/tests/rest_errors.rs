//! Every REST error has one shape: `{"error": "<for a person>", "code": "<for a
//! program>", ...}`, whichever endpoint answers it.

mod common;

use common::*;
use serde_json::Value;

fn assert_shape(what: &str, status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{what}: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: no 'error' text in {body}"
    );
    assert_eq!(body["code"].as_str(), Some(want_code), "{what}: {body}");
}

/// What is asked (name, method, path, headers, JSON body) and the status and code the
/// answer must have.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
    u16,
    &'a str,
);

#[tokio::test]
async fn every_rest_error_names_its_code() {
    let server = TestServer::with(|c| c.auth.api_keys = vec!["svc-key".into()]).await;
    let key = [("X-API-Key", "svc-key")];
    let cases: Vec<Case> = vec![
        (
            "publish with an unknown key",
            "POST",
            "/api/publish",
            &[("X-API-Key", "nope")],
            Some(r#"{"destination":"/topic/a","body":"x"}"#),
            401,
            "unauthorized",
        ),
        (
            "publish without credentials",
            "POST",
            "/api/publish",
            &[],
            Some(r#"{"destination":"/topic/a","body":"x"}"#),
            401,
            "unauthorized",
        ),
        (
            "publish with broken JSON",
            "POST",
            "/api/publish",
            &key,
            Some("{"),
            400,
            "bad_request",
        ),
        (
            "users' messages to a destination without '/'",
            "POST",
            "/api/users/ada/messages",
            &key,
            Some(r#"{"destination":"queue/x","body":"x"}"#),
            400,
            "bad_request",
        ),
        (
            "presence without credentials",
            "GET",
            "/api/presence/users",
            &[],
            None,
            401,
            "unauthorized",
        ),
        (
            "a notification of nobody",
            "POST",
            "/api/notifications",
            &key,
            Some(r#"{"message":"hi"}"#),
            400,
            "bad_request",
        ),
        (
            "unread count without a user",
            "GET",
            "/api/notifications/unread-count",
            &[],
            None,
            401,
            "unauthorized",
        ),
        (
            "an unknown room",
            "GET",
            "/api/rooms/no-such-room",
            &[],
            None,
            404,
            "not_found",
        ),
        (
            "the admin API without the admin role",
            "DELETE",
            "/api/admin/sessions/none",
            &key,
            None,
            403,
            "forbidden",
        ),
    ];
    for (what, method, path, headers, body, status, code) in cases {
        let (got, answer) = server.http_call(method, path, headers, body).await;
        assert_shape(what, got, &answer, status, code);
    }
}

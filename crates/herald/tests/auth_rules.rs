//! Destination rules against impersonation ([auth]): the server's own destinations
//! (notifications, broadcasts, jobs) and `herald-*` headers are not a client's to
//! write, the default owner rule follows `routing.user_prefix`, rules with several
//! grants, and the publish REST API obeying the same rules as a STOMP SEND.

mod common;

use common::*;
use herald::config::{ApiKeyConfig, Grants, RuleConfig};
use herald_stomp::{Command, Frame};
use serde_json::{Value, json};

const ISS: &str = "https://idp.test";

/// A server trusting `ISS`, with API keys: `svc-key` (billing, SERVICE), `admin-key`
/// (ops, ADMIN), `plain-key` (reporter, no role) and `bob-key` (bob, no role).
async fn server(tweak: impl FnOnce(&mut herald::Config)) -> TestServer {
    TestServer::with(|cfg| {
        cfg.auth.issuers = vec![secret_issuer(ISS)];
        let key = |key: &str, principal: &str, roles: &[&str]| ApiKeyConfig::Full {
            key: key.into(),
            principal: principal.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        cfg.auth.api_keys = vec![
            key("svc-key", "billing", &["SERVICE"]),
            key("admin-key", "ops", &["ADMIN"]),
            key("plain-key", "reporter", &[]),
            key("bob-key", "bob", &[]),
        ];
        tweak(cfg);
    })
    .await
}

async fn as_user(s: &TestServer, transport: Transport, user: &str, roles: &[&str]) -> Client {
    s.connect_ok(transport, &[("passcode", &hs_token(ISS, user, roles))])
        .await
        .0
}

/// Sends `frame`, expects the ERROR (the session closes) and returns its message.
async fn refused(c: &mut Client, frame: Frame) -> String {
    c.send_frame(&frame).await;
    let e = c.expect_error_and_close().await;
    message_of(&e).to_owned()
}

fn forged_read_all(destination: &str) -> Frame {
    send(destination, r#"{"event":"read","all":true}"#).header("content-type", "application/json")
}

async fn publish_api(s: &TestServer, path: &str, key: &str, json: &Value) -> (u16, Value) {
    s.http_call("POST", path, &[("X-API-Key", key)], Some(&json.to_string()))
        .await
}

// ---------------------------------------------------------------------------
// The server's destinations and headers
// ---------------------------------------------------------------------------

/// The attack: a forged `{"event":"read","all":true}` on the broadcast destination
/// cleared every subscriber's unread badge.
#[tokio::test]
async fn clients_cannot_send_to_the_broadcast_destination() {
    let s = TestServer::start().await;
    for transport in BOTH {
        let (mut bob, _) = s.connect_as(Transport::Tcp, "bob").await;
        bob.subscribe("b", "/topic/notifications").await;
        let (mut mallory, _) = s.connect_as(transport, "mallory").await;
        let m = refused(&mut mallory, forged_read_all("/topic/notifications")).await;
        assert!(
            m.contains("access denied")
                && m.contains("'/topic/notifications'")
                && m.contains("/topic/notifications/**")
                && m.contains("reserved"),
            "{m}"
        );
        // Below it too: a wildcard subscriber would read it as the server's.
        let (mut mallory, _) = s.connect_as(transport, "mallory").await;
        let m = refused(&mut mallory, forged_read_all("/topic/notifications.all")).await;
        assert!(m.contains("access denied"), "{m}");
        // The server's own broadcast (the REST API, anonymous mode: a service) is the
        // first thing bob receives, so the forged one never reached him.
        let (status, body) = s
            .http_post_json(
                "/api/publish",
                r#"{"destination":"/topic/notifications","body":"from the server"}"#,
            )
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(bob.recv_body().await, "from the server");
    }
}

#[tokio::test]
async fn clients_cannot_send_to_user_notification_or_job_destinations() {
    let s = TestServer::start().await;
    let (mut bob, _) = s.connect_as(Transport::Ws, "bob").await;
    bob.subscribe("n", "/user/queue/notifications").await;
    bob.subscribe("j", "/user/queue/jobs").await;
    for destination in [
        "/user/bob/queue/notifications",
        "/user/bob/queue/jobs",
        // Not even one's own: a user's badge counts what the server sent.
        "/user/alice/queue/notifications",
    ] {
        let (mut alice, _) = s.connect_as(Transport::Tcp, "alice").await;
        let m = refused(&mut alice, forged_read_all(destination)).await;
        assert!(
            m.contains(&format!("'{destination}'")) && m.contains("reserved"),
            "{m}"
        );
    }
    let (mut bob2, _) = s.connect_as(Transport::Tcp, "bob").await;
    let m = refused(&mut bob2, forged_read_all("/user/bob/queue/notifications")).await;
    assert!(m.contains("access denied"), "{m}");
    // Bob's own sessions may still write to his other user destinations.
    let (mut bob3, _) = s.connect_as(Transport::Tcp, "bob").await;
    bob.subscribe("x", "/user/queue/x").await;
    bob3.publish("/user/bob/queue/x", "sentinel").await;
    let f = bob.recv_message().await;
    assert_eq!(
        (
            f.get("subscription"),
            String::from_utf8_lossy(&f.body).as_ref()
        ),
        (Some("x"), "sentinel")
    );
}

#[tokio::test]
async fn herald_headers_are_reserved_to_the_server() {
    let s = TestServer::start().await;
    let (mut bob, _) = s.connect_as(Transport::Tcp, "bob").await;
    bob.subscribe("c", "/topic/chat").await;
    for (transport, name) in [
        (Transport::Tcp, "herald-event"),
        (Transport::Ws, "Herald-Event"),
        (Transport::Tcp, "herald-anything"),
    ] {
        let (mut mallory, _) = s.connect_as(transport, "mallory").await;
        let frame = send("/topic/chat", r#"{"title":"Your account is locked"}"#)
            .header(name, "notification");
        let m = refused(&mut mallory, frame).await;
        assert!(
            m.contains(&format!("reserved header '{name}'")),
            "names the header: {m}"
        );
    }
    // Inside a transaction the SEND is refused as it arrives.
    let (mut mallory, _) = s.connect_as(Transport::Tcp, "mallory").await;
    mallory
        .request(Frame::new(Command::Begin).header("transaction", "t"))
        .await;
    let m = refused(
        &mut mallory,
        send("/topic/chat", "x")
            .header("transaction", "t")
            .header("herald-event", "read"),
    )
    .await;
    assert!(m.contains("reserved header 'herald-event'"), "{m}");
    let (mut alice, _) = s.connect_as(Transport::Tcp, "alice").await;
    alice.publish("/topic/chat", "sentinel").await;
    assert_eq!(bob.recv_body().await, "sentinel");
    // The publish API holds its headers to the same rule.
    let (status, body) = s
        .http_post_json(
            "/api/publish",
            r#"{"destination":"/topic/chat","body":"x","headers":{"herald-event":"read"}}"#,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "reserved_header", "{body}");
    assert_eq!(body["header"], "herald-event", "{body}");
}

/// Services and admins keep what they are for: publishing to the server's
/// destinations and to any user, over STOMP too.
#[tokio::test]
async fn services_and_admins_send_to_reserved_and_user_destinations() {
    let s = server(|_| {}).await;
    let mut bob = as_user(&s, Transport::Tcp, "bob", &[]).await;
    bob.subscribe("b", "/topic/notifications").await;
    bob.subscribe("n", "/user/queue/notifications").await;
    bob.subscribe("x", "/user/queue/x").await;
    for (who, roles) in [("billing", ["SERVICE"]), ("root", ["ADMIN"])] {
        let mut c = as_user(&s, Transport::Ws, who, &roles).await;
        for destination in [
            "/topic/notifications",
            "/user/bob/queue/notifications",
            "/user/bob/queue/x",
        ] {
            c.publish(destination, who).await;
            assert_eq!(bob.recv_body().await, who, "{who} to {destination}");
        }
    }
    // Without the role: refused, naming every grant of the rule.
    let mut alice = as_user(&s, Transport::Tcp, "alice", &["USER"]).await;
    let m = refused(&mut alice, send("/user/bob/queue/x", "x")).await;
    assert!(
        m.contains("requires its owner (the {user} segment) or role SERVICE or role ADMIN")
            && m.contains("rule '/user/{user}/**'"),
        "{m}"
    );
}

// ---------------------------------------------------------------------------
// The user prefix
// ---------------------------------------------------------------------------

/// The names Spring notification services use: with `/member/` the owner rule is written for `/member/`.
#[tokio::test]
async fn default_rules_follow_the_user_prefix() {
    let s = TestServer::with(|c| {
        c.routing.user_prefix = "/member/".into();
        c.notifications.destination = "/queue/notification".into();
    })
    .await;
    let (mut bob, _) = s.connect_as(Transport::Ws, "bob").await;
    bob.subscribe("n", "/member/queue/notification").await;
    bob.subscribe("x", "/member/queue/x").await;
    let (mut alice, _) = s.connect_as(Transport::Tcp, "alice").await;
    let m = refused(
        &mut alice,
        forged_read_all("/member/bob/queue/notification"),
    )
    .await;
    assert!(
        m.contains("'/member/bob/queue/notification'")
            && m.contains("/member/{user}/queue/notification/**"),
        "{m}"
    );
    let (mut alice, _) = s.connect_as(Transport::Tcp, "alice").await;
    let m = refused(&mut alice, send("/member/bob/queue/x", "x")).await;
    assert!(m.contains("rule '/member/{user}/**'"), "{m}");
    let (mut bob2, _) = s.connect_as(Transport::Tcp, "bob").await;
    bob2.publish("/member/bob/queue/x", "mine").await;
    let f = bob.recv_message().await;
    assert_eq!(
        (
            f.get("subscription"),
            String::from_utf8_lossy(&f.body).as_ref()
        ),
        (Some("x"), "mine")
    );
}

// ---------------------------------------------------------------------------
// Several grants
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_rule_admits_any_of_its_grants() {
    let s = server(|c| {
        c.auth.rules = vec![RuleConfig {
            pattern: "/topic/desk/{user}/**".into(),
            subscribe: Some("owner".into()),
            send: Some(Grants::Any(vec!["owner".into(), "role:SUPPORT".into()])),
        }];
    })
    .await;
    let mut alice = as_user(&s, Transport::Tcp, "alice", &[]).await;
    alice.subscribe("d", "/topic/desk/alice/inbox").await;
    let mut support = as_user(&s, Transport::Ws, "sam", &["SUPPORT"]).await;
    support
        .publish("/topic/desk/alice/inbox", "from support")
        .await;
    assert_eq!(alice.recv_body().await, "from support");
    alice.publish("/topic/desk/alice/inbox", "from alice").await;
    assert_eq!(alice.recv_body().await, "from alice");
    let mut bob = as_user(&s, Transport::Tcp, "bob", &[]).await;
    let m = refused(&mut bob, send("/topic/desk/alice/inbox", "x")).await;
    assert!(
        m.contains("requires its owner (the {user} segment) or role SUPPORT"),
        "{m}"
    );
}

// ---------------------------------------------------------------------------
// The publish REST API
// ---------------------------------------------------------------------------

/// The attack: `/api/publish` reached `/topic/admin/**`, which a STOMP SEND by the
/// same service is refused.
#[tokio::test]
async fn publish_api_obeys_the_rules_as_its_caller() {
    let s = server(|_| {}).await;
    let mut root = as_user(&s, Transport::Tcp, "root", &["ADMIN"]).await;
    root.subscribe("a", "/topic/admin/stats").await;
    let to_admin = json!({"destination": "/topic/admin/stats", "body": "forged"});
    let (status, body) = publish_api(&s, "/api/publish", "svc-key", &to_admin).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "access_denied", "{body}");
    assert_eq!(body["rule"], "/topic/admin/**", "{body}");
    assert_eq!(body["destination"], "/topic/admin/stats", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("requires role ADMIN"),
        "{body}"
    );
    // A bearer token with the service role: the same.
    let svc = hs_token(ISS, "svc", &["SERVICE"]);
    let (status, body) = s
        .http_call(
            "POST",
            "/api/publish",
            &[("Authorization", &format!("Bearer {svc}"))],
            Some(&to_admin.to_string()),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // The admin's key may; it is the first message root sees.
    let ok = json!({"destination": "/topic/admin/stats", "body": "by ops"});
    let (status, body) = publish_api(&s, "/api/publish", "admin-key", &ok).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(root.recv_body().await, "by ops");
}

#[tokio::test]
async fn publish_api_to_users_needs_the_owner_or_a_service() {
    let s = server(|_| {}).await;
    let mut bob = as_user(&s, Transport::Tcp, "bob", &[]).await;
    bob.subscribe("x", "/user/queue/x").await;
    let to_bob = json!({"destination": "/user/bob/queue/x", "body": "x"});
    let queue_x = json!({"destination": "/queue/x", "body": "x"});
    // A key without a role is neither bob, a service nor an admin.
    let (status, body) = publish_api(&s, "/api/publish", "plain-key", &to_bob).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["rule"], "/user/{user}/**", "{body}");
    let (status, body) = publish_api(&s, "/api/users/bob/messages", "plain-key", &queue_x).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["destination"], "/user/bob/queue/x", "{body}");
    // A name with a '/' stays one user segment, so it cannot pass as another's.
    let (status, body) =
        publish_api(&s, "/api/users/bob%2Fqueue/messages", "bob-key", &queue_x).await;
    assert_eq!(status, 403, "{body}");
    // The server's destinations are a service's, even for their owner.
    let notification = json!({"destination": "/queue/notifications", "body": "x"});
    let (status, body) = publish_api(&s, "/api/users/bob/messages", "bob-key", &notification).await;
    assert_eq!(status, 403, "{body}");
    // bob's own key, then a service, reach bob; nothing refused came before.
    for (key, text) in [("bob-key", "from bob"), ("svc-key", "from billing")] {
        let m = json!({"destination": "/queue/x", "body": text});
        let (status, body) = publish_api(&s, "/api/users/bob/messages", key, &m).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(bob.recv_body().await, text);
    }
    let m = json!({"destination": "/user/bob/queue/x", "body": "by ops"});
    let (status, body) = publish_api(&s, "/api/publish", "admin-key", &m).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(bob.recv_body().await, "by ops");
}

//! Who a session is ([auth]): token sources (cookie, handshake header, query, CONNECT
//! Authorization / passcode) and their order, claims → principal, the three modes
//! (anonymous, optional tokens, required tokens), token expiry during a session, and
//! destination rules (defaults and configured).

mod common;

use std::time::{Duration, Instant};

use common::*;
use herald::config::{RuleConfig, TokenSource};
use herald::handler::{HandlerError, Handlers, Reply, Request};
use herald_stomp::{Command, Frame};
use serde_json::{Value, json};

const ISS: &str = "https://idp.test";

fn token(sub: &str, roles: &[&str]) -> String {
    hs_token(ISS, sub, roles)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A server trusting `ISS` (tokens optional unless `tweak` says otherwise).
async fn server(tweak: impl FnOnce(&mut herald::Config)) -> TestServer {
    TestServer::with(|cfg| {
        cfg.auth.issuers = vec![secret_issuer(ISS)];
        tweak(cfg);
    })
    .await
}

/// The `user-name` a WebSocket handshake with `headers` on `path` leads to, after a
/// CONNECT with `connect_headers`.
async fn ws_user(
    s: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    connect_headers: &[(&str, &str)],
) -> String {
    let mut c = s
        .ws_with(path, headers)
        .await
        .unwrap_or_else(|e| panic!("handshake {path} {headers:?} refused: {e}"));
    let answer = c.connect_with(connect_frame(connect_headers)).await;
    assert_eq!(answer.command, Command::Connected, "{answer:?}");
    answer.get("user-name").unwrap_or("").to_owned()
}

// ---------------------------------------------------------------------------
// Token sources
// ---------------------------------------------------------------------------

#[tokio::test]
async fn token_in_a_cookie() {
    let s = server(|_| {}).await;
    let t = token("alice", &[]);
    let cookie = format!("theme=dark; access_token={t}; lang=en");
    assert_eq!(
        ws_user(&s, "/ws", &[("Cookie", &cookie)], &[]).await,
        "alice"
    );
}

#[tokio::test]
async fn cookie_name_is_configurable() {
    let s = server(|cfg| cfg.auth.cookie_name = "herald_jwt".into()).await;
    let t = token("alice", &[]);
    assert_eq!(
        ws_user(&s, "/ws", &[("Cookie", &format!("herald_jwt={t}"))], &[]).await,
        "alice"
    );
    // The default name is no longer looked at.
    let name = ws_user(&s, "/ws", &[("Cookie", &format!("access_token={t}"))], &[]).await;
    assert_ne!(name, "alice");
    assert!(name.starts_with("anonymous-"), "{name}");
}

#[tokio::test]
async fn token_in_the_handshake_authorization_header() {
    let s = server(|_| {}).await;
    let t = token("alice", &[]);
    assert_eq!(
        ws_user(&s, "/ws", &[("Authorization", &bearer(&t))], &[]).await,
        "alice"
    );
}

#[tokio::test]
async fn token_in_the_query() {
    let s = server(|_| {}).await;
    let t = token("alice", &[]);
    assert_eq!(
        ws_user(&s, &format!("/ws?x=1&access_token={t}"), &[], &[]).await,
        "alice"
    );
    let s = server(|cfg| cfg.auth.query_param = "jwt".into()).await;
    assert_eq!(
        ws_user(&s, &format!("/ws?jwt={t}"), &[], &[]).await,
        "alice"
    );
}

#[tokio::test]
async fn token_in_the_connect_frame() {
    let s = server(|_| {}).await;
    let t = token("alice", &[]);
    for transport in BOTH {
        for (header, value) in [
            ("Authorization", bearer(&t)),
            ("authorization", bearer(&t)),
            ("passcode", t.clone()),
        ] {
            let (_c, answer) = s.connect_ok(transport, &[(header, &value)]).await;
            assert_eq!(
                answer.get("user-name"),
                Some("alice"),
                "{transport:?} {header}"
            );
        }
    }
    // login does not matter once a token speaks.
    let (_c, answer) = s
        .connect_ok(Transport::Tcp, &[("login", "mallory"), ("passcode", &t)])
        .await;
    assert_eq!(answer.get("user-name"), Some("alice"));
}

#[tokio::test]
async fn an_invalid_token_in_any_source_is_refused() {
    let s = server(|_| {}).await;
    let bad = hs_token("https://evil.test", "alice", &[]);
    for (path, headers) in [
        (
            "/ws".to_owned(),
            vec![("Cookie", format!("access_token={bad}"))],
        ),
        ("/ws".to_owned(), vec![("Authorization", bearer(&bad))]),
        (format!("/ws?access_token={bad}"), vec![]),
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = s.ws_handshake_raw(&path, &h).await;
        assert_eq!(status, 401, "{path} {headers:?}: {body}");
        assert!(body.contains("wrong issuer"), "{body}");
    }
    let (mut c, answer) = s
        .connect_headers(Transport::Tcp, &[("passcode", &bad)])
        .await;
    assert_eq!(answer.command, Command::Error, "{answer:?}");
    assert!(message_of(&answer).contains("wrong issuer"), "{answer:?}");
    c.expect_closed().await;
}

#[tokio::test]
async fn token_sources_order_decides_which_wins() {
    let alice = token("alice", &[]);
    let bob = token("bob", &[]);
    let q = format!("/ws?access_token={bob}");
    let cookie = format!("access_token={alice}");
    let both: &[(&str, &str)] = &[("Cookie", &cookie)];

    let s =
        server(|cfg| cfg.auth.token_sources = vec![TokenSource::Query, TokenSource::Cookie]).await;
    assert_eq!(ws_user(&s, &q, both, &[]).await, "bob", "query first");
    let s =
        server(|cfg| cfg.auth.token_sources = vec![TokenSource::Cookie, TokenSource::Query]).await;
    assert_eq!(ws_user(&s, &q, both, &[]).await, "alice", "cookie first");

    // The handshake header against the CONNECT frame.
    let hs: &[(&str, &str)] = &[("Authorization", &bearer(&alice))];
    let connect: &[(&str, &str)] = &[("Authorization", &bearer(&bob))];
    let s = server(|cfg| cfg.auth.token_sources = vec![TokenSource::Header, TokenSource::Connect])
        .await;
    assert_eq!(
        ws_user(&s, "/ws", hs, connect).await,
        "alice",
        "header first"
    );
    let s = server(|cfg| cfg.auth.token_sources = vec![TokenSource::Connect, TokenSource::Header])
        .await;
    assert_eq!(
        ws_user(&s, "/ws", hs, connect).await,
        "bob",
        "connect first"
    );
}

#[tokio::test]
async fn sources_not_listed_are_ignored() {
    let t = token("alice", &[]);
    // Only the CONNECT frame: a cookie or query token means nothing.
    let s = server(|cfg| cfg.auth.token_sources = vec![TokenSource::Connect]).await;
    let name = ws_user(
        &s,
        &format!("/ws?access_token={t}"),
        &[("Cookie", &format!("access_token={t}"))],
        &[],
    )
    .await;
    assert!(name.starts_with("anonymous-"), "{name}");
    // Only the cookie: the CONNECT frame's token means nothing.
    let s = server(|cfg| cfg.auth.token_sources = vec![TokenSource::Cookie]).await;
    let (_c, answer) = s
        .connect_ok(Transport::Tcp, &[("Authorization", &bearer(&t))])
        .await;
    let name = answer.get("user-name").unwrap_or("");
    assert!(name.starts_with("anonymous-"), "{answer:?}");
}

// ---------------------------------------------------------------------------
// Claims → principal
// ---------------------------------------------------------------------------

/// A handler that tells the sender who it is.
fn whoami() -> Handlers {
    Handlers::new().route("/whoami", |req: Request<Value>| async move {
        let p = req.principal();
        let body = json!({
            "name": p.name,
            "display_name": p.display_name,
            "roles": p.roles,
            "authenticated": p.authenticated,
        });
        Ok::<_, HandlerError>(Reply::to_sender("/queue/whoami", &body))
    })
}

async fn ask_whoami(c: &mut Client) -> Value {
    c.subscribe("who", "/user/queue/whoami").await;
    c.publish("/app/whoami", "{}").await;
    serde_json::from_str(&c.recv_body().await).unwrap()
}

#[tokio::test]
async fn claims_make_the_principal() {
    let s = TestServer::with_handlers(whoami(), |cfg| {
        cfg.auth.issuers = vec![secret_issuer(ISS)];
    })
    .await;
    let mut claims = claims(ISS, "u-42", &["USER", "ADMIN"], 600);
    claims["name"] = json!("Alice Liddell");
    let t = sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET.as_bytes(),
        None,
        &claims,
    );
    let (mut c, connected) = s.connect_ok(Transport::Tcp, &[("passcode", &t)]).await;
    assert_eq!(
        connected.get("user-name"),
        Some("u-42"),
        "CONNECTED names the sub"
    );
    let me = ask_whoami(&mut c).await;
    assert_eq!(me["name"], "u-42");
    assert_eq!(me["display_name"], "Alice Liddell");
    assert_eq!(me["roles"], json!(["USER", "ADMIN"]));
    assert_eq!(me["authenticated"], true);
}

#[tokio::test]
async fn claim_paths_are_configurable() {
    let s = TestServer::with_handlers(whoami(), |cfg| {
        cfg.auth.issuers = vec![secret_issuer(ISS)];
        cfg.auth.user_claim = "preferred_username".into();
        cfg.auth.name_claim = "profile.display".into();
        cfg.auth.roles_claim = "realm_access.roles".into();
    })
    .await;
    let mut c = claims(ISS, "3f1c-uuid", &["ADMIN"], 600); // top-level roles: not looked at
    c["preferred_username"] = json!("alice");
    c["profile"] = json!({ "display": "Alice" });
    c["realm_access"] = json!({ "roles": ["USER"] });
    let t = sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET.as_bytes(),
        None,
        &c,
    );
    let (mut client, connected) = s.connect_ok(Transport::Ws, &[("passcode", &t)]).await;
    assert_eq!(connected.get("user-name"), Some("alice"));
    let me = ask_whoami(&mut client).await;
    assert_eq!(me["display_name"], "Alice");
    assert_eq!(me["roles"], json!(["USER"]));
    // The roles at realm_access.roles decide admin access; the top-level ones do not.
    client
        .send_frame(
            &Frame::new(Command::Subscribe)
                .header("id", "a")
                .header("destination", "/topic/admin/x"),
        )
        .await;
    let e = client.expect_error_and_close().await;
    assert!(message_of(&e).contains("/topic/admin/x"), "{e:?}");

    c["realm_access"] = json!({ "roles": ["ADMIN"] });
    let t = sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET.as_bytes(),
        None,
        &c,
    );
    let (mut admin, _) = s.connect_ok(Transport::Tcp, &[("passcode", &t)]).await;
    admin.subscribe("a", "/topic/admin/x").await;

    // Roles as a space-separated string (OAuth `scope` style) work too.
    c["realm_access"] = json!({ "roles": "USER ADMIN" });
    let t = sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET.as_bytes(),
        None,
        &c,
    );
    let (mut admin2, _) = s.connect_ok(Transport::Tcp, &[("passcode", &t)]).await;
    admin2.subscribe("a", "/topic/admin/x").await;
}

#[tokio::test]
async fn a_token_without_the_user_claim_is_refused() {
    let s = server(|_| {}).await;
    let mut c = claims(ISS, "alice", &[], 600);
    c.as_object_mut().unwrap().remove("sub");
    let t = sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET.as_bytes(),
        None,
        &c,
    );
    let (mut client, answer) = s.connect_headers(Transport::Tcp, &[("passcode", &t)]).await;
    assert_eq!(answer.command, Command::Error, "{answer:?}");
    assert!(message_of(&answer).contains("'sub'"), "{answer:?}");
    client.expect_closed().await;
}

// ---------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn anonymous_mode_names_sessions_by_login() {
    let s = TestServer::start().await;
    for transport in BOTH {
        let (_c, answer) = s
            .connect_ok(transport, &[("login", "alice"), ("passcode", "whatever")])
            .await;
        assert_eq!(answer.get("user-name"), Some("alice"));
        let (_c, answer) = s.connect_ok(transport, &[]).await;
        let generated = answer.get("user-name").unwrap_or("");
        assert!(generated.starts_with("anonymous-"), "{answer:?}");
        let (_c, answer) = s.connect_ok(transport, &[("login", "  ")]).await;
        assert!(
            answer
                .get("user-name")
                .unwrap_or("")
                .starts_with("anonymous-"),
            "blank login: {answer:?}"
        );
    }
    // Generated names differ.
    let (_a, a) = s.connect_ok(Transport::Tcp, &[]).await;
    let (_b, b) = s.connect_ok(Transport::Tcp, &[]).await;
    assert_ne!(a.get("user-name"), b.get("user-name"));
}

/// With issuers configured but tokens optional, a tokenless CONNECT cannot pick a name:
/// `login: alice` must not reach alice's user destinations.
#[tokio::test]
async fn optional_tokens_do_not_let_anonymous_sessions_impersonate() {
    let s = server(|_| {}).await;
    let (mut alice, _) = s
        .connect_ok(Transport::Tcp, &[("passcode", &token("alice", &[]))])
        .await;
    alice.subscribe("q", "/user/queue/inbox").await;
    for transport in BOTH {
        let (mut fake, answer) = s.connect_ok(transport, &[("login", "alice")]).await;
        let name = answer.get("user-name").unwrap_or("").to_owned();
        assert!(name.starts_with("anonymous-"), "{answer:?}");
        // It listens on its own user queue, not alice's.
        fake.subscribe("q", "/user/queue/inbox").await;
        alice.publish("/user/alice/queue/inbox", "for alice").await;
        assert_eq!(alice.recv_body().await, "for alice");
        fake.expect_silence(Duration::from_millis(200)).await;
        // And it cannot send as alice to alice's destinations.
        fake.send_frame(&send("/user/alice/queue/inbox", "spoof"))
            .await;
        let e = fake.expect_error_and_close().await;
        assert!(message_of(&e).contains("/user/alice/queue/inbox"), "{e:?}");
    }
    alice.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn required_mode_refuses_sessions_without_a_token() {
    let s = server(|cfg| cfg.auth.required = true).await;
    // Tokens may come in CONNECT (the default sources include it): the handshake
    // passes, the CONNECT without a token does not.
    for transport in BOTH {
        let (mut c, answer) = s
            .connect_headers(transport, &[("login", "alice"), ("passcode", "")])
            .await;
        assert_eq!(answer.command, Command::Error, "{transport:?}: {answer:?}");
        let m = message_of(&answer);
        assert!(
            m.contains("authentication failed") && m.contains("no access token"),
            "{m}"
        );
        c.expect_closed().await;
    }
    let (mut ok, answer) = s
        .connect_ok(
            Transport::Ws,
            &[("Authorization", &bearer(&token("alice", &[])))],
        )
        .await;
    assert_eq!(answer.get("user-name"), Some("alice"));
    ok.assert_works("/topic/required").await;

    // Without "connect" among the sources the handshake itself is refused: 401 and why.
    let s = server(|cfg| {
        cfg.auth.required = true;
        cfg.auth.token_sources = vec![TokenSource::Cookie, TokenSource::Query];
    })
    .await;
    let (status, body) = s.ws_handshake_raw("/ws", &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("no access token"), "{body}");
    assert!(
        body.contains("cookie 'access_token'") && body.contains("query parameter 'access_token'"),
        "{body}"
    );
    assert!(s.ws_with("/ws", &[]).await.is_err());
    let t = token("alice", &[]);
    assert_eq!(
        ws_user(&s, &format!("/ws?access_token={t}"), &[], &[]).await,
        "alice"
    );
    // TCP has no handshake; with no CONNECT source, TCP cannot authenticate at all.
    let (mut c, answer) = s.connect_headers(Transport::Tcp, &[("passcode", &t)]).await;
    assert_eq!(answer.command, Command::Error, "{answer:?}");
    c.expect_closed().await;
}

// ---------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_session_is_closed_when_its_token_expires() {
    let s = server(|cfg| {
        cfg.auth.leeway = Duration::ZERO;
        cfg.stomp.heartbeat_send = Duration::ZERO;
        cfg.stomp.heartbeat_receive = Duration::ZERO;
    })
    .await;
    let (mut other, _) = s
        .connect_ok(Transport::Tcp, &[("passcode", &token("bob", &[]))])
        .await;
    for transport in BOTH {
        let short = sign_jwt(
            jsonwebtoken::Algorithm::HS256,
            TEST_SECRET.as_bytes(),
            None,
            &claims(ISS, "alice", &[], 2),
        );
        let start = Instant::now();
        let (mut c, _) = s
            .connect_ok(transport, &[("Authorization", &bearer(&short))])
            .await;
        c.subscribe("s", "/topic/expiry").await;
        let frames = c.expect_closed_within(Duration::from_secs(5)).await;
        let elapsed = start.elapsed();
        let error = frames
            .last()
            .unwrap_or_else(|| panic!("{transport:?}: closed without ERROR"));
        assert_eq!(error.command, Command::Error, "{frames:?}");
        assert!(message_of(error).contains("token expired"), "{error:?}");
        // exp has one-second resolution: 1 to 2 s after CONNECT.
        assert!(
            elapsed >= Duration::from_millis(700) && elapsed < Duration::from_millis(3500),
            "{transport:?}: closed after {elapsed:?}"
        );
    }
    other.assert_works("/topic/expiry-other").await;
}

#[tokio::test]
async fn an_expired_token_cannot_connect() {
    let s = server(|cfg| cfg.auth.leeway = Duration::ZERO).await;
    let t = sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET.as_bytes(),
        None,
        &claims(ISS, "alice", &[], -5),
    );
    let (mut c, answer) = s.connect_headers(Transport::Tcp, &[("passcode", &t)]).await;
    assert_eq!(answer.command, Command::Error, "{answer:?}");
    assert!(message_of(&answer).contains("token expired"), "{answer:?}");
    c.expect_closed().await;
}

// ---------------------------------------------------------------------------
// Destination rules
// ---------------------------------------------------------------------------

async fn as_user(s: &TestServer, transport: Transport, user: &str, roles: &[&str]) -> Client {
    s.connect_ok(transport, &[("passcode", &token(user, roles))])
        .await
        .0
}

/// Sends `frame` and expects an ERROR naming the destination and `rule`.
async fn expect_denied(c: &mut Client, frame: Frame, destination: &str, rule: &str) {
    c.send_frame(&frame).await;
    let e = c.expect_error_and_close().await;
    let m = message_of(&e);
    assert!(m.contains("access denied"), "{m}");
    assert!(
        m.contains(&format!("'{destination}'")),
        "names the destination: {m}"
    );
    assert!(m.contains(rule), "names the rule {rule}: {m}");
}

fn subscribe(id: &str, destination: &str) -> Frame {
    Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", destination)
}

#[tokio::test]
async fn users_send_only_to_their_own_user_destinations() {
    let s = server(|_| {}).await;
    for transport in BOTH {
        let mut alice = as_user(&s, transport, "alice", &[]).await;
        alice.subscribe("in", "/user/queue/inbox").await;
        alice
            .publish("/user/alice/queue/inbox", "note to self")
            .await;
        assert_eq!(alice.recv_body().await, "note to self");
        expect_denied(
            &mut alice,
            send("/user/bob/queue/inbox", "hi bob"),
            "/user/bob/queue/inbox",
            "/user/{user}/**",
        )
        .await;
    }
    // In anonymous mode the same rule holds between login names.
    let s = TestServer::start().await;
    let (mut a, _) = s.connect_as(Transport::Tcp, "alice").await;
    a.publish("/user/alice/queue/x", "mine").await;
    expect_denied(
        &mut a,
        send("/user/bob/queue/x", "x"),
        "/user/bob/queue/x",
        "/user/{user}/**",
    )
    .await;
}

/// `/user/queue/x` resolves to the subscriber's own queue, whatever it asks for.
#[tokio::test]
async fn user_subscriptions_only_receive_their_own_messages() {
    let s = server(|_| {}).await;
    let mut alice = as_user(&s, Transport::Tcp, "alice", &[]).await;
    let mut bob = as_user(&s, Transport::Ws, "bob", &[]).await;
    alice.subscribe("q", "/user/queue/inbox").await;
    bob.subscribe("q", "/user/queue/inbox").await;
    // bob even tries the explicit form of alice's queue, and a wildcard.
    bob.subscribe("q2", "/user/alice/queue/inbox").await;
    bob.subscribe("q3", "/user/**").await;
    alice
        .publish("/user/alice/queue/inbox", "secret for alice")
        .await;
    assert_eq!(alice.recv_body().await, "secret for alice");
    // The REST API's user delivery too.
    let (status, body) = s
        .http_post_json(
            "/api/users/alice/messages",
            r#"{"destination":"/queue/inbox","body":"via REST"}"#,
        )
        .await;
    assert_eq!(status, 401, "issuers configured, no credentials: {body}");
    let svc = token("svc", &["SERVICE"]);
    let (status, body) = s
        .http_with_headers(
            "POST",
            "/api/users/alice/messages",
            &[("Authorization", &bearer(&svc))],
            r#"{"destination":"/queue/inbox","body":"via REST"}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(alice.recv_body().await, "via REST");
    // Then something for bob, as a sentinel: it must be the first thing bob sees.
    bob.publish("/user/bob/queue/inbox", "for bob").await;
    let f = bob.recv_message().await;
    assert_eq!(String::from_utf8_lossy(&f.body), "for bob", "{f:?}");
}

#[tokio::test]
async fn admin_topics_need_the_admin_role() {
    let s = server(|_| {}).await;
    for destination in [
        "/topic/admin/stats",
        "/topic/admin.stats",
        "/topic/admin/a/b",
        "/topic/admin",
    ] {
        for transport in BOTH {
            let mut user = as_user(&s, transport, "alice", &["USER"]).await;
            expect_denied(
                &mut user,
                subscribe("a", destination),
                destination,
                "/topic/admin/**",
            )
            .await;
            let mut user = as_user(&s, transport, "alice", &["USER"]).await;
            expect_denied(
                &mut user,
                send(destination, "x"),
                destination,
                "/topic/admin/**",
            )
            .await;
        }
        let mut admin = as_user(&s, Transport::Tcp, "root", &["ADMIN"]).await;
        admin.subscribe("a", destination).await;
        admin.publish(destination, "ok").await;
        assert_eq!(admin.recv_body().await, "ok");
    }
    // Anonymous sessions (no token) are not admins whatever their login says.
    let (mut anon, _) = s.connect_ok(Transport::Tcp, &[("login", "root")]).await;
    expect_denied(
        &mut anon,
        subscribe("a", "/topic/admin/stats"),
        "/topic/admin/stats",
        "/topic/admin/**",
    )
    .await;
}

/// A wildcard subscription must not reach admin topics: either it is refused, or it
/// never delivers an admin message.
#[tokio::test]
async fn wildcard_subscriptions_do_not_bypass_admin_rules() {
    let s = server(|_| {}).await;
    let mut admin = as_user(&s, Transport::Tcp, "root", &["ADMIN"]).await;
    let mut leaks = Vec::new();
    for pattern in [
        "/topic/**",
        "/topic/#",
        "/topic/*/stats",
        "/topic/*.stats",
        "/topic/admin/*",
    ] {
        let mut user = as_user(&s, Transport::Tcp, "alice", &[]).await;
        user.send_frame(&subscribe("w", pattern).header("receipt", "sub"))
            .await;
        let answer = user.recv_frame().await;
        match answer.command {
            Command::Error => continue, // refused: fine
            Command::Receipt => {}
            _ => panic!("{pattern}: {answer:?}"),
        }
        admin.publish("/topic/admin/stats", "admin only").await;
        admin.publish("/topic/public/stats", "sentinel").await;
        let mut bodies = Vec::new();
        while let Some(Event::Frame(f)) = user.next_event(Duration::from_millis(300)).await {
            bodies.push(String::from_utf8_lossy(&f.body).into_owned());
        }
        if bodies.iter().any(|b| b == "admin only") {
            leaks.push(pattern);
        }
    }
    assert!(
        leaks.is_empty(),
        "a non-admin's wildcard subscription received a /topic/admin/stats message: {leaks:?}"
    );
}

fn rule(pattern: &str, subscribe: Option<&str>, send: Option<&str>) -> RuleConfig {
    RuleConfig {
        pattern: pattern.into(),
        subscribe: subscribe.map(Into::into),
        send: send.map(Into::into),
    }
}

#[tokio::test]
async fn configured_rules_first_match_wins() {
    let s = server(|cfg| {
        cfg.auth.rules = vec![
            rule("/topic/vip/lobby", Some("anyone"), None),
            rule("/topic/vip/**", Some("role:VIP"), Some("role:VIP")),
            rule(
                "/topic/members/**",
                Some("authenticated"),
                Some("authenticated"),
            ),
            rule("/topic/home/{user}/**", Some("owner"), Some("anyone")),
            rule("/topic/readonly/**", None, Some("deny")),
            rule("/topic/closed/**", Some("deny"), Some("deny")),
            rule("/topic/**", Some("anyone"), Some("anyone")),
        ];
    })
    .await;
    let t = Transport::Tcp;
    // anyone (before the VIP rule), role:VIP
    let mut anon = s.connect_ok(t, &[]).await.0;
    anon.subscribe("1", "/topic/vip/lobby").await;
    expect_denied(
        &mut anon,
        subscribe("2", "/topic/vip/room"),
        "/topic/vip/room",
        "role VIP",
    )
    .await;
    let mut plain = as_user(&s, t, "alice", &["USER"]).await;
    expect_denied(
        &mut plain,
        send("/topic/vip/room", "x"),
        "/topic/vip/room",
        "/topic/vip/**",
    )
    .await;
    let mut vip = as_user(&s, t, "carol", &["VIP"]).await;
    vip.subscribe("1", "/topic/vip/room").await;
    vip.publish("/topic/vip/room", "vip").await;
    assert_eq!(vip.recv_body().await, "vip");
    // authenticated
    let mut anon = s.connect_ok(t, &[]).await.0;
    expect_denied(
        &mut anon,
        subscribe("1", "/topic/members/news"),
        "/topic/members/news",
        "authenticated",
    )
    .await;
    let mut member = as_user(&s, t, "alice", &[]).await;
    member.subscribe("1", "/topic/members/news").await;
    // owner
    member.subscribe("2", "/topic/home/alice/feed").await;
    expect_denied(
        &mut member,
        subscribe("3", "/topic/home/bob/feed"),
        "/topic/home/bob/feed",
        "owner",
    )
    .await;
    let mut bob = as_user(&s, t, "bob", &[]).await;
    bob.publish("/topic/home/alice/feed", "send is open to anyone")
        .await;
    // a rule silent about SUBSCRIBE passes it on to the next rule
    bob.subscribe("4", "/topic/readonly/x").await;
    expect_denied(
        &mut bob,
        send("/topic/readonly/x", "x"),
        "/topic/readonly/x",
        "deny",
    )
    .await;
    // deny
    let mut root = as_user(&s, t, "root", &["ADMIN", "VIP"]).await;
    expect_denied(
        &mut root,
        subscribe("1", "/topic/closed/x"),
        "/topic/closed/x",
        "deny",
    )
    .await;
    // Configured rules come before the default admin rule, so they can open it.
    let mut anyone = s.connect_ok(t, &[]).await.0;
    anyone.subscribe("1", "/topic/admin/x").await;
}

#[tokio::test]
async fn rule_order_matters() {
    let s = server(|cfg| {
        cfg.auth.rules = vec![
            rule("/topic/a/**", Some("deny"), None),
            rule("/topic/a/open", Some("anyone"), None),
        ];
    })
    .await;
    let mut c = as_user(&s, Transport::Tcp, "alice", &[]).await;
    expect_denied(
        &mut c,
        subscribe("1", "/topic/a/open"),
        "/topic/a/open",
        "/topic/a/**",
    )
    .await;
}

#[tokio::test]
async fn required_mode_rules_default_to_authenticated() {
    let s = server(|cfg| {
        cfg.auth.required = true;
        cfg.auth.rules = vec![rule("/topic/public/**", Some("anyone"), None)];
    })
    .await;
    let mut c = as_user(&s, Transport::Ws, "alice", &[]).await;
    c.subscribe("1", "/topic/public/x").await;
    c.subscribe("2", "/topic/unruled").await;
    c.publish("/topic/unruled", "authenticated may").await;
    assert_eq!(c.recv_body().await, "authenticated may");
}

/// A SEND inside a transaction is checked too (when queued, naming the frame).
#[tokio::test]
async fn rules_apply_inside_transactions() {
    let s = server(|_| {}).await;
    let mut c = as_user(&s, Transport::Tcp, "alice", &[]).await;
    c.request(Frame::new(Command::Begin).header("transaction", "t1"))
        .await;
    expect_denied(
        &mut c,
        send("/user/bob/queue/x", "x").header("transaction", "t1"),
        "/user/bob/queue/x",
        "/user/{user}/**",
    )
    .await;
}

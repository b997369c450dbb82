//! Admission, tried as an attacker on the network would: protected mode (no credentials
//! configured: loopback clients only, on every listener), the Host allow-list against
//! DNS rebinding, the admin API by role only (never by peer address), `/metrics`
//! behind a key, the development login from loopback only, `/ws/chat` admitted like
//! `/ws`.
//!
//! Clients from a non-loopback address connect to this machine's own LAN address
//! (found from the routing table; under CI a machine without one fails the tests).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use herald::Config;
use herald::config::{AnonymousAccess, ApiKeyConfig};
use herald_stomp::Command;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ISS: &str = "https://idp.test";
const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// A non-loopback address of this machine, the one its default route leaves from
/// (a UDP "connect" sends nothing). `None` (the test returns, saying why) only
/// outside CI.
fn lan_address() -> Option<IpAddr> {
    let found = ["192.0.2.1:9", "198.51.100.1:9", "[2001:db8::1]:9"]
        .iter()
        .find_map(|probe| {
            let probe: SocketAddr = probe.parse().ok()?;
            let bind: SocketAddr = if probe.is_ipv4() {
                "0.0.0.0:0".parse().ok()?
            } else {
                "[::]:0".parse().ok()?
            };
            let s = std::net::UdpSocket::bind(bind).ok()?;
            s.connect(probe).ok()?;
            let ip = s.local_addr().ok()?.ip();
            (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
        });
    if found.is_none() {
        let why = "no non-loopback address on this machine to test protected mode from";
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{why}; CI=true, so this test cannot be skipped");
        }
        eprintln!("SKIPPED: {why}");
    }
    found
}

/// Both listeners on every address, so the LAN address reaches them.
fn listen_everywhere(c: &mut Config) {
    c.server.http = "0.0.0.0:0".parse().unwrap();
    c.server.stomp = Some("0.0.0.0:0".parse().unwrap());
}

/// One HTTP exchange on a fresh connection to `to`, from `from` when given: the status,
/// the head (lowercase) and the body (up to its Content-Length, or the close).
async fn exchange(to: SocketAddr, from: Option<IpAddr>, request: &str) -> (u16, String, String) {
    let fut = async {
        let mut s = match from {
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    TcpSocket::new_v4()
                } else {
                    TcpSocket::new_v6()
                }
                .unwrap();
                socket.bind(SocketAddr::new(ip, 0)).unwrap();
                socket.connect(to).await.unwrap()
            }
            None => TcpStream::connect(to).await.unwrap(),
        };
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut tmp = [0u8; 8192];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|n| n.trim().parse::<usize>().ok());
                let done = head.starts_with("http/1.1 101")
                    || length.is_some_and(|n| buf.len() >= end + 4 + n);
                if done {
                    let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
                    return (head, body);
                }
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_ascii_lowercase(), body.to_owned())
    };
    let (head, body) = tokio::time::timeout(HTTP_WAIT, fut)
        .await
        .expect("an HTTP answer in time");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head:?}"));
    (status, head, body)
}

fn get(path: &str, host: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n")
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
}

// ---------------------------------------------------------------------------
// Protected mode
// ---------------------------------------------------------------------------

#[tokio::test]
async fn protected_mode_answers_loopback_clients_only() {
    let Some(lan) = lan_address() else { return };
    let s = TestServer::with(listen_everywhere).await;
    let http = SocketAddr::new(lan, s.http.port());
    let host = http.to_string();
    let refused = |what: &str, status: u16, body: &str| {
        assert_eq!(status, 403, "{what}: {body}");
        let v = json(body);
        assert_eq!(v["code"], "protected_mode", "{what}: {body}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("auth.anonymous") && e.contains("loopback"),
            "{what}: {e}"
        );
    };
    let (status, _, body) = exchange(http, None, &get("/health", &host, "")).await;
    refused("HTTP", status, &body);
    let (status, _, body) = exchange(http, None, &get("/ws", &host, UPGRADE)).await;
    refused("WebSocket", status, &body);
    let (status, _, body) = exchange(http, None, &get("/ws-sockjs/info", &host, "")).await;
    refused("SockJS", status, &body);
    let request = format!(
        "POST /ws-sockjs/000/s1/xhr HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    let (status, _, body) = exchange(http, None, &request).await;
    refused("SockJS xhr", status, &body);
    let mut tcp = Client::tcp(SocketAddr::new(lan, s.stomp.port())).await;
    let e = tcp.expect_error_and_close().await;
    assert!(message_of(&e).contains("auth.anonymous"), "{e:?}");

    // Loopback clients are served as before.
    assert_eq!(s.http_get("/health").await.0, 200);
    s.tcp().await.assert_works("/topic/protected").await;
    let metrics = String::from_utf8(s.http_get("/metrics").await.1).unwrap();
    assert!(
        metrics.contains("herald_connections_refused_total{reason=\"protected_mode\"}"),
        "{metrics}"
    );

    // An explicit setting opens it to the network; so do credentials.
    for open in [
        (|c: &mut Config| c.auth.anonymous = AnonymousAccess::Open) as fn(&mut Config),
        |c: &mut Config| c.auth.api_keys = vec!["k-lan".into()],
    ] {
        let s = TestServer::with(|c| {
            listen_everywhere(c);
            open(c);
        })
        .await;
        let http = SocketAddr::new(lan, s.http.port());
        let (status, _, body) = exchange(http, None, &get("/health", &http.to_string(), "")).await;
        assert_eq!(status, 200, "{body}");
        let mut tcp = Client::tcp(SocketAddr::new(lan, s.stomp.port())).await;
        assert_eq!(tcp.connect("1.2").await.command, Command::Connected);
    }
}

// ---------------------------------------------------------------------------
// Hosts (DNS rebinding)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_rebound_host_name_is_refused_everywhere() {
    let s = TestServer::with(|c| {
        c.auth.api_keys = vec![ApiKeyConfig::Full {
            key: "admin-key".into(),
            principal: "ops".into(),
            roles: vec!["ADMIN".into()],
        }];
    })
    .await;
    let evil = "rebind.evil.example";
    for (what, request) in [
        ("health", get("/health", evil, "")),
        (
            "admin",
            get("/api/admin/sessions", evil, "X-API-Key: admin-key\r\n"),
        ),
        (
            "admin delete",
            format!(
                "DELETE /api/admin/users/alice/sessions HTTP/1.1\r\nHost: {evil}:8080\r\nX-API-Key: admin-key\r\nConnection: close\r\n\r\n"
            ),
        ),
        ("websocket", get("/ws", evil, UPGRADE)),
        ("sockjs", get("/ws-sockjs/info", evil, "")),
        ("web UI", get("/", evil, "")),
    ] {
        let (status, _, body) = exchange(s.http, None, &request).await;
        assert_eq!(status, 421, "{what}: {body}");
        let v = json(&body);
        assert_eq!(v["code"], "host_not_allowed", "{what}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("server.allowed_hosts"),
            "{what}: {body}"
        );
    }
    // Localhost names and IP addresses are this server's.
    for host in ["localhost:8080", "127.0.0.1", "[::1]:1"] {
        let (status, _, body) = exchange(s.http, None, &get("/health", host, "")).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    // A configured name is served; its subdomains only with "*.".
    let s = TestServer::with(|c| {
        c.server.allowed_hosts = vec!["chat.example.com".into(), "*.herald.test".into()];
    })
    .await;
    for (host, status) in [
        ("chat.example.com", 200),
        ("a.herald.test:443", 200),
        ("evil.chat.example.com", 421),
        ("rebind.evil.example", 421),
    ] {
        assert_eq!(
            exchange(s.http, None, &get("/health", host, "")).await.0,
            status,
            "{host}"
        );
    }
}

#[tokio::test]
async fn same_origin_means_an_allowed_host_and_its_port() {
    let s = TestServer::with(|c| c.auth.anonymous = AnonymousAccess::Open).await;
    // DNS rebinding satisfies "Origin host == Host": the Host check refuses it first.
    let (status, _, body) = exchange(
        s.http,
        None,
        &get(
            "/ws",
            "rebind.evil.example:8080",
            &format!("{UPGRADE}Origin: http://rebind.evil.example:8080\r\n"),
        ),
    )
    .await;
    assert_eq!(status, 421, "{body}");
    // Localhost pages are not this server's outside protected mode.
    let (status, _, body) = exchange(
        s.http,
        None,
        &get(
            "/ws",
            &s.http.to_string(),
            &format!("{UPGRADE}Origin: http://localhost:3000\r\n"),
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(json(&body)["code"], "origin_not_allowed");
    let own = format!("http://{}", s.http);
    s.ws_with("/ws", &[("Origin", own.as_str())])
        .await
        .expect("the server's own origin");
}

// ---------------------------------------------------------------------------
// Admin API, metrics, development login
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_admin_api_goes_by_role_never_by_the_peer_address() {
    // The default: anonymous, no key. A loopback peer (every client behind a reverse
    // proxy on the same host) is nobody in particular.
    let s = TestServer::start().await;
    let (_alice, _) = s.connect_as(Transport::Tcp, "alice").await;
    for request in [
        get("/api/admin/sessions", "localhost", ""),
        "DELETE /api/admin/users/alice/sessions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            .to_owned(),
    ] {
        let (status, _, body) = exchange(s.http, None, &request).await;
        assert_eq!(status, 401, "{body}");
        let v = json(&body);
        assert_eq!(v["code"], "unauthorized");
        assert!(v["error"].as_str().unwrap().contains("ADMIN"), "{body}");
    }
    assert_eq!(s.node.sessions.len(), 1, "alice is still connected");

    // The admin role: from an API key's principal, or a token.
    let s = TestServer::with(|c| {
        c.auth.issuers = vec![secret_issuer(ISS)];
        c.auth.api_keys = vec![
            "service-key".into(),
            ApiKeyConfig::Full {
                key: "ops-key".into(),
                principal: "ops".into(),
                roles: vec!["ADMIN".into()],
            },
        ];
    })
    .await;
    let path = "/api/admin/sessions";
    let admin = format!(
        "Authorization: Bearer {}\r\n",
        hs_token(ISS, "root", &["ADMIN"])
    );
    let user = format!(
        "Authorization: Bearer {}\r\n",
        hs_token(ISS, "eve", &["USER"])
    );
    for (who, extra, status) in [
        ("admin key", "X-API-Key: ops-key\r\n".to_owned(), 200),
        ("admin token", admin, 200),
        ("service key", "X-API-Key: service-key\r\n".to_owned(), 403),
        ("user token", user, 403),
        ("unknown key", "X-API-Key: ops-ke\r\n".to_owned(), 401),
        ("nothing", String::new(), 401),
    ] {
        let (got, _, body) = exchange(s.http, None, &get(path, "localhost", &extra)).await;
        assert_eq!(got, status, "{who}: {body}");
    }
}

#[tokio::test]
async fn metrics_can_require_a_key() {
    let s = TestServer::with(|c| {
        c.ops.metrics_auth = true;
        c.auth.api_keys = vec!["scrape-key".into()];
    })
    .await;
    let (status, _, body) = exchange(s.http, None, &get("/metrics", "localhost", "")).await;
    assert_eq!(status, 401, "{body}");
    for extra in [
        "X-API-Key: scrape-key\r\n",
        "Authorization: Bearer scrape-key\r\n",
    ] {
        let (status, _, body) = exchange(s.http, None, &get("/metrics", "localhost", extra)).await;
        assert_eq!(status, 200, "{extra}");
        assert!(body.contains("herald_connections"), "{body}");
    }
    // Off by default.
    let s = TestServer::start().await;
    assert_eq!(s.http_get("/metrics").await.0, 200);
    // On without any credential to present is a configuration error.
    let mut c = Config::default();
    c.ops.metrics_auth = true;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("ops.metrics_auth"), "{e}");
}

#[tokio::test]
async fn the_development_login_answers_loopback_only() {
    let Some(lan) = lan_address() else { return };
    let s = TestServer::with(|c| {
        listen_everywhere(c);
        c.auth.issuers = vec![secret_issuer(ISS)];
        c.web.dev_login = true;
    })
    .await;
    let body = r#"{"sub":"root","roles":["ADMIN"]}"#;
    let login = |host: &str| {
        format!(
            "POST /api/dev/login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let http = SocketAddr::new(lan, s.http.port());
    let (status, _, answer) = exchange(http, None, &login(&http.to_string())).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("loopback"), "{answer}");
    let local = SocketAddr::new("127.0.0.1".parse().unwrap(), s.http.port());
    let (status, head, answer) = exchange(local, None, &login("localhost")).await;
    assert_eq!(status, 200, "{answer}");
    assert!(head.contains("set-cookie: access_token="), "{head}");
}

// ---------------------------------------------------------------------------
// The demo chat: admitted like /ws
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_plain_chat_needs_a_token_when_tokens_are_required() {
    let s = TestServer::with(|c| {
        c.auth.issuers = vec![secret_issuer(ISS)];
        c.auth.required = true;
    })
    .await;
    // /ws/chat reads no CONNECT frame: without a token at the handshake it is refused.
    let (status, _, body) = exchange(s.http, None, &get("/ws/chat", "localhost", UPGRADE)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(json(&body)["code"], "unauthorized");
    let request = "POST /ws/chat-sockjs/000/c1/xhr HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let (status, _, body) = exchange(s.http, None, request).await;
    assert_eq!(status, 401, "{body}");
    // With one it is let in.
    let token = hs_token(ISS, "alice", &[]);
    let (status, _, body) = exchange(
        s.http,
        None,
        &get(
            &format!("/ws/chat?access_token={token}"),
            "localhost",
            UPGRADE,
        ),
    )
    .await;
    assert_eq!(status, 101, "{body}");
    // /ws with the same config still lets CONNECT bring the token.
    let (status, _, body) = exchange(s.http, None, &get("/ws", "localhost", UPGRADE)).await;
    assert_eq!(status, 101, "{body}");
}

// ---------------------------------------------------------------------------
// API keys in the configuration
// ---------------------------------------------------------------------------

#[test]
fn api_keys_are_tables_or_plain_strings() {
    let dir = std::env::temp_dir().join(format!("herald-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.toml");
    std::fs::write(
        &path,
        "[[auth.api_keys]]\nkey = \"k2\"\nprincipal = \"billing\"\nroles = [\"SERVICE\"]\n",
    )
    .unwrap();
    let c = Config::load(Some(&path)).unwrap();
    assert_eq!(
        c.auth.api_keys,
        vec![ApiKeyConfig::Full {
            key: "k2".into(),
            principal: "billing".into(),
            roles: vec!["SERVICE".into()],
        }]
    );
    std::fs::write(&path, "[auth]\napi_keys = [\"legacy\"]\n").unwrap();
    let c = Config::load(Some(&path)).unwrap();
    assert_eq!(c.auth.api_keys, vec![ApiKeyConfig::Plain("legacy".into())]);
    std::fs::write(&path, "[[auth.api_keys]]\nkey = \"\"\nprincipal = \"x\"\n").unwrap();
    let e = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(e.contains("auth.api_keys[0]"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn slow_refusals_do_not_hold_the_listener() {
    // A refused client that never reads does not stop others from being answered.
    let Some(lan) = lan_address() else { return };
    let s = TestServer::with(listen_everywhere).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(
            TcpStream::connect(SocketAddr::new(lan, s.http.port()))
                .await
                .unwrap(),
        );
    }
    tokio::time::timeout(Duration::from_secs(5), s.http_get("/health"))
        .await
        .expect("loopback answered while refusals are pending");
}

// ---------------------------------------------------------------------------
// SockJS: every request admitted, sessions bound to their opener
// ---------------------------------------------------------------------------

fn post(path: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `["CONNECT..."]`: a STOMP CONNECT as the one message of an `xhr_send` body.
const SOCKJS_CONNECT: &str = r#"["CONNECT\naccept-version:1.2\nhost:localhost\n\n\u0000"]"#;

#[tokio::test]
async fn jsonp_and_htmlfile_are_off_by_default() {
    let s = TestServer::start().await;
    for path in [
        "/ws-sockjs/000/s1/jsonp?c=x",
        "/ws-sockjs/000/s1/htmlfile?c=x",
        "/ws/chat-sockjs/000/s1/jsonp?c=x",
    ] {
        let (status, _, body) = exchange(s.http, None, &get(path, "localhost", "")).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _, _) = exchange(
        s.http,
        None,
        &post("/ws-sockjs/000/s1/jsonp_send", "", "d=x"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, body) = exchange(s.http, None, &post("/ws-sockjs/000/s2/xhr", "", "")).await;
    assert_eq!((status, body.as_str()), (200, "o\n"));
}

#[tokio::test]
async fn a_sockjs_session_cannot_be_ridden_by_another_client() {
    let s = TestServer::with(|c| c.auth.issuers = vec![secret_issuer(ISS)]).await;
    let bob = format!("Cookie: access_token={}\r\n", hs_token(ISS, "bob", &[]));
    let eve = format!("Cookie: access_token={}\r\n", hs_token(ISS, "eve", &[]));
    let sid = "/ws-sockjs/000/hijacked";
    // Bob's browser opens the session with his cookie.
    let (status, _, body) = exchange(s.http, None, &post(&format!("{sid}/xhr"), &bob, "")).await;
    assert_eq!((status, body.as_str()), (200, "o\n"));
    // Whoever learns the id — without the cookie, with another user's, or with Bob's
    // cookie from another address — can neither send nor receive on it.
    let other = "127.0.0.2".parse().ok();
    for (who, from, cookie) in [
        ("no cookie", None, ""),
        ("eve's cookie", None, eve.as_str()),
        ("bob's cookie from another address", other, bob.as_str()),
    ] {
        for transport in ["xhr_send", "xhr", "xhr_streaming"] {
            let body = if transport == "xhr_send" {
                SOCKJS_CONNECT
            } else {
                ""
            };
            let (status, _, answer) = exchange(
                s.http,
                from,
                &post(&format!("{sid}/{transport}"), cookie, body),
            )
            .await;
            assert_eq!(status, 403, "{who}, {transport}: {answer}");
            assert_eq!(json(&answer)["code"], "sockjs_session_owner", "{who}");
        }
    }
    // Bob's own requests go on: his CONNECT is answered with his name.
    let (status, _, _) = exchange(
        s.http,
        None,
        &post(&format!("{sid}/xhr_send"), &bob, SOCKJS_CONNECT),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, body) = exchange(s.http, None, &post(&format!("{sid}/xhr"), &bob, "")).await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("a[\"CONNECTED\\n") && body.contains("user-name:bob"),
        "{body}"
    );
}

#[tokio::test]
async fn a_cross_site_navigation_cannot_open_a_sockjs_session() {
    let s = TestServer::with(|c| {
        c.auth.issuers = vec![secret_issuer(ISS)];
        c.sockjs.transports = ["xhr-polling", "eventsource", "jsonp-polling", "htmlfile"]
            .map(String::from)
            .to_vec();
    })
    .await;
    // window.open(...) from another site: the victim's SameSite=Lax cookie, no Origin.
    let navigation = format!(
        "Cookie: access_token={}\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n",
        hs_token(ISS, "bob", &[])
    );
    for transport in ["jsonp?c=x", "eventsource", "htmlfile?c=x"] {
        let path = format!("/ws-sockjs/000/opened-{}/{transport}", transport.len());
        let (status, _, body) = exchange(s.http, None, &get(&path, "localhost", &navigation)).await;
        assert_eq!(status, 403, "{transport}: {body}");
        let v = json(&body);
        assert_eq!(v["code"], "cross_site", "{transport}");
        assert!(
            v["error"].as_str().unwrap().contains("Sec-Fetch-Site"),
            "{body}"
        );
    }
    assert!(s.node.sessions.is_empty(), "no session was opened");
    // The same request from the server's own pages is served.
    let own = navigation.replace("cross-site", "same-origin");
    let (status, _, body) = exchange(
        s.http,
        None,
        &get("/ws-sockjs/000/own/jsonp?c=x", "localhost", &own),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn sockjs_cors_answers_allowed_origins_only() {
    let s = TestServer::start().await;
    let own = format!("http://{}", s.http);
    let host = s.http.to_string();
    let evil = "Origin: https://evil.example\r\n";
    let (status, head, _) = exchange(s.http, None, &get("/ws-sockjs/info", &host, evil)).await;
    assert_eq!(status, 200);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    let preflight = format!(
        "OPTIONS /ws-sockjs/000/s/xhr HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{evil}Access-Control-Request-Method: POST\r\n\r\n"
    );
    let (_, head, _) = exchange(s.http, None, &preflight).await;
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    let request = format!(
        "POST /ws-sockjs/000/s/xhr HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{evil}Content-Length: 0\r\n\r\n"
    );
    let (status, head, body) = exchange(s.http, None, &request).await;
    assert_eq!(status, 403, "{body}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    // The server's own origin may read, with credentials.
    let (_, head, _) = exchange(
        s.http,
        None,
        &get("/ws-sockjs/info", &host, &format!("Origin: {own}\r\n")),
    )
    .await;
    assert!(
        head.contains(&format!("access-control-allow-origin: {own}"))
            && head.contains("access-control-allow-credentials: true"),
        "{head}"
    );
}

#[tokio::test]
async fn sockjs_sessions_have_budgets() {
    let s = TestServer::with(|c| c.sockjs.max_sessions_per_ip = 2).await;
    for n in 0..2 {
        let (status, _, body) = exchange(
            s.http,
            None,
            &post(&format!("/ws-sockjs/000/b{n}/xhr"), "", ""),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "o\n"));
    }
    let (status, _, body) = exchange(s.http, None, &post("/ws-sockjs/000/b2/xhr", "", "")).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("sockjs.max_sessions_per_ip"), "{body}");
    // Another address has its own share.
    let other = "127.0.0.2".parse().ok();
    let (status, _, _) = exchange(s.http, other, &post("/ws-sockjs/000/b3/xhr", "", "")).await;
    assert_eq!(status, 200);
    // The requests of an open session are no new session.
    let (status, _, _) = exchange(
        s.http,
        None,
        &post("/ws-sockjs/000/b0/xhr_send", "", r#"["x"]"#),
    )
    .await;
    assert_eq!(status, 204);
    let metrics = String::from_utf8(s.http_get("/metrics").await.1).unwrap();
    assert!(metrics.contains("herald_sockjs_sessions"), "{metrics}");

    let s = TestServer::with(|c| c.sockjs.max_sessions = 1).await;
    let (status, _, _) = exchange(s.http, None, &post("/ws-sockjs/000/t0/xhr", "", "")).await;
    assert_eq!(status, 200);
    let (status, _, body) = exchange(s.http, None, &post("/ws-sockjs/000/t1/xhr", "", "")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("sockjs.max_sessions"), "{body}");
}

#[tokio::test]
async fn sockjs_transports_lists_what_is_offered() {
    let s = TestServer::with(|c| c.sockjs.transports = vec!["xhr-polling".into()]).await;
    let (_, _, body) = exchange(s.http, None, &get("/ws-sockjs/info", "localhost", "")).await;
    assert_eq!(json(&body)["websocket"], false);
    for (method, path) in [
        ("POST", "/ws-sockjs/000/x/xhr_streaming"),
        ("GET", "/ws-sockjs/000/x/eventsource"),
        ("GET", "/ws-sockjs/000/x/websocket"),
        ("GET", "/ws-sockjs/websocket"),
    ] {
        let request = if method == "GET" {
            get(path, "localhost", UPGRADE)
        } else {
            post(path, "", "")
        };
        assert_eq!(exchange(s.http, None, &request).await.0, 404, "{path}");
    }
    let (status, _, body) = exchange(s.http, None, &post("/ws-sockjs/000/x/xhr", "", "")).await;
    assert_eq!((status, body.as_str()), (200, "o\n"));
    let mut c = Config::default();
    c.sockjs.transports = vec!["xhr_polling".into()];
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("sockjs.transports") && e.contains("xhr_polling"),
        "{e}"
    );
}

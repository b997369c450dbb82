//! The web UI's session, tried as another site would: every page carries a
//! Content-Security-Policy without inline script, `frame-ancestors 'none'`, a
//! same-origin Referrer-Policy and `nosniff`; a pasted token becomes the HttpOnly auth
//! cookie (`POST /api/web/signin`), which the admin API accepts like a bearer token;
//! a state-changing request with that cookie from another origin is refused (CSRF),
//! and so is a sign-in from another origin (login CSRF).

mod common;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ISS: &str = "https://idp.test";

async fn jwt_server() -> TestServer {
    TestServer::with(|c| c.auth.issuers = vec![secret_issuer(ISS)]).await
}

/// One request on a fresh connection: (status, head in lowercase, body).
async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server.http,
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let fut = async {
        let mut s = TcpStream::connect(server.http).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.unwrap();
        String::from_utf8_lossy(&resp).into_owned()
    };
    let text = tokio::time::timeout(HTTP_WAIT, fut)
        .await
        .expect("HTTP response in time");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

#[tokio::test]
async fn every_page_forbids_inline_script_framing_and_sniffing() {
    let server = TestServer::start().await;
    for path in [
        "/",
        "/chat",
        "/notifications",
        "/admin",
        "/signin",
        "/web/js/herald.js",
        "/web/nope",
    ] {
        let (_, head, _) = call(&server, "GET", path, &[], "").await;
        let csp = header(&head, "content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP in {head}"));
        let script = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .unwrap_or_else(|| panic!("{path}: no script-src in {csp}"));
        assert!(
            !script.contains("unsafe-inline") && !script.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(
            header(&head, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            header(&head, "referrer-policy"),
            Some("same-origin"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_pasted_token_becomes_the_httponly_cookie_and_the_admin_api_accepts_it() {
    let server = jwt_server().await;
    let token = hs_token(ISS, "root", &["ADMIN"]);
    let body = serde_json::json!({ "token": token }).to_string();
    let (status, head, answer) = call(&server, "POST", "/api/web/signin", &[], &body).await;
    assert_eq!(status, 200, "{answer}");
    let cookie = header(&head, "set-cookie").unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(
        cookie.starts_with("access_token=") && cookie.contains("httponly"),
        "{cookie}"
    );
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["name"], "root");
    assert!(
        v.get("token").is_none(),
        "the token is not handed back: {v}"
    );

    // A bad token sets nothing.
    let bad = serde_json::json!({ "token": hs_token("https://other.test", "root", &["ADMIN"]) });
    let (status, head, _) = call(&server, "POST", "/api/web/signin", &[], &bad.to_string()).await;
    assert_eq!(status, 401);
    assert!(header(&head, "set-cookie").is_none(), "{head}");

    // The admin API reads the cookie as it reads a bearer token.
    let jar = format!("access_token={token}");
    let (status, _, body) = call(
        &server,
        "GET",
        "/api/admin/sessions",
        &[("Cookie", &jar)],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let user = format!("access_token={}", hs_token(ISS, "lee", &[]));
    let (status, _, _) = call(&server, "GET", "/api/admin/info", &[("Cookie", &user)], "").await;
    assert_eq!(status, 403, "a cookie without the role is refused");
}

#[tokio::test]
async fn a_cookie_from_another_origin_changes_nothing() {
    let server = jwt_server().await;
    let jar = format!("access_token={}", hs_token(ISS, "root", &["ADMIN"]));
    let own = format!("http://{}", server.http);
    let path = "/api/admin/users/alice/sessions";
    for (why, extra) in [
        ("a foreign Origin", ("Origin", "https://evil.example")),
        ("a cross-site fetch", ("Sec-Fetch-Site", "cross-site")),
        ("a same-site sibling", ("Sec-Fetch-Site", "same-site")),
    ] {
        let (status, _, body) = call(&server, "DELETE", path, &[("Cookie", &jar), extra], "").await;
        assert_eq!(status, 403, "{why}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            matches!(
                v["code"].as_str(),
                Some("origin_not_allowed" | "cross_site")
            ),
            "{why}: {v}"
        );
    }
    // From the server's own origin, or from no browser at all, it is done.
    let (status, _, body) = call(
        &server,
        "DELETE",
        path,
        &[("Cookie", &jar), ("Origin", &own)],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = call(&server, "DELETE", path, &[("Cookie", &jar)], "").await;
    assert_eq!(status, 200, "{body}");

    // Signing a browser in from another site is refused too (login CSRF).
    let body = serde_json::json!({ "token": hs_token(ISS, "mallory", &[]) }).to_string();
    let (status, head, _) = call(
        &server,
        "POST",
        "/api/web/signin",
        &[("Origin", "https://evil.example")],
        &body,
    )
    .await;
    assert_eq!(status, 403);
    assert!(header(&head, "set-cookie").is_none(), "{head}");

    // Signing out clears the cookie.
    let (status, head, _) = call(
        &server,
        "POST",
        "/api/web/signout",
        &[("Origin", &own), ("Cookie", &jar)],
        "",
    )
    .await;
    assert_eq!(status, 204);
    let cleared = header(&head, "set-cookie").unwrap_or_default();
    assert!(
        cleared.starts_with("access_token=;") && cleared.contains("max-age=0"),
        "{cleared}"
    );
}

/// A foreign site's form POST carries no Lax cookie, so only the sign-out itself can
/// refuse it: it does, and clears nothing.
#[tokio::test]
async fn another_site_cannot_sign_a_browser_out() {
    let server = jwt_server().await;
    for extra in [
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let (status, head, body) = call(&server, "POST", "/api/web/signout", &[extra], "").await;
        assert_eq!(status, 403, "{extra:?}: {body}");
        assert!(header(&head, "set-cookie").is_none(), "{head}");
    }
}

/// Behind a reverse proxy on the same host every client is loopback: a request the
/// proxy marks as forwarded does not get the development login.
#[tokio::test]
async fn the_development_login_refuses_forwarded_requests() {
    let server = TestServer::with(|c| {
        c.auth.issuers = vec![secret_issuer(ISS)];
        c.web.dev_login = true;
    })
    .await;
    let body = r#"{"sub":"root","roles":["ADMIN"]}"#;
    for forwarded in [
        ("X-Forwarded-For", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.9"),
        ("X-Real-IP", "203.0.113.9"),
    ] {
        let (status, head, answer) =
            call(&server, "POST", "/api/dev/login", &[forwarded], body).await;
        assert_eq!(status, 403, "{forwarded:?}: {answer}");
        assert!(answer.contains("proxy"), "{answer}");
        assert!(header(&head, "set-cookie").is_none(), "{head}");
    }
    let (status, head, answer) = call(&server, "POST", "/api/dev/login", &[], body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(header(&head, "set-cookie").is_some(), "{head}");
}

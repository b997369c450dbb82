//! Notifications against all three stores: SQLite in-process, and the
//! MariaDB (127.0.0.1:3306, root) and PostgreSQL (127.0.0.1:5432, trust) that run on
//! this machine. Every test gets a fresh database of its own (`herald_test_<random>`),
//! dropped at the end. Under CI=true a database that cannot be reached fails the test;
//! locally it is skipped with a printed reason. Override the servers with
//! HERALD_TEST_MYSQL_URL / HERALD_TEST_POSTGRES_URL (URLs without a database name for
//! MySQL, of an existing database for PostgreSQL).

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::Duration;

use common::*;
use herald_stomp::Frame;
use serde_json::{Value, json};
use sqlx::Connection;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Sqlite,
    MySql,
    Postgres,
}

/// A database for one test: its URL, and for MySQL/PostgreSQL what to drop at the end.
struct TestDb {
    url: String,
    drop: Option<(Backend, String, String)>,
    /// SQLite file databases: the folder, removed at the end.
    sqlite_dir: Option<std::path::PathBuf>,
}

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

impl TestDb {
    async fn new(backend: Backend) -> Option<TestDb> {
        let mut db = TestDb::later(backend);
        match db.create().await {
            Ok(()) => Some(db),
            Err(reason) => {
                if in_ci() {
                    panic!("{reason} (CI=true: a missing database fails the test)");
                }
                eprintln!("SKIPPED: {reason}");
                None
            }
        }
    }

    /// A database that does not exist yet (MySQL, PostgreSQL): [`TestDb::create`]
    /// makes it. For SQLite: a file in a folder that does not exist yet, which
    /// `create` makes.
    fn later(backend: Backend) -> TestDb {
        let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                TestDb {
                    url: format!("sqlite://{}", dir.join("notifications.db").display()),
                    drop: None,
                    sqlite_dir: Some(dir),
                }
            }
            Backend::MySql => {
                let admin = std::env::var("HERALD_TEST_MYSQL_URL")
                    .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
                let url = format!("{}/{name}", admin.trim_end_matches('/'));
                TestDb {
                    url,
                    drop: Some((backend, admin, name)),
                    sqlite_dir: None,
                }
            }
            Backend::Postgres => {
                let admin = std::env::var("HERALD_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                let url = format!("{base}/{name}");
                TestDb {
                    url,
                    drop: Some((backend, admin, name)),
                    sqlite_dir: None,
                }
            }
        }
    }

    /// An in-memory SQLite database (one server only), or [`TestDb::later`] created.
    async fn create(&mut self) -> Result<(), String> {
        if let Some(dir) = &self.sqlite_dir {
            return std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()));
        }
        let Some((backend, admin, name)) = self.drop.clone() else {
            return Ok(());
        };
        let sql = format!("CREATE DATABASE {name}");
        let created = match backend {
            Backend::MySql => {
                async {
                    let mut c = sqlx::MySqlConnection::connect(&admin).await?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut c)
                        .await?;
                    c.close().await
                }
                .await
            }
            _ => {
                async {
                    let mut c = sqlx::PgConnection::connect(&admin).await?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut c)
                        .await?;
                    c.close().await
                }
                .await
            }
        };
        created.map_err(|e| format!("{backend:?} at {admin} is not reachable: {e}"))
    }

    /// The database's `host:port` (MySQL, PostgreSQL).
    fn server_addr(&self) -> String {
        let after_scheme = self.url.split_once("://").map_or("", |(_, r)| r);
        let host_port = after_scheme.split('/').next().unwrap_or("");
        host_port
            .rsplit_once('@')
            .map_or(host_port, |(_, hp)| hp)
            .to_owned()
    }

    /// This database's URL with `addr` in place of its server's address.
    fn url_via(&self, addr: std::net::SocketAddr) -> String {
        self.url.replacen(&self.server_addr(), &addr.to_string(), 1)
    }

    /// Drops the database now (the server's connections see it vanish).
    fn drop_now(&mut self) {
        if let Some(dir) = self.sqlite_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        let Some((backend, admin, name)) = self.drop.take() else {
            return;
        };
        // Drop may run inside the test's runtime: use a thread with its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let r = match backend {
                    Backend::MySql => match sqlx::MySqlConnection::connect(&admin).await {
                        Ok(mut c) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name}"
                        )))
                        .execute(&mut c)
                        .await
                        .map(|_| ()),
                        Err(e) => Err(e),
                    },
                    _ => match sqlx::PgConnection::connect(&admin).await {
                        Ok(mut c) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await
                        .map(|_| ()),
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = r {
                    eprintln!("could not drop test database {name}: {e}");
                }
            })
        })
        .join()
        .unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.drop_now();
    }
}

async fn server(db: &TestDb) -> TestServer {
    server_with(db, |_| {}).await
}

async fn server_with(db: &TestDb, tweak: impl FnOnce(&mut herald::Config)) -> TestServer {
    let url = db.url.clone();
    TestServer::with(move |c| {
        c.database.url = url;
        c.database.acquire_timeout = Duration::from_secs(2);
        tweak(c);
    })
    .await
}

const NOTIFICATIONS: &str = "/user/queue/notifications";

async fn subscriber(s: &TestServer, transport: Transport, user: &str) -> Client {
    let (mut c, _) = s.connect_as(transport, user).await;
    c.subscribe("n", NOTIFICATIONS).await;
    c
}

async fn post(s: &TestServer, body: Value) -> (u16, Value) {
    s.http_call("POST", "/api/notifications", &[], Some(&body.to_string()))
        .await
}

async fn get_as(s: &TestServer, user: &str, path: &str) -> (u16, Value) {
    s.http_call("GET", path, &[("X-User", user)], None).await
}

async fn post_as(s: &TestServer, user: &str, path: &str) -> (u16, Value) {
    s.http_call("POST", path, &[("X-User", user)], None).await
}

fn json_of(f: &Frame) -> Value {
    serde_json::from_slice(&f.body).unwrap_or_else(|e| panic!("not JSON ({e}): {f:?}"))
}

async fn next_json(c: &mut Client) -> (Frame, Value) {
    let f = c.recv_message().await;
    let v = json_of(&f);
    (f, v)
}

// ---------------------------------------------------------------------------------

/// Persisted, then delivered live to every session of the user (TCP and WebSocket),
/// with the Spring notification DTO's fields; nobody else receives it.
async fn delivered_live_to_every_session(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = server(&db).await;
    let mut ws = subscriber(&s, Transport::Ws, "alice").await;
    let mut tcp = subscriber(&s, Transport::Tcp, "alice").await;
    let mut bob = subscriber(&s, Transport::Ws, "bob").await;
    let (status, body) = post(
        &s,
        json!({"user": "alice", "type": "comment", "title": "New comment",
               "message": "Bob commented", "redirectPath": "/posts/7",
               "payload": {"postId": 7, "tags": ["a"]}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["delivered"], 2, "{body}");
    let id = body["notifications"][0]["notificationId"].as_i64().unwrap();
    for c in [&mut ws, &mut tcp] {
        let (f, v) = next_json(c).await;
        assert_eq!(f.get("destination"), Some(NOTIFICATIONS));
        assert_eq!(f.get("herald-event"), Some("notification"));
        assert_eq!(v["event"], "notification");
        assert_eq!(v["notificationId"], id);
        assert_eq!(v["memberId"], "alice");
        assert_eq!(v["message"], "Bob commented");
        assert_eq!(v["redirectPath"], "/posts/7");
        assert_eq!(v["type"], "comment");
        assert_eq!(v["title"], "New comment");
        assert_eq!(v["payload"], json!({"postId": 7, "tags": ["a"]}));
        assert_eq!(v["read"], false);
        assert!(v["createdAt"].as_str().unwrap().ends_with('Z'), "{v}");
    }
    bob.expect_silence(Duration::from_millis(200)).await;
    // Stored: the list has it, unread.
    let (status, list) = get_as(&s, "alice", "/api/notifications").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"][0]["notificationId"], id);
    assert_eq!(list["unreadCount"], 1);
}

/// A list of users gets one row each; a broadcast reaches every subscriber of the
/// broadcast topic and every user's list, with per-user read state.
async fn users_list_and_broadcast(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = server(&db).await;
    let mut a = subscriber(&s, Transport::Ws, "ann").await;
    let mut c = subscriber(&s, Transport::Tcp, "cid").await;
    a.subscribe("b", "/topic/notifications").await;
    c.subscribe("b", "/topic/notifications").await;
    let (status, body) = post(
        &s,
        json!({"users": ["ann", "cid", "ann"], "message": "hi", "type": "t"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["notifications"].as_array().unwrap().len(),
        2,
        "duplicates in 'users' collapse"
    );
    assert_eq!(next_json(&mut a).await.1["memberId"], "ann");
    assert_eq!(next_json(&mut c).await.1["memberId"], "cid");

    let (status, body) = post(
        &s,
        json!({"broadcast": true, "message": "maintenance at 10", "type": "system"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let bid = body["notifications"][0]["notificationId"].as_i64().unwrap();
    for cl in [&mut a, &mut c] {
        let (f, v) = next_json(cl).await;
        assert_eq!(f.get("destination"), Some("/topic/notifications"));
        assert_eq!(v["broadcast"], true);
        assert_eq!(v["memberId"], Value::Null);
        assert_eq!(v["notificationId"], bid);
    }
    // Someone who never connected sees the broadcast too.
    let (_, list) = get_as(&s, "dan", "/api/notifications").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["unreadCount"], 1);
    // Read by ann only.
    let (status, r) = post_as(&s, "ann", &format!("/api/notifications/{bid}/read")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["unreadCount"], 1, "ann still has her own one unread: {r}");
    let (_, cnt) = get_as(&s, "cid", "/api/notifications/unread-count").await;
    assert_eq!(cnt["unreadCount"], 2, "cid's broadcast stays unread: {cnt}");
    // Exactly one of the two recipient fields.
    let (status, e) = post(&s, json!({"user": "x", "broadcast": true, "message": "m"})).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("exactly one"), "{e}");
    let (status, _) = post(&s, json!({"memberId": 42, "message": "Spring DTO shape"})).await;
    assert_eq!(status, 201);
    let (_, l) = get_as(&s, "42", "/api/notifications").await;
    assert_eq!(l["items"][0]["memberId"], "42", "{l}");
}

/// Newest first, cursor pagination, unread filter, read one / read all pushed to the
/// user's other sessions with the new unread count.
async fn read_state_pushed_to_other_sessions(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = server(&db).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, body) = post(&s, json!({"user": "eve", "message": format!("n{i}")})).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["notifications"][0]["notificationId"].as_i64().unwrap());
    }
    let mut other = subscriber(&s, Transport::Ws, "eve").await;
    // Pages of two, newest first.
    let (_, p1) = get_as(&s, "eve", "/api/notifications?limit=2").await;
    let got: Vec<i64> = p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["notificationId"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4], ids[3]], "{p1}");
    let cursor = p1["nextCursor"].as_str().unwrap().to_owned();
    let (_, p2) = get_as(
        &s,
        "eve",
        &format!("/api/notifications?limit=2&cursor={cursor}"),
    )
    .await;
    let got: Vec<i64> = p2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["notificationId"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![ids[2], ids[1]], "{p2}");
    let cursor = p2["nextCursor"].as_str().unwrap().to_owned();
    let (_, p3) = get_as(
        &s,
        "eve",
        &format!("/api/notifications?limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(p3["items"].as_array().unwrap().len(), 1);
    assert_eq!(p3["nextCursor"], Value::Null, "{p3}");

    // Read one: the other session hears of it.
    let (status, r) = post_as(&s, "eve", &format!("/api/notifications/{}/read", ids[1])).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["changed"].clone(), r["unreadCount"].clone()),
        (json!(true), json!(4))
    );
    let (f, v) = next_json(&mut other).await;
    assert_eq!(f.get("herald-event"), Some("read"));
    assert_eq!(v["type"], "read");
    assert_eq!(v["ids"], json!([ids[1]]));
    assert_eq!(v["unreadCount"], 4);
    // Again: no change, no push.
    let (_, r) = post_as(&s, "eve", &format!("/api/notifications/{}/read", ids[1])).await;
    assert_eq!(r["changed"], false);
    // Someone else's, or no such id: 404.
    let (status, _) = post_as(
        &s,
        "mallory",
        &format!("/api/notifications/{}/read", ids[2]),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post_as(&s, "eve", "/api/notifications/999999999/read").await;
    assert_eq!(status, 404);

    let (_, unread) = get_as(&s, "eve", "/api/notifications?unread=true").await;
    let items = unread["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(
        items
            .iter()
            .all(|n| n["read"] == false && n["notificationId"] != ids[1])
    );
    let (_, all) = get_as(&s, "eve", "/api/notifications").await;
    let read_one = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["notificationId"] == ids[1])
        .unwrap()
        .clone();
    assert_eq!(read_one["read"], true);
    assert!(read_one["readAt"].is_string());

    let (status, r) = post_as(&s, "eve", "/api/notifications/read-all").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["ids"].as_array().unwrap().len(), 4);
    let (_, v) = next_json(&mut other).await;
    assert_eq!(
        (
            v["event"].clone(),
            v["unreadCount"].clone(),
            v["all"].clone()
        ),
        (json!("read"), json!(0), json!(true))
    );
    let (_, cnt) = get_as(&s, "eve", "/api/notifications/unread-count").await;
    assert_eq!(cnt["unreadCount"], 0);
    // No user named: 401.
    let (status, e) = s.http_call("GET", "/api/notifications", &[], None).await;
    assert_eq!(status, 401, "{e}");
    // The query parameter names the user too (anonymous mode).
    let (status, q) = s
        .http_call("GET", "/api/notifications/unread-count?user=eve", &[], None)
        .await;
    assert_eq!((status, q["unreadCount"].clone()), (200, json!(0)));
}

/// A repeated idempotency key (body or header) creates and publishes nothing new.
async fn idempotency_key_creates_nothing_new(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = server(&db).await;
    let mut c = subscriber(&s, Transport::Ws, "ida").await;
    let req =
        json!({"users": ["ida", "ivo"], "message": "once", "idempotencyKey": "order-42-shipped"});
    let (s1, first) = post(&s, req.clone()).await;
    assert_eq!(s1, 201, "{first}");
    assert_eq!(first["duplicate"], false);
    next_json(&mut c).await;
    let (s2, second) = post(&s, req).await;
    assert_eq!(s2, 200, "{second}");
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["notifications"], second["notifications"]);
    c.expect_silence(Duration::from_millis(200)).await;
    let (_, list) = get_as(&s, "ida", "/api/notifications").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    // The Idempotency-Key header works the same way.
    let body = json!({"user": "ida", "message": "hdr"}).to_string();
    let (s3, _) = s
        .http_call(
            "POST",
            "/api/notifications",
            &[("Idempotency-Key", "k2")],
            Some(&body),
        )
        .await;
    let (s4, again) = s
        .http_call(
            "POST",
            "/api/notifications",
            &[("Idempotency-Key", "k2")],
            Some(&body),
        )
        .await;
    assert_eq!(
        (s3, s4, again["duplicate"].clone()),
        (201, 200, json!(true))
    );
    // Concurrent duplicates: exactly one row.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let body =
            json!({"user": "ivo", "message": "race", "idempotencyKey": "race-1"}).to_string();
        let addr = s.http;
        tasks.push(tokio::spawn(async move { raw_post(addr, &body).await }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 200),
        "{statuses:?}"
    );
    let (_, list) = get_as(&s, "ivo", "/api/notifications").await;
    let races = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["message"] == "race")
        .count();
    assert_eq!(races, 1, "{list}");
}

/// A key belongs to one caller and names one notification per recipient: the same key
/// for another recipient, or from another service, creates a notification of its own;
/// the same caller repeating it for a recipient gets that recipient's original.
async fn idempotency_keys_are_per_caller_and_recipient(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = server_with(&db, |c| {
        c.auth.api_keys = vec![
            herald::config::ApiKeyConfig::Full {
                key: "key-billing".into(),
                principal: "billing".into(),
                roles: vec![],
            },
            herald::config::ApiKeyConfig::Full {
                key: "key-shop".into(),
                principal: "shop".into(),
                roles: vec![],
            },
        ];
    })
    .await;
    let create = |key: &'static str, user: &'static str, message: &'static str| {
        let body = json!({"user": user, "message": message, "idempotencyKey": "k-1"}).to_string();
        let s = &s;
        async move {
            s.http_call(
                "POST",
                "/api/notifications",
                &[("X-API-Key", key)],
                Some(&body),
            )
            .await
        }
    };
    let (s1, a) = create("key-billing", "amy", "billing to amy").await;
    let (s2, b2) = create("key-billing", "bo", "billing to bo").await;
    let (s3, c) = create("key-shop", "amy", "shop to amy").await;
    assert_eq!((s1, s2, s3), (201, 201, 201), "{a} {b2} {c}");
    let (s4, again) = create("key-billing", "amy", "billing again").await;
    assert_eq!((s4, again["duplicate"].clone()), (200, json!(true)));
    assert_eq!(again["notifications"][0], a["notifications"][0]);
    let (_, amy) = get_as(&s, "amy", "/api/notifications").await;
    let messages: Vec<&str> = amy["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, vec!["shop to amy", "billing to amy"]);
    let (_, bo) = get_as(&s, "bo", "/api/notifications").await;
    assert_eq!(bo["items"][0]["message"], "billing to bo");
    // A list with some recipients done before: only the others are new.
    let body = json!({"users": ["amy", "cy", "bo"], "message": "list", "idempotencyKey": "k-1"})
        .to_string();
    let (s5, list) = s
        .http_call(
            "POST",
            "/api/notifications",
            &[("X-API-Key", "key-billing")],
            Some(&body),
        )
        .await;
    assert_eq!(
        (s5, list["duplicate"].clone()),
        (201, json!(false)),
        "{list}"
    );
    let members: Vec<&str> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert_eq!(members, vec!["billing to amy", "list", "billing to bo"]);
    // A job's final notification uses the key job:{id}:{status}, once per user.
    let done = |user: &str| json!({"user": user, "status": "done", "percent": 100});
    let job = |body: Value| {
        let s = &s;
        async move {
            s.http_call(
                "POST",
                "/api/jobs/77/progress",
                &[("X-API-Key", "key-shop")],
                Some(&body.to_string()),
            )
            .await
        }
    };
    let (_, ja) = job(done("amy")).await;
    let (_, jb) = job(done("bo")).await;
    assert_eq!(jb["notification"]["memberId"], "bo", "{jb}");
    assert_ne!(
        ja["notification"]["notificationId"],
        jb["notification"]["notificationId"]
    );
    let (_, again) = job(done("bo")).await;
    assert_eq!(again["notification"], jb["notification"]);
}

async fn raw_post(addr: std::net::SocketAddr, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/notifications HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    String::from_utf8_lossy(&resp)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Nobody connected: the notification waits in the unread list, and a session that
/// connects later finds it there.
async fn offline_user_finds_it_unread(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = server(&db).await;
    let (status, body) = post(
        &s,
        json!({"user": "olga", "message": "while you were away"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["delivered"], 0);
    let mut c = subscriber(&s, Transport::Tcp, "olga").await;
    c.expect_silence(Duration::from_millis(100)).await;
    let (_, list) = get_as(&s, "olga", "/api/notifications?unread=true").await;
    assert_eq!(list["items"][0]["message"], "while you were away", "{list}");
    assert_eq!(list["unreadCount"], 1);
}

/// A closed pool (the database is gone): 503 with a clear body, nothing published.
async fn database_failure_is_503_and_publishes_nothing(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = server(&db).await;
    let mut c = subscriber(&s, Transport::Ws, "dora").await;
    let (status, _) = post(&s, json!({"user": "dora", "message": "before"})).await;
    assert_eq!(status, 201);
    next_json(&mut c).await;
    s.node.notifications.get().unwrap().store().close().await;
    let (status, e) = post(&s, json!({"user": "dora", "message": "lost?"})).await;
    assert_eq!(status, 503, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("notification store unavailable"),
        "{e}"
    );
    for path in ["/api/notifications", "/api/notifications/unread-count"] {
        let (status, e) = get_as(&s, "dora", path).await;
        assert_eq!(status, 503, "{path}: {e}");
    }
    let (status, _) = post_as(&s, "dora", "/api/notifications/read-all").await;
    assert_eq!(status, 503);
    let job = json!({"user": "dora", "percent": 100, "status": "done"}).to_string();
    let (status, _) = s
        .http_call("POST", "/api/jobs/j1/progress", &[], Some(&job))
        .await;
    assert_eq!(status, 503);
    c.expect_silence(Duration::from_millis(200)).await;
}

/// The database itself disappears under a running server (MySQL, PostgreSQL).
async fn dropped_database_is_503(b: Backend) {
    let Some(mut db) = TestDb::new(b).await else {
        return;
    };
    let s = server(&db).await;
    let mut c = subscriber(&s, Transport::Tcp, "dan").await;
    db.drop_now();
    let (status, e) = post(&s, json!({"user": "dan", "message": "nowhere to go"})).await;
    assert_eq!(status, 503, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("notification store unavailable"),
        "{e}"
    );
    c.expect_silence(Duration::from_millis(200)).await;
}

/// A long-running job, as Spring services report one: progress is pushed, the final result is stored as a
/// notification (once, however often it is reported).
async fn job_progress_and_final_result(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = server(&db).await;
    let (mut c, _) = s.connect_as(Transport::Ws, "jon").await;
    c.subscribe("jobs", "/user/queue/jobs").await;
    c.subscribe("n", NOTIFICATIONS).await;
    let progress = |percent: u32, status: &str| {
        json!({"user": "jon", "percent": percent, "status": status}).to_string()
    };
    let (status, r) = s
        .http_call(
            "POST",
            "/api/jobs/rag-7/progress",
            &[],
            Some(&progress(40, "running")),
        )
        .await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(r["notification"], Value::Null);
    let (f, v) = next_json(&mut c).await;
    assert_eq!(f.get("destination"), Some("/user/queue/jobs"));
    assert_eq!(
        (
            v["jobId"].clone(),
            v["percent"].clone(),
            v["status"].clone()
        ),
        (json!("rag-7"), json!(40.0), json!("running"))
    );
    let done =
        json!({"user": "jon", "percent": 100, "status": "done", "result": {"summary": "ok"}})
            .to_string();
    let (status, r) = s
        .http_call("POST", "/api/jobs/rag-7/progress", &[], Some(&done))
        .await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(r["notification"]["type"], "job.done");
    assert_eq!(
        r["notification"]["payload"]["result"],
        json!({"summary": "ok"})
    );
    let mut events = Vec::new();
    for _ in 0..2 {
        let (f, v) = next_json(&mut c).await;
        events.push((f.get("herald-event").unwrap().to_owned(), v));
    }
    events.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(events[0].0, "job");
    assert_eq!(events[0].1["status"], "done");
    assert_eq!(events[1].0, "notification");
    // Reported twice: still one notification.
    let (status, _) = s
        .http_call("POST", "/api/jobs/rag-7/progress", &[], Some(&done))
        .await;
    assert_eq!(status, 202);
    let (_, list) = get_as(&s, "jon", "/api/notifications").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let (status, e) = s
        .http_call(
            "POST",
            "/api/jobs/x/progress",
            &[],
            Some(&progress(140, "running")),
        )
        .await;
    assert_eq!(status, 400, "{e}");
}

/// Retention deletes read notifications past the cutoff and keeps unread ones.
async fn retention_deletes_only_read(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = server(&db).await;
    let mut ids = Vec::new();
    for m in ["keep", "purge"] {
        let (_, body) = post(&s, json!({"user": "rita", "message": m})).await;
        ids.push(body["notifications"][0]["notificationId"].as_i64().unwrap());
    }
    post_as(&s, "rita", &format!("/api/notifications/{}/read", ids[1])).await;
    let store = s.node.notifications.get().unwrap().store();
    assert_eq!(
        store
            .purge(herald::notify::now_ms() - 60_000)
            .await
            .unwrap(),
        0,
        "read just now: kept"
    );
    assert_eq!(
        store.purge(herald::notify::now_ms() + 1_000).await.unwrap(),
        1
    );
    let (_, list) = get_as(&s, "rita", "/api/notifications").await;
    let left: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec!["keep"]);
}

/// The names Spring notification services use: user prefix /member/, destination /queue/notification.
async fn seed_004_destinations(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = server_with(&db, |c| {
        c.routing.user_prefix = "/member/".into();
        c.notifications.destination = "/queue/notification".into();
    })
    .await;
    let (mut c, _) = s.connect_as(Transport::Ws, "1").await;
    c.subscribe("n", "/member/queue/notification").await;
    let (status, _) = post(&s, json!({"memberId": 1, "message": "새로운 알림이 도착했습니다.", "redirectPath": "/dashboard"})).await;
    assert_eq!(status, 201);
    let (f, v) = next_json(&mut c).await;
    assert_eq!(f.get("destination"), Some("/member/queue/notification"));
    assert_eq!(v["memberId"], "1");
    assert_eq!(v["message"], "새로운 알림이 도착했습니다.");
    assert_eq!(v["redirectPath"], "/dashboard");
}

/// A list of 1,200 users is persisted in one request (multi-row INSERTs in batches):
/// exactly one row each, every id distinct, unread counts right, connected users get
/// their copy once; a repeated key adds nothing; a broadcast is one row for everyone.
async fn bulk_insert_to_many_users(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    // Above the default budgets, which `notification_budgets` covers.
    let s = server_with(&db, |c| {
        c.notifications.max_recipients = 1200;
        c.notifications.max_message = 16 * 1024;
        c.server.max_body = 16 << 20;
    })
    .await;
    let users: Vec<String> = (0..1200).map(|i| format!("bulk-{i}")).collect();
    let mut live = Vec::new();
    for u in ["bulk-0", "bulk-499", "bulk-500", "bulk-1199"] {
        live.push(subscriber(&s, Transport::Tcp, u).await);
    }
    let req = json!({"users": users, "message": "to everyone on the list", "type": "bulk", "idempotencyKey": "bulk-1"});
    let (status, body) = post(&s, req.clone()).await;
    assert_eq!(
        status,
        201,
        "{}",
        &body.to_string()[..body.to_string().len().min(300)]
    );
    // A summary: every id, the first rows in full.
    assert_eq!(
        (body["count"].clone(), body["more"].clone()),
        (json!(1200), json!(true))
    );
    let ids: Vec<i64> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1200);
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        1200,
        "every row has its own id"
    );
    let rows = body["notifications"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    for ((row, user), id) in rows.iter().zip(&users).zip(&ids) {
        assert_eq!(
            (row["memberId"].as_str(), row["notificationId"].as_i64()),
            (Some(user.as_str()), Some(*id)),
            "rows and ids come back in the order of 'users'"
        );
    }
    assert_eq!(body["delivered"], 4);
    for (c, (u, i)) in live.iter_mut().zip([
        ("bulk-0", 0),
        ("bulk-499", 499),
        ("bulk-500", 500),
        ("bulk-1199", 1199),
    ]) {
        let (_, v) = next_json(c).await;
        assert_eq!(v["memberId"], u);
        assert_eq!(
            v["notificationId"], ids[i],
            "the live copy is the stored row"
        );
    }
    let store = s.node.notifications.get().unwrap().store();
    for u in &users {
        assert_eq!(store.unread_count(u).await.unwrap(), 1, "{u}");
    }
    assert_eq!(store.unread_count("bulk-1200").await.unwrap(), 0);
    // Again with the same key: nothing new, nothing published.
    let (status, again) = post(&s, req).await;
    assert_eq!((status, again["duplicate"].clone()), (200, json!(true)));
    assert_eq!(again["ids"], body["ids"]);
    for c in live.iter_mut() {
        c.expect_silence(Duration::from_millis(100)).await;
    }
    for u in ["bulk-0", "bulk-777", "bulk-1199"] {
        assert_eq!(store.unread_count(u).await.unwrap(), 1, "{u}");
    }
    // Large messages go in smaller batches (a byte budget per statement).
    let big = "x".repeat(16 * 1024);
    let (status, body) = post(&s, json!({"users": &users[..700], "message": big})).await;
    assert_eq!(status, 201);
    assert_eq!(body["count"], 700);
    let (_, l) = get_as(&s, "bulk-699", "/api/notifications").await;
    assert_eq!(
        (
            l["unreadCount"].clone(),
            l["items"][0]["message"].as_str().map(str::len)
        ),
        (json!(2), Some(16 * 1024))
    );
    assert_eq!(store.unread_count("bulk-700").await.unwrap(), 1);
    // Read-all marks many at once (multi-row too).
    let (status, r) = post_as(&s, "bulk-5", "/api/notifications/read-all").await;
    assert_eq!((status, r["ids"].as_array().unwrap().len()), (200, 2));
    assert_eq!(store.unread_count("bulk-5").await.unwrap(), 0);
    assert_eq!(store.unread_count("bulk-6").await.unwrap(), 2);
}

/// A TCP proxy the test controls in front of a database server. Closed, it takes each
/// connection and drops it at once (a database that is down); open, it forwards.
/// Closing also cuts the connections it was forwarding.
struct Proxy {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::Mutex<Option<tokio_util::sync::CancellationToken>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Proxy {
    async fn closed(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            open: Default::default(),
            stop: tokio_util::sync::CancellationToken::new(),
        };
        let (open, stop) = (proxy.open.clone(), proxy.stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                };
                let Some(open) = open.lock().unwrap().clone() else {
                    drop(inbound);
                    continue;
                };
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = open.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        proxy
    }

    fn open(&self) {
        *self.open.lock().unwrap() = Some(tokio_util::sync::CancellationToken::new());
    }

    fn close(&self) {
        if let Some(open) = self.open.lock().unwrap().take() {
            open.cancel();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.close();
        self.stop.cancel();
    }
}

async fn readiness(s: &TestServer) -> (u16, Value) {
    let (status, body) = s.http_get("/health/ready").await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Polls /health/ready until it answers 200 (the retry backoff is at most 5 s).
async fn wait_ready(s: &TestServer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = readiness(s).await;
        if status == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready after 30 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every notification endpoint answers 503 with the clear body; returns the POST's.
async fn all_503(s: &TestServer, user: &str) -> Value {
    let (status, e) = post(s, json!({"user": user, "message": "not now"})).await;
    assert_eq!(status, 503, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("notification store unavailable"),
        "{e}"
    );
    assert_eq!(e["code"], "database_unavailable", "{e}");
    for path in ["/api/notifications", "/api/notifications/unread-count"] {
        let (status, e) = get_as(s, user, path).await;
        assert_eq!(
            (status, e["code"].clone()),
            (503, json!("database_unavailable")),
            "{path}: {e}"
        );
    }
    for path in ["/api/notifications/read-all", "/api/notifications/1/read"] {
        let (status, e) = post_as(s, user, path).await;
        assert_eq!(status, 503, "{path}: {e}");
    }
    let job = json!({"user": user, "percent": 100, "status": "done"}).to_string();
    let (status, _) = s
        .http_call("POST", "/api/jobs/j1/progress", &[], Some(&job))
        .await;
    assert_eq!(status, 503);
    e
}

/// STOMP pub/sub on a topic works (whatever the database does).
async fn stomp_still_works(s: &TestServer) {
    let mut sub = s.tcp().await;
    sub.subscribe("t", "/topic/weather").await;
    let mut publisher = s.ws().await;
    publisher.publish("/topic/weather", "sunny").await;
    assert_eq!(sub.recv_body().await, "sunny");
}

/// The database is down when the server starts: it starts anyway, degraded (not
/// ready, 503s, STOMP works), and once the database is reachable the migrations run
/// and notifications work without a restart. MySQL/PostgreSQL sit behind a proxy that
/// then goes down and up again under the running server; SQLite's file is in a folder
/// that does not exist until later.
async fn database_down_at_startup_then_back(b: Backend) {
    let Some(mut db) = (match b {
        Backend::Sqlite => Some(TestDb::later(b)),
        _ => TestDb::new(b).await,
    }) else {
        return;
    };
    let proxy = match b {
        Backend::Sqlite => None,
        _ => Some(Proxy::closed(db.server_addr()).await),
    };
    let url = proxy
        .as_ref()
        .map_or(db.url.clone(), |p| db.url_via(p.addr));
    let s = TestServer::with(move |c| {
        c.database.url = url;
        c.database.acquire_timeout = Duration::from_secs(1);
    })
    .await;
    assert_eq!(s.http_get("/health/live").await.0, 200);
    let (status, ready) = readiness(&s).await;
    assert_eq!(status, 503, "{ready}");
    let why = ready["failing"]["database"].as_str().unwrap_or_default();
    assert!(why.contains("not been reachable since startup"), "{ready}");
    let mut nina = subscriber(&s, Transport::Ws, "nina").await;
    all_503(&s, "nina").await;
    stomp_still_works(&s).await;
    nina.expect_silence(Duration::from_millis(200)).await;

    // The database comes.
    match &proxy {
        Some(p) => p.open(),
        None => db.create().await.unwrap(),
    }
    wait_ready(&s).await;
    let (status, body) = post(&s, json!({"user": "nina", "message": "first"})).await;
    assert_eq!(
        (status, body["delivered"].clone()),
        (201, json!(1)),
        "{body}"
    );
    assert_eq!(next_json(&mut nina).await.1["message"], "first");

    let Some(proxy) = proxy else { return };
    // It goes away under the running server: 503, nothing published, STOMP works.
    proxy.close();
    all_503(&s, "nina").await;
    let (status, ready) = readiness(&s).await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["failing"]["database"]
            .as_str()
            .unwrap_or_default()
            .contains("database unreachable"),
        "{ready}"
    );
    stomp_still_works(&s).await;
    nina.expect_silence(Duration::from_millis(200)).await;
    // And comes back: the pool reconnects, no restart.
    proxy.open();
    wait_ready(&s).await;
    let (status, body) = post(&s, json!({"user": "nina", "message": "second"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(next_json(&mut nina).await.1["message"], "second");
    let (_, list) = get_as(&s, "nina", "/api/notifications").await;
    let messages: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, vec!["second", "first"], "the 503s stored nothing");
}

/// The database named in the URL does not exist yet; once created, the migrations run.
async fn database_created_after_startup(b: Backend) {
    let mut db = TestDb::later(b);
    let s = server(&db).await;
    let (status, ready) = readiness(&s).await;
    if status == 200 {
        panic!("ready without a database: {ready}");
    }
    all_503(&s, "ola").await;
    if let Err(reason) = db.create().await {
        assert!(!in_ci(), "{reason}");
        eprintln!("SKIPPED: {reason}");
        return;
    }
    wait_ready(&s).await;
    let (status, body) = post(&s, json!({"user": "ola", "message": "made it"})).await;
    assert_eq!(status, 201, "{body}");
    let (_, list) = get_as(&s, "ola", "/api/notifications?unread=true").await;
    assert_eq!(list["items"][0]["message"], "made it", "{list}");
}

/// Two nodes share the database and a private Redis. The user is connected to node B;
/// node A takes the POST while Redis is down, so the live copy cannot reach B: the
/// notification is committed all the same (201) and B's session finds it in its unread
/// list. Nothing is lost when publishing fails after the commit.
async fn publish_failure_after_commit_loses_nothing(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut redis = redis_server::RedisServer::start();
    let node = |url: String, redis: String| {
        TestServer::with(move |c| {
            c.database.url = url;
            c.database.acquire_timeout = Duration::from_secs(2);
            c.cluster.redis_url = redis;
            c.cluster.heartbeat = Duration::from_millis(200);
        })
    };
    let a = node(db.url.clone(), redis.url()).await;
    let bn = node(db.url.clone(), redis.url()).await;
    let mut pat = subscriber(&bn, Transport::Ws, "pat").await;
    let bus_b = bn.node.broker.bus().clone();
    wait_until("B listening for pat", || {
        bus_b.is_listening(herald::broker::Kind::Topic, "/user/pat/queue/notifications")
    })
    .await;
    // Redis up: A's POST reaches pat on B.
    let (status, _) = post(&a, json!({"user": "pat", "message": "via redis"})).await;
    assert_eq!(status, 201);
    assert_eq!(next_json(&mut pat).await.1["message"], "via redis");

    redis.kill();
    let bus_a = a.node.broker.bus().clone();
    wait_until("A sees Redis gone", || !bus_a.status().connected).await;
    let failed_before = bus_a.status().failed_publishes;
    let (status, body) = post(&a, json!({"user": "pat", "message": "while redis is down"})).await;
    assert_eq!(status, 201, "committed whatever the publish does: {body}");
    wait_until("the publish failed", || {
        bus_a.status().failed_publishes > failed_before
    })
    .await;
    pat.expect_silence(Duration::from_millis(300)).await;
    // Pat (on B) finds it unread.
    let (status, list) = get_as(&bn, "pat", "/api/notifications?unread=true").await;
    assert_eq!(status, 200, "{list}");
    let messages: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, vec!["while redis is down", "via redis"]);
    assert_eq!(list["unreadCount"], 2);
}

/// Each test in `all` runs on SQLite, MySQL and PostgreSQL; those in `servers` on the
/// two database servers only.
macro_rules! per_backend {
    (all: [$($name:ident),* $(,)?], servers: [$($server:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await } )*
        }
        mod mysql {
            $( #[tokio::test] async fn $name() { super::$name(super::Backend::MySql).await } )*
            $( #[tokio::test] async fn $server() { super::$server(super::Backend::MySql).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await } )*
            $( #[tokio::test] async fn $server() { super::$server(super::Backend::Postgres).await } )*
        }
    };
}

per_backend!(
    all: [
        delivered_live_to_every_session,
        users_list_and_broadcast,
        read_state_pushed_to_other_sessions,
        idempotency_key_creates_nothing_new,
        idempotency_keys_are_per_caller_and_recipient,
        offline_user_finds_it_unread,
        database_failure_is_503_and_publishes_nothing,
        job_progress_and_final_result,
        retention_deletes_only_read,
        seed_004_destinations,
        bulk_insert_to_many_users,
        database_down_at_startup_then_back,
        database_created_after_startup,
        publish_failure_after_commit_loses_nothing,
    ],
    servers: [dropped_database_is_503],
);

// ---------------------------------------------------------------------------------
// Backend-independent: who may create, who "own" is.

#[tokio::test]
async fn creating_needs_a_service_and_reading_needs_the_user_token() {
    const SECRET: &str = "0123456789abcdef0123456789abcdef-notify";
    let s = TestServer::with(|c| {
        c.auth.issuers = vec![herald::config::IssuerConfig {
            secret: SECRET.into(),
            ..Default::default()
        }];
        c.auth.api_keys = vec!["svc-key".into()];
    })
    .await;
    let body = json!({"user": "uma", "message": "hello"}).to_string();
    let (status, e) = s
        .http_call("POST", "/api/notifications", &[], Some(&body))
        .await;
    assert_eq!(status, 401, "{e}");
    let (status, _) = s
        .http_call(
            "POST",
            "/api/notifications",
            &[("X-API-Key", "svc-key")],
            Some(&body),
        )
        .await;
    assert_eq!(status, 201);
    let mint = |sub: &str| {
        herald::auth::jwt::mint(
            &s.node.config.auth,
            None,
            sub,
            None,
            &[],
            Duration::from_secs(60),
        )
        .unwrap()
    };
    let uma = format!("Bearer {}", mint("uma"));
    let (status, list) = s
        .http_call(
            "GET",
            "/api/notifications",
            &[("Authorization", &uma)],
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"][0]["message"], "hello");
    // A user token cannot create (needs the service role).
    let (status, _) = s
        .http_call(
            "POST",
            "/api/notifications",
            &[("Authorization", &uma)],
            Some(&body),
        )
        .await;
    assert_eq!(status, 403);
    // The auth cookie names the user too; X-User is ignored once tokens are in use.
    let cookie = format!("access_token={}", mint("vic"));
    let (status, list) = s
        .http_call(
            "GET",
            "/api/notifications",
            &[("Cookie", &cookie), ("X-User", "uma")],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
    let (status, _) = s
        .http_call("GET", "/api/notifications", &[("X-User", "uma")], None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = s
        .http_call(
            "GET",
            "/api/notifications",
            &[("Authorization", "Bearer nope")],
            None,
        )
        .await;
    assert_eq!(status, 401);
}

/// Nothing listens where the URL points (PostgreSQL, MySQL): the server starts all
/// the same, not ready, the notification API answers 503, STOMP works.
#[tokio::test]
async fn nothing_listening_at_startup() {
    for scheme in ["postgres://postgres", "mysql://root"] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("{scheme}@127.0.0.1:{port}/herald");
        let s = TestServer::with(move |c| c.database.url = url).await;
        let (status, ready) = readiness(&s).await;
        assert_eq!(status, 503, "{ready}");
        let why = ready["failing"]["database"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(why.contains("not been reachable since startup"), "{ready}");
        let e = all_503(&s, "zed").await;
        assert!(e["error"].as_str().unwrap().contains("retrying"), "{e}");
        stomp_still_works(&s).await;
    }
}

/// A URL that cannot name a database at all is a configuration error: no start.
#[tokio::test]
async fn unparsable_database_url_refuses_to_start() {
    let mut cfg = herald::Config::default();
    cfg.server.http = "127.0.0.1:0".parse().unwrap();
    cfg.server.stomp = None;
    cfg.database.url = "postgres://user@[bad-host/db".into();
    let e = herald::Server::bind(cfg).await.err().expect("refused");
    assert!(format!("{e:#}").contains("database.url"), "{e:#}");
}

#[tokio::test]
async fn turned_off_answers_404() {
    let s = TestServer::with(|c| c.notifications.enabled = false).await;
    let (status, e) = s
        .http_call("GET", "/api/notifications", &[("X-User", "a")], None)
        .await;
    assert_eq!(status, 404, "{e}");
}

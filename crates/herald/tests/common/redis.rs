//! A private `redis-server` for the cluster tests: its own free port, no persistence
//! (or an append-only file, [`RedisServer::start_persistent`]), killed when dropped;
//! and cluster nodes on it. Include with
//! `#[path = "common/redis.rs"] mod redis_server;` beside `mod common;`.
//!
//! A missing `redis-server` fails the test (scripts/test.sh installs it); these tests
//! are never skipped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald::broker::Kind;
use herald::config::Config;

use crate::common::{TestServer, wait_until};

pub(crate) struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Where the append-only file lives, when the server keeps one.
    dir: Option<std::path::PathBuf>,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers.
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_in(None)
    }

    /// Like [`RedisServer::start`], with an append-only file (in a directory of its
    /// own, removed on drop): what Redis answered survives a kill -9 and restart, as
    /// in a deployment that persists.
    pub(crate) fn start_persistent() -> RedisServer {
        let dir =
            std::env::temp_dir().join(format!("herald-redis-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("a directory for the append-only file");
        RedisServer::start_in(Some(dir))
    }

    fn start_in(dir: Option<std::path::PathBuf>) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut r = RedisServer {
            port,
            child: None,
            dir,
        };
        r.restart();
        r
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): clients see the connection drop.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (empty unless it persists).
    pub(crate) fn restart(&mut self) {
        self.kill();
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", ""]);
        match &self.dir {
            Some(dir) => cmd.args(["--appendonly", "yes", "--dir"]).arg(dir),
            None => cmd.args(["--appendonly", "no"]),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run '{bin}' ({e}): install redis-server (scripts/test.sh does, with apt-get)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers, and
    /// what it holds is kept, unlike a restart.
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    fn resume_quietly(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("redis-server running")
            .id()
            .to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// Whether the server answers PING.
    pub(crate) fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume_quietly();
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A number unique in this process (names of scratch directories).
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What Herald's `cluster.redis_url` points at: one server, a Redis Cluster or
/// Sentinels (`common/redis_cluster.rs`).
pub(crate) trait RedisUrl {
    fn url(&self) -> String;
}

impl RedisUrl for RedisServer {
    fn url(&self) -> String {
        RedisServer::url(self)
    }
}

/// What an outage test does to all of Redis: kill it (SIGKILL) and start it again
/// (empty unless it persists).
pub(crate) trait Outage: RedisUrl {
    fn kill_all(&mut self);
    fn restart_all(&mut self);
}

impl Outage for RedisServer {
    fn kill_all(&mut self) {
        self.kill();
    }

    fn restart_all(&mut self) {
        self.restart();
    }
}

/// A node on `redis` with quick cluster timings (claims after 1 s, heartbeat 200 ms),
/// then `tweak`.
pub(crate) async fn node_with(
    redis: &impl RedisUrl,
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    let url = redis.url();
    TestServer::with(move |c| {
        c.cluster.redis_url = url;
        c.cluster.claim_after = Duration::from_secs(1);
        c.cluster.heartbeat = Duration::from_millis(200);
        tweak(c);
    })
    .await
}

/// Waits until `server` receives what the cluster routes under `key` (a topic channel
/// subscribed, or a queue consumed).
pub(crate) async fn listening(server: &TestServer, kind: Kind, key: &str) {
    let bus = server.node.broker.bus().clone();
    wait_until(&format!("node listening to {key}"), || {
        bus.is_listening(kind, key)
    })
    .await;
}

//! A private Redis Cluster (three masters with one replica each, `redis-cli
//! --cluster create`) and a private Sentinel set-up (a master, a replica, three
//! Sentinels from `redis-server --sentinel`), on free ports in a scratch
//! directory, killed and removed when dropped. Include with
//! `#[path = "common/redis_cluster.rs"] mod redis_cluster;` beside
//! `common/redis.rs`.
//!
//! A missing `redis-server` or `redis-cli` fails the test (scripts/test.sh installs
//! them); these tests are never skipped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{Outage, RedisUrl};

/// Longest a cluster takes to form, or to fail over.
const FORM: Duration = Duration::from_secs(30);

/// One redis-server process of a set-up.
pub(crate) struct Proc {
    pub port: u16,
    child: Option<Child>,
    args: Vec<String>,
}

impl Proc {
    fn start(port: u16, args: Vec<String>) -> Proc {
        let mut p = Proc {
            port,
            child: None,
            args,
        };
        p.restart();
        p
    }

    /// Starts it again with the same arguments (a cluster node keeps its
    /// nodes.conf, so it rejoins; a killed master comes back as a replica).
    pub(crate) fn restart(&mut self) {
        self.kill();
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run '{bin}' ({e}): install redis-server (scripts/test.sh does, with apt-get)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while cli(self.port, &["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: what it did not pass to a replica is gone.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli -p port args…`, its output trimmed (None if it could not run).
pub(crate) fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run 'redis-cli' ({e}): install redis-tools"));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if port < 55000 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

fn scratch(what: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("herald-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three masters with one replica each.
pub(crate) struct RedisCluster {
    pub nodes: Vec<Proc>,
    dir: PathBuf,
}

impl RedisCluster {
    pub(crate) fn start() -> RedisCluster {
        RedisCluster::start_with(&[])
    }

    /// With more redis-server arguments for every node.
    pub(crate) fn start_with(extra: &[&str]) -> RedisCluster {
        let dir = scratch("cluster");
        let nodes: Vec<Proc> = (0..6)
            .map(|_| {
                let port = free_port();
                let args = [
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-replica-validity-factor",
                    "0",
                    "--dir",
                    dir.to_str().expect("a UTF-8 temp dir"),
                ]
                .map(str::to_owned)
                .to_vec();
                let args = args
                    .into_iter()
                    .chain(extra.iter().map(|a| (*a).to_owned()))
                    .collect();
                Proc::start(port, args)
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = RedisCluster { nodes, dir };
        wait_for("the cluster to form", FORM, || c.is_ok());
        c
    }

    /// Every node says the cluster is ok, and every replica is in sync.
    pub(crate) fn is_ok(&self) -> bool {
        self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
            cli(n.port, &["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok"))
                && cli(n.port, &["INFO", "replication"]).is_some_and(|i| {
                    !i.contains("role:slave") || i.contains("master_link_status:up")
                })
        })
    }

    /// The node serving `key`'s slot as master.
    pub(crate) fn master_of(&self, key: &str) -> usize {
        let alive = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a live node");
        let slot: u16 = cli(alive.port, &["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.parse().ok())
            .expect("CLUSTER KEYSLOT");
        self.nodes
            .iter()
            .position(|n| n.child.is_some() && owns(n.port, slot))
            .expect("a master owns every slot")
    }

    /// The node replicating master `i`.
    pub(crate) fn replica_of(&self, i: usize) -> usize {
        // ROLE on a master: master, offset, then ip, port, offset per replica.
        let role = cli(self.nodes[i].port, &["ROLE"]).expect("ROLE");
        let port: u16 = role
            .lines()
            .nth(3)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no replica in ROLE: {role}"));
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("the replica is one of the nodes")
    }

    /// Moves `key`'s slot (with its keys) from its master to master `to`, the way
    /// `redis-cli --cluster reshard` does: IMPORTING/MIGRATING, MIGRATE the keys
    /// (clients meanwhile get ASK), then SETSLOT NODE on every master (MOVED).
    pub(crate) fn move_slot(&self, key: &str, to: usize) {
        let from = self.master_of(key);
        assert_ne!(from, to, "the slot is already there");
        let (src, dst) = (self.nodes[from].port, self.nodes[to].port);
        let slot = cli(src, &["CLUSTER", "KEYSLOT", key]).expect("KEYSLOT");
        let src_id = cli(src, &["CLUSTER", "MYID"]).expect("MYID");
        let dst_id = cli(dst, &["CLUSTER", "MYID"]).expect("MYID");
        let ok = |r: Option<String>, what: &str| {
            assert!(
                r.as_deref().is_some_and(|r| r.starts_with("OK")),
                "{what}: {r:?}"
            )
        };
        ok(
            cli(dst, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src_id]),
            "IMPORTING",
        );
        ok(
            cli(src, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst_id]),
            "MIGRATING",
        );
        loop {
            let keys = cli(src, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]).unwrap_or_default();
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1"];
            let port = dst.to_string();
            args.extend([port.as_str(), "", "0", "5000", "KEYS"]);
            args.extend(keys);
            let r = cli(src, &args);
            assert!(
                r.as_deref().is_some_and(|r| r.contains("OK")),
                "MIGRATE: {r:?}"
            );
        }
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let _ = cli(n.port, &["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id]);
        }
        wait_for("the slot to move", FORM, || {
            self.master_of(key) == to && self.is_ok()
        });
    }

    /// Kills node `i` and waits until its replica took over (the cluster is ok
    /// again without it).
    pub(crate) fn fail_over(&mut self, i: usize) {
        self.nodes[i].kill();
        wait_for("a replica to take over", FORM, || self.is_ok());
    }
}

/// Whether the node on `port` is the master of `slot` (its own `CLUSTER NODES` line
/// lists the slot).
fn owns(port: u16, slot: u16) -> bool {
    let Some(nodes) = cli(port, &["CLUSTER", "NODES"]) else {
        return false;
    };
    nodes.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 8
            && f[2].contains("myself")
            && f[2].contains("master")
            && f[8..].iter().any(|r| match r.split_once('-') {
                Some((a, b)) => a
                    .parse::<u16>()
                    .ok()
                    .zip(b.parse::<u16>().ok())
                    .is_some_and(|(a, b)| a <= slot && slot <= b),
                None => r.parse::<u16>().ok() == Some(slot),
            })
    })
}

impl Outage for RedisCluster {
    fn kill_all(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }

    /// Every node again, with its nodes.conf: the same cluster, empty.
    fn restart_all(&mut self) {
        for n in &mut self.nodes {
            n.restart();
        }
        wait_for("the cluster to form again", FORM, || self.is_ok());
    }
}

impl RedisUrl for RedisCluster {
    fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A master, its replica, and three Sentinels watching them as `herald`.
pub(crate) struct RedisSentinels {
    pub master: Proc,
    pub replica: Proc,
    pub sentinels: Vec<Proc>,
    dir: PathBuf,
}

impl RedisSentinels {
    pub(crate) fn start() -> RedisSentinels {
        let dir = scratch("sentinel");
        let server = |port: u16, extra: &[String]| {
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                // A replica's full sync writes an RDB file: in the scratch directory.
                "--dir",
                dir.to_str().expect("a UTF-8 temp dir"),
            ]
            .map(str::to_owned)
            .to_vec();
            args.extend_from_slice(extra);
            Proc::start(port, args)
        };
        let master = server(free_port(), &[]);
        let replica = server(
            free_port(),
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
        );
        let sentinels = (0..3)
            .map(|i| {
                let port = free_port();
                let conf = dir.join(format!("sentinel-{i}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\nsentinel monitor herald 127.0.0.1 {} 2\n\
                         sentinel down-after-milliseconds herald 1000\n\
                         sentinel failover-timeout herald 5000\n",
                        master.port
                    ),
                )
                .expect("a Sentinel config");
                Proc::start(
                    port,
                    vec![
                        conf.to_str().expect("UTF-8").to_owned(),
                        "--sentinel".into(),
                    ],
                )
            })
            .collect();
        let s = RedisSentinels {
            master,
            replica,
            sentinels,
            dir,
        };
        wait_for("the replica to sync", FORM, || {
            cli(s.replica.port, &["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
        });
        wait_for("the Sentinels to see the replica", FORM, || {
            cli(s.sentinels[0].port, &["SENTINEL", "REPLICAS", "herald"])
                .is_some_and(|r| r.contains(&s.replica.port.to_string()))
        });
        s
    }

    /// The master's port as the Sentinels name it.
    pub(crate) fn named_master(&self) -> Option<u16> {
        let a = cli(
            self.sentinels[0].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "herald"],
        )?;
        a.lines().nth(1)?.trim().parse().ok()
    }

    /// Kills the master and waits until the Sentinels promoted the replica.
    pub(crate) fn fail_over(&mut self) {
        self.master.kill();
        let replica = self.replica.port;
        wait_for("the Sentinels to promote the replica", FORM, || {
            self.named_master() == Some(replica)
                && cli(replica, &["ROLE"]).is_some_and(|r| r.starts_with("master"))
        });
    }
}

impl RedisUrl for RedisSentinels {
    fn url(&self) -> String {
        let s: Vec<String> = self
            .sentinels
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port))
            .collect();
        format!("redis+sentinel://{}/herald", s.join(","))
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            s.kill();
        }
        self.master.kill();
        self.replica.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

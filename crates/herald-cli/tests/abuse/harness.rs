//! The server under attack and the witnesses of an attack.
//!
//! [`Herald`] is a `herald serve` child process on ephemeral loopback ports, on the
//! default configuration plus the settings a test names (as `HERALD_*` environment
//! variables). A build that does not know a setting refuses to start; the setting is
//! then dropped, said so on stderr, and the attack runs against that build's
//! defaults, so the suite can judge older builds too.
//!
//! [`Watch`] is the bystander: from another loopback address (so per-IP limits aimed
//! at the attacker leave it alone) it keeps a WebSocket STOMP session doing publish →
//! receive round trips on its own topic and a keep-alive HTTP connection asking
//! `/health`, for as long as the attack runs, and samples the server's RSS.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use herald_stomp::{Command as Cmd, Frame};
use tokio::sync::{Mutex, MutexGuard};

use crate::http::KeepAlive;
use crate::stomp::Stomp;

/// Longest one bystander round trip or `/health` answer may take during an attack.
pub const PROMPT: Duration = Duration::from_secs(3);

/// The address attackers connect from is 127.0.0.1; the bystander uses this one.
pub const BYSTANDER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

const MIB: u64 = 1024;

/// The attacks run one at a time: each measures one server's memory and
/// responsiveness on a small machine, and two at once would measure each other.
static SERIAL: Mutex<()> = Mutex::const_new(());

pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The binary under test: `HERALD_BIN`, else this package's build.
fn binary() -> PathBuf {
    std::env::var_os("HERALD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_herald")))
}

pub struct Herald {
    child: Child,
    pub pid: u32,
    pub http: SocketAddr,
    pub stomp: SocketAddr,
    /// Settings this build did not know and runs without.
    pub dropped: Vec<String>,
    stderr: PathBuf,
}

impl Herald {
    /// A server on the default configuration.
    pub async fn start() -> Herald {
        Herald::with(&[]).await
    }

    /// A server with `settings` (`("limits.max_connections", "50")`) over the defaults.
    pub async fn with(settings: &[(&str, &str)]) -> Herald {
        let mut settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut dropped = Vec::new();
        loop {
            match spawn(&settings) {
                Ok(mut h) => {
                    h.dropped = dropped;
                    return h;
                }
                Err(stderr) => {
                    let unknown: Vec<String> = settings
                        .iter()
                        .map(|(k, _)| k.clone())
                        .filter(|k| {
                            let leaf = k.rsplit('.').next().unwrap_or(k);
                            stderr.contains("unknown field")
                                && stderr.contains(&format!("`{leaf}`"))
                        })
                        .collect();
                    assert!(!unknown.is_empty(), "herald did not start:\n{stderr}");
                    for k in &unknown {
                        eprintln!("[abuse] this herald does not know {k}; it runs without it");
                    }
                    settings.retain(|(k, _)| !unknown.contains(k));
                    dropped.extend(unknown);
                }
            }
        }
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory since [`Herald::reset_peak`], in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Starts the peak (VmHWM) over from the current RSS.
    pub fn reset_peak(&self) {
        // "5" resets the peak RSS (proc(5)); without it the sampled peak still counts.
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5");
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("herald {} is gone ({e}):\n{}", self.pid, self.stderr()));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Whether the process is still running (it did not crash).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// A STOMP session from the attacker's address, over `ws` or TCP, CONNECTed (1.2).
    pub async fn attacker(&self, ws: bool) -> Stomp {
        let mut c = self.open(ws).await;
        let f = c
            .connect()
            .await
            .expect("the attacker's CONNECT is answered");
        assert_eq!(f.command, Cmd::Connected, "{f:?}");
        c
    }

    /// An unconnected STOMP connection from the attacker's address.
    pub async fn open(&self, ws: bool) -> Stomp {
        if ws {
            Stomp::ws(self.http, None).await
        } else {
            Stomp::tcp(self.stomp).await
        }
        .expect("the attacker's connection is accepted")
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// Starts `herald serve`; `Err(stderr)` when it exits before listening.
fn spawn(settings: &[(String, String)]) -> Result<Herald, String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let stderr = std::env::temp_dir().join(format!(
        "herald-abuse-{}-{}.log",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let log = std::fs::File::create(&stderr).expect("a log file");
    let mut cmd = Command::new(binary());
    cmd.args([
        "serve",
        "--http",
        "127.0.0.1:0",
        "--stomp",
        "127.0.0.1:0",
        "--database-url",
        "sqlite::memory:",
    ]);
    // The default configuration: nothing from the environment but what the test says.
    cmd.env_remove("HERALD_CONFIG");
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") && k.contains("__") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HERALD_LOG", "warn");
    for (k, v) in settings {
        cmd.env(format!("HERALD_{}", k.to_uppercase().replace('.', "__")), v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary().display()));
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Reads until "herald listening http=A stomp=B\n" (or EOF), then drops stdout.
        let mut line = Vec::new();
        let mut byte = [0u8];
        while stdout.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
        // Keep the pipe open (and drained) so a later println does not fail the server.
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    let addr = |key: &str| -> Option<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|a| a.parse().ok())
    };
    match (addr("http="), addr("stomp=")) {
        (Some(http), Some(stomp)) => Ok(Herald {
            pid: child.id(),
            child,
            http,
            stomp,
            dropped: Vec::new(),
            stderr,
        }),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(&stderr).unwrap_or_default();
            let _ = std::fs::remove_file(&stderr);
            Err(format!("{line}\n{text}"))
        }
    }
}

/// What the bystander saw during an attack.
#[derive(Debug, Default)]
pub struct Report {
    pub round_trips: usize,
    pub health_checks: usize,
    pub slowest_round_trip: Duration,
    pub slowest_health: Duration,
    pub failures: Vec<String>,
    /// The highest RSS sampled, KiB.
    pub sampled_peak_kib: u64,
    /// RSS over the baseline: at the peak and when the watch ended, KiB.
    pub peak_growth_kib: u64,
    pub end_growth_kib: u64,
}

pub struct Watch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Report>,
    baseline_kib: u64,
    name: &'static str,
}

impl Watch {
    /// Connects the bystander (before the attack, so it holds its connections), takes
    /// the RSS baseline, and starts watching.
    pub async fn start(name: &'static str, herald: &Herald) -> Watch {
        let mut bystander = Stomp::ws(herald.http, Some(BYSTANDER_IP))
            .await
            .expect("the bystander's WebSocket is accepted");
        let f = bystander.connect().await.expect("bystander CONNECT");
        assert_eq!(f.command, Cmd::Connected, "{f:?}");
        let topic = format!("/topic/bystander.{}", herald.pid);
        bystander
            .request(
                Frame::new(Cmd::Subscribe)
                    .header("id", "b")
                    .header("destination", topic.clone()),
            )
            .await
            .expect("the bystander subscribes");
        let mut health = KeepAlive::new(herald.http, Some(BYSTANDER_IP));
        let (status, _) = health
            .get("/health")
            .await
            .expect("/health before the attack");
        assert_eq!(status, 200);
        // Everything the bystander needs is allocated; now the baseline.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let baseline_kib = herald.rss_kib();
        herald.reset_peak();
        let stop = Arc::new(AtomicBool::new(false));
        let pid = herald.pid;
        let task = tokio::spawn(watch(bystander, topic, health, pid, stop.clone()));
        Watch {
            stop,
            task,
            baseline_kib,
            name,
        }
    }

    /// Ends the watch; asserts the bystander was answered promptly throughout and the
    /// server's RSS grew less than `bound_mib` over the baseline (peak and now).
    pub async fn finish(self, herald: &mut Herald, bound_mib: u64) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = self.task.await.expect("the watcher ran");
        assert!(herald.alive(), "herald exited:\n{}", herald.stderr());
        let peak = herald.peak_kib().max(report.sampled_peak_kib);
        let now = herald.rss_kib();
        let growth = peak.saturating_sub(self.baseline_kib);
        report.peak_growth_kib = growth;
        report.end_growth_kib = now.saturating_sub(self.baseline_kib);
        eprintln!(
            "[abuse] {}: RSS baseline {} MiB, peak {} MiB (+{} MiB), now {} MiB; bound +{bound_mib} MiB; \
             {} round trips (slowest {:?}), {} /health (slowest {:?}), {} failures{}",
            self.name,
            self.baseline_kib / MIB,
            peak / MIB,
            growth / MIB,
            now / MIB,
            report.round_trips,
            report.slowest_round_trip,
            report.health_checks,
            report.slowest_health,
            report.failures.len(),
            if herald.dropped.is_empty() {
                String::new()
            } else {
                format!("; settings this build lacks: {:?}", herald.dropped)
            },
        );
        assert!(
            report.failures.is_empty(),
            "{}: the bystander was not answered promptly: {:?}",
            self.name,
            &report.failures[..report.failures.len().min(5)]
        );
        assert!(
            report.round_trips > 0 && report.health_checks > 0,
            "{report:?}"
        );
        assert!(
            growth < bound_mib * MIB,
            "{}: RSS grew by {} MiB (bound {bound_mib} MiB)",
            self.name,
            growth / MIB
        );
        report
    }
}

async fn watch(
    mut bystander: Stomp,
    topic: String,
    mut health: KeepAlive,
    pid: u32,
    stop: Arc<AtomicBool>,
) -> Report {
    let mut r = Report::default();
    let rss = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    };
    let mut n = 0u64;
    // One round at least, even for an attack that is over at once.
    loop {
        n += 1;
        let body = format!("ping {n}");
        let started = Instant::now();
        let trip = async {
            bystander
                .send(
                    &Frame::new(Cmd::Send)
                        .header("destination", topic.clone())
                        .body(body.clone()),
                )
                .await?;
            loop {
                match bystander.recv(PROMPT).await? {
                    Some(f) if f.command == Cmd::Message && f.body[..] == *body.as_bytes() => {
                        return Ok(());
                    }
                    Some(f) if f.command == Cmd::Message => {}
                    Some(f) => return Err(format!("the bystander got {f:?}")),
                    None => return Err("the bystander's session was closed".to_owned()),
                }
            }
        };
        match tokio::time::timeout(PROMPT, trip).await {
            Ok(Ok(())) => {
                r.round_trips += 1;
                r.slowest_round_trip = r.slowest_round_trip.max(started.elapsed());
            }
            Ok(Err(e)) => r.failures.push(format!("round trip {n}: {e}")),
            Err(_) => r
                .failures
                .push(format!("round trip {n}: no answer within {PROMPT:?}")),
        }
        let started = Instant::now();
        match tokio::time::timeout(PROMPT, health.get("/health")).await {
            Ok(Ok((200, _))) => {
                r.health_checks += 1;
                r.slowest_health = r.slowest_health.max(started.elapsed());
            }
            Ok(Ok((status, body))) => r.failures.push(format!(
                "/health {n}: {status} {}",
                String::from_utf8_lossy(&body)
            )),
            Ok(Err(e)) => r.failures.push(format!("/health {n}: {e}")),
            Err(_) => {
                health.reset();
                r.failures
                    .push(format!("/health {n}: no answer within {PROMPT:?}"));
            }
        }
        r.sampled_peak_kib = r.sampled_peak_kib.max(rss());
        if stop.load(Ordering::Relaxed) || r.failures.len() > 20 {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ERROR frame's `message` header (empty when absent).
pub fn message_of(f: &Frame) -> &str {
    f.get("message").unwrap_or("")
}

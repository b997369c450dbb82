//! Sampling a process through /proc: CPU time (utime+stime from /proc/PID/stat),
//! resident memory (VmRSS from /proc/PID/status), open descriptors (/proc/PID/fd) and
//! threads; and raising our own RLIMIT_NOFILE so that many connections fit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde_json::json;

use crate::stats::{Report, bytes};

/// Which process: a PID, or the bench itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Who {
    Pid(u32),
    Myself,
}

impl Who {
    fn path(self, file: &str) -> String {
        match self {
            Who::Pid(p) => format!("/proc/{p}/{file}"),
            Who::Myself => format!("/proc/self/{file}"),
        }
    }
}

/// utime+stime of a process, in clock ticks.
pub(crate) fn cpu_ticks(who: Who) -> Result<u64> {
    let path = who.path("stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may contain spaces: split
    // after the last ')'. utime and stime are fields 14 and 15 of the whole line,
    // so 12th and 13th after it.
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow!("bad {path}"))? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).ok_or_else(|| anyhow!("bad {path}"))?.parse()?;
    let stime: u64 = f.get(12).ok_or_else(|| anyhow!("bad {path}"))?.parse()?;
    Ok(utime + stime)
}

#[allow(unsafe_code)]
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// VmRSS of a process, in bytes.
pub(crate) fn rss_bytes(who: Who) -> Result<u64> {
    let path = who.path("status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS in {path}"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("bad VmRSS line"))?
        .parse()?;
    Ok(kb * 1024)
}

/// Open file descriptors of a process (entries of /proc/PID/fd).
pub(crate) fn fd_count(who: Who) -> Result<u64> {
    let path = who.path("fd");
    let dir = std::fs::read_dir(&path).with_context(|| format!("reading {path}"))?;
    Ok(dir.count() as u64)
}

/// Threads of a process (`Threads:` in /proc/PID/status).
pub(crate) fn thread_count(who: Who) -> Result<u64> {
    let path = who.path("status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .ok_or_else(|| anyhow!("no Threads in {path}"))?
        .trim()
        .parse()
        .with_context(|| format!("bad Threads line in {path}"))
}

/// Busy and total jiffies of the whole machine (first line of /proc/stat).
fn machine_ticks() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .next()
        .ok_or_else(|| anyhow!("empty /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// CPU use of the whole machine over an interval, to tell whether other work
/// (builds, tests) competed with the benchmark.
pub(crate) struct Machine {
    t0: Instant,
    busy0: u64,
}

impl Machine {
    pub(crate) fn start() -> Result<Machine> {
        Ok(Machine {
            t0: Instant::now(),
            busy0: machine_ticks()?.0,
        })
    }

    /// Busy CPU of the whole machine since the start, in percent of one core.
    pub(crate) fn busy_pct(&self) -> Result<f64> {
        let busy = machine_ticks()?.0;
        let wall = self.t0.elapsed().as_secs_f64();
        Ok((busy - self.busy0) as f64 / ticks_per_sec() / wall.max(1e-9) * 100.0)
    }
}

/// Adds `machine_cpu_pct` and `other_cpu_pct` (machine minus the processes
/// accounted for) to a report.
pub(crate) fn report_machine(r: &mut Report, machine_pct: f64, accounted_pct: f64) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    r.num(
        "machine_cpu_pct",
        machine_pct,
        1,
        &format!(" % of one core ({cores} cores)"),
    );
    r.num(
        "other_cpu_pct",
        (machine_pct - accounted_pct).max(0.0),
        1,
        " % of one core used by other processes (noise)",
    );
}

/// CPU and memory of one process over an interval, with the peak RSS sampled
/// every 200 ms in the background.
pub(crate) struct Watch {
    who: Who,
    t0: Instant,
    ticks0: u64,
    pub rss_start: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// What a [`Watch`] saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    /// CPU time over wall time, in percent of one core (200 = two cores busy).
    pub cpu_pct: f64,
    pub rss_start: u64,
    pub rss_end: u64,
    pub rss_peak: u64,
}

impl Watch {
    pub(crate) fn start(who: Who) -> Result<Watch> {
        let rss = rss_bytes(who)?;
        let w = Watch {
            who,
            t0: Instant::now(),
            ticks0: cpu_ticks(who)?,
            rss_start: rss,
            peak: Arc::new(AtomicU64::new(rss)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (peak, stop) = (w.peak.clone(), w.stop.clone());
        tokio::spawn(async move {
            while !stop.load(Relaxed) {
                if let Ok(r) = rss_bytes(who) {
                    peak.fetch_max(r, Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(w)
    }

    /// Usage from the start until now (the watch keeps running).
    pub(crate) fn usage(&self) -> Result<Usage> {
        let ticks = cpu_ticks(self.who)?;
        let wall = self.t0.elapsed().as_secs_f64();
        let rss_end = rss_bytes(self.who)?;
        self.peak.fetch_max(rss_end, Relaxed);
        Ok(Usage {
            cpu_pct: (ticks - self.ticks0) as f64 / ticks_per_sec() / wall.max(1e-9) * 100.0,
            rss_start: self.rss_start,
            rss_end,
            rss_peak: self.peak.load(Relaxed),
        })
    }

    /// Stops sampling and returns the usage.
    pub(crate) fn finish(self) -> Result<Usage> {
        self.stop.store(true, Relaxed);
        self.usage()
    }
}

impl Usage {
    /// Adds `<prefix>_cpu_pct` and `<prefix>_rss` to a report.
    pub(crate) fn report(&self, r: &mut Report, prefix: &str) {
        r.num(
            &format!("{prefix}_cpu_pct"),
            self.cpu_pct,
            1,
            " % of one core",
        );
        r.field(
            &format!("{prefix}_rss"),
            json!({"start_bytes": self.rss_start, "end_bytes": self.rss_end,
                   "peak_bytes": self.rss_peak}),
            format!(
                "start {}, end {}, peak {}",
                bytes(self.rss_start as f64),
                bytes(self.rss_end as f64),
                bytes(self.rss_peak as f64)
            ),
        );
    }
}

/// The server processes of a run (`--pid`, repeatable: the nodes of a cluster), one
/// [`Watch`] each. Empty when no `--pid` was given.
pub(crate) struct Servers(Vec<(u32, Watch)>);

/// What [`Servers`] saw, per process.
pub(crate) struct ServersUsage(Vec<(u32, Usage)>);

impl Servers {
    pub(crate) fn start(pids: &[u32]) -> Result<Servers> {
        let watches = pids
            .iter()
            .map(|&p| Ok((p, Watch::start(Who::Pid(p))?)))
            .collect::<Result<_>>()?;
        Ok(Servers(watches))
    }

    /// Usage of each process from the start until now (the watches keep running).
    pub(crate) fn usage(&self) -> Result<ServersUsage> {
        let per = self.0.iter().map(|(p, w)| Ok((*p, w.usage()?)));
        Ok(ServersUsage(per.collect::<Result<_>>()?))
    }

    /// Stops sampling and returns the usage of each process.
    pub(crate) fn finish(self) -> Result<ServersUsage> {
        let per = self.0.into_iter().map(|(p, w)| Ok((p, w.finish()?)));
        Ok(ServersUsage(per.collect::<Result<_>>()?))
    }
}

impl ServersUsage {
    /// CPU of all the processes together, in percent of one core (0 without `--pid`).
    pub(crate) fn cpu_pct(&self) -> f64 {
        self.0.iter().map(|(_, u)| u.cpu_pct).sum()
    }

    /// The same CPU figures with the RSS peaks of a later reading: CPU over the
    /// publishing window, RSS peak over the whole run.
    pub(crate) fn with_peaks_of(mut self, later: &ServersUsage) -> ServersUsage {
        for ((_, u), (_, l)) in self.0.iter_mut().zip(&later.0) {
            u.rss_peak = u.rss_peak.max(l.rss_peak);
        }
        self
    }

    /// Adds `server_cpu_pct` and `server_rss` for all the processes together (RSS
    /// peak: the sum of each one's peak), and with several processes `servers`, the
    /// same figures per PID. Adds nothing without `--pid`.
    pub(crate) fn report(&self, r: &mut Report) {
        let Some(first) = self.0.first() else { return };
        if self.0.len() == 1 {
            first.1.report(r, "server");
            return;
        }
        let sum = |f: fn(&Usage) -> u64| self.0.iter().map(|(_, u)| f(u)).sum::<u64>();
        Usage {
            cpu_pct: self.cpu_pct(),
            rss_start: sum(|u| u.rss_start),
            rss_end: sum(|u| u.rss_end),
            rss_peak: sum(|u| u.rss_peak),
        }
        .report(r, "server");
        let (json, human): (Vec<_>, Vec<_>) = self
            .0
            .iter()
            .map(|(p, u)| {
                (
                    json!({"pid": p, "cpu_pct": u.cpu_pct, "rss_start_bytes": u.rss_start,
                           "rss_end_bytes": u.rss_end, "rss_peak_bytes": u.rss_peak}),
                    format!(
                        "pid {p}: {:.1} %, peak {}",
                        u.cpu_pct,
                        bytes(u.rss_peak as f64)
                    ),
                )
            })
            .unzip();
        r.field("servers", json!(json), human.join("; "));
    }
}

/// Summed VmRSS of some processes; `None` for none.
pub(crate) fn rss_sum(pids: &[u32]) -> Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let rss = pids.iter().map(|&p| rss_bytes(Who::Pid(p)));
    Ok(Some(rss.sum::<Result<u64>>()?))
}

/// Raises the soft (and, when allowed, the hard) limit on open files.
#[allow(unsafe_code)]
pub(crate) fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let target = want as libc::rlim_t;
        if lim.rlim_max < target {
            let raised = libc::rlimit {
                rlim_cur: target,
                rlim_max: target,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        lim.rlim_cur = lim.rlim_max.min(target.max(lim.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

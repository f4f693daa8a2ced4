//! End-to-end comparison on loopback: tether against its nodes directly, nginx and HAProxy.
//!
//! `make bench` (= `cargo bench --bench compare`, about 7 minutes; `-- --help` for the options)
//! starts three demo nodes (`tether node`, one thread each) and, in front of them, each target:
//!
//! - `direct`: no proxy, all the load goes to one node: the ceiling of keep-alive requests;
//!   where the node itself is the bottleneck (new connections, WebSocket echo) a proxy that
//!   spreads clients over the three nodes can beat it;
//! - `tether-cookie`, `tether-iphash`: tether's own engine with cookie or IP-hash affinity;
//! - `tether-pingora`: tether `--engine pingora` with cookie affinity (what our engine bought);
//! - `nginx`: `ip_hash`, `keepalive 64` to the nodes, HTTP/1.1 and the WebSocket upgrade headers;
//! - `haproxy`: cookie insert, `leastconn`, `nbthread 2`, keep-alive, `timeout tunnel 1h`.
//!
//! nginx and HAProxy run in the foreground from a temporary directory, never as services; they
//! are installed with apt-get when missing and we are root, and show `n/a` when they cannot be.
//!
//! Every measurement is one `tether load` process (its own descriptor limit), clients bound to
//! `127.0.1.0/24` (so IP hashing has addresses to spread, and ephemeral ports last):
//!
//! - **A** keep-alive GETs on 64 connections: requests/s, p99, proxy CPU-s per million requests;
//! - **B** a new connection per request (`--new-connection`): connections/s, CPU per million;
//! - **C** 5,000 WebSockets held open through a freshly started instance of the proxy: RSS per
//!   open WebSocket (VmRSS of its processes while all are open, minus before, divided by the
//!   number held); then echoes on 64 WebSockets: round trips/s, p99, CPU per million;
//! - **D** 2,000 concurrent 3-second long-polls: how many completed (all must), proxy CPU-s.
//!
//! Runs are interleaved (every target once per scenario per round, the order rotating by round)
//! and repeated (`--rounds`, default 3); the table shows medians. CPU is utime + stime of the
//! proxy and its children from `/proc/PID/stat`, read before and after each run; everything
//! shares the same 2 cores (load tool, proxy, nodes), so read the ratios, measured side by side,
//! rather than the absolute figures, which move by ±20% from one run of a VM to the next.
//! `vs direct` is the share of the ceiling a proxy keeps; `vs nginx` / `vs HAProxy` compare
//! tether's figure to theirs (above 1 is better for rates, below 1 for CPU and memory).
//! Note that nginx's `ip_hash` hashes only the first three octets of an IPv4 address: every
//! client here is in one /24, so nginx sends all of them to one node (tether hashes the whole
//! address).
//!
//! The figures mean something only on an otherwise idle machine: each run also adds up the CPU
//! that other processes used meanwhile (a build, say), flags a run where that exceeds 10% of a
//! core, and the table ends by saying whether any run was disturbed.
//!
//! `--scale` instead holds as many WebSockets through one tether process as its open-file limit
//! allows (two descriptors per tunnel) and reports how many were held.
//!
//! Ports are picked by binding port 0; every process is killed by its process group on exit,
//! panic or Ctrl-C; every run is bounded in time. Progress goes to stderr, the Markdown table
//! to stdout (for `benches/README.md`).

use clap::Parser;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Options and sizes
// ---------------------------------------------------------------------------------------------

/// The end-to-end comparison of tether with the nodes directly, nginx and HAProxy, on loopback.
#[derive(Parser, Debug)]
#[command(name = "compare")]
struct Opts {
    /// One round of short runs: a smoke test of the whole bench (under 2 minutes).
    #[arg(long)]
    quick: bool,
    /// Rounds: each target runs each scenario once per round (default 3, 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Scenarios to run, comma-separated: A (keep-alive), B (new connections), C (WebSockets),
    /// D (long-polls).
    #[arg(long, value_delimiter = ',', ignore_case = true)]
    only: Vec<Scenario>,
    /// Targets to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<Kind>,
    /// Write every run's raw results (the load tool's reports, CPU, RSS) to this JSON file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Instead of the comparison: hold as many WebSockets through one tether as its open-file
    /// limit allows and report how many were held.
    #[arg(long)]
    scale: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// Bench name filters passed by `cargo bench NAME` (ignored).
    #[arg(hide = true)]
    filters: Vec<String>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    A,
    B,
    C,
    D,
}

/// A measurement of one target (scenario C has two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    KeepAlive,
    NewConnection,
    WsHold,
    WsEcho,
    LongPoll,
}

impl Step {
    fn of(s: Scenario) -> &'static [Step] {
        match s {
            Scenario::A => &[Step::KeepAlive],
            Scenario::B => &[Step::NewConnection],
            Scenario::C => &[Step::WsHold, Step::WsEcho],
            Scenario::D => &[Step::LongPoll],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Step::KeepAlive => "A keep-alive",
            Step::NewConnection => "B new-connection",
            Step::WsHold => "C ws-hold",
            Step::WsEcho => "C ws-echo",
            Step::LongPoll => "D long-poll",
        }
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Direct,
    TetherCookie,
    TetherIphash,
    TetherPingora,
    Nginx,
    Haproxy,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Direct,
        Kind::TetherCookie,
        Kind::TetherIphash,
        Kind::TetherPingora,
        Kind::Nginx,
        Kind::Haproxy,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::TetherCookie => "tether-cookie",
            Kind::TetherIphash => "tether-iphash",
            Kind::TetherPingora => "tether-pingora",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    /// The row label of the table.
    fn label(self) -> &'static str {
        match self {
            Kind::Direct => "one node directly",
            Kind::TetherCookie => "tether, cookie",
            Kind::TetherIphash => "tether, ip_hash",
            Kind::TetherPingora => "tether `--engine pingora`, cookie",
            Kind::Nginx => "nginx, ip_hash",
            Kind::Haproxy => "HAProxy, cookie + leastconn",
        }
    }

    fn is_tether(self) -> bool {
        matches!(
            self,
            Kind::TetherCookie | Kind::TetherIphash | Kind::TetherPingora
        )
    }
}

/// How big and how long each measurement is.
struct Sizes {
    /// Length of an A, B or C-echo run.
    run: Duration,
    /// Ramp of the 64-client runs.
    ramp: Duration,
    /// Clients of A, B and C-echo.
    clients: usize,
    /// WebSockets held in C, their ramp, and how long past the ramp they may take to open.
    held: usize,
    hold_ramp: Duration,
    hold_extra: Duration,
    /// Echoes per WebSocket session in C-echo (then it reconnects).
    messages: u32,
    /// Concurrent long-polls in D, their hold time and ramp.
    polls: usize,
    poll_hold: Duration,
    poll_ramp: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                run: Duration::from_secs(2),
                ramp: Duration::from_millis(200),
                clients: 64,
                held: 1000,
                hold_ramp: Duration::from_secs(1),
                hold_extra: Duration::from_secs(2),
                messages: 1000,
                polls: 500,
                poll_hold: Duration::from_secs(3),
                poll_ramp: Duration::from_millis(500),
            }
        } else {
            Sizes {
                run: Duration::from_secs(5),
                ramp: Duration::from_millis(200),
                clients: 64,
                held: 5000,
                hold_ramp: Duration::from_secs(3),
                hold_extra: Duration::from_secs(2),
                messages: 1000,
                polls: 2000,
                poll_hold: Duration::from_secs(3),
                poll_ramp: Duration::from_secs(1),
            }
        }
    }
}

/// Client source addresses of every comparison run; the scale test uses its own range.
const SOURCES: &str = "127.0.1.0/24";
const SCALE_SOURCES: &str = "127.0.2.0/24";
/// The cookie secret of the tether targets (only ever used on loopback).
const SECRET: &str = "compare-bench-secret-0123456789abcdef";
/// How long a proxy may take to answer its first request.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// A run during which other processes used more than this share of one core is flagged.
const DISTURBED: f64 = 0.1;
/// A load process gets its duration plus its own 10 s hard grace plus this, then is killed.
const LOAD_SLACK: Duration = Duration::from_secs(25);

fn tether_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tether")
}

// ---------------------------------------------------------------------------------------------
// Child processes: captured output, a guard that kills the process group, Ctrl-C
// ---------------------------------------------------------------------------------------------

/// Process groups of every child still running, for the Ctrl-C / SIGTERM handler.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Temporary directories of the proxies, which that handler removes too.
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGKILL to process group `pgid` (every child is the leader of its own group, so this also
/// reaches nginx's workers).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// On Ctrl-C or SIGTERM: kill every child's group, remove the temporary directories, exit 130.
fn install_signal_handler() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("compare: interrupted; killing every process it started");
        for pgid in lock(&LIVE).drain(..) {
            kill_group(pgid);
        }
        for dir in lock(&DIRS).drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::process::exit(130);
    });
}

/// Text a child wrote to one of its pipes, with a condition variable to wait for a line.
#[derive(Default)]
struct Captured {
    state: Mutex<(String, bool)>,
    changed: Condvar,
}

impl Captured {
    /// Read `stream` line by line into a new `Captured` on a thread of its own.
    fn start(stream: impl Read + Send + 'static) -> Arc<Captured> {
        let sink = Arc::new(Captured::default());
        let writer = Arc::clone(&sink);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let mut state = lock(&writer.state);
                state.0.push_str(&line);
                state.0.push('\n');
                writer.changed.notify_all();
            }
            lock(&writer.state).1 = true;
            writer.changed.notify_all();
        });
        sink
    }

    fn text(&self) -> String {
        lock(&self.state).0.clone()
    }

    /// Wait until `pred` holds for the text, or the stream ends, or `deadline`; true if it held.
    fn wait_for(&self, deadline: Instant, pred: impl Fn(&str) -> bool) -> bool {
        let mut state = lock(&self.state);
        loop {
            if pred(&state.0) {
                return true;
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A child process in its own process group, killed (the whole group) when dropped.
struct Proc {
    name: String,
    child: Child,
    reaped: bool,
    stdout: Arc<Captured>,
    stderr: Arc<Captured>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Result<Proc, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        lock(&LIVE).push(child.id());
        let stdout = Captured::start(child.stdout.take().expect("piped stdout"));
        let stderr = Captured::start(child.stderr.take().expect("piped stderr"));
        Ok(Proc {
            name: name.to_string(),
            child,
            reaped: false,
            stdout,
            stderr,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Has it exited (by itself)? Then what is left of its group is killed too.
    fn has_exited(&mut self) -> bool {
        if self.reaped {
            return true;
        }
        let exited = matches!(self.child.try_wait(), Ok(Some(_)));
        if exited {
            kill_group(self.pid());
            self.forget();
        }
        exited
    }

    /// Wait for the process to exit by itself until `deadline`; kill it after that.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.forget();
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    self.kill();
                    return None;
                }
            }
        }
    }

    fn forget(&mut self) {
        self.reaped = true;
        let pid = self.pid();
        lock(&LIVE).retain(|p| *p != pid);
    }

    fn kill(&mut self) {
        if !self.reaped {
            kill_group(self.pid());
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.forget();
            // The rest of the group (nginx's workers) may take a moment to close its sockets.
            let deadline = Instant::now() + Duration::from_secs(5);
            while group_alive(self.pid()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The last lines of its stderr, to explain a failure.
    fn log_tail(&self) -> String {
        let text = self.stderr.text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// /proc readers
// ---------------------------------------------------------------------------------------------

/// The numeric fields of /proc/PID/stat after the command name and the state: [0] is field 4
/// (the parent), [10] and [11] are fields 14 and 15 (utime, stime).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    stat(pid).map(|(_, fields)| fields)
}

/// The state letter (field 3) of /proc/PID/stat and the numeric fields after it.
fn stat(pid: u32) -> Option<(char, Vec<u64>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = text[text.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.map(|f| f.parse().unwrap_or(0)).collect()))
}

/// Is any live process left in process group `pgid` (field 5 of /proc/PID/stat)?
fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|entry| {
        let pid = entry.file_name().to_str().and_then(|n| n.parse().ok());
        pid.and_then(stat).is_some_and(|(state, f)| {
            !matches!(state, 'Z' | 'X') && f.get(1) == Some(&u64::from(pgid))
        })
    })
}

/// Every live process now: (pid, parent, its CPU ticks, those of the children it reaped). A dead
/// one (zombie) is left out: its ticks count once its parent has reaped it (the nginx workers of
/// a proxy killed at the end of a run would otherwise look like someone else's work).
fn all_processes() -> Vec<(u32, u32, u64, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let (_, f) = stat(pid).filter(|(state, _)| !matches!(state, 'Z' | 'X'))?;
            let sum = |r: std::ops::Range<usize>| f.get(r).map_or(0, |t| t.iter().sum());
            Some((pid, *f.first()? as u32, sum(10..12), sum(12..14)))
        })
        .collect()
}

/// `pid` and all its descendants.
fn process_tree(pid: u32) -> Vec<u32> {
    descendants(&all_processes(), pid)
}

fn descendants(all: &[(u32, u32, u64, u64)], pid: u32) -> Vec<u32> {
    let mut parents: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(p, ppid, ..) in all {
        parents.entry(ppid).or_default().push(p);
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        tree.extend(parents.get(&tree[i]).into_iter().flatten());
        i += 1;
    }
    tree
}

/// This bench's ancestors when it started (init included): they reap orphans, ours too (nginx
/// workers whose master died first), and our parent can be re-parented while we run, so their
/// reaped children's ticks never count as other work.
static ANCESTORS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

fn ancestors(all: &[(u32, u32, u64, u64)]) -> Vec<u32> {
    let parent: BTreeMap<u32, u32> = all.iter().map(|&(p, pp, ..)| (p, pp)).collect();
    let mut chain = Vec::new();
    let mut p = std::process::id();
    while let Some(&pp) = parent.get(&p).filter(|pp| **pp != 0) {
        chain.push(pp);
        p = pp;
    }
    chain
}

/// The command name of a process.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

/// One process that is not ours: its parent, name and CPU ticks (its own plus those of the
/// children it reaped, so a build's short-lived compilers show in their cargo).
struct Other {
    ppid: u32,
    name: String,
    ticks: u64,
}

/// Every user-space process that is neither this bench nor one of its children, by pid:
/// whatever else ran on the machine during a run.
struct Others(BTreeMap<u32, Other>);

impl Others {
    fn now() -> Others {
        let all = all_processes();
        let ours = descendants(&all, std::process::id());
        let mut reapers = ancestors(&all);
        reapers.extend(ANCESTORS.get_or_init(|| ancestors(&all)));
        // Kernel threads (kthreadd, pid 2, and its children) work for everyone, ours included.
        Others(
            all.into_iter()
                .filter(|(pid, ppid, ..)| *pid != 2 && *ppid != 2 && !ours.contains(pid))
                .map(|(pid, ppid, own, reaped)| {
                    let reaped = if reapers.contains(&pid) { 0 } else { reaped };
                    let name = comm(pid);
                    let ticks = own + reaped;
                    (pid, Other { ppid, name, ticks })
                })
                .collect(),
        )
    }

    /// Ticks used since `earlier`, in total and by process name (largest first). A process that
    /// exited meanwhile was reaped by its parent, whose ticks now include all of the child's:
    /// what the child had used before `earlier` is taken off again.
    fn since(&self, earlier: &Others) -> (u64, Vec<(String, u64)>) {
        let mut by_name: BTreeMap<&str, i64> = BTreeMap::new();
        for (pid, o) in &self.0 {
            let before = earlier.0.get(pid).map_or(0, |e| e.ticks);
            *by_name.entry(&o.name).or_default() += o.ticks.saturating_sub(before) as i64;
        }
        for (pid, e) in &earlier.0 {
            if let Some(parent) = self.0.get(&e.ppid).filter(|_| !self.0.contains_key(pid)) {
                *by_name.entry(&parent.name).or_default() -= e.ticks as i64;
            }
        }
        let mut names: Vec<(String, u64)> = by_name
            .into_iter()
            .filter(|(_, t)| *t > 0)
            .map(|(n, t)| (n.to_string(), t as u64))
            .collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.1));
        (names.iter().map(|(_, t)| t).sum(), names)
    }
}

/// utime + stime (fields 14 and 15) in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    stat_fields(pid).map_or(0, |f| f.get(10).unwrap_or(&0) + f.get(11).unwrap_or(&0))
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l[key.len()..].split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// The soft open-file limit of a process.
fn nofile_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU, memory and descriptors of a process and its children, at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu_ticks: u64,
    rss_kib: u64,
    fds: u64,
}

impl Usage {
    fn of(pid: u32) -> Usage {
        process_tree(pid)
            .into_iter()
            .fold(Usage::default(), |u, p| Usage {
                cpu_ticks: u.cpu_ticks + cpu_ticks(p),
                rss_kib: u.rss_kib + status_kib(p, "VmRSS:"),
                fds: u.fds + fd_count(p),
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Tools: tether, nginx, HAProxy (installed when missing and we are root)
// ---------------------------------------------------------------------------------------------

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(1).map(|u| u == "0")
        })
        .unwrap_or(false)
}

/// Run a command to its end, at most `limit`; true if it exited 0.
fn run_bounded(name: &str, cmd: &mut Command, limit: Duration) -> bool {
    match Proc::spawn(name, cmd) {
        Ok(mut p) => {
            let ok = p
                .wait_until(Instant::now() + limit)
                .is_some_and(|s| s.success());
            if !ok {
                eprintln!("compare: {name} failed:\n{}", p.log_tail());
            }
            ok
        }
        Err(e) => {
            eprintln!("compare: {e}");
            false
        }
    }
}

/// `binary` from PATH, else installed from Debian package `package` when we are root (services
/// kept from starting by a temporary policy-rc.d), else None with a line saying why.
fn ensure_tool(binary: &str, package: &str) -> Option<PathBuf> {
    if let Some(p) = find_binary(binary) {
        return Some(p);
    }
    if !is_root() || find_binary("apt-get").is_none() {
        eprintln!(
            "compare: {binary} is not installed and this is not a root Debian shell: its rows \
             show n/a (install it with: sudo apt-get install {package})"
        );
        return None;
    }
    eprintln!("compare: installing {package} with apt-get (it is run in the foreground by this bench, never as a service)");
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists()
        && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok()
        && Command::new("chmod")
            .args(["755", "/usr/sbin/policy-rc.d"])
            .status()
            .is_ok_and(|s| s.success());
    let install = |name: &str| {
        run_bounded(
            name,
            Command::new("apt-get")
                .args(["install", "-y", "-qq", package])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            Duration::from_secs(300),
        )
    };
    let ok = install("apt-get install")
        || (run_bounded(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
            Duration::from_secs(300),
        ) && install("apt-get install"));
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    match find_binary(binary) {
        Some(p) if ok => Some(p),
        _ => {
            eprintln!("compare: could not install {package}: its rows show n/a");
            None
        }
    }
}

/// The first line a program prints for `flag` (on stdout or stderr).
fn version_line(bin: &Path, flag: &str) -> String {
    Command::new(bin)
        .arg(flag)
        .output()
        .ok()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

struct Tools {
    nginx: Option<PathBuf>,
    haproxy: Option<PathBuf>,
}

impl Tools {
    fn find(kinds: &[Kind]) -> Tools {
        let want = |k| kinds.contains(&k);
        Tools {
            nginx: want(Kind::Nginx)
                .then(|| ensure_tool("nginx", "nginx-light"))
                .flatten(),
            haproxy: want(Kind::Haproxy)
                .then(|| ensure_tool("haproxy", "haproxy"))
                .flatten(),
        }
    }

    fn nginx_version(&self) -> String {
        self.nginx.as_deref().map_or("n/a".into(), |b| {
            let line = version_line(b, "-v");
            line.rsplit('/').next().unwrap_or(&line).trim().to_string()
        })
    }

    fn haproxy_version(&self) -> String {
        self.haproxy.as_deref().map_or("n/a".into(), |b| {
            let line = version_line(b, "-v");
            line.split_whitespace().nth(2).unwrap_or(&line).to_string()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes and targets
// ---------------------------------------------------------------------------------------------

/// A port that was free a moment ago (the proxy binds it itself; a lost race is retried).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Poll until `addr` answers an HTTP request (any status), the process exits, or `limit`.
fn wait_http(addr: SocketAddr, proc: &mut Proc, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    while Instant::now() < deadline {
        if proc.has_exited() {
            return Err(format!("{} exited:\n{}", proc.name, proc.log_tail()));
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = b"GET /whoami HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n";
            let mut head = [0u8; 9];
            if s.write_all(req).is_ok()
                && s.read_exact(&mut head).is_ok()
                && head.starts_with(b"HTTP/1.")
            {
                return Ok(());
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    Err(format!(
        "{} did not answer on {addr} within {limit:?}:\n{}",
        proc.name,
        proc.log_tail()
    ))
}

struct Node {
    id: String,
    addr: SocketAddr,
    _proc: Proc,
}

/// Three `tether node`s (one thread each) on ports they pick themselves.
fn start_nodes() -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    for id in ["node-a", "node-b", "node-c"] {
        let mut proc = Proc::spawn(
            id,
            Command::new(tether_bin())
                .args([
                    "node",
                    "--id",
                    id,
                    "--listen",
                    "127.0.0.1:0",
                    "--threads",
                    "1",
                ])
                .env("RUST_LOG", "warn"),
        )?;
        // "node node-a listening on http://127.0.0.1:PORT"
        let marker = "listening on http://";
        proc.stdout
            .wait_for(Instant::now() + READY_LIMIT, |t| t.contains(marker));
        let text = proc.stdout.text();
        let addr: SocketAddr = text
            .split(marker)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("{id} did not say where it listens:\n{}", proc.log_tail()))?;
        wait_http(addr, &mut proc, READY_LIMIT)?;
        nodes.push(Node {
            id: id.to_string(),
            addr,
            _proc: proc,
        });
    }
    Ok(nodes)
}

/// One thing the load is sent to: the nodes directly, or a proxy process in front of them.
struct Target {
    kind: Kind,
    addr: SocketAddr,
    /// None for `direct`.
    proc: Option<Proc>,
    /// Config files, logs and pid files of the proxy.
    _dir: Option<tempfile::TempDir>,
    /// The process exited during the bench: its remaining runs are skipped.
    gone: bool,
}

impl Target {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn usage(&self) -> Option<Usage> {
        self.proc.as_ref().map(|p| Usage::of(p.pid()))
    }
}

fn tether_config(port: u16, nodes: &[Node], affinity: &str) -> String {
    let mut y = format!(
        "listen:\n  - address: \"127.0.0.1:{port}\"\nupstreams:\n  realtime:\n    nodes:\n"
    );
    for n in nodes {
        let _ = writeln!(y, "      - {{ id: {}, address: \"{}\" }}", n.id, n.addr);
    }
    y.push_str("    balance: least_conn\n    affinity:\n");
    y.push_str(affinity);
    y.push_str("    timeouts:\n      connect: 2s\n      read: 90s\n      tunnel_idle: 1h\n");
    y
}

const COOKIE: &str = "      mode: cookie\n      cookie:\n        secret_env: TETHER_SECRET\n";
const IP_HASH: &str = "      mode: ip_hash\n";

fn nginx_config(port: u16, nodes: &[Node], dir: &Path) -> String {
    let d = dir.display();
    let servers: String = nodes
        .iter()
        .map(|n| format!("        server {};\n", n.addr))
        .collect();
    format!(
        "daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 19000;
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' '';
    }}
    upstream nodes {{
        ip_hash;
{servers}        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 75s;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"
    )
}

fn haproxy_config(port: u16, nodes: &[Node]) -> String {
    let servers: String = nodes
        .iter()
        .map(|n| format!("    server {id} {} cookie {id}\n", n.addr, id = n.id))
        .collect();
    format!(
        "global
    nbthread 2
    maxconn 9000
defaults
    mode http
    option http-keep-alive
    option forwardfor
    maxconn 9000
    timeout connect 2s
    timeout client 90s
    timeout server 90s
    timeout http-request 30s
    timeout http-keep-alive 75s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance leastconn
    cookie SERVERID insert indirect nocache
{servers}"
    )
}

/// Start a target on a fresh port (three tries: the port may be taken between pick and bind).
fn start_target(kind: Kind, nodes: &[Node], tools: &Tools) -> Result<Target, String> {
    if kind == Kind::Direct {
        return Ok(Target {
            kind,
            addr: nodes[0].addr,
            proc: None,
            _dir: None,
            gone: false,
        });
    }
    let mut last = String::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        lock(&DIRS).push(dir.path().to_path_buf());
        let port = free_port();
        let mut cmd = match kind {
            Kind::TetherCookie | Kind::TetherIphash | Kind::TetherPingora => {
                let affinity = if kind == Kind::TetherIphash {
                    IP_HASH
                } else {
                    COOKIE
                };
                let file = dir.path().join("tether.yaml");
                std::fs::write(&file, tether_config(port, nodes, affinity))
                    .map_err(|e| format!("write {}: {e}", file.display()))?;
                let engine = if kind == Kind::TetherPingora {
                    "pingora"
                } else {
                    "tether"
                };
                let mut c = Command::new(tether_bin());
                c.arg("run")
                    .arg("--config")
                    .arg(&file)
                    .args(["--engine", engine])
                    .env("TETHER_SECRET", SECRET)
                    .env("RUST_LOG", "warn");
                c
            }
            Kind::Nginx => {
                let bin = tools.nginx.as_ref().ok_or("nginx is not installed")?;
                let file = dir.path().join("nginx.conf");
                std::fs::write(&file, nginx_config(port, nodes, dir.path()))
                    .map_err(|e| format!("write {}: {e}", file.display()))?;
                let mut c = Command::new(bin);
                c.arg("-p")
                    .arg(dir.path())
                    .arg("-e")
                    .arg(dir.path().join("error.log"))
                    .arg("-c")
                    .arg(&file);
                c
            }
            Kind::Haproxy => {
                let bin = tools.haproxy.as_ref().ok_or("haproxy is not installed")?;
                let file = dir.path().join("haproxy.cfg");
                std::fs::write(&file, haproxy_config(port, nodes))
                    .map_err(|e| format!("write {}: {e}", file.display()))?;
                let mut c = Command::new(bin);
                c.arg("-f").arg(&file).arg("-db");
                c
            }
            Kind::Direct => unreachable!("handled above"),
        };
        let mut proc = Proc::spawn(kind.name(), &mut cmd)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        match wait_http(addr, &mut proc, READY_LIMIT) {
            Ok(()) => {
                return Ok(Target {
                    kind,
                    addr,
                    proc: Some(proc),
                    _dir: Some(dir),
                    gone: false,
                })
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

// ---------------------------------------------------------------------------------------------
// Load runs
// ---------------------------------------------------------------------------------------------

fn secs(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Start `tether load --json` against `url` with `args`.
fn spawn_load(url: &str, args: &[String]) -> Result<Proc, String> {
    Proc::spawn(
        "tether load",
        Command::new(tether_bin())
            .args(["load", "--url", url, "--json"])
            .args(args)
            .env_remove("RUST_LOG"),
    )
}

/// Wait for a load process (at most `duration` + `LOAD_SLACK` from `started`) and parse its
/// JSON report.
fn finish_load(mut load: Proc, started: Instant, duration: Duration) -> Result<Value, String> {
    let status = load.wait_until(started + duration + LOAD_SLACK);
    // The pipes close when the process exits; give the reader a moment to take the last line.
    load.stdout
        .wait_for(Instant::now() + Duration::from_secs(5), |_| false);
    match status {
        Some(s) if s.success() => {
            let out = load.stdout.text();
            let line = out.lines().rev().find(|l| l.starts_with('{'));
            serde_json::from_str(line.unwrap_or_default())
                .map_err(|e| format!("tether load printed no report ({e}):\n{}", load.log_tail()))
        }
        Some(s) => Err(format!("tether load failed ({s}):\n{}", load.log_tail())),
        None => Err("tether load did not finish in time and was killed".into()),
    }
}

/// Run one load to its end, reading the target's usage before and after.
fn measured_load(
    target: &Target,
    args: &[String],
    duration: Duration,
) -> Result<(Value, Option<Usage>, Option<Usage>), String> {
    let before = target.usage();
    let started = Instant::now();
    let load = spawn_load(&target.url(), args)?;
    let report = finish_load(load, started, duration)?;
    Ok((report, before, target.usage()))
}

/// What one run of one target measured.
struct Run {
    round: usize,
    step: Step,
    kind: Kind,
    report: Value,
    /// CPU seconds of the proxy over the run (None: direct).
    cpu_s: Option<f64>,
    /// C-hold: the proxy's RSS before the WebSockets and while they were all open.
    rss_before_kib: Option<u64>,
    rss_held_kib: Option<u64>,
    /// C-hold: the load tool said every WebSocket was open before the RSS was read.
    all_open: bool,
    /// CPU seconds other processes (not this bench's) used during the run, the busiest of them
    /// (name, CPU-s), and the run's wall time.
    others_cpu_s: f64,
    others_top: Vec<(String, f64)>,
    wall_s: f64,
}

impl Run {
    fn num(&self, path: &[&str]) -> f64 {
        path.iter()
            .try_fold(&self.report, |v, k| v.get(k))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    }

    /// CPU seconds per million of `count`.
    fn cpu_per_million(&self, count: &str) -> Option<f64> {
        let n = self.num(&[count]);
        self.cpu_s.filter(|_| n > 0.0).map(|c| c / n * 1e6)
    }

    /// Did other processes use more than `DISTURBED` of a core during the run?
    fn disturbed(&self) -> bool {
        self.wall_s > 0.0 && self.others_cpu_s / self.wall_s > DISTURBED
    }

    fn rss_per_ws_kib(&self) -> Option<f64> {
        let held = self.num(&["held_at_end"]);
        match (self.rss_before_kib, self.rss_held_kib) {
            (Some(b), Some(h)) if held > 0.0 => Some((h as f64 - b as f64) / held),
            _ => None,
        }
    }

    fn json(&self) -> Value {
        json!({
            "round": self.round + 1,
            "step": self.step.name(),
            "target": self.kind.name(),
            "proxy_cpu_s": self.cpu_s,
            "rss_before_kib": self.rss_before_kib,
            "rss_held_kib": self.rss_held_kib,
            "rss_per_ws_kib": self.rss_per_ws_kib(),
            "all_open_when_measured": self.all_open,
            "others_cpu_s": self.others_cpu_s,
            "others_top": self.others_top,
            "wall_s": self.wall_s,
            "report": self.report,
        })
    }
}

fn cpu_seconds(before: Option<Usage>, after: Option<Usage>, tck: f64) -> Option<f64> {
    Some(after?.cpu_ticks.saturating_sub(before?.cpu_ticks) as f64 / tck)
}

/// The common load flags: flow, clients, duration, ramp, source addresses.
fn base_args(
    flow: &str,
    clients: usize,
    duration: Duration,
    ramp: Duration,
    sources: &str,
) -> Vec<String> {
    [
        "--flow",
        flow,
        "--clients",
        &clients.to_string(),
        "--duration",
        &secs(duration),
        "--ramp",
        &secs(ramp),
        "--source-range",
        sources,
    ]
    .map(String::from)
    .to_vec()
}

/// What every run needs besides its target.
struct Bench<'a> {
    sizes: Sizes,
    nodes: &'a [Node],
    tools: &'a Tools,
    /// Clock ticks per second of /proc/PID/stat.
    tck: f64,
}

/// One measurement of `step` on `target`.
fn run_step(bench: &Bench, step: Step, target: &Target, round: usize) -> Result<Run, String> {
    let sizes = &bench.sizes;
    let mut run = Run {
        round,
        step,
        kind: target.kind,
        report: Value::Null,
        cpu_s: None,
        rss_before_kib: None,
        rss_held_kib: None,
        all_open: false,
        others_cpu_s: 0.0,
        others_top: Vec::new(),
        wall_s: 0.0,
    };
    let (clients, d, ramp) = (sizes.clients, sizes.run, sizes.ramp);
    // Long-polls: one per client, the --requests budget being taken by the first polls, all in
    // flight at once; the duration only bounds the run.
    let poll_bound = sizes.poll_ramp + sizes.poll_hold + Duration::from_secs(10);
    let duration = if step == Step::LongPoll {
        poll_bound
    } else {
        d
    };
    let args = match step {
        Step::KeepAlive => base_args("http", clients, d, ramp, SOURCES),
        Step::NewConnection => {
            let mut a = base_args("http", clients, d, ramp, SOURCES);
            a.push("--new-connection".into());
            a
        }
        Step::WsEcho => {
            let mut a = base_args("ws", clients, d, ramp, SOURCES);
            a.extend(["--messages".into(), sizes.messages.to_string()]);
            a
        }
        Step::LongPoll => {
            let n = sizes.polls;
            let mut a = base_args("longpoll", n, poll_bound, sizes.poll_ramp, SOURCES);
            let path = format!("/poll?hold={}", sizes.poll_hold.as_millis());
            a.extend(["--requests".into(), n.to_string(), "--path".into(), path]);
            a.extend(["--timeout".into(), "10s".into()]);
            a
        }
        Step::WsHold => {
            // On a fresh process of the same target: memory that earlier runs left in its
            // allocator or pools would hide what the WebSockets take.
            let fresh = start_target(target.kind, bench.nodes, bench.tools)?;
            return hold_step(run, &fresh, sizes);
        }
    };
    let (report, before, after) = measured_load(target, &args, duration)?;
    run.report = report;
    run.cpu_s = cpu_seconds(before, after, bench.tck);
    Ok(run)
}

/// C-hold: open `sizes.held` WebSockets, read the proxy's RSS once all are open, let go (the
/// caller then stops this proxy process).
fn hold_step(mut run: Run, target: &Target, sizes: &Sizes) -> Result<Run, String> {
    let Some(before) = target.usage() else {
        return Err("skipped: RSS per WebSocket is measured on proxies only".into());
    };
    let duration = sizes.hold_ramp + sizes.hold_extra;
    let mut args = base_args("ws", sizes.held, duration, sizes.hold_ramp, SOURCES);
    args.push("--hold-open".into());
    let started = Instant::now();
    let load = spawn_load(&target.url(), &args)?;
    // Read the RSS once the tool says all are open, or just before its stop at the latest.
    let read_by = started + duration - Duration::from_millis(300);
    run.all_open = load
        .stderr
        .wait_for(read_by, |t| t.contains("WebSockets are open"));
    let held = target.usage();
    run.report = finish_load(load, started, duration)?;
    run.rss_before_kib = Some(before.rss_kib);
    run.rss_held_kib = held.map(|u| u.rss_kib);
    Ok(run)
}

/// One progress line for a finished run.
fn progress_line(run: &Run) -> String {
    let errors = run.num(&["errors_total"]);
    let figure = match run.step {
        Step::KeepAlive => format!(
            "{} req/s, p99 {}",
            rate(run.num(&["requests_per_s"])),
            ms(run.num(&["request_latency_us", "p99"]))
        ),
        Step::NewConnection => format!(
            "{} conn/s, p99 {}",
            rate(run.num(&["connections_per_s"])),
            ms(run.num(&["request_latency_us", "p99"]))
        ),
        Step::WsHold => format!(
            "{} held, {} KiB RSS per WebSocket{}",
            run.num(&["held_at_end"]),
            run.rss_per_ws_kib()
                .map_or("n/a".into(), |k| format!("{k:.1}")),
            if run.all_open {
                ""
            } else {
                " (not all open when measured)"
            }
        ),
        Step::WsEcho => format!(
            "{} echoes/s, p99 {}",
            rate(run.num(&["ws_round_trips_per_s"])),
            ms(run.num(&["ws_latency_us", "p99"]))
        ),
        Step::LongPoll => format!(
            "{} of {} polls completed, p99 {}",
            run.num(&["requests"]),
            run.num(&["clients"]),
            ms(run.num(&["request_latency_us", "p99"]))
        ),
    };
    let cpu = run
        .cpu_s
        .map_or(String::new(), |c| format!(", CPU {c:.2} s"));
    let others = if run.disturbed() {
        let top: Vec<String> = run
            .others_top
            .iter()
            .map(|(name, s)| format!("{name} {s:.1}"))
            .collect();
        format!(
            " [disturbed: other processes used {:.1} CPU-s: {}]",
            run.others_cpu_s,
            top.join(", ")
        )
    } else {
        String::new()
    };
    format!("{figure}{cpu}, errors {errors}{others}")
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

fn rate(x: f64) -> String {
    if x >= 100_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if x >= 1000.0 {
        format!("{:.1}k", x / 1000.0)
    } else {
        format!("{x:.0}")
    }
}

/// Microseconds as milliseconds.
fn ms(us: f64) -> String {
    let m = us / 1000.0;
    if m >= 100.0 {
        format!("{m:.0} ms")
    } else {
        format!("{m:.2} ms")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("n/a".into(), f)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "–".into(),
    }
}

/// One column of a scenario's table: a figure per run, shown as its median per target.
struct Column {
    title: &'static str,
    value: fn(&Run) -> Option<f64>,
    show: fn(f64) -> String,
}

/// A column of text made from all the runs of one target (not a median).
struct TextColumn {
    title: &'static str,
    cell: fn(&[&Run], Kind) -> String,
}

/// A scenario's table: its main figure with ratios (to direct when it is a rate; tether's to
/// nginx and HAProxy), the other figures, then errors and violations over all rounds.
struct Table {
    title: String,
    step: Step,
    main: Column,
    vs_direct: bool,
    rest: Vec<Column>,
    text: Option<TextColumn>,
}

/// Medians of a column for every target that ran.
fn medians(runs: &[&Run], value: fn(&Run) -> Option<f64>) -> BTreeMap<Kind, f64> {
    let mut by: BTreeMap<Kind, Vec<f64>> = BTreeMap::new();
    for r in runs {
        if let Some(v) = value(r) {
            by.entry(r.kind).or_default().push(v);
        }
    }
    by.into_iter()
        .filter_map(|(k, v)| Some((k, median(v)?)))
        .collect()
}

/// Errors over all rounds, with their kinds: `0`, or `12 (timeout 10, io 2)`.
fn errors_cell(runs: &[&Run], kind: Kind) -> String {
    let mut total = 0.0;
    let mut kinds: BTreeMap<String, f64> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.kind == kind) {
        total += r.num(&["errors_total"]);
        if let Some(Value::Object(m)) = r.report.get("errors") {
            for (k, v) in m {
                *kinds.entry(k.clone()).or_default() += v.as_f64().unwrap_or(0.0);
            }
        }
    }
    let detail: Vec<String> = kinds
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if detail.is_empty() {
        format!("{total}")
    } else {
        format!("{total} ({})", detail.join(", "))
    }
}

impl Table {
    fn head(&self) -> Vec<&str> {
        let mut head = vec!["target", self.main.title];
        if self.vs_direct {
            head.push("vs direct");
        }
        head.extend(["tether vs nginx", "tether vs HAProxy"]);
        head.extend(self.rest.iter().map(|c| c.title));
        head.extend(self.text.iter().map(|t| t.title));
        head.extend(["errors", "violations"]);
        head
    }

    /// The Markdown table of this scenario (nothing if it did not run).
    fn render(&self, out: &mut String, all: &[Run], kinds: &[Kind]) {
        let runs: Vec<&Run> = all.iter().filter(|r| r.step == self.step).collect();
        if runs.is_empty() {
            return;
        }
        let main = medians(&runs, self.main.value);
        let rest: Vec<_> = self.rest.iter().map(|c| medians(&runs, c.value)).collect();
        let head = self.head();
        let _ = writeln!(out, "\n### {}\n", self.title);
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(head.len() - 1));
        for &kind in kinds {
            let mine: Vec<&Run> = runs.iter().copied().filter(|r| r.kind == kind).collect();
            if mine.is_empty() && kind == Kind::Direct {
                // Not measured on the nodes directly (C1: memory is measured on proxies).
                continue;
            }
            if mine.is_empty() {
                let mut row = vec!["n/a".to_string(); head.len()];
                row[0] = kind.label().into();
                let _ = writeln!(out, "| {} |", row.join(" | "));
                continue;
            }
            let m = main.get(&kind).copied();
            let mut row = vec![kind.label().to_string(), opt(m, self.main.show)];
            if self.vs_direct {
                row.push(match kind {
                    Kind::Direct => "–".into(),
                    _ => ratio(m, main.get(&Kind::Direct).copied()),
                });
            }
            for other in [Kind::Nginx, Kind::Haproxy] {
                row.push(if kind.is_tether() {
                    ratio(m, main.get(&other).copied())
                } else {
                    "–".into()
                });
            }
            for (c, med) in self.rest.iter().zip(&rest) {
                row.push(opt(med.get(&kind).copied(), c.show));
            }
            row.extend(self.text.iter().map(|t| (t.cell)(&runs, kind)));
            row.push(errors_cell(&runs, kind));
            let violations: f64 = mine.iter().map(|r| r.num(&["violations"])).sum();
            row.push(format!("{violations}"));
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
    }
}

fn rate_col(title: &'static str, value: fn(&Run) -> Option<f64>) -> Column {
    Column {
        title,
        value,
        show: rate,
    }
}

fn cpu_col(title: &'static str, value: fn(&Run) -> Option<f64>) -> Column {
    Column {
        title,
        value,
        show: |x| format!("{x:.1}"),
    }
}

fn p99_col(value: fn(&Run) -> Option<f64>) -> Column {
    Column {
        title: "p99",
        value,
        show: ms,
    }
}

fn p99_http(r: &Run) -> Option<f64> {
    Some(r.num(&["request_latency_us", "p99"]))
}

fn p99_ws(r: &Run) -> Option<f64> {
    Some(r.num(&["ws_latency_us", "p99"]))
}

/// The tables of every scenario, in order.
fn tables(sizes: &Sizes) -> Vec<Table> {
    let (n, secs) = (sizes.clients, sizes.run.as_secs_f64());
    vec![
        Table {
            title: format!("A. Keep-alive GET `/whoami`, {n} connections, {secs:.0} s per run"),
            step: Step::KeepAlive,
            main: rate_col("requests/s", |r| Some(r.num(&["requests_per_s"]))),
            vs_direct: true,
            rest: vec![
                p99_col(p99_http),
                cpu_col("proxy CPU-s per M requests", |r| {
                    r.cpu_per_million("requests")
                }),
            ],
            text: None,
        },
        Table {
            title: format!(
                "B. A new connection per request (`Connection: close`), {n} clients, {secs:.0} s \
                 per run"
            ),
            step: Step::NewConnection,
            main: rate_col("connections/s", |r| Some(r.num(&["connections_per_s"]))),
            vs_direct: true,
            rest: vec![
                p99_col(p99_http),
                cpu_col("proxy CPU-s per M connections", |r| {
                    r.cpu_per_million("connections")
                }),
            ],
            text: None,
        },
        Table {
            title: format!(
                "C1. {} WebSockets held open (ramp {:.0} s): proxy memory",
                sizes.held,
                sizes.hold_ramp.as_secs_f64()
            ),
            step: Step::WsHold,
            main: Column {
                title: "RSS per open WebSocket",
                value: Run::rss_per_ws_kib,
                show: |k| format!("{k:.1} KiB"),
            },
            vs_direct: false,
            rest: vec![
                Column {
                    title: "held",
                    value: |r| Some(r.num(&["held_at_end"])),
                    show: |x| format!("{x:.0}"),
                },
                Column {
                    title: "proxy RSS while held",
                    value: |r| r.rss_held_kib.map(|k| k as f64),
                    show: |k| format!("{:.1} MiB", k / 1024.0),
                },
            ],
            text: None,
        },
        Table {
            title: format!("C2. WebSocket echo, {n} WebSockets, {secs:.0} s per run"),
            step: Step::WsEcho,
            main: rate_col("round trips/s", |r| Some(r.num(&["ws_round_trips_per_s"]))),
            vs_direct: true,
            rest: vec![
                p99_col(p99_ws),
                cpu_col("proxy CPU-s per M round trips", |r| {
                    r.cpu_per_million("ws_round_trips")
                }),
            ],
            text: None,
        },
        Table {
            title: format!(
                "D. {} concurrent {:.0}-second long-polls",
                sizes.polls,
                sizes.poll_hold.as_secs_f64()
            ),
            step: Step::LongPoll,
            main: Column {
                title: "proxy CPU-s",
                value: |r| r.cpu_s,
                show: |x| format!("{x:.2}"),
            },
            vs_direct: false,
            rest: vec![p99_col(p99_http)],
            text: Some(TextColumn {
                title: "completed (each round)",
                cell: completed_cell,
            }),
        },
    ]
}

/// Every scenario's table, in Markdown, and what to read them with.
fn render_tables(runs: &[Run], kinds: &[Kind], sizes: &Sizes, rounds: usize) -> String {
    let mut out = String::new();
    for t in tables(sizes) {
        t.render(&mut out, runs, kinds);
    }
    let _ = writeln!(
        out,
        "\nMedians of {rounds} round{}; errors and violations are totals over all rounds. \
         Ratios are the row's figure over the other's (rates: above 1 is better; CPU and \
         memory: below 1 is better). \"One node directly\" sends all load to one node (one \
         thread): where the node is the bottleneck (new connections, WebSocket echo) a proxy \
         spreading clients over the three nodes can beat it. nginx's `ip_hash` hashes the first \
         three octets of IPv4 addresses, so all clients (one /24) reach one node through it.",
        if rounds == 1 { "" } else { "s" }
    );
    let disturbed = runs.iter().filter(|r| r.disturbed()).count();
    let most = runs.iter().map(|r| r.others_cpu_s).fold(0.0, f64::max);
    let _ = if disturbed == 0 {
        writeln!(
            out,
            "\nThe machine was otherwise idle: other processes used at most {most:.2} CPU-s \
             during any run."
        )
    } else {
        writeln!(
            out,
            "\n**Disturbed:** other processes used more than {:.0}% of a core during {disturbed} \
             of {} runs (up to {most:.1} CPU-s in one run); those figures are noisier.",
            DISTURBED * 100.0,
            runs.len()
        )
    };
    out
}

/// D: completed polls of every round, e.g. `2000/2000, 2000/2000, 1998/2000`.
fn completed_cell(runs: &[&Run], kind: Kind) -> String {
    let cells: Vec<String> = runs
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| {
            let (done, want) = (r.num(&["requests"]), r.num(&["clients"]));
            let mark = if done < want { " **incomplete**" } else { "" };
            format!("{done}/{want}{mark}")
        })
        .collect();
    cells.join(", ")
}

// ---------------------------------------------------------------------------------------------
// Scale: as many WebSockets through one tether as its descriptors allow
// ---------------------------------------------------------------------------------------------

/// Descriptors left free in tether beyond its baseline (node pool, listeners, churn).
const SCALE_MARGIN: u64 = 100;

/// The scale test: its Markdown table and its raw result.
fn scale(nodes: &[Node], tools: &Tools) -> Result<(String, Value), String> {
    let target = start_target(Kind::TetherCookie, nodes, tools)?;
    let proc = target.proc.as_ref().expect("tether runs as a process");
    let limit = nofile_limit(proc.pid()).ok_or("cannot read tether's open-file limit")?;
    let before = Usage::of(proc.pid());
    // Every tunnel holds two descriptors in tether: the client's and the node's.
    let n = (limit.saturating_sub(before.fds + SCALE_MARGIN) / 2) as usize;
    let ramp = Duration::from_secs(10);
    let duration = ramp + Duration::from_secs(10);
    eprintln!(
        "compare: scale: tether's open-file limit is {limit}, {} in use: opening {n} WebSockets \
         over {ramp:?} from {SCALE_SOURCES}",
        before.fds
    );
    let mut args = base_args("ws", n, duration, ramp, SCALE_SOURCES);
    args.push("--hold-open".into());
    let started = Instant::now();
    let load = spawn_load(&target.url(), &args)?;
    let all_open = load
        .stderr
        .wait_for(started + duration - Duration::from_millis(300), |t| {
            t.contains("WebSockets are open")
        });
    let held_usage = Usage::of(proc.pid());
    let report = finish_load(load, started, duration)?;
    let run = Run {
        round: 0,
        step: Step::WsHold,
        kind: Kind::TetherCookie,
        cpu_s: None,
        rss_before_kib: Some(before.rss_kib),
        rss_held_kib: Some(held_usage.rss_kib),
        all_open,
        others_cpu_s: 0.0,
        others_top: Vec::new(),
        wall_s: 0.0,
        report,
    };
    let logged = proc.stderr.text().contains("open-file limit reached");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Scale: WebSockets held by one tether process\n\n\
         | open-file limit | asked | held | descriptors in tether while held | RSS per WebSocket | errors | \"open-file limit reached\" logged |\n\
         |---:|---:|---:|---:|---:|---|---|\n\
         | {limit} | {n} | {} | {} | {} | {} | {} |",
        run.num(&["held_at_end"]),
        held_usage.fds,
        opt(run.rss_per_ws_kib(), |k| format!("{k:.1} KiB")),
        errors_cell(&[&run], Kind::TetherCookie),
        if logged { "yes" } else { "no" },
    );
    if !all_open {
        let _ = writeln!(
            out,
            "\nNot every WebSocket was open when the memory was read."
        );
    }
    let mut raw = run.json();
    raw["open_file_limit"] = json!(limit);
    raw["asked"] = json!(n);
    raw["fds_while_held"] = json!(held_usage.fds);
    raw["limit_line_logged"] = json!(logged);
    Ok((out, raw))
}

fn write_json(path: &Path, value: &Value) {
    match std::fs::write(
        path,
        serde_json::to_string_pretty(value).unwrap_or_default(),
    ) {
        Ok(()) => eprintln!("compare: raw results in {}", path.display()),
        Err(e) => eprintln!("compare: cannot write {}: {e}", path.display()),
    }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/// The line above the tables: when, on what, with which versions, and how it was run.
fn header(tools: &Tools, cmd: &str, what: &str) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let versions = match (&tools.nginx, &tools.haproxy) {
        (None, None) => String::new(),
        _ => format!(
            ", nginx {}, HAProxy {}",
            tools.nginx_version(),
            tools.haproxy_version()
        ),
    };
    format!("**{date}**, Linux {kernel}, nproc {nproc}{versions}, `{cmd}`: {what}")
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        "cargo bench --bench compare".into()
    } else {
        format!("cargo bench --bench compare -- {}", args.join(" "))
    }
}

fn main() {
    let opts = Opts::parse();
    if !opts.bench && std::env::args().len() == 1 {
        // `cargo test --benches` runs bench binaries without --bench: do not start a 10-minute run.
        eprintln!("compare: run it with `cargo bench --bench compare` (or pass --bench)");
        return;
    }
    install_signal_handler();
    ANCESTORS.get_or_init(|| ancestors(&all_processes()));
    let started = Instant::now();
    let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 3 }).max(1);
    let sizes = Sizes::new(opts.quick);
    let kinds: Vec<Kind> = if opts.targets.is_empty() {
        Kind::ALL.to_vec()
    } else {
        Kind::ALL
            .into_iter()
            .filter(|k| opts.targets.contains(k))
            .collect()
    };
    let steps = steps_of(&opts.only);

    let tools = Tools::find(if opts.scale { &[] } else { &kinds });
    let nodes = match start_nodes() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("compare: cannot start the nodes: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "compare: nodes {}",
        nodes
            .iter()
            .map(|n| format!("{} {}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let cmd = command_line();
    if opts.scale {
        match scale(&nodes, &tools) {
            Ok((table, raw)) => {
                let what = "one tether process (2 workers, cookie affinity), three `tether node` \
                            backends, `tether load` holding WebSockets, all on loopback.";
                println!("{}\n{table}", header(&tools, &cmd, what));
                if let Some(path) = &opts.json {
                    write_json(path, &json!({ "command": cmd, "scale": raw }));
                }
                print_total(started);
            }
            Err(e) => {
                eprintln!("compare: scale: {e}");
                std::process::exit(1);
            }
        }
        return;
    }

    let mut targets = Vec::new();
    for &kind in &kinds {
        match start_target(kind, &nodes, &tools) {
            Ok(t) => {
                eprintln!("compare: {} on {}", kind.name(), t.addr);
                targets.push(t);
            }
            Err(e) => eprintln!("compare: {} is n/a: {e}", kind.name()),
        }
    }
    let bench = Bench {
        sizes,
        nodes: &nodes,
        tools: &tools,
        tck: clock_ticks_per_s(),
    };
    let runs = run_rounds(&bench, &mut targets, &steps, rounds);
    let what = format!(
        "{rounds} interleaved round{}, medians; three `tether node` backends (1 thread each), \
         `tether load` (1 thread) with clients bound to {SOURCES}, every process on the same \
         cores, all on loopback.",
        if rounds == 1 { "" } else { "s" }
    );
    println!("{}", header(&tools, &cmd, &what));
    print!("{}", render_tables(&runs, &kinds, &bench.sizes, rounds));
    if let Some(path) = &opts.json {
        let all = json!({
            "command": cmd,
            "rounds": rounds,
            "runs": runs.iter().map(Run::json).collect::<Vec<_>>(),
        });
        write_json(path, &all);
    }
    print_total(started);
    drop(targets);
    drop(nodes);
}

/// Every step of every round on every target, interleaved: in each round, each step runs on
/// every target in turn, the order rotated by round so no target always runs first or last.
fn run_rounds(bench: &Bench, targets: &mut [Target], steps: &[Step], rounds: usize) -> Vec<Run> {
    let mut runs = Vec::new();
    for round in 0..rounds {
        for &step in steps {
            for i in 0..targets.len() {
                let target = &targets[(i + round) % targets.len()];
                if target.gone || (step == Step::WsHold && target.kind == Kind::Direct) {
                    continue;
                }
                let what = format!(
                    "[round {}/{rounds}] {} {}",
                    round + 1,
                    step.name(),
                    target.kind.name()
                );
                let (others, started) = (Others::now(), Instant::now());
                match run_step(bench, step, target, round) {
                    Ok(mut run) => {
                        let (ticks, top) = Others::now().since(&others);
                        run.others_cpu_s = ticks as f64 / bench.tck;
                        run.others_top = top
                            .into_iter()
                            .take(3)
                            .map(|(name, t)| (name, t as f64 / bench.tck))
                            .collect();
                        run.wall_s = started.elapsed().as_secs_f64();
                        eprintln!("{what}: {}", progress_line(&run));
                        runs.push(run);
                    }
                    Err(e) => eprintln!("{what}: failed: {e}"),
                }
                for t in targets.iter_mut() {
                    if !t.gone && t.proc.as_mut().is_some_and(Proc::has_exited) {
                        t.gone = true;
                        eprintln!(
                            "compare: {} exited; its remaining runs are skipped",
                            t.kind.name()
                        );
                    }
                }
            }
        }
    }
    runs
}

/// The scenarios' steps, in order (all four when none is named).
fn steps_of(only: &[Scenario]) -> Vec<Step> {
    let mut scenarios = if only.is_empty() {
        vec![Scenario::A, Scenario::B, Scenario::C, Scenario::D]
    } else {
        only.to_vec()
    };
    scenarios.sort();
    scenarios.dedup();
    scenarios
        .into_iter()
        .flat_map(|s| Step::of(s).iter().copied())
        .collect()
}

fn print_total(started: Instant) {
    let t = started.elapsed().as_secs();
    println!("\nTotal bench time: {} min {} s.", t / 60, t % 60);
    eprintln!("compare: done in {} min {} s", t / 60, t % 60);
}

//! Child processes and /proc: captured output, a guard that kills a child's process group,
//! the Ctrl-C / SIGTERM handler, and the readers of CPU ticks, RSS, descriptors and limits.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Process groups of every child still running, for the Ctrl-C / SIGTERM handler.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Temporary directories of the proxies, which that handler removes too.
pub static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
pub fn install_signal_handler() {
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
        eprintln!(
            "{}: interrupted; killing every process it started",
            env!("CARGO_CRATE_NAME")
        );
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
pub struct Captured {
    pub state: Mutex<(String, bool)>,
    pub changed: Condvar,
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

    pub fn text(&self) -> String {
        lock(&self.state).0.clone()
    }

    /// Wait until `pred` holds for the text, or the stream ends, or `deadline`; true if it held.
    pub fn wait_for(&self, deadline: Instant, pred: impl Fn(&str) -> bool) -> bool {
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
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub reaped: bool,
    pub stdout: Arc<Captured>,
    pub stderr: Arc<Captured>,
    /// Where its stderr goes instead of `stderr`, when it logs a lot (the access-log bench).
    pub stderr_file: Option<PathBuf>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Proc, String> {
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
            stderr_file: None,
        })
    }

    /// Like [`spawn`](Self::spawn), with stderr appended to `file` (not kept in memory, and
    /// no reader thread of the bench's own competing for the CPU).
    pub fn spawn_logging_to(name: &str, cmd: &mut Command, file: &Path) -> Result<Proc, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        lock(&LIVE).push(child.id());
        let stdout = Captured::start(child.stdout.take().expect("piped stdout"));
        Ok(Proc {
            name: name.to_string(),
            child,
            reaped: false,
            stdout,
            stderr: Captured::start(std::io::empty()),
            stderr_file: Some(file.to_path_buf()),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Has it exited (by itself)? Then what is left of its group is killed too.
    pub fn has_exited(&mut self) -> bool {
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
    pub fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
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
    pub fn log_tail(&self) -> String {
        let text = match &self.stderr_file {
            Some(file) => std::fs::read_to_string(file).unwrap_or_default(),
            None => self.stderr.text(),
        };
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
pub fn all_processes() -> Vec<(u32, u32, u64, u64)> {
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
pub static ANCESTORS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

pub fn ancestors(all: &[(u32, u32, u64, u64)]) -> Vec<u32> {
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
pub struct Others(BTreeMap<u32, Other>);

impl Others {
    pub fn now() -> Others {
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
    pub fn since(&self, earlier: &Others) -> (u64, Vec<(String, u64)>) {
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
pub fn cpu_ticks(pid: u32) -> u64 {
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
pub fn nofile_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU, memory and descriptors of a process and its children, at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub fds: u64,
}

impl Usage {
    pub fn of(pid: u32) -> Usage {
        process_tree(pid)
            .into_iter()
            .fold(Usage::default(), |u, p| Usage {
                cpu_ticks: u.cpu_ticks + cpu_ticks(p),
                rss_kib: u.rss_kib + status_kib(p, "VmRSS:"),
                fds: u.fds + fd_count(p),
            })
    }
}

/// System calls a process tree makes over a stretch of time, counted by the kernel's
/// `raw_syscalls:sys_enter` tracepoint through `perf stat` (when `perf` is installed and may
/// read tracepoints): the bench's optional syscalls column.
pub struct Syscalls {
    perf: Child,
    out: PathBuf,
}

impl Syscalls {
    /// Start counting for `pid` and its descendants (nginx's and HAProxy's workers); `None`
    /// without a usable `perf`.
    pub fn start(pid: u32, dir: &Path) -> Option<Syscalls> {
        let perf = perf()?;
        let pids: Vec<String> = process_tree(pid).iter().map(u32::to_string).collect();
        let out = dir.join(format!("syscalls-{pid}-{}.csv", std::process::id()));
        let child = Command::new(perf)
            .args([
                "stat",
                "-x,",
                "-e",
                "raw_syscalls:sys_enter",
                "-p",
                &pids.join(","),
            ])
            .arg("-o")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // perf attaches within milliseconds; the load it measures ramps up for longer.
        std::thread::sleep(Duration::from_millis(100));
        Some(Syscalls { perf: child, out })
    }

    /// Stop counting (SIGINT: perf writes its count) and read the total.
    pub fn finish(mut self) -> Option<u64> {
        let _ = Command::new("kill")
            .args(["-INT", &self.perf.id().to_string()])
            .status();
        let _ = self.perf.wait();
        let text = std::fs::read_to_string(&self.out).ok()?;
        let _ = std::fs::remove_file(&self.out);
        text.lines()
            .filter(|l| l.contains("raw_syscalls:sys_enter"))
            .filter_map(|l| l.split(',').next()?.trim().parse::<u64>().ok())
            .reduce(|a, b| a + b)
    }
}

/// `perf`, when it is installed and may count the `raw_syscalls:sys_enter` tracepoint (root, or
/// a low enough `perf_event_paranoid`): the syscalls column is shown only then. Never installed
/// by the bench.
fn perf() -> Option<&'static Path> {
    static PERF: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PERF.get_or_init(|| {
        let perf = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .chain(["/usr/sbin", "/usr/bin"])
            .map(|dir| Path::new(dir).join("perf"))
            .find(|p| p.is_file())?;
        let out = Command::new(&perf)
            .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"])
            .stdout(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stderr);
        let counted = text.lines().any(|l| {
            l.contains("raw_syscalls:sys_enter")
                && l.split(',')
                    .next()
                    .is_some_and(|n| n.trim().parse::<u64>().is_ok())
        });
        if !counted {
            eprintln!(
                "compare: perf cannot count the raw_syscalls tracepoint here: no syscalls column"
            );
        }
        counted.then_some(perf)
    })
    .as_deref()
}

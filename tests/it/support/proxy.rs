//! tether as a separate process, the way users run it.

use command_fds::{CommandFdExt, FdMapping};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The secret every test proxy signs with (32 bytes).
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// A running tether process; killed (by its PID) when dropped.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    /// The admin address, when the config has `{admin}`.
    pub admin: Option<SocketAddr>,
    /// A second listen address, when the config has `{tls}` (for a TLS listener).
    pub tls: Option<SocketAddr>,
    pub config_path: PathBuf,
    /// Holds the config file for as long as the process runs.
    _dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    /// The thread copying stderr into `log`; done once every process holding the pipe exited.
    reader: JoinHandle<()>,
}

/// How to start tether beyond its config: what `Proxy::launch` takes.
#[derive(Default)]
pub struct Launch {
    pub env: Vec<(String, String)>,
    /// Arguments after `--config PATH`; with any, tether is started as
    /// `tether run --config PATH ARGS...`.
    pub args: Vec<String>,
    /// Run this instead of `tether_bin()`: a copy of the binary, or a wrapper script that ends
    /// in `exec tether "$@"`.
    pub program: Option<PathBuf>,
    /// `{listen}` is this address instead of a fresh one (a socket the test holds).
    pub listen: Option<SocketAddr>,
    /// Descriptors the process gets as 3, 4, ... (systemd socket activation).
    pub fds: Vec<OwnedFd>,
}

/// Why `Proxy::launch` returned no proxy: the process exited (with its status) or never answered.
#[derive(Debug)]
pub struct Failed {
    pub status: Option<ExitStatus>,
    pub log: String,
}

/// A port that was free a moment ago. tether binds it itself; `Proxy::start` retries on the rare
/// race where something else takes it first.
pub fn free_port(ip: [u8; 4]) -> u16 {
    TcpListener::bind(SocketAddr::from((ip, 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// The tether binary under test: this build, or `TETHER_TEST_BIN` (an older build, to show a
/// regression test failing without its fix: `TETHER_TEST_BIN=/path/to/old/tether cargo test`).
pub fn tether_bin() -> String {
    std::env::var("TETHER_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tether").to_string())
}

impl Proxy {
    /// Start tether with `yaml`, where `{listen}` is replaced by a fresh loopback address.
    /// Returns once tether answers HTTP on it.
    pub fn start(yaml: &str) -> Proxy {
        Proxy::start_with_env(yaml, &[])
    }

    /// Like `start`, with extra environment variables for tether.
    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Proxy {
        Proxy::start_with(yaml, env, &[])
    }

    /// Like `start`, as `tether run --config PATH ARGS...` (e.g. `["--threads", "1"]`).
    pub fn start_with_args(yaml: &str, args: &[&str]) -> Proxy {
        Proxy::start_with(yaml, &[], args)
    }

    fn start_with(yaml: &str, env: &[(&str, &str)], args: &[&str]) -> Proxy {
        Proxy::start_retrying(yaml, || Launch {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Launch::default()
        })
    }

    /// Like `start`, running `program` (e.g. a copy of the binary the test replaces later).
    pub fn start_from(program: &std::path::Path, yaml: &str) -> Proxy {
        Proxy::start_retrying(yaml, || Launch {
            program: Some(program.to_path_buf()),
            ..Launch::default()
        })
    }

    /// `launch` up to three times: a fresh port can be taken by something else before tether
    /// binds it.
    fn start_retrying(yaml: &str, launch: impl Fn() -> Launch) -> Proxy {
        let mut last = String::new();
        for _ in 0..3 {
            match Proxy::launch(yaml, launch()) {
                Ok(proxy) => return proxy,
                Err(Failed { status, log }) => {
                    let how = status.map_or("did not answer".into(), |s| format!("exited ({s})"));
                    last = format!("{how}; its log:\n{log}");
                }
            }
        }
        panic!("tether did not become ready: it {last}");
    }

    /// Start tether once as `how` says, and wait until it answers HTTP on `{listen}`.
    pub fn launch(yaml: &str, how: Launch) -> Result<Proxy, Failed> {
        let addr = how
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port([127, 0, 0, 1]))));
        let admin = yaml
            .contains("{admin}")
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_port([127, 0, 0, 1]))));
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("tether.yaml");
        let tls = yaml
            .contains("{tls}")
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_port([127, 0, 0, 1]))));
        let mut text = yaml.replace("{listen}", &addr.to_string());
        if let Some(a) = admin {
            text = text.replace("{admin}", &a.to_string());
        }
        if let Some(a) = tls {
            text = text.replace("{tls}", &a.to_string());
        }
        std::fs::write(&config_path, text).expect("write config");
        let program = how.program.unwrap_or_else(|| tether_bin().into());
        let mut command = Command::new(program);
        if !how.args.is_empty() {
            command.arg("run");
        }
        command
            .arg("--config")
            .arg(&config_path)
            .args(&how.args)
            .env("TETHER_SECRET", SECRET)
            .envs(how.env)
            .env(
                "RUST_LOG",
                std::env::var("TETHER_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mappings: Vec<FdMapping> = how
            .fds
            .into_iter()
            .enumerate()
            .map(|(i, fd)| FdMapping {
                parent_fd: fd,
                child_fd: 3 + i as i32,
            })
            .collect();
        command
            .fd_mappings(mappings)
            .expect("descriptors 3.. once each");
        let mut child = command.spawn().expect("spawn tether");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("TETHER_TEST_LOG").is_some() {
                    eprintln!("[tether] {line}");
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut proxy = Proxy {
            child,
            addr,
            admin,
            tls,
            config_path,
            _dir: dir,
            log,
            reader,
        };
        if proxy.wait_ready(Duration::from_secs(20)) {
            return Ok(proxy);
        }
        let status = proxy.child.try_wait().ok().flatten();
        if status.is_some() {
            // Exited: its last lines (the reason) are still on their way through the pipe.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !proxy.reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(Failed {
            status,
            log: proxy.log(),
        })
    }

    /// Poll until tether answers an HTTP request, or it exits, or `limit` passes.
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_millis(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) =
                std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
            {
                use std::io::{Read, Write};
                // Short, and tried again: a listening socket the test holds itself (systemd socket
                // activation) takes the connection even if tether never starts, and an exit must
                // be noticed.
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                // A path no route serves would be ideal, but any answer proves the HTTP stack is up.
                if s.write_all(
                    b"GET /__tether_ready HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n",
                )
                .is_ok()
                {
                    let mut buf = [0u8; 12];
                    if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 ") {
                        return true;
                    }
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        false
    }

    /// Replace the config file (for reload tests); `{listen}`/`{admin}` keep their addresses.
    pub fn rewrite_config(&self, yaml: &str) {
        let mut text = yaml.replace("{listen}", &self.addr.to_string());
        if let Some(a) = self.admin {
            text = text.replace("{admin}", &a.to_string());
        }
        std::fs::write(&self.config_path, text).expect("rewrite config");
    }

    /// Send a signal by name (`HUP`, `TERM`) to the tether process.
    pub fn signal(&self, name: &str) {
        signal_pid(self.child.id(), name);
    }

    /// The pid of the process this harness started.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (reaped here), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait for the process to exit, up to `limit` (the bound only stops a broken build hanging).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Names of the process's threads (`/proc/PID/task/*/comm`, at most 15 bytes each).
    pub fn threads(&self) -> Vec<String> {
        let dir = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Everything tether logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// Send a signal by name (`HUP`, `USR2`, `TERM`, `KILL`) to `pid`.
pub fn signal_pid(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Whether `pid` is a live process (not gone, not a zombie waiting for a parent to reap it).
pub fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(_) => false,
    }
}

/// The live children of `pid` (read from /proc: every process whose parent it is).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) && running(child) {
            out.push(child);
        }
    }
    out
}

/// Processes the test did not start itself (the new binary of an upgrade is tether's child, and
/// outlives it), killed by pid when the guard drops, also when the test panics. A pid is only
/// killed while its command line still contains its marker, so a recycled pid is never hit.
#[derive(Default)]
pub struct Strays(Vec<(u32, String)>);

impl Strays {
    /// Kill `pid` at the end of the test if it still runs with `marker` in its command line.
    pub fn add(&mut self, pid: u32, marker: &str) {
        self.0.push((pid, marker.to_string()));
    }
}

impl Drop for Strays {
    fn drop(&mut self) {
        for (pid, marker) in &self.0 {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if running(*pid) && String::from_utf8_lossy(&cmdline).contains(marker.as_str()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

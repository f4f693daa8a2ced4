//! tether as a separate process, the way users run it.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
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
        let mut last_log = String::new();
        for _ in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port([127, 0, 0, 1])));
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
            let mut command = Command::new(tether_bin());
            if !args.is_empty() {
                command.arg("run");
            }
            let mut child = command
                .arg("--config")
                .arg(&config_path)
                .args(args)
                .env("TETHER_SECRET", SECRET)
                .envs(env.iter().copied())
                .env(
                    "RUST_LOG",
                    std::env::var("TETHER_TEST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn tether");
            let log = Arc::new(Mutex::new(String::new()));
            let stderr = child.stderr.take().expect("stderr");
            let sink = Arc::clone(&log);
            std::thread::spawn(move || {
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
            };
            if proxy.wait_ready(Duration::from_secs(20)) {
                return proxy;
            }
            last_log = proxy.log();
        }
        panic!("tether did not become ready; its log:\n{last_log}");
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
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
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
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
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

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The cluster under soak: `tether node`s on one port at distinct 127.0.x.y addresses, tether
//! discovering them through the soak's DNS server, its config file and reloads, and a minimal
//! HTTP client for tether's admin API.

use crate::procs::{lock, Proc, DIRS};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The name tether resolves.
pub const NAME: &str = "realtime.soak.test";
/// tether's discovery refresh.
pub const REFRESH: Duration = Duration::from_secs(1);
/// The cookie secret (loopback only).
const SECRET: &str = "soak-bench-secret-0123456789abcdef0123";
/// How long a process may take to answer its first request.
const READY_LIMIT: Duration = Duration::from_secs(20);

pub fn tether_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tether")
}

/// Milliseconds since the Unix epoch: the clock the load tool's `--history` uses too.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The `k`-th node address: 127.0.0.2 to 127.0.0.251, then 127.0.1.2, ... (127.0.0.1 is
/// tether's and the DNS server's).
pub fn node_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (k / 250) as u8, (k % 250 + 2) as u8)
}

/// A port that was free on `ip` a moment ago.
pub fn free_port(ip: Ipv4Addr) -> Result<u16, String> {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("bind {ip}:0: {e}"))
}

/// Poll until `addr` answers `GET /whoami` (any status), the process exits, or `limit`.
fn wait_http(addr: SocketAddr, proc: &mut Proc, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if proc.has_exited() {
            return Err(format!("{} exited:\n{}", proc.name, proc.log_tail()));
        }
        if get(addr, "/whoami").is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "{} did not answer on {addr} within {limit:?}",
        proc.name
    ))
}

/// One `GET` with `Connection: close`: status and body (`Content-Length` bodies, or up to the
/// close). Bounded by 2 s per read.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    // The Host it connected to: tether's admin API answers only loopback names without a token.
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read {addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no response head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, body.to_string()))
}

/// A running `tether node` and its address (its id is `IP:PORT`, as tether names it); dropping
/// it kills the node.
pub struct Node {
    pub ip: Ipv4Addr,
    pub id: String,
    _proc: Proc,
}

/// Start `tether node --id IP:PORT --listen IP:PORT` and wait until it answers.
pub fn start_node(ip: Ipv4Addr, port: u16) -> Result<Node, String> {
    let id = format!("{ip}:{port}");
    let mut proc = Proc::spawn(
        &format!("node {id}"),
        Command::new(tether_bin())
            .args(["node", "--id", &id, "--listen", &id, "--threads", "1"])
            .env("RUST_LOG", "warn"),
    )?;
    wait_http(SocketAddr::from((ip, port)), &mut proc, READY_LIMIT)?;
    Ok(Node {
        ip,
        id,
        _proc: proc,
    })
}

/// Where tether listens and what its config file says.
pub struct Setup {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub dns: SocketAddr,
    pub node_port: u16,
    /// `cookie`, or `none` for the negative control.
    pub affinity: &'static str,
    /// The socket.io nodes of the second upstream (`socketio`), by id.
    pub socketio: Vec<(String, SocketAddr)>,
    config: PathBuf,
}

impl Setup {
    /// Generation `g` of the config: discovery, cookie affinity, an admin listener, the
    /// socket.io upstream under `/socket.io/`; reloads toggle `timeouts.read` (90s / 91s), which
    /// changes nothing for this traffic.
    pub fn config_text(&self, g: u64) -> String {
        let cookie = if self.affinity == "cookie" {
            "      cookie:\n        secret_env: TETHER_SECRET\n"
        } else {
            ""
        };
        let socketio_nodes: String = self
            .socketio
            .iter()
            .map(|(id, addr)| format!("      - {{ id: {id}, address: \"{addr}\" }}\n"))
            .collect();
        format!(
            "# tether under soak; generation {g} (rewritten and reloaded every 30 s)\n\
             listen:\n  - address: \"{listen}\"\n\
             admin:\n  address: \"{admin}\"\n\
             upstreams:\n  realtime:\n\
             \x20   discover:\n      dns: {NAME}\n      port: {port}\n      refresh: {refresh}ms\n      resolver: \"{dns}\"\n\
             \x20   balance: least_conn\n\
             \x20   affinity:\n      mode: {affinity}\n{cookie}\
             \x20   timeouts:\n      connect: 2s\n      read: {read}s\n      tunnel_idle: 1h\n\
             \x20 socketio:\n    nodes:\n{socketio_nodes}\
             \x20   affinity:\n      mode: {affinity}\n      engineio: true\n{cookie}\
             \x20   timeouts:\n      connect: 2s\n      read: {read}s\n      tunnel_idle: 1h\n\
             routes:\n  - {{ path_prefix: /socket.io/, upstream: socketio }}\n  - {{ path_prefix: /, upstream: realtime }}\n",
            listen = self.listen,
            admin = self.admin,
            port = self.node_port,
            refresh = REFRESH.as_millis(),
            dns = self.dns,
            read = 90 + g % 2,
            affinity = self.affinity,
        )
    }

    /// Write generation `g` (to a new file renamed over the old, so tether never reads half).
    pub fn write_config(&self, g: u64) -> Result<(), String> {
        let tmp = self.config.with_extension("yaml.new");
        std::fs::write(&tmp, self.config_text(g))
            .and_then(|()| std::fs::rename(&tmp, &self.config))
            .map_err(|e| format!("write {}: {e}", self.config.display()))
    }
}

/// tether under soak: its process, addresses and config file.
pub struct Tether {
    pub proc: Proc,
    pub setup: Setup,
    _dir: tempfile::TempDir,
}

impl Tether {
    /// Start tether with generation 0 of the config and wait until it serves (three tries: a
    /// port may be taken between pick and bind).
    pub fn start(
        dns: SocketAddr,
        node_port: u16,
        affinity: &'static str,
        socketio: &[(String, SocketAddr)],
    ) -> Result<Tether, String> {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
            lock(&DIRS).push(dir.path().to_path_buf());
            let lo = Ipv4Addr::LOCALHOST;
            let setup = Setup {
                listen: SocketAddr::from((lo, free_port(lo)?)),
                admin: SocketAddr::from((lo, free_port(lo)?)),
                dns,
                node_port,
                affinity,
                socketio: socketio.to_vec(),
                config: dir.path().join("tether.yaml"),
            };
            setup.write_config(0)?;
            let mut proc = Proc::spawn(
                "tether",
                Command::new(tether_bin())
                    .arg("run")
                    .arg("--config")
                    .arg(&setup.config)
                    .env("TETHER_SECRET", SECRET)
                    .env("RUST_LOG", "info")
                    .env("NO_COLOR", "1"),
            )?;
            match wait_http(setup.listen, &mut proc, READY_LIMIT) {
                Ok(()) => {
                    return Ok(Tether {
                        proc,
                        setup,
                        _dir: dir,
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// SIGHUP: re-read the config file.
    pub fn sighup(&self) -> Result<(), String> {
        let ok = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Ok(())
        } else {
            Err("kill -HUP tether failed".into())
        }
    }

    /// `GET /status` as JSON.
    pub fn status(&self) -> Result<serde_json::Value, String> {
        let (code, body) = get(self.setup.admin, "/status")?;
        if code != 200 {
            return Err(format!("/status answered {code}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("/status: {e}"))
    }

    /// The node ids of the churning upstream (`realtime`), sorted.
    pub fn node_ids(&self) -> Result<Vec<String>, String> {
        let s = self.status()?;
        let mut ids: Vec<String> = s["upstreams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|u| u["name"] == "realtime")
            .flat_map(|u| u["nodes"].as_array().into_iter().flatten())
            .filter_map(|n| n["id"].as_str().map(String::from))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// A counter or gauge of `/metrics` without labels (None if absent).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = get(self.setup.admin, "/metrics").ok()?;
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
    }

    /// Every series of a metric family, as `labels value` (e.g. `decision="new" 12`).
    pub fn series(&self, name: &str) -> Vec<(String, f64)> {
        let Ok((_, text)) = get(self.setup.admin, "/metrics") else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix('{')?;
                let (labels, value) = rest.rsplit_once("} ")?;
                Some((labels.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// tether's stderr so far.
    pub fn log(&self) -> String {
        self.proc.stderr.text()
    }
}

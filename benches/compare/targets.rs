//! The targets: the three `tether node`s, each kind of target's config and how it is started,
//! and the readiness check.

use crate::procs::{lock, Proc, Usage, DIRS};
use crate::tools::Tools;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Direct,
    TetherCookie,
    TetherBase,
    TetherIphash,
    Nginx,
    Haproxy,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Direct,
        Kind::TetherCookie,
        Kind::TetherBase,
        Kind::TetherIphash,
        Kind::Nginx,
        Kind::Haproxy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::TetherCookie => "tether-cookie",
            Kind::TetherBase => "tether-base",
            Kind::TetherIphash => "tether-iphash",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    /// The row label of the table.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Direct => "one node directly",
            Kind::TetherCookie => "tether, cookie",
            Kind::TetherBase => "tether baseline, cookie",
            Kind::TetherIphash => "tether, ip_hash",
            Kind::Nginx => "nginx, ip_hash",
            Kind::Haproxy => "HAProxy, cookie + leastconn",
        }
    }

    pub fn is_tether(self) -> bool {
        matches!(
            self,
            Kind::TetherCookie | Kind::TetherBase | Kind::TetherIphash
        )
    }
}

/// The cookie secret of the tether targets (only ever used on loopback).
const SECRET: &str = "compare-bench-secret-0123456789abcdef";
/// How long a proxy may take to answer its first request.
const READY_LIMIT: Duration = Duration::from_secs(20);

pub fn tether_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tether")
}

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

pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    pub _proc: Proc,
}

/// Three `tether node`s (one thread each) on ports they pick themselves.
pub fn start_nodes() -> Result<Vec<Node>, String> {
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
pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// The same proxy's TLS listener (HTTP/2 and HTTP/1.1 by ALPN, a self-signed certificate for
    /// `localhost`), for scenario E; None for `direct`.
    pub tls_addr: Option<SocketAddr>,
    /// None for `direct`.
    pub proc: Option<Proc>,
    /// Config files, logs and pid files of the proxy.
    pub _dir: Option<tempfile::TempDir>,
    /// The process exited during the bench: its remaining runs are skipped.
    pub gone: bool,
}

impl Target {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://localhost:PORT` of the TLS listener (the certificate names `localhost`).
    pub fn tls_url(&self) -> Option<String> {
        self.tls_addr
            .map(|a| format!("https://localhost:{}", a.port()))
    }

    pub fn usage(&self) -> Option<Usage> {
        self.proc.as_ref().map(|p| Usage::of(p.pid()))
    }
}

fn tether_config(port: u16, tls_port: u16, dir: &Path, nodes: &[Node], affinity: &str) -> String {
    let d = dir.display();
    let mut y = format!(
        "listen:\n  - address: \"127.0.0.1:{port}\"\n  - address: \"127.0.0.1:{tls_port}\"\n    \
         tls: {{ cert: \"{d}/cert.pem\", key: \"{d}/key.pem\" }}\nupstreams:\n  realtime:\n    nodes:\n"
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

/// A self-signed certificate for `localhost`, written into `dir` as `cert.pem`, `key.pem` and
/// (for HAProxy) both in `combined.pem`.
fn write_certificate(dir: &Path) -> Result<(), String> {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|e| format!("certificate: {e}"))?;
    let (cert, key) = (c.cert.pem(), c.signing_key.serialize_pem());
    for (name, text) in [
        ("cert.pem", cert.clone()),
        ("key.pem", key.clone()),
        ("combined.pem", format!("{cert}{key}")),
    ] {
        std::fs::write(dir.join(name), text).map_err(|e| format!("write {name}: {e}"))?;
    }
    Ok(())
}

fn nginx_config(port: u16, tls_port: u16, nodes: &[Node], dir: &Path) -> String {
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
        listen 127.0.0.1:{tls_port} ssl http2 reuseport backlog=4096;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        http2_max_concurrent_streams 128;
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

fn haproxy_config(port: u16, tls_port: u16, nodes: &[Node], dir: &Path) -> String {
    let d = dir.display();
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
    bind 127.0.0.1:{tls_port} ssl crt {d}/combined.pem alpn h2,http/1.1
    default_backend nodes
backend nodes
    balance leastconn
    cookie SERVERID insert indirect nocache
{servers}"
    )
}

/// Start a target on a fresh port (three tries: the port may be taken between pick and bind).
pub fn start_target(kind: Kind, nodes: &[Node], tools: &Tools) -> Result<Target, String> {
    if kind == Kind::Direct {
        return Ok(Target {
            kind,
            addr: nodes[0].addr,
            tls_addr: None,
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
        let tls_port = free_port();
        write_certificate(dir.path())?;
        let mut log_file = None;
        let mut cmd = match kind {
            Kind::TetherCookie | Kind::TetherBase | Kind::TetherIphash => {
                let affinity = if kind == Kind::TetherIphash {
                    IP_HASH
                } else {
                    COOKIE
                };
                let file = dir.path().join("tether.yaml");
                std::fs::write(
                    &file,
                    tether_config(port, tls_port, dir.path(), nodes, affinity),
                )
                .map_err(|e| format!("write {}: {e}", file.display()))?;
                // The baseline runs another tether binary with tether-cookie's config.
                let bin = match kind {
                    Kind::TetherBase => tools.baseline.as_deref().ok_or("no --baseline given")?,
                    _ => Path::new(tether_bin()),
                };
                let mut c = Command::new(bin);
                c.arg("run")
                    .arg("--config")
                    .arg(&file)
                    .env("TETHER_SECRET", SECRET)
                    .env("RUST_LOG", "warn");
                if tools.access_log && kind != Kind::TetherBase {
                    // The access log at info, the rest at warn; its lines go to a file.
                    c.env("RUST_LOG", "warn,tether::access=info");
                    log_file = Some(dir.path().join("tether.log"));
                }
                c
            }
            Kind::Nginx => {
                let bin = tools.nginx.as_ref().ok_or("nginx is not installed")?;
                let file = dir.path().join("nginx.conf");
                std::fs::write(&file, nginx_config(port, tls_port, nodes, dir.path()))
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
                std::fs::write(&file, haproxy_config(port, tls_port, nodes, dir.path()))
                    .map_err(|e| format!("write {}: {e}", file.display()))?;
                let mut c = Command::new(bin);
                c.arg("-f").arg(&file).arg("-db");
                c
            }
            Kind::Direct => unreachable!("handled above"),
        };
        let mut proc = match &log_file {
            Some(file) => Proc::spawn_logging_to(kind.name(), &mut cmd, file)?,
            None => Proc::spawn(kind.name(), &mut cmd)?,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        match wait_http(addr, &mut proc, READY_LIMIT) {
            Ok(()) => {
                return Ok(Target {
                    kind,
                    addr,
                    tls_addr: Some(SocketAddr::from(([127, 0, 0, 1], tls_port))),
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

//! A real socket.io cluster (three Node.js servers) behind tether, driven by 200 real
//! socket.io-client clients with the default transports: long-polling first, then the upgrade.

use crate::support::{Proxy, COOKIE_AFFINITY};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `tests/socketio` (socket.io 4.x) or `tests/socketio2` (2.x): one server.js and client.js each,
/// with the same flags and the same JSON.
pub(crate) fn dir(package: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(package)
}

/// One `node server.js` process, killed by PID on drop.
pub(crate) struct SioNode {
    id: String,
    port: u16,
    child: Child,
}

impl SioNode {
    /// A node of `tests/<package>/server.js`.
    pub(crate) fn start(package: &str, id: &str) -> SioNode {
        SioNode::start_with(package, id, &[])
    }

    /// A node of `tests/<package>/server.js` with extra flags (`--ids tilde`).
    pub(crate) fn start_with(package: &str, id: &str, extra: &[&str]) -> SioNode {
        assert!(
            dir(package).join("node_modules/socket.io").exists(),
            "socket.io is not installed: run `make test` (or `npm ci --prefix tests/{package}`)"
        );
        let mut child = Command::new("node")
            .args(["server.js", "--id", id, "--port", "0"])
            .args(extra)
            .current_dir(dir(package))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is needed for the socket.io tests");
        // The server prints `LISTENING <port>` once it accepts connections: our readiness probe.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("socket.io node {id} said {line:?}"));
        SioNode {
            id: id.into(),
            port,
            child,
        }
    }
}

impl SioNode {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The node's own `/stats` (read directly, not through tether).
    pub(crate) fn stats(&self) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("stats");
        s.write_all(b"GET /stats HTTP/1.1\r\nhost: n\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

impl Drop for SioNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_clients(proxy: &Proxy, nodes: &[SioNode], clients: usize) -> serde_json::Value {
    run_clients_with("socketio", &proxy.url(""), nodes, clients, &[])
}

/// `tests/<package>/client.js` against `url` with `extra` flags (`--cookies off`, ...); its JSON.
/// Blocks until the clients are done.
pub(crate) fn run_clients_with(
    package: &str,
    url: &str,
    nodes: &[SioNode],
    clients: usize,
    extra: &[&str],
) -> serde_json::Value {
    let stats: Vec<String> = nodes
        .iter()
        .map(|n| format!("http://127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("node")
        .args(["client.js", "--url", url, "--clients", &clients.to_string()])
        .args([
            "--messages",
            "20",
            "--stats",
            &stats.join(","),
            "--timeout-ms",
            "90000",
        ])
        .args(extra)
        .current_dir(dir(package))
        .stderr(Stdio::inherit())
        .output()
        .expect("run client.js");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("client.js printed {text:?}: {e}"))
}

pub(crate) fn cluster_config(nodes: &[SioNode], affinity: &str) -> String {
    let mut y =
        String::from("listen:\n  - address: \"{listen}\"\nupstreams:\n  realtime:\n    nodes:\n");
    for n in nodes {
        y.push_str(&format!(
            "      - {{ id: {}, address: \"127.0.0.1:{}\" }}\n",
            n.id, n.port
        ));
    }
    y.push_str("    balance: round_robin\n    affinity:\n");
    for line in affinity.lines() {
        y.push_str(&format!("      {line}\n"));
    }
    y
}

pub(crate) fn cluster() -> Vec<SioNode> {
    cluster_of("socketio")
}

/// Three nodes of `tests/<package>/server.js`.
pub(crate) fn cluster_of(package: &str) -> Vec<SioNode> {
    ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| SioNode::start(package, id))
        .collect()
}

#[test]
fn two_hundred_socketio_clients_through_tether_never_lose_their_session() {
    let nodes = cluster();
    let proxy = Proxy::start(&cluster_config(&nodes, COOKIE_AFFINITY));
    let r = run_clients(&proxy, &nodes, 200);
    assert_eq!(r["connected"], 200, "{r}");
    assert_eq!(r["connectErrors"], 0, "{r}");
    assert_eq!(r["sessionUnknown"], 0, "{r}");
    assert_eq!(
        r["upgraded"], 200,
        "every client upgraded to WebSocket: {r}"
    );
    assert_eq!(r["acks"], 200 * 20, "{r}");
    assert_eq!(r["acksFromOtherNode"], 0, "{r}");
    let spread = r["firstNodes"].as_object().unwrap();
    assert_eq!(spread.len(), 3, "clients spread over all nodes: {r}");
}

/// The same run without affinity must fail: this is what proves the test above can.
#[test]
fn without_affinity_the_same_run_shows_session_errors() {
    let nodes = cluster();
    let proxy = Proxy::start(&cluster_config(&nodes, "mode: none"));
    let r = run_clients(&proxy, &nodes, 50);
    let broken = r["sessionUnknown"].as_u64().unwrap_or(0)
        + r["connectErrors"].as_u64().unwrap_or(0)
        + r["acksFromOtherNode"].as_u64().unwrap_or(0);
    assert!(
        broken > 0,
        "a non-sticky proxy should break socket.io sessions: {r}"
    );
    assert!(r["sessionUnknown"].as_u64().unwrap_or(0) > 0, "{r}");
}

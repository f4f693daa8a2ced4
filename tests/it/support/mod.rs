//! The test harness: real demo nodes in this process, tether as a child process, real clients.

pub mod browser;
pub mod client;
pub mod dns;
pub mod front;
pub mod h2;
pub mod pebble;
pub mod proxy;
pub mod recorder;
pub mod strict;
pub mod tls;
pub mod wsnode;

pub use client::{echo_many, Client};
pub use proxy::Proxy;
use std::net::SocketAddr;
use tether::demo::Node;

/// Start `n` demo nodes called node-a, node-b, ... on ephemeral loopback ports.
pub async fn nodes(n: usize) -> Vec<Node> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("node-{}", (b'a' + i as u8) as char);
        out.push(
            Node::spawn(&id, SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .expect("spawn node"),
        );
    }
    out
}

/// Demo nodes named `ids` on 127.0.0.2, 127.0.0.3, ... all on one port, as DNS discovery
/// expects (records carry addresses, the config the port). Returns the nodes and the port.
pub async fn nodes_on_one_port(ids: &[&str]) -> (Vec<Node>, u16) {
    'again: for _ in 0..5 {
        let port = proxy::free_port([127, 0, 0, 2]);
        let mut out = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let ip = [127, 0, 0, 2 + i as u8];
            match Node::spawn(id, SocketAddr::from((ip, port))).await {
                Ok(n) => out.push(n),
                // Something else took the port on one of the addresses: pick another.
                Err(_) => {
                    for n in &out {
                        n.stop().await;
                    }
                    continue 'again;
                }
            }
        }
        return (out, port);
    }
    panic!("no port free on every 127.0.0.x address");
}

/// One entry of an upstream's `nodes:` list, indented as [`config`] writes it.
pub fn node_line(id: impl std::fmt::Display, address: impl std::fmt::Display) -> String {
    format!("      - {{ id: {id}, address: \"{address}\" }}\n")
}

/// A config with one upstream over `nodes`, listening on `{listen}`; `affinity` is the YAML body
/// of the `affinity:` key (e.g. `"mode: ip_hash"`).
pub fn config(nodes: &[Node], affinity: &str, extra_upstream: &str) -> String {
    let mut y =
        String::from("listen:\n  - address: \"{listen}\"\nupstreams:\n  realtime:\n    nodes:\n");
    for n in nodes {
        y.push_str(&node_line(n.id(), n.addr()));
    }
    y.push_str("    affinity:\n");
    for line in affinity.lines() {
        y.push_str(&format!("      {line}\n"));
    }
    for line in extra_upstream.lines() {
        y.push_str(&format!("    {line}\n"));
    }
    y
}

/// The admin API's `/status` of a proxy started with `{admin}` in its config.
pub async fn admin_status(proxy: &Proxy) -> serde_json::Value {
    let r = Client::new(proxy.admin.expect("admin"))
        .get("/status")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("status json")
}

/// Wait (bounded, polling `/status`) until `upstream` has `n` nodes: a reload or a discovery
/// round has been applied.
pub async fn wait_for_nodes(proxy: &Proxy, upstream: &str, n: usize) {
    let start = std::time::Instant::now();
    loop {
        let status = admin_status(proxy).await;
        let count = status["upstreams"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["name"] == upstream))
            .and_then(|u| u["nodes"].as_array())
            .map_or(0, Vec::len);
        if count == n {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{upstream} has {count} nodes, not {n}: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The header every state-changing admin call carries (`POST /upstreams/...`, `POST /reload`):
/// without it (or a bearer token) the admin API answers 403, as it does to a cross-site form.
pub const ADMIN_INTENT: (&str, &str) = ("x-tether-admin", "1");

/// Cookie affinity signed with the test secret.
pub const COOKIE_AFFINITY: &str = "mode: cookie\ncookie:\n  secret_env: TETHER_SECRET";

/// The samples of tether's `/metrics`.
pub async fn metrics(proxy: &Proxy) -> Vec<prometheus_parse::Sample> {
    let text = Client::new(proxy.admin.expect("admin"))
        .get("/metrics")
        .await
        .body;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines)
        .expect("Prometheus text format")
        .samples
}

/// The sum of `name`'s samples with these labels.
pub fn counter(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v as u64,
            _ => 0,
        })
        .sum()
}

/// Wait (bounded, 10 s, polling) until `pred` holds; fails the test with `what` otherwise.
pub async fn until(pred: impl Fn() -> bool, what: &str) {
    let start = std::time::Instant::now();
    while !pred() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "not within 10 s: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

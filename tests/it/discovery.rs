//! DNS discovery against a real DNS server whose records change while tether runs: nodes come
//! and go, open tunnels to the nodes that remain are untouched, and a failing DNS server keeps
//! the last good set.

use crate::support::admin_status as status;
use crate::support::dns::Dns;
use crate::support::{self, echo_many, Client, Proxy};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A discovering upstream over `realtime.test` at `dns`, cookie affinity, an admin listener.
fn config(dns: &Dns, port: u16) -> String {
    format!(
        "listen:\n  - address: \"{{listen}}\"\nadmin:\n  address: \"{{admin}}\"\nupstreams:\n  realtime:\n    discover:\n      dns: realtime.test\n      port: {port}\n      refresh: 100ms\n      resolver: \"{}\"\n    affinity:\n      mode: cookie\n      cookie:\n        secret_env: TETHER_SECRET\n",
        dns.addr
    )
}

fn node_ids(status: &serde_json::Value) -> BTreeSet<String> {
    status["upstreams"][0]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(String::from))
        .collect()
}

/// Poll `/status` until `pred` holds (a readiness probe; the bound only stops a broken build).
async fn until(proxy: &Proxy, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if pred(&status(proxy).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never saw {what}: {}", status(proxy).await);
}

fn ids(port: u16, lasts: &[u8]) -> BTreeSet<String> {
    lasts
        .iter()
        .map(|l| format!("127.0.0.{l}:{port}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_nodes_follow_the_records_and_tunnels_to_remaining_nodes_stay_open() {
    let (nodes, port) = support::nodes_on_one_port(&["node-a", "node-b", "node-c", "node-d"]).await;
    let dns = Dns::start().await;
    dns.set("realtime.test", &[ip(2), ip(3), ip(4)]);
    let proxy = Proxy::start(&config(&dns, port));

    // The first lookup happens before tether serves: it starts with the three nodes, named by
    // their addresses.
    let s = status(&proxy).await;
    assert_eq!(node_ids(&s), ids(port, &[2, 3, 4]), "{s}");
    assert_eq!(s["upstreams"][0]["discovery"]["nodes"], 3, "{s}");

    // Clients on every node, and one open WebSocket per node.
    let mut clients = Vec::new();
    for _ in 0..30 {
        let mut c = Client::new(proxy.addr);
        let node = c.get("/whoami").await.node().to_string();
        clients.push((c, node));
    }
    let mut tunnels = Vec::new();
    for id in ["node-a", "node-b", "node-c"] {
        let (c, _) = clients
            .iter_mut()
            .find(|(_, n)| n == id)
            .unwrap_or_else(|| panic!("no client landed on {id}"));
        let (ws, _, greeted_by) = c.ws("/ws").await;
        assert_eq!(greeted_by, id, "the WebSocket follows the client's pin");
        tunnels.push((id, ws));
    }

    // node-c's record goes, node-d's arrives.
    dns.set("realtime.test", &[ip(2), ip(3), ip(5)]);
    until(&proxy, "the new node set", |s| {
        node_ids(s) == ids(port, &[2, 3, 5])
    })
    .await;

    // Tunnels were not touched: the ones to remaining nodes echo, and so does the removed
    // node's (a removed node's tunnels stay until they close, as after a reload).
    for (_, ws) in &mut tunnels {
        echo_many(ws, 10).await;
    }
    assert_eq!(
        nodes[2].stats().open_websockets,
        1,
        "node-c's tunnel is still open"
    );

    // Clients of the remaining nodes keep their node; node-c's clients are re-pinned.
    let mut moved = 0;
    for (c, before) in &mut clients {
        let r = c.get("/whoami").await;
        assert_eq!(r.status, 200);
        if before == "node-c" {
            assert_ne!(r.node(), "node-c", "node-c is gone from DNS");
            assert!(
                r.new_cookie().is_some(),
                "a re-pinned client gets a new cookie"
            );
            moved += 1;
        } else {
            assert_eq!(r.node(), before, "a client of a remaining node stays");
        }
    }
    assert!(moved > 0);

    // New clients reach the new node.
    let mut fresh = BTreeSet::new();
    for _ in 0..30 {
        fresh.insert(
            Client::new(proxy.addr)
                .get("/whoami")
                .await
                .node()
                .to_string(),
        );
    }
    assert!(
        fresh.contains("node-d"),
        "new clients reach node-d: {fresh:?}"
    );
    assert!(!fresh.contains("node-c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dns_server_keeps_the_last_good_nodes() {
    let (_nodes, port) = support::nodes_on_one_port(&["node-a", "node-b"]).await;
    let dns = Dns::start().await;
    dns.set("realtime.test", &[ip(2), ip(3)]);
    let proxy = Proxy::start(&config(&dns, port));
    let mut client = Client::new(proxy.addr);
    let pinned = client.get("/whoami").await.node().to_string();

    dns.servfail(true);
    let failed_before = status(&proxy).await["upstreams"][0]["discovery"]["failed_rounds"]
        .as_u64()
        .unwrap_or(0);
    until(&proxy, "two failed lookup rounds", |s| {
        s["upstreams"][0]["discovery"]["failed_rounds"].as_u64() >= Some(failed_before + 2)
    })
    .await;
    let s = status(&proxy).await;
    assert_eq!(node_ids(&s), ids(port, &[2, 3]), "{s}");
    assert!(
        s["upstreams"][0]["discovery"]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("realtime.test: ")),
        "{s}"
    );
    assert_eq!(client.get("/whoami").await.node(), pinned);

    // A name that disappears (NXDOMAIN) is a failure too, not "scale to zero".
    dns.servfail(false);
    dns.set("realtime.test", &[]);
    let rounds = s["upstreams"][0]["discovery"]["rounds"]
        .as_u64()
        .unwrap_or(0);
    until(&proxy, "two more rounds", |s| {
        s["upstreams"][0]["discovery"]["rounds"].as_u64() >= Some(rounds + 2)
    })
    .await;
    assert_eq!(node_ids(&status(&proxy).await), ids(port, &[2, 3]));
    assert_eq!(client.get("/whoami").await.node(), pinned);

    // Once it answers again, its answer applies.
    dns.set("realtime.test", &[ip(2)]);
    until(&proxy, "node-b dropped", |s| node_ids(s) == ids(port, &[2])).await;
    let m = Client::new(proxy.admin.expect("admin"))
        .get("/metrics")
        .await;
    assert!(
        m.body
            .contains("tether_discovered_nodes{upstream=\"realtime\"} 1"),
        "{}",
        m.body
    );
    assert!(m
        .body
        .contains("tether_discovery_lookups_total{result=\"failed\",upstream=\"realtime\"}"));
}

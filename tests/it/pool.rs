//! The upstream pool under node churn: idle connections to a node that left the config, or that
//! died, are closed by the sweep instead of sitting in `CLOSE_WAIT` until the descriptor limit
//! stops the proxy (with DNS discovery of Kubernetes pods, every rollout left some behind).

use crate::support::{self, Client, Proxy};
use std::time::{Duration, Instant};

/// TCP sockets on this machine whose remote end is `port` on loopback, by state
/// (`/proc/net/tcp`): (established, close_wait). Only tether connects to the nodes here.
fn sockets_to(port: u16) -> (usize, usize) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let mut counts = (0, 0);
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(remote), Some(state)) = (cols.get(2), cols.get(3)) else {
            continue;
        };
        let rport = remote
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        if rport != Some(port) {
            continue;
        }
        match *state {
            "01" => counts.0 += 1,
            "08" => counts.1 += 1,
            _ => {}
        }
    }
    counts
}

/// Fill tether's pools: `clients` keep-alive clients, `rounds` requests each, all at once.
async fn traffic(proxy: &Proxy, clients: usize, rounds: usize) {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(addr);
            for _ in 0..rounds {
                assert_eq!(c.get("/whoami").await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Wait (bounded) until no socket of tether's leads to `port`, in any live state.
async fn until_no_sockets_to(port: u16, what: &str) {
    let start = Instant::now();
    loop {
        let (established, close_wait) = sockets_to(port);
        if established + close_wait == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: {established} established and {close_wait} CLOSE_WAIT sockets to :{port} remain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn yaml(nodes: &[tether::demo::Node]) -> String {
    // A long idle timeout: what closes the connections below must be the sweep's other rules.
    support::config(
        nodes,
        "mode: none",
        "balance: round_robin\ntimeouts: { idle: 1h }",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_by_reload_and_stopped_leaves_no_sockets_behind() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&yaml(&nodes));
    traffic(&proxy, 200, 3).await;
    let gone = nodes[2].addr().port();
    let (pooled, _) = sockets_to(gone);
    assert!(pooled > 0, "the pool should hold connections to node-c");

    proxy.rewrite_config(&yaml(&nodes[..2]));
    proxy.signal("HUP");
    let start = Instant::now();
    while !proxy.log().contains("config reloaded") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes[2].stop().await;
    traffic(&proxy, 50, 2).await;
    until_no_sockets_to(gone, "after node-c left the config and stopped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_dies_in_place_has_its_idle_connections_closed() {
    let nodes = support::nodes(2).await;
    let proxy = Proxy::start(&yaml(&nodes));
    traffic(&proxy, 100, 2).await;
    let dead = nodes[1].addr().port();
    assert!(
        sockets_to(dead).0 > 0,
        "the pool should hold connections to node-b"
    );
    // No reload: node-b stays in the config, and nobody asks for it again.
    nodes[1].stop().await;
    until_no_sockets_to(dead, "after node-b died").await;
}

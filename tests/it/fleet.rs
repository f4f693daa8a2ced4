//! Replicas agree: two tether processes with the same config and secret, and no balancer in
//! front, put every client on the same node whichever of them it reaches.

use crate::support::dns::Dns;
use crate::support::{self, Client, Proxy, COOKIE_AFFINITY};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// Requests per client, alternating between the two replicas.
const ROUNDS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_issued_by_one_replica_pins_to_the_same_node_on_the_other() {
    let nodes = support::nodes(3).await;
    let yaml = support::config(&nodes, COOKIE_AFFINITY, "");
    let replicas = [Proxy::start(&yaml), Proxy::start(&yaml)];
    let mut used = BTreeSet::new();
    for i in 0..100 {
        let mut c = Client::new(replicas[i % 2].addr);
        let mut seen = Vec::new();
        for round in 0..ROUNDS {
            c.via(replicas[(i + round) % 2].addr);
            let r = c.get("/whoami").await;
            assert_eq!(r.status, 200);
            seen.push(r.node().to_string());
            if round > 0 {
                assert!(
                    r.new_cookie().is_none(),
                    "client {i}: the other replica honoured the cookie"
                );
            }
        }
        assert!(
            seen.iter().all(|n| *n == seen[0]),
            "client {i} moved between nodes: {seen:?}"
        );
        used.insert(seen[0].clone());
    }
    assert_eq!(used.len(), 3, "clients spread over every node: {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_over_discovered_nodes_places_each_address_on_the_same_node_on_both() {
    let (_nodes, port) = support::nodes_on_one_port(&["node-a", "node-b", "node-c"]).await;
    let dns = Dns::start().await;
    // The records come back in a different order each time: placement must not care.
    let ips: Vec<IpAddr> = (2..5).map(|l| IpAddr::from([127, 0, 0, l])).collect();
    dns.set("realtime.test", &ips);
    let yaml = format!(
        "listen:\n  - address: \"{{listen}}\"\nupstreams:\n  realtime:\n    discover: {{ dns: realtime.test, port: {port}, refresh: 1s, resolver: \"{}\" }}\n    affinity: {{ mode: ip_hash }}\n",
        dns.addr
    );
    let first = Proxy::start(&yaml);
    dns.set("realtime.test", &[ips[2], ips[0], ips[1]]);
    let second = Proxy::start(&yaml);

    let mut placement = HashMap::new();
    for i in 0..100u8 {
        let source = IpAddr::from([127, 0, 1, i + 1]);
        let mut c = Client::from_ip(first.addr, source);
        let mut seen = Vec::new();
        for round in 0..ROUNDS {
            c.via(if (usize::from(i) + round) % 2 == 0 {
                first.addr
            } else {
                second.addr
            });
            let r = c.get("/whoami").await;
            assert_eq!(r.status, 200);
            seen.push(r.node().to_string());
        }
        assert!(
            seen.iter().all(|n| *n == seen[0]),
            "{source} moved between nodes: {seen:?}"
        );
        placement.insert(source, seen[0].clone());
    }
    let used: BTreeSet<_> = placement.values().collect();
    assert_eq!(used.len(), 3, "addresses spread over every node: {used:?}");
}

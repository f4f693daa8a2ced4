//! ip_hash affinity: the full client address picks the node, stably, and clients spread.

use crate::support::{self, Client, Proxy};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_address_keeps_its_node_and_addresses_spread() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: ip_hash", ""));
    let mut tasks = Vec::new();
    for last in 2..=200u8 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
            let mut seen = Vec::new();
            // A new client (so a new connection) each time: stickiness must not depend on it.
            for _ in 0..5 {
                let r = Client::from_ip(addr, ip).get("/whoami").await;
                assert_eq!(r.status, 200);
                assert!(r.new_cookie().is_none(), "ip_hash sets no cookie");
                seen.push(r.node().to_string());
            }
            (ip, seen)
        }));
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        let (ip, seen) = t.await.unwrap();
        assert!(seen.iter().all(|n| *n == seen[0]), "{ip} moved: {seen:?}");
        *per_node.entry(seen[0].clone()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(
        per_node.values().all(|&n| n >= 30),
        "uneven spread over 199 addresses: {per_node:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_with_the_same_config_places_every_address_the_same() {
    let nodes = support::nodes(3).await;
    let cfg = support::config(&nodes, "mode: ip_hash", "");
    let (p1, p2) = (Proxy::start(&cfg), Proxy::start(&cfg));
    for last in 2..=60u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 1, last));
        let a = Client::from_ip(p1.addr, ip).get("/whoami").await;
        let b = Client::from_ip(p2.addr, ip).get("/whoami").await;
        assert_eq!(a.node(), b.node(), "{ip}");
    }
}

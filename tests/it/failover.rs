//! A node dies: its clients are re-pinned with new cookies, everyone else stays put.

use crate::support::{self, Client, Proxy, COOKIE_AFFINITY};
use std::net::{IpAddr, Ipv4Addr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_clients_are_repinned_and_the_others_keep_theirs() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));
    let mut clients = Vec::new();
    for _ in 0..60 {
        let mut c = Client::new(proxy.addr);
        let node = c.get("/whoami").await.node().to_string();
        clients.push((c, node));
    }
    assert!(clients.iter().any(|(_, n)| n == "node-b"));
    // A WebSocket held by a client of another node must survive node-b's death.
    let holder = clients.iter_mut().find(|(_, n)| n != "node-b").unwrap();
    let holder_node = holder.1.clone();
    let (mut ws, _, ws_node) = holder.0.ws("/ws").await;
    assert_eq!(ws_node, holder_node);

    nodes[1].stop().await;

    for (c, before) in clients.iter_mut() {
        let old_cookie = c.jar.get(support::client::COOKIE).cloned();
        let r = c.get("/whoami").await;
        assert_eq!(r.status, 200, "{}", r.body);
        if before == "node-b" {
            assert_ne!(r.node(), "node-b");
            let fresh = r
                .new_cookie()
                .expect("a re-pinned client gets a new cookie");
            assert_ne!(Some(fresh), old_cookie);
            // ...and stays on its new node.
            let next = c.get("/whoami").await;
            assert_eq!(next.node(), r.node());
            assert!(next.new_cookie().is_none());
        } else {
            assert_eq!(r.node(), before.as_str(), "a client of a live node moved");
            assert!(
                r.new_cookie().is_none(),
                "a client of a live node got a new cookie"
            );
        }
    }
    support::echo_many(&mut ws, 20).await;
}

/// When a client's node dies, the requests it has in flight (all carrying the old cookie) are
/// re-pinned to one node, not spread by the balancer, so they agree on where its new session
/// lives; clients from other addresses still spread over the remaining nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_requests_in_flight_when_its_node_dies_all_move_to_one_node() {
    let nodes = support::nodes(4).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));
    // Clients from distinct addresses, pinned to node-b.
    let mut on_b = Vec::new();
    for last in 2..=120u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 2, last));
        let mut c = Client::from_ip(proxy.addr, ip);
        if c.get("/whoami").await.node() == "node-b" {
            on_b.push((ip, c.jar.get(support::client::COOKIE).cloned().unwrap()));
        }
    }
    assert!(on_b.len() >= 12, "{} clients on node-b", on_b.len());
    nodes[1].stop().await;

    let mut landed = std::collections::BTreeSet::new();
    for (ip, cookie) in &on_b {
        // Eight requests at once, each on its own connection, all with the old cookie.
        let replies = futures_util::future::join_all((0..8).map(|_| {
            let mut c = Client::from_ip(proxy.addr, *ip);
            c.jar
                .insert(support::client::COOKIE.to_string(), cookie.clone());
            async move { c.get("/whoami").await }
        }))
        .await;
        let at: std::collections::BTreeSet<String> =
            replies.iter().map(|r| r.node().to_string()).collect();
        assert!(replies.iter().all(|r| r.status == 200));
        assert_eq!(at.len(), 1, "client {ip}: one re-pin, not {at:?}");
        assert!(!at.contains("node-b"));
        landed.extend(at);
    }
    assert!(
        landed.len() >= 2,
        "node-b's clients all moved to {landed:?}: a herd"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_node_down_clients_get_a_503_not_a_hang() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));
    let mut pinned = Client::new(proxy.addr);
    assert_eq!(pinned.get("/whoami").await.status, 200);
    for n in &nodes {
        n.stop().await;
    }
    for mut c in [pinned, Client::new(proxy.addr)] {
        // The bound only keeps a broken build from hanging the suite.
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), c.get("/whoami"))
            .await
            .expect("503 must come without waiting");
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "no node is available\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_clients_of_a_dead_node_move_to_the_next_node_on_the_ring() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: ip_hash", ""));
    let mut owners = Vec::new();
    for last in 2..=100u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 2, last));
        owners.push((
            ip,
            Client::from_ip(proxy.addr, ip)
                .get("/whoami")
                .await
                .node()
                .to_string(),
        ));
    }
    nodes[0].stop().await;
    for (ip, before) in owners {
        let r = Client::from_ip(proxy.addr, ip).get("/whoami").await;
        assert_eq!(r.status, 200);
        if before == "node-a" {
            assert_ne!(r.node(), "node-a");
        } else {
            assert_eq!(r.node(), before, "{ip} moved although its node is alive");
        }
    }
}

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

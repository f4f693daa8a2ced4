//! Configurable limits with clear answers: per-IP connection caps (429), per-node tunnel caps
//! (new clients elsewhere, 503 when full), and a shorter head timeout closing a slowloris.

use crate::support::{self, Client, Proxy, COOKIE_AFFINITY};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_connection_cap_gets_429_and_others_are_served() {
    let nodes = support::nodes(1).await;
    let mut cfg = support::config(&nodes, "mode: none", "");
    cfg.push_str("limits:\n  max_connections_per_ip: 4\n");
    let proxy = Proxy::start(&cfg);
    let me = IpAddr::V4(Ipv4Addr::new(127, 0, 5, 1));
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = Client::from_ip(proxy.addr, me);
        assert_eq!(c.get("/whoami").await.status, 200);
        held.push(c);
    }
    let over = Client::from_ip(proxy.addr, me).get("/whoami").await;
    assert_eq!(over.status, 429, "{}", over.body);
    let other = Client::from_ip(proxy.addr, IpAddr::V4(Ipv4Addr::new(127, 0, 5, 2)))
        .get("/whoami")
        .await;
    assert_eq!(other.status, 200);
    // A closed connection frees its slot (polled: the close reaches tether asynchronously).
    drop(held.pop());
    let mut status = 0;
    for _ in 0..200 {
        status = Client::from_ip(proxy.addr, me).get("/whoami").await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_sends_new_websockets_elsewhere_and_503_when_all_are_full() {
    let nodes = support::nodes(2).await;
    let proxy = Proxy::start(&support::config(
        &nodes,
        COOKIE_AFFINITY,
        "max_tunnels_per_node: 2",
    ));
    let mut open = Vec::new();
    for _ in 0..4 {
        let (ws, _, node) = Client::new(proxy.addr).ws("/ws").await;
        open.push((ws, node));
    }
    let per_node = |id: &str| open.iter().filter(|(_, n)| n == id).count();
    assert_eq!(
        (per_node("node-a"), per_node("node-b")),
        (2, 2),
        "full nodes pass new clients on"
    );
    // All full: a new client's upgrade is refused with 503; its plain requests still work.
    let mut c = Client::new(proxy.addr);
    let tcp = c.tcp().await.unwrap();
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/ws", proxy.addr),
    )
    .unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("expected a 503, got {other:?}"),
    }
    assert_eq!(c.get("/whoami").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_head_timeout_closes_a_slowloris_with_408() {
    let nodes = support::nodes(1).await;
    let mut cfg = support::config(&nodes, "mode: none", "");
    cfg.push_str("limits:\n  head_timeout: 500ms\n");
    let proxy = Proxy::start(&cfg);
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    let mut out = Vec::new();
    // The bound only keeps a broken build from hanging; tether closes it after 500 ms.
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

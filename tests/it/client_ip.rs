//! The real client address: X-Forwarded-For only from trusted proxies, PROXY protocol v1 and v2.
//! Each checks where ip_hash placed the request against the ring computed with the library API,
//! so a spoofed address would show up as the wrong node.

use crate::support::{self, Client, Proxy};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tether::affinity::ring::{ip_key, Ring};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn owner(ip: IpAddr) -> String {
    let ring = Ring::new([("node-a", 1), ("node-b", 1), ("node-c", 1)]);
    let i = ring.get(ip_key(ip, &mut [0; 16])).unwrap();
    ["node-a", "node-b", "node-c"][i].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_an_untrusted_peer_cannot_move_a_client() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: ip_hash", ""));
    for last in 2..40u8 {
        let me = IpAddr::V4(Ipv4Addr::new(127, 0, 3, last));
        for spoof in ["203.0.113.1", "198.51.100.2", "10.0.0.1, 192.0.2.4"] {
            let r = Client::from_ip(proxy.addr, me)
                .request("/echo", &[("x-forwarded-for", spoof)])
                .await;
            assert_eq!(r.node(), owner(me), "{me} spoofing {spoof}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_used() {
    let nodes = support::nodes(3).await;
    let mut cfg = support::config(&nodes, "mode: ip_hash", "");
    cfg.push_str("client_ip:\n  trusted_proxies: [\"127.0.4.0/24\", \"10.9.9.9\"]\n");
    let proxy = Proxy::start(&cfg);
    let balancer = IpAddr::V4(Ipv4Addr::new(127, 0, 4, 1));
    let mut nodes_seen = std::collections::HashSet::new();
    for last in 1..60u8 {
        let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, last));
        // The client, then a trusted hop in the chain, then the trusted balancer itself.
        let xff = format!("{client}, 10.9.9.9");
        let r = Client::from_ip(proxy.addr, balancer)
            .request("/echo", &[("x-forwarded-for", &xff)])
            .await;
        assert_eq!(r.node(), owner(client), "{client}");
        nodes_seen.insert(r.node().to_string());
    }
    assert_eq!(
        nodes_seen.len(),
        3,
        "forwarded clients spread over the nodes"
    );
}

async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("an answer or a close");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_name_the_client_and_garbage_is_closed() {
    let nodes = support::nodes(3).await;
    let cfg = support::config(&nodes, "mode: ip_hash", "").replacen(
        "listen:\n  - address: \"{listen}\"\n",
        "listen:\n  - address: \"{listen}\"\n  - address: \"{tls}\"\n    proxy_protocol: true\n",
        1,
    );
    let proxy = Proxy::start(&cfg);
    let pp = proxy.tls.unwrap();
    let request = b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

    let mut v1 = b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 80\r\n".to_vec();
    v1.extend_from_slice(request);
    let answer = exchange(pp, &v1).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\"x-forwarded-for\":\"198.51.100.9\""),
        "{answer}"
    );
    assert!(
        answer.contains(&format!(
            "x-node: {}",
            owner("198.51.100.9".parse().unwrap())
        )),
        "{answer}"
    );

    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 198, 51, 100, 77, 127, 0, 0, 1, 0x15, 0xb3, 0, 80,
    ]);
    v2.extend_from_slice(request);
    let answer = exchange(pp, &v2).await;
    assert!(
        answer.contains("\"x-forwarded-for\":\"198.51.100.77\""),
        "{answer}"
    );
    assert!(
        answer.contains(&format!(
            "x-node: {}",
            owner("198.51.100.77".parse().unwrap())
        )),
        "{answer}"
    );

    let before: u64 = nodes.iter().map(|n| n.stats().requests).sum();
    for garbage in [
        &request[..],
        b"PROXY TCP4 nonsense\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x99\x11\0\x0c",
    ] {
        assert_eq!(
            exchange(pp, garbage).await,
            "",
            "closed without an answer: {garbage:?}"
        );
    }
    assert_eq!(
        nodes.iter().map(|n| n.stats().requests).sum::<u64>(),
        before
    );
}

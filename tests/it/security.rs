//! Attacks spoken as raw bytes: slowloris, header floods, connection bursts, hostile cookies.
//! Each asserts what reached the node (or that the proxy kept serving), never just "no crash".

use crate::support::{self, client::COOKIE, Client, Proxy, COOKIE_AFFINITY};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn status_of(proxy: &Proxy, request: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_slowloris_connections_do_not_stop_a_normal_client() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: none", ""));
    let mut slow = Vec::new();
    for i in 0..100 {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        // Half a head, then nothing: each holds a connection open as long as tether allows.
        s.write_all(format!("GET /slow/{i} HTTP/1.1\r\nHost: t\r\nX-Slow: ").as_bytes())
            .await
            .unwrap();
        slow.push(s);
    }
    for _ in 0..20 {
        let r = Client::new(proxy.addr).get("/whoami").await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        nodes[0].stats().requests,
        20 + 1,
        "no half-sent head reached the node"
    );
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_floods_are_refused_with_431() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: none", ""));
    let before = nodes[0].stats().requests;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert!(status_of(&proxy, big.as_bytes())
        .await
        .starts_with("HTTP/1.1 431"));
    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..10_000 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(status_of(&proxy, many.as_bytes())
        .await
        .starts_with("HTTP/1.1 431"));
    assert_eq!(nodes[0].stats().requests, before);
    assert_eq!(Client::new(proxy.addr).get("/whoami").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_two_thousand_dropped_connections_leaves_the_proxy_serving() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));
    let mut tasks = Vec::new();
    for i in 0..2_000u32 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            if let Ok(mut s) = TcpStream::connect(addr).await {
                match i % 4 {
                    0 => {}
                    1 => drop(s.write_all(b"GET / HTT").await),
                    2 => drop(s.write_all(b"\x16\x03\x01garbage\r\n\r\n").await),
                    _ => drop(
                        s.write_all(b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n")
                            .await,
                    ),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for _ in 0..20 {
        assert_eq!(Client::new(proxy.addr).get("/whoami").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cookies_get_a_normal_answer_and_a_fresh_pin() {
    let nodes = support::nodes(2).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));
    for value in [
        "A".repeat(10 * 1024),
        "\u{1F600}".repeat(50),
        "x".repeat(39),
        format!("{}=", "A".repeat(38)),
    ] {
        let mut c = Client::new(proxy.addr);
        c.jar.insert(COOKIE.into(), value.clone());
        c.jar.insert("other".into(), "1".into());
        let r = c.get("/whoami").await;
        assert_eq!(r.status, 200, "{}", &value[..value.len().min(40)]);
        assert!(r.new_cookie().is_some());
    }
}

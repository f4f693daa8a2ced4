//! The edge: WebSocket handshake validation, the Origin allow-list against Cross-Site WebSocket
//! Hijacking, cookie key rotation, request-target limits. Raw bytes where a client would normalise.

use crate::support::{self, client::COOKIE, Client, Proxy, COOKIE_AFFINITY};
use std::time::Duration;
use tether::affinity::CookiePins;
use tether::config::CookieSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Send raw bytes and read the answer's head (all these tests judge).
async fn raw(proxy: &Proxy, request: &str) -> String {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn upgrade(method: &str, extra: &str) -> String {
    format!("{method} /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_websocket_handshakes_are_refused_before_any_node() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: none", ""));
    let before = nodes[0].stats().requests;
    let v13 = format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n");
    for (what, req, status) in [
        ("not a GET", upgrade("POST", &v13), "400"),
        (
            "no key",
            upgrade("GET", "Sec-WebSocket-Version: 13\r\n"),
            "400",
        ),
        (
            "short key",
            upgrade(
                "GET",
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n",
            ),
            "400",
        ),
        (
            "key not base64",
            upgrade(
                "GET",
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!\r\n",
            ),
            "400",
        ),
        (
            "version 8",
            upgrade(
                "GET",
                &format!("Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n"),
            ),
            "426",
        ),
        (
            "no version",
            upgrade("GET", &format!("Sec-WebSocket-Key: {KEY}\r\n")),
            "426",
        ),
    ] {
        let answer = raw(&proxy, &req).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {answer}"
        );
        if status == "426" {
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("sec-websocket-version: 13"),
                "{what}: {answer}"
            );
        }
    }
    assert_eq!(
        nodes[0].stats().requests,
        before,
        "a refused handshake reached the node"
    );
    let ok = raw(&proxy, &upgrade("GET", &v13)).await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_upgrades_are_refused_by_the_allow_list() {
    let nodes = support::nodes(1).await;
    let mut cfg = support::config(&nodes, "mode: none", "");
    cfg.push_str(concat!(
        "routes:\n",
        "  - path_prefix: /\n    upstream: realtime\n",
        "    websocket: { allowed_origins: [\"https://app.example.com\", \"https://*.example.com\"] }\n",
        "  - path_prefix: /ws/strict\n    upstream: realtime\n",
        "    websocket: { allowed_origins: [\"https://app.example.com\"], require_origin: true }\n",
        "admin:\n  address: \"{admin}\"\n",
    ));
    let proxy = Proxy::start(&cfg);
    let before = nodes[0].stats().requests;
    let hs = |path: &str, origin: Option<&str>| {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{origin}\r\n")
    };
    for (path, origin) in [
        ("/ws", Some("https://evil.example.net")),
        ("/ws", Some("https://example.com")),
        ("/ws", Some("http://app.example.com")),
        ("/ws", Some("https://app.example.com:8443")),
        ("/ws", Some("https://app.example.com.evil.net")),
        ("/ws/strict", None),
    ] {
        let answer = raw(&proxy, &hs(path, origin)).await;
        assert!(
            answer.starts_with("HTTP/1.1 403"),
            "{path} {origin:?}: {answer}"
        );
    }
    assert_eq!(
        nodes[0].stats().requests,
        before,
        "a refused upgrade reached the node"
    );
    for (path, origin) in [
        ("/ws", Some("https://app.example.com")),
        ("/ws", Some("https://chat.example.com")),
        ("/ws", Some("HTTPS://APP.EXAMPLE.COM")),
        ("/ws", None),
        ("/ws/strict", Some("https://app.example.com")),
    ] {
        let answer = raw(&proxy, &hs(path, origin)).await;
        // Allowed: the node answers (101 on /ws; the demo node has nothing at /ws/strict).
        assert!(
            answer.contains("x-node: node-a"),
            "{path} {origin:?}: {answer}"
        );
        assert!(
            path != "/ws" || answer.starts_with("HTTP/1.1 101"),
            "{answer}"
        );
    }
    // Rejections are counted.
    let metrics = Client::new(proxy.admin.unwrap()).get("/metrics").await.body;
    assert!(
        metrics
            .lines()
            .any(|l| l == "tether_origin_rejected_total 6"),
        "{metrics}"
    );
    // Plain requests are not subject to the WebSocket policy.
    let r = Client::new(proxy.addr)
        .request("/whoami", &[("origin", "https://evil.example.net")])
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_the_previous_key_still_pins_and_is_reissued_with_the_current_key() {
    const OLD: &str = "the-previous-secret-0123456789abcdef0123";
    let nodes = support::nodes(3).await;
    let affinity = format!("{COOKIE_AFFINITY}\n  previous_secrets_env: [TETHER_OLD_SECRET]");
    let proxy = Proxy::start_with_env(
        &support::config(&nodes, &affinity, ""),
        &[("TETHER_OLD_SECRET", OLD)],
    );
    let ids = ["node-a", "node-b", "node-c"];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = CookiePins::new(&CookieSettings::with_secret(OLD), &[], &ids).issue(2, now);
    let old_value = old
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();

    let mut c = Client::new(proxy.addr);
    c.jar.insert(COOKIE.into(), old_value.clone());
    let r = c.get("/whoami").await;
    assert_eq!(
        (r.status, r.node()),
        (200, "node-c"),
        "the old key's pin holds"
    );
    let fresh = r.new_cookie().expect("re-issued with the current key");
    assert_ne!(fresh, old_value);
    let current = CookiePins::new(
        &CookieSettings::with_secret(support::proxy::SECRET),
        &[],
        &ids,
    );
    let header = format!("{COOKIE}={fresh}");
    assert_eq!(
        current.lookup([header.as_bytes()], now).map(|p| p.node),
        Some(2),
        "signed by the current key"
    );
    // From now on the client carries the current key's cookie: no more re-issue.
    let again = c.get("/whoami").await;
    assert_eq!(again.node(), "node-c");
    assert!(again.new_cookie().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_request_target_is_a_414() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: none", ""));
    let answer = raw(
        &proxy,
        &format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(10_000)),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
}

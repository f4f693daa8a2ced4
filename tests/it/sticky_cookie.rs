//! Cookie affinity: every client keeps its node; anything but a valid token means "pick again".

use crate::support::{self, client::COOKIE, Client, Proxy, COOKIE_AFFINITY};
use std::collections::HashMap;
use tether::affinity::CookiePins;
use tether::config::CookieSettings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_each_stay_on_one_node_and_spread_over_all() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(addr);
            let mut seen = Vec::new();
            for i in 0..20 {
                let r = c.get("/whoami").await;
                assert_eq!(r.status, 200);
                assert_eq!(r.body, r.node());
                // Only the first response pins; later ones carry no Set-Cookie.
                assert_eq!(
                    r.new_cookie().is_some(),
                    i == 0,
                    "request {i}: {:?}",
                    r.headers
                );
                seen.push(r.node().to_string());
            }
            seen
        }));
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        let seen = t.await.unwrap();
        assert!(
            seen.iter().all(|n| *n == seen[0]),
            "a client moved: {seen:?}"
        );
        *per_node.entry(seen[0].clone()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "clients on {per_node:?}");
    assert!(
        per_node.values().all(|&n| n >= 30),
        "uneven spread {per_node:?}"
    );
}

/// A cookie value signed with the public library API, as another replica or an attacker would.
fn token(secret: &[u8], node_ids: &[&str], node: usize, issued_at: u64) -> String {
    let set =
        CookiePins::new(&CookieSettings::with_secret(secret), &[], node_ids).issue(node, issued_at);
    set.split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_forged_expired_and_garbage_cookies_get_200_and_a_fresh_pin() {
    let nodes = support::nodes(3).await;
    let affinity = format!("{COOKIE_AFFINITY}\n  max_age: 1h");
    let proxy = Proxy::start(&support::config(&nodes, &affinity, ""));
    let ids = ["node-a", "node-b", "node-c"];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secret = support::proxy::SECRET.as_bytes();

    let valid = token(secret, &ids, 1, now);
    let mut tampered = valid.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let cases: Vec<(&str, String)> = vec![
        ("tampered", String::from_utf8(tampered).unwrap()),
        (
            "forged with another key",
            token(b"an attacker's own 32-byte secret!!", &ids, 1, now),
        ),
        ("expired", token(secret, &ids, 1, now - 7200)),
        ("issued in the future", token(secret, &ids, 1, now + 86_400)),
        (
            "for a node that does not exist",
            token(secret, &["node-z"], 0, now),
        ),
        ("garbage", "%%%not base64%%%".into()),
        ("empty", String::new()),
        ("oversized", "A".repeat(4000)),
    ];
    for (what, value) in cases {
        let mut c = Client::new(proxy.addr);
        c.jar.insert(COOKIE.into(), value.clone());
        let r = c.get("/whoami").await;
        assert_eq!(r.status, 200, "{what}");
        let fresh = r
            .new_cookie()
            .unwrap_or_else(|| panic!("{what}: no fresh cookie"));
        assert_ne!(fresh, value, "{what}");
        // The fresh cookie pins: the next requests stay on the node that answered.
        for _ in 0..3 {
            let again = c.get("/whoami").await;
            assert_eq!((again.status, again.node()), (200, r.node()), "{what}");
            assert!(again.new_cookie().is_none(), "{what}");
        }
    }

    // And a valid token signed elsewhere (another replica with the same secret) is honoured.
    let mut c = Client::new(proxy.addr);
    c.jar.insert(COOKIE.into(), valid);
    let r = c.get("/whoami").await;
    assert_eq!((r.status, r.node()), (200, "node-b"));
    assert!(r.new_cookie().is_none());
}

//! The admin status page (`GET /` on the admin port) in a real headless Chromium: Debian's
//! `/usr/bin/chromium` driven by `tests/browser/admin.js` (puppeteer-core, pinned by
//! `tests/browser/package-lock.json`), against real tethers in front of demo nodes.
//!
//! One browser run covers: every node and its state on the page; a node drained with a deadline
//! shown leaving with its open tunnels and when the last closes, and no longer once enabled; the
//! upstream's WebSocket frames each way;
//! drain pressed on the page
//! (`/status` agrees, the page follows without a reload); a stopped node shown unhealthy within
//! fall x interval plus one poll; a token asked once and kept in `sessionStorage`, calls without
//! it refused; a plain cross-site form POST (from a page on another host and port) refused with
//! the node left active; 0, 1 and 100 nodes, long and hostile ids and failing DNS discovery
//! rendered without overflow, at desktop and phone widths. Any console error fails it.
//! Screenshots go to `target/tmp/admin-*.png`.

use crate::support::proxy::free_port;
use crate::support::{self, browser, Client, Proxy, COOKIE_AFFINITY};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "admin-token-for-the-browser-test-0123456789";
/// The fast health check of the main tether: a stopped node is down after FALL x INTERVAL.
const INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 100;
const FALL: u64 = 2;
/// The page polls `/status` every second.
const POLL_MS: u64 = 1000;
/// The whole browser run ends by itself after this.
const LIMIT: Duration = Duration::from_secs(75);

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string is a YAML double-quoted scalar")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_shows_every_node_live_and_refuses_cross_site_posts() {
    browser::require();
    let started = Instant::now();
    let nodes = support::nodes(3).await;

    // The main tether: three nodes, a fast health check, an admin port without a token.
    let health = format!(
        "health_check:\n  path: /healthz\n  interval: {INTERVAL_MS}ms\n  timeout: {TIMEOUT_MS}ms\n  rise: 2\n  fall: {FALL}"
    );
    let mut cfg = support::config(&nodes, COOKIE_AFFINITY, &health);
    cfg.push_str("admin:\n  address: \"{admin}\"\n");
    let main = Proxy::start(&cfg);

    // The same nodes behind a tether whose admin API has a token.
    let mut cfg = support::config(&nodes, COOKIE_AFFINITY, "");
    cfg.push_str("admin:\n  address: \"{admin}\"\n  token_env: TETHER_ADMIN_TOKEN\n");
    let token = Proxy::start_with_env(&cfg, &[("TETHER_ADMIN_TOKEN", ADMIN_TOKEN)]);

    // Shapes: an upstream with 0 nodes whose DNS discovery fails (a resolver that never
    // answers), one with 1 node, one with 100 (long, hostile and odd ids; half of them at a
    // closed port, so unhealthy).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a silent resolver");
    let solo = nodes[0].addr();
    let closed = format!("127.0.0.1:{}", free_port([127, 0, 0, 1]));
    let long_id = "a-node-id-much-longer-than-any-card-is-wide-".repeat(4);
    let unbroken = "f".repeat(64) + &"0".repeat(64);
    let hostile = "<img src=x onerror=\"window.__pwned=1\">&amp;";
    let odd = "rack 7/slot 3";
    let mut many: Vec<String> = (0..96).map(|i| format!("node-{i:03}")).collect();
    many.extend([
        long_id.clone(),
        unbroken,
        hostile.to_string(),
        odd.to_string(),
    ]);
    // And an ACME certificate whose CA cannot be reached: its card shows the failure.
    let acme_storage = tempfile::tempdir().expect("tempdir");
    let acme_listener = format!(
        "  - address: \"127.0.0.1:{}\"\n    tls:\n      acme:\n        domains: [cert.test]\n        directory: \"https://{closed}/dir\"\n        storage: \"{}\"\n",
        free_port([127, 0, 0, 1]),
        acme_storage.path().display()
    );
    let mut shapes = format!(
        "listen:\n  - address: \"{{listen}}\"\n{acme_listener}admin:\n  address: \"{{admin}}\"\nupstreams:\n  \
         solo:\n    nodes:\n      - {{ id: node-solo, address: \"{solo}\" }}\n    affinity: {{ mode: ip_hash }}\n  \
         empty:\n    discover:\n      dns: realtime.test\n      port: 3000\n      refresh: 500ms\n      resolver: \"{}\"\n    affinity: {{ mode: ip_hash }}\n  \
         many:\n    affinity: {{ mode: ip_hash }}\n    health_check:\n      interval: 1s\n      timeout: 200ms\n      rise: 1\n      fall: 1\n    nodes:\n",
        silent.local_addr().expect("resolver address")
    );
    for (i, id) in many.iter().enumerate() {
        let address = if i % 2 == 0 {
            solo.to_string()
        } else {
            closed.clone()
        };
        shapes.push_str(&format!(
            "      - {{ id: {}, address: \"{address}\" }}\n",
            yaml_str(id)
        ));
    }
    shapes.push_str(
        "routes:\n  - { path_prefix: /, upstream: solo }\n  - { path_prefix: /many/, upstream: many }\n  - { path_prefix: /empty/, upstream: empty }\n",
    );
    let shapes = Proxy::start(&shapes);

    // Traffic through the main tether while the page watches, so its charts move: a few
    // clients asking every 20 ms, and two open WebSockets. Bounded by a flag and by time.
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let mut sockets = Vec::new();
    for _ in 0..2 {
        sockets.push(Client::new(main.addr).ws("/ws").await.0);
    }
    let traffic = {
        let stop = Arc::clone(&stop_traffic);
        let addr = main.addr;
        tokio::spawn(async move {
            let begun = Instant::now();
            let mut clients: Vec<Client> = (0..4).map(|_| Client::new(addr)).collect();
            while !stop.load(Ordering::Relaxed) && begun.elapsed() < LIMIT {
                for c in clients.iter_mut() {
                    let _ = c.get("/whoami").await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let plan = serde_json::json!({
        "chromium": browser::CHROMIUM,
        "shots": browser::shots(),
        "other_host": "127.0.0.2",
        "limit_ms": LIMIT.as_millis() as u64,
        "main": {
            "admin": format!("http://{}", main.admin.expect("admin")),
            "upstream": "realtime",
            "nodes": ["node-a", "node-b", "node-c"],
            "drain": "node-a",
            "stop": "node-b",
            "csrf": "node-c",
            "down_within_ms": FALL * INTERVAL_MS + TIMEOUT_MS + POLL_MS + 2000,
        },
        "token": {
            "admin": format!("http://{}", token.admin.expect("admin")),
            "token": ADMIN_TOKEN,
            "upstream": "realtime",
            "nodes": ["node-a", "node-b", "node-c"],
            "node": "node-c",
        },
        "shapes": {
            "admin": format!("http://{}", shapes.admin.expect("admin")),
            "total": 101,
            "counts": ["solo:1", "empty:0", "many:100"],
            "failing": "empty",
            "many": "many",
            "long_id": long_id,
            "hostile_id": hostile,
            "odd_id": odd,
        },
    });

    let mut run = browser::Run::start("admin.js", &plan, Duration::from_secs(15));
    let report = loop {
        let msg = run.next().await;
        if let Some(id) = msg["ask"]["stop"].as_str() {
            let node = nodes.iter().find(|n| n.id() == id).expect("a node to stop");
            node.stop().await;
            run.answer("stopped").await;
        } else if msg.get("results").is_some() {
            break msg;
        }
    };
    run.end().await;
    stop_traffic.store(true, Ordering::Relaxed);
    let _ = traffic.await;
    drop(sockets);

    eprintln!("browser run in {:?}:", started.elapsed());
    browser::assert_passed(&report, 15);
    drop(silent);
}

//! Operating a cluster: health checks, drain, the admin API, metrics, live reload, shutdown.

use crate::support::admin_status as status;
use crate::support::{self, echo_many, Client, Proxy, ADMIN_INTENT as INTENT, COOKIE_AFFINITY};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tether::demo::Node;
use tokio_tungstenite::tungstenite::Message;

const HEALTH: &str =
    "health_check:\n  path: /healthz\n  interval: 100ms\n  timeout: 50ms\n  rise: 2\n  fall: 2";

fn with_admin(mut yaml: String) -> String {
    yaml.push_str("admin:\n  address: \"{admin}\"\n");
    yaml
}

fn node<'a>(status: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    status["upstreams"][0]["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == id)
}

/// Poll `/status` until `pred` holds for node `id` (a readiness probe with a bound, not a timing
/// assertion: the bound only keeps a broken build from hanging the suite).
async fn until_node(
    proxy: &Proxy,
    id: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let s = status(proxy).await;
        if node(&s, id).is_some_and(&pred) {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "node {id} never reached the expected state: {}",
        status(proxy).await
    );
}

async fn pinned_clients(proxy: &Proxy, n: usize) -> Vec<(Client, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut c = Client::new(proxy.addr);
        let r = c.get("/whoami").await;
        assert_eq!(r.status, 200);
        out.push((c, r.node().to_string()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_turns_unhealthy_its_clients_move_and_it_comes_back() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&with_admin(support::config(
        &nodes,
        COOKIE_AFFINITY,
        HEALTH,
    )));
    let mut clients = pinned_clients(&proxy, 45).await;
    let other = clients
        .iter_mut()
        .find(|(_, n)| n == "node-a")
        .expect("a client of node-a");
    let (mut ws, _, _) = other.0.ws("/ws").await;

    let b_addr = nodes[1].addr();
    nodes[1].stop().await;
    let took = until_node(&proxy, "node-b", |n| n["health"] == "unhealthy").await;
    eprintln!("node kill -> unhealthy in /status: {took:?} (interval 100ms, fall 2)");
    let s = status(&proxy).await;
    assert_eq!(node(&s, "node-b").unwrap()["last_check"]["ok"], false);

    for (c, before) in clients.iter_mut() {
        let r = c.get("/whoami").await;
        assert_eq!(r.status, 200);
        if before == "node-b" {
            assert_ne!(r.node(), "node-b");
            assert!(r.new_cookie().is_some(), "re-pinned with a new cookie");
        } else {
            assert_eq!(r.node(), before.as_str());
            assert!(r.new_cookie().is_none());
        }
    }
    echo_many(&mut ws, 10).await;

    // Restarted on the same address: healthy after `rise` checks, and it takes new clients again.
    let _b = Node::spawn("node-b", b_addr).await.expect("restart node-b");
    until_node(&proxy, "node-b", |n| n["health"] == "healthy").await;
    let fresh = pinned_clients(&proxy, 30).await;
    assert!(
        fresh.iter().any(|(_, n)| n == "node-b"),
        "node-b got no new client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_keeps_its_clients_and_gets_no_new_ones() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&with_admin(support::config(&nodes, COOKIE_AFFINITY, "")));
    let admin = proxy.admin.unwrap();
    let mut clients = pinned_clients(&proxy, 30).await;
    let a_client = clients
        .iter_mut()
        .find(|(_, n)| n == "node-a")
        .expect("a client of node-a");
    let (mut ws, _, ws_node) = a_client.0.ws("/ws").await;
    assert_eq!(ws_node, "node-a");

    let r = Client::new(admin)
        .post("/upstreams/realtime/nodes/node-a/drain", &[INTENT])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (j["admin_state"].as_str(), j["previous"].as_str()),
        (Some("draining"), Some("active"))
    );

    for _ in 0..100 {
        let r = Client::new(proxy.addr).get("/whoami").await;
        assert_ne!(r.node(), "node-a", "a new client landed on a draining node");
    }
    for (c, before) in clients.iter_mut() {
        assert_eq!(c.get("/whoami").await.node(), before.as_str());
    }
    echo_many(&mut ws, 10).await;
    assert_eq!(
        node(&status(&proxy).await, "node-a").unwrap()["admin_state"],
        "draining"
    );

    // Disabled: even pinned clients move, with a new cookie.
    let r = Client::new(admin)
        .post("/upstreams/realtime/nodes/node-a/disable", &[INTENT])
        .await;
    assert_eq!(r.status, 200);
    for (c, before) in clients.iter_mut().filter(|(_, n)| n == "node-a") {
        let r = c.get("/whoami").await;
        assert_ne!(r.node(), before.as_str());
        assert!(r.new_cookie().is_some());
    }
    for bad in [
        "/upstreams/nope/nodes/node-a/drain",
        "/upstreams/realtime/nodes/nope/drain",
        "/upstreams/realtime/nodes/node-a/explode",
    ] {
        assert_eq!(
            Client::new(admin).post(bad, &[INTENT]).await.status,
            404,
            "{bad}"
        );
    }
    assert_eq!(Client::new(admin).get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_the_admin_api_but_not_healthz() {
    let nodes = support::nodes(1).await;
    let mut cfg = support::config(&nodes, COOKIE_AFFINITY, "");
    cfg.push_str("admin:\n  address: \"{admin}\"\n  token_env: TETHER_SECRET\n");
    let proxy = Proxy::start(&cfg);
    let admin = proxy.admin.unwrap();
    assert_eq!(Client::new(admin).get("/status").await.status, 401);
    assert_eq!(Client::new(admin).get("/status").await.status, 401);
    let bearer = format!("Bearer {}", support::proxy::SECRET);
    assert_eq!(
        Client::new(admin)
            .request("/status", &[("authorization", &bearer)])
            .await
            .status,
        200
    );
    assert_eq!(Client::new(admin).get("/healthz").await.status, 200);
    // The status page holds no data: served without the token; the page asks for it.
    let page = Client::new(admin).get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("content=\"required\""), "{}", page.body);
    // State changes: the token is what counts; the header alone does not replace it.
    let drain = "/upstreams/realtime/nodes/node-a/drain";
    assert_eq!(Client::new(admin).post(drain, &[INTENT]).await.status, 401);
    assert_eq!(Client::new(admin).post(drain, &[]).await.status, 403);
    let r = Client::new(admin)
        .post(drain, &[("authorization", &bearer)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_without_the_admin_header_are_refused() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&with_admin(support::config(&nodes, COOKIE_AFFINITY, "")));
    let admin = proxy.admin.unwrap();
    // What a plain cross-site form (or curl without -H) sends: refused, saying what to add.
    for path in ["/upstreams/realtime/nodes/node-a/drain", "/reload"] {
        let r = Client::new(admin).post(path, &[]).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(
            j["error"].as_str().unwrap().contains("X-Tether-Admin: 1"),
            "{}",
            r.body
        );
    }
    let r = Client::new(admin)
        .post(
            "/upstreams/realtime/nodes/node-a/drain",
            &[("x-tether-admin", "yes")],
        )
        .await;
    assert_eq!(r.status, 403, "only `1` counts");
    assert_eq!(
        node(&status(&proxy).await, "node-a").unwrap()["admin_state"],
        "active"
    );
    // With the header, and with a node id written with escapes (as the status page sends it).
    let r = Client::new(admin)
        .post("/upstreams/realtime/nodes/node%2Da/drain", &[INTENT])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = status(&proxy).await;
    let a = node(&s, "node-a").unwrap();
    assert_eq!(a["admin_state"], "draining");
    // What the status page reads besides the older fields.
    assert!(s["now"].as_u64().unwrap() >= s["process"]["started"].as_u64().unwrap());
    assert!(a["requests"].as_u64().is_some() && a["responses"]["2xx"].as_u64().is_some());
    assert!(s["upstreams"][0]["discover"].is_null());
    // DNS rebinding: a page whose own name now points at 127.0.0.1 sends its own name as Host.
    // Without a token the admin API answers loopback names only, reads included.
    for (path, intent) in [
        ("/status", None),
        ("/upstreams/realtime/nodes/node-a/enable", Some(INTENT)),
    ] {
        let mut headers = vec![("host", "evil.example:9901")];
        headers.extend(intent);
        let mut c = Client::new(admin);
        let r = match intent {
            Some(_) => c.post(path, &headers).await,
            None => c.request(path, &headers).await,
        };
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    assert_eq!(
        node(&status(&proxy).await, "node-a").unwrap()["admin_state"],
        "draining"
    );
    for host in ["localhost:9901", "[::1]:9901", "127.0.0.1"] {
        let r = Client::new(admin)
            .request("/status", &[("host", host)])
            .await;
        assert_eq!(r.status, 200, "{host}");
    }
}

fn samples(text: &str) -> Vec<prometheus_parse::Sample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines)
        .expect("Prometheus text format")
        .samples
}

fn counter(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_with_traffic() {
    let nodes = support::nodes(2).await;
    let proxy = Proxy::start(&with_admin(support::config(&nodes, COOKIE_AFFINITY, "")));
    let admin = proxy.admin.unwrap();
    let before = samples(&Client::new(admin).get("/metrics").await.body);
    let mut c = Client::new(proxy.addr);
    let node = c.get("/whoami").await.node().to_string();
    for _ in 0..9 {
        c.get("/whoami").await;
    }
    let (ws, _, _) = c.ws("/ws").await;
    let mut forged = Client::new(proxy.addr);
    forged
        .jar
        .insert(support::client::COOKIE.into(), "forged".into());
    forged.get("/whoami").await;

    let after = samples(&Client::new(admin).get("/metrics").await.body);
    let ok = [
        ("upstream", "realtime"),
        ("node", node.as_str()),
        ("class", "2xx"),
    ];
    assert!(
        counter(&after, "tether_requests_total", &ok)
            >= counter(&before, "tether_requests_total", &ok) + 10.0
    );
    assert_eq!(
        counter(&after, "tether_open_tunnels", &[("node", node.as_str())]),
        1.0
    );
    assert!(counter(&after, "tether_upgrades_total", &[("result", "ok")]) >= 1.0);
    assert!(
        counter(
            &after,
            "tether_affinity_decisions_total",
            &[("decision", "hit")]
        ) >= 10.0
    );
    assert!(
        counter(
            &after,
            "tether_affinity_decisions_total",
            &[("decision", "invalid_token")]
        ) >= 1.0
    );
    assert!(
        counter(
            &after,
            "tether_request_duration_seconds_count",
            &[("upstream", "realtime")]
        ) >= 10.0
    );
    assert_eq!(
        counter(&after, "tether_node_healthy", &[("node", "node-a")]),
        1.0
    );
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_adds_and_removes_nodes_keeping_the_other_nodes_tunnels() {
    let mut nodes = support::nodes(4).await;
    let node_d = nodes.pop().unwrap();
    // A short leave window, so node-c's tunnels close within the test.
    let leave = "leave: { spread: 1s }";
    let proxy = Proxy::start(&with_admin(support::config(&nodes, COOKIE_AFFINITY, leave)));
    let admin = proxy.admin.unwrap();

    // 200 WebSockets open, spread over a, b and c.
    let mut sockets = Vec::new();
    for _ in 0..200 {
        let mut c = Client::new(proxy.addr);
        let (ws, _, node) = c.ws("/ws").await;
        sockets.push((ws, node));
    }
    let per_node: HashMap<_, usize> = sockets.iter().fold(HashMap::new(), |mut m, (_, n)| {
        *m.entry(n.clone()).or_default() += 1;
        m
    });
    assert_eq!(per_node.len(), 3, "{per_node:?}");

    // Requests keep flowing during the reload.
    let addr = proxy.addr;
    let traffic = tokio::spawn(async move {
        let mut c = Client::new(addr);
        let mut statuses = Vec::new();
        for _ in 0..300 {
            statuses.push(c.get("/whoami").await.status);
        }
        statuses
    });

    // Remove node-c, add node-d.
    let kept: Vec<&Node> = nodes.iter().filter(|n| n.id() != "node-c").collect();
    let mut yaml = String::from("listen:\n  - address: \"{listen}\"\nadmin:\n  address: \"{admin}\"\nupstreams:\n  realtime:\n    nodes:\n");
    for n in kept.iter().copied().chain([&node_d]) {
        yaml.push_str(&support::node_line(n.id(), n.addr()));
    }
    yaml.push_str(&format!(
        "    affinity:\n      {}\n    {leave}\n",
        COOKIE_AFFINITY.replace('\n', "\n      ")
    ));
    proxy.rewrite_config(&yaml);
    proxy.signal("HUP");
    until_node(&proxy, "node-d", |_| true).await;
    assert!(node(&status(&proxy).await, "node-c").is_none());

    assert!(
        traffic.await.unwrap().iter().all(|s| *s == 200),
        "a request failed during the reload"
    );
    // Every tunnel of a node that stays is still open; node-c's are moved off it: each gets a
    // Close 1012 (over `leave.spread`), so its clients reconnect elsewhere.
    for (ws, node) in sockets.iter_mut() {
        if node == "node-c" {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(Some(c)))) => {
                        assert_eq!(u16::from(c.code), 1012, "moved off a removed node");
                        break;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("node-c's tunnel: {other:?}"),
                }
            }
        } else {
            echo_many(ws, 2).await;
        }
    }
    // New clients reach the added node; metrics show it.
    let fresh = pinned_clients(&proxy, 40).await;
    assert!(
        fresh.iter().any(|(_, n)| n == "node-d"),
        "no new client on node-d"
    );
    assert!(fresh.iter().all(|(_, n)| n != "node-c"));
    let m = samples(&Client::new(admin).get("/metrics").await.body);
    assert!(counter(&m, "tether_requests_total", &[("node", "node-d")]) > 0.0);

    // An invalid file changes nothing: the same nodes, the same reload count, the error logged.
    let reloads = status(&proxy).await["reloads"].clone();
    proxy.rewrite_config("listen: []\nupstreams:\n  realtime:\n    nodes: []\nbogus: 1\n");
    let r = Client::new(admin).post("/reload", &[INTENT]).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("bogus"), "{}", r.body);
    let s = status(&proxy).await;
    assert_eq!(s["reloads"], reloads);
    assert!(node(&s, "node-d").is_some() && node(&s, "node-a").is_some());
    assert_eq!(Client::new(proxy.addr).get("/whoami").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_then_closes_tunnels_and_exits() {
    let nodes = support::nodes(2).await;
    let mut cfg = support::config(&nodes, COOKIE_AFFINITY, "");
    cfg.push_str("shutdown:\n  grace: 3s\n  close_window: 2s\n");
    let mut proxy = Proxy::start(&cfg);
    let mut sockets = Vec::new();
    for _ in 0..20 {
        sockets.push(Client::new(proxy.addr).ws("/ws").await.0);
    }
    let addr = proxy.addr;
    // Counted from here: the nodes also served tether's readiness probe and the upgrades.
    let served = || nodes.iter().map(|n| n.stats().requests).sum::<u64>();
    let before = served();
    let poll = tokio::spawn(async move { Client::new(addr).get("/poll?hold=1000").await });
    // The long-poll is in flight at the node before the signal (else it could still sit in
    // the listening socket's queue when the signal closes it, and be reset).
    let wait = Instant::now();
    while served() <= before && wait.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served() > before, "the long-poll never reached a node");
    proxy.signal("TERM");

    // Within the grace period the tunnels still carry messages...
    for ws in sockets.iter_mut() {
        echo_many(ws, 1).await;
    }
    // ...the in-flight long-poll completes...
    let r = poll.await.unwrap();
    assert_eq!(r.status, 200, "the in-flight long-poll completes");
    // ...and then tether closes every tunnel and exits.
    for mut ws in sockets {
        use futures_util::StreamExt;
        let end = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("closed by tether");
        assert!(
            !matches!(
                end,
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))
            ),
            "{end:?}"
        );
    }
    let status = proxy
        .wait_exit(Duration::from_secs(20))
        .expect("tether exits");
    assert!(status.success(), "{status:?}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting"
    );
}

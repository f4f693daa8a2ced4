//! Long-lived connections through the life of a cluster: a node that leaves (drained with a
//! deadline, removed by a reload, gone from DNS) has its WebSockets closed spread over a window,
//! its clients reconnect to the other nodes without a storm and without losing a session; after
//! a scale-out, a rebalance moves enough tunnels to the new node to bring every node within its
//! bounds, and no more. Real socket.io clients with reconnection on (`tests/socketio/hold.js`)
//! against real socket.io nodes.
//!
//! Scaled down here (a few hundred clients, windows of a few seconds); `make soak` runs the full
//! sizes (README).

use crate::socketio::SioNode;
use crate::support::dns::Dns;
use crate::support::front::Front;
use crate::support::{self, Client, Proxy, ADMIN_INTENT};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `hold.js` running: its READY figures, then its DONE figures when it ends.
struct Hold {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Hold {
    fn start(url: &str, clients: usize, hold: Duration) -> Hold {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio");
        let mut child = Command::new("node")
            .args(["hold.js", "--url", url, "--clients", &clients.to_string()])
            .args(["--hold-ms", &hold.as_millis().to_string(), "--ramp", "50"])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs hold.js");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Hold { child, lines }
    }

    /// The JSON of the next line starting with `word` (READY, DONE).
    fn wait(&self, word: &str) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("hold.js printed no {word}: {e}"));
        let json = line
            .strip_prefix(word)
            .unwrap_or_else(|| panic!("expected {word}, got {line}"));
        serde_json::from_str(json.trim()).expect("hold.js JSON")
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The most closes tether made for `reason` in any one second, from the access log's tunnel
/// lines (`closed_by`), and how many in all.
fn closes_per_second(proxy: &Proxy, reason: &str) -> (usize, usize) {
    let mut per_second: BTreeMap<String, usize> = BTreeMap::new();
    for l in proxy
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "tunnel" && v["closed_by"] == reason)
    {
        // The timestamp is the log batch's (every 200 ms): its whole second is close enough.
        let second = l["timestamp"].as_str().unwrap_or("")[..19].to_string();
        *per_second.entry(second).or_default() += 1;
    }
    (
        per_second.values().copied().max().unwrap_or(0),
        per_second.values().sum(),
    )
}

/// Open tunnels of `id` in `upstream` per `/status` (0 once it is gone and done).
async fn open_tunnels(proxy: &Proxy, upstream: &str, id: &str) -> u64 {
    let status = support::admin_status(proxy).await;
    let up = &status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == upstream)
        .cloned()
        .unwrap_or_default();
    up["nodes"]
        .as_array()
        .into_iter()
        .chain(up["departed"].as_array())
        .flatten()
        .filter(|n| n["id"] == id)
        .map(|n| n["open_tunnels"].as_u64().unwrap_or(0))
        .sum()
}

/// Every client reconnected, none lost its session, none is on `gone` at the end.
fn assert_moved_off(done: &serde_json::Value, gone: &str, on_gone: u64) {
    eprintln!("moved off {gone}: {done:#}");
    assert_eq!(done["disconnected"], 0, "every client connected at the end");
    assert_eq!(done["sessionUnknown"], 0, "no session lost");
    assert_eq!(done["acksFromOtherNode"], 0);
    assert!(
        done["finalNodes"].get(gone).is_none(),
        "a client on {gone} afterwards: {}",
        done["finalNodes"]
    );
    assert_eq!(
        done["movedClients"], on_gone,
        "exactly {gone}'s clients moved"
    );
    assert_eq!(done["movedTwice"], 0);
    assert!(
        done["closeCodes"]["1012"].as_u64() >= Some(on_gone),
        "1012 to each"
    );
}

/// `TETHER_MOVES_FULL=1` (what `make soak` sets) runs the full sizes: 600 clients over a 10 s
/// window, and 3,000 clients for the rebalance.
fn full() -> bool {
    std::env::var("TETHER_MOVES_FULL").is_ok_and(|v| v == "1")
}

fn clients() -> usize {
    if full() {
        600
    } else {
        150
    }
}

fn spread() -> u64 {
    if full() {
        10
    } else {
        3
    }
}

fn sio_config(nodes: &[&SioNode], extra: &str) -> String {
    let mut y = String::from(
        "listen: [{ address: \"{listen}\" }]\nadmin: { address: \"{admin}\" }\nlog: { format: json }\nupstreams:\n  realtime:\n    nodes:\n",
    );
    for n in nodes {
        y.push_str(&format!(
            "      - {{ id: {}, address: \"127.0.0.1:{}\" }}\n",
            n.id(),
            n.port()
        ));
    }
    y.push_str(&format!(
        "    affinity: {{ mode: cookie, cookie: {{ secret_env: TETHER_SECRET }} }}\n    leave: {{ spread: {}s }}\n{extra}",
        spread()
    ));
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_its_clients_over_spread_over_the_window() {
    let nodes = crate::socketio::cluster_of("socketio");
    let proxy = Proxy::start(&sio_config(&nodes.iter().collect::<Vec<_>>(), ""));
    let hold = Hold::start(&proxy.url(""), clients(), Duration::from_secs(spread() + 5));
    let ready = hold.wait("READY");
    let on_b = ready["firstNodes"]["node-b"].as_u64().unwrap_or(0);
    assert!(on_b > 0, "{ready}");
    let r = Client::new(proxy.admin.unwrap())
        .post(
            &format!(
                "/upstreams/realtime/nodes/node-b/drain?close_after=0s&spread={}s",
                spread()
            ),
            &[ADMIN_INTENT],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // /status shows the leave: why, how many tunnels are left, when the last will close.
    let status = support::admin_status(&proxy).await;
    let b = status["upstreams"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "node-b")
        .cloned()
        .unwrap();
    assert_eq!(b["leaving"]["reason"], "drained", "{b}");
    let until = b["leaving"]["closes_until"].as_u64().unwrap();
    let now = status["now"].as_u64().unwrap();
    assert!(until >= now && until <= now + spread() + 1, "{b}");
    assert!(b["leaving"]["open_tunnels"].as_u64() > Some(0), "{b}");
    let done = hold.wait("DONE");
    assert_moved_off(&done, "node-b", on_b);
    assert_eq!(open_tunnels(&proxy, "realtime", "node-b").await, 0);
    let (most, all) = closes_per_second(&proxy, "leave");
    let bound = 2 * (clients() as u64).div_ceil(spread()) as usize;
    assert_eq!(
        all as u64, on_b,
        "every tunnel of node-b closed by the leave"
    );
    assert!(
        most <= bound,
        "{most} closes in one second; at most {bound}"
    );
    for n in &nodes {
        assert_eq!(n.stats()["sessionUnknown"], 0, "{}", n.id());
    }
}

/// The proof that the test above can fail: a drain without a deadline keeps the node's
/// clients, so nobody moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_without_a_deadline_moves_nobody() {
    let nodes = crate::socketio::cluster_of("socketio");
    let proxy = Proxy::start(&sio_config(&nodes.iter().collect::<Vec<_>>(), ""));
    let hold = Hold::start(&proxy.url(""), 60, Duration::from_secs(spread() + 2));
    let ready = hold.wait("READY");
    let on_b = ready["firstNodes"]["node-b"].as_u64().unwrap_or(0);
    let r = Client::new(proxy.admin.unwrap())
        .post("/upstreams/realtime/nodes/node-b/drain", &[ADMIN_INTENT])
        .await;
    assert_eq!(r.status, 200);
    let done = hold.wait("DONE");
    assert_eq!(done["moves"], 0, "{done}");
    assert_eq!(done["finalNodes"]["node-b"], on_b, "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_by_a_reload_hands_its_clients_over() {
    let nodes = crate::socketio::cluster_of("socketio");
    let all: Vec<&SioNode> = nodes.iter().collect();
    let proxy = Proxy::start(&sio_config(&all, ""));
    let hold = Hold::start(&proxy.url(""), clients(), Duration::from_secs(spread() + 5));
    let ready = hold.wait("READY");
    let on_c = ready["firstNodes"]["node-c"].as_u64().unwrap_or(0);
    assert!(on_c > 0, "{ready}");
    let kept: Vec<&SioNode> = nodes.iter().filter(|n| n.id() != "node-c").collect();
    proxy.rewrite_config(&sio_config(&kept, ""));
    proxy.signal("HUP");
    let done = hold.wait("DONE");
    assert_moved_off(&done, "node-c", on_c);
    assert_eq!(open_tunnels(&proxy, "realtime", "node-c").await, 0);
    let (most, total) = closes_per_second(&proxy, "leave");
    assert_eq!(total as u64, on_c);
    assert!(
        most <= 2 * (clients() as u64).div_ceil(spread()) as usize,
        "{most}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gone_from_dns_hands_its_clients_over() {
    // Three socket.io nodes on 127.0.0.2..4, one port, found by DNS.
    let port = (0..20)
        .map(|_| crate::support::proxy::free_port([127, 0, 0, 2]))
        .find(|p| {
            (2..5).all(|i| {
                std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, i], *p))).is_ok()
            })
        })
        .expect("a port free on 127.0.0.2..4");
    let ids = ["node-a", "node-b", "node-c"];
    let nodes: Vec<SioNode> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let host = format!("127.0.0.{}", 2 + i);
            SioNode::start_with(
                "socketio",
                id,
                &["--host", &host, "--port", &port.to_string()],
            )
        })
        .collect();
    let dns = Dns::start().await;
    let ip = |i: u8| IpAddr::from([127, 0, 0, i]);
    dns.set("rt.test", &[ip(2), ip(3), ip(4)]);
    let yaml = format!(
        "listen: [{{ address: \"{{listen}}\" }}]\nadmin: {{ address: \"{{admin}}\" }}\nlog: {{ format: json }}\nupstreams:\n  realtime:\n    discover: {{ dns: rt.test, port: {port}, refresh: 200ms, resolver: \"{}\" }}\n    affinity: {{ mode: cookie, cookie: {{ secret_env: TETHER_SECRET }} }}\n    leave: {{ spread: {}s }}\n",
        dns.addr,
        spread()
    );
    let proxy = Proxy::start(&yaml);
    support::wait_for_nodes(&proxy, "realtime", 3).await;
    let hold = Hold::start(&proxy.url(""), clients(), Duration::from_secs(spread() + 5));
    let ready = hold.wait("READY");
    // A discovered node's id is its address; socket.io's node event names it node-c.
    let gone_id = format!("127.0.0.4:{port}");
    let on_c = ready["firstNodes"]["node-c"].as_u64().unwrap_or(0);
    assert!(on_c > 0, "{ready}");
    dns.set("rt.test", &[ip(2), ip(3)]);
    let done = hold.wait("DONE");
    assert_moved_off(&done, "node-c", on_c);
    assert_eq!(open_tunnels(&proxy, "realtime", &gone_id).await, 0);
    let (_, total) = closes_per_second(&proxy, "leave");
    assert_eq!(total as u64, on_c);
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_scale_out_a_rebalance_fills_the_new_node_to_its_bounds_and_no_further() {
    scale_out(true).await;
}

/// The proof that the test above can fail: without `rebalance`, the new node stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rebalance_a_new_node_stays_empty() {
    scale_out(false).await;
}

/// Three nodes hold the clients (through two replicas taking connections in turn); a fourth
/// is added by a reload of both.
async fn scale_out(rebalance: bool) {
    let n = if full() { 3000 } else { 240 };
    let nodes: Vec<SioNode> = ["node-a", "node-b", "node-c", "node-d"]
        .iter()
        .map(|id| SioNode::start("socketio", id))
        .collect();
    let extra = if rebalance {
        "    rebalance: { max_skew: 1.5, moves_per_second: 20 }\n"
    } else {
        ""
    };
    let three: Vec<&SioNode> = nodes[..3].iter().collect();
    let four: Vec<&SioNode> = nodes.iter().collect();
    let replicas = [
        Proxy::start(&sio_config(&three, extra)),
        Proxy::start(&sio_config(&three, extra)),
    ];
    let front = Front::start([replicas[0].addr, replicas[1].addr]).await;
    // 20 moves a second a replica: the new node's lower bound is n/6, half from each replica.
    let hold_for = Duration::from_secs(8 + (n as u64 / 6 / 2 / 20) + 10);
    let hold = Hold::start(&format!("http://{}", front.addr), n, hold_for);
    let ready = hold.wait("READY");
    assert_eq!(ready["connected"], n as u64, "{ready}");
    for p in &replicas {
        p.rewrite_config(&sio_config(&four, extra));
        p.signal("HUP");
    }
    let done = hold.wait("DONE");
    eprintln!("scale-out (rebalance: {rebalance}): {done:#}");
    assert_eq!(done["disconnected"], 0);
    assert_eq!(done["sessionUnknown"], 0);
    let on_d = done["finalNodes"]["node-d"].as_u64().unwrap_or(0);
    if !rebalance {
        assert_eq!(on_d, 0, "nobody moves to the new node by itself");
        return;
    }
    // Every node within its bounds: share n/4, bounds n/6..3n/8 (over both replicas; 240
    // clients: 60, 40..90).
    let share = n as f64 / 4.0;
    for id in ["node-a", "node-b", "node-c", "node-d"] {
        let k = done["finalNodes"][id].as_u64().unwrap_or(0) as f64;
        assert!(
            k >= share / 1.5 - 2.0 && k <= share * 1.5,
            "{id}: {k} of {n}"
        );
    }
    // Moves stop at the bounds: about n/6 (240: 40; 3,000: 500), not n/4 (to the share).
    let moves = done["moves"].as_u64().unwrap_or(0) as f64;
    let want = n as f64 / 6.0;
    assert!(
        moves >= want * 0.85 && moves <= want * 1.25,
        "{moves} moves, about {want}"
    );
    assert_eq!(done["movedTwice"], 0, "no client moved twice");
    for p in &replicas {
        let m = support::metrics(p).await;
        assert!(support::counter(&m, "tether_rebalance_moves_total", &[]) > 0);
    }
}

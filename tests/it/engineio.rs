//! engine.io session affinity (`affinity.engineio: true`): socket.io clients that keep no cookies
//! stay on their node because their session id carries its node's tag. Real socket.io 4.x and
//! 2.x clusters with real clients, through one tether, and through two replicas behind a TCP
//! front that alternates connections.

use crate::socketio::{cluster_config, cluster_of, run_clients_with, SioNode};
use crate::support::{Client, Proxy, COOKIE_AFFINITY};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// Cookie affinity with engine.io session tags.
const ENGINEIO_AFFINITY: &str =
    "mode: cookie\ncookie:\n  secret_env: TETHER_SECRET\nengineio: true";

fn with_admin(yaml: String) -> String {
    format!("admin:\n  address: \"{{admin}}\"\n{yaml}")
}

/// The samples of tether's `/metrics`.
async fn metrics(proxy: &Proxy) -> Vec<prometheus_parse::Sample> {
    let text = Client::new(proxy.admin.expect("admin"))
        .get("/metrics")
        .await
        .body;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines)
        .expect("Prometheus text format")
        .samples
}

/// The sum of `name`'s samples with these labels.
fn counter(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v as u64,
            _ => 0,
        })
        .sum()
}

/// client.js on a blocking thread (the tests' runtime keeps serving the TCP front meanwhile).
async fn clients(
    package: &'static str,
    url: String,
    nodes: Arc<Vec<SioNode>>,
    n: usize,
    extra: &'static [&'static str],
) -> serde_json::Value {
    tokio::task::spawn_blocking(move || run_clients_with(package, &url, &nodes, n, extra))
        .await
        .expect("client.js thread")
}

/// One line of figures, for the test log.
fn figures(what: &str, r: &serde_json::Value) {
    eprintln!(
        "{what}: completed {} connected {} upgraded {} acks {} connectErrors {} \
         sessionUnknown {} acksFromOtherNode {} timeouts {} errors {} withCookie {} in {} ms",
        r["completed"],
        r["connected"],
        r["upgraded"],
        r["acks"],
        r["connectErrors"],
        r["sessionUnknown"],
        r["acksFromOtherNode"],
        r["timeouts"],
        r["errorsByMessage"],
        r["withCookie"],
        r["elapsedMs"]
    );
}

/// Every client connected, upgraded, and got all its acks from its first node: no session lost.
fn assert_no_session_lost(r: &serde_json::Value, n: u64, messages: u64) {
    figures("with engineio", r);
    assert_eq!(r["connectErrors"], 0, "{r}");
    assert_eq!(r["sessionUnknown"], 0, "{r}");
    assert_eq!(r["serverConnectionErrors"], serde_json::json!({}), "{r}");
    assert_eq!(r["connected"], n, "{r}");
    assert_eq!(r["upgraded"], n, "every client upgraded to WebSocket: {r}");
    assert_eq!(r["acks"], n * messages, "{r}");
    assert_eq!(r["acksFromOtherNode"], 0, "{r}");
    assert_eq!(r["completed"], n, "{r}");
    assert_eq!(r["withCookie"], 0, "the clients kept no cookie: {r}");
    let spread = r["firstNodes"].as_object().unwrap();
    assert_eq!(spread.len(), 3, "clients spread over all nodes: {r}");
}

/// Sessions broken by a proxy that is not sticky for these clients.
fn broken(r: &serde_json::Value) -> u64 {
    figures("without engineio", r);
    [
        "sessionUnknown",
        "connectErrors",
        "acksFromOtherNode",
        "timeouts",
    ]
    .iter()
    .map(|k| r[*k].as_u64().unwrap_or(0))
    .sum()
}

const COOKIELESS: &[&str] = &["--cookies", "off"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookieless_socketio_4_clients_keep_their_session_by_its_tag() {
    let nodes = Arc::new(cluster_of("socketio"));
    let proxy = Proxy::start(&with_admin(cluster_config(&nodes, ENGINEIO_AFFINITY)));
    let r = clients("socketio", proxy.url(""), nodes.clone(), 200, COOKIELESS).await;
    assert_no_session_lost(&r, 200, 20);
    let m = metrics(&proxy).await;
    let handshakes = ("result", "rewritten");
    assert_eq!(
        counter(&m, "tether_engineio_handshakes_total", &[handshakes]),
        200
    );
    let malformed = ("result", "malformed");
    assert_eq!(
        counter(&m, "tether_engineio_handshakes_total", &[malformed]),
        0
    );
    assert_eq!(counter(&m, "tether_engineio_invalid_tags_total", &[]), 0);
    // Every request after a handshake (polls, posts, the upgrade) was placed by its tag.
    let by_sid = counter(&m, "tether_placements_total", &[("source", "sid")]);
    assert!(by_sid >= 3 * 200, "{by_sid} placements by sid");
    assert_eq!(
        counter(&m, "tether_placements_total", &[("source", "cookie")]),
        0
    );
}

/// The proof that the test above can fail: the same clients with cookie affinity alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookieless_socketio_4_clients_lose_their_session_without_engineio() {
    let nodes = Arc::new(cluster_of("socketio"));
    let proxy = Proxy::start(&cluster_config(&nodes, COOKIE_AFFINITY));
    let r = clients("socketio", proxy.url(""), nodes.clone(), 200, COOKIELESS).await;
    assert!(r["sessionUnknown"].as_u64().unwrap_or(0) > 0, "{r}");
    assert!(
        broken(&r) > 100,
        "most sessions break without a cookie: {r}"
    );
}

/// A TCP front that hands accepted connections to two backends in turn, counting them.
struct Front {
    addr: SocketAddr,
    accepted: Arc<[AtomicUsize; 2]>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    async fn start(backends: [SocketAddr; 2]) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind front");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let counts = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            for i in 0.. {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                counts[i % 2].fetch_add(1, Ordering::Relaxed);
                let backend = backends[i % 2];
                tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                    }
                });
            }
        });
        Front {
            addr,
            accepted,
            task,
        }
    }

    fn counts(&self) -> [usize; 2] {
        [0, 1].map(|i| self.accepted[i].load(Ordering::Relaxed))
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_read_each_others_tags_with_a_new_connection_per_request() {
    let nodes = Arc::new(cluster_of("socketio"));
    let yaml = with_admin(cluster_config(&nodes, ENGINEIO_AFFINITY));
    let replicas = [Proxy::start(&yaml), Proxy::start(&yaml)];
    let front = Front::start([replicas[0].addr, replicas[1].addr]).await;
    let url = format!("http://{}", front.addr);
    let extra = &["--cookies", "off", "--keepalive", "off"];
    let r = clients("socketio", url, nodes.clone(), 200, extra).await;
    assert_no_session_lost(&r, 200, 20);
    let [a, b] = front.counts();
    eprintln!("front: {a} and {b} connections to the two replicas");
    // At least a handshake, a namespace connect, a poll and the upgrade per client.
    assert!(a + b >= 4 * 200, "a new connection per request: {a} + {b}");
    assert!(a.abs_diff(b) <= 1, "{a} vs {b}");
    for proxy in &replicas {
        let m = metrics(proxy).await;
        let handshakes = counter(&m, "tether_engineio_handshakes_total", &[]);
        let by_sid = counter(&m, "tether_placements_total", &[("source", "sid")]);
        assert!(handshakes > 0 && by_sid > 0, "{handshakes} {by_sid}");
        assert_eq!(counter(&m, "tether_engineio_invalid_tags_total", &[]), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookieless_socketio_2_clients_keep_their_eio3_session_by_its_tag() {
    let nodes = Arc::new(cluster_of("socketio2"));
    let proxy = Proxy::start(&with_admin(cluster_config(&nodes, ENGINEIO_AFFINITY)));
    let r = clients("socketio2", proxy.url(""), nodes.clone(), 200, COOKIELESS).await;
    assert_no_session_lost(&r, 200, 20);
    let m = metrics(&proxy).await;
    let rewritten = ("result", "rewritten");
    assert_eq!(
        counter(&m, "tether_engineio_handshakes_total", &[rewritten]),
        200
    );
    assert_eq!(counter(&m, "tether_engineio_invalid_tags_total", &[]), 0);

    // Without engineio, the same EIO=3 clients lose their sessions.
    let plain = Proxy::start(&cluster_config(&nodes, COOKIE_AFFINITY));
    let r = clients("socketio2", plain.url(""), nodes.clone(), 50, COOKIELESS).await;
    assert!(broken(&r) > 10, "{r}");
}

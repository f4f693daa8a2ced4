//! engine.io session affinity (`affinity.engineio: true`): socket.io clients that keep no cookies
//! stay on their node because their session id carries its node's tag. Real socket.io 4.x and
//! 2.x clusters with real clients (through one tether, and through two replicas behind a TCP
//! front that alternates connections), then raw requests with forged, truncated and foreign tags
//! against recording nodes that show what a node receives.

use crate::socketio::{cluster_config, cluster_of, run_clients_with, SioNode};
use crate::support::front::Front;
use crate::support::{counter, metrics, Proxy, COOKIE_AFFINITY};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Cookie affinity with engine.io session tags.
const ENGINEIO_AFFINITY: &str =
    "mode: cookie\ncookie:\n  secret_env: TETHER_SECRET\nengineio: true";

fn with_admin(yaml: String) -> String {
    format!("admin:\n  address: \"{{admin}}\"\n{yaml}")
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

/// A node that records the target of every request it receives and answers like engine.io
/// would, minimally: a polling handshake (`EIO=` and `transport=polling`, no `sid`) gets an
/// open packet for the session `abc` (EIO=4 `0{...}`, EIO=3 `LEN:0{...}`; chunked when the
/// query has `chunked=1`), anything else `ok`. Every answer names the node in `x-node`.
struct Recorder {
    id: &'static str,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

const OPEN: &str = r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

impl Recorder {
    async fn start(id: &'static str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let _ = Recorder::serve(id, stream, record).await;
                });
            }
        });
        Recorder {
            id,
            addr,
            seen,
            task,
        }
    }

    async fn serve(
        id: &str,
        stream: TcpStream,
        record: Arc<Mutex<Vec<String>>>,
    ) -> std::io::Result<()> {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let mut length = 0;
            loop {
                let mut field = String::new();
                if r.read_line(&mut field).await? == 0 || field == "\r\n" {
                    break;
                }
                let (name, value) = field.split_once(':').unwrap_or((&field, ""));
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            r.read_exact(&mut body).await?;
            let target = line.split(' ').nth(1).unwrap_or_default().to_string();
            record.lock().unwrap().push(target.clone());
            let handshake = target.contains("transport=polling") && !target.contains("sid=");
            let answer = match () {
                _ if handshake && target.contains("EIO=3") => format!("{}:{OPEN}", OPEN.len()),
                _ if handshake && target.contains("EIO=") => OPEN.to_string(),
                _ => "ok".to_string(),
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nx-node: {id}\r\n"
            );
            let out = if target.contains("chunked=1") {
                let (a, b) = answer.split_at(answer.len() / 2);
                format!(
                    "{head}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                    a.len(),
                    b.len()
                )
            } else {
                format!("{head}Content-Length: {}\r\n\r\n{answer}", answer.len())
            };
            w.write_all(out.as_bytes()).await?;
        }
    }

    /// Every target received since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.seen.lock().unwrap())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One upstream over `nodes` (round robin, so untagged requests alternate), engine.io tags on.
fn recorder_config(nodes: &[(&str, SocketAddr)]) -> String {
    let mut y = String::from(
        "listen:\n  - address: \"{listen}\"\nadmin:\n  address: \"{admin}\"\nupstreams:\n  realtime:\n    nodes:\n",
    );
    for (id, addr) in nodes {
        y.push_str(&format!("      - {{ id: {id}, address: \"{addr}\" }}\n"));
    }
    y.push_str("    balance: round_robin\n    affinity:\n");
    for line in ENGINEIO_AFFINITY.lines() {
        y.push_str(&format!("      {line}\n"));
    }
    y
}

/// A raw HTTP/1.1 request on its own connection; the status, `x-node` and body of the answer.
async fn raw(proxy: &Proxy, method: &str, target: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let node = head
        .lines()
        .find_map(|l| l.strip_prefix("x-node: "))
        .unwrap_or_default()
        .to_string();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        node,
        if chunked { dechunk(body) } else { body.into() },
    )
}

/// The data of a chunked body (sizes and data only: enough for these answers).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A handshake through `proxy`: the answering node and the tagged session id `abc~TAG`.
async fn handshake(proxy: &Proxy, query: &str) -> (String, String) {
    let (status, node, body) = raw(proxy, "GET", &format!("/socket.io/?{query}"), "").await;
    assert_eq!(status, 200, "{body:?} (0: closed without an answer)");
    let sid = body
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {body:?}"))
        .to_string();
    let tag = sid
        .strip_prefix("abc~")
        .unwrap_or_else(|| panic!("{body:?}"));
    assert_eq!(tag.len(), 28, "{body:?}");
    assert!(
        tag.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{tag}"
    );
    (node, sid)
}

/// No recorder has seen a `~` since the last call; returns what each saw.
fn untagged(nodes: &[&Recorder]) -> HashMap<&'static str, Vec<String>> {
    let seen: HashMap<_, _> = nodes.iter().map(|n| (n.id, n.take())).collect();
    for (id, targets) in &seen {
        for t in targets {
            assert!(!t.contains('~'), "{id} received a tag: {t}");
        }
    }
    seen
}

const POLL: &str = "/socket.io/?EIO=4&transport=polling";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_sid_reaches_its_node_untagged() {
    let (a, b) = (
        Recorder::start("rec-a").await,
        Recorder::start("rec-b").await,
    );
    let proxy = Proxy::start(&recorder_config(&[("rec-a", a.addr), ("rec-b", b.addr)]));
    untagged(&[&a, &b]); // tether's readiness probe

    // EIO=4 (Content-Length, then chunked) and EIO=3 (`LEN:` grown by the tag's 29 bytes).
    let (node, sid) = handshake(&proxy, "EIO=4&transport=polling&t=1").await;
    handshake(&proxy, "EIO=4&transport=polling&chunked=1").await;
    let (status, _, body) = raw(&proxy, "GET", "/socket.io/?EIO=3&transport=polling", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        body.split(':').next(),
        Some(&*(OPEN.len() + 29).to_string())
    );
    assert_eq!(body.len(), body.find(':').unwrap() + 1 + OPEN.len() + 29);
    let seen = untagged(&[&a, &b]);
    assert_eq!(seen.values().map(Vec::len).sum::<usize>(), 3, "{seen:?}");

    // Polls and posts with the tagged sid: all on the handshake's node, which sees `sid=abc`.
    for i in 0..6 {
        let (method, body) = if i % 2 == 0 {
            ("GET", "")
        } else {
            ("POST", "40")
        };
        let r = raw(&proxy, method, &format!("{POLL}&sid={sid}&t={i}"), body).await;
        assert_eq!(r, (200, node.clone(), "ok".to_string()));
    }
    let seen = untagged(&[&a, &b]);
    let (other, _) = seen.iter().find(|(id, _)| **id != node).unwrap();
    assert!(seen[other].is_empty(), "{seen:?}");
    for (i, t) in seen[node.as_str()].iter().enumerate() {
        assert_eq!(t, &format!("{POLL}&sid=abc&t={i}"));
    }

    let m = metrics(&proxy).await;
    let rewritten = ("result", "rewritten");
    assert_eq!(
        counter(&m, "tether_engineio_handshakes_total", &[rewritten]),
        3
    );
    assert_eq!(
        counter(&m, "tether_placements_total", &[("source", "sid")]),
        6
    );
    assert_eq!(counter(&m, "tether_engineio_invalid_tags_total", &[]), 0);
}

/// A secret other than the test secret: its tags are real, but not tether's.
const OTHER_SECRET: &str = "another-secret-0123456789abcdef012345";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_foreign_orphan_and_truncated_tags_are_stripped() {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    let (a, b) = (
        Recorder::start("rec-a").await,
        Recorder::start("rec-b").await,
    );
    let both = [("rec-a", a.addr), ("rec-b", b.addr)];
    let proxy = Proxy::start(&recorder_config(&both));
    // The same nodes under another secret, and the same secret once rec-b left the config.
    let foreign =
        Proxy::start_with_env(&recorder_config(&both), &[("TETHER_SECRET", OTHER_SECRET)]);
    let without_b = Proxy::start(&recorder_config(&both[..1]));

    // Real tags: one naming each node (round robin alternates handshakes), one of the other key.
    let mut sids = HashMap::new();
    while sids.len() < 2 {
        let (node, sid) = handshake(&proxy, "EIO=4&transport=polling").await;
        sids.insert(node, sid);
    }
    let (_, foreign_sid) = handshake(&foreign, "EIO=4&transport=polling").await;
    let tag_b = sids["rec-b"].strip_prefix("abc").unwrap().to_string();
    untagged(&[&a, &b]);

    let forged: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(28)
        .map(char::from)
        .collect();
    let mut garbled = tag_b.clone().into_bytes();
    garbled[10] = if garbled[10] == b'A' { b'B' } else { b'A' };
    let garbled = String::from_utf8(garbled).unwrap();
    let cases = [
        (&proxy, format!("abc~{forged}"), "abc", "forged"),
        (&proxy, format!("abc{garbled}"), "abc", "garbled"),
        (&proxy, foreign_sid.clone(), "abc", "another secret"),
        (
            &proxy,
            format!("xyz{tag_b}"),
            "xyz",
            "moved to another session id",
        ),
        (
            &without_b,
            sids["rec-b"].clone(),
            "abc",
            "naming a node that left",
        ),
    ];
    for (via, sent, expected, what) in &cases {
        for method in ["GET", "POST"] {
            let (status, node, body) = raw(via, method, &format!("{POLL}&sid={sent}"), "1").await;
            // The node's own answer, whichever node the mode picked.
            assert_eq!((status, body.as_str()), (200, "ok"), "{what}");
            assert!(node == "rec-a" || node == "rec-b", "{what}: {node}");
            if *what == "naming a node that left" {
                assert_eq!(node, "rec-a");
            }
            let seen = untagged(&[&a, &b]);
            let all: Vec<&String> = seen.values().flatten().collect();
            assert_eq!(all, [&format!("{POLL}&sid={expected}")], "{what}");
        }
    }
    let invalid =
        |m: &[prometheus_parse::Sample]| counter(m, "tether_engineio_invalid_tags_total", &[]);
    assert_eq!(invalid(&metrics(&proxy).await), 8);
    assert_eq!(invalid(&metrics(&without_b).await), 2);

    // Truncated by a character, or to its separator alone: not a tag's shape, so as far as
    // tether can tell it is part of the id (socket.io lets applications choose ids with `~`):
    // the node gets it as sent, answers as for any id it never issued, and nothing is counted.
    let truncated = &sids["rec-b"][..sids["rec-b"].len() - 1];
    for sent in [truncated, "abc~"] {
        let (status, node, body) = raw(&proxy, "GET", &format!("{POLL}&sid={sent}"), "").await;
        assert_eq!((status, body.as_str()), (200, "ok"), "{sent}");
        assert!(node == "rec-a" || node == "rec-b", "{sent}: {node}");
        let seen: Vec<String> = [&a, &b].iter().flat_map(|n| n.take()).collect();
        assert_eq!(seen, [format!("{POLL}&sid={sent}")], "{sent}");
    }
    assert_eq!(invalid(&metrics(&proxy).await), 8);

    // The separator percent-encoded (`%7E`): the same tag, read and cut off the same way.
    let encoded = sids["rec-b"].replacen('~', "%7E", 1);
    let (status, node, _) = raw(&proxy, "GET", &format!("{POLL}&sid={encoded}"), "").await;
    assert_eq!((status, node.as_str()), (200, "rec-b"));
    let seen = untagged(&[&a, &b]);
    assert_eq!(seen["rec-b"], [format!("{POLL}&sid=abc")]);
}

/// Against a real socket.io node: a forged tag on a live session is stripped, so the session
/// goes on; a truncated tag, or a tag on an unknown id, gets the node's own `400 Session ID
/// unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tags_get_the_socketio_nodes_own_answer() {
    let node = SioNode::start("socketio", "node-a");
    let proxy = Proxy::start(&cluster_config(
        std::slice::from_ref(&node),
        ENGINEIO_AFFINITY,
    ));
    let (status, _, body) = raw(&proxy, "GET", POLL, "").await;
    assert_eq!(status, 200, "{body:?} (0: closed without an answer)");
    let sid = body
        .split("\"sid\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let (plain, tag) = sid.split_once('~').expect("a tagged sid");
    let forged = format!("{plain}~{}", "A".repeat(28));

    // The namespace connect and a poll, with a forged tag: the node knows the session.
    let r = raw(&proxy, "POST", &format!("{POLL}&sid={forged}"), "40").await;
    assert_eq!((r.0, r.2.as_str()), (200, "ok"), "{r:?}");
    let (status, _, body) = raw(&proxy, "GET", &format!("{POLL}&sid={forged}"), "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("40{\"sid\":"), "{body}");

    // A truncated tag is not a tag's shape: the node gets the id as sent, and does not know it.
    let truncated = &sid[..sid.len() - 1];
    let (status, _, body) = raw(&proxy, "POST", &format!("{POLL}&sid={truncated}"), "3").await;
    assert_eq!(status, 400, "{truncated}: {body}");
    assert_eq!(body, r#"{"code":1,"message":"Session ID unknown"}"#);

    let unknown = "/socket.io/?EIO=4&transport=polling&sid=";
    let sent = format!("nosuchsession~{tag}");
    let (status, _, body) = raw(&proxy, "GET", &format!("{unknown}{sent}"), "").await;
    assert_eq!(status, 400, "{sent}: {body}");
    assert_eq!(body, r#"{"code":1,"message":"Session ID unknown"}"#);
}

/// The `sid` of an open packet in a handshake answer (`"sid":"..."`).
fn sid_of(body: &str) -> String {
    body.split("\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {body:?}"))
        .to_string()
}

/// A tag is what follows the id's last `~`: 28 base64url characters.
fn tagged(sid: &str) -> bool {
    sid.rsplit_once('~').is_some_and(|(_, t)| {
        t.len() == 28
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// socket.io lets an application choose its session ids (`generateId`). Ids holding `~`, one
/// a prefix of another live one (`node-a-0` and `node-a-0~b`), keep their sessions through
/// tether's tags: the tag is read after the last separator, and verifies over the whole id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_with_tildes_and_prefixes_keep_their_node() {
    let nodes: Vec<SioNode> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| SioNode::start_with("socketio", id, &["--ids", "tilde"]))
        .collect();
    let nodes = Arc::new(nodes);
    let proxy = Proxy::start(&with_admin(cluster_config(&nodes, ENGINEIO_AFFINITY)));
    let r = clients("socketio", proxy.url(""), nodes.clone(), 120, COOKIELESS).await;
    assert_no_session_lost(&r, 120, 20);
    // The nodes really issued such ids, and tether tagged every one.
    for n in nodes.iter() {
        let ids: Vec<String> = serde_json::from_value(n.stats()["ids"].clone()).unwrap();
        assert!(ids.iter().any(|i| i.ends_with("-0~b")), "{ids:?}");
        assert!(ids.iter().any(|i| i.ends_with("-0")), "{ids:?}");
    }
    let m = metrics(&proxy).await;
    let rewritten = ("result", "rewritten");
    assert_eq!(
        counter(&m, "tether_engineio_handshakes_total", &[rewritten]),
        120
    );
    assert_eq!(counter(&m, "tether_engineio_invalid_tags_total", &[]), 0);
}

/// The query spellings engine.io reads one way and a naive reader another, each sent to a real
/// socket.io node through tether.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_read_as_the_engine_io_server_reads_them() {
    let node = SioNode::start("socketio", "node-a");
    let proxy = Proxy::start(&with_admin(cluster_config(
        std::slice::from_ref(&node),
        ENGINEIO_AFFINITY,
    )));
    // A handshake whose parameter name is percent-encoded is still a handshake: tagged.
    let (status, _, body) = raw(&proxy, "GET", "/socket.io/?%45IO=4&transport=polling", "").await;
    assert_eq!(status, 200, "{body}");
    let sid = sid_of(&body);
    assert!(tagged(&sid), "{body}");
    // `s%69d` is `sid` to engine.io: its tag is cut, so the node knows the session.
    let (status, _, body) = raw(&proxy, "POST", &format!("{POLL}&s%69d={sid}"), "40").await;
    assert_eq!((status, body.as_str()), (200, "ok"), "s%69d");
    let (status, _, body) = raw(&proxy, "GET", &format!("{POLL}&s%69d={sid}"), "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("40{\"sid\":"), "{body}");
    // A sid that is only a tag is empty once the tag is cut: engine.io then starts a session,
    // and tether tags its id as it would any handshake's.
    let tag_only = &sid[sid.rfind('~').unwrap()..];
    let (status, _, body) = raw(&proxy, "GET", &format!("{POLL}&sid={tag_only}"), "").await;
    assert_eq!(status, 200, "{body}");
    let fresh = sid_of(&body);
    assert!(tagged(&fresh) && fresh != sid, "{body}");
    let m = metrics(&proxy).await;
    assert_eq!(
        counter(
            &m,
            "tether_engineio_handshakes_total",
            &[("result", "rewritten")]
        ),
        2
    );
}

/// engine.io 3 servers answer in revision 3 whatever `EIO` says; a revision-4 server only when
/// it is exactly `4`. `EIO=04` and `EIO=+4` are revision 3 (a naive integer parse reads 4 and
/// looks for a revision-4 open packet that is not there, leaving the session untagged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_values_that_are_not_exactly_4_are_revision_3() {
    let node = SioNode::start("socketio2", "node-a");
    let proxy = Proxy::start(&with_admin(cluster_config(
        std::slice::from_ref(&node),
        ENGINEIO_AFFINITY,
    )));
    for eio in ["04", "%2B4", "3"] {
        let target = format!("/socket.io/?EIO={eio}&transport=polling");
        let (status, _, body) = raw(&proxy, "GET", &target, "").await;
        assert_eq!(status, 200, "EIO={eio}: {body}");
        assert!(tagged(&sid_of(&body)), "EIO={eio}: {body}");
    }
    let m = metrics(&proxy).await;
    assert_eq!(
        counter(
            &m,
            "tether_engineio_handshakes_total",
            &[("result", "malformed")]
        ),
        0
    );
}

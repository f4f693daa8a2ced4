//! Every exchange ends in exactly one outcome, whatever step it ended in: one access-log line
//! with the status the client got, the node and what failed; `/metrics` counting the failure by
//! kind (a client that went away apart from the 4xx); passive health seeing the failures that
//! mean a sick node, and only those. A scripted node fails each exchange at a chosen step.

use crate::support::{self, counter, metrics, Proxy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted node does with a request.
#[derive(Clone)]
enum Act {
    /// Write these bytes and keep reading requests.
    Reply(Vec<u8>),
    /// Write these bytes and close.
    ReplyClose(Vec<u8>),
    /// Write these bytes and then neither write nor close (until the test ends).
    ReplyHang(Vec<u8>),
    /// Write the first bytes, wait, write the second and close: what follows a head arrives
    /// after the head went out.
    Split(Vec<u8>, Vec<u8>),
}

/// A node that answers each request by its path (query included), from a script.
struct Scripted {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    async fn start(script: HashMap<&'static str, Act>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(script);
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s, Arc::clone(&script)));
            }
        });
        Scripted { addr, task }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream, script: Arc<HashMap<&'static str, Act>>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        let act = script.get(target.as_str()).cloned().unwrap_or_else(|| {
            Act::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec())
        });
        match act {
            Act::Reply(b) => {
                if s.write_all(&b).await.is_err() {
                    return;
                }
            }
            Act::ReplyClose(b) => {
                let _ = s.write_all(&b).await;
                return;
            }
            Act::ReplyHang(b) => {
                let _ = s.write_all(&b).await;
                std::future::pending::<()>().await;
            }
            Act::Split(first, second) => {
                let _ = s.write_all(&first).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = s.write_all(&second).await;
                return;
            }
        }
    }
}

/// An answer to a plain GET with a chunked body whose second chunk line is garbage.
const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
/// 100 bytes promised, 10 sent.
const CUT_SHORT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
const UNASKED_101: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";

fn script() -> HashMap<&'static str, Act> {
    let big = {
        // Eight megabytes: more than the client's and tether's socket buffers together, so
        // tether is still writing when the client closes.
        let mut b = b"HTTP/1.1 200 OK\r\ncontent-length: 8388608\r\n\r\n".to_vec();
        b.resize(b.len() + 8 * 1024 * 1024, b'x');
        b
    };
    let handshake_head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n".to_vec();
    let with = |tail: &[u8]| [handshake_head.as_slice(), tail].concat();
    HashMap::from([
        (
            "/broken-chunked",
            Act::Split(CHUNKED_HEAD.to_vec(), b"ZZZ\r\n".to_vec()),
        ),
        ("/cut-short", Act::Split(CUT_SHORT.to_vec(), Vec::new())),
        ("/stall-body", Act::ReplyHang(CUT_SHORT.to_vec())),
        ("/unasked-101", Act::Reply(UNASKED_101.to_vec())),
        ("/close-no-head", Act::ReplyClose(Vec::new())),
        ("/big", Act::Reply(big)),
        ("/slow/no-head", Act::ReplyHang(Vec::new())),
        (
            "/socket.io/?EIO=4&transport=polling&case=closed",
            Act::ReplyClose(with(b"content-length: 100\r\n\r\n0{\"sid\":\"ab")),
        ),
        (
            "/socket.io/?EIO=4&transport=polling&case=stall",
            Act::ReplyHang(with(b"content-length: 100\r\n\r\n0{\"sid\":\"ab")),
        ),
        (
            "/socket.io/?EIO=4&transport=polling&case=bad",
            Act::Reply(with(
                b"transfer-encoding: chunked\r\n\r\n4\r\n0{\"s\r\nQQ\r\n",
            )),
        ),
    ])
}

/// A proxy over the scripted node: `plain` (everything), `slow` (where a missing head makes
/// the node unhealthy at the first time) and `eio` (engine.io affinity), with the access log
/// in JSON.
fn config(node: SocketAddr) -> String {
    format!(
        "listen: [{{ address: \"{{listen}}\" }}]\n\
         admin: {{ address: \"{{admin}}\" }}\n\
         log: {{ format: json }}\n\
         upstreams:\n\
         \x20 plain:\n\
         \x20   nodes: [{{ id: plain-node, address: \"{node}\" }}]\n\
         \x20   affinity: {{ mode: none }}\n\
         \x20   timeouts: {{ read: 1s, connect: 1s }}\n\
         \x20   passive: {{ max_fails: 1, fail_timeout: 60s }}\n\
         \x20 slow:\n\
         \x20   nodes: [{{ id: slow-node, address: \"{node}\" }}]\n\
         \x20   affinity: {{ mode: none }}\n\
         \x20   timeouts: {{ read: 1s, connect: 1s }}\n\
         \x20   passive: {{ max_fails: 1, fail_timeout: 60s }}\n\
         \x20 eio:\n\
         \x20   nodes: [{{ id: eio-node, address: \"{node}\" }}]\n\
         \x20   affinity: {{ mode: none, engineio: true, cookie: {{ secret_env: TETHER_SECRET }} }}\n\
         \x20   timeouts: {{ read: 1s, connect: 1s }}\n\
         \x20   passive: {{ max_fails: 1, fail_timeout: 60s }}\n\
         routes:\n\
         \x20 - {{ path_prefix: /slow/, upstream: slow }}\n\
         \x20 - {{ path_prefix: /socket.io/, upstream: eio }}\n\
         \x20 - {{ path_prefix: /, upstream: plain }}\n"
    )
}

/// Send `request` raw and read whatever comes back until the connection closes (bounded).
async fn exchange(proxy: &Proxy, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    got
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").into_bytes()
}

/// The access-log lines of requests for `path` (path without the query), waiting (bounded) for
/// `n` of them: the log thread writes batches every 200 ms.
fn access_lines(proxy: &Proxy, path: &str, n: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let lines: Vec<serde_json::Value> = proxy
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "tether::access" && v["kind"] == "request")
            .filter(|v| v["path"] == path)
            .collect();
        if lines.len() >= n || start.elapsed() > Duration::from_secs(5) {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one access line of `path`: its status, node and failure.
fn one_line(proxy: &Proxy, path: &str) -> (u64, String, String) {
    let lines = access_lines(proxy, path, 1);
    assert_eq!(lines.len(), 1, "{path}: one access line, got {lines:?}");
    let l = &lines[0];
    (
        l["status"].as_u64().unwrap_or(0),
        l["node"].as_str().unwrap_or("").to_string(),
        l["failure"].as_str().unwrap_or("").to_string(),
    )
}

fn health(status: &serde_json::Value, upstream: &str) -> String {
    status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == upstream)
        .map(|u| u["nodes"][0]["health"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exchange_has_one_outcome_whatever_step_it_ended_in() {
    let node = Scripted::start(script()).await;
    let proxy = Proxy::start(&config(node.addr));

    // After the response head went out: the client got the node's 200, then a close.
    let got = exchange(&proxy, &get("/broken-chunked")).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(!got.ends_with(b"0\r\n\r\n"), "never a false end");
    assert_eq!(
        one_line(&proxy, "/broken-chunked"),
        (200, "plain-node".into(), "body_broken".into())
    );
    let got = exchange(&proxy, &get("/cut-short")).await;
    assert!(got.starts_with(b"HTTP/1.1 200 "));
    assert_eq!(
        one_line(&proxy, "/cut-short"),
        (200, "plain-node".into(), "body_broken".into())
    );
    // A body that stops for timeouts.read: the head went out, the connection closes.
    let got = exchange(&proxy, &get("/stall-body")).await;
    assert!(got.starts_with(b"HTTP/1.1 200 "));
    assert_eq!(
        one_line(&proxy, "/stall-body"),
        (200, "plain-node".into(), "body_timeout".into())
    );
    // A 101 nobody asked for: tether's own 502.
    let got = exchange(&proxy, &get("/unasked-101")).await;
    assert!(
        got.starts_with(b"HTTP/1.1 502 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(
        one_line(&proxy, "/unasked-101"),
        (502, "plain-node".into(), "unasked_upgrade".into())
    );
    let got = exchange(&proxy, &get("/close-no-head")).await;
    assert!(got.starts_with(b"HTTP/1.1 502 "));
    assert_eq!(
        one_line(&proxy, "/close-no-head"),
        (502, "plain-node".into(), "closed".into())
    );

    // The engine.io handshake's body step: each way it can fail before the head goes out.
    // (The last one marks the node unhealthy: it goes last.)
    for (case, status) in [("closed", 502), ("bad", 502), ("stall", 504)] {
        let path = format!("/socket.io/?EIO=4&transport=polling&case={case}");
        let got = exchange(&proxy, &get(&path)).await;
        let want = format!("HTTP/1.1 {status} ");
        assert!(
            got.starts_with(want.as_bytes()),
            "{case}: {:?}",
            String::from_utf8_lossy(&got)
        );
        let _ = access_lines(&proxy, "/socket.io/", 1);
    }
    let eio: Vec<(u64, String)> = access_lines(&proxy, "/socket.io/", 3)
        .iter()
        .map(|l| {
            (
                l["status"].as_u64().unwrap(),
                l["failure"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        eio,
        [
            (502, "closed".to_string()),
            (502, "bad_response".to_string()),
            (504, "read_timeout".to_string())
        ]
    );

    // Passive health: none of the above is a sick node but the handshake that never came...
    let status = support::admin_status(&proxy).await;
    assert_eq!(health(&status, "plain"), "healthy", "{status}");
    assert_eq!(
        health(&status, "eio"),
        "unhealthy",
        "a missing answer counts: {status}"
    );
    // ... and a response head that never comes.
    let got = exchange(&proxy, &get("/slow/no-head")).await;
    assert!(got.starts_with(b"HTTP/1.1 504 "));
    assert_eq!(
        one_line(&proxy, "/slow/no-head"),
        (504, "slow-node".into(), "read_timeout".into())
    );
    let status = support::admin_status(&proxy).await;
    assert_eq!(health(&status, "slow"), "unhealthy", "{status}");

    let m = metrics(&proxy).await;
    let failures = |upstream: &str, kind: &str| {
        counter(
            &m,
            "tether_failures_total",
            &[("upstream", upstream), ("kind", kind)],
        )
    };
    assert_eq!(failures("plain", "body_broken"), 2);
    assert_eq!(failures("plain", "body_timeout"), 1);
    assert_eq!(failures("plain", "unasked_upgrade"), 1);
    assert_eq!(failures("plain", "closed"), 1);
    assert_eq!(failures("eio", "closed"), 1);
    assert_eq!(failures("eio", "read_timeout"), 1);
    assert_eq!(failures("eio", "bad_response"), 1);
    assert_eq!(failures("slow", "read_timeout"), 1);
    // The node's status classes count what the clients got: 200s and tether's 502s and 504s.
    let class = |c: &str| {
        counter(
            &m,
            "tether_requests_total",
            &[("node", "plain-node"), ("class", c)],
        )
    };
    assert_eq!(class("5xx"), 2, "unasked 101 and a closed connection");
    assert!(
        class("2xx") >= 3,
        "the three bodies that broke after a 200 head"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_is_counted_apart_and_sent_nothing() {
    let node = Scripted::start(script()).await;
    let proxy = Proxy::start(&config(node.addr));

    // Closes while its 8 MB answer is still being written.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&get("/big")).await.unwrap();
    let mut head = [0u8; 64];
    s.read_exact(&mut head).await.unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200 "));
    drop(s);
    assert_eq!(
        one_line(&proxy, "/big"),
        (499, "plain-node".into(), "client_gone".into())
    );

    // Closes in the middle of its request body: no 400 is logged, none is written.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        got.is_empty(),
        "nothing written: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(
        one_line(&proxy, "/upload"),
        (499, "plain-node".into(), "client_gone".into())
    );

    let m = metrics(&proxy).await;
    assert_eq!(
        counter(
            &m,
            "tether_failures_total",
            &[("upstream", "plain"), ("kind", "client_gone")]
        ),
        2
    );
    assert_eq!(
        counter(
            &m,
            "tether_requests_total",
            &[("node", "plain-node"), ("class", "4xx")]
        ),
        0,
        "a dashboard's 4xx panel does not see clients that left"
    );
    assert_eq!(
        counter(&m, "tether_refusals_total", &[("reason", "bad_request")]),
        0
    );
}

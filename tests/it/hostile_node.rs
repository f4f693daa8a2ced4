//! The response side of the differential suite: a scripted node answers with canned raw bytes
//! (1xx floods, broken framing, interim answers then a close, bytes past the body) and counts
//! the requests it gets and on which connections. Each scenario checks what the client got,
//! read strictly (`support::strict`), and what the node saw. tether runs with one worker thread
//! so a node connection it keeps is reused by the next request.
//!
//! All scenarios run in one test and every failure is listed, grouped, before it fails.

use crate::support::strict::{escape, ReadError, Reader, Response};
use crate::support::Proxy;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A request as the scripted node got it.
#[derive(Debug, Clone)]
struct Got {
    /// Which connection (0, 1, ... in accept order).
    conn: usize,
    /// Its place on that connection (0: the first).
    nth: usize,
    method: String,
    path: String,
}

/// What the node does after reading a request.
enum Act {
    /// Write these bytes and keep the connection.
    Reply(Vec<u8>),
    /// Write these bytes and close.
    ReplyClose(Vec<u8>),
}

type Script = Arc<dyn Fn(&Got) -> Act + Send + Sync>;

/// Requests past this many are answered by a close: a proxy retrying forever stops here.
const RUNAWAY: usize = 50;

struct Node {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(script: Script) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = Arc::clone(&log);
        let task = tokio::spawn(async move {
            let mut conn = 0;
            while let Ok((s, _)) = listener.accept().await {
                let (script, log) = (Arc::clone(&script), Arc::clone(&l));
                tokio::spawn(serve(s, conn, script, log));
                conn += 1;
            }
        });
        Node { addr, log, task }
    }

    fn got(&self) -> Vec<Got> {
        self.log.lock().unwrap().clone()
    }

    fn requests_for(&self, path: &str) -> usize {
        self.got().iter().filter(|g| g.path == path).count()
    }

    fn conn_of(&self, path: &str) -> Option<usize> {
        self.got().iter().find(|g| g.path == path).map(|g| g.conn)
    }

    fn describe(&self) -> String {
        let got = self.got();
        if got.len() > 8 {
            return format!("{} requests: {:?} ...", got.len(), &got[..8]);
        }
        got.iter()
            .map(|g| format!("{} {} (conn {}, #{})", g.method, g.path, g.conn, g.nth))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve one node connection: read each request (head, and a body by length or chunks), log it,
/// act.
async fn serve(mut s: TcpStream, conn: usize, script: Script, log: Arc<Mutex<Vec<Got>>>) {
    let mut buf = Vec::new();
    let mut nth = 0;
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let mut words = head.split(' ');
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let lower = head.to_ascii_lowercase();
        let length = lower
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0usize);
        let chunked = lower.contains("transfer-encoding: chunked");
        buf.drain(..end);
        // The body: by length, or up to the last chunk (good enough for the bodies tests send).
        loop {
            let have = if chunked {
                buf.windows(5)
                    .position(|w| w == b"0\r\n\r\n")
                    .map(|i| i + 5)
            } else if buf.len() >= length {
                Some(length)
            } else {
                None
            };
            if let Some(n) = have {
                buf.drain(..n);
                break;
            }
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        // tether's readiness probe (Proxy::start) always gets a plain answer, unlogged.
        if path.starts_with("/__tether_ready") {
            if s.write_all(OK).await.is_err() {
                return;
            }
            continue;
        }
        let got = Got {
            conn,
            nth,
            method,
            path,
        };
        nth += 1;
        let total = {
            let mut l = log.lock().unwrap();
            l.push(got.clone());
            l.len()
        };
        if total > RUNAWAY {
            return;
        }
        match script(&got) {
            Act::Reply(bytes) => {
                if s.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Act::ReplyClose(bytes) => {
                let _ = s.write_all(&bytes).await;
                return;
            }
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn ok() -> Act {
    Act::Reply(OK.to_vec())
}

fn yaml(node: SocketAddr) -> String {
    format!(
        "listen:\n  - address: \"{{listen}}\"\nupstreams:\n  realtime:\n    nodes:\n      - {{ id: hostile, address: \"{node}\" }}\n    affinity: {{ mode: none }}\n    timeouts: {{ connect: 1s, read: 2s, send: 2s }}\n    passive: {{ max_fails: 0 }}\n"
    )
}

/// One client connection to tether that sends raw requests and reads answers strictly.
struct Client {
    s: TcpStream,
    reader: Reader,
}

/// What one request got: its answers (interim ones first), or why none could be read.
struct Answer {
    responses: Vec<Response>,
    error: Option<ReadError>,
}

impl Answer {
    fn last(&self) -> Option<&Response> {
        self.responses.last()
    }
    fn status(&self) -> u16 {
        self.last().map_or(0, |r| r.status)
    }
    fn interims(&self) -> usize {
        self.responses.iter().filter(|r| r.status < 200).count()
    }
    fn describe(&self) -> String {
        let mut parts: Vec<String> = self.responses.iter().map(|r| r.summary()).collect();
        if self.responses.len() > 6 {
            parts = vec![format!(
                "{} responses ... {}",
                self.responses.len(),
                parts.last().unwrap()
            )];
        }
        if let Some(e) = &self.error {
            parts.push(e.to_string());
        }
        parts.join(" | ")
    }
    /// The client got bytes that are not valid HTTP/1.1.
    fn invalid(&self) -> Option<String> {
        match &self.error {
            Some(ReadError::Invalid(e)) => Some(e.clone()),
            _ => None,
        }
    }
}

impl Client {
    async fn new(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            s,
            reader: Reader::default(),
        }
    }

    /// Send `raw` and read up to its final answer.
    async fn ask(&mut self, raw: &[u8], head: bool) -> Answer {
        let _ = self.s.write_all(raw).await;
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut responses = Vec::new();
        loop {
            match self.reader.next(&mut self.s, head, deadline).await {
                Ok(r) => {
                    let done = r.status >= 200;
                    responses.push(r);
                    if done {
                        return Answer {
                            responses,
                            error: None,
                        };
                    }
                }
                Err(e) => {
                    return Answer {
                        responses,
                        error: Some(e),
                    }
                }
            }
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

fn post(path: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello").into_bytes()
}

/// A scenario's verdict: `Err` says what went wrong.
type Verdict = Result<(), String>;

fn check(ok: bool, what: impl FnOnce() -> String) -> Verdict {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// A scripted node and tether in front of it.
async fn setup(script: impl Fn(&Got) -> Act + Send + Sync + 'static) -> (Node, Proxy) {
    let node = Node::start(Arc::new(script)).await;
    let proxy = Proxy::start_with_args(&yaml(node.addr), &["--threads", "1"]);
    (node, proxy)
}

/// `answer` is 502, or a strictly valid 200 whose body is `body`.
fn bad_gateway_or(answer: &Answer, body: &[u8]) -> Verdict {
    if let Some(e) = answer.invalid() {
        return Err(format!("the client got invalid HTTP: {e}"));
    }
    match answer.last() {
        Some(r) if r.status == 502 => Ok(()),
        Some(r) if r.status == 200 && r.body == body && answer.error.is_none() => Ok(()),
        _ => Err(format!("expected 502 or a clean 200 {}", escape(body, 20))),
    }
}

/// A broken response body: a 502 (nothing forwarded yet), or a head and a cut body (the close
/// tells the client), but never the broken bytes themselves; and the node connection is not
/// reused.
async fn broken_body(node: &Node, proxy: &Proxy, answer: &Answer) -> Verdict {
    if let Some(e) = answer.invalid() {
        return Err(format!("the broken framing reached the client: {e}"));
    }
    let fine = answer.status() == 502
        || matches!(
            answer.error,
            Some(ReadError::Truncated(_)) | Some(ReadError::Eof)
        );
    check(fine, || "expected a 502 or a cut body".into())?;
    next_on_new_connection(node, proxy, "/x").await
}

/// A request after `path` goes on a new node connection (the one `path` used is not reused).
async fn next_on_new_connection(node: &Node, proxy: &Proxy, path: &str) -> Verdict {
    let a = Client::new(proxy.addr)
        .await
        .ask(&get("/after"), false)
        .await;
    check(a.status() == 200 && a.invalid().is_none(), || {
        format!("the next request got {}", a.describe())
    })?;
    check(node.conn_of("/after") != node.conn_of(path), || {
        "the node connection was reused after it".into()
    })
}

async fn flood_of_103() -> (Answer, Node, Verdict) {
    let (node, proxy) = setup(|_| {
        let mut b = b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n".repeat(200);
        b.extend_from_slice(OK);
        Act::Reply(b)
    })
    .await;
    let a = Client::new(proxy.addr).await.ask(&get("/x"), false).await;
    let v = bad_gateway_or(&a, b"ok")
        .and(check(a.interims() <= 200, || {
            "more 1xx than the node sent".into()
        }))
        .and(check(node.requests_for("/x") == 1, || {
            "sent more than once".into()
        }));
    (a, node, v)
}

/// The node answers `/warm` normally (so the connection is pooled), then `interim` and a close
/// to everything else.
async fn interim_then_close(
    interim: &'static [u8],
    request: Vec<u8>,
    most: usize,
) -> (Answer, Node, Verdict) {
    let (node, proxy) = setup(move |g| {
        if g.path == "/warm" {
            ok()
        } else {
            Act::ReplyClose(interim.to_vec())
        }
    })
    .await;
    let mut c = Client::new(proxy.addr).await;
    let warm = c.ask(&get("/warm"), false).await;
    let a = c.ask(&request, false).await;
    let n = node.requests_for("/x");
    let v = check(warm.status() == 200, || "warm-up failed".into())
        .and(check(a.invalid().is_none(), || {
            "invalid HTTP to the client".into()
        }))
        .and(check(a.status() == 502, || {
            "expected a 502 after the 1xx".into()
        }))
        .and(check(n <= most, || {
            format!("the node got the request {n} times (at most {most})")
        }));
    (a, node, v)
}

/// A pooled connection the node closes after reading the request, without an answer; a fresh
/// connection is answered.
async fn pooled_close_without_answer(
    request: Vec<u8>,
    idempotent: bool,
) -> (Answer, Node, Verdict) {
    let (node, proxy) = setup(|g| {
        if g.path == "/x" && g.nth > 0 {
            Act::ReplyClose(Vec::new())
        } else {
            ok()
        }
    })
    .await;
    let mut c = Client::new(proxy.addr).await;
    let warm = c.ask(&get("/warm"), false).await;
    let a = c.ask(&request, false).await;
    let n = node.requests_for("/x");
    let v = check(warm.status() == 200, || "warm-up failed".into()).and(if idempotent {
        check(n <= 2 && (a.status() == 200 || a.status() == 502), || {
            format!("GET: one resend at most and 200 or 502; got {n} requests")
        })
    } else {
        check(n == 1 && a.status() == 502, || {
            format!("POST: exactly one request and a 502 (nginx-like); got {n} requests")
        })
    });
    (a, node, v)
}

async fn reply_once(bytes: &'static [u8]) -> (Node, Proxy, Answer) {
    let (node, proxy) = setup(move |g| {
        if g.path == "/x" {
            Act::Reply(bytes.to_vec())
        } else {
            ok()
        }
    })
    .await;
    let a = Client::new(proxy.addr).await.ask(&get("/x"), false).await;
    (node, proxy, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_nodes_get_defined_answers() {
    let mut failures = Vec::new();
    let mut count = 0;
    let mut note = |name: &str, a: &Answer, node: &Node, v: Verdict| {
        count += 1;
        if let Err(why) = v {
            failures.push(format!(
                "{name}\n    client: {}\n    node:   {}\n    why:    {why}",
                a.describe(),
                node.describe()
            ));
        }
    };

    let (a, node, v) = flood_of_103().await;
    note("200 interim 103s then 200", &a, &node, v);

    for (interim, name) in [
        (&b"HTTP/1.1 100 Continue\r\n\r\n"[..], "100"),
        (b"HTTP/1.1 103 Early Hints\r\n\r\n", "103"),
    ] {
        let (a, node, v) = interim_then_close(interim, get("/x"), 2).await;
        note(
            &format!("{name} then close on a reused connection (GET)"),
            &a,
            &node,
            v,
        );
        let (a, node, v) = interim_then_close(interim, post("/x"), 1).await;
        note(
            &format!("{name} then close on a reused connection (POST)"),
            &a,
            &node,
            v,
        );
        let expect = b"POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello";
        let (a, node, v) = interim_then_close(interim, expect.to_vec(), 1).await;
        note(
            &format!("{name} then close on a reused connection (POST, Expect)"),
            &a,
            &node,
            v,
        );
    }

    let (a, node, v) = pooled_close_without_answer(post("/x"), false).await;
    note(
        "pooled connection closed without an answer (POST)",
        &a,
        &node,
        v,
    );
    let (a, node, v) = pooled_close_without_answer(get("/x"), true).await;
    note(
        "pooled connection closed without an answer (GET)",
        &a,
        &node,
        v,
    );

    let (node, _proxy, a) = reply_once(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let v = bad_gateway_or(&a, b"hello");
    note(
        "Content-Length and Transfer-Encoding together",
        &a,
        &node,
        v,
    );

    for (name, bytes) in [
        ("chunk line \"5 5\"", &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 5\r\nhello\r\n0\r\n\r\n"[..]),
        ("last chunk \"0 5\"", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0 5\r\n\r\n"),
        ("NUL in a chunk extension", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00b\r\nhello\r\n0\r\n\r\n"),
        ("chunk extension \"5;=b\"", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;=b\r\nhello\r\n0\r\n\r\n"),
        ("trailer without a colon", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T\r\n\r\n"),
        ("obs-fold in a trailer", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
    ] {
        let (node, proxy, a) = reply_once(bytes).await;
        let v = broken_body(&node, &proxy, &a).await;
        note(&format!("response body: {name}"), &a, &node, v);
    }

    for (name, bytes) in [
        (
            "obs-fold in a response header",
            &b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"[..],
        ),
        (
            "a CRLF before the status line",
            b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "a bare-LF status line",
            b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "two different Content-Lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        ),
        (
            "a status line without a reason's space",
            b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
        ),
    ] {
        let (node, _proxy, a) = reply_once(bytes).await;
        let v = bad_gateway_or(&a, b"ok");
        note(&format!("response head: {name}"), &a, &node, v);
    }

    // A 00000000000000000005 chunk size is valid: forwarded, not refused.
    let (node, _proxy, a) = reply_once(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000005\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let v = check(
        a.status() == 200 && a.last().is_some_and(|r| r.body == b"hello"),
        || "a valid zero-padded chunk size must be forwarded".into(),
    );
    note("zero-padded chunk size 00000000000000000005", &a, &node, v);

    // An HTTP/1.0 response, even with keep-alive, ends its connection's use.
    let (node, proxy) = setup(|_| {
        Act::Reply(
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok".to_vec(),
        )
    })
    .await;
    let mut c = Client::new(proxy.addr).await;
    let first = c.ask(&get("/x"), false).await;
    let a = c.ask(&get("/y"), false).await;
    let v = check(first.status() == 200 && a.status() == 200, || {
        "both answered".into()
    })
    .and(check(node.conn_of("/x") != node.conn_of("/y"), || {
        "the node connection was reused after an HTTP/1.0 response".into()
    }));
    note("HTTP/1.0 response with keep-alive", &a, &node, v);

    // 101 to a request that asked for no upgrade.
    let (node, proxy, a) = reply_once(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n",
    )
    .await;
    let v = check(a.status() == 502, || "expected a 502".into())
        .and(next_on_new_connection(&node, &proxy, "/x").await);
    note("101 to a plain request", &a, &node, v);

    // Bytes past Content-Length: not part of this response, and the connection is not pooled.
    let (node, proxy) = setup(|g| {
        if g.path == "/x" {
            Act::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA".to_vec())
        } else {
            ok()
        }
    })
    .await;
    let mut c = Client::new(proxy.addr).await;
    let a = c.ask(&get("/x"), false).await;
    let second = c.ask(&get("/y"), false).await;
    let v = check(
        a.last().is_some_and(|r| r.status == 200 && r.body == b"ok"),
        || "expected 200 ok".into(),
    )
    .and(check(
        second.status() == 200 && second.last().is_some_and(|r| r.body == b"ok"),
        || format!("the next answer was {}", second.describe()),
    ))
    .and(check(node.conn_of("/x") != node.conn_of("/y"), || {
        "the node connection was reused after extra bytes".into()
    }));
    note("bytes past Content-Length", &a, &node, v);

    // A body on a HEAD response.
    let (node, proxy) = setup(|g| {
        if g.method == "HEAD" {
            Act::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec())
        } else {
            ok()
        }
    })
    .await;
    let mut c = Client::new(proxy.addr).await;
    let a = c.ask(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n", true).await;
    let second = c.ask(&get("/y"), false).await;
    let v = check(a.status() == 200, || "expected 200".into())
        .and(check(
            second.status() == 200 && second.last().is_some_and(|r| r.body == b"ok"),
            || format!("the next answer was {}", second.describe()),
        ))
        .and(check(node.conn_of("/x") != node.conn_of("/y"), || {
            "the node connection was reused after a HEAD response with a body".into()
        }));
    note("a body on a HEAD response", &a, &node, v);

    // HTTP/1.0 clients: no 1xx, no chunked framing.
    let (node, proxy) = setup(|_| {
        Act::Reply(
            b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        )
    })
    .await;
    let a = Client::new(proxy.addr)
        .await
        .ask(b"GET /x HTTP/1.0\r\n\r\n", false)
        .await;
    let v = check(a.interims() == 0, || {
        "a 1xx went to an HTTP/1.0 client".into()
    })
    .and(check(a.status() == 200, || "expected 200".into()));
    note("1xx to an HTTP/1.0 client", &a, &node, v);

    let (node, proxy) = setup(|_| {
        Act::Reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let a = Client::new(proxy.addr)
        .await
        .ask(b"GET /x HTTP/1.0\r\n\r\n", false)
        .await;
    let v = check(a.invalid().is_none(), || "invalid HTTP".into()).and(check(
        a.last()
            .is_some_and(|r| r.status == 200 && !r.chunked && r.body == b"hello"),
        || "an HTTP/1.0 client must get the body unchunked".into(),
    ));
    note("chunked response to an HTTP/1.0 client", &a, &node, v);

    if !failures.is_empty() {
        eprintln!(
            "\n==== hostile nodes: {} of {count} scenarios failing ====",
            failures.len()
        );
        for f in &failures {
            eprintln!("{f}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} hostile-node scenarios failed (listed above)",
        failures.len()
    );
}

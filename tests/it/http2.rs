//! HTTP/2 towards clients: `curl --http2` and the `h2` crate's client over TLS reach the pinned
//! node for plain requests, long-polls, event streams and uploads, 200 streams on one connection
//! included; WebSockets over HTTP/2 (RFC 8441) from Node's own `http2` client and from a real
//! headless Chromium (socket.io with its default transports, and a raw `new WebSocket`), with the
//! pin, the Origin rule and the node's `Sec-WebSocket-Accept` checked; malformed streams reset
//! with nothing reaching a node while the connection's other streams go on; rapid-reset and
//! CONTINUATION floods bounded. Each property has its control: the same client against a
//! listener without `http2` gets HTTP/1.1, clients without the cookie spread.

use crate::socketio::SioNode;
use crate::support::h2::{self as h2c, Raw};
use crate::support::recorder::{Event, Recorder};
use crate::support::tls::{self as certs, Identity};
use crate::support::{self, browser, Proxy};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A certificate for `localhost` written to a temporary directory.
struct Cert {
    dir: tempfile::TempDir,
    id: Identity,
}

impl Cert {
    fn new() -> Cert {
        let id = certs::self_signed();
        let dir = tempfile::tempdir().unwrap();
        id.write(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
        Cert { dir, id }
    }
    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
    /// The listener lines for `{tls}` with this certificate (`http2` as given, or the default).
    fn listener(&self, http2: Option<bool>) -> String {
        let mut l = format!(
            "  - address: \"{{tls}}\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\n",
            self.cert().display(),
            self.dir.path().join("key.pem").display()
        );
        if let Some(on) = http2 {
            l.push_str(&format!("    http2: {on}\n"));
        }
        l
    }
}

/// A config over demo `nodes` with cookie affinity, a plain listener (readiness), the TLS one,
/// and the admin port.
fn demo_config(
    nodes: &[tether::demo::Node],
    cert: &Cert,
    http2: Option<bool>,
    extra: &str,
) -> String {
    let y = support::config(nodes, support::COOKIE_AFFINITY, extra);
    let y = y.replacen(
        "listen:\n  - address: \"{listen}\"\n",
        &format!(
            "listen:\n  - address: \"{{listen}}\"\n{}",
            cert.listener(http2)
        ),
        1,
    );
    format!("{y}admin:\n  address: \"{{admin}}\"\n")
}

/// `curl` over HTTPS to the proxy's TLS listener, trusting `cert`; returns (status line's
/// HTTP version, headers, body).
fn curl(proxy: &Proxy, cert: &Cert, path: &str, args: &[&str]) -> (String, String, Vec<u8>) {
    let port = proxy.tls.expect("tls listener").port();
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "30", "--cacert"])
        .arg(cert.cert())
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg("-D")
        .arg(&headers)
        .args(["-w", "\n%{http_version}"])
        .args(args)
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("curl is needed for the HTTP/2 tests");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut body = out.stdout;
    let nl = body.iter().rposition(|&b| b == b'\n').unwrap();
    let version = String::from_utf8_lossy(&body[nl + 1..]).into_owned();
    body.truncate(nl);
    let head = std::fs::read_to_string(&headers).unwrap();
    (version, head, body)
}

fn set_cookie(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
}

fn node_of(body: &[u8]) -> String {
    String::from_utf8_lossy(body).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_http2_reaches_the_pinned_node_for_requests_long_polls_streams_and_uploads() {
    let cert = Cert::new();
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&demo_config(&nodes, &cert, None, ""));

    // Without a cookie: a new pin, over HTTP/2.
    let (version, head, body) = curl(&proxy, &cert, "/whoami", &[]);
    assert_eq!(version, "2", "curl spoke HTTP/{version}");
    let cookie = set_cookie(&head).expect("a new client gets a cookie");
    let pinned = node_of(&body);
    // With it: the same node, every time, and no new cookie.
    for _ in 0..3 {
        let (_, head, body) = curl(&proxy, &cert, "/whoami", &["-b", &cookie]);
        assert_eq!(node_of(&body), pinned);
        assert!(set_cookie(&head).is_none(), "{head}");
    }
    // A 5 s long-poll held by the node and answered on the stream.
    let (_, _, body) = curl(&proxy, &cert, "/poll?hold=5000", &["-b", &cookie]);
    assert_eq!(node_of(&body), pinned, "long-poll");
    // An event stream, every event from the pinned node.
    let (_, _, body) = curl(
        &proxy,
        &cert,
        "/stream?n=4&every=50",
        &["-N", "-b", &cookie],
    );
    let events: Vec<String> = String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect();
    assert_eq!(
        events,
        (0..4).map(|i| format!("{pinned} {i}")).collect::<Vec<_>>()
    );
    // A 1 MB upload, whole and intact, to the pinned node.
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("upload");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&upload, &data).unwrap();
    let fnv = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let at = format!("@{}", upload.display());
    let (_, _, body) = curl(
        &proxy,
        &cert,
        "/echo",
        &["-b", &cookie, "--data-binary", &at],
    );
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["node"], pinned.as_str());
    assert_eq!(echo["body_bytes"], 1_000_000);
    assert_eq!(echo["body_fnv"], format!("{fnv:016x}"));
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");

    // The access log says which protocol each request came in.
    support::until(
        || proxy.log().contains("protocol=HTTP/2"),
        "an HTTP/2 access-log line",
    )
    .await;

    // Control: a listener without `http2` gives the same curl HTTP/1.1.
    let h1 = Proxy::start(&demo_config(&nodes, &cert, Some(false), ""));
    let (version, _, _) = curl(&h1, &cert, "/whoami", &[]);
    assert_eq!(version, "1.1", "http2: false offers only HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_streams_on_one_connection_stay_on_the_pinned_node() {
    let cert = Cert::new();
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&demo_config(&nodes, &cert, None, ""));
    let addr = proxy.tls.unwrap();
    let send = h2c::client(addr, &cert.id).await;
    let first = h2c::get(&send, "/whoami", None).await;
    assert_eq!(first.status, 200);
    let cookie = first
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let pinned = node_of(&first.body);

    // 200 streams at once on the same connection, each with the cookie: all on the pinned node.
    let all = futures_util::future::join_all((0..200).map(|i| {
        let send = send.clone();
        let cookie = cookie.clone();
        async move {
            let path = if i % 10 == 0 {
                "/poll?hold=300"
            } else {
                "/whoami"
            };
            h2c::get(&send, path, Some(&cookie)).await
        }
    }))
    .await;
    assert!(all.iter().all(|r| r.status == 200));
    let nodes_seen: std::collections::BTreeSet<String> =
        all.iter().map(|r| node_of(&r.body)).collect();
    assert_eq!(nodes_seen.len(), 1, "{nodes_seen:?}");
    assert_eq!(nodes_seen.iter().next().unwrap(), &pinned);

    // Control: the same 200 streams without the cookie are spread (each a new client).
    let all = futures_util::future::join_all((0..200).map(|_| {
        let send = send.clone();
        async move { h2c::get(&send, "/poll?hold=100", None).await }
    }))
    .await;
    let spread: std::collections::BTreeSet<String> = all.iter().map(|r| node_of(&r.body)).collect();
    assert!(spread.len() > 1, "without the cookie: {spread:?}");

    // An event stream arrives event by event: the first event is here before the stream ends.
    let mut ready = send.clone().ready().await.unwrap();
    let req = http::Request::get("https://localhost/stream?n=3&every=400")
        .header("cookie", &cookie)
        .body(())
        .unwrap();
    let (resp, _) = ready.send_request(req, true).unwrap();
    let mut recv = resp.await.unwrap().into_body();
    let chunk = recv.data().await.unwrap().unwrap();
    assert_eq!(&chunk[..], format!("data: {pinned} 0\n\n").as_bytes());
    assert!(!recv.is_end_stream(), "the first event came alone");

    let m = support::metrics(&proxy).await;
    assert!(support::counter(&m, "tether_http2_streams_total", &[("kind", "request")]) >= 401);
    assert!(support::counter(&m, "tether_http2_connections_total", &[]) >= 1);
}

/// Node's `http2` client opening a WebSocket over an extended CONNECT (tests/socketio/h2ws.js).
fn h2ws(
    proxy: &Proxy,
    cert: &Cert,
    path: &str,
    origin: Option<&str>,
    cookie: Option<&str>,
    echoes: u32,
) -> serde_json::Value {
    let plan = serde_json::json!({
        "url": format!("https://localhost:{}", proxy.tls.unwrap().port()),
        "ca": cert.id.cert_pem,
        "path": path,
        "origin": origin,
        "cookie": cookie,
        "echoes": echoes,
        "limit_ms": 30000,
    });
    let out = Command::new("node")
        .arg("h2ws.js")
        .arg(plan.to_string())
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio"))
        .output()
        .expect("node is needed for the HTTP/2 WebSocket test");
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|_| {
        panic!(
            "h2ws.js said {line:?}, {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_reach_the_pinned_node_and_keep_the_origin_and_accept_rules() {
    let cert = Cert::new();
    let nodes = support::nodes(3).await;
    let recorder = Recorder::start().await;
    // `/ws` on the demo nodes (only https://app.example may open one); `/fake/` on a node that
    // answers every upgrade with a fixed Sec-WebSocket-Accept (the recorder).
    let cfg = demo_config(&nodes, &cert, None, "");
    // The second upstream goes under `upstreams:`, before `admin:`.
    let (before, after) = cfg.split_once("admin:").unwrap();
    let cfg = format!(
        "{before}  fake:\n    nodes:\n      - {{ id: fake, address: \"{}\" }}\n    affinity: {{ mode: none }}\n\
         routes:\n  - path_prefix: /fake/\n    upstream: fake\n  - path_prefix: /\n    upstream: realtime\n    \
         websocket:\n      allowed_origins: [\"https://app.example\"]\nadmin:{after}",
        recorder.addr
    );
    let proxy = Proxy::start(&cfg);
    let send = h2c::client(proxy.tls.unwrap(), &cert.id).await;
    let first = h2c::get(&send, "/whoami", None).await;
    let cookie = first
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let pinned = node_of(&first.body);

    // With the cookie: the pinned node's greeting, 1,000 echoes each way.
    let r = h2ws(
        &proxy,
        &cert,
        "/ws",
        Some("https://app.example"),
        Some(&cookie),
        1000,
    );
    assert_eq!(r["enableConnectProtocol"], true, "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["greeting"]["node"], pinned.as_str(), "{r}");
    assert_eq!(r["echoed"], 1000, "{r}");
    assert_eq!(r["error"], serde_json::Value::Null, "{r}");
    assert!(
        r["setCookie"].is_null(),
        "a pinned client gets no new cookie: {r}"
    );
    // The node saw an HTTP/1.1 Upgrade with a key of tether's own and the client's Origin.
    let h = &r["greeting"]["headers"];
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["origin"], "https://app.example");
    assert_eq!(h["x-forwarded-proto"], "https");

    // A foreign Origin: 403 on the stream, no node reached.
    let r = h2ws(
        &proxy,
        &cert,
        "/ws",
        Some("https://evil.example"),
        Some(&cookie),
        0,
    );
    assert_eq!(r["status"], 403, "{r}");

    // A node whose 101 carries a Sec-WebSocket-Accept that does not prove tether's key: the
    // stream fails (502), it never becomes a tunnel.
    let r = h2ws(&proxy, &cert, "/fake/ws", None, None, 0);
    assert_eq!(r["status"], 502, "{r}");
    let mut recorder = recorder;
    let seen = recorder.take().await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Upgrade { url, .. } if url == "/fake/ws")),
        "the fake node got the upgrade: {seen:?}"
    );

    let m = support::metrics(&proxy).await;
    assert_eq!(
        support::counter(&m, "tether_http2_streams_total", &[("kind", "websocket")]),
        3
    );
    assert_eq!(
        support::counter(
            &m,
            "tether_upgrades_total",
            &[("upstream", "fake"), ("result", "failed")]
        ),
        1
    );
}

/// A config with the TLS listener (`http2` as given), upstream `sio` over socket.io nodes and
/// upstream `other` over demo nodes (each with its own cookie), and `routes` (the list's items).
fn sio_and_demo(
    cert: &Cert,
    http2: Option<bool>,
    sio: &[SioNode],
    demo: &[tether::demo::Node],
    other: &str,
    routes: &str,
) -> String {
    let mut y = format!(
        "listen:\n  - address: \"{{listen}}\"\n{}admin:\n  address: \"{{admin}}\"\nupstreams:\n  sio:\n    nodes:\n",
        cert.listener(http2)
    );
    for n in sio {
        y.push_str(&support::node_line(
            n.id(),
            format!("127.0.0.1:{}", n.port()),
        ));
    }
    y.push_str(&format!("    affinity:\n      mode: cookie\n      cookie: {{ secret_env: TETHER_SECRET }}\n  {other}:\n    nodes:\n"));
    for n in demo {
        y.push_str(&support::node_line(n.id(), n.addr()));
    }
    y.push_str(&format!("    affinity:\n      mode: cookie\n      cookie: {{ secret_env: TETHER_SECRET, name: tether_{other} }}\n"));
    y.push_str("routes:\n");
    y.push_str(routes);
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_and_a_raw_websocket_in_chromium_go_over_http2_on_the_pinned_node() {
    browser::require();
    let cert = Cert::new();
    let sio: Vec<SioNode> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| SioNode::start("socketio", id))
        .collect();
    let demo = support::nodes(2).await;
    // The SPKI of the test certificate: Chromium accepts exactly this key.
    let spki = {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(&cert.id.spki_der);
        base64::engine::general_purpose::STANDARD.encode(digest)
    };
    let config = |http2: bool| {
        sio_and_demo(
            &cert,
            Some(http2),
            &sio,
            &demo,
            "ws",
            "  - { path_prefix: /ws, upstream: ws }\n  - { path_prefix: /, upstream: sio }\n",
        )
    };
    let mut outcomes = Vec::new();
    for http2 in [true, false] {
        let proxy = Proxy::start(&config(http2));
        let plan = serde_json::json!({
            "chromium": browser::CHROMIUM,
            "chromium_args": [format!("--ignore-certificate-errors-spki-list={spki}")],
            "shots": browser::shots(),
            "limit_ms": 40000,
            "url": format!("https://localhost:{}", proxy.tls.unwrap().port()),
        });
        let mut run = browser::Run::start("h2.js", &plan, Duration::from_secs(15));
        let report = loop {
            let msg = run.next().await;
            if msg.get("results").is_some() {
                break msg;
            }
        };
        run.end().await;
        eprintln!("http2 {http2}: {}", report["page"]);
        browser::assert_passed(&report, 1);
        let page = &report["page"];
        // Polling and the WebSocket it upgraded to reached the same node.
        assert_eq!(page["upgradedTo"], "websocket", "{page}");
        assert_eq!(page["transport"], "websocket", "{page}");
        assert_eq!(page["first"], page["afterUpgrade"], "{page}");
        assert!(
            page["raw"].as_str().is_some_and(|n| n.starts_with("node-")),
            "{page}"
        );
        let m = support::metrics(&proxy).await;
        let over_h2 = support::counter(&m, "tether_http2_streams_total", &[("kind", "websocket")]);
        outcomes.push((page["protocol"].clone(), over_h2));
    }
    // With HTTP/2: the page came over h2, and both WebSockets rode extended CONNECT streams.
    assert_eq!(outcomes[0].0, "h2", "{outcomes:?}");
    assert_eq!(outcomes[0].1, 2, "{outcomes:?}");
    // Control, the same page with `http2: false`: HTTP/1.1, no WebSocket over HTTP/2.
    assert_eq!(outcomes[1].0, "http/1.1", "{outcomes:?}");
    assert_eq!(outcomes[1].1, 0, "{outcomes:?}");
}

/// A config whose one node is the recorder (it answers every request 200).
fn recorder_config(cert: &Cert, recorder: &Recorder) -> String {
    format!(
        "listen:\n  - address: \"{{listen}}\"\n{}admin:\n  address: \"{{admin}}\"\nupstreams:\n  realtime:\n    nodes:\n      - {{ id: rec, address: \"{}\" }}\n    affinity: {{ mode: none }}\n",
        cert.listener(None),
        recorder.addr
    )
}

fn headers_frame(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let flags = h2c::END_HEADERS | if end_stream { h2c::END_STREAM } else { 0 };
    h2c::frame(h2c::HEADERS, flags, stream, block)
}

/// Requests the recorder received, by path.
fn paths(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Request { url, .. } | Event::Upgrade { url, .. } => Some(url.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_streams_are_reset_and_reach_no_node_while_their_neighbours_are_served() {
    let cert = Cert::new();
    let mut recorder = Recorder::start().await;
    let proxy = Proxy::start(&recorder_config(&cert, &recorder));
    let addr = proxy.tls.unwrap();
    // The readiness probe went to the recorder: forget it.
    recorder.take().await;
    let limit = Duration::from_secs(10);

    // Stream errors: the stream is reset (PROTOCOL_ERROR), the next stream on the same
    // connection is answered.
    type Case = (&'static str, Vec<(&'static [u8], &'static [u8])>);
    let stream_errors: Vec<Case> = vec![
        ("connection", vec![(b"connection", b"close")]),
        ("keep-alive", vec![(b"keep-alive", b"5")]),
        (
            "proxy-connection",
            vec![(b"proxy-connection", b"keep-alive")],
        ),
        (
            "transfer-encoding",
            vec![(b"transfer-encoding", b"chunked")],
        ),
        ("upgrade", vec![(b"upgrade", b"websocket")]),
        ("te", vec![(b"te", b"gzip")]),
        ("authority-differs", vec![(b"host", b"other.example")]),
        (
            "two-hosts",
            vec![(b"host", b"localhost"), (b"host", b"localhost")],
        ),
        ("leading-space", vec![(b"x-a", b" padded")]),
    ];
    for (name, extra) in &stream_errors {
        let mut raw = Raw::connect(addr, &cert.id).await;
        let bad = h2c::block(&format!("/bad-{name}"), extra);
        let good = h2c::block(&format!("/good-{name}"), &[]);
        let mut bytes = headers_frame(1, &bad, true);
        bytes.extend(headers_frame(3, &good, true));
        raw.send(&bytes).await;
        let frames = raw
            .read_until(limit, |f| {
                h2c::reset_of(f, 1).is_some() && h2c::answered_200(f, 3)
            })
            .await;
        assert_eq!(
            h2c::reset_of(&frames, 1),
            Some(h2c::PROTOCOL_ERROR),
            "{name}: {frames:?}"
        );
        assert!(
            h2c::answered_200(&frames, 3),
            "{name}: the neighbour stream: {frames:?}"
        );
    }

    // Pseudo-headers: a repeated one, one after a regular field, a missing :path, a relative
    // :path; and a content-length the DATA does not match.
    let mut pseudo: Vec<(&str, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut b = h2c::block("/bad-dup-path", &[]);
    h2c::field(&mut b, b":path", b"/bad-dup-path-2");
    pseudo.push(("duplicate :path", b, Vec::new()));
    let mut b = h2c::block("/bad-late-pseudo", &[(b"x-a", b"1")]);
    h2c::field(&mut b, b":scheme", b"https");
    pseudo.push(("pseudo after a field", b, Vec::new()));
    let mut b = Vec::new();
    h2c::field(&mut b, b":method", b"GET");
    h2c::field(&mut b, b":scheme", b"https");
    h2c::field(&mut b, b":authority", b"localhost");
    pseudo.push(("no :path", b, Vec::new()));
    pseudo.push((
        "relative :path",
        h2c::block("bad-relative", &[]),
        Vec::new(),
    ));
    let mut b = Vec::new();
    h2c::field(&mut b, b":method", b"POST");
    h2c::field(&mut b, b":scheme", b"https");
    h2c::field(&mut b, b":authority", b"localhost");
    h2c::field(&mut b, b":path", b"/bad-length");
    h2c::field(&mut b, b"content-length", b"10");
    pseudo.push(("content-length above the DATA", b, b"12345".to_vec()));
    for (name, block, data) in &pseudo {
        let mut raw = Raw::connect(addr, &cert.id).await;
        let mut bytes = headers_frame(1, block, data.is_empty());
        if !data.is_empty() {
            bytes.extend(h2c::frame(h2c::DATA, h2c::END_STREAM, 1, data));
        }
        bytes.extend(headers_frame(3, &h2c::block("/good-after", &[]), true));
        raw.send(&bytes).await;
        let frames = raw
            .read_until(limit, |f| {
                h2c::reset_of(f, 1).is_some() && h2c::answered_200(f, 3)
            })
            .await;
        assert_eq!(
            h2c::reset_of(&frames, 1),
            Some(h2c::PROTOCOL_ERROR),
            "{name}: {frames:?}"
        );
        assert!(
            h2c::answered_200(&frames, 3),
            "{name}: the neighbour stream: {frames:?}"
        );
    }

    // What h2's HPACK decoder cannot represent ends the connection (GOAWAY PROTOCOL_ERROR):
    // upper-case names, CR, LF or NUL in a value, unknown pseudo-headers.
    let connection_errors: Vec<(&str, &[u8], &[u8])> = vec![
        ("upper-case name", b"X-Upper", b"1"),
        ("CR in a value", b"x-a", b"a\rb"),
        ("LF in a value", b"x-a", b"a\nb"),
        ("NUL in a value", b"x-a", b"a\0b"),
        ("unknown pseudo-header", b":tether", b"1"),
    ];
    for (name, n, v) in &connection_errors {
        let mut raw = Raw::connect(addr, &cert.id).await;
        raw.send(&headers_frame(1, &h2c::block("/bad-conn", &[(n, v)]), true))
            .await;
        let frames = raw.read_until(limit, |f| h2c::goaway(f).is_some()).await;
        assert_eq!(
            h2c::goaway(&frames),
            Some(h2c::PROTOCOL_ERROR),
            "{name}: {frames:?}"
        );
    }

    // Nothing malformed reached the node; every neighbour did.
    let seen = paths(&recorder.take().await);
    assert!(seen.iter().all(|p| !p.starts_with("/bad")), "{seen:?}");
    assert_eq!(seen.len(), stream_errors.len() + pseudo.len(), "{seen:?}");
    let m = support::metrics(&proxy).await;
    assert!(support::counter(&m, "tether_http2_streams_total", &[("kind", "malformed")]) >= 3);
}

/// The proxy's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_and_continuation_floods_end_in_goaway_and_cost_no_node_work() {
    let cert = Cert::new();
    let mut recorder = Recorder::start().await;
    let proxy = Proxy::start(&recorder_config(&cert, &recorder));
    let addr = proxy.tls.unwrap();
    recorder.take().await;
    let before = rss_kib(proxy.pid());

    // Rapid reset (CVE-2023-44487): 2,000 streams opened and cancelled at once, in one write.
    let mut raw = Raw::connect(addr, &cert.id).await;
    let mut bytes = Vec::new();
    for i in 0..2000u32 {
        let stream = 1 + 2 * i;
        bytes.extend(headers_frame(stream, &h2c::block("/flood", &[]), true));
        bytes.extend(h2c::frame(h2c::RST_STREAM, 0, stream, &8u32.to_be_bytes()));
    }
    raw.send(&bytes).await;
    let frames = raw
        .read_until(Duration::from_secs(15), |f| h2c::goaway(f).is_some())
        .await;
    assert_eq!(
        h2c::goaway(&frames),
        Some(h2c::ENHANCE_YOUR_CALM),
        "{:?}",
        &frames[frames.len().saturating_sub(5)..]
    );

    // CONTINUATION flood: a header block that never ends.
    let mut raw = Raw::connect(addr, &cert.id).await;
    let mut bytes = h2c::frame(h2c::HEADERS, 0, 1, &h2c::block("/flood-cont", &[]));
    let mut more = Vec::new();
    h2c::field(&mut more, b"x-a", &[b'a'; 100]);
    for _ in 0..10_000 {
        bytes.extend(h2c::frame(h2c::CONTINUATION, 0, 1, &more));
    }
    let _ = raw.send(&bytes).await;
    let frames = raw
        .read_until(Duration::from_secs(15), |f| h2c::goaway(f).is_some())
        .await;
    assert!(h2c::goaway(&frames).is_some(), "{frames:?}");

    // The nodes saw little of it, the proxy's memory barely moved, and it still serves.
    let send = h2c::client(addr, &cert.id).await;
    assert_eq!(h2c::get(&send, "/after", None).await.status, 200);
    let seen = paths(&recorder.take().await);
    let flood = seen.iter().filter(|p| p.starts_with("/flood")).count();
    assert!(
        flood <= 150,
        "{flood} of 2,000 cancelled streams reached the node"
    );
    let after = rss_kib(proxy.pid());
    assert!(
        after < before + 20 * 1024,
        "RSS {before} KiB -> {after} KiB"
    );
}

/// `tether load` (the library call) against the proxy's TLS listener, trusting `cert`.
async fn load_over_tls(proxy: &Proxy, cert: &Cert, extra: &[&str]) -> tether::load::Report {
    let mut argv = vec![
        "load".to_string(),
        "--url".into(),
        format!("https://localhost:{}", proxy.tls.unwrap().port()),
        "--ca".into(),
        cert.cert().display().to_string(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let args = tether::load::LoadArgs::try_parse_from(argv).expect("load args");
    tokio::task::spawn_blocking(move || tether::load::run(&args))
        .await
        .expect("load thread")
        .expect("load run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_load_speaks_http2_to_the_edge_with_socketio_and_websockets_and_no_violation() {
    let cert = Cert::new();
    let sio: Vec<SioNode> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| SioNode::start("socketio", id))
        .collect();
    let demo = support::nodes(3).await;
    let proxy = Proxy::start(&sio_and_demo(
        &cert,
        None,
        &sio,
        &demo,
        "demo",
        "  - { path_prefix: /socket.io/, upstream: sio }\n  - { path_prefix: /, upstream: demo }\n",
    ));
    let small = [
        "--clients",
        "20",
        "--duration",
        "3s",
        "--ramp",
        "300ms",
        "--http2",
    ];

    for flow in ["socketio", "ws", "http"] {
        let mut extra = small.to_vec();
        extra.extend(["--flow", flow]);
        let r = load_over_tls(&proxy, &cert, &extra).await;
        assert_eq!(r.protocol, "HTTP/2 over TLS", "{r}");
        assert!(
            r.to_string().contains("(HTTP/2 over TLS)"),
            "the report says it: {r}"
        );
        assert_eq!((r.errors_total, r.violations), (0, 0), "{flow}: {r}");
        assert_eq!(r.connections, 20, "{flow}: one connection per client: {r}");
        if flow == "http" {
            assert!(r.requests > 0, "{r}");
        } else {
            assert!(r.ws_round_trips > 0, "{flow}: {r}");
        }
    }
    // Every WebSocket of those runs went over an extended CONNECT stream.
    let m = support::metrics(&proxy).await;
    assert!(support::counter(&m, "tether_http2_streams_total", &[("kind", "websocket")]) >= 40);

    // Control: without --http2 the same tool speaks HTTP/1.1 over TLS (and opens a connection
    // per WebSocket), and says so.
    let mut extra = small[..6].to_vec();
    extra.extend(["--flow", "ws"]);
    let r = load_over_tls(&proxy, &cert, &extra).await;
    assert_eq!(r.protocol, "HTTP/1.1 over TLS", "{r}");
    assert_eq!((r.errors_total, r.violations), (0, 0), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_goaway_and_lets_the_open_streams_finish_and_idle_connections_close() {
    let cert = Cert::new();
    let nodes = support::nodes(2).await;
    let cfg = demo_config(&nodes, &cert, None, "");
    let cfg = format!(
        "{cfg}limits:\n  keepalive_timeout: 1s\nshutdown:\n  grace: 10s\n  close_window: 1s\n"
    );
    let mut proxy = Proxy::start(&cfg);
    let addr = proxy.tls.unwrap();

    // An idle HTTP/2 connection is closed after limits.keepalive_timeout, with a GOAWAY.
    let mut idle = Raw::connect(addr, &cert.id).await;
    let frames = idle
        .read_until(Duration::from_secs(10), |f| h2c::goaway(f).is_some())
        .await;
    assert_eq!(h2c::goaway(&frames), Some(0), "NO_ERROR: {frames:?}");

    // A long-poll in flight when the shutdown begins: GOAWAY, and the poll still answered.
    let send = h2c::client(addr, &cert.id).await;
    let poll = {
        let send = send.clone();
        tokio::spawn(async move { h2c::get(&send, "/poll?hold=1500", None).await })
    };
    let mut watcher = Raw::connect(addr, &cert.id).await;
    // The watcher has a stream in flight too, so it is not closed as idle first.
    watcher
        .send(&headers_frame(1, &h2c::block("/poll?hold=1500", &[]), true))
        .await;
    // Both polls are in flight (readiness: tether's own gauge), then the shutdown begins.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = support::metrics(&proxy).await;
        let in_flight = m
            .iter()
            .find(|s| s.metric == "tether_in_flight")
            .map_or(0.0, |s| match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                _ => 0.0,
            });
        if in_flight >= 2.0 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.signal("TERM");
    let frames = watcher
        .read_until(Duration::from_secs(10), |f| {
            h2c::goaway(f).is_some() && h2c::answered_200(f, 1)
        })
        .await;
    let last = frames.iter().find_map(|f| match f {
        h2c::Frame::GoAway { last, .. } => Some(*last),
        _ => None,
    });
    assert!(
        last.is_some_and(|l| l >= 1),
        "GOAWAY with the last stream id: {frames:?}"
    );
    assert!(
        h2c::answered_200(&frames, 1),
        "the stream in flight finished: {frames:?}"
    );
    let answered = poll.await.unwrap();
    assert_eq!(answered.status, 200);
    assert!(
        proxy.wait_exit(Duration::from_secs(15)).is_some(),
        "tether exits once they are done"
    );
}

//! WebSocket tunnels that tether manages: frames followed both ways without a byte changed,
//! every RFC 6455 §5 rule enforced (1002 to both sides, counted), tether's own Close put only
//! between two frames (a large frame in flight finishes first), and half-open clients found by
//! tether's Pings.

use crate::support::wsnode::WsNode;
use crate::support::{counter, metrics, Client, Proxy, ADMIN_INTENT};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A config over `nodes` with the admin API, round robin, no stickiness, and `websocket`
/// settings for the route.
fn config(nodes: &[(&str, SocketAddr)], websocket: &str) -> String {
    let mut y = String::from(
        "listen: [{ address: \"{listen}\" }]\nadmin: { address: \"{admin}\" }\nupstreams:\n  realtime:\n    balance: round_robin\n    affinity: { mode: none }\n    nodes:\n",
    );
    for (id, addr) in nodes {
        y.push_str(&format!("      - {{ id: {id}, address: \"{addr}\" }}\n"));
    }
    y.push_str(&format!(
        "routes:\n  - {{ path_prefix: /, upstream: realtime, websocket: {websocket} }}\n"
    ));
    y
}

/// A WebSocket handshake written by hand: the stream, and bytes already read past the 101.
async fn handshake(addr: SocketAddr, path: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the 101");
        buf.extend_from_slice(&chunk[..n]);
    };
    assert!(
        buf.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    (s, buf[end..].to_vec())
}

/// A frame as a client writes it (masked with `mask`) or a node (unmasked).
fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | op];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65_536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const KEY: Option<[u8; 4]> = Some([0x12, 0x34, 0x56, 0x78]);

/// Reads frames off a stream (the server's: unmasked).
struct Frames {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Frames {
    /// The next frame: (FIN, opcode, payload); `None` at EOF. Bounded so a broken build fails
    /// instead of hanging.
    async fn next(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        tokio::time::timeout(Duration::from_secs(20), self.read_frame())
            .await
            .expect("a frame within 20 s")
    }

    async fn read_frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                let (mut head, len7) = (2usize, u64::from(b1 & 0x7f));
                let len = match len7 {
                    126 if self.buf.len() >= 4 => {
                        head = 4;
                        u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]]))
                    }
                    127 if self.buf.len() >= 10 => {
                        head = 10;
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap())
                    }
                    126 | 127 => u64::MAX,
                    n => n,
                };
                assert_eq!(b1 & 0x80, 0, "a server frame is never masked");
                if len != u64::MAX && self.buf.len() as u64 >= head as u64 + len {
                    let end = head + len as usize;
                    let payload = self.buf[head..end].to_vec();
                    self.buf.drain(..end);
                    return Some((b0 & 0x80 != 0, b0 & 0x0f, payload));
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match self.s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next data frame's payload, skipping Pings and Pongs.
    async fn data(&mut self) -> Vec<u8> {
        loop {
            let (_, op, payload) = self.next().await.expect("a data frame");
            if op <= 2 {
                return payload;
            }
            assert!(op == 9 || op == 10, "unexpected opcode {op}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_every_size_and_split_every_way_pass_through_unchanged() {
    let node = WsNode::start("node-a").await;
    let proxy = Proxy::start(&config(&[("node-a", node.addr)], "{}"));
    let (s, rest) = handshake(proxy.addr, "/ws").await;
    let mut ws = Frames { s, buf: rest };
    assert_eq!(ws.data().await, br#"{"node":"node-a"}"#);

    // Every length class, each echoed by the node whole.
    for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        ws.s.write_all(&frame(true, 2, &payload, KEY))
            .await
            .unwrap();
        assert_eq!(ws.data().await, payload, "{len} bytes");
    }
    // Headers split at every byte: each byte written on its own, so tether reads them apart.
    for len in [5usize, 300, 70_000] {
        let f = frame(true, 2, &vec![7u8; len], KEY);
        let head = match len {
            n if n < 126 => 6,
            n if n < 65_536 => 8,
            _ => 14,
        };
        for b in &f[..head] {
            ws.s.write_all(&[*b]).await.unwrap();
            ws.s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        ws.s.write_all(&f[head..]).await.unwrap();
        assert_eq!(ws.data().await, vec![7u8; len], "split {len}");
    }
    // A fragmented message with a Ping between its fragments: the node (strict) reassembles
    // it and answers the Ping itself; tether passes all of it as it came.
    let mut msg = frame(false, 1, b"he", KEY);
    msg.extend(frame(true, 9, b"between", KEY));
    msg.extend(frame(false, 0, b"ll", KEY));
    msg.extend(frame(true, 0, b"o", KEY));
    ws.s.write_all(&msg).await.unwrap();
    let (_, op, payload) = ws.next().await.unwrap();
    assert_eq!(
        (op, payload.as_slice()),
        (10, &b"between"[..]),
        "the node's Pong"
    );
    assert_eq!(ws.data().await, b"hello");
    // A clean close from the client: the node hears 1000.
    ws.s.write_all(&frame(true, 8, &1000u16.to_be_bytes(), KEY))
        .await
        .unwrap();
    let (_, op, payload) = ws.next().await.expect("the node's Close back");
    assert_eq!((op, &payload[..2]), (8, &1000u16.to_be_bytes()[..]));
    crate::support::until(|| node.closes() == [1000], "the node heard 1000").await;
    drop(ws);
    // Counted when the tunnel ends: 8 sizes + 3 split + 4 fragments and the Ping + the Close.
    let start = Instant::now();
    loop {
        let m = metrics(&proxy).await;
        let up = counter(&m, "tether_websocket_frames_total", &[("direction", "up")]);
        if up > 0 || start.elapsed() > Duration::from_secs(10) {
            assert_eq!(up, 8 + 3 + 4 + 1, "frames counted client to node");
            let code = [("side", "client"), ("code", "1000")];
            assert_eq!(counter(&m, "tether_websocket_closes_total", &code), 1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_breaks_section_5_closes_both_sides_with_1002() {
    let node = WsNode::start("node-a").await;
    let proxy = Proxy::start(&config(&[("node-a", node.addr)], "{}"));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an unmasked client frame", frame(true, 1, b"hi", None)),
        ("a reserved opcode", frame(true, 3, b"", KEY)),
        ("a Ping over 125 bytes", frame(true, 9, &[0; 126], KEY)),
        ("a fragmented Ping", frame(false, 9, b"", KEY)),
        ("a continuation with no message", frame(true, 0, b"x", KEY)),
        (
            "a length in more bytes than it needs",
            vec![0x82, 0x80 | 126, 0, 5, 1, 2, 3, 4],
        ),
        ("RSV1 with no extension", {
            let mut f = frame(true, 1, b"x", KEY);
            f[0] |= 0x40;
            f
        }),
        ("a new message inside a fragmented one", {
            let mut f = frame(false, 1, b"a", KEY);
            f.extend(frame(true, 1, b"b", KEY));
            f
        }),
    ];
    for (what, bad) in &cases {
        let (s, rest) = handshake(proxy.addr, "/ws").await;
        let mut ws = Frames { s, buf: rest };
        ws.data().await;
        ws.s.write_all(bad).await.unwrap();
        let (_, op, payload) = ws
            .next()
            .await
            .unwrap_or_else(|| panic!("{what}: no Close"));
        assert_eq!(op, 8, "{what}: a Close");
        assert_eq!(&payload[..2], &1002u16.to_be_bytes(), "{what}: 1002");
    }
    crate::support::until(
        || node.closes().len() == cases.len(),
        "the node heard every close",
    )
    .await;
    assert!(
        node.closes().iter().all(|c| *c == 1002),
        "{:?}",
        node.closes()
    );
    let m = metrics(&proxy).await;
    let ends = counter(&m, "tether_tunnel_ends_total", &[("by", "protocol_error")]);
    assert_eq!(ends, cases.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tethers_close_waits_for_the_frame_in_flight_to_finish() {
    // A node that sends half of a 1 MB frame and the rest only once tether's Close reached it:
    // the Close to the client cannot go out before the frame's last byte.
    const SIZE: usize = 1 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = tokio::spawn(async move {
        // Anything but the WebSocket handshake (tether's readiness probe) gets a plain 200.
        let mut s = loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut b = [0u8; 1024];
                let n = s.read(&mut b).await.unwrap();
                assert!(n > 0);
                head.extend_from_slice(&b[..n]);
            }
            if head
                .to_ascii_lowercase()
                .windows(9)
                .any(|w| w == b"websocket")
            {
                break s;
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        };
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n").await.unwrap();
        let big = frame(true, 2, &vec![0xab; SIZE], None);
        let half = big.len() / 2;
        s.write_all(&big[..half]).await.unwrap();
        // Wait for tether's Close (masked, 1001), then finish the frame and answer it.
        let mut got = Vec::new();
        while got.len() < 2 || got.len() < 6 + usize::from(got[1] & 0x7f) {
            let mut b = [0u8; 256];
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "closed before tether's Close");
            got.extend_from_slice(&b[..n]);
        }
        s.write_all(&big[half..]).await.unwrap();
        s.write_all(&frame(true, 8, &1001u16.to_be_bytes(), None))
            .await
            .unwrap();
        let key = [got[2], got[3], got[4], got[5]];
        (
            got[0],
            u16::from_be_bytes([got[6] ^ key[0], got[7] ^ key[1]]),
        )
    });
    let proxy = Proxy::start(&config(&[("node-a", addr)], "{}"));
    let (s, rest) = handshake(proxy.addr, "/ws").await;
    let mut ws = Frames { s, buf: rest };
    // Drain the node with a deadline of now: its tunnel closes at once (its only one).
    let mut admin = Client::new(proxy.admin.unwrap());
    let r = admin
        .post(
            "/upstreams/realtime/nodes/node-a/drain?close_after=0s&spread=0s",
            &[ADMIN_INTENT],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (fin, op, payload) = ws.next().await.expect("the whole frame");
    assert_eq!(
        (fin, op, payload.len()),
        (true, 2, SIZE),
        "the frame finished first"
    );
    let (_, op, payload) = ws.next().await.expect("then the Close");
    assert_eq!(
        (op, &payload[..2]),
        (8, &1012u16.to_be_bytes()[..]),
        "1012: moving on"
    );
    let (first, code) = node.await.unwrap();
    assert_eq!((first, code), (0x88, 1001), "the node got a Close 1001");
}

/// `node tests/socketio/wsclient.js`: a real `ws` client in a process of its own, so a test can
/// freeze it (SIGSTOP) like a phone whose network went away.
struct WsClientProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl WsClientProcess {
    fn start(url: &str) -> WsClientProcess {
        use std::io::BufRead;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio");
        let mut child = std::process::Command::new("node")
            .args(["wsclient.js", "--url", url, "--timeout-ms", "60000"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("node runs wsclient.js");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        WsClientProcess { child, lines }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line from wsclient.js")
    }

    fn signal(&self, name: &str) {
        crate::support::proxy::signal_pid(self.child.id(), name);
    }
}

impl Drop for WsClientProcess {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_client_is_closed_and_a_quiet_live_one_is_not() {
    let node = WsNode::start("node-a").await;
    let proxy = Proxy::start(&config(
        &[("node-a", node.addr)],
        "{ ping_interval: 1s, ping_timeout: 1s }",
    ));
    let url = format!("ws://{}/ws", proxy.addr);
    let (frozen, live) = (WsClientProcess::start(&url), WsClientProcess::start(&url));
    for c in [&frozen, &live] {
        assert_eq!(c.line(), "OPEN");
        assert!(c.line().starts_with("MESSAGE "), "the greeting");
    }
    frozen.signal("STOP");
    let stopped = Instant::now();
    // Within ping_interval + ping_timeout (+1 s): the node hears 1001 for the frozen one.
    let limit = Duration::from_secs(3);
    while node.closes().is_empty() {
        assert!(
            stopped.elapsed() < limit,
            "the half-open tunnel is still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(node.closes(), [1001]);
    // The live one answered every Ping meanwhile, and through as long again it stays.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(node.open(), 1, "the live client's tunnel is open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = metrics(&proxy).await;
    assert_eq!(
        counter(&m, "tether_tunnel_ends_total", &[("by", "ping_timeout")]),
        1
    );
    // tether's Pings never reached the node, nor their Pongs: the live client's pongs were
    // tether's to read.
    assert_eq!(
        node.heard
            .messages
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(live);
}

//! HTTP/1.1 through tether's own engine, spoken as raw bytes so nothing normalises them: bodies
//! by length and chunked, `Expect: 100-continue`, pipelining, and framing it must refuse.

use crate::support::{self, Proxy};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fnv(data: &[u8]) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Read one response (head + content-length body) from `s`, leaving nothing half-read.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, String, String) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head[9..12].parse().unwrap();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 8192];
                let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            buf.drain(..end + 4 + len);
            return (status, head, body);
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn proxy_and_nodes() -> (Vec<tether::demo::Node>, Proxy) {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: none", ""));
    (nodes, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_by_length_and_chunked_arrive_intact() {
    let (_nodes, proxy) = proxy_and_nodes().await;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();

    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for part in body.chunks(65_536) {
        s.write_all(part).await.unwrap();
    }
    let (status, _, json) = read_response(&mut s, &mut buf).await;
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (status, j["body_bytes"].as_u64()),
        (200, Some(body.len() as u64))
    );
    assert_eq!(j["body_fnv"], fnv(&body));

    // The same body chunked, with an extension and a trailer, on the same connection.
    let mut chunked = Vec::new();
    chunked
        .extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for part in body.chunks(40_000) {
        chunked.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
    s.write_all(&chunked).await.unwrap();
    let (status, _, json) = read_response(&mut s, &mut buf).await;
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (status, j["body_bytes"].as_u64()),
        (200, Some(body.len() as u64))
    );
    assert_eq!(j["body_fnv"], fnv(&body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_answered_so_the_client_sends_its_body() {
    let (_nodes, proxy) = proxy_and_nodes().await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (status, _, _) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 100);
    s.write_all(b"hello").await.unwrap();
    let (status, _, json) = read_response(&mut s, &mut buf).await;
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((status, j["body_bytes"].as_u64()), (200, Some(5)));
    assert!(
        j["headers"].get("expect").is_none(),
        "Expect is answered by tether, not forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (_nodes, proxy) = proxy_and_nodes().await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut all = Vec::new();
    for i in 0..10 {
        all.extend_from_slice(format!("GET /echo?i={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    s.write_all(&all).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..10 {
        let (status, _, json) = read_response(&mut s, &mut buf).await;
        let j: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (status, j["path"].as_str().unwrap()),
            (200, format!("/echo?i={i}").as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_a_400_and_never_reaches_the_node() {
    let (nodes, proxy) = proxy_and_nodes().await;
    let before = nodes[0].stats().requests;
    for raw in [
        &b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
        // Bare LF line ends, and obs-fold (a header continued on the next line).
        b"GET / HTTP/1.1\nHost: t\n\n",
        b"GET / HTTP/1.1\r\nHost: t\nX-Hidden: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
        // Two requests where the second hides in the first's body by a length the node might not read.
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\nGET /whoami HTTP/1.1\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut buf = Vec::new();
        let (status, head, _) = read_response(&mut s, &mut buf).await;
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert!(head.to_ascii_lowercase().contains("connection: close"));
    }
    assert_eq!(
        nodes[0].stats().requests,
        before,
        "a refused request reached the node"
    );

    // A chunked body whose framing breaks mid-way is cut, and no second request is smuggled.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXXGET /whoami HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&rest);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert!(
        !answer.contains("x-node"),
        "the smuggled GET was answered: {answer}"
    );
    // At most the broken POST (never the GET inside it) may have reached the node.
    assert!(nodes[0].stats().requests <= before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_head_is_a_431() {
    let (_nodes, proxy) = proxy_and_nodes().await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let _ = s.write_all(big.as_bytes()).await;
    let mut buf = Vec::new();
    let (status, _, _) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 431);
}

/// `timeouts.send`: a node that stops reading a request body does not hold the client forever;
/// it gets 504 once one write to the node has waited that long (nginx's proxy_send_timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_reading_the_body_gets_the_client_a_504() {
    // A "node" that accepts and then never reads.
    let node = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = node.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = node.accept().await {
            open.push(s);
        }
    });
    let yaml = format!(
        "listen:\n  - address: \"{{listen}}\"\nupstreams:\n  realtime:\n    nodes: [{{ id: deaf, address: \"{addr}\" }}]\n    affinity: {{ mode: none }}\n    timeouts: {{ connect: 1s, read: 30s, send: 300ms }}\nroutes:\n  - {{ path_prefix: /upload, upstream: realtime }}\n"
    );
    // Only /upload reaches the deaf node: the readiness probe's request gets a 404.
    let proxy = Proxy::start(&yaml);
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    // Far more than the kernel buffers between tether and the node hold.
    let body_len = 256 * 1024 * 1024;
    let head = format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {body_len}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
    });
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), r.read(&mut buf))
            .await
            .expect("tether answered before the bound")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        reply.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 504 "), "{text}");
    writer.abort();
    held.abort();
}

/// `limits.body_timeout`: a client that stops sending its body is answered 408 after that
/// long, instead of holding a node connection for the node's `timeouts.read` (90 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_a_408_after_body_timeout() {
    let nodes = support::nodes(1).await;
    let yaml = format!(
        "{}limits: {{ body_timeout: 300ms }}\n",
        support::config(&nodes, "mode: none", "timeouts: { read: 1h }")
    );
    let proxy = Proxy::start(&yaml);
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    // Ten bytes promised, three sent, then nothing.
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (status, head, _) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 408, "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"));
}

/// RFC 9110 §10.1.1: an HTTP/1.0 client's `Expect: 100-continue` is ignored, so it never gets
/// an interim response it cannot read; it sends its body and gets one final answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_clients_get_no_100_continue() {
    let (_nodes, proxy) = proxy_and_nodes().await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    // A pause so tether reads the head on its own (shaping the input, not synchronising):
    // that is when a 100 Continue would be sent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"hello").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
}

/// A worker hands a finished connection's buffers to its next one: nothing the first client
/// sent (here an unfinished request left behind a `Connection: close`) may reach the node as
/// part of the next client's request. One worker, so the second connection gets the first's set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_never_sees_bytes_an_earlier_one_left_behind() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start_with_args(
        &support::config(&nodes, "mode: none", ""),
        &["--threads", "1"],
    );
    let mut a = TcpStream::connect(proxy.addr).await.unwrap();
    a.write_all(
        b"GET /echo?first HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n\
          GET /leftover HTTP/1.1\r\nX-Left-Behind: by-the-first-client\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (status, _, _) = read_response(&mut a, &mut buf).await;
    assert_eq!(status, 200);
    // tether closes after the response: by then the connection's buffers are back on the worker.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), a.read_to_end(&mut rest))
        .await
        .expect("tether closes the connection after `Connection: close`")
        .unwrap();

    for i in 0..3 {
        let mut b = TcpStream::connect(proxy.addr).await.unwrap();
        let req = format!("GET /echo?next={i} HTTP/1.1\r\nHost: t\r\n\r\n");
        b.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let (status, head, json) = read_response(&mut b, &mut buf).await;
        assert_eq!(
            status, 200,
            "not the request this client sent: {head}\n{json}"
        );
        let j: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(j["path"], format!("/echo?next={i}"), "the node got: {j}");
        assert!(
            !json.contains("by-the-first-client"),
            "an earlier client's bytes reached the node: {j}"
        );
    }
}

//! The demo node over real sockets: every endpoint, the stream's flushing, the WebSocket echo,
//! and `stop` refusing new connections and cutting open ones.

use super::reply::TEXT;
use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderMap, HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use http_body_util::Empty;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WAIT: Duration = Duration::from_secs(10);

async fn node(id: &str) -> Node {
    Node::spawn(id, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn send(addr: SocketAddr, method: &str, path: &str) -> Response<Incoming> {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "demo")
        .header("x-test", "a")
        .header("x-test", "b")
        .body(Empty::<Bytes>::new())
        .unwrap();
    tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, String) {
    let resp = send(addr, "GET", path).await;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .unwrap()
        .unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_bytes().to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn http_endpoints() {
    let node = node("n1").await;
    let addr = node.addr();
    assert_eq!(node.id(), "n1");

    let (status, headers, body) = get(addr, "/whoami").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "n1"));
    assert_eq!(headers["x-node"], "n1");
    assert_eq!(headers[CONTENT_TYPE], TEXT);

    let (status, headers, body) = get(addr, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(body.contains(r#"content="n1""#) && !body.contains("{{NODE}}"));

    assert_eq!(get(addr, "/healthz").await.2, "ok");
    assert_eq!(get(addr, "/poll?hold=50").await.2, "n1");
    for bad in [
        "/poll?hold=abc",
        "/poll?hold=120001",
        "/poll?hold=-1",
        "/stream?n=1001",
        "/stream?every=x",
        "/poll?hold",
    ] {
        let (status, headers, _) = get(addr, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(headers["x-node"], "n1");
    }
    let (status, headers, _) = get(addr, "/nope").await;
    assert_eq!(
        (status, &headers["x-node"]),
        (StatusCode::NOT_FOUND, &HeaderValue::from_static("n1"))
    );
    assert_eq!(get(addr, "/ws").await.0, StatusCode::BAD_REQUEST); // not an upgrade

    let resp = send(addr, "POST", "/echo?x=1").await;
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["node"], "n1");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo?x=1");
    assert_eq!(echo["headers"]["x-test"], "a, b");
    assert_eq!(echo["headers"]["host"], "demo");

    assert_eq!(
        node.stats(),
        NodeStats {
            requests: 13,
            upgrades: 0,
            open_websockets: 0
        }
    );
    node.stop().await;
}

#[tokio::test]
async fn stream_events() {
    let node = node("s").await;
    let (status, headers, body) = get(node.addr(), "/stream?n=3&every=10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], "text/event-stream");
    assert_eq!(body, "data: s 0\n\ndata: s 1\n\ndata: s 2\n\n");

    // The first event must arrive while the second is still a minute away: no buffering.
    let mut body = send(node.addr(), "GET", "/stream?n=2&every=60000")
        .await
        .into_body();
    let frame = tokio::time::timeout(WAIT, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: s 0\n\n");
    node.stop().await;
    // Stopping mid-stream cuts the response instead of ending it cleanly.
    assert!(tokio::time::timeout(WAIT, body.frame())
        .await
        .unwrap()
        .unwrap()
        .is_err());
}

#[tokio::test]
async fn websocket_greets_and_echoes() {
    let node = node("w").await;
    let mut req = format!("ws://{}/ws", node.addr())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("chat, other"),
    );
    let tcp = TcpStream::connect(node.addr()).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(resp.headers()["x-node"], "w");
    assert_eq!(resp.headers()[SEC_WEBSOCKET_PROTOCOL], "chat");

    let greeting = ws.next().await.unwrap().unwrap();
    let greeting: Value = serde_json::from_str(greeting.to_text().unwrap()).unwrap();
    assert_eq!(greeting["node"], "w");
    assert_eq!(greeting["headers"]["sec-websocket-protocol"], "chat, other");
    assert_eq!(
        node.stats(),
        NodeStats {
            requests: 1,
            upgrades: 1,
            open_websockets: 1
        }
    );

    for i in 0..100u32 {
        let msg = if i % 2 == 0 {
            Message::text(format!("hello {i}"))
        } else {
            Message::binary(i.to_be_bytes().to_vec())
        };
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(
            tokio::time::timeout(WAIT, ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
            msg
        );
    }
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {} // server's close reply, then EOF
    node.stop().await;
    assert_eq!(node.stats().open_websockets, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_refuses_and_aborts() {
    let node = node("x").await;
    let addr = node.addr();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tcp)
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap(); // greeting: the socket is being served
    let poll = tokio::spawn(async move {
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get("/poll?hold=60000")
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(req).await
    });
    while node.stats().requests < 2 {
        tokio::task::yield_now().await; // until the poll is being held
    }

    node.stop().await;
    node.stop().await; // idempotent
    assert!(TcpStream::connect(addr).await.is_err());
    assert_eq!(node.stats().open_websockets, 0);
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {}
        Some(Ok(other)) => panic!("unexpected message after stop: {other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, poll)
        .await
        .unwrap()
        .unwrap()
        .is_err());
}

#[tokio::test]
async fn rejects_bad_handshake_and_id() {
    let node = node("h").await;
    let io = TokioIo::new(TcpStream::connect(node.addr()).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("/ws")
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "keep-alive, Upgrade")
        .header(SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .header(SEC_WEBSOCKET_VERSION, "8")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        sender.send_request(req).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    node.stop().await;
    assert!(Node::spawn("bad\nid", "127.0.0.1:0".parse().unwrap())
        .await
        .is_err());
}

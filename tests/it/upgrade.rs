//! One session, three kinds of traffic, one node: plain request, long-poll, WebSocket Upgrade.

use crate::support::{self, echo_many, Client, Proxy, COOKIE_AFFINITY};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_then_long_poll_then_websocket_all_reach_one_node() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));
    for _ in 0..3 {
        let mut c = Client::new(proxy.addr);
        let first = c.get("/whoami").await;
        assert_eq!(first.status, 200);
        assert!(first.new_cookie().is_some());

        let poll = c.get("/poll?hold=5000").await;
        assert_eq!((poll.status, poll.node()), (200, first.node()), "long-poll");

        let (mut ws, resp_headers, node) = c.ws("/ws").await;
        assert_eq!(node, first.node(), "websocket");
        assert!(
            resp_headers.get("set-cookie").is_none(),
            "a pinned client gets no new cookie"
        );
        echo_many(&mut ws, 1000).await;
        ws.close(None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_headers_reach_the_node_intact_and_101_pins_a_new_client() {
    let nodes = support::nodes(2).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut req = format!("ws://{}/ws", proxy.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "chat, superchat".parse().unwrap());
    req.headers_mut().insert(
        "sec-websocket-extensions",
        "x-test-ext; a=1".parse().unwrap(),
    );
    req.headers_mut()
        .insert("origin", "http://app.test".parse().unwrap());
    let key = req.headers()["sec-websocket-key"].clone();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
    let cookie = resp
        .headers()
        .get("set-cookie")
        .expect("the 101 pins a new client")
        .to_str()
        .unwrap()
        .to_string();
    let greeting = match ws.next().await {
        Some(Ok(m)) => m.into_text().unwrap().to_string(),
        other => panic!("{other:?}"),
    };
    let g: serde_json::Value = serde_json::from_str(&greeting).unwrap();
    let h = &g["headers"];
    assert_eq!(h["sec-websocket-key"], key.to_str().unwrap());
    assert_eq!(h["sec-websocket-version"], "13");
    assert_eq!(h["sec-websocket-protocol"], "chat, superchat");
    assert_eq!(h["sec-websocket-extensions"], "x-test-ext; a=1");
    assert_eq!(h["origin"], "http://app.test");
    assert_eq!(
        h["upgrade"].as_str().unwrap().to_ascii_lowercase(),
        "websocket"
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");

    // The cookie from the 101 pins later plain requests to the WebSocket's node.
    let mut c = Client::new(proxy.addr);
    let (name, value) = cookie.split(';').next().unwrap().split_once('=').unwrap();
    c.jar.insert(name.into(), value.into());
    for _ in 0..5 {
        assert_eq!(c.get("/whoami").await.node(), g["node"].as_str().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_tunnels_outlive_the_read_timeout_and_close_after_tunnel_idle() {
    let nodes = support::nodes(1).await;
    let cfg = support::config(
        &nodes,
        "mode: none",
        "timeouts:\n  connect: 500ms\n  read: 1s\n  tunnel_idle: 3s",
    );
    let proxy = Proxy::start(&cfg);
    let mut c = Client::new(proxy.addr);
    let (mut ws, _, _) = c.ws("/ws").await;
    // Quiet for twice the read timeout: the tunnel must still carry messages.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    echo_many(&mut ws, 10).await;
    // Then quiet past tunnel_idle: tether closes it. The bound only stops a broken build hanging.
    let end = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("tunnel_idle closes the tunnel");
    assert!(
        matches!(
            end,
            None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))
        ),
        "{end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_held_past_the_read_timeout_is_a_504_and_within_it_a_200() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&support::config(
        &nodes,
        "mode: none",
        "timeouts:\n  read: 2s",
    ));
    let mut c = Client::new(proxy.addr);
    assert_eq!(c.get("/poll?hold=1000").await.status, 200);
    let late = c.get("/poll?hold=4000").await;
    assert_eq!(late.status, 504, "{}", late.body);
    assert!(late.body.contains("did not answer in time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_responses_arrive_as_the_node_writes_them() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: none", ""));
    let io = TokioIo::new(tokio::net::TcpStream::connect(proxy.addr).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/stream?n=3&every=400")
        .header("host", "t")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // A buffering proxy would deliver all three events in one piece at the end.
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&first).matches("data:").count(),
        1,
        "{first:?}"
    );
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&rest).matches("data:").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_describe_the_client() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: none", ""));
    let mut c = Client::new(proxy.addr);
    let r = c
        .request(
            "/echo",
            &[("x-forwarded-for", "198.51.100.7"), ("host", "tether.test")],
        )
        .await;
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(j["headers"]["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");
    assert_eq!(j["headers"]["x-forwarded-host"], "tether.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_no_route_serves_is_a_404() {
    let nodes = support::nodes(1).await;
    let mut cfg = support::config(&nodes, "mode: none", "");
    cfg.push_str("routes:\n  - { path_prefix: /app/, upstream: realtime }\n");
    let proxy = Proxy::start(&cfg);
    let mut c = Client::new(proxy.addr);
    assert_eq!(c.get("/elsewhere").await.status, 404);
    assert_eq!(nodes[0].stats().requests, 0);
}

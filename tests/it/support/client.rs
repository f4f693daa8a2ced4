//! Real HTTP/1.1 and WebSocket clients with a cookie jar, optionally bound to a source address.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const COOKIE: &str = "tether_node";

/// One browser-like client: a keep-alive connection and a cookie jar.
pub struct Client {
    proxy: SocketAddr,
    source: Option<IpAddr>,
    conn: Option<SendRequest<Empty<Bytes>>>,
    pub jar: BTreeMap<String, String>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The node that answered (demo nodes put their id in `x-node`).
    pub fn node(&self) -> &str {
        self.headers
            .get("x-node")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of our affinity cookie if the response set one.
    pub fn new_cookie(&self) -> Option<String> {
        set_cookie_value(&self.headers, COOKIE)
    }
}

fn set_cookie_value(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .find_map(|v| {
            let pair = v.to_str().ok()?.split(';').next()?;
            let (n, val) = pair.split_once('=')?;
            (n.trim() == name).then(|| val.to_string())
        })
}

pub type Ws = WebSocketStream<TcpStream>;

impl Client {
    pub fn new(proxy: SocketAddr) -> Client {
        Client {
            proxy,
            source: None,
            conn: None,
            jar: BTreeMap::new(),
        }
    }

    /// A client whose connections come from `source` (any 127.x.y.z works on Linux loopback).
    pub fn from_ip(proxy: SocketAddr, source: IpAddr) -> Client {
        Client {
            source: Some(source),
            ..Client::new(proxy)
        }
    }

    /// Send the next requests to another proxy (a second replica), keeping the cookie jar.
    pub fn via(&mut self, proxy: SocketAddr) {
        if proxy != self.proxy {
            self.proxy = proxy;
            self.conn = None;
        }
    }

    pub async fn tcp(&self) -> std::io::Result<TcpStream> {
        match self.source {
            None => TcpStream::connect(self.proxy).await,
            Some(ip) => {
                let sock = if ip.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(self.proxy).await
            }
        }
    }

    pub fn cookie_header(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| {
            self.jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    async fn connection(&mut self) -> &mut SendRequest<Empty<Bytes>> {
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            let io = TokioIo::new(self.tcp().await.expect("connect to tether"));
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("handshake");
            tokio::spawn(conn);
            self.conn = Some(send);
        }
        self.conn.as_mut().expect("connection")
    }

    /// GET `path` with the jar's cookies; stores any cookie the response sets.
    pub async fn get(&mut self, path: &str) -> Reply {
        self.request(path, &[]).await
    }

    pub async fn request(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", path, headers).await
    }

    /// POST with an empty body (the admin API's actions).
    pub async fn post(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("POST", path, headers).await
    }

    async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        // The Host a browser or curl sends: the address it connected to (unless a test names one).
        let host = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map_or_else(|| self.proxy.to_string(), |(_, v)| v.to_string());
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        if let Some(c) = self.cookie_header() {
            req = req.header("cookie", c);
        }
        for (k, v) in headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new()).expect("request");
        let conn = self.connection().await;
        conn.ready().await.expect("connection ready");
        let resp = conn.send_request(req).await.expect("response from tether");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        let reply = Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        if let Some(v) = reply.new_cookie() {
            self.jar.insert(COOKIE.to_string(), v);
        }
        reply
    }

    /// Open a WebSocket to `path` with the jar's cookies. Returns the socket, the 101's headers
    /// and the greeting's `node`.
    pub async fn ws(&mut self, path: &str) -> (Ws, http::HeaderMap, String) {
        let tcp = self.tcp().await.expect("connect to tether");
        let mut req = format!("ws://{}{}", self.proxy, path)
            .into_client_request()
            .expect("ws request");
        if let Some(c) = self.cookie_header() {
            req.headers_mut()
                .insert("cookie", c.parse().expect("cookie header"));
        }
        let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp)
            .await
            .expect("websocket handshake");
        if let Some(v) = set_cookie_value(resp.headers(), COOKIE) {
            self.jar.insert(COOKIE.to_string(), v);
        }
        let greeting = match ws.next().await {
            Some(Ok(Message::Text(t))) => t.to_string(),
            other => panic!("expected a greeting, got {other:?}"),
        };
        let json: serde_json::Value = serde_json::from_str(&greeting).expect("greeting json");
        let node = json["node"].as_str().unwrap_or_default().to_string();
        (ws, resp.headers().clone(), node)
    }
}

/// Send `n` messages (alternating text and binary) and check each comes back unchanged.
pub async fn echo_many<S>(ws: &mut WebSocketStream<S>, n: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for i in 0..n {
        let msg = if i % 2 == 0 {
            Message::Text(format!("message {i}").into())
        } else {
            Message::Binary(vec![i as u8; 1 + i % 300].into())
        };
        ws.send(msg.clone()).await.expect("send");
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(got)) => {
                    assert_eq!(got, msg, "echo {i}");
                    break;
                }
                other => panic!("echo {i}: {other:?}"),
            }
        }
    }
}

//! Demo realtime nodes: small HTTP/1.1 + WebSocket servers standing in for app nodes behind tether
//! (used by `tether demo` and as the backends of the integration tests).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The HTML page served at `/`; `{{NODE}}` is replaced by the serving node's id.
pub const PAGE: &str = include_str!("demo/page.html");

const TEXT: &str = "text/plain; charset=utf-8";
const X_NODE: HeaderName = HeaderName::from_static("x-node");

/// Counters for tests: total HTTP requests served, WebSocket upgrades accepted, currently open WebSockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub requests: u64,
    pub upgrades: u64,
    pub open_websockets: u64,
}

/// A running demo node. Dropping the handle does NOT stop it; call `stop`.
pub struct Node {
    shared: Arc<Shared>,
    addr: SocketAddr,
    // Serialises `stop` so a second caller also returns only once the listener is gone.
    stopping: tokio::sync::Mutex<()>,
}

/// Everything the accept loop and connection tasks share; per-request values are built once here.
struct Shared {
    id: Arc<str>,
    id_body: Bytes,
    x_node: HeaderValue,
    page: Bytes,
    http: http1::Builder,
    requests: AtomicU64,
    upgrades: AtomicU64,
    open_websockets: AtomicU64,
    shutdown: watch::Sender<bool>,
    // Every task of the node (accept loop, connections, WebSockets, stream producers), so `stop`
    // can abort them all and wait until their sockets are dropped.
    tasks: Mutex<JoinSet<()>>,
}

impl Node {
    /// Bind `addr` (use port 0 for an ephemeral port) and serve in the background on the current tokio runtime.
    pub async fn spawn(id: &str, addr: SocketAddr) -> io::Result<Node> {
        let x_node = HeaderValue::from_str(id).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "node id must be a valid header value",
            )
        })?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            id: id.into(),
            id_body: Bytes::copy_from_slice(id.as_bytes()),
            x_node,
            page: Bytes::from(PAGE.replace("{{NODE}}", &html_escape(id))),
            http: http1::Builder::new(),
            requests: AtomicU64::new(0),
            upgrades: AtomicU64::new(0),
            open_websockets: AtomicU64::new(0),
            shutdown: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
        });
        shared.spawn(accept_loop(shared.clone(), listener));
        tracing::info!(node = id, %addr, "demo node listening");
        Ok(Node {
            shared,
            addr,
            stopping: tokio::sync::Mutex::new(()),
        })
    }

    pub fn id(&self) -> &str {
        &self.shared.id
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Simulate a node dying: close the listener (new connections are refused) and abort every open connection and WebSocket at once. Idempotent. Returns when the listener is closed.
    pub async fn stop(&self) {
        let _serial = self.stopping.lock().await;
        if !self.shared.shutdown.send_replace(true) {
            tracing::info!(node = %self.shared.id, addr = %self.addr, "demo node stopped");
        }
        // Aborting drops each task's future, and with it the listener and every socket; no close
        // frames or final chunks are sent, like a crashed process.
        let mut tasks = std::mem::take(&mut *self.shared.tasks());
        tasks.shutdown().await;
    }

    /// Counters for tests: total HTTP requests served, WebSocket upgrades accepted, currently open WebSockets.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            requests: self.shared.requests.load(Relaxed),
            upgrades: self.shared.upgrades.load(Relaxed),
            open_websockets: self.shared.open_websockets.load(Relaxed),
        }
    }
}

impl Shared {
    fn tasks(&self) -> MutexGuard<'_, JoinSet<()>> {
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `fut` as a node task. It also watches the shutdown flag, which covers a task spawned
    /// while `stop` is already draining the set (and so never aborted by it).
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut stopped = self.shutdown.subscribe();
        let task = async move {
            tokio::select! {
                () = fut => {}
                () = async {
                    // A dropped sender (impossible while Shared lives) must not end the task.
                    if stopped.wait_for(|stopped| *stopped).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => {}
            }
        };
        let mut tasks = self.tasks();
        while tasks.try_join_next().is_some() {} // reap finished tasks so the set stays small
        tasks.spawn(task);
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Usually fd exhaustion; back off instead of spinning.
                tracing::warn!(node = %shared.id, %err, "demo node accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_shared = shared.clone();
        shared.spawn(async move {
            let svc_shared = conn_shared.clone();
            let svc = service_fn(move |req| handle(svc_shared.clone(), req));
            let conn = conn_shared.http.serve_connection(TokioIo::new(stream), svc);
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(node = %conn_shared.id, %err, "demo connection error");
            }
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    shared.requests.fetch_add(1, Relaxed);
    let mut resp = route(&shared, req).await;
    resp.headers_mut().insert(X_NODE, shared.x_node.clone());
    Ok(resp)
}

async fn route(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            shared.page.clone(),
        ),
        (&Method::GET, "/whoami") => respond(StatusCode::OK, TEXT, shared.id_body.clone()),
        (&Method::GET, "/healthz") => respond(StatusCode::OK, TEXT, Bytes::from_static(b"ok")),
        (&Method::GET, "/poll") => match param(query, "hold", 25_000, 120_000) {
            Ok(hold) => {
                // If the node stops meanwhile, this future is dropped with its connection.
                tokio::time::sleep(Duration::from_millis(hold)).await;
                respond(StatusCode::OK, TEXT, shared.id_body.clone())
            }
            Err(msg) => bad_request(msg),
        },
        (&Method::GET, "/stream") => stream(shared, query),
        (&Method::GET | &Method::POST, "/echo") => echo(shared, req).await,
        (&Method::GET, "/ws") => websocket(shared, req),
        _ => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"not found\n"),
        ),
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response<Body> {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn bad_request(msg: String) -> Response<Body> {
    respond(StatusCode::BAD_REQUEST, TEXT, Bytes::from(msg))
}

/// Integer query parameter `name` in `0..=max`, `default` when absent; the 400 message otherwise.
fn param(query: &str, name: &str, default: u64, max: u64) -> Result<u64, String> {
    let value = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| *key == name);
    match value {
        None => Ok(default),
        Some((_, v)) => match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("bad {name}: want an integer in 0..={max}\n")),
        },
    }
}

fn stream(shared: &Arc<Shared>, query: &str) -> Response<Body> {
    let (n, every) = match (
        param(query, "n", 3, 1000),
        param(query, "every", 100, 60_000),
    ) {
        (Ok(n), Ok(every)) => (n, every),
        (Err(msg), _) | (_, Err(msg)) => return bad_request(msg),
    };
    let (tx, rx) = mpsc::channel(4);
    let id = shared.id.clone();
    shared.spawn(async move {
        for i in 0..n {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(every)).await;
            }
            if tx
                .send(Bytes::from(format!("data: {id} {i}\n\n")))
                .await
                .is_err()
            {
                return; // client went away
            }
        }
        let _ = tx.send(Bytes::new()).await; // end marker: the stream is complete
    });
    let mut resp = respond(StatusCode::OK, "text/event-stream", Body::Chan(rx));
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

async fn echo(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    // Drain frame by frame so a large upload is never buffered whole; count and fingerprint it
    // (FNV-1a) so tests can check a body arrived intact through the proxy.
    let (mut bytes, mut fnv) = (0u64, 0xcbf2_9ce4_8422_2325u64);
    while let Some(frame) = body.frame().await {
        match frame {
            Err(err) => return bad_request(format!("bad request body: {err}\n")),
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    bytes += data.len() as u64;
                    for &b in data.iter() {
                        fnv = (fnv ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                    }
                }
            }
        }
    }
    let doc = json!({
        "node": &*shared.id,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        "headers": headers_json(&parts.headers),
        "body_bytes": bytes,
        "body_fnv": format!("{fnv:016x}"),
    });
    match serde_json::to_vec(&doc) {
        Ok(json) => respond(StatusCode::OK, "application/json", Bytes::from(json)),
        Err(_) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            Bytes::from_static(b"json\n"),
        ),
    }
}

/// Request headers as a JSON object; names are lowercase already, repeats are joined with ", ".
fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let values: Vec<_> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect();
        map.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    Value::Object(map)
}

/// Comma-separated tokens of every `name` header, trimmed.
fn tokens<'a>(headers: &'a HeaderMap, name: HeaderName) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn websocket(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let h = req.headers();
    let key = h.get(SEC_WEBSOCKET_KEY).filter(|k| !k.is_empty());
    let valid = tokens(h, UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"))
        && tokens(h, CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && h.get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let (Some(key), true) = (key, valid) else {
        return bad_request("bad websocket handshake\n".to_owned());
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            Bytes::from_static(b"accept key\n"),
        );
    };
    let protocol = tokens(h, SEC_WEBSOCKET_PROTOCOL)
        .next()
        .and_then(|p| HeaderValue::from_str(p).ok());
    let greeting = json!({ "node": &*shared.id, "headers": headers_json(h) }).to_string();

    let mut resp = Response::new(Body::Full(None));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(protocol) = protocol {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    shared.upgrades.fetch_add(1, Relaxed);

    let ws_shared = shared.clone();
    shared.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                serve_websocket(ws_shared, ws, greeting).await;
            }
            Err(err) => {
                tracing::debug!(node = %ws_shared.id, %err, "demo websocket upgrade failed")
            }
        }
    });
    resp
}

/// Decrements the open-WebSocket gauge however the socket task ends, abort included.
struct OpenWebSocket(Arc<Shared>);

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        self.0.open_websockets.fetch_sub(1, Relaxed);
    }
}

async fn serve_websocket<S>(shared: Arc<Shared>, mut ws: WebSocketStream<S>, greeting: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    shared.open_websockets.fetch_add(1, Relaxed);
    let _open = OpenWebSocket(shared);
    if ws.send(Message::text(greeting)).await.is_err() {
        return;
    }
    // tungstenite answers pings itself and replies to a close on the next read, which then ends
    // the stream; only data messages need handling here.
    while let Some(Ok(msg)) = ws.next().await {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Response body: a whole buffer, or chunks flushed as a producer task sends them.
enum Body {
    Full(Option<Bytes>),
    /// Ends at an empty chunk; a channel closed without one means the producer died, and the
    /// error makes hyper cut the connection instead of finishing the response as if complete.
    Chan(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match this {
            Body::Full(body) => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
            Body::Chan(rx) => match std::task::ready!(rx.poll_recv(cx)) {
                Some(chunk) if !chunk.is_empty() => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                Some(_) => {
                    *this = Body::Full(None);
                    Poll::Ready(None)
                }
                None => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "stream producer died",
                )))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Chan(_) => SizeHint::default(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(body: Bytes) -> Self {
        Body::Full(Some(body))
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
}

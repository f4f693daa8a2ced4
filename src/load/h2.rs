//! The HTTP/2 side of the flows (--http2): a request as a stream on the client's connection,
//! and a WebSocket as an extended CONNECT stream (RFC 8441) with tungstenite running over it,
//! so the ws and socket.io flows read and write frames exactly as over HTTP/1.1.

use super::client::Client;
use super::stats::ErrorKind;
use super::transport::{Io, Ws};
use crate::h2stream::StreamIo;
use bytes::Bytes;
use http::header::{HeaderValue, COOKIE};
use http::{Method, Request};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// Body bytes kept per response; the rest is read and dropped.
const MAX_KEPT_BODY: usize = 64 * 1024;

/// What a stream's response left: its status and --node-header value (the body is in the
/// caller's buffer).
pub(crate) struct Answer {
    pub status: u16,
    pub node: Option<HeaderValue>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..400).contains(&self.status)
    }
}

/// An h2 failure: the stream's (a reset, the connection gone), which also drops the client's
/// connection when it is the connection that failed.
fn failed(c: &mut Client, e: &h2::Error) -> ErrorKind {
    if !e.is_reset() {
        c.h2_broken();
    }
    if e.is_io() {
        ErrorKind::Io
    } else {
        ErrorKind::Protocol
    }
}

fn uri(c: &Client, path: &str) -> String {
    format!(
        "{}://{}{path}",
        c.plan().scheme,
        c.plan().host.to_str().unwrap_or("")
    )
}

/// A request for `path` with the client's cookies as one stream; stores the answer's cookies,
/// reads the body into `body` (up to 64 KiB kept).
pub(crate) async fn exchange(
    c: &mut Client,
    method: Method,
    path: &str,
    payload: Bytes,
    body: &mut Vec<u8>,
) -> Result<Answer, ErrorKind> {
    let send = c.h2().await?;
    let mut req = Request::builder().method(method).uri(uri(c, path));
    if let Some(cookie) = c.jar.header() {
        req = req.header(COOKIE, cookie.clone());
    }
    let req = req.body(()).map_err(|_| ErrorKind::Protocol)?;
    let mut send = match send.ready().await {
        Ok(s) => s,
        Err(e) => return Err(failed(c, &e)),
    };
    let (response, mut stream) = match send.send_request(req, payload.is_empty()) {
        Ok(r) => r,
        Err(e) => return Err(failed(c, &e)),
    };
    if !payload.is_empty() {
        // Small bodies (socket.io packets): within the initial window.
        if let Err(e) = stream.send_data(payload, true) {
            return Err(failed(c, &e));
        }
    }
    let response = match response.await {
        Ok(r) => r,
        Err(e) => return Err(failed(c, &e)),
    };
    let (parts, mut recv) = response.into_parts();
    c.jar.store_all(&parts.headers);
    body.clear();
    while let Some(chunk) = recv.data().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return Err(failed(c, &e)),
        };
        let _ = recv.flow_control().release_capacity(chunk.len());
        let room = MAX_KEPT_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(Answer {
        status: parts.status.as_u16(),
        node: parts.headers.get(&c.plan().node_header).cloned(),
    })
}

/// A WebSocket at `path` over an extended CONNECT stream, with the client's cookies; stores the
/// `200`'s cookies and returns its --node-header value. Any other status is the error it names.
pub(crate) async fn websocket(
    c: &mut Client,
    path: &str,
    config: WebSocketConfig,
) -> Result<(Ws, Option<HeaderValue>), ErrorKind> {
    let send = c.h2().await?;
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(uri(c, path))
        .header("sec-websocket-version", "13");
    if let Some(cookie) = c.jar.header() {
        req = req.header(COOKIE, cookie.clone());
    }
    let mut req = req.body(()).map_err(|_| ErrorKind::Protocol)?;
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let mut send = match send.ready().await {
        Ok(s) => s,
        Err(e) => return Err(failed(c, &e)),
    };
    if !send.is_extended_connect_protocol_enabled() {
        // The server did not offer RFC 8441: no WebSocket can go over this connection.
        return Err(ErrorKind::Protocol);
    }
    let (response, stream) = match send.send_request(req, false) {
        Ok(r) => r,
        Err(e) => return Err(failed(c, &e)),
    };
    let response = match tokio::time::timeout(c.timeout(), response).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(failed(c, &e)),
        Err(_) => return Err(ErrorKind::Timeout),
    };
    let (parts, mut recv) = response.into_parts();
    c.jar.store_all(&parts.headers);
    let node = parts.headers.get(&c.plan().node_header).cloned();
    if parts.status != 200 {
        let mut body = Vec::new();
        while let Some(Ok(chunk)) = recv.data().await {
            body.extend_from_slice(&chunk[..chunk.len().min(4096)]);
        }
        return Err(
            ErrorKind::of_status(parts.status.as_u16(), &body).unwrap_or(ErrorKind::Protocol)
        );
    }
    let io = Io::H2(Box::new(StreamIo::new(stream, recv)));
    let ws = WebSocketStream::from_raw_socket(io, Role::Client, Some(config)).await;
    Ok((ws, node))
}

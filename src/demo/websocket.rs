//! `/ws`: the WebSocket handshake, then a socket that greets with the node's id and the request
//! headers and echoes every data message back.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::body::Body;
use super::endpoints::headers_json;
use super::reply::{bad_request, respond, TEXT};
use super::Shared;

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

pub(super) fn websocket(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
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

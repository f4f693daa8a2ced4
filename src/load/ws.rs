//! The `ws` flow (greeting, K timed echoes, reconnect; or hold the socket open) and the WebSocket
//! pieces the socket.io flow shares: handshake with the jar's cookies, receive, idle, close.

use super::args::NodeFrom;
use super::client::{timed, Client};
use super::stats::ErrorKind;
use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, COOKIE};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

pub(crate) use super::transport::Ws;

/// What every echo carries; the server must send it back unchanged.
const ECHO: Utf8Bytes = Utf8Bytes::from_static("tether load echo");

/// Read buffer per socket: tungstenite allocates 128 KiB up front by default, which for tens of
/// thousands of held sockets would be gigabytes of load-tool memory; our messages are tiny.
const READ_BUFFER: usize = 4096;

/// At most this long for the server's close reply; the socket is dropped after anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Connect a WebSocket to `path` with the jar's cookies: an HTTP/1.1 Upgrade on a connection of
/// its own, or with --http2 an extended CONNECT stream on the client's connection. Stores the
/// answer's cookies and returns its --node-header value.
pub(crate) async fn connect(
    c: &mut Client,
    path: &str,
) -> Result<(Ws, Option<HeaderValue>), ErrorKind> {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    if c.plan().http2 {
        return super::h2::websocket(c, path, config).await;
    }
    let io = c.connect().await?;
    let scheme = if c.plan().tls.is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://{}{path}", c.plan().host.to_str().unwrap_or(""));
    let mut req = url.into_client_request().map_err(|_| ErrorKind::Protocol)?;
    if let Some(cookie) = c.jar.header() {
        req.headers_mut().insert(COOKIE, cookie.clone());
    }
    let (ws, resp) = timed(c.timeout(), async {
        tokio_tungstenite::client_async_with_config(req, io, Some(config))
            .await
            .map_err(|e| handshake_kind(&e))
    })
    .await?;
    c.jar.store_all(resp.headers());
    Ok((ws, resp.headers().get(&c.plan().node_header).cloned()))
}

/// A refused handshake is classified by its status (and body: "Session ID unknown").
fn handshake_kind(e: &WsError) -> ErrorKind {
    match e {
        WsError::Http(resp) => {
            let body = resp.body().as_deref().unwrap_or_default();
            ErrorKind::of_status(resp.status().as_u16(), body).unwrap_or(ErrorKind::Protocol)
        }
        other => ws_kind(other),
    }
}

/// The error kind of a WebSocket failure after the handshake.
pub(crate) fn ws_kind(e: &WsError) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => ErrorKind::WsClosed,
        WsError::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => ErrorKind::WsClosed,
        WsError::Io(io)
            if matches!(
                io.kind(),
                Io::ConnectionReset | Io::BrokenPipe | Io::UnexpectedEof | Io::ConnectionAborted
            ) =>
        {
            ErrorKind::WsClosed
        }
        WsError::Io(io) => ErrorKind::of_io(io, false),
        // Bad frames, UTF-8, capacity, and a handshake answered with anything but 101.
        _ => ErrorKind::Protocol,
    }
}

/// Send one message.
pub(crate) async fn send(ws: &mut Ws, msg: Message) -> Result<(), ErrorKind> {
    ws.send(msg).await.map_err(|e| ws_kind(&e))
}

/// The next data message (text or binary); pings are answered by tungstenite as we read.
pub(crate) async fn recv(ws: &mut Ws) -> Result<Message, ErrorKind> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | None => return Err(ErrorKind::WsClosed),
            Some(Ok(msg)) => return Ok(msg),
            Some(Err(e)) => return Err(ws_kind(&e)),
        }
    }
}

/// Keep the socket open, reading (to see a close, and to answer pings), until `until` or the
/// run's stop. With `engineio`, text `2` (an engine.io ping) is answered with `3`.
pub(crate) async fn idle(
    c: &mut Client,
    ws: &mut Ws,
    until: Option<Instant>,
    engineio: bool,
) -> Result<(), ErrorKind> {
    loop {
        let msg = tokio::select! {
            () = c.until_stopped() => return Ok(()),
            () = sleep_until(until) => return Ok(()),
            msg = recv(ws) => msg?,
        };
        if engineio && msg.to_text().is_ok_and(|t| t == "2") {
            send(ws, Message::text("3")).await?;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Close politely: send a close frame and wait briefly for the server's.
pub(crate) async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// The node named by a greeting: its JSON `node` field, or the whole text if it is not JSON.
fn greeting_node(text: &str) -> String {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
        Ok(object) => object
            .get("node")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_owned(),
        Err(_) => text.trim().to_owned(),
    }
}

/// WebSocket sessions until the run stops: connect, greeting, then either hold to the end
/// (--hold-open) or --messages timed echoes (--hold apart), close, and again.
pub(crate) async fn run(c: &mut Client) {
    while !c.stopped() {
        if let Err(kind) = session(c).await {
            c.fail(kind).await;
        }
    }
}

async fn session(c: &mut Client) -> Result<(), ErrorKind> {
    let shared = Arc::clone(&c.shared);
    let plan = &shared.plan;
    let (mut ws, header) = connect(c, &plan.ws_path).await?;
    let _held = shared.stats.hold();
    let greeting = timed(plan.timeout, recv(&mut ws)).await?;
    let node = match (plan.node_from, &header) {
        (NodeFrom::Header, Some(h)) => h.as_bytes().to_vec(),
        _ => greeting_node(greeting.to_text().unwrap_or_default()).into_bytes(),
    };
    c.observe(&node);
    if plan.hold_open {
        idle(c, &mut ws, None, false).await?;
        close(ws).await;
        return Ok(());
    }
    for i in 0..plan.messages {
        if i > 0 {
            if let Some(hold) = plan.hold {
                idle(c, &mut ws, Some(Instant::now() + hold), false).await?;
            }
        }
        if !c.pace().await || !c.ticket() {
            break;
        }
        let started = Instant::now();
        let echoed = timed(plan.timeout, async {
            send(&mut ws, Message::Text(ECHO)).await?;
            recv(&mut ws).await
        })
        .await?;
        match echoed {
            Message::Text(t) if t == ECHO => c.record_round_trip(started),
            _ => return Err(ErrorKind::Protocol),
        }
    }
    close(ws).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_node_from_json_or_text() {
        assert_eq!(greeting_node(r#"{"node":"node-a","headers":{}}"#), "node-a");
        assert_eq!(greeting_node(r#"{"other":1}"#), "");
        assert_eq!(greeting_node("node-b\n"), "node-b");
        assert_eq!(greeting_node(r#"["node-c"]"#), r#"["node-c"]"#);
    }

    #[test]
    fn error_kinds() {
        use std::io;
        assert_eq!(ws_kind(&WsError::ConnectionClosed), ErrorKind::WsClosed);
        let reset = WsError::Io(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(ws_kind(&reset), ErrorKind::WsClosed);
        let other = WsError::Io(io::Error::from_raw_os_error(24));
        assert_eq!(ws_kind(&other), ErrorKind::TooManyOpenFiles);
        let resp = http::Response::builder()
            .status(400)
            .body(Some(
                br#"{"code":1,"message":"Session ID unknown"}"#.to_vec(),
            ))
            .unwrap();
        assert_eq!(
            handshake_kind(&WsError::Http(Box::new(resp))),
            ErrorKind::SessionUnknown
        );
        let resp = http::Response::builder().status(502).body(None).unwrap();
        assert_eq!(
            handshake_kind(&WsError::Http(Box::new(resp))),
            ErrorKind::Status5xx
        );
    }
}

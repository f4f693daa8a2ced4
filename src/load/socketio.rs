//! The `socketio` flow: engine.io v4 / socket.io v4 by hand, as a browser client does it: polling
//! handshake, namespace connect, poll for the connect ack, upgrade to WebSocket (`2probe`,
//! `3probe`, `5`), then timed acked `echo` events; engine.io pings are answered.

use super::client::{timed, Client};
use super::engineio::{
    ack_node, echo_event, event_node, open_sid, packet, payload, sio, Packet, Sio,
};
use super::hyper_conn::{self, Sender};
use super::stats::ErrorKind;
use super::ws;
use bytes::Bytes;
use http::{Method, Uri};
use std::sync::Arc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Polls allowed before the namespace's connect ack must have arrived (servers send it at once).
const MAX_POLLS: usize = 8;

/// socket.io sessions until the run stops; each ends with a disconnect and a new session starts.
pub(crate) async fn run(c: &mut Client) {
    let mut buf = Vec::with_capacity(512);
    while !c.stopped() {
        if let Err(kind) = session(c, &mut buf).await {
            c.fail(kind).await;
        }
    }
}

/// How polling requests go: an HTTP/1.1 connection of their own, or (--http2) streams on the
/// client's connection, which the WebSocket then shares.
enum Poller {
    Http1(Sender),
    Http2,
}

/// One request of the polling transport, counted and timed as a request; its body is left in
/// `buf`. An error status is an error (400 "Session ID unknown" included).
async fn poll(
    c: &mut Client,
    sender: &mut Poller,
    method: Method,
    uri: Uri,
    body: Bytes,
    buf: &mut Vec<u8>,
) -> Result<(), ErrorKind> {
    let started = Instant::now();
    let status = match sender {
        Poller::Http1(sender) => {
            let req = hyper_conn::request(c, method, uri, body);
            timed(c.timeout(), hyper_conn::exchange(sender, req, c, buf))
                .await?
                .status
        }
        Poller::Http2 => {
            let path = uri.to_string();
            let limit = c.timeout();
            timed(limit, super::h2::exchange(c, method, &path, body, buf))
                .await?
                .status
        }
    };
    c.record_request(started);
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(ErrorKind::of_status(status, buf).unwrap_or(ErrorKind::Protocol))
    }
}

fn text(buf: &[u8]) -> Result<&str, ErrorKind> {
    std::str::from_utf8(buf).map_err(|_| ErrorKind::Protocol)
}

async fn session(c: &mut Client, buf: &mut Vec<u8>) -> Result<(), ErrorKind> {
    c.new_session();
    let shared = Arc::clone(&c.shared);
    let plan = &shared.plan;
    let nsp = plan.sio_nsp.as_str();
    let mut sender = if plan.http2 {
        Poller::Http2
    } else {
        Poller::Http1(hyper_conn::open(c).await?)
    };

    // Handshake: the open packet carries the session id.
    if !c.ticket() {
        return Ok(());
    }
    let handshake: Uri = plan.sio_polling.parse().map_err(|_| ErrorKind::Protocol)?;
    poll(c, &mut sender, Method::GET, handshake, Bytes::new(), buf).await?;
    let sid = payload(text(buf)?)
        .find_map(|p| match packet(p) {
            Some(Packet::Open(json)) => open_sid(json),
            _ => None,
        })
        .ok_or(ErrorKind::Protocol)?;
    let polling: Uri = format!("{}&sid={sid}", plan.sio_polling)
        .parse()
        .map_err(|_| ErrorKind::Protocol)?;

    // Connect to the namespace, then poll until the server acknowledges it.
    if !c.ticket() {
        return Ok(());
    }
    let connect = Bytes::from(format!("40{nsp}"));
    poll(c, &mut sender, Method::POST, polling.clone(), connect, buf).await?;
    let mut connected = false;
    for _ in 0..MAX_POLLS {
        if !c.ticket() {
            return Ok(());
        }
        poll(
            c,
            &mut sender,
            Method::GET,
            polling.clone(),
            Bytes::new(),
            buf,
        )
        .await?;
        let mut ping = false;
        for p in payload(text(buf)?) {
            match packet(p) {
                Some(Packet::Message(m)) => match sio(m, nsp) {
                    Some(Sio::Connect(_)) => connected = true,
                    Some(Sio::ConnectError(_)) | Some(Sio::Disconnect) => {
                        return Err(ErrorKind::Protocol)
                    }
                    Some(Sio::Event { data, .. }) => {
                        if let Some(node) = event_node(data) {
                            c.observe(node.as_bytes());
                        }
                    }
                    _ => {}
                },
                Some(Packet::Ping(_)) => ping = true,
                Some(Packet::Close) => return Err(ErrorKind::Protocol),
                _ => {}
            }
        }
        if ping {
            let pong = Bytes::from_static(b"3");
            poll(c, &mut sender, Method::POST, polling.clone(), pong, buf).await?;
        }
        if connected {
            break;
        }
    }
    if !connected {
        return Err(ErrorKind::Protocol);
    }
    // The polling connection is done: the WebSocket replaces it (one descriptor per client).
    drop(sender);

    // Upgrade.
    let (mut socket, _) = ws::connect(c, &format!("{}{sid}", plan.sio_ws_path)).await?;
    let _held = shared.stats.hold();
    timed(plan.timeout, async {
        ws::send(&mut socket, Message::text("2probe")).await?;
        loop {
            match ws::recv(&mut socket).await? {
                Message::Text(t) if t == "3probe" => break,
                Message::Text(t) if t == "2" => ws::send(&mut socket, Message::text("3")).await?,
                _ => {}
            }
        }
        ws::send(&mut socket, Message::text("5")).await
    })
    .await?;

    if plan.hold_open {
        ws::idle(c, &mut socket, None, true).await?;
    } else {
        for i in 0..plan.messages {
            if i > 0 {
                if let Some(hold) = plan.hold {
                    ws::idle(c, &mut socket, Some(Instant::now() + hold), true).await?;
                }
            }
            if !c.pace().await || !c.ticket() {
                break;
            }
            let id = u64::from(i);
            let started = Instant::now();
            let node = timed(plan.timeout, echo(c, &mut socket, nsp, id, i)).await?;
            c.record_round_trip(started);
            if let Some(node) = node {
                c.observe(node.as_bytes());
            }
        }
    }
    // socket.io disconnect, then the WebSocket close.
    let _ = ws::send(&mut socket, Message::text(format!("41{nsp}"))).await;
    ws::close(socket).await;
    Ok(())
}

/// Send the acked `echo` event `id` and read until its ack; returns the ack's `node`.
async fn echo(
    c: &mut Client,
    socket: &mut ws::Ws,
    nsp: &str,
    id: u64,
    i: u32,
) -> Result<Option<String>, ErrorKind> {
    ws::send(socket, Message::text(echo_event(nsp, id, i))).await?;
    loop {
        let Message::Text(t) = ws::recv(socket).await? else {
            continue;
        };
        match packet(&t) {
            Some(Packet::Ping(_)) => ws::send(socket, Message::text("3")).await?,
            Some(Packet::Close) => return Err(ErrorKind::WsClosed),
            Some(Packet::Message(m)) => match sio(m, nsp) {
                Some(Sio::Ack { id: got, data }) if got == id => return Ok(ack_node(data)),
                Some(Sio::Event { data, .. }) => {
                    if let Some(node) = event_node(data) {
                        c.observe(node.as_bytes());
                    }
                }
                Some(Sio::Disconnect) => return Err(ErrorKind::WsClosed),
                _ => {}
            },
            _ => {}
        }
    }
}

//! HTTP/2 towards clients: one connection, many streams, each stream its own exchange.
//!
//! A TLS listener with `http2` offers `h2` in ALPN (and a plain listener with `h2c` takes the
//! HTTP/2 preface); such a connection is served here instead of by `conn::serve`. The `h2`
//! crate does the framing, HPACK, flow control and the protocol's own checks; tether does what
//! an intermediary must (see [`view`]) and everything it does for HTTP/1.1: every stream goes
//! through the same request policy (`runtime::policy::plan`), to the same nodes over the same
//! HTTP/1.1 upstream connections and pool, and ends in one outcome and access-log line
//! ([`stream`]). An extended CONNECT for `websocket` (RFC 8441) becomes an HTTP/1.1 Upgrade to
//! the client's node, and after its `101` the stream is relayed by the same tunnel as an
//! HTTP/1.1 WebSocket ([`crate::h2stream::StreamIo`]): frames followed, pings, leaves and shutdown alike.
//!
//! This task only drives the connection (`accept` is what reads and writes its frames); each
//! stream runs in a task of its own on the same worker, so a slow stream never holds another.
//! Limits: [`MAX_STREAMS`] concurrent streams, a header list no larger than
//! `limits.max_head_bytes` (which also bounds CONTINUATION frames: h2 allows about
//! `max_head_bytes / 16 KiB` of them), windows of [`STREAM_WINDOW`] per stream and
//! [`CONNECTION_WINDOW`] per connection (a stream tether reads slowly holds at most its window),
//! the handshake within `limits.head_timeout`, an idle connection closed after
//! `limits.keepalive_timeout`, and streams the client resets counted ([`Resets`]): HTTP/2's
//! rapid-reset attack (CVE-2023-44487) ends with GOAWAY `ENHANCE_YOUR_CALM`. A shutdown or a
//! binary upgrade sends GOAWAY with the last stream id and lets open streams finish.

mod head;
mod stream;
mod view;

use super::{Limits, ShutdownSignal};
use crate::runtime::counters::global;
use crate::runtime::Shared;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Streams a client may have open at once on one connection (nginx allows 128, hyper 200): a
/// page with a few socket.io tabs' long-polls, WebSockets and its assets stays well inside.
/// Each costs only its state until it has a body to read (windows below bound the rest).
pub const MAX_STREAMS: u32 = 256;
/// Each stream's receive window: what a client may send before tether reads it (and what a
/// request body is read ahead of contacting its node).
pub const STREAM_WINDOW: u32 = 64 * 1024;
/// The connection's receive window, shared by its streams.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Data queued towards the client per stream before tether stops reading its node.
const SEND_BUFFER: usize = 64 * 1024;
/// Streams reset by the client that a connection may run up before it is counted abusive:
/// past this many, and more than half of its streams reset, it gets GOAWAY
/// `ENHANCE_YOUR_CALM`. A browser cancels a few streams a page (navigation, aborted fetches);
/// a rapid-reset attack cancels every one.
const MAX_RESETS: u32 = 100;

/// The HTTP/2 preface a client with prior knowledge (h2c) starts with.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What every stream of one connection shares.
pub(super) struct Connection {
    pub peer: SocketAddr,
    pub tls: bool,
    pub runtime: &'static Shared,
    pub limits: Limits,
    pub resets: Resets,
    /// When the last stream ended (milliseconds since the connection began): the idle clock.
    last_end_ms: AtomicU64,
    begun: Instant,
}

/// Streams the client reset, against streams it opened.
#[derive(Default)]
pub(super) struct Resets {
    opened: AtomicU32,
    reset: AtomicU32,
    /// Woken when the resets cross the line.
    abusive: Notify,
}

impl Resets {
    /// A stream the client reset (cancelled) before its exchange ended.
    pub fn count(&self) {
        let reset = self.reset.fetch_add(1, Relaxed) + 1;
        if reset > MAX_RESETS && reset * 2 > self.opened.load(Relaxed) {
            self.abusive.notify_one();
        }
    }
}

impl Connection {
    /// A stream ended: the connection's idle clock starts again from now.
    pub fn stream_ended(&self) {
        let ms = self.begun.elapsed().as_millis() as u64;
        self.last_end_ms.store(ms, Relaxed);
    }
}

/// Serve an HTTP/2 connection to its end.
pub async fn serve<S>(
    io: S,
    peer: SocketAddr,
    runtime: &'static Shared,
    limits: Limits,
    mut shutdown: ShutdownSignal,
    tls: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(limits.max_head_bytes as u32)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(SEND_BUFFER)
        .enable_connect_protocol();
    let mut conn = match tokio::time::timeout(limits.head_timeout, builder.handshake(io)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %peer, "HTTP/2 handshake timed out");
            return;
        }
    };
    global::COUNTERS.inc(global::H2_CONNECTIONS);
    let shared = Arc::new(Connection {
        peer,
        tls,
        runtime,
        limits,
        resets: Resets::default(),
        last_end_ms: AtomicU64::new(0),
        begun: Instant::now(),
    });
    let idle = limits.keepalive_timeout;
    let mut idle_check = Box::pin(tokio::time::sleep(idle));
    let mut closing = shutdown.borrow().is_some();
    if closing {
        conn.graceful_shutdown();
    }
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    shared.resets.opened.fetch_add(1, Relaxed);
                    tokio::spawn(stream::serve(request, respond, Arc::clone(&shared)));
                }
                Some(Err(e)) => {
                    tracing::debug!(client = %peer, error = %e, "HTTP/2 connection ended with an error");
                    break;
                }
                None => break,
            },
            changed = shutdown.changed(), if !closing => {
                // A shutdown or a binary upgrade: GOAWAY with the last stream id; open streams
                // finish (tunnels close on the shutdown plan's schedule), then the connection.
                if changed.is_err() || shutdown.borrow().is_some() {
                    closing = true;
                    conn.graceful_shutdown();
                }
            }
            _ = shared.resets.abusive.notified() => {
                tracing::warn!(client = %peer, resets = shared.resets.reset.load(Relaxed), "HTTP/2 client resets most of its streams (rapid reset): GOAWAY");
                global::COUNTERS.inc(global::H2_CALM);
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
            }
            _ = &mut idle_check => {
                let last = Duration::from_millis(shared.last_end_ms.load(Relaxed));
                let quiet_since = shared.begun + last;
                if conn.has_streams() {
                    idle_check.as_mut().reset(Instant::now() + idle);
                } else if quiet_since + idle <= Instant::now() {
                    if !closing {
                        closing = true;
                        conn.graceful_shutdown();
                    }
                    idle_check.as_mut().reset(Instant::now() + idle);
                } else {
                    idle_check.as_mut().reset(quiet_since + idle);
                }
            }
        }
    }
}

//! The `http` and `longpoll` flows: keep-alive GETs on one connection per client, with the
//! minimal client of `h1.rs` (measured faster than hyper's client for this loop).

use super::args::NodeFrom;
use super::client::{timed, Client};
use super::h1;
use super::stats::ErrorKind;
use http::header::HeaderValue;
use http::Uri;
use std::sync::Arc;
use tokio::time::Instant;

/// The node named by an answered request, per --node-from.
fn node_of<'a>(from: NodeFrom, header: Option<&'a [u8]>, body: &'a [u8]) -> &'a [u8] {
    match (from, header) {
        (NodeFrom::Header, Some(h)) | (NodeFrom::WsGreeting, Some(h)) => h,
        (NodeFrom::Header, None) => b"",
        (NodeFrom::Body, _) | (NodeFrom::WsGreeting, None) => body,
    }
}

/// Keep-alive GETs of `path` until the run stops (with --new-connection, one connection per
/// request, sent with `Connection: close`); with `long_poll`, each request in flight counts as
/// held. Uses the minimal client in `h1.rs`: no allocation per request.
pub(crate) async fn run(c: &mut Client, path: Uri, long_poll: bool) {
    let shared = Arc::clone(&c.shared);
    let plan = &shared.plan;
    let from = plan.node_from;
    let close = plan.new_connection;
    let path = path.to_string();
    let mut conn: Option<h1::Conn> = None;
    let mut req = Vec::with_capacity(256);
    let mut resp = h1::Response::default();
    let mut rendered_for: Option<HeaderValue> = None;
    if plan.http2 {
        return run_h2(c, &path, long_poll).await;
    }
    while c.pace().await && c.ticket() {
        let live = match &mut conn {
            Some(live) => live,
            None => match c.connect().await {
                Ok(tcp) => conn.insert(h1::Conn::new(tcp)),
                Err(kind) => {
                    c.fail(kind).await;
                    continue;
                }
            },
        };
        // The request bytes change only when the jar does (usually once, after the first answer).
        if req.is_empty() || rendered_for.as_ref() != c.jar.header() {
            h1::render_get(&mut req, &path, plan.host.as_bytes(), &c.jar, close);
            rendered_for = c.jar.header().cloned();
        }
        let keep_body = from == NodeFrom::Body || from == NodeFrom::WsGreeting;
        let held = long_poll.then(|| shared.stats.hold());
        let started = Instant::now();
        let answer = timed(
            plan.timeout,
            live.exchange(&req, &plan.node_header, keep_body, &mut c.jar, &mut resp),
        )
        .await;
        drop(held);
        match answer {
            Ok(()) => {
                c.record_request(started);
                if resp.ok() {
                    let header = resp.has_node.then_some(&resp.node[..]);
                    c.observe(node_of(from, header, &resp.body));
                } else if let Some(kind) = ErrorKind::of_status(resp.status, &resp.body) {
                    c.error(kind);
                }
                if close || !resp.keep_alive {
                    conn = None;
                }
            }
            Err(kind) => {
                // The connection is in an unknown state (e.g. half a response read): start over.
                conn = None;
                c.fail(kind).await;
            }
        }
    }
}

/// The same loop over HTTP/2: every request a stream on the client's one connection.
async fn run_h2(c: &mut Client, path: &str, long_poll: bool) {
    let shared = Arc::clone(&c.shared);
    let plan = &shared.plan;
    let mut body = Vec::new();
    while c.pace().await && c.ticket() {
        let held = long_poll.then(|| shared.stats.hold());
        let started = Instant::now();
        let answer = timed(
            plan.timeout,
            super::h2::exchange(c, http::Method::GET, path, bytes::Bytes::new(), &mut body),
        )
        .await;
        drop(held);
        match answer {
            Ok(a) => {
                c.record_request(started);
                if a.ok() {
                    let header = a.node.as_ref().map(HeaderValue::as_bytes);
                    c.observe(node_of(plan.node_from, header, &body));
                } else if let Some(kind) = ErrorKind::of_status(a.status, &body) {
                    c.error(kind);
                }
            }
            Err(kind) => c.fail(kind).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_source() {
        let h = &b"node-a"[..];
        assert_eq!(node_of(NodeFrom::Header, Some(h), b"x"), b"node-a");
        assert_eq!(node_of(NodeFrom::Header, None, b"x"), b"");
        assert_eq!(node_of(NodeFrom::Body, Some(h), b"node-b"), b"node-b");
        assert_eq!(node_of(NodeFrom::WsGreeting, Some(h), b"node-b"), b"node-a");
        assert_eq!(node_of(NodeFrom::WsGreeting, None, b"node-b"), b"node-b");
    }
}

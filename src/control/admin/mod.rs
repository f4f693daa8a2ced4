//! The admin listener: node states, Prometheus metrics, drain/disable/enable, reload, liveness,
//! and a live status page.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the status page ([`page`]): HTML, CSS and JS in the binary; it holds no data, so it needs no token |
//! | `GET /healthz` | the proxy's own liveness (never needs the token, for probes) |
//! | `GET /status` | JSON: every upstream and node with health, admin state, load, last check, and DNS discovery's progress |
//! | `GET /metrics` | Prometheus text format (`super::metrics`) |
//! | `POST /upstreams/{name}/nodes/{id}/drain`, `/disable`, `/enable` | change a node's admin state; `drain?close_after=60s&spread=30s` also closes its tunnels after `close_after`, spread over `spread` |
//! | `POST /reload` | re-read the config file (like SIGHUP) |
//!
//! With a token configured every route but `/` and `/healthz` needs `Authorization: Bearer <token>`.
//! Every call that changes something (any method but `GET` and `HEAD`) must also carry either an
//! `Authorization: Bearer` header or `X-Tether-Admin: 1`, else it gets 403: a plain cross-site
//! HTML form (or an image, or a `no-cors` fetch) can send neither, so another site open in an
//! operator's browser cannot drain a node or reload the config through a loopback admin port.

mod page;

use super::Control;
use crate::runtime::node::{now_ms, AdminState, NodeState};
use crate::runtime::unix_now;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A request head must arrive within this long (slowloris on the admin port).
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// An admin connection, keep-alive included, lasts at most this long.
const CONNECTION_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
/// Pause after a failed accept (out of descriptors) before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// The admin listener, bound at start (a taken address is a startup error), and its token.
pub struct Admin {
    pub listener: tokio::net::TcpListener,
    pub token: Option<String>,
}

/// Serve the admin API until a shutdown begins (then a new process, after a binary upgrade,
/// or nobody answers on the admin address).
pub async fn serve(
    admin: Admin,
    control: Arc<Control>,
    mut shutdown: tokio::sync::watch::Receiver<Option<crate::config::Shutdown>>,
) {
    let Admin { listener, token } = admin;
    let token: Option<Arc<str>> = token.map(Into::into);
    let mut warned = false;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                warned = false;
                stream
            }
            Err(e) => {
                // Out of descriptors (or any accept error): say so once, and give closing
                // connections a moment instead of spinning on accept.
                if !warned {
                    tracing::warn!(error = %e, "admin listener cannot accept; retrying");
                    warned = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let control = Arc::clone(&control);
        let token = token.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let control = Arc::clone(&control);
                let token = token.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(handle(req, &control, token.as_deref()).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // Every admin exchange is short: a connection is bounded as a whole too.
            let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
        });
    }
}

/// Bind the admin address (a startup error if taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// The header a state-changing call may carry instead of `Authorization` to show it was meant.
pub const INTENT_HEADER: &str = "x-tether-admin";

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    if let Ok(v) = content_type.parse() {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    // Every answer is live state (or the page that reads it): never from a cache.
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    r
}

fn json_reply(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", value.to_string())
}

/// The bearer token the request carries, if any (the scheme name is case-insensitive).
fn bearer(req: &Request<Incoming>) -> Option<&str> {
    let value = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Without a token the admin API listens on loopback only; a request must then name loopback
/// in its `Host` too. Otherwise a hostile page whose own name was rebound to 127.0.0.1 (DNS
/// rebinding) would be same-origin with this port and could read `/status` and send the
/// intent header.
fn loopback_host(req: &Request<Incoming>) -> bool {
    let Some(host) = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    bearer(req).is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

/// Was a state-changing call meant by a program or by the status page, rather than sent by a
/// plain cross-site form? Browsers attach neither header on their own: `Authorization: Bearer`
/// is never ambient (unlike a cached `Basic` login, which is why only `Bearer` counts), and a
/// custom header on a cross-origin request needs a CORS preflight, which this API never grants.
fn intentional(req: &Request<Incoming>) -> bool {
    bearer(req).is_some() || req.headers().get(INTENT_HEADER).is_some_and(|v| v == "1")
}

/// A path segment with its `%XX` escapes decoded (the page encodes node ids, which may hold
/// `/`, `[`, `]` or spaces); a segment that does not decode to UTF-8 is taken as it is.
fn decode_segment(segment: &str) -> std::borrow::Cow<'_, str> {
    if !segment.contains('%') {
        return segment.into();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_or(segment.into(), Into::into)
}

async fn handle(
    req: Request<Incoming>,
    control: &Control,
    token: Option<&str>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let read_only = req.method() == Method::GET || req.method() == Method::HEAD;
    if read_only && path == "/healthz" {
        return reply(StatusCode::OK, "text/plain", "ok\n");
    }
    if token.is_none() && !loopback_host(&req) {
        return json_reply(
            StatusCode::FORBIDDEN,
            json!({
                "error": "without an admin token the admin API answers only requests whose Host is 127.0.0.1, [::1] or localhost (DNS rebinding); configure admin.token_env to reach it by another name"
            }),
        );
    }
    if req.method() == Method::GET && path == "/" {
        return page::response(token.is_some());
    }
    if !read_only && !intentional(&req) {
        return json_reply(
            StatusCode::FORBIDDEN,
            json!({
                "error": "a state-changing admin call must carry the header `X-Tether-Admin: 1` (or `Authorization: Bearer <token>`), which a cross-site form cannot send; e.g. curl -X POST -H 'X-Tether-Admin: 1' ..."
            }),
        );
    }
    if !authorized(&req, token) {
        return json_reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong bearer token"}),
        );
    }
    let segments: Vec<std::borrow::Cow<'_, str>> = path
        .trim_matches('/')
        .split('/')
        .map(decode_segment)
        .collect();
    let segments: Vec<&str> = segments.iter().map(AsRef::as_ref).collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["status"]) => json_reply(StatusCode::OK, status(control)),
        (&Method::GET, ["metrics"]) => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            control.metrics.render(),
        ),
        (&Method::POST, ["reload"]) => match control.reload() {
            Ok(summary) => json_reply(
                StatusCode::OK,
                json!({"reloaded": true, "summary": summary}),
            ),
            Err(e) => json_reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"reloaded": false, "errors": e.to_string().lines().collect::<Vec<_>>()}),
            ),
        },
        (&Method::POST, ["upstreams", name, "nodes", id, action]) => {
            let state = match *action {
                "drain" => AdminState::Draining,
                "disable" => AdminState::Disabled,
                "enable" => AdminState::Active,
                _ => {
                    return json_reply(
                        StatusCode::NOT_FOUND,
                        json!({"error": "unknown action; use drain, disable or enable"}),
                    )
                }
            };
            let rt = control.runtime.load();
            let Some(pool) = rt.pool(name) else {
                return json_reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("no upstream named {name}")}),
                );
            };
            let Some(node) = pool.nodes.iter().find(|n| n.id == *id) else {
                return json_reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("no node {id} in upstream {name}")}),
                );
            };
            let before = node.admin();
            match state {
                AdminState::Draining => {
                    // `?close_after=60s&spread=30s`: the drain's deadline and its spread.
                    let query = req.uri().query().unwrap_or("");
                    let (close_after, spread) = match (
                        duration_param(query, "close_after"),
                        duration_param(query, "spread"),
                    ) {
                        (Ok(a), Ok(s)) => (a, s),
                        (Err(e), _) | (_, Err(e)) => {
                            return json_reply(StatusCode::BAD_REQUEST, json!({ "error": e }))
                        }
                    };
                    control.drain(pool, node, close_after, spread);
                }
                AdminState::Disabled => control.disable(pool, node),
                AdminState::Active => control.enable(node),
            }
            tracing::warn!(upstream = %name, node = %id, from = ?before, to = ?state, "node admin state changed");
            json_reply(
                StatusCode::OK,
                json!({
                    "upstream": name, "node": id, "admin_state": state, "previous": before,
                    "leaving": leaving_json(node, unix_now()),
                }),
            )
        }
        _ => json_reply(
            StatusCode::NOT_FOUND,
            json!({"error": "no such admin route"}),
        ),
    }
}

/// A duration query parameter (`close_after=60s`); `Ok(None)` when absent.
fn duration_param(query: &str, name: &str) -> Result<Option<std::time::Duration>, String> {
    let Some(value) = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    crate::config::duration::parse_duration(&decode_segment(value))
        .map(Some)
        .map_err(|e| format!("{name}: {e}"))
}

/// A node's leave in progress for `/status`: why, and when its closes start and end (Unix
/// seconds); `null` when it is not leaving.
fn leaving_json(node: &NodeState, now_unix: u64) -> serde_json::Value {
    let Some(l) = node.leaving() else {
        return serde_json::Value::Null;
    };
    let now = now_ms();
    let unix = |ms: u64| (now_unix as i64 + (ms as i64 - now as i64) / 1000).max(0);
    json!({
        "reason": l.reason,
        "closes_from": unix(l.start_ms),
        "closes_until": unix(l.start_ms + l.spread_ms),
        "open_tunnels": node.open_tunnels(),
    })
}

/// An upstream's WebSocket traffic for `/status`: frames and bytes each way, and how its tunnels
/// ended (the same counts as `/metrics`, for the admin page).
fn websocket_json(pool: &crate::runtime::pool::Pool) -> serde_json::Value {
    use crate::runtime::pool::stat;
    use crate::runtime::tunnel_end::End;
    let s = &pool.stats;
    let ends: serde_json::Map<String, serde_json::Value> = End::all()
        .map(|e| {
            (
                e.by().to_string(),
                s.sum(stat::TUNNEL_ENDS + e.index()).into(),
            )
        })
        .collect();
    json!({
        "frames_up": s.sum(stat::WS_FRAMES_UP),
        "frames_down": s.sum(stat::WS_FRAMES_DOWN),
        "bytes_up": s.sum(stat::WS_BYTES_UP),
        "bytes_down": s.sum(stat::WS_BYTES_DOWN),
        "ends": ends,
    })
}

fn status(control: &Control) -> serde_json::Value {
    let rt = control.runtime.load();
    let now = unix_now();
    let discovering = control.discovering();
    let upstreams: Vec<_> = rt
        .pools
        .iter()
        .map(|pool| {
            let nodes: Vec<_> = pool
                .nodes
                .iter()
                .map(|n| {
                    let classes: Vec<u64> = (1..=5).map(|c| n.responses(c)).collect();
                    json!({
                        "id": n.id,
                        "address": n.address.to_string(),
                        "weight": n.weight,
                        "health": n.health(),
                        "admin_state": n.admin(),
                        "in_flight": n.load().saturating_sub(n.open_tunnels()),
                        "open_tunnels": n.open_tunnels(),
                        "pinned_hits": n.pinned_hits(),
                        "requests": classes.iter().sum::<u64>(),
                        "responses": {
                            "1xx": classes[0], "2xx": classes[1], "3xx": classes[2],
                            "4xx": classes[3], "5xx": classes[4],
                        },
                        "last_check": n.last_check(),
                        "leaving": leaving_json(n, now),
                        "over_share": pool.rebalance.is_some() && n.over_share(),
                    })
                })
                .collect();
            let discover = discovering
                .iter()
                .find(|(name, _)| *name == pool.name)
                .map(|(_, d)| {
                    d.names
                        .iter()
                        .map(|n| format!("{}:{}", n.name, n.port))
                        .collect::<Vec<_>>()
                });
            // Nodes gone from the runtime whose tunnels are still closing.
            let departed: Vec<_> = control
                .departed()
                .iter()
                .filter(|(up, _)| *up == pool.name)
                .map(|(_, n)| {
                    json!({
                        "id": n.id,
                        "address": n.address.to_string(),
                        "open_tunnels": n.open_tunnels(),
                        "leaving": leaving_json(n, now),
                    })
                })
                .collect();
            json!({
                "name": pool.name,
                "health_check": pool.health_check.is_some(),
                "discover": discover,
                "discovery": control.discovery_status(&pool.name),
                "rebalance": pool.rebalance.map(|r| json!({
                    "max_skew": r.max_skew, "moves_per_second": r.moves_per_second,
                    "moves": pool.stats.sum(crate::runtime::pool::stat::REBALANCE_MOVES),
                })),
                "websocket": websocket_json(pool),
                "nodes": nodes,
                "departed": departed,
            })
        })
        .collect();
    json!({
        "now": crate::runtime::unix_now(),
        "process": control.process,
        "config": control.source().display().to_string(),
        "reloads": control.reloads(),
        "upstreams": upstreams,
        "certificates": certificates_json(),
    })
}

/// Each ACME certificate: its names, validity, where its loop is, and the last failure.
fn certificates_json() -> Vec<serde_json::Value> {
    crate::certs::slots()
        .iter()
        .map(|slot| {
            let s = slot.status().clone();
            json!({
                "domains": slot.domains,
                "directory": slot.directory,
                "state": s.state.name(),
                "not_before": s.validity.map(|v| v.not_before),
                "not_after": s.validity.map(|v| v.not_after),
                "next_order": s.next_order,
                "last_error": s.last_error,
                "failures": s.failures,
                "issued": s.issued,
                "failed": s.failed,
                "last_order_ms": s.last_order_ms,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::decode_segment;

    #[test]
    fn segments_decode_their_escapes_and_keep_what_does_not_decode() {
        assert_eq!(decode_segment("node-a"), "node-a");
        assert_eq!(decode_segment("127.0.0.2:3000"), "127.0.0.2:3000");
        assert_eq!(decode_segment("%5Bfd00%3A%3A7%5D%3A3000"), "[fd00::7]:3000");
        assert_eq!(decode_segment("a%2Fb%20c"), "a/b c");
        assert_eq!(decode_segment("100%"), "100%");
        assert_eq!(decode_segment("%zz%4"), "%zz%4");
        assert_eq!(decode_segment("%ff"), "%ff", "not UTF-8: taken as it is");
    }
}

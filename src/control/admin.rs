//! The admin listener: node states, Prometheus metrics, drain/disable/enable, reload, liveness.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | the proxy's own liveness (never needs the token, for probes) |
//! | `GET /status` | JSON: every upstream and node with health, admin state, load, last check, and DNS discovery's progress |
//! | `GET /metrics` | Prometheus text format (`super::metrics`) |
//! | `POST /upstreams/{name}/nodes/{id}/drain`, `/disable`, `/enable` | change a node's admin state |
//! | `POST /reload` | re-read the config file (like SIGHUP) |
//!
//! With a token configured every route but `/healthz` needs `Authorization: Bearer <token>`.

use super::Control;
use crate::runtime::node::AdminState;
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

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn json_reply(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", value.to_string())
}

fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    req.headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

async fn handle(
    req: Request<Incoming>,
    control: &Control,
    token: Option<&str>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET && path == "/healthz" {
        return reply(StatusCode::OK, "text/plain", "ok\n");
    }
    if !authorized(&req, token) {
        return json_reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong bearer token"}),
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
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
            let before = node.set_admin(state);
            tracing::warn!(upstream = %name, node = %id, from = ?before, to = ?state, "node admin state changed");
            json_reply(
                StatusCode::OK,
                json!({"upstream": name, "node": id, "admin_state": state, "previous": before}),
            )
        }
        _ => json_reply(
            StatusCode::NOT_FOUND,
            json!({"error": "no such admin route"}),
        ),
    }
}

fn status(control: &Control) -> serde_json::Value {
    let rt = control.runtime.load();
    let upstreams: Vec<_> = rt
        .pools
        .iter()
        .map(|pool| {
            let nodes: Vec<_> = pool
                .nodes
                .iter()
                .map(|n| {
                    json!({
                        "id": n.id,
                        "address": n.address.to_string(),
                        "weight": n.weight,
                        "health": n.health(),
                        "admin_state": n.admin(),
                        "in_flight": n.load().saturating_sub(n.open_tunnels()),
                        "open_tunnels": n.open_tunnels(),
                        "pinned_hits": n.pinned_hits(),
                        "last_check": n.last_check(),
                    })
                })
                .collect();
            json!({
                "name": pool.name,
                "health_check": pool.health_check.is_some(),
                "discovery": control.discovery_status(&pool.name),
                "nodes": nodes,
            })
        })
        .collect();
    json!({
        "process": control.process,
        "config": control.source().display().to_string(),
        "reloads": control.reloads(),
        "upstreams": upstreams,
    })
}

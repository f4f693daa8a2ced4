//! Request dispatch: which endpoint answers each method and path, and the `x-node` header every
//! answer carries.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::Body;
use super::endpoints::{echo, stream};
use super::reply::{bad_request, param, respond, TEXT};
use super::websocket::websocket;
use super::Shared;

const X_NODE: HeaderName = HeaderName::from_static("x-node");

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
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
        (_, path) if path.starts_with("/demo/cluster") => cluster(shared, req.method(), path).await,
        _ => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"not found\n"),
        ),
    }
}

/// The demo cluster's routes: `GET /demo/cluster` (its state), `POST /demo/cluster/ID/stop`
/// and `/start`. A node outside a cluster answers 404.
async fn cluster(shared: &Arc<Shared>, method: &Method, path: &str) -> Response<Body> {
    let Some(cluster) = shared.cluster.upgrade() else {
        return respond(
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"not found\n"),
        );
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["demo", "cluster"]) => respond(
            StatusCode::OK,
            "application/json",
            Bytes::from(cluster.describe().await),
        ),
        (&Method::POST, ["demo", "cluster", id, action @ ("stop" | "start")]) => {
            let (id, stop) = (id.to_string(), *action == "stop");
            // Off this node's tasks: stopping the node that answers aborts them.
            tokio::spawn(async move {
                let result = if stop {
                    Ok(cluster.stop(&id).await)
                } else {
                    cluster.restart(id.clone()).await
                };
                if let Err(e) = result {
                    tracing::warn!(node = %id, error = %e, "demo node did not restart");
                }
            });
            respond(StatusCode::ACCEPTED, TEXT, Bytes::from_static(b"ok\n"))
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"not found\n"),
        ),
    }
}

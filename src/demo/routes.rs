//! Request dispatch: which endpoint answers each method and path, the `x-node` header every
//! answer carries, and the helpers that build plain responses.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::Body;
use super::endpoints::{echo, stream};
use super::websocket::websocket;
use super::Shared;

pub(super) const TEXT: &str = "text/plain; charset=utf-8";
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
        _ => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"not found\n"),
        ),
    }
}

pub(super) fn respond(
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

pub(super) fn bad_request(msg: String) -> Response<Body> {
    respond(StatusCode::BAD_REQUEST, TEXT, Bytes::from(msg))
}

/// Integer query parameter `name` in `0..=max`, `default` when absent; the 400 message otherwise.
pub(super) fn param(query: &str, name: &str, default: u64, max: u64) -> Result<u64, String> {
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

//! The endpoints with behaviour of their own: `/stream`, an event stream flushed event by
//! event, and `/echo`, which describes the request it got so tests can see what the proxy sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::body::Body;
use super::reply::{bad_request, param, respond, TEXT};
use super::Shared;

pub(super) fn stream(shared: &Arc<Shared>, query: &str) -> Response<Body> {
    let (n, every) = match (
        param(query, "n", 3, 1000),
        param(query, "every", 100, 60_000),
    ) {
        (Ok(n), Ok(every)) => (n, every),
        (Err(msg), _) | (_, Err(msg)) => return bad_request(msg),
    };
    let (tx, rx) = mpsc::channel(4);
    let id = shared.id.clone();
    shared.spawn(async move {
        for i in 0..n {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(every)).await;
            }
            if tx
                .send(Bytes::from(format!("data: {id} {i}\n\n")))
                .await
                .is_err()
            {
                return; // client went away
            }
        }
        let _ = tx.send(Bytes::new()).await; // end marker: the stream is complete
    });
    let mut resp = respond(StatusCode::OK, "text/event-stream", Body::Chan(rx));
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

pub(super) async fn echo(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    // Drain frame by frame so a large upload is never buffered whole; count and fingerprint it
    // (FNV-1a) so tests can check a body arrived intact through the proxy.
    let (mut bytes, mut fnv) = (0u64, 0xcbf2_9ce4_8422_2325u64);
    while let Some(frame) = body.frame().await {
        match frame {
            Err(err) => return bad_request(format!("bad request body: {err}\n")),
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    bytes += data.len() as u64;
                    for &b in data.iter() {
                        fnv = (fnv ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                    }
                }
            }
        }
    }
    let doc = json!({
        "node": &*shared.id,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        "headers": headers_json(&parts.headers),
        "body_bytes": bytes,
        "body_fnv": format!("{fnv:016x}"),
    });
    match serde_json::to_vec(&doc) {
        Ok(json) => respond(StatusCode::OK, "application/json", Bytes::from(json)),
        Err(_) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            Bytes::from_static(b"json\n"),
        ),
    }
}

/// Request headers as a JSON object; names are lowercase already, repeats are joined with ", ".
pub(super) fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let values: Vec<_> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect();
        map.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    Value::Object(map)
}

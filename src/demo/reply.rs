//! Plain responses, built the same way by every endpoint: a status, a content type and a body,
//! the 400 for a bad parameter, and the one integer-parameter reader.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use super::body::Body;

pub(super) const TEXT: &str = "text/plain; charset=utf-8";

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

//! HTTP/1.1 over hyper's client connection, for the socket.io flow's polling transport (a few
//! requests per session, POST bodies, bodies always read); the high-rate `http` flow uses `h1.rs`.

use super::client::{timed, Client};
use super::stats::ErrorKind;
use bytes::Bytes;
use http::header::{COOKIE, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::error::Error as _;

pub(crate) type Sender = SendRequest<Full<Bytes>>;

/// Body bytes kept per response (packets, or "Session ID unknown"); the rest is read and dropped.
const MAX_KEPT_BODY: usize = 64 * 1024;

/// Open a keep-alive HTTP/1.1 connection; hyper's connection task runs beside the client and ends
/// when the `Sender` is dropped or the server closes.
pub(crate) async fn open(c: &mut Client) -> Result<Sender, ErrorKind> {
    let io = c.connect().await?;
    let (sender, conn) = timed(c.timeout(), async {
        http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| hyper_kind(&e))
    })
    .await?;
    tokio::spawn(async move {
        // Its error also surfaces on the pending request, where it is counted.
        let _ = conn.await;
    });
    Ok(sender)
}

/// A request with the target's Host and the client's cookies.
pub(crate) fn request(c: &Client, method: Method, uri: Uri, body: Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    headers.insert(HOST, c.plan().host.clone());
    if let Some(cookie) = c.jar.header() {
        headers.insert(COOKIE, cookie.clone());
    }
    req
}

/// What is left of a response once read: the body (if kept) is in the caller's buffer.
pub(crate) struct Answer {
    pub status: u16,
}

/// Send `req`, store the response's cookies, and read the whole body into `body` (up to 64 KiB).
pub(crate) async fn exchange(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
    c: &mut Client,
    body: &mut Vec<u8>,
) -> Result<Answer, ErrorKind> {
    sender.ready().await.map_err(|e| hyper_kind(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| hyper_kind(&e))?;
    let (parts, mut incoming) = resp.into_parts();
    c.jar.store_all(&parts.headers);
    body.clear();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| hyper_kind(&e))?;
        if let Some(data) = frame.data_ref() {
            let room = MAX_KEPT_BODY.saturating_sub(body.len());
            body.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(Answer {
        status: parts.status.as_u16(),
    })
}

/// The error kind of a hyper failure: its IO cause if it has one.
pub(crate) fn hyper_kind(e: &hyper::Error) -> ErrorKind {
    if e.is_parse() || e.is_parse_status() || e.is_user() {
        return ErrorKind::Protocol;
    }
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return ErrorKind::of_io(io, false);
        }
        source = s.source();
    }
    ErrorKind::Io
}

//! Moving messages across: heads rewritten for the other side, and bodies streamed as they
//! arrive, each read and write under its own deadline.
//!
//! Heads are rewritten from the fields the parser located (their [`Kind`] decides what is
//! dropped or replaced), so nothing here compares header names again. Every line tether writes
//! ends in CRLF and every status line is its own (`HTTP/1.1 CODE REASON`), whatever the node
//! wrote, so a client never sees a line a strict parser would read differently.

use super::upstream::{self, Upstream};
use super::Exchange;
use crate::engine::conn::{write_within, Conn, READ_CHUNK};
use crate::http1::body::{claim_into, Body, Claim};
use crate::http1::head::{self, Framing, Kind};
use crate::runtime::failure::{Failure, NodeFailure, Refusal};
use crate::runtime::forwarded::Forwarded;
use bytes::Buf;
use std::ops::Range;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// How a response head is written for the client.
pub(super) struct ResponseHead<'a> {
    pub set_cookie: Option<&'a str>,
    /// The client connection stays open after this response.
    pub keep: bool,
    pub client_minor: u8,
    /// A chunked body goes out as its data alone (an HTTP/1.0 client): no `Transfer-Encoding`.
    pub plain: bool,
    /// The body was rewritten to this many bytes: one `content-length`, no `Transfer-Encoding`.
    pub body_length: Option<u64>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Rewrite the request head for the node into `self.bufs.out`: hop-by-hop fields dropped, the
    /// client's forwarding claims replaced by ours, the upgrade kept only when asked for, the
    /// target in origin-form, and `strip` (ranges of the target) cut out of it.
    pub(super) fn write_request_head(&mut self, req: &head::Request, strip: &[Range<usize>]) {
        let buf = &self.bufs.cbuf[..];
        let out = &mut self.bufs.out;
        out.clear();
        out.extend_from_slice(&buf[req.method.clone()]);
        out.push(b' ');
        let path = &buf[req.path.clone()];
        if path != b"*" && path.first() != Some(&b'/') {
            // An absolute-form target with an empty path (`http://host?q`).
            out.push(b'/');
        }
        // Engine.io session tags (ranges of the target, in order) are left out: the node gets
        // its own ids.
        let mut at = req.path.start;
        for tag in strip {
            out.extend_from_slice(&buf[at..req.path.start + tag.start]);
            at = req.path.start + tag.end;
        }
        out.extend_from_slice(&buf[at..req.path.end]);
        out.extend_from_slice(if req.minor == 0 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        let host = req.host.map(|(a, b)| &buf[a as usize..b as usize]);
        if let (true, Some(authority)) = (req.host_from_target, host) {
            // RFC 9112 §3.2.2: the target's authority replaces the Host header.
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(authority);
            out.extend_from_slice(b"\r\n");
        }
        // Framing as tether read it, one line, whatever lists or repeats the client sent.
        match (req.framing, req.content_length) {
            (Framing::Chunked, _) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            (_, Some(n)) => push_length(out, n),
            _ => {}
        }
        for f in &self.bufs.fields {
            let keep = match f.kind {
                Kind::HopByHop
                | Kind::Nominated
                | Kind::XForwardedOwn
                | Kind::XForwardedFor
                | Kind::ContentLength
                | Kind::TransferEncoding => false,
                Kind::Host => !req.host_from_target,
                Kind::Upgrade => req.upgrade,
                Kind::Expect => !req.expect_continue,
                _ => true,
            };
            if keep {
                push_field(out, f.name(buf), f.value(buf));
            }
        }
        Forwarded {
            prior: head::all(buf, &self.bufs.fields, Kind::XForwardedFor),
            peer: self.peer.ip(),
            tls: self.tls,
            host,
        }
        .write(out);
        if req.upgrade {
            out.extend_from_slice(b"connection: upgrade\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Rewrite the response head for the client into `self.bufs.out`.
    pub(super) fn write_response_head(&mut self, resp: &head::Response, how: &ResponseHead<'_>) {
        render_response_head(
            &mut self.bufs.out,
            &self.bufs.ubuf,
            &self.bufs.ufields,
            resp,
            how,
        );
    }
}

/// The response head for the client, from the node's head in `buf` (its fields located by
/// `fields`), into `out`.
pub(super) fn render_response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    fields: &[head::Field],
    resp: &head::Response,
    how: &ResponseHead<'_>,
) {
    {
        out.clear();
        push_status_line(out, resp, buf);
        // RFC 9112 §6.3: with Transfer-Encoding, a Content-Length is not forwarded; without,
        // it goes as one line however the node wrote it.
        if let Some(n) = how.body_length.or(resp.content_length) {
            push_length(out, n);
        }
        for f in fields {
            let keep = match f.kind {
                Kind::HopByHop | Kind::Nominated | Kind::ContentLength => false,
                Kind::Upgrade => resp.status == 101,
                Kind::TransferEncoding => !how.plain && how.body_length.is_none(),
                _ => true,
            };
            if keep {
                push_field(out, f.name(buf), f.value(buf));
            }
        }
        if let Some(c) = how.set_cookie {
            out.extend_from_slice(b"set-cookie: ");
            out.extend_from_slice(c.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if resp.status == 101 {
            out.extend_from_slice(b"connection: upgrade\r\n");
        } else if !how.keep {
            out.extend_from_slice(b"connection: close\r\n");
        } else if how.client_minor == 0 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Rewrite an interim (1xx) response head for the client into `self.bufs.out`.
    pub(super) fn write_interim_head(&mut self, resp: &head::Response) {
        let buf = &self.bufs.ubuf[..];
        let out = &mut self.bufs.out;
        out.clear();
        push_status_line(out, resp, buf);
        for f in &self.bufs.ufields {
            if !matches!(f.kind, Kind::HopByHop | Kind::Nominated | Kind::Upgrade) {
                push_field(out, f.name(buf), f.value(buf));
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The rest of a request body, client → node, as it arrives. Each read from the client is
    /// bounded by `limits.body_timeout`, each write to the node by `timeouts.send`.
    pub(super) async fn stream_request_body(
        &mut self,
        x: &mut Exchange<'_>,
        up: &mut Upstream,
        body: &mut Body,
    ) -> Result<(), Failure> {
        let send_timeout = x.plan.pool.timeouts.send;
        while !body.done() {
            self.bufs.cbuf.reserve(READ_CHUNK);
            match self
                .deadline
                .limit(
                    self.limits.body_timeout,
                    self.client.read_buf(&mut self.bufs.cbuf),
                )
                .await
            {
                Some(Ok(n)) if n > 0 => {}
                None => return Err(Refusal::BodyTimeout.into()),
                // The client closed (or broke) the connection in the middle of its body: it
                // is gone, and nothing is written to it.
                _ => return Err(Failure::ClientGone),
            }
            self.bufs.out.clear();
            let claim = body
                .claim(&self.bufs.cbuf, &mut self.bufs.out)
                .map_err(|_| Refusal::BadRequest)?;
            let (n, data) = match claim {
                Claim::Raw(n) => (n, &self.bufs.cbuf[..n]),
                Claim::Rewritten(n) => (n, &self.bufs.out[..]),
            };
            self.body_in += n as u64;
            upstream::send(
                &mut self.deadline,
                &mut up.stream,
                data,
                send_timeout,
                &mut x.attempt,
            )
            .await?;
            self.bufs.cbuf.advance(n);
        }
        Ok(())
    }

    /// Step 5b's streaming body: the response head (already rendered into `self.bufs.out`, with
    /// the first body bytes appended here) to the client, then the rest of the body as it
    /// comes, each read written at once (so streams and server-sent events are not held back).
    /// A body that does not end cleanly is a failure after the head went out: the client sees
    /// the connection close, never a false end.
    pub(super) async fn stream_response(
        &mut self,
        x: &mut Exchange<'_>,
        up: &mut Upstream,
        resp: &head::Response,
        plain: bool,
    ) -> Result<(), Failure> {
        let mut body = Body::new(resp.framing, plain, self.limits.max_head_bytes);
        self.bufs.ubuf.advance(resp.len);
        // Broken framing in the bytes already here is still a 502: nothing has gone out yet.
        let n = claim_into(&mut body, &self.bufs.ubuf, &mut self.bufs.out)
            .map_err(|_| NodeFailure::BadResponse)?;
        self.bufs.ubuf.advance(n);
        self.flush_out().await?;
        x.sent = Some(resp.status);
        let read_timeout = x.plan.pool.timeouts.read;
        while !body.done() {
            self.bufs.ubuf.reserve(READ_CHUNK);
            match self
                .deadline
                .limit(read_timeout, up.stream.read_buf(&mut self.bufs.ubuf))
                .await
            {
                // End of a close-delimited body is its normal end; any other EOF truncates it.
                Some(Ok(0)) if matches!(body, Body::UntilClose) => return Ok(()),
                Some(Ok(0)) | Some(Err(_)) => return Err(NodeFailure::BodyBroken.into()),
                Some(Ok(_)) => {}
                None => return Err(NodeFailure::BodyTimeout.into()),
            }
            self.bufs.out.clear();
            let claim = body
                .claim(&self.bufs.ubuf, &mut self.bufs.out)
                .map_err(|_| NodeFailure::BodyBroken)?;
            let (n, data) = match claim {
                Claim::Raw(n) => (n, &self.bufs.ubuf[..n]),
                Claim::Rewritten(n) => (n, &self.bufs.out[..]),
            };
            let limit = self.limits.write_timeout;
            self.written += data.len() as u64;
            write_within(&mut self.deadline, &mut self.client, data, limit).await?;
            self.bufs.ubuf.advance(n);
        }
        Ok(())
    }
}

/// Read the next bytes of a response body into `buf`, within `limit` of this read: what every
/// body step waits for (`timeouts.read` per read, as README promises).
pub(in crate::engine) async fn read_body(
    deadline: &mut crate::engine::deadline::Deadline,
    up: &mut Upstream,
    buf: &mut bytes::BytesMut,
    limit: Duration,
) -> Result<usize, NodeFailure> {
    buf.reserve(READ_CHUNK);
    match deadline.limit(limit, up.stream.read_buf(buf)).await {
        Some(Ok(n)) => Ok(n),
        Some(Err(_)) => Err(NodeFailure::BodyBroken),
        None => Err(NodeFailure::BodyTimeout),
    }
}

/// Is the response to a request with this framing chunked towards an HTTP/1.0 client, which
/// must get the data alone?
pub(super) fn plain_for(resp: &head::Response, client_minor: u8) -> bool {
    client_minor == 0 && resp.framing == Framing::Chunked
}

fn push_length(out: &mut Vec<u8>, n: u64) {
    use std::io::Write as _;
    let _ = write!(out, "content-length: {n}\r\n");
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `HTTP/1.1 CODE REASON CRLF`: tether speaks HTTP/1.1 to its clients whatever the node spoke.
fn push_status_line(out: &mut Vec<u8>, resp: &head::Response, buf: &[u8]) {
    use std::io::Write as _;
    let _ = write!(out, "HTTP/1.1 {:03} ", resp.status);
    out.extend_from_slice(&buf[resp.reason.clone()]);
    out.extend_from_slice(b"\r\n");
}

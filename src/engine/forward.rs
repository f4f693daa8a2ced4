//! Moving messages across: heads rewritten for the other side, and bodies streamed as they
//! arrive, each read and write under its own deadline.
//!
//! Heads are rewritten from the fields the parser located (their [`Kind`] decides what is
//! dropped or replaced), so nothing here compares header names again.

use super::body::Body;
use super::conn::{write_within, Conn, READ_CHUNK};
use super::exchange::{send_to_node, Upstream};
use super::head::{self, Kind};
use crate::runtime::failure::{Failure, NodeFailure, Refusal};
use crate::runtime::forwarded::Forwarded;
use bytes::Buf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Rewrite the request head for the node into `self.out`: hop-by-hop fields dropped, the
    /// client's forwarding claims replaced by ours, and the upgrade kept only when asked for.
    pub(super) fn write_request_head(&mut self, req: &head::Request) {
        let buf = &self.cbuf[..];
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(&buf[req.method.clone()]);
        out.push(b' ');
        out.extend_from_slice(&buf[req.target.clone()]);
        out.extend_from_slice(if req.minor == 0 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        for f in &self.fields {
            let keep = match f.kind {
                Kind::HopByHop | Kind::Nominated | Kind::XForwardedOwn | Kind::XForwardedFor => {
                    false
                }
                Kind::Upgrade => req.upgrade,
                Kind::Expect => !req.expect_continue,
                _ => true,
            };
            if keep {
                out.extend_from_slice(f.name(buf));
                out.extend_from_slice(b": ");
                out.extend_from_slice(f.value(buf));
                out.extend_from_slice(b"\r\n");
            }
        }
        Forwarded {
            prior: head::all(buf, &self.fields, Kind::XForwardedFor),
            peer: self.peer.ip(),
            tls: self.tls,
            host: req.host.map(|(a, b)| &buf[a as usize..b as usize]),
        }
        .write(out);
        if req.upgrade {
            out.extend_from_slice(b"connection: upgrade\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Rewrite the response head for the client into `self.out`.
    pub(super) fn write_response_head(
        &mut self,
        resp: &head::Response,
        set_cookie: Option<&str>,
        keep: bool,
        client_minor: u8,
    ) {
        let buf = &self.ubuf[..];
        let out = &mut self.out;
        out.clear();
        // The status line as the node wrote it (its first line).
        let line_end = buf.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        out.extend_from_slice(&buf[..line_end]);
        for f in &self.ufields {
            let keep_field = match f.kind {
                Kind::HopByHop => false,
                Kind::Upgrade => resp.status == 101,
                _ => true,
            };
            if keep_field {
                out.extend_from_slice(f.name(buf));
                out.extend_from_slice(b": ");
                out.extend_from_slice(f.value(buf));
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some(c) = set_cookie {
            out.extend_from_slice(b"set-cookie: ");
            out.extend_from_slice(c.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if resp.status == 101 {
            out.extend_from_slice(b"connection: upgrade\r\n");
        } else if !keep {
            out.extend_from_slice(b"connection: close\r\n");
        } else if client_minor == 0 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Read the node's response head into `self.ubuf` within `read_timeout`.
    pub(super) async fn read_response_head(
        &mut self,
        node: &mut TcpStream,
        head_request: bool,
        read_timeout: Duration,
    ) -> Result<head::Response, NodeFailure> {
        let deadline = tokio::time::Instant::now() + read_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !self.ubuf.is_empty() {
                match head::parse_response(&self.ubuf, &mut self.ufields, head_request) {
                    Ok(Some(r)) => return Ok(r),
                    Ok(None) if self.ubuf.len() >= self.limits.max_head_bytes => {
                        return Err(NodeFailure::BadResponse)
                    }
                    Ok(None) => {}
                    Err(_) => return Err(NodeFailure::BadResponse),
                }
            }
            self.ubuf.reserve(READ_CHUNK);
            match self
                .deadline
                .limit(left, node.read_buf(&mut self.ubuf))
                .await
            {
                Some(Ok(0)) | Some(Err(_)) => return Err(NodeFailure::Closed),
                Some(Ok(_)) => {}
                None => return Err(NodeFailure::ReadTimeout),
            }
        }
    }

    /// The rest of a request body, client → node, as it arrives.
    pub(super) async fn stream_request_body(
        &mut self,
        up: &mut Upstream,
        body: &mut Body,
        read_timeout: Duration,
        send_timeout: Duration,
    ) -> Result<(), Failure> {
        while !body.done() {
            self.cbuf.reserve(READ_CHUNK);
            match self
                .deadline
                .limit(read_timeout, self.client.read_buf(&mut self.cbuf))
                .await
            {
                Some(Ok(n)) if n > 0 => {}
                _ => return Err(Refusal::BadRequest.into()),
            }
            let n = body.claim(&self.cbuf).map_err(|_| Refusal::BadRequest)?;
            send_to_node(
                &mut self.deadline,
                &mut up.stream,
                &self.cbuf[..n],
                send_timeout,
            )
            .await?;
            self.cbuf.advance(n);
        }
        Ok(())
    }

    /// The rest of a response body, node → client, each read written as it comes (so streams
    /// and server-sent events are not held back). `false`: it did not end cleanly.
    pub(super) async fn stream_response_body(
        &mut self,
        node: &mut TcpStream,
        body: &mut Body,
        read_timeout: Duration,
    ) -> bool {
        while !body.done() {
            self.ubuf.reserve(READ_CHUNK);
            match self
                .deadline
                .limit(read_timeout, node.read_buf(&mut self.ubuf))
                .await
            {
                // End of a close-delimited body is its normal end; any other EOF truncates it.
                Some(Ok(0)) => return matches!(body, Body::UntilClose),
                Some(Ok(_)) => {}
                _ => return false,
            }
            let Ok(n) = body.claim(&self.ubuf) else {
                return false;
            };
            let limit = self.limits.write_timeout;
            if !write_within(&mut self.deadline, &mut self.client, &self.ubuf[..n], limit).await {
                return false;
            }
            self.ubuf.advance(n);
        }
        true
    }

    /// A tunnel owns no buffers: give back what the HTTP phase used.
    pub(super) fn release_buffers(&mut self) {
        self.cbuf = bytes::BytesMut::new();
        self.ubuf = bytes::BytesMut::new();
        self.out = Vec::new();
        self.fields = Vec::new();
        self.ufields = Vec::new();
    }
}

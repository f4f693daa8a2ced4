//! The engine's half of engine.io session affinity (`runtime::engineio` has the rules): the
//! node's answer to a polling handshake is read whole (it is a few hundred bytes), its session
//! id gets the node's tag, and it goes to the client with its new length.

use super::body::{Body, Claim};
use super::conn::{Conn, Next, READ_CHUNK};
use super::exchange::{Plan, Upstream};
use super::forward::{render_response_head, ResponseHead};
use super::head::{self, Framing};
use super::pool;
use crate::runtime::engineio::{rewrite_handshake, session_id};
use crate::runtime::failure::{Failure, NodeFailure};
use crate::runtime::pool::{observe_duration, stat};
use bytes::Buf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// A handshake body larger than this is not one; it is forwarded untouched.
const MAX_HANDSHAKE: u64 = 64 * 1024;

/// Whether [`Conn::forward_handshake`] answered the client.
pub(super) enum Handled {
    Done(Next),
    /// Not a body to rewrite here: forward it untouched, on this connection.
    Declined(Upstream),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Forward the response to an engine.io handshake with the tagged session id. Declined
    /// when the body cannot be read whole here (too large, or until close): the caller
    /// forwards it untouched, and it is counted as malformed.
    pub(super) async fn forward_handshake(
        &mut self,
        req: &head::Request,
        resp: &head::Response,
        set_cookie: Option<&str>,
        plan: &Plan<'_>,
        mut up: Upstream,
        version: u8,
    ) -> Result<Handled, Failure> {
        let pool = plan.pool;
        let Some(tags) = &pool.engineio else {
            return Ok(Handled::Declined(up));
        };
        match resp.framing {
            Framing::Length(n) if n <= MAX_HANDSHAKE => {}
            Framing::Chunked => {}
            _ => {
                pool.stats.inc(stat::ENGINEIO_MALFORMED);
                return Ok(Handled::Declined(up));
            }
        }
        // The body whole, chunked framing decoded: it goes out with a length of its own. The
        // node's head is set aside first (its fields point into it) and written at the end.
        let mut body = Body::new(resp.framing, true, self.limits.max_head_bytes);
        let mut data = Vec::new();
        let node_head = self.ubuf.split_to(resp.len);
        let deadline = tokio::time::Instant::now() + pool.timeouts.read;
        loop {
            let n = match body
                .claim(&self.ubuf, &mut data)
                .map_err(|_| NodeFailure::BadResponse)?
            {
                Claim::Raw(n) => {
                    data.extend_from_slice(&self.ubuf[..n]);
                    n
                }
                Claim::Rewritten(n) => n,
            };
            self.ubuf.advance(n);
            if body.done() {
                break;
            }
            if data.len() as u64 > MAX_HANDSHAKE {
                // Head not sent yet: a "handshake" this large is a broken answer.
                return Err(NodeFailure::BadResponse.into());
            }
            self.ubuf.reserve(READ_CHUNK);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .deadline
                .limit(left, up.stream.read_buf(&mut self.ubuf))
                .await
            {
                Some(Ok(0)) | Some(Err(_)) => return Err(NodeFailure::Closed.into()),
                Some(Ok(_)) => {}
                None => return Err(NodeFailure::ReadTimeout.into()),
            }
        }
        let rewritten = session_id(&data, version)
            .map(|sid| tags.tag(up.node, sid))
            .and_then(|tag| rewrite_handshake(&data, version, &tag));
        let data = match rewritten {
            Ok(tagged) => {
                pool.stats.inc(stat::ENGINEIO_REWRITTEN);
                tagged
            }
            Err(_) => {
                // Passed through as the node wrote it, and counted.
                pool.stats.inc(stat::ENGINEIO_MALFORMED);
                tracing::debug!(upstream = %pool.name, node = %pool.nodes[up.node].id, "engine.io handshake answer not understood; forwarded untouched");
                data
            }
        };
        let keep = req.keep_alive && !self.shutting_down();
        let how = ResponseHead {
            set_cookie,
            keep,
            client_minor: req.minor,
            plain: false,
            body_length: Some(data.len() as u64),
        };
        render_response_head(&mut self.out, &node_head, &self.ufields, resp, &how);
        self.out.extend_from_slice(&data);
        if !self.flush_out().await {
            return Ok(Handled::Done(Next::Close));
        }
        if resp.keep_alive && self.ubuf.is_empty() {
            pool::put(pool.nodes[up.node].address, up.stream, pool.timeouts.idle);
        }
        observe_duration(&pool.stats, plan.started.elapsed());
        self.log_request(
            Some(plan),
            Some(up.node),
            resp.status,
            plan.started,
            req.len,
        );
        Ok(Handled::Done(if keep {
            Next::KeepAlive
        } else {
            Next::Close
        }))
    }
}

//! The engine's half of engine.io session affinity (`runtime::engineio` has the rules): the
//! body step of a polling handshake's answer. The body is read whole (it is a few hundred
//! bytes), each read under `timeouts.read` as every body read is; its session id gets the
//! node's tag; and the response goes out through the same tail as any other, with its new
//! length.

use super::forward::read_body;
use super::upstream::Upstream;
use super::Exchange;
use crate::engine::conn::Conn;
use crate::engine::deadline::Deadline;
use crate::http1::body::{Body, Claim};
use crate::http1::head::{self, Framing};
use crate::runtime::engineio::{rewrite_handshake, session_id};
use crate::runtime::failure::NodeFailure;
use crate::runtime::pool::stat;
use crate::runtime::pool::Pool;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

/// A handshake body larger than this is not one; it is forwarded untouched.
const MAX_HANDSHAKE: u64 = 64 * 1024;

/// A handshake answer read whole: the node's head (set aside: the response fields point into
/// it) and the body to send, tagged when it could be.
pub(in crate::engine) struct Tagged {
    pub node_head: BytesMut,
    pub body: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Read the answer to an engine.io handshake whole and put the node's tag on its session
    /// id ([`read_handshake`]).
    pub(super) async fn read_handshake(
        &mut self,
        x: &Exchange<'_>,
        up: &mut Upstream,
        resp: &head::Response,
        version: u8,
    ) -> Result<Option<Tagged>, NodeFailure> {
        read_handshake(
            &mut self.deadline,
            up,
            &mut self.bufs.ubuf,
            resp,
            version,
            x.plan.pool,
            self.limits.max_head_bytes,
        )
        .await
    }
}

/// Read the answer to an engine.io handshake whole (its head at the front of `ubuf`) and put
/// the node's tag on its session id. `Ok(None)`: not a body to read whole here (too large, or
/// until close): the caller streams it untouched, and it is counted as malformed. Nothing has
/// gone to the client yet, so a failure here is answered with tether's own status. Either
/// front end (HTTP/1 or an HTTP/2 stream) calls it.
pub(in crate::engine) async fn read_handshake(
    deadline: &mut Deadline,
    up: &mut Upstream,
    ubuf: &mut BytesMut,
    resp: &head::Response,
    version: u8,
    pool: &Pool,
    max_head: usize,
) -> Result<Option<Tagged>, NodeFailure> {
    let Some(tags) = &pool.engineio else {
        return Ok(None);
    };
    match resp.framing {
        Framing::Length(n) if n <= MAX_HANDSHAKE => {}
        Framing::Chunked => {}
        _ => {
            pool.stats.inc(stat::ENGINEIO_MALFORMED);
            return Ok(None);
        }
    }
    // The body whole, chunked framing decoded: it goes out with a length of its own.
    let mut body = Body::new(resp.framing, true, max_head);
    let mut data = Vec::new();
    let node_head = ubuf.split_to(resp.len);
    loop {
        let n = match body
            .claim(ubuf, &mut data)
            .map_err(|_| NodeFailure::BadResponse)?
        {
            Claim::Raw(n) => {
                data.extend_from_slice(&ubuf[..n]);
                n
            }
            Claim::Rewritten(n) => n,
        };
        ubuf.advance(n);
        if body.done() {
            break;
        }
        if data.len() as u64 > MAX_HANDSHAKE {
            // Head not sent yet: a "handshake" this large is a broken answer.
            return Err(NodeFailure::BadResponse);
        }
        match read_body(deadline, up, ubuf, pool.timeouts.read).await {
            Ok(0) | Err(NodeFailure::BodyBroken) => return Err(NodeFailure::Closed),
            Ok(_) => {}
            Err(_) => return Err(NodeFailure::ReadTimeout),
        }
    }
    let rewritten = session_id(&data, version)
        .map(|sid| tags.tag(up.node, sid))
        .and_then(|tag| rewrite_handshake(&data, version, &tag));
    let body = match rewritten {
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
    Ok(Some(Tagged { node_head, body }))
}

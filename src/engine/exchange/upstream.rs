//! The node's side of an exchange: a connection to the node the placement chooses (pooled or
//! new, retrying and re-pinning when a node refuses), the request written to it, and its
//! response head read back. Free functions over explicit buffers, so any front end (HTTP/1
//! today) drives the same node-side steps.

use crate::engine::deadline::Deadline;
use crate::engine::pool;
use crate::http1::head;
use crate::runtime::failure::{Attempt, Failure, NodeFailure};
use crate::runtime::node::LoadGuard;
use crate::runtime::placement::Decision;
use crate::runtime::policy::Plan;
use crate::runtime::pool::Pool;
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Read size for response heads.
const READ_CHUNK: usize = 8 * 1024;

/// A connection to the chosen node; holds the node's load counter until dropped.
pub(in crate::engine) struct Upstream {
    pub stream: TcpStream,
    /// The node's index in the plan's pool.
    pub node: usize,
    /// Taken from the idle pool: the node may have closed it while it sat there.
    pub pooled: bool,
    pub guard: LoadGuard,
}

impl Upstream {
    /// The retry rule allowed sending again: a fresh connection to the same node, in place of
    /// a pooled one the node had closed while it sat idle.
    pub async fn reopen(&mut self, pool: &Pool, why: NodeFailure) -> Result<(), NodeFailure> {
        let node = &pool.nodes[self.node];
        tracing::debug!(upstream = %pool.name, node = %node.id, failure = ?why, "pooled connection was closed; sending again on a fresh one");
        self.stream = open(node.address, pool.timeouts.connect)
            .await
            .map_err(|_| NodeFailure::Closed)?;
        self.pooled = false;
        Ok(())
    }
}

/// Step 2: a connection to the node the placement chooses, trying (and re-pinning to) another
/// node when one refuses. Each refusal counts toward that node's passive health.
pub(in crate::engine) async fn connect(
    plan: &mut Plan<'_>,
    upgrade: bool,
) -> Result<Upstream, Failure> {
    let pool = plan.pool;
    loop {
        let Some(node) = plan.placement.choose(pool, Some(plan.client_ip), upgrade) else {
            tracing::warn!(upstream = %pool.name, "no usable node");
            return Err(NodeFailure::NoNode.into());
        };
        let state = &pool.nodes[node];
        let guard = state.acquire();
        let (stream, pooled) = match pool::take(state.address) {
            Some(s) => (s, true),
            None => match open(state.address, pool.timeouts.connect).await {
                Ok(s) => (s, false),
                Err(e) => {
                    tracing::warn!(upstream = %pool.name, node = %state.id, error = %e, "connect to node failed");
                    pool.passive_failure(node);
                    plan.placement.connect_failed();
                    if !plan.placement.may_retry(pool) {
                        return Err(NodeFailure::Connect.into());
                    }
                    continue;
                }
            },
        };
        plan.placement.count(pool);
        if plan.placement.decision == Some(Decision::Repinned) {
            if plan.placement.tried.is_empty() {
                // Every client of a node that left or went down moves once: counted
                // (`repinned`), and logged only at debug so a scale-down is not a log flood.
                tracing::debug!(upstream = %pool.name, to = %state.id, reason = "its node is gone, unhealthy or disabled", "client re-pinned");
            } else {
                tracing::info!(upstream = %pool.name, to = %state.id, reason = "node refused the connection", "client re-pinned");
            }
        }
        return Ok(Upstream {
            stream,
            node,
            pooled,
            guard,
        });
    }
}

/// A new connection to `addr` within `limit`, with `TCP_NODELAY` (heads and frames go out as
/// written).
pub(in crate::engine) async fn open(addr: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Write `buf` to a node within `limit` (`timeouts.send`, like nginx's `proxy_send_timeout`).
/// The attempt notes as soon as one byte is written that the node may have acted on it.
pub(in crate::engine) async fn send(
    deadline: &mut Deadline,
    node: &mut TcpStream,
    buf: &[u8],
    limit: Duration,
    attempt: &mut Attempt,
) -> Result<(), NodeFailure> {
    use tokio::io::AsyncWriteExt;
    let mut rest = buf;
    let written = deadline
        .limit(limit, async {
            while !rest.is_empty() {
                let n = node.write(rest).await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero));
                }
                attempt.reached();
                rest = &rest[n..];
            }
            Ok(())
        })
        .await;
    match written {
        Some(Ok(())) => Ok(()),
        Some(Err(_)) => Err(NodeFailure::SendBroken),
        None => Err(NodeFailure::SendTimeout),
    }
}

/// Read the node's response head into `buf` (its fields into `fields`) by `until`. A head
/// larger than `max_head` or one the codec refuses is a broken response.
pub(in crate::engine) async fn read_head(
    deadline: &mut Deadline,
    node: &mut TcpStream,
    buf: &mut BytesMut,
    fields: &mut Vec<head::Field>,
    head_request: bool,
    until: Instant,
    max_head: usize,
) -> Result<head::Response, NodeFailure> {
    loop {
        if !buf.is_empty() {
            match head::parse_response(buf, fields, head_request) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) if buf.len() >= max_head => return Err(NodeFailure::BadResponse),
                Ok(None) => {}
                Err(_) => return Err(NodeFailure::BadResponse),
            }
        }
        buf.reserve(READ_CHUNK);
        let left = until.saturating_duration_since(Instant::now());
        match deadline.limit(left, node.read_buf(buf)).await {
            Some(Ok(0)) | Some(Err(_)) => return Err(NodeFailure::Closed),
            Some(Ok(_)) => {}
            None => return Err(NodeFailure::ReadTimeout),
        }
    }
}

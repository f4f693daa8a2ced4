//! One client connection: read a request head, run an [exchange](super::exchange) for it, and
//! loop for keep-alive until the client leaves, an exchange closes the connection, or one turned
//! it into a tunnel.
//!
//! Everything for one connection happens in this one task, in order (client → node → client),
//! so a request costs the socket operations it must and no cross-task wake-ups. Heads are parsed
//! in place and rewritten into one reused output buffer; bodies are forwarded as they arrive.
//! This file owns the client's side: its socket, buffers and deadline-bounded reads and writes.

use super::deadline::Deadline;
pub(super) use super::tunnel::Tunnel;
use super::{Limits, ShutdownSignal};
use crate::http1::head::{self, HeadError};
use crate::runtime::failure::{Answer, Failure, Refusal};
use crate::runtime::Shared;
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read size for heads and bodies.
pub(super) const READ_CHUNK: usize = 8 * 1024;

/// What the connection does after an exchange.
pub(super) enum Next {
    /// Serve the next request on this connection.
    KeepAlive,
    /// Close the client connection.
    Close,
    /// The connection became a tunnel: the caller relays it (in a task of its own). Boxed: it
    /// is three times the size of the other answers, and every exchange step's future would
    /// carry that size; one allocation per upgrade, freed when the relay starts.
    Tunnel(Box<super::tunnel::Handover>),
}

/// A client connection and the buffers its exchanges reuse.
pub(super) struct Conn<S> {
    pub client: S,
    /// The client connected over TLS (X-Forwarded-Proto, Secure cookies).
    pub tls: bool,
    /// The peer, or the client a PROXY protocol header named.
    pub peer: SocketAddr,
    /// The buffers its exchanges reuse (handed on to the worker's next connection).
    pub bufs: Buffers,
    pub limits: Limits,
    pub deadline: Deadline,
    pub shutdown: ShutdownSignal,
    /// Bytes of the current request's body read and of its answer written (access log).
    pub body_in: u64,
    pub written: u64,
    /// Requests this connection has carried.
    pub served: u64,
}

/// Serve one accepted client connection to its end, or until it becomes a tunnel, which is
/// returned for the caller to relay.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    peer: SocketAddr,
    runtime: &'static Shared,
    limits: Limits,
    shutdown: ShutdownSignal,
    tls: bool,
) -> Option<Tunnel<S>> {
    let mut c = Conn {
        client,
        tls,
        peer,
        bufs: Buffers::take(),
        limits,
        deadline: Deadline::new(),
        shutdown,
        body_in: 0,
        written: 0,
        served: 0,
    };
    let end = c.serve_requests(runtime).await;
    // A tunnel keeps only its sockets. The buffers go to the worker's next connection, unless
    // this one became a tunnel: then they are freed, so that a worker whose connections all
    // become WebSockets holds no spares beside them.
    let Conn { client, bufs, .. } = c;
    if end.is_none() {
        bufs.give();
    }
    end.map(|handover| (*handover).with_client(client))
}

/// A connection's buffers, handed from one connection to the next on the same worker.
///
/// A new connection would otherwise allocate each of them and grow the vectors step by step
/// (about eleven allocator calls per connection, measured with uprobes under scenario B). Sets
/// go back to a per-worker stack and the next connection takes one: under steady churn a
/// handful waits there, and a burst's surplus beyond [`SPARE_MAX`] is freed, so idle spares
/// cost at most a few hundred KiB. Each is emptied before reuse: no byte of one connection is
/// ever readable from another (only what a later read writes is).
#[derive(Default)]
pub(super) struct Buffers {
    /// Bytes read from the client not yet consumed (pipelined requests stay here).
    pub cbuf: BytesMut,
    /// Bytes read from the node not yet consumed.
    pub ubuf: BytesMut,
    /// The request head's fields (ranges into `cbuf`).
    pub fields: Vec<head::Field>,
    /// The response head's fields (ranges into `ubuf`).
    pub ufields: Vec<head::Field>,
    /// The head being written (request to the node, response to the client).
    pub out: Vec<u8>,
    /// For the access log: the current request's method and target (kept only when the log
    /// is on).
    pub log_method: Vec<u8>,
    pub log_target: Vec<u8>,
}

/// Spare buffer sets a worker keeps (a set holds about 16 KiB once used).
const SPARE_MAX: usize = 16;
/// A buffer grown past this (a large head) is freed rather than kept.
const KEEP_MAX: usize = 4 * READ_CHUNK;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Buffers>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Buffers {
    /// A spare set of this worker's, or a new (empty, unallocated) one.
    fn take() -> Buffers {
        SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default()
    }

    /// Keep this set for the worker's next connection, emptied; an oversized set is freed.
    fn give(mut self) {
        let caps = [
            self.cbuf.capacity(),
            self.ubuf.capacity(),
            self.out.capacity(),
            self.log_target.capacity(),
            self.fields.capacity() * std::mem::size_of::<head::Field>(),
            self.ufields.capacity() * std::mem::size_of::<head::Field>(),
        ];
        if caps.iter().any(|&c| c > KEEP_MAX) {
            return;
        }
        self.cbuf.clear();
        self.ubuf.clear();
        self.fields.clear();
        self.ufields.clear();
        self.out.clear();
        self.log_method.clear();
        self.log_target.clear();
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_MAX {
                s.push(self);
            }
        });
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// The connection loop: requests in order until the client leaves, an exchange closes the
    /// connection, or one turned it into a tunnel (returned).
    async fn serve_requests(
        &mut self,
        runtime: &'static Shared,
    ) -> Option<Box<super::tunnel::Handover>> {
        // The connection's view of the runtime: one pointer comparison per request, and a new
        // snapshot only after a reload (no shared reference count touched per request).
        let mut snapshot = arc_swap::Cache::new(runtime);
        loop {
            let req = match self.read_request().await {
                Ok(Some(req)) => req,
                Ok(None) => return None,
                Err(refusal) => {
                    self.refuse_head(refusal).await;
                    return None;
                }
            };
            let rt = snapshot.load();
            self.served += 1;
            match self.exchange(req, rt).await {
                // A shutting-down proxy finishes the exchange, then lets the connection go.
                Next::KeepAlive if self.shutting_down() => return None,
                Next::KeepAlive => continue,
                Next::Close => return None,
                Next::Tunnel(handover) => return Some(handover),
            }
        }
    }
    pub fn shutting_down(&self) -> bool {
        self.shutdown.borrow().is_some()
    }

    /// Read until a whole request head is buffered. `Ok(None)`: the client closed or idled out
    /// between requests, which is normal.
    async fn read_request(&mut self) -> Result<Option<head::Request>, Refusal> {
        let started = Instant::now();
        loop {
            if !self.bufs.cbuf.is_empty() {
                match head::parse_request(&self.bufs.cbuf, &mut self.bufs.fields) {
                    Ok(Some(req)) if req.target.len() > self.limits.max_uri_bytes => {
                        return Err(Refusal::UriTooLong)
                    }
                    Ok(Some(req)) => return Ok(Some(req)),
                    Ok(None) if self.bufs.cbuf.len() >= self.limits.max_head_bytes => {
                        return Err(Refusal::HeadTooLarge)
                    }
                    Ok(None) => {}
                    Err(HeadError::TooManyHeaders) => return Err(Refusal::HeadTooLarge),
                    Err(HeadError::Malformed | HeadError::BadFraming) => {
                        return Err(Refusal::BadRequest)
                    }
                }
            }
            // Between requests the keep-alive limit applies; inside a head, the (shorter) head
            // limit, counted from the head's first byte, so a slow trickle cannot hold a slot.
            let idle = self.bufs.cbuf.is_empty();
            // Only a connection that already served a request is idle keep-alive: a new one's
            // first request may be on its way (the client connected before the shutdown).
            let between_requests = idle && self.served > 0;
            let wait = if idle {
                self.limits.keepalive_timeout
            } else {
                self.limits.head_timeout.saturating_sub(started.elapsed())
            };
            self.bufs.cbuf.reserve(READ_CHUNK);
            // An idle keep-alive connection ends when a shutdown begins (after a binary upgrade
            // its client reconnects to the new process); a head being read is finished first.
            let mut shutdown = self.shutdown.clone();
            let stopping = async {
                if !between_requests || shutdown.wait_for(|plan| plan.is_some()).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let read = async {
                tokio::select! {
                    biased;
                    r = self.client.read_buf(&mut self.bufs.cbuf) => Some(r),
                    _ = stopping => None,
                }
            };
            match self.deadline.limit(wait, read).await {
                Some(None) => return Ok(None),
                Some(Some(Ok(0) | Err(_))) => return Ok(None),
                Some(Some(Ok(_))) => {}
                None if self.bufs.cbuf.is_empty() => return Ok(None),
                None => return Err(Refusal::HeadTimeout),
            }
        }
    }

    /// Write `buf` to the client within `limits.write_timeout`; a client that is gone or too
    /// slow ends the exchange as [`Failure::ClientGone`].
    pub async fn write_client(&mut self, buf: &[u8]) -> Result<(), Failure> {
        self.written += buf.len() as u64;
        write_within(
            &mut self.deadline,
            &mut self.client,
            buf,
            self.limits.write_timeout,
        )
        .await
    }

    /// Write `self.bufs.out` to the client (see [`write_client`](Self::write_client)).
    pub async fn flush_out(&mut self) -> Result<(), Failure> {
        self.written += self.bufs.out.len() as u64;
        write_within(
            &mut self.deadline,
            &mut self.client,
            &self.bufs.out,
            self.limits.write_timeout,
        )
        .await
    }

    /// Send `answer` and close: we may not know where the request ends.
    pub async fn answer(&mut self, answer: Answer) {
        self.bufs.out.clear();
        answer.render(&mut self.bufs.out);
        self.send_and_close().await;
    }

    /// Write `self.bufs.out` (a whole response that closes the connection), then close.
    pub async fn send_and_close(&mut self) {
        if self.flush_out().await.is_ok() {
            let _ = self
                .deadline
                .limit(self.limits.write_timeout, self.client.shutdown())
                .await;
        }
    }

    /// A head that could not be read as a request: its one access-log line (no route, no
    /// node), the refusal counted, the answer sent.
    async fn refuse_head(&mut self, refusal: Refusal) {
        // The head could not be read, so its version is not known: HTTP/1.1 is what tether speaks.
        super::outcome::refused_head(
            refusal,
            self.peer.ip(),
            self.bufs.cbuf.len() as u64,
            super::access::Protocol::Http11,
        );
        self.answer(refusal.answer()).await;
    }

    /// Consume `n` bytes at the front of the client buffer.
    pub fn consume_client(&mut self, n: usize) {
        self.bufs.cbuf.advance(n.min(self.bufs.cbuf.len()));
    }
}

/// Write all of `buf` within `limit`; a peer that errors or takes longer is gone.
pub(super) async fn write_within<W: AsyncWrite + Unpin>(
    deadline: &mut Deadline,
    w: &mut W,
    buf: &[u8],
    limit: std::time::Duration,
) -> Result<(), Failure> {
    match deadline.limit(limit, w.write_all(buf)).await {
        Some(Ok(())) => Ok(()),
        _ => Err(Failure::ClientGone),
    }
}

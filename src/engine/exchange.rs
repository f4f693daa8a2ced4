//! One request/response exchange as named steps, in the order they happen:
//!
//! 1. [`plan`](Conn::plan): route, client IP, WebSocket policy, the client's pin. Nothing has
//!    touched a node yet; a refusal here is answered without one.
//! 2. [`connect`](Conn::connect): pick a node (the pin, or a new placement), take an idle
//!    connection to it or open one; a node that refuses is marked tried and another is picked.
//! 3. [`send`](Conn::send): the rewritten head and the body, client → node.
//! 4. [`read_head`](Conn::read_head): the response head, forwarding interim `1xx` answers.
//!    Steps 3 and 4 run again, once, on a fresh connection when a pooled one turns out to have
//!    been closed by the node (see [`Conn::may_resend`]).
//! 5. [`tunnel`](Conn::tunnel) after `101`, else [`forward`](Conn::forward) the response.
//!
//! Every failure is a [`Failure`]: the connection loop answers it with the status the runtime's
//! table gives and closes the connection.

use super::access;
use super::body::{claim_into, Body};
use super::conn::{Conn, Next};
use super::engineio::Handled;
use super::forward::{plain_for, ResponseHead};
use super::head::{self, Framing, Kind};
use super::{pool, tunnel};
use crate::runtime::engineio::{self, Role, Tagged};
use crate::runtime::failure::{Failure, NodeFailure, Refusal};
use crate::runtime::node::LoadGuard;
use crate::runtime::placement::{Decision, Placement};
use crate::runtime::pool::{observe_duration, stat, Pool};
use crate::runtime::websocket::{self, Handshake};
use crate::runtime::{client_ip, counters, unix_now, Runtime};
use bytes::Buf;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Interim (1xx) responses forwarded per request; a node sending more is broken (502).
const MAX_INTERIM: usize = 16;

/// What the exchange decided before contacting a node.
pub(super) struct Plan<'rt> {
    pub pool: &'rt Pool,
    pub placement: Placement,
    pub client_ip: IpAddr,
    pub started: Instant,
    /// The request was already sent again once (at most one resend, ever).
    pub resent: bool,
    /// An interim `1xx` went to the client: the response has begun, nothing may be resent.
    pub answered: bool,
    /// Some byte of the request reached the node on the current attempt.
    pub reached: bool,
    /// An engine.io polling handshake (its protocol version): the response's session id gets
    /// the node's tag.
    pub handshake: Option<u8>,
    /// Tags at the end of the request's engine.io `sid` values (ranges of the client buffer):
    /// never forwarded. Usually none or one.
    pub strip: Vec<Range<usize>>,
}

/// A connection to the chosen node; holds the node's load counter until dropped.
pub(super) struct Upstream {
    pub stream: TcpStream,
    pub node: usize,
    /// Taken from the idle pool: the node may have closed it while it sat there.
    pub reused: bool,
    pub guard: LoadGuard,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// One request/response exchange (or the start of a tunnel).
    pub(super) async fn exchange(
        &mut self,
        req: head::Request,
        rt: &Runtime,
    ) -> Result<Next, Failure> {
        self.remember(&req);
        let started = Instant::now();
        let mut plan = match self.plan(&req, rt) {
            Ok(plan) => plan,
            Err(refusal) => {
                self.log(None, None, refusal.into(), started);
                return Err(refusal.into());
            }
        };
        let mut up = match self.connect(&mut plan, req.upgrade).await {
            Ok(up) => up,
            Err(failure) => {
                self.log(Some(&plan), None, failure, started);
                return Err(failure);
            }
        };
        let resp = match self.send_and_read_head(&req, &mut plan, &mut up).await {
            Ok(resp) => resp,
            Err(failure) => {
                self.count_failure(&plan, &up, &req, failure);
                self.log(Some(&plan), Some(up.node), failure, started);
                return Err(failure);
            }
        };
        let pool = plan.pool;
        pool.nodes[up.node].count_response(resp.status);
        let set_cookie = plan.placement.set_cookie(pool, unix_now(), self.tls);
        if resp.status == 101 {
            if !req.upgrade {
                return Err(NodeFailure::UnaskedUpgrade.into());
            }
            pool.stats.inc(stat::UPGRADE_OK);
            return Ok(self.tunnel(up, &resp, set_cookie.as_deref(), &plan).await);
        }
        if req.upgrade {
            pool.stats.inc(stat::UPGRADE_FAILED);
        }
        self.forward(&req, &resp, set_cookie.as_deref(), &plan, up)
            .await
    }

    /// Keep the method and target for the access log (only when it is on: two copies into
    /// buffers this connection reuses).
    fn remember(&mut self, req: &head::Request) {
        self.body_in = 0;
        self.written = 0;
        if access::enabled() {
            self.log_method.clear();
            self.log_method
                .extend_from_slice(&self.cbuf[req.method.clone()]);
            self.log_target.clear();
            self.log_target
                .extend_from_slice(&self.cbuf[req.target.clone()]);
        }
    }

    /// The access-log line of a failed exchange: tether's own status.
    fn log(
        &self,
        plan: Option<&Plan<'_>>,
        node: Option<usize>,
        failure: Failure,
        started: Instant,
    ) {
        self.log_request(plan, node, failure.status(), started, 0);
    }

    /// The access-log line of an exchange (`head_len`: the request head's bytes).
    pub(super) fn log_request(
        &self,
        plan: Option<&Plan<'_>>,
        node: Option<usize>,
        status: u16,
        started: Instant,
        head_len: usize,
    ) {
        if !access::enabled() {
            return;
        }
        let pool = plan.map(|p| p.pool);
        access::request(&access::Request {
            client: plan.map_or(self.peer.ip(), |p| p.client_ip),
            method: &self.log_method,
            target: &self.log_target,
            status,
            upstream: pool.map_or("-", |p| p.name.as_str()),
            node: match (pool, node) {
                (Some(p), Some(n)) => p.nodes[n].id.as_str(),
                _ => "-",
            },
            decision: plan
                .and_then(|p| p.placement.decision)
                .map_or("-", |d| d.name()),
            bytes_in: head_len as u64 + self.body_in,
            bytes_out: self.written,
            duration: started.elapsed(),
        });
    }

    /// Step 1: everything decided from the head alone.
    fn plan<'rt>(&mut self, req: &head::Request, rt: &'rt Runtime) -> Result<Plan<'rt>, Refusal> {
        let buf = &self.cbuf[..];
        let path = match &buf[req.path.clone()] {
            p @ [b'/', ..] => std::str::from_utf8(p).unwrap_or(""),
            // `*` (OPTIONS) routes like `/`; so does an absolute-form target without a path.
            _ => "/",
        };
        let host = req.host.map(|(a, b)| &buf[a as usize..b as usize]);
        let (pool_index, policy) = rt
            .router
            .route_with_policy(host, path)
            .ok_or(Refusal::NoRoute)?;
        let pool = &rt.pools[pool_index];
        let xff = head::all(buf, &self.fields, Kind::XForwardedFor);
        let client_ip = client_ip::resolve(self.peer.ip(), &rt.trusted_proxies, xff);
        if req.upgrade {
            let f = |k| head::first(buf, &self.fields, k);
            let handshake = Handshake {
                method: &buf[req.method.clone()],
                upgrade: f(Kind::Upgrade),
                version: f(Kind::SecWebSocketVersion),
                key: f(Kind::SecWebSocketKey),
                origin: f(Kind::Origin),
            };
            if let Err(refusal) = websocket::check(&handshake, policy) {
                if refusal == Refusal::OriginNotAllowed {
                    counters::global::COUNTERS.inc(counters::global::ORIGIN_REJECTED);
                    tracing::warn!(
                        upstream = %pool.name, client = %client_ip,
                        origin = handshake.origin_text().unwrap_or("(none)"),
                        "WebSocket upgrade refused: origin not allowed"
                    );
                }
                return Err(refusal);
            }
        }
        let cookies = head::all(buf, &self.fields, Kind::Cookie);
        let mut placement = Placement::from_cookies(pool, cookies, unix_now());
        let (mut handshake, mut strip) = (None, Vec::new());
        if let Some(tags) = &pool.engineio {
            let path = req.path.clone();
            match engineio::classify(&buf[path.clone()]) {
                Role::Handshake { version } if &buf[req.method.clone()] == b"GET" => {
                    handshake = Some(version)
                }
                Role::Session { sid, others } => {
                    // Earlier `sid`s (engine.io reads the last) only lose their tags.
                    for other in others {
                        let other = path.start + other.start..path.start + other.end;
                        if let Some((cut, _)) = engineio::split(&buf[other.clone()]) {
                            strip.push(other.start + cut..other.end);
                        }
                    }
                    let sid = path.start + sid.start..path.start + sid.end;
                    if let Some((cut, tagged)) = tags.read(&buf[sid.clone()]) {
                        strip.push(sid.start + cut..sid.end);
                        match tagged {
                            Tagged::Node(node) => placement.pin_session(pool, node),
                            Tagged::Invalid => pool.stats.inc(stat::ENGINEIO_INVALID_TAGS),
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Plan {
            pool,
            placement,
            client_ip,
            started: Instant::now(),
            resent: false,
            answered: false,
            reached: false,
            handshake,
            strip,
        })
    }

    /// Step 2: a connection to the node the placement chooses, trying (and re-pinning to)
    /// another node when one refuses.
    async fn connect(&mut self, plan: &mut Plan<'_>, upgrade: bool) -> Result<Upstream, Failure> {
        let pool = plan.pool;
        loop {
            let Some(node) = plan.placement.choose(pool, Some(plan.client_ip), upgrade) else {
                tracing::warn!(upstream = %pool.name, "no usable node");
                return Err(NodeFailure::NoNode.into());
            };
            let state = &pool.nodes[node];
            let guard = state.acquire();
            let (stream, reused) = match pool::take(state.address) {
                Some(s) => (s, true),
                None => match connect(state.address, pool.timeouts.connect).await {
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
                reused,
                guard,
            });
        }
    }

    /// Steps 3 and 4, with the one resend a stale pooled connection may earn.
    async fn send_and_read_head(
        &mut self,
        req: &head::Request,
        plan: &mut Plan<'_>,
        up: &mut Upstream,
    ) -> Result<head::Response, Failure> {
        let idempotent = idempotent(&self.cbuf[req.method.clone()]);
        // The rewritten head and whatever body bytes are already here, in one write.
        self.write_request_head(req, &plan.strip);
        self.consume_client(req.len);
        let mut body = Body::new(req.framing, false, self.limits.max_head_bytes);
        let n =
            claim_into(&mut body, &self.cbuf, &mut self.out).map_err(|_| Refusal::BadRequest)?;
        self.consume_client(n);
        // The whole request is in `out`: it could be sent again.
        let whole = body.done();
        loop {
            plan.reached = false;
            let result = match self.send(req, plan, up, &mut body).await {
                Ok(()) => self.read_head(req, plan, up).await,
                Err(f) => Err(f),
            };
            match result {
                Err(Failure::Node(f)) if whole && self.may_resend(f, plan, up, idempotent) => {
                    plan.resent = true;
                    tracing::debug!(upstream = %plan.pool.name, node = %plan.pool.nodes[up.node].id, failure = ?f, "pooled connection was closed; sending again on a fresh one");
                    let addr = plan.pool.nodes[up.node].address;
                    up.stream = connect(addr, plan.pool.timeouts.connect)
                        .await
                        .map_err(|_| NodeFailure::Closed)?;
                    up.reused = false;
                }
                other => return other,
            }
        }
    }

    /// The retry rule: a request goes to a node at most twice, the second time only on a fresh
    /// connection, after a pooled one failed before any answer came back (not even a `1xx`),
    /// and only if sending it twice is harmless: an idempotent method (RFC 9110 §9.2.2), or
    /// no byte of it reached the node. Otherwise the client gets the failure (nginx's rule).
    fn may_resend(
        &self,
        failure: NodeFailure,
        plan: &Plan<'_>,
        up: &Upstream,
        idempotent: bool,
    ) -> bool {
        failure.stale_connection()
            && up.reused
            && !plan.resent
            && !plan.answered
            && self.ubuf.is_empty()
            && (idempotent || !plan.reached)
    }

    /// Step 3: the request head (with any body bytes already read) and the rest of the body.
    async fn send(
        &mut self,
        req: &head::Request,
        plan: &mut Plan<'_>,
        up: &mut Upstream,
        body: &mut Body,
    ) -> Result<(), Failure> {
        let limit = plan.pool.timeouts.send;
        send_to_node(
            &mut self.deadline,
            &mut up.stream,
            &self.out,
            limit,
            &mut plan.reached,
        )
        .await?;
        if !body.done() {
            if req.expect_continue {
                // We forward the body ourselves, so we (like nginx) tell the client to send it.
                if !self.write_client(b"HTTP/1.1 100 Continue\r\n\r\n").await {
                    return Err(Refusal::BadRequest.into());
                }
            }
            self.stream_request_body(up, body, limit).await?;
        }
        Ok(())
    }

    /// Step 4: the response head, forwarding interim `1xx` answers to an HTTP/1.1 client as
    /// they come (an HTTP/1.0 client gets none, RFC 9110 §15.2). The whole step, interim
    /// answers included, is bounded by `timeouts.read`, and so is their number.
    async fn read_head(
        &mut self,
        req: &head::Request,
        plan: &mut Plan<'_>,
        up: &mut Upstream,
    ) -> Result<head::Response, Failure> {
        self.ubuf.clear();
        let deadline = tokio::time::Instant::now() + plan.pool.timeouts.read;
        for _ in 0..=MAX_INTERIM {
            let resp = self
                .read_response_head(&mut up.stream, req.head, deadline)
                .await?;
            if !(100..200).contains(&resp.status) || resp.status == 101 {
                return Ok(resp);
            }
            plan.answered = true;
            if req.minor == 1 {
                self.write_interim_head(&resp);
                if !self.flush_out().await {
                    return Err(Refusal::BadRequest.into());
                }
            }
            self.ubuf.advance(resp.len);
        }
        Err(NodeFailure::BadResponse.into())
    }
    /// Count a failure against the node it happened on.
    fn count_failure(&self, plan: &Plan<'_>, up: &Upstream, req: &head::Request, f: Failure) {
        let Failure::Node(failure) = f else {
            return;
        };
        if failure.counts_against_node() {
            plan.pool.passive_failure(up.node);
        }
        plan.pool.nodes[up.node].count_response(failure.status());
        if req.upgrade {
            plan.pool.stats.inc(stat::UPGRADE_FAILED);
        }
    }

    /// Step 5a: `101`: the response head and any early bytes each way, then the connection is
    /// handed over to a [tunnel](tunnel::Tunnel) that runs in a task of its own.
    async fn tunnel(
        &mut self,
        mut up: Upstream,
        resp: &head::Response,
        set_cookie: Option<&str>,
        plan: &Plan<'_>,
    ) -> Next {
        let pool = plan.pool;
        up.guard.into_tunnel();
        let how = ResponseHead {
            set_cookie,
            keep: true,
            client_minor: 1,
            plain: false,
            body_length: None,
        };
        self.write_response_head(resp, &how);
        // Anything the node sent after its 101 belongs to the new protocol.
        self.out.extend_from_slice(&self.ubuf[resp.len..]);
        if !self.flush_out().await {
            return Next::Close;
        }
        // Anything the client sent after its request head (early frames) goes to the node.
        if !self.cbuf.is_empty() {
            let mut reached = false;
            let early = &self.cbuf[..];
            let limit = pool.timeouts.send;
            if send_to_node(
                &mut self.deadline,
                &mut up.stream,
                early,
                limit,
                &mut reached,
            )
            .await
            .is_err()
            {
                return Next::Close;
            }
        }
        // Of the access log's copies only the path goes along: a query may carry tokens.
        let path_end = self
            .log_target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(self.log_target.len());
        Next::Tunnel(tunnel::Handover {
            node: up.stream,
            guard: up.guard,
            idle: pool.timeouts.tunnel_idle,
            client_ip: plan.client_ip,
            path: self.log_target[..path_end].into(),
            upstream: pool.name.as_str().into(),
            started: plan.started,
        })
    }

    /// Step 5b: the response head and body to the client; the node connection goes back to
    /// the pool when the response ended cleanly and nothing is left over.
    async fn forward(
        &mut self,
        req: &head::Request,
        resp: &head::Response,
        set_cookie: Option<&str>,
        plan: &Plan<'_>,
        mut up: Upstream,
    ) -> Result<Next, Failure> {
        let pool = plan.pool;
        if let (Some(version), 200) = (plan.handshake, resp.status) {
            match self
                .forward_handshake(req, resp, set_cookie, plan, up, version)
                .await?
            {
                Handled::Done(next) => return Ok(next),
                Handled::Declined(back) => up = back,
            }
        }
        let plain = plain_for(resp, req.minor);
        let keep_client = req.keep_alive
            && resp.framing != Framing::UntilClose
            && !plain
            && !self.shutting_down();
        let how = ResponseHead {
            set_cookie,
            keep: keep_client,
            client_minor: req.minor,
            plain,
            body_length: None,
        };
        self.write_response_head(resp, &how);
        let mut body = Body::new(resp.framing, plain, self.limits.max_head_bytes);
        self.ubuf.advance(resp.len);
        // Broken framing in the bytes already here is still a 502: nothing has gone out yet.
        let n = claim_into(&mut body, &self.ubuf, &mut self.out)
            .map_err(|_| NodeFailure::BadResponse)?;
        self.ubuf.advance(n);
        if !self.flush_out().await {
            return Ok(Next::Close);
        }
        let complete = body.done()
            || self
                .stream_response_body(&mut up.stream, &mut body, pool.timeouts.read)
                .await;
        if complete && resp.keep_alive && self.ubuf.is_empty() {
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
        drop(up.guard);
        tracing::debug!(
            upstream = %pool.name, node = %pool.nodes[up.node].id, status = resp.status,
            decision = ?plan.placement.decision, elapsed_us = plan.started.elapsed().as_micros() as u64,
            "request"
        );
        Ok(if complete && keep_client {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }
}

/// Methods whose request may be sent twice with the effect of once (RFC 9110 §9.2.2).
fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// Write `buf` to a node within `limit` (`timeouts.send`, like nginx's `proxy_send_timeout`).
/// `reached` becomes true as soon as one byte is written: from then on the node may have
/// acted on the request.
pub(super) async fn send_to_node(
    deadline: &mut super::deadline::Deadline,
    node: &mut TcpStream,
    buf: &[u8],
    limit: Duration,
    reached: &mut bool,
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
                *reached = true;
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

async fn connect(addr: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

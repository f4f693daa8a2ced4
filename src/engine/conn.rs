//! One client connection: read a request, choose the node, forward, stream the answer back, and
//! loop for keep-alive, or turn into a tunnel after `101`.
//!
//! Everything for one exchange happens in this one task, in order (client → node → client), so a
//! request costs the four socket operations it must and no cross-task wake-ups. Heads are parsed
//! in place and rewritten into one reused output buffer; bodies are forwarded as they arrive.

use super::chunked;
use super::head::{self, Framing, HeadError, Span};
use super::lifecycle::ShutdownSignal;
use super::{pool, tunnel, Limits};
use crate::proxy::decide::{unix_now, Affinity, Decision};
use crate::proxy::respond::{body_for, reason};
use crate::proxy::Runtime;
use crate::upstream::Pool;
use arc_swap::ArcSwap;
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Sleep};

/// Read size for heads and bodies.
const READ_CHUNK: usize = 8 * 1024;

/// What ended an exchange.
enum Next {
    /// Serve the next request on this connection.
    KeepAlive,
    /// Close the client connection.
    Close,
}

/// A failure before the response head went out: answered with a status.
#[derive(Debug, PartialEq, Eq)]
struct Refuse(u16);

struct Conn<S> {
    client: S,
    /// The client connected over TLS (X-Forwarded-Proto, Secure cookies).
    tls: bool,
    peer: SocketAddr,
    /// Bytes read from the client not yet consumed (pipelined requests stay here).
    cbuf: BytesMut,
    /// Bytes read from the node not yet consumed.
    ubuf: BytesMut,
    spans: Vec<Span>,
    uspans: Vec<Span>,
    /// The head being written (request to the node, response to the client).
    out: Vec<u8>,
    limits: Limits,
    deadline: Deadline,
    shutdown: ShutdownSignal,
}

/// One timer per connection for every read's time limit.
///
/// `tokio::time::timeout` registers and drops a timer entry per call, two per request here; this
/// keeps one `Sleep` and only re-arms it when it fires early (the wanted deadline moved later,
/// the common case on a busy keep-alive connection) or a shorter limit is wanted.
struct Deadline {
    sleep: std::pin::Pin<Box<Sleep>>,
    armed: tokio::time::Instant,
    want: tokio::time::Instant,
}

impl Deadline {
    fn new() -> Deadline {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        Deadline {
            sleep: Box::pin(sleep_until(far)),
            armed: far,
            want: far,
        }
    }

    /// Run `fut` until it completes (`Some`) or `limit` passes (`None`).
    async fn limit<T>(&mut self, limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
        self.want = tokio::time::Instant::now() + limit;
        if self.want < self.armed {
            self.sleep.as_mut().reset(self.want);
            self.armed = self.want;
        }
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(v) = fut.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(v));
            }
            while self.sleep.as_mut().poll(cx).is_ready() {
                if tokio::time::Instant::now() >= self.want {
                    return std::task::Poll::Ready(None);
                }
                self.sleep.as_mut().reset(self.want);
                self.armed = self.want;
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// Serve one accepted client connection to its end.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    peer: SocketAddr,
    runtime: Arc<ArcSwap<Runtime>>,
    limits: Limits,
    shutdown: ShutdownSignal,
    tls: bool,
) {
    let mut c = Conn {
        client,
        tls,
        peer,
        cbuf: BytesMut::new(),
        ubuf: BytesMut::new(),
        spans: Vec::new(),
        uspans: Vec::new(),
        out: Vec::new(),
        limits,
        deadline: Deadline::new(),
        shutdown,
    };
    loop {
        let req = match c.read_request().await {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(Refuse(status)) => {
                c.refuse(status).await;
                return;
            }
        };
        let rt = runtime.load_full();
        match c.exchange(req, &rt).await {
            // A shutting-down proxy finishes the exchange, then lets the connection go.
            Ok(Next::KeepAlive) if c.shutdown.borrow().is_some() => return,
            Ok(Next::KeepAlive) => continue,
            Ok(Next::Close) => return,
            Err(Refuse(status)) => {
                c.refuse(status).await;
                return;
            }
        }
    }
}

/// Write `buf` to a node within `limit` (`timeouts.send`): 502 if the connection breaks, 504
/// if the node stops reading for that long (nginx's `proxy_send_timeout`).
async fn send_to_node(
    deadline: &mut Deadline,
    node: &mut TcpStream,
    buf: &[u8],
    limit: Duration,
) -> Result<(), Refuse> {
    match deadline.limit(limit, node.write_all(buf)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(_)) => Err(Refuse(502)),
        None => Err(Refuse(504)),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Read until a whole request head is buffered. `Ok(None)`: the client closed or idled out
    /// between requests, which is normal.
    async fn read_request(&mut self) -> Result<Option<head::Request>, Refuse> {
        let started = Instant::now();
        loop {
            if !self.cbuf.is_empty() {
                match head::parse_request(&self.cbuf, &mut self.spans) {
                    Ok(Some(req)) if req.target.len() > self.limits.max_uri_bytes => {
                        return Err(Refuse(414))
                    }
                    Ok(Some(req)) => return Ok(Some(req)),
                    Ok(None) if self.cbuf.len() >= self.limits.max_head_bytes => {
                        return Err(Refuse(431))
                    }
                    Ok(None) => {}
                    Err(HeadError::TooManyHeaders) => return Err(Refuse(431)),
                    Err(HeadError::Malformed | HeadError::BadFraming) => return Err(Refuse(400)),
                }
            }
            // Between requests the keep-alive limit applies; inside a head, the (shorter) head
            // limit, counted from the head's first byte, so a slow trickle cannot hold a slot.
            let wait = if self.cbuf.is_empty() {
                self.limits.keepalive_timeout
            } else {
                self.limits.head_timeout.saturating_sub(started.elapsed())
            };
            self.cbuf.reserve(READ_CHUNK);
            match self
                .deadline
                .limit(wait, self.client.read_buf(&mut self.cbuf))
                .await
            {
                Some(Ok(0)) | Some(Err(_)) => return Ok(None),
                Some(Ok(_)) => {}
                None if self.cbuf.is_empty() => return Ok(None),
                None => return Err(Refuse(408)),
            }
        }
    }

    /// One request/response exchange (or the start of a tunnel).
    async fn exchange(&mut self, req: head::Request, rt: &Runtime) -> Result<Next, Refuse> {
        let started = Instant::now();
        let target = &self.cbuf[req.target.clone()];
        let path = std::str::from_utf8(target).unwrap_or("");
        let host = req.host.map(|(a, b)| &self.cbuf[a as usize..b as usize]);
        let Some((pool_index, policy)) = rt.router.route_with_policy(host, path) else {
            self.drop_request(&req);
            return Err(Refuse(404));
        };
        let pool = &rt.pools[pool_index];
        let client_ip = self.client_ip(&rt.trusted_proxies);
        if req.upgrade {
            self.check_websocket_handshake(&req, policy, pool, client_ip)?;
        }
        let cookies = self
            .spans
            .iter()
            .filter(|s| s.name(&self.cbuf).eq_ignore_ascii_case(b"cookie"))
            .map(|s| s.value(&self.cbuf));
        let mut affinity = Affinity::from_cookies(pool, cookies, unix_now());
        let head_request = self.cbuf[req.method.clone()].eq_ignore_ascii_case(b"HEAD");

        // Connect, trying other nodes (and re-pinning) when a node refuses.
        let (mut node_conn, node, reused, guard) = loop {
            let Some(node) = affinity.choose(pool, Some(client_ip), req.upgrade) else {
                tracing::warn!(upstream = %pool.name, "no usable node");
                return Err(Refuse(503));
            };
            let state = &pool.nodes[node];
            let guard = state.acquire();
            if let Some(s) = pool::take(state.address) {
                break (s, node, true, guard);
            }
            match connect(state.address, pool.timeouts.connect).await {
                Ok(s) => break (s, node, false, guard),
                Err(e) => {
                    tracing::warn!(upstream = %pool.name, node = %state.id, error = %e, "connect to node failed");
                    state.passive_failure(
                        &pool.name,
                        pool.passive.max_fails,
                        pool.passive.fail_timeout,
                    );
                    affinity.connect_failed();
                    if !affinity.may_retry(pool) {
                        return Err(Refuse(503));
                    }
                }
            }
        };
        affinity.count(pool);
        if affinity.decision == Some(Decision::Repinned) {
            tracing::info!(upstream = %pool.name, to = %pool.nodes[node].id, reason = "node refused the connection", "client re-pinned");
        }

        // The request head (and whatever body bytes are already here) in one write.
        self.write_request_head(&req);
        let mut body = BodyState::new(req.framing);
        self.cbuf.advance(req.len);
        let n = body.claim(&self.cbuf).map_err(|_| Refuse(400))?;
        self.out.extend_from_slice(&self.cbuf[..n]);
        self.cbuf.advance(n);
        let whole_request_sent = body.done();
        let send = pool.timeouts.send;
        let mut wrote = send_to_node(&mut self.deadline, &mut node_conn, &self.out, send).await;
        if wrote == Err(Refuse(502)) && reused && whole_request_sent {
            // A pooled connection the node had just closed: one fresh try, nothing was lost.
            node_conn = self.reconnect(pool, node).await?;
            wrote = send_to_node(&mut self.deadline, &mut node_conn, &self.out, send).await;
        }
        wrote?;
        if !body.done() {
            if req.expect_continue {
                // We forward the body ourselves, so we (like nginx) tell the client to send it.
                let _ = self
                    .client
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await;
            }
            self.stream_request_body(&mut node_conn, &mut body, pool.timeouts.read, send)
                .await?;
        }

        // The response head, skipping interim 1xx answers (forwarded as they come).
        self.ubuf.clear();
        let resp = loop {
            let resp = match self
                .read_response_head(&mut node_conn, head_request, pool.timeouts.read)
                .await
            {
                Ok(r) => r,
                Err(Refuse(502)) if reused && whole_request_sent && self.ubuf.is_empty() => {
                    node_conn = self.reconnect(pool, node).await?;
                    send_to_node(&mut self.deadline, &mut node_conn, &self.out, send).await?;
                    self.read_response_head(&mut node_conn, head_request, pool.timeouts.read)
                        .await?
                }
                Err(Refuse(status)) => {
                    let state = &pool.nodes[node];
                    if status == 504 {
                        state.passive_failure(
                            &pool.name,
                            pool.passive.max_fails,
                            pool.passive.fail_timeout,
                        );
                    }
                    state.metrics.request(status);
                    if req.upgrade {
                        pool.metrics.upgrade_failed.inc();
                    }
                    return Err(Refuse(status));
                }
            };
            if (100..200).contains(&resp.status) && resp.status != 101 {
                let _ = self.client.write_all(&self.ubuf[..resp.len]).await;
                self.ubuf.advance(resp.len);
                continue;
            }
            break resp;
        };

        let set_cookie = affinity.set_cookie(pool, unix_now(), self.tls);
        pool.nodes[node].metrics.request(resp.status);
        if resp.status == 101 {
            if !req.upgrade {
                return Err(Refuse(502));
            }
            pool.metrics.upgrade_ok.inc();
            let mut guard = guard;
            guard.into_tunnel();
            let end = self
                .start_tunnel(node_conn, &resp, set_cookie.as_deref(), pool, node, started)
                .await;
            drop(guard);
            return Ok(end);
        }
        if req.upgrade {
            pool.metrics.upgrade_failed.inc();
        }

        let keep_client = req.keep_alive
            && resp.framing != Framing::UntilClose
            && self.shutdown.borrow().is_none();
        self.write_response_head(&resp, set_cookie.as_deref(), keep_client, req.minor);
        let mut rbody = BodyState::new(resp.framing);
        self.ubuf.advance(resp.len);
        let Ok(n) = rbody.claim(&self.ubuf) else {
            return Ok(Next::Close);
        };
        self.out.extend_from_slice(&self.ubuf[..n]);
        self.ubuf.advance(n);
        let wrote = self
            .deadline
            .limit(self.limits.write_timeout, self.client.write_all(&self.out))
            .await;
        if !matches!(wrote, Some(Ok(()))) {
            return Ok(Next::Close);
        }
        let complete = rbody.done()
            || self
                .stream_response_body(&mut node_conn, &mut rbody, pool.timeouts.read)
                .await;
        if complete && resp.keep_alive && self.ubuf.is_empty() {
            pool::put(pool.nodes[node].address, node_conn);
        }
        pool.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        drop(guard);
        tracing::debug!(
            upstream = %pool.name, node = %pool.nodes[node].id, status = resp.status,
            decision = ?affinity.decision, elapsed_us = started.elapsed().as_micros() as u64,
            "request"
        );
        Ok(if complete && keep_client {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    async fn reconnect(&mut self, pool: &Pool, node: usize) -> Result<TcpStream, Refuse> {
        connect(pool.nodes[node].address, pool.timeouts.connect)
            .await
            .map_err(|_| Refuse(502))
    }

    /// Rewrite the request head for the node into `self.out`.
    fn write_request_head(&mut self, req: &head::Request) {
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
        let mut xff: Option<&[u8]> = None;
        for s in &self.spans {
            let name = s.name(buf);
            if head::is_hop_by_hop(name)
                || (name.eq_ignore_ascii_case(b"upgrade") && !req.upgrade)
                || name.eq_ignore_ascii_case(b"x-forwarded-proto")
                || name.eq_ignore_ascii_case(b"x-forwarded-host")
                || (req.expect_continue && name.eq_ignore_ascii_case(b"expect"))
                || (req.nominated && head::nominated_by_connection(buf, &self.spans, name))
            {
                continue;
            }
            if name.eq_ignore_ascii_case(b"x-forwarded-for") {
                // Several XFF lines are one list; they are merged below, ahead of our hop.
                if xff.is_none() {
                    xff = Some(s.value(buf));
                } else {
                    out.extend_from_slice(b"x-forwarded-for: ");
                    out.extend_from_slice(s.value(buf));
                    out.extend_from_slice(b"\r\n");
                }
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(s.value(buf));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prev) = xff {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        push_ip(out, self.peer.ip());
        out.extend_from_slice(if self.tls {
            b"\r\nx-forwarded-proto: https\r\n"
        } else {
            b"\r\nx-forwarded-proto: http\r\n"
        });
        if let Some((a, b)) = req.host {
            out.extend_from_slice(b"x-forwarded-host: ");
            out.extend_from_slice(&buf[a as usize..b as usize]);
            out.extend_from_slice(b"\r\n");
        }
        if req.upgrade {
            out.extend_from_slice(b"connection: upgrade\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Rewrite the response head for the client into `self.out`.
    fn write_response_head(
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
        for s in &self.uspans {
            let name = s.name(buf);
            if head::is_hop_by_hop(name)
                || (resp.status != 101 && name.eq_ignore_ascii_case(b"upgrade"))
            {
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(s.value(buf));
            out.extend_from_slice(b"\r\n");
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

    async fn read_response_head(
        &mut self,
        node: &mut TcpStream,
        head_request: bool,
        read_timeout: Duration,
    ) -> Result<head::Response, Refuse> {
        let deadline = tokio::time::Instant::now() + read_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !self.ubuf.is_empty() {
                match head::parse_response(&self.ubuf, &mut self.uspans, head_request) {
                    Ok(Some(r)) => return Ok(r),
                    Ok(None) if self.ubuf.len() >= self.limits.max_head_bytes => {
                        return Err(Refuse(502))
                    }
                    Ok(None) => {}
                    Err(_) => return Err(Refuse(502)),
                }
            }
            self.ubuf.reserve(READ_CHUNK);
            match self
                .deadline
                .limit(left, node.read_buf(&mut self.ubuf))
                .await
            {
                Some(Ok(0)) | Some(Err(_)) => return Err(Refuse(502)),
                Some(Ok(_)) => {}
                None => return Err(Refuse(504)),
            }
        }
    }

    /// The rest of a request body, client → node, as it arrives.
    async fn stream_request_body(
        &mut self,
        node: &mut TcpStream,
        body: &mut BodyState,
        read_timeout: Duration,
        send_timeout: Duration,
    ) -> Result<(), Refuse> {
        while !body.done() {
            self.cbuf.reserve(READ_CHUNK);
            match self
                .deadline
                .limit(read_timeout, self.client.read_buf(&mut self.cbuf))
                .await
            {
                Some(Ok(n)) if n > 0 => {}
                _ => return Err(Refuse(400)),
            }
            let n = body.claim(&self.cbuf).map_err(|_| Refuse(400))?;
            send_to_node(&mut self.deadline, node, &self.cbuf[..n], send_timeout).await?;
            self.cbuf.advance(n);
        }
        Ok(())
    }

    /// The rest of a response body, node → client, each read written as it comes (so streams and
    /// server-sent events are not held back). `false`: it did not end cleanly.
    async fn stream_response_body(
        &mut self,
        node: &mut TcpStream,
        body: &mut BodyState,
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
                Some(Ok(0)) => return body.framing == Framing::UntilClose,
                Some(Ok(_)) => {}
                _ => return false,
            }
            let Ok(n) = body.claim(&self.ubuf) else {
                return false;
            };
            let wrote = self
                .deadline
                .limit(
                    self.limits.write_timeout,
                    self.client.write_all(&self.ubuf[..n]),
                )
                .await;
            if !matches!(wrote, Some(Ok(()))) {
                return false;
            }
            self.ubuf.advance(n);
        }
        true
    }

    async fn start_tunnel(
        &mut self,
        mut node_conn: TcpStream,
        resp: &head::Response,
        set_cookie: Option<&str>,
        pool: &Pool,
        node: usize,
        started: Instant,
    ) -> Next {
        self.write_response_head(resp, set_cookie, true, 1);
        // Anything the node sent after its 101 belongs to the new protocol.
        self.out.extend_from_slice(&self.ubuf[resp.len..]);
        if self.client.write_all(&self.out).await.is_err() {
            return Next::Close;
        }
        // Anything the client sent after its request head (early frames) goes to the node.
        if !self.cbuf.is_empty() && node_conn.write_all(&self.cbuf).await.is_err() {
            return Next::Close;
        }
        // The tunnel owns no buffers: give back what the HTTP phase used.
        self.cbuf = BytesMut::new();
        self.ubuf = BytesMut::new();
        self.out = Vec::new();
        self.spans = Vec::new();
        self.uspans = Vec::new();
        tracing::debug!(upstream = %pool.name, node = %pool.nodes[node].id, "tunnel open");
        let seed = u64::from(self.peer.port()) << 32 | started.elapsed().subsec_nanos() as u64;
        let end = tunnel::run(
            &mut self.client,
            &mut node_conn,
            pool.timeouts.tunnel_idle,
            self.shutdown.clone(),
            seed,
        )
        .await;
        tracing::debug!(upstream = %pool.name, node = %pool.nodes[node].id, ?end, secs = started.elapsed().as_secs(), "tunnel closed");
        Next::Close
    }

    /// RFC 6455 §4.2.1 and the route's Origin policy, before anything reaches a node: a WebSocket
    /// upgrade must be a GET with a 16-byte key (400), version 13 (426), and an allowed Origin
    /// (403, the Cross-Site WebSocket Hijacking defence). Other upgrade protocols pass through.
    fn check_websocket_handshake(
        &self,
        req: &head::Request,
        policy: &crate::config::WebsocketPolicy,
        pool: &Pool,
        client_ip: std::net::IpAddr,
    ) -> Result<(), Refuse> {
        let buf = &self.cbuf[..];
        let header = |name: &[u8]| {
            self.spans
                .iter()
                .find(|s| s.name(buf).eq_ignore_ascii_case(name))
                .map(|s| s.value(buf).trim_ascii())
        };
        let websocket = header(b"upgrade").is_some_and(|v| {
            v.split(|&b| b == b',')
                .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        });
        if !websocket {
            return Ok(());
        }
        if !buf[req.method.clone()].eq_ignore_ascii_case(b"GET") {
            return Err(Refuse(400));
        }
        if header(b"sec-websocket-version") != Some(b"13".as_slice()) {
            return Err(Refuse(426));
        }
        let key_ok = header(b"sec-websocket-key").is_some_and(|k| {
            use base64::Engine as _;
            let mut out = [0u8; 18];
            matches!(
                base64::engine::general_purpose::STANDARD.decode_slice(k, &mut out),
                Ok(16)
            )
        });
        if !key_ok {
            return Err(Refuse(400));
        }
        let origin = header(b"origin").map(|o| std::str::from_utf8(o).unwrap_or("\u{fffd}"));
        if !policy.allows(origin) {
            crate::metrics::METRICS.origin_rejected.inc();
            tracing::warn!(
                upstream = %pool.name, client = %client_ip, origin = origin.unwrap_or("(none)"),
                "WebSocket upgrade refused: origin not allowed"
            );
            return Err(Refuse(403));
        }
        Ok(())
    }

    /// The client's address: the connection's peer (or the PROXY header's source), unless that
    /// peer is a trusted proxy, in which case `X-Forwarded-For` is walked from the right past
    /// trusted hops. An untrusted peer can never choose its address through headers.
    fn client_ip(&self, trusted: &[ipnet::IpNet]) -> std::net::IpAddr {
        let peer = self.peer.ip();
        if trusted.is_empty() || !trusted.iter().any(|n| n.contains(&peer)) {
            return peer;
        }
        let buf = &self.cbuf[..];
        let hops: Vec<&[u8]> = self
            .spans
            .iter()
            .filter(|s| s.name(buf).eq_ignore_ascii_case(b"x-forwarded-for"))
            .flat_map(|s| s.value(buf).split(|&b| b == b','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let text = std::str::from_utf8(hop.trim_ascii()).unwrap_or("");
            let Ok(ip) = text
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
            else {
                // Garbage in the chain: stop at the last hop we could trust.
                return client;
            };
            client = ip;
            if !trusted.iter().any(|n| n.contains(&ip)) {
                return ip;
            }
        }
        client
    }

    /// Skip the bytes of a request we will not forward, so nothing of it is read as a next request.
    fn drop_request(&mut self, req: &head::Request) {
        self.cbuf.advance(req.len.min(self.cbuf.len()));
    }

    /// Answer with an error status and close: we may not know where the request body ends.
    async fn refuse(&mut self, status: u16) {
        let body = body_for(status);
        self.out.clear();
        self.out.extend_from_slice(b"HTTP/1.1 ");
        self.out.extend_from_slice(status.to_string().as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(reason(status).as_bytes());
        self.out
            .extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
        self.out
            .extend_from_slice(body.len().to_string().as_bytes());
        if status == 426 {
            // RFC 6455 §4.4: say which version we speak.
            self.out.extend_from_slice(b"\r\nsec-websocket-version: 13");
        }
        self.out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
        self.out.extend_from_slice(&body);
        let _ = self.client.write_all(&self.out).await;
        let _ = self.client.shutdown().await;
    }
}

/// Where a body being forwarded stands.
struct BodyState {
    framing: Framing,
    remaining: u64,
    chunks: chunked::Scanner,
}

impl BodyState {
    fn new(framing: Framing) -> BodyState {
        BodyState {
            framing,
            remaining: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunks: chunked::Scanner::default(),
        }
    }

    fn done(&self) -> bool {
        match self.framing {
            Framing::Empty => true,
            Framing::Length(_) => self.remaining == 0,
            Framing::Chunked => self.chunks.is_done(),
            Framing::UntilClose => false,
        }
    }

    /// How many bytes at the front of `buf` belong to this body (all of them unless it ends
    /// inside `buf`); the state moves past them. Bytes after the body's end are the next message.
    fn claim(&mut self, buf: &[u8]) -> Result<usize, chunked::BadChunk> {
        let n = match self.framing {
            Framing::Empty => 0,
            Framing::Length(_) => (self.remaining.min(buf.len() as u64)) as usize,
            Framing::Chunked => self.chunks.scan(buf)?,
            Framing::UntilClose => buf.len(),
        };
        if let Framing::Length(_) = self.framing {
            self.remaining -= n as u64;
        }
        Ok(n)
    }
}

async fn connect(addr: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let stream = timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Write an IP address in text without allocating.
fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    use std::io::Write;
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    };
    let _ = write!(out, "{ip}");
}

//! One request/response exchange as named steps, in the order they happen:
//!
//! 1. **plan** (`runtime::policy::plan`): route, client IP, WebSocket policy, the client's pin,
//!    engine.io's query. Nothing has touched a node yet; a refusal here is answered without one.
//! 2. [**connect**](upstream::connect): pick a node (the pin, or a new placement), take an
//!    idle connection to it or open one; a node that refuses is marked tried and another picked.
//! 3. [**send**](Conn::send): the rewritten head and the body, client → node.
//! 4. [**read head**](Conn::read_head): the response head, forwarding interim `1xx` answers.
//!    Steps 3 and 4 run again, once, on a fresh connection when a pooled one turns out to have
//!    been closed by the node (the retry rule, `runtime::failure::may_resend`).
//! 5. [**tunnel**](Conn::tunnel) after `101`, else [**respond**](Conn::respond): the body step
//!    (streamed, or an engine.io handshake read whole and tagged), then the tail (the node
//!    connection back to the pool, keep-alive or close).
//! 6. [**end**](Conn::end): a failure is answered if no response head went out yet (a client
//!    that went away gets nothing), and the exchange's one [outcome](crate::engine::outcome) is
//!    recorded, whatever step it ended in.
//!
//! Every step takes the one [`Exchange`] value and returns a [`Failure`] when it ends the
//! exchange early.

pub(in crate::engine) mod engineio;
pub(in crate::engine) mod forward;
pub(in crate::engine) mod upstream;

use self::forward::{plain_for, ResponseHead};
use self::upstream::Upstream;
use super::conn::{Conn, Next};
use super::outcome::{self, Outcome};
use super::{pool, tunnel};
use crate::http1::body::{claim_into, Body};
use crate::http1::head::{self, Framing, Kind};
use crate::runtime::failure::{self, Attempt, Failure, NodeFailure, Progress, Refusal};
use crate::runtime::policy::{self, Plan};
use crate::runtime::request::{Field, RequestView};
use crate::runtime::{unix_now, Runtime};
use bytes::Buf;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Interim (1xx) responses forwarded per request; a node sending more is broken (502).
const MAX_INTERIM: usize = 16;

/// One exchange after its plan: what every later step reads and updates.
pub(in crate::engine) struct Exchange<'rt> {
    /// The request head (ranges into the connection's client buffer until step 3 consumes it).
    pub req: head::Request,
    pub plan: Plan<'rt>,
    /// The one clock of the exchange: when its request head had been read.
    pub started: Instant,
    /// The node the request reached, once connected.
    pub node: Option<usize>,
    /// How far the current attempt at the node got (the retry rule reads it).
    pub attempt: Attempt,
    /// The `Set-Cookie` the response carries (a new or moved pin).
    pub set_cookie: Option<String>,
    /// The status the client was sent, once a response head went out: from then on a failure
    /// only closes the connection.
    pub sent: Option<u16>,
}

/// An HTTP/1 request head as the request policy reads it.
struct H1<'a> {
    buf: &'a [u8],
    fields: &'a [head::Field],
    req: &'a head::Request,
}

impl H1<'_> {
    fn kind(field: Field<'_>) -> Option<Kind> {
        Some(match field {
            Field::Cookie => Kind::Cookie,
            Field::XForwardedFor => Kind::XForwardedFor,
            Field::Origin => Kind::Origin,
            Field::Upgrade => Kind::Upgrade,
            Field::SecWebSocketKey => Kind::SecWebSocketKey,
            Field::SecWebSocketVersion => Kind::SecWebSocketVersion,
            Field::Named(_) => return None,
        })
    }
}

impl RequestView for H1<'_> {
    fn method(&self) -> &[u8] {
        &self.buf[self.req.method.clone()]
    }
    fn authority(&self) -> Option<&[u8]> {
        self.req
            .host
            .map(|(a, b)| &self.buf[a as usize..b as usize])
    }
    fn target(&self) -> &[u8] {
        &self.buf[self.req.path.clone()]
    }
    fn upgrade(&self) -> bool {
        self.req.upgrade
    }
    fn values<'s>(&'s self, field: Field<'_>) -> impl DoubleEndedIterator<Item = &'s [u8]> {
        // Known fields by the kind the parser gave them; any other by name.
        let (kind, name) = match (H1::kind(field), field) {
            (Some(kind), _) => (Some(kind), &b""[..]),
            (None, Field::Named(n)) => (None, n.as_bytes()),
            (None, _) => (None, &b""[..]),
        };
        let buf = self.buf;
        self.fields
            .iter()
            .filter(move |f| match kind {
                Some(k) => f.kind == k,
                None => f.name(buf).eq_ignore_ascii_case(name),
            })
            .map(move |f| f.value(buf))
    }
}

/// The node's bytes behind its `101` as whole RFC 6455 frames ending between two (its greeting,
/// usually), and how many; `None` when they break off inside a frame or break a rule (the
/// tunnel then reads them as its first bytes).
pub(in crate::engine) fn whole_frames(data: &[u8], rsv: u8) -> Option<u32> {
    let rules = crate::ws::Rules {
        from_client: false,
        rsv,
    };
    let mut t = crate::ws::Tracker::default();
    let (mut at, mut frames) = (0, 0u32);
    while at < data.len() {
        match t.next(&data[at..], rules).ok()? {
            crate::ws::Event::Data { n, header } => {
                frames += u32::from(header.is_some());
                at += n;
            }
            crate::ws::Event::Control(c) => {
                frames += 1;
                at += c.len;
            }
            crate::ws::Event::NeedMore => return None,
        }
    }
    (t == crate::ws::Tracker::default()).then_some(frames)
}

/// For a `101` to `websocket`, the RSV bits its negotiated extensions allow: RSV1 for
/// `permessage-deflate` alone, all three for an extension tether does not know (it cannot judge
/// them), none without extensions. `None`: another protocol, relayed as bytes.
pub(in crate::engine) fn websocket_of(buf: &[u8], fields: &[head::Field]) -> Option<u8> {
    let is = |f: &head::Field, name: &[u8]| f.name(buf).eq_ignore_ascii_case(name);
    let websocket = fields.iter().any(|f| {
        f.kind == Kind::Upgrade
            && f.value(buf)
                .split(|&b| b == b',')
                .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    });
    if !websocket {
        return None;
    }
    let mut rsv = 0;
    for f in fields.iter().filter(|f| is(f, b"sec-websocket-extensions")) {
        for ext in f.value(buf).split(|&b| b == b',') {
            let name = ext.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
            rsv |= if name.eq_ignore_ascii_case(b"permessage-deflate") {
                0x40
            } else if name.is_empty() {
                0
            } else {
                0x70
            };
        }
    }
    Some(rsv)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// One request/response exchange (or the start of a tunnel), from its head to its outcome.
    pub(in crate::engine) async fn exchange(&mut self, req: head::Request, rt: &Runtime) -> Next {
        let started = Instant::now();
        self.remember(&req);
        let view = H1 {
            buf: &self.bufs.cbuf,
            fields: &self.bufs.fields,
            req: &req,
        };
        // An ACME HTTP-01 validation of an order in progress (plain listeners only: the CA
        // asks on port 80) is answered here, before routing, and never reaches a node.
        if !self.tls {
            if let Some(answer) = crate::certs::http01(view.target()) {
                return self.challenge_answer(&answer, started, &req).await;
            }
        }
        let plan = match policy::plan(rt, &view, self.peer.ip(), unix_now()) {
            Ok(plan) => plan,
            Err(refusal) => return self.refused(refusal, started, &req).await,
        };
        let mut x = Exchange {
            req,
            plan,
            started,
            node: None,
            attempt: Attempt::first(false),
            set_cookie: None,
            sent: None,
        };
        let result = self.run(&mut x).await;
        self.end(&x, result).await
    }

    /// Steps 2 to 5.
    async fn run(&mut self, x: &mut Exchange<'_>) -> Result<Next, Failure> {
        let mut up = upstream::connect(&mut x.plan, x.req.upgrade).await?;
        x.node = Some(up.node);
        let resp = self.send_and_read_head(x, &mut up).await?;
        x.set_cookie = x
            .plan
            .placement
            .set_cookie(x.plan.pool, unix_now(), self.tls);
        if resp.status == 101 {
            if !x.req.upgrade {
                return Err(NodeFailure::UnaskedUpgrade.into());
            }
            return self.tunnel(x, up, &resp).await;
        }
        self.respond(x, up, &resp).await
    }

    /// Keep the method and target for the access log (only when it is on: two copies into
    /// buffers this connection reuses), and start its byte counts.
    fn remember(&mut self, req: &head::Request) {
        self.body_in = 0;
        self.written = 0;
        if super::access::enabled() {
            self.bufs.log_method.clear();
            self.bufs
                .log_method
                .extend_from_slice(&self.bufs.cbuf[req.method.clone()]);
            self.bufs.log_target.clear();
            self.bufs
                .log_target
                .extend_from_slice(&self.bufs.cbuf[req.target.clone()]);
        }
    }

    /// Steps 3 and 4, with the one resend a stale pooled connection may earn.
    async fn send_and_read_head(
        &mut self,
        x: &mut Exchange<'_>,
        up: &mut Upstream,
    ) -> Result<head::Response, Failure> {
        let idempotent = failure::idempotent(&self.bufs.cbuf[x.req.method.clone()]);
        // The rewritten head and whatever body bytes are already here, in one write.
        self.write_request_head(&x.req, &x.plan.engineio.strip);
        self.consume_client(x.req.len);
        let mut body = Body::new(x.req.framing, false, self.limits.max_head_bytes);
        let n = claim_into(&mut body, &self.bufs.cbuf, &mut self.bufs.out)
            .map_err(|_| Refusal::BadRequest)?;
        self.consume_client(n);
        // The whole request is in `out`: it could be sent again.
        let whole = body.done();
        x.attempt = Attempt::first(up.pooled);
        loop {
            let result = match self.send(x, up, &mut body).await {
                Ok(()) => self.read_head(x, up).await,
                Err(f) => Err(f),
            };
            x.attempt.response_bytes = !self.bufs.ubuf.is_empty();
            match result {
                Err(Failure::Node(f)) if failure::may_resend(f, x.attempt, whole, idempotent) => {
                    up.reopen(x.plan.pool, f).await?;
                    x.attempt = Attempt::resend();
                }
                other => return other,
            }
        }
    }

    /// Step 3: the request head (with any body bytes already read) and the rest of the body.
    async fn send(
        &mut self,
        x: &mut Exchange<'_>,
        up: &mut Upstream,
        body: &mut Body,
    ) -> Result<(), Failure> {
        let limit = x.plan.pool.timeouts.send;
        upstream::send(
            &mut self.deadline,
            &mut up.stream,
            &self.bufs.out,
            limit,
            &mut x.attempt,
        )
        .await?;
        if !body.done() {
            if x.req.expect_continue {
                // We forward the body ourselves, so we (like nginx) tell the client to send it.
                self.write_client(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            self.stream_request_body(x, up, body).await?;
        }
        Ok(())
    }

    /// Step 4: the response head, forwarding interim `1xx` answers to an HTTP/1.1 client as
    /// they come (an HTTP/1.0 client gets none, RFC 9110 §15.2). The whole step, interim
    /// answers included, is bounded by `timeouts.read`, and so is their number.
    async fn read_head(
        &mut self,
        x: &mut Exchange<'_>,
        up: &mut Upstream,
    ) -> Result<head::Response, Failure> {
        self.bufs.ubuf.clear();
        let until = tokio::time::Instant::now() + x.plan.pool.timeouts.read;
        for _ in 0..=MAX_INTERIM {
            let resp = upstream::read_head(
                &mut self.deadline,
                &mut up.stream,
                &mut self.bufs.ubuf,
                &mut self.bufs.ufields,
                x.req.head,
                until,
                self.limits.max_head_bytes,
            )
            .await?;
            if !(100..200).contains(&resp.status) || resp.status == 101 {
                return Ok(resp);
            }
            x.attempt.progress = Progress::Answered;
            if x.req.minor == 1 {
                self.write_interim_head(&resp);
                self.flush_out().await?;
            }
            self.bufs.ubuf.advance(resp.len);
        }
        Err(NodeFailure::BadResponse.into())
    }

    /// Step 5a: `101`: the response head and any early bytes each way, then the connection is
    /// handed over to a [tunnel](tunnel::Tunnel) that runs in a task of its own.
    async fn tunnel(
        &mut self,
        x: &mut Exchange<'_>,
        mut up: Upstream,
        resp: &head::Response,
    ) -> Result<Next, Failure> {
        let pool = x.plan.pool;
        up.guard.into_tunnel();
        let how = ResponseHead {
            set_cookie: x.set_cookie.as_deref(),
            keep: true,
            client_minor: 1,
            plain: false,
            body_length: None,
        };
        self.write_response_head(resp, &how);
        let websocket = websocket_of(&self.bufs.ubuf, &self.bufs.ufields)
            .filter(|_| x.plan.websocket_upgrade)
            .map(|rsv| tunnel::WsSettings {
                rsv,
                ping_interval: x.plan.websocket.ping_interval,
                ping_timeout: x.plan.websocket.ping_timeout,
            });
        // Bytes each side sent after its head belong to the new protocol. A byte tunnel sends
        // them on here; a WebSocket tunnel reads them as its first frames (they are checked
        // like any other).
        let early_down = &self.bufs.ubuf[resp.len..];
        // The node's greeting is usually whole frames: it goes out with the 101, counted.
        let greeting = websocket.and_then(|w| whole_frames(early_down, w.rsv));
        let early = match websocket {
            Some(_) if greeting.is_none() || !self.bufs.cbuf.is_empty() => {
                Some(Box::new(tunnel::Early {
                    up: self.bufs.cbuf.to_vec(),
                    down: if greeting.is_some() {
                        Vec::new()
                    } else {
                        early_down.to_vec()
                    },
                }))
            }
            _ => None,
        };
        let sent_down = match greeting {
            Some(frames) if frames > 0 => [early_down.len() as u32, frames],
            _ => [0, 0],
        };
        if websocket.is_none() || greeting.is_some() {
            self.bufs.out.extend_from_slice(early_down);
        }
        self.flush_out().await?;
        x.sent = Some(101);
        if websocket.is_none() && !self.bufs.cbuf.is_empty() {
            upstream::send(
                &mut self.deadline,
                &mut up.stream,
                &self.bufs.cbuf,
                pool.timeouts.send,
                &mut x.attempt,
            )
            .await?;
        }
        // Of the access log's copies only the path goes along: a query may carry tokens.
        let path_end = self
            .bufs
            .log_target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(self.bufs.log_target.len());
        Ok(Next::Tunnel(Box::new(tunnel::Handover {
            node: up.stream,
            guard: up.guard,
            client_ip: x.plan.client_ip,
            path: self.bufs.log_target[..path_end].into(),
            started: x.started,
            settings: tunnel::Settings {
                idle: pool.timeouts.tunnel_idle,
                websocket,
                stats: std::sync::Arc::clone(&pool.stats),
                upstream: pool.name.as_str().into(),
            },
            early,
            sent_down,
            protocol: super::access::Protocol::http1(x.req.minor),
        })))
    }

    /// Step 5b: the body step, then the tail. An engine.io handshake's answer is read whole
    /// and tagged; any other body is streamed as it comes. Then the node connection goes back
    /// to the pool when its response ended cleanly with nothing left over, and the client
    /// connection stays open when both sides allow it.
    async fn respond(
        &mut self,
        x: &mut Exchange<'_>,
        mut up: Upstream,
        resp: &head::Response,
    ) -> Result<Next, Failure> {
        let tagged = match (x.plan.handshake(), resp.status) {
            (Some(version), 200) => self.read_handshake(x, &mut up, resp, version).await?,
            _ => None,
        };
        let keep = match tagged {
            Some(t) => {
                let keep = x.req.keep_alive && !self.shutting_down();
                let how = ResponseHead {
                    set_cookie: x.set_cookie.as_deref(),
                    keep,
                    client_minor: x.req.minor,
                    plain: false,
                    body_length: Some(t.body.len() as u64),
                };
                forward::render_response_head(
                    &mut self.bufs.out,
                    &t.node_head,
                    &self.bufs.ufields,
                    resp,
                    &how,
                );
                self.bufs.out.extend_from_slice(&t.body);
                self.flush_out().await?;
                x.sent = Some(resp.status);
                keep
            }
            None => {
                let plain = plain_for(resp, x.req.minor);
                let keep = x.req.keep_alive
                    && resp.framing != Framing::UntilClose
                    && !plain
                    && !self.shutting_down();
                let how = ResponseHead {
                    set_cookie: x.set_cookie.as_deref(),
                    keep,
                    client_minor: x.req.minor,
                    plain,
                    body_length: None,
                };
                self.write_response_head(resp, &how);
                self.stream_response(x, &mut up, resp, plain).await?;
                keep
            }
        };
        if resp.keep_alive && self.bufs.ubuf.is_empty() {
            let pool = x.plan.pool;
            pool::put(pool.nodes[up.node].address, up.stream, pool.timeouts.idle);
        }
        Ok(if keep { Next::KeepAlive } else { Next::Close })
    }

    /// Step 6: answer a failure whose response has not begun (a client that went away gets
    /// nothing), and record the exchange's one outcome.
    async fn end(&mut self, x: &Exchange<'_>, result: Result<Next, Failure>) -> Next {
        let (next, failure) = match result {
            Ok(next) => (next, None),
            Err(f) => (Next::Close, Some(f)),
        };
        let status = match (failure, x.sent) {
            (Some(Failure::ClientGone), _) => failure::CLIENT_GONE_STATUS,
            (_, Some(sent)) => sent,
            (Some(f), None) => {
                if let Some(answer) = f.answer() {
                    self.answer(answer).await;
                }
                f.status()
            }
            // A response that went out sets `sent`; an Ok without one cannot happen.
            (None, None) => 0,
        };
        let pool = x.plan.pool;
        tracing::debug!(
            upstream = %pool.name, node = ?x.node.map(|n| pool.nodes[n].id.as_str()), status,
            failure = failure.map(Failure::name), decision = ?x.plan.placement.decision,
            elapsed_us = x.started.elapsed().as_micros() as u64, "request"
        );
        outcome::record(&Outcome {
            pool: Some(pool),
            client: x.plan.client_ip,
            method: &self.bufs.log_method,
            target: &self.bufs.log_target,
            decision: x.plan.placement.decision,
            node: x.node,
            status,
            failure,
            upgrade: x.req.upgrade,
            tunnel: matches!(next, Next::Tunnel(_)),
            bytes_in: x.req.len as u64 + self.body_in,
            bytes_out: self.written,
            started: x.started,
            protocol: super::access::Protocol::http1(x.req.minor),
        });
        next
    }

    /// Answer an ACME HTTP-01 validation with its key authorization, and close.
    async fn challenge_answer(
        &mut self,
        answer: &str,
        started: Instant,
        req: &head::Request,
    ) -> Next {
        use std::io::Write as _;
        self.bufs.out.clear();
        let _ = write!(
            self.bufs.out,
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        self.send_and_close().await;
        outcome::record(&Outcome {
            status: 200,
            ..self.answered_here(started, req)
        });
        Next::Close
    }

    /// A request the policy refused: answered, and its one outcome recorded.
    async fn refused(&mut self, refusal: Refusal, started: Instant, req: &head::Request) -> Next {
        self.answer(refusal.answer()).await;
        outcome::record(&self.answered_here(started, req).refused(refusal));
        Next::Close
    }

    /// The outcome of a request tether answered itself, before routing.
    fn answered_here<'a>(&'a self, started: Instant, req: &head::Request) -> Outcome<'a> {
        Outcome {
            upgrade: req.upgrade,
            bytes_in: req.len as u64,
            bytes_out: self.written,
            ..Outcome::local(
                self.peer.ip(),
                &self.bufs.log_method,
                &self.bufs.log_target,
                started,
                super::access::Protocol::http1(req.minor),
            )
        }
    }
}

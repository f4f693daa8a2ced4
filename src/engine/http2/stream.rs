//! One HTTP/2 stream as one exchange, in the same named steps as an HTTP/1.1 exchange
//! (`engine::exchange`), over the same node-side functions:
//!
//! 1. **check and plan**: the stream's request checked ([`H2View`]) and read by the same
//!    request policy as HTTP/1.1 (route by `:authority` and path, client IP, the Origin rules
//!    for an extended CONNECT, the pin, engine.io's query).
//! 2. **body ahead**: up to one stream window of the request body is read before any node is
//!    contacted. A body that ends within it (nearly all do) is checked whole by h2 first (a
//!    `content-length` that disagrees with the DATA resets the stream with nothing forwarded),
//!    goes to the node with its length, and may be sent again on a fresh connection if a pooled
//!    one was stale. A stream the client reset meanwhile (rapid reset) never reaches a node.
//! 3. **connect, send, read head**: `exchange::upstream`'s connect (pin, placement, re-pins),
//!    the HTTP/1.1 head ([`head::request_head`]) and body, the response head under
//!    `timeouts.read` (and abandoned at once if the client resets the stream).
//! 4. **respond**: the response head becomes the stream's (an engine.io handshake's body read
//!    whole and tagged first), the body goes out as DATA as it arrives, within the flow control
//!    the client grants (`limits.write_timeout` for each wait). For an extended CONNECT, a
//!    `101` whose `Sec-WebSocket-Accept` proves the key becomes `200` and the stream a tunnel;
//!    any other answer is the stream's response.
//! 5. **end**: a failure before the head is answered on the stream (after it, the stream is
//!    reset: the client never sees a false end), and the one outcome recorded.

use super::head::{self as h2head, BodyFraming, NodeRequest};
use super::view::{H2View, Malformed};
use super::{Connection, STREAM_WINDOW};
use crate::engine::access::Protocol;
use crate::engine::deadline::Deadline;
use crate::engine::exchange::engineio::read_handshake;
use crate::engine::exchange::upstream::{self, Upstream};
use crate::engine::exchange::{websocket_of, whole_frames};
use crate::engine::outcome::{self, Outcome};
use crate::engine::{pool, tunnel};
use crate::h2stream::StreamIo;
use crate::http1::body::{Body, Claim};
use crate::http1::head;
use crate::runtime::counters::global;
use crate::runtime::failure::{self, Answer, Attempt, Failure, NodeFailure, Progress, Refusal};
use crate::runtime::policy::{self, Plan};
use crate::runtime::request::RequestView;
use crate::runtime::unix_now;
use bytes::{Buf, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

/// Interim (1xx) responses read per request; a node sending more is broken (502).
const MAX_INTERIM: usize = 16;
/// Read size for response bodies.
const READ_CHUNK: usize = 8 * 1024;

/// What the steps of one stream read and update.
struct Exchange<'rt> {
    plan: Plan<'rt>,
    started: Instant,
    node: Option<usize>,
    attempt: Attempt,
    set_cookie: Option<String>,
    /// The status the client was sent, once the response head went out.
    sent: Option<u16>,
}

/// One stream's sockets, buffers and counts.
struct Stream<'c> {
    conn: &'c Connection,
    /// Until the response head goes out.
    respond: Option<SendResponse<Bytes>>,
    /// After it.
    send: Option<SendStream<Bytes>>,
    recv: Option<RecvStream>,
    deadline: Deadline,
    ubuf: BytesMut,
    ufields: Vec<head::Field>,
    out: Vec<u8>,
    body_in: u64,
    written: u64,
}

/// A tunnel to start once the stream's outcome is recorded.
struct Tunnelled {
    handover: Box<tunnel::Handover>,
}

/// Serve one stream to its end (or until it becomes a tunnel, relayed in a task of its own).
pub(super) async fn serve(
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    conn: Arc<Connection>,
) {
    let started = Instant::now();
    let (parts, recv) = request.into_parts();
    let protocol = parts
        .extensions
        .get::<h2::ext::Protocol>()
        .map(|p| p.as_str().as_bytes());
    let rt = conn.runtime.load_full();
    let mut s = Stream {
        conn: &conn,
        respond: Some(respond),
        send: None,
        recv: Some(recv),
        deadline: Deadline::new(),
        ubuf: BytesMut::new(),
        ufields: Vec::new(),
        out: Vec::new(),
        body_in: 0,
        written: 0,
    };
    let method = parts.method.as_str().as_bytes();
    let target = parts
        .uri
        .path_and_query()
        .map_or(&b"-"[..], |p| p.as_str().as_bytes());
    let view = match H2View::new(&parts, protocol) {
        Ok(view) => view,
        Err(m) => {
            s.malformed(m, method, target, started);
            conn.stream_ended();
            return;
        }
    };
    let websocket = view.extended_connect();
    global::COUNTERS.inc(if websocket {
        global::H2_WEBSOCKETS
    } else {
        global::H2_STREAMS
    });
    let planned = if view.target().len() > conn.limits.max_uri_bytes {
        Err(Refusal::UriTooLong)
    } else {
        policy::plan(&rt, &view, conn.peer.ip(), unix_now())
    };
    let tunnelled = match planned {
        Err(refusal) => {
            s.refused(refusal, &view, started).await;
            None
        }
        Ok(plan) => {
            let mut x = Exchange {
                plan,
                started,
                node: None,
                attempt: Attempt::first(false),
                set_cookie: None,
                sent: None,
            };
            let result = if websocket {
                s.websocket(&view, &mut x).await
            } else {
                s.exchange(&view, &mut x).await
            };
            s.end(&x, result, method, target, websocket).await
        }
    };
    drop(view);
    if let Some(t) = tunnelled {
        // The stream's task (sized for every step above) ends; the relay's small one goes on.
        if let (Some(send), Some(recv)) = (s.send.take(), s.recv.take()) {
            let tunnel = (*t.handover).with_client(StreamIo::new(send, recv));
            tokio::spawn(tunnel.relay());
        }
    }
    conn.stream_ended();
}

impl Stream<'_> {
    /// Steps 2 to 4 for a request.
    async fn exchange(
        &mut self,
        view: &H2View<'_>,
        x: &mut Exchange<'_>,
    ) -> Result<Option<Tunnelled>, Failure> {
        let ahead = self.read_ahead(view).await?;
        let whole = self.recv.as_ref().is_none_or(RecvStream::is_end_stream);
        let declared = view
            .parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let framing = match (whole, declared) {
            (true, None) if ahead.is_empty() => BodyFraming::None,
            (true, _) => BodyFraming::Length(ahead.len() as u64),
            (false, Some(n)) => BodyFraming::Length(n),
            (false, None) => BodyFraming::Chunked,
        };
        self.client_still_there()?;
        let mut up = upstream::connect(&mut x.plan, false).await?;
        x.node = Some(up.node);
        h2head::request_head(
            &mut self.out,
            &NodeRequest {
                view,
                strip: &x.plan.engineio.strip,
                body: framing,
                peer: self.conn.peer.ip(),
                websocket_key: None,
            },
        );
        if framing == BodyFraming::Chunked {
            push_chunk(&mut self.out, &ahead);
        } else {
            self.out.extend_from_slice(&ahead);
        }
        self.body_in = ahead.len() as u64;
        let idempotent = failure::idempotent(view.parts.method.as_str().as_bytes());
        let head_request = view.parts.method == http::Method::HEAD;
        x.attempt = Attempt::first(up.pooled);
        let resp = loop {
            let result = match self.send(x, &mut up, framing, whole).await {
                Ok(()) => self.read_head(x, &mut up, head_request).await,
                Err(f) => Err(f),
            };
            x.attempt.response_bytes = !self.ubuf.is_empty();
            match result {
                Err(Failure::Node(f)) if failure::may_resend(f, x.attempt, whole, idempotent) => {
                    up.reopen(x.plan.pool, f).await?;
                    x.attempt = Attempt::resend();
                }
                other => break other?,
            }
        };
        if resp.status == 101 {
            return Err(NodeFailure::UnaskedUpgrade.into());
        }
        x.set_cookie = x
            .plan
            .placement
            .set_cookie(x.plan.pool, unix_now(), self.conn.tls);
        self.respond(x, up, &resp).await?;
        Ok(None)
    }

    /// Steps 2 to 4 for an extended CONNECT (RFC 8441): an HTTP/1.1 Upgrade to the client's
    /// node with a key of tether's own; a `101` that proves it becomes `200` and a tunnel.
    async fn websocket(
        &mut self,
        view: &H2View<'_>,
        x: &mut Exchange<'_>,
    ) -> Result<Option<Tunnelled>, Failure> {
        self.client_still_there()?;
        let key = h2head::websocket_key();
        let mut up = upstream::connect(&mut x.plan, true).await?;
        x.node = Some(up.node);
        h2head::request_head(
            &mut self.out,
            &NodeRequest {
                view,
                strip: &x.plan.engineio.strip,
                body: BodyFraming::None,
                peer: self.conn.peer.ip(),
                websocket_key: Some(&key),
            },
        );
        x.attempt = Attempt::first(up.pooled);
        let pool = x.plan.pool;
        upstream::send(
            &mut self.deadline,
            &mut up.stream,
            &self.out,
            pool.timeouts.send,
            &mut x.attempt,
        )
        .await?;
        let resp = self.read_head(x, &mut up, false).await?;
        x.set_cookie = x.plan.placement.set_cookie(pool, unix_now(), self.conn.tls);
        if resp.status != 101 {
            // Any other answer is the stream's response.
            self.respond(x, up, &resp).await?;
            return Ok(None);
        }
        let rsv = websocket_of(&self.ubuf, &self.ufields)
            .filter(|_| h2head::accepts(&self.ubuf, &self.ufields, &key))
            .ok_or_else(|| {
                tracing::warn!(upstream = %pool.name, node = %pool.nodes[up.node].id, "node answered a WebSocket upgrade without the right Sec-WebSocket-Accept; not a tunnel");
                NodeFailure::BadResponse
            })?;
        up.guard.into_tunnel();
        let response = h2head::response(
            &self.ubuf,
            &self.ufields,
            &resp,
            x.set_cookie.as_deref(),
            None,
        )
        .map_err(|_| NodeFailure::BadResponse)?;
        let mut send = self.send_head(response, false)?;
        x.sent = Some(200);
        // The node's greeting behind its 101 goes out with the 200 when it is whole frames;
        // otherwise the tunnel reads it first, like any later bytes.
        let early_down = self.ubuf.split_off(resp.len);
        let greeting = whole_frames(&early_down, rsv);
        let (early, sent_down) = match greeting {
            Some(frames) => {
                if !early_down.is_empty() {
                    self.written += early_down.len() as u64;
                    send.send_data(early_down.clone().freeze(), false)
                        .map_err(|_| Failure::ClientGone)?;
                }
                (None, [early_down.len() as u32, frames])
            }
            None => (
                Some(Box::new(tunnel::Early {
                    up: Vec::new(),
                    down: early_down.to_vec(),
                })),
                [0, 0],
            ),
        };
        self.send = Some(send);
        let path = view.target();
        let path_end = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
        Ok(Some(Tunnelled {
            handover: Box::new(tunnel::Handover {
                node: up.stream,
                guard: up.guard,
                client_ip: x.plan.client_ip,
                path: path[..path_end].into(),
                started: x.started,
                settings: tunnel::Settings {
                    idle: pool.timeouts.tunnel_idle,
                    websocket: Some(tunnel::WsSettings {
                        rsv,
                        ping_interval: x.plan.websocket.ping_interval,
                        ping_timeout: x.plan.websocket.ping_timeout,
                    }),
                    stats: Arc::clone(&pool.stats),
                    upstream: pool.name.as_str().into(),
                },
                early,
                sent_down,
                protocol: Protocol::Http2,
            }),
        }))
    }

    /// Step 2: read the request body ahead, up to one stream window, before any node is
    /// contacted. A client that asked for `100-continue` is told to go on first.
    async fn read_ahead(&mut self, view: &H2View<'_>) -> Result<Vec<u8>, Failure> {
        let mut ahead = Vec::new();
        let Some(recv) = self.recv.as_mut() else {
            return Ok(ahead);
        };
        if recv.is_end_stream() {
            return Ok(ahead);
        }
        let expects = view
            .parts
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if let (true, Some(respond)) = (expects, self.respond.as_mut()) {
            let go_on = http::Response::builder().status(100).body(()).ok();
            if let Some(r) = go_on {
                let _ = respond.send_informational(r);
            }
        }
        let limit = self.conn.limits.body_timeout;
        while !recv.is_end_stream() && ahead.len() < STREAM_WINDOW as usize {
            match self.deadline.limit(limit, recv.data()).await {
                None => return Err(Refusal::BodyTimeout.into()),
                Some(None) => break,
                Some(Some(Ok(chunk))) => {
                    let _ = recv.flow_control().release_capacity(chunk.len());
                    ahead.extend_from_slice(&chunk);
                }
                Some(Some(Err(e))) => return Err(stream_error(self.conn, &e)),
            }
        }
        Ok(ahead)
    }

    /// A stream the client has reset (cancelled) ends here, before a node is contacted: a
    /// rapid reset costs tether the stream's setup, not a node connection and request.
    fn client_still_there(&mut self) -> Result<(), Failure> {
        let Some(respond) = self.respond.as_mut() else {
            return Ok(());
        };
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match respond.poll_reset(&mut cx) {
            Poll::Ready(_) => {
                self.conn.resets.count();
                global::COUNTERS.inc(global::H2_RESETS);
                Err(Failure::ClientGone)
            }
            Poll::Pending => Ok(()),
        }
    }

    /// Step 3: the head (with the body read ahead) and the rest of the body, as it arrives.
    async fn send(
        &mut self,
        x: &mut Exchange<'_>,
        up: &mut Upstream,
        framing: BodyFraming,
        whole: bool,
    ) -> Result<(), Failure> {
        let limit = x.plan.pool.timeouts.send;
        upstream::send(
            &mut self.deadline,
            &mut up.stream,
            &self.out,
            limit,
            &mut x.attempt,
        )
        .await?;
        if whole {
            return Ok(());
        }
        let Some(recv) = self.recv.as_mut() else {
            return Ok(());
        };
        let chunked = framing == BodyFraming::Chunked;
        let body_limit = self.conn.limits.body_timeout;
        loop {
            let chunk = match self.deadline.limit(body_limit, recv.data()).await {
                None => return Err(Refusal::BodyTimeout.into()),
                Some(None) => break,
                Some(Some(Ok(chunk))) => chunk,
                Some(Some(Err(e))) => return Err(stream_error(self.conn, &e)),
            };
            self.body_in += chunk.len() as u64;
            let data: &[u8] = if chunked {
                self.out.clear();
                push_chunk(&mut self.out, &chunk);
                &self.out
            } else {
                &chunk
            };
            upstream::send(
                &mut self.deadline,
                &mut up.stream,
                data,
                limit,
                &mut x.attempt,
            )
            .await?;
            // Released once the node has it: the client's window is end-to-end back-pressure.
            let _ = recv.flow_control().release_capacity(chunk.len());
        }
        if chunked {
            upstream::send(
                &mut self.deadline,
                &mut up.stream,
                b"0\r\n\r\n",
                limit,
                &mut x.attempt,
            )
            .await?;
        }
        Ok(())
    }

    /// Step 3's end: the response head, interim answers passed on (`103 Early Hints`...), all
    /// within `timeouts.read`; a client that resets the stream meanwhile ends the wait.
    async fn read_head(
        &mut self,
        x: &mut Exchange<'_>,
        up: &mut Upstream,
        head_request: bool,
    ) -> Result<head::Response, Failure> {
        self.ubuf.clear();
        let until = tokio::time::Instant::now() + x.plan.pool.timeouts.read;
        let max_head = self.conn.limits.max_head_bytes;
        for _ in 0..=MAX_INTERIM {
            let read = upstream::read_head(
                &mut self.deadline,
                &mut up.stream,
                &mut self.ubuf,
                &mut self.ufields,
                head_request,
                until,
                max_head,
            );
            let respond = &mut self.respond;
            let reset = poll_fn(|cx| match respond.as_mut() {
                Some(r) => r.poll_reset(cx).map(|_| ()),
                None => Poll::Pending,
            });
            let resp = tokio::select! {
                biased;
                r = read => r?,
                () = reset => {
                    self.conn.resets.count();
                    global::COUNTERS.inc(global::H2_RESETS);
                    return Err(Failure::ClientGone);
                }
            };
            if !(100..200).contains(&resp.status) || resp.status == 101 {
                return Ok(resp);
            }
            x.attempt.progress = Progress::Answered;
            if let (Ok(interim), Some(r)) = (
                h2head::response(&self.ubuf, &self.ufields, &resp, None, None),
                self.respond.as_mut(),
            ) {
                let _ = r.send_informational(interim);
            }
            self.ubuf.advance(resp.len);
        }
        Err(NodeFailure::BadResponse.into())
    }

    /// Step 4: the response head on the stream, then its body as DATA as it comes. The node
    /// connection goes back to the pool when its response ended cleanly.
    async fn respond(
        &mut self,
        x: &mut Exchange<'_>,
        mut up: Upstream,
        resp: &head::Response,
    ) -> Result<(), Failure> {
        let pool = x.plan.pool;
        let max_head = self.conn.limits.max_head_bytes;
        if let (Some(version), 200) = (x.plan.handshake(), resp.status) {
            let tagged = read_handshake(
                &mut self.deadline,
                &mut up,
                &mut self.ubuf,
                resp,
                version,
                pool,
                max_head,
            )
            .await?;
            if let Some(t) = tagged {
                let head = h2head::response(
                    &t.node_head,
                    &self.ufields,
                    resp,
                    x.set_cookie.as_deref(),
                    Some(t.body.len() as u64),
                )
                .map_err(|_| NodeFailure::BadResponse)?;
                let mut send = self.send_head(head, t.body.is_empty())?;
                x.sent = Some(resp.status);
                if !t.body.is_empty() {
                    self.send_all(&mut send, Bytes::from(t.body), true).await?;
                }
                self.send = Some(send);
                if resp.keep_alive && self.ubuf.is_empty() {
                    pool::put(pool.nodes[up.node].address, up.stream, pool.timeouts.idle);
                }
                return Ok(());
            }
        }
        let head = h2head::response(
            &self.ubuf,
            &self.ufields,
            resp,
            x.set_cookie.as_deref(),
            None,
        )
        .map_err(|_| NodeFailure::BadResponse)?;
        // Chunked framing decoded: HTTP/2 frames the data itself.
        let mut body = Body::new(resp.framing, true, max_head);
        self.ubuf.advance(resp.len);
        let mut send = self.send_head(head, body.done())?;
        x.sent = Some(resp.status);
        let read_timeout = pool.timeouts.read;
        loop {
            // What is buffered first, then one read from the node at a time.
            while !self.ubuf.is_empty() && !body.done() {
                self.out.clear();
                let claim = body
                    .claim(&self.ubuf, &mut self.out)
                    .map_err(|_| NodeFailure::BodyBroken)?;
                let (n, data) = match claim {
                    Claim::Raw(n) => (n, self.ubuf.split_to(n).freeze()),
                    Claim::Rewritten(n) => {
                        self.ubuf.advance(n);
                        (n, Bytes::copy_from_slice(&self.out))
                    }
                };
                if n == 0 {
                    break;
                }
                if !data.is_empty() {
                    self.send_all(&mut send, data, body.done()).await?;
                } else if body.done() {
                    end_stream(&mut send)?;
                }
            }
            if body.done() {
                break;
            }
            self.ubuf.reserve(READ_CHUNK);
            let read = self
                .deadline
                .limit(
                    read_timeout,
                    tokio::io::AsyncReadExt::read_buf(&mut up.stream, &mut self.ubuf),
                )
                .await;
            match read {
                // End of a close-delimited body is its normal end; any other EOF truncates it.
                Some(Ok(0)) if matches!(body, Body::UntilClose) => {
                    end_stream(&mut send)?;
                    self.send = Some(send);
                    return Ok(());
                }
                Some(Ok(0)) | Some(Err(_)) => {
                    self.send = Some(send);
                    return Err(NodeFailure::BodyBroken.into());
                }
                Some(Ok(_)) => {}
                None => {
                    self.send = Some(send);
                    return Err(NodeFailure::BodyTimeout.into());
                }
            }
        }
        self.send = Some(send);
        if resp.keep_alive && self.ubuf.is_empty() {
            pool::put(pool.nodes[up.node].address, up.stream, pool.timeouts.idle);
        }
        Ok(())
    }

    /// The response head on the stream; `Err`: the client reset it already.
    fn send_head(
        &mut self,
        head: http::Response<()>,
        end: bool,
    ) -> Result<SendStream<Bytes>, Failure> {
        let respond = self.respond.as_mut().ok_or(Failure::ClientGone)?;
        let send = respond
            .send_response(head, end)
            .map_err(|_| Failure::ClientGone)?;
        self.respond = None;
        Ok(send)
    }

    /// Send `data` as the client's flow control allows, each wait for window within
    /// `limits.write_timeout` (a client that stops reading is gone); `end` marks the last.
    async fn send_all(
        &mut self,
        send: &mut SendStream<Bytes>,
        mut data: Bytes,
        end: bool,
    ) -> Result<(), Failure> {
        let limit = self.conn.limits.write_timeout;
        self.written += data.len() as u64;
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let granted = self
                .deadline
                .limit(
                    limit,
                    poll_fn(|cx| match send.capacity() {
                        0 => send.poll_capacity(cx),
                        n => Poll::Ready(Some(Ok(n))),
                    }),
                )
                .await;
            let n = match granted {
                Some(Some(Ok(_))) => send.capacity().min(data.len()),
                _ => return Err(Failure::ClientGone),
            };
            if n == 0 {
                continue;
            }
            let part = data.split_to(n);
            send.send_data(part, end && data.is_empty())
                .map_err(|_| Failure::ClientGone)?;
        }
        Ok(())
    }

    /// Step 5: answer a failure whose response head has not gone out (reset the stream when
    /// it had), and record the stream's one outcome. Returns the tunnel to start, if any.
    async fn end(
        &mut self,
        x: &Exchange<'_>,
        result: Result<Option<Tunnelled>, Failure>,
        method: &[u8],
        target: &[u8],
        upgrade: bool,
    ) -> Option<Tunnelled> {
        let (tunnelled, failure) = match result {
            Ok(t) => (t, None),
            Err(f) => (None, Some(f)),
        };
        let status = match (failure, x.sent) {
            (Some(Failure::ClientGone), _) => {
                if let Some(send) = self.send.as_mut() {
                    send.send_reset(h2::Reason::CANCEL);
                }
                failure::CLIENT_GONE_STATUS
            }
            (Some(_), Some(sent)) => {
                // The head went out: the stream is reset, never ended as if whole.
                if let Some(send) = self.send.as_mut() {
                    send.send_reset(h2::Reason::INTERNAL_ERROR);
                }
                sent
            }
            (Some(f), None) => {
                if let Some(answer) = f.answer() {
                    self.answer(answer).await;
                }
                f.status()
            }
            (None, Some(sent)) => sent,
            (None, None) => 0,
        };
        let pool = x.plan.pool;
        tracing::debug!(
            upstream = %pool.name, node = ?x.node.map(|n| pool.nodes[n].id.as_str()), status,
            failure = failure.map(Failure::name), decision = ?x.plan.placement.decision,
            elapsed_us = x.started.elapsed().as_micros() as u64, "HTTP/2 stream"
        );
        outcome::record(&Outcome {
            pool: Some(pool),
            client: x.plan.client_ip,
            method,
            target,
            decision: x.plan.placement.decision,
            node: x.node,
            status,
            failure,
            upgrade,
            tunnel: tunnelled.is_some(),
            bytes_in: self.body_in,
            bytes_out: self.written,
            started: x.started,
            protocol: Protocol::Http2,
        });
        tunnelled
    }

    /// A request the policy refused: answered on the stream, and its one outcome recorded.
    async fn refused(&mut self, refusal: Refusal, view: &H2View<'_>, started: Instant) {
        self.answer(refusal.answer()).await;
        let local = Outcome::local(
            self.conn.peer.ip(),
            view.method(),
            view.target(),
            started,
            Protocol::Http2,
        );
        outcome::record(
            &Outcome {
                upgrade: view.upgrade(),
                bytes_out: self.written,
                ..local
            }
            .refused(refusal),
        );
    }

    /// A malformed stream: reset with PROTOCOL_ERROR (RFC 9113 §8.1.1), nothing forwarded,
    /// counted and logged as a bad request.
    fn malformed(&mut self, why: Malformed, method: &[u8], target: &[u8], started: Instant) {
        tracing::debug!(client = %self.conn.peer, ?why, "malformed HTTP/2 request: stream reset");
        global::COUNTERS.inc(global::H2_MALFORMED);
        if let Some(r) = self.respond.as_mut() {
            r.send_reset(h2::Reason::PROTOCOL_ERROR);
        }
        let local = Outcome::local(
            self.conn.peer.ip(),
            method,
            target,
            started,
            Protocol::Http2,
        );
        outcome::record(&local.refused(Refusal::BadRequest));
    }

    /// tether's own answer (a refusal or a node failure) as the stream's response.
    async fn answer(&mut self, answer: Answer) {
        let mut head = http::Response::builder()
            .status(answer.status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(http::header::CONTENT_LENGTH, answer.body.len());
        // Extra header lines (`name: value\r\n`), e.g. `sec-websocket-version: 13`.
        for line in answer.headers.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                head = head.header(&line[..colon], line[colon + 1..].trim_ascii());
            }
        }
        let Ok(head) = head.body(()) else {
            return;
        };
        if let Ok(mut send) = self.send_head(head, answer.body.is_empty()) {
            if !answer.body.is_empty() {
                let _ = self
                    .send_all(&mut send, Bytes::from_static(answer.body), true)
                    .await;
            }
            self.send = Some(send);
        }
    }
}

/// An error reading the client's stream: the client reset it (gone, counted toward rapid
/// reset), or h2 reset it for breaking the protocol (a `content-length` that disagrees with
/// the DATA: a bad request, nothing more forwarded).
fn stream_error(conn: &Connection, e: &h2::Error) -> Failure {
    if e.is_remote() && e.is_reset() {
        conn.resets.count();
        global::COUNTERS.inc(global::H2_RESETS);
        Failure::ClientGone
    } else if e.reason() == Some(h2::Reason::PROTOCOL_ERROR) {
        global::COUNTERS.inc(global::H2_MALFORMED);
        Refusal::BadRequest.into()
    } else {
        Failure::ClientGone
    }
}

/// END_STREAM with no more data.
fn end_stream(send: &mut SendStream<Bytes>) -> Result<(), Failure> {
    send.send_data(Bytes::new(), true)
        .map_err(|_| Failure::ClientGone)
}

/// One HTTP/1.1 chunk of `data` (nothing for no data: an empty chunk would end the body).
fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write as _;
    if !data.is_empty() {
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

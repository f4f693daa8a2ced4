//! The relay loop: both directions in one task, through the worker's scratch buffer, with the
//! frame tracking, liveness and ordered closes of a WebSocket tunnel.
//!
//! Each wake-up moves what is readable each way (a bounded number of reads), then looks at its
//! one timer. Frames of tether's own (a Ping for the client, the Closes it sends) wait in the
//! relay until their direction is between two frames, then go out in order behind whatever is
//! still queued for that peer.

use super::registry::{Command, Ticket};
use super::{Carried, End, Reason, WsSettings};
use crate::runtime::pool::{stat, PoolStats};
use crate::ws::{self, code, opcode, Event, Rules, Tracker, Violation};
use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant, Sleep};

/// Scratch size: one read's worth; larger messages simply take several reads.
const SCRATCH: usize = 16 * 1024;
/// Reads per direction per wake-up before yielding, so one busy tunnel cannot starve others.
const BUDGET: usize = 16;
/// After tether sent its Closes, how long the peers have to close their sides.
const LINGER: Duration = Duration::from_secs(2);
/// The payload of tether's Pings: the answering Pong carries it back, and is not forwarded.
const PING: &[u8; 8] = b"tether\x00\x00";

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// One direction's state.
#[derive(Default)]
struct Half {
    /// Bytes to write that the destination could not take yet (and tether's own frames).
    pending: Vec<u8>,
    /// The start of a header or control frame split across reads (at most 139 bytes), read
    /// again in front of the next bytes.
    held: Vec<u8>,
    /// The source has reached EOF (and the destination's write side was shut down).
    done: bool,
    /// No more of the source is forwarded (a Close of tether's went this way, or the source
    /// broke the protocol): what still comes is read and dropped.
    stopped: bool,
    /// Nothing more is written to the destination: tether's Close went to it (or a half-open
    /// client gets nothing at all).
    sealed: bool,
    /// Bytes read from the source, and frames seen.
    bytes: u64,
    frames: u64,
    tracker: Tracker,
    /// The code of the first Close frame the source sent.
    close: Option<u16>,
    /// A frame of tether's own for the destination, waiting for the next frame boundary.
    own: Option<Own>,
    /// The destination is the node (frames tether writes there are masked).
    to_node: bool,
}

/// What a pump saw that the relay acts on.
#[derive(Default)]
struct Seen {
    moved: bool,
    /// Bytes arrived from the source.
    read: bool,
    /// A Pong answering tether's Ping (dropped).
    pong: bool,
    /// tether's Ping went out (between two of the node's frames).
    pinged: bool,
    violation: Option<Violation>,
}

/// A WebSocket tunnel's liveness and the frames tether sends.
struct Ws {
    settings: WsSettings,
    /// When the client last sent anything.
    heard: Instant,
    /// A Ping went out at this time and nothing has come back since.
    pinged: Option<Instant>,
}

/// A frame of tether's own.
#[derive(Debug, Clone, Copy)]
enum Own {
    Ping,
    Close(u16),
}

/// What the relay needs of its handover besides the sockets.
pub(super) struct Params<'a> {
    pub idle: Duration,
    pub websocket: Option<WsSettings>,
    pub stats: &'a PoolStats,
    pub upstream: &'a str,
}

/// Relay until both sides are done, `idle` passes with no bytes moved either way, or tether
/// closes the tunnel (an order from the worker's supervisor, a client that answers no Ping, a
/// frame that breaks the protocol).
pub(super) async fn run<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    node: &mut TcpStream,
    h: &Params<'_>,
    ticket: &Ticket,
    early: Option<Box<super::Early>>,
) -> Carried {
    let now = Instant::now();
    let mut r = Relay {
        up: Half {
            to_node: true,
            ..Half::default()
        },
        down: Half::default(),
        ws: h.websocket.map(|settings| Ws {
            settings,
            heard: now,
            pinged: None,
        }),
        idle: h.idle,
        last_activity: now,
        timer: Box::pin(sleep_until(now + h.idle)),
        order: None,
        closing: None,
        first: None,
        first_close: None,
        flushed: [0; 4],
    };
    let first = r.next_deadline();
    r.timer.as_mut().reset(first);
    if let (Some(early), Some(ws)) = (early, r.ws.as_ref()) {
        let rules = Rules {
            from_client: true,
            rsv: ws.settings.rsv,
        };
        let mut seen = Seen::default();
        prime(&mut r.up, early.up, rules, &mut seen);
        prime(
            &mut r.down,
            early.down,
            Rules {
                from_client: false,
                ..rules
            },
            &mut seen,
        );
        if let Some(v) = seen.violation {
            tracing::debug!(upstream = %h.upstream, violation = ?v, "WebSocket frame broke RFC 6455; closing both sides with 1002");
            r.begin_close(Reason::ProtocolError);
        }
    }
    let end = poll_fn(|cx| r.poll(cx, client, node, h, ticket)).await;
    r.flush_counts(h);
    // Who closed, for the counters: tether, or the side whose Close came first, or (none
    // came) the side that ended the connection, with 1006.
    let close = h.websocket.map(|_| match end {
        End::Tether(reason) => (2, tether_code(reason)),
        _ => r
            .first_close
            .or(match (r.up.close, r.down.close) {
                (Some(c), _) => Some((0, c)),
                (None, Some(c)) => Some((1, c)),
                _ => None,
            })
            .unwrap_or((end.side(), code::ABNORMAL)),
    });
    Carried {
        end,
        up: r.up.bytes,
        down: r.down.bytes,
        frames_up: r.up.frames,
        frames_down: r.down.frames,
        close,
    }
}

/// The code tether sends the client when it closes a tunnel for `reason`.
fn tether_code(reason: Reason) -> u16 {
    match reason {
        Reason::Leave | Reason::Rebalance => code::SERVICE_RESTART,
        Reason::PingTimeout | Reason::Shutdown => code::GOING_AWAY,
        Reason::ProtocolError => code::PROTOCOL_ERROR,
    }
}

struct Relay {
    up: Half,
    down: Half,
    ws: Option<Ws>,
    idle: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
    /// When to close, and why (the supervisor's order).
    order: Option<(Instant, Reason)>,
    /// tether is closing: why, and until when the peers may take to close.
    closing: Option<(Reason, Instant)>,
    /// Which side closed first: that is who ended the tunnel.
    first: Option<End>,
    /// The first Close frame seen: from the client (0) or the node (1), and its code.
    first_close: Option<(usize, u16)>,
    /// Frames and bytes counted into the upstream's stats so far (frames up, down, bytes up,
    /// down).
    flushed: [u64; 4],
}

impl Relay {
    fn poll<C: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
        node: &mut TcpStream,
        h: &Params<'_>,
        ticket: &Ticket,
    ) -> Poll<End> {
        match ticket.poll(cx) {
            Some(Command::Close { at, reason }) => {
                self.order = Some((at, reason));
                let armed = self.timer.deadline();
                self.timer.as_mut().reset(at.min(armed));
            }
            Some(Command::Cancel) => self.order = None,
            None => {}
        }
        let from_client = self.ws.as_ref().map(|w| Rules {
            from_client: true,
            rsv: w.settings.rsv,
        });
        let from_node = from_client.map(|r| Rules {
            from_client: false,
            ..r
        });
        let ping = self.ws.as_ref().and(Some(PING));
        let up = pump(cx, client, node, &mut self.up, from_client, ping);
        let down = pump(cx, node, client, &mut self.down, from_node, None);
        if self.first.is_none() {
            if up.is_err() || self.up.done {
                self.first = Some(End::ClientClosed);
            } else if down.is_err() || self.down.done {
                self.first = Some(End::NodeClosed);
            }
        }
        let (up, down) = match (up, down) {
            (Ok(u), Ok(d)) => (u, d),
            // A broken connection ends the tunnel; a closing one was expected to end.
            _ => return Poll::Ready(self.closed_as()),
        };
        if self.first_close.is_none() {
            self.first_close = match (self.up.close, self.down.close) {
                (Some(c), _) => Some((0, c)),
                (None, Some(c)) => Some((1, c)),
                _ => None,
            };
        }
        if self.up.done && self.down.done {
            return Poll::Ready(self.closed_as());
        }
        let now = if up.moved || down.moved {
            let now = Instant::now();
            self.last_activity = now;
            now
        } else {
            self.last_activity
        };
        if let Some(ws) = &mut self.ws {
            if up.read || up.pong {
                ws.heard = now;
                ws.pinged = None;
            }
            if down.pinged {
                self.pinged(Instant::now());
            }
        }
        if let Some(v) = up.violation.or(down.violation) {
            tracing::debug!(upstream = %h.upstream, violation = ?v, "WebSocket frame broke RFC 6455; closing both sides with 1002");
            self.begin_close(Reason::ProtocolError);
        }
        if let Some(end) = self.send_own(cx, client, node) {
            return Poll::Ready(end);
        }
        // The timer is only re-armed when it fires, not on every message.
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            self.flush_counts(h);
            if let Some((_, until)) = self.closing {
                if now >= until {
                    return Poll::Ready(self.closed_as());
                }
            } else if let Some((_, reason)) = self.order.filter(|(at, _)| now >= *at) {
                self.order = None;
                if self.ws.is_none() {
                    // A byte tunnel has no frame to put a Close in: it simply closes.
                    return Poll::Ready(End::Tether(reason));
                }
                self.begin_close(reason);
            } else if now.duration_since(self.last_activity) >= self.idle {
                return Poll::Ready(End::Idle);
            } else if let Some(ws) = &mut self.ws {
                let s = ws.settings;
                match ws.pinged {
                    Some(at) if now.duration_since(at) >= s.ping_timeout => {
                        // Half-open: the node hears 1001, the client side just closes.
                        self.begin_close(Reason::PingTimeout);
                    }
                    None if !s.ping_interval.is_zero()
                        && now.duration_since(ws.heard) >= s.ping_interval
                        && self.down.own.is_none() =>
                    {
                        self.down.own = Some(Own::Ping);
                    }
                    _ => {}
                }
            }
            if let Some(end) = self.send_own(cx, client, node) {
                return Poll::Ready(end);
            }
            let next = self.next_deadline();
            self.timer.as_mut().reset(next);
        }
        Poll::Pending
    }

    /// When the timer must fire next.
    fn next_deadline(&self) -> Instant {
        if let Some((_, until)) = self.closing {
            return until;
        }
        let mut next = self.last_activity + self.idle;
        if let Some((at, _)) = self.order {
            next = next.min(at);
        }
        if let Some(ws) = &self.ws {
            let s = ws.settings;
            match ws.pinged {
                Some(at) => next = next.min(at + s.ping_timeout),
                // A Ping waiting for a frame boundary goes out when bytes move: no wake-up.
                None if !s.ping_interval.is_zero() && self.down.own.is_none() => {
                    next = next.min(ws.heard + s.ping_interval)
                }
                None => {}
            }
        }
        next
    }

    /// tether closes the tunnel: a Close to each side that gets one, at its next frame
    /// boundary; then the peers have [`LINGER`] to close theirs.
    fn begin_close(&mut self, reason: Reason) {
        if self.closing.is_some() {
            return;
        }
        self.closing = Some((reason, Instant::now() + LINGER));
        self.timer.as_mut().reset(Instant::now() + LINGER);
        if self.ws.is_some() {
            // A half-open client gets no Close: nothing would read it.
            self.down.own = (reason != Reason::PingTimeout && !self.down.sealed)
                .then_some(Own::Close(tether_code(reason)));
            let to_node = if reason == Reason::ProtocolError {
                code::PROTOCOL_ERROR
            } else {
                code::GOING_AWAY
            };
            self.up.own = (!self.up.sealed).then_some(Own::Close(to_node));
            if reason == Reason::PingTimeout {
                self.down.stopped = true;
                self.down.sealed = true;
                self.down.pending.clear();
            }
        }
    }

    /// Put tether's waiting frames out where their direction is between frames. `Some`: the
    /// tunnel is over (both Closes went out and both peers are done, or a write failed).
    fn send_own<C: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
        node: &mut TcpStream,
    ) -> Option<End> {
        self.ws.as_ref()?;
        if self.down.tracker.at_boundary() && self.down.own.is_some() {
            if put_own(&mut self.down) {
                self.pinged(Instant::now());
            }
            if flush(cx, client, &mut self.down).is_err() {
                return Some(self.closed_as());
            }
        }
        if self.up.tracker.at_boundary() && self.up.own.is_some() {
            put_own(&mut self.up);
            if flush(cx, node, &mut self.up).is_err() {
                return Some(self.closed_as());
            }
        }
        let (reason, _) = self.closing?;
        // Both Closes out (or none due), both written: shut the write sides; the peers close.
        let sent = self.down.own.is_none() && self.up.own.is_none();
        if sent && self.up.pending.is_empty() && self.down.pending.is_empty() {
            let _ = Pin::new(&mut *client).poll_shutdown(cx);
            let _ = Pin::new(&mut *node).poll_shutdown(cx);
            if reason == Reason::PingTimeout || (self.up.done && self.down.done) {
                return Some(End::Tether(reason));
            }
        }
        None
    }

    /// tether's Ping went out at `now`: the answer is due before the timer would next fire.
    fn pinged(&mut self, now: Instant) {
        if let Some(ws) = &mut self.ws {
            ws.pinged = Some(now);
            let due = now + ws.settings.ping_timeout;
            let armed = self.timer.deadline();
            self.timer.as_mut().reset(due.min(armed));
        }
    }

    /// How the tunnel ended, once a side closed or broke.
    fn closed_as(&self) -> End {
        match self.closing {
            Some((reason, _)) => End::Tether(reason),
            None => self.first.unwrap_or(End::ClientClosed),
        }
    }

    /// Count frames and bytes seen since the last count into the upstream's stats.
    fn flush_counts(&mut self, h: &Params<'_>) {
        if h.websocket.is_none() {
            return;
        }
        let s = &h.stats;
        let now = [
            self.up.frames,
            self.down.frames,
            self.up.bytes,
            self.down.bytes,
        ];
        for (i, counter) in [
            stat::WS_FRAMES_UP,
            stat::WS_FRAMES_DOWN,
            stat::WS_BYTES_UP,
            stat::WS_BYTES_DOWN,
        ]
        .into_iter()
        .enumerate()
        {
            s.add(counter, now[i] - self.flushed[i]);
        }
        self.flushed = now;
    }
}

/// A short reason text for tether's Close frames (the client may show it).
fn reason_text(c: u16) -> &'static str {
    match c {
        code::SERVICE_RESTART => "moving to another node",
        code::PROTOCOL_ERROR => "protocol error",
        _ => "going away",
    }
}

/// Write what is pending for `to`; `Err` when the write failed.
fn flush<T: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    to: &mut T,
    half: &mut Half,
) -> std::io::Result<()> {
    while !half.pending.is_empty() {
        match Pin::new(&mut *to).poll_write(cx, &half.pending) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                half.pending.drain(..n);
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(()),
        }
    }
    half.pending = Vec::new();
    Ok(())
}

/// Append the half's own frame to what its destination gets (it is at a frame boundary).
/// A Close seals the direction: nothing more goes after it. `true`: it was tether's Ping.
fn put_own(half: &mut Half) -> bool {
    let Some(own) = half.own.take() else {
        return false;
    };
    match own {
        Own::Ping => {
            ws::ping_frame(PING, &mut half.pending);
            true
        }
        Own::Close(c) => {
            // To a node tether speaks for the client: masked.
            let mask = half.to_node.then(rand::random::<[u8; 4]>);
            ws::close_frame(c, reason_text(c), mask, &mut half.pending);
            half.stopped = true;
            half.sealed = true;
            false
        }
    }
}

/// Write `data` to `to` after whatever is pending for it (in order): what it cannot take now
/// waits in `pending`.
fn emit<T: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    to: &mut T,
    half: &mut Half,
    data: &[u8],
) -> std::io::Result<()> {
    if !half.pending.is_empty() {
        half.pending.extend_from_slice(data);
        return Ok(());
    }
    let written = match Pin::new(&mut *to).poll_write(cx, data) {
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => 0,
    };
    if written < data.len() {
        half.pending.extend_from_slice(&data[written..]);
    }
    Ok(())
}

/// Move bytes `from` → `to` until `from` would block, `to` is full, or the budget is spent.
/// With `rules`, RFC 6455 frames are followed: a Pong carrying `ping` (tether's) is dropped, a
/// frame that breaks the rules stops the direction (the bytes before it went through), and a
/// frame of tether's own goes out at the first boundary the bytes reach.
fn pump<F: AsyncRead + Unpin, T: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    from: &mut F,
    to: &mut T,
    half: &mut Half,
    rules: Option<Rules>,
    ping: Option<&[u8; 8]>,
) -> std::io::Result<Seen> {
    let mut seen = Seen::default();
    // Drain what the destination could not take last time before reading more (back-pressure).
    let before = half.pending.len();
    flush(cx, to, half)?;
    seen.moved = half.pending.len() < before;
    if !half.pending.is_empty() || half.done {
        return Ok(seen);
    }
    for round in 0..BUDGET {
        let step = SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let held = half.held.len();
            scratch[..held].copy_from_slice(&half.held);
            let mut rb = ReadBuf::new(&mut scratch[held..]);
            match Pin::new(&mut *from).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            half.held.clear();
            if half.stopped {
                // Read and dropped: tether closed this way, or it broke the protocol.
                return Poll::Ready(Ok(n));
            }
            let len = held + n;
            let Some(rules) = rules else {
                return Poll::Ready(emit(cx, to, half, &scratch[..len]).map(|()| n));
            };
            // Frame by frame; at the first boundary where tether has a frame of its own for
            // this peer, it goes out there, and the rest follows (unless it was a Close).
            let mut start = 0;
            loop {
                let (out, used, stop) =
                    frames(&mut scratch[start..len], half, rules, ping, &mut seen);
                if let Err(e) = emit(cx, to, half, &scratch[start..start + out]) {
                    return Poll::Ready(Err(e));
                }
                if !stop {
                    break;
                }
                seen.pinged |= put_own(half);
                if let Err(e) = flush(cx, to, half) {
                    return Poll::Ready(Err(e));
                }
                start += used;
                if half.stopped || start >= len {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        });
        match step {
            Poll::Pending => return Ok(seen),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Ready(Ok(0)) => {
                half.done = true;
                // Pass the half-close on; the other direction keeps flowing.
                let _ = Pin::new(&mut *to).poll_shutdown(cx);
                return Ok(seen);
            }
            Poll::Ready(Ok(n)) => {
                seen.moved = true;
                seen.read = true;
                half.bytes += n as u64;
                if !half.pending.is_empty() || seen.violation.is_some() {
                    return Ok(seen);
                }
                if round + 1 == BUDGET {
                    cx.waker().wake_by_ref();
                }
            }
        }
    }
    Ok(seen)
}

/// Follow bytes that came with the heads as if just read: what goes on waits in `pending`
/// (the first poll writes it).
fn prime(half: &mut Half, mut data: Vec<u8>, rules: Rules, seen: &mut Seen) {
    if data.is_empty() {
        return;
    }
    half.bytes += data.len() as u64;
    let (out, _, _) = frames(&mut data, half, rules, None, seen);
    data.truncate(out);
    half.pending = data;
}

/// Follow the frames in `data` (held bytes first, then what was just read), compacting in
/// place what goes on. Returns how many bytes of `data` go on, how many were used, and whether
/// it stopped at a frame boundary for a frame of tether's own (`half.own`). A header or
/// control frame cut off at the end is held for the next read; a Pong answering tether's Ping
/// is dropped.
fn frames(
    data: &mut [u8],
    half: &mut Half,
    rules: Rules,
    ping: Option<&[u8; 8]>,
    seen: &mut Seen,
) -> (usize, usize, bool) {
    let (mut r, mut w) = (0, 0);
    while r < data.len() {
        if half.own.is_some() && half.tracker.at_boundary() {
            return (w, r, true);
        }
        let keep = match half.tracker.next(&data[r..], rules) {
            Err(v) => {
                seen.violation = Some(v);
                half.stopped = true;
                return (w, data.len(), false);
            }
            Ok(Event::NeedMore) => {
                half.held.extend_from_slice(&data[r..]);
                return (w, data.len(), false);
            }
            Ok(Event::Data { n, header }) => {
                if header.is_some() {
                    half.frames += 1;
                }
                (n, true)
            }
            Ok(Event::Control(c)) => {
                half.frames += 1;
                let mut payload = [0u8; 125];
                let len = c.unmasked(&mut payload);
                let ours = c.opcode == opcode::PONG && ping.is_some_and(|p| &payload[..len] == p);
                if ours {
                    seen.pong = true;
                }
                if c.opcode == opcode::CLOSE && half.close.is_none() {
                    half.close = Some(ws::close_code(&payload[..len]));
                }
                (c.len, !ours)
            }
        };
        let (n, forward) = keep;
        if forward {
            if w != r {
                data.copy_within(r..r + n, w);
            }
            w += n;
        }
        r += n;
    }
    let stop = half.own.is_some() && half.tracker.at_boundary();
    (w, r, stop)
}

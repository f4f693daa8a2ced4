//! The relay loop: both directions in one task, through the worker's scratch buffer, with the
//! frame tracking, liveness and ordered closes of a WebSocket tunnel.
//!
//! Each wake-up moves what is readable each way (a bounded number of reads), then looks at its
//! one timer. Frames of tether's own (a Ping for the client, the Closes it sends) go out at the
//! first frame boundary of their direction, in order behind whatever is still queued there.
//!
//! Every open WebSocket pays for this state for hours, so it is kept small: times are
//! milliseconds since the tunnel began (4 bytes, not 16), the buffers a direction needs only
//! while bytes wait (what the peer cannot take yet, a header cut across reads) live behind one
//! pointer that is empty when the tunnel is quiet, and frames and bytes are counted straight
//! into the upstream's per-worker counters as they pass.

use super::registry::{Command, Ticket};
use super::{Carried, Early, End, Reason, Settings};
use crate::runtime::pool::stat;
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
const LINGER_MS: u32 = 2_000;
/// The payload of tether's Pings: the answering Pong carries it back, and is not forwarded.
const PING: &[u8; 8] = b"tether\x00\x00";

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// A frame of tether's own, waiting for its direction's next frame boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Own {
    #[default]
    None,
    Ping,
    Close(u16),
}

/// Bytes a direction holds only while they wait.
#[derive(Default)]
struct Bufs {
    /// To write: what the destination could not take yet, and tether's own frames.
    pending: Vec<u8>,
    /// The start of a header or control frame cut off at the end of a read (at most 139
    /// bytes), read again in front of the next bytes.
    held: Vec<u8>,
}

/// One direction's state.
#[derive(Default)]
struct Half {
    bufs: Option<Box<Bufs>>,
    tracker: Tracker,
    /// Bytes read from the source, and frames seen.
    bytes: u64,
    frames: u64,
    /// The code of the first Close frame the source sent (0: none yet).
    close: u16,
    own: Own,
    /// The source has reached EOF (and the destination's write side was shut down).
    done: bool,
    /// No more of the source is forwarded (a Close of tether's went this way, or the source
    /// broke the protocol): what still comes is read and dropped.
    stopped: bool,
    /// Nothing more is written to the destination: tether's Close went to it (or a half-open
    /// client gets nothing at all).
    sealed: bool,
    /// The destination is the node (frames tether writes there are masked).
    to_node: bool,
}

impl Half {
    fn pending_len(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.pending.len())
    }

    fn held(&self) -> &[u8] {
        self.bufs.as_ref().map_or(&[], |b| &b.held)
    }

    fn bufs(&mut self) -> &mut Bufs {
        self.bufs.get_or_insert_with(Box::default)
    }

    /// Give the buffers back once nothing waits in them: a quiet tunnel owns none.
    fn settle(&mut self) {
        if self
            .bufs
            .as_ref()
            .is_some_and(|b| b.pending.is_empty() && b.held.is_empty())
        {
            self.bufs = None;
        }
    }
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

/// A WebSocket tunnel's liveness (milliseconds since the tunnel began).
struct Ws {
    rsv: u8,
    interval_ms: u32,
    timeout_ms: u32,
    /// When the client last sent anything.
    heard_ms: u32,
    /// A Ping went out at this time and nothing has come back since.
    pinged_ms: Option<u32>,
}

/// Milliseconds as a tunnel counts them (49 days fit; a tunnel idle longer is closed anyway).
fn ms(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

/// Relay until both sides are done, `idle` passes with no bytes moved either way, or tether
/// closes the tunnel (an order from the worker's supervisor, a client that answers no Ping, a
/// frame that breaks the protocol).
pub(super) async fn run<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    node: &mut TcpStream,
    s: &Settings,
    ticket: &Ticket,
    early: Option<Box<Early>>,
) -> Carried {
    let base = Instant::now();
    let mut r = Relay {
        up: Half {
            to_node: true,
            ..Half::default()
        },
        down: Half::default(),
        ws: s.websocket.map(|w| Ws {
            rsv: w.rsv,
            interval_ms: ms(w.ping_interval),
            timeout_ms: ms(w.ping_timeout),
            heard_ms: 0,
            pinged_ms: None,
        }),
        base,
        idle_ms: ms(s.idle),
        last_ms: 0,
        timer: Box::pin(sleep_until(base + s.idle)),
        order: None,
        closing: None,
        first: None,
        first_close: None,
    };
    let first = r.next_deadline();
    r.reset(first);
    if let (Some(early), Some(rules)) = (early, r.rules(true)) {
        let mut seen = Seen::default();
        prime(&mut r.up, early.up, rules, &mut seen);
        let from_node = Rules {
            from_client: false,
            ..rules
        };
        prime(&mut r.down, early.down, from_node, &mut seen);
        if let Some(v) = seen.violation {
            tracing::debug!(upstream = %s.upstream, violation = ?v, "WebSocket frame broke RFC 6455; closing both sides with 1002");
            r.begin_close(Reason::ProtocolError);
        }
    }
    let end = poll_fn(|cx| r.poll(cx, client, node, s, ticket)).await;
    // Who closed, for the counters: tether, or the side whose Close came first, or (none
    // came) the side that ended the connection, with 1006.
    let close = s.websocket.map(|_| match end {
        End::Tether(reason) => (2, tether_code(reason)),
        _ => r
            .first_close
            .map(|(side, c)| (usize::from(side), c))
            .or_else(|| r.closes())
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
    /// When the relay began: every time below counts from it.
    base: Instant,
    idle_ms: u32,
    /// Bytes last moved either way.
    last_ms: u32,
    timer: Pin<Box<Sleep>>,
    /// When to close, and why (the supervisor's order).
    order: Option<(u32, Reason)>,
    /// tether is closing: why, and until when the peers may take to close.
    closing: Option<(Reason, u32)>,
    /// Which side closed first: that is who ended the tunnel.
    first: Option<End>,
    /// The first Close frame seen: from the client (0) or the node (1), and its code.
    first_close: Option<(u8, u16)>,
}

impl Relay {
    fn now_ms(&self) -> u32 {
        ms(self.base.elapsed())
    }

    fn at(&self, ms: u32) -> Instant {
        self.base + Duration::from_millis(u64::from(ms))
    }

    /// Arm the timer for `ms`, only when that is sooner than it is armed for.
    fn reset_sooner(&mut self, ms: u32) {
        let at = self.at(ms);
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
    }

    fn reset(&mut self, ms: u32) {
        let at = self.at(ms);
        self.timer.as_mut().reset(at);
    }

    /// The frame rules of a direction (`None`: a byte tunnel).
    fn rules(&self, from_client: bool) -> Option<Rules> {
        self.ws.as_ref().map(|w| Rules {
            from_client,
            rsv: w.rsv,
        })
    }

    /// A Close each way, client's first, for a tunnel that ended without anyone noting one.
    fn closes(&self) -> Option<(usize, u16)> {
        match (self.up.close, self.down.close) {
            (0, 0) => None,
            (0, c) => Some((1, c)),
            (c, _) => Some((0, c)),
        }
    }

    fn poll<C: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
        node: &mut TcpStream,
        s: &Settings,
        ticket: &Ticket,
    ) -> Poll<End> {
        match ticket.poll(cx) {
            Some(Command::Close { at, reason }) => {
                let at_ms = ms(at.saturating_duration_since(self.base));
                self.order = Some((at_ms, reason));
                self.reset_sooner(at_ms);
            }
            Some(Command::Cancel) => self.order = None,
            None => {}
        }
        let (from_client, from_node) = (self.rules(true), self.rules(false));
        let ping = self.ws.as_ref().map(|_| PING);
        let counting = self.ws.is_some().then_some(&*s.stats);
        let up = pump(cx, client, node, &mut self.up, from_client, ping, counting);
        let down = pump(cx, node, client, &mut self.down, from_node, None, counting);
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
            self.first_close = self.closes().map(|(side, c)| (side as u8, c));
        }
        if self.up.done && self.down.done {
            return Poll::Ready(self.closed_as());
        }
        if up.moved || down.moved {
            self.last_ms = self.now_ms();
        }
        let now_ms = self.last_ms;
        if let Some(ws) = &mut self.ws {
            if up.read || up.pong {
                ws.heard_ms = now_ms;
                ws.pinged_ms = None;
            }
        }
        if down.pinged {
            self.pinged();
        }
        if let Some(v) = up.violation.or(down.violation) {
            tracing::debug!(upstream = %s.upstream, violation = ?v, "WebSocket frame broke RFC 6455; closing both sides with 1002");
            self.begin_close(Reason::ProtocolError);
        }
        if let Some(end) = self.send_own(cx, client, node) {
            return Poll::Ready(end);
        }
        // The timer is only re-armed when it fires, not on every message.
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = self.now_ms();
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
            } else if now.saturating_sub(self.last_ms) >= self.idle_ms {
                return Poll::Ready(End::Idle);
            } else if let Some(ws) = &self.ws {
                match ws.pinged_ms {
                    Some(at) if now.saturating_sub(at) >= ws.timeout_ms => {
                        // Half-open: the node hears 1001, the client side just closes.
                        self.begin_close(Reason::PingTimeout);
                    }
                    None if ws.interval_ms > 0
                        && now.saturating_sub(ws.heard_ms) >= ws.interval_ms
                        && self.down.own == Own::None =>
                    {
                        self.down.own = Own::Ping;
                    }
                    _ => {}
                }
            }
            if let Some(end) = self.send_own(cx, client, node) {
                return Poll::Ready(end);
            }
            let next = self.next_deadline();
            self.reset(next);
        }
        Poll::Pending
    }

    /// When the timer must fire next.
    fn next_deadline(&self) -> u32 {
        if let Some((_, until)) = self.closing {
            return until;
        }
        let mut next = self.last_ms.saturating_add(self.idle_ms);
        if let Some((at, _)) = self.order {
            next = next.min(at);
        }
        if let Some(ws) = &self.ws {
            match ws.pinged_ms {
                Some(at) => next = next.min(at.saturating_add(ws.timeout_ms)),
                // A Ping waiting for a frame boundary goes out when bytes move: no wake-up.
                None if ws.interval_ms > 0 && self.down.own == Own::None => {
                    next = next.min(ws.heard_ms.saturating_add(ws.interval_ms))
                }
                None => {}
            }
        }
        next
    }

    /// tether closes the tunnel: a Close to each side that gets one, at its next frame
    /// boundary; then the peers have [`LINGER_MS`] to close theirs.
    fn begin_close(&mut self, reason: Reason) {
        if self.closing.is_some() {
            return;
        }
        let until = self.now_ms().saturating_add(LINGER_MS);
        self.closing = Some((reason, until));
        self.reset(until);
        if self.ws.is_none() {
            return;
        }
        // A half-open client gets no Close: nothing would read it.
        self.down.own = if reason == Reason::PingTimeout || self.down.sealed {
            Own::None
        } else {
            Own::Close(tether_code(reason))
        };
        let to_node = if reason == Reason::ProtocolError {
            code::PROTOCOL_ERROR
        } else {
            code::GOING_AWAY
        };
        self.up.own = if self.up.sealed {
            Own::None
        } else {
            Own::Close(to_node)
        };
        if reason == Reason::PingTimeout {
            self.down.stopped = true;
            self.down.sealed = true;
            if let Some(b) = &mut self.down.bufs {
                b.pending.clear();
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
        if self.down.tracker.at_boundary() && self.down.own != Own::None {
            if put_own(&mut self.down) {
                self.pinged();
            }
            if flush(cx, client, &mut self.down).is_err() {
                return Some(self.closed_as());
            }
        }
        if self.up.tracker.at_boundary() && self.up.own != Own::None {
            put_own(&mut self.up);
            if flush(cx, node, &mut self.up).is_err() {
                return Some(self.closed_as());
            }
        }
        let (reason, _) = self.closing?;
        // Both Closes out (or none due), both written: shut the write sides; the peers close.
        let sent = self.down.own == Own::None && self.up.own == Own::None;
        if sent && self.up.pending_len() == 0 && self.down.pending_len() == 0 {
            let _ = Pin::new(&mut *client).poll_shutdown(cx);
            let _ = Pin::new(&mut *node).poll_shutdown(cx);
            if reason == Reason::PingTimeout || (self.up.done && self.down.done) {
                return Some(End::Tether(reason));
            }
        }
        None
    }

    /// tether's Ping went out now: the answer is due before the timer would next fire.
    fn pinged(&mut self) {
        let now = self.now_ms();
        let Some(ws) = &mut self.ws else {
            return;
        };
        ws.pinged_ms = Some(now);
        let due = now.saturating_add(ws.timeout_ms);
        self.reset_sooner(due);
    }

    /// How the tunnel ended, once a side closed or broke.
    fn closed_as(&self) -> End {
        match self.closing {
            Some((reason, _)) => End::Tether(reason),
            None => self.first.unwrap_or(End::ClientClosed),
        }
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
    let Some(bufs) = &mut half.bufs else {
        return Ok(());
    };
    while !bufs.pending.is_empty() {
        match Pin::new(&mut *to).poll_write(cx, &bufs.pending) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                bufs.pending.drain(..n);
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(()),
        }
    }
    bufs.pending = Vec::new();
    half.settle();
    Ok(())
}

/// Append the half's own frame to what its destination gets (it is at a frame boundary).
/// A Close seals the direction: nothing more goes after it. `true`: it was tether's Ping.
fn put_own(half: &mut Half) -> bool {
    let own = std::mem::take(&mut half.own);
    match own {
        Own::None => false,
        Own::Ping => {
            ws::ping_frame(PING, &mut half.bufs().pending);
            true
        }
        Own::Close(c) => {
            // To a node tether speaks for the client: masked.
            let mask = half.to_node.then(rand::random::<[u8; 4]>);
            ws::close_frame(c, reason_text(c), mask, &mut half.bufs().pending);
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
    if data.is_empty() {
        return Ok(());
    }
    if half.pending_len() > 0 {
        half.bufs().pending.extend_from_slice(data);
        return Ok(());
    }
    let written = match Pin::new(&mut *to).poll_write(cx, data) {
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => 0,
    };
    if written < data.len() {
        half.bufs().pending.extend_from_slice(&data[written..]);
    }
    Ok(())
}

/// Move bytes `from` → `to` until `from` would block, `to` is full, or the budget is spent.
/// With `rules`, RFC 6455 frames are followed: a Pong carrying `ping` (tether's) is dropped, a
/// frame that breaks the rules stops the direction (the bytes before it went through), a frame
/// of tether's own goes out at the first boundary the bytes reach, and frames and bytes are
/// counted into `stats` as they pass.
fn pump<F: AsyncRead + Unpin, T: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    from: &mut F,
    to: &mut T,
    half: &mut Half,
    rules: Option<Rules>,
    ping: Option<&[u8; 8]>,
    stats: Option<&crate::runtime::pool::PoolStats>,
) -> std::io::Result<Seen> {
    let mut seen = Seen::default();
    // Drain what the destination could not take last time before reading more (back-pressure).
    let before = half.pending_len();
    flush(cx, to, half)?;
    seen.moved = half.pending_len() < before;
    if half.pending_len() > 0 || half.done {
        return Ok(seen);
    }
    let (bytes_stat, frames_stat) = if half.to_node {
        (stat::WS_BYTES_UP, stat::WS_FRAMES_UP)
    } else {
        (stat::WS_BYTES_DOWN, stat::WS_FRAMES_DOWN)
    };
    for round in 0..BUDGET {
        let frames_before = half.frames;
        let step = SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let held = half.held().len();
            if held > 0 {
                scratch[..held].copy_from_slice(half.held());
            }
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
            if let Some(b) = &mut half.bufs {
                b.held.clear();
            }
            if half.stopped {
                // Read and dropped: tether closed this way, or it broke the protocol.
                half.settle();
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
            half.settle();
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
                if let Some(s) = stats {
                    s.add(bytes_stat, n as u64);
                    s.add(frames_stat, half.frames - frames_before);
                }
                if half.pending_len() > 0 || seen.violation.is_some() {
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
    half.bufs().pending = data;
    half.settle();
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
        if half.own != Own::None && half.tracker.at_boundary() {
            return (w, r, true);
        }
        let (n, forward) = match half.tracker.next(&data[r..], rules) {
            Err(v) => {
                seen.violation = Some(v);
                half.stopped = true;
                return (w, data.len(), false);
            }
            Ok(Event::NeedMore) => {
                half.bufs().held.extend_from_slice(&data[r..]);
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
                if c.opcode == opcode::CLOSE && half.close == 0 {
                    half.close = ws::close_code(&payload[..len]);
                }
                (c.len, !ours)
            }
        };
        if forward {
            if w != r {
                data.copy_within(r..r + n, w);
            }
            w += n;
        }
        r += n;
    }
    let stop = half.own != Own::None && half.tracker.at_boundary();
    (w, r, stop)
}

//! The byte tunnel after a `101 Switching Protocols`: both directions until both close, or until
//! nothing has moved for the idle timeout.
//!
//! Unlike `tokio::io::copy_bidirectional` (two 8 KiB buffers per tunnel for its whole life), a
//! tunnel here owns no buffer while it is quiet: reads go into one scratch buffer per worker
//! thread and are written straight through; only bytes the peer cannot take yet are copied into a
//! small owned buffer until they drain. Thousands of mostly idle WebSockets then cost little more
//! than their sockets.
//!
//! A tunnel also runs in a task of its own: the connection's task is sized for the largest step
//! of an HTTP exchange (a future is as large as its largest state), and keeping it for hours
//! around a quiet relay would cost every WebSocket that size. The exchange hands over a
//! [`Handover`]; the connection task ends and the relay's small task takes the sockets.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use super::{access, ShutdownSignal};
use crate::config::Shutdown;
use crate::runtime::node::LoadGuard;

/// Scratch size: one read's worth; larger messages simply take several reads.
const SCRATCH: usize = 16 * 1024;
/// Reads per direction per wake-up before yielding, so one busy tunnel cannot starve others.
const BUDGET: usize = 16;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed its side first (or broke the connection).
    ClientClosed,
    /// The node closed its side first (or broke the connection).
    NodeClosed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// Closed by a graceful shutdown.
    Shutdown,
}

impl End {
    /// Who ended the tunnel, for the access log.
    pub fn by(self) -> &'static str {
        match self {
            End::ClientClosed => "client",
            End::NodeClosed => "node",
            End::Idle => "idle",
            End::Shutdown => "shutdown",
        }
    }
}

/// What a tunnel carried: bytes each way and how it ended.
#[derive(Debug, Clone, Copy)]
pub struct Carried {
    pub end: End,
    /// Client → node.
    pub up: u64,
    /// Node → client.
    pub down: u64,
}

/// What the exchange hands over after a `101` was relayed: the node side of the tunnel and what
/// its access-log line needs; nothing of the HTTP exchange that led to it.
pub struct Handover {
    pub node: TcpStream,
    /// Counts the tunnel against its node (least_conn, tunnel caps, gauges) until it closes.
    pub guard: LoadGuard,
    /// `timeouts.tunnel_idle` of the upstream.
    pub idle: Duration,
    pub client_ip: std::net::IpAddr,
    /// The request's path without its query (a query may carry tokens).
    pub path: Box<[u8]>,
    pub upstream: Box<str>,
    pub started: std::time::Instant,
}

impl Handover {
    /// The whole tunnel: the client side joins the node side.
    pub fn with_client<C>(self, client: C, shutdown: ShutdownSignal) -> Tunnel<C> {
        Tunnel {
            client,
            shutdown,
            handover: self,
        }
    }
}

/// A client connection that became a tunnel, ready to [relay](Tunnel::relay).
pub struct Tunnel<C> {
    client: C,
    shutdown: ShutdownSignal,
    handover: Handover,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Tunnel<C> {
    /// Relay to the end, then write the tunnel's access-log line. The sockets close and the
    /// node's tunnel count drops when this returns.
    pub async fn relay(mut self) {
        let h = &mut self.handover;
        let node = h.guard.node().id.as_str();
        tracing::debug!(upstream = %h.upstream, node, "tunnel open");
        let carried = run(&mut self.client, &mut h.node, h.idle, self.shutdown).await;
        access::tunnel(&access::Tunnel {
            client: h.client_ip,
            target: &h.path,
            upstream: &h.upstream,
            node,
            bytes_up: carried.up,
            bytes_down: carried.down,
            duration: h.started.elapsed(),
            closed_by: carried.end.by(),
        });
        tracing::debug!(upstream = %h.upstream, node, end = ?carried.end, secs = h.started.elapsed().as_secs(), "tunnel closed");
    }
}

/// One direction's state.
#[derive(Default)]
struct Half {
    /// Bytes read but not yet written.
    pending: Vec<u8>,
    /// The source has reached EOF (and the destination's write side was shut down).
    done: bool,
    /// Bytes read from the source.
    bytes: u64,
}

/// Relay until both sides are done, `idle` passes with no bytes moved either way, or a shutdown
/// reaches this tunnel's turn (a random point of the close window, see [`close_delay`]).
pub async fn run<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    node: &mut TcpStream,
    idle: Duration,
    mut shutdown: ShutdownSignal,
) -> Carried {
    let mut up = Half::default(); // client → node
    let mut down = Half::default(); // node → client
                                    // Which side closed first: that is who ended the tunnel.
    let mut first: Option<End> = None;
    let mut last_activity = Instant::now();
    let mut timer = Box::pin(sleep_until(last_activity + idle));
    let mut closing_at: Option<Instant> = None;
    let mut stop = Box::pin(async move {
        loop {
            if let Some(plan) = *shutdown.borrow_and_update() {
                return plan;
            }
            if shutdown.changed().await.is_err() {
                // The sender is gone only when the process is ending anyway.
                std::future::pending::<()>().await;
            }
        }
    });
    let end = poll_fn(|cx| {
        if closing_at.is_none() {
            if let Poll::Ready(plan) = stop.as_mut().poll(cx) {
                let at = Instant::now() + close_delay(&plan);
                closing_at = Some(at);
                timer.as_mut().reset(at);
            }
        }
        let mut moved = false;
        let r1 = pump(cx, client, node, &mut up, &mut moved);
        let r2 = pump(cx, node, client, &mut down, &mut moved);
        if first.is_none() {
            if r1.is_err() || up.done {
                first = Some(End::ClientClosed);
            } else if r2.is_err() || down.done {
                first = Some(End::NodeClosed);
            }
        }
        if r1.is_err() || r2.is_err() || (up.done && down.done) {
            return Poll::Ready(first.unwrap_or(End::ClientClosed));
        }
        if moved {
            last_activity = Instant::now();
        }
        // The timer is only re-armed when it fires, not on every message.
        while timer.as_mut().poll(cx).is_ready() {
            if closing_at.is_some_and(|at| Instant::now() >= at) {
                return Poll::Ready(End::Shutdown);
            }
            if last_activity.elapsed() >= idle {
                return Poll::Ready(End::Idle);
            }
            let next = last_activity + idle;
            timer
                .as_mut()
                .reset(closing_at.map_or(next, |at| at.min(next)));
        }
        Poll::Pending
    })
    .await;
    Carried {
        end,
        up: up.bytes,
        down: down.bytes,
    }
}

/// When a tunnel should close during a shutdown: after the grace period, at a random point of
/// the close window, so clients do not all reconnect in the same second.
pub fn close_delay(plan: &Shutdown) -> Duration {
    use rand::Rng;
    let window = plan.close_window.as_millis() as u64;
    let jitter = if window == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..window)
    };
    plan.grace + Duration::from_millis(jitter)
}

/// Move bytes `from` → `to` until `from` would block, `to` is full, or the budget is spent.
fn pump<F: AsyncRead + Unpin, T: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    from: &mut F,
    to: &mut T,
    half: &mut Half,
    moved: &mut bool,
) -> std::io::Result<()> {
    // Drain what the destination could not take last time before reading more (back-pressure).
    while !half.pending.is_empty() {
        match Pin::new(&mut *to).poll_write(cx, &half.pending) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                half.pending.drain(..n);
                *moved = true;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(()),
        }
    }
    half.pending = Vec::new();
    if half.done {
        return Ok(());
    }
    for round in 0..BUDGET {
        let step = SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut rb = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut *from).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(Ok(0)),
                Poll::Ready(Ok(())) => {
                    let data = rb.filled();
                    let written = match Pin::new(&mut *to).poll_write(cx, data) {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => 0,
                    };
                    if written < data.len() {
                        half.pending.extend_from_slice(&data[written..]);
                    }
                    Poll::Ready(Ok(data.len()))
                }
            }
        });
        match step {
            Poll::Pending => return Ok(()),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Ready(Ok(0)) => {
                half.done = true;
                // Pass the half-close on; the other direction keeps flowing.
                let _ = Pin::new(&mut *to).poll_shutdown(cx);
                return Ok(());
            }
            Poll::Ready(Ok(n)) => {
                *moved = true;
                half.bytes += n as u64;
                if !half.pending.is_empty() {
                    return Ok(());
                }
                if round + 1 == BUDGET {
                    cx.waker().wake_by_ref();
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnels_close_spread_over_the_window_after_grace() {
        let plan = Shutdown {
            grace: Duration::from_secs(5),
            close_window: Duration::from_secs(10),
            ..Shutdown::default()
        };
        let delays: Vec<_> = (0..1000).map(|_| close_delay(&plan)).collect();
        assert!(delays
            .iter()
            .all(|d| *d >= plan.grace && *d < plan.grace + plan.close_window));
        let first_half = delays
            .iter()
            .filter(|d| **d < Duration::from_secs(10))
            .count();
        assert!(
            (400..600).contains(&first_half),
            "{first_half} of 1000 in the first half"
        );
    }
}

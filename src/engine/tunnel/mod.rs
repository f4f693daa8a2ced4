//! The tunnel after a `101 Switching Protocols`: both directions until both close, nothing has
//! moved for the idle timeout, or tether closes it.
//!
//! Unlike `tokio::io::copy_bidirectional` (two 8 KiB buffers per tunnel for its whole life), a
//! tunnel here owns no buffer while it is quiet: reads go into one scratch buffer per worker
//! thread and are written straight through; only bytes the peer cannot take yet are copied into a
//! small owned buffer until they drain. Thousands of mostly idle WebSockets then cost little more
//! than their sockets.
//!
//! A `websocket` upgrade's tunnel follows RFC 6455 frames both ways ([`crate::ws::Tracker`]:
//! headers only, payloads copied as they come), so tether can manage the connection through the
//! cluster's life: Ping a client that has gone quiet and close it when nothing answers
//! (half-open clients), put a Close between two frames (never inside one) when the node leaves
//! or the upstream rebalances, close both sides with 1002 on a frame stream that breaks §5, and
//! count frames and close codes. Other upgrades (`h2c`, custom protocols) stay byte tunnels.
//!
//! A tunnel also runs in a task of its own: the connection's task is sized for the largest step
//! of an HTTP exchange (a future is as large as its largest state), and keeping it for hours
//! around a quiet relay would cost every WebSocket that size. The exchange hands over a
//! [`Handover`]; the connection task ends and the relay's small task takes the sockets. Each
//! worker keeps its tunnels in a [`registry`], through which a supervisor orders closes (a
//! shutdown, a leaving node, a rebalance) without a timer or channel per tunnel.

pub mod registry;
mod relay;

use super::access;
use crate::runtime::node::LoadGuard;
use crate::runtime::pool::{observe_tunnel, stat, PoolStats};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub use registry::close_delay;

pub use crate::runtime::tunnel_end::{End, Reason, SIDES};

/// What a tunnel carried: bytes and frames each way, how it ended, and its close code.
#[derive(Debug, Clone, Copy)]
pub struct Carried {
    pub end: End,
    /// Client → node.
    pub up: u64,
    /// Node → client.
    pub down: u64,
    pub frames_up: u64,
    pub frames_down: u64,
    /// Who sent the first Close frame (0 client, 1 node, 2 tether; see [`SIDES`]) and its
    /// code; 1006 when the connection closed without one; `None` for a byte tunnel.
    pub close: Option<(usize, u16)>,
}

/// A WebSocket tunnel's settings: the reserved bits its extensions allow, and liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsSettings {
    /// RSV bits the negotiated extensions allow (see [`crate::ws::Rules::rsv`]).
    pub rsv: u8,
    /// Ping a client that has sent nothing for this long; zero: never.
    pub ping_interval: Duration,
    /// Close a pinged client that sends nothing at all for this long after the Ping.
    pub ping_timeout: Duration,
}

/// What the exchange hands over after a `101` was relayed: the node side of the tunnel and what
/// its access-log line and counters need; nothing of the HTTP exchange that led to it.
pub struct Handover {
    pub node: TcpStream,
    /// Counts the tunnel against its node (least_conn, tunnel caps, gauges) until it closes.
    pub guard: LoadGuard,
    pub client_ip: std::net::IpAddr,
    /// The request's path without its query (a query may carry tokens).
    pub path: Box<[u8]>,
    pub started: std::time::Instant,
    /// What the relay reads.
    pub settings: Settings,
    /// Bytes each side sent right behind its head, for a WebSocket tunnel to read first.
    pub early: Option<Box<Early>>,
    /// The node's bytes and frames that went to the client with the `101` (its greeting).
    pub sent_down: [u32; 2],
    /// What the client spoke: the tunnel's access-log line says it.
    pub protocol: access::Protocol,
}

/// What the relay reads of its tunnel besides the sockets.
pub struct Settings {
    /// `timeouts.tunnel_idle` of the upstream.
    pub idle: Duration,
    /// RFC 6455 frames are followed: a `websocket` upgrade. `None`: a byte tunnel.
    pub websocket: Option<WsSettings>,
    /// The upstream's counters (frames, bytes, closes, tunnel durations).
    pub stats: Arc<PoolStats>,
    pub upstream: Box<str>,
}

/// Bytes that came with the heads of a WebSocket upgrade: the client's first frames behind its
/// request, the node's behind its `101`. Followed like every later frame.
#[derive(Debug, Default)]
pub struct Early {
    pub up: Vec<u8>,
    pub down: Vec<u8>,
}

impl Handover {
    /// The whole tunnel: the client side joins the node side.
    pub fn with_client<C>(self, client: C) -> Tunnel<C> {
        Tunnel {
            client,
            handover: self,
        }
    }
}

/// A client connection that became a tunnel, ready to [relay](Tunnel::relay).
pub struct Tunnel<C> {
    client: C,
    handover: Handover,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Tunnel<C> {
    /// Relay to the end, then count it and write its access-log line. The sockets close and
    /// the node's tunnel count drops when this returns.
    pub async fn relay(mut self) {
        let h = &mut self.handover;
        let node = h.guard.node().id.as_str();
        tracing::debug!(upstream = %h.settings.upstream, node, "tunnel open");
        let ticket = registry::enter(h.guard.node_arc());
        let early = h.early.take();
        if h.settings.websocket.is_some() {
            let s = &h.settings.stats;
            s.add(stat::WS_BYTES_DOWN, u64::from(h.sent_down[0]));
            s.add(stat::WS_FRAMES_DOWN, u64::from(h.sent_down[1]));
        }
        let mut carried =
            relay::run(&mut self.client, &mut h.node, &h.settings, &ticket, early).await;
        carried.down += u64::from(h.sent_down[0]);
        carried.frames_down += u64::from(h.sent_down[1]);
        drop(ticket);
        let duration = h.started.elapsed();
        let s = &h.settings.stats;
        observe_tunnel(s, duration);
        if let Some((side, code)) = carried.close {
            let side = side * crate::ws::CODES.len();
            s.inc(stat::WS_CLOSES + side + crate::ws::code_index(code));
        }
        s.inc(stat::TUNNEL_ENDS + carried.end.index());
        access::tunnel(&access::Tunnel {
            client: h.client_ip,
            target: &h.path,
            upstream: &h.settings.upstream,
            node,
            bytes_up: carried.up,
            bytes_down: carried.down,
            frames_up: carried.frames_up,
            frames_down: carried.frames_down,
            close_code: carried.close.map(|(_, code)| code),
            duration,
            closed_by: carried.end.by(),
            protocol: h.protocol,
        });
        tracing::debug!(upstream = %h.settings.upstream, node, end = ?carried.end, secs = duration.as_secs(), "tunnel closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Shutdown;
    use crate::runtime::node::NodeState;

    /// Every open WebSocket keeps its relay task for hours: its future's size is what each
    /// one costs (with its sockets and its timer), so it is held to a bound here.
    #[tokio::test]
    async fn a_relay_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let node_state = Arc::new(NodeState::new("a", addr, 1));
        let handover = Handover {
            node: client.unwrap(),
            guard: node_state.acquire(),
            client_ip: addr.ip(),
            path: Box::from(&b"/ws"[..]),
            started: std::time::Instant::now(),
            settings: Settings {
                idle: Duration::from_secs(3600),
                websocket: Some(WsSettings {
                    rsv: 0,
                    ping_interval: Duration::from_secs(30),
                    ping_timeout: Duration::from_secs(15),
                }),
                stats: Arc::default(),
                upstream: "up".into(),
            },
            early: None,
            sent_down: [0, 0],
            protocol: access::Protocol::Http11,
        };
        let tunnel = handover.with_client(accepted.unwrap().0);
        let relay = tunnel.relay();
        let size = std::mem::size_of_val(&relay);
        eprintln!("relay future: {size} bytes");
        assert!(size <= RELAY_FUTURE_MAX, "{size} bytes");
    }

    /// The bound of [`a_relay_task_stays_small`] (bytes, in the test build).
    const RELAY_FUTURE_MAX: usize = 2048;

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

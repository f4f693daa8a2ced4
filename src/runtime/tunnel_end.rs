//! How a tunnel ends: who closed it, or why tether did. The engine's tunnels report it; the
//! access log, the counters and `/metrics` name it the same way.

/// Why tether itself closed a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The client answered no Ping: half-open (the node gets a Close 1001).
    PingTimeout,
    /// Its node left: drained with a deadline, removed by a reload or from DNS, or disabled
    /// (Close 1012 to the client, 1001 to the node).
    Leave,
    /// Moved to even out the upstream after a scale-out (Close 1012 / 1001).
    Rebalance,
    /// A graceful shutdown or a binary upgrade (Close 1001 / 1001).
    Shutdown,
    /// A frame broke RFC 6455 §5 (Close 1002 both ways).
    ProtocolError,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 5] = [
        Reason::PingTimeout,
        Reason::Leave,
        Reason::Rebalance,
        Reason::Shutdown,
        Reason::ProtocolError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::PingTimeout => "ping_timeout",
            Reason::Leave => "leave",
            Reason::Rebalance => "rebalance",
            Reason::Shutdown => "shutdown",
            Reason::ProtocolError => "protocol_error",
        }
    }
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
    /// tether closed it.
    Tether(Reason),
}

impl End {
    /// Who ended the tunnel, for the access log: client, node, idle, or tether's reason.
    pub fn by(self) -> &'static str {
        match self {
            End::ClientClosed => "client",
            End::NodeClosed => "node",
            End::Idle => "idle",
            End::Tether(r) => r.name(),
        }
    }

    /// Every way a tunnel ends, in counter order (`tether_tunnel_ends_total{by}`).
    pub fn all() -> impl Iterator<Item = End> {
        [End::ClientClosed, End::NodeClosed, End::Idle]
            .into_iter()
            .chain(Reason::ALL.into_iter().map(End::Tether))
    }

    /// This end's place in [`End::all`].
    pub fn index(self) -> usize {
        match self {
            End::ClientClosed => 0,
            End::NodeClosed => 1,
            End::Idle => 2,
            End::Tether(r) => 3 + r as usize,
        }
    }

    /// The side that closed, for the close-code counters.
    pub fn side(self) -> usize {
        match self {
            End::ClientClosed => 0,
            End::NodeClosed => 1,
            End::Idle | End::Tether(_) => 2,
        }
    }
}

/// The sides a close is counted under (`tether_websocket_closes_total{side}`).
pub const SIDES: [&str; 3] = ["client", "node", "tether"];

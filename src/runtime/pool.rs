//! An upstream as the running proxy sees it: nodes with live load, the balance policy, and the
//! pinning that keeps clients on their node.

use super::balance::Balancer;
use super::counters::Counters;
use super::engineio::SidTags;
use super::node::NodeState;
use crate::affinity::ring::Ring;
use crate::affinity::CookiePins;
use crate::config::{
    self, Affinity, Balance, CookieSettings, HealthCheck, KeyFallback, KeySource, Passive, Timeouts,
};
use std::sync::Arc;
use std::time::Duration;

/// How a pool keeps a client on its node: the runtime form of the `affinity:` config.
pub enum Pinning {
    /// Every request is placed anew by the balance policy.
    None,
    /// The client's IP address hashed onto a consistent-hash ring of the nodes.
    IpHash(Ring),
    /// A signed cookie naming the client's node.
    Cookie(CookiePins),
    /// A value the request carries, hashed onto the same ring as `IpHash`; `fallback` places
    /// requests without it.
    Key {
        ring: Ring,
        source: KeySource,
        fallback: Fallback,
    },
}

/// How key affinity places a request without the key.
pub enum Fallback {
    IpHash,
    Cookie(CookiePins),
    None,
}

impl Pinning {
    /// The cookie pins a request may carry: cookie mode's, or key mode's fallback.
    pub fn cookie(&self) -> Option<&CookiePins> {
        match self {
            Pinning::Cookie(pins)
            | Pinning::Key {
                fallback: Fallback::Cookie(pins),
                ..
            } => Some(pins),
            _ => None,
        }
    }
}

/// Per-upstream counters, one line per worker (see [`super::counters`]).
pub mod stat {
    use crate::runtime::decision::{Decision, Source};
    use crate::runtime::failure::NodeFailure;

    /// Request durations: one counter per bucket of [`DURATION_BUCKETS`] (not cumulative), then
    /// the `+Inf` bucket.
    pub const DURATION: usize = 0;
    pub const DURATION_COUNT: usize = DURATION + super::DURATION_BUCKETS.len() + 1;
    pub const DURATION_SUM_US: usize = DURATION_COUNT + 1;
    pub const UPGRADE_OK: usize = DURATION_SUM_US + 1;
    pub const UPGRADE_FAILED: usize = UPGRADE_OK + 1;
    /// Placement decisions, in [`Decision::ALL`] order.
    pub const DECISIONS: usize = UPGRADE_FAILED + 1;
    pub const INVALID_TOKEN: usize = DECISIONS + Decision::ALL.len();
    /// What decided each request's node, in [`Source::ALL`] order.
    pub const SOURCES: usize = INVALID_TOKEN + 1;
    /// engine.io handshakes whose session id got its tag, and those left alone (unreadable).
    pub const ENGINEIO_REWRITTEN: usize = SOURCES + Source::ALL.len();
    pub const ENGINEIO_MALFORMED: usize = ENGINEIO_REWRITTEN + 1;
    /// Session ids with a tag-shaped suffix that did not verify (stripped, then ignored).
    pub const ENGINEIO_INVALID_TAGS: usize = ENGINEIO_MALFORMED + 1;
    /// Exchanges that ended in a node failure, in [`NodeFailure::ALL`] order.
    pub const FAILURES: usize = ENGINEIO_INVALID_TAGS + 1;
    /// Exchanges whose client went away before they ended (logged as 499).
    pub const CLIENT_GONE: usize = FAILURES + NodeFailure::ALL.len();
    /// WebSocket frames and bytes each way (client → node is up), counted as tunnels run.
    pub const WS_FRAMES_UP: usize = CLIENT_GONE + 1;
    pub const WS_FRAMES_DOWN: usize = WS_FRAMES_UP + 1;
    pub const WS_BYTES_UP: usize = WS_FRAMES_DOWN + 1;
    pub const WS_BYTES_DOWN: usize = WS_BYTES_UP + 1;
    /// WebSocket close codes by side (client, node, tether) then code, in `ws::CODES` order.
    pub const WS_CLOSES: usize = WS_BYTES_DOWN + 1;
    /// Tunnels by how they ended: client, node, idle, then tether's reasons in `Reason` order.
    pub const TUNNEL_ENDS: usize = WS_CLOSES + 3 * crate::ws::CODES.len();
    /// Tunnel durations: one counter per bucket of [`TUNNEL_BUCKETS`], then `+Inf`, count, sum.
    pub const TUNNEL_DURATION: usize = TUNNEL_ENDS + 3 + TETHER_REASONS;
    pub const TUNNEL_DURATION_COUNT: usize = TUNNEL_DURATION + super::TUNNEL_BUCKETS.len() + 1;
    pub const TUNNEL_DURATION_SUM_MS: usize = TUNNEL_DURATION_COUNT + 1;
    /// Tunnels a rebalance asked to move (control thread).
    pub const REBALANCE_MOVES: usize = TUNNEL_DURATION_SUM_MS + 1;
    pub const LEN: usize = REBALANCE_MOVES + 1;
    /// Reasons tether closes a tunnel for (`engine::tunnel::Reason`).
    pub const TETHER_REASONS: usize = 5;
}

/// Request duration buckets, seconds: from loopback-fast answers to held long-polls.
pub const DURATION_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// Tunnel duration buckets, seconds: from a WebSocket that fails at once to one held a day.
pub const TUNNEL_BUCKETS: [f64; 12] = [
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0,
];

/// Count one tunnel's lifetime in the pool's histogram.
pub fn observe_tunnel(stats: &PoolStats, lived: Duration) {
    let secs = lived.as_secs_f64();
    let bucket = TUNNEL_BUCKETS
        .iter()
        .position(|&b| secs <= b)
        .unwrap_or(TUNNEL_BUCKETS.len());
    stats.inc(stat::TUNNEL_DURATION + bucket);
    stats.inc(stat::TUNNEL_DURATION_COUNT);
    stats.add(stat::TUNNEL_DURATION_SUM_MS, lived.as_millis() as u64);
}

/// An upstream's counters, kept by upstream name across reloads.
pub type PoolStats = Counters<{ stat::LEN }>;

/// Count one request's duration in the pool's histogram.
pub fn observe_duration(stats: &PoolStats, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let bucket = DURATION_BUCKETS
        .iter()
        .position(|&b| secs <= b)
        .unwrap_or(DURATION_BUCKETS.len());
    stats.inc(stat::DURATION + bucket);
    stats.inc(stat::DURATION_COUNT);
    stats.add(stat::DURATION_SUM_US, elapsed.as_micros() as u64);
}

fn cookie_pins(c: &CookieSettings, ids: &[&str]) -> CookiePins {
    let previous: Vec<&[u8]> = c.previous_secrets.iter().map(Vec::as_slice).collect();
    CookiePins::new(c, &previous, ids)
}

/// One upstream: built from config, replaced whole on reload.
pub struct Pool {
    pub name: String,
    pub nodes: Vec<Arc<NodeState>>,
    pub balancer: Balancer,
    pub pinning: Pinning,
    /// engine.io session affinity, when on.
    pub engineio: Option<SidTags>,
    pub timeouts: Timeouts,
    pub health_check: Option<HealthCheck>,
    pub passive: Passive,
    pub slow_start: Duration,
    pub max_tunnels_per_node: u32,
    /// A leaving node's tunnels close evenly over this window.
    pub leave_spread: Duration,
    /// Moving tunnels off crowded nodes after a scale-out; `None`: off.
    pub rebalance: Option<config::Rebalance>,
    pub stats: Arc<PoolStats>,
}

impl Pool {
    /// Build a pool from config. With `previous` (a reload), nodes that keep their id keep their
    /// live state: admin state, health, counters; the pool keeps its counters.
    pub fn new(up: &config::Upstream, previous: Option<&Pool>) -> Pool {
        let nodes: Vec<_> = up
            .nodes
            .iter()
            .map(|n| {
                let old = previous.and_then(|p| p.nodes.iter().find(|o| o.id == n.id));
                match old {
                    // Same id and address: the very same state object, so in-flight guards and
                    // open tunnels keep counting on it.
                    Some(o) if o.address == n.address && o.weight == n.weight => Arc::clone(o),
                    Some(o) => {
                        Arc::new(NodeState::new(n.id.clone(), n.address, n.weight).inherit(o))
                    }
                    None => Arc::new(NodeState::new(n.id.clone(), n.address, n.weight)),
                }
            })
            .collect();
        let ids: Vec<&str> = up.nodes.iter().map(|n| n.id.as_str()).collect();
        let pinning = match &up.affinity {
            Affinity::None => Pinning::None,
            Affinity::IpHash => Pinning::IpHash(Ring::new(
                up.nodes.iter().map(|n| (n.id.as_str(), n.weight)),
            )),
            Affinity::Cookie(c) => Pinning::Cookie(cookie_pins(c, &ids)),
            Affinity::Key { source, fallback } => Pinning::Key {
                ring: Ring::new(up.nodes.iter().map(|n| (n.id.as_str(), n.weight))),
                source: source.clone(),
                fallback: match fallback {
                    KeyFallback::IpHash => Fallback::IpHash,
                    KeyFallback::Cookie(c) => Fallback::Cookie(cookie_pins(c, &ids)),
                    KeyFallback::None => Fallback::None,
                },
            },
        };
        let balancer = match up.balance {
            Balance::LeastConn => Balancer::least_conn(),
            Balance::RoundRobin => {
                Balancer::round_robin(&up.nodes.iter().map(|n| n.weight).collect::<Vec<_>>())
            }
        };
        Pool {
            name: up.name.clone(),
            nodes,
            balancer,
            pinning,
            engineio: up.engineio.as_ref().map(|k| {
                let previous: Vec<&[u8]> = k.previous_secrets.iter().map(Vec::as_slice).collect();
                SidTags::new(&k.secret, &previous, &ids)
            }),
            timeouts: up.timeouts,
            health_check: up.health_check.clone(),
            passive: up.passive,
            slow_start: up.slow_start,
            max_tunnels_per_node: up.max_tunnels_per_node,
            leave_spread: up.leave_spread,
            rebalance: up.rebalance,
            stats: previous.map_or_else(Arc::default, |p| Arc::clone(&p.stats)),
        }
    }

    /// A first pick for a client without a pin, among nodes where `usable` holds.
    pub fn balance(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        self.balancer.pick(&self.nodes, usable)
    }

    /// The usable node that `client` ranks first (weighted rendezvous hashing): the same for
    /// every request with that key while the usable set is the same, and spread over the nodes
    /// by weight across keys. Used for re-pins; `None` when no node is usable.
    pub fn rendezvous(&self, client: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        super::balance::rendezvous(&self.nodes, client, usable)
    }

    /// A rebalance is on and some node holds less than its share ÷ `max_skew`: sessions that
    /// start on a node above its share are placed elsewhere.
    pub fn rebalancing(&self) -> bool {
        self.rebalance.is_some() && self.nodes.iter().any(|n| n.under_bound())
    }

    /// A connection to node `node` failed or timed out: count it toward passive health.
    pub fn passive_failure(&self, node: usize) {
        self.nodes[node].passive_failure(
            &self.name,
            self.passive.max_fails,
            self.passive.fail_timeout,
        );
    }
}

//! Upstream pools as the running proxy sees them: nodes with live load, the balance policy and
//! the affinity that keeps clients on their node.

pub mod balance;
pub mod node;

use crate::affinity::ring::Ring;
use crate::affinity::CookiePins;
use crate::config::{self, Affinity, Balance, HealthCheck, Passive, Timeouts};
use crate::metrics::PoolMetrics;
use balance::Balancer;
use node::NodeState;
use std::sync::Arc;

/// How a pool keeps clients on their node.
pub enum Stickiness {
    None,
    IpHash(Ring),
    Cookie(CookiePins),
}

/// One upstream: built from config, replaced whole on reload.
pub struct Pool {
    pub name: String,
    pub nodes: Vec<Arc<NodeState>>,
    pub balancer: Balancer,
    pub stickiness: Stickiness,
    pub timeouts: Timeouts,
    pub health_check: Option<HealthCheck>,
    pub passive: Passive,
    pub slow_start: std::time::Duration,
    pub max_tunnels_per_node: u32,
    pub metrics: PoolMetrics,
}

impl Pool {
    /// Build a pool from config. With `previous` (a reload), nodes that keep their id keep their
    /// live state: admin state, health, counters.
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
                        let fresh = NodeState::new(&up.name, n.id.clone(), n.address, n.weight);
                        fresh.inherit(o);
                        Arc::new(fresh)
                    }
                    None => Arc::new(NodeState::new(&up.name, n.id.clone(), n.address, n.weight)),
                }
            })
            .collect();
        let ids: Vec<&str> = up.nodes.iter().map(|n| n.id.as_str()).collect();
        let stickiness = match &up.affinity {
            Affinity::None => Stickiness::None,
            Affinity::IpHash => Stickiness::IpHash(Ring::new(
                up.nodes.iter().map(|n| (n.id.as_str(), n.weight)),
            )),
            Affinity::Cookie(c) => {
                let previous: Vec<&[u8]> = c.previous_secrets.iter().map(Vec::as_slice).collect();
                Stickiness::Cookie(CookiePins::new(c, &previous, &ids))
            }
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
            stickiness,
            timeouts: up.timeouts,
            health_check: up.health_check.clone(),
            passive: up.passive,
            slow_start: up.slow_start,
            max_tunnels_per_node: up.max_tunnels_per_node,
            metrics: PoolMetrics::new(&up.name),
        }
    }

    /// A first pick for a client without a pin, among nodes where `usable` holds.
    pub fn balance(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        self.balancer.pick(&self.nodes, usable)
    }
}

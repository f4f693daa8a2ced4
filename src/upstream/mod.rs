//! Upstream pools as the running proxy sees them: nodes with live load, the balance policy and
//! the affinity that keeps clients on their node.

pub mod balance;
pub mod node;

use crate::affinity::ring::Ring;
use crate::affinity::CookiePins;
use crate::config::{self, Affinity, Balance, Timeouts};
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
}

impl Pool {
    pub fn new(up: &config::Upstream) -> Pool {
        let nodes: Vec<_> = up
            .nodes
            .iter()
            .map(|n| Arc::new(NodeState::new(n.id.clone(), n.address, n.weight)))
            .collect();
        let ids: Vec<&str> = up.nodes.iter().map(|n| n.id.as_str()).collect();
        let stickiness = match &up.affinity {
            Affinity::None => Stickiness::None,
            Affinity::IpHash => Stickiness::IpHash(Ring::new(
                up.nodes.iter().map(|n| (n.id.as_str(), n.weight)),
            )),
            Affinity::Cookie(c) => Stickiness::Cookie(CookiePins::new(c, &[], &ids)),
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
        }
    }

    /// A first pick for a client without a pin, among nodes where `usable` holds.
    pub fn balance(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        self.balancer.pick(&self.nodes, usable)
    }
}

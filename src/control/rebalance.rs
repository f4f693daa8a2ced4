//! Rebalancing after a scale-out: new nodes take a share of the long-lived connections that
//! least-connections alone would leave on the old ones.
//!
//! Every second, for each upstream with `rebalance:`, the fair share of each healthy, active node
//! is its weight's part of the upstream's open tunnels (this replica's: a replica only ever
//! decides about its own tunnels, so several replicas need no shared state). The upstream is out
//! of balance when a node holds more than `max_skew` × its share or less than its share ÷
//! `max_skew` (a node that just joined holds none, so it alone is enough). Then a **plan** is
//! made: as many moves as it takes to bring every node within its bounds (not to its share:
//! 3 × 1,000 tunnels and a fourth node give shares of 750 and bounds of 500–1,125, so 500 moves,
//! not 750). The plan's moves are handed out at most `moves_per_second` a second to the nodes
//! above their share, in proportion to their excess; each worker closes that many of its tunnels
//! there with a Close 1012, at a frame boundary. A moved client reconnects, and a session that
//! starts while its pinned node is above its share and another node is under its bounds is
//! placed off the crowded nodes (`Placement::choose`), so the reconnects land where they are
//! missing, whichever replica they reach.
//!
//! Nothing flaps: a node at or under its share is never a source (and moved clients land on
//! such nodes), a plan stops as soon as every node is within its bounds, and after a plan the
//! upstream settles (reconnects arrive) before it is judged again.

use crate::runtime::node::{AdminState, Health, NodeState};
use crate::runtime::pool::{stat, Pool};
use crate::runtime::Shared;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often balance is judged and moves handed out.
pub const EVERY: Duration = Duration::from_secs(1);
/// After a plan's last moves, how long the reconnects have to land before balance is judged
/// again (socket.io reconnects after 1 to 5 s by default).
pub const SETTLE: Duration = Duration::from_secs(10);

/// One upstream's rebalance in progress.
#[derive(Debug, Default)]
struct Plan {
    /// Moves still to hand out.
    left: u64,
    /// No new plan before this (the last one's reconnects are still landing).
    settle_until: Option<Instant>,
}

/// Judge every rebalancing upstream each second, for as long as the process runs.
pub async fn run(runtime: &'static Shared) {
    let mut plans: HashMap<String, Plan> = HashMap::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let rt = runtime.load();
        for pool in &rt.pools {
            let plan = plans.entry(pool.name.clone()).or_default();
            step(pool, plan, Instant::now());
        }
        plans.retain(|name, _| rt.pool(name).is_some());
    }
}

/// A node's place in the balance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    pub tunnels: u64,
    pub share: f64,
}

impl Standing {
    fn lower(&self, skew: f64) -> f64 {
        self.share / skew
    }
    fn upper(&self, skew: f64) -> f64 {
        self.share * skew
    }
}

/// Each node's tunnels and fair share, `None` for a node that takes no part (unhealthy, not
/// active, leaving): `(tunnels, weight)` in, shares out.
pub fn standings(nodes: &[Option<(u64, u32)>]) -> Vec<Option<Standing>> {
    let total: u64 = nodes.iter().flatten().map(|(t, _)| t).sum();
    let weights: u64 = nodes.iter().flatten().map(|(_, w)| u64::from(*w)).sum();
    nodes
        .iter()
        .map(|n| {
            n.map(|(tunnels, w)| Standing {
                tunnels,
                share: if weights == 0 {
                    0.0
                } else {
                    total as f64 * f64::from(w) / weights as f64
                },
            })
        })
        .collect()
}

/// Moves that bring every node within its bounds: enough to lift every node under its lower
/// bound to it, and to bring every node over its upper bound down to it.
pub fn moves_needed(standings: &[Option<Standing>], skew: f64) -> u64 {
    let mut lift = 0u64;
    let mut shed = 0u64;
    for s in standings.iter().flatten() {
        let (lower, upper) = (s.lower(skew), s.upper(skew));
        if (s.tunnels as f64) < lower {
            lift += (lower.ceil() as u64).saturating_sub(s.tunnels);
        }
        if (s.tunnels as f64) > upper {
            shed += s.tunnels - upper.floor() as u64;
        }
    }
    lift.max(shed)
}

/// Hand out `n` moves to the nodes above their share, in proportion to their excess (largest
/// remainders get the odd ones), never taking a node below its share.
pub fn sources(standings: &[Option<Standing>], n: u64) -> Vec<u64> {
    let excess: Vec<f64> = standings
        .iter()
        .map(|s| s.map_or(0.0, |s| (s.tunnels as f64 - s.share).max(0.0)))
        .collect();
    let total: f64 = excess.iter().sum();
    if total <= 0.0 || n == 0 {
        return vec![0; standings.len()];
    }
    let n = (n as f64).min(total.floor()) as u64;
    let exact: Vec<f64> = excess.iter().map(|e| e * n as f64 / total).collect();
    let mut out: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut left = n - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|a, b| {
        (exact[*b] - exact[*b].floor())
            .partial_cmp(&(exact[*a] - exact[*a].floor()))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    for i in order {
        if left == 0 {
            break;
        }
        if excess[i] - out[i] as f64 >= 1.0 {
            out[i] += 1;
            left -= 1;
        }
    }
    out
}

/// One second of one upstream.
fn step(pool: &Pool, plan: &mut Plan, now: Instant) {
    let Some(r) = pool.rebalance else {
        for n in &pool.nodes {
            n.set_balance(false, false);
        }
        return;
    };
    let part = |n: &Arc<NodeState>| {
        (n.health() == Health::Healthy && n.admin() == AdminState::Active && n.leaving().is_none())
            .then(|| (n.open_tunnels(), n.weight))
    };
    let counts: Vec<Option<(u64, u32)>> = pool.nodes.iter().map(part).collect();
    let standings = standings(&counts);
    let taking_part = standings.iter().flatten().count();
    for (n, s) in pool.nodes.iter().zip(&standings) {
        let (over, under) = match s {
            Some(s) if taking_part > 1 => (
                s.tunnels as f64 > s.share,
                (s.tunnels as f64) < s.lower(r.max_skew),
            ),
            _ => (false, false),
        };
        n.set_balance(over, under);
    }
    let needed = if taking_part > 1 {
        moves_needed(&standings, r.max_skew)
    } else {
        0
    };
    if needed == 0 {
        // Within bounds: a plan stops here, and moves not yet taken are dropped.
        if plan.left > 0 {
            tracing::info!(upstream = %pool.name, "rebalance done: every node within its bounds");
        }
        plan.left = 0;
        for n in &pool.nodes {
            n.cancel_moves();
        }
        return;
    }
    if plan.left == 0 {
        if plan.settle_until.is_some_and(|t| now < t) {
            return;
        }
        plan.left = needed;
        tracing::info!(upstream = %pool.name, moves = needed, per_second = r.moves_per_second, "rebalance: nodes outside their bounds; moving tunnels off crowded nodes");
    }
    let now_moves = plan.left.min(u64::from(r.moves_per_second));
    let per_node = sources(&standings, now_moves);
    let handed: u64 = per_node.iter().sum();
    for (n, k) in pool.nodes.iter().zip(per_node) {
        if k > 0 {
            n.add_moves(k);
        }
    }
    pool.stats.add(stat::REBALANCE_MOVES, handed);
    plan.left = plan.left.saturating_sub(handed.max(1));
    if plan.left == 0 {
        plan.settle_until = Some(now + SETTLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tunnels: &[u64]) -> Vec<Option<Standing>> {
        standings(&tunnels.iter().map(|t| Some((*t, 1))).collect::<Vec<_>>())
    }

    #[test]
    fn a_new_empty_node_alone_puts_the_upstream_out_of_balance() {
        // 3 × 1,000 and a fourth node: shares 750, bounds 500..1125: 500 moves, not 750.
        let s = at(&[1000, 1000, 1000, 0]);
        assert_eq!(s[0].unwrap().share, 750.0);
        assert_eq!(moves_needed(&s, 1.5), 500);
        // Two replicas each see half.
        assert_eq!(moves_needed(&at(&[500, 500, 500, 0]), 1.5), 250);
        // Within bounds: nothing.
        assert_eq!(moves_needed(&at(&[833, 833, 834, 500]), 1.5), 0);
        assert_eq!(moves_needed(&at(&[0, 0, 0]), 1.5), 0);
    }

    #[test]
    fn moves_come_from_nodes_above_their_share_only() {
        let s = at(&[1000, 1000, 1000, 0]);
        let out = sources(&s, 20);
        assert_eq!(out.iter().sum::<u64>(), 20);
        assert_eq!(out[3], 0, "the empty node is no source");
        assert!(out[..3].iter().all(|k| (6..=7).contains(k)), "{out:?}");
        // A node at or under its share is never a source.
        let s = at(&[900, 750, 600, 750]);
        let out = sources(&s, 50);
        assert_eq!(out, [50, 0, 0, 0]);
        // Never below the share: at most the excess.
        let s = at(&[760, 740]);
        assert_eq!(sources(&s, 100), [10, 0]);
    }

    #[test]
    fn weights_shape_the_shares() {
        let s = standings(&[Some((300, 2)), Some((0, 1)), None]);
        assert_eq!(s[0].unwrap().share, 200.0);
        assert_eq!(s[1].unwrap().share, 100.0);
        assert!(s[2].is_none());
        // 300 > 200 × 1.5 and 0 < 100 / 1.5.
        assert_eq!(moves_needed(&s, 1.5), 67);
    }
}

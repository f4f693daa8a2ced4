//! First picks for clients without a pin: weighted least-connections and weighted round robin.
//!
//! Both are lock-free and share nothing between workers but the nodes' load counters:
//! least_conn reads those, round robin walks a schedule computed once per config. Each worker
//! keeps its own cursor ([`Counters::next`]), so a pick writes only the worker's own cache line;
//! each worker's sequence is smooth and weighted, and so is their union.

use super::counters::Counters;
use super::node::NodeState;
use std::sync::Arc;

/// The policy with its per-worker cursor.
#[derive(Debug)]
pub enum Balancer {
    LeastConn {
        /// Where the scan for the least loaded node starts (rotated so ties spread).
        rotate: Counters<1>,
    },
    RoundRobin {
        schedule: Vec<u32>,
        next: Counters<1>,
    },
}

impl Balancer {
    pub fn least_conn() -> Balancer {
        Balancer::LeastConn {
            rotate: Counters::default(),
        }
    }

    /// Smooth weighted round robin (nginx's algorithm), unrolled into a fixed schedule so picks
    /// need no lock: weights 5,1,1 give a,a,b,a,c,a,a rather than a,a,a,a,a,b,c.
    pub fn round_robin(weights: &[u32]) -> Balancer {
        let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, &w) in current.iter_mut().zip(weights) {
                *c += i64::from(w);
            }
            let Some((best, _)) = current
                .iter()
                .enumerate()
                .max_by_key(|&(i, c)| (*c, -(i as i64)))
            else {
                break;
            };
            current[best] -= total;
            schedule.push(best as u32);
        }
        Balancer::RoundRobin {
            schedule,
            next: Counters::default(),
        }
    }

    /// A node index among `nodes` for which `usable` holds, or `None` when there is none.
    pub fn pick(&self, nodes: &[Arc<NodeState>], usable: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Balancer::LeastConn { rotate } => {
                let n = nodes.len();
                if n == 0 {
                    return None;
                }
                // Rotate the starting point so ties (an idle cluster) spread instead of all
                // landing on the first node.
                let start = rotate.next(0) as usize % n;
                let mut best: Option<(usize, u64, u64)> = None;
                for k in 0..n {
                    let i = (start + k) % n;
                    if !usable(i) {
                        continue;
                    }
                    // Compare (load + 1) / weight by cross-multiplying: the +1 makes weights
                    // count even when the cluster is idle.
                    let (load, weight) = (nodes[i].load() + 1, u64::from(nodes[i].weight));
                    match best {
                        Some((_, bl, bw)) if load * bw >= bl * weight => {}
                        _ => best = Some((i, load, weight)),
                    }
                }
                best.map(|(i, _, _)| i)
            }
            Balancer::RoundRobin { schedule, next } => {
                let len = schedule.len();
                if len == 0 {
                    return None;
                }
                let start = next.next(0) as usize;
                (0..len)
                    .map(|k| schedule[(start + k) % len] as usize)
                    .find(|&i| i < nodes.len() && usable(i))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(weights: &[u32]) -> Vec<Arc<NodeState>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                Arc::new(NodeState::new(
                    format!("n{i}"),
                    "127.0.0.1:1".parse().unwrap(),
                    w,
                ))
            })
            .collect()
    }

    #[test]
    fn round_robin_is_smooth_and_weighted() {
        let b = Balancer::round_robin(&[5, 1, 1]);
        let ns = nodes(&[5, 1, 1]);
        let picks: Vec<_> = (0..7).map(|_| b.pick(&ns, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(b.pick(&ns, |i| i == 2), Some(2));
        assert_eq!(b.pick(&ns, |_| false), None);
    }

    #[test]
    fn least_conn_prefers_the_least_loaded_per_weight() {
        let ns = nodes(&[1, 1, 2]);
        let b = Balancer::least_conn();
        let _g1 = ns[0].acquire();
        let _g2 = ns[1].acquire();
        // (1+1)/1, (1+1)/1, (0+1)/2: the weighted node wins.
        assert_eq!(b.pick(&ns, |_| true), Some(2));
        let _g3 = ns[2].acquire();
        let _g4 = ns[2].acquire();
        // now 2/1, 2/1, 3/2 = 1.5: still the weighted node.
        assert_eq!(b.pick(&ns, |_| true), Some(2));
        let _g5 = ns[2].acquire();
        // 2, 2, 2: a tie, any of them.
        assert!(b.pick(&ns, |_| true).is_some());
        assert_eq!(b.pick(&ns, |i| i == 1), Some(1));
    }

    #[test]
    fn least_conn_spreads_an_idle_cluster() {
        let ns = nodes(&[1, 1, 1]);
        let b = Balancer::least_conn();
        let mut seen = [0; 3];
        for _ in 0..30 {
            seen[b.pick(&ns, |_| true).unwrap()] += 1;
        }
        assert_eq!(seen, [10, 10, 10]);
    }
}

//! First picks for clients without a pin: weighted least-connections and weighted round robin;
//! and re-pins, by weighted rendezvous hashing of the client's key.
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

/// Weighted rendezvous (highest random weight) hashing: every usable node scores
/// `-weight / ln(u)` with `u` uniform in (0, 1) from the client key and the node's id; the
/// highest wins. A node leaving moves only the keys it had; weights set the shares.
pub fn rendezvous(
    nodes: &[Arc<NodeState>],
    client: u64,
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, node) in nodes.iter().enumerate() {
        if !usable(i) {
            continue;
        }
        let mut h = client ^ 0x51_7c_c1_b7_27_22_0a_95;
        for b in node.id.as_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        // 53 random bits, never 0 or 1.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = -f64::from(node.weight) / u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
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

    /// Client keys as the affinity module makes them: well spread 64-bit values.
    fn keys(n: u64) -> impl Iterator<Item = u64> {
        (1..=n).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xA5A5)
    }

    #[test]
    fn rendezvous_is_stable_per_key_and_spread_by_weight() {
        let ns = nodes(&[1, 1, 2]);
        let mut seen = [0u32; 3];
        for k in keys(4000) {
            let pick = rendezvous(&ns, k, |_| true).unwrap();
            assert_eq!(
                rendezvous(&ns, k, |_| true),
                Some(pick),
                "the same every time"
            );
            seen[pick] += 1;
        }
        // Shares 1:1:2 of 4000 = 1000, 1000, 2000, within a few percent.
        assert!((900..1100).contains(&seen[0]), "{seen:?}");
        assert!((900..1100).contains(&seen[1]), "{seen:?}");
        assert!((1850..2150).contains(&seen[2]), "{seen:?}");
        assert_eq!(rendezvous(&ns, 1, |_| false), None);
    }

    #[test]
    fn rendezvous_moves_only_the_keys_of_a_node_that_leaves() {
        let ns = nodes(&[1, 1, 1, 1]);
        for k in keys(2000) {
            let before = rendezvous(&ns, k, |_| true).unwrap();
            let after = rendezvous(&ns, k, |i| i != 2).unwrap();
            if before != 2 {
                assert_eq!(after, before, "key {k} moved though its node stayed");
            }
        }
    }
}

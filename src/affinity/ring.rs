//! A consistent-hash ring over node ids, for `ip_hash` and key affinity.
//!
//! We keep our own ring rather than pingora-ketama because ketama keys points by socket address:
//! a node that moves to a new address (a rescheduled pod, a DNS change) would take its clients with
//! it. Here points are keyed by node **id** and hashed with xxh3 under a fixed seed, so the same
//! config gives the same placement on every restart, every replica and every Rust version.
//! Removing a node moves only the clients whose points it owned.

use std::net::IpAddr;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Points per unit of weight; 160 is ketama's figure and spreads load within a few percent.
const POINTS_PER_WEIGHT: u32 = 160;
/// Never change this: it would move every ip_hash client of every deployment.
const SEED: u64 = 0x7465_7468_6572_0001;

/// The ring. Built once per config; lookups are a hash and a binary search.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// (point, node index), sorted by point.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// `nodes` are `(id, weight)` in config order; lookups return indexes into that order.
    pub fn new<'a>(nodes: impl IntoIterator<Item = (&'a str, u32)>) -> Ring {
        let mut points = Vec::new();
        let mut buf = Vec::with_capacity(64);
        for (index, (id, weight)) in nodes.into_iter().enumerate() {
            for replica in 0..weight.saturating_mul(POINTS_PER_WEIGHT) {
                buf.clear();
                buf.extend_from_slice(id.as_bytes());
                buf.push(0);
                buf.extend_from_slice(&replica.to_be_bytes());
                points.push((xxh3_64_with_seed(&buf, SEED), index as u32));
            }
        }
        // Ties (astronomically rare) are broken by node index so the order is still total.
        points.sort_unstable();
        Ring { points }
    }

    /// The node owning `key`.
    pub fn get(&self, key: &[u8]) -> Option<usize> {
        self.get_where(key, |_| true)
    }

    /// The first node clockwise from `key` for which `usable` holds: when a node is unusable its
    /// clients go to its ring successor, and come back when it is usable again.
    pub fn get_where(&self, key: &[u8], usable: impl FnMut(usize) -> bool) -> Option<usize> {
        self.get_hashed(Ring::hash(key), usable)
    }

    /// Where `key` falls on every ring (the hash [`get_hashed`](Self::get_hashed) takes).
    pub fn hash(key: &[u8]) -> u64 {
        xxh3_64_with_seed(key, SEED)
    }

    /// [`get_where`](Self::get_where) for a key already hashed with [`Ring::hash`].
    pub fn get_hashed(&self, h: u64, mut usable: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < h);
        let n = self.points.len();
        let mut last = u32::MAX;
        for i in 0..n {
            let node = self.points[(start + i) % n].1;
            // Consecutive points of one node are common; test each node once per run.
            if node != last {
                if usable(node as usize) {
                    return Some(node as usize);
                }
                last = node;
            }
        }
        None
    }
}

/// The hash key of a client address: the full address, with IPv4-mapped IPv6 folded to IPv4 so a
/// dual-stack listener hashes a client the same either way.
pub fn ip_key(ip: IpAddr, buf: &mut [u8; 16]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            &buf[..4]
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => {
                buf[..4].copy_from_slice(&v4.octets());
                &buf[..4]
            }
            None => {
                buf.copy_from_slice(&v6.octets());
                &buf[..]
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn addrs(n: u32) -> impl Iterator<Item = IpAddr> {
        (0..n).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7919)))
    }

    fn owner(ring: &Ring, ip: IpAddr) -> usize {
        ring.get(ip_key(ip, &mut [0; 16])).unwrap()
    }

    #[test]
    fn removing_a_node_moves_only_its_clients() {
        let ids = ["node-a", "node-b", "node-c", "node-d"];
        let full = Ring::new(ids.iter().map(|id| (*id, 1)));
        let without_c = Ring::new(ids.iter().filter(|id| **id != "node-c").map(|id| (*id, 1)));
        let mut kept_c = 0;
        for ip in addrs(10_000) {
            let before = ids[owner(&full, ip)];
            let remaining: Vec<_> = ids.iter().filter(|id| **id != "node-c").collect();
            let after = *remaining[owner(&without_c, ip)];
            if before == "node-c" {
                kept_c += 1;
                assert_ne!(after, "node-c");
            } else {
                assert_eq!(before, after, "{ip} moved off a node that stayed");
            }
        }
        assert!(
            kept_c > 1_500 && kept_c < 3_500,
            "node-c owned {kept_c} of 10000"
        );
    }

    #[test]
    fn weights_are_respected_and_placement_is_fixed() {
        let ring = Ring::new([("a", 1), ("b", 3)]);
        let mut counts = HashMap::new();
        for ip in addrs(10_000) {
            *counts.entry(owner(&ring, ip)).or_insert(0) += 1;
        }
        let b_share = counts[&1] as f64 / 10_000.0;
        assert!((0.65..0.85).contains(&b_share), "b got {b_share}");
        // A fixed seed: rebuilding gives the same answer (and so does every replica).
        let again = Ring::new([("a", 1), ("b", 3)]);
        assert!(addrs(1_000).all(|ip| owner(&ring, ip) == owner(&again, ip)));
    }

    #[test]
    fn unusable_nodes_pass_their_clients_to_the_successor() {
        let ring = Ring::new([("a", 1), ("b", 1), ("c", 1)]);
        for ip in addrs(1_000) {
            let first = owner(&ring, ip);
            let next = ring
                .get_where(ip_key(ip, &mut [0; 16]), |n| n != first)
                .unwrap();
            assert_ne!(next, first);
        }
        assert_eq!(ring.get_where(b"x", |_| false), None);
        assert_eq!(Ring::new([]).get(b"x"), None);
    }

    #[test]
    fn ipv4_mapped_ipv6_hashes_like_ipv4() {
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        let mut a = [0; 16];
        let mut b = [0; 16];
        assert_eq!(
            ip_key(IpAddr::V4(v4), &mut a),
            ip_key(IpAddr::V6(v4.to_ipv6_mapped()), &mut b)
        );
        assert_eq!(ip_key(IpAddr::V6(Ipv6Addr::LOCALHOST), &mut a).len(), 16);
    }
}

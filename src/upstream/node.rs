//! A node's live state: identity, address and the load counter that `least_conn` reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One node as the running proxy sees it. Shared (`Arc`) between the pool and every request or
/// tunnel currently on it, so a request that outlives a config change still decrements the
/// counter it incremented.
#[derive(Debug)]
pub struct NodeState {
    pub id: String,
    pub address: SocketAddr,
    pub weight: u32,
    /// In-flight requests plus open tunnels.
    load: AtomicU64,
}

impl NodeState {
    pub fn new(id: impl Into<String>, address: SocketAddr, weight: u32) -> NodeState {
        NodeState {
            id: id.into(),
            address,
            weight: weight.max(1),
            load: AtomicU64::new(0),
        }
    }

    /// Current in-flight requests plus open tunnels.
    pub fn load(&self) -> u64 {
        self.load.load(Ordering::Relaxed)
    }

    /// Count one request (or tunnel) on this node until the guard drops, whatever way the request
    /// ends: response, error, client gone or tunnel closed.
    pub fn acquire(self: &Arc<Self>) -> LoadGuard {
        self.load.fetch_add(1, Ordering::Relaxed);
        LoadGuard(Arc::clone(self))
    }
}

/// Decrements its node's load when dropped.
#[derive(Debug)]
pub struct LoadGuard(Arc<NodeState>);

impl LoadGuard {
    pub fn node(&self) -> &NodeState {
        &self.0
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.load.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_exactly_under_concurrency() {
        let node = Arc::new(NodeState::new("a", "127.0.0.1:1".parse().unwrap(), 1));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        let g = node.acquire();
                        assert!(g.node().load() >= 1);
                    }
                });
            }
        });
        assert_eq!(node.load(), 0);
    }
}

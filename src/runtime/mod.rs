//! The runtime: the immutable snapshot one request reads, and the decisions made from it.
//!
//! A [`Runtime`] is built from a validated config (plus what DNS discovery found) and swapped in
//! whole on every change; a request takes one snapshot and uses it to the end. Inside it:
//! pools of nodes with their live state ([`pool`], [`node`], [`balance`]), the [`route`] table,
//! and the request policy every request goes through: [`placement`] (which node), [`websocket`]
//! (may this upgrade happen), [`client_ip`] (who the client is), [`forwarded`] (what the node is
//! told), [`failure`] (the one table from failure to status), and [`counters`] (statistics each
//! worker writes alone).
//!
//! **May import:** `config`, `affinity`. **May not import:** `engine`, `control`, or anything
//! that owns a socket, a task or a thread: everything here is synchronous and unit-testable.

pub mod balance;
pub mod client_ip;
pub mod counters;
pub mod failure;
pub mod forwarded;
pub mod node;
pub mod placement;
pub mod pool;
pub mod route;
pub mod websocket;

use crate::config::Config;
use arc_swap::ArcSwap;
use pool::Pool;
use route::Router;

/// Everything a request needs from the config, built once per (re)load.
pub struct Runtime {
    pub pools: Vec<Pool>,
    pub router: Router,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Where the current snapshot lives: written by the control plane, read by every request.
pub type Shared = ArcSwap<Runtime>;

impl Runtime {
    /// Build from config; with `previous` (a reload), nodes keep their live state by id and
    /// pools their counters by name.
    pub fn new(config: &Config, previous: Option<&Runtime>) -> Runtime {
        Runtime {
            pools: config
                .upstreams
                .iter()
                .map(|up| {
                    let old = previous.and_then(|p| p.pool(&up.name));
                    Pool::new(up, old)
                })
                .collect(),
            router: Router::new(&config.routes),
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// Seconds since the Unix epoch, for token issue and expiry.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

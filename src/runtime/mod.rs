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
pub mod decision;
pub mod engineio;
pub mod failure;
pub mod forwarded;
pub mod node;
pub mod placement;
pub mod policy;
pub mod pool;
pub mod request;
pub mod route;
pub mod tunnel_end;
pub mod websocket;

use crate::config::Config;
use arc_swap::ArcSwap;
use pool::Pool;
use route::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything a request needs from the config, built once per (re)load.
pub struct Runtime {
    pub pools: Vec<Pool>,
    pub router: Router,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The addresses to accept clients on, and how each connection starts there.
    pub listeners: Vec<Listening>,
}

/// One listening address as the engine serves it. Read for every accepted connection, so a
/// reload changes the PROXY protocol setting or the certificate without touching the socket:
/// renewed certificates are used by the next handshake, open connections keep theirs.
pub struct Listening {
    pub address: SocketAddr,
    pub proxy_protocol: bool,
    /// TLS termination: the certificate and key as loaded (and checked) by the last good config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A plain listener also takes HTTP/2 with prior knowledge.
    pub h2c: bool,
}

/// Where the current snapshot lives: written by the control plane, read by every request.
pub type Shared = ArcSwap<Runtime>;

/// For unit tests: the process-lifetime snapshot of the config `yaml` (which must be valid),
/// as `control` makes it for a running proxy.
#[cfg(test)]
pub fn shared_for_test(yaml: &str) -> &'static Shared {
    let config = crate::config::parse(std::path::Path::new("t.yaml"), yaml, &|_| None)
        .expect("valid config");
    Box::leak(Box::new(ArcSwap::from_pointee(Runtime::new(&config, None))))
}

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
            listeners: config
                .listen
                .iter()
                .map(|l| Listening {
                    address: l.address,
                    proxy_protocol: l.proxy_protocol,
                    tls: l.tls.as_ref().map(|t| Arc::clone(&t.server)),
                    h2c: l.h2c,
                })
                .collect(),
        }
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The listener configured at `address`, if the config still has it.
    pub fn listener(&self, address: SocketAddr) -> Option<&Listening> {
        self.listeners.iter().find(|l| l.address == address)
    }
}

/// Seconds since the Unix epoch, for token issue and expiry.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

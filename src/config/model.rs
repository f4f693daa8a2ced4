//! The validated runtime configuration: what the rest of tether reads.
//!
//! Nothing here is deserialized directly; `file.rs` mirrors the YAML and
//! `validate.rs` turns it into these types, so the file format can change
//! without the proxy noticing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (used in log lines and reload messages).
    pub source: PathBuf,
    /// Where tether accepts client connections.
    pub listen: Vec<Listener>,
    /// Upstream pools, in file order. Names are unique.
    pub upstreams: Vec<Upstream>,
    /// Routes, in file order. `Route::upstream` indexes `upstreams`.
    pub routes: Vec<Route>,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
}

/// A pool of realtime nodes with its own stickiness and timeouts.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// At least one node; ids unique within the upstream.
    pub nodes: Vec<Node>,
    pub balance: Balance,
    pub affinity: Affinity,
    pub timeouts: Timeouts,
}

/// One realtime node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Stable identity: the affinity ring and cookie tokens are keyed by it, not by address.
    pub id: String,
    pub address: SocketAddr,
    /// Relative share of new clients, 1..=1000.
    pub weight: u32,
}

/// How a client without a pin gets its first node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Fewest in-flight requests plus open tunnels, divided by weight.
    LeastConn,
    /// Weighted round robin.
    RoundRobin,
}

/// How a client keeps its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affinity {
    /// No stickiness: every request is balanced on its own.
    None,
    /// Consistent hash of the full client IP address over node ids.
    IpHash,
    /// A signed cookie that names the node opaquely.
    Cookie(CookieSettings),
}

/// The affinity cookie and the key that signs it.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieSettings {
    pub name: String,
    /// The signing secret: the bytes of the env var or file, surrounding whitespace trimmed, >= 32 bytes.
    pub secret: Vec<u8>,
    /// `None`: a session cookie, and tokens never expire on the proxy side.
    pub max_age: Option<Duration>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    pub path: String,
    pub domain: Option<String>,
}

impl std::fmt::Debug for CookieSettings {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSettings")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("max_age", &self.max_age)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .field("same_site", &self.same_site)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .finish()
    }
}

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

/// Per-upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect to a node.
    pub connect: Duration,
    /// Longest wait for a node's response head or the next body bytes; must exceed long-poll hold times.
    pub read: Duration,
    /// An upgraded (WebSocket) connection with no traffic for this long is closed.
    pub tunnel_idle: Duration,
}

/// A path prefix mapped to an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub path_prefix: String,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
}

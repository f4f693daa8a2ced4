//! Every default and limit of the config file, in one place: the README points here.

use std::time::Duration;

use super::model::{Balance, SameSite};

/// Name of the affinity cookie when `affinity.cookie.name` is omitted.
pub const DEFAULT_COOKIE_NAME: &str = "tether_node";

/// `timeouts.connect`: longest wait for a TCP connection to a node (2 seconds).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `timeouts.read`: longest wait for a node's response head or next body bytes (90 seconds,
/// longer than the usual long-poll hold of 25-60 seconds).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(90);

/// `timeouts.tunnel_idle`: an upgraded (WebSocket) connection silent this long is closed (1 hour).
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// A node's `weight` when omitted: its relative share of new clients (unitless).
pub const DEFAULT_WEIGHT: u32 = 1;

/// Smallest accepted node `weight` (unitless).
pub const MIN_WEIGHT: u32 = 1;

/// Largest accepted node `weight` (unitless); bigger ratios are better expressed with fewer nodes.
pub const MAX_WEIGHT: u32 = 1000;

/// `balance` when omitted: pick the node with the fewest requests and tunnels per unit of weight.
pub const DEFAULT_BALANCE: Balance = Balance::LeastConn;

/// `affinity.mode` when omitted, spelled as in the file: a signed cookie pins each client.
pub const DEFAULT_AFFINITY_MODE: &str = "cookie";

/// `affinity.cookie.max_age` when omitted: `None`, a session cookie that lasts until the browser closes.
pub const DEFAULT_COOKIE_MAX_AGE: Option<Duration> = None;

/// `affinity.cookie.secure` when omitted: off, so the cookie also works over plain HTTP.
pub const DEFAULT_COOKIE_SECURE: bool = false;

/// `affinity.cookie.http_only` when omitted: on, so page scripts cannot read the cookie.
pub const DEFAULT_COOKIE_HTTP_ONLY: bool = true;

/// `affinity.cookie.same_site` when omitted: `lax`.
pub const DEFAULT_COOKIE_SAME_SITE: SameSite = SameSite::Lax;

/// `affinity.cookie.path` when omitted: the whole site.
pub const DEFAULT_COOKIE_PATH: &str = "/";

/// `affinity.cookie.domain` when omitted: none, so the cookie is host-only.
pub const DEFAULT_COOKIE_DOMAIN: Option<&str> = None;

/// Shortest accepted cookie signing secret, in bytes after trimming surrounding whitespace.
pub const MIN_SECRET_LEN: usize = 32;

/// The route prefix used when `routes` is omitted and there is exactly one upstream.
pub const DEFAULT_ROUTE_PREFIX: &str = "/";

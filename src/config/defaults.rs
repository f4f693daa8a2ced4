//! Every default and limit of the config file, in one place: the README points here.

use std::net::SocketAddr;
use std::time::Duration;

use super::model::{
    Balance, CookieSettings, HealthCheck, Limits, Log, LogFormat, Node, Passive, SameSite,
    Shutdown, WebsocketPolicy,
};

/// Name of the affinity cookie when `affinity.cookie.name` is omitted.
pub const DEFAULT_COOKIE_NAME: &str = "tether_node";

/// `timeouts.connect`: longest wait for a TCP connection to a node (2 seconds).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `timeouts.read`: longest wait for a node's response head or next body bytes (90 seconds,
/// longer than the usual long-poll hold of 25-60 seconds).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(90);

/// `timeouts.send`: longest wait for one write of a request (head or body) to a node; a node
/// that stops reading is answered for with 504 (60 seconds, as nginx's `proxy_send_timeout`).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// `timeouts.idle`: an idle keep-alive connection to a node is reused only this long (4
/// seconds), then closed. Shorter than the 5-second keep-alive timeout of Node.js's HTTP server
/// (under socket.io and ws), so tether lets go of a connection before the node closes it and a
/// request never races the node's close: a POST that met such a close could not be sent again.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

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

/// `log.format` when omitted: human-readable lines.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;
/// `log.access` when omitted: one line per request and per closed tunnel, at info.
pub const DEFAULT_ACCESS_LOG: bool = true;

/// `affinity.engineio` when omitted: off; session ids pass through untouched.
pub const DEFAULT_ENGINEIO: bool = false;

/// `affinity.fallback` under `mode: key`: how a request without the key is placed. `ip_hash`
/// needs no secret and keeps a client on one node across replicas.
pub const DEFAULT_KEY_FALLBACK: &str = "ip_hash";

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

/// `shutdown.grace`: after SIGTERM or SIGINT, in-flight requests may finish and open tunnels are
/// kept for this long before tether starts closing them (30 seconds; `0s` starts at once).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// `shutdown.close_window`: after the grace period, the remaining tunnels are closed spread
/// (with jitter) over this window so their clients do not all reconnect at the same instant
/// (10 seconds; `0s` closes them all at once).
pub const DEFAULT_SHUTDOWN_CLOSE_WINDOW: Duration = Duration::from_secs(10);

/// `shutdown.upgrade_timeout`: after SIGUSR2, the new binary must say it is ready within this
/// long, or it is stopped and the running process carries on as if nothing happened (30 s).
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// `health_check.path` when omitted: `None`, the active check is a TCP connect, not an HTTP GET.
pub const DEFAULT_HEALTH_PATH: Option<&str> = None;

/// `health_check.host` when omitted: `None`, the HTTP check sends the health checker's own
/// default Host header, `HEALTH_CHECK_FALLBACK_HOST`.
/// The `Host` header an HTTP health check sends when `host` is omitted.
pub const HEALTH_CHECK_FALLBACK_HOST: &str = "localhost";

pub const DEFAULT_HEALTH_HOST: Option<&str> = None;

/// `health_check.expect_status` when omitted: empty, meaning any 2xx status counts as healthy.
pub const DEFAULT_HEALTH_EXPECT_STATUS: &[u16] = &[];

/// Smallest status code accepted in `health_check.expect_status`.
pub const MIN_HEALTH_STATUS: u16 = 100;

/// Largest status code accepted in `health_check.expect_status`.
pub const MAX_HEALTH_STATUS: u16 = 599;

/// `health_check.interval`: time from the start of one active check to the start of the next,
/// per node (1 second).
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// `health_check.timeout`: an active check not finished within this counts as a failure
/// (500 milliseconds; must be shorter than the interval).
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_millis(500);

/// `health_check.rise`: consecutive successful checks before an unhealthy node is healthy again (count).
pub const DEFAULT_HEALTH_RISE: u32 = 2;

/// `health_check.fall`: consecutive failed checks before a healthy node is marked unhealthy (count).
pub const DEFAULT_HEALTH_FALL: u32 = 2;

/// Smallest accepted `health_check.rise` and `health_check.fall` (count).
pub const MIN_HEALTH_THRESHOLD: u32 = 1;

/// Largest accepted `health_check.rise` and `health_check.fall` (count).
pub const MAX_HEALTH_THRESHOLD: u32 = 100;

/// `passive.max_fails`: failed connections to a node within `fail_timeout` that mark it down
/// (count, as nginx; `0` disables passive checks).
pub const DEFAULT_PASSIVE_MAX_FAILS: u32 = 3;

/// Largest accepted `passive.max_fails` (count).
pub const MAX_PASSIVE_MAX_FAILS: u32 = 1000;

/// `passive.fail_timeout`: the window in which `max_fails` failures must happen, and how long a
/// node they mark down stays out before it is tried again (10 seconds, as nginx).
pub const DEFAULT_PASSIVE_FAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// `slow_start`: a node that becomes usable again takes new clients gradually over this long.
/// Zero (the default) turns slow start off, so nothing changes unless it is asked for.
pub const DEFAULT_SLOW_START: Duration = Duration::ZERO;

/// Largest request head accepted, bytes (431 beyond; also the cap on a node's response head).
pub const DEFAULT_MAX_HEAD_BYTES: u32 = 64 * 1024;
/// Longest request target accepted, bytes (414 beyond).
pub const DEFAULT_MAX_URI_BYTES: u32 = 8 * 1024;
/// A request head must arrive within this long of its first byte (slowloris; 408 after), and a
/// TLS handshake or PROXY header within this long of the connection.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle keep-alive client connection is closed after this long.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// A request body that stops arriving for this long is answered 408 (nginx's
/// `client_body_timeout`): a slow client must not hold a node connection for `timeouts.read`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that takes no bytes for this long while tether writes to it is cut off.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections allowed per client IP; 0 is no limit (429 beyond).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 0;
/// Open tunnels allowed per node; 0 is no limit (new clients go elsewhere, 503 when all are full).
pub const DEFAULT_MAX_TUNNELS_PER_NODE: u32 = 0;

/// `leave.spread`: a leaving node's tunnels are closed evenly over this window (20 seconds).
/// Long enough that its clients reconnect a few per second, not all in one (600 clients: 30 a
/// second); short enough to end within Kubernetes' default 30 s termination grace period after
/// DNS discovery's 5 s refresh, so the pod is not killed with clients still on it.
pub const DEFAULT_LEAVE_SPREAD: Duration = Duration::from_secs(20);

/// `rebalance.max_skew`: a node holding more than 1.5× its share, or less than its share ÷ 1.5,
/// puts its upstream out of balance.
pub const DEFAULT_MAX_SKEW: f64 = 1.5;
/// `rebalance.max_skew` must be above 1 (1 would chase every tunnel) and at most this.
pub const MAX_MAX_SKEW: f64 = 100.0;
/// `rebalance.moves_per_second`: tunnels closed per second per replica while out of balance.
pub const DEFAULT_MOVES_PER_SECOND: u32 = 20;

/// `routes[].websocket.ping_interval`: a client that sent nothing for this long gets a Ping
/// (30 seconds: below the idle timeouts of common NATs and cloud load balancers, so the Ping
/// also keeps the path open). `0s` turns tether's Pings off.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// `routes[].websocket.ping_timeout`: a pinged client that sends nothing at all for this long
/// is half-open: its node gets a Close 1001 and the tunnel closes (15 seconds).
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(15);

/// `discover.refresh`: how often discovered names are looked up again (5 seconds).
pub const DEFAULT_DISCOVER_REFRESH: Duration = Duration::from_secs(5);
/// Shortest accepted `discover.refresh`: faster would only load the DNS server (100 ms).
pub const MIN_DISCOVER_REFRESH: Duration = Duration::from_millis(100);
/// The port of a `discover.resolver` written as a bare IP address.
pub const DEFAULT_DNS_PORT: u16 = 53;
/// A lookup that has not answered by then has failed; the last good node set is kept
/// (2 seconds, or the refresh interval if that is shorter).
pub const DISCOVER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

// What omitting a section or key gives: the model's `Default` values, built from the constants
// above (and a node found by DNS, which has every default but its address).

impl Default for Log {
    fn default() -> Log {
        Log {
            format: DEFAULT_LOG_FORMAT,
            access: DEFAULT_ACCESS_LOG,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES as usize,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES as usize,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}

impl Default for Shutdown {
    /// The values used when `shutdown` (or one of its keys) is omitted.
    fn default() -> Shutdown {
        Shutdown {
            grace: DEFAULT_SHUTDOWN_GRACE,
            close_window: DEFAULT_SHUTDOWN_CLOSE_WINDOW,
            upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
        }
    }
}

impl Default for HealthCheck {
    /// A TCP connect check with the default timings (what `health_check: {}` gives).
    fn default() -> HealthCheck {
        HealthCheck {
            path: DEFAULT_HEALTH_PATH.map(String::from),
            host: DEFAULT_HEALTH_HOST.map(String::from),
            expect_status: DEFAULT_HEALTH_EXPECT_STATUS.to_vec(),
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            rise: DEFAULT_HEALTH_RISE,
            fall: DEFAULT_HEALTH_FALL,
        }
    }
}

impl Default for Passive {
    /// The values used when `passive` (or one of its keys) is omitted.
    fn default() -> Passive {
        Passive {
            max_fails: DEFAULT_PASSIVE_MAX_FAILS,
            fail_timeout: DEFAULT_PASSIVE_FAIL_TIMEOUT,
        }
    }
}

impl Node {
    /// A node found by DNS discovery: its id is its address (`10.0.0.5:3000`,
    /// `[fd00::5]:3000`), so every replica that resolves the same records names it the same way,
    /// and a node that comes back at a new address is a new node (its sessions are gone anyway).
    pub fn discovered(address: SocketAddr) -> Node {
        Node {
            id: address.to_string(),
            address,
            weight: DEFAULT_WEIGHT,
            drain: None,
        }
    }
}

impl CookieSettings {
    /// This secret with every other setting at its documented default (`defaults.rs`): what a
    /// config with only `secret_env` gives. For the demo, tests and benches.
    pub fn with_secret(secret: impl Into<Vec<u8>>) -> CookieSettings {
        CookieSettings {
            name: DEFAULT_COOKIE_NAME.to_string(),
            secret: secret.into(),
            max_age: DEFAULT_COOKIE_MAX_AGE,
            secure: DEFAULT_COOKIE_SECURE,
            secure_on_tls: true,
            http_only: DEFAULT_COOKIE_HTTP_ONLY,
            same_site: DEFAULT_COOKIE_SAME_SITE,
            path: DEFAULT_COOKIE_PATH.to_string(),
            domain: None,
            previous_secrets: Vec::new(),
        }
    }
}

impl Default for WebsocketPolicy {
    /// Any origin, and tether's Pings at their default interval.
    fn default() -> WebsocketPolicy {
        WebsocketPolicy {
            allowed_origins: Vec::new(),
            require_origin: false,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
        }
    }
}

//! The validated runtime configuration: what the rest of tether reads.
//!
//! Nothing here is deserialized directly; `file.rs` mirrors the YAML and
//! `validate/` turns it into these types, so the file format can change
//! without the proxy noticing. What an omitted key gives (the `Default` impls) lives with the
//! defaults themselves, in `defaults.rs`.

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
    /// The admin API listener; `None` (no `admin` section): no admin listener at all.
    pub admin: Option<Admin>,
    /// What happens after SIGTERM or SIGINT.
    pub shutdown: Shutdown,
    /// Peers whose `X-Forwarded-For` is believed (walked from the right, skipping them).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub limits: Limits,
    pub log: Log,
}

/// What tether writes to stderr (`log:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Log {
    pub format: LogFormat,
    /// One line per request and per closed tunnel, at info (target `tether::access`).
    pub access: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured only when stderr is a terminal).
    Text,
    /// One JSON object per line, fields at the top level, for Loki or Elasticsearch.
    Json,
}

/// Per-connection limits (`limits:`); defaults in `defaults.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_uri_bytes: usize,
    pub head_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// Longest wait for the next bytes of a request body.
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    /// 0: no limit.
    pub max_connections_per_ip: u32,
}

/// The admin API (drain, health, metrics, reload).
#[derive(Clone, PartialEq, Eq)]
pub struct Admin {
    /// Where the admin API listens; a non-loopback address always comes with a token.
    pub address: SocketAddr,
    /// The token's value (read from the `token_env` variable, surrounding whitespace trimmed,
    /// never empty); `None` only on a loopback address. Never printed by `Debug`.
    pub token: Option<String>,
}

impl std::fmt::Debug for Admin {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Graceful shutdown after SIGTERM or SIGINT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// In-flight requests may finish and tunnels are kept this long (may be zero).
    pub grace: Duration,
    /// Then the remaining tunnels are closed spread over this window, with jitter (may be zero).
    pub close_window: Duration,
    /// A new binary started by SIGUSR2 must be ready within this long.
    pub upgrade_timeout: Duration,
}

/// One listening socket.
#[derive(Debug, Clone)]
pub struct Listener {
    pub address: SocketAddr,
    /// TLS termination (`wss://`, `https://`) when set.
    pub tls: Option<TlsIdentity>,
    /// Every connection starts with a PROXY protocol (v1 or v2) header naming the client; a
    /// connection without a valid one is closed.
    pub proxy_protocol: bool,
    /// A TLS listener offers HTTP/2 in ALPN (`h2` before `http/1.1`), with WebSockets over
    /// extended CONNECT (RFC 8441).
    pub http2: bool,
    /// A plain listener also takes HTTP/2 with prior knowledge (h2c): a connection whose first
    /// bytes are the HTTP/2 preface, from a TLS terminator in front that speaks h2 to its
    /// targets.
    pub h2c: bool,
}

/// A listener's TLS identity as a ready rustls config (ALPN offers `h2` when the listener has
/// `http2`, and `http/1.1`; `acme-tls/1` too when its certificate is validated by TLS-ALPN-01).
#[derive(Clone)]
pub struct TlsIdentity {
    pub source: TlsSource,
    pub server: std::sync::Arc<rustls::ServerConfig>,
}

/// Where a listener's certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// A chain and key from files, already loaded and checked to match (`SIGHUP` re-reads them).
    Files { cert: PathBuf, key: PathBuf },
    /// Ordered and renewed by tether from an ACME server.
    Acme(Acme),
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("source", &self.source)
            .finish()
    }
}

/// `tls.acme:` of a listener: the certificate tether orders and renews itself.
#[derive(Debug, Clone)]
pub struct Acme {
    /// DNS names on the certificate, lowercase (no IPs, no wildcards).
    pub domains: Vec<String>,
    /// Contact address for the account (expiry notices from the CA).
    pub email: Option<String>,
    /// The ACME directory URL.
    pub directory: String,
    /// Account, certificates, the lock between replicas and an order's answers.
    pub storage: PathBuf,
    /// PEM root the ACME server's own HTTPS certificate chains to (a private CA).
    pub ca_roots: Option<PathBuf>,
    pub challenge: Challenge,
    /// External Account Binding, for CAs that require one (ZeroSSL, Google, private CAs).
    pub eab: Option<Eab>,
    /// The certificate as the engine serves it and the ACME loop renews it.
    pub slot: std::sync::Arc<crate::certs::Slot>,
}

/// An External Account Binding: the key id and HMAC key the CA gave (RFC 8555 §7.3.4).
#[derive(Clone)]
pub struct Eab {
    pub kid: String,
    /// The HMAC key, decoded from the base64url the CA hands out.
    pub hmac: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Eab").field("kid", &self.kid).finish()
    }
}

/// How the ACME server validates that tether answers for the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// On the TLS listener itself (port 443 as the CA sees it), ALPN `acme-tls/1` (RFC 8737).
    TlsAlpn01,
    /// `GET /.well-known/acme-challenge/<token>` on a plain listener (port 80 as the CA sees it).
    Http01,
}

impl Challenge {
    pub fn name(self) -> &'static str {
        match self {
            Challenge::TlsAlpn01 => "tls-alpn-01",
            Challenge::Http01 => "http-01",
        }
    }
}

/// A pool of realtime nodes with its own stickiness and timeouts.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// The nodes written in the file, ids unique within the upstream; at least one unless
    /// `discover` is set. At run time the discovered nodes are appended here (see
    /// `control::found`), so the rest of tether sees one list.
    pub nodes: Vec<Node>,
    /// Nodes found by DNS, refreshed while running.
    pub discover: Option<Discover>,
    pub balance: Balance,
    pub affinity: Affinity,
    /// engine.io session affinity, with any mode; `None`: off.
    pub engineio: Option<EngineIo>,
    pub timeouts: Timeouts,
    /// Active checks; `None`: none (passive checks still apply).
    pub health_check: Option<HealthCheck>,
    pub passive: Passive,
    /// A node that becomes usable again takes new clients gradually over this long; zero: off.
    pub slow_start: Duration,
    /// Open tunnels allowed per node; 0: no limit.
    pub max_tunnels_per_node: u32,
    /// A leaving node's tunnels are closed evenly over this window.
    pub leave_spread: Duration,
    /// Moving tunnels off crowded nodes after a scale-out; `None`: off.
    pub rebalance: Option<Rebalance>,
}

/// `rebalance:`: keep every node's open tunnels within a factor of its share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rebalance {
    /// Above 1: out of balance when a node holds more than `max_skew` × its share or less
    /// than its share ÷ `max_skew`.
    pub max_skew: f64,
    /// Tunnels closed per second (per replica) while out of balance.
    pub moves_per_second: u32,
}

/// A node drained from the config (`drain:`): it takes no new clients, and with `close_after`
/// its tunnels close after that long, spread over `spread` (the upstream's `leave.spread` when
/// omitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    pub close_after: Option<Duration>,
    pub spread: Option<Duration>,
}

/// Active health checks of every node of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `Some`: an HTTP GET of this path (starts with `/`, no spaces or control characters);
    /// `None`: a TCP connect check.
    pub path: Option<String>,
    /// The Host header of the HTTP check; `None`: the checker's default (`localhost`).
    /// Always `None` for a TCP check.
    pub host: Option<String>,
    /// Statuses that mean healthy, each 100..=599, no duplicates; empty: any 2xx.
    /// Always empty for a TCP check.
    pub expect_status: Vec<u16>,
    /// From the start of one check to the start of the next; greater than zero.
    pub interval: Duration,
    /// A check not finished by then failed; greater than zero and shorter than `interval`.
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy node healthy, 1..=100.
    pub rise: u32,
    /// Consecutive failures that make a healthy node unhealthy, 1..=100.
    pub fall: u32,
}

impl HealthCheck {
    /// Whether `status` counts as healthy for the HTTP check.
    pub fn status_ok(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect_status.contains(&status)
        }
    }
}

/// Passive checks: failures seen on real traffic take a node out for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passive {
    /// Failed connections within `fail_timeout` that mark a node down, 0..=1000; 0: passive
    /// checks off.
    pub max_fails: u32,
    /// The window for `max_fails`, and how long the node then stays out; greater than zero.
    pub fail_timeout: Duration,
}

/// One realtime node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Stable identity: the affinity ring and cookie tokens are keyed by it, not by address.
    pub id: String,
    pub address: SocketAddr,
    /// Relative share of new clients, 1..=1000.
    pub weight: u32,
    /// Drained by the config.
    pub drain: Option<Drain>,
}

/// DNS discovery of an upstream's nodes: every A and AAAA record of every name is a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discover {
    /// At least one; in file order.
    pub names: Vec<DnsName>,
    /// How often the names are looked up again.
    pub refresh: Duration,
    /// The DNS server to ask (`IP:PORT`); `None`: the system's (`/etc/resolv.conf`).
    pub resolver: Option<SocketAddr>,
}

/// One name to resolve and the port its nodes listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsName {
    /// As written, without a trailing port (a trailing dot, if written, is kept: it marks a
    /// fully qualified name that skips the resolver's search list).
    pub name: String,
    pub port: u16,
}

/// How a client without a pin gets its first node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Fewest in-flight requests plus open tunnels, divided by weight.
    LeastConn,
    /// Weighted round robin.
    RoundRobin,
}

/// engine.io session affinity (`affinity.engineio: true`): session ids carry a tag naming the
/// node, signed with the cookie's keys.
#[derive(Clone, PartialEq, Eq)]
pub struct EngineIo {
    pub secret: Vec<u8>,
    /// Keys being rotated out: their tags still verify.
    pub previous_secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for EngineIo {
    /// Never prints the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineIo")
            .field("previous_secrets", &self.previous_secrets.len())
            .finish_non_exhaustive()
    }
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
    /// A value the request carries (a room, a tenant) on the same consistent ring as
    /// `IpHash`, so every request with one value reaches one node on every replica; requests
    /// without it are placed by `fallback`.
    Key {
        source: KeySource,
        fallback: KeyFallback,
    },
}

/// Where key affinity reads its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A query parameter (`query:room`): the first one of that name, percent-decoded.
    Query(String),
    /// A header field (`header:X-Tenant`): the first one of that name, trimmed.
    Header(String),
    /// A cookie (`cookie:NAME`): the first one of that name.
    Cookie(String),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Query(n) => write!(f, "query:{n}"),
            KeySource::Header(n) => write!(f, "header:{n}"),
            KeySource::Cookie(n) => write!(f, "cookie:{n}"),
        }
    }
}

/// How key affinity places a request that does not carry the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFallback {
    /// The client's address on the ring (the default: needs no secret).
    IpHash,
    /// The affinity cookie, as `mode: cookie` would.
    Cookie(CookieSettings),
    /// The balance policy, request by request.
    None,
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
    /// `Secure` on responses from a TLS listener: true unless the config says `secure: false`.
    pub secure_on_tls: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    pub path: String,
    pub domain: Option<String>,
    /// Earlier secrets that still verify (key rotation): their tokens pin and are re-issued with
    /// the current secret.
    pub previous_secrets: Vec<Vec<u8>>,
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
    /// Longest wait for one write of a request to a node (a node that stops reading gets 504).
    pub send: Duration,
    /// How long an idle keep-alive connection to a node may be reused.
    pub idle: Duration,
}

/// A path prefix (optionally for some hosts only) mapped to an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Empty: every host. Otherwise the route applies to requests whose `Host` matches one of
    /// these; such routes are tried before the ones without hosts.
    pub hosts: Vec<HostPattern>,
    pub path_prefix: String,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    pub websocket: WebsocketPolicy,
}

impl Route {
    /// A route with no WebSocket restrictions.
    pub fn new(path_prefix: impl Into<String>, upstream: usize) -> Route {
        Route {
            hosts: Vec::new(),
            path_prefix: path_prefix.into(),
            upstream,
            websocket: WebsocketPolicy::default(),
        }
    }
}

/// Whether `name` (no trailing dot) is a DNS name: dot-separated labels of letters, digits,
/// `-` and `_`, each 1..=63 bytes and not starting with `-`, 253 bytes at most.
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A host a route applies to: an exact name, or `*.example.com` for any subdomain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// Lower-case, no port, no trailing dot. For a wildcard, the suffix after `*` (starting
    /// with `.`).
    pub name: String,
    pub wildcard: bool,
}

impl HostPattern {
    /// Parse `app.example.com` or `*.example.com`.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let t = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, name) = match t.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && rest.len() > 1 => (true, rest.to_string()),
            Some(_) => {
                return Err(format!(
                "`{text}`: a wildcard is allowed only as the leftmost label, e.g. `*.example.com`"
            ))
            }
            None => (false, t),
        };
        if !is_dns_name(name.trim_start_matches('.')) {
            return Err(format!("`{text}` is not a host name (e.g. `chat.example.com` or `*.example.com`); no port, scheme or path"));
        }
        Ok(HostPattern { name, wildcard })
    }

    /// Does the request's host (no port, any case) match?
    pub fn matches(&self, host: &[u8]) -> bool {
        let n = self.name.as_bytes();
        if self.wildcard {
            host.len() > n.len() && host[host.len() - n.len()..].eq_ignore_ascii_case(n)
        } else {
            host.eq_ignore_ascii_case(n)
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.wildcard {
            write!(f, "*{}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// Who may open WebSockets through a route: the Cross-Site WebSocket Hijacking defence.
///
/// Browsers send cookies on a cross-site WebSocket handshake and CORS does not apply to
/// `ws:`/`wss:`, so the `Origin` header is the proxy's only signal of who opened the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebsocketPolicy {
    /// Empty: any origin. Otherwise `scheme://host[:port]`, or `scheme://*.domain[:port]` for any
    /// subdomain (not the bare domain).
    pub allowed_origins: Vec<OriginPattern>,
    /// Refuse upgrades that carry no `Origin` (non-browser clients usually send none).
    pub require_origin: bool,
    /// Ping a client that has sent nothing for this long; zero: tether sends no Pings.
    pub ping_interval: Duration,
    /// A pinged client that sends nothing at all for this long is half-open: closed.
    pub ping_timeout: Duration,
}

/// One allowed origin, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    pub scheme: String,
    /// For a wildcard, the suffix after `*` (starting with `.`).
    pub host: String,
    pub wildcard: bool,
    /// `None`: the scheme's default port (no port in the Origin).
    pub port: Option<u16>,
}

impl OriginPattern {
    /// Parse `scheme://host[:port]` or `scheme://*.domain[:port]`.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (scheme, rest) = lower
            .split_once("://")
            .ok_or_else(|| format!("`{text}` is not an origin; write `https://app.example.com`"))?;
        if !matches!(scheme, "http" | "https") {
            return Err(format!("`{text}`: an origin's scheme is http or https"));
        }
        if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!("`{text}` is not an origin: no path, query or fragment (e.g. `https://app.example.com`)"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("`{text}`: `{p}` is not a port"))?;
                (h, Some(port))
            }
            _ => (rest, None),
        };
        let (wildcard, host) = match host.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 && !suffix[1..].contains('*') => (true, suffix),
            Some(_) => return Err(format!("`{text}`: a wildcard is allowed only as the leftmost label, e.g. `https://*.example.com`")),
            None if host.is_empty() || host.contains('*') => {
                return Err(format!("`{text}`: a wildcard is allowed only as the leftmost label, e.g. `https://*.example.com`"))
            }
            None => (false, host),
        };
        Ok(OriginPattern {
            scheme: scheme.to_string(),
            host: host.to_string(),
            wildcard,
            port,
        })
    }

    /// Does the `Origin` header value `origin` match?
    pub fn matches(&self, origin: &str) -> bool {
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(&self.scheme) {
            return false;
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p))
                if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() =>
            {
                (h, p.parse::<u16>().ok())
            }
            _ => (rest, None),
        };
        if port != self.port {
            return false;
        }
        if self.wildcard {
            host.len() > self.host.len()
                && host
                    .get(host.len() - self.host.len()..)
                    .is_some_and(|s| s.eq_ignore_ascii_case(&self.host))
        } else {
            host.eq_ignore_ascii_case(&self.host)
        }
    }
}

impl WebsocketPolicy {
    /// May an upgrade with this `Origin` (or none) go through?
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match origin {
            None => !self.require_origin,
            Some(o) => {
                self.allowed_origins.is_empty() || self.allowed_origins.iter().any(|p| p.matches(o))
            }
        }
    }
}

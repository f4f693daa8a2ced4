//! What an nginx config becomes: tether's config as data, with the comments that explain it.
//! `translate.rs` (with `blocks.rs`, `vhosts.rs`, `client.rs`, `upstream.rs`) fills it, `emit.rs` writes it as YAML.

/// The environment variable every translated cookie secret is read from; never invented.
pub const SECRET_ENV: &str = "TETHER_SECRET";

/// The whole translation.
#[derive(Debug, Default)]
pub struct Plan {
    /// The main file, as shown in the header.
    pub source: String,
    pub listeners: Vec<ListenPlan>,
    pub upstreams: Vec<UpstreamPlan>,
    pub routes: Vec<RoutePlan>,
    /// `client_ip.trusted_proxies`, with where each came from.
    pub trusted_proxies: Vec<(String, String)>,
    /// `limits:` keys: (key, value, note).
    pub limits: Vec<(&'static str, String, String)>,
    /// Semantic differences that concern the whole file, for the header.
    pub notes: Vec<String>,
    /// Directives that need nothing in tether: (what, why, where).
    pub understood: Vec<(String, String, Vec<String>)>,
    /// `DIRECTIVE (file:line): why`, in file order.
    pub not_translated: Vec<String>,
    /// Some upstream signs cookies (with the secret in [`SECRET_ENV`]): the header says how
    /// to make one.
    pub signs_cookies: bool,
}

#[derive(Debug)]
pub struct ListenPlan {
    pub address: String,
    /// `(cert, key)` as written (relative paths resolve against the nginx config's directory).
    pub tls: Option<(String, String)>,
    pub proxy_protocol: bool,
    /// `file:line` of the `listen`.
    pub from: String,
}

#[derive(Debug)]
pub struct UpstreamPlan {
    pub name: String,
    /// `file:line` of the `upstream` block, or of the `proxy_pass` it stands for.
    pub from: String,
    pub notes: Vec<String>,
    pub nodes: Vec<NodePlan>,
    pub discover: Option<DiscoverPlan>,
    pub balance: Option<&'static str>,
    pub affinity: AffinityPlan,
    /// `timeouts:` keys: (key, value).
    pub timeouts: Vec<(&'static str, String)>,
    /// `(max_fails, fail_timeout)`.
    pub passive: Option<(u32, String)>,
    pub slow_start: Option<String>,
}

#[derive(Debug)]
pub struct NodePlan {
    pub id: String,
    pub address: String,
    pub weight: Option<u32>,
    /// An end-of-line comment (where it came from, and anything to know).
    pub comment: String,
}

#[derive(Debug)]
pub struct DiscoverPlan {
    /// `name` when `port` is set, else `name:port` each.
    pub names: Vec<String>,
    pub port: Option<u16>,
    /// tether's default refresh, written out so the reader sees it.
    pub refresh: String,
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub enum AffinityPlan {
    None,
    IpHash,
    Cookie(CookiePlan),
    /// Key affinity on this `key` (`query:room`), with the default fallback (ip_hash).
    Key(String),
}

#[derive(Debug, Default)]
pub struct CookiePlan {
    pub name: String,
    pub max_age: Option<String>,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: Option<&'static str>,
}

#[derive(Debug)]
pub struct RoutePlan {
    pub hosts: Vec<String>,
    pub prefix: String,
    pub upstream: String,
    /// `file:line location ...`.
    pub from: String,
    pub notes: Vec<String>,
}

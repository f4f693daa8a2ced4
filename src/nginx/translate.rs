//! The sticky subset of nginx, directive by directive, into a [`Plan`].
//!
//! nginx picks a `server` block by listen address and `Host`, then a `location` by path;
//! tether has one set of listeners and routes by host and path prefix. So every server block's
//! `listen`s become tether listeners, the default server's locations become routes for every
//! host, and the other servers' locations become routes for their `server_name`s. Per-location
//! proxy timeouts become per-upstream timeouts (the longest wins, with a note). Whatever has
//! no tether equivalent is listed, with the reason, as a "not translated" comment.

use super::parse::{Directive, Loc, Tree};
use super::plan::*;
use super::reasons::http_reason;
use super::syntax::{
    directive_text, duration_text, host_patterns, listen_address, location_args, nginx_size,
    nginx_time, shorten, split_host_port,
};
use super::upstream::{synthetic_name, upstream_timeouts};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Translate a parsed config.
pub fn translate(tree: &Tree) -> Result<Plan, String> {
    let mut t = Translator {
        tree,
        plan: Plan {
            source: tree.files[0].clone(),
            ..Plan::default()
        },
        upstreams: BTreeMap::new(),
        order: Vec::new(),
        servers: Vec::new(),
        real_ip_header: None,
        real_ip_from: Vec::new(),
    };
    let top = &tree.directives;
    let has_http = top.iter().any(|d| d.name == "http");
    if has_http {
        for d in top {
            match d.name.as_str() {
                "http" => t.http(d.block.as_deref().unwrap_or(&[])),
                _ => t.main(d),
            }
        }
    } else {
        // A file of `upstream` and `server` blocks (a conf.d snippet): the http level itself.
        t.http(top);
    }
    t.finish()
}

/// Directives a `server` or `location` inherits from the levels around it, wherever in the
/// block they are written (see [`Scope`]).
const INHERITED: &[&str] = &[
    "proxy_read_timeout",
    "proxy_connect_timeout",
    "proxy_send_timeout",
    "ssl_certificate",
    "ssl_certificate_key",
];

/// `proxy_set_header NAME VALUE` lines that say what tether does anyway: (lower-case name,
/// values, what the summary calls it, why nothing is written).
const UNDERSTOOD_HEADERS: &[(&str, &[&str], &str, &str)] = &[
    (
        "upgrade",
        &["$http_upgrade"],
        "proxy_set_header Upgrade $http_upgrade",
        WEBSOCKET,
    ),
    (
        "connection",
        &["upgrade", "$connection_upgrade"],
        "proxy_set_header Connection upgrade",
        WEBSOCKET,
    ),
    (
        "connection",
        &[""],
        "proxy_set_header Connection \"\"",
        "tether keeps connections to nodes alive by itself",
    ),
    (
        "host",
        &["$host", "$http_host"],
        "proxy_set_header Host $host",
        "tether forwards the client's Host unchanged (and adds X-Forwarded-Host)",
    ),
    (
        "x-forwarded-for",
        &["$proxy_add_x_forwarded_for"],
        "proxy_set_header X-Forwarded-For",
        "tether appends the client's address to X-Forwarded-For",
    ),
    (
        "x-forwarded-proto",
        &["$scheme"],
        "proxy_set_header X-Forwarded-Proto $scheme",
        "tether sends X-Forwarded-Proto (https on TLS listeners)",
    ),
    (
        "x-forwarded-host",
        &["$host", "$http_host"],
        "proxy_set_header X-Forwarded-Host",
        "tether sends X-Forwarded-Host",
    ),
];

const WEBSOCKET: &str = "tether passes the WebSocket upgrade through on every route";

/// Settings a `server` or `location` inherits from the levels around it.
#[derive(Debug, Clone, Default)]
struct Scope {
    read: Option<Duration>,
    connect: Option<Duration>,
    send: Option<Duration>,
    cert: Option<String>,
    key: Option<String>,
}

/// One upstream as declared, before routes decide its timeouts.
pub(super) struct Upstream {
    pub(super) plan: UpstreamPlan,
    pub(super) used: bool,
    /// Per route using it: (read, connect, send), `None` where nginx's default applied.
    pub(super) timeouts: Vec<[Option<Duration>; 3]>,
}

/// A `server` block, collected before deciding which one is the default.
struct Server {
    at: Loc,
    listens: Vec<(ListenPlan, bool)>,
    names: Vec<String>,
    routes: Vec<RoutePlan>,
    default: bool,
}

pub(super) struct Translator<'t> {
    tree: &'t Tree,
    pub(super) plan: Plan,
    pub(super) upstreams: BTreeMap<String, Upstream>,
    /// Upstream names in the order they are declared (or first proxied to).
    pub(super) order: Vec<String>,
    servers: Vec<Server>,
    real_ip_header: Option<(String, Loc)>,
    real_ip_from: Vec<(String, Loc)>,
}

impl Translator<'_> {
    pub(super) fn loc(&self, at: Loc) -> String {
        self.tree.loc(at)
    }

    /// `# not translated: DIRECTIVE (file:line): why`.
    pub(super) fn skip(&mut self, d: &Directive, why: &str) {
        let what = shorten(&directive_text(d));
        let line = format!("{what} ({}): {why}", self.loc(d.at));
        self.plan.not_translated.push(line);
    }

    /// The address a `listen` or upstream `server` starts with; `None`, noted with `missing`
    /// or `unix`, when there is none or it is a Unix socket.
    pub(super) fn tcp_address<'d>(
        &mut self,
        d: &'d Directive,
        missing: &str,
        unix: &str,
    ) -> Option<&'d str> {
        match d.args.first() {
            None => self.skip(d, missing),
            Some(a) if a.starts_with("unix:") => self.skip(d, unix),
            Some(a) => return Some(a),
        }
        None
    }

    /// `# not translated: WHAT (file:line): why` for a part of a directive.
    pub(super) fn skip_text(&mut self, what: &str, at: Loc, why: &str) {
        let line = format!("{} ({}): {why}", shorten(what), self.loc(at));
        self.plan.not_translated.push(line);
    }

    /// A directive tether needs nothing for, grouped by `what` in the summary.
    pub(super) fn understood(&mut self, what: &str, why: &str, at: Loc) {
        let place = self.loc(at);
        match self.plan.understood.iter_mut().find(|(w, _, _)| w == what) {
            Some((_, _, places)) if places.contains(&place) => {}
            Some((_, _, places)) => places.push(place),
            None => self
                .plan
                .understood
                .push((what.to_string(), why.to_string(), vec![place])),
        }
    }

    fn main(&mut self, d: &Directive) {
        let why = match d.name.as_str() {
            "worker_processes" => {
                "tether runs one worker per core; set `tether run --threads N` to change it"
            }
            "worker_rlimit_nofile" => {
                "raise the open-file limit of tether's process instead (systemd: LimitNOFILE=)"
            }
            "events" => "tether's engine needs no event settings",
            "user" | "group" => {
                "run tether as its own user (deploy/systemd/tether.service uses DynamicUser=yes)"
            }
            "pid" | "daemon" | "master_process" => {
                "tether runs in the foreground under a supervisor (systemd, Kubernetes)"
            }
            "error_log" => "tether logs to stderr; RUST_LOG sets the level",
            "stream" => "TCP/UDP proxying: tether proxies HTTP and WebSockets only",
            "load_module"
            | "pcre_jit"
            | "thread_pool"
            | "env"
            | "worker_cpu_affinity"
            | "worker_priority"
            | "timer_resolution"
            | "lock_file"
            | "working_directory"
            | "worker_shutdown_timeout" => {
                "a setting of nginx's own process; tether has no equivalent"
            }
            "upstream" | "server" | "map" => "outside the http block",
            _ => "tether has no equivalent",
        };
        self.skip(d, why);
    }

    fn http(&mut self, body: &[Directive]) {
        let mut scope = Scope::default();
        // Upstreams first: a `proxy_pass` may name one declared further down.
        for d in body.iter().filter(|d| d.name == "upstream") {
            self.upstream(d);
        }
        for d in body {
            if d.name == "upstream" || d.name == "server" {
                continue;
            }
            if self.inherited(d, &mut scope) || self.client_limits(d) || self.proxy_common(d) {
                continue;
            }
            match d.name.as_str() {
                "map" if d.args.first().map(String::as_str) == Some("$http_upgrade") => {
                    self.understood("map $http_upgrade", WEBSOCKET, d.at);
                }
                _ => {
                    let why = http_reason(&d.name);
                    self.skip(d, why);
                }
            }
        }
        for d in body.iter().filter(|d| d.name == "server") {
            self.server(d, &scope);
        }
    }

    /// Timeouts and certificates that inner levels inherit; true if `d` was one.
    fn inherited(&mut self, d: &Directive, scope: &mut Scope) -> bool {
        let slot = match d.name.as_str() {
            "proxy_read_timeout" => &mut scope.read,
            "proxy_connect_timeout" => &mut scope.connect,
            "proxy_send_timeout" => &mut scope.send,
            "ssl_certificate" => {
                if scope.cert.is_some() {
                    self.skip(
                        d,
                        "tether serves one certificate per listener; the first one is used",
                    );
                } else {
                    scope.cert = d.args.first().cloned();
                }
                return true;
            }
            "ssl_certificate_key" => {
                if scope.key.is_none() {
                    scope.key = d.args.first().cloned();
                }
                return true;
            }
            _ => return false,
        };
        match d.args.first().and_then(|a| nginx_time(a)) {
            Some(v) => *slot = Some(v),
            None => self.skip(d, "not a time nginx would accept"),
        }
        true
    }

    /// `keepalive_timeout`, `client_header_timeout`, `send_timeout`,
    /// `large_client_header_buffers`, `set_real_ip_from`, `real_ip_*`: true if `d` was one.
    fn client_limits(&mut self, d: &Directive) -> bool {
        let first = d.args.first().map(String::as_str).unwrap_or("");
        let at = self.loc(d.at);
        match d.name.as_str() {
            "keepalive_timeout" => match nginx_time(first) {
                Some(t) if !t.is_zero() => {
                    let note = format!("keepalive_timeout ({at})");
                    self.limit("keepalive_timeout", duration_text(t), note);
                }
                _ => self.skip(d, "tether always keeps client connections alive for a while; its limit must be above zero"),
            },
            "client_header_timeout" => match nginx_time(first) {
                Some(t) if !t.is_zero() => {
                    let note = format!("client_header_timeout ({at})");
                    self.limit("head_timeout", duration_text(t), note);
                }
                _ => self.skip(d, "not a time tether accepts"),
            },
            "send_timeout" => match nginx_time(first) {
                Some(t) if !t.is_zero() => {
                    let note = format!("send_timeout ({at}): both cut off a client that reads nothing for this long");
                    self.limit("write_timeout", duration_text(t), note);
                }
                _ => self.skip(d, "not a time tether accepts"),
            },
            "large_client_header_buffers" => {
                let number = first.parse::<u64>().ok();
                let size = d.args.get(1).and_then(|s| nginx_size(s));
                match (number, size) {
                    (Some(n), Some(size)) if n > 0 => {
                        let head = (n * size).clamp(1024, 1024 * 1024);
                        let uri = size.clamp(256, head);
                        let note = format!("large_client_header_buffers {n} {} ({at}): nginx allows {n} buffers of {size} bytes; tether limits the whole head and the target", d.args[1]);
                        self.limit("max_head_bytes", head.to_string(), note.clone());
                        self.limit("max_uri_bytes", uri.to_string(), note);
                    }
                    _ => self.skip(d, "expects a number and a size, e.g. `4 8k`"),
                }
            }
            "set_real_ip_from" => {
                if first.starts_with("unix:") {
                    self.skip(d, "tether listens on TCP only");
                } else {
                    self.real_ip_from.push((first.to_string(), d.at));
                }
            }
            "real_ip_header" => self.real_ip_header = Some((first.to_string(), d.at)),
            "real_ip_recursive" if first == "on" => self.understood(
                "real_ip_recursive on",
                "tether walks X-Forwarded-For from the right past every trusted proxy",
                d.at,
            ),
            "real_ip_recursive" => self.skip(d, "tether always walks X-Forwarded-For past every trusted proxy (as `real_ip_recursive on`); with one proxy in front the result is the same"),
            _ => return false,
        }
        true
    }

    fn limit(&mut self, key: &'static str, value: String, note: String) {
        self.plan.limits.retain(|(k, _, _)| *k != key);
        self.plan.limits.push((key, value, note));
    }

    /// The proxy directives every level may hold (headers, HTTP version, buffering): true if
    /// `d` was one. Each is either what tether does anyway, or listed as not translated.
    fn proxy_common(&mut self, d: &Directive) -> bool {
        let arg = |i: usize| d.args.get(i).map(String::as_str).unwrap_or("");
        match d.name.as_str() {
            "proxy_set_header" => {
                let (name, value) = (arg(0).to_ascii_lowercase(), arg(1));
                let known = UNDERSTOOD_HEADERS.iter().find(|(n, values, _, _)| {
                    *n == name && values.iter().any(|v| v.eq_ignore_ascii_case(value))
                });
                match (known, name.as_str()) {
                    (Some((_, _, what, why)), _) => self.understood(what, why, d.at),
                    (None, "x-real-ip") => self.skip(d, "tether sends the client address in X-Forwarded-For, not X-Real-IP; read that header in your nodes"),
                    (None, "host") => self.skip(d, "tether forwards the client's Host unchanged"),
                    (None, _) => self.skip(d, "tether does not add or rewrite request headers"),
                }
            }
            "proxy_http_version" if arg(0) == "1.1" => self.understood(
                "proxy_http_version 1.1",
                "tether speaks HTTP/1.1 to nodes, with keep-alive",
                d.at,
            ),
            "proxy_http_version" => self.skip(d, "tether always speaks HTTP/1.1 to nodes"),
            "proxy_buffering" | "proxy_request_buffering" | "proxy_buffer_size" | "proxy_buffers" | "proxy_busy_buffers_size" | "chunked_transfer_encoding" | "tcp_nodelay" => {
                self.understood(
                    "proxy_buffering and buffer sizes",
                    "tether streams request and response bodies as they come (long-polls and event streams are never held back)",
                    d.at,
                )
            }
            "proxy_next_upstream" | "proxy_next_upstream_tries" | "proxy_next_upstream_timeout" => self.skip(d, "tether tries another node only when a connection is refused (up to 3 per request), never after a request was sent"),
            "proxy_redirect" | "proxy_cookie_domain" | "proxy_cookie_path" | "proxy_hide_header" | "proxy_pass_header" | "proxy_ignore_headers" => self.skip(d, "tether passes response headers through unchanged"),
            _ => return false,
        }
        true
    }

    fn server(&mut self, d: &Directive, outer: &Scope) {
        let mut scope = outer.clone();
        let body = d.block.as_deref().unwrap_or(&[]);
        let mut server = Server {
            at: d.at,
            listens: Vec::new(),
            names: Vec::new(),
            routes: Vec::new(),
            default: false,
        };
        let mut listens = Vec::new();
        // Scope-setting directives apply to the whole block wherever they are written.
        for s in body {
            if INHERITED.contains(&s.name.as_str()) {
                self.inherited(s, &mut scope);
            }
        }
        for s in body {
            match s.name.as_str() {
                name if INHERITED.contains(&name) => {}
                "listen" => listens.push(s),
                "server_name" => server.names.extend(s.args.iter().cloned()),
                "location" => self.location(s, &scope, &mut server),
                "return" | "rewrite" if body.iter().all(|x| x.name != "location") => {
                    self.skip(s, "tether does not answer or redirect by itself; this server block has nothing to proxy");
                }
                _ => {
                    if !self.client_limits(s) && !self.proxy_common(s) {
                        let why = http_reason(&s.name);
                        self.skip(s, why);
                    }
                }
            }
        }
        if listens.is_empty() {
            let plan = ListenPlan {
                address: "0.0.0.0:80".to_string(),
                tls: None,
                proxy_protocol: false,
                from: format!(
                    "{} (server without listen: nginx's default *:80)",
                    self.loc(d.at)
                ),
            };
            server.listens.push((plan, false));
        }
        for l in listens {
            if let Some((plan, default)) = self.listen(l, &scope) {
                server.default |= default;
                server.listens.push((plan, default));
            }
        }
        self.servers.push(server);
    }

    fn listen(&mut self, l: &Directive, scope: &Scope) -> Option<(ListenPlan, bool)> {
        let addr = self.tcp_address(
            l,
            "listen needs an address or port",
            "tether listens on TCP only",
        )?;
        let address = match listen_address(addr) {
            Some(a) => a,
            None => {
                self.skip(
                    l,
                    "tether listens on IP:PORT addresses; write the address instead of a name",
                );
                return None;
            }
        };
        let (mut ssl, mut proxy_protocol, mut default) = (false, false, false);
        let mut other = Vec::new();
        for p in &l.args[1..] {
            match p.split_once('=').map_or(p.as_str(), |(k, _)| k) {
                "ssl" => ssl = true,
                "proxy_protocol" => proxy_protocol = true,
                "default_server" | "default" => default = true,
                "reuseport" => {}
                "http2" => self.skip_text(&format!("listen {addr} http2"), l.at, "tether speaks HTTP/1.1 to clients (which WebSockets need); browsers fall back to it"),
                _ => other.push(p.as_str()),
            }
        }
        if !other.is_empty() {
            let what = format!("listen {addr} {}", other.join(" "));
            self.skip_text(
                &what,
                l.at,
                "socket options tether sets itself (SO_REUSEPORT, TCP_NODELAY, a 4096 backlog)",
            );
        }
        let tls = if ssl {
            match (&scope.cert, &scope.key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                _ => {
                    self.skip(l, "an ssl listener needs ssl_certificate and ssl_certificate_key; it is left out");
                    return None;
                }
            }
        } else {
            None
        };
        let from = self.loc(l.at);
        Some((
            ListenPlan {
                address,
                tls,
                proxy_protocol,
                from,
            },
            default,
        ))
    }

    fn location(&mut self, d: &Directive, outer: &Scope, server: &mut Server) {
        let (modifier, prefix) = location_args(&d.args);
        match modifier {
            "~" | "~*" => {
                self.skip(
                    d,
                    "tether routes by path prefix; regular-expression locations have no equivalent",
                );
                return;
            }
            "@" => {
                self.skip(
                    d,
                    "named locations serve nginx's internal redirects; tether has none",
                );
                return;
            }
            _ if !prefix.starts_with('/') => {
                self.skip(d, "tether routes by path prefixes that start with `/`");
                return;
            }
            _ => {}
        }
        let mut scope = outer.clone();
        let body = d.block.as_deref().unwrap_or(&[]);
        for s in body {
            self.inherited(s, &mut scope);
        }
        let mut target: Option<String> = None;
        for s in body {
            match s.name.as_str() {
                name if INHERITED.contains(&name) => {}
                "proxy_pass" => target = self.proxy_pass(s, &prefix),
                "location" => self.skip(
                    s,
                    "tether's routes do not nest; write it as a route of its own",
                ),
                _ => {
                    if !self.client_limits(s) && !self.proxy_common(s) {
                        let why = http_reason(&s.name);
                        self.skip(s, why);
                    }
                }
            }
        }
        let Some(upstream) = target else {
            if body.iter().all(|s| s.name != "proxy_pass") {
                self.skip(d, "no proxy_pass: nothing for tether to proxy");
            }
            return;
        };
        let mut notes = Vec::new();
        if modifier == "=" {
            notes.push(format!("`location = {prefix}` matched only {prefix} exactly; tether matches it as a prefix"));
        }
        let timeouts = [scope.read, scope.connect, scope.send];
        if let Some(u) = self.upstreams.get_mut(&upstream) {
            u.used = true;
            u.timeouts.push(timeouts);
        }
        let from = format!(
            "{} ({})",
            shorten(&format!("location {}", d.args.join(" "))),
            self.loc(d.at)
        );
        server.routes.push(RoutePlan {
            hosts: Vec::new(),
            prefix,
            upstream,
            from,
            notes,
        });
    }

    /// The upstream a `proxy_pass` goes to, declaring one for a bare address.
    fn proxy_pass(&mut self, d: &Directive, prefix: &str) -> Option<String> {
        let Some(url) = d.args.first() else {
            self.skip(d, "proxy_pass needs a URL");
            return None;
        };
        if url.contains('$') {
            self.skip(d, "tether's routes name their upstream; a proxy_pass built from variables has no equivalent");
            return None;
        }
        let Some(rest) = url.strip_prefix("http://") else {
            self.skip(d, "tether talks plain HTTP to nodes (TLS ends at tether); https:// and other schemes have no equivalent");
            return None;
        };
        let (authority, uri) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !uri.is_empty() && uri != prefix {
            self.skip(d, "tether forwards the request path unchanged; nginx replaced the location's prefix with this URI. Route kept: make the nodes serve the original path");
        }
        if self.upstreams.contains_key(authority) {
            return Some(authority.to_string());
        }
        // No upstream of that name: nginx proxies to the address (or name) itself.
        let Some((host, port)) = split_host_port(authority, 80) else {
            self.skip(d, "not an address nginx would accept");
            return None;
        };
        let name = synthetic_name(&host, port);
        if !self.upstreams.contains_key(&name) {
            let mut plan = UpstreamPlan {
                name: name.clone(),
                from: self.loc(d.at),
                notes: vec![format!(
                    "proxy_pass {url} ({}) without an upstream block: one node",
                    self.loc(d.at)
                )],
                nodes: Vec::new(),
                discover: None,
                balance: None,
                affinity: AffinityPlan::None,
                timeouts: Vec::new(),
                passive: None,
                slow_start: None,
            };
            match host.parse::<IpAddr>() {
                Ok(ip) => {
                    let address = SocketAddr::new(ip, port).to_string();
                    plan.nodes.push(NodePlan {
                        id: address.clone(),
                        address,
                        weight: None,
                        comment: self.loc(d.at),
                    });
                }
                Err(_) => self.discover(&mut plan, &[(host, port, d.at)]),
            }
            self.add_upstream(plan);
        }
        Some(name)
    }

    fn finish(mut self) -> Result<Plan, String> {
        self.real_ip();
        self.vhosts();
        for name in std::mem::take(&mut self.order) {
            let Some(mut u) = self.upstreams.remove(&name) else {
                continue;
            };
            if !u.used {
                u.plan
                    .notes
                    .push("no translated location proxies to this upstream".to_string());
            }
            upstream_timeouts(&mut u);
            self.plan.upstreams.push(u.plan);
        }
        if self.plan.routes.is_empty() {
            return Err(format!(
                "{}: found no `location` with a `proxy_pass` tether can take; tether needs at least one route to an upstream",
                self.plan.source
            ));
        }
        Ok(self.plan)
    }

    fn real_ip(&mut self) {
        if self.real_ip_from.is_empty() {
            return;
        }
        match self.real_ip_header.take() {
            Some((h, _)) if h.eq_ignore_ascii_case("x-forwarded-for") => {
                for (cidr, at) in std::mem::take(&mut self.real_ip_from) {
                    let from = format!("set_real_ip_from ({})", self.loc(at));
                    self.plan.trusted_proxies.push((cidr, from));
                }
            }
            Some((h, at)) if h == "proxy_protocol" => {
                let line = format!("real_ip_header proxy_protocol ({}): a listener with `proxy_protocol: true` takes the client address from the PROXY header already", self.loc(at));
                self.plan.not_translated.push(line);
            }
            Some((h, at)) => {
                let line = format!("real_ip_header {h} ({}): tether reads the client address from X-Forwarded-For only (from trusted proxies); set_real_ip_from is not translated either", self.loc(at));
                self.plan.not_translated.push(line);
            }
            None => {
                let (_, at) = self.real_ip_from[0];
                let line = format!("set_real_ip_from ({}): without real_ip_header nginx reads X-Real-IP; tether reads X-Forwarded-For only", self.loc(at));
                self.plan.not_translated.push(line);
            }
        }
    }

    /// Decide listeners and routes from the server blocks: the default server's locations
    /// serve every host, the others' only their names.
    fn vhosts(&mut self) {
        let servers = std::mem::take(&mut self.servers);
        let proxying: Vec<&Server> = servers.iter().filter(|s| !s.routes.is_empty()).collect();
        self.routes_and_listeners(&proxying);
        for s in servers.iter().filter(|s| s.routes.is_empty()) {
            for (l, _) in &s.listens {
                if self.plan.listeners.iter().all(|x| x.address != l.address) {
                    let line = format!("listen {} ({}): its server block has nothing tether can proxy, so the listener is left out", l.address, l.from);
                    self.plan.not_translated.push(line);
                }
            }
        }
    }

    fn routes_and_listeners(&mut self, proxying: &[&Server]) {
        let Some(default) = proxying
            .iter()
            .position(|s| s.default)
            .or((!proxying.is_empty()).then_some(0))
        else {
            return;
        };
        let ports: std::collections::BTreeSet<&str> = proxying
            .iter()
            .flat_map(|s| s.listens.iter().map(|(l, _)| l.address.as_str()))
            .collect();
        if proxying.len() > 1 && proxying.iter().any(|s| s.listens.len() != ports.len()) {
            self.plan.notes.push("server blocks listen on different addresses; tether applies every route on every listener".to_string());
        }
        for (i, s) in proxying.iter().enumerate() {
            for (l, _) in &s.listens {
                match self.plan.listeners.iter().find(|x| x.address == l.address) {
                    Some(x) if x.tls.is_some() && l.tls.is_some() && x.tls != l.tls => {
                        let line = format!("ssl_certificate for {} ({}): tether serves one certificate per listener; the first server block's is used", l.address, l.from);
                        self.plan.not_translated.push(line);
                    }
                    Some(_) => {}
                    None => self.plan.listeners.push(ListenPlan {
                        address: l.address.clone(),
                        tls: l.tls.clone(),
                        proxy_protocol: l.proxy_protocol,
                        from: l.from.clone(),
                    }),
                }
            }
            let host_sets: Vec<Vec<String>> = if i == default {
                let mut sets = Vec::new();
                if proxying.len() > 1 {
                    let names = s
                        .names
                        .iter()
                        .filter(|n| *n != "_" && !n.is_empty())
                        .cloned()
                        .collect::<Vec<_>>();
                    let what = if names.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", names.join(" "))
                    };
                    let note = format!("the default server{what}: as in nginx, its locations serve every host that no other server block names");
                    self.plan.notes.push(note);
                    // Its own names too, so another block's wildcard cannot take them.
                    if let Ok(h) = host_patterns(&names) {
                        if !h.is_empty() {
                            sets.push(h);
                        }
                    }
                }
                sets.push(Vec::new());
                sets
            } else {
                match host_patterns(&s.names) {
                    Ok(h) if !h.is_empty() => vec![h],
                    Ok(_) => {
                        let line = format!("server ({}): a second server block without server_name; tether routes by host and path, so its locations are left out", self.loc(s.at));
                        self.plan.not_translated.push(line);
                        continue;
                    }
                    Err(name) => {
                        let line = format!("server_name {name} ({}): tether matches exact names and `*.domain` only; this server block's locations are left out", self.loc(s.at));
                        self.plan.not_translated.push(line);
                        continue;
                    }
                }
            };
            for hosts in &host_sets {
                for r in &s.routes {
                    let clash = self.plan.routes.iter().any(|x| {
                        x.prefix == r.prefix
                            && (x.hosts.is_empty() && hosts.is_empty()
                                || x.hosts.iter().any(|h| hosts.contains(h)))
                    });
                    if clash {
                        let line = format!(
                            "{}: an earlier server block already routes {} for these hosts",
                            r.from, r.prefix
                        );
                        self.plan.not_translated.push(line);
                        continue;
                    }
                    self.plan.routes.push(RoutePlan {
                        hosts: hosts.clone(),
                        prefix: r.prefix.clone(),
                        upstream: r.upstream.clone(),
                        from: r.from.clone(),
                        notes: r.notes.clone(),
                    });
                }
            }
        }
    }
}

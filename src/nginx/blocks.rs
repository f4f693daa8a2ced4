//! nginx's levels, outermost first: the main context, `http`, each `server` and each
//! `location` with its `proxy_pass`, and what inner levels inherit from outer ones.

use super::parse::Directive;
use super::plan::{AffinityPlan, ListenPlan, NodePlan, RoutePlan, UpstreamPlan};
use super::proxy_common::WEBSOCKET;
use super::reasons::http_reason;
use super::syntax::{location_args, nginx_time, shorten, split_host_port};
use super::translator::{Server, Translator};
use super::upstream::synthetic_name;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Directives a `server` or `location` inherits from the levels around it, wherever in the
/// block they are written (see [`Scope`]).
const INHERITED: &[&str] = &[
    "proxy_read_timeout",
    "proxy_connect_timeout",
    "proxy_send_timeout",
    "ssl_certificate",
    "ssl_certificate_key",
];

/// Settings a `server` or `location` inherits from the levels around it.
#[derive(Debug, Clone, Default)]
pub(super) struct Scope {
    read: Option<Duration>,
    connect: Option<Duration>,
    send: Option<Duration>,
    pub(super) cert: Option<String>,
    pub(super) key: Option<String>,
}

impl Translator<'_> {
    pub(super) fn main(&mut self, d: &Directive) {
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

    pub(super) fn http(&mut self, body: &[Directive]) {
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
}

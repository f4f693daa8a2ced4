//! `upstream` blocks: servers, balancing and stickiness, DNS names, passive checks; and the
//! per-upstream timeouts that the locations using an upstream decide.

use super::parse::{Directive, Loc};
use super::plan::*;
use super::syntax::{directive_text, duration_text, nginx_time, split_host_port};
use super::translator::{Translator, Upstream};
use crate::config::defaults::{
    DEFAULT_COOKIE_NAME, DEFAULT_DISCOVER_REFRESH, DEFAULT_READ_TIMEOUT,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// nginx's default for `proxy_read_timeout`, `proxy_send_timeout`, `proxy_connect_timeout`.
const NGINX_PROXY_TIMEOUT: Duration = Duration::from_secs(60);

/// nginx `expires=max` is ten years.
const EXPIRES_MAX: &str = "3650d";

impl Translator<'_> {
    pub(super) fn upstream(&mut self, d: &Directive) {
        let Some(name) = d.args.first().cloned() else {
            self.skip(d, "an upstream needs a name");
            return;
        };
        let mut plan = UpstreamPlan {
            name: name.clone(),
            from: self.loc(d.at),
            notes: Vec::new(),
            nodes: Vec::new(),
            discover: None,
            balance: Some("round_robin"),
            affinity: AffinityPlan::None,
            timeouts: Vec::new(),
            passive: None,
            slow_start: None,
        };
        let mut method: Option<&Directive> = None;
        let mut hostnames: Vec<(String, u16, Loc)> = Vec::new();
        let mut passive: Vec<((u32, Duration), Loc)> = Vec::new();
        let mut explicit_passive = false;
        let mut slow: Option<Duration> = None;
        for s in d.block.as_deref().unwrap_or(&[]) {
            match s.name.as_str() {
                "server" => {
                    let Some(entry) = self.upstream_server(s, &mut plan) else {
                        continue;
                    };
                    explicit_passive |= entry.explicit_passive;
                    passive.push((entry.passive, s.at));
                    if let Some(t) = entry.slow_start {
                        slow = Some(slow.map_or(t, |x: Duration| x.max(t)));
                    }
                    if let Some((host, port)) = entry.hostname {
                        hostnames.push((host, port, s.at));
                    }
                }
                "ip_hash" | "hash" | "least_conn" | "sticky" | "random" | "least_time" => {
                    if let Some(earlier) = method {
                        let what = directive_text(earlier);
                        let why = format!("`{}` came later in this upstream and wins, as in nginx (which warns: load balancing method redefined)", directive_text(s));
                        self.skip_text(&what, earlier.at, &why);
                    }
                    method = Some(s);
                }
                "keepalive" | "keepalive_requests" | "keepalive_timeout" | "keepalive_time" => {
                    self.understood(
                        "keepalive (upstream)",
                        "tether keeps idle connections to nodes for reuse by itself",
                        s.at,
                    );
                }
                "zone" => self.skip(
                    s,
                    "tether's node state is shared by its workers without a zone",
                ),
                "resolver" | "resolver_timeout" => self.skip(
                    s,
                    "tether uses the system resolver; set `discover.resolver` to use another",
                ),
                _ => self.skip(s, "tether has no equivalent"),
            }
        }
        if let Some(m) = method {
            self.balance_method(m, &mut plan);
        } else {
            plan.notes.push("nginx balanced this upstream round robin with no stickiness, and so does this; for realtime sessions consider `affinity: { mode: cookie }` or `ip_hash`".to_string());
        }
        if !hostnames.is_empty() {
            self.discover(&mut plan, &hostnames);
        }
        // Passive checks: tether has one setting per upstream, nginx one per server.
        if explicit_passive {
            let first = passive[0].0;
            if passive.iter().any(|(p, _)| *p != first) {
                let list: Vec<String> = passive
                    .iter()
                    .map(|((f, t), at)| format!("{f}/{} ({})", duration_text(*t), self.loc(*at)))
                    .collect();
                // The setting most servers have (nginx's default counts for servers without one).
                let count = |p: &(u32, Duration)| passive.iter().filter(|(q, _)| q == p).count();
                let (f, t) = passive
                    .iter()
                    .map(|(p, _)| *p)
                    .max_by_key(|p| count(p))
                    .unwrap_or(first);
                plan.notes.push(format!(
                    "servers have different max_fails/fail_timeout ({}); tether has one setting per upstream: the one most servers have is used",
                    list.join(", ")
                ));
                plan.passive = Some((f, duration_text(t)));
            } else {
                plan.passive = Some((first.0, duration_text(first.1)));
            }
        }
        if let Some(t) = slow {
            plan.slow_start = Some(duration_text(t));
            plan.notes.push("slow_start: tether ramps up every node of the upstream that comes back, not only the servers that had it".to_string());
        }
        if plan.nodes.is_empty() && plan.discover.is_none() {
            self.skip(d, "no server of this upstream could be translated");
            return;
        }
        self.add_upstream(plan);
    }

    pub(super) fn add_upstream(&mut self, plan: UpstreamPlan) {
        if self.upstreams.contains_key(&plan.name) {
            return;
        }
        self.order.push(plan.name.clone());
        self.upstreams.insert(
            plan.name.clone(),
            Upstream {
                plan,
                used: false,
                timeouts: Vec::new(),
            },
        );
    }

    /// One `server` line of an upstream; `None` when it is left out (noted).
    fn upstream_server(&mut self, s: &Directive, plan: &mut UpstreamPlan) -> Option<ServerEntry> {
        let addr = self.tcp_address(
            s,
            "a server needs an address",
            "tether connects to nodes over TCP only",
        )?;
        let Some((host, port)) = split_host_port(addr, 80) else {
            self.skip(s, "not an address nginx would accept");
            return None;
        };
        let mut entry = ServerEntry {
            passive: (1, Duration::from_secs(10)),
            explicit_passive: false,
            slow_start: None,
            hostname: None,
        };
        let mut weight = None;
        let mut comment = vec![self.loc(s.at)];
        for param in &s.args[1..] {
            let (key, value) = param.split_once('=').unwrap_or((param.as_str(), ""));
            match key {
                "weight" => match value.parse::<u32>() {
                    Ok(w) if w > 1000 => {
                        weight = Some(1000);
                        comment.push(format!("weight {w} capped at tether's 1000"));
                    }
                    Ok(w) if w > 1 => weight = Some(w),
                    Ok(_) => {}
                    Err(_) => self.skip(s, "weight must be a number"),
                },
                "max_fails" => match value.parse::<u32>() {
                    Ok(n) => {
                        entry.passive.0 = n.min(1000);
                        entry.explicit_passive = true;
                    }
                    Err(_) => self.skip(s, "max_fails must be a number"),
                },
                "fail_timeout" => match nginx_time(value) {
                    Some(t) if !t.is_zero() => {
                        entry.passive.1 = t;
                        entry.explicit_passive = true;
                    }
                    _ => self.skip(s, "fail_timeout must be a time above zero"),
                },
                "slow_start" => entry.slow_start = nginx_time(value),
                "down" => {
                    self.skip(s, "a `down` server is left out: tether's ring moves only its clients, and the admin API's `disable` takes a node out while running");
                    return None;
                }
                "backup" => {
                    self.skip(s, "tether has no backup servers; add it to `nodes` to use it as a regular node");
                    return None;
                }
                "drain" => comment.push(format!("nginx: drain; after start: curl -X POST -H 'X-Tether-Admin: 1' http://ADMIN/upstreams/{}/nodes/{addr}/drain", plan.name)),
                "max_conns" => comment.push(format!("not translated: max_conns={value}; tether's max_tunnels_per_node caps WebSockets per node")),
                _ => comment.push(format!("not translated: {param}")),
            }
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                let address = SocketAddr::new(ip, port).to_string();
                if plan.nodes.iter().any(|n| n.address == address) {
                    self.skip(s, "the same address twice; tether lists each node once");
                    return None;
                }
                plan.nodes.push(NodePlan {
                    id: address.clone(),
                    address,
                    weight,
                    comment: comment.join("; "),
                });
            }
            Err(_) => {
                if weight.is_some() {
                    let line = format!(
                        "weight on {host}:{port} ({}): nodes found by DNS all weigh 1",
                        self.loc(s.at)
                    );
                    self.plan.not_translated.push(line);
                }
                entry.hostname = Some((host, port));
            }
        }
        Some(entry)
    }

    /// Hostname servers become DNS discovery: nginx resolved them once at start, tether keeps
    /// looking, so the upstream follows containers that restart at new addresses.
    pub(super) fn discover(&mut self, plan: &mut UpstreamPlan, hostnames: &[(String, u16, Loc)]) {
        let port = hostnames[0].1;
        let same_port = hostnames.iter().all(|(_, p, _)| *p == port);
        let mut names = Vec::new();
        for (host, p, _) in hostnames {
            let name = if same_port {
                host.clone()
            } else {
                format!("{host}:{p}")
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let places: Vec<String> = hostnames.iter().map(|(_, _, at)| self.loc(*at)).collect();
        let refresh = duration_text(DEFAULT_DISCOVER_REFRESH);
        plan.discover = Some(DiscoverPlan {
            names,
            port: same_port.then_some(port),
            notes: vec![format!(
                "servers by name ({}): nginx resolved them once at start; tether looks them up every {} and every address is a node (its id is its address)",
                super::emit::compact(&places),
                refresh
            )],
            refresh,
        });
    }

    fn balance_method(&mut self, m: &Directive, plan: &mut UpstreamPlan) {
        let at = self.loc(m.at);
        let arg = |i: usize| m.args.get(i).map(String::as_str).unwrap_or("");
        match m.name.as_str() {
            "ip_hash" => {
                plan.affinity = AffinityPlan::IpHash;
                plan.balance = None;
                plan.notes.push(format!("ip_hash ({at}): nginx hashes only the first three octets of an IPv4 address (a whole /24 shares a node); tether hashes the whole address, so clients move once on the switch and clients behind one /24 spread out"));
            }
            "hash" if matches!(arg(0), "$remote_addr" | "$binary_remote_addr") => {
                plan.affinity = AffinityPlan::IpHash;
                plan.balance = None;
                if arg(1) == "consistent" {
                    plan.notes.push(format!("hash {} consistent ({at}): tether's ip_hash is a consistent ring over node ids, keyed by the full client address; placements differ from nginx's ketama, so clients move once on the switch", arg(0)));
                } else {
                    plan.notes.push(format!("hash {} ({at}): tether's ip_hash is a consistent ring: a removed node moves only its own clients, where nginx's plain hash remaps most of them", arg(0)));
                }
            }
            "hash" if key_source(arg(0)).is_some() => {
                let key = key_source(arg(0)).unwrap_or_default();
                plan.affinity = AffinityPlan::Key(key.clone());
                plan.balance = None;
                let how = if arg(1) == "consistent" {
                    "placements differ from nginx's ketama, so clients move once on the switch"
                } else {
                    "tether's ring is consistent: a removed node moves only its own keys, where nginx's plain hash remaps most of them"
                };
                plan.notes.push(format!("hash {} ({at}): key affinity on `{key}`, a consistent ring over node ids: every request with one value reaches one node, on every replica; {how}. A request without it is placed by its address (fallback: ip_hash), where nginx hashed the empty value (all of them on one node)", m.args.join(" ")));
            }
            "hash" => {
                self.skip(m, "tether hashes the client address (`ip_hash`) or one request value (`$arg_NAME`, `$http_NAME`, `$cookie_NAME` alone: key affinity), not a combination; this upstream is balanced without stickiness");
            }
            "least_conn" => {
                plan.balance = Some("least_conn");
                plan.notes.push("least_conn with no stickiness, as in nginx; for realtime sessions consider `affinity: { mode: cookie }`".to_string());
            }
            "sticky" if arg(0) == "cookie" => {
                plan.affinity = AffinityPlan::Cookie(self.sticky_cookie(m, plan));
                self.plan.signs_cookies = true;
            }
            "sticky" => {
                plan.affinity = cookie_affinity(DEFAULT_COOKIE_NAME);
                self.plan.signs_cookies = true;
                self.skip(m, "tether does not learn or route by the application's own cookie; it pins each client with its own signed cookie instead");
            }
            _ => self.skip(
                m,
                "tether balances with least_conn or round_robin; round_robin is used",
            ),
        }
    }

    fn sticky_cookie(&mut self, m: &Directive, plan: &mut UpstreamPlan) -> CookiePlan {
        let at = self.loc(m.at);
        let mut c = CookiePlan {
            name: m
                .args
                .get(1)
                .cloned()
                .unwrap_or_else(|| DEFAULT_COOKIE_NAME.to_string()),
            http_only: true,
            ..CookiePlan::default()
        };
        let mut http_only = false;
        for p in m.args.iter().skip(2) {
            let (key, value) = p.split_once('=').unwrap_or((p.as_str(), ""));
            match key {
                "expires" if value == "max" => c.max_age = Some(EXPIRES_MAX.to_string()),
                "expires" => match nginx_time(value) {
                    Some(t) if !t.is_zero() => c.max_age = Some(duration_text(t)),
                    _ => self.skip_text(
                        &format!("sticky ... {p}"),
                        m.at,
                        "not a time; the cookie is a session cookie",
                    ),
                },
                "domain" => c.domain = Some(value.to_string()),
                "path" => c.path = Some(value.to_string()),
                "secure" => c.secure = true,
                "httponly" => http_only = true,
                "samesite" => match value.to_ascii_lowercase().as_str() {
                    "strict" => c.same_site = Some("strict"),
                    "lax" => c.same_site = Some("lax"),
                    "none" => c.same_site = Some("none"),
                    _ => self.skip_text(
                        &format!("sticky ... {p}"),
                        m.at,
                        "samesite is strict, lax or none",
                    ),
                },
                _ => self.skip_text(
                    &format!("sticky ... {p}"),
                    m.at,
                    "tether has no such cookie attribute",
                ),
            }
        }
        plan.notes.push(format!("sticky cookie {} ({at}): tether's cookie holds a signed, opaque token; cookies nginx issued are not recognised, so each client is pinned afresh once", c.name));
        if !http_only {
            plan.notes.push("nginx sent this cookie without HttpOnly; tether's is HttpOnly (page scripts cannot read it): set `http_only: false` if a script of yours reads it".to_string());
        }
        if c.same_site == Some("none") && !c.secure {
            c.secure = true;
            plan.notes.push(
                "samesite=none without secure: browsers reject such cookies, so tether's is Secure"
                    .to_string(),
            );
        }
        c
    }
}

fn cookie_affinity(name: &str) -> AffinityPlan {
    AffinityPlan::Cookie(CookiePlan {
        name: name.to_string(),
        http_only: true,
        ..CookiePlan::default()
    })
}

struct ServerEntry {
    passive: (u32, Duration),
    explicit_passive: bool,
    slow_start: Option<Duration>,
    hostname: Option<(String, u16)>,
}

/// Per-upstream timeouts from the routes that use it: the longest of each kind, so no
/// location's long-polls or quiet WebSockets are cut; a note when they differed.
pub(super) fn upstream_timeouts(u: &mut Upstream) {
    let [read, connect, send] = ["read", "connect", "send"].map(|key| longest(u, key));
    if let Some(c) = connect {
        u.plan.timeouts.push(("connect", duration_text(c)));
    }
    // tether requires read >= connect.
    let read = match (read, connect) {
        (r, Some(c)) if r.unwrap_or(DEFAULT_READ_TIMEOUT) < c => {
            u.plan.notes.push("proxy_read_timeout was shorter than proxy_connect_timeout; tether needs read >= connect, so read is raised to it".to_string());
            Some(c)
        }
        (r, _) => r,
    };
    if let Some(r) = read {
        u.plan.timeouts.push(("read", duration_text(r)));
        // nginx closes an upgraded connection quiet for proxy_read_timeout.
        u.plan.timeouts.push(("tunnel_idle", duration_text(r)));
        u.plan.notes.push("nginx closed a WebSocket quiet for proxy_read_timeout; tether's tunnel_idle does the same".to_string());
    }
    if let Some(s) = send {
        u.plan.timeouts.push(("send", duration_text(s)));
    }
}

/// The longest `proxy_{key}_timeout` among the routes using `u` (nginx's default where a route
/// set none), or `None` when no route set one; a note when they differ.
fn longest(u: &mut Upstream, key: &str) -> Option<Duration> {
    let i = ["read", "connect", "send"].iter().position(|k| *k == key)?;
    if u.timeouts.iter().all(|t| t[i].is_none()) {
        return None;
    }
    let effective: Vec<Duration> = u
        .timeouts
        .iter()
        .map(|t| t[i].unwrap_or(NGINX_PROXY_TIMEOUT))
        .collect();
    let max = effective.iter().copied().max()?;
    if effective.iter().any(|v| *v != max) {
        let list: Vec<String> = effective.iter().map(|d| duration_text(*d)).collect();
        u.plan.notes.push(format!(
            "proxy_{key}_timeout differs between the locations using this upstream ({}); tether has one per upstream: the longest is used",
            list.join(", ")
        ));
    }
    Some(max)
}

/// The upstream name for `proxy_pass http://HOST:PORT` without an upstream block.
pub(super) fn synthetic_name(host: &str, port: u16) -> String {
    let clean: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("direct_{}_{port}", clean.trim_matches('_'))
}

/// Key affinity's `key` for an nginx hash key that is one request value alone: `$arg_NAME` (a
/// query parameter), `$http_NAME` (a header: nginx's name has `-` as `_`, lower-cased) or
/// `$cookie_NAME`. A key made of several variables or of text has no equivalent.
fn key_source(key: &str) -> Option<String> {
    let plain = |name: &str| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if let Some(name) = key.strip_prefix("$arg_").filter(|n| plain(n)) {
        return Some(format!("query:{name}"));
    }
    if let Some(name) = key.strip_prefix("$http_").filter(|n| plain(n)) {
        return Some(format!("header:{}", name.replace('_', "-")));
    }
    key.strip_prefix("$cookie_")
        .filter(|n| plain(n))
        .map(|name| format!("cookie:{name}"))
}

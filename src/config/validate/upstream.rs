//! The `upstreams` section: each pool's nodes (static or found by DNS), balancing and
//! timeouts. Affinity, health checks and passive checks have files of their own.

use std::net::{IpAddr, SocketAddr};

use super::{items, join, Checker};
use crate::config::defaults::*;
use crate::config::file::{
    FileConfig, FileDiscover, FileDrain, FileNode, FileRebalance, FileTimeouts, FileUpstream,
};
use crate::config::model::{
    is_dns_name, Affinity, Balance, Discover, DnsName, Drain, EngineIo, Node, Rebalance, Timeouts,
    Upstream,
};

const NODE_EXAMPLE: &str = "e.g. `- { id: node-a, address: \"127.0.0.1:3001\" }`";

impl Checker<'_> {
    /// Returns the unique upstream names (what routes may name) and the validated upstreams.
    pub(super) fn upstreams(&mut self, file: &FileConfig) -> (Vec<String>, Vec<Upstream>) {
        let (mut names, mut out) = (Vec::<String>::new(), Vec::new());
        let Some(ups) = &file.upstreams else {
            let hint = "define at least one pool of nodes, e.g. `upstreams: { realtime: { nodes: [...] } }`";
            self.missing::<()>("", "upstreams", hint);
            return (names, out);
        };
        let msg = "is empty; define at least one upstream with its `nodes`";
        self.ensure(!ups.0.is_empty(), "upstreams", msg);
        for (i, (name, up)) in ups.0.iter().enumerate() {
            let path = join("upstreams", name);
            let seen = ups.0[..i].iter().filter(|(n, _)| n == name).count();
            if seen > 0 {
                let pos = self.cx.positions.nth_key(&path, seen);
                let msg = format!("{path}: upstream `{name}` is defined more than once; give each upstream a unique name");
                self.at(pos, msg);
                continue;
            }
            names.push(name.clone());
            out.extend(self.upstream(&path, name, up));
        }
        (names, out)
    }

    fn upstream(&mut self, path: &str, name: &str, up: &FileUpstream) -> Option<Upstream> {
        let discover = match &up.discover {
            None => Some(None),
            Some(d) => self.discover(&join(path, "discover"), d).map(Some),
        };
        let nodes = self.nodes(path, up.nodes.as_deref(), up.discover.is_some());
        let balances = [
            ("least_conn", Balance::LeastConn),
            ("round_robin", Balance::RoundRobin),
        ];
        let balance = match &up.balance {
            None => Some(DEFAULT_BALANCE),
            Some(b) => self.choice(&join(path, "balance"), b, &balances),
        };
        let affinity = self.affinity(&join(path, "affinity"), up.affinity.as_ref());
        let timeouts = self.timeouts(&join(path, "timeouts"), up.timeouts.as_ref());
        let health_check = match &up.health_check {
            None => Some(None),
            Some(h) => self.health_check(&join(path, "health_check"), h).map(Some),
        };
        let passive = self.passive(&join(path, "passive"), up.passive.as_ref());
        let slow_start = self.span(
            &join(path, "slow_start"),
            up.slow_start.as_ref(),
            DEFAULT_SLOW_START,
        );
        let max_tunnels_per_node = self.count(
            &join(path, "max_tunnels_per_node"),
            up.max_tunnels_per_node,
            (0, 10_000_000, DEFAULT_MAX_TUNNELS_PER_NODE),
            "open tunnels per node, 0 (no limit) or more",
        );
        let leave_spread = self.span(
            &join(path, "leave.spread"),
            up.leave.as_ref().and_then(|l| l.spread.as_ref()),
            DEFAULT_LEAVE_SPREAD,
        );
        let rebalance = match &up.rebalance {
            None => Some(None),
            Some(r) => self
                .rebalance(&join(path, "rebalance"), r, affinity.as_ref())
                .map(Some),
        };
        let (affinity, engineio) = affinity?;
        Some(Upstream {
            leave_spread: leave_spread?,
            rebalance: rebalance?,
            max_tunnels_per_node: max_tunnels_per_node?,
            name: name.to_string(),
            nodes: nodes?,
            discover: discover?,
            balance: balance?,
            affinity,
            engineio,
            timeouts: timeouts?,
            health_check: health_check?,
            passive: passive?,
            slow_start: slow_start?,
        })
    }

    /// The static nodes; with `discovering`, none at all is fine.
    fn nodes(
        &mut self,
        path: &str,
        nodes: Option<&[FileNode]>,
        discovering: bool,
    ) -> Option<Vec<Node>> {
        let nodes = match nodes {
            None | Some([]) if discovering => return Some(Vec::new()),
            None => {
                return self.missing(
                    path,
                    "nodes",
                    &format!("add at least one node, {NODE_EXAMPLE}, or find them by DNS with `discover: {{ dns: NAME, port: PORT }}`"),
                )
            }
            Some([]) => {
                let msg = format!("is empty; add at least one node, {NODE_EXAMPLE}");
                return self.bad(&join(path, "nodes"), msg);
            }
            Some(n) => n,
        };
        let mut out = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let p = format!("{path}.nodes[{i}]");
            let id = match n.id.as_deref().map(str::trim) {
                None => self.missing(&p, "id", "give the node a stable name such as `node-a`; stickiness is keyed by it"),
                Some("") => self.bad(&join(&p, "id"), "is empty; give the node a stable name such as `node-a`"),
                Some(id) if nodes[..i].iter().any(|m| m.id.as_deref().map(str::trim) == Some(id)) => {
                    self.bad(&join(&p, "id"), format_args!("`{id}` is already used by another node of this upstream; node ids must be unique"))
                }
                Some(id) => Some(id.to_string()),
            };
            let address = match &n.address {
                None => self.missing(
                    &p,
                    "address",
                    "give the node's IP:PORT, e.g. `127.0.0.1:3001`",
                ),
                Some(a) => self.socket_addr(&join(&p, "address"), a, false),
            };
            let weight = match n.weight {
                None => Some(DEFAULT_WEIGHT),
                Some(w) if (i64::from(MIN_WEIGHT)..=i64::from(MAX_WEIGHT)).contains(&w) => {
                    u32::try_from(w).ok()
                }
                Some(w) => {
                    // Weight 0 is often meant as "drain this node"; say how to do that instead.
                    let hint = if w < 1 {
                        "; to take a node out, remove it from the list"
                    } else {
                        ""
                    };
                    let msg = format!("{w} is out of range; a weight must be between {MIN_WEIGHT} and {MAX_WEIGHT}{hint}");
                    self.bad(&join(&p, "weight"), msg)
                }
            };
            let drain = match &n.drain {
                None => Some(None),
                Some(d) => self.drain(&join(&p, "drain"), d).map(Some),
            };
            out.push(match (id, address, weight, drain) {
                (Some(id), Some(address), Some(weight), Some(drain)) => Some(Node {
                    id,
                    address,
                    weight,
                    drain,
                }),
                _ => None,
            });
        }
        // Every node has been checked; only now give up if any of them failed.
        out.into_iter().collect()
    }

    /// A node's `drain:`: when its tunnels start closing, and over how long.
    fn drain(&mut self, path: &str, d: &FileDrain) -> Option<Drain> {
        let close_after = match &d.close_after {
            None => Some(None),
            Some(t) => self.duration(&join(path, "close_after"), t).map(Some),
        };
        let spread = match &d.spread {
            None => Some(None),
            Some(t) => self.duration(&join(path, "spread"), t).map(Some),
        };
        Some(Drain {
            close_after: close_after?,
            spread: spread?,
        })
    }

    /// `rebalance:`: a skew above 1 and a rate; a ring (ip_hash, key) decides where each client
    /// belongs, so moving its clients would fight it.
    fn rebalance(
        &mut self,
        path: &str,
        r: &FileRebalance,
        affinity: Option<&(Affinity, Option<EngineIo>)>,
    ) -> Option<Rebalance> {
        if let Some((Affinity::IpHash | Affinity::Key { .. }, _)) = affinity {
            return self.bad(path, "with ip_hash or key affinity the ring decides each client's node, so moving clients would fight it; rebalance works with cookie affinity or none (remove `rebalance`, or change affinity.mode)");
        }
        let max_skew = match r.max_skew {
            None => Some(DEFAULT_MAX_SKEW),
            Some(s) if s > 1.0 && s <= MAX_MAX_SKEW => Some(s),
            Some(s) => self.bad(&join(path, "max_skew"), format_args!("{s} is out of range; give a factor above 1 and at most {MAX_MAX_SKEW} (1.5: a node may hold between 2/3 and 1.5 times its share)")),
        };
        let moves_per_second = self.count(
            &join(path, "moves_per_second"),
            r.moves_per_second,
            (1, 10_000, DEFAULT_MOVES_PER_SECOND),
            "tunnels moved per second, 1 to 10000",
        );
        Some(Rebalance {
            max_skew: max_skew?,
            moves_per_second: moves_per_second?,
        })
    }

    /// `discover:`: names (each with its port), refresh interval and resolver.
    fn discover(&mut self, path: &str, d: &FileDiscover) -> Option<Discover> {
        // `None` when omitted or bad (a bad one is reported here, once).
        let port = d.port.and_then(|p| match u16::try_from(p) {
            Ok(p) if p > 0 => Some(p),
            _ => self.bad(
                &join(path, "port"),
                format_args!("{p} is not a port; give the nodes' port, 1..65535"),
            ),
        });
        let names = match &d.dns {
            None => self.missing(path, "dns", "give the name whose A/AAAA records are the nodes, e.g. `dns: realtime.default.svc.cluster.local`"),
            Some(list) if list.items.is_empty() => self.bad(&join(path, "dns"), "is empty; give at least one name to resolve"),
            Some(list) => {
                let mut out = Vec::new();
                for (p, item) in items(&join(path, "dns"), list) {
                    out.push(self.dns_name(&p, item, port, d.port.is_some()));
                }
                out.into_iter().collect::<Option<Vec<_>>>()
            }
        };
        let refresh = self.timeout(
            &join(path, "refresh"),
            d.refresh.as_ref(),
            DEFAULT_DISCOVER_REFRESH,
        );
        if let (Some(r), Some(text)) = (refresh, &d.refresh) {
            let min = humantime::format_duration(MIN_DISCOVER_REFRESH);
            let msg = format_args!(
                "`{text}` is too short: it would only load the DNS server; use at least {min}"
            );
            self.ensure(r >= MIN_DISCOVER_REFRESH, &join(path, "refresh"), msg);
        }
        let refresh = refresh.filter(|r| *r >= MIN_DISCOVER_REFRESH);
        let resolver = match d.resolver.as_deref().map(str::trim) {
            None => Some(None),
            Some(text) => match (text.parse::<SocketAddr>(), text.parse::<IpAddr>()) {
                (Ok(a), _) if a.port() != 0 => Some(Some(a)),
                (_, Ok(ip)) => Some(Some(SocketAddr::new(ip, DEFAULT_DNS_PORT))),
                _ => self.bad(&join(path, "resolver"), format_args!("`{text}` is not a DNS server address; write IP or IP:PORT, e.g. `127.0.0.1:5353` (omit `resolver` to use the system's)")),
            },
        };
        Some(Discover {
            names: names?,
            refresh: refresh?,
            resolver: resolver?,
        })
    }

    /// One `dns` item: `NAME` or `NAME:PORT`; `port` is the section's `port` (`port_given`
    /// says whether it was written at all, so a bad one is not reported twice).
    fn dns_name(
        &mut self,
        path: &str,
        text: &str,
        port: Option<u16>,
        port_given: bool,
    ) -> Option<DnsName> {
        let t = text.trim();
        if t.parse::<IpAddr>().is_ok() || t.parse::<SocketAddr>().is_ok() {
            return self.bad(
                path,
                format_args!(
                    "`{t}` is an address, not a name; list fixed addresses under `nodes` instead"
                ),
            );
        }
        let (name, own_port) = match t.rsplit_once(':') {
            Some((n, p)) => match p.parse::<u16>() {
                Ok(p) if p > 0 => (n, Some(p)),
                _ => return self.bad(path, format_args!("`{t}`: `{p}` is not a port")),
            },
            None => (t, None),
        };
        let valid = is_dns_name(name.strip_suffix('.').unwrap_or(name));
        if !valid {
            return self.bad(path, format_args!("`{t}` is not a DNS name (letters, digits, `-` and `_` in dot-separated labels), e.g. `realtime.default.svc.cluster.local`"));
        }
        match own_port.or(port) {
            Some(port) => Some(DnsName {
                name: name.to_string(),
                port,
            }),
            None if port_given => None,
            None => self.bad(
                path,
                format_args!(
                    "`{t}` has no port; add `port: PORT` to discover, or write `{t}:PORT`"
                ),
            ),
        }
    }

    fn timeouts(&mut self, path: &str, t: Option<&FileTimeouts>) -> Option<Timeouts> {
        let empty = FileTimeouts::default();
        let t = t.unwrap_or(&empty);
        let connect = self.timeout(
            &join(path, "connect"),
            t.connect.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
        );
        let read = self.timeout(&join(path, "read"), t.read.as_ref(), DEFAULT_READ_TIMEOUT);
        let idle = self.timeout(
            &join(path, "tunnel_idle"),
            t.tunnel_idle.as_ref(),
            DEFAULT_TUNNEL_IDLE_TIMEOUT,
        );
        let send = self.timeout(&join(path, "send"), t.send.as_ref(), DEFAULT_SEND_TIMEOUT);
        let keep = self.span(
            &join(path, "idle"),
            t.idle.as_ref(),
            DEFAULT_UPSTREAM_IDLE_TIMEOUT,
        );
        let (connect, read) = (connect?, read?);
        // Point at whichever of the two the file actually sets.
        let at = join(path, if t.read.is_some() { "read" } else { "connect" });
        let (r, c) = (
            humantime::format_duration(read),
            humantime::format_duration(connect),
        );
        let msg = format_args!(
            "read ({r}) is shorter than connect ({c}); make read at least as long as connect"
        );
        self.ensure(read >= connect, &at, msg).then_some(Timeouts {
            connect,
            read,
            tunnel_idle: idle?,
            send: send?,
            idle: keep?,
        })
    }
}

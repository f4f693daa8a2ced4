//! Virtual hosts: each server block's `listen`s, and how the server blocks together become
//! tether's one set of listeners and its routes by host and path.

use super::blocks::Scope;
use super::parse::Directive;
use super::plan::{ListenPlan, RoutePlan};
use super::syntax::{host_patterns, listen_address};
use super::translator::{Server, Translator};

impl Translator<'_> {
    pub(super) fn listen(&mut self, l: &Directive, scope: &Scope) -> Option<(ListenPlan, bool)> {
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

    /// Decide listeners and routes from the server blocks: the default server's locations
    /// serve every host, the others' only their names.
    pub(super) fn vhosts(&mut self) {
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

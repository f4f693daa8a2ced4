//! The `routes` section: which upstream serves each path prefix, for which hosts, and the
//! WebSocket origin policy of each route.

use super::{items, join, Checker};
use crate::config::defaults::DEFAULT_ROUTE_PREFIX;
use crate::config::defaults::*;
use crate::config::file::{FileConfig, FileWebsocket, OneOrMany};
use crate::config::model::{HostPattern, OriginPattern, Route, WebsocketPolicy};

impl Checker<'_> {
    pub(super) fn routes(&mut self, file: &FileConfig, names: &[String]) -> Vec<Route> {
        let Some(routes) = &file.routes else {
            return match names {
                [] => Vec::new(),
                [_] => vec![Route::new(DEFAULT_ROUTE_PREFIX, 0)],
                [first, ..] => {
                    let pos = self.cx.positions.key("upstreams");
                    self.at(pos, format!("routes: required when there are several upstreams; add e.g. `routes: [{{ path_prefix: /, upstream: {first} }}]`"));
                    Vec::new()
                }
            };
        };
        let msg = "is empty; add a route such as `- { path_prefix: /, upstream: NAME }`, or remove `routes` when there is one upstream";
        self.ensure(!routes.is_empty(), "routes", msg);
        let mut out = Vec::new();
        // (prefix, hosts) of every earlier route, for the duplicate check.
        let mut seen: Vec<(&str, Vec<HostPattern>)> = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let p = format!("routes[{i}]");
            let hosts = self.hosts(&p, r.hosts.as_ref());
            // Hosts that did not parse are already reported; do not guess at clashes.
            let clash = |s: &str| {
                hosts.as_ref().is_some_and(|hs| {
                    seen.iter().any(|(q, h)| {
                        *q == s
                            && (h.is_empty() && hs.is_empty() || h.iter().any(|x| hs.contains(x)))
                    })
                })
            };
            let prefix = match &r.path_prefix {
                None => self.missing(&p, "path_prefix", "give the path it matches, e.g. `/` or `/socket.io/`"),
                Some(s) if !s.starts_with('/') => self.bad(&join(&p, "path_prefix"), format_args!("`{s}` must start with `/`, e.g. `/{s}`")),
                Some(s) if clash(s) => {
                    self.bad(&join(&p, "path_prefix"), format_args!("`{s}` is already routed by an earlier route for the same hosts; each prefix may appear once per host"))
                }
                Some(s) => Some(s.clone()),
            };
            if let (Some(s), Some(hs)) = (&r.path_prefix, &hosts) {
                seen.push((s.as_str(), hs.clone()));
            }
            let upstream = match (&r.upstream, names) {
                (None, _) => {
                    self.missing(&p, "upstream", "name the upstream that serves this prefix")
                }
                (Some(u), _) if names.contains(u) => names.iter().position(|n| n == u),
                (Some(u), []) => self.bad(
                    &join(&p, "upstream"),
                    format_args!("no upstream named `{u}`; define it under `upstreams`"),
                ),
                (Some(u), _) => {
                    let msg = format!(
                        "no upstream named `{u}`; known upstreams: {}",
                        names.join(", ")
                    );
                    self.bad(&join(&p, "upstream"), msg)
                }
            };
            let websocket = self.websocket(&p, r.websocket.as_ref());
            if let (Some(hosts), Some(path_prefix), Some(upstream), Some(websocket)) =
                (hosts, prefix, upstream, websocket)
            {
                out.push(Route {
                    hosts,
                    path_prefix,
                    upstream,
                    websocket,
                });
            }
        }
        out
    }

    /// A route's `hosts`: names or `*.domain` wildcards; omitted means every host.
    fn hosts(&mut self, route: &str, h: Option<&OneOrMany>) -> Option<Vec<HostPattern>> {
        let Some(h) = h else {
            return Some(Vec::new());
        };
        if h.items.is_empty() {
            return self.bad(
                &join(route, "hosts"),
                "is empty; list the host names this route serves, or omit `hosts` for every host",
            );
        }
        let mut out = Vec::new();
        for (p, text) in items(&join(route, "hosts"), h) {
            match HostPattern::parse(text) {
                Ok(pattern) if !out.contains(&Some(pattern.clone())) => out.push(Some(pattern)),
                Ok(_) => out.push(self.bad(&p, format_args!("`{text}` is listed twice"))),
                Err(e) => out.push(self.bad(&p, e)),
            }
        }
        out.into_iter().collect()
    }

    fn websocket(&mut self, route: &str, w: Option<&FileWebsocket>) -> Option<WebsocketPolicy> {
        let Some(w) = w else {
            return Some(WebsocketPolicy::default());
        };
        let mut ok = true;
        let mut allowed_origins = Vec::new();
        for (i, o) in w.allowed_origins.iter().flatten().enumerate() {
            match OriginPattern::parse(o) {
                Ok(p) => allowed_origins.push(p),
                Err(e) => {
                    self.bad::<()>(&format!("{route}.websocket.allowed_origins[{i}]"), e);
                    ok = false;
                }
            }
        }
        let interval = self.span(
            &format!("{route}.websocket.ping_interval"),
            w.ping_interval.as_ref(),
            DEFAULT_PING_INTERVAL,
        );
        let timeout = self.timeout(
            &format!("{route}.websocket.ping_timeout"),
            w.ping_timeout.as_ref(),
            DEFAULT_PING_TIMEOUT,
        );
        let (ping_interval, ping_timeout) = (interval?, timeout?);
        ok.then(|| WebsocketPolicy {
            allowed_origins,
            require_origin: w.require_origin.unwrap_or(false),
            ping_interval,
            ping_timeout,
        })
    }
}

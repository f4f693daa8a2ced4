//! Routing: which upstream a request goes to, by `Host` and then by longest path prefix.
//!
//! Routes that name `hosts` are tried first, for requests whose host matches (an exact name
//! before a wildcard, the longest wildcard first); when none of their prefixes matches, the
//! routes without hosts apply, as they do to every other host. With no host routes at all (the
//! common case) the `Host` header is never looked at.

use crate::config::{HostPattern, Route, WebsocketPolicy};

/// One route: a prefix, its upstream index and its WebSocket policy.
#[derive(Debug, Clone)]
struct Entry {
    prefix: String,
    upstream: usize,
    websocket: WebsocketPolicy,
}

/// Routes sorted so the longest prefix is tried first.
#[derive(Debug, Clone, Default)]
struct Prefixes(Vec<Entry>);

impl Prefixes {
    fn sort(&mut self) {
        // Stable sort: among equal lengths (validation forbids equal prefixes) file order holds.
        self.0.sort_by_key(|e| std::cmp::Reverse(e.prefix.len()));
    }

    #[inline]
    fn find(&self, path: &str) -> Option<(usize, &WebsocketPolicy)> {
        self.0
            .iter()
            .find(|e| path.starts_with(e.prefix.as_str()))
            .map(|e| (e.upstream, &e.websocket))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Routes with hosts, one table per host pattern: exact names first, then wildcards from the
    /// longest suffix down, so the most specific host wins.
    by_host: Vec<(HostPattern, Prefixes)>,
    /// Routes without hosts.
    any_host: Prefixes,
}

impl Router {
    pub fn new(routes: &[Route]) -> Router {
        let mut router = Router::default();
        for r in routes {
            let entry = Entry {
                prefix: r.path_prefix.clone(),
                upstream: r.upstream,
                websocket: r.websocket.clone(),
            };
            if r.hosts.is_empty() {
                router.any_host.0.push(entry);
                continue;
            }
            for h in &r.hosts {
                match router.by_host.iter_mut().find(|(p, _)| p == h) {
                    Some((_, table)) => table.0.push(entry.clone()),
                    None => router
                        .by_host
                        .push((h.clone(), Prefixes(vec![entry.clone()]))),
                }
            }
        }
        router.any_host.sort();
        for (_, table) in &mut router.by_host {
            table.sort();
        }
        router
            .by_host
            .sort_by_key(|(p, _)| (p.wildcard, std::cmp::Reverse(p.name.len())));
        router
    }

    /// Whether any route names hosts (otherwise callers need not find the `Host` header).
    pub fn uses_hosts(&self) -> bool {
        !self.by_host.is_empty()
    }

    /// The upstream index for `path` (and `host`, the `Host` header's value), by longest
    /// matching prefix. Like nginx's prefix `location`, `/api` also matches `/apix`; write
    /// `/api/` to mean the directory only.
    pub fn route(&self, host: Option<&[u8]>, path: &str) -> Option<usize> {
        self.route_with_policy(host, path).map(|(u, _)| u)
    }

    /// The upstream index and the route's WebSocket policy.
    #[inline]
    pub fn route_with_policy(
        &self,
        host: Option<&[u8]>,
        path: &str,
    ) -> Option<(usize, &WebsocketPolicy)> {
        if let (Some(host), true) = (host, self.uses_hosts()) {
            if let Some(hit) = self.by_host(bare_host(host), path) {
                return Some(hit);
            }
        }
        self.any_host.find(path)
    }

    /// The host tables' answer, most specific host first; kept out of line so the common
    /// case (no host routes) stays a short loop.
    #[inline(never)]
    fn by_host(&self, host: &[u8], path: &str) -> Option<(usize, &WebsocketPolicy)> {
        self.by_host
            .iter()
            .filter(|(p, _)| p.matches(host))
            .find_map(|(_, table)| table.find(path))
    }
}

/// The host name of a `Host` header value: without the port and a trailing dot (`[v6]` keeps
/// its brackets, and matches no name).
fn bare_host(value: &[u8]) -> &[u8] {
    let end = if value.first() == Some(&b'[') {
        value
            .iter()
            .position(|&b| b == b']')
            .map_or(value.len(), |i| i + 1)
    } else {
        value.iter().position(|&b| b == b':').unwrap_or(value.len())
    };
    let host = &value[..end];
    host.strip_suffix(b".").unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosted(hosts: &[&str], prefix: &str, upstream: usize) -> Route {
        Route {
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            ..Route::new(prefix, upstream)
        }
    }

    #[test]
    fn longest_prefix_wins_and_no_match_is_none() {
        let r = Router::new(&[
            Route::new("/", 0),
            Route::new("/socket.io/", 1),
            Route::new("/socket.io/admin", 2),
        ]);
        assert_eq!(r.route(None, "/index.html"), Some(0));
        assert_eq!(r.route(None, "/socket.io/?EIO=4"), Some(1));
        assert_eq!(r.route(Some(b"any.host"), "/socket.io/admin/x"), Some(2));
        let api_only = Router::new(&[Route::new("/api", 0)]);
        assert_eq!(api_only.route(None, "/other"), None);
    }

    #[test]
    fn host_routes_come_first_exact_before_wildcard_then_the_rest() {
        let r = Router::new(&[
            Route::new("/", 0),
            hosted(&["chat.example.com"], "/", 1),
            hosted(&["*.example.com"], "/", 2),
            hosted(&["*.eu.example.com"], "/socket.io/", 3),
        ]);
        assert_eq!(r.route(Some(b"Chat.Example.COM:8080"), "/x"), Some(1));
        assert_eq!(r.route(Some(b"chat.example.com."), "/x"), Some(1));
        assert_eq!(r.route(Some(b"api.example.com"), "/x"), Some(2));
        assert_eq!(r.route(Some(b"a.eu.example.com"), "/socket.io/"), Some(3));
        // The longer wildcard has no prefix for this path: the next host table serves it.
        assert_eq!(r.route(Some(b"a.eu.example.com"), "/other"), Some(2));
        // The wildcard does not match the bare domain.
        assert_eq!(r.route(Some(b"example.com"), "/x"), Some(0));
        assert_eq!(r.route(Some(b"[::1]:8080"), "/x"), Some(0));
        assert_eq!(r.route(None, "/x"), Some(0));
    }

    #[test]
    fn a_host_without_a_matching_prefix_falls_back_to_routes_for_every_host() {
        let r = Router::new(&[Route::new("/", 0), hosted(&["a.test"], "/ws/", 1)]);
        assert_eq!(r.route(Some(b"a.test"), "/ws/1"), Some(1));
        assert_eq!(r.route(Some(b"a.test"), "/page"), Some(0));
        let only_hosts = Router::new(&[hosted(&["a.test"], "/", 0)]);
        assert_eq!(only_hosts.route(Some(b"b.test"), "/"), None);
    }
}

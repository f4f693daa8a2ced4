//! Path-prefix routing: which upstream a request goes to.

use crate::config::{Route, WebsocketPolicy};

/// Routes sorted so the longest prefix is tried first.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<(String, usize, WebsocketPolicy)>,
}

impl Router {
    pub fn new(routes: &[Route]) -> Router {
        let mut routes: Vec<_> = routes
            .iter()
            .map(|r| (r.path_prefix.clone(), r.upstream, r.websocket.clone()))
            .collect();
        // Stable sort: among equal lengths (validation forbids equal prefixes) file order holds.
        routes.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.len()));
        Router { routes }
    }

    /// The upstream index for `path`, by longest matching prefix. Like nginx's prefix
    /// `location`, `/api` also matches `/apix`; write `/api/` to mean the directory only.
    pub fn route(&self, path: &str) -> Option<usize> {
        self.route_with_policy(path).map(|(u, _)| u)
    }

    /// The upstream index and the route's WebSocket policy.
    pub fn route_with_policy(&self, path: &str) -> Option<(usize, &WebsocketPolicy)> {
        self.routes
            .iter()
            .find(|(p, _, _)| path.starts_with(p.as_str()))
            .map(|(_, u, w)| (*u, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_no_match_is_none() {
        let r = Router::new(&[
            Route::new("/", 0),
            Route::new("/socket.io/", 1),
            Route::new("/socket.io/admin", 2),
        ]);
        assert_eq!(r.route("/index.html"), Some(0));
        assert_eq!(r.route("/socket.io/?EIO=4"), Some(1));
        assert_eq!(r.route("/socket.io/admin/x"), Some(2));
        let api_only = Router::new(&[Route::new("/api", 0)]);
        assert_eq!(api_only.route("/other"), None);
    }
}

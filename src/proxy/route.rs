//! Path-prefix routing: which upstream a request goes to.

use crate::config::Route;

/// Routes sorted so the longest prefix is tried first.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<(String, usize)>,
}

impl Router {
    pub fn new(routes: &[Route]) -> Router {
        let mut routes: Vec<_> = routes
            .iter()
            .map(|r| (r.path_prefix.clone(), r.upstream))
            .collect();
        // Stable sort: among equal lengths (validation forbids equal prefixes) file order holds.
        routes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Router { routes }
    }

    /// The upstream index for `path`, by longest matching prefix. Like nginx's prefix
    /// `location`, `/api` also matches `/apix`; write `/api/` to mean the directory only.
    pub fn route(&self, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .find(|(p, _)| path.starts_with(p.as_str()))
            .map(|&(_, u)| u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_no_match_is_none() {
        let r = Router::new(&[
            Route {
                path_prefix: "/".into(),
                upstream: 0,
            },
            Route {
                path_prefix: "/socket.io/".into(),
                upstream: 1,
            },
            Route {
                path_prefix: "/socket.io/admin".into(),
                upstream: 2,
            },
        ]);
        assert_eq!(r.route("/index.html"), Some(0));
        assert_eq!(r.route("/socket.io/?EIO=4"), Some(1));
        assert_eq!(r.route("/socket.io/admin/x"), Some(2));
        let api_only = Router::new(&[Route {
            path_prefix: "/api".into(),
            upstream: 0,
        }]);
        assert_eq!(api_only.route("/other"), None);
    }
}

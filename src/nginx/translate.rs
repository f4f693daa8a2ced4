//! The sticky subset of nginx, directive by directive, into a [`Plan`].
//!
//! nginx picks a `server` block by listen address and `Host`, then a `location` by path;
//! tether has one set of listeners and routes by host and path prefix. So every server block's
//! `listen`s become tether listeners, the default server's locations become routes for every
//! host, and the other servers' locations become routes for their `server_name`s. Per-location
//! proxy timeouts become per-upstream timeouts (the longest wins, with a note). Whatever has
//! no tether equivalent is listed, with the reason, as a "not translated" comment.
//!
//! This file holds the entry point, the translator's state and the helpers every part uses;
//! `blocks.rs` walks the main, http, server and location levels, `vhosts.rs` turns `listen`s
//! and server blocks into listeners and host-routed routes, `client.rs` takes the client limits
//! and `real_ip`, `proxy_common.rs` the proxy directives every level may hold, and
//! `upstream.rs` the upstream blocks.

use super::parse::{Directive, Loc, Tree};
use super::plan::*;
use super::syntax::{directive_text, shorten};
use super::upstream::upstream_timeouts;
use std::collections::BTreeMap;
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

/// One upstream as declared, before routes decide its timeouts.
pub(super) struct Upstream {
    pub(super) plan: UpstreamPlan,
    pub(super) used: bool,
    /// Per route using it: (read, connect, send), `None` where nginx's default applied.
    pub(super) timeouts: Vec<[Option<Duration>; 3]>,
}

/// A `server` block, collected before deciding which one is the default.
pub(super) struct Server {
    pub(super) at: Loc,
    pub(super) listens: Vec<(ListenPlan, bool)>,
    pub(super) names: Vec<String>,
    pub(super) routes: Vec<RoutePlan>,
    pub(super) default: bool,
}

pub(super) struct Translator<'t> {
    tree: &'t Tree,
    pub(super) plan: Plan,
    pub(super) upstreams: BTreeMap<String, Upstream>,
    /// Upstream names in the order they are declared (or first proxied to).
    pub(super) order: Vec<String>,
    pub(super) servers: Vec<Server>,
    pub(super) real_ip_header: Option<(String, Loc)>,
    pub(super) real_ip_from: Vec<(String, Loc)>,
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
}

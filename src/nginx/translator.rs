//! The translator's state while it walks an nginx config, and the helpers every part of the
//! walk uses (locations, "not translated" notes, the summary of directives tether needs
//! nothing for). The walk itself is spread over `translate.rs` (entry and end), `blocks.rs`,
//! `vhosts.rs`, `client.rs`, `proxy_common.rs` and `upstream.rs`, each adding methods here.

use super::parse::{Directive, Loc, Tree};
use super::plan::*;
use super::syntax::{directive_text, shorten};
use std::collections::BTreeMap;
use std::time::Duration;

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
    pub(super) tree: &'t Tree,
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
}

//! The sticky subset of nginx, directive by directive, into a [`Plan`].
//!
//! nginx picks a `server` block by listen address and `Host`, then a `location` by path;
//! tether has one set of listeners and routes by host and path prefix. So every server block's
//! `listen`s become tether listeners, the default server's locations become routes for every
//! host, and the other servers' locations become routes for their `server_name`s. Per-location
//! proxy timeouts become per-upstream timeouts (the longest wins, with a note). Whatever has
//! no tether equivalent is listed, with the reason, as a "not translated" comment.
//!
//! This file holds the entry point and the last step; `translator.rs` the translator's state and
//! the helpers every part uses; `blocks.rs` walks the main, http, server and location levels, `vhosts.rs` turns `listen`s
//! and server blocks into listeners and host-routed routes, `client.rs` takes the client limits
//! and `real_ip`, `proxy_common.rs` the proxy directives every level may hold, and
//! `upstream.rs` the upstream blocks.

use super::parse::Tree;
use super::plan::*;
use super::translator::Translator;
use super::upstream::upstream_timeouts;
use std::collections::BTreeMap;

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

impl Translator<'_> {
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

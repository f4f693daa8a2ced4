//! What DNS discovery has found, per upstream: the last good addresses of every name, and how
//! lookups have gone. Pure (no DNS, no clock: time is a parameter), so every rule is
//! unit-tested; [`super::Control::discovered`] records a round here and rebuilds the runtime
//! from [`Found::merged`] when the node set changed.
//!
//! A failed lookup (timeout, SERVFAIL, NXDOMAIN, or no records) keeps that name's last good
//! addresses: a DNS hiccup must not unpin every client.

use crate::config::{Config, Discover, Node};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// What one lookup of one name gave: its addresses, or why there are none.
pub type Answer = Result<Vec<IpAddr>, String>;

/// Everything discovery has found, by upstream name.
#[derive(Debug, Default)]
pub struct Found {
    upstreams: HashMap<String, UpstreamFound>,
}

/// One upstream: the last good addresses of each name, and how lookups have gone.
#[derive(Debug, Default)]
struct UpstreamFound {
    /// `(name, port)` -> last good addresses, sorted.
    names: HashMap<(String, u16), Vec<IpAddr>>,
    status: Status,
}

/// How discovery of one upstream is going, for `/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// Lookup rounds done (one round looks every name up once).
    pub rounds: u64,
    /// Rounds where at least one name failed.
    pub failed_rounds: u64,
    /// The last failure, `name: why`; cleared by a round where every name answered.
    pub last_error: Option<String>,
    /// Unix seconds of the last round where every name answered.
    pub last_ok: Option<u64>,
    /// Nodes the upstream has from discovery now.
    pub nodes: usize,
}

impl Found {
    /// Record a round of answers for `upstream` (one per name of `discover`, in order) at unix
    /// time `now`. Returns whether the upstream's discovered node set changed.
    pub fn record(
        &mut self,
        upstream: &str,
        discover: &Discover,
        answers: &[Answer],
        now: u64,
    ) -> bool {
        let entry = self.upstreams.entry(upstream.to_string()).or_default();
        let before = addresses(entry, discover);
        let mut errors = Vec::new();
        for (name, answer) in discover.names.iter().zip(answers) {
            match answer {
                Ok(ips) if !ips.is_empty() => {
                    let mut ips = ips.clone();
                    ips.sort_unstable();
                    ips.dedup();
                    entry.names.insert((name.name.clone(), name.port), ips);
                }
                Ok(_) => errors.push(format!("{}: no A or AAAA records", name.name)),
                Err(why) => errors.push(format!("{}: {why}", name.name)),
            }
        }
        let after = addresses(entry, discover);
        let status = &mut entry.status;
        status.rounds += 1;
        status.nodes = after.len();
        if errors.is_empty() {
            status.last_ok = Some(now);
            status.last_error = None;
        } else {
            status.failed_rounds += 1;
            status.last_error = Some(errors.join("; "));
        }
        before != after
    }

    /// Forget names (and upstreams) the config no longer discovers, after a reload.
    pub fn retain_for(&mut self, config: &Config) {
        self.upstreams.retain(|name, found| {
            let Some(d) = config
                .upstreams
                .iter()
                .find(|u| &u.name == name)
                .and_then(|u| u.discover.as_ref())
            else {
                return false;
            };
            found
                .names
                .retain(|(n, p), _| d.names.iter().any(|x| &x.name == n && x.port == *p));
            true
        });
    }

    /// `config` with every discovering upstream's found nodes appended to its static ones.
    /// An address (or id) a static node already has is not added twice.
    pub fn merged(&self, config: &Config) -> Config {
        let mut out = config.clone();
        for up in &mut out.upstreams {
            let (Some(d), Some(found)) = (&up.discover, self.upstreams.get(&up.name)) else {
                continue;
            };
            for addr in addresses(found, d) {
                let node = Node::discovered(addr);
                if up
                    .nodes
                    .iter()
                    .all(|n| n.address != node.address && n.id != node.id)
                {
                    up.nodes.push(node);
                }
            }
        }
        out
    }

    /// How discovery of `upstream` is going; `None` if it has not run for it yet.
    pub fn status(&self, upstream: &str) -> Option<&Status> {
        self.upstreams.get(upstream).map(|f| &f.status)
    }
}

/// The node addresses `found` holds for `discover`'s names, sorted (so every replica lists
/// the nodes in the same order) and without duplicates.
fn addresses(found: &UpstreamFound, discover: &Discover) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = discover
        .names
        .iter()
        .filter_map(|n| {
            let ips = found.names.get(&(n.name.clone(), n.port))?;
            Some(ips.iter().map(move |ip| SocketAddr::new(*ip, n.port)))
        })
        .flatten()
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DnsName;
    use std::time::Duration;

    fn discover(names: &[(&str, u16)]) -> Discover {
        Discover {
            names: names
                .iter()
                .map(|(n, p)| DnsName {
                    name: n.to_string(),
                    port: *p,
                })
                .collect(),
            refresh: Duration::from_secs(5),
            resolver: None,
        }
    }

    fn ips(list: &[&str]) -> Answer {
        Ok(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    fn config(d: &Discover, static_nodes: &[(&str, &str)]) -> Config {
        let text = format!(
            "listen: [{{ address: \"127.0.0.1:8080\" }}]\nupstreams:\n  rt:\n    affinity: {{ mode: ip_hash }}\n    nodes: [{}]\n    discover: {{ dns: a.test, port: 1 }}\n",
            static_nodes
                .iter()
                .map(|(id, a)| format!("{{ id: {id}, address: \"{a}\" }}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut c = crate::config::parse(std::path::Path::new("t.yaml"), &text, &|_| None)
            .expect("valid config");
        c.upstreams[0].discover = Some(d.clone());
        c
    }

    fn ids(c: &Config) -> Vec<&str> {
        c.upstreams[0].nodes.iter().map(|n| n.id.as_str()).collect()
    }

    #[test]
    fn every_record_of_every_name_is_a_node_named_by_its_address_in_a_fixed_order() {
        let d = discover(&[("b.test", 3000), ("a.test", 4000)]);
        let mut found = Found::default();
        let changed = found.record(
            "rt",
            &d,
            &[
                ips(&["10.0.0.9", "10.0.0.2", "fd00::1"]),
                ips(&["10.0.0.2"]),
            ],
            100,
        );
        assert!(changed);
        let c = found.merged(&config(&d, &[]));
        assert_eq!(
            ids(&c),
            [
                "10.0.0.2:3000",
                "10.0.0.2:4000",
                "10.0.0.9:3000",
                "[fd00::1]:3000"
            ]
        );
        let status = found.status("rt").unwrap();
        assert_eq!(
            (status.rounds, status.nodes, status.last_ok),
            (1, 4, Some(100))
        );
        // The same answers in another order change nothing.
        let same = [
            ips(&["fd00::1", "10.0.0.2", "10.0.0.9"]),
            ips(&["10.0.0.2"]),
        ];
        assert!(!found.record("rt", &d, &same, 105));
    }

    #[test]
    fn a_failed_or_empty_lookup_keeps_the_last_good_addresses_of_that_name_only() {
        let d = discover(&[("a.test", 3000), ("b.test", 3000)]);
        let mut found = Found::default();
        found.record("rt", &d, &[ips(&["10.0.0.1"]), ips(&["10.0.0.2"])], 1);
        let changed = found.record("rt", &d, &[Err("SERVFAIL".into()), ips(&["10.0.0.3"])], 2);
        assert!(changed);
        assert_eq!(
            ids(&found.merged(&config(&d, &[]))),
            ["10.0.0.1:3000", "10.0.0.3:3000"]
        );
        assert!(!found.record("rt", &d, &[Ok(vec![]), ips(&["10.0.0.3"])], 3));
        let status = found.status("rt").unwrap();
        assert_eq!((status.rounds, status.failed_rounds), (3, 2));
        assert_eq!(status.last_ok, Some(1));
        assert_eq!(
            status.last_error.as_deref(),
            Some("a.test: no A or AAAA records")
        );
    }

    #[test]
    fn static_nodes_come_first_and_are_not_duplicated() {
        let d = discover(&[("a.test", 3000)]);
        let mut found = Found::default();
        found.record("rt", &d, &[ips(&["10.0.0.1", "10.0.0.2"])], 1);
        let c = found.merged(&config(&d, &[("fixed", "10.0.0.1:3000")]));
        assert_eq!(ids(&c), ["fixed", "10.0.0.2:3000"]);
    }

    #[test]
    fn a_reload_that_drops_a_name_forgets_its_addresses() {
        let two = discover(&[("a.test", 3000), ("b.test", 3000)]);
        let mut found = Found::default();
        found.record("rt", &two, &[ips(&["10.0.0.1"]), ips(&["10.0.0.2"])], 1);
        let one = discover(&[("b.test", 3000)]);
        let c = config(&one, &[]);
        found.retain_for(&c);
        assert_eq!(ids(&found.merged(&c)), ["10.0.0.2:3000"]);
        let mut without = c.clone();
        without.upstreams[0].discover = None;
        found.retain_for(&without);
        assert!(found.status("rt").is_none());
    }
}

//! DNS discovery: an upstream's nodes are the A and AAAA records of one or more names,
//! looked up again every `refresh`, so tether follows a realtime cluster as it scales (a
//! Kubernetes headless Service, docker-compose service names).
//!
//! What a round finds is applied like a live reload ([`Control::discovered`]): a new runtime is
//! built with the nodes carried over by id, open tunnels stay where they are, and clients of a
//! node that is gone are re-pinned on their next request. A node's id is its address
//! ([`Node::discovered`]), so every replica resolving the same records names the nodes the same
//! way and agrees on where each client belongs.
//!
//! This file does the lookups and runs the refresh loop, on the control thread and never on the
//! request path; it only returns what it found. [`super::found`] keeps the last good addresses
//! per name (a failed lookup changes nothing), and [`Control`] applies a change.

use super::found::Answer;
use super::Control;
use crate::config::{defaults, Discover, DnsName};
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{AbortHandle, JoinSet};

/// A resolver for `discover`: its own server when `resolver` is set, else the system's
/// (`/etc/resolv.conf`, search domains included). Answers are never cached here: every round
/// asks the server, which is the point of refreshing.
fn resolver(discover: &Discover) -> Result<TokioResolver, String> {
    let mut builder = match discover.resolver {
        Some(server) => {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = server.port();
                    c
                })
                .collect();
            let ns = NameServerConfig::new(server.ip(), true, connections);
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?,
    };
    let opts = builder.options_mut();
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.timeout = lookup_timeout(discover);
    opts.attempts = 1;
    builder
        .build()
        .map_err(|e| format!("cannot build a DNS resolver: {e}"))
}

/// A lookup must end before the next round is due.
fn lookup_timeout(discover: &Discover) -> Duration {
    defaults::DISCOVER_LOOKUP_TIMEOUT.min(discover.refresh)
}

/// Look every name up once, concurrently.
async fn lookup_round(resolver: &TokioResolver, discover: &Discover) -> Vec<Answer> {
    resolver.clear_cache();
    let limit = lookup_timeout(discover) * 2;
    let lookups = discover.names.iter().map(|n| lookup(resolver, n, limit));
    futures_util::future::join_all(lookups).await
}

async fn lookup(resolver: &TokioResolver, name: &DnsName, limit: Duration) -> Answer {
    match tokio::time::timeout(limit, resolver.lookup_ip(name.name.as_str())).await {
        Ok(Ok(found)) => Ok(found.iter().collect()),
        Ok(Err(e)) if e.is_no_records_found() => Ok(Vec::new()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

/// One round for every discovering upstream, before tether starts serving, so it starts with
/// its nodes rather than answering 503 for the first `refresh`.
pub async fn initial(control: &Control) {
    let specs = control.discovering();
    let rounds = specs.iter().map(|(upstream, d)| async move {
        let answers = round(&resolver(d), d).await;
        control.discovered(upstream, d, &answers);
    });
    futures_util::future::join_all(rounds).await;
}

/// Refresh every discovering upstream forever. A config reload restarts only the upstreams
/// whose discovery settings changed (their first round at once): the others keep their rhythm,
/// so frequent reloads never starve discovery. Runs on the control thread.
pub async fn run(control: Arc<Control>) {
    let mut reloaded = control.config_generation();
    let mut tasks = JoinSet::new();
    let mut running: HashMap<String, (Discover, AbortHandle)> = HashMap::new();
    let mut first = true;
    loop {
        let wanted: HashMap<String, Discover> = control.discovering().into_iter().collect();
        running.retain(|upstream, (d, task)| {
            let keep = wanted.get(upstream) == Some(d);
            if !keep {
                task.abort();
            }
            keep
        });
        for (upstream, d) in wanted {
            if running.contains_key(&upstream) {
                continue;
            }
            // At start, `initial` has just looked; after a reload, look at once.
            let start = if first {
                tokio::time::Instant::now() + d.refresh
            } else {
                tokio::time::Instant::now()
            };
            let task = tasks.spawn(refresh(
                Arc::clone(&control),
                upstream.clone(),
                d.clone(),
                start,
            ));
            running.insert(upstream, (d, task));
        }
        first = false;
        // Reap the tasks aborted above, so reloads do not pile them up.
        while tasks.try_join_next().is_some() {}
        if reloaded.changed().await.is_err() {
            tasks.shutdown().await;
            return;
        }
    }
}

async fn refresh(
    control: Arc<Control>,
    upstream: String,
    d: Discover,
    start: tokio::time::Instant,
) {
    let mut ticker = tokio::time::interval_at(start, d.refresh);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut built = resolver(&d);
    loop {
        ticker.tick().await;
        // A resolver that could not be built (unreadable resolv.conf) is tried again.
        if built.is_err() {
            built = resolver(&d);
        }
        let answers = round(&built, &d).await;
        control.discovered(&upstream, &d, &answers);
    }
}

/// A round's answers, or the resolver's own failure as every name's answer.
async fn round(resolver: &Result<TokioResolver, String>, d: &Discover) -> Vec<Answer> {
    match resolver {
        Ok(r) => lookup_round(r, d).await,
        Err(e) => vec![Err(e.clone()); d.names.len()],
    }
}

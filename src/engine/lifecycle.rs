//! Live reload and graceful shutdown: the control thread's jobs.
//!
//! **Reload** (SIGHUP or `POST /reload`): the file is read and validated; on any problem every
//! diagnostic is logged and nothing changes. Otherwise a new `Runtime` is built, carrying each
//! node's live state over by id, and swapped in atomically: requests already running (and open
//! tunnels, even to removed nodes) keep the snapshot they started with; new requests see the new
//! config. The generation counter tells the health checker to follow.
//!
//! **Discovery** rounds (`crate::discovery`) that change an upstream's node set are applied
//! the same way, from the file as last loaded plus what DNS found.
//!
//! **Shutdown** (SIGTERM/SIGINT): listeners close, idle keep-alive connections end, in-flight
//! requests finish, tunnels are kept for `grace`, then closed one by one at random moments over
//! `close_window` so clients do not all reconnect in the same second; the process exits when
//! nothing is left or the window has passed.

use crate::config::{self, Config, ConfigError, Discover};
use crate::discovery::{self, Found};
use crate::proxy::Runtime;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// How the shutdown proceeds, sent to every connection when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownPlan {
    pub grace: Duration,
    pub close_window: Duration,
}

/// `None` while serving; the plan once shutdown began.
pub type ShutdownSignal = watch::Receiver<Option<ShutdownPlan>>;

/// What the admin API, the signal handlers and DNS discovery act on.
pub struct Control {
    pub runtime: Arc<ArcSwap<Runtime>>,
    source: PathBuf,
    /// The file as last loaded, and what discovery found: the runtime is always built from
    /// both. The mutex also serialises changes (two at once would race to swap).
    state: Mutex<State>,
    /// Changes whenever the runtime is swapped (reload or discovery): health checks follow it.
    generation: watch::Sender<u64>,
    /// Changes on every successful file reload: discovery restarts with the new names.
    config_generation: watch::Sender<u64>,
    reloads: AtomicU64,
}

struct State {
    config: Config,
    found: Found,
}

impl Control {
    /// The control for `config`, with a runtime built from its static nodes (discovery fills
    /// in the rest once it has looked).
    pub fn new(config: Config) -> Control {
        let runtime = Arc::new(ArcSwap::from_pointee(Runtime::new(&config, None)));
        Control {
            runtime,
            source: config.source.clone(),
            state: Mutex::new(State {
                config,
                found: Found::default(),
            }),
            generation: watch::Sender::new(0),
            config_generation: watch::Sender::new(0),
            reloads: AtomicU64::new(0),
        }
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// A receiver that changes whenever the runtime is swapped.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// A receiver that changes on every successful file reload.
    pub fn config_generation(&self) -> watch::Receiver<u64> {
        self.config_generation.subscribe()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-read the config file and apply it; on error nothing changes. Returns a one-line summary.
    pub fn reload(&self) -> Result<String, ConfigError> {
        let mut state = self.state();
        let config = match config::load(&self.source) {
            Ok(c) => c,
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!(problem = %line, "reload rejected; the running config is kept");
                }
                return Err(e);
            }
        };
        state.found.retain_for(&config);
        state.config = config;
        let summary = self.rebuild(&state);
        self.config_generation.send_modify(|g| *g += 1);
        self.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(config = %self.source.display(), %summary, "config reloaded");
        Ok(summary)
    }

    /// The upstreams that discover nodes by DNS, with their settings.
    pub fn discovering(&self) -> Vec<(String, Discover)> {
        let state = self.state();
        state
            .config
            .upstreams
            .iter()
            .filter_map(|u| Some((u.name.clone(), u.discover.clone()?)))
            .collect()
    }

    /// Apply a discovery round for `upstream` (one answer per name of `discover`): when the
    /// node set changed, the runtime is rebuilt like a reload.
    pub fn discovered(&self, upstream: &str, discover: &Discover, answers: &[discovery::Answer]) {
        let mut state = self.state();
        // A round that raced a reload dropping this upstream's discovery changes nothing.
        let current = state
            .config
            .upstreams
            .iter()
            .find(|u| u.name == upstream)
            .and_then(|u| u.discover.as_ref());
        if current != Some(discover) {
            return;
        }
        let before = state.found.status(upstream).cloned().unwrap_or_default();
        let changed = state.found.record(
            upstream,
            discover,
            answers,
            crate::proxy::decide::unix_now(),
        );
        let status = state.found.status(upstream).cloned().unwrap_or_default();
        // `record` sets `last_error` exactly when some name gave no addresses this round.
        let failed = status.last_error.is_some();
        let m = &crate::metrics::METRICS;
        m.discovery_lookups
            .with_label_values(&[upstream, if failed { "failed" } else { "ok" }])
            .inc();
        m.discovered_nodes
            .with_label_values(&[upstream])
            .set(status.nodes as i64);
        // Warn when a failure starts or changes, not on every round of a DNS outage.
        match (&before.last_error, &status.last_error) {
            (old, Some(error)) if old.as_ref() != Some(error) => {
                tracing::warn!(upstream, %error, nodes = status.nodes, "DNS discovery failed; keeping the last good nodes");
            }
            (_, Some(error)) => tracing::debug!(upstream, %error, "DNS discovery still failing"),
            (Some(_), None) if before.rounds > 0 => {
                tracing::info!(
                    upstream,
                    nodes = status.nodes,
                    "DNS discovery answers again"
                );
            }
            _ => {}
        }
        if changed {
            let summary = self.rebuild(&state);
            tracing::info!(upstream, %summary, nodes = status.nodes, "discovered nodes changed");
        }
    }

    /// How discovery of `upstream` is going, for `/status`.
    pub fn discovery_status(&self, upstream: &str) -> Option<discovery::Status> {
        self.state().found.status(upstream).cloned()
    }

    /// Build a runtime from the file and what discovery found, carrying node state over by
    /// id, swap it in, and say which nodes came and went.
    fn rebuild(&self, state: &State) -> String {
        let config = state.found.merged(&state.config);
        let old = self.runtime.load_full();
        let new = Runtime::new(&config, Some(&old));
        let summary = changes(&old, &new);
        self.runtime.store(Arc::new(new));
        self.generation.send_modify(|g| *g += 1);
        summary
    }
}

/// `pool: +[added] -[removed]` for every pool whose node ids changed; the series of removed
/// nodes are dropped from the metrics.
fn changes(old: &Runtime, new: &Runtime) -> String {
    let mut out = Vec::new();
    for pool in &new.pools {
        let before = old.pool(&pool.name);
        let added: Vec<_> = pool
            .nodes
            .iter()
            .filter(|n| before.is_none_or(|b| b.nodes.iter().all(|o| o.id != n.id)))
            .map(|n| n.id.as_str())
            .collect();
        let removed: Vec<_> = before
            .map(|b| {
                b.nodes
                    .iter()
                    .filter(|o| pool.nodes.iter().all(|n| n.id != o.id))
                    .map(|o| o.id.as_str())
                    .collect()
            })
            .unwrap_or_default();
        for id in &removed {
            crate::metrics::forget_node(&pool.name, id);
        }
        if !added.is_empty() || !removed.is_empty() {
            out.push(format!(
                "{}: +[{}] -[{}]",
                pool.name,
                added.join(","),
                removed.join(",")
            ));
        }
    }
    if out.is_empty() {
        "no node changes".to_string()
    } else {
        out.join("; ")
    }
}

/// Wait for signals: SIGHUP reloads; SIGTERM or SIGINT starts the shutdown and returns once
/// connections are done or the plan's time is up.
pub async fn run_signals(
    control: Arc<Control>,
    shutdown: watch::Sender<Option<ShutdownPlan>>,
    plan: ShutdownPlan,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop tether with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let c = Arc::clone(&control);
                // Reading and validating the file is blocking work; keep the control loop free.
                let _ = tokio::task::spawn_blocking(move || c.reload()).await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let open = crate::upstream::node::in_flight();
    tracing::info!(grace = ?plan.grace, close_window = ?plan.close_window, open, "shutting down: no new connections");
    let _ = shutdown.send(Some(plan));
    let deadline =
        tokio::time::Instant::now() + plan.grace + plan.close_window + Duration::from_secs(1);
    loop {
        let open = crate::upstream::node::in_flight();
        if open == 0 {
            tracing::info!("all requests and tunnels done; exiting");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                open,
                "shutdown window over; exiting with connections still open"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When this tunnel should close during a shutdown: after the grace period, at a random point
/// of the close window (`seed` makes each tunnel's point different).
pub fn tunnel_close_delay(plan: &ShutdownPlan, seed: u64) -> Duration {
    let window = plan.close_window.as_millis() as u64;
    let jitter = if window == 0 {
        0
    } else {
        // splitmix64: cheap, and different for every tunnel.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % window
    };
    plan.grace + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnels_close_spread_over_the_window_after_grace() {
        let plan = ShutdownPlan {
            grace: Duration::from_secs(5),
            close_window: Duration::from_secs(10),
        };
        let delays: Vec<_> = (0..1000).map(|s| tunnel_close_delay(&plan, s)).collect();
        assert!(delays
            .iter()
            .all(|d| *d >= plan.grace && *d < plan.grace + plan.close_window));
        let first_half = delays
            .iter()
            .filter(|d| **d < Duration::from_secs(10))
            .count();
        assert!(
            (400..600).contains(&first_half),
            "{first_half} of 1000 in the first half"
        );
    }
}

//! The control plane: everything that changes the runtime snapshot or watches it, on one
//! control thread beside the workers.
//!
//! [`Control`] owns the config as last loaded and what DNS discovery found, and rebuilds the
//! runtime from both on a reload (SIGHUP or `POST /reload`) or a discovery change, swapping it
//! in atomically: requests already running (and open tunnels, even to removed nodes) keep the
//! snapshot they started with; new requests see the new one. Around it: [`discovery`] (DNS
//! lookups that return what they found), [`health`] (active checks), [`admin`] (the admin API),
//! [`metrics`] (the Prometheus registry, reading the runtime's counters at scrape time) and
//! [`signals`] (reload and graceful shutdown).
//!
//! **May import:** `runtime`, `config`. **May not import:** `engine` (the control plane never
//! touches a client socket; shutdown reaches the engine as a value on a watch channel) or any
//! tool (`load`, `demo`, `cli`).

pub mod acme;
pub mod admin;
pub mod discovery;
pub mod found;
pub mod health;
pub mod metrics;
pub mod rebalance;
pub mod signals;

use crate::config::{self, Config, ConfigError, Discover};
use crate::runtime::node::{now_ms, AdminState, LeaveReason, NodeState};
use crate::runtime::{Runtime, Shared};
use arc_swap::ArcSwap;
use found::Found;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// What the admin API, the signal handlers and DNS discovery act on.
pub struct Control {
    /// The snapshot every request reads. It lives as long as the process (one per process),
    /// so connections hold a plain reference instead of a reference-counted one.
    pub runtime: &'static Shared,
    source: PathBuf,
    /// The file as last loaded, and what discovery found: the runtime is always built from
    /// both. The mutex also serialises changes (two at once would race to swap).
    state: Mutex<State>,
    /// Changes whenever the runtime is swapped (reload or discovery): health checks follow it.
    generation: watch::Sender<u64>,
    /// Changes on every successful file reload: discovery restarts with the new names.
    config_generation: watch::Sender<u64>,
    reloads: AtomicU64,
    pub metrics: metrics::Metrics,
    /// Which process this is: shown by `/status` and the start log.
    pub process: Process,
    /// Nodes that left the runtime (a reload, DNS) with tunnels still open: their tunnels are
    /// being closed over `leave.spread`; `/status` shows them until the last one is gone.
    departed: Mutex<Vec<(String, Arc<NodeState>)>>,
}

/// The running process, so an operator can tell which one answers (during a binary upgrade two
/// run side by side).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Process {
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
    /// How many binary upgrades the listening sockets have been through (0: bound by this
    /// process or handed over by systemd).
    pub generation: u64,
}

/// A binary upgrade asked for by SIGUSR2, answered with the new process's pid or why it failed.
pub type UpgradeRequest = tokio::sync::oneshot::Sender<Result<u32, String>>;

struct State {
    config: Config,
    found: Found,
}

impl Control {
    /// The control for `config`, with a runtime built from its static nodes (discovery fills
    /// in the rest once it has looked).
    pub fn new(config: Config, process: Process) -> Control {
        let runtime: &'static Shared =
            Box::leak(Box::new(ArcSwap::from_pointee(Runtime::new(&config, None))));
        apply_drains(&runtime.load(), None, &config);
        Control {
            runtime,
            process,
            metrics: metrics::Metrics::new(runtime),
            source: config.source.clone(),
            state: Mutex::new(State {
                config,
                found: Found::default(),
            }),
            generation: watch::Sender::new(0),
            config_generation: watch::Sender::new(0),
            reloads: AtomicU64::new(0),
            departed: Mutex::new(Vec::new()),
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
        let before = std::mem::replace(&mut state.config, config);
        let summary = self.rebuild(&state);
        apply_drains(&self.runtime.load(), Some(&before), &state.config);
        self.config_generation.send_modify(|g| *g += 1);
        self.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(config = %self.source.display(), %summary, "config reloaded");
        warn_restart_only(&before, &state.config);
        Ok(summary)
    }

    /// The ACME settings of every listener that has them.
    pub fn acme(&self) -> Vec<config::model::Acme> {
        self.state()
            .config
            .listen
            .iter()
            .filter_map(|l| match l.tls.as_ref().map(|t| &t.source) {
                Some(config::model::TlsSource::Acme(a)) => Some(a.clone()),
                _ => None,
            })
            .collect()
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
    pub fn discovered(&self, upstream: &str, discover: &Discover, answers: &[found::Answer]) {
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
        let changed = state
            .found
            .record(upstream, discover, answers, crate::runtime::unix_now());
        let status = state.found.status(upstream).cloned().unwrap_or_default();
        // `record` sets `last_error` exactly when some name gave no addresses this round.
        let failed = status.last_error.is_some();
        self.metrics.discovery_round(upstream, failed, status.nodes);
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
    pub fn discovery_status(&self, upstream: &str) -> Option<found::Status> {
        self.state().found.status(upstream).cloned()
    }

    /// Build a runtime from the file and what discovery found, carrying node state over by
    /// id, swap it in, and say which nodes came and went. A node that left (gone from the
    /// file or from DNS, or moved to another address) starts leaving: its tunnels close over
    /// its upstream's `leave.spread`.
    fn rebuild(&self, state: &State) -> String {
        let config = state.found.merged(&state.config);
        let old = self.runtime.load_full();
        let new = Runtime::new(&config, Some(&old));
        let summary = changes(&old, &new);
        let mut departed = self.departed();
        for pool in &old.pools {
            let now_there = new.pool(&pool.name);
            for node in &pool.nodes {
                let stays = now_there.is_some_and(|p| {
                    p.nodes
                        .iter()
                        .any(|n| n.id == node.id && n.address == node.address)
                });
                if !stays {
                    node.leave(LeaveReason::Removed, now_ms(), pool.leave_spread);
                    if node.open_tunnels() > 0 {
                        departed.push((pool.name.clone(), Arc::clone(node)));
                    }
                }
            }
        }
        drop(departed);
        self.runtime.store(Arc::new(new));
        self.generation.send_modify(|g| *g += 1);
        summary
    }

    /// Nodes that left the runtime with tunnels still open (the list pruned of those done).
    pub fn departed(&self) -> MutexGuard<'_, Vec<(String, Arc<NodeState>)>> {
        let mut d = self.departed.lock().unwrap_or_else(|p| p.into_inner());
        d.retain(|(_, n)| n.open_tunnels() > 0);
        d
    }

    /// Drain `node` of `upstream`: no new clients; with `close_after`, its tunnels close after
    /// that long, spread over `spread` (the upstream's `leave.spread` when `None`).
    pub fn drain(
        &self,
        upstream: &crate::runtime::pool::Pool,
        node: &NodeState,
        close_after: Option<std::time::Duration>,
        spread: Option<std::time::Duration>,
    ) {
        node.set_admin(AdminState::Draining);
        match close_after {
            Some(after) => node.leave(
                LeaveReason::Drained,
                now_ms() + after.as_millis() as u64,
                spread.unwrap_or(upstream.leave_spread),
            ),
            None => node.stay(),
        }
    }

    /// Disable `node`: its tunnels close over the upstream's `leave.spread`.
    pub fn disable(&self, upstream: &crate::runtime::pool::Pool, node: &NodeState) {
        node.set_admin(AdminState::Disabled);
        node.leave(LeaveReason::Disabled, now_ms(), upstream.leave_spread);
    }

    /// Enable `node`: it takes clients again and keeps the tunnels it still has.
    pub fn enable(&self, node: &NodeState) {
        node.set_admin(AdminState::Active);
        node.stay();
    }
}

/// Apply the file's `drain:` settings to the runtime's nodes: a node drained in the file is
/// drained (with its deadline), one whose `drain:` was taken out on a reload is active again.
/// Only changes since `before` act, so a reload does not restart a drain's clock.
fn apply_drains(rt: &Runtime, before: Option<&Config>, after: &Config) {
    for up in &after.upstreams {
        let Some(pool) = rt.pool(&up.name) else {
            continue;
        };
        for n in &up.nodes {
            let old = before
                .and_then(|b| b.upstreams.iter().find(|u| u.name == up.name))
                .and_then(|u| u.nodes.iter().find(|m| m.id == n.id))
                .and_then(|m| m.drain);
            if old == n.drain {
                continue;
            }
            let Some(state) = pool.nodes.iter().find(|s| s.id == n.id) else {
                continue;
            };
            match n.drain {
                Some(d) => {
                    state.set_admin(AdminState::Draining);
                    match d.close_after {
                        Some(after) => state.leave(
                            LeaveReason::Drained,
                            now_ms() + after.as_millis() as u64,
                            d.spread.unwrap_or(up.leave_spread),
                        ),
                        None => state.stay(),
                    }
                    tracing::warn!(upstream = %up.name, node = %n.id, close_after = ?d.close_after, "node drained by the config");
                }
                None => {
                    state.set_admin(AdminState::Active);
                    state.stay();
                    tracing::warn!(upstream = %up.name, node = %n.id, "node no longer drained by the config: active");
                }
            }
        }
    }
}

/// `pool: +[added] -[removed]` for every pool whose node ids changed.
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

/// Tell systemd how the service stands, when it started tether with `Type=notify` (a no-op
/// otherwise): READY once serving, RELOADING around a reload, STOPPING when shutting down.
pub fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// Say what a reload did not apply: settings read once at start. Listening addresses are
/// applied by the workers (bound or closed); certificates with the next handshake.
fn warn_restart_only(before: &Config, after: &Config) {
    let admin = |c: &Config| c.admin.as_ref().map(|a| a.address);
    if admin(before) != admin(after) {
        tracing::warn!(before = ?admin(before), after = ?admin(after), "the admin address is read at start only; a reload does not move it: upgrade in place (kill -USR2) or restart to apply it");
    }
    if before.limits != after.limits {
        tracing::warn!("`limits` are read at start only; a reload does not change them: upgrade in place (kill -USR2) or restart to apply them");
    }
    if before.shutdown != after.shutdown {
        tracing::warn!("`shutdown` is read at start only; a reload does not change it: upgrade in place (kill -USR2) or restart to apply it");
    }
}

/// Run the control plane until a graceful shutdown is over: health checks, DNS discovery, the
/// admin API (when `admin` is bound), and the signal handlers, which send the shutdown plan on
/// `shutdown`.
pub async fn run(
    control: Arc<Control>,
    admin: Option<admin::Admin>,
    shutdown: watch::Sender<Option<config::Shutdown>>,
    plan: config::Shutdown,
    upgrades: Option<tokio::sync::mpsc::Sender<UpgradeRequest>>,
) {
    tokio::spawn(health::supervise(control.runtime, control.generation()));
    tokio::spawn(rebalance::run(control.runtime));
    tokio::spawn(discovery::run(Arc::clone(&control)));
    tokio::spawn(acme::run(Arc::clone(&control)));
    if let Some(admin) = admin {
        tokio::spawn(admin::serve(
            admin,
            Arc::clone(&control),
            shutdown.subscribe(),
        ));
    }
    signals::run(control, shutdown, plan, upgrades).await;
}

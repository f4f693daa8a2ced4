//! A node's live state: identity, load, health, admin state, and what its checks last said.
//!
//! Everything the request path reads is an atomic; the health checker and the admin API are the
//! writers. A node's state survives config reloads (the `Arc` is carried over by id), so counters,
//! admin states and health do not reset when the file changes.

use super::counters::global;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Whether checks say the node works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Unhealthy,
}

/// What an operator asked of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// Takes new clients and keeps its own.
    Active,
    /// Keeps the clients pinned to it, takes no new ones (before a deploy).
    Draining,
    /// Takes nothing; its clients are re-pinned on their next request.
    Disabled,
}

impl AdminState {
    fn code(self) -> u8 {
        match self {
            AdminState::Active => 0,
            AdminState::Draining => 1,
            AdminState::Disabled => 2,
        }
    }
    fn from_code(c: u8) -> AdminState {
        match c {
            1 => AdminState::Draining,
            2 => AdminState::Disabled,
            _ => AdminState::Active,
        }
    }
}

/// The most recent active check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    pub ok: bool,
    /// "200", "status 503", "timeout", "connection refused", ...
    pub detail: String,
    /// Unix seconds.
    pub at: u64,
}

/// Milliseconds on one monotonic clock for the whole process (atomics cannot hold an `Instant`).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

pub fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// The instant `ms` on the [`now_ms`] clock.
pub fn instant_at_ms(ms: u64) -> Instant {
    *EPOCH + Duration::from_millis(ms)
}

/// Why a node leaves: its tunnels are then closed, spread over a window, and its clients move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// Drained with a deadline (the admin API's `close_after`, or `drain` in the config).
    Drained,
    /// Gone from the config (a reload) or from DNS.
    Removed,
    /// Disabled by the admin API.
    Disabled,
}

impl LeaveReason {
    fn code(self) -> u8 {
        match self {
            LeaveReason::Drained => 1,
            LeaveReason::Removed => 2,
            LeaveReason::Disabled => 3,
        }
    }
    fn from_code(c: u8) -> Option<LeaveReason> {
        match c {
            1 => Some(LeaveReason::Drained),
            2 => Some(LeaveReason::Removed),
            3 => Some(LeaveReason::Disabled),
            _ => None,
        }
    }
}

/// A leave in progress: from `start_ms` (on the [`now_ms`] clock) the node's tunnels are closed
/// evenly over `spread_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaving {
    pub reason: LeaveReason,
    pub start_ms: u64,
    pub spread_ms: u64,
}

/// Per-node counters, one line per worker (see [`super::counters`]).
pub mod stat {
    /// Answered requests by status class: `REQUESTS + 0` is 1xx ... `REQUESTS + 4` is 5xx.
    pub const REQUESTS: usize = 0;
    /// Requests whose pin to this node was honoured.
    pub const PINNED_HITS: usize = 5;
    /// Open tunnels (a gauge).
    pub const TUNNELS: usize = 6;
    pub const LEN: usize = 7;
}

/// A node's request counters. Kept by node id across reloads (even when its address or weight
/// changes), so exported counters do not reset when the file changes.
pub type NodeStats = super::counters::Counters<{ stat::LEN }>;

/// One node as the running proxy sees it. Shared (`Arc`) between pools (across reloads) and every
/// request or tunnel currently on it, so a request that outlives a config change still decrements
/// the counter it incremented.
#[derive(Debug)]
pub struct NodeState {
    pub id: String,
    pub address: SocketAddr,
    pub weight: u32,
    /// In-flight requests plus open tunnels: the one counter every worker updates per request,
    /// because least_conn must see every worker's load at once.
    load: AtomicU64,
    pub stats: Arc<NodeStats>,
    health: AtomicU8,
    admin: AtomicU8,
    /// Health changes so far: `[to healthy, to unhealthy]` (control thread only).
    transitions: [AtomicU64; 2],
    /// When the node last became usable for new clients (`now_ms`), for slow start.
    usable_since_ms: AtomicU64,
    /// Passive failures in the current window, and when the window began (`now_ms`).
    passive_fails: AtomicU32,
    passive_window_ms: AtomicU64,
    /// Until when a passively failed node counts as down without an active checker (`now_ms`).
    passive_down_until_ms: AtomicU64,
    last_check: Mutex<Option<CheckResult>>,
    /// A leave: its reason (0: none), when its closes start and over how long (`now_ms`).
    leave_reason: AtomicU8,
    leave_start_ms: AtomicU64,
    leave_spread_ms: AtomicU64,
    /// Tunnels a rebalance asked to move off this node, not yet taken by a worker.
    moves: AtomicU64,
    /// A rebalance is on and this node holds more than its share: a client starting a session
    /// here is placed elsewhere (control thread writes, session starts read).
    over_share: AtomicBool,
    /// A rebalance is on and this node holds less than its share ÷ `max_skew`.
    under_bound: AtomicBool,
}

impl NodeState {
    pub fn new(id: impl Into<String>, address: SocketAddr, weight: u32) -> NodeState {
        NodeState {
            id: id.into(),
            address,
            weight: weight.max(1),
            load: AtomicU64::new(0),
            stats: Arc::default(),
            health: AtomicU8::new(0),
            admin: AtomicU8::new(0),
            transitions: [AtomicU64::new(0), AtomicU64::new(0)],
            // A node present from the start is not "coming back": no slow start for it.
            usable_since_ms: AtomicU64::new(0),
            passive_fails: AtomicU32::new(0),
            passive_window_ms: AtomicU64::new(0),
            passive_down_until_ms: AtomicU64::new(0),
            last_check: Mutex::new(None),
            leave_reason: AtomicU8::new(0),
            leave_start_ms: AtomicU64::new(0),
            leave_spread_ms: AtomicU64::new(0),
            moves: AtomicU64::new(0),
            over_share: AtomicBool::new(false),
            under_bound: AtomicBool::new(false),
        }
    }

    /// Start closing this node's tunnels at `start_ms` (`now_ms` clock), spread over `spread`.
    /// A later call moves the window (a drain given a new deadline); a node that was removed
    /// stays removed.
    pub fn leave(&self, reason: LeaveReason, start_ms: u64, spread: Duration) {
        if self
            .leaving()
            .is_some_and(|l| l.reason == LeaveReason::Removed)
        {
            return;
        }
        self.leave_start_ms
            .store(start_ms.max(1), Ordering::Relaxed);
        self.leave_spread_ms
            .store(spread.as_millis() as u64, Ordering::Relaxed);
        self.leave_reason.store(reason.code(), Ordering::Relaxed);
    }

    /// The node stays after all (enabled again, a drain without a deadline): closes not yet
    /// made are called off. A removed node cannot stay.
    pub fn stay(&self) {
        if self
            .leaving()
            .is_some_and(|l| l.reason != LeaveReason::Removed)
        {
            self.leave_reason.store(0, Ordering::Relaxed);
        }
    }

    /// The leave in progress, if any.
    pub fn leaving(&self) -> Option<Leaving> {
        let reason = LeaveReason::from_code(self.leave_reason.load(Ordering::Relaxed))?;
        Some(Leaving {
            reason,
            start_ms: self.leave_start_ms.load(Ordering::Relaxed),
            spread_ms: self.leave_spread_ms.load(Ordering::Relaxed),
        })
    }

    /// Ask for `n` more of this node's tunnels to move (a rebalance).
    pub fn add_moves(&self, n: u64) {
        self.moves.fetch_add(n, Ordering::Relaxed);
    }

    /// Moves asked for and not yet taken.
    pub fn moves_pending(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }

    /// Take up to `up_to` of the moves asked for (a worker that has that many tunnels here).
    pub fn claim_moves(&self, up_to: u64) -> u64 {
        let mut have = self.moves.load(Ordering::Relaxed);
        loop {
            let take = have.min(up_to);
            if take == 0 {
                return 0;
            }
            match self.moves.compare_exchange_weak(
                have,
                have - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => have = now,
            }
        }
    }

    /// Moves not taken are dropped (the rebalance is over, or the node is no source any more).
    pub fn cancel_moves(&self) {
        self.moves.store(0, Ordering::Relaxed);
    }

    /// Set by a rebalance's check every second.
    pub fn set_balance(&self, over_share: bool, under_bound: bool) {
        self.over_share.store(over_share, Ordering::Relaxed);
        self.under_bound.store(under_bound, Ordering::Relaxed);
    }

    pub fn over_share(&self) -> bool {
        self.over_share.load(Ordering::Relaxed)
    }

    pub fn under_bound(&self) -> bool {
        self.under_bound.load(Ordering::Relaxed)
    }

    /// Current in-flight requests plus open tunnels.
    pub fn load(&self) -> u64 {
        self.load.load(Ordering::Relaxed)
    }

    pub fn open_tunnels(&self) -> u64 {
        self.stats.level(stat::TUNNELS)
    }

    pub fn pinned_hits(&self) -> u64 {
        self.stats.sum(stat::PINNED_HITS)
    }

    pub fn count_pinned_hit(&self) {
        self.stats.inc(stat::PINNED_HITS);
    }

    /// Count one answered request by its status class.
    pub fn count_response(&self, status: u16) {
        self.stats
            .inc(stat::REQUESTS + usize::from(status / 100).clamp(1, 5) - 1);
    }

    /// Answered requests of status class `class` (1 to 5).
    pub fn responses(&self, class: usize) -> u64 {
        self.stats.sum(stat::REQUESTS + class.clamp(1, 5) - 1)
    }

    /// Health changes so far: (to healthy, to unhealthy).
    pub fn transitions(&self) -> (u64, u64) {
        (
            self.transitions[0].load(Ordering::Relaxed),
            self.transitions[1].load(Ordering::Relaxed),
        )
    }

    /// Count one request (or tunnel) on this node until the guard drops, whatever way the request
    /// ends: response, error, client gone or tunnel closed.
    pub fn acquire(self: &Arc<Self>) -> LoadGuard {
        self.load.fetch_add(1, Ordering::Relaxed);
        global::COUNTERS.inc(global::IN_FLIGHT);
        LoadGuard {
            node: Arc::clone(self),
            tunnel: false,
        }
    }

    pub fn health(&self) -> Health {
        if self.health.load(Ordering::Relaxed) == 0 {
            Health::Healthy
        } else {
            Health::Unhealthy
        }
    }

    pub fn admin(&self) -> AdminState {
        AdminState::from_code(self.admin.load(Ordering::Relaxed))
    }

    /// Set the admin state; returns the previous one.
    pub fn set_admin(&self, state: AdminState) -> AdminState {
        let before = AdminState::from_code(self.admin.swap(state.code(), Ordering::Relaxed));
        if before != state && state == AdminState::Active {
            self.usable_since_ms
                .store(now_ms().max(1), Ordering::Relaxed);
        }
        before
    }

    /// Record a health change; returns true when it changed. `reason` goes to the log.
    pub fn set_health(&self, upstream: &str, health: Health, reason: &str) -> bool {
        let code = u8::from(health == Health::Unhealthy);
        let before = self.health.swap(code, Ordering::Relaxed);
        if before == code {
            return false;
        }
        if health == Health::Healthy {
            self.usable_since_ms
                .store(now_ms().max(1), Ordering::Relaxed);
            self.passive_fails.store(0, Ordering::Relaxed);
            self.passive_down_until_ms.store(0, Ordering::Relaxed);
        }
        self.transitions[usize::from(code)].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(upstream, node = %self.id, address = %self.address, to = ?health, reason, "node health changed");
        true
    }

    /// Healthy, counting a passive-only failure as healed once its `fail_timeout` has passed
    /// (when no active checker watches the node, nothing else would bring it back).
    fn effectively_healthy(&self, now: u64) -> bool {
        if self.health.load(Ordering::Relaxed) == 0 {
            return true;
        }
        let until = self.passive_down_until_ms.load(Ordering::Relaxed);
        until != 0 && now >= until
    }

    /// May a client already pinned here keep coming? (healthy, not disabled)
    pub fn serves_pinned(&self, now: u64) -> bool {
        self.admin() != AdminState::Disabled && self.effectively_healthy(now)
    }

    /// May this node take a new client now? (healthy, active, and past slow start)
    ///
    /// During slow start the node's share ramps linearly from 10% to 100% over `slow_start`:
    /// `ticket` (any fast-changing number, e.g. a pick counter) decides each pick.
    pub fn takes_new(&self, now: u64, slow_start: Duration, ticket: u64) -> bool {
        if self.admin() != AdminState::Active || !self.effectively_healthy(now) {
            return false;
        }
        let since = self.usable_since_ms.load(Ordering::Relaxed);
        let window = slow_start.as_millis() as u64;
        if since == 0 || window == 0 || now >= since + window {
            return true;
        }
        let percent = 10 + 90 * (now - since) / window;
        ticket % 100 < percent
    }

    /// A connection to the node failed or timed out: count it toward passive `max_fails`.
    /// Returns true when this failure made the node unhealthy.
    pub fn passive_failure(&self, upstream: &str, max_fails: u32, fail_timeout: Duration) -> bool {
        if max_fails == 0 {
            return false;
        }
        let now = now_ms();
        let window = fail_timeout.as_millis() as u64;
        let start = self.passive_window_ms.load(Ordering::Relaxed);
        let fails = if start == 0 || now.saturating_sub(start) > window {
            self.passive_window_ms.store(now.max(1), Ordering::Relaxed);
            self.passive_fails.store(1, Ordering::Relaxed);
            1
        } else {
            self.passive_fails.fetch_add(1, Ordering::Relaxed) + 1
        };
        if fails >= max_fails {
            self.passive_down_until_ms
                .store(now + window, Ordering::Relaxed);
            let reason = format!("{fails} failed connections within {fail_timeout:?}");
            return self.set_health(upstream, Health::Unhealthy, &reason);
        }
        false
    }

    pub fn record_check(&self, ok: bool, detail: String) {
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Ok(mut last) = self.last_check.lock() {
            *last = Some(CheckResult { ok, detail, at });
        }
    }

    pub fn last_check(&self) -> Option<CheckResult> {
        self.last_check.lock().ok().and_then(|l| l.clone())
    }

    /// Carry live state from the node this one replaces on reload (same id, another address or
    /// weight): admin state, health, slow start, the last check, and the counters themselves.
    pub fn inherit(mut self, old: &NodeState) -> NodeState {
        self.set_admin(old.admin());
        if let Some(l) = old.leaving().filter(|l| l.reason != LeaveReason::Removed) {
            self.leave(l.reason, l.start_ms, Duration::from_millis(l.spread_ms));
        }
        let health = old.health.load(Ordering::Relaxed);
        self.health.store(health, Ordering::Relaxed);
        self.usable_since_ms.store(
            old.usable_since_ms.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.stats = Arc::clone(&old.stats);
        for (mine, theirs) in self.transitions.iter().zip(&old.transitions) {
            mine.store(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        if let (Ok(mut mine), Ok(theirs)) = (self.last_check.lock(), old.last_check.lock()) {
            mine.clone_from(&theirs);
        }
        self
    }
}

/// Decrements its node's load (and tunnel count) when dropped.
#[derive(Debug)]
pub struct LoadGuard {
    node: Arc<NodeState>,
    tunnel: bool,
}

impl LoadGuard {
    pub fn node(&self) -> &NodeState {
        &self.node
    }

    /// The node's shared state itself (a tunnel registers with it).
    pub fn node_arc(&self) -> &Arc<NodeState> {
        &self.node
    }

    /// The request became a tunnel: count it as one until it closes.
    pub fn into_tunnel(&mut self) {
        if !self.tunnel {
            self.tunnel = true;
            self.node.stats.inc(stat::TUNNELS);
        }
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.node.load.fetch_sub(1, Ordering::Relaxed);
        global::COUNTERS.dec(global::IN_FLIGHT);
        if self.tunnel {
            self.node.stats.dec(stat::TUNNELS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Arc<NodeState> {
        Arc::new(NodeState::new("a", "127.0.0.1:1".parse().unwrap(), 1))
    }

    #[test]
    fn guards_count_exactly_under_concurrency() {
        let node = node();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..10_000 {
                        let mut g = node.acquire();
                        if i % 2 == 0 {
                            g.into_tunnel();
                        }
                        assert!(g.node().load() >= 1);
                    }
                });
            }
        });
        assert_eq!((node.load(), node.open_tunnels()), (0, 0));
    }

    #[test]
    fn draining_keeps_pinned_clients_and_takes_no_new_ones() {
        let n = node();
        let now = now_ms();
        assert!(n.serves_pinned(now) && n.takes_new(now, Duration::ZERO, 0));
        n.set_admin(AdminState::Draining);
        assert!(n.serves_pinned(now) && !n.takes_new(now, Duration::ZERO, 0));
        n.set_admin(AdminState::Disabled);
        assert!(!n.serves_pinned(now) && !n.takes_new(now, Duration::ZERO, 0));
        n.set_admin(AdminState::Active);
        n.set_health("t", Health::Unhealthy, "test");
        assert!(!n.serves_pinned(now_ms()) && !n.takes_new(now_ms(), Duration::ZERO, 0));
    }

    #[test]
    fn passive_failures_mark_unhealthy_at_max_fails() {
        let n = node();
        assert!(!n.passive_failure("t", 3, Duration::from_secs(10)));
        assert!(!n.passive_failure("t", 3, Duration::from_secs(10)));
        assert!(n.passive_failure("t", 3, Duration::from_secs(10)));
        assert_eq!(n.health(), Health::Unhealthy);
        assert!(
            !n.passive_failure("t", 0, Duration::from_secs(10)),
            "0 disables"
        );
    }

    #[test]
    fn slow_start_ramps_the_share_of_new_clients() {
        let n = node();
        n.set_health("t", Health::Unhealthy, "down");
        n.set_health("t", Health::Healthy, "up");
        let now = now_ms();
        let taken = (0..100)
            .filter(|&t| n.takes_new(now, Duration::from_secs(3600), t))
            .count();
        assert!(
            (9..=12).contains(&taken),
            "just back: about 10%, got {taken}"
        );
        assert!(n.takes_new(now + 3_600_001, Duration::from_secs(3600), 99));
    }
}

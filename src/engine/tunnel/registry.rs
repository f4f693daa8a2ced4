//! Every tunnel of one worker, and the supervisor that orders some of them closed: at a
//! graceful shutdown, when their node leaves, and to rebalance an upstream.
//!
//! A tunnel registers when it starts (its node and, on its first poll, its waker) and leaves
//! when it ends. The supervisor ticks every [`TICK`] on the worker's own thread, reads what the
//! control plane wrote on the nodes (a leave with its start and spread, a quota of moves) and
//! the shutdown plan, and gives tunnels their close time. Each tunnel then closes at that time
//! by its own timer, at a frame boundary. So a tunnel costs one registry entry, not a timer or a
//! channel of its own, and the closes of a leaving node's tunnels are spread evenly: each worker
//! spreads its own over the window, and together they are even.

use super::Reason;
use crate::config::Shutdown;
use crate::engine::ShutdownSignal;
use crate::runtime::node::{instant_at_ms, NodeState};
use std::cell::RefCell;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// How often the supervisor looks at leaves, quotas and the shutdown plan.
pub const TICK: Duration = Duration::from_millis(250);

/// When a tunnel should close during a shutdown: after the grace period, at a random point of
/// the close window, so clients do not all reconnect in the same second.
pub fn close_delay(plan: &Shutdown) -> Duration {
    use rand::Rng;
    let window = plan.close_window.as_millis() as u64;
    let jitter = if window == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..window)
    };
    plan.grace + Duration::from_millis(jitter)
}

/// What a tunnel is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Close at `at` (at the next frame boundary from then), for `reason`.
    Close { at: Instant, reason: Reason },
    /// An earlier close is off (the node stays after all).
    Cancel,
}

struct Entry {
    node: Arc<NodeState>,
    waker: Option<Waker>,
    /// A command the tunnel has not taken yet.
    command: Option<Command>,
    /// What the supervisor last decided for it.
    ordered: Option<Reason>,
}

#[derive(Default)]
struct Registry {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// The shutdown plan was applied.
    shutdown: bool,
}

thread_local! {
    static TUNNELS: RefCell<Registry> = RefCell::new(Registry::default());
}

/// A tunnel's place in its worker's registry; leaves it when dropped.
pub struct Ticket {
    index: usize,
}

/// Register a tunnel on `node` (on the calling worker).
pub fn enter(node: &Arc<NodeState>) -> Ticket {
    TUNNELS.with(|r| {
        let mut r = r.borrow_mut();
        let entry = Entry {
            node: Arc::clone(node),
            waker: None,
            command: None,
            ordered: None,
        };
        let index = match r.free.pop() {
            Some(i) => {
                r.entries[i] = Some(entry);
                i
            }
            None => {
                r.entries.push(Some(entry));
                r.entries.len() - 1
            }
        };
        Ticket { index }
    })
}

impl Ticket {
    /// A command for this tunnel, if one came; remembers the waker the supervisor wakes.
    pub fn poll(&self, cx: &Context<'_>) -> Option<Command> {
        TUNNELS.with(|r| {
            let mut r = r.borrow_mut();
            let entry = r.entries.get_mut(self.index)?.as_mut()?;
            match &entry.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => entry.waker = Some(cx.waker().clone()),
            }
            entry.command.take()
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        TUNNELS.with(|r| {
            let mut r = r.borrow_mut();
            if let Some(slot) = r.entries.get_mut(self.index) {
                *slot = None;
                r.free.push(self.index);
            }
        });
    }
}

/// The worker's supervisor: every [`TICK`], and at once when a shutdown begins.
pub async fn supervise(mut shutdown: ShutdownSignal) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watching = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = shutdown.changed(), if watching => {
                // The sender is gone only when the process is ending anyway.
                watching = changed.is_ok();
            }
        }
        let plan = *shutdown.borrow();
        TUNNELS.with(|r| r.borrow_mut().supervise(plan, Instant::now()));
    }
}

impl Registry {
    fn supervise(&mut self, shutdown: Option<Shutdown>, now: Instant) {
        if let (Some(plan), false) = (shutdown, self.shutdown) {
            self.shutdown = true;
            for e in self.entries.iter_mut().flatten() {
                // Each at its own random point of the close window, after the grace period.
                let at = now + close_delay(&plan);
                order(e, at, Reason::Shutdown);
            }
            return;
        }
        if self.shutdown {
            return;
        }
        // Leaves called off: the node is active again (enabled, or a drain taken back).
        for e in self.entries.iter_mut().flatten() {
            if e.ordered == Some(Reason::Leave) && e.node.leaving().is_none() {
                e.ordered = None;
                e.command = Some(Command::Cancel);
                wake(e);
            }
        }
        // Tunnels not yet ordered, of nodes that leave or have moves to make, by node.
        let mut groups: Vec<(*const NodeState, Vec<usize>)> = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let Some(e) = e else { continue };
            if e.ordered.is_some() || (e.node.leaving().is_none() && e.node.moves_pending() == 0) {
                continue;
            }
            let key = Arc::as_ptr(&e.node);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        for (_, list) in groups {
            let node = match &self.entries[list[0]] {
                Some(e) => Arc::clone(&e.node),
                None => continue,
            };
            if let Some(leave) = node.leaving() {
                // Evenly over what is left of the window: tunnel k of n at (k + ½) / n of it.
                let at_ms = |ms| Instant::from_std(instant_at_ms(ms));
                let start = at_ms(leave.start_ms).max(now);
                let end = at_ms(leave.start_ms + leave.spread_ms);
                let span = end.saturating_duration_since(start).max(TICK);
                let n = list.len() as u32;
                for (k, i) in list.iter().enumerate() {
                    let at = start + span.mul_f64((k as f64 + 0.5) / f64::from(n));
                    if let Some(e) = self.entries[*i].as_mut() {
                        order(e, at, Reason::Leave);
                    }
                }
                continue;
            }
            // Moves for a rebalance: claim what this worker can make, spread over one tick.
            let k = node.claim_moves(list.len() as u64) as usize;
            for (j, i) in list.iter().take(k).enumerate() {
                let at = now + TICK.mul_f64((j as f64 + 0.5) / k as f64);
                if let Some(e) = self.entries[*i].as_mut() {
                    order(e, at, Reason::Rebalance);
                }
            }
        }
    }
}

fn order(e: &mut Entry, at: Instant, reason: Reason) {
    e.ordered = Some(reason);
    e.command = Some(Command::Close { at, reason });
    wake(e);
}

fn wake(e: &Entry) {
    if let Some(w) = &e.waker {
        w.wake_by_ref();
    }
}

/// Tunnels open on this worker, by node (for tests and `/status` figures).
pub fn open_on(node: &NodeState) -> usize {
    TUNNELS.with(|r| {
        r.borrow()
            .entries
            .iter()
            .flatten()
            .filter(|e| std::ptr::eq(Arc::as_ptr(&e.node), node))
            .count()
    })
}

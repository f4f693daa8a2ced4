//! Counters that each worker thread writes alone and readers sum: the request path's statistics
//! without a shared read-modify-write.
//!
//! A counter set is one cache line (or a few) per *slot*: one slot per worker thread, plus one
//! shared slot for every other thread (the control thread, tools, tests). A worker owns its
//! slot, so it adds with a plain load and store: no `lock`-prefixed instruction and no cache
//! line bouncing between cores. The shared slot adds with `fetch_add`. Readers (the metrics
//! scrape, `/status`, the per-node tunnel cap, shutdown) sum the slots; a sum may miss an add
//! that is happening at that instant, which statistics tolerate.
//!
//! Gauges (open tunnels, requests in flight) are counters that also go down: a slot holds
//! increments minus decrements in wrapping arithmetic, and the sum read as `i64` is exact even
//! when a tunnel opened on one slot closes on another.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Slots per counter set: workers + 1 shared. Fixed once, before the first set is built.
static SLOTS: OnceLock<usize> = OnceLock::new();

thread_local! {
    /// This thread's worker index; `usize::MAX` for threads that are not workers.
    static WORKER: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Size counter sets for `workers` worker threads. Call once at start, before the runtime is
/// built; later calls (and sets built before it) keep the first size, and any worker beyond it
/// uses the shared slot, which stays correct, just not contention-free.
pub fn init(workers: usize) {
    let _ = SLOTS.set(workers + 1);
}

/// Mark the calling thread as worker `index` (its counter slot).
pub fn enter_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

fn slots() -> usize {
    *SLOTS.get_or_init(|| 1)
}

/// This thread's slot and whether it owns it alone.
#[inline]
fn slot(len: usize) -> (usize, bool) {
    let w = WORKER.with(Cell::get);
    if w < len - 1 {
        (w, true)
    } else {
        (len - 1, false)
    }
}

/// One slot's counters, alone on its cache lines (128 bytes: adjacent-line prefetch pairs).
#[repr(align(128))]
struct Line<const N: usize>([AtomicU64; N]);

/// `N` counters, one line of them per slot.
pub struct Counters<const N: usize> {
    lines: Box<[Line<N>]>,
}

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Counters {
            lines: (0..slots())
                .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }
}

impl<const N: usize> std::fmt::Debug for Counters<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries((0..N).map(|i| self.sum(i))).finish()
    }
}

impl<const N: usize> Counters<N> {
    /// Add `n` to counter `i` (wrapping: a gauge adds `(-1i64) as u64` to go down).
    #[inline]
    pub fn add(&self, i: usize, n: u64) {
        let (s, own) = slot(self.lines.len());
        let c = &self.lines[s].0[i];
        if own {
            // The only writer of this slot: no read-modify-write needed.
            c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        } else {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Add one to this thread's slot of counter `i` and return the slot's previous value: a
    /// cursor each worker advances on its own (balancer rotations).
    #[inline]
    pub fn next(&self, i: usize) -> u64 {
        let (s, own) = slot(self.lines.len());
        let c = &self.lines[s].0[i];
        if own {
            let v = c.load(Ordering::Relaxed);
            c.store(v.wrapping_add(1), Ordering::Relaxed);
            v
        } else {
            c.fetch_add(1, Ordering::Relaxed)
        }
    }

    #[inline]
    pub fn inc(&self, i: usize) {
        self.add(i, 1);
    }

    #[inline]
    pub fn dec(&self, i: usize) {
        self.add(i, u64::MAX);
    }

    /// Counter `i` summed over every slot.
    pub fn sum(&self, i: usize) -> u64 {
        self.lines
            .iter()
            .fold(0u64, |t, l| t.wrapping_add(l.0[i].load(Ordering::Relaxed)))
    }

    /// Gauge `i` summed over every slot (never below zero).
    pub fn level(&self, i: usize) -> u64 {
        (self.sum(i) as i64).max(0) as u64
    }
}

/// Process-wide counters: not about one upstream or node.
pub mod global {
    use super::Counters;
    use crate::runtime::failure::Refusal;
    use std::sync::LazyLock;

    /// Requests in flight plus open tunnels (a gauge): shutdown waits for it to reach zero.
    pub const IN_FLIGHT: usize = 0;
    /// WebSocket upgrades refused because their `Origin` is not allowed.
    pub const ORIGIN_REJECTED: usize = 1;
    /// Idle node connections closed by the pool sweep.
    pub const POOL_SWEPT: usize = 2;
    /// Client connections open (a gauge): shutdown waits for them, not only for requests, so
    /// a connection accepted just before it began still gets its answer.
    pub const CONNECTIONS: usize = 3;
    /// Requests tether refused itself, in [`Refusal::ALL`] order.
    pub const REFUSALS: usize = 4;
    /// HTTP/2 connections (ALPN `h2` or the h2c preface).
    pub const H2_CONNECTIONS: usize = REFUSALS + Refusal::ALL.len();
    /// HTTP/2 streams by kind: requests, extended CONNECTs for WebSockets, malformed (reset by
    /// tether), and reset by the client.
    pub const H2_STREAMS: usize = H2_CONNECTIONS + 1;
    pub const H2_WEBSOCKETS: usize = H2_STREAMS + 1;
    pub const H2_MALFORMED: usize = H2_WEBSOCKETS + 1;
    pub const H2_RESETS: usize = H2_MALFORMED + 1;
    /// HTTP/2 connections ended with GOAWAY `ENHANCE_YOUR_CALM` for resetting most of their
    /// streams (rapid reset).
    pub const H2_CALM: usize = H2_RESETS + 1;
    const LEN: usize = H2_CALM + 1;

    pub static COUNTERS: LazyLock<Counters<LEN>> = LazyLock::new(Counters::default);

    /// Requests in flight plus open tunnels, over every worker.
    pub fn in_flight() -> u64 {
        COUNTERS.level(IN_FLIGHT)
    }

    /// Client connections open, over every worker.
    pub fn connections() -> u64 {
        COUNTERS.level(CONNECTIONS)
    }

    /// Counts one client connection until dropped.
    pub struct Connection(());

    impl Connection {
        pub fn open() -> Connection {
            COUNTERS.inc(CONNECTIONS);
            Connection(())
        }
    }

    impl Drop for Connection {
        fn drop(&mut self) {
            COUNTERS.dec(CONNECTIONS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_sum_and_gauges_go_down_across_threads() {
        let c: Counters<2> = Counters::default();
        std::thread::scope(|s| {
            for w in 0..4 {
                let c = &c;
                s.spawn(move || {
                    enter_worker(w);
                    for _ in 0..1000 {
                        c.inc(0);
                        c.inc(1);
                    }
                });
            }
        });
        assert_eq!(c.sum(0), 4000);
        // A gauge raised on one thread and lowered on another.
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_worker(0);
                c.dec(1);
            });
        });
        assert_eq!(c.level(1), 3999);
        c.add(1, (-5000i64) as u64);
        assert_eq!(c.level(1), 0, "a gauge never reads below zero");
    }
}

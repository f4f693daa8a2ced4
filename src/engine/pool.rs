//! Idle keep-alive connections to nodes, one pool per worker thread (so taking and returning a
//! connection needs no lock), bounded and swept.
//!
//! A connection sits here at most its upstream's `timeouts.idle`. Every [`SWEEP_EVERY`] each
//! worker closes what expired, what the node closed meanwhile, and what leads to an address no
//! longer in the runtime (a node removed by a reload or by DNS discovery): without the sweep,
//! connections to a node nobody asks for again would sit in `CLOSE_WAIT` forever, and with pod
//! churn they would pile up until the descriptor limit stopped the proxy.

use crate::runtime::counters::global;
use crate::runtime::{Runtime, Shared};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Idle connections kept per node per worker.
pub const MAX_IDLE_PER_NODE: usize = 256;
/// Idle connections kept per worker, over every node.
pub const MAX_IDLE_PER_WORKER: usize = 2048;
/// How often each worker sweeps its pool.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One idle connection and when it must no longer be used.
struct Idle {
    stream: TcpStream,
    expires: Instant,
}

#[derive(Default)]
struct Pool {
    by_node: HashMap<SocketAddr, Vec<Idle>>,
    total: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// A pooled connection to `addr` that still looks alive, if any (the most recently used first).
pub fn take(addr: SocketAddr) -> Option<TcpStream> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let now = Instant::now();
        let list = pool.by_node.get_mut(&addr)?;
        let mut found = None;
        let mut popped = 0;
        while let Some(idle) = list.pop() {
            popped += 1;
            if idle.expires > now && looks_alive(&idle.stream) {
                found = Some(idle.stream);
                break;
            }
        }
        if list.is_empty() {
            pool.by_node.remove(&addr);
        }
        pool.total -= popped;
        found
    })
}

/// Return a connection whose last exchange ended cleanly, for reuse within `idle`. A full
/// pool (per node or per worker) closes it instead.
pub fn put(addr: SocketAddr, stream: TcpStream, idle: Duration) {
    if idle.is_zero() {
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.total >= MAX_IDLE_PER_WORKER {
            return;
        }
        let list = pool.by_node.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_NODE {
            list.push(Idle {
                stream,
                expires: Instant::now() + idle,
            });
            pool.total += 1;
        }
    })
}

/// Close every idle connection that expired, that the node closed, or whose address `runtime`
/// no longer has. Returns how many were closed.
pub fn sweep(runtime: &Runtime) -> usize {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let now = Instant::now();
        let mut closed = 0;
        pool.by_node.retain(|addr, list| {
            let known = runtime
                .pools
                .iter()
                .any(|p| p.nodes.iter().any(|n| n.address == *addr));
            let before = list.len();
            list.retain(|idle| known && idle.expires > now && looks_alive(&idle.stream));
            closed += before - list.len();
            !list.is_empty()
        });
        pool.total -= closed;
        closed
    })
}

/// Idle connections this worker holds.
pub fn idle_count() -> usize {
    POOL.with(|pool| pool.borrow().total)
}

/// Sweep this worker's pool every [`SWEEP_EVERY`], for as long as the worker runs.
pub async fn sweeper(runtime: &'static Shared) {
    let mut ticker = tokio::time::interval(SWEEP_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let closed = sweep(&runtime.load());
        if closed > 0 {
            global::COUNTERS.add(global::POOL_SWEPT, closed as u64);
            tracing::debug!(closed, idle = idle_count(), "idle node connections swept");
        }
    }
}

/// An idle connection must have nothing to read: bytes mean a protocol error, EOF means the node
/// closed it. `try_read` costs no syscall unless the reactor saw the socket become readable.
fn looks_alive(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

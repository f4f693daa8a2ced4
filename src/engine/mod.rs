//! The engine: tether's own request path (HTTP/1.1, and HTTP/2 towards clients in
//! [`http2`]), and the only layer that owns sockets.
//!
//! Thread-per-core: one current-thread tokio runtime per worker, each with its own
//! `SO_REUSEPORT` listeners, so the kernel spreads connections and nothing is shared between
//! workers but the runtime snapshot (`runtime::Shared`) and the nodes' load counters. One task
//! per client connection does every exchange in order ([`conn`], [`exchange`]); heads are
//! parsed in place ([`head`]); idle node connections are pooled per worker ([`pool`]); tunnels
//! own no buffer while quiet ([`tunnel`]).
//!
//! Why not pingora's proxy (it was tether's first request path): on this project's 2-core
//! loopback benchmark pingora 0.9 served about 0.4-0.6x nginx's keep-alive requests per second
//! at 2-4x its CPU per request and held about 250 KiB per open WebSocket, and the costs were
//! structural (a work-stealing runtime waking tasks across threads, per-request allocations,
//! fixed per-tunnel buffers). This path keeps what pingora's design gets right (careful
//! HTTP/1.1 framing, upstream keep-alive) and drops the rest.
//!
//! **May import:** `runtime`, `config`. **May not import:** `control` (the control plane
//! changes the snapshot; the engine only reads it) or any tool (`load`, `demo`, `cli`).

pub mod access;
mod conn;
mod deadline;
mod exchange;
pub mod http2;
pub mod listen;
mod outcome;
mod per_ip;
mod pool;
pub mod tunnel;

pub use crate::config::Limits;
use crate::config::{Config, Shutdown};
use crate::runtime::{counters, Shared};
use listen::{Acceptors, Bound};
use std::io;
use std::net::SocketAddr;
use tokio::sync::watch;

/// `None` while serving; the shutdown plan once a graceful shutdown began.
pub type ShutdownSignal = watch::Receiver<Option<Shutdown>>;

/// How often each worker checks whether a reload changed the listening addresses.
const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Every worker's listening sockets, ready before anything starts so a taken port is one clear
/// error and not a half-up proxy.
pub struct Listeners {
    workers: Vec<Vec<Bound>>,
}

impl Listeners {
    /// One socket per worker per configured listener: taken from `inherited` when it has one
    /// for that address (a binary upgrade, systemd socket activation), bound otherwise.
    pub fn bind(
        config: &Config,
        workers: usize,
        mut inherited: impl FnMut(SocketAddr) -> Option<std::net::TcpListener>,
    ) -> io::Result<Listeners> {
        let mut all = Vec::new();
        for _ in 0..workers.max(1) {
            let mut mine = Vec::new();
            for l in &config.listen {
                let socket = match inherited(l.address) {
                    Some(s) => s,
                    None => listen::bind(l.address).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.address))
                    })?,
                };
                socket.set_nonblocking(true)?;
                mine.push(Bound {
                    socket,
                    address: l.address,
                });
            }
            all.push(mine);
        }
        Ok(Listeners { workers: all })
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Start one thread per worker serving its listeners until shutdown.
    pub fn serve(
        self,
        runtime: &'static Shared,
        limits: Limits,
        shutdown: ShutdownSignal,
    ) -> io::Result<()> {
        for (i, mine) in self.workers.into_iter().enumerate() {
            for b in &mine {
                listen::registry::add(b.address, i, &b.socket);
            }
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("tether-worker-{i}"))
                .spawn(move || worker(i, mine, runtime, limits, shutdown))?;
        }
        Ok(())
    }
}

fn worker(
    index: usize,
    listeners: Vec<Bound>,
    runtime: &'static Shared,
    limits: Limits,
    shutdown: ShutdownSignal,
) {
    counters::enter_worker(index);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker runtime");
            return;
        }
    };
    // Tasks are spawned on this current-thread runtime directly: they never leave this thread,
    // which is what lets the node pools and scratch buffers be thread-local.
    rt.block_on(async move {
        let mut acceptors = Acceptors::new(index, runtime, limits, shutdown.clone());
        for b in listeners {
            acceptors.start(b);
        }
        tokio::spawn(pool::sweeper(runtime));
        tokio::spawn(access::flusher());
        tokio::spawn(tunnel::registry::supervise(shutdown.clone()));
        let mut shutdown = shutdown;
        let mut ticker = tokio::time::interval(RECONCILE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => acceptors.reconcile(),
                // Once shutting down, no listener comes back; keep the runtime (and so every
                // connection) alive until the process exits.
                _ = shutdown.changed() => break,
            }
        }
        std::future::pending::<()>().await;
    });
}

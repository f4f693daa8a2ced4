//! tether as a running process: bind every listener, start the control plane and the engine's
//! workers, and run until a graceful shutdown is over.
//!
//! This is the one place that knows both the engine and the control plane: the engine reads the
//! snapshot the control plane writes, and the two meet only through values (the snapshot, the
//! shutdown plan on a watch channel).

use crate::config::Config;
use crate::control::{self, admin, Control};
use crate::engine::Listeners;
use crate::runtime::counters;
use std::io;
use std::sync::Arc;

/// Worker threads when none are asked for: one per CPU.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Run the proxy on `threads` workers until a signal stops it. Returns `Ok` after a graceful
/// shutdown, `Err` on a startup error (a listener that cannot be bound).
pub fn run(config: &Config, threads: usize) -> io::Result<()> {
    let threads = threads.max(1);
    // Counter sets are sized by the worker count, so it is fixed before the runtime is built.
    counters::init(threads);
    // Bind everything before starting, so a taken port is one clear error and not a half-up proxy.
    let listeners = Listeners::bind(config, threads)?;
    let control_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let control = Arc::new(Control::new(config.clone()));
    // Discovered upstreams start with their nodes rather than with a first `refresh` of 503s.
    control_rt.block_on(control::discovery::initial(&control));
    let admin = match &config.admin {
        Some(a) => Some(admin::Admin {
            listener: control_rt
                .block_on(tokio::net::TcpListener::bind(a.address))
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot listen on admin address {}: {e}", a.address),
                    )
                })?,
            token: a.token.clone(),
        }),
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(None);
    tracing::info!(
        listen = ?config.listen.iter().map(|l| l.address).collect::<Vec<_>>(),
        admin = ?config.admin.as_ref().map(|a| a.address),
        upstreams = config.upstreams.len(),
        workers = listeners.workers(),
        config = %config.source.display(),
        "tether started"
    );
    listeners.serve(control.runtime, config.limits, shutdown_rx)?;
    control_rt.block_on(control::run(control, admin, shutdown_tx, config.shutdown));
    Ok(())
}

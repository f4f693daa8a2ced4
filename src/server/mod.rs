//! tether as a running process: take or bind every listener, start the control plane and the
//! engine's workers, say it serves, and run until a graceful shutdown is over.
//!
//! This is the one place that knows both the engine and the control plane: the engine reads the
//! snapshot the control plane writes, and the two meet only through values (the snapshot, the
//! shutdown plan on a watch channel, upgrade requests on a channel). It also owns what belongs
//! to the process as a whole: sockets passed in ([`inherit`]), binary upgrades ([`upgrade`]),
//! and telling the previous process or systemd that this one is ready ([`ready`]).
//!
//! **May import:** `engine`, `control`, `runtime`, `config`. **May not import:** the tools.

mod inherit;
mod ready;
mod upgrade;

use crate::config::Config;
use crate::control::{self, admin, Control, Process};
use crate::engine::{listen, Listeners};
use crate::runtime::{counters, unix_now};
use std::io;
use std::sync::Arc;

/// Worker threads when none are asked for: one per CPU.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The registry slot of the admin listener (workers are numbered from 0).
const ADMIN_SLOT: usize = usize::MAX;

/// Run the proxy on `threads` workers until a signal stops it. Returns `Ok` after a graceful
/// shutdown (or a binary upgrade), `Err` on a startup error (a listener that cannot be bound).
pub fn run(config: &Config, threads: usize) -> io::Result<()> {
    let threads = threads.max(1);
    // Counter sets are sized by the worker count, so it is fixed before the runtime is built.
    counters::init(threads);
    // Before anything can replace the binary on disk: where to start it again from.
    let launch = upgrade::Launch::capture();
    let generation = inherit::generation();
    // Take what was passed in, bind the rest, all before starting: a taken port is one clear
    // error and not a half-up proxy.
    let mut inherited = inherit::Inherited::from_env();
    let listeners = Listeners::bind(config, threads, |a| inherited.take(a))?;
    let admin_socket = match &config.admin {
        None => None,
        Some(a) => Some(match inherited.take(a.address) {
            Some(s) => s,
            None => std::net::TcpListener::bind(a.address).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on admin address {}: {e}", a.address),
                )
            })?,
        }),
    };
    inherited.close_rest();
    let control_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let process = Process {
        pid: std::process::id(),
        started: unix_now(),
        generation,
    };
    let control = Arc::new(Control::new(config.clone(), process));
    // Discovered upstreams start with their nodes rather than with a first `refresh` of 503s.
    control_rt.block_on(control::discovery::initial(&control));
    let admin = match (admin_socket, &config.admin) {
        (Some(socket), Some(a)) => {
            socket.set_nonblocking(true)?;
            listen::registry::add(a.address, ADMIN_SLOT, &socket);
            let _entered = control_rt.enter();
            Some(admin::Admin {
                listener: tokio::net::TcpListener::from_std(socket)?,
                token: a.token.clone(),
            })
        }
        _ => None,
    };
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(None);
    tracing::info!(
        pid = process.pid,
        generation,
        listen = ?config.listen.iter().map(|l| l.address).collect::<Vec<_>>(),
        admin = ?config.admin.as_ref().map(|a| a.address),
        upstreams = config.upstreams.len(),
        workers = listeners.workers(),
        config = %config.source.display(),
        "tether started"
    );
    if config.log.access && tracing::enabled!(target: "tether::access", tracing::Level::INFO) {
        crate::engine::access::start(config.log.format);
    }
    listeners.serve(control.runtime, config.limits, shutdown_rx)?;
    ready::announce();
    let (upgrades, requests) = tokio::sync::mpsc::channel(1);
    control_rt.spawn(upgrade::serve(
        requests,
        launch,
        generation,
        config.shutdown.upgrade_timeout,
    ));
    control_rt.block_on(control::run(
        control,
        admin,
        shutdown_tx,
        config.shutdown,
        Some(upgrades),
    ));
    Ok(())
}

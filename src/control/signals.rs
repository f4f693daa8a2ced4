//! Signals: SIGHUP reloads the config; SIGTERM or SIGINT starts a graceful shutdown.
//!
//! **Shutdown**: listeners close, idle keep-alive connections end, in-flight requests finish,
//! tunnels are kept for `grace`, then closed one by one at random moments over `close_window`
//! (each tunnel picks its own, see `engine::tunnel::close_delay`) so clients do not all
//! reconnect in the same second; the process exits when nothing is left or the window has
//! passed.

use super::Control;
use crate::config::Shutdown;
use crate::runtime::counters::global::in_flight;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Wait for signals: SIGHUP reloads; SIGTERM or SIGINT sends `plan` to every connection and
/// returns once connections are done or the plan's time is up.
pub async fn run(control: Arc<Control>, shutdown: watch::Sender<Option<Shutdown>>, plan: Shutdown) {
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
    tracing::info!(grace = ?plan.grace, close_window = ?plan.close_window, open = in_flight(), "shutting down: no new connections");
    let _ = shutdown.send(Some(plan));
    let deadline =
        tokio::time::Instant::now() + plan.grace + plan.close_window + Duration::from_secs(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    loop {
        ticker.tick().await;
        let open = in_flight();
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
    }
}

//! Signals: SIGHUP reloads the config; SIGUSR2 upgrades the binary in place; SIGTERM or SIGINT
//! starts a graceful shutdown.
//!
//! **Shutdown**: listeners close, idle keep-alive connections end, in-flight requests finish,
//! tunnels are kept for `grace`, then closed one by one at random moments over `close_window`
//! (each tunnel picks its own, see `engine::tunnel::close_delay`) so clients do not all
//! reconnect in the same second; the process exits when nothing is left or the window has
//! passed.
//!
//! **Upgrade**: the request goes to whoever can start the new binary (`server`), which answers
//! once the new process said it is ready, or failed. On success this process shuts down exactly
//! as on SIGTERM (the new one accepts every new connection from then on); on failure it logs why
//! and carries on serving as if nothing happened. One upgrade runs at a time.

use super::{Control, UpgradeRequest};
use crate::config::Shutdown;
use crate::runtime::counters::global::{connections, in_flight};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Wait for signals: SIGHUP reloads; SIGUSR2 asks `upgrades` for a binary upgrade; SIGTERM or
/// SIGINT (or a successful upgrade) sends `plan` to every connection and returns once
/// connections are done or the plan's time is up.
pub async fn run(
    control: Arc<Control>,
    shutdown: watch::Sender<Option<Shutdown>>,
    plan: Shutdown,
    upgrades: Option<mpsc::Sender<UpgradeRequest>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut usr2)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::error!("cannot install signal handlers; stop tether with SIGKILL");
        return std::future::pending().await;
    };
    // The answer of the upgrade in progress, if any.
    let mut upgrading: Option<oneshot::Receiver<Result<u32, String>>> = None;
    let reason = loop {
        tokio::select! {
            _ = hup.recv() => {
                crate::control::notify_systemd(&[sd_notify::NotifyState::Reloading]);
                let c = Arc::clone(&control);
                // Reading and validating the file is blocking work; keep the control loop free.
                let _ = tokio::task::spawn_blocking(move || c.reload()).await;
                crate::control::notify_systemd(&[sd_notify::NotifyState::Ready]);
            }
            _ = usr2.recv() => {
                if upgrading.is_some() {
                    tracing::warn!("SIGUSR2 ignored: a binary upgrade is already in progress");
                    continue;
                }
                match &upgrades {
                    None => tracing::warn!("SIGUSR2 ignored: this process cannot upgrade its binary"),
                    Some(tx) => {
                        let (answer, result) = oneshot::channel();
                        if tx.send(answer).await.is_ok() {
                            tracing::info!("SIGUSR2: starting the new binary; this process keeps serving until it is ready");
                            upgrading = Some(result);
                        }
                    }
                }
            }
            result = async {
                match upgrading.as_mut() {
                    Some(answer) => answer.await,
                    None => std::future::pending().await,
                }
            } => {
                upgrading = None;
                match result {
                    Ok(Ok(pid)) => break format!("upgraded: pid {pid} serves new connections"),
                    Ok(Err(why)) => tracing::error!(error = %why, "binary upgrade failed; this process keeps serving"),
                    Err(_) => tracing::error!("binary upgrade failed: no answer; this process keeps serving"),
                }
            }
            _ = term.recv() => break "SIGTERM".to_string(),
            _ = int.recv() => break "SIGINT".to_string(),
        }
    };
    crate::control::notify_systemd(&[sd_notify::NotifyState::Stopping]);
    tracing::info!(%reason, grace = ?plan.grace, close_window = ?plan.close_window, open = in_flight(), "shutting down: no new connections");
    let _ = shutdown.send(Some(plan));
    let deadline =
        tokio::time::Instant::now() + plan.grace + plan.close_window + Duration::from_secs(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    loop {
        ticker.tick().await;
        // Connections, not only requests: one accepted just before the listeners closed may
        // not have sent its request yet, and must still get its answer.
        let open = connections().max(in_flight());
        if open == 0 {
            tracing::info!("all connections done; exiting");
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

//! A binary upgrade in place (SIGUSR2), as nginx, HAProxy and Envoy do it: the binary at the
//! path this process was started from (so a package upgrade that replaced the file is picked
//! up) is started with the same arguments and environment, and inherits every listening socket
//! (proxy listeners of every worker, TLS ones included, and the admin listener) as descriptors
//! 3 and up with `LISTEN_FDS`, the way systemd passes sockets. It loads and checks its config,
//! starts its workers and says it is ready on a one-time abstract Unix socket. Only then does
//! this process stop accepting and shut down gracefully; the sockets never close, so no
//! connection the kernel queued is lost.
//!
//! If the new binary cannot start, exits, fails its config check, or is not ready within
//! `shutdown.upgrade_timeout`, it is stopped (by its pid) and this process carries on serving.
//!
//! Why not Cloudflare's `ecdysis`: its new process must be ready within a fixed 5 s (tether's
//! first DNS discovery round alone may take 4 s), its systemd support takes only named sockets,
//! and it wants to own the signal handling and listener streams where tether has one socket per
//! worker thread. `command-fds` (sending) and `listenfd` (receiving) do the descriptor work
//! without unsafe code here, and make an upgraded tether and a socket-activated one start the
//! same way.

use super::inherit::GENERATION_ENV;
use super::ready::{ready_line, READY_ENV};
use crate::control::UpgradeRequest;
use crate::engine::listen::registry;
use command_fds::{CommandFdExt, FdMapping};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// How to start this binary again: captured at start, before anything can replace the file.
pub struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Launch {
    /// The path this process was started from and its arguments.
    pub fn capture() -> Launch {
        let mut argv = std::env::args_os();
        let argv0 = argv.next().map(PathBuf::from);
        let program = match argv0 {
            // A path (absolute or relative to the directory we still run in): start what is at
            // that path now, the replaced binary after a package upgrade.
            Some(p) if p.components().count() > 1 => p,
            // A bare name found on PATH: the file this process runs from.
            _ => std::env::current_exe()
                .map(|p| {
                    let text = p.to_string_lossy();
                    PathBuf::from(text.trim_end_matches(" (deleted)"))
                })
                .unwrap_or_else(|_| PathBuf::from("tether")),
        };
        Launch {
            program,
            args: argv.collect(),
        }
    }
}

/// Answer upgrade requests, one at a time, until the process ends.
pub async fn serve(
    mut requests: mpsc::Receiver<UpgradeRequest>,
    launch: Launch,
    generation: u64,
    timeout: Duration,
) {
    while let Some(answer) = requests.recv().await {
        let result = upgrade(&launch, generation + 1, timeout).await;
        if let Ok(pid) = &result {
            tracing::info!(
                pid,
                generation = generation + 1,
                "the new binary is ready; handing over"
            );
        }
        let _ = answer.send(result);
    }
}

/// Start the new binary with every listening socket and wait until it is ready.
async fn upgrade(launch: &Launch, generation: u64, timeout: Duration) -> Result<u32, String> {
    let sockets = registry::handoff();
    if sockets.is_empty() {
        return Err("no listening socket to hand over".into());
    }
    let name = format!(
        "tether-upgrade-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    let listener =
        ready_listener(&name).map_err(|e| format!("cannot open the readiness socket: {e}"))?;
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .stdin(Stdio::null())
        .env("LISTEN_FDS", sockets.len().to_string())
        // No LISTEN_PID: the child's pid is not known before it starts, and listenfd accepts
        // the descriptors without it.
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env(READY_ENV, &name)
        .env(GENERATION_ENV, generation.to_string());
    let mappings = sockets
        .into_iter()
        .enumerate()
        .map(|(i, (_, fd))| FdMapping {
            parent_fd: fd,
            child_fd: 3 + i as i32,
        })
        .collect();
    command
        .fd_mappings(mappings)
        .map_err(|e| format!("cannot pass the listening sockets: {e}"))?;
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", launch.program.display()))?;
    let pid = child.id();
    tracing::info!(pid, program = %launch.program.display(), "new binary started; waiting for it to be ready");
    match wait_ready(&listener, &mut child, pid, timeout).await {
        Ok(()) => Ok(pid),
        Err(why) => {
            stop(&mut child);
            Err(why)
        }
    }
}

fn ready_listener(name: &str) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

/// Wait for `ready <pid>` from the child, its exit, or `timeout`.
async fn wait_ready(
    listener: &tokio::net::UnixListener,
    child: &mut Child,
    pid: u32,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else { continue };
                let mut line = Vec::new();
                let read = tokio::time::timeout(
                    Duration::from_secs(1),
                    (&mut stream).take(64).read_to_end(&mut line),
                )
                .await;
                if matches!(read, Ok(Ok(_))) && line == ready_line(pid).as_bytes() {
                    // Ready, and still running a moment later.
                    return match child.try_wait() {
                        Ok(None) => Ok(()),
                        _ => Err("the new binary exited right after saying it was ready".into()),
                    };
                }
            }
            _ = poll.tick() => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the new binary exited before it was ready ({status}); see its log lines above"));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!("the new binary was not ready within {timeout:?} (shutdown.upgrade_timeout); stopped it"));
                }
            }
        }
    }
}

/// Stop a new binary that failed, and reap it.
fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

//! Saying "serving": to the previous process of a binary upgrade (which then stops accepting
//! and shuts down) and to systemd (`READY=1`, and `MAINPID`, since after an upgrade the main
//! process is a new one).

use crate::control::notify_systemd;
use std::io::Write;

/// The environment variable naming the (abstract Unix) socket a new binary reports readiness on.
pub const READY_ENV: &str = "TETHER_UPGRADE_READY";

/// The line a new binary writes when it serves.
pub fn ready_line(pid: u32) -> String {
    format!("ready {pid}\n")
}

/// Tell whoever waits that this process serves now.
pub fn announce() {
    let pid = std::process::id();
    if let Ok(name) = std::env::var(READY_ENV) {
        std::env::remove_var(READY_ENV);
        if let Err(e) = tell_parent(&name, pid) {
            // The parent times out and keeps serving; this process then serves alone.
            tracing::error!(error = %e, "cannot tell the previous process that this one is ready");
        }
    }
    notify_systemd(&[
        sd_notify::NotifyState::MainPid(pid),
        sd_notify::NotifyState::Ready,
    ]);
}

fn tell_parent(name: &str, pid: u32) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let mut stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    stream.write_all(ready_line(pid).as_bytes())
}

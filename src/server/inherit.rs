//! Listening sockets this process was given instead of binding them: by systemd socket
//! activation, or by the previous tether process in a binary upgrade (which passes them the
//! same way, `LISTEN_FDS` and descriptors 3 and up, so both start identically).
//!
//! Sockets are matched to configured listeners by their local address. A socket nothing in the
//! config matches is closed with a warning; an address with fewer sockets than workers shares
//! the ones it has (systemd passes one socket per address, without `SO_REUSEPORT`).

use std::net::{SocketAddr, TcpListener};

/// The environment variable that carries the generation (upgrades so far) to a new binary.
pub const GENERATION_ENV: &str = "TETHER_GENERATION";

/// Sockets passed in, not yet claimed by a listener.
pub struct Inherited {
    free: Vec<(SocketAddr, TcpListener)>,
    /// One socket of every address already claimed, to share when an address has fewer
    /// sockets than workers.
    claimed: Vec<(SocketAddr, TcpListener)>,
}

impl Inherited {
    /// Whatever `LISTEN_FDS` describes (nothing when it is not set). The variables are removed,
    /// so nothing this process starts inherits them by mistake.
    pub fn from_env() -> Inherited {
        let from_systemd = std::env::var("LISTEN_PID").is_ok_and(|p| !p.is_empty());
        let mut fds = listenfd::ListenFd::from_env();
        let mut free = Vec::new();
        for i in 0..fds.len() {
            match fds.take_tcp_listener(i) {
                Ok(Some(l)) => match l.local_addr() {
                    Ok(addr) => free.push((addr, l)),
                    Err(e) => {
                        tracing::warn!(fd = i + 3, error = %e, "an inherited socket has no address; closed")
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(fd = i + 3, error = %e, "an inherited descriptor is not a TCP listening socket; ignored")
                }
            }
        }
        std::env::remove_var("LISTEN_FDNAMES");
        if !free.is_empty() {
            let addresses: Vec<String> = free.iter().map(|(a, _)| a.to_string()).collect();
            tracing::info!(
                sockets = free.len(),
                from = if from_systemd { "systemd" } else { "the process that started tether" },
                addresses = %addresses.join(","),
                "using inherited listening sockets"
            );
        }
        Inherited {
            free,
            claimed: Vec::new(),
        }
    }

    /// A socket for the listener configured at `address`, if one was passed in.
    pub fn take(&mut self, address: SocketAddr) -> Option<TcpListener> {
        if let Some(i) = self.free.iter().position(|(a, _)| *a == address) {
            let (a, socket) = self.free.remove(i);
            if let Ok(copy) = socket.try_clone() {
                self.claimed.push((a, copy));
            }
            return Some(socket);
        }
        // Fewer inherited sockets than workers: share one (each worker accepts on a duplicate).
        let shared = self.claimed.iter().find(|(a, _)| *a == address)?;
        shared.1.try_clone().ok()
    }

    /// Close the sockets no listener claimed (an address the config no longer has).
    pub fn close_rest(&mut self) {
        for (address, _) in self.free.drain(..) {
            tracing::warn!(%address, "an inherited listening socket matches no listener in the config; closed");
        }
        self.claimed.clear();
    }
}

/// How many binary upgrades the listening sockets have been through (0 on a fresh start).
pub fn generation() -> u64 {
    let g = std::env::var(GENERATION_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::env::remove_var(GENERATION_ENV);
    g
}

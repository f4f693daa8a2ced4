//! The soak's socket.io cluster: two real socket.io 4 nodes (`tests/socketio/server.js`, the
//! integration tests' cluster, Node.js) behind a second upstream of tether, routed by
//! `/socket.io/`, with `engineio: true`. They are stable (never replaced): the DNS churn is the
//! demo nodes' upstream's; this load shows a real socket.io session (polling handshake, upgrade,
//! acked events) staying on its node through the reloads and the other upstream's churn.

use crate::churn::{Ledger, Life};
use crate::procs::{lock, Proc};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Their ids (what `server.js` announces to its clients).
pub const IDS: [&str; 2] = ["sio-a", "sio-b"];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio")
}

/// The running socket.io nodes; dropping it stops them.
pub struct SocketIo {
    pub nodes: Vec<(String, SocketAddr)>,
    _procs: Vec<Proc>,
}

impl SocketIo {
    /// Start both nodes on fresh ports of 127.0.0.1 and enter them in the ledger as stable.
    pub fn start(ledger: &Mutex<Ledger>) -> Result<SocketIo, String> {
        if !dir().join("node_modules/socket.io").exists() {
            return Err(format!(
                "socket.io is not installed: run `make deps-node` (npm ci in {})",
                dir().display()
            ));
        }
        let mut nodes = Vec::new();
        let mut procs = Vec::new();
        for id in IDS {
            let proc = Proc::spawn(
                &format!("socket.io {id}"),
                Command::new("node")
                    .arg("server.js")
                    .args(["--id", id, "--port", "0", "--host", "127.0.0.1"])
                    .current_dir(dir()),
            )?;
            let deadline = Instant::now() + Duration::from_secs(20);
            if !proc.stdout.wait_for(deadline, |t| t.contains("LISTENING ")) {
                return Err(format!("{id} did not start:\n{}", proc.log_tail()));
            }
            let text = proc.stdout.text();
            let port: u16 = text
                .split("LISTENING ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("{id}: no port in {text:?}"))?;
            nodes.push((id.to_string(), SocketAddr::from(([127, 0, 0, 1], port))));
            procs.push(proc);
            lock(ledger).nodes.insert(
                id.to_string(),
                Life {
                    id: id.to_string(),
                    stable: true,
                    in_dns_ms: crate::cluster::now_ms(),
                    out_dns_ms: None,
                    seen_out_ms: None,
                    killed_ms: None,
                },
            );
        }
        Ok(SocketIo {
            nodes,
            _procs: procs,
        })
    }
}

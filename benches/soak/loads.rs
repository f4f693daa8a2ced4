//! The load: five `tether load --history --json` processes against tether for the whole soak
//! (http, longpoll, ws with messages every few seconds and mixed against the churning demo
//! nodes; socketio against the two real socket.io nodes), started together and read back at
//! the end.

use crate::cluster::tether_bin;
use crate::procs::Proc;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// Clients start evenly over this.
pub const RAMP: Duration = Duration::from_secs(5);
/// The long-poll the nodes hold (ms): the churn waits longer than this before killing a node.
pub const POLL_HOLD_MS: u64 = 3000;
/// After its duration a load gets its own 10 s hard grace, plus this, then it is killed.
const SLACK: Duration = Duration::from_secs(25);

/// One load process: its label, what it does, and its flags.
pub struct Spec {
    pub flow: &'static str,
    pub what: String,
    args: Vec<String>,
}

/// The five loads, at rates a 2-core machine running tether and the nodes too can carry.
pub fn specs() -> Vec<Spec> {
    let poll = format!("/poll?hold={POLL_HOLD_MS}");
    let spec = |flow: &'static str, what: String, args: &[&str]| Spec {
        flow,
        what,
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    vec![
        spec(
            "http",
            "40 clients, keep-alive GET /whoami, 5/s each".into(),
            &["--flow", "http", "--clients", "40", "--rate", "5"],
        ),
        spec(
            "longpoll",
            format!(
                "40 clients, back-to-back {}-s long-polls",
                POLL_HOLD_MS / 1000
            ),
            &["--flow", "longpoll", "--clients", "40", "--path", &poll],
        ),
        spec(
            "ws",
            "100 WebSockets, an echo every 3 s, a new socket after 10 echoes".into(),
            &[
                "--flow",
                "ws",
                "--clients",
                "100",
                "--messages",
                "10",
                "--hold",
                "3s",
            ],
        ),
        spec(
            "mixed",
            format!(
                "60 clients: http 2/s, {}-s long-polls, WebSockets echoing every 2 s",
                POLL_HOLD_MS / 1000
            ),
            &[
                "--flow",
                "mixed",
                "--clients",
                "60",
                "--rate",
                "2",
                "--poll-path",
                &poll,
                "--messages",
                "10",
                "--hold",
                "2s",
            ],
        ),
        spec(
            "socketio",
            "30 socket.io 4 clients (the real socket.io nodes): polling handshake, upgrade, \
             an acked event every 3 s, a new session after 10"
                .into(),
            &[
                "--flow",
                "socketio",
                "--clients",
                "30",
                "--messages",
                "10",
                "--hold",
                "3s",
            ],
        ),
    ]
}

/// A running load.
pub struct Load {
    pub flow: &'static str,
    pub what: String,
    proc: Proc,
    started: Instant,
    duration: Duration,
}

/// Start `spec` against `url` for `duration`.
pub fn start(spec: &Spec, url: &str, duration: Duration) -> Result<Load, String> {
    let proc = Proc::spawn(
        &format!("tether load ({})", spec.flow),
        Command::new(tether_bin())
            .args(["load", "--url", url, "--json", "--history"])
            .args(["--duration", &format!("{}ms", duration.as_millis())])
            .args(["--ramp", &format!("{}ms", RAMP.as_millis())])
            .args(&spec.args)
            .env_remove("RUST_LOG"),
    )?;
    Ok(Load {
        flow: spec.flow,
        what: spec.what.clone(),
        proc,
        started: Instant::now(),
        duration,
    })
}

impl Load {
    /// Wait for the process (killed after its duration + 10 s + `SLACK`) and parse its report.
    pub fn finish(mut self) -> Result<Value, String> {
        let status = self.proc.wait_until(self.started + self.duration + SLACK);
        // The pipe closes as the process exits; give the reader a moment to take the last line.
        self.proc
            .stdout
            .wait_for(Instant::now() + Duration::from_secs(5), |_| false);
        match status {
            Some(s) if s.success() => {
                let out = self.proc.stdout.text();
                let line = out.lines().rev().find(|l| l.starts_with('{'));
                serde_json::from_str(line.unwrap_or_default())
                    .map_err(|e| format!("printed no report ({e}):\n{}", self.proc.log_tail()))
            }
            Some(s) => Err(format!("failed ({s}):\n{}", self.proc.log_tail())),
            None => Err("did not finish in time and was killed".into()),
        }
    }
}

//! Soak: tether under mixed load for 10 minutes while its DNS-discovered nodes are replaced
//! every 5 s and its config is reloaded every 30 s; are descriptors, memory and stickiness steady?
//!
//! `make soak` (= `cargo bench --bench soak`; `-- --quick` for 90 s, `-- --duration 30m`,
//! `-- --help`; `-- --negative-control` runs tether without affinity, where the stickiness check
//! must fail) runs, all on loopback:
//!
//! - a DNS server of its own (`dns`) on 127.0.0.1, port 0, serving `realtime.soak.test`;
//! - `tether node`s on one port at distinct addresses (127.0.0.2, .3, ...): two **stable** nodes
//!   that are never replaced and two **churning** ones (`churn`);
//! - tether (the release binary this bench is built with) discovering them by that name
//!   (`refresh: 1s`), cookie affinity, an admin listener (`cluster`);
//! - two real socket.io 4 nodes (`tests/socketio/server.js`, Node.js) behind a second upstream
//!   routed by `/socket.io/`, with `engineio: true`; stable, never replaced (`socketio`);
//! - five `tether load` processes for the whole duration (`loads`): http, longpoll, ws
//!   (an echo every 3 s, a new socket every 10 echoes) and mixed against the churning demo
//!   nodes, and socketio (handshake, upgrade, acked events) against the socket.io nodes.
//!
//! Every 5 s the oldest churning node is replaced: a new node starts on a fresh address, the
//! records drop the old address and add the new one, the bench waits until tether's `/status`
//! lists the new set, and kills the old node 4 s later (long-polls in flight finish; its
//! WebSockets are cut). Every 30 s the config file is rewritten (`timeouts.read` toggles between
//! 90s and 91s) and tether gets SIGHUP; `/status`'s `reloads` counter confirms it.
//!
//! **Resources** (`sample`): every 2 s, tether's open descriptors (`/proc/PID/fd`), `VmRSS`,
//! and its TCP sockets (socket inodes of its descriptors looked up in `/proc/PID/net/tcp`):
//! client connections, connections to nodes, those to nodes killed over 2 s before, and
//! `CLOSE_WAIT`. One row per minute (per 15 s with `--quick`) holds the medians of the readings
//! since the row before (a single reading can land in a burst of reconnections), and
//! `tether_idle_node_connections_swept_total` from `/metrics`. The first row comes after the
//! warm-up (a minute; 45 s with `--quick`) and is the baseline; the warm-up holds the first
//! reload, because tether's first SIGHUP starts its blocking-pool thread, a one-off step of
//! about 4 MiB of RSS (an idle tether: 15.0 MiB, 18.7 after the first SIGHUP, unchanged by four
//! more). **Rule:** descriptors and RSS are flat when no row in the last third of the time
//! after warm-up (minutes 8 to 10 of the full run) is more than 5% above the baseline row (a
//! fall is shown but passes: after the first reload's step the allocator hands memory back);
//! CLOSE_WAIT is not growing when those rows' medians stay within the baseline's + 2 and none
//! is left at rest. At rest, before the load and again 8 s after it ended (past the 4 s idle
//! timeout of pooled node connections and their 1 s sweep), tether must be back to its idle
//! descriptors with nothing left to killed nodes.
//!
//! **Stickiness for clients whose node stayed** (`sticky`): `tether load --history` reports,
//! per client, the node of its first answer, every change of node and every error, with their
//! times (Unix milliseconds, the clock the bench's ledger of node lives uses). A move from node A
//! is *explained* only if A had been taken out of DNS before the move was seen; a client whose
//! node stayed has no explained move by definition, so every move it makes is counted as a
//! violation, and the check is that there are none. This holds for every client, including
//! those that moved once (their new node stayed: a second move is judged the same way), and the
//! two stable nodes give clients that keep one node for the whole run. As side checks, a
//! client's first answer from a node that tether had dropped more than 4 s earlier (a long-poll
//! routed just before may answer that late) is a *late pick*, and errors are split into those
//! within 3 s after the client's node was killed (expected: cut WebSockets) and all others.
//!
//! Every process is in its own process group and killed (the group) on exit, panic or Ctrl-C
//! (`procs`, shared with the compare bench). Progress goes to stderr, the Markdown tables to
//! stdout (for `benches/README.md`); tether's log and the raw results (with every client's
//! history) go to `target/tmp/soak/`. The exit status is 1 if a check failed.

#[allow(dead_code)] // Shared with the compare bench, which uses the /proc CPU readers too.
#[path = "../compare/procs.rs"]
mod procs;

mod churn;
mod cluster;
mod dns;
mod loads;
mod run;
mod sample;
mod socketio;
mod sticky;
mod table;

use clap::Parser;
use std::time::Duration;

/// A soak of tether under node churn and reloads: descriptors, memory and stickiness.
#[derive(Parser, Debug)]
#[command(name = "soak")]
pub struct Opts {
    /// How long the load and the churn run.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// A 90-second run, rows every 15 s after 45 s of warm-up: a smoke test of the whole bench.
    #[arg(long)]
    quick: bool,
    /// Time before the baseline row (default: a minute; 45 s with --quick; at most half the run).
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Time between rows (default: a minute, or what gives five rows after warm-up if less).
    #[arg(long, value_parser = humantime::parse_duration)]
    every: Option<Duration>,
    /// Negative control: tether with `affinity: none`, so clients spread over every node; the
    /// stickiness check must then fail, which shows it can.
    #[arg(long)]
    negative_control: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// Bench name filters passed by `cargo bench NAME` (ignored).
    #[arg(hide = true)]
    filters: Vec<String>,
}

/// The schedule the options give.
pub struct Plan {
    pub duration: Duration,
    pub warmup: Duration,
    pub every: Duration,
    pub command: String,
    /// tether's `affinity.mode`: `cookie`, or `none` for the negative control.
    pub affinity: &'static str,
}

impl Opts {
    fn plan(&self) -> Plan {
        let duration = if self.quick {
            Duration::from_secs(90)
        } else {
            self.duration.max(Duration::from_secs(30))
        };
        let minute = Duration::from_secs(60);
        // The warm-up holds a replacement, the first reload (at 35 s) and the first wave of
        // WebSocket reconnections (30 s).
        let first = Duration::from_secs(45);
        let (warmup, every) = if self.quick {
            (first, Duration::from_secs(15))
        } else {
            let warmup = minute.min(first.max(duration / 4));
            (warmup, minute.min((duration - warmup) / 5))
        };
        let warmup = self.warmup.unwrap_or(warmup).min(duration / 2);
        let every = self.every.unwrap_or(every).max(Duration::from_secs(5));
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        let command = if args.is_empty() {
            "cargo bench --bench soak".into()
        } else {
            format!("cargo bench --bench soak -- {}", args.join(" "))
        };
        Plan {
            duration,
            warmup,
            every,
            command,
            affinity: if self.negative_control {
                "none"
            } else {
                "cookie"
            },
        }
    }
}

fn main() {
    let opts = Opts::parse();
    if !opts.bench && std::env::args().len() == 1 {
        // `cargo test --benches` runs bench binaries without --bench: do not start a 10-minute run.
        eprintln!("soak: run it with `cargo bench --bench soak` (or pass --bench)");
        return;
    }
    procs::install_signal_handler();
    let code = match run::soak(&opts.plan()) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("soak: {e}");
            2
        }
    };
    // Every process was killed as its handle was dropped inside `soak`.
    std::process::exit(code);
}

//! End-to-end comparison on loopback: tether against its nodes directly, nginx and HAProxy.
//!
//! `make bench` (= `cargo bench --bench compare`, about 7 minutes; `-- --help` for the options)
//! starts three demo nodes (`tether node`, one thread each) and, in front of them, each target:
//!
//! - `direct`: no proxy, all the load goes to one node: the ceiling of keep-alive requests;
//!   where the node itself is the bottleneck (new connections, WebSocket echo) a proxy that
//!   spreads clients over the three nodes can beat it;
//! - `tether-cookie`, `tether-iphash`: tether with cookie or IP-hash affinity;
//! - `tether-base`, only with `--baseline PATH`: another tether binary (say a release build of
//!   the previous commit) with exactly `tether-cookie`'s config, so that a change to tether's
//!   request path is measured before and after in the same interleaved run;
//! - `nginx`: `ip_hash`, `keepalive 64` to the nodes, HTTP/1.1 and the WebSocket upgrade headers;
//! - `haproxy`: cookie insert, `leastconn`, `nbthread 2`, keep-alive, `timeout tunnel 1h`.
//!
//! nginx and HAProxy run in the foreground from a temporary directory, never as services; they
//! are installed with apt-get when missing and we are root, and show `n/a` when they cannot be.
//!
//! Every measurement is one `tether load` process (its own descriptor limit), clients bound to
//! `127.0.1.0/24` (so IP hashing has addresses to spread, and ephemeral ports last):
//!
//! - **A** keep-alive GETs on 64 connections: requests/s, p99, proxy CPU-s per million requests;
//! - **B** a new connection per request (`--new-connection`): connections/s, CPU per million;
//! - **C** 5,000 WebSockets held open through a freshly started instance of the proxy: RSS per
//!   open WebSocket (VmRSS of its processes while all are open, minus before, divided by the
//!   number held); then echoes on 64 WebSockets: round trips/s, p99, CPU per million;
//! - **D** 2,000 concurrent 3-second long-polls: how many completed (all must), proxy CPU-s;
//! - **E** HTTP/2 over TLS at the same proxies' TLS listeners (a self-signed certificate):
//!   keep-alive GETs by nghttp2's `h2load` (64 connections, 10 streams each; installed with
//!   apt-get like nginx): requests/s, proxy CPU-s per million; then 5,000 WebSockets held over
//!   HTTP/2 (`tether load --http2`: one connection and one extended CONNECT stream each, as a
//!   browser tab): RSS per WebSocket. nginx has no RFC 8441, so its E2 row shows errors.
//!
//! Runs are interleaved (every target once per scenario per round, the order rotating by round)
//! and repeated (`--rounds`, default 3); the table shows medians. CPU is utime + stime of the
//! proxy and its children from `/proc/PID/stat`, read before and after each run; everything
//! shares the same 2 cores (load tool, proxy, nodes), so read the ratios, measured side by side,
//! rather than the absolute figures, which move by ±20% from one run of a VM to the next.
//! `vs direct` is the share of the ceiling a proxy keeps; `vs nginx` / `vs HAProxy` compare
//! tether's figure to theirs (above 1 is better for rates, below 1 for CPU and memory);
//! `vs base` (with `--baseline`) compares `tether, cookie` to the baseline binary the same way.
//! Note that nginx's `ip_hash` hashes only the first three octets of an IPv4 address: every
//! client here is in one /24, so nginx sends all of them to one node (tether hashes the whole
//! address).
//!
//! The figures mean something only on an otherwise idle machine: each run also adds up the CPU
//! that other processes used meanwhile (a build, say), flags a run where that exceeds 10% of a
//! core, and the table ends by saying whether any run was disturbed.
//!
//! `--scale` instead holds as many WebSockets through one tether process as its open-file limit
//! allows (two descriptors per tunnel) and reports how many were held.
//!
//! Ports are picked by binding port 0; every process is killed by its process group on exit,
//! panic or Ctrl-C; every run is bounded in time. Progress goes to stderr, the Markdown table
//! to stdout (for `benches/README.md`).
//!
//! This file holds the options and the top-level flow; `procs` the child processes and the
//! /proc readers, `tools` nginx and HAProxy, `targets` the nodes and each target's start,
//! `load` the `tether load` invocation, `scenarios` the steps and the interleaved rounds, `table`
//! the Markdown tables and `scale` the `--scale` mode.

mod load;
mod procs;
mod scale;
mod scenarios;
mod table;
mod targets;
mod tools;

use clap::Parser;
use procs::{all_processes, ancestors, clock_ticks_per_s, ANCESTORS};
use scenarios::{run_rounds, steps_of, Bench, Run, Scenario, Sizes, SOURCES};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use targets::{start_nodes, start_target, Kind};
use tools::Tools;

/// The end-to-end comparison of tether with the nodes directly, nginx and HAProxy, on loopback.
#[derive(Parser, Debug)]
#[command(name = "compare")]
struct Opts {
    /// One round of short runs: a smoke test of the whole bench (under 2 minutes).
    #[arg(long)]
    quick: bool,
    /// Rounds: each target runs each scenario once per round (default 3, 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Scenarios to run, comma-separated: A (keep-alive), B (new connections), C (WebSockets),
    /// D (long-polls).
    #[arg(long, value_delimiter = ',', ignore_case = true)]
    only: Vec<Scenario>,
    /// Targets to run, comma-separated (default: all; tether-base only with --baseline).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<Kind>,
    /// Another tether binary (e.g. a release build of the previous commit) to compare with:
    /// adds the target tether-base, which runs it with tether-cookie's config, and a `vs base`
    /// column (tether, cookie over it). A relative path is taken from the package root.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// Run `tether-cookie` and `tether-iphash` with the access log on (at info, written to a
    /// file as an operator would), every other target as usual (nginx and HAProxy with theirs
    /// off, tether-base with its off): `--baseline` set to the same binary then measures what
    /// the access log costs.
    #[arg(long)]
    access_log: bool,
    /// Write every run's raw results (the load tool's reports, CPU, RSS) to this JSON file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Instead of the comparison: hold as many WebSockets through one tether as its open-file
    /// limit allows and report how many were held.
    #[arg(long)]
    scale: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// Bench name filters passed by `cargo bench NAME` (ignored).
    #[arg(hide = true)]
    filters: Vec<String>,
}

/// The line above the tables: when, on what, with which versions, and how it was run.
fn header(tools: &Tools, cmd: &str, what: &str) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let versions = match (&tools.nginx, &tools.haproxy) {
        (None, None) => String::new(),
        _ => format!(
            ", nginx {}, HAProxy {}",
            tools.nginx_version(),
            tools.haproxy_version()
        ),
    };
    let binaries = tools.binaries().map_or(String::new(), |b| format!(", {b}"));
    let access = if tools.access_log {
        " The access log is on for `tether, cookie` and `tether, ip_hash` (at info, to a file), \
         off for every other target."
    } else {
        " Access logs are off for every target."
    };
    format!(
        "**{date}**, Linux {kernel}, nproc {nproc}{versions}{binaries}, `{cmd}`: {what}{access}"
    )
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        "cargo bench --bench compare".into()
    } else {
        format!("cargo bench --bench compare -- {}", args.join(" "))
    }
}

fn main() {
    let opts = Opts::parse();
    if !opts.bench && std::env::args().len() == 1 {
        // `cargo test --benches` runs bench binaries without --bench: do not start a 10-minute run.
        eprintln!("compare: run it with `cargo bench --bench compare` (or pass --bench)");
        return;
    }
    procs::install_signal_handler();
    ANCESTORS.get_or_init(|| ancestors(&all_processes()));
    let started = Instant::now();
    let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 3 }).max(1);
    let sizes = Sizes::new(opts.quick);
    let baseline = opts.baseline.as_deref().map(|path| {
        std::fs::canonicalize(path)
            .ok()
            .filter(|p| p.is_file())
            .unwrap_or_else(|| {
                eprintln!("compare: --baseline {}: no such file", path.display());
                std::process::exit(2);
            })
    });
    if baseline.is_none() && opts.targets.contains(&Kind::TetherBase) {
        eprintln!("compare: the target tether-base needs --baseline PATH (another tether binary)");
        std::process::exit(2);
    }
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| opts.targets.is_empty() || opts.targets.contains(k))
        .filter(|k| *k != Kind::TetherBase || baseline.is_some())
        .collect();
    if baseline.is_some() && (opts.scale || !kinds.contains(&Kind::TetherBase)) {
        let why = if opts.scale { "--scale" } else { "--targets" };
        eprintln!("compare: --baseline is not used: {why} leaves out tether-base");
    }
    let steps = steps_of(&opts.only);

    let tools = if opts.scale {
        Tools::find(&[], None, false, false)
    } else {
        let http2 = steps.iter().any(|s| s.http2());
        Tools::find(&kinds, baseline, opts.access_log, http2)
    };
    let nodes = match start_nodes() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("compare: cannot start the nodes: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "compare: nodes {}",
        nodes
            .iter()
            .map(|n| format!("{} {}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let cmd = command_line();
    if opts.scale {
        match scale::scale(&nodes, &tools) {
            Ok((table, raw)) => {
                let what = "one tether process (2 workers, cookie affinity), three `tether node` \
                            backends, `tether load` holding WebSockets, all on loopback.";
                println!("{}\n{table}", header(&tools, &cmd, what));
                if let Some(path) = &opts.json {
                    write_json(path, &json!({ "command": cmd, "scale": raw }));
                }
                print_total(started);
            }
            Err(e) => {
                eprintln!("compare: scale: {e}");
                std::process::exit(1);
            }
        }
        return;
    }

    let mut targets = Vec::new();
    for &kind in &kinds {
        match start_target(kind, &nodes, &tools) {
            Ok(t) => {
                eprintln!("compare: {} on {}", kind.name(), t.addr);
                targets.push(t);
            }
            Err(e) => eprintln!("compare: {} is n/a: {e}", kind.name()),
        }
    }
    let bench = Bench {
        sizes,
        nodes: &nodes,
        tools: &tools,
        tck: clock_ticks_per_s(),
    };
    let runs = run_rounds(&bench, &mut targets, &steps, rounds);
    let what = format!(
        "{rounds} interleaved round{}, medians; three `tether node` backends (1 thread each), \
         `tether load` (1 thread) with clients bound to {SOURCES}, every process on the same \
         cores, all on loopback.",
        if rounds == 1 { "" } else { "s" }
    );
    println!("{}", header(&tools, &cmd, &what));
    print!(
        "{}",
        table::render_tables(&runs, &kinds, &bench.sizes, rounds)
    );
    if let Some(path) = &opts.json {
        let mut all = json!({
            "command": cmd,
            "rounds": rounds,
            "runs": runs.iter().map(Run::json).collect::<Vec<_>>(),
        });
        if let Some(base) = &tools.baseline {
            all["baseline"] = json!(base);
        }
        write_json(path, &all);
    }
    print_total(started);
    drop(targets);
    drop(nodes);
}

fn write_json(path: &Path, value: &Value) {
    match std::fs::write(
        path,
        serde_json::to_string_pretty(value).unwrap_or_default(),
    ) {
        Ok(()) => eprintln!("compare: raw results in {}", path.display()),
        Err(e) => eprintln!("compare: cannot write {}: {e}", path.display()),
    }
}

fn print_total(started: Instant) {
    let t = started.elapsed().as_secs();
    println!("\nTotal bench time: {} min {} s.", t / 60, t % 60);
    eprintln!("compare: done in {} min {} s", t / 60, t % 60);
}

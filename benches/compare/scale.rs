//! The `--scale` mode: as many WebSockets through one tether as its descriptors allow.

use crate::load::{base_args, finish_load, spawn_load};
use crate::procs::{nofile_limit, Usage};
use crate::scenarios::{Run, Step};
use crate::table::{errors_cell, opt};
use crate::targets::{start_target, Kind, Node};
use crate::tools::Tools;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const SCALE_SOURCES: &str = "127.0.2.0/24";

/// Descriptors left free in tether beyond its baseline (node pool, listeners, churn).
const SCALE_MARGIN: u64 = 100;

/// The scale test: its Markdown table and its raw result.
pub fn scale(nodes: &[Node], tools: &Tools) -> Result<(String, Value), String> {
    let target = start_target(Kind::TetherCookie, nodes, tools)?;
    let proc = target.proc.as_ref().expect("tether runs as a process");
    let limit = nofile_limit(proc.pid()).ok_or("cannot read tether's open-file limit")?;
    let before = Usage::of(proc.pid());
    // Every tunnel holds two descriptors in tether: the client's and the node's.
    let n = (limit.saturating_sub(before.fds + SCALE_MARGIN) / 2) as usize;
    let ramp = Duration::from_secs(10);
    let duration = ramp + Duration::from_secs(10);
    eprintln!(
        "compare: scale: tether's open-file limit is {limit}, {} in use: opening {n} WebSockets \
         over {ramp:?} from {SCALE_SOURCES}",
        before.fds
    );
    let mut args = base_args("ws", n, duration, ramp, SCALE_SOURCES);
    args.push("--hold-open".into());
    let started = Instant::now();
    let load = spawn_load(&target.url(), &args)?;
    let all_open = load
        .stderr
        .wait_for(started + duration - Duration::from_millis(300), |t| {
            t.contains("WebSockets are open")
        });
    let held_usage = Usage::of(proc.pid());
    let report = finish_load(load, started, duration)?;
    let run = Run {
        round: 0,
        step: Step::WsHold,
        kind: Kind::TetherCookie,
        cpu_s: None,
        rss_before_kib: Some(before.rss_kib),
        rss_held_kib: Some(held_usage.rss_kib),
        all_open,
        others_cpu_s: 0.0,
        others_top: Vec::new(),
        wall_s: 0.0,
        syscalls: None,
        report,
    };
    let logged = proc.stderr.text().contains("open-file limit reached");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Scale: WebSockets held by one tether process\n\n\
         | open-file limit | asked | held | descriptors in tether while held | RSS per WebSocket | errors | \"open-file limit reached\" logged |\n\
         |---:|---:|---:|---:|---:|---|---|\n\
         | {limit} | {n} | {} | {} | {} | {} | {} |",
        run.num(&["held_at_end"]),
        held_usage.fds,
        opt(run.rss_per_ws_kib(), |k| format!("{k:.1} KiB")),
        errors_cell(&[&run], Kind::TetherCookie),
        if logged { "yes" } else { "no" },
    );
    if !all_open {
        let _ = writeln!(
            out,
            "\nNot every WebSocket was open when the memory was read."
        );
    }
    let mut raw = run.json();
    raw["open_file_limit"] = json!(limit);
    raw["asked"] = json!(n);
    raw["fds_while_held"] = json!(held_usage.fds);
    raw["limit_line_logged"] = json!(logged);
    Ok((out, raw))
}

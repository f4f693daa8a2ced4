//! The `tether load` invocation: its common flags, starting it, and waiting for its JSON report.

use crate::procs::{Proc, Usage};
use crate::targets::{tether_bin, Target};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// A load process gets its duration plus its own 10 s hard grace plus this, then is killed.
const LOAD_SLACK: Duration = Duration::from_secs(25);

fn secs(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Start `tether load --json` against `url` with `args`.
pub fn spawn_load(url: &str, args: &[String]) -> Result<Proc, String> {
    Proc::spawn(
        "tether load",
        Command::new(tether_bin())
            .args(["load", "--url", url, "--json"])
            .args(args)
            .env_remove("RUST_LOG"),
    )
}

/// Wait for a load process (at most `duration` + `LOAD_SLACK` from `started`) and parse its
/// JSON report.
pub fn finish_load(mut load: Proc, started: Instant, duration: Duration) -> Result<Value, String> {
    let status = load.wait_until(started + duration + LOAD_SLACK);
    // The pipes close when the process exits; give the reader a moment to take the last line.
    load.stdout
        .wait_for(Instant::now() + Duration::from_secs(5), |_| false);
    match status {
        Some(s) if s.success() => {
            let out = load.stdout.text();
            let line = out.lines().rev().find(|l| l.starts_with('{'));
            serde_json::from_str(line.unwrap_or_default())
                .map_err(|e| format!("tether load printed no report ({e}):\n{}", load.log_tail()))
        }
        Some(s) => Err(format!("tether load failed ({s}):\n{}", load.log_tail())),
        None => Err("tether load did not finish in time and was killed".into()),
    }
}

/// Run one load to its end, reading the target's usage before and after.
pub fn measured_load(
    target: &Target,
    args: &[String],
    duration: Duration,
) -> Result<(Value, Option<Usage>, Option<Usage>), String> {
    let before = target.usage();
    let started = Instant::now();
    let load = spawn_load(&target.url(), args)?;
    let report = finish_load(load, started, duration)?;
    Ok((report, before, target.usage()))
}

/// The common load flags: flow, clients, duration, ramp, source addresses.
pub fn base_args(
    flow: &str,
    clients: usize,
    duration: Duration,
    ramp: Duration,
    sources: &str,
) -> Vec<String> {
    [
        "--flow",
        flow,
        "--clients",
        &clients.to_string(),
        "--duration",
        &secs(duration),
        "--ramp",
        &secs(ramp),
        "--source-range",
        sources,
    ]
    .map(String::from)
    .to_vec()
}

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
/// A load run's report, the proxy's usage before and after, and its system calls (with perf).
pub type Measured = (Value, Option<Usage>, Option<Usage>, Option<u64>);

pub fn measured_load(
    target: &Target,
    args: &[String],
    duration: Duration,
) -> Result<Measured, String> {
    let syscalls = match (&target.proc, &target._dir) {
        (Some(p), Some(dir)) => crate::procs::Syscalls::start(p.pid(), dir.path()),
        _ => None,
    };
    let before = target.usage();
    let started = Instant::now();
    let load = spawn_load(&target.url(), args)?;
    let report = finish_load(load, started, duration)?;
    let after = target.usage();
    Ok((report, before, after, syscalls.and_then(|s| s.finish())))
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

/// Scenario E's keep-alive load: nghttp2's `h2load` against `url` (`https://localhost:PORT`),
/// `clients` connections of 10 concurrent streams each, one thread (as `tether load`), for
/// `duration` after a second of warm-up; its summary as the report every table reads.
pub fn h2load(
    bin: &std::path::Path,
    url: &str,
    clients: usize,
    duration: Duration,
) -> Result<(Value, ()), String> {
    let started = Instant::now();
    let mut p = Proc::spawn(
        "h2load",
        Command::new(bin)
            .args(["-c", &clients.to_string(), "-m", "10", "-t", "1"])
            .args([
                "-D",
                &duration.as_secs().max(1).to_string(),
                "--warm-up-time",
                "1s",
            ])
            .arg(format!("{url}/whoami")),
    )?;
    let status = p.wait_until(started + duration + LOAD_SLACK);
    p.stdout
        .wait_for(Instant::now() + Duration::from_secs(5), |_| false);
    if !status.is_some_and(|s| s.success()) {
        return Err(format!("h2load failed:\n{}", p.log_tail()));
    }
    parse_h2load(&p.stdout.text()).map(|v| (v, ()))
}

/// The figures of h2load's summary: protocol, rate, and counts of what did not succeed.
fn parse_h2load(out: &str) -> Result<Value, String> {
    let line = |prefix: &str| out.lines().find(|l| l.starts_with(prefix)).unwrap_or("");
    let num = |s: &str| s.trim().parse::<f64>().unwrap_or(0.0);
    let protocol = line("Application protocol:")
        .trim_start_matches("Application protocol:")
        .trim()
        .to_string();
    // "finished in 5.00s, 31234.20 req/s, 3.10MB/s"
    let per_s = line("finished in")
        .split(", ")
        .nth(1)
        .and_then(|x| x.strip_suffix(" req/s"))
        .map_or(0.0, num);
    // "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
    let counts: Vec<f64> = line("requests:")
        .trim_start_matches("requests:")
        .split(',')
        .map(|part| num(part.split_whitespace().next().unwrap_or("0")))
        .collect();
    // "status codes: N 2xx, N 3xx, N 4xx, N 5xx"
    let statuses: Vec<f64> = line("status codes:")
        .trim_start_matches("status codes:")
        .split(',')
        .map(|part| num(part.split_whitespace().next().unwrap_or("0")))
        .collect();
    if counts.len() < 7 || protocol.is_empty() {
        return Err(format!("h2load printed no summary:\n{out}"));
    }
    let not_2xx = statuses.get(1..).map_or(0.0, |s| s.iter().sum());
    let errors = counts[4] + counts[5] + counts[6] + not_2xx;
    Ok(serde_json::json!({
        "protocol": protocol,
        "requests": counts[3],
        "requests_per_s": per_s,
        "errors_total": errors,
        "errors": { "failed": counts[4], "errored": counts[5], "timeout": counts[6], "not_2xx": not_2xx },
    }))
}

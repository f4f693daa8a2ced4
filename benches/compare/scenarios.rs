//! The scenarios and their steps, the sizes of each run, running one step on one target, and
//! the interleaved rounds of every step on every target.

use crate::load::{base_args, finish_load, measured_load, spawn_load};
use crate::procs::{Others, Proc, Usage};
use crate::table::{ms, rate};
use crate::targets::{start_target, Kind, Node, Target};
use crate::tools::Tools;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    A,
    B,
    C,
    D,
    E,
}

/// A measurement of one target (scenario C has two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    KeepAlive,
    NewConnection,
    WsHold,
    WsEcho,
    LongPoll,
    H2KeepAlive,
    H2WsHold,
}

impl Step {
    fn of(s: Scenario) -> &'static [Step] {
        match s {
            Scenario::A => &[Step::KeepAlive],
            Scenario::B => &[Step::NewConnection],
            Scenario::C => &[Step::WsHold, Step::WsEcho],
            Scenario::D => &[Step::LongPoll],
            Scenario::E => &[Step::H2KeepAlive, Step::H2WsHold],
        }
    }

    /// Runs over HTTP/2 at the TLS listener.
    pub fn http2(self) -> bool {
        matches!(self, Step::H2KeepAlive | Step::H2WsHold)
    }

    fn name(self) -> &'static str {
        match self {
            Step::KeepAlive => "A keep-alive",
            Step::NewConnection => "B new-connection",
            Step::WsHold => "C ws-hold",
            Step::WsEcho => "C ws-echo",
            Step::LongPoll => "D long-poll",
            Step::H2KeepAlive => "E h2 keep-alive",
            Step::H2WsHold => "E h2 ws-hold",
        }
    }
}

/// How big and how long each measurement is.
pub struct Sizes {
    /// Length of an A, B or C-echo run.
    pub run: Duration,
    /// Ramp of the 64-client runs.
    pub ramp: Duration,
    /// Clients of A, B and C-echo.
    pub clients: usize,
    /// WebSockets held in C, their ramp, and how long past the ramp they may take to open.
    pub held: usize,
    pub hold_ramp: Duration,
    pub hold_extra: Duration,
    /// Echoes per WebSocket session in C-echo (then it reconnects).
    pub messages: u32,
    /// Concurrent long-polls in D, their hold time and ramp.
    pub polls: usize,
    pub poll_hold: Duration,
    pub poll_ramp: Duration,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                run: Duration::from_secs(2),
                ramp: Duration::from_millis(200),
                clients: 64,
                held: 1000,
                hold_ramp: Duration::from_secs(1),
                hold_extra: Duration::from_secs(2),
                messages: 1000,
                polls: 500,
                poll_hold: Duration::from_secs(3),
                poll_ramp: Duration::from_millis(500),
            }
        } else {
            Sizes {
                run: Duration::from_secs(5),
                ramp: Duration::from_millis(200),
                clients: 64,
                held: 5000,
                hold_ramp: Duration::from_secs(3),
                hold_extra: Duration::from_secs(2),
                messages: 1000,
                polls: 2000,
                poll_hold: Duration::from_secs(3),
                poll_ramp: Duration::from_secs(1),
            }
        }
    }
}

/// Client source addresses of every comparison run; the scale test uses its own range.
pub const SOURCES: &str = "127.0.1.0/24";

/// A run during which other processes used more than this share of one core is flagged.
pub const DISTURBED: f64 = 0.1;

/// What one run of one target measured.
pub struct Run {
    pub round: usize,
    pub step: Step,
    pub kind: Kind,
    pub report: Value,
    /// CPU seconds of the proxy over the run (None: direct).
    pub cpu_s: Option<f64>,
    /// C-hold: the proxy's RSS before the WebSockets and while they were all open.
    pub rss_before_kib: Option<u64>,
    pub rss_held_kib: Option<u64>,
    /// C-hold: the load tool said every WebSocket was open before the RSS was read.
    pub all_open: bool,
    /// CPU seconds other processes (not this bench's) used during the run, the busiest of them
    /// (name, CPU-s), and the run's wall time.
    pub others_cpu_s: f64,
    pub others_top: Vec<(String, f64)>,
    pub wall_s: f64,
    /// System calls of the proxy's processes over the run (`perf`'s tracepoint counter; None
    /// without perf, and for `direct`).
    pub syscalls: Option<u64>,
}

impl Run {
    pub fn num(&self, path: &[&str]) -> f64 {
        path.iter()
            .try_fold(&self.report, |v, k| v.get(k))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    }

    /// System calls per one of `count` (requests, connections, round trips, polls).
    pub fn syscalls_per(&self, count: &str) -> Option<f64> {
        let n = self.num(&[count]);
        self.syscalls.filter(|_| n > 0.0).map(|s| s as f64 / n)
    }

    /// CPU seconds per million of `count`.
    pub fn cpu_per_million(&self, count: &str) -> Option<f64> {
        let n = self.num(&[count]);
        self.cpu_s.filter(|_| n > 0.0).map(|c| c / n * 1e6)
    }

    /// Did other processes use more than `DISTURBED` of a core during the run?
    pub fn disturbed(&self) -> bool {
        self.wall_s > 0.0 && self.others_cpu_s / self.wall_s > DISTURBED
    }

    pub fn rss_per_ws_kib(&self) -> Option<f64> {
        let held = self.num(&["held_at_end"]);
        match (self.rss_before_kib, self.rss_held_kib) {
            (Some(b), Some(h)) if held > 0.0 => Some((h as f64 - b as f64) / held),
            _ => None,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "round": self.round + 1,
            "step": self.step.name(),
            "target": self.kind.name(),
            "proxy_cpu_s": self.cpu_s,
            "rss_before_kib": self.rss_before_kib,
            "rss_held_kib": self.rss_held_kib,
            "rss_per_ws_kib": self.rss_per_ws_kib(),
            "all_open_when_measured": self.all_open,
            "others_cpu_s": self.others_cpu_s,
            "others_top": self.others_top,
            "wall_s": self.wall_s,
            "report": self.report,
        })
    }
}

fn cpu_seconds(before: Option<Usage>, after: Option<Usage>, tck: f64) -> Option<f64> {
    Some(after?.cpu_ticks.saturating_sub(before?.cpu_ticks) as f64 / tck)
}

/// What every run needs besides its target.
pub struct Bench<'a> {
    pub sizes: Sizes,
    pub nodes: &'a [Node],
    pub tools: &'a Tools,
    /// Clock ticks per second of /proc/PID/stat.
    pub tck: f64,
}

/// One measurement of `step` on `target`.
fn run_step(bench: &Bench, step: Step, target: &Target, round: usize) -> Result<Run, String> {
    let sizes = &bench.sizes;
    let mut run = Run {
        round,
        step,
        kind: target.kind,
        report: Value::Null,
        cpu_s: None,
        rss_before_kib: None,
        rss_held_kib: None,
        all_open: false,
        others_cpu_s: 0.0,
        others_top: Vec::new(),
        wall_s: 0.0,
        syscalls: None,
    };
    let (clients, d, ramp) = (sizes.clients, sizes.run, sizes.ramp);
    // Long-polls: one per client, the --requests budget being taken by the first polls, all in
    // flight at once; the duration only bounds the run.
    let poll_bound = sizes.poll_ramp + sizes.poll_hold + Duration::from_secs(10);
    let duration = if step == Step::LongPoll {
        poll_bound
    } else {
        d
    };
    let args = match step {
        Step::KeepAlive => base_args("http", clients, d, ramp, SOURCES),
        Step::NewConnection => {
            let mut a = base_args("http", clients, d, ramp, SOURCES);
            a.push("--new-connection".into());
            a
        }
        Step::WsEcho => {
            let mut a = base_args("ws", clients, d, ramp, SOURCES);
            a.extend(["--messages".into(), sizes.messages.to_string()]);
            a
        }
        Step::LongPoll => {
            let n = sizes.polls;
            let mut a = base_args("longpoll", n, poll_bound, sizes.poll_ramp, SOURCES);
            let path = format!("/poll?hold={}", sizes.poll_hold.as_millis());
            a.extend(["--requests".into(), n.to_string(), "--path".into(), path]);
            a.extend(["--timeout".into(), "10s".into()]);
            a
        }
        Step::WsHold => {
            // On a fresh process of the same target: memory that earlier runs left in its
            // allocator or pools would hide what the WebSockets take.
            let fresh = start_target(target.kind, bench.nodes, bench.tools)?;
            return hold_step(run, &fresh, sizes, false);
        }
        Step::H2WsHold => {
            let fresh = start_target(target.kind, bench.nodes, bench.tools)?;
            return hold_step(run, &fresh, sizes, true);
        }
        Step::H2KeepAlive => {
            let h2load = bench
                .tools
                .h2load
                .as_ref()
                .ok_or("h2load is not installed")?;
            let url = target.tls_url().ok_or("skipped: no TLS listener")?;
            let before = target.usage();
            let (report, _) = crate::load::h2load(h2load, &url, clients, d)?;
            run.report = report;
            run.cpu_s = cpu_seconds(before, target.usage(), bench.tck);
            return Ok(run);
        }
    };
    let (report, before, after, syscalls) = measured_load(target, &args, duration)?;
    run.report = report;
    run.cpu_s = cpu_seconds(before, after, bench.tck);
    run.syscalls = syscalls;
    Ok(run)
}

/// C-hold (and E-hold over HTTP/2): open `sizes.held` WebSockets, read the proxy's RSS once all
/// are open, let go (the caller then stops this proxy process).
fn hold_step(mut run: Run, target: &Target, sizes: &Sizes, http2: bool) -> Result<Run, String> {
    let Some(before) = target.usage() else {
        return Err("skipped: RSS per WebSocket is measured on proxies only".into());
    };
    let duration = sizes.hold_ramp + sizes.hold_extra;
    let mut args = base_args("ws", sizes.held, duration, sizes.hold_ramp, SOURCES);
    args.push("--hold-open".into());
    let url = if http2 {
        args.extend(["--http2".into(), "--insecure".into()]);
        target.tls_url().ok_or("skipped: no TLS listener")?
    } else {
        target.url()
    };
    let started = Instant::now();
    let load = spawn_load(&url, &args)?;
    // Read the RSS once the tool says all are open, or just before its stop at the latest.
    let read_by = started + duration - Duration::from_millis(300);
    run.all_open = load
        .stderr
        .wait_for(read_by, |t| t.contains("WebSockets are open"));
    let held = target.usage();
    run.report = finish_load(load, started, duration)?;
    run.rss_before_kib = Some(before.rss_kib);
    run.rss_held_kib = held.map(|u| u.rss_kib);
    Ok(run)
}

/// One progress line for a finished run.
fn progress_line(run: &Run) -> String {
    let errors = run.num(&["errors_total"]);
    let figure = match run.step {
        Step::KeepAlive => format!(
            "{} req/s, p99 {}",
            rate(run.num(&["requests_per_s"])),
            ms(run.num(&["request_latency_us", "p99"]))
        ),
        Step::NewConnection => format!(
            "{} conn/s, p99 {}",
            rate(run.num(&["connections_per_s"])),
            ms(run.num(&["request_latency_us", "p99"]))
        ),
        Step::H2KeepAlive => format!(
            "{} req/s over {}",
            rate(run.num(&["requests_per_s"])),
            run.report["protocol"].as_str().unwrap_or("?")
        ),
        Step::WsHold | Step::H2WsHold => format!(
            "{} held, {} KiB RSS per WebSocket{}",
            run.num(&["held_at_end"]),
            run.rss_per_ws_kib()
                .map_or("n/a".into(), |k| format!("{k:.1}")),
            if run.all_open {
                ""
            } else {
                " (not all open when measured)"
            }
        ),
        Step::WsEcho => format!(
            "{} echoes/s, p99 {}",
            rate(run.num(&["ws_round_trips_per_s"])),
            ms(run.num(&["ws_latency_us", "p99"]))
        ),
        Step::LongPoll => format!(
            "{} of {} polls completed, p99 {}",
            run.num(&["requests"]),
            run.num(&["clients"]),
            ms(run.num(&["request_latency_us", "p99"]))
        ),
    };
    let cpu = run
        .cpu_s
        .map_or(String::new(), |c| format!(", CPU {c:.2} s"));
    let others = if run.disturbed() {
        let top: Vec<String> = run
            .others_top
            .iter()
            .map(|(name, s)| format!("{name} {s:.1}"))
            .collect();
        format!(
            " [disturbed: other processes used {:.1} CPU-s: {}]",
            run.others_cpu_s,
            top.join(", ")
        )
    } else {
        String::new()
    };
    format!("{figure}{cpu}, errors {errors}{others}")
}

/// Every step of every round on every target, interleaved: in each round, each step runs on
/// every target in turn, the order rotated by round so no target always runs first or last.
pub fn run_rounds(
    bench: &Bench,
    targets: &mut [Target],
    steps: &[Step],
    rounds: usize,
) -> Vec<Run> {
    let mut runs = Vec::new();
    for round in 0..rounds {
        for &step in steps {
            for i in 0..targets.len() {
                let target = &targets[(i + round) % targets.len()];
                let needs_proxy = matches!(step, Step::WsHold | Step::H2WsHold | Step::H2KeepAlive);
                if target.gone || (needs_proxy && target.kind == Kind::Direct) {
                    continue;
                }
                let what = format!(
                    "[round {}/{rounds}] {} {}",
                    round + 1,
                    step.name(),
                    target.kind.name()
                );
                let (others, started) = (Others::now(), Instant::now());
                match run_step(bench, step, target, round) {
                    Ok(mut run) => {
                        let (ticks, top) = Others::now().since(&others);
                        run.others_cpu_s = ticks as f64 / bench.tck;
                        run.others_top = top
                            .into_iter()
                            .take(3)
                            .map(|(name, t)| (name, t as f64 / bench.tck))
                            .collect();
                        run.wall_s = started.elapsed().as_secs_f64();
                        eprintln!("{what}: {}", progress_line(&run));
                        runs.push(run);
                    }
                    Err(e) => eprintln!("{what}: failed: {e}"),
                }
                for t in targets.iter_mut() {
                    if !t.gone && t.proc.as_mut().is_some_and(Proc::has_exited) {
                        t.gone = true;
                        eprintln!(
                            "compare: {} exited; its remaining runs are skipped",
                            t.kind.name()
                        );
                    }
                }
            }
        }
    }
    runs
}

/// The scenarios' steps, in order (all four when none is named).
pub fn steps_of(only: &[Scenario]) -> Vec<Step> {
    let mut scenarios = if only.is_empty() {
        vec![
            Scenario::A,
            Scenario::B,
            Scenario::C,
            Scenario::D,
            Scenario::E,
        ]
    } else {
        only.to_vec()
    };
    scenarios.sort();
    scenarios.dedup();
    scenarios
        .into_iter()
        .flat_map(|s| Step::of(s).iter().copied())
        .collect()
}

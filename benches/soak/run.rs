//! The soak from start to verdict: the cluster up, the load and the churn started, tether
//! sampled until the end, the loads read back, the rest figures, the tables and the files.

use crate::churn::{self, Ledger, Nodes, CHURNING, STABLE};
use crate::cluster::{now_ms, Tether, NAME};
use crate::dns::Dns;
use crate::loads::{self, RAMP};
use crate::procs::lock;
use crate::sample::{self, clock, Check, Reading, Row};
use crate::socketio::SocketIo;
use crate::sticky::{self, Outcome};
use crate::{table, Plan};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// After the load: past the 4 s idle timeout of pooled node connections and their 1 s sweep.
const REST_AFTER: Duration = Duration::from_secs(8);
const SWEPT: &str = "tether_idle_node_connections_swept_total";

/// Addresses of the nodes killed more than 2 s ago.
fn dead(ledger: &Mutex<Ledger>) -> HashSet<Ipv4Addr> {
    let before = now_ms().saturating_sub(2000);
    lock(ledger)
        .nodes
        .values()
        .filter(|l| l.killed_ms.is_some_and(|k| k < before))
        .filter_map(|l| l.id.split(':').next()?.parse().ok())
        .collect()
}

fn reading(tether: &Tether, ledger: &Mutex<Ledger>, at_s: f64) -> Option<Reading> {
    let s = &tether.setup;
    sample::read(
        tether.pid(),
        s.listen.port(),
        s.node_port,
        &dead(ledger),
        at_s,
    )
}

/// A row of three readings a second apart, with nothing running but tether and the nodes.
fn rest_row(label: &str, tether: &Tether, ledger: &Mutex<Ledger>, t0: Instant) -> Row {
    let mut readings = Vec::new();
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        readings.extend(reading(tether, ledger, t0.elapsed().as_secs_f64()));
    }
    let mut row = Row::of(label.into(), t0.elapsed().as_secs_f64(), &readings);
    row.swept = tether.metric(SWEPT);
    row
}

/// Read every `SAMPLE_EVERY` until `plan.duration`; a row at warm-up and every `plan.every`
/// after it (and one at the end); every reading is kept in `all`. Stops early if tether is gone.
fn sample_until(
    tether: &Tether,
    ledger: &Mutex<Ledger>,
    t0: Instant,
    plan: &Plan,
    all: &mut Vec<Reading>,
) -> Vec<Row> {
    let mut row_at: Vec<Duration> = Vec::new();
    // The last row a second before the end, while every load still runs.
    let last = plan.duration - Duration::from_secs(1);
    let mut t = plan.warmup;
    while t < last {
        row_at.push(t);
        t += plan.every;
    }
    if row_at
        .last()
        .is_none_or(|l| last - *l > Duration::from_secs(2))
    {
        row_at.push(last);
    }
    let mut rows = Vec::new();
    let mut readings: Vec<Reading> = Vec::new();
    let mut next = t0;
    for at in row_at {
        while next <= t0 + at {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let Some(r) = reading(tether, ledger, t0.elapsed().as_secs_f64()) else {
                lock(ledger)
                    .problems
                    .push("tether's /proc entry is gone: it exited during the soak".into());
                return rows;
            };
            readings.push(r);
            next += SAMPLE_EVERY;
        }
        // The first row looks at the half interval before it; the others at all since the last.
        let from = if rows.is_empty() {
            at.as_secs_f64() - plan.every.as_secs_f64() / 2.0
        } else {
            0.0
        };
        let window: Vec<Reading> = readings
            .iter()
            .filter(|r| r.at_s >= from)
            .copied()
            .collect();
        all.append(&mut readings);
        let mut row = Row::of(clock(at.as_secs_f64()), at.as_secs_f64(), &window);
        row.swept = tether.metric(SWEPT);
        {
            let l = lock(ledger);
            row.replaced = l.replacements;
            row.reloads = l.reloads_confirmed;
        }
        eprintln!(
            "soak: {:>5.0} s  fds {} (max {})  RSS {:.1} MiB  clients {}  node conns {}  \
             to killed nodes {}  CLOSE_WAIT {} (max {})  swept {}  replaced {}  reloads {}",
            row.at_s,
            row.fds,
            row.fds_max,
            row.rss_kib as f64 / 1024.0,
            row.clients,
            row.to_nodes,
            row.to_dead_max,
            row.close_wait,
            row.close_wait_max,
            row.swept.map_or("n/a".into(), |s| format!("{s:.0}")),
            row.replaced,
            row.reloads,
        );
        rows.push(row);
    }
    rows
}

/// tether's log by level, and its most frequent warn/error messages (fields left out).
fn log_summary(log: &str) -> String {
    let mut levels: BTreeMap<&str, u64> = BTreeMap::new();
    let mut messages: BTreeMap<String, u64> = BTreeMap::new();
    for line in log.lines() {
        let mut words = line.split_whitespace().skip(1);
        let Some(level) = words.next() else { continue };
        if !matches!(level, "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR") {
            continue;
        }
        *levels.entry(level).or_default() += 1;
        if matches!(level, "WARN" | "ERROR") {
            let text: Vec<&str> = words.take_while(|w| !w.contains('=')).collect();
            *messages
                .entry(format!("{level} {}", text.join(" ")))
                .or_default() += 1;
        }
    }
    let mut top: Vec<(String, u64)> = messages.into_iter().collect();
    top.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let levels: Vec<String> = levels.iter().map(|(l, n)| format!("{n} {l}")).collect();
    let mut out = format!(
        "tether's log: {} lines ({}).\n",
        log.lines().count(),
        levels.join(", ")
    );
    for (m, n) in top.iter().take(8) {
        out.push_str(&format!("- {n}× `{m}`\n"));
    }
    out
}

fn header(plan: &Plan) -> String {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "**{date}**, Linux {}, nproc {nproc}, `{}`: {} s of load through tether \
         (`affinity: {}`); {STABLE} stable and {CHURNING} churning `tether node`s discovered \
         through `{NAME}` (refresh 1 s), one replaced every {} s, a config reload every {} s; \
         rows every {} s after a {} s warm-up.",
        kernel.trim(),
        plan.command,
        plan.duration.as_secs(),
        plan.affinity,
        churn::REPLACE_EVERY.as_secs(),
        churn::RELOAD_EVERY.as_secs(),
        plan.every.as_secs(),
        plan.warmup.as_secs(),
    )
}

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("soak")
}

/// The whole soak; true if every check passed.
pub fn soak(plan: &Plan) -> Result<bool, String> {
    let started = Instant::now();
    let ledger = Mutex::new(Ledger::default());
    let dns = Dns::start(NAME)?;
    let mut nodes = Nodes::start(&ledger)?;
    nodes.publish(&dns, &ledger);
    let socketio = SocketIo::start(&ledger)?;
    let tether = Tether::start(dns.addr, nodes.port, plan.affinity, &socketio.nodes)?;
    let ids = tether.node_ids()?;
    eprintln!(
        "soak: DNS on {}, tether on {} (admin {}), nodes {}",
        dns.addr,
        tether.setup.listen,
        tether.setup.admin,
        ids.join(", ")
    );
    let t0 = Instant::now();
    let before = rest_row("at rest, before the load", &tether, &ledger, t0);

    let soak_start_ms = now_ms();
    let t0 = Instant::now();
    let url = format!("http://{}", tether.setup.listen);
    let specs = loads::specs();
    let running: Vec<loads::Load> = specs
        .iter()
        .map(|s| loads::start(s, &url, plan.duration))
        .collect::<Result<_, _>>()?;
    eprintln!(
        "soak: {} loads running for {} s; churn from {} s",
        running.len(),
        plan.duration.as_secs(),
        RAMP.as_secs()
    );
    let mut readings = Vec::new();
    let rows = std::thread::scope(|scope| {
        let churn = scope.spawn(|| {
            churn::run(
                &mut nodes,
                &dns,
                &tether,
                &ledger,
                t0 + RAMP,
                t0 + plan.duration,
            )
        });
        let rows = sample_until(&tether, &ledger, t0, plan, &mut readings);
        if churn.join().is_err() {
            lock(&ledger)
                .problems
                .push("the churn thread panicked".into());
        }
        rows
    });
    let mut reports: Vec<(&str, String, Value)> = Vec::new();
    for load in running {
        let (flow, what) = (load.flow, load.what.clone());
        match load.finish() {
            Ok(r) => reports.push((flow, what, r)),
            Err(e) => lock(&ledger)
                .problems
                .push(format!("tether load ({flow}): {e}")),
        }
    }
    eprintln!("soak: loads done; at rest in {} s", REST_AFTER.as_secs());
    std::thread::sleep(REST_AFTER);
    let after = rest_row("at rest, after the load", &tether, &ledger, t0);
    let log = tether.log();
    let decisions = tether.series("tether_affinity_decisions_total");
    let dns_queries = dns.queries();
    drop(tether);
    drop(nodes);
    drop(dns);

    let ledger = ledger.into_inner().unwrap_or_else(|e| e.into_inner());
    let outcomes: Vec<Outcome> = reports
        .iter()
        .map(|(flow, _, r)| sticky::analyse(flow, r, &ledger, soak_start_ms))
        .collect();
    let (warmup_s, end_s) = (plan.warmup.as_secs_f64(), plan.duration.as_secs_f64());
    let mut checks = sample::verdict(&rows, warmup_s, end_s, &before, &after);
    let violations: u64 = outcomes.iter().map(|o| o.violations).sum();
    checks.push(Check {
        what: "0 stickiness violations for clients whose node stayed".into(),
        ok: violations == 0 && reports.len() == specs.len(),
        detail: format!(
            "{violations} moves from a node still in DNS over {} clients of {} loads ({} moved after their node left)",
            outcomes.iter().map(|o| o.clients).sum::<u64>(),
            reports.len(),
            outcomes.iter().map(|o| o.moved_clients).sum::<u64>(),
        ),
    });
    let other: u64 = outcomes.iter().flat_map(|o| o.errors_other.values()).sum();
    let late: u64 = outcomes.iter().map(|o| o.late_picks).sum();
    checks.push(Check {
        what: "no error or late pick unrelated to a node kill".into(),
        ok: other == 0 && late == 0,
        detail: format!("{other} other errors, {late} late picks"),
    });
    checks.push(Check {
        what: "churn and reloads as planned".into(),
        ok: ledger.problems.is_empty() && ledger.replacements > 0,
        detail: format!(
            "{} replacements, {}/{} reloads confirmed, {} problems",
            ledger.replacements,
            ledger.reloads_confirmed,
            ledger.reloads_sent,
            ledger.problems.len()
        ),
    });
    let whats: Vec<(String, String)> = reports
        .iter()
        .map(|(f, w, _)| (f.to_string(), w.clone()))
        .collect();
    println!("{}\n", header(plan));
    println!("### tether's process (medians of the readings every 2 s since the row before)\n");
    println!("{}", table::resources(&before, &rows, &after));
    println!(
        "### Churn\n\n{}",
        table::churn(&ledger, dns_queries, &decisions)
    );
    println!("### Stickiness and errors, per load\n");
    println!("{}", table::stickiness(&outcomes, &whats));
    println!("### Verdict\n\n{}", table::verdict(&checks));
    println!("{}", log_summary(&log));
    let t = started.elapsed().as_secs();
    println!("Total soak time: {} min {} s.", t / 60, t % 60);

    let dir = out_dir();
    let raw = json!({
        "command": plan.command,
        "soak_start_unix_ms": soak_start_ms,
        "before": before, "rows": rows, "after": after, "readings": readings,
        "ledger": ledger, "outcomes": outcomes, "checks": checks,
        "reports": reports.iter().map(|(f, _, r)| json!({"flow": f, "report": r})).collect::<Vec<_>>(),
    });
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("tether.log"), &log))
        .and_then(|()| std::fs::write(dir.join("soak.json"), raw.to_string()));
    match written {
        Ok(()) => eprintln!(
            "soak: tether's log and the raw results in {}",
            dir.display()
        ),
        Err(e) => eprintln!("soak: cannot write to {}: {e}", dir.display()),
    }
    let ok = checks.iter().all(|c| c.ok);
    eprintln!(
        "soak: {} in {} min {} s",
        if ok {
            "every check passed"
        } else {
            "a check FAILED"
        },
        t / 60,
        t % 60
    );
    Ok(ok)
}

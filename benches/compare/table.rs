//! The Markdown tables: medians over the rounds, ratios between targets, and the cells.

use crate::scenarios::{Run, Sizes, Step, DISTURBED};
use crate::targets::Kind;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

pub fn rate(x: f64) -> String {
    if x >= 100_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if x >= 1000.0 {
        format!("{:.1}k", x / 1000.0)
    } else {
        format!("{x:.0}")
    }
}

/// Microseconds as milliseconds.
pub fn ms(us: f64) -> String {
    let m = us / 1000.0;
    if m >= 100.0 {
        format!("{m:.0} ms")
    } else {
        format!("{m:.2} ms")
    }
}

pub fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("n/a".into(), f)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "–".into(),
    }
}

/// One column of a scenario's table: a figure per run, shown as its median per target.
struct Column {
    title: &'static str,
    value: fn(&Run) -> Option<f64>,
    show: fn(f64) -> String,
}

/// A column of text made from all the runs of one target (not a median).
struct TextColumn {
    title: &'static str,
    cell: fn(&[&Run], Kind) -> String,
}

/// A scenario's table: its main figure with ratios (to direct when it is a rate; tether's to
/// nginx and HAProxy), the other figures, then errors and violations over all rounds.
struct Table {
    title: String,
    step: Step,
    main: Column,
    vs_direct: bool,
    rest: Vec<Column>,
    text: Option<TextColumn>,
}

/// Medians of a column for every target that ran.
fn medians(runs: &[&Run], value: fn(&Run) -> Option<f64>) -> BTreeMap<Kind, f64> {
    let mut by: BTreeMap<Kind, Vec<f64>> = BTreeMap::new();
    for r in runs {
        if let Some(v) = value(r) {
            by.entry(r.kind).or_default().push(v);
        }
    }
    by.into_iter()
        .filter_map(|(k, v)| Some((k, median(v)?)))
        .collect()
}

/// Errors over all rounds, with their kinds: `0`, or `12 (timeout 10, io 2)`.
pub fn errors_cell(runs: &[&Run], kind: Kind) -> String {
    let mut total = 0.0;
    let mut kinds: BTreeMap<String, f64> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.kind == kind) {
        total += r.num(&["errors_total"]);
        if let Some(Value::Object(m)) = r.report.get("errors") {
            for (k, v) in m {
                *kinds.entry(k.clone()).or_default() += v.as_f64().unwrap_or(0.0);
            }
        }
    }
    let detail: Vec<String> = kinds
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if detail.is_empty() {
        format!("{total}")
    } else {
        format!("{total} ({})", detail.join(", "))
    }
}

impl Table {
    fn head(&self, vs_base: bool) -> Vec<&str> {
        let mut head = vec!["target", self.main.title];
        if self.vs_direct {
            head.push("vs direct");
        }
        if vs_base {
            head.push("vs base");
        }
        head.extend(["tether vs nginx", "tether vs HAProxy"]);
        head.extend(self.rest.iter().map(|c| c.title));
        head.extend(self.text.iter().map(|t| t.title));
        head.extend(["errors", "violations"]);
        head
    }

    /// The Markdown table of this scenario (nothing if it did not run).
    fn render(&self, out: &mut String, all: &[Run], kinds: &[Kind]) {
        let runs: Vec<&Run> = all.iter().filter(|r| r.step == self.step).collect();
        if runs.is_empty() {
            return;
        }
        let main = medians(&runs, self.main.value);
        let rest: Vec<_> = self.rest.iter().map(|c| medians(&runs, c.value)).collect();
        // With a baseline, `tether, cookie` is compared to it: the same config, the other build.
        let vs_base = kinds.contains(&Kind::TetherBase);
        let head = self.head(vs_base);
        let _ = writeln!(out, "\n### {}\n", self.title);
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(head.len() - 1));
        for &kind in kinds {
            let mine: Vec<&Run> = runs.iter().copied().filter(|r| r.kind == kind).collect();
            if mine.is_empty() && kind == Kind::Direct {
                // Not measured on the nodes directly (C1: memory is measured on proxies).
                continue;
            }
            if mine.is_empty() {
                let mut row = vec!["n/a".to_string(); head.len()];
                row[0] = kind.label().into();
                let _ = writeln!(out, "| {} |", row.join(" | "));
                continue;
            }
            let m = main.get(&kind).copied();
            let mut row = vec![kind.label().to_string(), opt(m, self.main.show)];
            if self.vs_direct {
                row.push(match kind {
                    Kind::Direct => "–".into(),
                    _ => ratio(m, main.get(&Kind::Direct).copied()),
                });
            }
            if vs_base {
                row.push(match kind {
                    Kind::TetherCookie => ratio(m, main.get(&Kind::TetherBase).copied()),
                    _ => "–".into(),
                });
            }
            for other in [Kind::Nginx, Kind::Haproxy] {
                row.push(if kind.is_tether() {
                    ratio(m, main.get(&other).copied())
                } else {
                    "–".into()
                });
            }
            for (c, med) in self.rest.iter().zip(&rest) {
                row.push(opt(med.get(&kind).copied(), c.show));
            }
            row.extend(self.text.iter().map(|t| (t.cell)(&runs, kind)));
            row.push(errors_cell(&runs, kind));
            let violations: f64 = mine.iter().map(|r| r.num(&["violations"])).sum();
            row.push(format!("{violations}"));
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
    }
}

fn rate_col(title: &'static str, value: fn(&Run) -> Option<f64>) -> Column {
    Column {
        title,
        value,
        show: rate,
    }
}

fn cpu_col(title: &'static str, value: fn(&Run) -> Option<f64>) -> Column {
    Column {
        title,
        value,
        show: |x| format!("{x:.1}"),
    }
}

/// System calls per unit of work, from perf's tracepoint counter (n/a without perf).
fn syscalls_col(title: &'static str, value: fn(&Run) -> Option<f64>) -> Column {
    Column {
        title,
        value,
        show: |x| format!("{x:.2}"),
    }
}

fn p99_col(value: fn(&Run) -> Option<f64>) -> Column {
    Column {
        title: "p99",
        value,
        show: ms,
    }
}

fn p99_http(r: &Run) -> Option<f64> {
    Some(r.num(&["request_latency_us", "p99"]))
}

fn p99_ws(r: &Run) -> Option<f64> {
    Some(r.num(&["ws_latency_us", "p99"]))
}

/// The tables of every scenario, in order.
fn tables(sizes: &Sizes) -> Vec<Table> {
    let (n, secs) = (sizes.clients, sizes.run.as_secs_f64());
    vec![
        Table {
            title: format!("A. Keep-alive GET `/whoami`, {n} connections, {secs:.0} s per run"),
            step: Step::KeepAlive,
            main: rate_col("requests/s", |r| Some(r.num(&["requests_per_s"]))),
            vs_direct: true,
            rest: vec![
                p99_col(p99_http),
                cpu_col("proxy CPU-s per M requests", |r| {
                    r.cpu_per_million("requests")
                }),
                syscalls_col("proxy syscalls per request", |r| r.syscalls_per("requests")),
            ],
            text: None,
        },
        Table {
            title: format!(
                "B. A new connection per request (`Connection: close`), {n} clients, {secs:.0} s \
                 per run"
            ),
            step: Step::NewConnection,
            main: rate_col("connections/s", |r| Some(r.num(&["connections_per_s"]))),
            vs_direct: true,
            rest: vec![
                p99_col(p99_http),
                cpu_col("proxy CPU-s per M connections", |r| {
                    r.cpu_per_million("connections")
                }),
                syscalls_col("proxy syscalls per connection", |r| {
                    r.syscalls_per("connections")
                }),
            ],
            text: None,
        },
        Table {
            title: format!(
                "C1. {} WebSockets held open (ramp {:.0} s): proxy memory",
                sizes.held,
                sizes.hold_ramp.as_secs_f64()
            ),
            step: Step::WsHold,
            main: Column {
                title: "RSS per open WebSocket",
                value: Run::rss_per_ws_kib,
                show: |k| format!("{k:.1} KiB"),
            },
            vs_direct: false,
            rest: vec![
                Column {
                    title: "held",
                    value: |r| Some(r.num(&["held_at_end"])),
                    show: |x| format!("{x:.0}"),
                },
                Column {
                    title: "proxy RSS while held",
                    value: |r| r.rss_held_kib.map(|k| k as f64),
                    show: |k| format!("{:.1} MiB", k / 1024.0),
                },
            ],
            text: None,
        },
        Table {
            title: format!("C2. WebSocket echo, {n} WebSockets, {secs:.0} s per run"),
            step: Step::WsEcho,
            main: rate_col("round trips/s", |r| Some(r.num(&["ws_round_trips_per_s"]))),
            vs_direct: true,
            rest: vec![
                p99_col(p99_ws),
                cpu_col("proxy CPU-s per M round trips", |r| {
                    r.cpu_per_million("ws_round_trips")
                }),
                syscalls_col("proxy syscalls per round trip", |r| {
                    r.syscalls_per("ws_round_trips")
                }),
            ],
            text: None,
        },
        Table {
            title: format!(
                "D. {} concurrent {:.0}-second long-polls",
                sizes.polls,
                sizes.poll_hold.as_secs_f64()
            ),
            step: Step::LongPoll,
            main: Column {
                title: "proxy CPU-s",
                value: |r| r.cpu_s,
                show: |x| format!("{x:.2}"),
            },
            vs_direct: false,
            rest: vec![
                p99_col(p99_http),
                syscalls_col("proxy syscalls per poll", |r| r.syscalls_per("requests")),
            ],
            text: Some(TextColumn {
                title: "completed (each round)",
                cell: completed_cell,
            }),
        },
        Table {
            title: format!(
                "E1. HTTP/2 over TLS: keep-alive GET `/whoami` by `h2load`, {n} connections × 10 \
                 streams, {secs:.0} s per run (after 1 s of warm-up)"
            ),
            step: Step::H2KeepAlive,
            main: rate_col("requests/s", |r| Some(r.num(&["requests_per_s"]))),
            vs_direct: false,
            rest: vec![cpu_col("proxy CPU-s per M requests", |r| {
                r.cpu_per_million("requests")
            })],
            text: Some(TextColumn {
                title: "protocol",
                cell: protocol_cell,
            }),
        },
        Table {
            title: format!(
                "E2. {} WebSockets held open over HTTP/2 (one connection and one extended CONNECT \
                 stream each): proxy memory",
                sizes.held
            ),
            step: Step::H2WsHold,
            main: Column {
                title: "RSS per open WebSocket",
                value: Run::rss_per_ws_kib,
                show: |k| format!("{k:.1} KiB"),
            },
            vs_direct: false,
            rest: vec![Column {
                title: "held",
                value: |r| Some(r.num(&["held_at_end"])),
                show: |x| format!("{x:.0}"),
            }],
            text: None,
        },
    ]
}

/// E1: what `h2load` negotiated on each run (`h2` expected).
fn protocol_cell(runs: &[&Run], kind: Kind) -> String {
    let mut seen: Vec<String> = runs
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.report["protocol"].as_str().unwrap_or("?").to_string())
        .collect();
    seen.dedup();
    seen.join(", ")
}

/// Every scenario's table, in Markdown, and what to read them with.
pub fn render_tables(runs: &[Run], kinds: &[Kind], sizes: &Sizes, rounds: usize) -> String {
    let mut out = String::new();
    for t in tables(sizes) {
        t.render(&mut out, runs, kinds);
    }
    let _ = writeln!(
        out,
        "\nMedians of {rounds} round{}; errors and violations are totals over all rounds. \
         Ratios are the row's figure over the other's (rates: above 1 is better; CPU and \
         memory: below 1 is better). \"One node directly\" sends all load to one node (one \
         thread): where the node is the bottleneck (new connections, WebSocket echo) a proxy \
         spreading clients over the three nodes can beat it. nginx's `ip_hash` hashes the first \
         three octets of IPv4 addresses, so all clients (one /24) reach one node through it.",
        if rounds == 1 { "" } else { "s" }
    );
    if kinds.contains(&Kind::TetherBase) {
        let _ = writeln!(
            out,
            "\n`vs base` is `tether, cookie` over `tether baseline, cookie`: the same config run \
             by the baseline binary, interleaved with it in the same rounds."
        );
    }
    let disturbed = runs.iter().filter(|r| r.disturbed()).count();
    let most = runs.iter().map(|r| r.others_cpu_s).fold(0.0, f64::max);
    let _ = if disturbed == 0 {
        writeln!(
            out,
            "\nThe machine was otherwise idle: other processes used at most {most:.2} CPU-s \
             during any run."
        )
    } else {
        writeln!(
            out,
            "\n**Disturbed:** other processes used more than {:.0}% of a core during {disturbed} \
             of {} runs (up to {most:.1} CPU-s in one run); those figures are noisier.",
            DISTURBED * 100.0,
            runs.len()
        )
    };
    out
}

/// D: completed polls of every round, e.g. `2000/2000, 2000/2000, 1998/2000`.
fn completed_cell(runs: &[&Run], kind: Kind) -> String {
    let cells: Vec<String> = runs
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| {
            let (done, want) = (r.num(&["requests"]), r.num(&["clients"]));
            let mark = if done < want { " **incomplete**" } else { "" };
            format!("{done}/{want}{mark}")
        })
        .collect();
    cells.join(", ")
}

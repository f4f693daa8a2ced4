//! The soak's Markdown: the resource rows, the churn summary, the stickiness table and the
//! verdict, as printed on stdout for `benches/README.md`.

use crate::churn::Ledger;
use crate::sample::{Check, Row};
use crate::sticky::{by_kind, Outcome};
use std::fmt::Write as _;

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// `median / max` of a few numbers.
fn spread(v: &[u64]) -> String {
    let mut v = v.to_vec();
    v.sort_unstable();
    match (v.get(v.len() / 2), v.last()) {
        (Some(m), Some(x)) => format!("{m} / {x}"),
        _ => "–".into(),
    }
}

pub fn resources(before: &Row, rows: &[Row], after: &Row) -> String {
    let mut out = String::from(
        "| time | fds (median / max) | RSS MiB | client conns | node conns | to killed nodes (max) | CLOSE_WAIT (median / max) | idle node conns swept | nodes replaced | reloads |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let all = std::iter::once(before)
        .chain(rows)
        .chain(std::iter::once(after));
    for r in all {
        let _ = writeln!(
            out,
            "| {} | {} / {} | {} | {} | {} | {} | {} / {} | {} | {} | {} |",
            r.label,
            r.fds,
            r.fds_max,
            mib(r.rss_kib),
            r.clients,
            r.to_nodes,
            r.to_dead_max,
            r.close_wait,
            r.close_wait_max,
            r.swept.map_or("n/a".into(), |s| format!("{s:.0}")),
            r.replaced,
            r.reloads,
        );
    }
    out
}

/// The churn, and how tether decided where requests went (`tether_affinity_decisions_total`).
pub fn churn(ledger: &Ledger, dns_queries: u64, decisions: &[(String, f64)]) -> String {
    let killed = ledger
        .nodes
        .values()
        .filter(|l| l.killed_ms.is_some())
        .count();
    let mut out = String::from(
        "| nodes replaced | killed | discovery lag (median / max) | reloads sent | confirmed by /status | reload lag (median / max) | DNS queries answered | problems |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let _ = writeln!(
        out,
        "| {} | {killed} | {} ms | {} | {} | {} ms | {dns_queries} | {} |",
        ledger.replacements,
        spread(&ledger.discovery_lag_ms),
        ledger.reloads_sent,
        ledger.reloads_confirmed,
        spread(&ledger.reload_lag_ms),
        ledger.problems.len(),
    );
    let decisions: Vec<String> = decisions
        .iter()
        .map(|(labels, n)| format!("{n:.0} {labels}"))
        .collect();
    let _ = writeln!(
        out,
        "\ntether's affinity decisions (`tether_affinity_decisions_total`): {}.",
        if decisions.is_empty() {
            "n/a".into()
        } else {
            decisions.join(", ")
        }
    );
    for p in &ledger.problems {
        let _ = writeln!(out, "\n- {p}");
    }
    out
}

pub fn stickiness(outcomes: &[Outcome], whats: &[(String, String)]) -> String {
    let mut out = String::from(
        "| load | clients | on a stable node throughout | moved after their node left (moves) | moves from a node still in DNS | late picks of a dropped node | errors just after their node was killed | other errors | requests | ws round trips | `tether load` violations |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for o in outcomes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} ({}) | **{}** | {} | {} | {} | {} | {} | {} |",
            o.flow,
            o.clients,
            o.on_stable_throughout,
            o.moved_clients,
            o.moves_explained,
            o.violations,
            o.late_picks,
            by_kind(&o.errors_at_kill),
            by_kind(&o.errors_other),
            o.requests,
            o.ws_round_trips,
            o.tether_load_violations,
        );
    }
    out.push('\n');
    for (flow, what) in whats {
        let _ = writeln!(out, "- {flow}: {what}");
    }
    for o in outcomes {
        let examples = o
            .violation_examples
            .iter()
            .chain(&o.late_pick_examples)
            .chain(&o.error_examples);
        for e in examples {
            let _ = writeln!(out, "- {}: {e}", o.flow);
        }
    }
    out
}

pub fn verdict(checks: &[Check]) -> String {
    let mut out = String::from("| check | result | detail |\n|---|---|---|\n");
    for c in checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            c.what,
            if c.ok { "ok" } else { "**FAILED**" },
            c.detail
        );
    }
    out
}

//! Stickiness for clients whose node stayed: every client's history (from `tether load
//! --history`) checked against the churn's ledger. A move is explained only if the node the
//! client was on had been taken out of DNS before the move was seen; any other move is a
//! violation. Errors are told apart the same way: right after the client's node was killed,
//! or not.

use crate::churn::{Ledger, Life};
use crate::loads::POLL_HOLD_MS;
use serde_json::Value;
use std::collections::BTreeMap;

/// An error up to this long after the client's node was killed is the kill's doing (a cut
/// WebSocket, a long-poll in flight).
const KILL_WINDOW_MS: u64 = 3000;
/// A first answer from a node can arrive this long after tether routed the request (a
/// long-poll it held): a node's first answer to a client later than this after tether's
/// `/status` stopped listing it means tether picked a node it no longer had.
const LATE_PICK_MS: u64 = POLL_HOLD_MS + 1000;
/// Examples kept per kind.
const EXAMPLES: usize = 5;

/// What one load's clients went through.
#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    pub flow: String,
    /// Clients that saw at least one node.
    pub clients: u64,
    /// Clients that only ever saw one of the stable nodes (never replaced).
    pub on_stable_throughout: u64,
    /// Clients that moved only because their node left, and their moves.
    pub moved_clients: u64,
    pub moves_explained: u64,
    /// Moves from a node that was still in DNS: broken stickiness.
    pub violations: u64,
    pub violation_examples: Vec<String>,
    /// First answers from a node tether had dropped more than `LATE_PICK_MS` before.
    pub late_picks: u64,
    pub late_pick_examples: Vec<String>,
    /// Errors within `KILL_WINDOW_MS` after the client's node was killed, by kind.
    pub errors_at_kill: BTreeMap<String, u64>,
    /// Every other error, by kind, with examples.
    pub errors_other: BTreeMap<String, u64>,
    pub error_examples: Vec<String>,
    /// `tether load`'s own count: clients that saw two nodes (explained or not).
    pub tether_load_violations: u64,
    pub requests: u64,
    pub ws_round_trips: u64,
    pub held_peak: u64,
}

fn keep(examples: &mut Vec<String>, what: impl FnOnce() -> String) {
    if examples.len() < EXAMPLES {
        examples.push(what());
    }
}

/// Seconds into the soak of a Unix-ms time, for examples.
fn at(t: u64, soak_start_ms: u64) -> String {
    format!("{:.1} s", t.saturating_sub(soak_start_ms) as f64 / 1000.0)
}

/// Check one load's report against the ledger.
pub fn analyse(flow: &str, report: &Value, ledger: &Ledger, soak_start_ms: u64) -> Outcome {
    let num = |k: &str| report[k].as_u64().unwrap_or(0);
    let mut o = Outcome {
        flow: flow.to_string(),
        tether_load_violations: num("violations"),
        requests: num("requests"),
        ws_round_trips: num("ws_round_trips"),
        held_peak: num("held_peak"),
        ..Outcome::default()
    };
    let history = &report["history"];
    let start = history["started_unix_ms"].as_u64().unwrap_or(0);
    let life = |id: &str| ledger.nodes.get(id);
    for client in history["clients"].as_array().into_iter().flatten() {
        let index = client["client"].as_u64().unwrap_or(0);
        let cflow = client["flow"].as_str().unwrap_or("?");
        let mut current: Option<&str> = None;
        let mut explained = 0;
        let mut only_stable = true;
        let mut saw_node = false;
        for ev in client["events"].as_array().into_iter().flatten() {
            let t = start + ev["at_ms"].as_u64().unwrap_or(0);
            if let Some(node) = ev["node"].as_str() {
                saw_node = true;
                let to: Option<&Life> = life(node);
                only_stable &= to.is_some_and(|l| l.stable);
                if let Some(prev) = current {
                    let left = life(prev).and_then(|l| l.out_dns_ms);
                    if left.is_some_and(|out| out <= t) {
                        explained += 1;
                    } else {
                        o.violations += 1;
                        keep(&mut o.violation_examples, || {
                            format!(
                                "client {index} ({cflow}) at {}: {prev} (still in DNS) then {node}",
                                at(t, soak_start_ms)
                            )
                        });
                    }
                }
                let late = match to {
                    None => true,
                    Some(l) => l.seen_out_ms.is_some_and(|s| t > s + LATE_PICK_MS),
                };
                if late {
                    o.late_picks += 1;
                    keep(&mut o.late_pick_examples, || {
                        format!(
                            "client {index} ({cflow}) reached {node} at {}",
                            at(t, soak_start_ms)
                        )
                    });
                }
                current = Some(node);
            } else if let Some(kind) = ev["error"].as_str() {
                let killed = current.and_then(life).and_then(|l| l.killed_ms);
                if killed.is_some_and(|k| k <= t && t <= k + KILL_WINDOW_MS) {
                    *o.errors_at_kill.entry(kind.to_string()).or_default() += 1;
                } else {
                    *o.errors_other.entry(kind.to_string()).or_default() += 1;
                    keep(&mut o.error_examples, || {
                        format!(
                            "client {index} ({cflow}) at {}: {kind} on {}",
                            at(t, soak_start_ms),
                            current.unwrap_or("no node yet")
                        )
                    });
                }
            }
        }
        if saw_node {
            o.clients += 1;
            if explained > 0 {
                o.moved_clients += 1;
                o.moves_explained += explained;
            } else if only_stable {
                o.on_stable_throughout += 1;
            }
        }
    }
    o
}

/// `kind n, kind n` or `0`.
pub fn by_kind(errors: &BTreeMap<String, u64>) -> String {
    let total: u64 = errors.values().sum();
    if total == 0 {
        return "0".into();
    }
    let kinds: Vec<String> = errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{total} ({})", kinds.join(", "))
}

//! tether's process over time: descriptors, RSS and its TCP sockets by side and state, read from
//! /proc every 2 s and summarised into one row per interval (medians, so a reading taken amid a
//! burst of connections does not decide anything), and the verdict on those rows.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// TCP states of /proc/net/tcp.
const ESTABLISHED: u8 = 0x01;
const CLOSE_WAIT: u8 = 0x08;
const LISTEN: u8 = 0x0A;

/// How far above the warm-up row descriptors and RSS may be in the last rows (a fall is shown
/// but passes: memory the allocator hands back after the first reload is not a leak).
pub const FLAT: f64 = 0.05;

/// One look at tether's process.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Reading {
    pub at_s: f64,
    pub fds: u64,
    pub rss_kib: u64,
    /// Established connections from clients (local port: tether's listener).
    pub clients: u64,
    /// Connections to nodes (remote port: the nodes' port), any state.
    pub to_nodes: u64,
    /// Of those, to nodes killed more than 2 s before.
    pub to_dead: u64,
    pub close_wait: u64,
    /// Of those, on connections from clients (the rest are to nodes, or elsewhere).
    pub close_wait_clients: u64,
}

/// One TCP socket of /proc/net/tcp{,6}: state, local port, remote address (IPv4 only) and port.
struct Sock {
    state: u8,
    local_port: u16,
    remote: Option<Ipv4Addr>,
    remote_port: u16,
}

fn hex_port(field: &str) -> u16 {
    field
        .rsplit(':')
        .next()
        .and_then(|p| u16::from_str_radix(p, 16).ok())
        .unwrap_or(0)
}

/// `0100007F:1F90` is 127.0.0.1:8080 (the address in the kernel's byte order, little-endian here).
fn hex_ipv4(field: &str) -> Option<Ipv4Addr> {
    let (ip, _) = field.split_once(':')?;
    (ip.len() == 8)
        .then(|| u32::from_str_radix(ip, 16).ok())
        .flatten()
        .map(|v| Ipv4Addr::from(v.to_le_bytes()))
}

/// Every TCP socket of tether's network namespace, by inode.
fn sockets(pid: u32) -> HashMap<u64, Sock> {
    let mut out = HashMap::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let (Ok(state), Ok(inode)) = (u8::from_str_radix(f[3], 16), f[9].parse::<u64>()) else {
                continue;
            };
            out.insert(
                inode,
                Sock {
                    state,
                    local_port: hex_port(f[1]),
                    remote: hex_ipv4(f[2]),
                    remote_port: hex_port(f[2]),
                },
            );
        }
    }
    out
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Read tether's descriptors (and which are sockets), RSS and sockets now; None once it is gone.
pub fn read(
    pid: u32,
    listen_port: u16,
    node_port: u16,
    dead: &HashSet<Ipv4Addr>,
    at_s: f64,
) -> Option<Reading> {
    let mut fds = 0;
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        fds += 1;
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok())
        {
            inodes.insert(inode);
        }
    }
    let mut r = Reading {
        at_s,
        fds,
        rss_kib: rss_kib(pid)?,
        ..Reading::default()
    };
    for (_, s) in sockets(pid).iter().filter(|(i, _)| inodes.contains(i)) {
        if s.state == LISTEN {
            continue;
        }
        if s.state == CLOSE_WAIT {
            r.close_wait += 1;
            if s.local_port == listen_port {
                r.close_wait_clients += 1;
            }
        }
        if s.local_port == listen_port && s.state == ESTABLISHED {
            r.clients += 1;
        }
        if s.remote_port == node_port {
            r.to_nodes += 1;
            if s.remote.is_some_and(|ip| dead.contains(&ip)) {
                r.to_dead += 1;
            }
        }
    }
    Some(r)
}

/// The readings of one interval, summarised.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Row {
    pub label: String,
    pub at_s: f64,
    pub readings: usize,
    pub fds: u64,
    pub fds_max: u64,
    pub rss_kib: u64,
    pub clients: u64,
    pub to_nodes: u64,
    pub to_dead_max: u64,
    pub close_wait: u64,
    pub close_wait_max: u64,
    /// `tether_idle_node_connections_swept_total` at the row's time.
    pub swept: Option<f64>,
    pub replaced: usize,
    pub reloads: usize,
}

/// `m:ss` of a number of seconds.
pub fn clock(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

impl Row {
    /// Medians (and maxima where a spike matters) of `readings`.
    pub fn of(label: String, at_s: f64, readings: &[Reading]) -> Row {
        let med = |f: fn(&Reading) -> u64| median(readings.iter().map(f).collect());
        let max = |f: fn(&Reading) -> u64| readings.iter().map(f).max().unwrap_or(0);
        Row {
            label,
            at_s,
            readings: readings.len(),
            fds: med(|r| r.fds),
            fds_max: max(|r| r.fds),
            rss_kib: med(|r| r.rss_kib),
            clients: med(|r| r.clients),
            to_nodes: med(|r| r.to_nodes),
            to_dead_max: max(|r| r.to_dead),
            close_wait: med(|r| r.close_wait),
            close_wait_max: max(|r| r.close_wait),
            ..Row::default()
        }
    }
}

/// One line of the verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

fn pct(x: u64, base: u64) -> f64 {
    if base == 0 {
        0.0
    } else {
        (x as f64 / base as f64 - 1.0) * 100.0
    }
}

/// The rows that decide: those in the last third of the time after warm-up (at least the last).
pub fn last_rows(rows: &[Row], warmup_s: f64, end_s: f64) -> Vec<&Row> {
    let from = warmup_s + (end_s - warmup_s) * 2.0 / 3.0;
    let mut last: Vec<&Row> = rows.iter().skip(1).filter(|r| r.at_s >= from).collect();
    if last.is_empty() {
        last.extend(rows.last());
    }
    last
}

/// Descriptors and RSS at most `FLAT` above the warm-up row in every one of the last rows;
/// CLOSE_WAIT not growing; nothing left to dead nodes, and back to the idle figures at rest.
pub fn verdict(rows: &[Row], warmup_s: f64, end_s: f64, before: &Row, after: &Row) -> Vec<Check> {
    let mut checks = Vec::new();
    let Some(base) = rows.first() else {
        return checks;
    };
    let last = last_rows(rows, warmup_s, end_s);
    let band = |name: &str, unit: &str, value: fn(&Row) -> u64| {
        let devs: Vec<String> = last
            .iter()
            .map(|r| format!("{} {:+.1}%", r.label, pct(value(r), value(base))))
            .collect();
        let ok = last
            .iter()
            .all(|r| pct(value(r), value(base)) <= FLAT * 100.0);
        Check {
            what: format!("{name} flat: at most {:+.0}%", FLAT * 100.0),
            ok,
            detail: format!(
                "warm-up row {}{unit}; last rows against it: {}",
                value(base),
                devs.join(", ")
            ),
        }
    };
    checks.push(band("descriptors", "", |r| r.fds));
    checks.push(band("RSS", " KiB", |r| r.rss_kib));
    let cw_limit = base.close_wait + 2;
    checks.push(Check {
        what: "CLOSE_WAIT not growing".into(),
        ok: last.iter().all(|r| r.close_wait <= cw_limit) && after.close_wait == 0,
        detail: format!(
            "median {} at warm-up; last rows {}; at most {} in any reading; {} at rest after",
            base.close_wait,
            last.iter()
                .map(|r| r.close_wait.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            rows.iter().map(|r| r.close_wait_max).max().unwrap_or(0),
            after.close_wait,
        ),
    });
    checks.push(Check {
        what: "no connection left to a killed node".into(),
        ok: after.to_dead_max == 0,
        detail: format!(
            "at most {} in any reading during the run (nodes killed over 2 s before), {} at rest after",
            rows.iter().map(|r| r.to_dead_max).max().unwrap_or(0),
            after.to_dead_max
        ),
    });
    checks.push(Check {
        what: "back to idle at rest".into(),
        ok: after.fds <= before.fds + 2 && after.clients == 0,
        detail: format!(
            "{} descriptors before the load, {} after it (and {} client connections)",
            before.fds, after.fds, after.clients
        ),
    });
    checks
}

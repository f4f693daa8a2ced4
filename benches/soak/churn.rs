//! The churn: every 5 s one node is replaced (a new node on a fresh address, the DNS records
//! changed, the old node killed once tether has seen it go), every 30 s the config is rewritten
//! and tether gets SIGHUP; and the ledger of when each of those happened.

use crate::cluster::{node_ip, now_ms, start_node, Node, Tether};
use crate::dns::Dns;
use crate::procs::lock;
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const REPLACE_EVERY: Duration = Duration::from_secs(5);
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// The old node is killed this long after tether's `/status` stopped listing it: long enough for
/// a long-poll started just before (3 s) to finish, so only its WebSockets are cut.
pub const KILL_AFTER: Duration = Duration::from_secs(4);
/// How long tether may take to show a DNS change or a reload before it counts as a problem.
const SEEN_LIMIT: Duration = Duration::from_secs(10);
/// Replacements at most, whatever the duration.
const MAX_REPLACEMENTS: usize = 5000;
/// Nodes that are never replaced, and nodes that take turns being replaced.
pub const STABLE: usize = 2;
pub const CHURNING: usize = 2;

/// One node's life, in Unix milliseconds (the clock of the load tool's `--history`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Life {
    pub id: String,
    pub stable: bool,
    pub in_dns_ms: u64,
    /// Taken out of the DNS records (never, for a stable node or one still serving at the end).
    pub out_dns_ms: Option<u64>,
    /// tether's `/status` no longer listed it.
    pub seen_out_ms: Option<u64>,
    /// Killed (SIGKILL to its process group).
    pub killed_ms: Option<u64>,
}

/// Everything the churn did, read by the sampler while it runs and by the verdict after.
#[derive(Debug, Default, serde::Serialize)]
pub struct Ledger {
    pub nodes: BTreeMap<String, Life>,
    pub replacements: usize,
    /// DNS change to tether's `/status` showing it, per replacement.
    pub discovery_lag_ms: Vec<u64>,
    /// SIGHUPs sent, and those `/status` confirmed (its `reloads` counter went up).
    pub reloads_sent: usize,
    pub reloads_confirmed: usize,
    pub reload_lag_ms: Vec<u64>,
    /// Anything that did not go as planned.
    pub problems: Vec<String>,
}

impl Ledger {
    fn problem(&mut self, what: String) {
        eprintln!("soak: {what}");
        self.problems.push(what);
    }
}

/// The nodes of the soak: the stable ones, the churning ones (oldest first), and the replaced
/// ones waiting to be killed.
pub struct Nodes {
    pub port: u16,
    next: usize,
    stable: Vec<Node>,
    churning: VecDeque<Node>,
    dying: Vec<(Instant, Node)>,
}

impl Nodes {
    /// Start `STABLE + CHURNING` nodes on one port, free on each of their addresses.
    pub fn start(ledger: &Mutex<Ledger>) -> Result<Nodes, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = crate::cluster::free_port(node_ip(0))?;
            let mut nodes = Nodes {
                port,
                next: 0,
                stable: Vec::new(),
                churning: VecDeque::new(),
                dying: Vec::new(),
            };
            let started = (0..STABLE + CHURNING).try_for_each(|i| {
                let node = nodes.start_one(ledger, i < STABLE)?;
                if i < STABLE {
                    nodes.stable.push(node);
                } else {
                    nodes.churning.push_back(node);
                }
                Ok::<_, String>(())
            });
            match started {
                Ok(()) => return Ok(nodes),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A node on the next free address (an address where the port is taken is skipped).
    fn start_one(&mut self, ledger: &Mutex<Ledger>, stable: bool) -> Result<Node, String> {
        let mut last = String::new();
        for _ in 0..3 {
            let ip = node_ip(self.next);
            self.next += 1;
            match start_node(ip, self.port) {
                Ok(node) => {
                    lock(ledger).nodes.insert(
                        node.id.clone(),
                        Life {
                            id: node.id.clone(),
                            stable,
                            in_dns_ms: 0,
                            out_dns_ms: None,
                            seen_out_ms: None,
                            killed_ms: None,
                        },
                    );
                    return Ok(node);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The addresses DNS should give now.
    pub fn serving(&self) -> Vec<Ipv4Addr> {
        self.stable
            .iter()
            .chain(&self.churning)
            .map(|n| n.ip)
            .collect()
    }

    /// Their ids, sorted (as tether's `/status` lists them).
    fn serving_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .stable
            .iter()
            .chain(&self.churning)
            .map(|n| n.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Publish the serving set in DNS, and mark it in the ledger as in DNS from now.
    pub fn publish(&self, dns: &Dns, ledger: &Mutex<Ledger>) {
        let at = now_ms();
        dns.set(&self.serving());
        let mut l = lock(ledger);
        for n in self.stable.iter().chain(&self.churning) {
            if let Some(life) = l.nodes.get_mut(&n.id).filter(|l| l.in_dns_ms == 0) {
                life.in_dns_ms = at;
            }
        }
    }

    /// Kill the replaced nodes whose time has come (all of them with `all`).
    fn reap(&mut self, ledger: &Mutex<Ledger>, all: bool) {
        let now = Instant::now();
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.dying)
            .into_iter()
            .partition(|(at, _)| all || *at <= now);
        self.dying = wait;
        for (_, node) in due {
            let at = now_ms();
            if let Some(life) = lock(ledger).nodes.get_mut(&node.id) {
                life.killed_ms = Some(at);
            }
            drop(node); // SIGKILL to its process group
        }
    }

    /// Kill every node that is still waiting to be killed.
    pub fn reap_all(&mut self, ledger: &Mutex<Ledger>) {
        self.reap(ledger, true);
    }

    /// Replace the oldest churning node: start the new one, change the records, wait until
    /// tether's `/status` shows the change, and schedule the old one's kill.
    fn replace(&mut self, dns: &Dns, tether: &Tether, ledger: &Mutex<Ledger>) {
        let new = match self.start_one(ledger, false) {
            Ok(n) => n,
            Err(e) => {
                lock(ledger).problem(format!("cannot start a replacement node: {e}"));
                return;
            }
        };
        let Some(old) = self.churning.pop_front() else {
            return;
        };
        self.churning.push_back(new);
        let out_at = now_ms();
        if let Some(life) = lock(ledger).nodes.get_mut(&old.id) {
            life.out_dns_ms = Some(out_at);
        }
        self.publish(dns, ledger);
        let changed = Instant::now();
        let want = self.serving_ids();
        let mut seen = None;
        while changed.elapsed() < SEEN_LIMIT {
            if tether.node_ids().is_ok_and(|ids| ids == want) {
                seen = Some(now_ms());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut l = lock(ledger);
        l.replacements += 1;
        match seen {
            Some(at) => {
                l.discovery_lag_ms.push(at.saturating_sub(out_at));
                if let Some(life) = l.nodes.get_mut(&old.id) {
                    life.seen_out_ms = Some(at);
                }
            }
            None => l.problem(format!(
                "tether's /status did not show {} replaced by {} within {SEEN_LIMIT:?}",
                old.id,
                want.last().map_or("", |s| s.as_str())
            )),
        }
        drop(l);
        self.dying.push((Instant::now() + KILL_AFTER, old));
    }
}

/// Rewrite the config (generation `g`), SIGHUP, and wait for `/status` to count the reload.
fn reload(tether: &Tether, g: u64, ledger: &Mutex<Ledger>) {
    let before = tether.status().ok().and_then(|s| s["reloads"].as_u64());
    let sent = Instant::now();
    let result = tether.setup.write_config(g).and_then(|()| tether.sighup());
    let mut l = lock(ledger);
    if let Err(e) = result {
        l.problem(format!("reload {g}: {e}"));
        return;
    }
    l.reloads_sent += 1;
    drop(l);
    let Some(before) = before else {
        lock(ledger).problem(format!("reload {g}: /status did not answer before it"));
        return;
    };
    while sent.elapsed() < SEEN_LIMIT {
        let now = tether.status().ok().and_then(|s| s["reloads"].as_u64());
        if now.is_some_and(|n| n > before) {
            let mut l = lock(ledger);
            l.reloads_confirmed += 1;
            l.reload_lag_ms.push(sent.elapsed().as_millis() as u64);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    lock(ledger).problem(format!(
        "reload {g}: /status did not count it within {SEEN_LIMIT:?}"
    ));
}

/// Replace a node every `REPLACE_EVERY` and reload every `RELOAD_EVERY` from `from` until
/// `until`; then kill the replaced nodes still waiting. Progress on stderr.
pub fn run(
    nodes: &mut Nodes,
    dns: &Dns,
    tether: &Tether,
    ledger: &Mutex<Ledger>,
    from: Instant,
    until: Instant,
) {
    let mut next_replace = from;
    let mut next_reload = from + RELOAD_EVERY;
    let mut generation = 0;
    loop {
        nodes.reap(ledger, false);
        let now = Instant::now();
        if now >= until {
            break;
        }
        if now >= next_reload {
            generation += 1;
            reload(tether, generation, ledger);
            next_reload += RELOAD_EVERY;
        }
        let count = lock(ledger).replacements;
        if now >= next_replace && count < MAX_REPLACEMENTS {
            nodes.replace(dns, tether, ledger);
            next_replace += REPLACE_EVERY;
        }
        let next_kill = nodes.dying.iter().map(|(at, _)| *at).min();
        let wake = [
            Some(next_replace),
            Some(next_reload),
            Some(until),
            next_kill,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(until);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    nodes.reap_all(ledger);
    let l = lock(ledger);
    eprintln!(
        "soak: churn done: {} nodes replaced, {} of {} reloads confirmed",
        l.replacements, l.reloads_confirmed, l.reloads_sent
    );
}

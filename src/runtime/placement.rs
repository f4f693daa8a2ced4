//! Where one request goes: the pin it carries, or a new pick, whether to (re)issue a cookie,
//! and which nodes it may still try.
//!
//! A [`Placement`] is built from the request's cookies, asked for a node by the exchange, told
//! when a node refused the connection, and asked at the end for the `Set-Cookie` to send.

pub use super::decision::{Decision, Source};
use super::node::now_ms;
use super::pool::{stat, Fallback, Pinning, Pool};
use super::request::{query_param, Field, RequestView};
use crate::affinity::ring::{ip_key, Ring};
use crate::affinity::Seen;
use crate::config::KeySource;
use std::cell::Cell;
use std::net::IpAddr;
use std::time::Duration;

thread_local! {
    /// Tickets for slow start's share decisions: a per-thread counter, no shared cache line.
    static TICKET: Cell<u64> = const { Cell::new(0) };
}

fn ticket() -> u64 {
    TICKET.with(|t| {
        let v = t.get().wrapping_add(37);
        t.set(v);
        v
    })
}

/// The key a re-pin is chosen by: the cookie's client key (see `affinity::Pin::client`) with the
/// client's address mixed in. A token holds only its node and issue second, so clients pinned to
/// one node in the same second share it; their addresses keep them from all moving to one node.
fn repin_key(client: u64, ip: Option<IpAddr>) -> u64 {
    let mut buf = [0u8; 16];
    let bytes = ip.map(|ip| ip_key(ip, &mut buf)).unwrap_or(&[]);
    bytes.iter().fold(client, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A node for a client without a live pin: by rendezvous on `repin` (a re-pin), else by the
/// pool's balance policy (a first pick).
fn pick(pool: &Pool, repin: Option<u64>, usable: impl Fn(usize) -> bool) -> Option<usize> {
    match repin {
        Some(key) => pool.rendezvous(key, usable),
        None => pool.balance(usable),
    }
}

/// The value of key affinity's key in `req`, if it carries a non-empty one.
pub fn key_value<R: RequestView>(source: &KeySource, req: &R) -> Option<Vec<u8>> {
    let value = match source {
        KeySource::Query(name) => query_param(req.query()?, name.as_bytes())?,
        KeySource::Header(name) => req.first(Field::Named(name))?.trim_ascii().to_vec(),
        KeySource::Cookie(name) => {
            crate::affinity::cookie::find_map(req.values(Field::Cookie), name, |v| {
                Some(v.as_bytes().to_vec())
            })?
        }
    };
    (!value.is_empty()).then_some(value)
}

/// Connect attempts per request before giving up with 503, each on a different node.
pub const MAX_CONNECT_ATTEMPTS: usize = 3;

/// The placement state of one request as it moves through the attempts.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The node the request is (or will be) sent to.
    pub node: Option<usize>,
    pub decision: Option<Decision>,
    pub source: Source,
    /// A `Set-Cookie` must go out with the response.
    pub issue_cookie: bool,
    /// Nodes that refused a connection for this request.
    pub tried: Vec<usize>,
    /// The client sent our cookie but it did not verify (counted, then ignored).
    pub invalid_token: bool,
    /// The client's pin names a node that is gone: its next node is a re-pin.
    pub stale: bool,
    /// The client key of its verified cookie (pin or stale): a re-pin is chosen by it, so a
    /// client's requests in flight when its node goes all land on the same new node.
    pub client: Option<u64>,
    /// Key affinity: where the request's key falls on the ring ([`Ring::hash`] of its value).
    pub key: Option<u64>,
    /// The request starts a session (a WebSocket upgrade that continues no engine.io session,
    /// or an engine.io handshake): it is not kept on a node that is leaving, nor, while a
    /// rebalance wants it, on a node above its share. Requests that continue a session keep
    /// their pin.
    pub starts_session: bool,
}

impl Placement {
    /// The pin `req` carries, read as the pool's pinning says: its key under key affinity (the
    /// cookie only when it has none and the fallback is the cookie), its cookie in cookie mode,
    /// nothing for ip_hash (whose pin is chosen from the address) or none.
    pub fn from_request<R: RequestView>(pool: &Pool, req: &R, now: u64) -> Placement {
        if let Pinning::Key { source, .. } = &pool.pinning {
            if let Some(value) = key_value(source, req) {
                return Placement {
                    key: Some(Ring::hash(&value)),
                    ..Placement::default()
                };
            }
        }
        Placement::from_cookies(pool, req.values(Field::Cookie), now)
    }

    /// Read the client's pin from its `Cookie` headers (cookie mode, or key mode's cookie
    /// fallback).
    pub fn from_cookies<'a>(
        pool: &Pool,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        now: u64,
    ) -> Placement {
        let mut a = Placement::default();
        if let Some(pins) = pool.pinning.cookie() {
            let (pin, seen) = pins.lookup_noting_presence(cookie_headers, now);
            match pin {
                Some(pin) => {
                    a.node = Some(pin.node);
                    a.decision = Some(Decision::Hit);
                    a.source = Source::Cookie;
                    a.issue_cookie = pin.reissue;
                    a.client = Some(pin.client);
                }
                None => {
                    a.invalid_token = seen == Seen::Invalid;
                    if let Seen::Stale { client } = seen {
                        a.stale = true;
                        a.client = Some(client);
                    }
                }
            }
        }
        a
    }

    /// A valid engine.io session tag names node `node`: the session lives there, so it wins
    /// over a cookie that says otherwise (and the cookie is re-issued to follow it).
    pub fn pin_session(&mut self, pool: &Pool, node: usize) {
        if self.node != Some(node) {
            self.issue_cookie = self.uses_cookie(pool);
        }
        self.node = Some(node);
        self.decision = Some(Decision::Hit);
        self.source = Source::Sid;
    }

    /// The node for the next attempt: the pin if its node still serves pinned clients (healthy,
    /// not disabled; a draining node keeps its clients), else a pick among the nodes not yet
    /// tried: the ring successor for ip_hash, the balance policy over nodes that take new clients
    /// (healthy, active, past slow start) otherwise. `None`: no node can take the request.
    ///
    /// With `max_tunnels_per_node`, an upgrade only goes to a node with room: new clients go to
    /// another node; a pinned client whose node is full gets `None` (503) rather than a move,
    /// since its session lives on that node (socket.io then keeps polling).
    pub fn choose(
        &mut self,
        pool: &Pool,
        client_ip: Option<IpAddr>,
        upgrade: bool,
    ) -> Option<usize> {
        let now = now_ms();
        let tried = &self.tried;
        let cap = u64::from(pool.max_tunnels_per_node);
        let room = |i: usize| !upgrade || cap == 0 || pool.nodes[i].open_tunnels() < cap;
        // A session does not start on a node that leaves, nor, while a rebalance has a node
        // under its bounds, on one above its share: the same rule on every replica, read from
        // what each sees, so a moved client is placed alike wherever it reconnects.
        let rebalancing = self.starts_session && pool.rebalancing();
        let moves_off = |i: usize| {
            self.starts_session
                && (pool.nodes[i].leaving().is_some()
                    || (rebalancing && pool.nodes[i].over_share()))
        };
        let fresh = |i: usize| !tried.contains(&i) && room(i) && !moves_off(i);
        if let Some(n) = self.node {
            if !room(n) && self.decision == Some(Decision::Hit) && tried.is_empty() {
                return None;
            }
            if fresh(n) && n < pool.nodes.len() && pool.nodes[n].serves_pinned(now) {
                if self.decision == Some(Decision::Hit) {
                    pool.nodes[n].count_pinned_hit();
                }
                return Some(n);
            }
        }
        // A ring placement (ip_hash, a key, or key affinity's ip_hash fallback): the "pin" is
        // the ring owner; it stays there while the owner serves pinned clients (draining
        // included) and moves to the successor otherwise, so only a leaving node's keys move.
        let on_ring = self.ring_key(pool, client_ip);
        // `avoid`: keep sessions off leaving and (while rebalancing) crowded nodes; if that
        // leaves no node at all, a place anywhere beats a 503.
        let select = |avoid: bool| {
            let usable = |i: usize| !tried.contains(&i) && room(i) && (!avoid || !moves_off(i));
            match on_ring {
                Some((ring, h)) => {
                    ring.get_hashed(h, |i| usable(i) && pool.nodes[i].serves_pinned(now))
                }
                // A client with a cookie whose node is gone, down or refused is re-pinned to the
                // node its key ranks first, so its concurrent requests agree (the balancer would
                // spread them, and the last Set-Cookie would win); the key doubles as its
                // slow-start ticket. Anyone else gets the balance policy's pick.
                None => {
                    let (slow, repin) = (
                        pool.slow_start,
                        self.client.map(|c| repin_key(c, client_ip)),
                    );
                    let chance = || repin.unwrap_or_else(ticket);
                    pick(pool, repin, |i| {
                        usable(i) && pool.nodes[i].takes_new(now, slow, chance())
                    })
                    // Slow start shapes the share; it never turns a client away.
                    .or_else(|| {
                        pick(pool, repin, |i| {
                            usable(i) && pool.nodes[i].takes_new(now, Duration::ZERO, 0)
                        })
                    })
                }
            }
        };
        let pick = select(true).or_else(|| select(false))?;
        let was_pinned = self.decision == Some(Decision::Hit) || self.stale;
        let first_choice = self.tried.is_empty();
        // No stickiness at all: no affinity, or key affinity without its key and no fallback.
        let unpinned = match &pool.pinning {
            Pinning::None => true,
            Pinning::Key { fallback, .. } => {
                self.key.is_none() && matches!(fallback, Fallback::None)
            }
            _ => false,
        };
        self.decision = Some(if unpinned {
            Decision::Unpinned
        } else if on_ring.is_some()
            && first_choice
            && (Some(pick) == self.node || self.node.is_none())
        {
            Decision::Hit
        } else if !was_pinned && first_choice && on_ring.is_none() {
            Decision::New
        } else {
            Decision::Repinned
        });
        // Only the ring owner is a ring placement; anything else was picked anew.
        self.source = match (on_ring, self.decision, self.key) {
            (Some(_), Some(Decision::Hit), Some(_)) => Source::Key,
            (Some(_), Some(Decision::Hit), None) => Source::IpHash,
            _ => Source::New,
        };
        if self.uses_cookie(pool) {
            self.issue_cookie = true;
        }
        self.node = Some(pick);
        Some(pick)
    }

    /// The ring and the point this request falls on, when a ring places it: ip_hash by the
    /// client's address; key affinity by its key, or by the address when the key is missing
    /// and the fallback is ip_hash.
    fn ring_key<'p>(&self, pool: &'p Pool, client_ip: Option<IpAddr>) -> Option<(&'p Ring, u64)> {
        let by_address = |ring| {
            let mut buf = [0u8; 16];
            let key = client_ip.map(|ip| ip_key(ip, &mut buf)).unwrap_or(&[]);
            Some((ring, Ring::hash(key)))
        };
        match &pool.pinning {
            Pinning::IpHash(ring) => by_address(ring),
            Pinning::Key { ring, fallback, .. } => match (self.key, fallback) {
                (Some(h), _) => Some((ring, h)),
                (None, Fallback::IpHash) => by_address(ring),
                _ => None,
            },
            _ => None,
        }
    }

    /// Does this request's pin live in the affinity cookie? (cookie mode, or key mode's
    /// cookie fallback for a request without the key)
    fn uses_cookie(&self, pool: &Pool) -> bool {
        match &pool.pinning {
            Pinning::Cookie(_) => true,
            Pinning::Key {
                fallback: Fallback::Cookie(_),
                ..
            } => self.key.is_none(),
            _ => false,
        }
    }

    /// Count this request's decision in the pool's stats (once, when the node is final).
    pub fn count(&self, pool: &Pool) {
        if self.invalid_token {
            pool.stats.inc(stat::INVALID_TOKEN);
        }
        let d = self.decision.unwrap_or(Decision::Unpinned);
        pool.stats.inc(stat::DECISIONS + d as usize);
        pool.stats.inc(stat::SOURCES + self.source as usize);
    }

    /// May another node be tried after a failed connect? (bounded by `MAX_CONNECT_ATTEMPTS` and
    /// by the number of nodes)
    pub fn may_retry(&self, pool: &Pool) -> bool {
        self.tried.len() < MAX_CONNECT_ATTEMPTS.min(pool.nodes.len())
    }

    /// The attempt on the current node failed to connect: never try it again for this request.
    pub fn connect_failed(&mut self) {
        if let Some(n) = self.node {
            if !self.tried.contains(&n) {
                self.tried.push(n);
            }
        }
    }

    /// The `Set-Cookie` value to send, if this response must carry one (`tls`: the client came
    /// in over TLS, where the cookie is `Secure` unless configured otherwise).
    pub fn set_cookie(&self, pool: &Pool, now: u64, tls: bool) -> Option<String> {
        match (pool.pinning.cookie(), self.node, self.issue_cookie) {
            (Some(pins), Some(node), true) => Some(pins.issue_on(node, now, tls)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;

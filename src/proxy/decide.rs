//! Which node a request goes to: the pin it carries, or a new pick, and whether to (re)issue a
//! cookie. Engine-neutral: both request paths call these two functions.

use crate::affinity::ring::ip_key;
use crate::upstream::{Pool, Stickiness};
use std::net::IpAddr;

/// Why a client got the node it got; logged and (later) counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A valid pin was honoured (or ip_hash chose the ring owner).
    Hit,
    /// No pin: a first pick.
    New,
    /// The client's pin was unusable (node gone or refused): moved to another node.
    Repinned,
    /// No stickiness configured.
    Unpinned,
}

/// The affinity state of one request as it moves through the attempts.
#[derive(Debug, Clone, Default)]
pub struct Affinity {
    /// The node the request is (or will be) sent to.
    pub node: Option<usize>,
    pub decision: Option<Decision>,
    /// A `Set-Cookie` must go out with the response.
    pub issue_cookie: bool,
    /// Nodes that refused a connection for this request.
    pub tried: Vec<usize>,
}

impl Affinity {
    /// Read the client's pin from its `Cookie` headers (cookie mode only).
    pub fn from_cookies<'a>(
        pool: &Pool,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        now: u64,
    ) -> Affinity {
        let mut a = Affinity::default();
        if let Stickiness::Cookie(pins) = &pool.stickiness {
            if let Some(pin) = pins.lookup(cookie_headers, now) {
                a.node = Some(pin.node);
                a.decision = Some(Decision::Hit);
                a.issue_cookie = pin.reissue;
            }
        }
        a
    }

    /// The node for the next attempt: the pin if it is still usable, else a pick among the nodes
    /// not yet tried (ring successor for ip_hash, the balance policy otherwise). `None`: no node.
    pub fn choose(&mut self, pool: &Pool, client_ip: Option<IpAddr>) -> Option<usize> {
        let tried = &self.tried;
        let usable = |i: usize| !tried.contains(&i);
        if let Some(n) = self.node {
            if usable(n) && n < pool.nodes.len() {
                return Some(n);
            }
        }
        let pick = match &pool.stickiness {
            Stickiness::IpHash(ring) => {
                let mut buf = [0u8; 16];
                let key = client_ip.map(|ip| ip_key(ip, &mut buf)).unwrap_or(&[]);
                ring.get_where(key, usable)
            }
            _ => pool.balance(usable),
        }?;
        let was_pinned = self.decision == Some(Decision::Hit);
        self.decision = Some(
            match (&pool.stickiness, was_pinned, self.tried.is_empty()) {
                (Stickiness::None, ..) => Decision::Unpinned,
                (Stickiness::IpHash(_), _, true) => Decision::Hit,
                (_, false, true) => Decision::New,
                _ => Decision::Repinned,
            },
        );
        if let Stickiness::Cookie(_) = pool.stickiness {
            self.issue_cookie = true;
        }
        self.node = Some(pick);
        Some(pick)
    }

    /// The attempt on the current node failed to connect: never try it again for this request.
    pub fn connect_failed(&mut self) {
        if let Some(n) = self.node {
            if !self.tried.contains(&n) {
                self.tried.push(n);
            }
        }
    }

    /// The `Set-Cookie` value to send, if this response must carry one.
    pub fn set_cookie(&self, pool: &Pool, now: u64) -> Option<String> {
        match (&pool.stickiness, self.node, self.issue_cookie) {
            (Stickiness::Cookie(pins), Some(node), true) => Some(pins.issue(node, now)),
            _ => None,
        }
    }
}

/// Seconds since the Unix epoch, for token issue and expiry.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

//! The request policy: everything decided about a request before any node is contacted, from
//! the parts of it a [`RequestView`] gives, whatever protocol carried it.
//!
//! In order: the route (host and path), the client's address (the peer, or what trusted
//! proxies say), the WebSocket handshake rules and the route's `Origin` allow-list, the pin the
//! request carries (cookie, key, or the client's address on the ring), and what engine.io's
//! query says (a handshake whose answer gets a tag, a session whose tag pins it, and the tags to
//! cut before the node sees the target). A refusal here is answered without touching a node.

use super::client_ip;
use super::counters::global;
use super::engineio::{self, Role, Tagged};
use super::failure::Refusal;
use super::placement::Placement;
use super::pool::{stat, Pool};
use super::request::{Field, RequestView};
use super::websocket::{self, Handshake};
use super::Runtime;
use crate::config::WebsocketPolicy;
use std::net::IpAddr;

/// What the policy decided for one request.
pub struct Plan<'rt> {
    pub pool: &'rt Pool,
    /// The matched route's WebSocket settings.
    pub websocket: &'rt WebsocketPolicy,
    pub placement: Placement,
    pub client_ip: IpAddr,
    /// The request is a WebSocket handshake (`Upgrade: websocket`, checked): after a `101` for
    /// `websocket`, its tunnel follows frames.
    pub websocket_upgrade: bool,
    /// What engine.io's query said (nothing, for an upstream without engine.io affinity).
    pub engineio: engineio::Query,
}

impl Plan<'_> {
    /// An engine.io polling handshake: its answer's session id gets the node's tag (the
    /// protocol revision the node answers in).
    pub fn handshake(&self) -> Option<u8> {
        match self.engineio.role {
            Role::Handshake { version } => Some(version),
            _ => None,
        }
    }
}

/// Decide everything about `req` that needs no node: `peer` is the connection's peer (or what a
/// PROXY header named), `now` Unix seconds for token expiry.
pub fn plan<'rt, R: RequestView>(
    rt: &'rt Runtime,
    req: &R,
    peer: IpAddr,
    now: u64,
) -> Result<Plan<'rt>, Refusal> {
    let (pool_index, ws) = rt
        .router
        .route_with_policy(req.authority(), req.route_path())
        .ok_or(Refusal::NoRoute)?;
    let pool = &rt.pools[pool_index];
    let client_ip = client_ip::resolve(peer, &rt.trusted_proxies, req.values(Field::XForwardedFor));
    let mut websocket_upgrade = false;
    if req.upgrade() {
        let handshake = Handshake {
            method: req.method(),
            upgrade: req.first(Field::Upgrade),
            version: req.first(Field::SecWebSocketVersion),
            key: req.first(Field::SecWebSocketKey),
            origin: req.first(Field::Origin),
            extended_connect: req.extended_connect(),
        };
        websocket_upgrade = handshake.is_websocket();
        if let Err(refusal) = websocket::check(&handshake, ws) {
            if refusal == Refusal::OriginNotAllowed {
                global::COUNTERS.inc(global::ORIGIN_REJECTED);
                tracing::warn!(
                    upstream = %pool.name, client = %client_ip,
                    origin = handshake.origin_text().unwrap_or("(none)"),
                    "WebSocket upgrade refused: origin not allowed"
                );
            }
            return Err(refusal);
        }
    }
    let mut placement = Placement::from_request(pool, req, now);
    let engineio = match &pool.engineio {
        Some(tags) => engineio::read_query(req.target(), req.method(), tags),
        None => engineio::Query::none(),
    };
    match engineio.tag {
        Some(Tagged::Node(node)) => placement.pin_session(pool, node),
        Some(Tagged::Invalid) => pool.stats.inc(stat::ENGINEIO_INVALID_TAGS),
        None => {}
    }
    placement.starts_session = match (&pool.engineio, &engineio.role) {
        (Some(_), Role::Handshake { .. }) => true,
        (Some(_), Role::Session) => false,
        _ => engineio::starts_session(req.target(), req.method(), req.upgrade()),
    };
    Ok(Plan {
        pool,
        websocket: ws,
        placement,
        client_ip,
        websocket_upgrade,
        engineio,
    })
}

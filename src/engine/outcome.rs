//! One outcome per exchange, recorded in one place.
//!
//! However an exchange ends (a response forwarded whole, a refusal, a node failure before or
//! after the response head went out, a client that went away, a `101` that became a tunnel),
//! it ends in one [`Outcome`], and [`record`] is the only place that turns an outcome into what
//! operators see: the access-log line, the per-node status counters, the per-upstream failure
//! and duration counters, the upgrade counters, and passive health. So no step can end an
//! exchange without a line, and no failure is counted twice.

use super::access;
use crate::runtime::counters::global;
use crate::runtime::failure::{Failure, NodeFailure, Refusal};
use crate::runtime::placement::Decision;
use crate::runtime::pool::{observe_duration, stat, Pool};
use std::net::IpAddr;
use std::time::Instant;

/// How one exchange ended.
pub(super) struct Outcome<'a> {
    /// The upstream the route chose (`None`: refused before routing).
    pub pool: Option<&'a Pool>,
    pub client: IpAddr,
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub decision: Option<Decision>,
    /// The node the request reached (`None`: none was connected).
    pub node: Option<usize>,
    /// The status the client got: the node's (a response head went out), or tether's own for
    /// a failure answered before one did; 499 for a client that went away first.
    pub status: u16,
    pub failure: Option<Failure>,
    /// The request asked for an upgrade, and whether it became a tunnel.
    pub upgrade: bool,
    pub tunnel: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The one clock of the exchange: when its head had been read.
    pub started: Instant,
    pub protocol: access::Protocol,
}

impl<'a> Outcome<'a> {
    /// An exchange tether answered itself, before routing (a refusal, a malformed stream, an
    /// ACME validation): no upstream, no node. Callers set the status and what moved.
    pub fn local(
        client: IpAddr,
        method: &'a [u8],
        target: &'a [u8],
        started: Instant,
        protocol: access::Protocol,
    ) -> Outcome<'a> {
        Outcome {
            pool: None,
            client,
            method,
            target,
            decision: None,
            node: None,
            status: 0,
            failure: None,
            upgrade: false,
            tunnel: false,
            bytes_in: 0,
            bytes_out: 0,
            started,
            protocol,
        }
    }

    /// This outcome as `refusal`'s: its status, counted as its failure.
    pub fn refused(self, refusal: Refusal) -> Outcome<'a> {
        Outcome {
            status: refusal.answer().status,
            failure: Some(refusal.into()),
            ..self
        }
    }
}

/// Record `o`: the only place an exchange is logged and counted.
pub(super) fn record(o: &Outcome<'_>) {
    let duration = o.started.elapsed();
    if let Some(Failure::Refused(r)) = o.failure {
        count_refusal(r);
    }
    if let Some(pool) = o.pool {
        match o.failure {
            Some(Failure::Node(f)) => {
                pool.stats.inc(stat::FAILURES + f as usize);
                if let (true, Some(node)) = (f.counts_against_node(), o.node) {
                    pool.passive_failure(node);
                }
                if f == NodeFailure::Connect {
                    // Each refusing node was counted toward passive health as it refused.
                    tracing::debug!(upstream = %pool.name, "no node accepted the connection");
                }
            }
            Some(Failure::ClientGone) => pool.stats.inc(stat::CLIENT_GONE),
            _ => {}
        }
        // A status class for every answer the client got from this node, tether's own 5xx
        // for the node's failures included; a client that went away got none.
        if let (Some(node), false) = (o.node, o.failure == Some(Failure::ClientGone)) {
            pool.nodes[node].count_response(o.status);
        }
        if o.upgrade {
            pool.stats.inc(if o.tunnel {
                stat::UPGRADE_OK
            } else {
                stat::UPGRADE_FAILED
            });
        }
        if !o.tunnel {
            observe_duration(&pool.stats, duration);
        }
    }
    // A tunnel's line is written when it closes, with what it carried.
    if o.tunnel || !access::enabled() {
        return;
    }
    access::request(&access::Request {
        client: o.client,
        method: o.method,
        target: o.target,
        status: o.status,
        upstream: o.pool.map_or("-", |p| p.name.as_str()),
        node: match (o.pool, o.node) {
            (Some(p), Some(n)) => p.nodes[n].id.as_str(),
            _ => "-",
        },
        decision: o.decision.map_or("-", |d| d.name()),
        bytes_in: o.bytes_in,
        bytes_out: o.bytes_out,
        duration,
        failure: o.failure.map_or("-", |f| f.name()),
        protocol: o.protocol,
    });
}

/// A head that could not be read as a request: counted, and one access-log line with what is
/// known (no method, target, route or node).
pub(super) fn refused_head(
    refusal: Refusal,
    client: IpAddr,
    bytes_in: u64,
    protocol: access::Protocol,
) {
    record(
        &Outcome {
            bytes_in,
            ..Outcome::local(client, b"-", b"-", Instant::now(), protocol)
        }
        .refused(refusal),
    );
}

fn count_refusal(r: Refusal) {
    global::COUNTERS.inc(global::REFUSALS + r as usize);
}

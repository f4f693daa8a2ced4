//! Every Prometheus metric tether exports, named in this one place.
//!
//! The request path never looks a label set up: pools resolve their per-node children when they
//! are built ([`NodeMetrics`], [`PoolMetrics`]), so counting a request is a few atomic adds.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::sync::LazyLock;

/// The process's metrics and the registry `/metrics` renders.
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    open_tunnels: IntGaugeVec,
    upgrades: IntCounterVec,
    affinity: IntCounterVec,
    health_transitions: IntCounterVec,
    node_healthy: IntGaugeVec,
    node_admin_state: IntGaugeVec,
    pub origin_rejected: IntCounter,
    pub discovery_lookups: IntCounterVec,
    pub discovered_nodes: IntGaugeVec,
}

/// Request duration buckets, seconds: from loopback-fast answers to held long-polls.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "tether_requests_total",
            "Requests answered, by upstream, node and status class.",
        ),
        &["upstream", "node", "class"],
    )?;
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "tether_request_duration_seconds",
            "Time from a request head to the end of its response, by upstream.",
        )
        .buckets(DURATION_BUCKETS.to_vec()),
        &["upstream"],
    )?;
    let open_tunnels = IntGaugeVec::new(
        Opts::new(
            "tether_open_tunnels",
            "Upgraded (WebSocket) connections open now, by node.",
        ),
        &["upstream", "node"],
    )?;
    let upgrades = IntCounterVec::new(
        Opts::new(
            "tether_upgrades_total",
            "Upgrade requests by result: ok (101) or failed.",
        ),
        &["upstream", "result"],
    )?;
    let affinity = IntCounterVec::new(
        Opts::new(
            "tether_affinity_decisions_total",
            "How each request's node was decided: hit (pin honoured), new (first pick), \
             repinned (pinned node unusable), invalid_token (a cookie that did not verify), \
             unpinned (no stickiness).",
        ),
        &["upstream", "decision"],
    )?;
    let health_transitions = IntCounterVec::new(
        Opts::new(
            "tether_health_transitions_total",
            "Node health changes, by the state entered.",
        ),
        &["upstream", "node", "to"],
    )?;
    let node_healthy = IntGaugeVec::new(
        Opts::new("tether_node_healthy", "1 if the node is healthy, 0 if not."),
        &["upstream", "node"],
    )?;
    let node_admin_state = IntGaugeVec::new(
        Opts::new(
            "tether_node_admin_state",
            "The node's admin state: 0 active, 1 draining, 2 disabled.",
        ),
        &["upstream", "node"],
    )?;
    let origin_rejected = IntCounter::new(
        "tether_origin_rejected_total",
        "WebSocket upgrades refused because their Origin is not allowed.",
    )?;
    let discovery_lookups = IntCounterVec::new(
        Opts::new(
            "tether_discovery_lookups_total",
            "DNS discovery lookup rounds, by upstream and result (ok, failed).",
        ),
        &["upstream", "result"],
    )?;
    let discovered_nodes = IntGaugeVec::new(
        Opts::new(
            "tether_discovered_nodes",
            "Nodes the last good DNS discovery round found, by upstream.",
        ),
        &["upstream"],
    )?;
    registry.register(Box::new(discovery_lookups.clone()))?;
    registry.register(Box::new(discovered_nodes.clone()))?;
    registry.register(Box::new(requests.clone()))?;
    registry.register(Box::new(duration.clone()))?;
    registry.register(Box::new(open_tunnels.clone()))?;
    registry.register(Box::new(upgrades.clone()))?;
    registry.register(Box::new(affinity.clone()))?;
    registry.register(Box::new(health_transitions.clone()))?;
    registry.register(Box::new(node_healthy.clone()))?;
    registry.register(Box::new(node_admin_state.clone()))?;
    registry.register(Box::new(origin_rejected.clone()))?;
    Ok(Metrics {
        registry,
        requests,
        duration,
        open_tunnels,
        upgrades,
        affinity,
        health_transitions,
        node_healthy,
        node_admin_state,
        origin_rejected,
        discovery_lookups,
        discovered_nodes,
    })
}

/// The process-wide metrics. Names and label sets are fixed, so building cannot fail at run time;
/// a failure would be a programming error caught by the unit test below.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| match build() {
    Ok(m) => m,
    Err(e) => unreachable!("metric definitions are static and valid: {e}"),
});

/// Per-node handles, resolved once per pool build.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    /// Indexed by status class: 0 = 1xx ... 4 = 5xx.
    requests: [IntCounter; 5],
    pub open_tunnels: IntGauge,
    pub healthy: IntGauge,
    pub admin_state: IntGauge,
    upstream: String,
    node: String,
}

impl NodeMetrics {
    pub fn new(upstream: &str, node: &str) -> NodeMetrics {
        let m = &*METRICS;
        let class = |c: &str| m.requests.with_label_values(&[upstream, node, c]);
        NodeMetrics {
            requests: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            open_tunnels: m.open_tunnels.with_label_values(&[upstream, node]),
            healthy: m.node_healthy.with_label_values(&[upstream, node]),
            admin_state: m.node_admin_state.with_label_values(&[upstream, node]),
            upstream: upstream.to_string(),
            node: node.to_string(),
        }
    }

    /// Count one answered request.
    pub fn request(&self, status: u16) {
        let i = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[i].inc();
    }

    /// Count a health change (cold path: looks the label set up).
    pub fn health_transition(&self, healthy: bool) {
        let to = if healthy { "healthy" } else { "unhealthy" };
        METRICS
            .health_transitions
            .with_label_values(&[&self.upstream, &self.node, to])
            .inc();
        self.healthy.set(i64::from(healthy));
    }
}

/// Drop every per-node series of a node that left its upstream (a reload or DNS discovery), so
/// a cluster whose pods come and go does not grow the exposition without bound. Handles still
/// held by requests or tunnels on the node keep working; they just are not exported any more.
pub fn forget_node(upstream: &str, node: &str) {
    let m = &*METRICS;
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        let _ = m.requests.remove_label_values(&[upstream, node, class]);
    }
    for to in ["healthy", "unhealthy"] {
        let _ = m
            .health_transitions
            .remove_label_values(&[upstream, node, to]);
    }
    let _ = m.open_tunnels.remove_label_values(&[upstream, node]);
    let _ = m.node_healthy.remove_label_values(&[upstream, node]);
    let _ = m.node_admin_state.remove_label_values(&[upstream, node]);
}

/// Per-upstream handles.
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    pub duration: Histogram,
    pub upgrade_ok: IntCounter,
    pub upgrade_failed: IntCounter,
    pub hit: IntCounter,
    pub new: IntCounter,
    pub repinned: IntCounter,
    pub invalid_token: IntCounter,
    pub unpinned: IntCounter,
}

impl PoolMetrics {
    pub fn new(upstream: &str) -> PoolMetrics {
        let m = &*METRICS;
        let decision = |d: &str| m.affinity.with_label_values(&[upstream, d]);
        PoolMetrics {
            duration: m.duration.with_label_values(&[upstream]),
            upgrade_ok: m.upgrades.with_label_values(&[upstream, "ok"]),
            upgrade_failed: m.upgrades.with_label_values(&[upstream, "failed"]),
            hit: decision("hit"),
            new: decision("new"),
            repinned: decision("repinned"),
            invalid_token: decision("invalid_token"),
            unpinned: decision("unpinned"),
        }
    }
}

/// The text exposition of every metric.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&METRICS.registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_build_and_render() {
        assert!(build().is_ok());
        let n = NodeMetrics::new("up", "a");
        n.request(204);
        n.request(503);
        n.request(42);
        PoolMetrics::new("up").hit.inc();
        let text = render();
        assert!(
            text.contains("tether_requests_total{class=\"2xx\",node=\"a\",upstream=\"up\"} 1"),
            "{text}"
        );
        assert!(text.contains("tether_requests_total{class=\"5xx\",node=\"a\",upstream=\"up\"} 1"));
        assert!(
            text.contains("tether_affinity_decisions_total{decision=\"hit\",upstream=\"up\"} 1")
        );
    }
}

//! Every Prometheus metric tether exports, named in this one place.
//!
//! The request path never touches Prometheus: it adds to counters each worker owns
//! (`runtime::counters`), kept in the runtime's nodes and pools. A scrape walks the current
//! snapshot and sums them ([`RuntimeCollector`]), so a node that left the runtime (a reload,
//! DNS discovery) leaves the exposition with it, and pod churn cannot grow `/metrics`.
//! Control-plane events (DNS discovery rounds) use ordinary Prometheus counters.

use crate::runtime::counters::global;
use crate::runtime::failure::{Failure, NodeFailure, Refusal};
use crate::runtime::node::AdminState;
use crate::runtime::placement::{Decision, Source};
use crate::runtime::pool::{stat, DURATION_BUCKETS, TUNNEL_BUCKETS};
use crate::runtime::tunnel_end::{End, SIDES};
use crate::runtime::Shared;
use crate::ws;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// The registry `/metrics` renders, and the control plane's own metrics.
pub struct Metrics {
    registry: Registry,
    discovery_lookups: IntCounterVec,
    discovered_nodes: IntGaugeVec,
}

impl Metrics {
    /// Metrics over the runtime in `runtime`.
    pub fn new(runtime: &'static Shared) -> Metrics {
        match Metrics::build(runtime) {
            Ok(m) => m,
            // Names, helps and label sets are static: a failure is a programming error, and
            // the unit test below builds them.
            Err(e) => unreachable!("metric definitions are static and valid: {e}"),
        }
    }

    fn build(runtime: &'static Shared) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
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
        registry.register(Box::new(RuntimeCollector::new(runtime)?))?;
        Ok(Metrics {
            registry,
            discovery_lookups,
            discovered_nodes,
        })
    }

    /// Record a discovery round for `upstream`.
    pub fn discovery_round(&self, upstream: &str, failed: bool, nodes: usize) {
        self.discovery_lookups
            .with_label_values(&[upstream, if failed { "failed" } else { "ok" }])
            .inc();
        self.discovered_nodes
            .with_label_values(&[upstream])
            .set(nodes as i64);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The families read off the runtime at scrape time: (name, help, type).
const FAMILIES: [(&str, &str, MetricType); 28] = [
    (
        "tether_requests_total",
        "Requests answered, by upstream, node and status class.",
        MetricType::COUNTER,
    ),
    (
        "tether_request_duration_seconds",
        "Time from a request head to the end of its response, by upstream.",
        MetricType::HISTOGRAM,
    ),
    (
        "tether_open_tunnels",
        "Upgraded (WebSocket) connections open now, by node.",
        MetricType::GAUGE,
    ),
    (
        "tether_upgrades_total",
        "Upgrade requests by result: ok (101) or failed.",
        MetricType::COUNTER,
    ),
    (
        "tether_affinity_decisions_total",
        "How each request's node was decided: hit (pin honoured), new (first pick), \
         repinned (pinned node unusable), invalid_token (a cookie that did not verify), \
         unpinned (no stickiness).",
        MetricType::COUNTER,
    ),
    (
        "tether_health_transitions_total",
        "Node health changes, by the state entered.",
        MetricType::COUNTER,
    ),
    (
        "tether_node_healthy",
        "1 if the node is healthy, 0 if not.",
        MetricType::GAUGE,
    ),
    (
        "tether_node_admin_state",
        "The node's admin state: 0 active, 1 draining, 2 disabled.",
        MetricType::GAUGE,
    ),
    (
        "tether_origin_rejected_total",
        "WebSocket upgrades refused because their Origin is not allowed.",
        MetricType::COUNTER,
    ),
    (
        "tether_in_flight",
        "Requests in flight plus open tunnels, over every upstream.",
        MetricType::GAUGE,
    ),
    (
        "tether_placements_total",
        "What decided each request's node: cookie (a valid affinity cookie), sid (a valid \
         engine.io session tag), ip_hash (the client's address on the ring), new (a pick by the \
         balance policy: first visit, re-pin, or no stickiness).",
        MetricType::COUNTER,
    ),
    (
        "tether_engineio_handshakes_total",
        "engine.io polling handshakes by result: rewritten (the session id got its node tag) or \
         malformed (the node's answer was not understood and went out untouched).",
        MetricType::COUNTER,
    ),
    (
        "tether_engineio_invalid_tags_total",
        "engine.io session ids with a tag that did not verify (forged, another secret, a node \
         that is gone): stripped, then routed as if absent.",
        MetricType::COUNTER,
    ),
    (
        "tether_idle_node_connections_swept_total",
        "Idle keep-alive connections to nodes closed by the pool sweep: expired, closed by \
         the node, or to a node no longer in the config.",
        MetricType::COUNTER,
    ),
    (
        "tether_failures_total",
        "Exchanges of an upstream that did not end with the node's whole response, by kind: \
         a node failure (no_node, connect, send_broken, send_timeout, closed, read_timeout, \
         bad_response, unasked_upgrade, body_broken, body_timeout) or client_gone (the client \
         went away first: logged as 499, not counted as a 4xx).",
        MetricType::COUNTER,
    ),
    (
        "tether_websocket_frames_total",
        "WebSocket frames by upstream and direction (up: client to node, down: node to client), \
         tether's own Pings and Closes not included.",
        MetricType::COUNTER,
    ),
    (
        "tether_websocket_bytes_total",
        "Bytes through WebSocket tunnels by upstream and direction.",
        MetricType::COUNTER,
    ),
    (
        "tether_websocket_closes_total",
        "Closed WebSockets by upstream, the side that closed first (client, node, tether) and \
         the close code (1006: closed without a Close frame; 4xxx: an application's own).",
        MetricType::COUNTER,
    ),
    (
        "tether_tunnel_ends_total",
        "Closed tunnels by how they ended: client, node, idle, or tether's reason \
         (ping_timeout, leave, rebalance, shutdown, protocol_error).",
        MetricType::COUNTER,
    ),
    (
        "tether_tunnel_duration_seconds",
        "How long tunnels were open, by upstream.",
        MetricType::HISTOGRAM,
    ),
    (
        "tether_rebalance_moves_total",
        "Tunnels a rebalance asked to move off crowded nodes, by upstream.",
        MetricType::COUNTER,
    ),
    (
        "tether_node_leaving",
        "1 while a node's tunnels are being closed because it leaves (drained with a deadline, \
         disabled, or removed with tunnels still open), 0 otherwise.",
        MetricType::GAUGE,
    ),
    (
        "tether_refusals_total",
        "Requests tether answered itself without a node, by reason (bad_request, head_timeout, \
         client_body_timeout, uri_too_long, head_too_large, no_route, origin_not_allowed, \
         websocket_version, too_many_connections).",
        MetricType::COUNTER,
    ),
    (
        "tether_http2_connections_total",
        "HTTP/2 client connections (ALPN h2, or the h2c preface on a listener with h2c).",
        MetricType::COUNTER,
    ),
    (
        "tether_http2_streams_total",
        "HTTP/2 streams by kind: request, websocket (extended CONNECT, RFC 8441), malformed \
         (reset by tether, nothing forwarded), reset (cancelled by the client), and calm \
         (connections ended with GOAWAY ENHANCE_YOUR_CALM for resetting most of their streams).",
        MetricType::COUNTER,
    ),
    (
        "tether_certificate_expiry_seconds",
        "When the ACME certificate in use for a domain expires, Unix seconds (alert on \
         `tether_certificate_expiry_seconds - time() < 14 * 86400`).",
        MetricType::GAUGE,
    ),
    (
        "tether_acme_orders_total",
        "ACME orders this process made, by certificate (its first domain) and result (ok, failed).",
        MetricType::COUNTER,
    ),
    (
        "tether_acme_failures",
        "ACME orders failed in a row, by certificate (0 once one succeeds; the certificate in \
         use stays meanwhile).",
        MetricType::GAUGE,
    ),
];

/// Reads the runtime's counters at scrape time.
struct RuntimeCollector {
    runtime: &'static Shared,
    descs: Vec<Desc>,
}

impl RuntimeCollector {
    fn new(runtime: &'static Shared) -> Result<RuntimeCollector, prometheus::Error> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    vec![],
                    Default::default(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(RuntimeCollector { runtime, descs })
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    let mut out: Vec<LabelPair> = pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

fn counter(pairs: &[(&str, &str)], value: u64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = proto::Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value);
    let mut m = proto::Metric::from_label(labels(pairs));
    m.set_gauge(g);
    m
}

/// A histogram of `upstream` from per-bucket counts (not cumulative): `bucket(i)` for each of
/// `bounds`, then the total count and sum.
fn histogram(
    upstream: &str,
    bounds: &[f64],
    bucket: impl Fn(usize) -> u64,
    count: u64,
    sum: f64,
) -> proto::Metric {
    let mut h = proto::Histogram::default();
    let mut cumulative = 0;
    let mut buckets = Vec::new();
    for (i, bound) in bounds.iter().enumerate() {
        cumulative += bucket(i);
        let mut b = proto::Bucket::default();
        b.set_upper_bound(*bound);
        b.set_cumulative_count(cumulative);
        buckets.push(b);
    }
    h.set_bucket(buckets);
    h.set_sample_count(count);
    h.set_sample_sum(sum);
    let mut m = proto::Metric::from_label(labels(&[("upstream", upstream)]));
    m.set_histogram(h);
    m
}

impl Collector for RuntimeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let rt = self.runtime.load();
        let mut families: Vec<Vec<proto::Metric>> = vec![Vec::new(); FAMILIES.len()];
        const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        for pool in &rt.pools {
            let up = pool.name.as_str();
            let s = &pool.stats;
            for node in &pool.nodes {
                let id = node.id.as_str();
                for (i, class) in CLASSES.iter().enumerate() {
                    let n = node.responses(i + 1);
                    families[0].push(counter(
                        &[("upstream", up), ("node", id), ("class", class)],
                        n,
                    ));
                }
                families[2].push(gauge(
                    &[("upstream", up), ("node", id)],
                    node.open_tunnels() as f64,
                ));
                let (healthy, unhealthy) = node.transitions();
                for (to, n) in [("healthy", healthy), ("unhealthy", unhealthy)] {
                    families[5].push(counter(&[("upstream", up), ("node", id), ("to", to)], n));
                }
                let is_healthy = node.health() == crate::runtime::node::Health::Healthy;
                families[6].push(gauge(
                    &[("upstream", up), ("node", id)],
                    f64::from(u8::from(is_healthy)),
                ));
                let admin = match node.admin() {
                    AdminState::Active => 0.0,
                    AdminState::Draining => 1.0,
                    AdminState::Disabled => 2.0,
                };
                families[7].push(gauge(&[("upstream", up), ("node", id)], admin));
            }
            // The histograms: buckets are kept apart per worker, cumulated here.
            families[1].push(histogram(
                up,
                &DURATION_BUCKETS,
                |i| s.sum(stat::DURATION + i),
                s.sum(stat::DURATION_COUNT),
                s.sum(stat::DURATION_SUM_US) as f64 / 1e6,
            ));
            for (result, i) in [("ok", stat::UPGRADE_OK), ("failed", stat::UPGRADE_FAILED)] {
                families[3].push(counter(&[("upstream", up), ("result", result)], s.sum(i)));
            }
            for d in Decision::ALL {
                let n = s.sum(stat::DECISIONS + d as usize);
                families[4].push(counter(&[("upstream", up), ("decision", d.name())], n));
            }
            families[4].push(counter(
                &[("upstream", up), ("decision", "invalid_token")],
                s.sum(stat::INVALID_TOKEN),
            ));
            for source in Source::ALL {
                let n = s.sum(stat::SOURCES + source as usize);
                families[10].push(counter(&[("upstream", up), ("source", source.name())], n));
            }
            for (dir, frames, bytes) in [
                ("up", stat::WS_FRAMES_UP, stat::WS_BYTES_UP),
                ("down", stat::WS_FRAMES_DOWN, stat::WS_BYTES_DOWN),
            ] {
                families[15].push(counter(
                    &[("upstream", up), ("direction", dir)],
                    s.sum(frames),
                ));
                families[16].push(counter(
                    &[("upstream", up), ("direction", dir)],
                    s.sum(bytes),
                ));
            }
            for (si, side) in SIDES.iter().enumerate() {
                for (ci, code) in ws::CODES.iter().enumerate() {
                    let n = s.sum(stat::WS_CLOSES + si * ws::CODES.len() + ci);
                    if n > 0 {
                        families[17].push(counter(
                            &[("upstream", up), ("side", side), ("code", code)],
                            n,
                        ));
                    }
                }
            }
            for end in End::all() {
                let n = s.sum(stat::TUNNEL_ENDS + end.index());
                families[18].push(counter(&[("upstream", up), ("by", end.by())], n));
            }
            families[19].push(histogram(
                up,
                &TUNNEL_BUCKETS,
                |i| s.sum(stat::TUNNEL_DURATION + i),
                s.sum(stat::TUNNEL_DURATION_COUNT),
                s.sum(stat::TUNNEL_DURATION_SUM_MS) as f64 / 1e3,
            ));
            families[20].push(counter(&[("upstream", up)], s.sum(stat::REBALANCE_MOVES)));
            for node in &pool.nodes {
                families[21].push(gauge(
                    &[("upstream", up), ("node", node.id.as_str())],
                    f64::from(u8::from(node.leaving().is_some())),
                ));
            }
            for f in NodeFailure::ALL {
                let n = s.sum(stat::FAILURES + f as usize);
                families[14].push(counter(&[("upstream", up), ("kind", f.name())], n));
            }
            families[14].push(counter(
                &[("upstream", up), ("kind", Failure::ClientGone.name())],
                s.sum(stat::CLIENT_GONE),
            ));
            if pool.engineio.is_some() {
                for (result, i) in [
                    ("rewritten", stat::ENGINEIO_REWRITTEN),
                    ("malformed", stat::ENGINEIO_MALFORMED),
                ] {
                    families[11].push(counter(&[("upstream", up), ("result", result)], s.sum(i)));
                }
                families[12].push(counter(
                    &[("upstream", up)],
                    s.sum(stat::ENGINEIO_INVALID_TAGS),
                ));
            }
        }
        families[8].push(counter(&[], global::COUNTERS.sum(global::ORIGIN_REJECTED)));
        families[9].push(gauge(&[], global::in_flight() as f64));
        families[13].push(counter(&[], global::COUNTERS.sum(global::POOL_SWEPT)));
        for r in Refusal::ALL {
            let n = global::COUNTERS.sum(global::REFUSALS + r as usize);
            families[22].push(counter(&[("reason", r.name())], n));
        }
        families[23].push(counter(&[], global::COUNTERS.sum(global::H2_CONNECTIONS)));
        for (kind, i) in [
            ("request", global::H2_STREAMS),
            ("websocket", global::H2_WEBSOCKETS),
            ("malformed", global::H2_MALFORMED),
            ("reset", global::H2_RESETS),
            ("calm", global::H2_CALM),
        ] {
            families[24].push(counter(&[("kind", kind)], global::COUNTERS.sum(i)));
        }
        for slot in crate::certs::slots() {
            let status = slot.status().clone();
            let first = slot.domains.first().map_or("", String::as_str);
            if let Some(v) = status.validity {
                for d in &slot.domains {
                    families[25].push(gauge(&[("domain", d)], v.not_after as f64));
                }
            }
            families[26].push(counter(
                &[("certificate", first), ("result", "ok")],
                status.issued,
            ));
            families[26].push(counter(
                &[("certificate", first), ("result", "failed")],
                status.failed,
            ));
            families[27].push(gauge(&[("certificate", first)], f64::from(status.failures)));
        }
        FAMILIES
            .iter()
            .zip(families)
            .map(|((name, help, kind), metrics)| {
                let mut f = MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(*kind);
                f.set_metric(metrics);
                f
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_counters_render_as_prometheus_families() {
        let text = "listen: [{ address: \"127.0.0.1:8080\" }]\nupstreams:\n  up:\n    affinity: { mode: none }\n    nodes: [{ id: a, address: \"127.0.0.1:1\" }]\n";
        let shared = crate::runtime::shared_for_test(text);
        let rt = shared.load();
        let node = &rt.pools[0].nodes[0];
        node.count_response(204);
        node.count_response(503);
        rt.pools[0]
            .stats
            .inc(stat::DECISIONS + Decision::Hit as usize);
        crate::runtime::pool::observe_duration(
            &rt.pools[0].stats,
            std::time::Duration::from_millis(3),
        );
        let text = Metrics::new(shared).render();
        assert!(
            text.contains("tether_requests_total{class=\"2xx\",node=\"a\",upstream=\"up\"} 1"),
            "{text}"
        );
        assert!(text.contains("tether_requests_total{class=\"5xx\",node=\"a\",upstream=\"up\"} 1"));
        assert!(
            text.contains("tether_affinity_decisions_total{decision=\"hit\",upstream=\"up\"} 1")
        );
        assert!(
            text.contains("tether_request_duration_seconds_bucket{upstream=\"up\",le=\"0.005\"} 1")
        );
        assert!(text
            .contains("tether_request_duration_seconds_bucket{upstream=\"up\",le=\"0.0025\"} 0"));
        assert!(text.contains("# TYPE tether_open_tunnels gauge"));
    }
}

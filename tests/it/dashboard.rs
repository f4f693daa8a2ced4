//! The Grafana dashboard (`deploy/grafana/tether.json`) and its provisioning examples: the JSON
//! has what Grafana's import needs, and every metric its PromQL names is one a real tether
//! exports, read from the live `/metrics` of a tether with every family in use (cookie and
//! engine.io affinity, a DNS-discovered upstream, traffic, a WebSocket).

use crate::support::dns::Dns;
use crate::support::{self, Client, Proxy};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

fn grafana(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/grafana")
        .join(rel)
}

fn dashboard() -> Value {
    let path = grafana("tether.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Words of PromQL that are neither metrics nor functions: operators, modifiers, and the
/// aggregations (which may stand before their `by (...)` rather than their argument).
const KEYWORDS: [&str; 27] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a list of label names, not selectors.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// The index just past the string literal opening at `i`.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    let quote = b[i];
    i += 1;
    while i < b.len() && b[i] != quote {
        // Backquoted strings have no escapes.
        i += if b[i] == b'\\' && quote != b'`' { 2 } else { 1 };
    }
    i + 1
}

/// The index just past the `close` matching the opener at `i`, skipping string literals.
fn skip_group(b: &[u8], mut i: usize, close: u8) -> usize {
    let open = b[i];
    let mut depth = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!(
        "unbalanced {:?} in {:?}",
        open as char,
        String::from_utf8_lossy(b)
    );
}

/// The metric names a PromQL expression selects: identifiers that are not keywords, not
/// functions or aggregations (followed by `(`), not label names (inside `{}`, or the list after
/// `by`, `on`, ...), not durations or numbers, not dashboard variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else if c == b'{' {
            let end = skip_group(b, i, b'}');
            assert!(
                !expr[i..end].contains("__name__"),
                "name matchers are not supported here: {expr}"
            );
            i = end;
        } else if c == b'[' {
            i = skip_group(b, i, b']');
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'$' {
            i += 1;
            while i < b.len() && ident_char(b[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            // Numbers (0.99, 1e-9, 0x1f) and durations (5m) are one token.
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < b.len() && ident_char(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let lower = word.to_ascii_lowercase();
            let mut next = i;
            while next < b.len() && b[next].is_ascii_whitespace() {
                next += 1;
            }
            let paren = b.get(next) == Some(&b'(');
            if GROUPING.contains(&lower.as_str()) {
                if paren {
                    i = skip_group(b, next, b')');
                }
            } else if !KEYWORDS.contains(&lower.as_str()) && !paren {
                out.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The metric names a templating query reads: `label_values(SELECTOR, label)`,
/// `query_result(EXPR)`; `label_values(label)` reads none.
fn variable_metric_names(query: &str) -> BTreeSet<String> {
    let q = query.trim();
    if let Some(inner) = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return match inner.rsplit_once(',') {
            Some((selector, _label)) => metric_names(selector),
            None => BTreeSet::new(),
        };
    }
    if let Some(inner) = q
        .strip_prefix("query_result(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return metric_names(inner);
    }
    panic!("unexpected variable query {query:?}");
}

/// The families of a Prometheus text exposition with at least one sample, by type
/// (`counter`, `gauge`, `histogram`, ...).
fn exported_families(exposition: &str) -> BTreeMap<String, String> {
    let mut types = BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_string(), kind.to_string());
            }
        }
    }
    let mut with_samples = BTreeMap::new();
    for line in exposition.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name = line
            .split(|c: char| c == '{' || c.is_whitespace())
            .next()
            .unwrap_or("");
        let family = family_of(name, &types);
        if let Some(kind) = types.get(&family) {
            with_samples.insert(family, kind.clone());
        }
    }
    with_samples
}

/// The family a series name belongs to: histograms and summaries expose `_bucket`, `_sum` and
/// `_count` series of their family.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

/// Names the dashboard uses that the exposition does not have (with samples).
fn unknown_metrics(used: &BTreeSet<String>, exposition: &str) -> Vec<String> {
    let families = exported_families(exposition);
    used.iter()
        .filter(|name| !families.contains_key(&family_of(name, &families)))
        .cloned()
        .collect()
}

/// Every panel, rows' collapsed panels included.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels is an array") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter());
        }
    }
    out
}

/// Every PromQL expression of the dashboard's panels.
fn exprs(d: &Value) -> Vec<String> {
    all_panels(d)
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect()
}

/// Every metric name the dashboard reads, panels and variables.
fn used_metrics(d: &Value) -> BTreeSet<String> {
    let mut used: BTreeSet<String> = exprs(d).iter().flat_map(|e| metric_names(e)).collect();
    for v in d["templating"]["list"].as_array().expect("templating.list") {
        if v["type"] == "query" {
            let q = v["query"]["query"].as_str().or(v["query"].as_str());
            used.extend(variable_metric_names(q.expect("variable query")));
        }
    }
    used
}

#[test]
fn the_extractor_finds_metric_names_and_only_them() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (class) (rate(tether_requests_total{upstream=~"$upstream",class="5xx"}[$__rate_interval]))"#
        ),
        ["tether_requests_total"]
    );
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, upstream) (rate(tether_request_duration_seconds_bucket{a="}{"}[5m])))"#
        ),
        ["tether_request_duration_seconds_bucket"]
    );
    assert_eq!(
        names("count(min by (upstream, node) (tether_node_healthy) == 0) or vector(0)"),
        ["tether_node_healthy"]
    );
    assert_eq!(
        names("a / on (instance) group_left(node) b offset 5m + 1e-9 * sum(c) without (x)"),
        ["a", "b", "c"]
    );
    assert_eq!(
        names("max without (node) (a) > bool topk by (upstream) (3, b) unless c"),
        ["a", "b", "c"]
    );
    assert_eq!(
        names("up:rate5m # a comment naming not_a_metric"),
        ["up:rate5m"]
    );
    assert_eq!(
        variable_metric_names(
            r#"label_values(tether_requests_total{instance=~"$instance"}, upstream)"#
        ),
        ["tether_requests_total".to_string()].into()
    );
    assert!(variable_metric_names("label_values(instance)").is_empty());
}

#[test]
fn a_name_tether_does_not_export_is_caught() {
    let exposition = "\
# HELP tether_requests_total Requests.
# TYPE tether_requests_total counter
tether_requests_total{class=\"2xx\"} 3
# TYPE tether_request_duration_seconds histogram
tether_request_duration_seconds_bucket{le=\"0.1\"} 1
tether_request_duration_seconds_sum 0.01
tether_request_duration_seconds_count 1
# TYPE tether_discovered_nodes gauge
";
    let used: BTreeSet<String> = [
        r#"sum(rate(tether_requests_total[1m]))"#,
        r#"histogram_quantile(0.5, rate(tether_request_duration_seconds_bucket[1m]))"#,
        r#"rate(tether_request_duration_seconds_count[1m])"#,
        // Bogus: a typo, a suffix on a counter, and a family with no series.
        r#"sum(rate(tether_request_total[1m]))"#,
        r#"rate(tether_requests_total_bucket[1m])"#,
        r#"tether_discovered_nodes"#,
    ]
    .iter()
    .flat_map(|e| metric_names(e))
    .collect();
    assert_eq!(
        unknown_metrics(&used, exposition),
        [
            "tether_discovered_nodes",
            "tether_request_total",
            "tether_requests_total_bucket"
        ]
    );
}

#[test]
fn the_dashboard_has_what_grafana_import_needs() {
    let d = dashboard();
    assert_eq!(d["title"], "tether");
    assert!(d["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u.len() <= 40));
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(
        d["id"].is_null(),
        "an exported dashboard has no instance id"
    );
    assert!(d["time"]["from"].is_string() && d["time"]["to"].is_string());

    // Variables: a Prometheus datasource, and upstream (and instance) from label_values.
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().expect("variable name"), v))
        .collect();
    let ds = vars.get("datasource").expect("a datasource variable");
    assert_eq!(
        (&ds["type"], &ds["query"]),
        (&Value::from("datasource"), &Value::from("prometheus"))
    );
    let upstream = vars.get("upstream").expect("an upstream variable");
    assert_eq!(upstream["type"], "query");
    let q = upstream["query"]["query"].as_str().expect("upstream query");
    assert!(
        q.starts_with("label_values(tether_requests_total") && q.ends_with(", upstream)"),
        "{q}"
    );
    for v in vars.values().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{v}");
    }

    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let builtins = ["$__rate_interval", "$__interval", "$__range"];
    for p in all_panels(&d) {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel without an id: {p}"));
        assert!(ids.insert(id), "panel id {id} twice");
        let title = p["title"].as_str().expect("title");
        assert!(!title.is_empty(), "panel {id} has no title");
        let g = &p["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
        });
        assert!(h > 0 && w > 0 && x + w <= 24, "{title}: gridPos {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), id) {
                    panic!("{title} (panel {id}) overlaps panel {other}");
                }
            }
        }
        let kind = p["type"].as_str().expect("type");
        assert!(
            [
                "row",
                "timeseries",
                "stat",
                "state-timeline",
                "bargauge",
                "table",
                "text"
            ]
            .contains(&kind),
            "{title}: panel type {kind}"
        );
        if kind == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().expect("refId")), "{title}");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().expect("expr");
            assert!(!metric_names(expr).is_empty(), "{title}: {expr}");
            // Every variable an expression uses is defined (or one of Grafana's own).
            for (at, _) in expr.match_indices('$') {
                let name: String = expr[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    vars.contains_key(name.as_str())
                        || builtins.contains(&format!("${name}").as_str()),
                    "{title}: ${name} is not a variable"
                );
            }
        }
    }
    assert!(ids.len() >= 20, "{} panels", ids.len());
}

#[test]
fn the_provisioning_examples_point_at_the_dashboard() {
    let read = |rel: &str| -> serde_yaml::Value {
        let text = std::fs::read_to_string(grafana(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    let ds = read("provisioning/datasources/tether.yaml");
    assert_eq!(ds["apiVersion"], 1);
    assert_eq!(ds["datasources"][0]["type"], "prometheus");
    let dash = read("provisioning/dashboards/tether.yaml");
    assert_eq!(dash["apiVersion"], 1);
    let provider = &dash["providers"][0];
    assert_eq!(provider["type"], "file");
    assert!(provider["options"]["path"]
        .as_str()
        .is_some_and(|p| p.starts_with('/')));
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_names_is_in_a_live_tethers_metrics() {
    let nodes = support::nodes(2).await;
    let (found, port) = support::nodes_on_one_port(&["found-a"]).await;
    let dns = Dns::start().await;
    dns.set("found.test", &[ip(2)]);
    let mut yaml = String::from(
        "listen:\n  - address: \"{listen}\"\nadmin:\n  address: \"{admin}\"\nupstreams:\n  realtime:\n    nodes:\n",
    );
    for n in &nodes {
        yaml.push_str(&support::node_line(n.id(), n.addr()));
    }
    yaml.push_str(&format!(
        "    affinity:\n      mode: cookie\n      cookie: {{ secret_env: TETHER_SECRET }}\n      engineio: true\n  found:\n    discover: {{ dns: found.test, port: {port}, refresh: 100ms, resolver: \"{}\" }}\n    affinity: {{ mode: ip_hash }}\nroutes:\n  - {{ path_prefix: /found/, upstream: found }}\n  - {{ path_prefix: /, upstream: realtime }}\n",
        dns.addr
    ));
    let proxy = Proxy::start(&yaml);

    let mut c = Client::new(proxy.addr);
    for _ in 0..5 {
        assert_eq!(c.get("/whoami").await.status, 200);
    }
    let (ws, _, _) = c.ws("/ws").await;
    Client::new(proxy.addr).get("/found/whoami").await;
    // One WebSocket closed (its close code is counted), one still open (a tunnel gauge).
    let (mut closed, _, _) = c.ws("/ws").await;
    closed.close(None).await.unwrap();
    drop(closed);
    let admin = proxy.admin.expect("admin");
    let start = std::time::Instant::now();
    let exposition = loop {
        let body = Client::new(admin).get("/metrics").await.body;
        if body.contains("tether_websocket_closes_total{") || start.elapsed().as_secs() > 10 {
            break body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let d = dashboard();
    let used = used_metrics(&d);
    let unknown = unknown_metrics(&used, &exposition);
    assert!(
        unknown.is_empty(),
        "the dashboard names metrics tether does not export: {unknown:?}\n{exposition}"
    );
    // And the other way: every family tether exports has a panel.
    let types = exported_families(&exposition);
    let shown: BTreeSet<String> = used.iter().map(|n| family_of(n, &types)).collect();
    let unshown: Vec<&String> = types.keys().filter(|f| !shown.contains(*f)).collect();
    assert!(unshown.is_empty(), "families without a panel: {unshown:?}");
    assert!(types.len() >= 16, "{types:?}");
    drop(ws);
    for n in nodes.iter().chain(&found) {
        n.stop().await;
    }
}

//! `tether load` (the library call) against real clusters behind tether: a sticky cluster shows
//! zero violations and zero errors, a non-sticky one shows violations and "Session ID unknown".

use crate::socketio::{cluster, cluster_config};
use crate::support::{self, Proxy, COOKIE_AFFINITY};
use tether::load::{self, LoadArgs, Report};

fn args(proxy: &Proxy, extra: &[&str]) -> LoadArgs {
    let mut argv = vec!["load".to_string(), "--url".into(), proxy.url("")];
    argv.extend(extra.iter().map(|s| s.to_string()));
    LoadArgs::try_parse_from(argv).expect("load args")
}

/// Run the load test on a blocking thread: it builds its own runtime.
async fn run(proxy: &Proxy, extra: &[&str]) -> Report {
    let args = args(proxy, extra);
    tokio::task::spawn_blocking(move || load::run(&args))
        .await
        .expect("load thread")
        .expect("load run")
}

const SMALL: [&str; 6] = ["--clients", "20", "--duration", "2s", "--ramp", "200ms"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cluster_http_ws_and_held_sockets_have_no_violation_and_no_error() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));

    let r = run(&proxy, &SMALL).await;
    assert_eq!((r.errors_total, r.violations), (0, 0), "{r}");
    assert!(r.requests > 0, "{r}");
    assert_eq!(r.clients_started, 20, "{r}");
    assert_eq!(r.clients_per_node.values().sum::<u64>(), 20, "{r}");
    assert_eq!(
        r.connections, 20,
        "keep-alive: one connection per client: {r}"
    );
    assert_eq!(r.aborted_clients, 0, "{r}");

    let r = run(
        &proxy,
        &[&SMALL[..], &["--flow", "ws", "--messages", "5"]].concat(),
    )
    .await;
    assert_eq!((r.errors_total, r.violations), (0, 0), "{r}");
    assert!(
        r.ws_round_trips > 0 && r.ws_latency_us.count == r.ws_round_trips,
        "{r}"
    );
    assert_eq!(r.clients_per_node.values().sum::<u64>(), 20, "{r}");

    // mixed: http, long-poll and held WebSockets side by side.
    let extra = [
        "--flow",
        "mixed",
        "--hold-open",
        "--poll-path",
        "/poll?hold=300",
    ];
    let r = run(&proxy, &[&SMALL[..], &extra].concat()).await;
    assert_eq!((r.errors_total, r.violations), (0, 0), "{r}");
    assert!(r.requests > 0 && r.ws_round_trips == 0, "{r}");
    assert!(r.held_peak >= 6, "the 6 ws clients hold their sockets: {r}");
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["flow"], "mixed");
    assert_eq!(json["hold_open"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_affinity_the_tool_sees_violations() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: none", ""));
    let r = run(&proxy, &SMALL).await;
    assert!(
        r.violations > 0,
        "a non-sticky proxy must show violations: {r}"
    );
    assert!(!r.violation_examples.is_empty(), "{r}");
    assert!(r.has_failures());
}

#[test]
fn socketio_through_sticky_tether_never_loses_its_session() {
    let nodes = cluster();
    let proxy = Proxy::start(&cluster_config(&nodes, COOKIE_AFFINITY));
    let extra = ["--flow", "socketio", "--clients", "30", "--duration", "2s"];
    let r = load::run(&args(&proxy, &[&extra[..], &["--messages", "5"]].concat())).expect("run");
    assert_eq!(r.errors.session_unknown, 0, "{r}");
    assert_eq!(r.violations, 0, "{r}");
    assert_eq!(r.errors_total, 0, "{r}");
    assert!(r.ws_round_trips > 0 && r.requests > 0, "{r}");
    assert_eq!(r.clients_per_node.values().sum::<u64>(), 30, "{r}");
}

/// The proof that the test above can fail: the same flow without affinity.
#[test]
fn socketio_without_affinity_shows_session_id_unknown() {
    let nodes = cluster();
    let proxy = Proxy::start(&cluster_config(&nodes, "mode: none"));
    let extra = ["--flow", "socketio", "--clients", "30", "--duration", "2s"];
    let r = load::run(&args(&proxy, &extra)).expect("run");
    assert!(r.errors.session_unknown > 0, "{r}");
}

/// `--no-cookies`: clients that keep no cookie hold their socket.io sessions only by the tagged
/// sid tether gives them (`affinity.engineio`), learned from the handshake like any sid.
#[test]
fn socketio_without_cookies_holds_by_the_tagged_sid() {
    let nodes = cluster();
    let engineio = format!("{COOKIE_AFFINITY}\nengineio: true");
    let proxy = Proxy::start(&cluster_config(&nodes, &engineio));
    let extra = ["--flow", "socketio", "--no-cookies", "--clients", "30"];
    let more = ["--duration", "2s", "--messages", "5", "--json"];
    let r = load::run(&args(&proxy, &[&extra[..], &more].concat())).expect("run");
    assert!(!r.cookies, "{r}");
    assert_eq!(r.errors.session_unknown, 0, "{r}");
    assert_eq!((r.errors_total, r.violations), (0, 0), "{r}");
    assert!(r.ws_round_trips > 0 && r.requests > 0, "{r}");
    assert_eq!(r.clients_per_node.len(), 3, "{r}");

    // The same clients with cookie affinity alone: every request is a new pick.
    let plain = Proxy::start(&cluster_config(&nodes, COOKIE_AFFINITY));
    let r = load::run(&args(&plain, &extra)).expect("run");
    assert!(r.errors.session_unknown > 0, "{r}");
}

/// `--report FILE.html`: a real run through tether writes a self-contained page whose markup is
/// well-formed (parsed as XML), with the charts and the run's numbers, and which loads nothing
/// from anywhere; `--json` is unchanged by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_file_is_a_self_contained_page_with_the_charts_and_the_numbers() {
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("run.html");
    let extra = [
        "--flow",
        "mixed",
        "--messages",
        "3",
        "--poll-path",
        "/poll?hold=200",
        "--report",
        file.to_str().expect("utf-8 path"),
    ];
    let r = run(&proxy, &[&SMALL[..], &extra].concat()).await;
    assert_eq!((r.errors_total, r.violations), (0, 0), "{r}");
    let json = serde_json::to_value(&r).expect("json");
    assert!(json.get("timeline").is_none(), "the JSON stays as it was");
    let t = r.timeline.as_ref().expect("sampled for the report");
    assert!(t.samples.len() >= 10, "2 s in 100 ms intervals: {t:?}");
    let sampled: u64 = t.samples.iter().map(|s| s.requests).sum();
    assert_eq!(sampled, r.requests, "the intervals add up to the run");

    let page = std::fs::read_to_string(&file).expect("the report file");
    let doc = roxmltree::Document::parse_with_options(
        &page,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("not well-formed: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "html");

    // Nothing external: no attribute points anywhere, no script, no stylesheet link, no
    // url() in the CSS.
    for node in doc.descendants().filter(|n| n.is_element()) {
        let tag = node.tag_name().name();
        assert!(
            !matches!(
                tag,
                "script" | "link" | "iframe" | "img" | "object" | "embed"
            ),
            "<{tag}>"
        );
        for a in node.attributes() {
            assert!(
                !matches!(
                    a.name(),
                    "src" | "href" | "xlink:href" | "srcset" | "action"
                ),
                "<{tag} {}={:?}>",
                a.name(),
                a.value()
            );
        }
        if node.has_tag_name("href") {
            panic!("href element");
        }
    }
    let lower = page.to_ascii_lowercase();
    for external in ["<script", "url(", "@import", "src=", "href="] {
        assert!(!lower.contains(external), "{external} in the page");
    }

    // The charts, each a well-formed SVG with a view box.
    let charts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name(("http://www.w3.org/2000/svg", "svg")))
        .map(|n| {
            assert!(n.attribute("viewBox").is_some(), "{n:?}");
            n.attribute("aria-label").unwrap_or_default().to_string()
        })
        .collect();
    for want in [
        "Throughput over time",
        "Request latency percentiles over time",
        "WebSocket round-trip latency percentiles over time",
        "Connections held over time",
        "First picks per node",
    ] {
        assert!(
            charts.iter().any(|c| c == want),
            "no {want:?} chart in {charts:?}"
        );
    }
    let paths = doc
        .descendants()
        .filter(|n| n.has_tag_name(("http://www.w3.org/2000/svg", "path")))
        .filter(|n| {
            n.attribute("d")
                .is_some_and(|d| d.matches('L').count() >= 5)
        })
        .count();
    assert!(paths >= 6, "lines with their points: {paths}");

    // The summary numbers, as the text report has them.
    let cell = |n: u64| format!("<td class=\"num\">{n}</td>");
    for want in [
        cell(r.requests),
        cell(r.ws_round_trips),
        cell(r.connections),
        cell(r.request_latency_us.p99),
        format!("{:.1}", r.requests_per_s),
    ] {
        assert!(page.contains(&want), "{want:?} missing");
    }
    for (node, n) in &r.clients_per_node {
        assert!(
            page.contains(&format!("<title>{node}: {n} (")),
            "{node} {n}"
        );
    }
    assert!(page.contains("No stickiness violation, no error"));
}

#[test]
fn a_report_path_that_cannot_be_written_fails_before_the_run() {
    let argv = [
        "load",
        "--url",
        "http://127.0.0.1:9",
        "--report",
        "/nonexistent-directory/run.html",
    ];
    let started = std::time::Instant::now();
    let err = load::run(&LoadArgs::try_parse_from(argv).expect("args")).expect_err("no directory");
    assert!(
        err.to_string()
            .contains("--report /nonexistent-directory/run.html"),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "nothing ran"
    );
}

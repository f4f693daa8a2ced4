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

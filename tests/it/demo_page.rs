//! The pages a newcomer looks at first, in a real headless Chromium (`tests/browser/demo.js` and
//! `report.js`, see `support::browser`):
//! - `tether demo` as a process: its page pins every panel to one node and lists the cluster;
//!   the admin page it links to shows the nodes; Stop on the pinned node turns it unhealthy there
//!   while the demo page re-pins to one other node, Start brings it back without moving the
//!   client. Screenshots `target/tmp/demo-*.png`.
//! - `tether load --report` as a process against a real cluster: the page opens from a file
//!   without a console error or a request, with every chart drawn and the summary table.
//!   Screenshots `target/tmp/report*.png`.

use crate::support::proxy::{free_port, tether_bin};
use crate::support::{self, browser, Proxy, COOKIE_AFFINITY};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// `tether demo`'s health check: every 1 s, down after 2 failures (src/cli/demo.rs); the admin
/// page polls every second.
const DEMO_DOWN_WITHIN_MS: u64 = 2 * 1000 + 500 + 1000 + 2000;

/// Waits until something accepts connections at `addr`, or panics after `limit`.
async fn listening(addr: SocketAddr, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens at {addr}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_its_cluster_and_a_stopped_node_in_both_pages() {
    browser::require();
    let (port, admin_port) = (free_port([127, 0, 0, 1]), free_port([127, 0, 0, 1]));
    let mut demo = tokio::process::Command::new(tether_bin())
        .args([
            "demo",
            "--port",
            &port.to_string(),
            "--admin-port",
            &admin_port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start tether demo");
    let mut out = BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let urls = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .expect("tether demo printed its URLs")
            .expect("read stdout")
            .unwrap_or_else(|| panic!("tether demo exited: {printed:?}"));
        printed.push(line.clone());
        if line.starts_with("open ") {
            break line;
        }
    };
    let (demo_url, admin_url) = (
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.0.0.1:{admin_port}/"),
    );
    assert!(
        urls.contains(&demo_url) && urls.contains(&admin_url),
        "{urls}"
    );
    listening(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(20),
    )
    .await;
    listening(
        SocketAddr::from(([127, 0, 0, 1], admin_port)),
        Duration::from_secs(20),
    )
    .await;

    let plan = serde_json::json!({
        "chromium": browser::CHROMIUM,
        "shots": browser::shots(),
        "limit_ms": 90_000,
        "demo": demo_url,
        "admin": admin_url,
        "nodes": ["node-a", "node-b", "node-c"],
        "down_within_ms": DEMO_DOWN_WITHIN_MS,
    });
    let report = browser::Run::start("demo.js", &plan, Duration::from_secs(15))
        .results()
        .await;
    let _ = demo.kill().await;
    browser::assert_passed(&report, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_report_opens_in_the_browser_with_its_charts() {
    browser::require();
    let nodes = support::nodes(3).await;
    let proxy = Proxy::start(&support::config(&nodes, COOKIE_AFFINITY, ""));
    let file = browser::shots().join("report.html");
    std::fs::create_dir_all(browser::shots()).expect("target/tmp");
    let run = tokio::process::Command::new(tether_bin())
        .args([
            "load",
            "--url",
            &proxy.url(""),
            "--flow",
            "mixed",
            "--clients",
            "20",
            "--duration",
            "2s",
            "--ramp",
            "200ms",
            "--messages",
            "3",
            "--poll-path",
            "/poll?hold=200",
            "--report",
            file.to_str().expect("utf-8 path"),
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("tether load finished")
        .expect("tether load ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let plan = serde_json::json!({
        "chromium": browser::CHROMIUM,
        "shots": browser::shots(),
        "limit_ms": 45_000,
        "report": file,
        "charts": [
            "Throughput over time",
            "Request latency percentiles over time",
            "WebSocket round-trip latency percentiles over time",
            "Connections held over time",
            "First picks per node",
        ],
    });
    let report = browser::Run::start("report.js", &plan, Duration::from_secs(15))
        .results()
        .await;
    browser::assert_passed(&report, 4);
}

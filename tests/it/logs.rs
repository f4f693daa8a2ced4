//! Logs an operator can ship: no colour escapes when stderr is not a terminal, JSON lines with
//! stable field names on request, and an access log with one line per request and one per
//! closed tunnel (switchable off).

use crate::support::{self, Client, Proxy};
use std::time::{Duration, Instant};

/// Every line of the log that parses as JSON with `target == want_target`.
fn json_lines(log: &str, target: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == target)
        .collect()
}

/// Wait (bounded) until `pred` holds for the proxy's log.
fn until_log(proxy: &Proxy, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let log = proxy.log();
        if pred(&log) {
            return log;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}; the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_to_a_file_has_no_colour_escapes() {
    let nodes = support::nodes(1).await;
    let proxy = Proxy::start(&support::config(&nodes, "mode: none", ""));
    assert_eq!(Client::new(proxy.addr).get("/whoami").await.status, 200);
    let log = until_log(&proxy, "an access line", |l| l.contains("tether::access"));
    assert!(log.contains("tether started"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape bytes in a non-terminal log:\n{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_access_fields_of_requests_and_closed_tunnels() {
    let nodes = support::nodes(1).await;
    let yaml = format!(
        "{}log: {{ format: json }}\n",
        support::config(&nodes, "mode: none", "")
    );
    let proxy = Proxy::start(&yaml);
    let mut client = Client::new(proxy.addr);
    assert_eq!(client.get("/whoami?secret=1").await.status, 200);
    let (mut ws, _, _) = client.ws("/ws").await;
    support::echo_many(&mut ws, 3).await;
    drop(ws);
    let log = until_log(&proxy, "a request line and a tunnel line", |l| {
        l.contains("\"kind\":\"request\"") && l.contains("\"kind\":\"tunnel\"")
    });
    // Every line is one JSON object.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
    let access = json_lines(&log, "tether::access");
    let request = access
        .iter()
        .find(|v| v["kind"] == "request" && v["path"] == "/whoami")
        .unwrap_or_else(|| panic!("no request line: {access:?}"));
    for field in [
        "client", "method", "path", "status", "upstream", "node", "decision",
    ] {
        assert!(!request[field].is_null(), "{field} missing: {request}");
    }
    assert_eq!(request["client"], "127.0.0.1");
    assert_eq!(request["status"], 200);
    assert_eq!(request["node"], "node-a");
    assert!(request["bytes_in"].as_u64().unwrap() > 0);
    assert!(request["bytes_out"].as_u64().unwrap() > 0);
    assert!(request["duration_ms"].as_f64().is_some());
    assert!(!log.contains("secret=1"), "the query is never logged");
    let tunnel = access
        .iter()
        .find(|v| v["kind"] == "tunnel")
        .unwrap_or_else(|| panic!("no tunnel line: {access:?}"));
    assert_eq!(tunnel["closed_by"], "client");
    assert_eq!(tunnel["path"], "/ws");
    assert!(tunnel["bytes_up"].as_u64().unwrap() > 0);
    assert!(tunnel["bytes_down"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_can_be_switched_off() {
    let nodes = support::nodes(1).await;
    let yaml = format!(
        "{}log: {{ access: false }}\n",
        support::config(&nodes, "mode: none", "")
    );
    let proxy = Proxy::start(&yaml);
    for _ in 0..5 {
        assert_eq!(Client::new(proxy.addr).get("/whoami").await.status, 200);
    }
    // Off means not even recorded: the access-log thread never starts, so no line can come.
    let threads = proxy.threads();
    assert!(
        threads.iter().any(|t| t.starts_with("tether-worker")),
        "{threads:?}"
    );
    assert!(
        !threads.iter().any(|t| t.starts_with("tether-access")),
        "{threads:?}"
    );
    assert!(!proxy.log().contains("tether::access"));
    // The same config with the log on has that thread (so the check above can fail).
    let on = Proxy::start(&support::config(&nodes, "mode: none", ""));
    assert!(on.threads().iter().any(|t| t.starts_with("tether-access")));
}

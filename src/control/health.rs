//! Active health checks: one background task per node, never on the request path.
//!
//! The probe itself is pingora-load-balancing's `HttpHealthCheck` (with a validator for
//! `expect_status`) or `TcpHealthCheck`; around it we keep our own rise/fall counting, because
//! passive failures from the request path feed the same state and transitions must be logged
//! with their reason. Tasks follow config reloads: the supervisor restarts them for the new node
//! set whenever the runtime generation changes.

use crate::config::HealthCheck;
use crate::runtime::node::{Health, NodeState};
use crate::runtime::Shared;
use pingora_error::{Error, ErrorType};
use pingora_load_balancing::health_check::{HealthCheck as Probe, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Run checks for every upstream that configures them, restarting on each reload
/// (`generation` changes). Runs until the process ends.
pub async fn supervise(runtime: &'static Shared, mut generation: watch::Receiver<u64>) {
    loop {
        let rt = runtime.load_full();
        let mut tasks = JoinSet::new();
        for pool in &rt.pools {
            let Some(check) = pool.health_check.clone() else {
                continue;
            };
            for node in &pool.nodes {
                tasks.spawn(watch_node(
                    pool.name.clone(),
                    Arc::clone(node),
                    check.clone(),
                ));
            }
        }
        drop(rt);
        if generation.changed().await.is_err() {
            // The control plane is gone: the process is ending.
            tasks.shutdown().await;
            return;
        }
        tasks.shutdown().await;
    }
}

/// Probe one node forever, applying rise/fall to its health.
async fn watch_node(upstream: String, node: Arc<NodeState>, check: HealthCheck) {
    let probe = build_probe(&check);
    let backend = match Backend::new(&node.address.to_string()) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(node = %node.id, error = %e, "cannot health-check this address");
            return;
        }
    };
    let (mut ups, mut downs) = (0u32, 0u32);
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = match tokio::time::timeout(check.timeout, probe.check(&backend)).await {
            Ok(r) => r.map_err(|e| describe(&e)),
            Err(_) => Err("timeout".to_string()),
        };
        let ok = result.is_ok();
        let detail = result.err().unwrap_or_else(|| "ok".to_string());
        node.record_check(ok, detail.clone());
        if ok {
            (ups, downs) = (ups.saturating_add(1), 0);
            if ups >= check.rise {
                node.set_health(&upstream, Health::Healthy, &format!("{ups} checks passed"));
            }
        } else {
            (ups, downs) = (0, downs.saturating_add(1));
            if downs >= check.fall {
                let reason = format!("{downs} checks failed, last: {detail}");
                node.set_health(&upstream, Health::Unhealthy, &reason);
            }
        }
    }
}

enum AnyProbe {
    Http(Box<HttpHealthCheck>),
    Tcp(Box<TcpHealthCheck>),
}

impl AnyProbe {
    async fn check(&self, backend: &Backend) -> pingora_error::Result<()> {
        match self {
            AnyProbe::Http(p) => p.check(backend).await,
            AnyProbe::Tcp(p) => p.check(backend).await,
        }
    }
}

fn build_probe(check: &HealthCheck) -> AnyProbe {
    match &check.path {
        Some(path) => {
            let host = check
                .host
                .clone()
                .unwrap_or_else(|| crate::config::defaults::HEALTH_CHECK_FALLBACK_HOST.into());
            let mut probe = HttpHealthCheck::new(&host, false);
            if let Ok(req) = pingora_http::RequestHeader::build("GET", path.as_bytes(), None) {
                let mut req = req;
                let _ = req.append_header("Host", host.as_str());
                let _ = req.append_header("User-Agent", "tether-health-check");
                probe.req = req;
            }
            probe.peer_template.options.connection_timeout = Some(check.timeout);
            probe.peer_template.options.read_timeout = Some(check.timeout);
            let expect = check.expect_status.clone();
            probe.validator = Some(Box::new(move |resp| {
                let status = resp.status.as_u16();
                let good = if expect.is_empty() {
                    (200..300).contains(&status)
                } else {
                    expect.contains(&status)
                };
                if good {
                    Ok(())
                } else {
                    Error::e_explain(ErrorType::CustomCode("status", status), "unexpected status")
                }
            }));
            AnyProbe::Http(Box::new(probe))
        }
        None => {
            let mut probe = TcpHealthCheck::new();
            probe.peer_template.options.connection_timeout = Some(check.timeout);
            AnyProbe::Tcp(probe)
        }
    }
}

/// A short reason for logs and `/status`: "connection refused", "timeout", "status 503".
fn describe(e: &Error) -> String {
    match e.etype() {
        ErrorType::ConnectRefused => "connection refused".into(),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            "timeout".into()
        }
        ErrorType::CustomCode(_, status) => format!("status {status}"),
        ErrorType::ConnectionClosed => "connection closed".into(),
        other => format!("{other:?}"),
    }
}

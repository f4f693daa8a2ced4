//! Runs the clients of one load test: ramp-up, the soft stop (duration or request budget), the hard
//! deadline, the live progress line; then turns the counters into the `Report`.

use super::args::{Flow, Plan};
use super::client::{Client, Control, Shared};
use super::history::Recorder;
use super::report::{Errors, Latency, Report};
use super::stats::Stats;
use super::timeline::{Sampler, Timeline};
use super::{http, socketio, ws};
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The flow client `index` runs (`mixed` deals http, longpoll, ws in turn).
fn flow_of(flow: Flow, index: usize) -> Flow {
    match flow {
        Flow::Mixed => [Flow::Http, Flow::Longpoll, Flow::Ws][index % 3],
        other => other,
    }
}

/// When client `index` starts: evenly over the ramp.
fn start_offset(ramp: Duration, index: usize, clients: usize) -> Duration {
    let nanos = ramp.as_nanos() * index as u128 / clients.max(1) as u128;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

pub(crate) async fn run(plan: Arc<Plan>, stats: Stats) -> Report {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        control: Control::new(plan.requests),
        plan: Arc::clone(&plan),
        stats,
        history: plan.history.then(|| Recorder::new(start)),
    });
    let soft_end = start + plan.duration;

    let mut clients = JoinSet::new();
    for index in 0..plan.clients {
        let at = start + start_offset(plan.ramp, index, plan.clients);
        clients.spawn(client(index, Arc::clone(&shared), at));
    }
    let stopper = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            tokio::time::sleep_until(soft_end).await;
            shared.control.stop(&shared.stats);
        })
    };
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(progress(Arc::clone(&shared), start)));
    let announce = (plan.hold_open && plan.flow == Flow::Ws)
        .then(|| tokio::spawn(announce_all_open(Arc::clone(&shared), start)));
    // --report: the sampler is taken out of its slot at the end, so a tick that races the
    // abort finds it gone.
    let sampler = plan
        .sample_every
        .map(|every| Arc::new(Mutex::new(Some(Sampler::new(start, every)))));
    let sampling = sampler
        .as_ref()
        .map(|s| tokio::spawn(sample(Arc::clone(&shared), Arc::clone(s), start)));

    let all_done = async { while clients.join_next().await.is_some() {} };
    let finished = tokio::time::timeout_at(soft_end + plan.hard_grace, all_done)
        .await
        .is_ok();
    let aborted = if finished { 0 } else { clients.len() as u64 };
    clients.abort_all();
    let elapsed = start.elapsed();
    if shared.history.is_some() {
        // Aborted clients hand their journals in as their tasks are dropped.
        while clients.join_next().await.is_some() {}
    }
    shared.control.stop(&shared.stats);
    stopper.abort();
    if let Some(a) = announce {
        a.abort();
    }
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    if let Some(s) = sampling {
        s.abort();
    }
    let timeline = sampler
        .and_then(|s| s.lock().unwrap_or_else(|e| e.into_inner()).take())
        .map(|s| s.finish(&shared.stats));
    report(&shared, start, elapsed, aborted, timeline)
}

/// `--report`: close an interval of the timeline every `sample_every`.
async fn sample(shared: Arc<Shared>, sampler: Arc<Mutex<Option<Sampler>>>, start: Instant) {
    let every = match sampler.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(s) => s.interval(),
        None => return,
    };
    let mut tick = tokio::time::interval_at(start + every, every);
    // A late tick (a busy machine) makes a longer interval, not a burst of short ones.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sampler.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(s) => s.sample(&shared.stats),
            None => return,
        }
    }
}

async fn client(index: usize, shared: Arc<Shared>, start_at: Instant) {
    let flow = flow_of(shared.plan.flow, index);
    let mut c = Client::new(index, Arc::clone(&shared), flow.name());
    if !c.sleep_until(start_at).await {
        return;
    }
    shared.stats.clients_started.fetch_add(1, Relaxed);
    let plan = &shared.plan;
    match flow {
        Flow::Http | Flow::Mixed => http::run(&mut c, plan.http_path.clone(), false).await,
        Flow::Longpoll => http::run(&mut c, plan.poll_path.clone(), true).await,
        Flow::Ws => ws::run(&mut c).await,
        Flow::Socketio => socketio::run(&mut c).await,
    }
}

/// One status line a second on stderr (a terminal): totals and the last second's rates.
async fn progress(shared: Arc<Shared>, start: Instant) {
    let stats = &shared.stats;
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let (mut last_req, mut last_rt, mut last_conn) = (0, 0, 0);
    loop {
        tick.tick().await;
        let req = stats.requests.load(Relaxed);
        let rt = stats.round_trips.load(Relaxed);
        let conn = stats.connections.load(Relaxed);
        let line = format!(
            "\r{:>5.0}s  clients {}/{}  req {req} ({}/s)  ws rt {rt} ({}/s)  conns {conn} (+{}/s)  \
             held {}  errors {}  violations {}\x1b[K",
            start.elapsed().as_secs_f64(),
            stats.clients_started.load(Relaxed),
            shared.plan.clients,
            req - last_req,
            rt - last_rt,
            conn - last_conn,
            stats.held(),
            stats.error_total(),
            stats.violations().0,
        );
        (last_req, last_rt, last_conn) = (req, rt, conn);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }
}

/// `ws --hold-open`: one line on stderr once every client holds its WebSocket, so whoever runs
/// the tool (a benchmark measuring the proxy's memory) knows when all of them are open.
async fn announce_all_open(shared: Arc<Shared>, start: Instant) {
    let want = shared.plan.clients as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if shared.stats.held() >= want {
            // After the progress line (a terminal), start on a line of its own.
            let lead = if std::io::stderr().is_terminal() {
                "\n"
            } else {
                ""
            };
            eprintln!(
                "{lead}tether load: all {want} WebSockets are open after {:.2} s",
                start.elapsed().as_secs_f64()
            );
            return;
        }
    }
}

fn report(
    shared: &Shared,
    start: Instant,
    elapsed: Duration,
    aborted: u64,
    timeline: Option<Timeline>,
) -> Report {
    let (stats, plan) = (&shared.stats, &shared.plan);
    let secs = elapsed.as_secs_f64();
    let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let (violations, violation_examples, clients_per_node) = stats.violations();
    let errors = Errors::from_counts(&stats.errors());
    let requests = stats.requests.load(Relaxed);
    let round_trips = stats.round_trips.load(Relaxed);
    let connections = stats.connections.load(Relaxed);
    let stopped_after = shared
        .control
        .stopped_at
        .get()
        .map_or(elapsed, |at| at.duration_since(start));
    Report {
        flow: plan.flow,
        url: plan.url.clone(),
        protocol: plan.protocol().into(),
        clients: plan.clients as u64,
        clients_started: stats.clients_started.load(Relaxed),
        duration_s: round3(secs),
        stopped_after_s: round3(stopped_after.as_secs_f64()),
        requests,
        requests_per_s: round1(per_s(requests)),
        request_latency_us: Latency::of(stats.merged(false).as_ref()),
        ws_round_trips: round_trips,
        ws_round_trips_per_s: round1(per_s(round_trips)),
        ws_latency_us: Latency::of(stats.merged(true).as_ref()),
        connections,
        connections_per_s: round1(per_s(connections)),
        errors_total: errors.total(),
        errors,
        violations,
        violation_examples,
        clients_per_node,
        held_peak: stats.held_peak(),
        held_at_end: shared.control.held_at_stop.load(Relaxed),
        hold_open: plan.hold_open,
        cookies: plan.cookies,
        aborted_clients: aborted,
        history: shared.history.as_ref().map(Recorder::finish),
        timeline,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LoadArgs;

    fn plan(url: &str, extra: &[&str]) -> Plan {
        let mut argv = vec!["load", "--url", url, "--ramp", "0s"];
        argv.extend_from_slice(extra);
        Plan::new(&LoadArgs::try_parse_from(argv).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn stops_at_the_request_budget() {
        let node = crate::demo::Node::spawn("n1", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let url = format!("http://{}", node.addr());
        let p = plan(
            &url,
            &["--clients", "5", "--requests", "50", "--duration", "1h"],
        );
        let r = run(Arc::new(p), Stats::new(1).unwrap()).await;
        assert_eq!(
            (r.requests, r.errors_total, r.violations),
            (50, 0, 0),
            "{r}"
        );
        assert_eq!(r.request_latency_us.count, 50);
        assert_eq!(r.clients_per_node.get("n1"), Some(&5));
        assert_eq!((r.connections, r.aborted_clients), (5, 0));
        node.stop().await;
    }

    #[tokio::test]
    async fn history_names_each_clients_node() {
        let node = crate::demo::Node::spawn("n1", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let url = format!("http://{}", node.addr());
        let args = ["--clients", "3", "--requests", "30", "--duration", "1h"];
        let r = run(Arc::new(plan(&url, &args)), Stats::new(1).unwrap()).await;
        assert!(r.history.is_none(), "only with --history");
        assert!(r.timeline.is_none(), "only with --report");
        let with = [&args[..], &["--history"]].concat();
        let r = run(Arc::new(plan(&url, &with)), Stats::new(1).unwrap()).await;
        let h = r.history.expect("--history");
        assert_eq!(h.clients.len(), 3, "{h:?}");
        for (i, c) in h.clients.iter().enumerate() {
            assert_eq!((c.client, c.flow), (i as u64, "http"));
            assert_eq!(c.events.len(), 1, "one node, no error: {c:?}");
            assert_eq!(c.events[0].node.as_deref(), Some("n1"));
        }
        node.stop().await;
    }

    #[tokio::test]
    async fn new_connection_per_request() {
        let node = crate::demo::Node::spawn("n1", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let url = format!("http://{}", node.addr());
        let p = plan(
            &url,
            &[
                "--clients",
                "3",
                "--requests",
                "30",
                "--duration",
                "1h",
                "--new-connection",
            ],
        );
        let r = run(Arc::new(p), Stats::new(1).unwrap()).await;
        assert_eq!(
            (r.requests, r.connections, r.errors_total, r.violations),
            (30, 30, 0, 0),
            "{r}"
        );
        node.stop().await;
    }

    #[tokio::test]
    async fn the_hard_deadline_aborts_clients_stuck_in_a_step() {
        // A server that accepts and never answers; the timeout is far away.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                open.push(s);
            }
        });
        let mut p = plan(
            &url,
            &["--clients", "3", "--duration", "100ms", "--timeout", "1h"],
        );
        p.hard_grace = Duration::from_millis(100);
        let r = run(Arc::new(p), Stats::new(1).unwrap()).await;
        assert_eq!(
            (r.aborted_clients, r.requests, r.errors_total),
            (3, 0, 0),
            "{r}"
        );
        assert!(r.to_string().contains("3 clients still running"));
        held.abort();
    }

    #[test]
    fn mixed_deals_flows_in_turn() {
        let flows: Vec<_> = (0..6).map(|i| flow_of(Flow::Mixed, i)).collect();
        assert_eq!(
            flows,
            [
                Flow::Http,
                Flow::Longpoll,
                Flow::Ws,
                Flow::Http,
                Flow::Longpoll,
                Flow::Ws
            ]
        );
        assert_eq!(flow_of(Flow::Socketio, 4), Flow::Socketio);
    }

    #[test]
    fn ramp_spreads_starts_evenly() {
        let ramp = Duration::from_secs(1);
        assert_eq!(start_offset(ramp, 0, 4), Duration::ZERO);
        assert_eq!(start_offset(ramp, 3, 4), Duration::from_millis(750));
        assert_eq!(start_offset(Duration::ZERO, 3, 4), Duration::ZERO);
    }
}

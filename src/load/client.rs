//! One virtual client's state and what every flow shares: connecting (with its source address),
//! the stop signal, the operation budget, pacing, timeouts, recording and stickiness.

use super::args::Plan;
use super::history::{Journal, Recorder};
use super::jar::Jar;
use super::source;
use super::stats::{ErrorKind, Stats};
use super::transport::Io;
use bytes::Bytes;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// First pause after a failed operation; doubled up to `MAX_BACKOFF` while failures go on (reset
/// by a successful connect), so a dead target or an exhausted machine costs little CPU instead of
/// a tight error loop.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Run `fut` for at most `limit` (an expired one is a timeout error).
pub(crate) async fn timed<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, ErrorKind>>,
) -> Result<T, ErrorKind> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(ErrorKind::Timeout),
    }
}

/// What all clients of a run share.
pub(crate) struct Shared {
    pub plan: Arc<Plan>,
    pub stats: Stats,
    pub control: Control,
    /// With --history, where each client's journal goes when it is dropped.
    pub history: Option<Recorder>,
}

/// The soft stop (end of --duration or --requests reached) and the operation budget.
pub(crate) struct Control {
    stop: watch::Sender<bool>,
    stopped: AtomicBool,
    issued: AtomicU64,
    limit: Option<u64>,
    /// Open WebSockets and in-flight long-polls at the moment of the stop.
    pub held_at_stop: AtomicU64,
    pub stopped_at: OnceLock<Instant>,
}

impl Control {
    pub fn new(limit: Option<u64>) -> Control {
        Control {
            stop: watch::Sender::new(false),
            stopped: AtomicBool::new(false),
            issued: AtomicU64::new(0),
            limit,
            held_at_stop: AtomicU64::new(0),
            stopped_at: OnceLock::new(),
        }
    }

    /// Ask every client to stop at its next step. Idempotent.
    pub fn stop(&self, stats: &Stats) {
        if !self.stopped.swap(true, Relaxed) {
            self.held_at_stop.store(stats.held(), Relaxed);
            let _ = self.stopped_at.set(Instant::now());
            self.stop.send_replace(true);
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Relaxed)
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// May one more operation start? Takes one from the --requests budget; the client taking
    /// the last one stops everyone else.
    fn ticket(&self, stats: &Stats) -> bool {
        if self.is_stopped() {
            return false;
        }
        let n = self.issued.fetch_add(1, Relaxed) + 1;
        match self.limit {
            Some(limit) if n > limit => {
                self.stop(stats);
                false
            }
            Some(limit) if n == limit => {
                self.stop(stats);
                true
            }
            _ => true,
        }
    }
}

/// Which node a client has been talking to; one violation at most per client.
#[derive(Debug, Default)]
struct Sticky {
    first: Option<Box<str>>,
    violated: bool,
    /// The next node seen becomes this client's own (a new session with no cookie to hold it).
    rebase: bool,
}

pub(crate) struct Client {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub jar: Jar,
    /// The flow this client runs, for violation examples.
    pub flow: &'static str,
    source: Option<IpAddr>,
    sticky: Sticky,
    /// With --history: this client's node changes and errors.
    journal: Option<Journal>,
    stop: watch::Receiver<bool>,
    backoff: Duration,
    next_at: Option<Instant>,
    /// With --http2: the client's one connection, its streams sent through this handle.
    h2: Option<h2::client::SendRequest<Bytes>>,
}

impl Client {
    pub fn new(index: usize, shared: Arc<Shared>, flow: &'static str) -> Client {
        let source = shared.plan.source.map(|r| r.nth(index));
        let stop = shared.control.subscribe();
        let journal = shared.history.is_some().then(|| Journal::new(index, flow));
        let jar = Jar::new(shared.plan.cookies);
        Client {
            index,
            shared,
            jar,
            flow,
            source,
            sticky: Sticky::default(),
            journal,
            stop,
            backoff: FIRST_BACKOFF,
            next_at: None,
            h2: None,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.shared.plan
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    pub fn stopped(&self) -> bool {
        self.shared.control.is_stopped()
    }

    pub fn ticket(&self) -> bool {
        self.shared.control.ticket(&self.shared.stats)
    }

    /// Resolves once the run is stopping.
    pub async fn until_stopped(&mut self) {
        // A dropped sender (the run is over) also means stop.
        let _ = self.stop.wait_for(|stopped| *stopped).await;
    }

    /// Sleep until `at`; false if the run stopped meanwhile.
    pub async fn sleep_until(&mut self, at: Instant) -> bool {
        tokio::select! {
            () = tokio::time::sleep_until(at) => !self.stopped(),
            () = self.until_stopped() => false,
        }
    }

    /// Wait for this client's next slot under --rate (immediately without it); false if the
    /// run stopped.
    pub async fn pace(&mut self) -> bool {
        let Some(period) = self.plan().period else {
            return !self.stopped();
        };
        let now = Instant::now();
        let at = self.next_at.unwrap_or(now);
        // Late by more than a period (slow answers): restart the schedule instead of bursting.
        self.next_at = Some(at.max(now.checked_sub(period).unwrap_or(now)) + period);
        if at > now {
            self.sleep_until(at).await
        } else {
            !self.stopped()
        }
    }

    /// The per-operation timeout (--timeout).
    pub fn timeout(&self) -> Duration {
        self.plan().timeout
    }

    /// A new connection to the target (counted), from this client's source address: TCP, and
    /// TLS over it for an https:// target (offering `h2` in ALPN when `http2`, else HTTP/1.1).
    pub async fn connect(&mut self) -> Result<Io, ErrorKind> {
        self.connect_as(false).await
    }

    async fn connect_as(&mut self, http2: bool) -> Result<Io, ErrorKind> {
        let (target, source) = (self.plan().target, self.source);
        let tls = self.plan().tls.clone();
        let result = timed(self.timeout(), async {
            let tcp = source::connect(target, source)
                .await
                .map_err(|e| ErrorKind::of_io(&e, true))?;
            let Some(tls) = tls else {
                return Ok(Io::Tcp(tcp));
            };
            let connector = if http2 { &tls.http2 } else { &tls.http1 };
            let stream = connector
                .connect(tls.name.clone(), tcp)
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::InvalidData => ErrorKind::Tls,
                    _ => ErrorKind::of_io(&e, true),
                })?;
            if http2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                // The server would not speak HTTP/2: every stream would fail the same way.
                return Err(ErrorKind::Protocol);
            }
            Ok(Io::Tls(Box::new(stream)))
        })
        .await;
        if result.is_ok() {
            self.stats().connections.fetch_add(1, Relaxed);
            self.backoff = FIRST_BACKOFF;
        }
        result
    }

    /// With --http2: the client's connection (made now if it has none, or its last one broke).
    pub async fn h2(&mut self) -> Result<h2::client::SendRequest<Bytes>, ErrorKind> {
        if let Some(send) = &self.h2 {
            return Ok(send.clone());
        }
        let io = self.connect_as(true).await?;
        let send = timed(self.timeout(), async {
            let (send, mut conn) = h2::client::handshake(io)
                .await
                .map_err(|_| ErrorKind::Protocol)?;
            let pings = conn.ping_pong();
            tokio::spawn(async move {
                // Its failure also surfaces on the streams, where it is counted.
                let _ = conn.await;
            });
            // One round trip: the server's SETTINGS (whether it takes extended CONNECTs)
            // arrive before its PONG.
            if let Some(mut pings) = pings {
                pings
                    .ping(h2::Ping::opaque())
                    .await
                    .map_err(|_| ErrorKind::Protocol)?;
            }
            Ok(send)
        })
        .await?;
        self.h2 = Some(send.clone());
        Ok(send)
    }

    /// The HTTP/2 connection failed: the next stream opens a new one.
    pub fn h2_broken(&mut self) {
        self.h2 = None;
    }

    /// Count an error (an answer with an error status, say) without pausing.
    pub fn error(&mut self, kind: ErrorKind) {
        self.shared.stats.error(kind);
        if let (Some(journal), Some(recorder)) = (&mut self.journal, &self.shared.history) {
            journal.error(recorder, kind);
        }
    }

    /// Count an error and pause (growing) before the client's next attempt.
    pub async fn fail(&mut self, kind: ErrorKind) {
        self.error(kind);
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.sleep_until(Instant::now() + pause).await;
    }

    /// An HTTP request (any status) was answered after `since`.
    pub fn record_request(&self, since: Instant) {
        self.stats().request(self.index, since.elapsed());
    }

    /// A WebSocket round trip (echo or ack) completed after `since`.
    pub fn record_round_trip(&self, since: Instant) {
        self.stats().round_trip(self.index, since.elapsed());
    }

    /// A new socket.io session starts. Without cookies (--no-cookies) nothing ties it to the
    /// previous session's node: the balance policy places it afresh, so the next node seen
    /// becomes the client's own (a move within a session is still a violation).
    pub fn new_session(&mut self) {
        if !self.shared.plan.cookies {
            self.sticky.rebase = true;
        }
    }

    /// This client's traffic reached `node`; the first node it sees is its own.
    pub fn observe(&mut self, node: &[u8]) {
        let node = node.trim_ascii();
        if node.is_empty() {
            return;
        }
        if let (Some(journal), Some(recorder)) = (&mut self.journal, &self.shared.history) {
            journal.node(recorder, &String::from_utf8_lossy(node));
        }
        if std::mem::take(&mut self.sticky.rebase) && self.sticky.first.is_some() {
            self.sticky.first = Some(String::from_utf8_lossy(node).into());
            return;
        }
        match &self.sticky.first {
            None => {
                let name: Box<str> = String::from_utf8_lossy(node).into();
                self.shared.stats.first_node(&name);
                self.sticky.first = Some(name);
            }
            Some(first) if first.as_bytes() == node || self.sticky.violated => {}
            Some(first) => {
                self.sticky.violated = true;
                let (index, flow) = (self.index, self.flow);
                self.shared.stats.violation(|| {
                    format!(
                        "client {index} ({flow}): {first} then {}",
                        String::from_utf8_lossy(node)
                    )
                });
            }
        }
    }
}

impl Drop for Client {
    /// Hand the journal in (also when the hard deadline aborts the client's task).
    fn drop(&mut self) {
        if let (Some(journal), Some(recorder)) = (self.journal.take(), &self.shared.history) {
            journal.finish(recorder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::args::LoadArgs;

    fn shared(extra: &[&str]) -> Arc<Shared> {
        let mut argv = vec!["load", "--url", "http://127.0.0.1:9"];
        argv.extend_from_slice(extra);
        let plan = Plan::new(&LoadArgs::try_parse_from(argv).unwrap()).unwrap();
        Arc::new(Shared {
            plan: Arc::new(plan),
            stats: Stats::new(1).unwrap(),
            control: Control::new(None),
            history: None,
        })
    }

    #[test]
    fn one_violation_per_client_with_an_example() {
        let s = shared(&[]);
        let mut a = Client::new(3, s.clone(), "http");
        let mut b = Client::new(4, s.clone(), "ws");
        a.observe(b"node-a");
        a.observe(b" node-a\n");
        b.observe(b"");
        b.observe(b"node-b");
        assert_eq!(s.stats.violations().0, 0);
        a.observe(b"node-b");
        a.observe(b"node-c");
        let (n, examples, firsts) = s.stats.violations();
        assert_eq!(n, 1);
        assert_eq!(examples, ["client 3 (http): node-a then node-b"]);
        assert_eq!(firsts.len(), 2);
    }

    #[test]
    fn without_cookies_each_session_may_start_on_another_node() {
        let s = shared(&["--flow", "socketio", "--no-cookies"]);
        let mut c = Client::new(0, s.clone(), "socketio");
        c.new_session();
        c.observe(b"node-a");
        c.new_session();
        c.observe(b"node-b");
        c.observe(b"node-b");
        assert_eq!(s.stats.violations().0, 0);
        assert_eq!(s.stats.violations().2.len(), 1, "one first node per client");
        c.observe(b"node-c");
        assert_eq!(s.stats.violations().0, 1, "a move within a session is one");
        // With cookies, a new session does not excuse a move.
        let s = shared(&["--flow", "socketio"]);
        let mut c = Client::new(0, s.clone(), "socketio");
        c.observe(b"node-a");
        c.new_session();
        c.observe(b"node-b");
        assert_eq!(s.stats.violations().0, 1);
    }

    #[test]
    fn history_follows_every_move_past_the_first_violation() {
        let mut s = shared(&[]);
        Arc::get_mut(&mut s).unwrap().history = Some(Recorder::new(Instant::now()));
        let mut c = Client::new(1, s.clone(), "ws");
        c.observe(b"node-a");
        c.observe(b"node-b");
        c.error(ErrorKind::WsClosed);
        c.observe(b"node-b");
        c.observe(b"node-c");
        drop(c);
        assert_eq!(s.stats.violations().0, 1, "still one violation per client");
        let h = s.history.as_ref().unwrap().finish();
        let seen: Vec<(Option<&str>, Option<&str>)> = h.clients[0]
            .events
            .iter()
            .map(|e| (e.node.as_deref(), e.error))
            .collect();
        assert_eq!(
            seen,
            [
                (Some("node-a"), None),
                (Some("node-b"), None),
                (None, Some("ws_closed")),
                (Some("node-c"), None),
            ]
        );
        assert_eq!(s.stats.error_total(), 1);
    }

    #[test]
    fn budget_stops_the_run_at_the_limit() {
        let stats = Stats::new(1).unwrap();
        let c = Control::new(Some(3));
        let mut rx = c.subscribe();
        assert!(c.ticket(&stats) && c.ticket(&stats));
        assert!(!c.is_stopped());
        assert!(c.ticket(&stats), "the last ticket is granted");
        assert!(c.is_stopped() && *rx.borrow_and_update());
        assert!(!c.ticket(&stats));
        let unlimited = Control::new(None);
        assert!((0..1000).all(|_| unlimited.ticket(&stats)));
        assert!(!unlimited.is_stopped());
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_and_stop() {
        let s = shared(&["--rate", "10"]);
        let mut c = Client::new(0, s.clone(), "http");
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(c.pace().await);
        }
        assert_eq!(t0.elapsed(), Duration::from_millis(400));
        let stopper = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            stopper.control.stop(&stopper.stats);
        });
        assert!(
            !c.sleep_until(Instant::now() + Duration::from_secs(3600))
                .await
        );
        assert_eq!(t0.elapsed(), Duration::from_millis(5400));
        assert!(!c.pace().await);
    }

    #[tokio::test]
    async fn refused_connect_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}");
        let plan = Plan::new(&LoadArgs::try_parse_from(["load", "--url", &url]).unwrap()).unwrap();
        let s = Arc::new(Shared {
            plan: Arc::new(plan),
            stats: Stats::new(1).unwrap(),
            control: Control::new(None),
            history: None,
        });
        let mut c = Client::new(0, s.clone(), "http");
        assert_eq!(c.connect().await.err(), Some(ErrorKind::Connect));
        assert_eq!(s.stats.connections.load(Relaxed), 0);
    }
}

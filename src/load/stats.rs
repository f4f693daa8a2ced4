//! What a run counts: atomic counters, sharded latency histograms, error kinds and stickiness.
//!
//! Hot-path recording is a relaxed atomic add or one uncontended lock of a histogram shard
//! (clients are spread over the shards by index), never an allocation.

use hdrhistogram::{CreationError, Histogram};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Why an operation failed; the report counts each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The TCP connection (or the WebSocket handshake's connection) could not be made.
    Connect,
    /// An operation took longer than --timeout.
    Timeout,
    Status5xx,
    Status4xx,
    /// An HTTP 400 whose body says "Session ID unknown" (engine.io lost the session).
    SessionUnknown,
    /// The WebSocket was closed or reset before the client was done with it.
    WsClosed,
    /// The answer was not what the protocol says (bad HTTP, bad packet, wrong echo).
    Protocol,
    /// Any other IO error on an established connection.
    Io,
    /// The TLS handshake failed (a certificate not trusted by --ca, no common protocol).
    Tls,
    /// No free local address/port (EADDRNOTAVAIL), usually ephemeral ports exhausted.
    AddrNotAvailable,
    /// Out of file descriptors (EMFILE / ENFILE).
    TooManyOpenFiles,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Status5xx,
        ErrorKind::Status4xx,
        ErrorKind::SessionUnknown,
        ErrorKind::WsClosed,
        ErrorKind::Protocol,
        ErrorKind::Io,
        ErrorKind::Tls,
        ErrorKind::AddrNotAvailable,
        ErrorKind::TooManyOpenFiles,
    ];

    /// The kind's name: its field in the report's `errors` object.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Status5xx => "status_5xx",
            ErrorKind::Status4xx => "status_4xx",
            ErrorKind::SessionUnknown => "session_unknown",
            ErrorKind::WsClosed => "ws_closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Io => "io",
            ErrorKind::Tls => "tls",
            ErrorKind::AddrNotAvailable => "eaddrnotavail",
            ErrorKind::TooManyOpenFiles => "emfile",
        }
    }

    /// Classify an IO error; `connecting` tells a failed connect from a failure mid-stream.
    pub fn of_io(err: &io::Error, connecting: bool) -> ErrorKind {
        const EMFILE: i32 = 24;
        const ENFILE: i32 = 23;
        if matches!(err.raw_os_error(), Some(EMFILE | ENFILE)) {
            return ErrorKind::TooManyOpenFiles;
        }
        match err.kind() {
            io::ErrorKind::AddrNotAvailable => ErrorKind::AddrNotAvailable,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ if connecting => ErrorKind::Connect,
            _ => ErrorKind::Io,
        }
    }

    /// The error kind of a non-success HTTP status, given (a prefix of) its body.
    pub fn of_status(status: u16, body: &[u8]) -> Option<ErrorKind> {
        match status {
            400 if contains(body, b"Session ID unknown") => Some(ErrorKind::SessionUnknown),
            400..=499 => Some(ErrorKind::Status4xx),
            500..=599 => Some(ErrorKind::Status5xx),
            _ => None,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Histogram range: 1 µs to 1 hour at 3 significant digits; larger values are clamped.
const HIST_MAX_US: u64 = 3_600_000_000;

/// Examples of violations kept for the report.
const MAX_EXAMPLES: usize = 5;

pub(crate) struct Stats {
    pub requests: AtomicU64,
    pub round_trips: AtomicU64,
    pub connections: AtomicU64,
    pub clients_started: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    /// Open WebSockets plus in-flight long-polls, now and at its highest.
    held: AtomicU64,
    held_peak: AtomicU64,
    requests_hist: Box<[Mutex<Histogram<u64>>]>,
    round_trips_hist: Box<[Mutex<Histogram<u64>>]>,
    violations: AtomicU64,
    examples: Mutex<Vec<String>>,
    first_nodes: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a histogram cannot leave it inconsistent in a way that matters here.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn shards(n: usize) -> Result<Box<[Mutex<Histogram<u64>>]>, CreationError> {
    (0..n)
        .map(|_| Histogram::new_with_bounds(1, HIST_MAX_US, 3).map(Mutex::new))
        .collect()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Stats {
    pub fn new(shard_count: usize) -> Result<Stats, CreationError> {
        let n = shard_count.max(1);
        Ok(Stats {
            requests: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            clients_started: AtomicU64::new(0),
            errors: Default::default(),
            held: AtomicU64::new(0),
            held_peak: AtomicU64::new(0),
            requests_hist: shards(n)?,
            round_trips_hist: shards(n)?,
            violations: AtomicU64::new(0),
            examples: Mutex::new(Vec::new()),
            first_nodes: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn errors(&self) -> [(ErrorKind, u64); ErrorKind::ALL.len()] {
        ErrorKind::ALL.map(|k| (k, self.errors[k as usize].load(Relaxed)))
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().map(|e| e.load(Relaxed)).sum()
    }

    pub fn request(&self, shard: usize, took: Duration) {
        self.requests.fetch_add(1, Relaxed);
        lock(&self.requests_hist[shard % self.requests_hist.len()]).saturating_record(micros(took));
    }

    pub fn round_trip(&self, shard: usize, took: Duration) {
        self.round_trips.fetch_add(1, Relaxed);
        lock(&self.round_trips_hist[shard % self.round_trips_hist.len()])
            .saturating_record(micros(took));
    }

    pub fn hold(&self) -> Held<'_> {
        let now = self.held.fetch_add(1, Relaxed) + 1;
        self.held_peak.fetch_max(now, Relaxed);
        Held(self)
    }

    pub fn held(&self) -> u64 {
        self.held.load(Relaxed)
    }

    pub fn held_peak(&self) -> u64 {
        self.held_peak.load(Relaxed)
    }

    /// A client saw its first node.
    pub fn first_node(&self, node: &str) {
        let mut map = lock(&self.first_nodes);
        match map.get_mut(node) {
            Some(n) => *n += 1,
            None => {
                map.insert(node.to_owned(), 1);
            }
        }
    }

    /// A client reached a second node (counted once per client by the caller).
    pub fn violation(&self, example: impl FnOnce() -> String) {
        self.violations.fetch_add(1, Relaxed);
        let mut examples = lock(&self.examples);
        if examples.len() < MAX_EXAMPLES {
            examples.push(example());
        }
    }

    /// Clients that reached a second node so far.
    pub fn violation_count(&self) -> u64 {
        self.violations.load(Relaxed)
    }

    pub fn violations(&self) -> (u64, Vec<String>, BTreeMap<String, u64>) {
        (
            self.violations.load(Relaxed),
            lock(&self.examples).clone(),
            lock(&self.first_nodes).clone(),
        )
    }

    /// All shards of the request (`false`) or round-trip (`true`) histogram merged.
    pub fn merged(&self, round_trips: bool) -> Option<Histogram<u64>> {
        let shards = if round_trips {
            &self.round_trips_hist
        } else {
            &self.requests_hist
        };
        let mut all: Option<Histogram<u64>> = None;
        for shard in shards.iter() {
            let h = lock(shard);
            match &mut all {
                None => all = Some(h.clone()),
                // Same bounds everywhere, so adding cannot fail; a failure would only lose counts.
                Some(a) => {
                    let _ = a.add(&*h);
                }
            }
        }
        all
    }
}

/// One open WebSocket or in-flight long-poll; dropping it (also by abort) releases the count.
pub(crate) struct Held<'a>(&'a Stats);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_io_errors() {
        let e = |code| io::Error::from_raw_os_error(code);
        assert_eq!(ErrorKind::of_io(&e(24), true), ErrorKind::TooManyOpenFiles);
        assert_eq!(ErrorKind::of_io(&e(23), false), ErrorKind::TooManyOpenFiles);
        assert_eq!(ErrorKind::of_io(&e(99), true), ErrorKind::AddrNotAvailable); // EADDRNOTAVAIL
        assert_eq!(ErrorKind::of_io(&e(111), true), ErrorKind::Connect); // ECONNREFUSED
        assert_eq!(ErrorKind::of_io(&e(104), false), ErrorKind::Io); // ECONNRESET
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(ErrorKind::of_io(&timed_out, true), ErrorKind::Timeout);
    }

    #[test]
    fn classifies_statuses() {
        let unknown = br#"{"code":1,"message":"Session ID unknown"}"#;
        assert_eq!(ErrorKind::of_status(200, b""), None);
        assert_eq!(ErrorKind::of_status(304, b""), None);
        assert_eq!(
            ErrorKind::of_status(400, unknown),
            Some(ErrorKind::SessionUnknown)
        );
        assert_eq!(
            ErrorKind::of_status(404, unknown),
            Some(ErrorKind::Status4xx)
        );
        assert_eq!(
            ErrorKind::of_status(400, b"nope"),
            Some(ErrorKind::Status4xx)
        );
        assert_eq!(ErrorKind::of_status(503, b""), Some(ErrorKind::Status5xx));
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "ALL is in declaration order");
        }
    }

    #[test]
    fn counts_held_peak_and_merges_shards() {
        let s = Stats::new(3).unwrap();
        {
            let _a = s.hold();
            let _b = s.hold();
            assert_eq!(s.held(), 2);
        }
        let _c = s.hold();
        assert_eq!((s.held(), s.held_peak()), (1, 2));
        for i in 0..100u64 {
            s.request(i as usize, Duration::from_micros(i + 1));
        }
        s.round_trip(7, Duration::from_secs(7200)); // beyond the range: clamped, not lost
        let h = s.merged(false).unwrap();
        assert_eq!((h.len(), h.max()), (100, 100));
        assert_eq!(s.merged(true).unwrap().len(), 1);
        s.error(ErrorKind::Io);
        s.error(ErrorKind::Io);
        assert_eq!(s.error_total(), 2);
        assert_eq!(s.errors()[ErrorKind::Io as usize], (ErrorKind::Io, 2));
    }

    #[test]
    fn keeps_a_few_violation_examples() {
        let s = Stats::new(1).unwrap();
        for i in 0..8 {
            s.violation(|| format!("client {i}"));
        }
        s.first_node("a");
        s.first_node("a");
        s.first_node("b");
        let (n, examples, nodes) = s.violations();
        assert_eq!((n, examples.len()), (8, MAX_EXAMPLES));
        assert_eq!(
            nodes.into_iter().collect::<Vec<_>>(),
            [("a".into(), 2), ("b".into(), 1)]
        );
    }
}

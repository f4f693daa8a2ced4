//! `--report`: the run sampled at a fixed interval (throughput, latency percentiles, errors by
//! kind, violations, connections held), for the HTML report's charts over time.
//!
//! The hot path is untouched: a sampler task reads the counters every interval and takes each
//! interval's latencies as the difference between two merges of the cumulative histograms.

use super::stats::{ErrorKind, Stats};
use hdrhistogram::Histogram;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// At most about this many intervals in a run of the planned duration.
const MAX_POINTS: f64 = 600.0;
/// Short runs still get about this many (down to the finest interval below).
const MIN_POINTS: f64 = 60.0;
/// The intervals a run is sampled at, in seconds.
const STEPS: [f64; 15] = [
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The sampling interval for a run planned to last `duration`: one second for runs from a minute
/// to ten, finer for shorter runs (down to 100 ms), coarser for longer ones (at most ~600 points).
pub(crate) fn interval_for(duration: Duration) -> Duration {
    let secs = duration.as_secs_f64();
    let want = (secs / MAX_POINTS).max((secs / MIN_POINTS).min(1.0));
    let step = STEPS
        .iter()
        .copied()
        .find(|s| *s >= want - 1e-9)
        .unwrap_or(STEPS[STEPS.len() - 1]);
    Duration::from_secs_f64(step)
}

/// Latency percentiles of one interval, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Quantiles {
    fn of(h: &Histogram<u64>) -> Option<Quantiles> {
        (!h.is_empty()).then(|| Quantiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

/// One interval of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the interval ended, in seconds from the start.
    pub at_s: f64,
    /// Its length in seconds (the interval, or less for the last one).
    pub span_s: f64,
    /// Requests answered, WebSocket round trips and new connections within the interval.
    pub requests: u64,
    pub round_trips: u64,
    pub connections: u64,
    /// Errors within the interval, by kind, in the order of `Errors::by_kind`.
    pub errors: [u64; ErrorKind::ALL.len()],
    /// Clients that reached a second node, from the start (a running total).
    pub violations: u64,
    /// Open WebSockets plus in-flight long-polls at the end of the interval.
    pub held: u64,
    /// Clients started so far (the ramp).
    pub clients_started: u64,
    /// Percentiles of the requests and round trips that completed within the interval.
    pub request_latency: Option<Quantiles>,
    pub ws_latency: Option<Quantiles>,
}

impl Sample {
    /// `n` events of this interval as a rate per second.
    pub fn per_s(&self, n: u64) -> f64 {
        if self.span_s > 0.0 {
            n as f64 / self.span_s
        } else {
            0.0
        }
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// The whole run, interval by interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The sampling interval in seconds.
    pub interval_s: f64,
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    pub samples: Vec<Sample>,
}

/// Running totals at the end of the last interval.
#[derive(Default)]
struct Totals {
    requests: u64,
    round_trips: u64,
    connections: u64,
    errors: [u64; ErrorKind::ALL.len()],
}

/// Takes the samples while the run goes.
pub(crate) struct Sampler {
    start: Instant,
    started_unix_ms: u64,
    interval: Duration,
    last_at: Duration,
    last: Totals,
    requests_hist: Option<Histogram<u64>>,
    round_trips_hist: Option<Histogram<u64>>,
    samples: Vec<Sample>,
}

/// The quantiles of what `now` holds beyond `before` (both cumulative).
fn delta(now: &Option<Histogram<u64>>, before: &Option<Histogram<u64>>) -> Option<Quantiles> {
    let now = now.as_ref()?;
    match before {
        None => Quantiles::of(now),
        Some(before) => {
            let mut d = now.clone();
            // Counts only grow, so this cannot underflow; if it failed, skip the interval.
            d.subtract(before).ok()?;
            Quantiles::of(&d)
        }
    }
}

impl Sampler {
    pub fn new(start: Instant, interval: Duration) -> Sampler {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Sampler {
            start,
            started_unix_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            interval,
            last_at: Duration::ZERO,
            last: Totals::default(),
            requests_hist: None,
            round_trips_hist: None,
            samples: Vec::new(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Close the interval that ends now.
    pub fn sample(&mut self, stats: &Stats) {
        let at = self.start.elapsed();
        self.sample_at(stats, at);
    }

    fn sample_at(&mut self, stats: &Stats, at: Duration) {
        let requests = stats.requests.load(Relaxed);
        let round_trips = stats.round_trips.load(Relaxed);
        let connections = stats.connections.load(Relaxed);
        let errors = stats.errors().map(|(_, n)| n);
        let requests_hist = stats.merged(false);
        let round_trips_hist = stats.merged(true);
        let mut in_interval = [0; ErrorKind::ALL.len()];
        for (i, n) in in_interval.iter_mut().enumerate() {
            *n = errors[i].saturating_sub(self.last.errors[i]);
        }
        self.samples.push(Sample {
            at_s: at.as_secs_f64(),
            span_s: at.saturating_sub(self.last_at).as_secs_f64(),
            requests: requests.saturating_sub(self.last.requests),
            round_trips: round_trips.saturating_sub(self.last.round_trips),
            connections: connections.saturating_sub(self.last.connections),
            errors: in_interval,
            violations: stats.violation_count(),
            held: stats.held(),
            clients_started: stats.clients_started.load(Relaxed),
            request_latency: delta(&requests_hist, &self.requests_hist),
            ws_latency: delta(&round_trips_hist, &self.round_trips_hist),
        });
        self.last = Totals {
            requests,
            round_trips,
            connections,
            errors,
        };
        self.last_at = at;
        self.requests_hist = requests_hist;
        self.round_trips_hist = round_trips_hist;
    }

    /// Add what was counted since the last sample to that sample, which now ends at `at`.
    fn fold_tail(&mut self, stats: &Stats, at: Duration) {
        let Some(last) = self.samples.last_mut() else {
            return;
        };
        last.requests += stats
            .requests
            .load(Relaxed)
            .saturating_sub(self.last.requests);
        last.round_trips += stats
            .round_trips
            .load(Relaxed)
            .saturating_sub(self.last.round_trips);
        last.connections += stats
            .connections
            .load(Relaxed)
            .saturating_sub(self.last.connections);
        for (i, (_, n)) in stats.errors().into_iter().enumerate() {
            last.errors[i] += n.saturating_sub(self.last.errors[i]);
        }
        last.violations = stats.violation_count();
        last.held = stats.held();
        last.clients_started = stats.clients_started.load(Relaxed);
        last.span_s += at.saturating_sub(self.last_at).as_secs_f64();
        last.at_s = at.as_secs_f64();
    }

    /// The timeline, with a last (shorter) interval up to now when one is open. A tail under
    /// 10 ms is folded into the interval before it (its counts added, its latencies left out: a
    /// sliver of an interval would chart as a spike), so the intervals always add up to the run.
    pub fn finish(mut self, stats: &Stats) -> Timeline {
        let at = self.start.elapsed();
        if at.saturating_sub(self.last_at) >= Duration::from_millis(10) || self.samples.is_empty() {
            self.sample_at(stats, at);
        } else {
            self.fold_tail(stats, at);
        }
        Timeline {
            interval_s: self.interval.as_secs_f64(),
            started_unix_ms: self.started_unix_ms,
            samples: self.samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_follow_the_planned_duration() {
        let secs = |s: u64| interval_for(Duration::from_secs(s)).as_secs_f64();
        assert_eq!(secs(2), 0.1);
        assert_eq!(secs(10), 0.2);
        assert_eq!(secs(60), 1.0);
        assert_eq!(secs(600), 1.0);
        assert_eq!(secs(3600), 10.0);
        assert_eq!(secs(86_400), 300.0);
        assert_eq!(secs(10 * 86_400), 1800.0);
        assert_eq!(secs(30 * 86_400), 3600.0);
        assert_eq!(interval_for(Duration::from_millis(1)).as_secs_f64(), 0.1);
    }

    #[test]
    fn a_tail_too_short_for_an_interval_is_counted_in_the_one_before() {
        let stats = Stats::new(1).unwrap();
        let start = Instant::now();
        let mut s = Sampler::new(start, Duration::from_millis(100));
        stats.request(0, Duration::from_micros(100));
        s.sample_at(&stats, Duration::from_millis(100));
        // A request that ends after the last tick, just before the run is reported.
        stats.request(0, Duration::from_micros(100));
        stats.error(ErrorKind::Timeout);
        s.fold_tail(&stats, Duration::from_millis(105));
        let t = Timeline {
            interval_s: 0.1,
            started_unix_ms: 0,
            samples: s.samples,
        };
        assert_eq!(t.samples.len(), 1, "{t:?}");
        assert_eq!(t.samples[0].requests, 2, "every request in some interval");
        assert_eq!(t.samples[0].error_total(), 1);
        assert!((t.samples[0].span_s - 0.105).abs() < 1e-9);
    }

    #[test]
    fn each_sample_holds_its_own_interval() {
        let stats = Stats::new(2).unwrap();
        let mut s = Sampler::new(Instant::now(), Duration::from_secs(1));
        for i in 0..10 {
            stats.request(i, Duration::from_micros(100));
        }
        stats.error(ErrorKind::Timeout);
        s.sample_at(&stats, Duration::from_secs(1));
        for i in 0..4 {
            stats.request(i, Duration::from_millis(50));
        }
        stats.round_trip(0, Duration::from_millis(2));
        stats.connections.fetch_add(3, Relaxed);
        stats.violation(|| "client 1: a then b".into());
        let _held = stats.hold();
        s.sample_at(&stats, Duration::from_millis(2500));
        s.sample_at(&stats, Duration::from_secs(3));
        let t = s.finish(&stats);
        assert_eq!(t.interval_s, 1.0);
        let [a, b, c, ..] = &t.samples[..] else {
            panic!("{t:?}")
        };
        assert_eq!((a.requests, a.error_total(), a.violations), (10, 1, 0));
        assert_eq!(a.errors[ErrorKind::Timeout as usize], 1);
        assert_eq!(a.request_latency.map(|q| q.p99), Some(100));
        assert_eq!(a.ws_latency, None);
        assert_eq!((b.requests, b.round_trips, b.connections), (4, 1, 3));
        assert_eq!((b.span_s, b.per_s(b.requests)), (1.5, 4.0 / 1.5));
        let q = b.request_latency.expect("interval latencies");
        assert!(
            (49_000..=50_100).contains(&q.p50),
            "only this interval's: {q:?}"
        );
        assert_eq!((b.violations, b.held, b.error_total()), (1, 1, 0));
        assert_eq!((c.requests, c.request_latency, c.violations), (0, None, 1));
    }

    #[test]
    fn a_run_shorter_than_one_interval_still_has_a_sample() {
        let stats = Stats::new(1).unwrap();
        stats.request(0, Duration::from_micros(10));
        let t = Sampler::new(Instant::now(), Duration::from_secs(1)).finish(&stats);
        assert_eq!(t.samples.len(), 1);
        assert_eq!(t.samples[0].requests, 1);
    }
}

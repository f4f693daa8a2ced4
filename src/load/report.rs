//! The result of a run: the JSON object of `--json` (serde) and the readable table (`Display`).

use super::args::Flow;
use super::history::History;
use super::stats::ErrorKind;
use super::timeline::Timeline;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt;

/// Latency percentiles in microseconds (all 0 when nothing was measured).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub(crate) fn of(h: Option<&Histogram<u64>>) -> Latency {
        match h {
            Some(h) if !h.is_empty() => Latency {
                count: h.len(),
                p50: h.value_at_quantile(0.50),
                p90: h.value_at_quantile(0.90),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
                mean: (h.mean() * 10.0).round() / 10.0,
            },
            _ => Latency::default(),
        }
    }
}

/// Errors by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Errors {
    /// The TCP connection could not be made.
    pub connect: u64,
    /// An operation took longer than --timeout.
    pub timeout: u64,
    pub status_5xx: u64,
    pub status_4xx: u64,
    /// HTTP 400 "Session ID unknown" (engine.io lost the session: broken stickiness).
    pub session_unknown: u64,
    /// A WebSocket closed or reset before the client was done.
    pub ws_closed: u64,
    /// An answer that breaks the protocol (bad HTTP, bad packet, wrong echo).
    pub protocol: u64,
    /// Other IO errors on established connections.
    pub io: u64,
    /// TLS handshakes that failed.
    pub tls: u64,
    /// No local address/port available (EADDRNOTAVAIL).
    pub eaddrnotavail: u64,
    /// Out of file descriptors (EMFILE/ENFILE).
    pub emfile: u64,
}

impl Errors {
    pub(crate) fn from_counts(counts: &[(ErrorKind, u64)]) -> Errors {
        let mut e = Errors::default();
        for &(kind, n) in counts {
            *match kind {
                ErrorKind::Connect => &mut e.connect,
                ErrorKind::Timeout => &mut e.timeout,
                ErrorKind::Status5xx => &mut e.status_5xx,
                ErrorKind::Status4xx => &mut e.status_4xx,
                ErrorKind::SessionUnknown => &mut e.session_unknown,
                ErrorKind::WsClosed => &mut e.ws_closed,
                ErrorKind::Protocol => &mut e.protocol,
                ErrorKind::Io => &mut e.io,
                ErrorKind::Tls => &mut e.tls,
                ErrorKind::AddrNotAvailable => &mut e.eaddrnotavail,
                ErrorKind::TooManyOpenFiles => &mut e.emfile,
            } += n;
        }
        e
    }

    /// (name, count) of every kind, in report order.
    pub fn by_kind(&self) -> [(&'static str, u64); 11] {
        [
            ("connect", self.connect),
            ("timeout", self.timeout),
            ("status_5xx", self.status_5xx),
            ("status_4xx", self.status_4xx),
            ("session_unknown", self.session_unknown),
            ("ws_closed", self.ws_closed),
            ("protocol", self.protocol),
            ("io", self.io),
            ("tls", self.tls),
            ("eaddrnotavail", self.eaddrnotavail),
            ("emfile", self.emfile),
        ]
    }

    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }
}

/// What a load run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub flow: Flow,
    pub url: String,
    /// What the clients spoke: `HTTP/1.1`, `HTTP/1.1 over TLS`, `HTTP/2 over TLS` or
    /// `HTTP/2 (h2c)`.
    pub protocol: String,
    /// Clients asked for, and clients that started before the run ended (ramp).
    pub clients: u64,
    pub clients_started: u64,
    /// Wall time from the first client's start until every client stopped (or was aborted);
    /// the rates below are over it.
    pub duration_s: f64,
    /// When the stop came (--duration, or --requests reached), from the start.
    pub stopped_after_s: f64,
    /// HTTP requests answered (any status), socket.io polling included; WebSocket handshakes
    /// are connections, not requests.
    pub requests: u64,
    pub requests_per_s: f64,
    pub request_latency_us: Latency,
    /// WebSocket round trips: ws echoes and socket.io acks.
    pub ws_round_trips: u64,
    pub ws_round_trips_per_s: f64,
    pub ws_latency_us: Latency,
    /// New TCP connections made (keep-alive reuse is not a new one).
    pub connections: u64,
    pub connections_per_s: f64,
    pub errors: Errors,
    pub errors_total: u64,
    /// Clients whose traffic reached two different nodes (each counts once).
    pub violations: u64,
    pub violation_examples: Vec<String>,
    /// How many clients each node got first (the spread of the first picks).
    pub clients_per_node: BTreeMap<String, u64>,
    /// Open WebSockets plus in-flight long-polls: at their highest, and when the stop came.
    pub held_peak: u64,
    pub held_at_end: u64,
    /// --hold-open: WebSockets were only held (held_at_end is the number held).
    pub hold_open: bool,
    /// Clients kept cookies (false with --no-cookies).
    pub cookies: bool,
    /// Clients still running at the hard deadline (duration + 10 s) and aborted.
    pub aborted_clients: u64,
    /// With --history: every client's node changes and errors, with their time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
    /// With --report: the run interval by interval, for the HTML report's charts (never in the
    /// JSON, which stays as it was).
    #[serde(skip)]
    pub timeline: Option<Timeline>,
}

impl Report {
    /// Anything for --fail-on-violation to fail on: a violation or an error.
    pub fn has_failures(&self) -> bool {
        self.violations > 0 || self.errors_total > 0
    }
}

fn rate(n: u64, secs: f64) -> String {
    format!("{:.1}", if secs > 0.0 { n as f64 / secs } else { 0.0 })
}

fn latency_row(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    n: u64,
    secs: f64,
    l: &Latency,
) -> fmt::Result {
    writeln!(
        f,
        "  {name:<15} {n:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        rate(n, secs),
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max
    )
}

impl Report {
    /// `none`, or the total with the kinds that occurred: `3 (timeout 2, ws_closed 1)`.
    pub(crate) fn errors_line(&self) -> String {
        if self.errors_total == 0 {
            return "none".to_string();
        }
        let kinds: Vec<String> = self
            .errors
            .by_kind()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!("{} ({})", self.errors_total, kinds.join(", "))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flow = self.flow.name();
        writeln!(
            f,
            "tether load: {flow} flow, {} clients ({} started{}) against {} ({}), {:.2} s (stop at {:.2} s)",
            self.clients,
            self.clients_started,
            if self.cookies { "" } else { ", no cookies" },
            self.url,
            self.protocol,
            self.duration_s,
            self.stopped_after_s
        )?;
        writeln!(
            f,
            "  {:<15} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "", "count", "per s", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us"
        )?;
        let secs = self.duration_s;
        latency_row(f, "requests", self.requests, secs, &self.request_latency_us)?;
        latency_row(
            f,
            "ws round trips",
            self.ws_round_trips,
            secs,
            &self.ws_latency_us,
        )?;
        writeln!(
            f,
            "  {:<15} {:>10} {:>10}",
            "connections",
            self.connections,
            rate(self.connections, secs)
        )?;
        let what = if self.hold_open {
            "WebSockets held open"
        } else {
            "open WebSockets + in-flight long-polls"
        };
        writeln!(
            f,
            "held:       {} at the stop, {} at the peak ({what})",
            self.held_at_end, self.held_peak
        )?;
        writeln!(f, "errors:     {}", self.errors_line())?;
        writeln!(
            f,
            "stickiness: {} violation{} (clients that reached two nodes)",
            self.violations,
            if self.violations == 1 { "" } else { "s" }
        )?;
        for e in &self.violation_examples {
            writeln!(f, "            e.g. {e}")?;
        }
        if !self.clients_per_node.is_empty() {
            let nodes: Vec<String> = self
                .clients_per_node
                .iter()
                .map(|(node, n)| format!("{node} {n}"))
                .collect();
            writeln!(f, "first node: {}", nodes.join(", "))?;
        }
        if self.aborted_clients > 0 {
            writeln!(
                f,
                "aborted:    {} clients still running at the hard deadline",
                self.aborted_clients
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A run with a bit of everything (the HTML report's tests use it too).
    pub(crate) fn report() -> Report {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let mut counts: Vec<(ErrorKind, u64)> = ErrorKind::ALL.iter().map(|k| (*k, 0)).collect();
        counts[ErrorKind::SessionUnknown as usize].1 = 3;
        counts[ErrorKind::Io as usize].1 = 1;
        let errors = Errors::from_counts(&counts);
        Report {
            flow: Flow::Socketio,
            url: "http://127.0.0.1:8080".into(),
            protocol: "HTTP/1.1".into(),
            clients: 30,
            clients_started: 30,
            duration_s: 2.0,
            stopped_after_s: 2.0,
            requests: 1000,
            requests_per_s: 500.0,
            request_latency_us: Latency::of(Some(&h)),
            ws_round_trips: 0,
            ws_round_trips_per_s: 0.0,
            ws_latency_us: Latency::of(None),
            connections: 60,
            connections_per_s: 30.0,
            errors_total: errors.total(),
            errors,
            violations: 1,
            violation_examples: vec!["client 3 (socketio): node-a then node-b".into()],
            clients_per_node: [("node-a".to_string(), 20), ("node-b".to_string(), 10)].into(),
            held_peak: 30,
            held_at_end: 28,
            hold_open: false,
            cookies: true,
            aborted_clients: 0,
            history: None,
            timeline: None,
        }
    }

    #[test]
    fn latency_percentiles_from_the_histogram() {
        let l = report().request_latency_us;
        assert_eq!(l.count, 1000);
        assert_eq!(
            (l.p50, l.p90, l.p99, l.p999, l.max),
            (500, 900, 990, 999, 1000)
        );
        assert_eq!(l.mean, 500.5);
        let empty = Histogram::<u64>::new(3).unwrap();
        assert_eq!(Latency::of(Some(&empty)), Latency::default());
    }

    #[test]
    fn json_has_every_field_by_name() {
        let r = report();
        assert!(r.has_failures());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["flow"], "socketio");
        assert_eq!(v["errors"]["session_unknown"], 3);
        assert_eq!(v["errors"]["emfile"], 0);
        assert_eq!(v["errors_total"], 4);
        assert_eq!(v["request_latency_us"]["p999"], 999);
        assert_eq!(v["clients_per_node"]["node-b"], 10);
        assert_eq!(v["held_at_end"], 28);
        assert_eq!(v["violations"], 1);
        assert!(v.get("history").is_none(), "only with --history");
    }

    #[test]
    fn error_kind_names_are_the_json_fields() {
        for kind in ErrorKind::ALL {
            let counts: Vec<(ErrorKind, u64)> = ErrorKind::ALL
                .iter()
                .map(|k| (*k, u64::from(*k == kind)))
                .collect();
            let v = serde_json::to_value(Errors::from_counts(&counts)).unwrap();
            assert_eq!(v[kind.name()], 1, "{}", kind.name());
        }
    }

    #[test]
    fn table_says_it_all() {
        let text = report().to_string();
        for want in [
            "socketio flow, 30 clients (30 started)",
            "p99.9 us",
            "500.0",
            "4 (session_unknown 3, io 1)",
            "1 violation (",
            "e.g. client 3 (socketio): node-a then node-b",
            "28 at the stop, 30 at the peak",
            "first node: node-a 20, node-b 10",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
        assert!(!text.contains("aborted"));
        let mut clean = report();
        clean.errors = Errors::default();
        clean.errors_total = 0;
        clean.violations = 0;
        clean.violation_examples.clear();
        assert!(!clean.has_failures());
        assert!(clean.to_string().contains("errors:     none"));
    }
}

//! The sections of the HTML report drawn from the run's samples and counts: throughput,
//! latencies and connections held over time, errors by kind, stickiness and first picks.

use super::charts::{self, Bar, Column, Line, TimeChart};
use super::report::Report;
use super::svg::{self, esc, fmt_count, fmt_us};
use super::timeline::{Quantiles, Sample, Timeline};
use std::fmt::Write;

/// One line of a chart over time: its name, colour, whether it is dashed, and its value in a
/// sample (`None`: nothing measured, a gap).
type Series<'a> = (&'a str, usize, bool, &'a dyn Fn(&Sample) -> Option<f64>);

/// At most this many nodes get a bar; the rest are summed up in a line.
const MAX_NODE_BARS: usize = 50;

pub(super) fn legend(out: &mut String, items: &[(&str, usize, bool)]) {
    out.push_str("<ul class=\"legend\">");
    for (name, color, dashed) in items {
        let _ = write!(
            out,
            "<li><span class=\"sw f{color}{}\"></span>{}</li>",
            if *dashed { " dashed" } else { "" },
            esc(name)
        );
    }
    out.push_str("</ul>");
}

fn share(n: u64, of: u64) -> String {
    if of == 0 {
        String::new()
    } else {
        format!(" ({:.1}%)", n as f64 * 100.0 / of as f64)
    }
}

/// How a chart places a sample: a count or latency of the interval at its middle, a state
/// read at the end of the interval at its end.
#[derive(Clone, Copy, PartialEq)]
enum At {
    Middle,
    End,
}

/// A chart over the run with its legend.
#[allow(clippy::too_many_arguments)]
fn over_time(
    out: &mut String,
    r: &Report,
    t: &Timeline,
    label: &str,
    log: bool,
    at: At,
    fmt_y: fn(f64) -> String,
    lines: &[Series<'_>],
) {
    let chart = TimeChart {
        label,
        end: end_of(r, t),
        log,
        fmt_y,
        lines: lines
            .iter()
            .map(|(name, color, dashed, value)| Line {
                name,
                color: *color,
                dashed: *dashed,
                points: t
                    .samples
                    .iter()
                    .map(|s| match at {
                        At::Middle => (s.at_s - s.span_s / 2.0, value(s)),
                        At::End => (s.at_s, value(s)),
                    })
                    .collect(),
            })
            .collect(),
        marker: Some((r.stopped_after_s, "stop")),
    };
    out.push_str("<figure>");
    out.push_str(&charts::time_chart(&chart));
    let items: Vec<(&str, usize, bool)> = lines.iter().map(|(n, c, d, _)| (*n, *c, *d)).collect();
    legend(out, &items);
    out.push_str("</figure>");
}

fn end_of(r: &Report, t: &Timeline) -> f64 {
    t.samples
        .last()
        .map_or(0.0, |s| s.at_s)
        .max(r.duration_s)
        .max(0.001)
}

fn latency_chart(out: &mut String, r: &Report, t: &Timeline, label: &str, ws: bool) {
    let q = move |s: &Sample| if ws { s.ws_latency } else { s.request_latency };
    let pick = |f: fn(&Quantiles) -> u64| move |s: &Sample| q(s).map(|q| f(&q) as f64);
    let (p50, p90, p99, max) = (
        pick(|q| q.p50),
        pick(|q| q.p90),
        pick(|q| q.p99),
        pick(|q| q.max),
    );
    over_time(
        out,
        r,
        t,
        label,
        true,
        At::Middle,
        fmt_us,
        &[
            ("p50", 0, false, &p50),
            ("p90", 1, false, &p90),
            ("p99", 2, false, &p99),
            ("max", 3, true, &max),
        ],
    );
}

pub(super) fn timeline_sections(out: &mut String, r: &Report, t: &Timeline) {
    let _ = write!(
        out,
        "<h2>Throughput</h2><p class=\"note\">Per second, in intervals of {} (the dashed rule is the stop: --duration or --requests; clients finish their step after it).</p>",
        svg::fmt_secs(t.interval_s)
    );
    let req = |s: &Sample| Some(s.per_s(s.requests));
    let rt = |s: &Sample| Some(s.per_s(s.round_trips));
    let conn = |s: &Sample| Some(s.per_s(s.connections));
    let mut lines: Vec<Series<'_>> = vec![("requests/s", 0, false, &req)];
    if r.ws_round_trips > 0 {
        lines.push(("ws round trips/s", 1, false, &rt));
    }
    lines.push(("new connections/s", 2, true, &conn));
    over_time(
        out,
        r,
        t,
        "Throughput over time",
        false,
        At::Middle,
        fmt_count,
        &lines,
    );

    out.push_str("<h2>Request latency</h2><p class=\"note\">Percentiles of the requests answered in each interval (log scale; an interval without an answer is a gap).</p>");
    latency_chart(out, r, t, "Request latency percentiles over time", false);
    if r.ws_round_trips > 0 {
        out.push_str("<h2>WebSocket round-trip latency</h2><p class=\"note\">ws echoes and socket.io acks completed in each interval (log scale).</p>");
        latency_chart(
            out,
            r,
            t,
            "WebSocket round-trip latency percentiles over time",
            true,
        );
    }
    out.push_str("<h2>Connections held</h2><p class=\"note\">Open WebSockets plus in-flight long-polls at the end of each interval, and clients started (the ramp).</p>");
    let held = |s: &Sample| Some(s.held as f64);
    let started = |s: &Sample| Some(s.clients_started as f64);
    over_time(
        out,
        r,
        t,
        "Connections held over time",
        false,
        At::End,
        fmt_count,
        &[
            ("held", 0, false, &held),
            ("clients started", 8, true, &started),
        ],
    );
}

pub(super) fn errors_section(out: &mut String, r: &Report) {
    out.push_str("<h2>Errors</h2>");
    if r.errors_total == 0 {
        out.push_str("<p class=\"ok\">No errors.</p>");
        return;
    }
    let kinds = r.errors.by_kind();
    let bars: Vec<Bar> = kinds
        .iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(i, (kind, n))| Bar {
            label: kind.to_string(),
            value: *n as f64,
            note: format!("{n}{}", share(*n, r.errors_total)),
            color: i,
        })
        .collect();
    let _ = write!(
        out,
        "<p class=\"bad\">{} errors, by kind:</p><figure>",
        r.errors_total
    );
    out.push_str(&charts::hbars("Errors by kind", &bars, None));
    out.push_str("</figure>");
    if let Some(t) = &r.timeline {
        out.push_str("<h3>Errors per second</h3><figure>");
        let cols: Vec<Column> = t
            .samples
            .iter()
            .map(|s| Column {
                from: s.at_s - s.span_s,
                to: s.at_s,
                values: s.errors.iter().map(|n| s.per_s(*n)).collect(),
            })
            .collect();
        let stacks: Vec<(&str, usize)> = kinds
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (*k, i))
            .collect();
        out.push_str(&charts::columns(
            "Errors per second by kind",
            end_of(r, t),
            &stacks,
            &cols,
            fmt_count,
        ));
        let used: Vec<(&str, usize, bool)> = stacks
            .iter()
            .filter(|(k, _)| bars.iter().any(|b| b.label == *k))
            .map(|(k, i)| (*k, *i, false))
            .collect();
        legend(out, &used);
        out.push_str("</figure>");
    }
}

pub(super) fn stickiness_section(out: &mut String, r: &Report) {
    out.push_str("<h2>Stickiness</h2>");
    if r.violations == 0 {
        out.push_str(
            "<p class=\"ok\">No violation: every client stayed on the first node it reached.</p>",
        );
    } else {
        let _ = write!(out, "<p class=\"bad\">{} client(s) reached a second node; for example:</p><ul class=\"examples\">", r.violations);
        for e in &r.violation_examples {
            let _ = write!(out, "<li>{}</li>", esc(e));
        }
        out.push_str("</ul>");
        if let Some(t) = &r.timeline {
            let v = |s: &Sample| Some(s.violations as f64);
            over_time(
                out,
                r,
                t,
                "Violations over time (running total)",
                false,
                At::End,
                fmt_count,
                &[("violations (running total)", 3, false, &v)],
            );
        }
    }
    let firsts: u64 = r.clients_per_node.values().sum();
    let nodes = r.clients_per_node.len();
    let _ = write!(out, "<h3>First picks per node</h3><p class=\"note\">Where each client landed first: {firsts} clients over {nodes} node(s); the dashed rule is an even share.</p><figure>");
    let mut picks: Vec<(&String, &u64)> = r.clients_per_node.iter().collect();
    if picks.len() > MAX_NODE_BARS {
        picks.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    }
    let bars: Vec<Bar> = picks
        .iter()
        .take(MAX_NODE_BARS)
        .map(|(node, n)| Bar {
            label: node.to_string(),
            value: **n as f64,
            note: format!("{n}{}", share(**n, firsts)),
            color: 0,
        })
        .collect();
    let even = (nodes > 1).then(|| (firsts as f64 / nodes as f64, "even share"));
    out.push_str(&charts::hbars("First picks per node", &bars, even));
    out.push_str("</figure>");
    if picks.len() > MAX_NODE_BARS {
        let rest: u64 = picks[MAX_NODE_BARS..].iter().map(|(_, n)| **n).sum();
        let _ = write!(
            out,
            "<p class=\"note\">and {} more nodes with {rest} clients.</p>",
            picks.len() - MAX_NODE_BARS
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::html::render;
    use super::*;
    use crate::load::report::tests::report;

    pub(crate) fn sample(at: f64, requests: u64, p99: Option<u64>) -> Sample {
        Sample {
            at_s: at,
            span_s: 1.0,
            requests,
            round_trips: 0,
            connections: 1,
            errors: [0, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            violations: 1,
            held: 3,
            clients_started: 30,
            request_latency: p99.map(|p| Quantiles {
                p50: p / 4,
                p90: p / 2,
                p99: p,
                max: p * 2,
            }),
            ws_latency: None,
        }
    }

    #[test]
    fn a_sampled_run_has_its_charts_and_summary() {
        let mut r = report();
        let samples = (1..=20)
            .map(|i| sample(i as f64 * 0.1, 50 + i, (i % 5 != 0).then_some(900 + i * 10)))
            .collect();
        r.timeline = Some(Timeline {
            interval_s: 0.1,
            started_unix_ms: 1_700_000_000_000,
            samples,
        });
        let page = render(&r);
        assert!(page.starts_with("<!DOCTYPE html>\n<html"));
        assert!(page.ends_with("</html>\n"));
        for want in [
            "aria-label=\"Throughput over time\"",
            "aria-label=\"Request latency percentiles over time\"",
            "aria-label=\"Connections held over time\"",
            "aria-label=\"Errors by kind\"",
            "aria-label=\"Errors per second by kind\"",
            "aria-label=\"Violations over time (running total)\"",
            "aria-label=\"First picks per node\"",
            "started 2023-11-14 22:13:20 UTC",
            "<td class=\"num\">1000</td><td class=\"num\">500.0</td>",
            "session_unknown 3, io 1",
            "<title>node-a: 20 (66.7%)</title>",
            ">even share</text>",
        ] {
            assert!(page.contains(want), "{want:?} missing");
        }
        assert!(
            !page.contains("WebSocket round-trip latency"),
            "no round trips in this run"
        );
        assert_eq!(page.matches("<svg").count(), page.matches("</svg>").count());
        let mut clean = report();
        clean.errors = Default::default();
        clean.errors_total = 0;
        clean.violations = 0;
        let page = render(&clean);
        assert!(page.contains("No errors.") && page.contains("not sampled"));
        assert!(page.contains("class=\"verdict ok\""));
    }
}

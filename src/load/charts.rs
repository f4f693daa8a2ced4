//! The charts of the HTML report, as inline SVG: lines over time (throughput, latency
//! percentiles, connections held), stacked columns over time (errors by kind) and horizontal
//! bars (first picks per node, errors by kind). Each returns one `<svg>` element.

use super::svg::{self, esc, num, x_of, YScale, BOTTOM, LEFT, RIGHT, TOP, W};
use std::fmt::Write;

/// One line of a time chart.
pub(crate) struct Line<'a> {
    pub name: &'a str,
    /// The palette colour (CSS classes `s0`.., `f0`..).
    pub color: usize,
    /// (seconds from the start, value); `None` leaves a gap (nothing was measured).
    pub points: Vec<(f64, Option<f64>)>,
    pub dashed: bool,
}

/// Lines over the run's time.
pub(crate) struct TimeChart<'a> {
    pub label: &'a str,
    /// The end of the time axis, in seconds.
    pub end: f64,
    /// A logarithmic y axis (latencies), else linear from 0.
    pub log: bool,
    pub fmt_y: fn(f64) -> String,
    pub lines: Vec<Line<'a>>,
    /// A vertical rule at this time, with its label (the stop).
    pub marker: Option<(f64, &'a str)>,
}

fn no_data(out: &mut String) {
    let _ = write!(
        out,
        "<text class=\"empty\" x=\"{}\" y=\"{}\">no data</text>",
        num((LEFT + RIGHT) / 2.0),
        num((TOP + BOTTOM) / 2.0)
    );
}

fn marker(out: &mut String, at: Option<(f64, &str)>, end: f64) {
    if let Some((t, label)) = at {
        let x = num(x_of(t, end));
        let _ = write!(
            out,
            "<line class=\"marker\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text class=\"ml end\" x=\"{}\" y=\"{}\">{}</text>",
            num(TOP),
            num(BOTTOM),
            num(x_of(t, end) - 4.0),
            num(TOP + 10.0),
            esc(label)
        );
    }
}

/// A line chart over time.
pub(crate) fn time_chart(c: &TimeChart) -> String {
    let values = || {
        c.lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|(_, v)| *v))
            .filter(|v| v.is_finite() && (!c.log || *v > 0.0))
    };
    let max = values().fold(0.0, f64::max);
    let scale = if c.log {
        YScale::log(values().fold(f64::INFINITY, f64::min), max)
    } else {
        YScale::linear(max)
    };
    let mut out = String::new();
    svg::open(&mut out, c.label, svg::H);
    svg::frame(&mut out, &scale, c.end, c.fmt_y);
    if values().next().is_none() {
        no_data(&mut out);
    }
    marker(&mut out, c.marker, c.end);
    for line in &c.lines {
        let points: Vec<Option<(f64, f64)>> = line
            .points
            .iter()
            .map(|(t, v)| {
                v.filter(|v| v.is_finite() && (!c.log || *v > 0.0))
                    .map(|v| (x_of(*t, c.end), scale.y(v)))
            })
            .collect();
        let d = svg::path_data(&points);
        if d.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<path class=\"line s{}{}\" d=\"{d}\"><title>{}</title></path>",
            line.color,
            if line.dashed { " dashed" } else { "" },
            esc(line.name)
        );
    }
    out.push_str("</svg>");
    out
}

/// One interval's column of a stacked column chart.
pub(crate) struct Column {
    /// The interval, in seconds from the start.
    pub from: f64,
    pub to: f64,
    /// One value per stack, in the order of the chart's `stacks`.
    pub values: Vec<f64>,
}

/// Stacked columns over time: one column per interval, one coloured part per stack.
pub(crate) fn columns(
    label: &str,
    end: f64,
    stacks: &[(&str, usize)],
    cols: &[Column],
    fmt_y: fn(f64) -> String,
) -> String {
    let max = cols
        .iter()
        .map(|c| c.values.iter().sum::<f64>())
        .fold(0.0, f64::max);
    let scale = YScale::linear(max);
    let mut out = String::new();
    svg::open(&mut out, label, svg::H);
    svg::frame(&mut out, &scale, end, fmt_y);
    if max <= 0.0 {
        no_data(&mut out);
    }
    for c in cols {
        let (x0, x1) = (x_of(c.from, end), x_of(c.to, end));
        // A hairline gap between columns while they are wide enough to show one.
        let w = if x1 - x0 > 3.0 {
            x1 - x0 - 1.0
        } else {
            x1 - x0
        };
        let mut base = 0.0;
        for (v, (name, color)) in c.values.iter().zip(stacks) {
            if *v <= 0.0 {
                continue;
            }
            let (y_top, y_base) = (scale.y(base + v), scale.y(base));
            base += v;
            let _ = write!(
                out,
                "<rect class=\"f{color}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}–{}: {} {}/s</title></rect>",
                num(x0),
                num(y_top),
                num(w.max(0.5)),
                num((y_base - y_top).max(0.5)),
                esc(&svg::fmt_secs(c.from)),
                esc(&svg::fmt_secs(c.to)),
                esc(name),
                esc(&svg::fmt_count(*v))
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// One bar of a horizontal bar chart.
pub(crate) struct Bar {
    pub label: String,
    pub value: f64,
    /// Written after the bar (the count, a share).
    pub note: String,
    pub color: usize,
}

/// Labels longer than this are cut (the whole label is in the bar's tooltip).
const LABEL_CHARS: usize = 26;
const ROW: f64 = 24.0;
const LABEL_END: f64 = 170.0;
const BAR_END: f64 = W - 150.0;

/// Horizontal bars, one row each, with an optional dashed rule at `mark` (its label below).
pub(crate) fn hbars(label: &str, bars: &[Bar], mark: Option<(f64, &str)>) -> String {
    let height = ROW * bars.len().max(1) as f64 + 24.0;
    let max = bars
        .iter()
        .map(|b| b.value)
        .chain(mark.map(|m| m.0))
        .fold(0.0, f64::max);
    let x = |v: f64| {
        LABEL_END + 6.0 + if max > 0.0 { v / max } else { 0.0 } * (BAR_END - LABEL_END - 6.0)
    };
    let mut out = String::new();
    svg::open(&mut out, label, height);
    // The rule goes first, so the bars and their numbers are drawn over it.
    if let (Some((v, text)), false) = (mark, bars.is_empty()) {
        let mx = num(x(v));
        let bottom = 8.0 + ROW * bars.len() as f64;
        let _ = write!(
            out,
            "<line class=\"marker\" x1=\"{mx}\" y1=\"4\" x2=\"{mx}\" y2=\"{}\"/><text class=\"ml\" x=\"{mx}\" y=\"{}\">{}</text>",
            num(bottom - 4.0),
            num(bottom + 10.0),
            esc(text)
        );
    }
    if bars.is_empty() {
        let _ = write!(
            out,
            "<text class=\"empty\" x=\"{}\" y=\"20\">none</text>",
            num(W / 2.0)
        );
    }
    for (i, b) in bars.iter().enumerate() {
        let y = 8.0 + ROW * i as f64;
        let short: String = if b.label.chars().count() > LABEL_CHARS {
            b.label.chars().take(LABEL_CHARS - 1).chain(['…']).collect()
        } else {
            b.label.clone()
        };
        let end = x(b.value.max(0.0));
        let _ = write!(
            out,
            "<g><title>{full}: {note}</title><text class=\"bl\" x=\"{lx}\" y=\"{ty}\">{short}</text><rect class=\"f{c}\" x=\"{x0}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"2\"/><text class=\"bn\" x=\"{nx}\" y=\"{ty}\">{note}</text></g>",
            full = esc(&b.label),
            note = esc(&b.note),
            lx = num(LABEL_END),
            ty = num(y + ROW / 2.0 - 2.0),
            short = esc(&short),
            c = b.color,
            x0 = num(LABEL_END + 6.0),
            y = num(y),
            w = num((end - LABEL_END - 6.0).max(1.0)),
            h = num(ROW - 8.0),
            nx = num(end + 6.0),
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(lines: Vec<Line<'_>>, log: bool) -> String {
        time_chart(&TimeChart {
            label: "throughput <&>",
            end: 10.0,
            log,
            fmt_y: svg::fmt_count,
            lines,
            marker: Some((8.0, "stop")),
        })
    }

    #[test]
    fn a_chart_without_points_says_so() {
        let empty = chart(vec![], false);
        assert!(empty.contains(">no data</text>"), "{empty}");
        assert!(!empty.contains("<path class=\"line"));
        assert!(empty.contains("aria-label=\"throughput &lt;&amp;&gt;\""));
        let gaps = Line {
            name: "p99",
            color: 0,
            points: vec![(1.0, None), (2.0, None)],
            dashed: false,
        };
        assert!(chart(vec![gaps], true).contains("no data"));
    }

    #[test]
    fn lines_are_paths_with_their_names() {
        let one = Line {
            name: "req/s",
            color: 2,
            points: vec![(5.0, Some(3.0))],
            dashed: true,
        };
        let svg = chart(vec![one], false);
        assert!(
            svg.contains("<path class=\"line s2 dashed\" d=\"M"),
            "{svg}"
        );
        assert!(svg.contains("h0\"><title>req/s</title>"), "{svg}");
        assert!(svg.contains(">stop</text>"));
        let many = Line {
            name: "p50",
            color: 0,
            points: (0..100)
                .map(|i| (i as f64 / 10.0, Some(100.0 + i as f64)))
                .collect(),
            dashed: false,
        };
        let svg = chart(vec![many], true);
        assert_eq!(svg.matches('L').count(), 99, "{svg}");
        assert!(svg.contains(">100</text>"), "decade ticks: {svg}");
    }

    #[test]
    fn columns_stack_and_bars_cut_long_labels() {
        let cols = [
            Column {
                from: 0.0,
                to: 1.0,
                values: vec![2.0, 0.0],
            },
            Column {
                from: 1.0,
                to: 2.0,
                values: vec![1.0, 3.0],
            },
        ];
        let svg = columns(
            "errors",
            2.0,
            &[("timeout", 3), ("io", 7)],
            &cols,
            svg::fmt_count,
        );
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains("class=\"f7\""));
        assert!(svg.contains("io 3/s"));
        let long = "n".repeat(40);
        let bars = [
            Bar {
                label: long.clone(),
                value: 3.0,
                note: "3 (75%)".into(),
                color: 0,
            },
            Bar {
                label: "<b>".into(),
                value: 1.0,
                note: "1".into(),
                color: 0,
            },
        ];
        let svg = hbars("first picks", &bars, Some((2.0, "even share")));
        assert!(svg.contains(&format!("{}…</text>", "n".repeat(LABEL_CHARS - 1))));
        assert!(svg.contains(&format!("<title>{long}: 3 (75%)</title>")));
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        assert!(hbars("none", &[], None).contains(">none</text>"));
    }
}

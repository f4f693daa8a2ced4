//! SVG primitives of the HTML report (`--report`): escaping, number and unit formatting, scales
//! with their ticks, and path data. The charts built on them are in `charts.rs`.
//!
//! Everything is drawn in a fixed view box ([`W`] x [`H`]) that the page scales to its width;
//! colours come from CSS classes the page defines, so the charts follow its light or dark scheme.

use std::fmt::Write;

/// The view box of every chart.
pub(crate) const W: f64 = 720.0;
pub(crate) const H: f64 = 220.0;
/// The plot area inside it: room for the y labels on the left and the x labels below.
pub(crate) const LEFT: f64 = 60.0;
pub(crate) const RIGHT: f64 = W - 14.0;
pub(crate) const TOP: f64 = 12.0;
pub(crate) const BOTTOM: f64 = H - 26.0;

/// Text and attribute values are escaped by the demo page's escaper (one for both).
pub(crate) use crate::demo::html_escape as esc;

/// A coordinate: at most one decimal, no trailing zero (`12`, `12.5`, `-3.2`).
pub(crate) fn num(x: f64) -> String {
    let x = if x.is_finite() { x } else { 0.0 };
    let r = (x * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// A count or rate, short: `950`, `12.5`, `3.4k`, `1.2M`.
pub(crate) fn fmt_count(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A latency given in microseconds: `850 µs`, `1.2 ms`, `3 s`.
pub(crate) fn fmt_us(us: f64) -> String {
    let trim = |v: f64, unit: &str| {
        if v >= 100.0 || v == v.trunc() {
            format!("{v:.0} {unit}")
        } else {
            format!("{v:.1} {unit}")
        }
    };
    if us >= 1e6 {
        trim(us / 1e6, "s")
    } else if us >= 1e3 {
        trim(us / 1e3, "ms")
    } else {
        trim(us, "µs")
    }
}

/// A time from the start of the run: `0 s`, `2.5 s`, `90 s`, `5 min`, `1.5 h`.
pub(crate) fn fmt_secs(s: f64) -> String {
    if s >= 7200.0 {
        format!("{} h", fmt_count(s / 3600.0))
    } else if s >= 300.0 {
        format!("{} min", fmt_count(s / 60.0))
    } else if s == s.trunc() {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// The step of about `target` ticks over `0..=span`: 1, 2, 2.5 or 5 times a power of ten.
pub(crate) fn nice_step(span: f64, target: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / target.max(1.0);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw * 0.999)
        .unwrap_or(10.0 * power)
}

/// Time ticks over `0..=end` seconds, on steps a person would pick (1 s, 5 s, 15 s, 1 min...).
pub(crate) fn time_ticks(end: f64) -> Vec<f64> {
    const STEPS: [f64; 16] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
        3600.0,
    ];
    let end = if end.is_finite() && end > 0.0 {
        end
    } else {
        1.0
    };
    let step = STEPS
        .into_iter()
        .find(|s| end / s <= 8.0)
        .unwrap_or_else(|| (end / 8.0 / 3600.0).ceil() * 3600.0);
    (0..)
        .map(|i| i as f64 * step)
        .take_while(|t| *t <= end * 1.0001)
        .collect()
}

/// A y axis: linear from 0, or logarithmic over whole decades (latencies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum YScale {
    Linear { max: f64 },
    Log { lo: f64, hi: f64 },
}

impl YScale {
    /// A linear axis from 0 that holds `max`, topped at a tick.
    pub fn linear(max: f64) -> YScale {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let step = nice_step(max, 4.0);
        YScale::Linear {
            max: (max / step).ceil() * step,
        }
    }

    /// A log axis over the decades that hold every positive value in `min..=max`.
    pub fn log(min: f64, max: f64) -> YScale {
        let min = if min.is_finite() && min > 0.0 {
            min
        } else {
            1.0
        };
        let max = if max.is_finite() && max > min {
            max
        } else {
            min
        };
        let lo = 10f64.powf(min.log10().floor());
        let mut hi = 10f64.powf(max.log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        YScale::Log { lo, hi }
    }

    /// The pixel row of `v`.
    pub fn y(&self, v: f64) -> f64 {
        let f = match *self {
            YScale::Linear { max } => v / max,
            YScale::Log { lo, hi } => (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()),
        };
        BOTTOM - f.clamp(0.0, 1.0) * (BOTTOM - TOP)
    }

    /// The values to draw a grid line and a label at.
    pub fn ticks(&self) -> Vec<f64> {
        match *self {
            YScale::Linear { max } => {
                let step = nice_step(max, 4.0);
                (0..)
                    .map(|i| i as f64 * step)
                    .take_while(|v| *v <= max * 1.0001)
                    .collect()
            }
            YScale::Log { lo, hi } => {
                let decades = (hi / lo).log10().round() as i32;
                let mut out = Vec::new();
                for d in 0..=decades {
                    let base = lo * 10f64.powi(d);
                    out.push(base);
                    if decades <= 2 && d < decades {
                        out.extend([2.0 * base, 5.0 * base]);
                    }
                }
                out
            }
        }
    }
}

/// The pixel column of time `t` on an axis ending at `end` seconds.
pub(crate) fn x_of(t: f64, end: f64) -> f64 {
    let end = if end > 0.0 { end } else { 1.0 };
    LEFT + (t / end).clamp(0.0, 1.0) * (RIGHT - LEFT)
}

/// The `d` of a path through `points` (pixel coordinates, in order); `None` breaks the line.
/// A point alone between breaks becomes a dot (`h0`, drawn by a round line cap), so a series of
/// one point still shows; an empty series gives an empty string.
pub(crate) fn path_data(points: &[Option<(f64, f64)>]) -> String {
    let mut d = String::new();
    let mut run = 0;
    for p in points {
        match p {
            Some((x, y)) => {
                if !d.is_empty() && run == 0 {
                    d.push(' ');
                }
                let _ = write!(
                    d,
                    "{}{} {}",
                    if run == 0 { 'M' } else { 'L' },
                    num(*x),
                    num(*y)
                );
                run += 1;
            }
            None => {
                if run == 1 {
                    d.push_str("h0");
                }
                run = 0;
            }
        }
    }
    if run == 1 {
        d.push_str("h0");
    }
    d
}

/// The grid, tick labels and axes of a time chart: y ticks labelled by `fmt_y`, time below.
pub(crate) fn frame(out: &mut String, scale: &YScale, end: f64, fmt_y: fn(f64) -> String) {
    out.push_str("<g class=\"grid\">");
    for v in scale.ticks() {
        let y = num(scale.y(v));
        let _ = write!(
            out,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text class=\"yl\" x=\"{}\" y=\"{y}\">{}</text>",
            num(LEFT),
            num(RIGHT),
            num(LEFT - 6.0),
            esc(&fmt_y(v))
        );
    }
    for t in time_ticks(end) {
        let x = num(x_of(t, end));
        let _ = write!(
            out,
            "<line class=\"tick\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text class=\"xl\" x=\"{x}\" y=\"{}\">{}</text>",
            num(BOTTOM),
            num(BOTTOM + 4.0),
            num(BOTTOM + 16.0),
            esc(&fmt_secs(t))
        );
    }
    let _ = write!(
        out,
        "</g><path class=\"axis\" d=\"M{l} {t}V{b}H{r}\"/>",
        l = num(LEFT),
        t = num(TOP),
        b = num(BOTTOM),
        r = num(RIGHT)
    );
}

/// The opening tag of a chart, labelled for screen readers.
pub(crate) fn open(out: &mut String, label: &str, height: f64) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        num(W),
        num(height),
        esc(label),
        esc(label)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_of_an_empty_series_is_empty() {
        assert_eq!(path_data(&[]), "");
        assert_eq!(path_data(&[None, None]), "");
    }

    #[test]
    fn path_of_one_point_is_a_dot() {
        assert_eq!(path_data(&[Some((10.0, 20.0))]), "M10 20h0");
        assert_eq!(path_data(&[None, Some((1.25, 2.0)), None]), "M1.3 2h0");
    }

    #[test]
    fn path_of_many_points_is_one_line_broken_at_gaps() {
        let pts: Vec<Option<(f64, f64)>> = (0..5)
            .map(|i| Some((i as f64 * 10.0, 50.0 - i as f64)))
            .collect();
        assert_eq!(path_data(&pts), "M0 50L10 49L20 48L30 47L40 46");
        let gappy = [
            Some((0.0, 1.0)),
            Some((1.0, 2.0)),
            None,
            Some((3.0, 4.0)),
            None,
            Some((5.0, 6.0)),
            Some((6.0, 7.0)),
        ];
        assert_eq!(path_data(&gappy), "M0 1L1 2 M3 4h0 M5 6L6 7");
        let many: Vec<Option<(f64, f64)>> = (0..10_000).map(|i| Some((i as f64, 1.0))).collect();
        let d = path_data(&many);
        assert_eq!(d.matches('M').count(), 1);
        assert_eq!(d.matches('L').count(), 9_999);
        assert!(!d.contains("NaN") && !d.contains("inf"));
        assert_eq!(path_data(&[Some((f64::NAN, f64::INFINITY))]), "M0 0h0");
    }

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            esc(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(esc("node\u{1}-a\u{7f}"), "node\u{FFFD}-a\u{FFFD}");
        assert_eq!(esc("ünïcode µs"), "ünïcode µs");
    }

    #[test]
    fn scales_and_ticks() {
        assert_eq!(YScale::linear(0.0), YScale::Linear { max: 1.0 });
        assert_eq!(YScale::linear(87.0), YScale::Linear { max: 100.0 });
        assert_eq!(YScale::linear(87.0).ticks(), [0.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(YScale::linear(87.0).y(0.0), BOTTOM);
        assert_eq!(YScale::linear(87.0).y(100.0), TOP);
        let log = YScale::log(120.0, 45_000.0);
        assert_eq!(
            log,
            YScale::Log {
                lo: 100.0,
                hi: 100_000.0
            }
        );
        assert_eq!(log.ticks(), [100.0, 1e3, 1e4, 1e5]);
        assert_eq!(
            YScale::log(300.0, 300.0).ticks(),
            [100.0, 200.0, 500.0, 1000.0]
        );
        assert_eq!(time_ticks(2.0), [0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(time_ticks(600.0).len(), 6);
        assert_eq!(fmt_us(850.0), "850 µs");
        assert_eq!(fmt_us(1260.0), "1.3 ms");
        assert_eq!(fmt_us(3_000_000.0), "3 s");
        assert_eq!(fmt_count(12_345.0), "12k");
        assert_eq!(fmt_count(2.5), "2.5");
        assert_eq!(fmt_secs(600.0), "10 min");
        assert_eq!(num(-3.24), "-3.2");
    }
}

//! `--report FILE.html`: the run as one self-contained page. Inline CSS (`report.css`), inline SVG
//! charts (`charts.rs`), no script and nothing fetched from anywhere, so the file can be mailed,
//! attached to a ticket or opened offline. The markup is also well-formed XML, and every string
//! that came from the run (URL, node ids, violation examples) is escaped.

use super::report::{Latency, Report};
use super::sections::{errors_section, stickiness_section, timeline_sections};
use super::svg::{esc, fmt_count, fmt_us};
use std::fmt::Write;

const STYLE: &str = include_str!("report.css");

/// A UTC date and time (`2026-01-31 12:00:00 UTC`) from milliseconds since the Unix epoch.
fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn card(out: &mut String, key: &str, value: &str, detail: &str, state: &str) {
    let _ = write!(
        out,
        "<div class=\"card {state}\"><div class=\"k\">{}</div><div class=\"v num\">{}</div><div class=\"d\">{}</div></div>",
        esc(key),
        esc(value),
        esc(detail)
    );
}

fn summary_row(out: &mut String, name: &str, n: u64, per_s: f64, l: Option<&Latency>) {
    let _ = write!(
        out,
        "<tr><td>{name}</td><td class=\"num\">{n}</td><td class=\"num\">{per_s:.1}</td>"
    );
    match l {
        Some(l) => {
            for v in [l.p50, l.p90, l.p99, l.p999, l.max] {
                let _ = write!(out, "<td class=\"num\">{v}</td>");
            }
            let _ = write!(out, "<td class=\"num\">{:.1}</td></tr>", l.mean);
        }
        None => out.push_str("<td></td><td></td><td></td><td></td><td></td><td></td></tr>"),
    }
}

fn head(out: &mut String, r: &Report) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><title>tether load: {} flow, {} clients against {}</title><style>\n{STYLE}</style></head><body>",
        r.flow.name(),
        r.clients,
        esc(&r.url)
    );
    let started = r
        .timeline
        .as_ref()
        .map(|t| format!(", started {}", utc(t.started_unix_ms)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<header><h1>tether load report</h1><p class=\"sub\">{} flow, {} clients ({} started) against <code>{}</code>{}; ran {:.2} s, stop at {:.2} s</p>",
        r.flow.name(),
        r.clients,
        r.clients_started,
        esc(&r.url),
        esc(&started),
        r.duration_s,
        r.stopped_after_s
    );
    let (class, verdict) = match (r.violations, r.errors_total, r.aborted_clients) {
        (0, 0, 0) => ("ok", "No stickiness violation, no error".to_string()),
        (v, e, a) => (
            "bad",
            format!("{v} stickiness violation(s), {e} error(s), {a} client(s) aborted"),
        ),
    };
    let _ = write!(
        out,
        "<div class=\"verdict {class}\">{}</div></header><section class=\"cards\">",
        esc(&verdict)
    );
    let rl = &r.request_latency_us;
    card(
        out,
        "requests/s",
        &fmt_count(r.requests_per_s),
        &format!("{} requests", r.requests),
        "",
    );
    card(
        out,
        "request p99",
        &fmt_us(rl.p99 as f64),
        &format!("p50 {}", fmt_us(rl.p50 as f64)),
        "",
    );
    if r.ws_round_trips > 0 {
        let wl = &r.ws_latency_us;
        card(
            out,
            "ws round trips/s",
            &fmt_count(r.ws_round_trips_per_s),
            &format!("p99 {}", fmt_us(wl.p99 as f64)),
            "",
        );
    }
    card(
        out,
        "connections",
        &r.connections.to_string(),
        &format!("{}/s", fmt_count(r.connections_per_s)),
        "",
    );
    card(
        out,
        "held (peak)",
        &r.held_peak.to_string(),
        &format!("{} at the stop", r.held_at_end),
        "",
    );
    let state = |n: u64| if n == 0 { "ok" } else { "bad" };
    card(
        out,
        "errors",
        &r.errors_total.to_string(),
        &format!("of {} operations", r.requests + r.ws_round_trips),
        state(r.errors_total),
    );
    card(
        out,
        "violations",
        &r.violations.to_string(),
        "clients that reached two nodes",
        state(r.violations),
    );
    out.push_str("</section>");
}

fn summary_section(out: &mut String, r: &Report) {
    out.push_str("<h2>Summary</h2><table><thead><tr><th></th><th>count</th><th>per s</th><th>p50 µs</th><th>p90 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>max µs</th><th>mean µs</th></tr></thead><tbody>");
    summary_row(
        out,
        "requests",
        r.requests,
        r.requests_per_s,
        Some(&r.request_latency_us),
    );
    summary_row(
        out,
        "ws round trips",
        r.ws_round_trips,
        r.ws_round_trips_per_s,
        Some(&r.ws_latency_us),
    );
    summary_row(out, "connections", r.connections, r.connections_per_s, None);
    out.push_str("</tbody></table><dl>");
    let what = if r.hold_open {
        "WebSockets held open"
    } else {
        "open WebSockets + in-flight long-polls"
    };
    let errors = r.errors_line();
    let firsts: Vec<String> = r
        .clients_per_node
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    for (k, v) in [
        (
            "held",
            format!(
                "{} at the stop, {} at the peak ({what})",
                r.held_at_end, r.held_peak
            ),
        ),
        ("errors", errors),
        (
            "stickiness",
            format!(
                "{} violation(s) (clients that reached two nodes)",
                r.violations
            ),
        ),
        ("first node", firsts.join(", ")),
        (
            "aborted",
            format!(
                "{} clients still running at the hard deadline",
                r.aborted_clients
            ),
        ),
    ] {
        let _ = write!(out, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    let _ = write!(
        out,
        "</dl><details><summary>The text report</summary><pre>{}</pre></details>",
        esc(&r.to_string())
    );
}

/// The whole page for `r`.
pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, r);
    match &r.timeline {
        Some(t) => timeline_sections(&mut out, r, t),
        None => out.push_str("<p class=\"note\">This run was not sampled over time (no --report), so there are no charts over time.</p>"),
    }
    errors_section(&mut out, r);
    stickiness_section(&mut out, r);
    summary_section(&mut out, r);
    out.push_str("<footer>Written by <code>tether load --report</code>.</footer></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::report::tests::report;
    use crate::load::sections::tests::sample;
    use crate::load::timeline::Timeline;

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn every_string_from_the_run_is_escaped() {
        let mut r = report();
        r.url = "http://h/<script>alert(1)</script>".into();
        r.clients_per_node = [
            ("<img src=x onerror=alert(1)>".to_string(), 3),
            ("\"quoted\" & 'single'\u{1}".to_string(), 2),
        ]
        .into();
        r.violation_examples =
            vec!["client 3 (http): <b>node</b> then </pre><script>x</script>".into()];
        r.timeline = Some(Timeline {
            interval_s: 1.0,
            started_unix_ms: 0,
            samples: vec![sample(1.0, 10, Some(800))],
        });
        let page = render(&r);
        for raw in [
            "<script",
            "<img",
            "<b>",
            "</pre><script",
            "'single'",
            "\u{1}",
        ] {
            assert!(!page.contains(raw), "{raw:?} unescaped");
        }
        for escaped in [
            "http://h/&lt;script&gt;alert(1)&lt;/script&gt;",
            "&lt;img src=x onerror=alert(1)&gt;",
            "&quot;quoted&quot; &amp; &#39;single&#39;\u{FFFD}",
            "&lt;b&gt;node&lt;/b&gt; then &lt;/pre&gt;&lt;script&gt;",
        ] {
            assert!(page.contains(escaped), "{escaped:?} missing");
        }
    }
}

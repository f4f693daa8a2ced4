//! An upstream's `health_check` (active probes) and `passive` (failures seen in live traffic).

use super::{join, Checker};
use crate::config::defaults::*;
use crate::config::file::{FileHealthCheck, FilePassive, StatusItem, StatusList};
use crate::config::model::{HealthCheck, Passive};

impl Checker<'_> {
    pub(super) fn health_check(&mut self, path: &str, h: &FileHealthCheck) -> Option<HealthCheck> {
        let check_path = match h.path.as_deref() {
            None => Some(DEFAULT_HEALTH_PATH.map(String::from)),
            Some("") => self.bad(&join(path, "path"), "is empty; give the path to GET, e.g. `/healthz`, or omit `path` for a TCP connect check"),
            Some(p) if p.contains("://") => self.bad(&join(path, "path"), format_args!("`{p}` is a URL; give only its path, starting with `/` (checks go to each node's own address; set `host` for the Host header)")),
            Some(p) if !p.starts_with('/') => self.bad(&join(path, "path"), format_args!("`{p}` must start with `/`, e.g. `/{}`", p.trim_start_matches('/'))),
            Some(p) if !p.bytes().all(|b| b.is_ascii_graphic()) => self.bad(&join(path, "path"), format_args!("`{}` contains a space, control character or non-ASCII character, which cannot go in a request line; percent-encode it (a space is `%20`)", p.escape_debug())),
            Some(p) => Some(Some(p.to_string())),
        };
        // Host and statuses only mean something to the HTTP check; say so instead of ignoring them.
        let http_only = |what: &str| {
            format!("{what} only applies to an HTTP check; add `path` (e.g. `/healthz`) or remove {what} for a TCP connect check")
        };
        let host = match h.host.as_deref() {
            None => Some(DEFAULT_HEALTH_HOST.map(String::from)),
            Some(_) if h.path.is_none() => self.bad(&join(path, "host"), http_only("host")),
            Some(v) if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic() && !b"/?#@,;".contains(&b)) => {
                self.bad(&join(path, "host"), format_args!("`{}` is not a valid Host header; give a host name such as `realtime.local`, optionally with `:PORT`", v.escape_debug()))
            }
            Some(v) => Some(Some(v.to_string())),
        };
        let expect_status = match &h.expect_status {
            None => Some(DEFAULT_HEALTH_EXPECT_STATUS.to_vec()),
            Some(_) if h.path.is_none() => {
                self.bad(&join(path, "expect_status"), http_only("expect_status"))
            }
            Some(list) => self.statuses(&join(path, "expect_status"), list),
        };
        let interval = self.timeout(
            &join(path, "interval"),
            h.interval.as_ref(),
            DEFAULT_HEALTH_INTERVAL,
        );
        let timeout = self.timeout(
            &join(path, "timeout"),
            h.timeout.as_ref(),
            DEFAULT_HEALTH_TIMEOUT,
        );
        let (lo, hi) = (MIN_HEALTH_THRESHOLD, MAX_HEALTH_THRESHOLD);
        let what = format_args!(
            "rise is how many checks in a row must pass to make a node healthy, from {lo} to {hi}"
        );
        let rise = self.count(
            &join(path, "rise"),
            h.rise,
            (lo, hi, DEFAULT_HEALTH_RISE),
            what,
        );
        let what = format_args!("fall is how many checks in a row must fail to make a node unhealthy, from {lo} to {hi}");
        let fall = self.count(
            &join(path, "fall"),
            h.fall,
            (lo, hi, DEFAULT_HEALTH_FALL),
            what,
        );
        let (interval, timeout) = (interval?, timeout?);
        // Point at whichever of the two the file actually sets.
        let at = join(
            path,
            if h.timeout.is_some() || h.interval.is_none() {
                "timeout"
            } else {
                "interval"
            },
        );
        let (t, i) = (
            humantime::format_duration(timeout),
            humantime::format_duration(interval),
        );
        let msg = format_args!("timeout ({t}) must be shorter than interval ({i}), or a check would still be running when the next one starts; shorten timeout or lengthen interval");
        let ok = self.ensure(timeout < interval, &at, msg);
        let check = HealthCheck {
            path: check_path?,
            host: host?,
            expect_status: expect_status?,
            interval,
            timeout,
            rise: rise?,
            fall: fall?,
        };
        ok.then_some(check)
    }

    /// `expect_status`: every item a status code in range, none twice, the list not empty.
    fn statuses(&mut self, path: &str, list: &StatusList) -> Option<Vec<u16>> {
        if list.items.is_empty() {
            return self.bad(path, "is empty; list the statuses that mean healthy, e.g. `[200, 204]`, or omit expect_status to accept any 2xx");
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in list.items.iter().enumerate() {
            let at = if list.seq {
                format!("{path}[{i}]")
            } else {
                path.to_string()
            };
            let code = match item {
                StatusItem::Code(c) => Some(*c),
                StatusItem::Text(t) => t.trim().parse::<i64>().ok(),
            };
            let range = i64::from(MIN_HEALTH_STATUS)..=i64::from(MAX_HEALTH_STATUS);
            let status = match (code, item) {
                (Some(c), _) if range.contains(&c) => u16::try_from(c).ok(),
                (Some(c), _) => self.bad(&at, format_args!("{c} is not an HTTP status; give a code between {MIN_HEALTH_STATUS} and {MAX_HEALTH_STATUS}, e.g. 200")),
                (None, StatusItem::Text(t)) => self.bad(&at, format_args!("`{t}` is not a status code; list each code, e.g. `[200, 204]`, or omit expect_status to accept any 2xx")),
                (None, StatusItem::Code(_)) => None,
            };
            match status {
                Some(s) if out.contains(&s) => {
                    ok = self.ensure(false, &at, format_args!("{s} is listed twice; remove one"));
                }
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn passive(&mut self, path: &str, p: Option<&FilePassive>) -> Option<Passive> {
        let empty = FilePassive::default();
        let p = p.unwrap_or(&empty);
        let range = (0, MAX_PASSIVE_MAX_FAILS, DEFAULT_PASSIVE_MAX_FAILS);
        let what = format_args!(
            "max_fails must be between 0 and {MAX_PASSIVE_MAX_FAILS} (0 turns passive checks off)"
        );
        let max_fails = self.count(&join(path, "max_fails"), p.max_fails, range, what);
        let fail_timeout = self.timeout(
            &join(path, "fail_timeout"),
            p.fail_timeout.as_ref(),
            DEFAULT_PASSIVE_FAIL_TIMEOUT,
        );
        Some(Passive {
            max_fails: max_fails?,
            fail_timeout: fail_timeout?,
        })
    }
}

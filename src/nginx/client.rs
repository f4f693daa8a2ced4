//! What nginx says about clients: limits and timeouts on their connections, and whose
//! X-Forwarded-For to believe (`set_real_ip_from`, `real_ip_header`).

use super::parse::Directive;
use super::syntax::{duration_text, nginx_size, nginx_time};
use super::translator::Translator;

impl Translator<'_> {
    /// `keepalive_timeout`, `client_header_timeout`, `client_body_timeout`, `send_timeout`,
    /// `large_client_header_buffers`, `set_real_ip_from`, `real_ip_*`: true if `d` was one.
    pub(super) fn client_limits(&mut self, d: &Directive) -> bool {
        let first = d.args.first().map(String::as_str).unwrap_or("");
        let at = self.loc(d.at);
        match d.name.as_str() {
            "keepalive_timeout" => match nginx_time(first) {
                Some(t) if !t.is_zero() => {
                    let note = format!("keepalive_timeout ({at})");
                    self.limit("keepalive_timeout", duration_text(t), note);
                }
                _ => self.skip(d, "tether always keeps client connections alive for a while; its limit must be above zero"),
            },
            "client_header_timeout" => match nginx_time(first) {
                Some(t) if !t.is_zero() => {
                    let note = format!("client_header_timeout ({at})");
                    self.limit("head_timeout", duration_text(t), note);
                }
                _ => self.skip(d, "not a time tether accepts"),
            },
            "client_body_timeout" => match nginx_time(first) {
                Some(t) if !t.is_zero() => {
                    let note = format!("client_body_timeout ({at})");
                    self.limit("body_timeout", duration_text(t), note);
                }
                _ => self.skip(d, "not a time tether accepts"),
            },
            "send_timeout" => match nginx_time(first) {
                Some(t) if !t.is_zero() => {
                    let note = format!("send_timeout ({at}): both cut off a client that reads nothing for this long");
                    self.limit("write_timeout", duration_text(t), note);
                }
                _ => self.skip(d, "not a time tether accepts"),
            },
            "large_client_header_buffers" => {
                let number = first.parse::<u64>().ok();
                let size = d.args.get(1).and_then(|s| nginx_size(s));
                match (number, size) {
                    (Some(n), Some(size)) if n > 0 => {
                        let head = (n * size).clamp(1024, 1024 * 1024);
                        let uri = size.clamp(256, head);
                        let note = format!("large_client_header_buffers {n} {} ({at}): nginx allows {n} buffers of {size} bytes; tether limits the whole head and the target", d.args[1]);
                        self.limit("max_head_bytes", head.to_string(), note.clone());
                        self.limit("max_uri_bytes", uri.to_string(), note);
                    }
                    _ => self.skip(d, "expects a number and a size, e.g. `4 8k`"),
                }
            }
            "set_real_ip_from" => {
                if first.starts_with("unix:") {
                    self.skip(d, "tether listens on TCP only");
                } else {
                    self.real_ip_from.push((first.to_string(), d.at));
                }
            }
            "real_ip_header" => self.real_ip_header = Some((first.to_string(), d.at)),
            "real_ip_recursive" if first == "on" => self.understood(
                "real_ip_recursive on",
                "tether walks X-Forwarded-For from the right past every trusted proxy",
                d.at,
            ),
            "real_ip_recursive" => self.skip(d, "tether always walks X-Forwarded-For past every trusted proxy (as `real_ip_recursive on`); with one proxy in front the result is the same"),
            _ => return false,
        }
        true
    }

    fn limit(&mut self, key: &'static str, value: String, note: String) {
        self.plan.limits.retain(|(k, _, _)| *k != key);
        self.plan.limits.push((key, value, note));
    }

    pub(super) fn real_ip(&mut self) {
        if self.real_ip_from.is_empty() {
            return;
        }
        match self.real_ip_header.take() {
            Some((h, _)) if h.eq_ignore_ascii_case("x-forwarded-for") => {
                for (cidr, at) in std::mem::take(&mut self.real_ip_from) {
                    let from = format!("set_real_ip_from ({})", self.loc(at));
                    self.plan.trusted_proxies.push((cidr, from));
                }
            }
            Some((h, at)) if h == "proxy_protocol" => {
                let line = format!("real_ip_header proxy_protocol ({}): a listener with `proxy_protocol: true` takes the client address from the PROXY header already", self.loc(at));
                self.plan.not_translated.push(line);
            }
            Some((h, at)) => {
                let line = format!("real_ip_header {h} ({}): tether reads the client address from X-Forwarded-For only (from trusted proxies); set_real_ip_from is not translated either", self.loc(at));
                self.plan.not_translated.push(line);
            }
            None => {
                let (_, at) = self.real_ip_from[0];
                let line = format!("set_real_ip_from ({}): without real_ip_header nginx reads X-Real-IP; tether reads X-Forwarded-For only", self.loc(at));
                self.plan.not_translated.push(line);
            }
        }
    }
}

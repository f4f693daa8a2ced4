//! The proxy directives any level may hold (request headers, HTTP version, buffering, retries,
//! response rewriting): mostly what tether does anyway, the rest listed as not translated.

use super::parse::Directive;
use super::translator::Translator;

/// `proxy_set_header NAME VALUE` lines that say what tether does anyway: (lower-case name,
/// values, what the summary calls it, why nothing is written).
const UNDERSTOOD_HEADERS: &[(&str, &[&str], &str, &str)] = &[
    (
        "upgrade",
        &["$http_upgrade"],
        "proxy_set_header Upgrade $http_upgrade",
        WEBSOCKET,
    ),
    (
        "connection",
        &["upgrade", "$connection_upgrade"],
        "proxy_set_header Connection upgrade",
        WEBSOCKET,
    ),
    (
        "connection",
        &[""],
        "proxy_set_header Connection \"\"",
        "tether keeps connections to nodes alive by itself",
    ),
    (
        "host",
        &["$host", "$http_host"],
        "proxy_set_header Host $host",
        "tether forwards the client's Host unchanged (and adds X-Forwarded-Host)",
    ),
    (
        "x-forwarded-for",
        &["$proxy_add_x_forwarded_for"],
        "proxy_set_header X-Forwarded-For",
        "tether appends the client's address to X-Forwarded-For",
    ),
    (
        "x-forwarded-proto",
        &["$scheme"],
        "proxy_set_header X-Forwarded-Proto $scheme",
        "tether sends X-Forwarded-Proto (https on TLS listeners)",
    ),
    (
        "x-forwarded-host",
        &["$host", "$http_host"],
        "proxy_set_header X-Forwarded-Host",
        "tether sends X-Forwarded-Host",
    ),
];

pub(super) const WEBSOCKET: &str = "tether passes the WebSocket upgrade through on every route";

impl Translator<'_> {
    /// The proxy directives every level may hold (headers, HTTP version, buffering): true if
    /// `d` was one. Each is either what tether does anyway, or listed as not translated.
    pub(super) fn proxy_common(&mut self, d: &Directive) -> bool {
        let arg = |i: usize| d.args.get(i).map(String::as_str).unwrap_or("");
        match d.name.as_str() {
            "proxy_set_header" => {
                let (name, value) = (arg(0).to_ascii_lowercase(), arg(1));
                let known = UNDERSTOOD_HEADERS.iter().find(|(n, values, _, _)| {
                    *n == name && values.iter().any(|v| v.eq_ignore_ascii_case(value))
                });
                match (known, name.as_str()) {
                    (Some((_, _, what, why)), _) => self.understood(what, why, d.at),
                    (None, "x-real-ip") => self.skip(d, "tether sends the client address in X-Forwarded-For, not X-Real-IP; read that header in your nodes"),
                    (None, "host") => self.skip(d, "tether forwards the client's Host unchanged"),
                    (None, _) => self.skip(d, "tether does not add or rewrite request headers"),
                }
            }
            "proxy_http_version" if arg(0) == "1.1" => self.understood(
                "proxy_http_version 1.1",
                "tether speaks HTTP/1.1 to nodes, with keep-alive",
                d.at,
            ),
            "proxy_http_version" => self.skip(d, "tether always speaks HTTP/1.1 to nodes"),
            "proxy_buffering" | "proxy_request_buffering" | "proxy_buffer_size" | "proxy_buffers" | "proxy_busy_buffers_size" | "chunked_transfer_encoding" | "tcp_nodelay" => {
                self.understood(
                    "proxy_buffering and buffer sizes",
                    "tether streams request and response bodies as they come (long-polls and event streams are never held back)",
                    d.at,
                )
            }
            "proxy_next_upstream" | "proxy_next_upstream_tries" | "proxy_next_upstream_timeout" => self.skip(d, "tether tries another node only when a connection is refused (up to 3 per request), never after a request was sent"),
            "proxy_redirect" | "proxy_cookie_domain" | "proxy_cookie_path" | "proxy_hide_header" | "proxy_pass_header" | "proxy_ignore_headers" => self.skip(d, "tether passes response headers through unchanged"),
            _ => return false,
        }
        true
    }
}

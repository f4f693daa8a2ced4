//! The HTML page a node serves at `/`, with the node's id written into it.

/// The HTML page served at `/`; `{{NODE}}` is replaced by the serving node's id.
pub const PAGE: &str = include_str!("page.html");

pub(super) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

//! The HTML page a node serves at `/`, with the node's id written into it.

/// The HTML page served at `/`; `{{NODE}}` is replaced by the serving node's id.
pub const PAGE: &str = include_str!("page.html");

/// `s` made safe as HTML or XML text and as a quoted attribute value: markup characters become
/// references, and control characters (which XML cannot carry at all) become U+FFFD. The demo
/// page and `tether load --report` both escape with it.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

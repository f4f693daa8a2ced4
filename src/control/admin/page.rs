//! The live status page on `GET /`: one HTML file (`page.html`) with its style and script
//! inline, compiled into the binary: no CDN, no build step, works offline.
//!
//! The page holds no data: its script polls `/status` every second and draws every upstream and
//! node from it (strings only ever go in as text, never as markup), keeps a few minutes of
//! requests/s and open tunnels per node in memory for its charts, and calls the drain, disable
//! and enable actions with `X-Tether-Admin: 1`. So it is served without the token; with one
//! configured, the page asks for it once, keeps it in `sessionStorage` and sends it as
//! `Authorization: Bearer`.
//!
//! Its Content-Security-Policy allows exactly the inline style and script shipped here (by
//! hash), fetches to the admin port itself, and nothing else: no other script, no framing (the
//! page has buttons that change state), no form submission.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const HTML: &str = include_str!("page.html");

/// Where the page learns whether to ask for a token (`required` or `none`).
const TOKEN_MARK: &str = "{{token}}";

struct Page {
    /// Without and with a token configured.
    bodies: [Bytes; 2],
    csp: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| Page {
    bodies: [
        Bytes::from(HTML.replace(TOKEN_MARK, "none")),
        Bytes::from(HTML.replace(TOKEN_MARK, "required")),
    ],
    csp: HeaderValue::from_str(&policy(HTML)).unwrap_or(HeaderValue::from_static(
        "default-src 'none'; frame-ancestors 'none'",
    )),
});

/// The text of the one `<tag>` element in `html` (between `<tag>` and `</tag>`), exactly as the
/// browser hashes it.
fn inline<'a>(html: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    html.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map_or("", |(inner, _)| inner)
}

fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The page's Content-Security-Policy: its own inline style and script, fetches to this origin.
fn policy(html: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(inline(html, "script")),
        hash(inline(html, "style")),
    )
}

/// `GET /`: the page, telling its script whether to ask for a token.
pub fn response(token_required: bool) -> Response<Full<Bytes>> {
    let page = &*PAGE;
    let mut r = super::reply(
        StatusCode::OK,
        "text/html; charset=utf-8",
        page.bodies[usize::from(token_required)].clone(),
    );
    let headers = r.headers_mut();
    headers.insert(http::header::CONTENT_SECURITY_POLICY, page.csp.clone());
    headers.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_one_inline_style_and_script_and_the_policy_allows_exactly_them() {
        for tag in ["style", "script"] {
            assert_eq!(HTML.matches(&format!("<{tag}")).count(), 1, "one <{tag}>");
            assert!(inline(HTML, tag).len() > 100, "<{tag}> has content");
        }
        assert_eq!(HTML.matches(TOKEN_MARK).count(), 1);
        let csp = policy(HTML);
        assert!(csp.contains(&hash(inline(HTML, "script"))), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(PAGE.csp.to_str().is_ok_and(|v| v == csp));
        // Nothing is loaded from anywhere else (the SVG namespace is a name, not a fetch).
        let html = HTML.replace("'http://www.w3.org/2000/svg'", "");
        for remote in ["http://", "https://", "src=", "@import", "url("] {
            assert!(!html.contains(remote), "the page refers to {remote}");
        }
    }

    #[test]
    fn the_page_says_whether_to_ask_for_a_token_and_cannot_be_framed() {
        let text = |required: bool| {
            String::from_utf8_lossy(&PAGE.bodies[usize::from(required)]).into_owned()
        };
        assert!(text(true).contains("content=\"required\""));
        assert!(text(false).contains("content=\"none\""));
        let r = response(true);
        assert!(r.headers()["content-security-policy"]
            .to_str()
            .is_ok_and(|v| v.contains("frame-ancestors 'none'")));
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
}

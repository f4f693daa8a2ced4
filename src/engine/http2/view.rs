//! An HTTP/2 stream's request as the request policy reads it, and the checks RFC 9113 asks of
//! an intermediary that the `h2` crate leaves to us.
//!
//! `h2` already resets a stream (PROTOCOL_ERROR) for connection-specific fields (`connection`,
//! `transfer-encoding`, `upgrade`, `keep-alive`, `proxy-connection`, `te` other than
//! `trailers`), missing, repeated or misplaced pseudo-headers, `:protocol` outside CONNECT and a
//! `content-length` that disagrees with the DATA received; and it ends the whole connection
//! (GOAWAY PROTOCOL_ERROR) for what its HPACK decoder cannot represent: upper-case names,
//! CR, LF or NUL in a name or value, unknown pseudo-headers. What is left is checked here, before
//! the policy sees the request: `:authority` and `host` disagreeing, two `host`s, a missing or
//! relative `:path`, userinfo in the authority, and values with leading or trailing whitespace
//! (RFC 9113 §8.2.1, §8.3.1).

use crate::runtime::request::{Field, RequestView};
use http::request::Parts;
use std::borrow::Cow;

/// A stream's request, ready for the policy.
pub(super) struct H2View<'a> {
    pub parts: &'a Parts,
    /// The target: `:path` (origin-form, with the query).
    target: &'a [u8],
    authority: Option<&'a [u8]>,
    /// Every `cookie` field joined with `; ` (RFC 9113 §8.2.3: browsers send one field per
    /// cookie over HTTP/2); borrowed when there is one.
    cookie: Option<Cow<'a, [u8]>>,
    /// `:protocol` of an extended CONNECT.
    protocol: Option<&'a [u8]>,
}

/// Why a stream's request is malformed: it is reset, and nothing reaches a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Malformed {
    AuthorityDiffers,
    TwoHosts,
    NoPath,
    RelativePath,
    UserInfo,
    Whitespace,
}

impl<'a> H2View<'a> {
    /// Check `parts` and view it; `protocol` is the extended CONNECT's `:protocol`.
    pub fn new(parts: &'a Parts, protocol: Option<&'a [u8]>) -> Result<H2View<'a>, Malformed> {
        let connect = parts.method == http::Method::CONNECT;
        let target: &[u8] = match parts.uri.path_and_query() {
            Some(p) => p.as_str().as_bytes(),
            // h2 refuses `:path` on a plain CONNECT, which has none; tether does not proxy
            // plain CONNECT anyway (the policy answers it).
            None if connect && protocol.is_none() => b"/",
            None => return Err(Malformed::NoPath),
        };
        let asterisk = target == b"*" && parts.method == http::Method::OPTIONS;
        if target.first() != Some(&b'/') && !asterisk {
            return Err(Malformed::RelativePath);
        }
        let mut hosts = parts.headers.get_all(http::header::HOST).iter();
        let host = hosts.next().map(|h| h.as_bytes());
        if hosts.next().is_some() {
            return Err(Malformed::TwoHosts);
        }
        let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
        if let (Some(a), Some(h)) = (authority, host) {
            if !a.eq_ignore_ascii_case(h) {
                return Err(Malformed::AuthorityDiffers);
            }
        }
        let authority = authority.or(host);
        if authority.is_some_and(|a| a.contains(&b'@')) {
            return Err(Malformed::UserInfo);
        }
        let ws = |b: &u8| *b == b' ' || *b == b'\t';
        if parts.headers.values().any(|v| {
            let v = v.as_bytes();
            v.first().is_some_and(ws) || v.last().is_some_and(ws)
        }) {
            return Err(Malformed::Whitespace);
        }
        let mut cookies = parts.headers.get_all(http::header::COOKIE).iter();
        let cookie = match (cookies.next(), cookies.next()) {
            (None, _) => None,
            (Some(one), None) => Some(Cow::Borrowed(one.as_bytes())),
            (Some(first), Some(second)) => {
                let mut joined = first.as_bytes().to_vec();
                for c in std::iter::once(second).chain(cookies) {
                    joined.extend_from_slice(b"; ");
                    joined.extend_from_slice(c.as_bytes());
                }
                Some(Cow::Owned(joined))
            }
        };
        Ok(H2View {
            parts,
            target,
            authority,
            cookie,
            protocol: protocol.filter(|_| connect),
        })
    }

    /// The joined `cookie` value, if any.
    pub fn cookie(&self) -> Option<&[u8]> {
        self.cookie.as_deref()
    }

    /// The authority the request is for (`:authority`, or `host`).
    pub fn host(&self) -> Option<&[u8]> {
        self.authority
    }
}

impl RequestView for H2View<'_> {
    fn method(&self) -> &[u8] {
        self.parts.method.as_str().as_bytes()
    }
    fn authority(&self) -> Option<&[u8]> {
        self.authority
    }
    fn target(&self) -> &[u8] {
        self.target
    }
    fn upgrade(&self) -> bool {
        self.protocol.is_some()
    }
    fn extended_connect(&self) -> bool {
        self.protocol.is_some()
    }
    fn values<'s>(&'s self, field: Field<'_>) -> impl DoubleEndedIterator<Item = &'s [u8]> {
        // Fields HTTP/2 carries elsewhere (the joined cookie, `:protocol`), or not at all (no
        // `Sec-WebSocket-Key` on an extended CONNECT), answer from here; any other by name.
        let (name, own): (Option<&str>, Option<&'s [u8]>) = match field {
            Field::Cookie => (None, self.cookie.as_deref()),
            Field::Upgrade => (None, self.protocol),
            Field::SecWebSocketKey => (None, None),
            Field::XForwardedFor => (Some("x-forwarded-for"), None),
            Field::Origin => (Some("origin"), None),
            Field::SecWebSocketVersion => (Some("sec-websocket-version"), None),
            Field::Named(n) => (Some(n), None),
        };
        let headers = name
            .into_iter()
            .flat_map(move |n| self.parts.headers.get_all(n).iter())
            .map(|v| v.as_bytes());
        own.into_iter().chain(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: http::request::Builder) -> Parts {
        build.body(()).unwrap().into_parts().0
    }

    #[test]
    fn cookie_crumbs_are_joined_and_the_authority_checked() {
        let p = parts(
            http::Request::builder()
                .uri("https://app.example/socket.io/?EIO=4")
                .header("cookie", "a=1")
                .header("cookie", "tether_node=xyz")
                .header("x-forwarded-for", "10.0.0.1"),
        );
        let v = H2View::new(&p, None).unwrap();
        assert_eq!(v.cookie(), Some(&b"a=1; tether_node=xyz"[..]));
        assert_eq!(v.authority(), Some(&b"app.example"[..]));
        assert_eq!(v.target(), b"/socket.io/?EIO=4");
        assert_eq!(v.first(Field::XForwardedFor), Some(&b"10.0.0.1"[..]));
        assert_eq!(v.values(Field::Cookie).count(), 1);
        assert!(!v.upgrade());

        let differs = parts(
            http::Request::builder()
                .uri("https://app.example/")
                .header("host", "other.example"),
        );
        assert_eq!(
            H2View::new(&differs, None).err(),
            Some(Malformed::AuthorityDiffers)
        );
        let same = parts(
            http::Request::builder()
                .uri("https://App.Example/")
                .header("host", "app.example"),
        );
        assert!(H2View::new(&same, None).is_ok());
        let spaced = parts(
            http::Request::builder()
                .uri("https://app.example/")
                .header("x-a", " padded"),
        );
        assert_eq!(
            H2View::new(&spaced, None).err(),
            Some(Malformed::Whitespace)
        );
    }

    #[test]
    fn an_extended_connect_reads_its_protocol_as_the_upgrade() {
        let p = parts(
            http::Request::builder()
                .method("CONNECT")
                .uri("https://app.example/ws")
                .header("sec-websocket-version", "13")
                .header("origin", "https://app.example"),
        );
        let v = H2View::new(&p, Some(b"websocket")).unwrap();
        assert!(v.upgrade() && v.extended_connect());
        assert_eq!(v.first(Field::Upgrade), Some(&b"websocket"[..]));
        assert_eq!(v.first(Field::SecWebSocketKey), None);
        assert_eq!(v.first(Field::SecWebSocketVersion), Some(&b"13"[..]));
    }
}

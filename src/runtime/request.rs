//! The request as the request policy reads it, whatever protocol carried it.
//!
//! Routing, the client's address, the WebSocket policy, the pin, engine.io session ids and the
//! key of key affinity are decided from a few parts of a request: its method, authority, path
//! and query, and the values of some fields. An HTTP/1 head (ranges into a connection's buffer,
//! fields classified while parsing) and an HTTP/2 stream (a header map) both expose those parts
//! through [`RequestView`], so both call the very same policy functions.

/// A field the policy reads. The well-known ones are named, so an HTTP/1 head can answer from
/// the kinds its parser assigned without comparing names again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    Cookie,
    XForwardedFor,
    Origin,
    Upgrade,
    SecWebSocketKey,
    SecWebSocketVersion,
    /// Any other field, by name (compared case-insensitively).
    Named(&'a str),
}

/// The parts of a request the policy reads.
pub trait RequestView {
    /// The method, as sent (methods are case-sensitive).
    fn method(&self) -> &[u8];
    /// The host the request is for: `Host`, an absolute-form target's authority, or
    /// `:authority`.
    fn authority(&self) -> Option<&[u8]>;
    /// The path and query (origin-form; `*` for `OPTIONS *`).
    fn target(&self) -> &[u8];
    /// The request asks to switch protocols (an HTTP/1.1 `Upgrade`, or an extended CONNECT).
    fn upgrade(&self) -> bool;
    /// The request is an HTTP/2 extended CONNECT (RFC 8441): its `:protocol` is the upgrade
    /// asked for ([`Field::Upgrade`] answers it).
    fn extended_connect(&self) -> bool {
        false
    }
    /// The values of every field `field`, in the order they came.
    fn values<'a>(&'a self, field: Field<'_>) -> impl DoubleEndedIterator<Item = &'a [u8]>;

    /// The first value of `field`.
    fn first(&self, field: Field<'_>) -> Option<&[u8]> {
        self.values(field).next()
    }

    /// The path alone, as routing reads it: `*` (OPTIONS) and a target without a leading `/`
    /// route like `/`; a path that is not UTF-8 routes like `/` too.
    fn route_path(&self) -> &str {
        let target = self.target();
        let end = target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(target.len());
        match &target[..end] {
            p @ [b'/', ..] => std::str::from_utf8(p).unwrap_or("/"),
            _ => "/",
        }
    }

    /// The query (after the first `?`), if any.
    fn query(&self) -> Option<&[u8]> {
        let target = self.target();
        let q = target.iter().position(|&b| b == b'?')?;
        Some(&target[q + 1..])
    }
}

/// `application/x-www-form-urlencoded` decoding, as `URLSearchParams` does: `%XX` escapes and
/// `+` as a space (a broken escape is kept as it is).
pub fn form_decoded(s: &[u8]) -> Vec<u8> {
    let hex = |i: usize| {
        s.get(i)
            .and_then(|&b| (b as char).to_digit(16))
            .map(|d| d as u8)
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match (s[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The first parameter `name` of `query` (names and values decoded), as nginx's `$arg_NAME`
/// takes the first.
pub fn query_param(query: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    query.split(|&b| b == b'&').find_map(|param| {
        let (n, v) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (&param[..i], &param[i + 1..]),
            None => (param, &param[..0]),
        };
        (form_decoded(n) == name).then(|| form_decoded(v))
    })
}

/// A request held as plain values: for tests of the policy, and for tools.
#[derive(Debug, Clone, Default)]
pub struct Parts<'a> {
    pub method: &'a [u8],
    pub authority: Option<&'a [u8]>,
    pub target: &'a [u8],
    pub upgrade: bool,
    /// `(name, value)`, names as sent.
    pub fields: Vec<(&'a str, &'a [u8])>,
}

impl Parts<'_> {
    fn matches(name: &str, field: Field<'_>) -> bool {
        let want = match field {
            Field::Cookie => "cookie",
            Field::XForwardedFor => "x-forwarded-for",
            Field::Origin => "origin",
            Field::Upgrade => "upgrade",
            Field::SecWebSocketKey => "sec-websocket-key",
            Field::SecWebSocketVersion => "sec-websocket-version",
            Field::Named(n) => n,
        };
        name.eq_ignore_ascii_case(want)
    }
}

impl RequestView for Parts<'_> {
    fn method(&self) -> &[u8] {
        self.method
    }
    fn authority(&self) -> Option<&[u8]> {
        self.authority
    }
    fn target(&self) -> &[u8] {
        self.target
    }
    fn upgrade(&self) -> bool {
        self.upgrade
    }
    fn values<'s>(&'s self, field: Field<'_>) -> impl DoubleEndedIterator<Item = &'s [u8]> {
        let field = match field {
            // The name is compared now; the iterator must not borrow it.
            Field::Named(n) => {
                let found: Vec<&'s [u8]> = self
                    .fields
                    .iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case(n))
                    .map(|(_, v)| *v)
                    .collect();
                return Either::Owned(found.into_iter());
            }
            known => known,
        };
        Either::Borrowed(
            self.fields
                .iter()
                .filter(move |(name, _)| Parts::matches(name, field))
                .map(|(_, v)| *v),
        )
    }
}

/// One of two iterators (the two ways [`Parts::values`] finds a field).
enum Either<A, B> {
    Borrowed(A),
    Owned(B),
}

impl<'a, A, B> Iterator for Either<A, B>
where
    A: Iterator<Item = &'a [u8]>,
    B: Iterator<Item = &'a [u8]>,
{
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Either::Borrowed(a) => a.next(),
            Either::Owned(b) => b.next(),
        }
    }
}

impl<'a, A, B> DoubleEndedIterator for Either<A, B>
where
    A: DoubleEndedIterator<Item = &'a [u8]>,
    B: DoubleEndedIterator<Item = &'a [u8]>,
{
    fn next_back(&mut self) -> Option<&'a [u8]> {
        match self {
            Either::Borrowed(a) => a.next_back(),
            Either::Owned(b) => b.next_back(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_answer_what_the_policy_asks() {
        let p = Parts {
            method: b"GET",
            authority: Some(b"app.example"),
            target: b"/socket.io/?EIO=4&room=a",
            upgrade: false,
            fields: vec![
                ("Cookie", b"a=1"),
                ("X-Tenant", b" t1 "),
                ("cookie", b"b=2"),
            ],
        };
        assert_eq!(p.route_path(), "/socket.io/");
        assert_eq!(p.query(), Some(&b"EIO=4&room=a"[..]));
        let cookies: Vec<_> = p.values(Field::Cookie).collect();
        assert_eq!(cookies, [&b"a=1"[..], b"b=2"]);
        assert_eq!(p.first(Field::Named("x-tenant")), Some(&b" t1 "[..]));
        assert_eq!(p.first(Field::Origin), None);
        let star = Parts {
            target: b"*",
            ..p.clone()
        };
        assert_eq!(star.route_path(), "/");
    }
}

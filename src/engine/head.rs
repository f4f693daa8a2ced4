//! HTTP/1.x message heads: parsing (httparse), framing (RFC 9112 §6) and the checks that keep a
//! request from being read two ways (smuggling).
//!
//! Heads are parsed in place: we keep byte ranges into the connection's buffer, never copies.

use std::ops::Range;

/// Most headers accepted in one head; more is a 431.
pub const MAX_HEADERS: usize = 100;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// What a header field is to the proxy, decided once while the head is parsed so no later step
/// compares header names again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Other,
    Host,
    Cookie,
    XForwardedFor,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host`: tether writes its own, never the client's.
    XForwardedOwn,
    /// `Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`: about one connection,
    /// never forwarded (RFC 9110 §7.6.1).
    HopByHop,
    Upgrade,
    Expect,
    ContentLength,
    TransferEncoding,
    Origin,
    SecWebSocketKey,
    SecWebSocketVersion,
    /// Named by a `Connection` header: hop-by-hop for this message only.
    Nominated,
}

impl Kind {
    /// The kind of a header named `name` (case-insensitive).
    pub fn of(name: &[u8]) -> Kind {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        // Dispatch on length first: most names are then compared with at most one candidate.
        match name.len() {
            2 if is(b"te") => Kind::HopByHop,
            4 if is(b"host") => Kind::Host,
            6 if is(b"cookie") => Kind::Cookie,
            6 if is(b"origin") => Kind::Origin,
            6 if is(b"expect") => Kind::Expect,
            7 if is(b"upgrade") => Kind::Upgrade,
            7 if is(b"trailer") => Kind::HopByHop,
            10 if is(b"connection") || is(b"keep-alive") => Kind::HopByHop,
            14 if is(b"content-length") => Kind::ContentLength,
            15 if is(b"x-forwarded-for") => Kind::XForwardedFor,
            16 if is(b"x-forwarded-host") => Kind::XForwardedOwn,
            16 if is(b"proxy-connection") => Kind::HopByHop,
            17 if is(b"transfer-encoding") => Kind::TransferEncoding,
            17 if is(b"sec-websocket-key") => Kind::SecWebSocketKey,
            17 if is(b"x-forwarded-proto") => Kind::XForwardedOwn,
            21 if is(b"sec-websocket-version") => Kind::SecWebSocketVersion,
            _ => Kind::Other,
        }
    }
}

/// A header field as byte ranges into the buffer, with its kind.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: (u32, u32),
    pub value: (u32, u32),
    pub kind: Kind,
}

impl Field {
    pub fn name<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.name.0 as usize..self.name.1 as usize]
    }
    pub fn value<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.value.0 as usize..self.value.1 as usize]
    }
}

/// The value of the first field of kind `kind`.
pub fn first<'a>(buf: &'a [u8], fields: &[Field], kind: Kind) -> Option<&'a [u8]> {
    fields.iter().find(|f| f.kind == kind).map(|f| f.value(buf))
}

/// The values of every field of kind `kind`, in head order.
pub fn all<'a>(
    buf: &'a [u8],
    fields: &'a [Field],
    kind: Kind,
) -> impl DoubleEndedIterator<Item = &'a [u8]> + 'a {
    fields
        .iter()
        .filter(move |f| f.kind == kind)
        .map(move |f| f.value(buf))
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x, or malformed.
    Malformed,
    TooManyHeaders,
    /// Conflicting or invalid framing: `Content-Length` with `Transfer-Encoding`, several
    /// different lengths, a transfer coding other than a final `chunked`.
    BadFraming,
}

/// What the proxy needs from a request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// Bytes of the head, including the final CRLF CRLF.
    pub len: usize,
    pub method: Range<usize>,
    /// The request target (path and query).
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub framing: Framing,
    /// `Connection: upgrade` with an `Upgrade` header.
    pub upgrade: bool,
    /// The client wants the connection kept after this exchange.
    pub keep_alive: bool,
    pub host: Option<(u32, u32)>,
    /// `Expect: 100-continue`: tether answers it and does not forward it.
    pub expect_continue: bool,
    /// The method is `HEAD`: the response has no body whatever its framing headers say.
    pub head: bool,
}

/// What the proxy needs from a response head.
#[derive(Debug, Clone)]
pub struct Response {
    pub len: usize,
    pub status: u16,
    pub minor: u8,
    pub framing: Framing,
    pub keep_alive: bool,
}

fn offset(buf: &[u8], part: &[u8]) -> u32 {
    (part.as_ptr() as usize - buf.as_ptr() as usize) as u32
}

fn range(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = offset(buf, part) as usize;
    start..start + part.len()
}

/// Connection-header facts, shared by requests and responses.
#[derive(Default)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    other: bool,
}

fn connection_tokens(value: &[u8], t: &mut ConnectionTokens) {
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            t.close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            t.keep_alive = true;
        } else if token.eq_ignore_ascii_case(b"upgrade") {
            t.upgrade = true;
        } else if !token.is_empty() {
            t.other = true;
        }
    }
}

/// Framing facts gathered over all headers.
#[derive(Default)]
struct FramingHeaders {
    length: Option<u64>,
    chunked: bool,
    transfer_encoding: bool,
    bad: bool,
}

impl FramingHeaders {
    fn content_length(&mut self, value: &[u8]) {
        // A list like "5, 5" is legal when all values agree; anything else is refused.
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            let parsed =
                (!part.is_empty() && part.len() <= 18 && part.iter().all(u8::is_ascii_digit))
                    .then(|| part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
            match (parsed, self.length) {
                (None, _) => self.bad = true,
                (Some(n), Some(m)) if n != m => self.bad = true,
                (Some(n), _) => self.length = Some(n),
            }
        }
    }

    fn transfer_encoding(&mut self, value: &[u8]) {
        self.transfer_encoding = true;
        // Only a final, exact `chunked` is understood; "chunked" must be the last coding and must
        // not appear twice. Anything else ("xchunked", "chunked, identity") is refused outright.
        for coding in value.split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            if self.chunked {
                self.bad = true;
            }
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked = true;
            } else {
                self.bad = true;
            }
        }
    }
}

/// Record `h` as a field, and fold in the headers requests and responses read alike
/// (`Connection`, `Content-Length`, `Transfer-Encoding`). Returns the field's kind.
fn shared_header(
    buf: &[u8],
    h: &httparse::Header<'_>,
    fields: &mut Vec<Field>,
    conn: &mut ConnectionTokens,
    framing: &mut FramingHeaders,
) -> Kind {
    let name = h.name.as_bytes();
    let kind = Kind::of(name);
    fields.push(Field {
        name: (offset(buf, name), offset(buf, name) + name.len() as u32),
        value: (
            offset(buf, h.value),
            offset(buf, h.value) + h.value.len() as u32,
        ),
        kind,
    });
    match kind {
        Kind::HopByHop if name.eq_ignore_ascii_case(b"connection") => {
            connection_tokens(h.value, conn)
        }
        Kind::ContentLength => framing.content_length(h.value),
        Kind::TransferEncoding => framing.transfer_encoding(h.value),
        _ => {}
    }
    kind
}

/// Mark the fields a `Connection` header names (other than `upgrade`, which the exchange
/// handles) as hop-by-hop for this message: they are not forwarded.
fn mark_nominated(buf: &[u8], fields: &mut [Field]) {
    for i in 0..fields.len() {
        let f = fields[i];
        if f.kind != Kind::HopByHop || !f.name(buf).eq_ignore_ascii_case(b"connection") {
            continue;
        }
        for token in f.value(buf).split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() || token.eq_ignore_ascii_case(b"upgrade") {
                continue;
            }
            for g in fields.iter_mut() {
                if g.kind != Kind::HopByHop && g.name(buf).eq_ignore_ascii_case(token) {
                    g.kind = Kind::Nominated;
                }
            }
        }
    }
}

/// Parse a request head at the start of `buf`. `Ok(None)`: incomplete, read more.
pub fn parse_request(buf: &[u8], fields: &mut Vec<Field>) -> Result<Option<Request>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed);
    };
    // httparse accepts a bare LF as a line end; a peer that does not could see different header
    // boundaries (RFC 9112 §2.2 lets a server reject it, and a proxy must not pass it on).
    if bare_lf(&buf[..len]) {
        return Err(HeadError::Malformed);
    }
    fields.clear();
    let mut conn = ConnectionTokens::default();
    let mut framing = FramingHeaders::default();
    let mut host = None;
    let mut has_upgrade = false;
    let mut hosts = 0;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        match shared_header(buf, h, fields, &mut conn, &mut framing) {
            Kind::Host => {
                hosts += 1;
                host = Some((
                    offset(buf, h.value),
                    offset(buf, h.value) + h.value.len() as u32,
                ));
            }
            Kind::Upgrade => has_upgrade = true,
            Kind::Expect => {
                expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
            }
            _ => {}
        }
    }
    if conn.other {
        mark_nominated(buf, fields);
    }
    // A request with both framings, several lengths, an unknown coding, or two Host headers can be
    // read differently by the next hop: refuse it rather than pick one reading.
    if framing.bad || (framing.transfer_encoding && framing.length.is_some()) || hosts > 1 {
        return Err(HeadError::BadFraming);
    }
    if minor == 0 && framing.transfer_encoding {
        return Err(HeadError::BadFraming);
    }
    let body = if framing.chunked {
        Framing::Chunked
    } else {
        match framing.length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let keep_alive = if minor == 0 {
        conn.keep_alive && !conn.close
    } else {
        !conn.close
    };
    Ok(Some(Request {
        len,
        method: range(buf, method.as_bytes()),
        target: range(buf, target.as_bytes()),
        minor,
        framing: body,
        upgrade: conn.upgrade && has_upgrade,
        keep_alive,
        host,
        expect_continue,
        head: method.eq_ignore_ascii_case("HEAD"),
    }))
}

/// Parse a response head at the start of `buf`, to a request that was `HEAD` or not.
pub fn parse_response(
    buf: &[u8],
    fields: &mut Vec<Field>,
    head_request: bool,
) -> Result<Option<Response>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed),
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(HeadError::Malformed);
    };
    fields.clear();
    let mut conn = ConnectionTokens::default();
    let mut framing = FramingHeaders::default();
    for h in resp.headers.iter() {
        shared_header(buf, h, fields, &mut conn, &mut framing);
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        Framing::Empty
    } else if framing.transfer_encoding {
        // A response with a coding we cannot follow is read until close, which is always safe.
        if framing.chunked && !framing.bad {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if framing.bad {
        return Err(HeadError::BadFraming);
    } else {
        match framing.length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let keep_alive = body != Framing::UntilClose
        && if minor == 0 {
            conn.keep_alive && !conn.close
        } else {
            !conn.close
        };
    Ok(Some(Response {
        len,
        status,
        minor,
        framing: body,
        keep_alive,
    }))
}

/// Is there a `\n` not preceded by `\r`?
fn bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<Option<Request>, HeadError> {
        parse_request(raw.as_bytes(), &mut Vec::new())
    }

    #[test]
    fn a_plain_get_is_parsed_in_place() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nCookie: c=1\r\n\r\nrest";
        let r = req(raw).unwrap().unwrap();
        assert_eq!(&raw[r.target.clone()], "/a?b=1");
        assert_eq!(&raw[r.method.clone()], "GET");
        assert_eq!(r.len, raw.len() - 4);
        assert_eq!(r.framing, Framing::Empty);
        assert!(r.keep_alive && !r.upgrade);
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().map(|r| r.len),
            None
        );
    }

    #[test]
    fn upgrades_and_keep_alive() {
        let r = req(
            "GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(r.upgrade);
        let r = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        let r = req("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
        let r = req("GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.upgrade, "no Upgrade header: not an upgrade");
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            assert_eq!(req(raw).unwrap_err(), HeadError::BadFraming, "{raw:?}");
        }
        let ok = req("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(ok.framing, Framing::Length(5));
        assert_eq!(
            req("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let parse = |raw: &str, head: bool| {
            parse_response(raw.as_bytes(), &mut Vec::new(), head)
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false).framing,
            Framing::Length(3)
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).framing,
            Framing::Empty
        );
        assert_eq!(
            parse("HTTP/1.1 204 No Content\r\n\r\n", false).framing,
            Framing::Empty
        );
        assert_eq!(
            parse("HTTP/1.1 101 Switching\r\n\r\n", false).framing,
            Framing::Empty
        );
        assert_eq!(
            parse(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .framing,
            Framing::Chunked
        );
        let close = parse("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(
            (close.framing, close.keep_alive),
            (Framing::UntilClose, false)
        );
    }
}

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
    /// Not HTTP/1.x, or malformed: a bad method, request target or `Host`.
    Malformed,
    TooManyHeaders,
    /// Conflicting or invalid framing: `Content-Length` with `Transfer-Encoding`, several
    /// different lengths, a transfer coding other than a final `chunked`, a `Connection` header
    /// naming a framing header.
    BadFraming,
}

/// What the proxy needs from a request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// Bytes of the head, including the final CRLF CRLF.
    pub len: usize,
    pub method: Range<usize>,
    /// The request target as the client wrote it.
    pub target: Range<usize>,
    /// The path and query: routed, and forwarded as the target (origin-form, even when the
    /// client sent the absolute-form `http://host/path`).
    pub path: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub framing: Framing,
    /// The `Content-Length` the head gave (one value, however many lines or list items said
    /// it): forwarded as one `content-length` line.
    pub content_length: Option<u64>,
    /// `Connection: upgrade` with an `Upgrade` header.
    pub upgrade: bool,
    /// The client wants the connection kept after this exchange.
    pub keep_alive: bool,
    /// The host the request is for: the `Host` header, or the authority of an absolute-form
    /// target (which then replaces `Host`, RFC 9112 §3.2.2).
    pub host: Option<(u32, u32)>,
    /// The host came from an absolute-form target: the `Host` header is not forwarded.
    pub host_from_target: bool,
    /// `Expect: 100-continue` on HTTP/1.1: tether answers it and does not forward it.
    pub expect_continue: bool,
    /// The method is `HEAD` (exactly: methods are case-sensitive), so the response has no body
    /// whatever its framing headers say.
    pub head: bool,
}

/// What the proxy needs from a response head.
#[derive(Debug, Clone)]
pub struct Response {
    pub len: usize,
    pub status: u16,
    /// The reason phrase (empty when the node sent none).
    pub reason: Range<usize>,
    pub minor: u8,
    pub framing: Framing,
    /// The head had `Transfer-Encoding`: its `Content-Length`, if any, is not forwarded.
    pub transfer_encoding: bool,
    /// The `Content-Length` the head gave, when it had no `Transfer-Encoding`: forwarded as one
    /// line (a `HEAD` or `304` response keeps it though it has no body).
    pub content_length: Option<u64>,
    /// The node's connection may carry another exchange after this one.
    pub keep_alive: bool,
}

/// Where `part` (a slice httparse returned) starts in `buf`. An empty slice may not point into
/// `buf` at all; any empty range is as good as another, so it is placed at 0.
fn offset(buf: &[u8], part: &[u8]) -> u32 {
    let (p, b) = (part.as_ptr() as usize, buf.as_ptr() as usize);
    if p >= b && p + part.len() <= b + buf.len() {
        (p - b) as u32
    } else {
        0
    }
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
    /// A framing header (`Content-Length`, `Transfer-Encoding`) or `Host` is named: dropping
    /// it as hop-by-hop while framing the body by it would let the next hop read the body as
    /// another request, and keeping it contradicts the sender. Refused.
    framing: bool,
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
        } else if token.eq_ignore_ascii_case(b"content-length")
            || token.eq_ignore_ascii_case(b"transfer-encoding")
            || token.eq_ignore_ascii_case(b"host")
        {
            t.framing = true;
        } else if !token.is_empty() {
            t.other = true;
        }
    }
}

/// Framing facts gathered over all headers.
#[derive(Default)]
struct FramingHeaders {
    length: Option<u64>,
    /// A `Content-Length` value that is not a number, or two that differ.
    bad_length: bool,
    transfer_encoding: bool,
    /// Codings seen, how many were `chunked`, and whether the last one was.
    codings: u32,
    chunked: u32,
    last_chunked: bool,
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
                (None, _) => self.bad_length = true,
                (Some(n), Some(m)) if n != m => self.bad_length = true,
                (Some(n), _) => self.length = Some(n),
            }
        }
    }

    fn transfer_encoding(&mut self, value: &[u8]) {
        self.transfer_encoding = true;
        for coding in value.split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            self.codings += 1;
            self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if self.last_chunked {
                self.chunked += 1;
            }
        }
    }

    /// A request's codings: exactly one `chunked` and nothing else ("xchunked", "gzip,
    /// chunked", "chunked, identity" and a second `chunked` are refused outright, as nginx
    /// answers them with 501).
    fn request_chunked(&self) -> Result<bool, HeadError> {
        if !self.transfer_encoding {
            return Ok(false);
        }
        if self.codings == 1 && self.chunked == 1 {
            Ok(true)
        } else {
            Err(HeadError::BadFraming)
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

/// A method as nginx accepts it: upper-case letters, `-` and `_`. Methods are case-sensitive
/// (RFC 9110 §9.1): `head` is not `HEAD`, and a proxy that read it as `HEAD` would expect no
/// body where the node sends one. `CONNECT` asks for a tunnel to another host, which a
/// reverse proxy does not open.
fn method_ok(method: &[u8]) -> bool {
    !method.is_empty()
        && method != b"CONNECT"
        && method
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// Is `value` a valid `Host` (RFC 9112 §3.2: `uri-host [ ":" port ]`, the host an IPv6
/// literal in brackets or a reg-name of unreserved, pct-encoded and sub-delims characters)?
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..end];
        let ok = std::str::from_utf8(literal)
            .ok()
            .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
            .is_some();
        if !ok {
            return false;
        }
        match &value[end + 1..] {
            [] => (&value[..0], None),
            [b':', port @ ..] => (&value[..0], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        }
    };
    // reg-name = *( unreserved / pct-encoded / sub-delims ); IPv4 addresses are reg-names too.
    let mut i = 0;
    while i < host.len() {
        let b = host[i];
        if b == b'%' {
            let hex = |k: usize| host.get(k).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)) {
            return false;
        }
        i += 1;
    }
    port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

/// The request target's forms (RFC 9112 §3.2): origin-form `/path?q`; absolute-form
/// `http://authority/path?q` (the authority becomes the host); `*` for `OPTIONS`. Returns the
/// path to route and forward, and the authority of an absolute-form target.
fn target_form<'a>(method: &[u8], target: &'a [u8]) -> Option<(&'a [u8], Option<&'a [u8]>)> {
    // Visible ASCII only: anything else must be percent-encoded (RFC 3986), and a node's parser
    // may stop at a raw non-ASCII byte where tether would not.
    if !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    if target.first() == Some(&b'/') {
        return Some((target, None));
    }
    if target == b"*" {
        return (method == b"OPTIONS").then_some((target, None));
    }
    let scheme_end = target.windows(3).position(|w| w == b"://")?;
    let scheme = &target[..scheme_end];
    if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    let path_start = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..path_start];
    // No userinfo: `user@host` in a target is a classic confusion of who the request is for.
    if authority.is_empty() || !valid_host(authority) {
        return None;
    }
    // `http://host` and `http://host?q` have an empty path: the forwarded target gets a `/`.
    Some((&rest[path_start..], Some(authority)))
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
    if bare_lf(&buf[..len]) || !method_ok(method.as_bytes()) {
        return Err(HeadError::Malformed);
    }
    let (path, authority) =
        target_form(method.as_bytes(), target.as_bytes()).ok_or(HeadError::Malformed)?;
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
                if !valid_host(h.value) {
                    return Err(HeadError::Malformed);
                }
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
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host; two can be read two ways.
    if hosts > 1 || (minor == 1 && hosts == 0) {
        return Err(HeadError::Malformed);
    }
    if conn.other {
        mark_nominated(buf, fields);
    }
    // A request with both framings, several lengths, an unknown coding, or a framing header
    // named by Connection can be read differently by the next hop: refuse it rather than pick.
    let chunked = framing.request_chunked()?;
    if framing.bad_length || (chunked && framing.length.is_some()) || conn.framing {
        return Err(HeadError::BadFraming);
    }
    if minor == 0 && framing.transfer_encoding {
        return Err(HeadError::BadFraming);
    }
    let body = if chunked {
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
    let host_from_target = authority.is_some();
    if let Some(a) = authority {
        host = Some((offset(buf, a), offset(buf, a) + a.len() as u32));
    }
    Ok(Some(Request {
        len,
        method: range(buf, method.as_bytes()),
        target: range(buf, target.as_bytes()),
        path: range(buf, path),
        minor,
        framing: body,
        content_length: framing.length,
        // RFC 9110 §7.8: an Upgrade in an HTTP/1.0 request is ignored.
        upgrade: conn.upgrade && has_upgrade && minor == 1,
        keep_alive,
        host,
        host_from_target,
        // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
        expect_continue: expect_continue && minor == 1,
        head: method == "HEAD",
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
    // An empty reason may not point into `buf` (httparse can hand back a static ""), so only a
    // non-empty one is located by its address.
    let reason = match resp.reason {
        Some(r) if !r.is_empty() => range(buf, r.as_bytes()),
        _ => 0..0,
    };
    fields.clear();
    let mut conn = ConnectionTokens::default();
    let mut framing = FramingHeaders::default();
    for h in resp.headers.iter() {
        shared_header(buf, h, fields, &mut conn, &mut framing);
    }
    // A framing header named by Connection would be dropped while it frames the body.
    if conn.framing {
        return Err(HeadError::BadFraming);
    }
    if conn.other {
        mark_nominated(buf, fields);
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    // Both framings: Transfer-Encoding wins, and the message is suspect (RFC 9112 §6.3): its
    // Content-Length is not forwarded and the node's connection is not reused.
    let suspect = framing.transfer_encoding && framing.length.is_some();
    let body = if no_body {
        Framing::Empty
    } else if framing.transfer_encoding {
        // A final `chunked` frames the body; any other coding last means "until close".
        if framing.last_chunked && framing.chunked == 1 {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if framing.bad_length {
        return Err(HeadError::BadFraming);
    } else {
        match framing.length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    // HTTP/1.0 responses are never reused: keep-alive on 1.0 is an extension older nodes get
    // wrong, and a connection that is not reused cannot desynchronise.
    let keep_alive = body != Framing::UntilClose && minor == 1 && !conn.close && !suspect;
    Ok(Some(Response {
        len,
        status,
        reason,
        minor,
        framing: body,
        transfer_encoding: framing.transfer_encoding,
        content_length: framing.length.filter(|_| !framing.transfer_encoding),
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
mod tests;

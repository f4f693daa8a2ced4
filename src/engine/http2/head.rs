//! Heads across the protocol line: an HTTP/2 stream's request written as the HTTP/1.1 head its
//! node gets, and the node's HTTP/1.1 response head turned into the stream's response.
//!
//! Both ways the head is tether's own serialisation of what was parsed, as on the HTTP/1 path:
//! hop-by-hop fields never cross, framing is decided by tether (the node gets one
//! `content-length` or `transfer-encoding: chunked` line; the client gets a `content-length`
//! only when the node gave one), and the forwarding claims are tether's.

use super::view::H2View;
use crate::http1::head::{self, Kind};
use crate::runtime::forwarded::Forwarded;
use crate::runtime::request::{Field, RequestView};
use http::header::{HeaderName, HeaderValue};
use std::net::IpAddr;
use std::ops::Range;

/// How a stream's body reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFraming {
    /// No body, and none announced.
    None,
    /// Exactly this many bytes (the whole body was read first, or the client declared it).
    Length(u64),
    /// Of a length not known yet: chunked to the node.
    Chunked,
}

/// What the HTTP/1.1 request head for the node is made of.
pub(super) struct NodeRequest<'a> {
    pub view: &'a H2View<'a>,
    /// Ranges of the target to cut (engine.io session tags).
    pub strip: &'a [Range<usize>],
    pub body: BodyFraming,
    pub peer: IpAddr,
    /// The `Sec-WebSocket-Key` tether made up for an extended CONNECT's Upgrade.
    pub websocket_key: Option<&'a str>,
}

/// Write the HTTP/1.1 request head for the node into `out`.
pub(super) fn request_head(out: &mut Vec<u8>, r: &NodeRequest<'_>) {
    let view = r.view;
    out.clear();
    // An extended CONNECT becomes the GET of an HTTP/1.1 Upgrade (RFC 8441 §5).
    let method = if r.websocket_key.is_some() {
        b"GET".as_slice()
    } else {
        view.method()
    };
    out.extend_from_slice(method);
    out.push(b' ');
    let target = view.target();
    let mut at = 0;
    for tag in r.strip {
        out.extend_from_slice(&target[at..tag.start]);
        at = tag.end;
    }
    out.extend_from_slice(&target[at..]);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = view.host();
    if let Some(h) = host {
        push(out, b"host", h);
    }
    match r.body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => push_length(out, n),
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if let Some(c) = view.cookie() {
        push(out, b"cookie", c);
    }
    for (name, value) in &view.parts.headers {
        let keep = match Kind::of(name.as_str().as_bytes()) {
            Kind::Host
            | Kind::Cookie
            | Kind::ContentLength
            | Kind::TransferEncoding
            | Kind::XForwardedFor
            | Kind::XForwardedOwn
            | Kind::HopByHop
            | Kind::Upgrade
            | Kind::Expect
            | Kind::SecWebSocketKey
            | Kind::Nominated => false,
            Kind::Other | Kind::Origin | Kind::SecWebSocketVersion => true,
        };
        if keep {
            push(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    Forwarded {
        prior: view.values(Field::XForwardedFor),
        peer: r.peer,
        tls: true,
        host,
    }
    .write(out);
    if let Some(key) = r.websocket_key {
        out.extend_from_slice(b"upgrade: websocket\r\nconnection: upgrade\r\n");
        push(out, b"sec-websocket-key", key.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The stream's response from the node's head (`buf`, its fields located by `fields`): status,
/// the end-to-end fields, a `content-length` when the node gave one (or `body_length` when the
/// body was rewritten), and `set_cookie`. For a `101` that became an extended CONNECT's `200`,
/// only what RFC 8441 lets through: the negotiated subprotocol and extensions, and the cookie.
/// `Err`: a field HTTP/2 cannot carry (the node's answer is broken).
pub(super) fn response(
    buf: &[u8],
    fields: &[head::Field],
    resp: &head::Response,
    set_cookie: Option<&str>,
    body_length: Option<u64>,
) -> Result<http::Response<()>, ()> {
    let tunnel = resp.status == 101;
    let status = if tunnel { 200 } else { resp.status };
    let mut out = http::Response::builder()
        .status(status)
        .body(())
        .map_err(|_| ())?;
    let headers = out.headers_mut();
    if !tunnel {
        if let Some(n) = body_length.or(resp.content_length) {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    for f in fields {
        let name = f.name(buf);
        let keep = if tunnel {
            name.eq_ignore_ascii_case(b"sec-websocket-protocol")
                || name.eq_ignore_ascii_case(b"sec-websocket-extensions")
        } else {
            !matches!(
                f.kind,
                Kind::HopByHop
                    | Kind::Nominated
                    | Kind::ContentLength
                    | Kind::TransferEncoding
                    | Kind::Upgrade
            )
        };
        if keep {
            let name = HeaderName::from_bytes(name).map_err(|_| ())?;
            let value = HeaderValue::from_bytes(f.value(buf)).map_err(|_| ())?;
            headers.append(name, value);
        }
    }
    if let Some(c) = set_cookie {
        let value = HeaderValue::from_str(c).map_err(|_| ())?;
        headers.append(http::header::SET_COOKIE, value);
    }
    Ok(out)
}

/// `Sec-WebSocket-Accept` is the key's proof (RFC 6455 §4.2.2): a node that answers with
/// another value is not speaking WebSocket to us, and its `101` does not become a tunnel.
pub(super) fn accepts(buf: &[u8], fields: &[head::Field], key: &str) -> bool {
    let want = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut accept = fields
        .iter()
        .filter(|f| f.name(buf).eq_ignore_ascii_case(b"sec-websocket-accept"));
    match (accept.next(), accept.next()) {
        (Some(f), None) => f.value(buf).trim_ascii() == want.as_bytes(),
        _ => false,
    }
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub(super) fn websocket_key() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn push(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_length(out: &mut Vec<u8>, n: u64) {
    use std::io::Write as _;
    let _ = write!(out, "content-length: {n}\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_becomes_a_plain_http1_head() {
        let (parts, ()) = http::Request::builder()
            .method("POST")
            .uri("https://app.example/socket.io/?EIO=4&sid=abc~TAG")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-forwarded-proto", "http")
            .header("te", "trailers")
            .header("content-type", "text/plain")
            .body(())
            .unwrap()
            .into_parts();
        let view = H2View::new(&parts, None).unwrap();
        let target = "/socket.io/?EIO=4&sid=abc~TAG";
        let cut = target.find('~').unwrap()..target.len();
        let mut out = Vec::new();
        request_head(
            &mut out,
            &NodeRequest {
                view: &view,
                strip: &[cut],
                body: BodyFraming::Length(5),
                peer: "192.0.2.1".parse().unwrap(),
                websocket_key: None,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /socket.io/?EIO=4&sid=abc HTTP/1.1\r\nhost: app.example\r\n\
             content-length: 5\r\ncookie: a=1; b=2\r\ncontent-type: text/plain\r\n\
             x-forwarded-for: 192.0.2.1\r\nx-forwarded-proto: https\r\n\
             x-forwarded-host: app.example\r\n\r\n"
        );
    }

    #[test]
    fn a_101_becomes_a_200_with_only_the_negotiated_fields() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
        let mut fields = Vec::new();
        let resp = head::parse_response(raw, &mut fields, false)
            .unwrap()
            .unwrap();
        assert!(accepts(raw, &fields, key));
        assert!(!accepts(raw, &fields, "AAAAAAAAAAAAAAAAAAAAAA=="));
        let r = response(raw, &fields, &resp, Some("tether_node=x"), None).unwrap();
        assert_eq!(r.status(), 200);
        let names: Vec<_> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["sec-websocket-protocol", "set-cookie"]);
    }
}

//! The WebSocket handshake policy: RFC 6455 §4.2.1 checks and the route's `Origin`
//! allow-list, applied before a node is chosen, so a refused upgrade never reaches a node.

use super::failure::Refusal;
use crate::config::WebsocketPolicy;

/// The handshake fields the policy reads, located while the head was parsed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Handshake<'a> {
    pub method: &'a [u8],
    /// The `Upgrade` header's value.
    pub upgrade: Option<&'a [u8]>,
    pub version: Option<&'a [u8]>,
    pub key: Option<&'a [u8]>,
    pub origin: Option<&'a [u8]>,
    /// An HTTP/2 extended CONNECT (RFC 8441): `:protocol` is the upgrade, and there is no key
    /// (the stream itself is the handshake's proof).
    pub extended_connect: bool,
}

impl Handshake<'_> {
    /// Does the client ask for the `websocket` protocol? (Other upgrade protocols pass through
    /// untouched.)
    pub fn is_websocket(&self) -> bool {
        self.upgrade.is_some_and(|v| {
            v.split(|&b| b == b',')
                .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        })
    }

    /// The `Origin` as text, for the allow-list and logs (invalid UTF-8 matches nothing).
    pub fn origin_text(&self) -> Option<&str> {
        self.origin
            .map(|o| std::str::from_utf8(o.trim_ascii()).unwrap_or("\u{fffd}"))
    }
}

/// May this upgrade go through? A WebSocket upgrade must be a `GET` with a 16-byte key (400)
/// or an HTTP/2 extended `CONNECT` (RFC 8441 §5: no key), version 13 (426), and an allowed
/// `Origin` (403).
pub fn check(h: &Handshake<'_>, policy: &WebsocketPolicy) -> Result<(), Refusal> {
    if !h.is_websocket() {
        return Ok(());
    }
    let method = if h.extended_connect {
        b"CONNECT".as_slice()
    } else {
        b"GET"
    };
    if h.method != method {
        return Err(Refusal::BadRequest);
    }
    if h.version.map(<[u8]>::trim_ascii) != Some(b"13".as_slice()) {
        return Err(Refusal::WebSocketVersion);
    }
    if h.extended_connect {
        return if policy.allows(h.origin_text()) {
            Ok(())
        } else {
            Err(Refusal::OriginNotAllowed)
        };
    }
    let key_ok = h.key.is_some_and(|k| {
        use base64::Engine as _;
        let mut out = [0u8; 18];
        matches!(
            base64::engine::general_purpose::STANDARD.decode_slice(k.trim_ascii(), &mut out),
            Ok(16)
        )
    });
    if !key_ok {
        return Err(Refusal::BadRequest);
    }
    if !policy.allows(h.origin_text()) {
        return Err(Refusal::OriginNotAllowed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OriginPattern;

    fn hs<'a>(method: &'a [u8], version: &'a [u8], origin: Option<&'a [u8]>) -> Handshake<'a> {
        Handshake {
            method,
            upgrade: Some(b"websocket"),
            version: Some(version),
            key: Some(b"dGhlIHNhbXBsZSBub25jZQ=="),
            origin,
            extended_connect: false,
        }
    }

    #[test]
    fn rfc_6455_rules_then_the_origin_allow_list() {
        let policy = WebsocketPolicy {
            allowed_origins: vec![OriginPattern::parse("https://app.example").unwrap()],
            require_origin: true,
            ..WebsocketPolicy::default()
        };
        let ok = Some(b"https://app.example".as_slice());
        assert_eq!(check(&hs(b"GET", b"13", ok), &policy), Ok(()));
        assert_eq!(
            check(&hs(b"POST", b"13", ok), &policy),
            Err(Refusal::BadRequest)
        );
        assert_eq!(
            check(&hs(b"GET", b"8", ok), &policy),
            Err(Refusal::WebSocketVersion)
        );
        assert_eq!(
            check(&hs(b"GET", b"13", Some(b"https://evil.example")), &policy),
            Err(Refusal::OriginNotAllowed)
        );
        assert_eq!(
            check(&hs(b"GET", b"13", None), &policy),
            Err(Refusal::OriginNotAllowed)
        );
        let bad_key = Handshake {
            key: Some(b"short"),
            ..hs(b"GET", b"13", ok)
        };
        assert_eq!(check(&bad_key, &policy), Err(Refusal::BadRequest));
        let h2c = Handshake {
            upgrade: Some(b"h2c"),
            ..Handshake::default()
        };
        assert_eq!(check(&h2c, &policy), Ok(()), "other protocols pass");
    }

    #[test]
    fn an_extended_connect_needs_no_key_but_the_same_version_and_origin() {
        let policy = WebsocketPolicy {
            allowed_origins: vec![OriginPattern::parse("https://app.example").unwrap()],
            ..WebsocketPolicy::default()
        };
        let ok = Some(b"https://app.example".as_slice());
        let h2 = |method, version, origin| Handshake {
            key: None,
            extended_connect: true,
            ..hs(method, version, origin)
        };
        assert_eq!(check(&h2(b"CONNECT", b"13", ok), &policy), Ok(()));
        assert_eq!(
            check(&h2(b"GET", b"13", ok), &policy),
            Err(Refusal::BadRequest)
        );
        assert_eq!(
            check(&h2(b"CONNECT", b"8", ok), &policy),
            Err(Refusal::WebSocketVersion)
        );
        assert_eq!(
            check(
                &h2(b"CONNECT", b"13", Some(b"https://evil.example")),
                &policy
            ),
            Err(Refusal::OriginNotAllowed)
        );
        // Without the extended CONNECT flag, a key is still required.
        let no_key = Handshake {
            key: None,
            ..hs(b"GET", b"13", ok)
        };
        assert_eq!(check(&no_key, &policy), Err(Refusal::BadRequest));
    }
}

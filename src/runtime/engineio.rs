//! engine.io session affinity without cookies: the session id carries its node.
//!
//! socket.io clients that keep no cookies (the Node client by default, many mobile and server
//! clients) still send the engine.io session id (`sid`) on every request after the handshake:
//! polling GETs and POSTs and the WebSocket upgrade. So tether, when an upstream has
//! `affinity.engineio: true`, answers the handshake (a polling request with `EIO=` and no `sid`)
//! with the node's session id followed by a signed tag naming the node, `SID~TAG`, and routes
//! every later request whose `sid` carries a valid tag to that node, forwarding the node's own
//! `SID` (no node ever sees a tag).
//!
//! The tag is 28 base64url characters: key id (1 byte) | node tag (8, the same per-key node
//! name cookies use) | HMAC-SHA256 over both and the session id, truncated to 12 bytes. It names
//! no node id or address, every replica with the same secret reads it, and previous keys still
//! verify during a rotation. A forged, garbled or foreign-key tag, or one naming a node that is
//! gone, is stripped all the same and treated as absent: the upstream's mode decides.
//!
//! Pure: no IO, no clock. The engine finds the handshake and the `sid`, and calls
//! [`rewrite_handshake`] on the node's response body.

use crate::affinity::token::{Key, Keyring, NodeTag, TAG_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use std::ops::Range;
use subtle::ConstantTimeEq;

/// Separates a session id from its tag: unreserved in URLs (clients send it as is) and never
/// produced by engine.io's own id generator.
pub const SEPARATOR: u8 = b'~';
const MAC_LEN: usize = 12;
const RAW_LEN: usize = 1 + TAG_LEN + MAC_LEN;
/// Characters of an encoded tag.
pub const TAG_CHARS: usize = RAW_LEN * 4 / 3;

/// What a request is to engine.io, from its target's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A polling handshake: the response carries a new session id.
    Handshake {
        version: u8,
    },
    /// A request of an existing session: the range of the `sid` value in the target (the
    /// last one, which engine.io reads), and of any earlier `sid` values too.
    Session {
        sid: Range<usize>,
        others: Vec<Range<usize>>,
    },
    Other,
}

/// Read the query of `target` (a request target such as `/socket.io/?EIO=4&transport=polling`).
pub fn classify(target: &[u8]) -> Role {
    let Some(q) = target.iter().position(|&b| b == b'?') else {
        return Role::Other;
    };
    let (mut version, mut polling, mut sid) = (None, false, None::<Range<usize>>);
    let mut others = Vec::new();
    let mut at = q + 1;
    for param in target[q + 1..].split(|&b| b == b'&') {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (&param[..i], &param[i + 1..]),
            None => (param, &param[..0]),
        };
        match name {
            b"EIO" => version = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()),
            b"transport" => polling = value == b"polling",
            b"sid" => {
                let start = at + name.len() + 1;
                if let Some(earlier) = sid.replace(start..start + value.len()) {
                    others.push(earlier);
                }
            }
            _ => {}
        }
        at += param.len() + 1;
    }
    match (version, sid) {
        (Some(_), Some(sid)) if !sid.is_empty() => Role::Session { sid, others },
        (Some(version @ (3 | 4)), None) if polling => Role::Handshake { version },
        _ => Role::Other,
    }
}

/// Where a `sid` value's tag starts: at its first separator, `~` or its percent-encoding
/// `%7E`. Engine.io's ids never hold one, so everything from there on is a tag or the remains
/// of one (truncated, garbled) and never goes to a node. Returns the length of the session id
/// before the separator, and where the tag's characters begin.
pub fn split(sid: &[u8]) -> Option<(usize, usize)> {
    sid.iter().enumerate().find_map(|(i, &b)| match b {
        SEPARATOR => Some((i, i + 1)),
        b'%' if sid[i + 1..].len() >= 2 && sid[i + 1..i + 3].eq_ignore_ascii_case(b"7e") => {
            Some((i, i + 3))
        }
        _ => None,
    })
}

/// Signs and reads session id tags for one upstream.
#[derive(Clone)]
pub struct SidTags {
    keyring: Keyring,
    /// `tags[k][n]`: node `n`'s tag under key `k` (current key first).
    tags: Vec<Vec<NodeTag>>,
}

/// What a tagged `sid` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagged {
    /// A valid tag for this node (an index into the upstream's nodes).
    Node(usize),
    /// Tag-shaped but not valid here: forged, garbled, another secret, or a node that is gone.
    Invalid,
}

impl SidTags {
    /// `node_ids` in the upstream's node order; `previous` secrets still verify.
    pub fn new(secret: &[u8], previous: &[&[u8]], node_ids: &[&str]) -> SidTags {
        let keyring = Keyring::new(secret, previous);
        let tags = keyring
            .keys()
            .iter()
            .map(|k| node_ids.iter().map(|id| k.node_tag(id)).collect())
            .collect();
        SidTags { keyring, tags }
    }

    /// `~TAG` naming node `node`, for the session id `sid` (as the handshake body writes it).
    pub fn tag(&self, node: usize, sid: &[u8]) -> String {
        let key = &self.keyring.keys()[0];
        let mut raw = [0u8; RAW_LEN];
        raw[0] = key.id();
        raw[1..1 + TAG_LEN].copy_from_slice(&self.tags[0][node]);
        let mac = mac(key, &raw[..1 + TAG_LEN], sid);
        raw[1 + TAG_LEN..].copy_from_slice(&mac);
        let mut out = String::with_capacity(TAG_CHARS + 1);
        out.push(SEPARATOR as char);
        URL_SAFE_NO_PAD.encode_string(raw, &mut out);
        out
    }

    /// Read the tag at the end of a `sid` value from a query (percent-encoded). `None`: no tag.
    /// Otherwise the length of the node's own session id, and what the tag says.
    pub fn read(&self, sid: &[u8]) -> Option<(usize, Tagged)> {
        let (cut, tag) = split(sid)?;
        let verdict = self.verify(&sid[..cut], &sid[tag..]);
        Some((cut, verdict))
    }

    fn verify(&self, sid: &[u8], tag: &[u8]) -> Tagged {
        let mut raw = [0u8; RAW_LEN + 2];
        let Ok(RAW_LEN) = URL_SAFE_NO_PAD.decode_slice(tag, &mut raw) else {
            return Tagged::Invalid;
        };
        let sid = percent_decoded(sid);
        for (k, key) in self.keyring.keys().iter().enumerate() {
            if key.id() != raw[0] {
                continue;
            }
            let expected = mac(key, &raw[..1 + TAG_LEN], &sid);
            if bool::from(expected.ct_eq(&raw[1 + TAG_LEN..RAW_LEN])) {
                return match self.tags[k]
                    .iter()
                    .position(|t| t[..] == raw[1..1 + TAG_LEN])
                {
                    Some(node) => Tagged::Node(node),
                    None => Tagged::Invalid,
                };
            }
        }
        Tagged::Invalid
    }
}

fn mac(key: &Key, head: &[u8], sid: &[u8]) -> [u8; MAC_LEN] {
    let mut m = key.mac();
    m.update(b"engine.io sid:");
    m.update(head);
    m.update(sid);
    let out = m.finalize().into_bytes();
    let mut short = [0u8; MAC_LEN];
    short.copy_from_slice(&out[..MAC_LEN]);
    short
}

/// `%XX` decoded (engine.io's own ids need none; a custom id may).
fn percent_decoded(s: &[u8]) -> Vec<u8> {
    let hex = |i: usize| {
        s.get(i)
            .and_then(|&b| (b as char).to_digit(16))
            .map(|d| d as u8)
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if let (b'%', Some(h), Some(l)) = (s[i], hex(i + 1), hex(i + 2)) {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// A handshake body tether could not read: passed through unchanged (and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Where the session id's characters are in a handshake body, and the rest of its framing.
struct Found {
    /// The session id as written (JSON-escaped, or escaped twice inside JSONP).
    sid: Range<usize>,
    /// The length prefix of the packet holding it (EIO=3), to grow by the tag's length.
    length: Option<Length>,
}

enum Length {
    /// `97:` as decimal text.
    Text(Range<usize>),
    /// `\x00` `\x09\x07` `\xff`: decimal digits as bytes.
    Binary(Range<usize>),
}

/// The session id in a handshake body (`tag` is appended to it by [`rewrite_handshake`]).
pub fn session_id(body: &[u8], version: u8) -> Result<&[u8], Malformed> {
    let found = locate(body, version)?;
    Ok(&body[found.sid])
}

/// The node's handshake response `body` with `tag` appended to the session id, every framing
/// length it affects grown to match. engine.io 4 (`0{"sid":...}` packets split by `\x1e`) and 3
/// (`LEN:PACKET` text payloads, `b64=1`, binary payloads, and JSONP `___eio[N]("...")`).
pub fn rewrite_handshake(body: &[u8], version: u8, tag: &str) -> Result<Vec<u8>, Malformed> {
    let found = locate(body, version)?;
    let mut out = Vec::with_capacity(body.len() + tag.len() + 2);
    let (sid_end, grow) = (found.sid.end, tag.len());
    match found.length {
        None => out.extend_from_slice(&body[..sid_end]),
        Some(Length::Text(r)) => {
            let n: usize = parse_decimal(&body[r.clone()]).ok_or(Malformed)?;
            out.extend_from_slice(&body[..r.start]);
            out.extend_from_slice((n + grow).to_string().as_bytes());
            out.extend_from_slice(&body[r.end..sid_end]);
        }
        Some(Length::Binary(r)) => {
            let digits: Vec<u8> = body[r.clone()].iter().map(|d| d + b'0').collect();
            let n = parse_decimal(&digits).ok_or(Malformed)?;
            out.extend_from_slice(&body[..r.start]);
            out.extend((n + grow).to_string().bytes().map(|d| d - b'0'));
            out.extend_from_slice(&body[r.end..sid_end]);
        }
    }
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(&body[sid_end..]);
    Ok(out)
}

fn parse_decimal(d: &[u8]) -> Option<usize> {
    (!d.is_empty() && d.len() <= 9 && d.iter().all(u8::is_ascii_digit))
        .then(|| d.iter().fold(0, |n, b| n * 10 + usize::from(b - b'0')))
}

fn locate(body: &[u8], version: u8) -> Result<Found, Malformed> {
    if version == 4 {
        // `0{...}`: an open packet, first of the payload.
        let end = body.iter().position(|&b| b == 0x1e).unwrap_or(body.len());
        let packet = body
            .get(..end)
            .filter(|p| p.first() == Some(&b'0'))
            .ok_or(Malformed)?;
        let sid = sid_in_json(packet, false).ok_or(Malformed)?;
        return Ok(Found { sid, length: None });
    }
    // engine.io 3.
    if let Some(rest) = body.strip_prefix(b"___eio[") {
        // JSONP: ___eio[N]("LEN:0{\"sid\":\"...\"...}");
        let open = 7 + rest.windows(2).position(|w| w == b"(\"").ok_or(Malformed)? + 2;
        let colon = open
            + body[open..]
                .iter()
                .position(|&b| b == b':')
                .ok_or(Malformed)?;
        if body.get(colon + 1) != Some(&b'0') {
            return Err(Malformed);
        }
        let sid = sid_in_json(&body[colon + 1..], true).ok_or(Malformed)?;
        let sid = colon + 1 + sid.start..colon + 1 + sid.end;
        return Ok(Found {
            sid,
            length: Some(Length::Text(open..colon)),
        });
    }
    match body.first() {
        // Binary payload: a string packet is `\x00`, its length in digit bytes, `\xff`.
        Some(0) => {
            let ff = body.iter().position(|&b| b == 0xff).ok_or(Malformed)?;
            if ff < 2 || body[1..ff].iter().any(|&d| d > 9) || body.get(ff + 1) != Some(&b'0') {
                return Err(Malformed);
            }
            let sid = sid_in_json(&body[ff + 1..], false).ok_or(Malformed)?;
            let sid = ff + 1 + sid.start..ff + 1 + sid.end;
            Ok(Found {
                sid,
                length: Some(Length::Binary(1..ff)),
            })
        }
        // Text payload: `LEN:0{...}`.
        _ => {
            let colon = body.iter().position(|&b| b == b':').ok_or(Malformed)?;
            if colon == 0 || body.get(colon + 1) != Some(&b'0') {
                return Err(Malformed);
            }
            let sid = sid_in_json(&body[colon + 1..], false).ok_or(Malformed)?;
            let sid = colon + 1 + sid.start..colon + 1 + sid.end;
            Ok(Found {
                sid,
                length: Some(Length::Text(0..colon)),
            })
        }
    }
}

/// The characters of the `sid` string value in an open packet `0{...}` (its quotes excluded).
/// `escaped`: the packet sits inside a JavaScript string, so its quotes are written `\"`.
fn sid_in_json(packet: &[u8], escaped: bool) -> Option<Range<usize>> {
    let quote: &[u8] = if escaped { b"\\\"" } else { b"\"" };
    let key: Vec<u8> = [quote, b"sid", quote].concat();
    let at = packet
        .windows(key.len())
        .position(|w| w == key.as_slice())?;
    let mut i = at + key.len();
    let skip_space = |i: &mut usize| {
        while packet.get(*i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            *i += 1;
        }
    };
    skip_space(&mut i);
    if packet.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    skip_space(&mut i);
    if !packet[i..].starts_with(quote) {
        return None;
    }
    let start = i + quote.len();
    // The value ends at the next quote; engine.io ids are plain ASCII, so an id with escapes
    // of its own is refused rather than half-understood.
    let len = packet[start..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')?;
    let end = start + len;
    (len > 0 && packet[end..].starts_with(quote)).then_some(start..end)
}

#[cfg(test)]
mod tests;

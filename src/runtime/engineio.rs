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

use super::request::form_decoded;
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

/// What a request is to engine.io, read from its query the way engine.io reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A polling handshake: the response carries a new session id (`version`: the engine.io
    /// protocol revision the server will answer in, 3 or 4).
    Handshake {
        version: u8,
    },
    /// A request of an existing session.
    Session,
    Other,
}

/// An engine.io request's query as tether needs it: its role, what of it must not reach the
/// node, and what the session id's tag says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub role: Role,
    /// Tags to cut out of the target (ranges into it, in target order): the session id's, and
    /// those of any earlier `sid` (engine.io reads the last one; no tag reaches a node).
    pub strip: Vec<Range<usize>>,
    /// What the tag of the session id engine.io reads says, if it has one.
    pub tag: Option<Tagged>,
}

impl Query {
    /// Not an engine.io request: nothing to do.
    pub fn none() -> Query {
        Query {
            role: Role::Other,
            strip: Vec::new(),
            tag: None,
        }
    }
}

/// Read the query of `target` (`/socket.io/?EIO=4&transport=polling&sid=...`) as engine.io does
/// (engine.io 6 reads it with `URLSearchParams`; 3 with `querystring`, which agree here):
/// parameter names and values are percent-decoded and `+` is a space, so `s%69d` is `sid`; the
/// last of a repeated parameter wins; the protocol revision is 4 only for an `EIO` that decodes
/// to exactly `4` (`04` and `+4` are 3, as engine.io's `computeProtocolRevision` has it); and a
/// `sid` that is empty, or empty once its tag is cut, is no session at all: a polling `GET`
/// with one is a handshake.
pub fn read_query(target: &[u8], method: &[u8], tags: &SidTags) -> Query {
    let Some(q) = target.iter().position(|&b| b == b'?') else {
        return Query::none();
    };
    let (mut eio, mut polling) = (None::<Vec<u8>>, false);
    // Every `sid` value's range, in order.
    let mut sids: Vec<Range<usize>> = Vec::new();
    let mut at = q + 1;
    for param in target[q + 1..].split(|&b| b == b'&') {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (&param[..i], at + i + 1..at + param.len()),
            None => (param, at + param.len()..at + param.len()),
        };
        match form_decoded(name).as_slice() {
            b"EIO" => eio = Some(form_decoded(&target[value])),
            b"transport" => polling = form_decoded(&target[value]) == b"polling",
            b"sid" => sids.push(value),
            _ => {}
        }
        at += param.len() + 1;
    }
    let Some(eio) = eio else {
        return Query::none();
    };
    let mut query = Query::none();
    let mut sid_len = 0;
    let last = sids.len().saturating_sub(1);
    for (i, range) in sids.iter().enumerate() {
        let value = &target[range.clone()];
        let tagged = tags.read(value);
        if let Some((cut, verdict)) = tagged {
            query.strip.push(range.start + cut..range.end);
            if i == last {
                query.tag = Some(verdict);
            }
        }
        if i == last {
            sid_len = tagged.map_or(value.len(), |(cut, _)| cut);
        }
    }
    query.role = if sid_len > 0 {
        Role::Session
    } else if polling && method == b"GET" {
        Role::Handshake {
            version: if eio == b"4" { 4 } else { 3 },
        }
    } else {
        Role::Other
    };
    query
}

/// Does a request start a session rather than continue one? A WebSocket upgrade does unless it
/// carries an engine.io `sid` (socket.io's upgrade of a polling session); a polling `GET` with
/// `EIO` and no `sid` is an engine.io handshake. Read without tags (any upstream).
pub fn starts_session(target: &[u8], method: &[u8], upgrade: bool) -> bool {
    let Some(q) = target.iter().position(|&b| b == b'?') else {
        return upgrade;
    };
    let (mut eio, mut polling, mut sid) = (false, false, false);
    for param in target[q + 1..].split(|&b| b == b'&') {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (&param[..i], &param[i + 1..]),
            None => (param, &param[..0]),
        };
        match form_decoded(name).as_slice() {
            b"EIO" => eio = true,
            b"transport" => polling = form_decoded(value) == b"polling",
            b"sid" => sid = !value.is_empty(),
            _ => {}
        }
    }
    if upgrade {
        !sid
    } else {
        eio && polling && !sid && method == b"GET"
    }
}

/// Where the tag of a raw (still percent-encoded) `sid` value starts: at its **last**
/// separator, `~` or its encoding `%7E`, and only when what follows is exactly a tag's worth
/// of base64url characters. A session id may hold separators of its own (socket.io lets an
/// application choose its ids), so the tag tether appended is the one after the last; a
/// suffix that is not tag-shaped is part of the id, or what is left of a cut tag, and the node
/// gets it as sent (and answers as it would for any id it never issued). Returns the length of
/// the session id before the separator.
pub fn split(sid: &[u8]) -> Option<usize> {
    let (cut, tag) = (0..sid.len()).rev().find_map(|i| match sid[i] {
        SEPARATOR => Some((i, i + 1)),
        b'%' if sid
            .get(i + 1..i + 3)
            .is_some_and(|h| h.eq_ignore_ascii_case(b"7e")) =>
        {
            Some((i, i + 3))
        }
        _ => None,
    })?;
    let tag = form_decoded(&sid[tag..]);
    let shaped = tag.len() == TAG_CHARS
        && tag
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shaped.then_some(cut)
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

    /// Read the tag at the end of a `sid` value from a query (percent-encoded; see [`split`]).
    /// `None`: no tag. Otherwise the length of the node's own session id, and what the tag says.
    pub fn read(&self, sid: &[u8]) -> Option<(usize, Tagged)> {
        let cut = split(sid)?;
        let tag = form_decoded(&sid[cut..]);
        // The separator itself (one byte, or three encoded) goes with the tag.
        let verdict = self.verify(&sid[..cut], &tag[tag.len() - TAG_CHARS..]);
        Some((cut, verdict))
    }

    fn verify(&self, sid: &[u8], tag: &[u8]) -> Tagged {
        let mut raw = [0u8; RAW_LEN + 2];
        let Ok(RAW_LEN) = URL_SAFE_NO_PAD.decode_slice(tag, &mut raw) else {
            return Tagged::Invalid;
        };
        let sid = form_decoded(sid);
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

/// The characters of the top-level `sid` string value in an open packet `0{...}` (its quotes
/// excluded): a `"sid"` key inside a nested object or array, or inside a string, is not the
/// session id. `escaped`: the packet sits inside a JavaScript string (JSONP), so its quotes are
/// written `\"`; it is read through its unescaped form and the range mapped back.
fn sid_in_json(packet: &[u8], escaped: bool) -> Option<Range<usize>> {
    let json = packet.strip_prefix(b"0")?;
    if !escaped {
        let r = top_level_string(json, b"sid")?;
        return Some(r.start + 1..r.end + 1);
    }
    // Unescape `\X` to `X`, remembering where each byte came from.
    let (mut plain, mut from) = (
        Vec::with_capacity(json.len()),
        Vec::with_capacity(json.len()),
    );
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' && i + 1 < json.len() {
            i += 1;
        }
        plain.push(json[i]);
        from.push(i);
        i += 1;
    }
    let r = top_level_string(&plain, b"sid")?;
    // The id holds no escapes (see below), so its bytes are contiguous in the original too.
    Some(from[r.start] + 1..from[r.end - 1] + 2)
}

/// The range of the string value of top-level key `key` in the JSON object at the start of
/// `json` (the quotes excluded). `None` when the key is absent at the top level, its value is
/// not a string, is empty, or holds an escape: engine.io's ids are plain ASCII, so an id with
/// escapes of its own is refused rather than half-understood.
fn top_level_string(json: &[u8], key: &[u8]) -> Option<Range<usize>> {
    if json.first() != Some(&b'{') {
        return None;
    }
    // Where the string starting at `at` (a quote) ends: its closing quote.
    let string_end = |at: usize| -> Option<usize> {
        let mut i = at + 1;
        while i < json.len() {
            match json[i] {
                b'\\' => i += 2,
                b'"' => return Some(i),
                _ => i += 1,
            }
        }
        None
    };
    let skip_space = |mut i: usize| {
        while json.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        i
    };
    let (mut i, mut depth, mut want_key) = (0, 0usize, false);
    while i < json.len() {
        match json[i] {
            b'{' => {
                depth += 1;
                want_key = depth == 1;
                i += 1;
            }
            b'[' => {
                depth += 1;
                want_key = false;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return None;
                }
                i += 1;
            }
            b',' => {
                want_key = depth == 1;
                i += 1;
            }
            b'"' => {
                let end = string_end(i)?;
                if depth == 1 && want_key {
                    let name = &json[i + 1..end];
                    let colon = skip_space(end + 1);
                    if json.get(colon) != Some(&b':') {
                        return None;
                    }
                    let value = skip_space(colon + 1);
                    if name == key {
                        if json.get(value) != Some(&b'"') {
                            return None;
                        }
                        let close = string_end(value)?;
                        let r = value + 1..close;
                        let plain = !r.is_empty() && !json[r.clone()].contains(&b'\\');
                        return plain.then_some(r);
                    }
                    want_key = false;
                    i = value;
                } else {
                    i = end + 1;
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests;

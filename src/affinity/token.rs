//! Signed affinity tokens: which node a client belongs to, without saying which.
//!
//! A token is 29 bytes, base64url without padding (39 characters):
//!
//! ```text
//! kid (1) | issued_at unix seconds, big endian (4) | node tag (8) | HMAC-SHA256 truncated (16)
//! ```
//!
//! * The **node tag** is `HMAC(key, "node:" + node_id)[..8]`: it names no id or address, yet every
//!   replica with the same secret derives the same tag, so any replica can read any replica's cookie.
//! * The **kid** is derived from the key itself, so a rotated-out key still verifies while it is listed
//!   as a previous key, and replicas never need to agree on a counter.
//! * **issued_at** lets the proxy enforce `max_age` itself instead of trusting the browser.
//!
//! The module is pure: the clock is a parameter, and nothing here does IO.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// HMAC-SHA256, the MAC of every tether token.
pub type HmacSha256 = Hmac<Sha256>;

/// Length of a token's raw bytes.
const RAW_LEN: usize = 1 + 4 + TAG_LEN + MAC_LEN;
/// Length of the node tag.
pub const TAG_LEN: usize = 8;
/// Truncated MAC length: 128 bits is far beyond what an online forger can brute-force.
const MAC_LEN: usize = 16;
/// Length of the encoded token.
pub const TOKEN_LEN: usize = (RAW_LEN * 4).div_ceil(3);
/// Tokens issued this far in the future are still accepted (replica clocks differ slightly).
const CLOCK_SKEW_SECS: u64 = 60;

/// An opaque per-key name for a node.
pub type NodeTag = [u8; TAG_LEN];

/// One signing key with its HMAC state already keyed, so signing costs two SHA-256 blocks.
#[derive(Clone)]
pub struct Key {
    id: u8,
    mac: HmacSha256,
}

impl Key {
    /// Derive a key from a secret (at least 32 bytes; config validation enforces that).
    pub fn new(secret: &[u8]) -> Key {
        let mac = match HmacSha256::new_from_slice(secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        let mut kid = mac.clone();
        kid.update(b"tether key id");
        let id = kid.finalize().into_bytes()[0];
        Key { id, mac }
    }

    /// The one-byte id tokens signed by this key carry.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// A MAC keyed with this key, for other signed values (engine.io session tags).
    pub fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }

    /// The tag that stands for `node_id` in tokens signed by this key.
    pub fn node_tag(&self, node_id: &str) -> NodeTag {
        let mut mac = self.mac.clone();
        mac.update(b"node:");
        mac.update(node_id.as_bytes());
        let out = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&out[..TAG_LEN]);
        tag
    }

    fn sign_raw(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(body);
        let out = mac.finalize().into_bytes();
        let mut short = [0u8; MAC_LEN];
        short.copy_from_slice(&out[..MAC_LEN]);
        short
    }
}

/// The current key and any previous keys that still verify.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

/// What a verified token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The node tag, in the namespace of the key at `key_index`.
    pub tag: NodeTag,
    /// 0 for the current key; a token signed by a previous key should be re-issued.
    pub key_index: usize,
    pub issued_at: u64,
}

impl Keyring {
    /// `current` signs; `previous` only verify.
    pub fn new(current: &[u8], previous: &[&[u8]]) -> Keyring {
        let mut keys = vec![Key::new(current)];
        keys.extend(previous.iter().map(|s| Key::new(s)));
        Keyring { keys }
    }

    /// All keys, current first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// A fresh token for `tag` (a tag of the current key) issued at `now` (unix seconds).
    pub fn sign(&self, tag: &NodeTag, now: u64) -> String {
        let mut raw = [0u8; RAW_LEN];
        let key = &self.keys[0];
        raw[0] = key.id;
        raw[1..5].copy_from_slice(&(now as u32).to_be_bytes());
        raw[5..5 + TAG_LEN].copy_from_slice(tag);
        let mac = key.sign_raw(&raw[..RAW_LEN - MAC_LEN]);
        raw[RAW_LEN - MAC_LEN..].copy_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Check a token. `None` for anything that is not a valid, unexpired token of one of our keys:
    /// callers treat that exactly like a missing cookie.
    pub fn verify(&self, token: &[u8], now: u64, max_age_secs: Option<u64>) -> Option<Verified> {
        if token.len() != TOKEN_LEN {
            return None;
        }
        // One spare byte: base64's slice decoder wants room for a whole final quantum.
        let mut raw = [0u8; RAW_LEN + 2];
        let n = URL_SAFE_NO_PAD.decode_slice(token, &mut raw).ok()?;
        if n != RAW_LEN {
            return None;
        }
        let (body, mac) = raw[..RAW_LEN].split_at(RAW_LEN - MAC_LEN);
        let (key_index, _) = self
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.id == body[0])
            .find(|(_, k)| bool::from(k.sign_raw(body).ct_eq(mac)))?;
        let issued_at = u64::from(u32::from_be_bytes([body[1], body[2], body[3], body[4]]));
        if issued_at > now + CLOCK_SKEW_SECS {
            return None;
        }
        if let Some(max) = max_age_secs {
            if now.saturating_sub(issued_at) > max {
                return None;
            }
        }
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&body[5..5 + TAG_LEN]);
        Some(Verified {
            tag,
            key_index,
            issued_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"ffffffffffffffffffffffffffffffff";

    #[test]
    fn round_trip_names_the_node_and_is_short() {
        let ring = Keyring::new(SECRET, &[]);
        let tag = ring.keys()[0].node_tag("node-a");
        let t = ring.sign(&tag, 1_000);
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(t.len() < 64);
        assert!(!t.contains("node"));
        let v = ring.verify(t.as_bytes(), 1_000, None).unwrap();
        assert_eq!(v.tag, tag);
        assert_eq!(v.key_index, 0);
        assert_eq!(v.issued_at, 1_000);
    }

    #[test]
    fn tags_differ_per_node_and_per_key() {
        let a = Key::new(SECRET);
        let b = Key::new(OTHER);
        assert_ne!(a.node_tag("node-a"), a.node_tag("node-b"));
        assert_ne!(a.node_tag("node-a"), b.node_tag("node-a"));
        assert_eq!(a.node_tag("node-a"), Key::new(SECRET).node_tag("node-a"));
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let ring = Keyring::new(SECRET, &[]);
        let t = ring.sign(&ring.keys()[0].node_tag("n"), 50);
        let bytes = t.as_bytes();
        for i in 0..bytes.len() {
            for c in [b'A', b'z', b'-', b'_', b'0'] {
                if bytes[i] == c {
                    continue;
                }
                let mut m = bytes.to_vec();
                m[i] = c;
                // The last character carries padding bits that may decode identically; only
                // reject where the decoded bytes actually change.
                if let Some(v) = ring.verify(&m, 50, None) {
                    assert_eq!(i, bytes.len() - 1, "flip at {i} verified: {v:?}");
                }
            }
        }
    }

    #[test]
    fn foreign_key_expired_future_and_garbage_are_rejected() {
        let ring = Keyring::new(SECRET, &[]);
        let foreign = Keyring::new(OTHER, &[]);
        let t = foreign.sign(&foreign.keys()[0].node_tag("n"), 100);
        assert!(ring.verify(t.as_bytes(), 100, None).is_none());

        let t = ring.sign(&ring.keys()[0].node_tag("n"), 100);
        assert!(ring.verify(t.as_bytes(), 100 + 3600, Some(3600)).is_some());
        assert!(ring.verify(t.as_bytes(), 100 + 3601, Some(3600)).is_none());
        assert!(ring
            .verify(t.as_bytes(), 100 - CLOCK_SKEW_SECS - 1, None)
            .is_none());

        for g in [
            &b""[..],
            b"x",
            b"%%%%",
            &[0xffu8; TOKEN_LEN],
            &[b'A'; TOKEN_LEN + 1],
        ] {
            assert!(ring.verify(g, 100, None).is_none());
        }
    }

    #[test]
    fn previous_keys_verify_and_report_their_index() {
        let old = Keyring::new(OTHER, &[]);
        let t = old.sign(&old.keys()[0].node_tag("n"), 10);
        let rotated = Keyring::new(SECRET, &[OTHER]);
        let v = rotated.verify(t.as_bytes(), 10, None).unwrap();
        assert_eq!(v.key_index, 1);
        assert_eq!(v.tag, rotated.keys()[1].node_tag("n"));
    }
}

//! Which node a client belongs to: signed cookie tokens and the consistent-hash ring.
//!
//! Pure code: no IO, no clock, no randomness. Time is passed in, so every rule is unit-testable
//! and every replica decides the same way.

pub mod cookie;
pub mod ring;
pub mod token;

use crate::config::CookieSettings;
use token::{Keyring, NodeTag};

/// Cookie affinity for one upstream: reads pins from `Cookie` headers and issues new ones.
#[derive(Clone)]
pub struct CookiePins {
    keyring: Keyring,
    /// `tags[k][n]`: node `n`'s tag under key `k` (current key first).
    tags: Vec<Vec<NodeTag>>,
    set_cookie: cookie::SetCookie,
    /// The same with `Secure` as configured for TLS listeners.
    set_cookie_tls: cookie::SetCookie,
    name: String,
    max_age_secs: Option<u64>,
}

/// What a request's cookies of our name were, when they gave no pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// None was sent.
    Absent,
    /// Garbage, forged, expired, or signed by a key we do not hold.
    Invalid,
    /// A good token for a node that is no longer in the upstream; `client` as in [`Pin`].
    Stale { client: u64 },
}

/// A pin read from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// Index of the pinned node in the upstream's node list.
    pub node: usize,
    /// The token was signed by a previous key: send a fresh cookie with the current key.
    pub reissue: bool,
    /// The same for every request carrying this token, and spread like a hash: when the client
    /// must be re-pinned, its requests in flight all pick the same node by it.
    pub client: u64,
}

/// A verified token's client key (see [`Pin::client`]): its node tag and issue time mixed.
fn client_key(t: &token::Verified) -> u64 {
    let mut x = u64::from_le_bytes(t.tag) ^ t.issued_at.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64's finaliser: neighbouring issue times land far apart.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl CookiePins {
    /// `node_ids` in the upstream's node order; `previous_secrets` still verify during rotation.
    pub fn new(settings: &CookieSettings, previous_secrets: &[&[u8]], node_ids: &[&str]) -> Self {
        let keyring = Keyring::new(&settings.secret, previous_secrets);
        let tags = keyring
            .keys()
            .iter()
            .map(|k| node_ids.iter().map(|id| k.node_tag(id)).collect())
            .collect();
        CookiePins {
            keyring,
            tags,
            set_cookie: cookie::SetCookie::new(settings),
            set_cookie_tls: cookie::SetCookie::new(&CookieSettings {
                secure: settings.secure_on_tls,
                ..settings.clone()
            }),
            name: settings.name.clone(),
            max_age_secs: settings.max_age.map(|d| d.as_secs()),
        }
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first valid pin among `Cookie` header values, to a node that still exists.
    /// Anything else (no cookie, garbage, forged, expired, foreign key, removed node) is `None`,
    /// which callers treat as "no pin yet": never an error.
    pub fn lookup<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        now: u64,
    ) -> Option<Pin> {
        cookie::find_map(cookie_headers, &self.name, |v| self.verify(v, now))
    }

    /// Like [`lookup`](Self::lookup), and also what the cookies of our name that gave no pin
    /// were: absent, invalid (counted as such), or a good token for a node that is gone (the
    /// client is re-pinned, which is not a forgery).
    pub fn lookup_noting_presence<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        now: u64,
    ) -> (Option<Pin>, Seen) {
        let mut seen = Seen::Absent;
        let pin = cookie::find_map(cookie_headers, &self.name, |v| {
            let t = self.keyring.verify(v.as_bytes(), now, self.max_age_secs);
            match self.pin(t) {
                Some(pin) => Some(pin),
                None => {
                    seen = match (seen, t) {
                        (Seen::Stale { .. }, _) => seen,
                        (_, Some(t)) => Seen::Stale {
                            client: client_key(&t),
                        },
                        _ => Seen::Invalid,
                    };
                    None
                }
            }
        });
        (pin, seen)
    }

    /// One cookie value: a verified token of one of our keys, naming a node that still exists.
    fn verify(&self, value: &str, now: u64) -> Option<Pin> {
        self.pin(
            self.keyring
                .verify(value.as_bytes(), now, self.max_age_secs),
        )
    }

    /// The pin a verified token gives, if its node still exists.
    fn pin(&self, t: Option<token::Verified>) -> Option<Pin> {
        let t = t?;
        let node = self.tags[t.key_index]
            .iter()
            .position(|tag| *tag == t.tag)?;
        Some(Pin {
            node,
            reissue: t.key_index != 0,
            client: client_key(&t),
        })
    }

    /// The `Set-Cookie` value pinning a client to `node` from `now`.
    pub fn issue(&self, node: usize, now: u64) -> String {
        self.issue_on(node, now, false)
    }

    /// Like [`issue`](Self::issue), for a response on a TLS listener when `tls` is true.
    pub fn issue_on(&self, node: usize, now: u64, tls: bool) -> String {
        let token = self.keyring.sign(&self.tags[0][node], now);
        if tls {
            self.set_cookie_tls.render(&token)
        } else {
            self.set_cookie.render(&token)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(secret: &[u8]) -> CookieSettings {
        CookieSettings {
            name: "tn".into(),
            max_age: Some(Duration::from_secs(60)),
            ..CookieSettings::with_secret(secret)
        }
    }

    fn cookie_of(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_string()
    }

    #[test]
    fn a_pin_survives_node_list_changes_by_id() {
        let s = settings(&[7; 32]);
        let before = CookiePins::new(&s, &[], &["a", "b", "c"]);
        let c = cookie_of(&before.issue(1, 100));
        // Node "b" moves to another index, and a node is added: the pin follows the id.
        let after = CookiePins::new(&s, &[], &["c", "d", "b"]);
        let pin = after.lookup([c.as_bytes()], 110).unwrap();
        assert_eq!((pin.node, pin.reissue), (2, false));
        // Node "b" removed: the pin is gone, which means "pick again" (a re-pin, not a forgery),
        // with the same client key the pin had, so the re-pin is the same for every request.
        let removed = CookiePins::new(&s, &[], &["a", "c"]);
        assert_eq!(removed.lookup([c.as_bytes()], 110), None);
        assert_eq!(
            removed.lookup_noting_presence([c.as_bytes()], 110),
            (None, Seen::Stale { client: pin.client })
        );
        // Another client's token (issued a second later) has another key.
        let other = cookie_of(&before.issue(1, 101));
        let other = after.lookup([other.as_bytes()], 110).unwrap();
        assert_ne!(other.client, pin.client);
        assert_eq!(
            removed.lookup_noting_presence([b"tn=forged".as_slice()], 110),
            (None, Seen::Invalid)
        );
        assert_eq!(
            removed.lookup_noting_presence([b"other=1".as_slice()], 110),
            (None, Seen::Absent)
        );
        // Expired after max_age.
        assert_eq!(before.lookup([c.as_bytes()], 161), None);
    }

    #[test]
    fn previous_key_pins_are_reissued() {
        let old = CookiePins::new(&settings(&[1; 32]), &[], &["a", "b"]);
        let c = cookie_of(&old.issue(0, 100));
        let prev: &[u8] = &[1; 32];
        let rotated = CookiePins::new(&settings(&[2; 32]), &[prev], &["a", "b"]);
        let pin = |c: &str| {
            rotated
                .lookup([c.as_bytes()], 100)
                .map(|p| (p.node, p.reissue))
        };
        assert_eq!(pin(&c), Some((0, true)));
        let fresh = cookie_of(&rotated.issue(0, 100));
        assert_eq!(pin(&fresh), Some((0, false)));
    }

    #[test]
    fn a_bad_cookie_before_a_good_one_does_not_hide_it() {
        let p = CookiePins::new(&settings(&[3; 32]), &[], &["a", "b"]);
        let good = cookie_of(&p.issue(1, 5));
        let header = format!("tn=garbage; {good}");
        assert_eq!(p.lookup([header.as_bytes()], 5).map(|p| p.node), Some(1));
    }
}

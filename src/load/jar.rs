//! A tiny per-client cookie jar: `name=value` pairs from `Set-Cookie`, sent back on every request.
//!
//! Attributes (Path, Domain, Expires, ...) are ignored: a load client talks to one origin, and
//! the proxy's affinity cookie is all that matters. `Max-Age=0` (or negative) removes a cookie.
//! With `--no-cookies` every client's jar is off: it stores nothing, so sends nothing.

use http::header::{HeaderMap, HeaderValue, SET_COOKIE};

#[derive(Debug, Default)]
pub(crate) struct Jar {
    /// A jar that keeps nothing (--no-cookies).
    off: bool,
    cookies: Vec<(String, String)>,
    /// The rendered `Cookie` header, rebuilt only when the jar changes (rare: usually once).
    header: Option<HeaderValue>,
}

impl Jar {
    /// A jar that keeps cookies, or (`keep` false) one that ignores every `Set-Cookie`.
    pub fn new(keep: bool) -> Jar {
        Jar {
            off: !keep,
            ..Jar::default()
        }
    }

    /// The `Cookie` header to send, if the jar holds anything.
    pub fn header(&self) -> Option<&HeaderValue> {
        self.header.as_ref()
    }

    /// Store every `Set-Cookie` of a response.
    pub fn store_all(&mut self, headers: &HeaderMap) {
        let mut changed = false;
        for value in headers.get_all(SET_COOKIE) {
            changed |= self.store_one(value.as_bytes());
        }
        if changed {
            self.render();
        }
    }

    /// Store one `Set-Cookie` value; true when the jar changed (then call `render`).
    pub fn store_one(&mut self, set_cookie: &[u8]) -> bool {
        if self.off {
            return false;
        }
        let Ok(text) = std::str::from_utf8(set_cookie) else {
            return false;
        };
        let mut parts = text.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return false;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return false;
        }
        let expired = parts.any(|attr| {
            attr.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("max-age")
                    && v.trim().parse::<i64>().is_ok_and(|s| s <= 0)
            })
        });
        let existing = self.cookies.iter().position(|(n, _)| n == name);
        match (existing, expired) {
            (Some(i), true) => {
                self.cookies.remove(i);
                true
            }
            (None, true) => false,
            (Some(i), false) if self.cookies[i].1 == value => false,
            (Some(i), false) => {
                self.cookies[i].1 = value.to_owned();
                true
            }
            (None, false) => {
                self.cookies.push((name.to_owned(), value.to_owned()));
                true
            }
        }
    }

    /// Rebuild the `Cookie` header after `store_one` changed the jar.
    pub fn render(&mut self) {
        let mut s = String::new();
        for (name, value) in &self.cookies {
            if !s.is_empty() {
                s.push_str("; ");
            }
            s.push_str(name);
            s.push('=');
            s.push_str(value);
        }
        // A value a server sent but that cannot go back in a header is dropped with the rest
        // of the header rather than sent broken.
        self.header = if s.is_empty() {
            None
        } else {
            HeaderValue::from_str(&s).ok()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jar_after(set_cookies: &[&[&str]]) -> Jar {
        let mut jar = Jar::default();
        for response in set_cookies {
            let mut h = HeaderMap::new();
            for c in *response {
                h.append(SET_COOKIE, HeaderValue::from_str(c).unwrap());
            }
            h.append("x-other", HeaderValue::from_static("a=b"));
            jar.store_all(&h);
        }
        jar
    }

    fn cookie(jar: &Jar) -> &str {
        jar.header().map_or("", |h| h.to_str().unwrap())
    }

    #[test]
    fn empty_jar_sends_nothing() {
        assert!(Jar::default().header().is_none());
        assert!(jar_after(&[&[]]).header().is_none());
    }

    #[test]
    fn keeps_name_value_pairs_and_ignores_attributes() {
        let jar = jar_after(&[&[
            "tether_node=AbC-_12; Path=/; HttpOnly; SameSite=Lax",
            " io = x=y ;Max-Age=3600",
        ]]);
        assert_eq!(cookie(&jar), "tether_node=AbC-_12; io=x=y");
    }

    #[test]
    fn replaces_and_removes() {
        let jar = jar_after(&[
            &["a=1", "b=2"],
            &["a=3; Path=/"],
            &["b=; Max-Age=0"],
            &["c=9; max-age=-1"],
        ]);
        assert_eq!(cookie(&jar), "a=3");
        let jar = jar_after(&[&["a=1"], &["a=; Max-Age=0"]]);
        assert!(jar.header().is_none());
    }

    #[test]
    fn an_off_jar_keeps_nothing() {
        let mut jar = Jar::new(false);
        let mut h = HeaderMap::new();
        h.append(
            SET_COOKIE,
            HeaderValue::from_static("tether_node=x; Path=/"),
        );
        jar.store_all(&h);
        assert!(!jar.store_one(b"io=abc"));
        assert!(jar.header().is_none());
        let mut on = Jar::new(true);
        on.store_all(&h);
        assert_eq!(cookie(&on), "tether_node=x");
    }

    #[test]
    fn ignores_garbage() {
        let jar = jar_after(&[&["novalue", "=x", "; a=b", "ok=1"]]);
        assert_eq!(cookie(&jar), "ok=1");
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_bytes(b"bin=\xff").unwrap());
        let mut jar = Jar::default();
        jar.store_all(&h);
        assert!(jar.header().is_none());
    }
}

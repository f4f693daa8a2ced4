//! The affinity cookie on the wire: finding ours in `Cookie` headers and rendering `Set-Cookie`.

use crate::config::{CookieSettings, SameSite};
use cookie::Cookie;

/// Calls `f` with the value of every cookie called `name` in the given `Cookie` header values,
/// in order, until it returns `Some`.
///
/// Browsers may send several cookies of one name (different paths or domains); the caller tries
/// each until one verifies. Headers that are not valid UTF-8 and malformed pairs are skipped.
pub fn find_map<'a, T>(
    headers: impl IntoIterator<Item = &'a [u8]>,
    name: &str,
    mut f: impl FnMut(&'a str) -> Option<T>,
) -> Option<T> {
    for header in headers {
        let Ok(text) = std::str::from_utf8(header) else {
            continue;
        };
        for c in Cookie::split_parse(text).flatten() {
            if c.name() == name {
                if let Some(found) = c.value_raw().and_then(&mut f) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// Renders `Set-Cookie` values for one cookie configuration.
///
/// The attributes never change between responses, so they are rendered once (by the `cookie`
/// crate, at config load) and each new pin only concatenates name, token and that suffix.
#[derive(Debug, Clone)]
pub struct SetCookie {
    prefix: String,
    suffix: String,
}

impl SetCookie {
    /// `secure_default` is true on TLS listeners, where the cookie should be `Secure` unless the
    /// config says otherwise.
    pub fn new(settings: &CookieSettings) -> SetCookie {
        let mut c = Cookie::build((settings.name.clone(), "v"))
            .path(settings.path.clone())
            .http_only(settings.http_only)
            .secure(settings.secure)
            .same_site(match settings.same_site {
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::None => cookie::SameSite::None,
            });
        if let Some(age) = settings.max_age {
            c = c.max_age(cookie::time::Duration::seconds(
                i64::try_from(age.as_secs()).unwrap_or(i64::MAX),
            ));
        }
        if let Some(domain) = &settings.domain {
            c = c.domain(domain.clone());
        }
        let rendered = c.build().to_string();
        let suffix = rendered
            .split_once(';')
            .map(|(_, rest)| format!(";{rest}"))
            .unwrap_or_default();
        SetCookie {
            prefix: format!("{}=", settings.name),
            suffix,
        }
    }

    /// The full `Set-Cookie` value for `token`.
    pub fn render(&self, token: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + token.len() + self.suffix.len());
        s.push_str(&self.prefix);
        s.push_str(token);
        s.push_str(&self.suffix);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> CookieSettings {
        CookieSettings {
            max_age: Some(Duration::from_secs(3600)),
            secure: true,
            same_site: SameSite::Strict,
            path: "/app".into(),
            domain: Some("example.com".into()),
            ..CookieSettings::with_secret(vec![0; 32])
        }
    }

    #[test]
    fn finds_every_cookie_of_the_name_across_headers() {
        let h1 = b"a=1; tether_node=first; b=2".as_slice();
        let h2 = b"tether_node=second".as_slice();
        let bad = b"\xff\xfe".as_slice();
        let mut got = Vec::new();
        let none: Option<()> = find_map([h1, bad, h2], "tether_node", |v| {
            got.push(v);
            None
        });
        assert_eq!((none, got), (None, vec!["first", "second"]));
        assert_eq!(
            find_map([h1, h2], "tether_node", |v| v.starts_with('s').then_some(v)),
            Some("second")
        );
        assert_eq!(find_map([b"x=1".as_slice()], "tether_node", Some), None);
        assert_eq!(
            find_map([b";;=;garbage".as_slice()], "tether_node", Some),
            None
        );
    }

    #[test]
    fn renders_every_configured_attribute() {
        let s = SetCookie::new(&settings()).render("TOKEN");
        assert!(s.starts_with("tether_node=TOKEN;"), "{s}");
        for attr in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/app",
            "Domain=example.com",
            "Max-Age=3600",
        ] {
            assert!(s.contains(attr), "{attr} missing in {s}");
        }
    }

    #[test]
    fn session_cookie_without_optional_attributes() {
        let mut st = settings();
        st.max_age = None;
        st.domain = None;
        st.secure = false;
        st.http_only = false;
        let s = SetCookie::new(&st).render("T");
        assert!(!s.contains("Max-Age") && !s.contains("Domain") && !s.contains("Secure"));
        assert!(!s.contains("HttpOnly"), "{s}");
    }
}

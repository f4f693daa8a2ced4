//! An upstream's `affinity`: the mode, and for cookie affinity the cookie's attributes and
//! its signing secrets (current and previous, from the environment or files).

use std::path::Path;
use std::time::Duration;

use super::{join, Checker, KEYGEN};
use crate::config::defaults::*;
use crate::config::file::{FileAffinity, FileCookie};
use crate::config::model::{Affinity, CookieSettings, EngineIo, KeyFallback, KeySource, SameSite};

impl Checker<'_> {
    /// The mode, and engine.io session affinity when `engineio: true` (its tags are signed with
    /// the cookie's keys, so it needs the cookie's secret in every mode).
    pub(super) fn affinity(
        &mut self,
        path: &str,
        a: Option<&FileAffinity>,
    ) -> Option<(Affinity, Option<EngineIo>)> {
        let affinity = self.mode(path, a)?;
        if !a.and_then(|a| a.engineio).unwrap_or(DEFAULT_ENGINEIO) {
            return Some((affinity, None));
        }
        let cookie = match &affinity {
            Affinity::Cookie(c) => Some(c),
            Affinity::Key {
                fallback: KeyFallback::Cookie(c),
                ..
            } => Some(c),
            _ => None,
        };
        if let Some(c) = cookie {
            let keys = EngineIo {
                secret: c.secret.clone(),
                previous_secrets: c.previous_secrets.clone(),
            };
            return Some((affinity, Some(keys)));
        }
        let empty = FileCookie::default();
        let c = a.and_then(|a| a.cookie.as_ref()).unwrap_or(&empty);
        if c.secret_env.is_none() && c.secret_file.is_none() {
            return self.bad(&join(path, "engineio"), format_args!("session ids are tagged with a signature, so `engineio: true` needs the cookie's secret in every mode: set affinity.cookie.secret_env or secret_file ({KEYGEN})"));
        }
        let cookie = join(path, "cookie");
        let (secret, previous) = (self.secret(&cookie, c), self.previous_secrets(&cookie, c));
        let keys = EngineIo {
            secret: secret?,
            previous_secrets: previous?,
        };
        Some((affinity, Some(keys)))
    }

    fn mode(&mut self, path: &str, a: Option<&FileAffinity>) -> Option<Affinity> {
        #[derive(Clone, Copy)]
        enum Mode {
            Cookie,
            IpHash,
            None,
            Key,
        }
        let modes = [
            ("cookie", Mode::Cookie),
            ("ip_hash", Mode::IpHash),
            ("none", Mode::None),
            ("key", Mode::Key),
        ];
        let mode = a
            .and_then(|a| a.mode.as_deref())
            .unwrap_or(DEFAULT_AFFINITY_MODE);
        // A cookie section under another mode is ignored, so switching modes is a one-line edit.
        match self.choice(&join(path, "mode"), mode, &modes)? {
            Mode::None => Some(Affinity::None),
            Mode::IpHash => Some(Affinity::IpHash),
            Mode::Cookie => {
                let empty = FileCookie::default();
                let c = a.and_then(|a| a.cookie.as_ref()).unwrap_or(&empty);
                self.cookie(&join(path, "cookie"), c).map(Affinity::Cookie)
            }
            Mode::Key => self.key(path, a),
        }
    }

    /// `mode: key`: the key's source and the fallback for requests without it.
    fn key(&mut self, path: &str, a: Option<&FileAffinity>) -> Option<Affinity> {
        let at = join(path, "key");
        let source = match a.and_then(|a| a.key.as_deref()) {
            None => {
                let pos = self.cx.positions.key(path);
                let msg = format!("{path}: `mode: key` needs `key`: where the request carries it, as `query:NAME`, `header:NAME` or `cookie:NAME` (e.g. key: \"query:room\")");
                self.at(pos, msg);
                None
            }
            Some(text) => self.key_source(&at, text),
        };
        #[derive(Clone, Copy)]
        enum Fallback {
            IpHash,
            Cookie,
            None,
        }
        let fallbacks = [
            ("ip_hash", Fallback::IpHash),
            ("cookie", Fallback::Cookie),
            ("none", Fallback::None),
        ];
        let written = a
            .and_then(|a| a.fallback.as_deref())
            .unwrap_or(DEFAULT_KEY_FALLBACK);
        let fallback = match self.choice(&join(path, "fallback"), written, &fallbacks)? {
            Fallback::IpHash => Some(KeyFallback::IpHash),
            Fallback::None => Some(KeyFallback::None),
            Fallback::Cookie => {
                let empty = FileCookie::default();
                let c = a.and_then(|a| a.cookie.as_ref()).unwrap_or(&empty);
                self.cookie(&join(path, "cookie"), c)
                    .map(KeyFallback::Cookie)
            }
        };
        Some(Affinity::Key {
            source: source?,
            fallback: fallback?,
        })
    }

    /// `query:NAME`, `header:NAME` or `cookie:NAME`.
    fn key_source(&mut self, at: &str, text: &str) -> Option<KeySource> {
        let Some((kind, name)) = text.split_once(':') else {
            return self.bad(at, format_args!("`{text}` does not say where the key is; write `query:NAME`, `header:NAME` or `cookie:NAME`"));
        };
        let name = name.trim();
        let kind = kind.trim().to_ascii_lowercase();
        let token = !name.is_empty() && name.bytes().all(is_token_byte);
        match kind.as_str() {
            "query" if !name.is_empty() && !name.contains(['&', '=', '#', ' ']) => {
                Some(KeySource::Query(name.to_string()))
            }
            "query" => self.bad(at, format_args!("`{name}` is not a query parameter name; give the name alone, without `&`, `=`, `#` or spaces (e.g. query:room)")),
            "header" if token => Some(KeySource::Header(name.to_string())),
            "header" => self.bad(at, format_args!("`{name}` is not a header name; use letters, digits and - (e.g. header:X-Tenant)")),
            "cookie" if token => Some(KeySource::Cookie(name.to_string())),
            "cookie" => self.bad(at, format_args!("`{name}` is not a cookie name; use letters, digits and ! # $ % & ' * + - . ^ _ | ~")),
            _ => self.bad(at, format_args!("`{kind}` is not a place a key can be read from; use query, header or cookie (e.g. query:room)")),
        }
    }

    fn cookie(&mut self, path: &str, c: &FileCookie) -> Option<CookieSettings> {
        let secret = self.secret(path, c);
        let name = c.name.as_deref().unwrap_or(DEFAULT_COOKIE_NAME);
        let mut ok = self.ensure(
            !name.is_empty() && name.bytes().all(is_token_byte),
            &join(path, "name"),
            format_args!("`{name}` is not a valid cookie name; use only letters, digits and ! # $ % & ' * + - . ^ _ | ~"),
        );
        let max_age = match &c.max_age {
            None => Some(DEFAULT_COOKIE_MAX_AGE),
            Some(t) => match self.duration(&join(path, "max_age"), t) {
                Some(d) if d < Duration::from_secs(1) => self.bad(&join(path, "max_age"), format_args!(
                    "`{t}` is under one second; cookie lifetimes are whole seconds (omit max_age for a session cookie)"
                )),
                d => d.map(Some),
            },
        };
        let secure = c.secure.unwrap_or(DEFAULT_COOKIE_SECURE);
        let same_sites = [
            ("lax", SameSite::Lax),
            ("strict", SameSite::Strict),
            ("none", SameSite::None),
        ];
        let same_site = match &c.same_site {
            None => Some(DEFAULT_COOKIE_SAME_SITE),
            Some(s) => self.choice(&join(path, "same_site"), s, &same_sites),
        };
        ok &= self.ensure(
            secure || same_site != Some(SameSite::None),
            &join(path, "same_site"),
            "`none` needs `secure: true`; browsers reject SameSite=None cookies that are not Secure",
        );
        let cookie_path = c.path.as_deref().unwrap_or(DEFAULT_COOKIE_PATH);
        ok &= self.ensure(
            cookie_path.starts_with('/') && attribute_ok(cookie_path),
            &join(path, "path"),
            format_args!("`{cookie_path}` is not a valid cookie path; it must start with `/` and contain no `;`, spaces or control characters"),
        );
        let domain = c.domain.as_deref().or(DEFAULT_COOKIE_DOMAIN);
        ok &= self.ensure(
            domain.is_none_or(|d| !d.is_empty() && attribute_ok(d)),
            &join(path, "domain"),
            format_args!("`{}` is not a valid cookie domain; give a host name such as `example.com`, or omit it for a host-only cookie", domain.unwrap_or_default()),
        );
        let previous_secrets = self.previous_secrets(path, c);
        let settings = CookieSettings {
            previous_secrets: previous_secrets?,
            name: name.to_string(),
            secret: secret?,
            max_age: max_age?,
            secure,
            secure_on_tls: c.secure.unwrap_or(true),
            http_only: c.http_only.unwrap_or(DEFAULT_COOKIE_HTTP_ONLY),
            same_site: same_site?,
            path: cookie_path.to_string(),
            domain: domain.map(String::from),
        };
        ok.then_some(settings)
    }

    /// Secrets of earlier keys, kept for rotation: each read and checked like the current one.
    fn previous_secrets(&mut self, path: &str, c: &FileCookie) -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, var) in c.previous_secrets_env.iter().flatten().enumerate() {
            let at = join(path, &format!("previous_secrets_env[{i}]"));
            let var = var.trim();
            let value = match (self.cx.env)(var) {
                None => self.bad(&at, format_args!("environment variable {var} is not set; export the previous secret in it, or remove it from the list once its cookies have expired")),
                Some(v) if v.trim().is_empty() => self.bad(&at, format_args!("environment variable {var} is empty")),
                Some(v) => Some(v.into_bytes()),
            };
            ok &= self.push_secret(&mut out, &at, value, &format!("environment variable {var}"));
        }
        for (i, file) in c.previous_secret_files.iter().flatten().enumerate() {
            let at = join(path, &format!("previous_secret_files[{i}]"));
            let full = self
                .cx
                .source
                .parent()
                .unwrap_or(Path::new(""))
                .join(file.trim());
            let value = match std::fs::read(&full) {
                Ok(b) => Some(b),
                Err(e) => self.bad(&at, format_args!("cannot read `{}`: {e}", full.display())),
            };
            ok &= self.push_secret(&mut out, &at, value, &format!("file {}", full.display()));
        }
        ok.then_some(out)
    }

    fn push_secret(
        &mut self,
        out: &mut Vec<Vec<u8>>,
        at: &str,
        value: Option<Vec<u8>>,
        source: &str,
    ) -> bool {
        let Some(bytes) = value else {
            return false;
        };
        let secret = bytes.trim_ascii();
        let n = secret.len();
        let msg =
            format_args!("the secret in {source} is {n} bytes; it needs at least {MIN_SECRET_LEN}");
        let ok = self.ensure(n >= MIN_SECRET_LEN, at, msg);
        if ok {
            out.push(secret.to_vec());
        }
        ok
    }

    /// Reads the signing secret from exactly one of `secret_env` and `secret_file`.
    fn secret(&mut self, path: &str, c: &FileCookie) -> Option<Vec<u8>> {
        let (at, source, bytes) = match (&c.secret_env, &c.secret_file) {
            (None, None) => {
                let pos = self.cx.positions.key(path);
                let affinity = path.trim_end_matches(".cookie");
                let msg = format!("{affinity}: cookie affinity needs a signing secret: set affinity.cookie.secret_env or secret_file ({KEYGEN}), or use mode: ip_hash");
                self.at(pos, msg);
                return None;
            }
            (Some(_), Some(_)) => {
                let msg = "set only one of secret_env and secret_file; remove the other";
                return self.bad(&join(path, "secret_file"), msg);
            }
            (Some(var), None) => {
                let (at, var) = (join(path, "secret_env"), var.trim());
                let value = match (var, (self.cx.env)(var)) {
                    ("", _) => return self.bad(&at, "is empty; name the environment variable that holds the secret, e.g. `TETHER_SECRET`"),
                    (_, None) => return self.bad(&at, format_args!("environment variable {var} is not set; export it ({KEYGEN})")),
                    (_, Some(v)) if v.trim().is_empty() => return self.bad(&at, format_args!("environment variable {var} is empty; export the secret in it ({KEYGEN})")),
                    (_, Some(v)) => v,
                };
                (
                    at,
                    format!("environment variable {var}"),
                    value.into_bytes(),
                )
            }
            (None, Some(file)) => {
                let at = join(path, "secret_file");
                let full = self
                    .cx
                    .source
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(file.trim());
                match std::fs::read(&full) {
                    Ok(b) => (at, format!("file {}", full.display()), b),
                    Err(e) => {
                        return self.bad(&at, format_args!("cannot read `{}`: {e}", full.display()))
                    }
                }
            }
        };
        let secret = bytes.trim_ascii();
        let n = secret.len();
        let msg = format_args!(
            "the secret in {source} is {n} bytes; it needs at least {MIN_SECRET_LEN} ({KEYGEN})"
        );
        self.ensure(n >= MIN_SECRET_LEN, &at, msg)
            .then(|| secret.to_vec())
    }
}

/// RFC 6265 `token`: visible ASCII except the HTTP separators.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

/// Cookie attribute values may not contain `;`, whitespace or control characters.
fn attribute_ok(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

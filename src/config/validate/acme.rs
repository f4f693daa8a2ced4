//! `tls.acme:` of a listener: a certificate tether orders and renews from an ACME server.

use std::path::Path;
use std::sync::Arc;

use super::{join, Checker};
use crate::certs;
use crate::config::file::{FileAcme, FileEab};
use crate::config::model::{Acme, Challenge, Eab, TlsIdentity, TlsSource};

/// Let's Encrypt's production directory: the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

const STORAGE_HINT: &str = "give a directory for the account key and certificates, e.g. \
     `storage: /var/lib/tether/acme` (created 0700; replicas that serve the same names should \
     share it, so that one of them orders and all serve the result)";

/// Why `name` cannot be on a certificate tether orders, if it cannot.
pub fn domain_problem(name: &str) -> Option<String> {
    if name.contains('*') {
        return Some(
            "is a wildcard: wildcard certificates need the DNS-01 challenge, which tether does \
             not do; list each name instead"
                .into(),
        );
    }
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Some("is an IP address; list the DNS names clients connect to".into());
    }
    if name.ends_with('.') {
        return Some(format!(
            "ends with a dot; write `{}`",
            name.trim_end_matches('.')
        ));
    }
    if name.is_empty() || name.len() > 253 {
        return Some("is not a DNS name (1 to 253 characters)".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Some(format!(
                "is not a DNS name (label `{label}`: letters, digits and inner hyphens, at most 63)"
            ));
        }
    }
    None
}

impl Checker<'_> {
    /// Check `acme:` and build the listener's rustls config around its certificate slot (the
    /// certificate found in `storage`, if any, is served from the first handshake).
    pub(super) fn acme(
        &mut self,
        path: &str,
        a: &FileAcme,
        base: &Path,
        http2: bool,
    ) -> Option<TlsIdentity> {
        let domains = match a.domains.as_deref() {
            None | Some([]) => self.missing(
                path,
                "domains",
                "list the DNS names the certificate is for, e.g. `domains: [chat.example.com]`",
            ),
            Some(list) => {
                let mut out: Vec<String> = Vec::new();
                let mut ok = true;
                for (i, d) in list.iter().enumerate() {
                    let d = d.trim().to_ascii_lowercase();
                    let at = format!("{}[{i}]", join(path, "domains"));
                    if let Some(problem) = domain_problem(&d) {
                        ok = self.ensure(false, &at, format_args!("`{d}` {problem}"));
                    } else if out.contains(&d) {
                        ok = self.ensure(false, &at, format_args!("`{d}` is listed twice"));
                    } else {
                        out.push(d);
                    }
                }
                ok.then_some(out)
            }
        };
        let email = match a.email.as_deref().map(str::trim) {
            None => Some(None),
            Some(e) => {
                let e = e.strip_prefix("mailto:").unwrap_or(e);
                let ok = e.contains('@') && !e.contains(char::is_whitespace) && !e.contains(',');
                if self.ensure(
                    ok,
                    &join(path, "email"),
                    format_args!(
                        "`{e}` is not an email address (the CA sends expiry notices there)"
                    ),
                ) {
                    Some(Some(e.to_string()))
                } else {
                    None
                }
            }
        };
        let directory = match a.directory.as_deref().map(str::trim) {
            None | Some("letsencrypt") => Some(LETS_ENCRYPT.to_string()),
            Some("letsencrypt-staging") => Some(LETS_ENCRYPT_STAGING.to_string()),
            Some(url) if url.starts_with("https://") && url.len() > "https://".len() => {
                Some(url.to_string())
            }
            Some(other) => self.bad(
                &join(path, "directory"),
                format_args!(
                    "`{other}` is not an ACME directory: give its https:// URL, \
                     `letsencrypt` (the default) or `letsencrypt-staging`"
                ),
            ),
        };
        let storage = match a.storage.as_deref().map(str::trim) {
            None | Some("") => self.missing(path, "storage", STORAGE_HINT),
            Some(s) => Some(base.join(s)),
        };
        let ca_roots = match a.ca_roots.as_deref().map(str::trim) {
            None => Some(None),
            Some(file) => {
                let file = base.join(file);
                let at = join(path, "ca_roots");
                match std::fs::read(&file) {
                    Err(e) => self.bad(
                        at.as_str(),
                        format_args!("cannot read `{}`: {e}", file.display()),
                    ),
                    Ok(pem) => {
                        let certs = rustls_pemfile::certs(&mut pem.as_slice())
                            .collect::<Result<Vec<_>, _>>()
                            .unwrap_or_default();
                        if self.ensure(
                            !certs.is_empty(),
                            &at,
                            format_args!(
                                "`{}` holds no PEM certificate: give the root the ACME server's \
                                 HTTPS certificate chains to",
                                file.display()
                            ),
                        ) {
                            Some(Some(file))
                        } else {
                            None
                        }
                    }
                }
            }
        };
        let challenge = match a.challenge.as_deref().map(str::trim) {
            None | Some("tls-alpn-01") => Some(Challenge::TlsAlpn01),
            Some("http-01") => Some(Challenge::Http01),
            Some("dns-01") => self.bad(
                &join(path, "challenge"),
                "DNS-01 is not supported; use `tls-alpn-01` (the default: on this listener) or \
                 `http-01` (on a plain listener)",
            ),
            Some(other) => self.bad(
                &join(path, "challenge"),
                format_args!(
                    "`{other}` is not a challenge; use `tls-alpn-01` (the default) or `http-01`"
                ),
            ),
        };
        let eab = match &a.eab {
            None => Some(None),
            Some(e) => self.eab(&join(path, "eab"), e).map(Some),
        };
        let (domains, email, directory, storage, ca_roots, challenge, eab) = (
            domains?, email?, directory?, storage?, ca_roots?, challenge?, eab?,
        );
        let slot = certs::slot(&storage, &directory, &domains);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let built = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string());
        let mut server = match built {
            Ok(b) => b
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(certs::Resolver::new(Arc::clone(&slot)))),
            Err(e) => return self.bad(path, e),
        };
        server.alpn_protocols = super::listen::alpn(http2, challenge == Challenge::TlsAlpn01);
        Some(TlsIdentity {
            source: TlsSource::Acme(Acme {
                domains,
                email,
                directory,
                storage,
                ca_roots,
                challenge,
                eab,
                slot,
            }),
            server: Arc::new(server),
        })
    }
}

impl Checker<'_> {
    /// `eab: { kid, hmac_env }`: the key id as the CA gave it, and the environment variable
    /// holding its base64url HMAC key (a secret, so never in the file).
    fn eab(&mut self, path: &str, e: &FileEab) -> Option<Eab> {
        use base64::Engine as _;
        let kid = match e.kid.as_deref().map(str::trim) {
            None | Some("") => self.missing(
                path,
                "kid",
                "give the key id your CA's account page shows for External Account Binding",
            ),
            Some(k) => Some(k.to_string()),
        };
        let at = join(path, "hmac_env");
        let hmac = match e.hmac_env.as_deref().map(str::trim) {
            None | Some("") => self.missing(
                path,
                "hmac_env",
                "name the environment variable that holds the HMAC key your CA gave (base64url), e.g. `hmac_env: ACME_EAB_HMAC`",
            ),
            Some(var) => match (self.cx.env)(var) {
                None => self.bad(
                    &at,
                    format_args!("environment variable {var} is not set; export the CA's HMAC key in it"),
                ),
                Some(v) => {
                    let v = v.trim();
                    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(v.trim_end_matches('='))
                        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(v));
                    match decoded {
                        Ok(k) if !k.is_empty() => Some(k),
                        _ => self.bad(
                            &at,
                            format_args!("environment variable {var} does not hold a base64url HMAC key"),
                        ),
                    }
                }
            },
        };
        Some(Eab {
            kid: kid?,
            hmac: hmac?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::domain_problem;

    #[test]
    fn names_only() {
        assert_eq!(domain_problem("chat.example.com"), None);
        assert_eq!(domain_problem("localhost"), None);
        assert!(domain_problem("*.example.com").unwrap().contains("DNS-01"));
        assert!(domain_problem("192.0.2.1").unwrap().contains("IP address"));
        assert!(domain_problem("[::1]").unwrap().contains("IP address"));
        assert!(domain_problem("a.test.").unwrap().contains("a.test"));
        assert!(domain_problem("a..test").is_some());
        assert!(domain_problem("-a.test").is_some());
        assert!(domain_problem("a_b.test").is_some());
        assert!(domain_problem(&"a".repeat(64)).is_some());
    }
}

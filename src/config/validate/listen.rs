//! The `listen` section: the addresses tether accepts clients on, and each one's TLS identity.

use std::path::Path;

use super::{join, Checker};
use crate::config::file::{FileConfig, FileTls};
use crate::config::model::{Challenge, Listener, TlsIdentity, TlsSource};

const LISTEN_HINT: &str =
    "add at least one address to accept clients on, e.g. `- address: \"127.0.0.1:8080\"`";

impl Checker<'_> {
    pub(super) fn listen(&mut self, file: &FileConfig) -> Vec<Listener> {
        let mut out: Vec<Listener> = Vec::new();
        // `tls.acme.challenge` of the listeners validated by HTTP-01, which needs a plain one.
        let mut http01 = Vec::new();
        match file.listen.as_deref() {
            None => self.missing::<()>("", "listen", LISTEN_HINT),
            Some([]) => self.bad("listen", format_args!("is empty; {LISTEN_HINT}")),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("listen[{i}]");
                    let Some(text) = &item.address else {
                        let hint = "give an IP:PORT such as `127.0.0.1:8080` or `[::]:8080`";
                        self.missing::<()>(&path, "address", hint);
                        continue;
                    };
                    let tls_on = item.tls.is_some();
                    let http2 = item.http2.unwrap_or(tls_on);
                    self.ensure(
                        tls_on || item.http2 != Some(true),
                        &join(&path, "http2"),
                        format_args!(
                            "applies to TLS listeners (browsers speak HTTP/2 only over TLS); \
                             add `tls:`, or for HTTP/2 without TLS from a proxy in front set `h2c: true`"
                        ),
                    );
                    let h2c = item.h2c.unwrap_or(false);
                    self.ensure(
                        !(tls_on && h2c),
                        &join(&path, "h2c"),
                        format_args!(
                            "is for plain listeners; a TLS listener offers HTTP/2 through ALPN \
                             (`http2: true`, the default)"
                        ),
                    );
                    let tls = match &item.tls {
                        None => Some(None),
                        Some(t) => self.tls(&join(&path, "tls"), t, http2).map(Some),
                    };
                    let path = join(&path, "address");
                    let (Some(address), Some(tls)) = (self.socket_addr(&path, text, true), tls)
                    else {
                        continue;
                    };
                    let unique = !out.iter().any(|l| l.address == address);
                    if let Some(TlsSource::Acme(a)) = tls.as_ref().map(|t| &t.source) {
                        if a.challenge == Challenge::Http01 {
                            http01.push(format!("listen[{i}].tls.acme.challenge"));
                        }
                    }
                    if self.ensure(
                        unique,
                        &path,
                        format_args!("`{text}` is listed twice; remove one"),
                    ) {
                        out.push(Listener {
                            address,
                            tls,
                            proxy_protocol: item.proxy_protocol.unwrap_or(false),
                            http2: http2 && tls_on,
                            h2c: h2c && !tls_on,
                        });
                    }
                }
                None
            }
        };
        let plain = out.iter().any(|l| l.tls.is_none());
        for path in http01 {
            {
                self.ensure(
                    plain,
                    &path,
                    "`http-01` is answered on a plain listener (the CA connects to port 80); add \
                     one, e.g. `- address: \"0.0.0.0:80\"`, or use `tls-alpn-01`",
                );
            }
        }
        out
    }

    /// A listener's TLS identity: certificate files, or `acme:`.
    fn tls(&mut self, path: &str, t: &FileTls, http2: bool) -> Option<TlsIdentity> {
        let base = self
            .cx
            .source
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        match (&t.acme, t.cert.is_some() || t.key.is_some()) {
            (Some(_), true) => self.bad(
                path,
                "has both `cert`/`key` and `acme`; keep one: certificate files you renew \
                 yourself, or `acme:` for a certificate tether orders and renews",
            ),
            (Some(a), false) => self.acme(&join(path, "acme"), a, &base, http2),
            (None, _) => self.files(path, t, &base, http2),
        }
    }

    /// Load a listener's certificate chain and key (PEM; RSA, ECDSA or Ed25519 keys) and check
    /// they belong together, so a bad file is a config error naming it, not a failed handshake.
    fn files(&mut self, path: &str, t: &FileTls, base: &Path, http2: bool) -> Option<TlsIdentity> {
        // Both files are checked before giving up, so one run reports every problem.
        let cert = match &t.cert {
            None => self.missing(
                path,
                "cert",
                "give the PEM certificate chain file, leaf first (or `acme:` for a certificate \
                 tether orders itself)",
            ),
            Some(c) => Some(base.join(c.trim())),
        };
        let key = match &t.key {
            None => self.missing(path, "key", "give the PEM private key file"),
            Some(k) => Some(base.join(k.trim())),
        };
        let chain = cert.as_ref().and_then(|cert| {
            let parsed = match std::fs::read(cert) {
                Err(e) => {
                    return self.bad(
                        &join(path, "cert"),
                        format_args!("cannot read `{}`: {e}", cert.display()),
                    )
                }
                Ok(pem) => {
                    rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>()
                }
            };
            match parsed {
                Ok(c) if !c.is_empty() => Some(c),
                _ => self.bad(
                    &join(path, "cert"),
                    format_args!(
                        "`{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                        cert.display()
                    ),
                ),
            }
        });
        let private = key.as_ref().and_then(|key| {
            let parsed = match std::fs::read(key) {
                Err(e) => {
                    return self.bad(
                        &join(path, "key"),
                        format_args!("cannot read `{}`: {e}", key.display()),
                    )
                }
                Ok(pem) => rustls_pemfile::private_key(&mut pem.as_slice()),
            };
            match parsed {
                Ok(Some(k)) => Some(k),
                _ => self.bad(
                    &join(path, "key"),
                    format_args!(
                        "`{}` holds no PEM private key (PKCS#8, RSA or EC)",
                        key.display()
                    ),
                ),
            }
        });
        let (cert, key, chain, private) = (cert?, key?, chain?, private?);
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let built = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(chain, private)
                    .map_err(|e| e.to_string())
            });
        match built {
            Ok(mut server) => {
                server.alpn_protocols = alpn(http2, false);
                Some(TlsIdentity {
                    source: TlsSource::Files { cert, key },
                    server: std::sync::Arc::new(server),
                })
            }
            Err(e) => self.bad(
                &join(path, "key"),
                format_args!(
                    "`{}` does not fit the certificate in `{}`: {e}",
                    key.display(),
                    cert.display()
                ),
            ),
        }
    }
}

/// The ALPN protocols a TLS listener offers. HTTP/2 first when on: browsers take it, and
/// WebSockets then ride on the same connection (RFC 8441); clients without it (Safari's
/// WebSockets, scripts) pick HTTP/1.1. `acme-tls/1` last, for the CA's TLS-ALPN-01 validation
/// (no browser offers it, and a hello offering only it never gets the real certificate).
pub(super) fn alpn(http2: bool, acme_tls: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if http2 {
        out.push(b"h2".to_vec());
    }
    out.push(b"http/1.1".to_vec());
    if acme_tls {
        out.push(crate::certs::ACME_TLS_ALPN.to_vec());
    }
    out
}

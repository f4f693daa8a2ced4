//! Checks the loosely typed file and builds `model::Config`, collecting every problem with the
//! position of the key or value it concerns.

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::defaults::*;
use super::duration::parse_duration;
use super::file::*;
use super::model::*;
use super::position::{Pos, Positions};
use super::Diagnostic;

/// What validation needs from outside the file.
pub struct Context<'a> {
    pub positions: &'a Positions,
    /// The config file's path: `Config::source`, and the base of relative `secret_file` paths.
    pub source: &'a Path,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Validates `file`; on failure returns every problem found (unsorted).
pub fn validate(file: &FileConfig, cx: &Context) -> Result<Config, Vec<Diagnostic>> {
    let mut c = Checker {
        cx,
        diags: Vec::new(),
    };
    let listen = c.listen(file);
    let (names, upstreams) = c.upstreams(file);
    let routes = c.routes(file, &names);
    let admin = c.admin(file.admin.as_ref(), &listen);
    let shutdown = c.shutdown(file.shutdown.as_ref());
    let trusted_proxies = c.trusted_proxies(file.client_ip.as_ref());
    let limits = c.limits(file.limits.as_ref());
    // `None` always comes with a diagnostic; the check on `diags` covers the dropped upstreams
    // and routes, which have no `None` of their own.
    let (Some(admin), Some(shutdown), Some(limits), true) =
        (admin, shutdown, limits, c.diags.is_empty())
    else {
        return Err(c.diags);
    };
    let source = cx.source.to_path_buf();
    Ok(Config {
        source,
        listen,
        upstreams,
        routes,
        admin,
        shutdown,
        trusted_proxies,
        limits,
    })
}

const KEYGEN: &str = "make one with `tether keygen`";
const NODE_EXAMPLE: &str = "e.g. `- { id: node-a, address: \"127.0.0.1:3001\" }`";
const LISTEN_HINT: &str =
    "add at least one address to accept clients on, e.g. `- address: \"127.0.0.1:8080\"`";

fn join(parent: &str, key: &str) -> String {
    format!("{parent}.{key}")
}

struct Checker<'a> {
    cx: &'a Context<'a>,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&mut self, pos: Pos, message: String) {
        self.diags.push(Diagnostic {
            line: pos.line,
            col: pos.col,
            message,
        });
    }

    /// Reports a bad value at the value of `path`; returns `None` so callers can end with it.
    fn bad<T>(&mut self, path: &str, msg: impl Display) -> Option<T> {
        let pos = self.cx.positions.value(path);
        self.at(pos, format!("{path}: {msg}"));
        None
    }

    /// Reports a problem at `path` unless `ok`; returns `ok`.
    fn ensure(&mut self, ok: bool, path: &str, msg: impl Display) -> bool {
        if !ok {
            self.bad::<()>(path, msg);
        }
        ok
    }

    /// Reports an absent required key at the key of the mapping that should hold it.
    fn missing<T>(&mut self, parent: &str, key: &str, hint: &str) -> Option<T> {
        if parent.is_empty() {
            self.at(
                Pos { line: 1, col: 1 },
                format!("`{key}` is missing; {hint}"),
            );
        } else {
            let pos = self.cx.positions.key(parent);
            self.at(pos, format!("{parent}: `{key}` is missing; {hint}"));
        }
        None
    }

    fn listen(&mut self, file: &FileConfig) -> Vec<Listener> {
        let mut out: Vec<Listener> = Vec::new();
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
                    let tls = match &item.tls {
                        None => Some(None),
                        Some(t) => self.tls(&join(&path, "tls"), t).map(Some),
                    };
                    let path = join(&path, "address");
                    let (Some(address), Some(tls)) = (self.socket_addr(&path, text, true), tls)
                    else {
                        continue;
                    };
                    let unique = !out.iter().any(|l| l.address == address);
                    if self.ensure(
                        unique,
                        &path,
                        format_args!("`{text}` is listed twice; remove one"),
                    ) {
                        out.push(Listener {
                            address,
                            tls,
                            proxy_protocol: item.proxy_protocol.unwrap_or(false),
                        });
                    }
                }
                None
            }
        };
        out
    }

    /// Load a listener's certificate chain and key (PEM; RSA, ECDSA or Ed25519 keys) and check
    /// they belong together, so a bad file is a config error naming it, not a failed handshake.
    fn tls(&mut self, path: &str, t: &FileTls) -> Option<TlsIdentity> {
        let base = self
            .cx
            .source
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        // Both files are checked before giving up, so one run reports every problem.
        let cert = match &t.cert {
            None => self.missing(
                path,
                "cert",
                "give the PEM certificate chain file, leaf first",
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
                server.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(TlsIdentity {
                    cert,
                    key,
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

    /// Parses `IP:PORT`; names are refused because tether resolves nothing at load time.
    fn socket_addr(&mut self, path: &str, text: &str, allow_port_zero: bool) -> Option<SocketAddr> {
        match (text.trim().parse::<SocketAddr>(), text.trim().parse::<IpAddr>()) {
            (Ok(a), _) if a.port() == 0 && !allow_port_zero => self.bad(path, format_args!(
                "`{text}` has port 0, which cannot be connected to; give the node's real port"
            )),
            (Ok(a), _) => Some(a),
            // A bare IP is a common slip: show where the port goes (IPv6 needs brackets).
            (_, Ok(IpAddr::V4(ip))) => {
                self.bad(path, format_args!("`{text}` has no port; write `{ip}:PORT`"))
            }
            (_, Ok(IpAddr::V6(ip))) => self.bad(path, format_args!(
                "`{text}` has no port; write `[{ip}]:PORT` (IPv6 addresses need brackets)"
            )),
            _ => self.bad(path, format_args!("`{text}` is not an IP:PORT address (e.g. `127.0.0.1:3001` or `[::1]:3001`); tether does not resolve names here")),
        }
    }

    /// Returns the unique upstream names (what routes may name) and the validated upstreams.
    fn upstreams(&mut self, file: &FileConfig) -> (Vec<String>, Vec<Upstream>) {
        let (mut names, mut out) = (Vec::<String>::new(), Vec::new());
        let Some(ups) = &file.upstreams else {
            let hint = "define at least one pool of nodes, e.g. `upstreams: { realtime: { nodes: [...] } }`";
            self.missing::<()>("", "upstreams", hint);
            return (names, out);
        };
        let msg = "is empty; define at least one upstream with its `nodes`";
        self.ensure(!ups.0.is_empty(), "upstreams", msg);
        for (i, (name, up)) in ups.0.iter().enumerate() {
            let path = join("upstreams", name);
            let seen = ups.0[..i].iter().filter(|(n, _)| n == name).count();
            if seen > 0 {
                let pos = self.cx.positions.nth_key(&path, seen);
                let msg = format!("{path}: upstream `{name}` is defined more than once; give each upstream a unique name");
                self.at(pos, msg);
                continue;
            }
            names.push(name.clone());
            out.extend(self.upstream(&path, name, up));
        }
        (names, out)
    }

    fn upstream(&mut self, path: &str, name: &str, up: &FileUpstream) -> Option<Upstream> {
        let discover = match &up.discover {
            None => Some(None),
            Some(d) => self.discover(&join(path, "discover"), d).map(Some),
        };
        let nodes = self.nodes(path, up.nodes.as_deref(), up.discover.is_some());
        let balances = [
            ("least_conn", Balance::LeastConn),
            ("round_robin", Balance::RoundRobin),
        ];
        let balance = match &up.balance {
            None => Some(DEFAULT_BALANCE),
            Some(b) => self.choice(&join(path, "balance"), b, &balances),
        };
        let affinity = self.affinity(&join(path, "affinity"), up.affinity.as_ref());
        let timeouts = self.timeouts(&join(path, "timeouts"), up.timeouts.as_ref());
        let health_check = match &up.health_check {
            None => Some(None),
            Some(h) => self.health_check(&join(path, "health_check"), h).map(Some),
        };
        let passive = self.passive(&join(path, "passive"), up.passive.as_ref());
        let slow_start = self.span(
            &join(path, "slow_start"),
            up.slow_start.as_ref(),
            DEFAULT_SLOW_START,
        );
        let max_tunnels_per_node = self.count(
            &join(path, "max_tunnels_per_node"),
            up.max_tunnels_per_node,
            (0, 10_000_000, DEFAULT_MAX_TUNNELS_PER_NODE),
            "open tunnels per node, 0 (no limit) or more",
        );
        Some(Upstream {
            max_tunnels_per_node: max_tunnels_per_node?,
            name: name.to_string(),
            nodes: nodes?,
            discover: discover?,
            balance: balance?,
            affinity: affinity?,
            timeouts: timeouts?,
            health_check: health_check?,
            passive: passive?,
            slow_start: slow_start?,
        })
    }

    /// The static nodes; with `discovering`, none at all is fine.
    fn nodes(
        &mut self,
        path: &str,
        nodes: Option<&[FileNode]>,
        discovering: bool,
    ) -> Option<Vec<Node>> {
        let nodes = match nodes {
            None | Some([]) if discovering => return Some(Vec::new()),
            None => {
                return self.missing(
                    path,
                    "nodes",
                    &format!("add at least one node, {NODE_EXAMPLE}, or find them by DNS with `discover: {{ dns: NAME, port: PORT }}`"),
                )
            }
            Some([]) => {
                let msg = format!("is empty; add at least one node, {NODE_EXAMPLE}");
                return self.bad(&join(path, "nodes"), msg);
            }
            Some(n) => n,
        };
        let mut out = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let p = format!("{path}.nodes[{i}]");
            let id = match n.id.as_deref().map(str::trim) {
                None => self.missing(&p, "id", "give the node a stable name such as `node-a`; stickiness is keyed by it"),
                Some("") => self.bad(&join(&p, "id"), "is empty; give the node a stable name such as `node-a`"),
                Some(id) if nodes[..i].iter().any(|m| m.id.as_deref().map(str::trim) == Some(id)) => {
                    self.bad(&join(&p, "id"), format_args!("`{id}` is already used by another node of this upstream; node ids must be unique"))
                }
                Some(id) => Some(id.to_string()),
            };
            let address = match &n.address {
                None => self.missing(
                    &p,
                    "address",
                    "give the node's IP:PORT, e.g. `127.0.0.1:3001`",
                ),
                Some(a) => self.socket_addr(&join(&p, "address"), a, false),
            };
            let weight = match n.weight {
                None => Some(DEFAULT_WEIGHT),
                Some(w) if (i64::from(MIN_WEIGHT)..=i64::from(MAX_WEIGHT)).contains(&w) => {
                    u32::try_from(w).ok()
                }
                Some(w) => {
                    // Weight 0 is often meant as "drain this node"; say how to do that instead.
                    let hint = if w < 1 {
                        "; to take a node out, remove it from the list"
                    } else {
                        ""
                    };
                    let msg = format!("{w} is out of range; a weight must be between {MIN_WEIGHT} and {MAX_WEIGHT}{hint}");
                    self.bad(&join(&p, "weight"), msg)
                }
            };
            out.push(match (id, address, weight) {
                (Some(id), Some(address), Some(weight)) => Some(Node {
                    id,
                    address,
                    weight,
                }),
                _ => None,
            });
        }
        // Every node has been checked; only now give up if any of them failed.
        out.into_iter().collect()
    }

    /// `discover:`: names (each with its port), refresh interval and resolver.
    fn discover(&mut self, path: &str, d: &FileDiscover) -> Option<Discover> {
        // `None` when omitted or bad (a bad one is reported here, once).
        let port = d.port.and_then(|p| match u16::try_from(p) {
            Ok(p) if p > 0 => Some(p),
            _ => self.bad(
                &join(path, "port"),
                format_args!("{p} is not a port; give the nodes' port, 1..65535"),
            ),
        });
        let names = match &d.dns {
            None => self.missing(path, "dns", "give the name whose A/AAAA records are the nodes, e.g. `dns: realtime.default.svc.cluster.local`"),
            Some(list) if list.items.is_empty() => self.bad(&join(path, "dns"), "is empty; give at least one name to resolve"),
            Some(list) => {
                let mut out = Vec::new();
                for (p, item) in items(&join(path, "dns"), list) {
                    out.push(self.dns_name(&p, item, port, d.port.is_some()));
                }
                out.into_iter().collect::<Option<Vec<_>>>()
            }
        };
        let refresh = self.timeout(
            &join(path, "refresh"),
            d.refresh.as_ref(),
            DEFAULT_DISCOVER_REFRESH,
        );
        if let (Some(r), Some(text)) = (refresh, &d.refresh) {
            let min = humantime::format_duration(MIN_DISCOVER_REFRESH);
            let msg = format_args!(
                "`{text}` is too short: it would only load the DNS server; use at least {min}"
            );
            self.ensure(r >= MIN_DISCOVER_REFRESH, &join(path, "refresh"), msg);
        }
        let refresh = refresh.filter(|r| *r >= MIN_DISCOVER_REFRESH);
        let resolver = match d.resolver.as_deref().map(str::trim) {
            None => Some(None),
            Some(text) => match (text.parse::<SocketAddr>(), text.parse::<IpAddr>()) {
                (Ok(a), _) if a.port() != 0 => Some(Some(a)),
                (_, Ok(ip)) => Some(Some(SocketAddr::new(ip, DEFAULT_DNS_PORT))),
                _ => self.bad(&join(path, "resolver"), format_args!("`{text}` is not a DNS server address; write IP or IP:PORT, e.g. `127.0.0.1:5353` (omit `resolver` to use the system's)")),
            },
        };
        Some(Discover {
            names: names?,
            refresh: refresh?,
            resolver: resolver?,
        })
    }

    /// One `dns` item: `NAME` or `NAME:PORT`; `port` is the section's `port` (`port_given`
    /// says whether it was written at all, so a bad one is not reported twice).
    fn dns_name(
        &mut self,
        path: &str,
        text: &str,
        port: Option<u16>,
        port_given: bool,
    ) -> Option<DnsName> {
        let t = text.trim();
        if t.parse::<IpAddr>().is_ok() || t.parse::<SocketAddr>().is_ok() {
            return self.bad(
                path,
                format_args!(
                    "`{t}` is an address, not a name; list fixed addresses under `nodes` instead"
                ),
            );
        }
        let (name, own_port) = match t.rsplit_once(':') {
            Some((n, p)) => match p.parse::<u16>() {
                Ok(p) if p > 0 => (n, Some(p)),
                _ => return self.bad(path, format_args!("`{t}`: `{p}` is not a port")),
            },
            None => (t, None),
        };
        let valid = is_dns_name(name.strip_suffix('.').unwrap_or(name));
        if !valid {
            return self.bad(path, format_args!("`{t}` is not a DNS name (letters, digits, `-` and `_` in dot-separated labels), e.g. `realtime.default.svc.cluster.local`"));
        }
        match own_port.or(port) {
            Some(port) => Some(DnsName {
                name: name.to_string(),
                port,
            }),
            None if port_given => None,
            None => self.bad(
                path,
                format_args!(
                    "`{t}` has no port; add `port: PORT` to discover, or write `{t}:PORT`"
                ),
            ),
        }
    }

    /// Maps an enum spelled as a string; unknown spellings list the valid ones.
    fn choice<T: Copy>(&mut self, path: &str, text: &str, options: &[(&str, T)]) -> Option<T> {
        let found = options
            .iter()
            .find(|(name, _)| *name == text.trim())
            .map(|(_, v)| *v);
        if found.is_none() {
            let valid: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            let msg = format!(
                "unknown value `{text}`; expected one of: {}",
                valid.join(", ")
            );
            self.bad::<()>(path, msg);
        }
        found
    }

    fn affinity(&mut self, path: &str, a: Option<&FileAffinity>) -> Option<Affinity> {
        #[derive(Clone, Copy)]
        enum Mode {
            Cookie,
            IpHash,
            None,
        }
        let modes = [
            ("cookie", Mode::Cookie),
            ("ip_hash", Mode::IpHash),
            ("none", Mode::None),
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

    fn duration(&mut self, path: &str, text: &str) -> Option<Duration> {
        parse_duration(text).map_or_else(|e| self.bad(path, e), Some)
    }

    /// A timeout: omitted means the default, zero is refused.
    fn timeout(
        &mut self,
        path: &str,
        text: Option<&String>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(text) = text else {
            return Some(default);
        };
        let d = self.duration(path, text)?;
        self.ensure(
            !d.is_zero(),
            path,
            format_args!("`{text}` must be greater than zero"),
        )
        .then_some(d)
    }

    /// A duration where zero is meaningful (off, or at once): omitted means the default.
    fn span(&mut self, path: &str, text: Option<&String>, default: Duration) -> Option<Duration> {
        text.map_or(Some(default), |t| self.duration(path, t))
    }

    /// A whole number in `min..=max`, or `default` when omitted. `what` says what the key means
    /// and its range, for the out-of-range message.
    fn count(
        &mut self,
        path: &str,
        value: Option<i64>,
        (min, max, default): (u32, u32, u32),
        what: impl Display,
    ) -> Option<u32> {
        match value {
            None => Some(default),
            Some(v) if (i64::from(min)..=i64::from(max)).contains(&v) => u32::try_from(v).ok(),
            Some(v) => self.bad(path, format_args!("{v} is out of range; {what}")),
        }
    }

    fn timeouts(&mut self, path: &str, t: Option<&FileTimeouts>) -> Option<Timeouts> {
        let empty = FileTimeouts::default();
        let t = t.unwrap_or(&empty);
        let connect = self.timeout(
            &join(path, "connect"),
            t.connect.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
        );
        let read = self.timeout(&join(path, "read"), t.read.as_ref(), DEFAULT_READ_TIMEOUT);
        let idle = self.timeout(
            &join(path, "tunnel_idle"),
            t.tunnel_idle.as_ref(),
            DEFAULT_TUNNEL_IDLE_TIMEOUT,
        );
        let send = self.timeout(&join(path, "send"), t.send.as_ref(), DEFAULT_SEND_TIMEOUT);
        let (connect, read) = (connect?, read?);
        // Point at whichever of the two the file actually sets.
        let at = join(path, if t.read.is_some() { "read" } else { "connect" });
        let (r, c) = (
            humantime::format_duration(read),
            humantime::format_duration(connect),
        );
        let msg = format_args!(
            "read ({r}) is shorter than connect ({c}); make read at least as long as connect"
        );
        self.ensure(read >= connect, &at, msg).then_some(Timeouts {
            connect,
            read,
            tunnel_idle: idle?,
            send: send?,
        })
    }

    fn health_check(&mut self, path: &str, h: &FileHealthCheck) -> Option<HealthCheck> {
        let check_path = match h.path.as_deref() {
            None => Some(DEFAULT_HEALTH_PATH.map(String::from)),
            Some("") => self.bad(&join(path, "path"), "is empty; give the path to GET, e.g. `/healthz`, or omit `path` for a TCP connect check"),
            Some(p) if p.contains("://") => self.bad(&join(path, "path"), format_args!("`{p}` is a URL; give only its path, starting with `/` (checks go to each node's own address; set `host` for the Host header)")),
            Some(p) if !p.starts_with('/') => self.bad(&join(path, "path"), format_args!("`{p}` must start with `/`, e.g. `/{}`", p.trim_start_matches('/'))),
            Some(p) if !p.bytes().all(|b| b.is_ascii_graphic()) => self.bad(&join(path, "path"), format_args!("`{}` contains a space, control character or non-ASCII character, which cannot go in a request line; percent-encode it (a space is `%20`)", p.escape_debug())),
            Some(p) => Some(Some(p.to_string())),
        };
        // Host and statuses only mean something to the HTTP check; say so instead of ignoring them.
        let http_only = |what: &str| {
            format!("{what} only applies to an HTTP check; add `path` (e.g. `/healthz`) or remove {what} for a TCP connect check")
        };
        let host = match h.host.as_deref() {
            None => Some(DEFAULT_HEALTH_HOST.map(String::from)),
            Some(_) if h.path.is_none() => self.bad(&join(path, "host"), http_only("host")),
            Some(v) if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic() && !b"/?#@,;".contains(&b)) => {
                self.bad(&join(path, "host"), format_args!("`{}` is not a valid Host header; give a host name such as `realtime.local`, optionally with `:PORT`", v.escape_debug()))
            }
            Some(v) => Some(Some(v.to_string())),
        };
        let expect_status = match &h.expect_status {
            None => Some(DEFAULT_HEALTH_EXPECT_STATUS.to_vec()),
            Some(_) if h.path.is_none() => {
                self.bad(&join(path, "expect_status"), http_only("expect_status"))
            }
            Some(list) => self.statuses(&join(path, "expect_status"), list),
        };
        let interval = self.timeout(
            &join(path, "interval"),
            h.interval.as_ref(),
            DEFAULT_HEALTH_INTERVAL,
        );
        let timeout = self.timeout(
            &join(path, "timeout"),
            h.timeout.as_ref(),
            DEFAULT_HEALTH_TIMEOUT,
        );
        let (lo, hi) = (MIN_HEALTH_THRESHOLD, MAX_HEALTH_THRESHOLD);
        let what = format_args!(
            "rise is how many checks in a row must pass to make a node healthy, from {lo} to {hi}"
        );
        let rise = self.count(
            &join(path, "rise"),
            h.rise,
            (lo, hi, DEFAULT_HEALTH_RISE),
            what,
        );
        let what = format_args!("fall is how many checks in a row must fail to make a node unhealthy, from {lo} to {hi}");
        let fall = self.count(
            &join(path, "fall"),
            h.fall,
            (lo, hi, DEFAULT_HEALTH_FALL),
            what,
        );
        let (interval, timeout) = (interval?, timeout?);
        // Point at whichever of the two the file actually sets.
        let at = join(
            path,
            if h.timeout.is_some() || h.interval.is_none() {
                "timeout"
            } else {
                "interval"
            },
        );
        let (t, i) = (
            humantime::format_duration(timeout),
            humantime::format_duration(interval),
        );
        let msg = format_args!("timeout ({t}) must be shorter than interval ({i}), or a check would still be running when the next one starts; shorten timeout or lengthen interval");
        let ok = self.ensure(timeout < interval, &at, msg);
        let check = HealthCheck {
            path: check_path?,
            host: host?,
            expect_status: expect_status?,
            interval,
            timeout,
            rise: rise?,
            fall: fall?,
        };
        ok.then_some(check)
    }

    /// `expect_status`: every item a status code in range, none twice, the list not empty.
    fn statuses(&mut self, path: &str, list: &StatusList) -> Option<Vec<u16>> {
        if list.items.is_empty() {
            return self.bad(path, "is empty; list the statuses that mean healthy, e.g. `[200, 204]`, or omit expect_status to accept any 2xx");
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in list.items.iter().enumerate() {
            let at = if list.seq {
                format!("{path}[{i}]")
            } else {
                path.to_string()
            };
            let code = match item {
                StatusItem::Code(c) => Some(*c),
                StatusItem::Text(t) => t.trim().parse::<i64>().ok(),
            };
            let range = i64::from(MIN_HEALTH_STATUS)..=i64::from(MAX_HEALTH_STATUS);
            let status = match (code, item) {
                (Some(c), _) if range.contains(&c) => u16::try_from(c).ok(),
                (Some(c), _) => self.bad(&at, format_args!("{c} is not an HTTP status; give a code between {MIN_HEALTH_STATUS} and {MAX_HEALTH_STATUS}, e.g. 200")),
                (None, StatusItem::Text(t)) => self.bad(&at, format_args!("`{t}` is not a status code; list each code, e.g. `[200, 204]`, or omit expect_status to accept any 2xx")),
                (None, StatusItem::Code(_)) => None,
            };
            match status {
                Some(s) if out.contains(&s) => {
                    ok = self.ensure(false, &at, format_args!("{s} is listed twice; remove one"));
                }
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn passive(&mut self, path: &str, p: Option<&FilePassive>) -> Option<Passive> {
        let empty = FilePassive::default();
        let p = p.unwrap_or(&empty);
        let range = (0, MAX_PASSIVE_MAX_FAILS, DEFAULT_PASSIVE_MAX_FAILS);
        let what = format_args!(
            "max_fails must be between 0 and {MAX_PASSIVE_MAX_FAILS} (0 turns passive checks off)"
        );
        let max_fails = self.count(&join(path, "max_fails"), p.max_fails, range, what);
        let fail_timeout = self.timeout(
            &join(path, "fail_timeout"),
            p.fail_timeout.as_ref(),
            DEFAULT_PASSIVE_FAIL_TIMEOUT,
        );
        Some(Passive {
            max_fails: max_fails?,
            fail_timeout: fail_timeout?,
        })
    }

    /// `Some(None)`: no admin section; `None`: a problem was reported.
    fn admin(&mut self, a: Option<&FileAdmin>, listen: &[Listener]) -> Option<Option<Admin>> {
        let Some(a) = a else {
            return Some(None);
        };
        let token = match a.token_env.as_deref().map(str::trim) {
            None => Some(None),
            Some("") => self.bad("admin.token_env", "is empty; name the environment variable that holds the admin token, e.g. `TETHER_ADMIN_TOKEN`"),
            Some(var) => match (self.cx.env)(var) {
                None => self.bad("admin.token_env", format_args!("environment variable {var} is not set; export the admin token in it ({KEYGEN})")),
                Some(v) if v.trim().is_empty() => self.bad("admin.token_env", format_args!("environment variable {var} is empty; export the admin token in it ({KEYGEN})")),
                Some(v) => Some(Some(v.trim().to_string())),
            },
        };
        let Some(text) = &a.address else {
            let hint = "give the IP:PORT the admin API listens on, e.g. `127.0.0.1:9901`, or remove `admin` to run without it";
            return self.missing("admin", "address", hint);
        };
        let address = self.socket_addr("admin.address", text, true)?;
        let clash = listen.iter().find(|l| {
            let (x, y) = (l.address, address);
            x.port() == y.port()
                && y.port() != 0
                && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
        });
        if let Some(l) = clash {
            let msg = format_args!(
                "`{text}` overlaps the listen address `{}`; give the admin API a port of its own",
                l.address
            );
            return self.bad("admin.address", msg);
        }
        if a.token_env.is_none() && !address.ip().to_canonical().is_loopback() {
            return self.bad("admin.address", format_args!("`{text}` is not a loopback address, so anyone who can reach it could drain nodes and reload the config; add `token_env` naming an environment variable that holds a secret token ({KEYGEN}), or listen on 127.0.0.1"));
        }
        Some(Some(Admin {
            address,
            token: token?,
        }))
    }

    fn shutdown(&mut self, s: Option<&FileShutdown>) -> Option<Shutdown> {
        let empty = FileShutdown::default();
        let s = s.unwrap_or(&empty);
        let grace = self.span("shutdown.grace", s.grace.as_ref(), DEFAULT_SHUTDOWN_GRACE);
        let close_window = self.span(
            "shutdown.close_window",
            s.close_window.as_ref(),
            DEFAULT_SHUTDOWN_CLOSE_WINDOW,
        );
        Some(Shutdown {
            grace: grace?,
            close_window: close_window?,
        })
    }

    fn routes(&mut self, file: &FileConfig, names: &[String]) -> Vec<Route> {
        let Some(routes) = &file.routes else {
            return match names {
                [] => Vec::new(),
                [_] => vec![Route::new(DEFAULT_ROUTE_PREFIX, 0)],
                [first, ..] => {
                    let pos = self.cx.positions.key("upstreams");
                    self.at(pos, format!("routes: required when there are several upstreams; add e.g. `routes: [{{ path_prefix: /, upstream: {first} }}]`"));
                    Vec::new()
                }
            };
        };
        let msg = "is empty; add a route such as `- { path_prefix: /, upstream: NAME }`, or remove `routes` when there is one upstream";
        self.ensure(!routes.is_empty(), "routes", msg);
        let mut out = Vec::new();
        // (prefix, hosts) of every earlier route, for the duplicate check.
        let mut seen: Vec<(&str, Vec<HostPattern>)> = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let p = format!("routes[{i}]");
            let hosts = self.hosts(&p, r.hosts.as_ref());
            // Hosts that did not parse are already reported; do not guess at clashes.
            let clash = |s: &str| {
                hosts.as_ref().is_some_and(|hs| {
                    seen.iter().any(|(q, h)| {
                        *q == s
                            && (h.is_empty() && hs.is_empty() || h.iter().any(|x| hs.contains(x)))
                    })
                })
            };
            let prefix = match &r.path_prefix {
                None => self.missing(&p, "path_prefix", "give the path it matches, e.g. `/` or `/socket.io/`"),
                Some(s) if !s.starts_with('/') => self.bad(&join(&p, "path_prefix"), format_args!("`{s}` must start with `/`, e.g. `/{s}`")),
                Some(s) if clash(s) => {
                    self.bad(&join(&p, "path_prefix"), format_args!("`{s}` is already routed by an earlier route for the same hosts; each prefix may appear once per host"))
                }
                Some(s) => Some(s.clone()),
            };
            if let (Some(s), Some(hs)) = (&r.path_prefix, &hosts) {
                seen.push((s.as_str(), hs.clone()));
            }
            let upstream = match (&r.upstream, names) {
                (None, _) => {
                    self.missing(&p, "upstream", "name the upstream that serves this prefix")
                }
                (Some(u), _) if names.contains(u) => names.iter().position(|n| n == u),
                (Some(u), []) => self.bad(
                    &join(&p, "upstream"),
                    format_args!("no upstream named `{u}`; define it under `upstreams`"),
                ),
                (Some(u), _) => {
                    let msg = format!(
                        "no upstream named `{u}`; known upstreams: {}",
                        names.join(", ")
                    );
                    self.bad(&join(&p, "upstream"), msg)
                }
            };
            let websocket = self.websocket(&p, r.websocket.as_ref());
            if let (Some(hosts), Some(path_prefix), Some(upstream), Some(websocket)) =
                (hosts, prefix, upstream, websocket)
            {
                out.push(Route {
                    hosts,
                    path_prefix,
                    upstream,
                    websocket,
                });
            }
        }
        out
    }
}

impl Checker<'_> {
    fn limits(&mut self, l: Option<&FileLimits>) -> Option<Limits> {
        let Some(l) = l else {
            return Some(Limits::default());
        };
        let max_head = self.count(
            "limits.max_head_bytes",
            l.max_head_bytes,
            (1024, 1024 * 1024, DEFAULT_MAX_HEAD_BYTES),
            "a request head limit is between 1024 and 1048576 bytes",
        );
        let max_uri = self.count(
            "limits.max_uri_bytes",
            l.max_uri_bytes,
            (256, 1024 * 1024, DEFAULT_MAX_URI_BYTES),
            "a request target limit is between 256 and 1048576 bytes",
        );
        if let (Some(h), Some(u)) = (max_head, max_uri) {
            self.ensure(
                u <= h,
                "limits.max_uri_bytes",
                format_args!(
                    "{u} is larger than max_head_bytes ({h}); the target is part of the head"
                ),
            );
        }
        let head = self.timeout(
            "limits.head_timeout",
            l.head_timeout.as_ref(),
            DEFAULT_HEAD_TIMEOUT,
        );
        let keepalive = self.timeout(
            "limits.keepalive_timeout",
            l.keepalive_timeout.as_ref(),
            DEFAULT_KEEPALIVE_TIMEOUT,
        );
        let write = self.timeout(
            "limits.write_timeout",
            l.write_timeout.as_ref(),
            DEFAULT_WRITE_TIMEOUT,
        );
        let per_ip = self.count(
            "limits.max_connections_per_ip",
            l.max_connections_per_ip,
            (0, 1_000_000, DEFAULT_MAX_CONNECTIONS_PER_IP),
            "connections per client IP, 0 (no limit) or more",
        );
        Some(Limits {
            max_head_bytes: max_head? as usize,
            max_uri_bytes: max_uri? as usize,
            head_timeout: head?,
            keepalive_timeout: keepalive?,
            write_timeout: write?,
            max_connections_per_ip: per_ip?,
        })
    }

    fn trusted_proxies(&mut self, c: Option<&FileClientIp>) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for (i, text) in c
            .and_then(|c| c.trusted_proxies.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let t = text.trim();
            // A bare address means just that host.
            let parsed = t
                .parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => out.push(net),
                Err(_) => self.bad::<()>(
                    &format!("client_ip.trusted_proxies[{i}]"),
                    format_args!("`{t}` is not an address or CIDR block; write e.g. `10.0.0.0/8` or `192.0.2.7`"),
                ).unwrap_or_default(),
            }
        }
        out
    }

    /// A route's `hosts`: names or `*.domain` wildcards; omitted means every host.
    fn hosts(&mut self, route: &str, h: Option<&OneOrMany>) -> Option<Vec<HostPattern>> {
        let Some(h) = h else {
            return Some(Vec::new());
        };
        if h.items.is_empty() {
            return self.bad(
                &join(route, "hosts"),
                "is empty; list the host names this route serves, or omit `hosts` for every host",
            );
        }
        let mut out = Vec::new();
        for (p, text) in items(&join(route, "hosts"), h) {
            match HostPattern::parse(text) {
                Ok(pattern) if !out.contains(&Some(pattern.clone())) => out.push(Some(pattern)),
                Ok(_) => out.push(self.bad(&p, format_args!("`{text}` is listed twice"))),
                Err(e) => out.push(self.bad(&p, e)),
            }
        }
        out.into_iter().collect()
    }

    fn websocket(&mut self, route: &str, w: Option<&FileWebsocket>) -> Option<WebsocketPolicy> {
        let Some(w) = w else {
            return Some(WebsocketPolicy::default());
        };
        let mut ok = true;
        let mut allowed_origins = Vec::new();
        for (i, o) in w.allowed_origins.iter().flatten().enumerate() {
            match OriginPattern::parse(o) {
                Ok(p) => allowed_origins.push(p),
                Err(e) => {
                    self.bad::<()>(&format!("{route}.websocket.allowed_origins[{i}]"), e);
                    ok = false;
                }
            }
        }
        ok.then(|| WebsocketPolicy {
            allowed_origins,
            require_origin: w.require_origin.unwrap_or(false),
        })
    }
}

/// Each item of a string-or-list key with the path diagnostics use for it: `key[i]` when it
/// was written as a list, `key` itself when it was one string.
fn items<'a>(key: &'a str, list: &'a OneOrMany) -> impl Iterator<Item = (String, &'a str)> + 'a {
    list.items.iter().enumerate().map(move |(i, item)| {
        let path = if list.seq {
            format!("{key}[{i}]")
        } else {
            key.to_string()
        };
        (path, item.as_str())
    })
}

/// RFC 6265 `token`: visible ASCII except the HTTP separators.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

/// Cookie attribute values may not contain `;`, whitespace or control characters.
fn attribute_ok(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

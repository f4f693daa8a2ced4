//! Checks the loosely typed file and builds `model::Config`, collecting every problem with the
//! position of the key or value it concerns.
//!
//! This folder owns config validation. `mod.rs` holds the entry point and the `Checker` with
//! the helpers every section uses (reporting, durations, counts, addresses); each other file
//! checks one part of the file in an `impl Checker` block of its own.
//!
//! It may import only the rest of `config` (the file, the model, the defaults, duration
//! parsing, positions) and crates that read or check values (humantime, ipnet, rustls for the
//! certificates), and `certs` for an `acme:` listener's certificate slot (found in its storage,
//! never ordered here), never the engine, the proxy or anything else that runs: `tether check`
//! and a reload validate a config without serving it. The only outside things it reads are the files
//! a config names (certificates, keys, secrets) and the environment through [`Context`], so
//! tests can hand it both.

mod acme;
mod affinity;
mod clients;
mod health;
mod listen;
mod process;
mod routes;
mod upstream;

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

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
    let log = c.log(file.log.as_ref());
    // `None` always comes with a diagnostic; the check on `diags` covers the dropped upstreams
    // and routes, which have no `None` of their own.
    let (Some(admin), Some(shutdown), Some(limits), Some(log), true) =
        (admin, shutdown, limits, log, c.diags.is_empty())
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
        log,
    })
}

const KEYGEN: &str = "make one with `tether keygen`";

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

//! The YAML file as written: loose types and optional fields, so `validate/` can report
//! every problem in one run instead of stopping at the first.

use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct FileConfig {
    pub listen: Option<Vec<FileListener>>,
    pub upstreams: Option<Ordered<FileUpstream>>,
    pub routes: Option<Vec<FileRoute>>,
    pub admin: Option<FileAdmin>,
    pub shutdown: Option<FileShutdown>,
    pub client_ip: Option<FileClientIp>,
    pub limits: Option<FileLimits>,
    pub log: Option<FileLog>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileLog {
    pub format: Option<String>,
    pub access: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileLimits {
    pub max_head_bytes: Option<i64>,
    pub max_uri_bytes: Option<i64>,
    pub head_timeout: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub max_connections_per_ip: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileClientIp {
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileAdmin {
    pub address: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileShutdown {
    pub grace: Option<String>,
    pub close_window: Option<String>,
    pub upgrade_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileListener {
    pub address: Option<String>,
    pub tls: Option<FileTls>,
    pub proxy_protocol: Option<bool>,
    pub http2: Option<bool>,
    pub h2c: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub acme: Option<FileAcme>,
}

/// `tls.acme:` as written.
#[derive(Debug, Default, Deserialize)]
pub struct FileAcme {
    pub domains: Option<Vec<String>>,
    pub email: Option<String>,
    pub directory: Option<String>,
    pub storage: Option<String>,
    pub ca_roots: Option<String>,
    pub challenge: Option<String>,
    pub eab: Option<FileEab>,
}

/// `tls.acme.eab:` as written: External Account Binding (RFC 8555 §7.3.4).
#[derive(Debug, Default, Deserialize)]
pub struct FileEab {
    pub kid: Option<String>,
    pub hmac_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileUpstream {
    pub nodes: Option<Vec<FileNode>>,
    pub balance: Option<String>,
    pub affinity: Option<FileAffinity>,
    pub timeouts: Option<FileTimeouts>,
    pub health_check: Option<FileHealthCheck>,
    pub passive: Option<FilePassive>,
    pub slow_start: Option<String>,
    pub max_tunnels_per_node: Option<i64>,
    pub discover: Option<FileDiscover>,
    pub leave: Option<FileLeave>,
    pub rebalance: Option<FileRebalance>,
}

/// `leave:` as written: how a leaving node's tunnels are closed.
#[derive(Debug, Default, Deserialize)]
pub struct FileLeave {
    pub spread: Option<String>,
}

/// `rebalance:` as written.
#[derive(Debug, Default, Deserialize)]
pub struct FileRebalance {
    pub max_skew: Option<f64>,
    pub moves_per_second: Option<i64>,
}

/// A node's `drain:` as written.
#[derive(Debug, Default, Deserialize)]
pub struct FileDrain {
    pub close_after: Option<String>,
    pub spread: Option<String>,
}

/// `discover:` as written: nodes found by DNS.
#[derive(Debug, Default, Deserialize)]
pub struct FileDiscover {
    /// A name, or a list of names; each may carry its own `:PORT`.
    pub dns: Option<OneOrMany>,
    pub port: Option<i64>,
    pub refresh: Option<String>,
    pub resolver: Option<String>,
}

/// A string or a list of strings, as written (`dns: a.local` or `dns: [a.local, b.local]`).
#[derive(Debug, Default)]
pub struct OneOrMany {
    pub items: Vec<String>,
    /// Written as a list (items are then addressed as `key[i]`).
    pub seq: bool,
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany {
                    items: vec![v.to_string()],
                    seq: false,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(OneOrMany { items, seq: true })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct FileNode {
    pub id: Option<String>,
    pub address: Option<String>,
    /// Signed so that `-1` reaches validation and gets a range message rather than a type error.
    pub weight: Option<i64>,
    pub drain: Option<FileDrain>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileAffinity {
    pub mode: Option<String>,
    pub cookie: Option<FileCookie>,
    pub engineio: Option<bool>,
    /// `mode: key`: where the key is read (`query:NAME`, `header:NAME`, `cookie:NAME`).
    pub key: Option<String>,
    /// `mode: key`: how a request without the key is placed (`cookie`, `ip_hash`, `none`).
    pub fallback: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileCookie {
    pub name: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub max_age: Option<String>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    pub same_site: Option<String>,
    pub path: Option<String>,
    pub domain: Option<String>,
    pub previous_secrets_env: Option<Vec<String>>,
    pub previous_secret_files: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileTimeouts {
    pub connect: Option<String>,
    pub read: Option<String>,
    pub tunnel_idle: Option<String>,
    pub send: Option<String>,
    pub idle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileHealthCheck {
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<StatusList>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    /// Signed, like `weight`, so `0` and `-1` get a range message rather than a type error.
    pub rise: Option<i64>,
    pub fall: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FilePassive {
    pub max_fails: Option<i64>,
    pub fail_timeout: Option<String>,
}

/// `expect_status` as written: a list, or a single status for convenience. Items stay loose so
/// `2xx` or `-1` reach validation and get a message naming the item.
#[derive(Debug, Default)]
pub struct StatusList {
    pub items: Vec<StatusItem>,
    /// Written as a list (items are then addressed as `expect_status[i]`).
    pub seq: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusItem {
    Code(i64),
    /// A string (`"2xx"`) or a number too large for `i64`.
    Text(String),
}

const STATUS_EXPECTING: &str = "a status code such as 200, or a list of them such as [200, 204]";

struct ItemVisitor;

impl Visitor<'_> for ItemVisitor {
    type Value = StatusItem;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(STATUS_EXPECTING)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusItem, E> {
        Ok(StatusItem::Code(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusItem, E> {
        Ok(i64::try_from(v).map_or_else(|_| StatusItem::Text(v.to_string()), StatusItem::Code))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusItem, E> {
        Ok(StatusItem::Text(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for StatusItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ItemVisitor)
    }
}

impl<'de> Deserialize<'de> for StatusList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatusList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(STATUS_EXPECTING)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusList, E> {
                self.one(ItemVisitor.visit_i64(v)?)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusList, E> {
                self.one(ItemVisitor.visit_u64(v)?)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusList, E> {
                self.one(ItemVisitor.visit_str(v)?)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatusList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(StatusList { items, seq: true })
            }
        }
        impl V {
            fn one<E>(self, item: StatusItem) -> Result<StatusList, E> {
                Ok(StatusList {
                    items: vec![item],
                    seq: false,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct FileRoute {
    pub hosts: Option<OneOrMany>,
    pub path_prefix: Option<String>,
    pub upstream: Option<String>,
    pub websocket: Option<FileWebsocket>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileWebsocket {
    pub allowed_origins: Option<Vec<String>>,
    pub require_origin: Option<bool>,
    pub ping_interval: Option<String>,
    pub ping_timeout: Option<String>,
}

/// A YAML mapping kept in file order, duplicates included, so validation can name them.
#[derive(Debug, Default)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of upstream names to upstreams")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    out.push((key, map.next_value()?));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The keys accepted in the mapping reached by `keys` (the path's map keys, indices dropped),
/// for "expected one of" hints. Kept next to the structs so the two change together.
pub fn expected_keys(keys: &[&str]) -> &'static [&'static str] {
    match keys {
        [] => &[
            "listen",
            "upstreams",
            "routes",
            "admin",
            "shutdown",
            "client_ip",
            "limits",
            "log",
        ],
        ["log"] => &["format", "access"],
        ["client_ip"] => &["trusted_proxies"],
        ["limits"] => &[
            "max_head_bytes",
            "max_uri_bytes",
            "head_timeout",
            "keepalive_timeout",
            "body_timeout",
            "write_timeout",
            "max_connections_per_ip",
        ],
        ["listen"] => &["address", "tls", "proxy_protocol", "http2", "h2c"],
        ["listen", "tls"] => &["cert", "key", "acme"],
        ["listen", "tls", "acme"] => &[
            "domains",
            "email",
            "directory",
            "storage",
            "ca_roots",
            "challenge",
            "eab",
        ],
        ["listen", "tls", "acme", "eab"] => &["kid", "hmac_env"],
        ["admin"] => &["address", "token_env"],
        ["shutdown"] => &["grace", "close_window", "upgrade_timeout"],
        ["upstreams", _] => &[
            "nodes",
            "balance",
            "affinity",
            "timeouts",
            "health_check",
            "passive",
            "slow_start",
            "max_tunnels_per_node",
            "discover",
            "leave",
            "rebalance",
        ],
        ["upstreams", _, "leave"] => &["spread"],
        ["upstreams", _, "rebalance"] => &["max_skew", "moves_per_second"],
        ["upstreams", _, "nodes", "drain"] => &["close_after", "spread"],
        ["upstreams", _, "discover"] => &["dns", "port", "refresh", "resolver"],
        ["upstreams", _, "nodes"] => &["id", "address", "weight", "drain"],
        ["upstreams", _, "affinity"] => &["mode", "cookie", "engineio", "key", "fallback"],
        ["upstreams", _, "affinity", "cookie"] => &[
            "name",
            "secret_env",
            "secret_file",
            "max_age",
            "secure",
            "http_only",
            "same_site",
            "path",
            "domain",
            "previous_secrets_env",
            "previous_secret_files",
        ],
        ["upstreams", _, "timeouts"] => &["connect", "read", "send", "tunnel_idle", "idle"],
        ["upstreams", _, "health_check"] => &[
            "path",
            "host",
            "expect_status",
            "interval",
            "timeout",
            "rise",
            "fall",
        ],
        ["upstreams", _, "passive"] => &["max_fails", "fail_timeout"],
        ["routes"] => &["hosts", "path_prefix", "upstream", "websocket"],
        ["routes", "websocket"] => &[
            "allowed_origins",
            "require_origin",
            "ping_interval",
            "ping_timeout",
        ],
        _ => &[],
    }
}

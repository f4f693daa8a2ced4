//! The YAML file as written: loose types and optional fields, so `validate.rs` can report
//! every problem in one run instead of stopping at the first.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct FileConfig {
    pub listen: Option<Vec<FileListener>>,
    pub upstreams: Option<Ordered<FileUpstream>>,
    pub routes: Option<Vec<FileRoute>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileListener {
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileUpstream {
    pub nodes: Option<Vec<FileNode>>,
    pub balance: Option<String>,
    pub affinity: Option<FileAffinity>,
    pub timeouts: Option<FileTimeouts>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileNode {
    pub id: Option<String>,
    pub address: Option<String>,
    /// Signed so that `-1` reaches validation and gets a range message rather than a type error.
    pub weight: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileAffinity {
    pub mode: Option<String>,
    pub cookie: Option<FileCookie>,
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
}

#[derive(Debug, Default, Deserialize)]
pub struct FileTimeouts {
    pub connect: Option<String>,
    pub read: Option<String>,
    pub tunnel_idle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileRoute {
    pub path_prefix: Option<String>,
    pub upstream: Option<String>,
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
        [] => &["listen", "upstreams", "routes"],
        ["listen"] => &["address"],
        ["upstreams", _] => &["nodes", "balance", "affinity", "timeouts"],
        ["upstreams", _, "nodes"] => &["id", "address", "weight"],
        ["upstreams", _, "affinity"] => &["mode", "cookie"],
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
        ],
        ["upstreams", _, "timeouts"] => &["connect", "read", "tunnel_idle"],
        ["routes"] => &["path_prefix", "upstream"],
        _ => &[],
    }
}

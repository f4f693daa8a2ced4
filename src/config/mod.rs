//! Loading tether's YAML config: parse, report every problem with its position, build `model::Config`.
//!
//! `file.rs` mirrors the YAML loosely, `validate/` checks it, `position.rs` finds where things
//! are written, and `defaults.rs` holds every default.

pub mod defaults;
pub mod duration;
mod file;
pub mod model;
mod position;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;

use position::Positions;

/// One problem in a config file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Everything wrong with a config file; displays as `PATH:LINE:COL: message` lines in file order.
#[derive(Debug, thiserror::Error)]
#[error("{}", Render(self))]
pub struct ConfigError {
    pub path: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
}

struct Render<'a>(&'a ConfigError);

impl fmt::Display for Render<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.diagnostics.iter().enumerate() {
            let sep = if i == 0 { "" } else { "\n" };
            write!(
                f,
                "{sep}{}:{}:{}: {}",
                self.0.path.display(),
                d.line,
                d.col,
                d.message
            )?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn new(path: &Path, mut diagnostics: Vec<Diagnostic>) -> ConfigError {
        // Stable, so problems at the same spot keep the order they were found in.
        diagnostics.sort_by_key(|d| (d.line, d.col));
        diagnostics.dedup();
        ConfigError {
            path: path.to_path_buf(),
            diagnostics,
        }
    }
}

/// Load and validate a config file; environment variables are read from the process.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let message = format!("cannot read the config file: {e}");
        ConfigError::new(
            path,
            vec![Diagnostic {
                line: 1,
                col: 1,
                message,
            }],
        )
    })?;
    parse(path, &text, &|name| std::env::var(name).ok())
}

/// The same from text, with the env lookup injected (tests). `path` is used in messages and to
/// resolve relative `secret_file` paths (relative to the config file's directory).
pub fn parse(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let (positions, well_formed) = Positions::index(text);
    let mut diags = Vec::new();
    let file: file::FileConfig = if text.lines().all(blank_or_comment) {
        // serde_yaml refuses an empty document; treat it as an empty mapping so the
        // missing-key messages explain what to write.
        file::FileConfig::default()
    } else {
        let de = serde_yaml::Deserializer::from_str(text);
        let parsed = serde_ignored::deserialize(de, |p| {
            let (path, keys) = ignored_path(&p);
            diags.push(unknown_key(&positions, &path, &keys));
        });
        match parsed {
            Ok(f) => f,
            Err(e) => return Err(ConfigError::new(path, vec![yaml_error(&e, well_formed)])),
        }
    };
    let cx = validate::Context {
        positions: &positions,
        source: path,
        env,
    };
    match validate::validate(&file, &cx) {
        Ok(config) if diags.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError::new(path, diags)),
        Err(more) => {
            diags.extend(more);
            Err(ConfigError::new(path, diags))
        }
    }
}

fn blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#') || t == "---"
}

/// Renders serde_ignored's path as `a.b[0].c` and collects its map keys (indices dropped).
fn ignored_path(p: &serde_ignored::Path) -> (String, Vec<String>) {
    use serde_ignored::Path as P;
    match p {
        P::Root => (String::new(), Vec::new()),
        P::Seq { parent, index } => {
            let (s, keys) = ignored_path(parent);
            (format!("{s}[{index}]"), keys)
        }
        P::Map { parent, key } => {
            let (s, mut keys) = ignored_path(parent);
            keys.push(key.clone());
            (
                if s.is_empty() {
                    key.clone()
                } else {
                    format!("{s}.{key}")
                },
                keys,
            )
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

fn unknown_key(positions: &Positions, path: &str, keys: &[String]) -> Diagnostic {
    let (key, parents) = keys
        .split_last()
        .map_or(("", keys), |(k, rest)| (k.as_str(), rest));
    let parents: Vec<&str> = parents.iter().map(String::as_str).collect();
    let parent = path.strip_suffix(key).unwrap_or("").trim_end_matches('.');
    let place = if parent.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in {parent}")
    };
    let expected = file::expected_keys(&parents);
    let message = if expected.is_empty() {
        format!("unknown key `{key}` {place}")
    } else {
        format!(
            "unknown key `{key}` {place}; expected one of: {}",
            expected.join(", ")
        )
    };
    let pos = positions.key(path);
    Diagnostic {
        line: pos.line,
        col: pos.col,
        message,
    }
}

/// A syntax or type error serde_yaml could not get past, at its own location.
fn yaml_error(e: &serde_yaml::Error, well_formed: bool) -> Diagnostic {
    let mut message = e.to_string();
    let (line, col) = match e.location() {
        Some(l) => {
            message = message.replacen(
                &format!(" at line {} column {}", l.line(), l.column()),
                "",
                1,
            );
            (l.line(), l.column())
        }
        None => (1, 1),
    };
    // Derived structs describe themselves by their Rust names; the reader knows YAML mappings.
    if let Some(i) = message.find("expected struct File") {
        message.replace_range(i.., "expected a mapping");
    }
    if !well_formed {
        message = format!("invalid YAML: {message}");
    }
    Diagnostic { line, col, message }
}

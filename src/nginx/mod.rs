//! `tether import-nginx`: an nginx config in, a tether config out.
//!
//! `parse.rs` reads nginx's syntax (includes expanded, every directive with its file and line),
//! `translate.rs` maps the sticky subset into `plan.rs`'s model, with one file per part:
//! `blocks.rs` the http, server and location levels (locations with `proxy_pass`, inherited
//! proxy timeouts and certificates), `vhosts.rs` the listens and server names, `client.rs` the
//! client limits and `real_ip`, `proxy_common.rs` the proxy directives any level may hold, and
//! `upstream.rs` the upstream blocks (`ip_hash`, `hash $remote_addr`, `least_conn`,
//! `sticky cookie`, server parameters); `syntax.rs` reads nginx's values (times, sizes,
//! addresses), `reasons.rs` says why a directive has no equivalent, and `emit.rs` writes the
//! plan as commented YAML. Whatever cannot be translated is kept as a
//! `# not translated: DIRECTIVE (file:line): why` line, so nothing is dropped silently. Pure:
//! it reads the files it is given and nothing else (no DNS, no clock), so the same input always
//! gives the same output.
//!
//! From the rest of tether it may import only `config` (its defaults and host patterns, so what
//! it writes is what tether would accept), never the engine, the proxy or anything that runs.

mod blocks;
mod client;
pub(crate) mod emit;
pub mod parse;
mod plan;
mod proxy_common;
mod reasons;
mod syntax;
mod translate;
mod translator;
mod upstream;
mod vhosts;

use std::path::Path;

pub use parse::SyntaxError;

/// Why a config could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// nginx would refuse it too: `file:line: message`.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// It parses, but holds nothing tether can proxy.
    #[error("{0}")]
    Nothing(String),
}

/// Translate the nginx config at `path` (and what it includes) into tether YAML.
pub fn import(path: &Path) -> Result<String, ImportError> {
    let tree = parse::parse_file(path)?;
    let plan = translate::translate(&tree).map_err(ImportError::Nothing)?;
    Ok(emit::emit(&plan))
}

#[cfg(test)]
mod tests;

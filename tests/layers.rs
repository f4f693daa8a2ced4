//! The layering ARCHITECTURE.md promises, checked on the source: every top-level module imports
//! only from the layers below it, and the import graph between top-level modules has no cycle.
//!
//! Run alone with `cargo test --test layers`. It reads `src/` as text: a `crate::NAME` path
//! outside a comment is an import of top-level module `NAME`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and what it may import (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    // Pure cores.
    ("config", &[]),
    ("affinity", &["config"]),
    ("nginx", &["config"]),
    // The snapshot a request reads, and the request policy.
    ("runtime", &["config", "affinity"]),
    // Sockets, and what changes the snapshot: side by side, neither imports the other.
    ("engine", &["config", "runtime"]),
    ("control", &["config", "runtime"]),
    // The running process.
    ("server", &["config", "runtime", "engine", "control"]),
    // Tools on top.
    ("demo", &[]),
    ("load", &["config", "affinity", "runtime", "engine", "demo"]),
    (
        "cli",
        &[
            "config", "affinity", "nginx", "runtime", "engine", "control", "server", "demo", "load",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`None` for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Top-level modules named by `crate::NAME` in `text`, comments skipped.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(imports(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

#[test]
fn every_module_imports_only_from_the_layers_below_it() {
    let graph = graph();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for (module, deps) in &graph {
        let Some(ok) = allowed.get(module.as_str()) else {
            problems.push(format!(
                "{module}: a top-level module with no layer in tests/layers.rs"
            ));
            continue;
        };
        for dep in deps {
            if !ok.contains(&dep.as_str()) {
                problems.push(format!("{module} imports {dep}, which is not below it"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_top_level_import_graph_has_no_cycle() {
    let graph = graph();
    // Depth-first search with colours: grey on the stack, black done.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(1) => {
                let start = path.iter().position(|p| p == m).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for dep in graph.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut state, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_imports_and_skips_comments() {
    let text = "use crate::runtime::Shared;\n//! see crate::control\n/// [`crate::engine`]\nlet x = crate::config::load(p);";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["config", "runtime"]);
}

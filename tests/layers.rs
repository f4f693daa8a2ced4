//! The layering ARCHITECTURE.md promises, checked on the source: every top-level module imports
//! only from the layers below it, the import graph between top-level modules has no cycle, and
//! inside every folder no two files import each other, directly or round a loop.
//!
//! Run alone with `cargo test --test layers`. It reads `src/` as text: a `crate::NAME` path
//! outside a comment is an import of top-level module `NAME`; inside a folder, every `crate::`,
//! `super::` and `self::` path (use trees expanded) is resolved to the file it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and what it may import (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    // Pure cores.
    ("certs", &[]),
    ("config", &["certs"]),
    ("affinity", &["config"]),
    ("nginx", &["config"]),
    ("http1", &[]),
    ("ws", &[]),
    ("h2stream", &[]),
    // The snapshot a request reads, and the request policy.
    ("runtime", &["config", "affinity", "ws"]),
    // Sockets, and what changes the snapshot: side by side, neither imports the other.
    (
        "engine",
        &["config", "certs", "runtime", "http1", "ws", "h2stream"],
    ),
    ("control", &["config", "certs", "runtime", "ws"]),
    // The running process.
    ("server", &["config", "runtime", "engine", "control"]),
    // Tools on top.
    ("demo", &[]),
    (
        "load",
        &[
            "config", "affinity", "runtime", "http1", "ws", "h2stream", "demo",
        ],
    ),
    (
        "cli",
        &[
            "certs", "config", "affinity", "nginx", "http1", "ws", "h2stream", "runtime", "engine",
            "control", "server", "demo", "load",
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

// ---- Files inside one folder: no cycle between them either. ----

/// A module path (`["engine", "exchange"]`) for every file under `src/`, with its text.
fn modules() -> Vec<(Vec<String>, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let mut path: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let last = path.pop().expect("a file name");
        let stem = last.strip_suffix(".rs").unwrap_or(&last).to_string();
        if stem != "mod" && !(path.is_empty() && (stem == "lib" || stem == "main")) {
            path.push(stem);
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        out.push((path, text));
    }
    out
}

/// The text without comments, string and character literals (their insides blanked), so a
/// path inside a doc comment or a message is not an import.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            // A raw string's `r#"` prefix was already copied; skip to the closing quote.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && (b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\')) {
            // A character literal ('x' or '\n'); lifetimes ('a) are left alone.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Every path a file names that starts with `crate`, `super` or `self`, `use` trees expanded:
/// `use super::{a, b::{c, d}}` gives `super::a`, `super::b::c`, `super::b::d`.
fn paths(text: &str) -> Vec<Vec<String>> {
    let code = code_only(text);
    // Tokens: identifiers, `::`, `{`, `}`, `,`, `;`, and anything else as a separator.
    let mut tokens: Vec<String> = Vec::new();
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            tokens.push(code[start..i].to_string());
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            tokens.push("::".into());
            i += 2;
        } else if matches!(c, b'{' | b'}' | b',' | b';') {
            tokens.push((c as char).to_string());
            i += 1;
        } else {
            if !c.is_ascii_whitespace() {
                tokens.push("#".into());
            }
            i += 1;
        }
    }
    let mut out = Vec::new();
    let mut t = 0;
    while t < tokens.len() {
        let root = tokens[t].as_str();
        let preceded_by_sep = t > 0 && tokens[t - 1] == "::";
        if matches!(root, "crate" | "super" | "self") && !preceded_by_sep {
            let mut prefix = vec![root.to_string()];
            t += 1;
            expand(&tokens, &mut t, &mut prefix, &mut out);
        } else {
            t += 1;
        }
    }
    out
}

/// Expand the path (or use tree) starting at `tokens[*t]` after `prefix`.
fn expand(tokens: &[String], t: &mut usize, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let depth = prefix.len();
    loop {
        if tokens.get(*t).map(String::as_str) != Some("::") {
            out.push(prefix.clone());
            break;
        }
        *t += 1;
        match tokens.get(*t).map(String::as_str) {
            Some("{") => {
                *t += 1;
                loop {
                    match tokens.get(*t).map(String::as_str) {
                        Some("}") => {
                            *t += 1;
                            break;
                        }
                        Some(",") => *t += 1,
                        Some(name) if is_ident(name) => {
                            let mut inner = prefix.clone();
                            if name != "self" {
                                inner.push(name.to_string());
                            }
                            *t += 1;
                            expand(tokens, t, &mut inner, out);
                            // Skip `as alias`.
                            while tokens
                                .get(*t)
                                .is_some_and(|s| s != "," && s != "}" && s != ";")
                            {
                                *t += 1;
                            }
                        }
                        _ => {
                            *t += 1;
                            if *t >= tokens.len() {
                                break;
                            }
                        }
                    }
                }
                break;
            }
            Some(name) if is_ident(name) => {
                prefix.push(name.to_string());
                *t += 1;
            }
            _ => {
                out.push(prefix.clone());
                break;
            }
        }
    }
    prefix.truncate(depth);
}

fn is_ident(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !s.is_empty()
}

/// `path` as named in the file of module `module`, made absolute (`["engine", "forward", ..]`):
/// `super` is relative to the file's module (a `mod.rs` file's module is its folder).
fn absolute(module: &[String], path: &[String]) -> Vec<String> {
    let mut base: Vec<String> = match path[0].as_str() {
        "crate" => Vec::new(),
        _ => module.to_vec(),
    };
    let mut rest = &path[1..];
    if path[0] == "super" {
        base.pop();
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    base
}

/// For every folder, the graph between its direct children (files or sub-folders, its own
/// `mod.rs` left out: a folder's root declares its children and they may use what it defines).
fn folder_graphs() -> BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> {
    let modules = modules();
    let known: BTreeSet<Vec<String>> = modules.iter().map(|(m, _)| m.clone()).collect();
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, text) in &modules {
        for path in paths(text) {
            let target = absolute(module, &path);
            // The longest prefix that is a module file.
            let Some(len) = (1..=target.len())
                .rev()
                .find(|n| known.contains(&target[..*n]))
            else {
                continue;
            };
            let target = &target[..len];
            // The folder both sit in, and the child of it each belongs to.
            let common = module
                .iter()
                .zip(target)
                .take_while(|(a, b)| a == b)
                .count();
            if common >= module.len() || common >= target.len() {
                continue; // one contains the other (a module and its own parent or child)
            }
            let folder = module[..common].to_vec();
            let (from, to) = (module[common].clone(), target[common].clone());
            graphs
                .entry(folder)
                .or_default()
                .entry(from)
                .or_default()
                .insert(to);
        }
    }
    graphs
}

/// Every group of files that import each other round a loop (the strongly connected
/// components with more than one file), each sorted.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for dep in graph.get(&m).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
        seen
    };
    let mut groups: BTreeSet<Vec<String>> = BTreeSet::new();
    for m in graph.keys() {
        let from_m = reach(m);
        if !from_m.contains(m) {
            continue;
        }
        let group: Vec<String> = from_m
            .iter()
            .filter(|other| reach(other).contains(m))
            .cloned()
            .collect();
        groups.insert(group);
    }
    groups.into_iter().collect()
}

/// A cycle in `graph`, if it has one, as the list of nodes round it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
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
        if let Some(cycle) = visit(m, graph, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn no_two_files_in_a_folder_import_each_other_even_round_a_loop() {
    let mut problems = Vec::new();
    for (folder, graph) in folder_graphs() {
        if folder.is_empty() {
            continue; // the top level: checked by the two tests above
        }
        if let Some(cycle) = find_cycle(&graph) {
            let groups: Vec<String> = cycles(&graph)
                .iter()
                .map(|g| format!("{{{}}}", g.join(", ")))
                .collect();
            problems.push(format!(
                "src/{}/: {} (files in a loop: {})",
                folder.join("/"),
                cycle.join(" -> "),
                groups.join(" ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles between files of one folder:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_file_checker_expands_use_trees_and_resolves_super() {
    let text = "use super::{conn::{self, Conn}, forward as f, Limits};\n\
                // use super::exchange;\n\
                fn x() { let s = \"super::tunnel\"; crate::runtime::failure::render(); super::pool::take(a); }";
    let found: Vec<String> = paths(text).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "super::conn",
            "super::conn::Conn",
            "super::forward",
            "super::Limits",
            "crate::runtime::failure::render",
            "super::pool::take"
        ]
    );
    let module = ["engine".to_string(), "exchange".to_string()];
    let abs = absolute(&module, &["super".into(), "forward".into(), "x".into()]);
    assert_eq!(abs, ["engine", "forward", "x"]);
    // A cycle is found, and a chain is not one.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert!(find_cycle(&g).is_none());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(cycles(&g), [["a", "b", "c"]]);
}

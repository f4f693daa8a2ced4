//! Golden tests: every `tests/data/nginx/CASE/nginx.conf` must translate to exactly
//! `CASE/expected.yaml`, which must pass `tether check`; every `errors/X.conf` must fail with
//! exactly `errors/X.expected`. `TETHER_BLESS=1` rewrites the expected files after review.

use super::*;
use std::path::PathBuf;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nginx")
}

fn bless() -> bool {
    std::env::var("TETHER_BLESS").is_ok_and(|v| v == "1")
}

/// Compare (or, blessing, write) `expected` against `got`; a mismatch is returned as text.
fn check(expected: &Path, got: &str) -> Option<String> {
    if bless() {
        std::fs::write(expected, got).expect("write expected file");
        return None;
    }
    let want = std::fs::read_to_string(expected).unwrap_or_default();
    (want != got).then(|| {
        format!(
            "{}:\n--- expected\n{want}\n--- got\n{got}",
            expected.display()
        )
    })
}

#[test]
fn every_case_translates_to_its_expected_yaml_and_that_passes_tether_check() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(data())
        .expect("tests/data/nginx")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.join("nginx.conf").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 12,
        "a dozen cases at least, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let yaml = match import(&case.join("nginx.conf")) {
            Ok(y) => y,
            Err(e) => {
                failures.push(format!("{}: {e}", case.display()));
                continue;
            }
        };
        let expected = case.join("expected.yaml");
        failures.extend(check(&expected, &yaml));
        // Beside nginx.conf, as the header tells users to keep it (relative cert paths).
        let secret = |name: &str| (name == "TETHER_SECRET").then(|| "s".repeat(32));
        if let Err(e) = crate::config::parse(&expected, &yaml, &secret) {
            failures.push(format!(
                "{} does not pass tether check:\n{e}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn syntax_errors_name_the_file_and_line_nginx_reports() {
    let dir = data().join("errors");
    let mut confs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data/nginx/errors")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    confs.sort();
    assert!(!confs.is_empty());
    let mut failures = Vec::new();
    for conf in &confs {
        match import(conf) {
            Ok(_) => failures.push(format!("{} imported without error", conf.display())),
            Err(e) => failures.extend(check(&conf.with_extension("expected"), &format!("{e}\n"))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_config_with_nothing_to_proxy_is_an_error_not_an_empty_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, "http { server { listen 80; root /srv; } }\n").unwrap();
    let e = import(&path).unwrap_err();
    assert!(matches!(e, ImportError::Nothing(_)), "{e}");
    assert!(
        e.to_string().contains("no `location` with a `proxy_pass`"),
        "{e}"
    );
}

/// A quoted nginx word may hold a newline; in a comment it must not start YAML of its own.
#[test]
fn words_with_newlines_stay_inside_their_comments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.conf");
    let text = "http { upstream u { ip_hash; server 10.0.0.1:80 \"x\nlimits: { max_head_bytes: 1 }\"; }\n server { listen 80; server_name \"a\nb\"; location / { proxy_pass http://u; add_header X \"1\nrouters: []\"; } } }\n";
    std::fs::write(&path, text).unwrap();
    let yaml = import(&path).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    assert!(doc.get("limits").is_none(), "{yaml}");
    assert!(doc.get("routers").is_none(), "{yaml}");
    let secret = |_: &str| None;
    assert!(
        crate::config::parse(&path, &yaml, &secret).is_ok(),
        "{yaml}"
    );
}

#[test]
fn hostile_input_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.conf");
    for text in [
        "http { upstream { server; } server { location { proxy_pass; } } }",
        "http { upstream u { server [::1; server :; server a:b; hash; sticky; } server { listen [::; listen ssl; location / { proxy_pass http://u; } } }",
        "http { server { location = { proxy_pass http://; } location / { proxy_pass http://[::1]:99999; } } }",
        "http { server { listen 80; location / { proxy_pass http://a:1/x; proxy_read_timeout x; } } }",
        "include /;",
        "http { include *; }",
    ] {
        std::fs::write(&path, text).unwrap();
        let _ = import(&path);
    }
}

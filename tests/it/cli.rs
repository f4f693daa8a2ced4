//! The command line: `tether check` diagnostics (golden files), `keygen`, shipped configs.

use crate::support::proxy::{tether_bin, SECRET};
use base64::Engine;
use std::path::Path;
use std::process::Command;

fn check(path: &Path) -> std::process::Output {
    Command::new(tether_bin())
        .args(["check", "--config"])
        .arg(path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        // The same environment as the library's golden test (src/config/tests.rs).
        .env("TETHER_SECRET", "0123456789abcdef0123456789abcdef")
        .env("TETHER_ADMIN_TOKEN", " admin-token-value\n")
        .env("TETHER_EMPTY", "  ")
        .output()
        .expect("run tether check")
}

/// Every `tests/data/check/X.yaml` gives exactly `X.expected` on stderr (empty: valid, exit 0).
#[test]
fn check_reports_every_problem_as_golden_files_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/check");
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        cases += 1;
        let rel = Path::new("tests/data/check").join(path.file_name().unwrap());
        let out = check(&rel);
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end(), expected.trim_end(), "{}", rel.display());
        if expected.trim().is_empty() {
            assert!(out.status.success(), "{}", rel.display());
            assert!(String::from_utf8_lossy(&out.stdout).contains(": ok:"));
        } else {
            assert_eq!(out.status.code(), Some(2), "{}", rel.display());
            for line in stderr.lines() {
                let mut parts = line.splitn(4, ':');
                let (file, l, c) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                assert_eq!(file, rel.to_str().unwrap(), "{line}");
                assert!(
                    l.parse::<usize>().is_ok() && c.parse::<usize>().is_ok(),
                    "no line:col in {line}"
                );
            }
        }
    }
    assert!(cases >= 10, "only {cases} golden cases");
}

#[test]
fn every_shipped_example_config_passes_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            n += 1;
            let out = Command::new(tether_bin())
                .args(["check", "--config"])
                .arg(&path)
                .env("TETHER_SECRET", SECRET)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(n >= 2);
}

#[test]
fn keygen_prints_a_fresh_32_byte_secret() {
    let run = || {
        let out = Command::new(tether_bin()).arg("keygen").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (a, b) = (run(), run());
    assert_ne!(a, b);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap()
            .len(),
        32
    );
}

#[test]
fn running_with_a_bad_config_exits_2_with_the_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "listen: []\nupstreams: {}\nbogus: 1\n").unwrap();
    let out = Command::new(tether_bin())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "{err}");
    assert!(err.contains(&format!("{}:3:1:", path.display())), "{err}");
}

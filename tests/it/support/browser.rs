//! One run of a script under `tests/browser/` (puppeteer-core driving Debian's `/usr/bin/chromium`,
//! pinned by `tests/browser/package-lock.json`): the plan goes in as JSON on the command line,
//! messages come back one JSON object per line. The script prints `{"chromium_pid": N}` as soon as
//! Chromium runs (killed here by that PID if it outlives the test), may `{"ask": ...}` the test for
//! something only it can do (answered on stdin), and ends with `{"results": [...], ...}`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where the scripts put their screenshots.
pub fn shots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp")
}

/// Fails with what to install when Chromium or puppeteer-core is missing.
pub fn require() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "Chromium is not installed: run `make test` as root, or `sudo apt-get install chromium`"
    );
    assert!(
        dir().join("node_modules/puppeteer-core").exists(),
        "puppeteer-core is not installed: run `make test` (or `npm ci --prefix tests/browser`)"
    );
}

/// A script running; Chromium is killed by PID on drop if it is still there.
pub struct Run {
    script: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    chromium: Option<u32>,
    deadline: tokio::time::Instant,
}

impl Run {
    /// Starts `node SCRIPT PLAN`; the script ends by itself after `plan.limit_ms`, and this side
    /// gives up `grace` after that.
    pub fn start(script: &'static str, plan: &Value, grace: Duration) -> Run {
        let limit = Duration::from_millis(plan["limit_ms"].as_u64().expect("plan.limit_ms"));
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .arg(plan.to_string())
            .current_dir(dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node is needed for the browser tests");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Run {
            script,
            child,
            stdin,
            lines,
            chromium: None,
            deadline: tokio::time::Instant::now() + limit + grace,
        }
    }

    /// The script's next message other than Chromium's PID: an ask, or the results (the last).
    pub async fn next(&mut self) -> Value {
        loop {
            let line = match tokio::time::timeout_at(self.deadline, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) | Ok(Err(_)) => panic!("{} ended without results", self.script),
                Err(_) => {
                    let _ = self.child.kill().await;
                    panic!("{} did not finish", self.script);
                }
            };
            let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                eprintln!("[{}] {line}", self.script);
                continue;
            };
            match msg["chromium_pid"].as_u64() {
                Some(pid) => self.chromium = Some(pid as u32),
                None => return msg,
            }
        }
    }

    pub async fn answer(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("answer the script");
    }

    /// Waits for the script to exit (after its results).
    pub async fn end(mut self) {
        let _ = self.child.wait().await;
    }

    /// Waits for the results, answering nothing (for scripts that ask nothing).
    pub async fn results(mut self) -> Value {
        let msg = self.next().await;
        assert!(msg.get("results").is_some(), "unexpected message {msg}");
        let _ = self.child.wait().await;
        msg
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(pid) = self.chromium.take() {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// Prints every scenario, then fails if any failed, if fewer than `at_least` ran, or if a page
/// logged an error it did not expect.
pub fn assert_passed(report: &Value, at_least: usize) {
    let results = report["results"].as_array().cloned().unwrap_or_default();
    for r in &results {
        eprintln!(
            "  [{}] {} ({} ms): {}",
            if r["ok"] == true { "ok" } else { "FAILED" },
            r["name"].as_str().unwrap_or(""),
            r["ms"],
            r["detail"].as_str().unwrap_or("")
        );
    }
    for e in report["expected_errors"].as_array().into_iter().flatten() {
        eprintln!("  (expected) {e}");
    }
    let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(results.len() >= at_least, "scenarios missing: {report:#}");
    assert!(failed.is_empty(), "browser scenarios failed: {failed:#?}");
    let errors = report["console_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

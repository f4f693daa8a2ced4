//! The programs the targets run: nginx and HAProxy found on PATH or installed with apt-get when
//! missing and we are root, the baseline tether binary, and their versions.

use crate::procs::Proc;
use crate::targets::{tether_bin, Kind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(1).map(|u| u == "0")
        })
        .unwrap_or(false)
}

/// Run a command to its end, at most `limit`; true if it exited 0.
fn run_bounded(name: &str, cmd: &mut Command, limit: Duration) -> bool {
    match Proc::spawn(name, cmd) {
        Ok(mut p) => {
            let ok = p
                .wait_until(Instant::now() + limit)
                .is_some_and(|s| s.success());
            if !ok {
                eprintln!("compare: {name} failed:\n{}", p.log_tail());
            }
            ok
        }
        Err(e) => {
            eprintln!("compare: {e}");
            false
        }
    }
}

/// `binary` from PATH, else installed from Debian package `package` when we are root (services
/// kept from starting by a temporary policy-rc.d), else None with a line saying why.
fn ensure_tool(binary: &str, package: &str) -> Option<PathBuf> {
    if let Some(p) = find_binary(binary) {
        return Some(p);
    }
    if !is_root() || find_binary("apt-get").is_none() {
        eprintln!(
            "compare: {binary} is not installed and this is not a root Debian shell: its rows \
             show n/a (install it with: sudo apt-get install {package})"
        );
        return None;
    }
    eprintln!("compare: installing {package} with apt-get (it is run in the foreground by this bench, never as a service)");
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists()
        && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok()
        && Command::new("chmod")
            .args(["755", "/usr/sbin/policy-rc.d"])
            .status()
            .is_ok_and(|s| s.success());
    let install = |name: &str| {
        run_bounded(
            name,
            Command::new("apt-get")
                .args(["install", "-y", "-qq", package])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            Duration::from_secs(300),
        )
    };
    let ok = install("apt-get install")
        || (run_bounded(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
            Duration::from_secs(300),
        ) && install("apt-get install"));
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    match find_binary(binary) {
        Some(p) if ok => Some(p),
        _ => {
            eprintln!("compare: could not install {package}: its rows show n/a");
            None
        }
    }
}

/// The first line a program prints for `flag` (on stdout or stderr).
fn version_line(bin: &Path, flag: &str) -> String {
    Command::new(bin)
        .arg(flag)
        .output()
        .ok()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

/// The last-modified time of a file, in UTC to the second.
fn modified(path: &Path) -> String {
    Command::new("date")
        .arg("-u")
        .arg("-r")
        .arg(path)
        .arg("+%Y-%m-%d %H:%M:%S UTC")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
}

pub struct Tools {
    pub nginx: Option<PathBuf>,
    pub haproxy: Option<PathBuf>,
    /// nghttp2's `h2load`, scenario E's HTTP/2 load generator.
    pub h2load: Option<PathBuf>,
    /// The other tether binary of `--baseline`, which the `tether-base` target runs.
    pub baseline: Option<PathBuf>,
    /// `--access-log`: tether-cookie and tether-iphash log every request.
    pub access_log: bool,
}

impl Tools {
    pub fn find(kinds: &[Kind], baseline: Option<PathBuf>, access_log: bool, http2: bool) -> Tools {
        let want = |k| kinds.contains(&k);
        Tools {
            nginx: want(Kind::Nginx)
                .then(|| ensure_tool("nginx", "nginx-light"))
                .flatten(),
            haproxy: want(Kind::Haproxy)
                .then(|| ensure_tool("haproxy", "haproxy"))
                .flatten(),
            h2load: http2
                .then(|| ensure_tool("h2load", "nghttp2-client"))
                .flatten(),
            baseline: baseline.filter(|_| want(Kind::TetherBase)),
            access_log,
        }
    }

    /// With a baseline: the two tether binaries compared, each with its `--version`, or, when
    /// that is the same for both, with its file's modification time.
    pub fn binaries(&self) -> Option<String> {
        let base = self.baseline.as_deref()?;
        let tether = Path::new(tether_bin());
        let version = |bin| {
            let v = version_line(bin, "--version");
            if v.is_empty() {
                "no version".to_string()
            } else {
                v
            }
        };
        let (v_tether, v_base) = (version(tether), version(base));
        Some(if v_tether != v_base {
            format!(
                "tether `{}` ({v_tether}) against baseline `{}` ({v_base})",
                tether.display(),
                base.display()
            )
        } else {
            format!(
                "tether `{}` (modified {}) against baseline `{}` (modified {}), both {v_tether}",
                tether.display(),
                modified(tether),
                base.display(),
                modified(base)
            )
        })
    }

    pub fn nginx_version(&self) -> String {
        self.nginx.as_deref().map_or("n/a".into(), |b| {
            let line = version_line(b, "-v");
            line.rsplit('/').next().unwrap_or(&line).trim().to_string()
        })
    }

    pub fn haproxy_version(&self) -> String {
        self.haproxy.as_deref().map_or("n/a".into(), |b| {
            let line = version_line(b, "-v");
            line.split_whitespace().nth(2).unwrap_or(&line).to_string()
        })
    }
}

//! The storage directory: what is kept where, written so that every replica sharing it (and
//! every later process) reads whole files only.
//!
//! ```text
//! <storage>/                          0700
//!   account-<hash of directory>.json  0600  the ACME account (its private key inside)
//!   <first-domain>-<hash>/            0700  one per certificate (domains + directory)
//!     fullchain.pem, key.pem          0600  the certificate in use, leaf first, and its key
//!     lock                            0600  held while one replica orders (pid, time)
//!     http-01/<token>                 0600  an order's answers, while it is in progress,
//!     tls-alpn-01/<name>.pem          0600  so that any replica can answer the validation
//! ```
//!
//! Every file is written to a temporary name and renamed into place, so a reader never sees
//! half of one.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const CHAIN: &str = "fullchain.pem";
const KEY: &str = "key.pem";
const LOCK: &str = "lock";
const HTTP: &str = "http-01";
const ALPN: &str = "tls-alpn-01";

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The directory of the certificate for `domains` from `directory`.
pub fn slot_dir(storage: &Path, directory: &str, domains: &[String]) -> PathBuf {
    let mut parts: Vec<&str> = vec![directory];
    parts.extend(domains.iter().map(String::as_str));
    let first = domains.first().map_or("none", String::as_str);
    storage.join(format!("{first}-{}", short_hash(&parts)))
}

/// The account file for `directory`.
pub fn account_file(storage: &Path, directory: &str) -> PathBuf {
    storage.join(format!("account-{}.json", short_hash(&[directory])))
}

/// Create `dir` (and its parents) as `0700` if it is missing.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Write `bytes` to `path` as `0600`, whole (a temporary file renamed into place).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}

/// The stored chain and key, when both are there.
pub fn read_certificate(dir: &Path) -> Option<(Vec<u8>, Vec<u8>)> {
    Some((
        fs::read(dir.join(CHAIN)).ok()?,
        fs::read(dir.join(KEY)).ok()?,
    ))
}

/// Store a newly issued chain and key (the key first: a reader that sees the new chain finds
/// its key).
pub fn write_certificate(dir: &Path, chain: &[u8], key: &[u8]) -> io::Result<()> {
    write_private(&dir.join(KEY), key)?;
    write_private(&dir.join(CHAIN), chain)
}

/// When the stored chain last changed (another replica's renewal shows as a change).
pub fn certificate_changed(dir: &Path) -> Option<SystemTime> {
    fs::metadata(dir.join(CHAIN))
        .and_then(|m| m.modified())
        .ok()
}

pub fn write_http_challenge(dir: &Path, token: &str, key_authorization: &str) -> io::Result<()> {
    write_private(&dir.join(HTTP).join(token), key_authorization.as_bytes())
}

/// `token` is checked by the caller to be base64url, so it names a file in `http-01/`.
pub fn read_http_challenge(dir: &Path, token: &str) -> Option<String> {
    fs::read_to_string(dir.join(HTTP).join(token)).ok()
}

pub fn write_alpn_challenge(dir: &Path, name: &str, cert: &str, key: &str) -> io::Result<()> {
    write_private(
        &dir.join(ALPN).join(format!("{name}.pem")),
        format!("{cert}{key}").as_bytes(),
    )
}

/// The challenge certificate and key for `name` (one PEM file holds both).
pub fn read_alpn_challenge(dir: &Path, name: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let pem = fs::read(dir.join(ALPN).join(format!("{name}.pem"))).ok()?;
    Some((pem.clone(), pem))
}

/// Remove an order's answers once it is over.
pub fn clear_challenges(dir: &Path) {
    let _ = fs::remove_dir_all(dir.join(HTTP));
    let _ = fs::remove_dir_all(dir.join(ALPN));
}

/// The right to order, held by one replica at a time; released when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Take `dir`'s lock, unless another process holds it. A lock older than `stale` was left by a
/// process that died while ordering (an order is bounded well below it) and is taken over.
pub fn try_lock(dir: &Path, stale: Duration) -> io::Result<Option<Lock>> {
    ensure_dir(dir)?;
    let path = dir.join(LOCK);
    for _ in 0..2 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                writeln!(f, "pid {} since {now}", std::process::id())?;
                return Ok(Some(Lock { path }));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let age = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                match age {
                    Some(age) if age >= stale => {
                        tracing::warn!(lock = %path.display(), age = ?age, "taking over a stale ACME lock");
                        let _ = fs::remove_file(&path);
                    }
                    _ => return Ok(None),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_the_lock_is_held_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = slot_dir(
            &tmp.path().join("acme"),
            "https://ca.test/dir",
            &["a.test".into()],
        );
        write_certificate(&dir, b"chain", b"key").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("acme")), 0o700);
        assert_eq!(mode(&dir.join(CHAIN)), 0o600);
        assert_eq!(mode(&dir.join(KEY)), 0o600);
        assert_eq!(read_certificate(&dir).unwrap().0, b"chain");
        let held = try_lock(&dir, Duration::from_secs(600)).unwrap();
        assert!(held.is_some());
        assert!(try_lock(&dir, Duration::from_secs(600)).unwrap().is_none());
        // A lock older than the stale time is taken over.
        assert!(try_lock(&dir, Duration::ZERO).unwrap().is_some());
        drop(held);
    }

    #[test]
    fn each_certificate_has_its_own_directory() {
        let s = Path::new("/s");
        let a = slot_dir(s, "d1", &["a.test".into()]);
        assert!(a.starts_with(s));
        assert!(a
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("a.test-"));
        assert_ne!(a, slot_dir(s, "d2", &["a.test".into()]));
        assert_ne!(a, slot_dir(s, "d1", &["a.test".into(), "b.test".into()]));
    }
}

//! Certificates that tether obtains itself (ACME, RFC 8555), as the engine and the control plane
//! share them.
//!
//! A [`Slot`] is one certificate kept for a TLS listener's `acme:` settings: the certificate in
//! use (swapped whole, so the next handshake gets a renewed one while open connections keep
//! theirs), the challenge answers of an order in progress, and what `/status`, the admin page
//! and `/metrics` show. The engine reads slots (the rustls [`Resolver`], the HTTP-01 answer
//! before routing); the control plane's ACME loop (`control::acme`) orders and renews into them.
//!
//! Slots live in one process-wide table keyed by storage directory, directory URL and domains:
//! a config reload that keeps a listener's `acme:` keeps its slot, its certificate and its loop,
//! and a fresh process (a restart, a `USR2` upgrade) finds the certificate on disk when it reads
//! its config, before it accepts a single connection. [`store`] owns the storage directory.

mod resolver;
pub mod store;

pub use resolver::Resolver;

use arc_swap::ArcSwapOption;
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737): a handshake that offers only this one is the
/// CA's validation, answered with the challenge certificate and closed.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Where HTTP-01 asks for its answer (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &[u8] = b"/.well-known/acme-challenge/";

/// One ACME-managed certificate.
pub struct Slot {
    /// The names on the certificate, lowercase, in the order the config gives.
    pub domains: Vec<String>,
    /// The ACME directory URL it is ordered from.
    pub directory: String,
    /// The storage directory shared by every replica that serves these names.
    pub storage: PathBuf,
    /// The certificate and key in use; `None` until the first one is issued or found on disk
    /// (a handshake then fails: there is nothing to present).
    current: ArcSwapOption<CertifiedKey>,
    challenges: Mutex<Challenges>,
    status: Mutex<Status>,
    /// Set once the control plane runs this slot's loop.
    looping: AtomicBool,
}

/// The answers of the order in progress (empty otherwise).
#[derive(Default)]
struct Challenges {
    /// TLS-ALPN-01: the self-signed certificate carrying the key authorization's digest, by
    /// lowercase name.
    alpn: HashMap<String, Arc<CertifiedKey>>,
    /// HTTP-01: the key authorization, by token.
    http: HashMap<String, String>,
}

/// What operators see of a slot.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The validity of the certificate in use.
    pub validity: Option<Validity>,
    /// When the loop will next order (Unix seconds): two thirds into the validity, the ACME
    /// server's renewal window (ARI) when it offers one, or the back-off after a failure.
    pub next_order: Option<u64>,
    pub state: State,
    /// The last failure's message, until an order succeeds.
    pub last_error: Option<String>,
    /// Failed orders in a row (the back-off doubles with each).
    pub failures: u32,
    /// Orders this process completed and failed, and how long the last completed one took.
    pub issued: u64,
    pub failed: u64,
    pub last_order_ms: Option<u64>,
}

/// Where a slot's loop is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum State {
    /// The loop has not looked yet.
    #[default]
    Starting,
    /// A certificate is in use and not yet due.
    Valid,
    /// This replica is ordering.
    Ordering,
    /// Another replica holds the storage lock and is ordering; its result is picked up from disk.
    Waiting,
    /// The last order failed; the certificate in use (if any) stays until a retry succeeds.
    Failed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Valid => "valid",
            State::Ordering => "ordering",
            State::Waiting => "waiting for another replica",
            State::Failed => "failed",
        }
    }
}

/// A certificate's validity, Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: u64,
    pub not_after: u64,
}

impl Slot {
    fn new(storage: &Path, directory: &str, domains: &[String]) -> Slot {
        let slot = Slot {
            domains: domains.to_vec(),
            directory: directory.to_string(),
            storage: storage.to_path_buf(),
            current: ArcSwapOption::empty(),
            challenges: Mutex::new(Challenges::default()),
            status: Mutex::new(Status::default()),
            looping: AtomicBool::new(false),
        };
        // What an earlier process (or another replica) stored is served from the first
        // handshake on.
        if let Some((chain, key)) = store::read_certificate(&slot.dir()) {
            if let Err(e) = slot.install(&chain, &key) {
                tracing::warn!(domains = ?slot.domains, error = %e, "the stored certificate cannot be used; a new one will be ordered");
            }
        }
        slot
    }

    /// This slot's own directory inside the storage directory.
    pub fn dir(&self) -> PathBuf {
        store::slot_dir(&self.storage, &self.directory, &self.domains)
    }

    /// The certificate in use.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }

    /// Put a PEM chain (leaf first) and key in use, if they parse, belong together and name
    /// every domain. Returns the validity.
    pub fn install(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Validity, String> {
        let (key, validity, names) = parse(chain_pem, key_pem)?;
        if let Some(missing) = self.domains.iter().find(|d| !names.contains(d)) {
            return Err(format!("the certificate does not name `{missing}`"));
        }
        self.current.store(Some(key));
        self.status().validity = Some(validity);
        Ok(validity)
    }

    pub fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn challenges(&self) -> MutexGuard<'_, Challenges> {
        self.challenges.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer TLS-ALPN-01 for `name` with `cert` until [`Slot::clear_challenges`].
    pub fn put_alpn(&self, name: &str, cert: Arc<CertifiedKey>) {
        self.challenges()
            .alpn
            .insert(name.to_ascii_lowercase(), cert);
    }

    /// Answer HTTP-01 for `token` with `key_authorization` until [`Slot::clear_challenges`].
    pub fn put_http(&self, token: &str, key_authorization: &str) {
        self.challenges()
            .http
            .insert(token.to_string(), key_authorization.to_string());
    }

    pub fn clear_challenges(&self) {
        *self.challenges() = Challenges::default();
    }

    /// The TLS-ALPN-01 certificate for `name`: this replica's, or one another replica that
    /// shares the storage put there (the CA's validation may reach any replica).
    fn alpn_answer(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(c) = self.challenges().alpn.get(name) {
            return Some(Arc::clone(c));
        }
        // Only names of this slot: `name` then cannot point outside the directory.
        if !self.domains.iter().any(|d| d == name) {
            return None;
        }
        let (chain, key) = store::read_alpn_challenge(&self.dir(), name)?;
        parse(&chain, &key).ok().map(|(c, _, _)| c)
    }

    /// The HTTP-01 answer for `token`, this replica's or one stored by another.
    fn http_answer(&self, token: &str) -> Option<String> {
        if let Some(ka) = self.challenges().http.get(token) {
            return Some(ka.clone());
        }
        store::read_http_challenge(&self.dir(), token)
    }

    /// Claim the right to run this slot's loop (true once per slot).
    pub fn claim_loop(&self) -> bool {
        !self.looping.swap(true, Ordering::AcqRel)
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("domains", &self.domains)
            .field("directory", &self.directory)
            .field("storage", &self.storage)
            .finish()
    }
}

static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

fn table() -> MutexGuard<'static, Vec<Arc<Slot>>> {
    SLOTS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The slot for these settings: the one already kept (a reload), or a new one loaded from
/// storage.
pub fn slot(storage: &Path, directory: &str, domains: &[String]) -> Arc<Slot> {
    let mut slots = table();
    if let Some(s) = slots
        .iter()
        .find(|s| s.storage == storage && s.directory == directory && s.domains == domains)
    {
        return Arc::clone(s);
    }
    let s = Arc::new(Slot::new(storage, directory, domains));
    slots.push(Arc::clone(&s));
    s
}

/// Every slot, for `/status` and `/metrics`.
pub fn slots() -> Vec<Arc<Slot>> {
    table().clone()
}

/// Drop `slot` from the table once no config uses it (its loop then ends).
pub fn forget(slot: &Arc<Slot>) {
    table().retain(|s| !Arc::ptr_eq(s, slot));
}

/// The HTTP-01 answer for a request target, when it asks for one that an order in progress
/// (here or in another replica sharing the storage) expects. Costs one prefix comparison for
/// every other request.
pub fn http01(target: &[u8]) -> Option<String> {
    let token = target.strip_prefix(HTTP01_PREFIX)?;
    // Tokens are base64url (RFC 8555 §8.3): anything else is not ours (and never a path).
    if token.is_empty()
        || !token
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return None;
    }
    let token = std::str::from_utf8(token).ok()?;
    let slots = slots();
    slots.iter().find_map(|s| s.http_answer(token))
}

/// Parse a PEM chain and key into what rustls presents, the leaf's validity and its DNS names.
pub fn parse(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Arc<CertifiedKey>, Validity, Vec<String>), String> {
    let chain = rustls_pemfile::certs(&mut &chain_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate chain does not parse: {e}"))?;
    let leaf = chain.first().ok_or("no certificate in the chain")?;
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("the key does not parse: {e}"))?
        .ok_or("no private key")?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("the key cannot sign: {e}"))?;
    let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let v = x509.validity();
    let validity = Validity {
        not_before: v.not_before.timestamp().max(0) as u64,
        not_after: v.not_after.timestamp().max(0) as u64,
    };
    let names = match x509.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let certified = CertifiedKey::new(chain, signer);
    // Only a proven mismatch is refused: a key that cannot show its public half, or a
    // certificate webpki will not read (a TLS-ALPN-01 certificate's critical acmeIdentifier
    // extension), is left for the handshake to judge.
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err("the key does not belong to the certificate".into());
    }
    Ok((Arc::new(certified), validity, names))
}

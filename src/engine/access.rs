//! The access log: one line per request and one per tunnel when it closes, written off the
//! request path.
//!
//! A worker only appends a compact binary record to its own buffer (a few copies, no lock, no
//! allocation once the buffer has grown, no formatting); every [`FLUSH_EVERY`], or when the
//! buffer is full, the whole buffer goes to the log thread in one channel send. The log thread
//! decodes the records and emits them as `tracing` events with target `tether::access`, so they
//! are formatted (text or JSON lines, as the rest of the log) and written there.
//!
//! Fields, stable for log shippers: `client` (as resolved by the trusted-proxy rules), `method`,
//! `path` (without the query), `status` (tether's own for a refusal), `upstream`, `node`,
//! `decision` (hit, new, repinned, unpinned), `bytes_in`, `bytes_out`, `duration_ms`; a tunnel
//! line has `kind=tunnel`, `bytes_up`, `bytes_down`, `duration_ms` and `closed_by` (client, node,
//! idle, shutdown). The event's timestamp is when the log thread wrote it: at most
//! [`FLUSH_EVERY`] after the request ended.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

/// How long records may wait in a worker's buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// A buffer this full is sent at once.
const FLUSH_AT: usize = 32 * 1024;
/// Longest path kept (the rest is cut, marked with `…`).
const PATH_MAX: usize = 256;

static ENABLED: AtomicBool = AtomicBool::new(false);
static SINK: OnceLock<mpsc::Sender<Vec<u8>>> = OnceLock::new();

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One finished request.
pub struct Request<'a> {
    pub client: IpAddr,
    pub method: &'a [u8],
    /// The request target; the query is cut here.
    pub target: &'a [u8],
    pub status: u16,
    pub upstream: &'a str,
    pub node: &'a str,
    pub decision: &'a str,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
}

/// One closed tunnel.
pub struct Tunnel<'a> {
    pub client: IpAddr,
    pub target: &'a [u8],
    pub upstream: &'a str,
    pub node: &'a str,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration: Duration,
    pub closed_by: &'a str,
}

/// Start the log thread and turn recording on (once per process; later calls do nothing).
pub fn start() {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    if SINK.set(tx).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("tether-access-log".into())
        .spawn(move || {
            while let Ok(batch) = rx.recv() {
                emit(&batch);
            }
        });
    if spawned.is_ok() {
        ENABLED.store(true, Ordering::Relaxed);
    }
}

/// Whether records are kept (the access log is on and its level is enabled).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Record a finished request (a no-op when the access log is off).
pub fn request(r: &Request<'_>) {
    if !enabled() {
        return;
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        b.push(KIND_REQUEST);
        put_ip(&mut b, r.client);
        put(&mut b, r.method);
        put(&mut b, path_of(r.target));
        b.extend_from_slice(&r.status.to_le_bytes());
        put(&mut b, r.upstream.as_bytes());
        put(&mut b, r.node.as_bytes());
        put(&mut b, r.decision.as_bytes());
        b.extend_from_slice(&r.bytes_in.to_le_bytes());
        b.extend_from_slice(&r.bytes_out.to_le_bytes());
        b.extend_from_slice(&(r.duration.as_micros() as u64).to_le_bytes());
        full(&mut b);
    });
}

/// Record a closed tunnel (a no-op when the access log is off).
pub fn tunnel(t: &Tunnel<'_>) {
    if !enabled() {
        return;
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        b.push(KIND_TUNNEL);
        put_ip(&mut b, t.client);
        put(&mut b, path_of(t.target));
        put(&mut b, t.upstream.as_bytes());
        put(&mut b, t.node.as_bytes());
        b.extend_from_slice(&t.bytes_up.to_le_bytes());
        b.extend_from_slice(&t.bytes_down.to_le_bytes());
        b.extend_from_slice(&(t.duration.as_micros() as u64).to_le_bytes());
        put(&mut b, t.closed_by.as_bytes());
        full(&mut b);
    });
}

/// Send this worker's records to the log thread.
pub fn flush() {
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut *b, Vec::with_capacity(4096));
        if let Some(sink) = SINK.get() {
            let _ = sink.send(batch);
        }
    });
}

/// Flush this worker's records every [`FLUSH_EVERY`], for as long as the worker runs.
pub async fn flusher() {
    if !enabled() {
        return;
    }
    let mut ticker = tokio::time::interval(FLUSH_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        flush();
    }
}

const KIND_REQUEST: u8 = 1;
const KIND_TUNNEL: u8 = 2;

fn full(b: &mut Vec<u8>) {
    if b.len() >= FLUSH_AT {
        let batch = std::mem::replace(b, Vec::with_capacity(FLUSH_AT));
        if let Some(sink) = SINK.get() {
            let _ = sink.send(batch);
        }
    }
}

/// The path of a target: up to the query, at most [`PATH_MAX`] bytes.
fn path_of(target: &[u8]) -> &[u8] {
    let end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    &target[..end.min(PATH_MAX)]
}

fn put(b: &mut Vec<u8>, s: &[u8]) {
    let s = &s[..s.len().min(u16::MAX as usize)];
    b.extend_from_slice(&(s.len() as u16).to_le_bytes());
    b.extend_from_slice(s);
}

fn put_ip(b: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            b.push(4);
            b.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            b.push(6);
            b.extend_from_slice(&v6.octets());
        }
    }
}

/// Reads records back (the log thread's side).
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.b.split_at_checked(n)?;
        self.b = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<std::borrow::Cow<'a, str>> {
        let n = self.u16()? as usize;
        Some(String::from_utf8_lossy(self.take(n)?))
    }
    fn ip(&mut self) -> Option<IpAddr> {
        match self.u8()? {
            4 => Some(IpAddr::from(<[u8; 4]>::try_from(self.take(4)?).ok()?)),
            _ => Some(IpAddr::from(<[u8; 16]>::try_from(self.take(16)?).ok()?)),
        }
    }
}

/// Decode a batch and emit every record.
fn emit(batch: &[u8]) {
    let mut r = Reader { b: batch };
    while let Some(kind) = r.u8() {
        if emit_one(kind, &mut r).is_none() {
            return;
        }
    }
}

fn emit_one(kind: u8, r: &mut Reader<'_>) -> Option<()> {
    let ms = |us: u64| us as f64 / 1000.0;
    match kind {
        KIND_REQUEST => {
            let (client, method, path) = (r.ip()?, r.str()?, r.str()?);
            let status = r.u16()?;
            let (upstream, node, decision) = (r.str()?, r.str()?, r.str()?);
            let (bytes_in, bytes_out, us) = (r.u64()?, r.u64()?, r.u64()?);
            tracing::info!(
                target: "tether::access",
                kind = "request", %client, method = %method, path = %path, status,
                upstream = %upstream, node = %node, decision = %decision,
                bytes_in, bytes_out, duration_ms = ms(us),
                "request"
            );
        }
        KIND_TUNNEL => {
            let (client, path, upstream, node) = (r.ip()?, r.str()?, r.str()?, r.str()?);
            let (bytes_up, bytes_down, us) = (r.u64()?, r.u64()?, r.u64()?);
            let closed_by = r.str()?;
            tracing::info!(
                target: "tether::access",
                kind = "tunnel", %client, path = %path, upstream = %upstream, node = %node,
                bytes_up, bytes_down, duration_ms = ms(us), closed_by = %closed_by,
                "tunnel closed"
            );
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_batch() {
        let mut b = Vec::new();
        b.push(KIND_REQUEST);
        put_ip(&mut b, "10.0.0.1".parse().unwrap());
        put(&mut b, b"GET");
        put(&mut b, path_of(b"/socket.io/?EIO=4&sid=secret"));
        b.extend_from_slice(&200u16.to_le_bytes());
        put(&mut b, b"realtime");
        put(&mut b, b"node-a");
        put(&mut b, b"hit");
        for v in [10u64, 20, 1500] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let mut r = Reader { b: &b };
        assert_eq!(r.u8(), Some(KIND_REQUEST));
        assert_eq!(r.ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(r.str().as_deref(), Some("GET"));
        assert_eq!(
            r.str().as_deref(),
            Some("/socket.io/"),
            "the query is never logged"
        );
        assert_eq!(r.u16(), Some(200));
        assert_eq!(r.str().as_deref(), Some("realtime"));
        assert_eq!(r.str().as_deref(), Some("node-a"));
        assert_eq!(r.str().as_deref(), Some("hit"));
        assert_eq!(
            (r.u64(), r.u64(), r.u64()),
            (Some(10), Some(20), Some(1500))
        );
        assert_eq!(r.u8(), None);
        // A truncated batch stops cleanly.
        emit(&b[..b.len() - 3]);
    }
}

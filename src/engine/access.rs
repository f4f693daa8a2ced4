//! The access log: one line per request and one per tunnel when it closes, written off the
//! request path.
//!
//! A worker only appends a compact binary record to its own buffer (a few copies, no lock, no
//! allocation once the buffer has grown, no formatting); every [`FLUSH_EVERY`], or when the
//! buffer is full, the whole buffer goes to the log thread in one channel send. The log thread
//! decodes the records, formats them itself in the shape the rest of the log has (text or JSON
//! lines, target `tether::access`, as `tracing_subscriber` writes its events) and writes a whole
//! batch's lines in one system call. Going through `tracing` instead cost about 4 CPU-µs per
//! line (a `write` each, field visitors, a clock read each): at 45k requests/s the access log
//! then took a fifth more CPU per request in `make bench`.
//!
//! Fields, stable for log shippers: `client` (as resolved by the trusted-proxy rules), `method`,
//! `path` (without the query), `status` (tether's own for a refusal), `upstream`, `node`,
//! `decision` (hit, new, repinned, unpinned), `bytes_in`, `bytes_out`, `duration_ms`, `failure`
//! (`-`, or what ended the exchange: `connect`, `read_timeout`, `body_broken`, `client_gone`,
//! `bad_request`, ... as `/metrics` names them; `status` is then 499 for a client that went
//! away, else what the client got: tether's own status, or the node's when its head had gone
//! out before the failure); a tunnel
//! line has `kind=tunnel`, `bytes_up`, `bytes_down`, `frames_up`, `frames_down`, `close_code`
//! (`-` for a byte tunnel), `duration_ms` and `closed_by` (client, node, idle, or tether's
//! reason: ping_timeout, leave, rebalance, shutdown, protocol_error); both end with `protocol`
//! (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`). The timestamp is when the log thread wrote the batch: at most
//! [`FLUSH_EVERY`] after the request ended.

use crate::config::LogFormat;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
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

/// The protocol a client spoke, as the access log's `protocol` field names it (nginx's
/// `$server_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http10,
    Http11,
    Http2,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http10 => "HTTP/1.0",
            Protocol::Http11 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }

    /// The HTTP/1 protocol of a request with this minor version.
    pub fn http1(minor: u8) -> Protocol {
        if minor == 0 {
            Protocol::Http10
        } else {
            Protocol::Http11
        }
    }
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
    /// What ended the exchange, `-` for a whole response.
    pub failure: &'a str,
    pub protocol: Protocol,
}

/// One closed tunnel.
pub struct Tunnel<'a> {
    pub client: IpAddr,
    pub target: &'a [u8],
    pub upstream: &'a str,
    pub node: &'a str,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// WebSocket frames each way (0 for a byte tunnel).
    pub frames_up: u64,
    pub frames_down: u64,
    /// The close code (the first Close frame's, or tether's own; 1006 without one); `None`
    /// for a byte tunnel.
    pub close_code: Option<u16>,
    pub duration: Duration,
    pub closed_by: &'a str,
    pub protocol: Protocol,
}

/// Start the log thread, writing lines in `format`, and turn recording on (once per process;
/// later calls do nothing).
pub fn start(format: LogFormat) {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    if SINK.set(tx).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("tether-access-log".into())
        .spawn(move || {
            let mut out = String::with_capacity(64 * 1024);
            while let Ok(batch) = rx.recv() {
                let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
                let mut w = Lines {
                    out: &mut out,
                    format,
                    time: &now.to_string(),
                };
                emit(&batch, &mut w);
                let _ = std::io::stderr().write_all(out.as_bytes());
                out.clear();
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
        put(&mut b, r.failure.as_bytes());
        put(&mut b, r.protocol.name().as_bytes());
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
        b.extend_from_slice(&t.frames_up.to_le_bytes());
        b.extend_from_slice(&t.frames_down.to_le_bytes());
        // 0: no code (a byte tunnel).
        b.extend_from_slice(&t.close_code.unwrap_or(0).to_le_bytes());
        put(&mut b, t.protocol.name().as_bytes());
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

/// Decode a batch and write every record's line.
fn emit(batch: &[u8], w: &mut Lines<'_>) {
    let mut r = Reader { b: batch };
    while let Some(kind) = r.u8() {
        if emit_one(kind, &mut r, w).is_none() {
            return;
        }
    }
}

fn emit_one(kind: u8, r: &mut Reader<'_>, w: &mut Lines<'_>) -> Option<()> {
    match kind {
        KIND_REQUEST => {
            let (client, method, path) = (r.ip()?, r.str()?, r.str()?);
            let status = r.u16()?;
            let (upstream, node, decision) = (r.str()?, r.str()?, r.str()?);
            let (bytes_in, bytes_out, us) = (r.u64()?, r.u64()?, r.u64()?);
            let failure = r.str()?;
            let protocol = r.str()?;
            w.line(
                "request",
                &[
                    ("kind", V::Quoted("request")),
                    ("client", V::Ip(client)),
                    ("method", V::Str(&method)),
                    ("path", V::Str(&path)),
                    ("status", V::Num(u64::from(status))),
                    ("upstream", V::Str(&upstream)),
                    ("node", V::Str(&node)),
                    ("decision", V::Str(&decision)),
                    ("bytes_in", V::Num(bytes_in)),
                    ("bytes_out", V::Num(bytes_out)),
                    ("duration_ms", V::Ms(us)),
                    ("failure", V::Str(&failure)),
                    ("protocol", V::Str(&protocol)),
                ],
            );
        }
        KIND_TUNNEL => {
            let (client, path, upstream, node) = (r.ip()?, r.str()?, r.str()?, r.str()?);
            let (bytes_up, bytes_down, us) = (r.u64()?, r.u64()?, r.u64()?);
            let closed_by = r.str()?;
            let (frames_up, frames_down, code) = (r.u64()?, r.u64()?, r.u16()?);
            let protocol = r.str()?;
            let code = match code {
                0 => V::Str("-"),
                c => V::Num(u64::from(c)),
            };
            w.line(
                "tunnel closed",
                &[
                    ("kind", V::Quoted("tunnel")),
                    ("client", V::Ip(client)),
                    ("path", V::Str(&path)),
                    ("upstream", V::Str(&upstream)),
                    ("node", V::Str(&node)),
                    ("bytes_up", V::Num(bytes_up)),
                    ("bytes_down", V::Num(bytes_down)),
                    ("frames_up", V::Num(frames_up)),
                    ("frames_down", V::Num(frames_down)),
                    ("close_code", code),
                    ("duration_ms", V::Ms(us)),
                    ("closed_by", V::Str(&closed_by)),
                    ("protocol", V::Str(&protocol)),
                ],
            );
        }
        _ => return None,
    }
    Some(())
}

/// A field's value, and how the text format shows it (as `tracing`'s default formatter does: a
/// `&str` field quoted, a `%`-formatted one bare).
enum V<'a> {
    Quoted(&'a str),
    Str(&'a str),
    Ip(IpAddr),
    Num(u64),
    /// Microseconds, shown as milliseconds with three decimals.
    Ms(u64),
}

/// The lines of one batch, in the log's format, with the batch's timestamp.
struct Lines<'a> {
    out: &'a mut String,
    format: LogFormat,
    time: &'a str,
}

impl Lines<'_> {
    fn line(&mut self, message: &str, fields: &[(&str, V<'_>)]) {
        let out = &mut *self.out;
        match self.format {
            LogFormat::Text => {
                let _ = write!(out, "{}  INFO tether::access: {message}", self.time);
                for (name, v) in fields {
                    let _ = match v {
                        V::Quoted(s) => write!(out, " {name}={s:?}"),
                        V::Str(s) => write!(out, " {name}={s}"),
                        V::Ip(ip) => write!(out, " {name}={ip}"),
                        V::Num(n) => write!(out, " {name}={n}"),
                        V::Ms(us) => write!(out, " {name}={}.{:03}", us / 1000, us % 1000),
                    };
                }
            }
            LogFormat::Json => {
                let _ = write!(
                    out,
                    "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"message\":\"{message}\"",
                    self.time
                );
                for (name, v) in fields {
                    let _ = match v {
                        V::Quoted(s) | V::Str(s) => {
                            let _ = write!(out, ",\"{name}\":");
                            json_string(out, s);
                            Ok(())
                        }
                        V::Ip(ip) => write!(out, ",\"{name}\":\"{ip}\""),
                        V::Num(n) => write!(out, ",\"{name}\":{n}"),
                        V::Ms(us) => write!(out, ",\"{name}\":{}.{:03}", us / 1000, us % 1000),
                    };
                }
                out.push_str(",\"target\":\"tether::access\"}");
            }
        }
        out.push('\n');
    }
}

/// `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
        put(&mut b, b"-");
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
        assert_eq!(r.str().as_deref(), Some("-"));
        assert_eq!(r.u8(), None);
    }

    fn batch() -> Vec<u8> {
        let mut b = Vec::new();
        b.push(KIND_REQUEST);
        put_ip(&mut b, "10.0.0.1".parse().unwrap());
        put(&mut b, b"GET");
        put(&mut b, b"/whoami");
        b.extend_from_slice(&200u16.to_le_bytes());
        put(&mut b, b"realtime");
        put(&mut b, br#"rack "7"\slot"#);
        put(&mut b, b"hit");
        for v in [10u64, 20, 1500] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        put(&mut b, b"client_gone");
        put(&mut b, Protocol::Http11.name().as_bytes());
        b.push(KIND_TUNNEL);
        put_ip(&mut b, "::1".parse().unwrap());
        put(&mut b, b"/ws");
        put(&mut b, b"realtime");
        put(&mut b, b"node-b");
        for v in [5u64, 7, 2_000_042] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        put(&mut b, b"client");
        for v in [3u64, 4] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&1000u16.to_le_bytes());
        put(&mut b, Protocol::Http2.name().as_bytes());
        b
    }

    fn lines(batch: &[u8], format: LogFormat) -> String {
        let mut out = String::new();
        let mut w = Lines {
            out: &mut out,
            format,
            time: "2026-12-02T04:01:52.063528Z",
        };
        emit(batch, &mut w);
        out
    }

    #[test]
    fn json_lines_are_objects_with_the_fields_tracing_would_write() {
        let text = lines(&batch(), LogFormat::Json);
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(v.len(), 2, "{text}");
        assert_eq!(v[0]["target"], "tether::access");
        assert_eq!(v[0]["level"], "INFO");
        assert_eq!(v[0]["timestamp"], "2026-12-02T04:01:52.063528Z");
        assert_eq!(v[0]["message"], "request");
        assert_eq!(v[0]["kind"], "request");
        assert_eq!(v[0]["client"], "10.0.0.1");
        assert_eq!(v[0]["node"], r#"rack "7"\slot"#, "escaped and read back");
        assert_eq!(v[0]["status"], 200);
        assert_eq!(v[0]["bytes_out"], 20);
        assert_eq!(v[0]["duration_ms"].as_f64(), Some(1.5));
        assert_eq!(v[0]["failure"], "client_gone");
        assert_eq!(v[1]["kind"], "tunnel");
        assert_eq!(v[1]["client"], "::1");
        assert_eq!(v[1]["closed_by"], "client");
        assert_eq!(v[1]["frames_up"], 3);
        assert_eq!(v[1]["close_code"], 1000);
        assert_eq!(v[1]["duration_ms"].as_f64(), Some(2000.042));
        assert_eq!(v[0]["protocol"], "HTTP/1.1");
        assert_eq!(v[1]["protocol"], "HTTP/2");
    }

    #[test]
    fn text_lines_read_like_the_rest_of_the_log() {
        let text = lines(&batch(), LogFormat::Text);
        assert_eq!(
            text.lines().next(),
            Some(
                r#"2026-12-02T04:01:52.063528Z  INFO tether::access: request kind="request" client=10.0.0.1 method=GET path=/whoami status=200 upstream=realtime node=rack "7"\slot decision=hit bytes_in=10 bytes_out=20 duration_ms=1.500 failure=client_gone protocol=HTTP/1.1"#
            )
        );
        assert!(text.lines().nth(1).is_some_and(|l| l.starts_with(
            "2026-12-02T04:01:52.063528Z  INFO tether::access: tunnel closed kind=\"tunnel\" client=::1 path=/ws"
        )));
    }

    #[test]
    fn a_truncated_batch_stops_cleanly() {
        let b = batch();
        let text = lines(&b[..b.len() - 3], LogFormat::Json);
        assert_eq!(text.lines().count(), 1, "the whole request, no tunnel");
    }
}

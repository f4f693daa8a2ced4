//! A strict HTTP/1.1 reader for what the test client receives, written from RFC 9112 and kept
//! independent of tether's engine: anything a lenient client might guess at (bare LF, obs-fold,
//! a leading empty line, `Content-Length` with `Transfer-Encoding`, a loose chunk line, a trailer
//! without a colon) is an error here, so a proxy that forwards it is caught.
//!
//! It also holds the chunk-line grammar (RFC 9112 §7.1) the differential generator labels its
//! cases with.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Longest head, chunk line or trailer section the reader takes.
const MAX_LINE_SECTION: usize = 64 * 1024;

/// One response, read whole and checked.
#[derive(Debug, Clone)]
pub struct Response {
    pub minor: u8,
    pub status: u16,
    /// `(lower-case name, value)` in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, decoded when it was chunked.
    pub body: Vec<u8>,
    /// The body came chunked.
    pub chunked: bool,
    pub trailers: Vec<(String, Vec<u8>)>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn header_str(&self, name: &str) -> String {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    /// The sender will close after this response (RFC 9112 §9.3).
    pub fn closes(&self) -> bool {
        let tokens: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect();
        tokens.iter().any(|t| t == "close")
            || (self.minor == 0 && !tokens.iter().any(|t| t == "keep-alive"))
    }

    /// `HTTP/1.1 200 <n body bytes>` for reports.
    pub fn summary(&self) -> String {
        format!(
            "HTTP/1.{} {} ({} body bytes{})",
            self.minor,
            self.status,
            self.body.len(),
            if self.chunked { ", chunked" } else { "" }
        )
    }
}

/// Why no response could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The peer closed cleanly before the first byte of a response.
    Eof,
    /// Nothing complete by the deadline; the bytes that were pending.
    Timeout(Vec<u8>),
    /// The peer closed in the middle of a response.
    Truncated(String),
    /// The bytes are not valid HTTP/1.1.
    Invalid(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Eof => write!(f, "closed"),
            ReadError::Timeout(b) if b.is_empty() => write!(f, "no answer in time"),
            ReadError::Timeout(b) => write!(f, "stalled after {}", escape(b, 120)),
            ReadError::Truncated(w) => write!(f, "closed mid-response ({w})"),
            ReadError::Invalid(w) => write!(f, "INVALID: {w}"),
        }
    }
}

/// Reads responses one after another from one connection.
#[derive(Default)]
pub struct Reader {
    buf: Vec<u8>,
    eof: bool,
}

enum Parsed {
    More,
    Done(Response, usize),
}

impl Reader {
    /// The next response; `head_request`: it answers a HEAD (no body whatever its headers say).
    pub async fn next<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        head_request: bool,
        deadline: Instant,
    ) -> Result<Response, ReadError> {
        loop {
            if !self.buf.is_empty() {
                match parse_response(&self.buf, self.eof, head_request) {
                    Ok(Parsed::Done(r, n)) => {
                        self.buf.drain(..n);
                        return Ok(r);
                    }
                    Ok(Parsed::More) if self.eof => {
                        return Err(ReadError::Truncated(escape(&self.buf, 120)))
                    }
                    Ok(Parsed::More) => {}
                    Err(e) => return Err(ReadError::Invalid(e)),
                }
            } else if self.eof {
                return Err(ReadError::Eof);
            }
            if !self.fill(s, deadline).await {
                return Err(ReadError::Timeout(self.buf.clone()));
            }
        }
    }

    /// Wait for the peer to close with nothing more sent. `Err`: what came instead.
    pub async fn expect_eof<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        deadline: Instant,
    ) -> Result<(), String> {
        while !self.eof {
            if !self.buf.is_empty() {
                break;
            }
            if !self.fill(s, deadline).await {
                return Err("still open".into());
            }
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!("more bytes: {}", escape(&self.buf, 120)))
        }
    }

    /// Read once; `false` when the deadline passed first.
    async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S, deadline: Instant) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait.max(Duration::from_millis(1)), s.read(&mut chunk)).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                true
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A field-value byte (RFC 9110 §5.5: VCHAR, SP, HTAB, obs-text).
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// The line at `at` up to its CRLF: `Ok(Some((line, next)))`, `Ok(None)` when it is not all
/// here yet, `Err` on a bare CR or LF.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &buf[at.min(buf.len())..];
    for (i, &b) in rest.iter().enumerate() {
        if i > MAX_LINE_SECTION {
            return Err("line longer than 64 KiB".into());
        }
        match b {
            b'\n' => return Err(format!("bare LF after {}", escape(&rest[..i], 60))),
            b'\r' => {
                return match rest.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((&rest[..i], at + i + 2))),
                    Some(_) => Err(format!("bare CR after {}", escape(&rest[..i], 60))),
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// One header or trailer field line (RFC 9112 §5): `name ":" OWS value OWS`, no obs-fold.
pub fn field_line(l: &[u8]) -> Result<(String, Vec<u8>), String> {
    if l.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(format!("obs-fold or leading whitespace: {}", escape(l, 60)));
    }
    let colon = l
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("field line without a colon: {}", escape(l, 60)))?;
    let name = &l[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(format!("bad field name: {}", escape(l, 60)));
    }
    let value = l[colon + 1..].trim_ascii();
    if !value.iter().all(|&b| is_field_byte(b)) {
        return Err(format!("bad byte in field value: {}", escape(l, 60)));
    }
    Ok((
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        value.to_vec(),
    ))
}

/// A chunk line without its CRLF (RFC 9112 §7.1): `chunk-size [ chunk-ext ]`, with
/// `chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )` and ext-val a token or a
/// quoted-string. Whitespace before the CRLF is refused (it is only BWS when a `;` follows).
/// Leading zeros are fine; more than 16 significant hex digits is not. The size, or why not.
pub fn chunk_line(l: &[u8]) -> Result<u64, String> {
    let digits = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("chunk size is not hex".into());
    }
    let significant = l[..digits].iter().skip_while(|&&b| b == b'0').count();
    if significant > 16 {
        return Err("chunk size overflows".into());
    }
    let size = l[..digits].iter().fold(0u64, |n, &b| {
        n.wrapping_mul(16) + u64::from((b as char).to_digit(16).unwrap_or(0))
    });
    let mut i = digits;
    let bws = |i: &mut usize| {
        let s = *i;
        while l.get(*i).is_some_and(|&b| b == b' ' || b == b'\t') {
            *i += 1;
        }
        *i > s
    };
    loop {
        let ws = bws(&mut i);
        if i == l.len() {
            return if ws {
                Err("whitespace before the CRLF".into())
            } else {
                Ok(size)
            };
        }
        if l[i] != b';' {
            return Err(format!("unexpected {:?} in chunk line", l[i] as char));
        }
        i += 1;
        bws(&mut i);
        let start = i;
        while l.get(i).is_some_and(|&b| is_tchar(b)) {
            i += 1;
        }
        if i == start {
            return Err("empty extension name".into());
        }
        let mark = i;
        bws(&mut i);
        if l.get(i) == Some(&b'=') {
            i += 1;
            bws(&mut i);
            if l.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match l.get(i) {
                        None => return Err("unterminated quoted-string".into()),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => match l.get(i + 1) {
                            Some(&b) if is_field_byte(b) => i += 2,
                            _ => return Err("bad quoted-pair".into()),
                        },
                        Some(&b) if is_field_byte(b) => i += 1,
                        Some(_) => return Err("bad byte in quoted-string".into()),
                    }
                }
            } else {
                let start = i;
                while l.get(i).is_some_and(|&b| is_tchar(b)) {
                    i += 1;
                }
                if i == start {
                    return Err("empty extension value".into());
                }
            }
        } else {
            // No value: back to just after the name so the whitespace rule above applies.
            i = mark;
        }
    }
}

/// A chunked body at `at`: the decoded data, trailers and where the body ends.
#[allow(clippy::type_complexity)]
fn chunked(
    buf: &[u8],
    mut at: usize,
) -> Result<Option<(Vec<u8>, Vec<(String, Vec<u8>)>, usize)>, String> {
    let mut body = Vec::new();
    loop {
        let Some((l, next)) = line(buf, at)? else {
            return Ok(None);
        };
        let size = chunk_line(l).map_err(|e| format!("chunk line {}: {e}", escape(l, 60)))?;
        at = next;
        if size == 0 {
            break;
        }
        let end = at as u64 + size;
        if (buf.len() as u64) < end + 2 {
            return Ok(None);
        }
        let end = end as usize;
        body.extend_from_slice(&buf[at..end]);
        if &buf[end..end + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at = end + 2;
    }
    let mut trailers = Vec::new();
    let start = at;
    loop {
        if at - start > MAX_LINE_SECTION {
            return Err("trailer section larger than 64 KiB".into());
        }
        let Some((l, next)) = line(buf, at)? else {
            return Ok(None);
        };
        at = next;
        if l.is_empty() {
            return Ok(Some((body, trailers, at)));
        }
        trailers.push(field_line(l).map_err(|e| format!("trailer: {e}"))?);
    }
}

fn parse_response(buf: &[u8], eof: bool, head_request: bool) -> Result<Parsed, String> {
    let Some((status_line, mut at)) = line(buf, 0)? else {
        return Ok(Parsed::More);
    };
    let sl = status_line;
    // status-line = HTTP-version SP status-code SP [ reason-phrase ]
    let ok = sl.len() >= 13
        && sl.starts_with(b"HTTP/1.")
        && sl[7].is_ascii_digit()
        && sl[8] == b' '
        && sl[9..12].iter().all(u8::is_ascii_digit)
        && sl[12] == b' '
        && sl[13..].iter().all(|&b| is_field_byte(b));
    if !ok {
        return Err(format!("bad status line {}", escape(sl, 80)));
    }
    let minor = sl[7] - b'0';
    let status: u16 = std::str::from_utf8(&sl[9..12])
        .unwrap()
        .parse()
        .map_err(|_| "status")?;
    if !(100..=599).contains(&status) {
        return Err(format!("status {status}"));
    }
    let mut headers = Vec::new();
    loop {
        if at > MAX_LINE_SECTION {
            return Err("head larger than 64 KiB".into());
        }
        let Some((l, next)) = line(buf, at)? else {
            return Ok(Parsed::More);
        };
        at = next;
        if l.is_empty() {
            break;
        }
        headers.push(field_line(l)?);
    }
    let all = |name: &str| {
        headers
            .iter()
            .filter(move |(n, _)| n == name)
            .flat_map(|(_, v)| v.split(|&b| b == b',').map(|p| p.trim_ascii().to_vec()))
            .collect::<Vec<_>>()
    };
    let te = all("transfer-encoding");
    let cl = all("content-length");
    let mut r = Response {
        minor,
        status,
        headers: headers.clone(),
        body: Vec::new(),
        chunked: false,
        trailers: Vec::new(),
    };
    if !te.is_empty() && !cl.is_empty() {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    if !te.is_empty() && minor == 0 {
        return Err("Transfer-Encoding in an HTTP/1.0 response".into());
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    if no_body {
        return Ok(Parsed::Done(r, at));
    }
    if !te.is_empty() {
        let last_chunked = te
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        let chunked_count = te
            .iter()
            .filter(|c| c.eq_ignore_ascii_case(b"chunked"))
            .count();
        if last_chunked && chunked_count == 1 {
            r.chunked = true;
            return Ok(match chunked(buf, at)? {
                None => Parsed::More,
                Some((body, trailers, end)) => {
                    r.body = body;
                    r.trailers = trailers;
                    Parsed::Done(r, end)
                }
            });
        }
        if chunked_count > 0 {
            return Err("chunked applied twice or not last".into());
        }
    } else if !cl.is_empty() {
        let mut len = None;
        for v in &cl {
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return Err(format!("bad Content-Length {}", escape(v, 40)));
            }
            let n: u64 = std::str::from_utf8(v).unwrap().parse().unwrap();
            if len.is_some_and(|l| l != n) {
                return Err("differing Content-Length values".into());
            }
            len = Some(n);
        }
        let n = len.unwrap_or(0) as usize;
        if buf.len() < at + n {
            return Ok(Parsed::More);
        }
        r.body = buf[at..at + n].to_vec();
        return Ok(Parsed::Done(r, at + n));
    }
    // Delimited by close.
    if !eof {
        return Ok(Parsed::More);
    }
    r.body = buf[at..].to_vec();
    Ok(Parsed::Done(r, buf.len()))
}

/// Bytes as readable text: printable ASCII as is, the rest escaped; long runs shortened.
pub fn escape(b: &[u8], max: usize) -> String {
    let mut out = String::new();
    for &c in b.iter().take(max) {
        match c {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(c as char),
            _ => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > max {
        out.push_str(&format!("...({} bytes)", b.len()));
    }
    format!("\"{out}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lines_follow_rfc_9112() {
        for ok in [
            &b"5"[..],
            b"00000000000000000005",
            b"5;a",
            b"5;a=b",
            b"5 ;a=b",
            b"5; a = \"b c\"",
            b"5;a=\"\\\"\"",
            b"ffffffffffffffff",
        ] {
            assert!(chunk_line(ok).is_ok(), "{}", escape(ok, 80));
        }
        for bad in [
            &b"5 5"[..],
            b"5\t5",
            b"5 ",
            b"5;",
            b"5;;",
            b"5;=b",
            b"5;a=",
            b"5;a=b c",
            b"5;a=\"x",
            b"5;a\x00",
            b"10000000000000000",
            b"",
            b" 5",
        ] {
            assert!(chunk_line(bad).is_err(), "{}", escape(bad, 80));
        }
    }
}

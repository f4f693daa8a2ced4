//! HTTP/2 clients for tests: the `h2` crate's client over TLS (ALPN `h2`, the test certificate
//! trusted), and a raw frame writer for requests no well-behaved client would send (upper-case
//! names, connection-specific fields, pseudo-headers out of place, floods), with a reader that
//! reports what the server answered frame by frame.

use bytes::Bytes;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::RootCertStore;

use super::tls::{Identity, TlsStream};

/// A TLS connection to `localhost` at `addr` that agreed on `h2` by ALPN.
pub async fn tls(addr: SocketAddr, trusted: &Identity) -> TlsStream {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.der.clone()).unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(super::tls::config(roots, &[b"h2", b"http/1.1"]));
    super::tls::connect_agreeing(&connector, addr, b"h2").await
}

/// An `h2` client connection (its driver spawned).
pub async fn client(addr: SocketAddr, trusted: &Identity) -> h2::client::SendRequest<Bytes> {
    let (send, conn) = h2::client::handshake(tls(addr, trusted).await)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// A response read whole.
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `GET https://localhost{path}` on `send`, with `cookie` if given, read whole.
pub async fn get(
    send: &h2::client::SendRequest<Bytes>,
    path: &str,
    cookie: Option<&str>,
) -> Response {
    let mut req = http::Request::get(format!("https://localhost{path}"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    request(send, req.body(()).unwrap(), None).await
}

/// Send `req` (with `body` as its DATA, if any) and read the response whole.
pub async fn request(
    send: &h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    body: Option<Bytes>,
) -> Response {
    let mut send = send.clone().ready().await.unwrap();
    let (resp, mut stream) = send.send_request(req, body.is_none()).unwrap();
    if let Some(body) = body {
        let mut rest = body;
        while !rest.is_empty() {
            stream.reserve_capacity(rest.len());
            let n = std::future::poll_fn(|cx| stream.poll_capacity(cx))
                .await
                .unwrap()
                .unwrap();
            let part = rest.split_to(n.min(rest.len()));
            stream.send_data(part, rest.is_empty()).unwrap();
        }
    }
    let resp = resp.await.unwrap();
    let (parts, mut recv) = resp.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// A frame the server sent, as the raw client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Headers {
        stream: u32,
        end_stream: bool,
        /// The first byte of the header block: `0x88` is `:status: 200` from the static table.
        first: u8,
    },
    Data {
        stream: u32,
        len: usize,
        end_stream: bool,
    },
    Reset {
        stream: u32,
        code: u32,
    },
    GoAway {
        last: u32,
        code: u32,
    },
    Other(u8),
}

pub const PROTOCOL_ERROR: u32 = 0x1;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// The first header-block byte of `:status: 200` (static table index 8).
pub const STATUS_200: u8 = 0x88;

/// A raw HTTP/2 client: frames written as given, frames read as they come.
pub struct Raw {
    stream: TlsStream,
    buf: Vec<u8>,
}

/// HPACK: a header field as a literal without indexing, with a literal name (RFC 7541 §6.2.2),
/// no Huffman: exactly the bytes given, whatever they are.
pub fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    string(out, name);
    string(out, value);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    // 7-bit prefix integer (RFC 7541 §5.1), H = 0.
    let mut n = s.len();
    if n < 127 {
        out.push(n as u8);
    } else {
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(s);
}

/// A request's header block: the four pseudo-headers of a GET for `path`, then `extra`.
pub fn block(path: &str, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    field(&mut b, b":method", b"GET");
    field(&mut b, b":scheme", b"https");
    field(&mut b, b":authority", b"localhost");
    field(&mut b, b":path", path.as_bytes());
    for (n, v) in extra {
        field(&mut b, n, v);
    }
    b
}

/// One frame: header (length, type, flags, stream) and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub const HEADERS: u8 = 0x1;
pub const DATA: u8 = 0x0;
pub const RST_STREAM: u8 = 0x3;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

impl Raw {
    /// Connect, send the preface and an empty SETTINGS.
    pub async fn connect(addr: SocketAddr, trusted: &Identity) -> Raw {
        let mut stream = tls(addr, trusted).await;
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(0x4, 0, 0, &[]));
        stream.write_all(&hello).await.unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Write `bytes` (frames) in one write; `false` if the server has closed.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok() && self.stream.flush().await.is_ok()
    }

    /// Read frames until `done` says so, the server closes, or `limit` passes; every frame
    /// seen (SETTINGS are acknowledged).
    pub async fn read_until(
        &mut self,
        limit: std::time::Duration,
        done: impl Fn(&[Frame]) -> bool,
    ) -> Vec<Frame> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(f) = self.next_buffered() {
                match f {
                    (0x4, flags, _) if flags & 1 == 0 => {
                        let _ = self.stream.write_all(&frame(0x4, 1, 0, &[])).await;
                    }
                    _ => {}
                }
                seen.push(f.2);
                if done(&seen) {
                    return seen;
                }
            }
            let mut chunk = [0u8; 16384];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match read {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return seen,
            }
        }
    }

    fn next_buffered(&mut self) -> Option<(u8, u8, Frame)> {
        if self.buf.len() < 9 {
            return None;
        }
        let len = (usize::from(self.buf[0]) << 16)
            | (usize::from(self.buf[1]) << 8)
            | usize::from(self.buf[2]);
        if self.buf.len() < 9 + len {
            return None;
        }
        let (kind, flags) = (self.buf[3], self.buf[4]);
        let stream = u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff;
        let payload: Vec<u8> = self.buf[9..9 + len].to_vec();
        self.buf.drain(..9 + len);
        let u32_at = |i: usize| u32::from_be_bytes(payload[i..i + 4].try_into().unwrap());
        let f = match kind {
            0x0 => Frame::Data {
                stream,
                len,
                end_stream: flags & END_STREAM != 0,
            },
            0x1 => {
                let pad = if flags & 0x8 != 0 { 1 } else { 0 };
                let prio = if flags & 0x20 != 0 { 5 } else { 0 };
                Frame::Headers {
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    first: payload.get(pad + prio).copied().unwrap_or(0),
                }
            }
            0x3 => Frame::Reset {
                stream,
                code: u32_at(0),
            },
            0x7 => Frame::GoAway {
                last: u32_at(0) & 0x7fff_ffff,
                code: u32_at(4),
            },
            k => Frame::Other(k),
        };
        Some((kind, flags, f))
    }
}

/// Did `frames` end `stream` with a whole `200` (HEADERS with `:status: 200`, then its end)?
pub fn answered_200(frames: &[Frame], stream: u32) -> bool {
    let ok = frames
        .iter()
        .any(|f| matches!(f, Frame::Headers { stream: s, first, .. } if *s == stream && *first == STATUS_200));
    let ended = frames.iter().any(|f| match f {
        Frame::Headers {
            stream: s,
            end_stream,
            ..
        }
        | Frame::Data {
            stream: s,
            end_stream,
            ..
        } => *s == stream && *end_stream,
        _ => false,
    });
    ok && ended
}

/// The RST_STREAM code the server sent for `stream`, if any.
pub fn reset_of(frames: &[Frame], stream: u32) -> Option<u32> {
    frames.iter().find_map(|f| match f {
        Frame::Reset { stream: s, code } if *s == stream => Some(*code),
        _ => None,
    })
}

/// The GOAWAY code the server sent, if any.
pub fn goaway(frames: &[Frame]) -> Option<u32> {
    frames.iter().find_map(|f| match f {
        Frame::GoAway { code, .. } => Some(*code),
        _ => None,
    })
}

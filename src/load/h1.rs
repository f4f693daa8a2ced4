//! A minimal HTTP/1.1 client for the `http` and `longpoll` flows: one keep-alive connection, a
//! request written from prepared bytes, the response parsed in place in a reused buffer.
//!
//! Heads are parsed by the proxy engine's own parser (`http1::head`); this file reads what GET
//! responses need from it (Set-Cookie, the node header) and bodies by length, chunks or close.
//! No allocation per request once the buffers have grown.

use super::jar::Jar;
use super::stats::ErrorKind;
use super::transport::Io;
use crate::http1::head;
use http::header::HeaderName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response head larger than this is refused (protocol error) rather than buffered.
const MAX_HEAD: usize = 64 * 1024;
/// Body bytes kept per response (a node id, an error text); the rest is read and dropped.
const MAX_KEPT_BODY: usize = 64 * 1024;
const READ_CHUNK: usize = 8 * 1024;

/// What is kept of a response; reused from request to request.
#[derive(Debug, Default)]
pub(crate) struct Response {
    pub status: u16,
    /// The node header's value (empty when absent).
    pub node: Vec<u8>,
    pub has_node: bool,
    /// The body, when asked to keep it or when the status is an error (up to 64 KiB).
    pub body: Vec<u8>,
    /// False when the server will close the connection after this response.
    pub keep_alive: bool,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..400).contains(&self.status)
    }
}

pub(crate) struct Conn {
    stream: Io,
    /// Bytes read and not yet consumed start at `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// Header positions of the current response head, reused.
    spans: Vec<head::Field>,
}

/// `GET path HTTP/1.1` with Host and the jar's cookies (and `Connection: close` when `close`),
/// rendered into `out`.
pub(crate) fn render_get(out: &mut Vec<u8>, path: &str, host: &[u8], jar: &Jar, close: bool) {
    out.clear();
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host);
    if let Some(cookie) = jar.header() {
        out.extend_from_slice(b"\r\nCookie: ");
        out.extend_from_slice(cookie.as_bytes());
    }
    if close {
        out.extend_from_slice(b"\r\nConnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    ErrorKind::of_io(e, false)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_usize(digits: &[u8], radix: u32) -> Option<usize> {
    let text = std::str::from_utf8(digits).ok()?.trim();
    usize::from_str_radix(text, radix).ok()
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

impl Conn {
    pub fn new(stream: Io) -> Conn {
        Conn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            spans: Vec::new(),
        }
    }

    /// Read more bytes into the buffer; the peer closing is an error here.
    async fn fill(&mut self) -> Result<(), ErrorKind> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err(ErrorKind::Io),
            Ok(_) => Ok(()),
            Err(e) => Err(io_kind(&e)),
        }
    }

    /// Send `request` and read its whole response into `resp`; cookies go into `jar`.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        node_header: &HeaderName,
        keep_body: bool,
        jar: &mut Jar,
        resp: &mut Response,
    ) -> Result<(), ErrorKind> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| io_kind(&e))?;
        loop {
            let framing = self.head(node_header, jar, resp).await?;
            let keep = keep_body || !resp.ok();
            resp.body.clear();
            // 1xx answers precede the real one (the parser gives them, 204 and 304 no body).
            self.body(framing, keep, resp).await?;
            if !(100..=199).contains(&resp.status) {
                break;
            }
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        Ok(())
    }

    /// Read and parse a response head, with the proxy engine's parser (`http1::head`): one
    /// definition of HTTP/1.1 framing for the proxy and the tool that tests it.
    async fn head(
        &mut self,
        node_header: &HeaderName,
        jar: &mut Jar,
        resp: &mut Response,
    ) -> Result<Framing, ErrorKind> {
        let parsed = loop {
            match head::parse_response(&self.buf[self.pos..], &mut self.spans, false) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) if self.buf.len() - self.pos > MAX_HEAD => {
                    return Err(ErrorKind::Protocol)
                }
                Ok(None) => self.fill().await?,
                Err(_) => return Err(ErrorKind::Protocol),
            }
        };
        let head_bytes = &self.buf[self.pos..self.pos + parsed.len];
        resp.status = parsed.status;
        resp.keep_alive = parsed.keep_alive;
        resp.node.clear();
        resp.has_node = false;
        let mut cookies = false;
        for span in &self.spans {
            let (name, value) = (span.name(head_bytes), span.value(head_bytes));
            if name.eq_ignore_ascii_case(b"set-cookie") {
                cookies |= jar.store_one(value);
            } else if name.eq_ignore_ascii_case(node_header.as_str().as_bytes()) {
                resp.node.clear();
                resp.node.extend_from_slice(value);
                resp.has_node = true;
            }
        }
        if cookies {
            jar.render();
        }
        self.pos += parsed.len;
        Ok(match parsed.framing {
            head::Framing::Empty => Framing::Length(0),
            head::Framing::Length(n) => {
                Framing::Length(usize::try_from(n).map_err(|_| ErrorKind::Protocol)?)
            }
            head::Framing::Chunked => Framing::Chunked,
            head::Framing::UntilClose => Framing::Close,
        })
    }

    /// Consume `n` body bytes from the buffer (reading as needed), keeping them if asked.
    async fn take(
        &mut self,
        mut n: usize,
        keep: bool,
        resp: &mut Response,
    ) -> Result<(), ErrorKind> {
        loop {
            let have = (self.buf.len() - self.pos).min(n);
            if keep {
                let room = MAX_KEPT_BODY.saturating_sub(resp.body.len()).min(have);
                resp.body
                    .extend_from_slice(&self.buf[self.pos..self.pos + room]);
            }
            self.pos += have;
            n -= have;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// The next CRLF-terminated line's length (without CRLF), reading as needed.
    async fn line(&mut self) -> Result<usize, ErrorKind> {
        loop {
            if let Some(i) = find(&self.buf[self.pos..], b"\r\n") {
                return Ok(i);
            }
            if self.buf.len() - self.pos > MAX_HEAD {
                return Err(ErrorKind::Protocol);
            }
            self.fill().await?;
        }
    }

    async fn body(
        &mut self,
        framing: Framing,
        keep: bool,
        resp: &mut Response,
    ) -> Result<(), ErrorKind> {
        match framing {
            Framing::Length(n) => self.take(n, keep, resp).await,
            Framing::Chunked => loop {
                let len = self.line().await?;
                let size_field = &self.buf[self.pos..self.pos + len];
                let size_field = size_field.split(|&b| b == b';').next().unwrap_or_default();
                let size = parse_usize(size_field, 16).ok_or(ErrorKind::Protocol)?;
                self.pos += len + 2;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        let len = self.line().await?;
                        self.pos += len + 2;
                        if len == 0 {
                            return Ok(());
                        }
                    }
                }
                self.take(size, keep, resp).await?;
                let len = self.line().await?;
                if len != 0 {
                    return Err(ErrorKind::Protocol);
                }
                self.pos += 2;
            },
            Framing::Close => loop {
                let have = self.buf.len() - self.pos;
                self.take(have, keep, resp).await?;
                self.buf.reserve(READ_CHUNK);
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(io_kind(&e)),
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// A server that answers each request (one per "\r\n\r\n") with the next canned response.
    async fn server(answers: Vec<&'static [u8]>) -> (TcpStream, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for answer in answers {
                loop {
                    let mut b = [0u8; 1024];
                    let n = s.read(&mut b).await.unwrap();
                    seen.extend_from_slice(&b[..n]);
                    if seen.ends_with(b"\r\n\r\n") {
                        break;
                    }
                }
                // Split the answer to exercise partial reads.
                let mid = answer.len() / 2;
                s.write_all(&answer[..mid]).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
                s.write_all(&answer[mid..]).await.unwrap();
            }
            seen
        });
        (TcpStream::connect(addr).await.unwrap(), task)
    }

    #[tokio::test]
    async fn lengths_chunks_cookies_and_close() {
        let answers: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Node: node-a\r\nSet-Cookie: t=1; Path=/\r\n\r\nnode-a",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nnod\r\n3\r\ne-b\r\n0\r\nTrailer: 1\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 18\r\n\r\nSession ID unknown",
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        ];
        let (tcp, server) = server(answers).await;
        let mut conn = Conn::new(Io::Tcp(tcp));
        let mut jar = Jar::default();
        let mut resp = Response::default();
        let mut req = Vec::new();
        let node = HeaderName::from_static("x-node");

        render_get(&mut req, "/whoami", b"h:1", &jar, false);
        conn.exchange(&req, &node, false, &mut jar, &mut resp)
            .await
            .unwrap();
        assert_eq!(
            (resp.status, resp.has_node, &resp.node[..]),
            (200, true, &b"node-a"[..])
        );
        assert!(resp.body.is_empty() && resp.keep_alive && resp.ok());
        assert_eq!(jar.header().unwrap(), "t=1");

        render_get(&mut req, "/b", b"h:1", &jar, true);
        assert_eq!(
            req,
            b"GET /b HTTP/1.1\r\nHost: h:1\r\nCookie: t=1\r\nConnection: close\r\n\r\n"
        );
        render_get(&mut req, "/b", b"h:1", &jar, false);
        assert_eq!(req, b"GET /b HTTP/1.1\r\nHost: h:1\r\nCookie: t=1\r\n\r\n");
        conn.exchange(&req, &node, true, &mut jar, &mut resp)
            .await
            .unwrap();
        assert_eq!(
            (resp.status, &resp.body[..], resp.has_node),
            (200, &b"node-b"[..], false)
        );

        conn.exchange(&req, &node, false, &mut jar, &mut resp)
            .await
            .unwrap();
        assert_eq!(resp.status, 400);
        assert_eq!(resp.body, b"Session ID unknown", "error bodies are kept");

        conn.exchange(&req, &node, false, &mut jar, &mut resp)
            .await
            .unwrap();
        assert_eq!(resp.status, 204);
        assert!(!resp.keep_alive);
        let seen = server.await.unwrap();
        assert_eq!(seen.windows(4).filter(|w| w == b"GET ").count(), 4);
    }

    #[tokio::test]
    async fn body_until_close_and_errors() {
        let (tcp, _server) = server(vec![b"HTTP/1.0 200 OK\r\n\r\nuntil close"]).await;
        let mut conn = Conn::new(Io::Tcp(tcp));
        let (mut jar, mut resp) = (Jar::default(), Response::default());
        let node = HeaderName::from_static("x-node");
        conn.exchange(b"GET / HTTP/1.1\r\n\r\n", &node, true, &mut jar, &mut resp)
            .await
            .unwrap();
        assert_eq!(
            (resp.status, &resp.body[..], resp.keep_alive),
            (200, &b"until close"[..], false)
        );

        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let (tcp, _server) = server(vec![bad]).await;
            let mut conn = Conn::new(Io::Tcp(tcp));
            let got = conn
                .exchange(b"GET / HTTP/1.1\r\n\r\n", &node, true, &mut jar, &mut resp)
                .await;
            assert_eq!(
                got,
                Err(ErrorKind::Protocol),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // The server closing mid-body is an IO error, not a hang.
        let (tcp, _server) =
            server(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort"]).await;
        let mut conn = Conn::new(Io::Tcp(tcp));
        let got = conn
            .exchange(b"GET / HTTP/1.1\r\n\r\n", &node, true, &mut jar, &mut resp)
            .await;
        assert_eq!(got, Err(ErrorKind::Io));
    }
}

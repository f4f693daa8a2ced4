//! The recording node: `tests/differential/recorder.js`, Node.js's `http` server (llhttp, strict)
//! as a child process, answering every request `200` and recording what it parsed. The test reads
//! the record over the recorder's control port, never through the proxy.

use base64::Engine as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

/// What llhttp made of the bytes on one connection, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Open {
        conn: u64,
    },
    Close {
        conn: u64,
    },
    /// A request whose head was parsed; `complete` once its body ended.
    Request {
        conn: u64,
        method: String,
        url: String,
        version: String,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        complete: bool,
    },
    /// A request llhttp handed over as an upgrade (or CONNECT); the recorder answered `101`.
    Upgrade {
        conn: u64,
        method: String,
        url: String,
        headers: Vec<(String, Vec<u8>)>,
    },
    /// Bytes that arrived after an upgrade's head, as one read.
    Tunnel {
        conn: u64,
        data: Vec<u8>,
    },
    /// llhttp refused the bytes.
    ClientError {
        conn: u64,
        code: String,
        reason: String,
        raw: Vec<u8>,
    },
}

impl Event {
    /// Open and close are bookkeeping; everything else is something the node parsed.
    pub fn is_parse(&self) -> bool {
        !matches!(self, Event::Open { .. } | Event::Close { .. })
    }

    pub fn conn(&self) -> u64 {
        match self {
            Event::Open { conn }
            | Event::Close { conn }
            | Event::Request { conn, .. }
            | Event::Upgrade { conn, .. }
            | Event::Tunnel { conn, .. }
            | Event::ClientError { conn, .. } => *conn,
        }
    }

    /// One line for failure reports.
    pub fn describe(&self) -> String {
        use super::strict::escape;
        match self {
            Event::Open { conn } => format!("#{conn} open"),
            Event::Close { conn } => format!("#{conn} close"),
            Event::Request {
                conn,
                method,
                url,
                version,
                headers,
                body,
                complete,
            } => format!(
                "#{conn} {method} {url} HTTP/{version} [{}] body {}{}",
                headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
                escape(body, 60),
                if *complete { "" } else { " (INCOMPLETE)" }
            ),
            Event::Upgrade {
                conn, method, url, ..
            } => format!("#{conn} UPGRADE {method} {url}"),
            Event::Tunnel { conn, data } => format!("#{conn} tunnel {}", escape(data, 80)),
            Event::ClientError {
                conn,
                code,
                reason,
                raw,
            } => format!(
                "#{conn} CLIENT ERROR {code} ({reason}) on {}",
                escape(raw, 120)
            ),
        }
    }
}

/// The recorder process; killed by its PID when dropped.
pub struct Recorder {
    child: Child,
    pub addr: SocketAddr,
    control: AsyncBufReader<TcpStream>,
}

fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or(""))
        .expect("recorder base64")
}

fn pairs(v: &serde_json::Value) -> Vec<(String, Vec<u8>)> {
    let flat: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    flat.chunks(2)
        .map(|p| (p[0].to_string(), latin1(p.get(1).copied().unwrap_or(""))))
        .collect()
}

impl Recorder {
    pub async fn start() -> Recorder {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential/recorder.js");
        let mut child = Command::new("node")
            .arg(&script)
            // Kept open: the recorder exits when its stdin closes (if this process dies).
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is needed for the differential tests");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("recorder output");
        let ports: Vec<u16> = line
            .trim()
            .strip_prefix("PORTS ")
            .unwrap_or_else(|| panic!("recorder said {line:?}"))
            .split(' ')
            .map(|p| p.parse().expect("port"))
            .collect();
        let control = TcpStream::connect(("127.0.0.1", ports[1]))
            .await
            .expect("recorder control port");
        Recorder {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            control: AsyncBufReader::new(control),
        }
    }

    /// Every event since the last call, oldest first (the recorder forgets them).
    pub async fn take(&mut self) -> Vec<Event> {
        self.control
            .get_mut()
            .write_all(b"TAKE\n")
            .await
            .expect("recorder control");
        let mut line = String::new();
        self.control
            .read_line(&mut line)
            .await
            .expect("recorder control");
        let all: Vec<serde_json::Value> = serde_json::from_str(&line).expect("recorder json");
        all.iter().map(event).collect()
    }
}

fn event(v: &serde_json::Value) -> Event {
    let conn = v["conn"].as_u64().unwrap_or(0);
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    match v["type"].as_str().unwrap_or("") {
        "open" => Event::Open { conn },
        "close" => Event::Close { conn },
        "request" => Event::Request {
            conn,
            method: s("method"),
            url: String::from_utf8_lossy(&latin1(&s("url"))).into_owned(),
            version: s("httpVersion"),
            headers: pairs(&v["rawHeaders"]),
            body: b64(&v["body"]),
            complete: v["complete"].as_bool().unwrap_or(false),
        },
        "upgrade" => Event::Upgrade {
            conn,
            method: s("method"),
            url: s("url"),
            headers: pairs(&v["rawHeaders"]),
        },
        "tunnel" => Event::Tunnel {
            conn,
            data: b64(&v["data"]),
        },
        _ => Event::ClientError {
            conn,
            code: s("code"),
            reason: s("reason"),
            raw: b64(&v["rawPacket"]),
        },
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

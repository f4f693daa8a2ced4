//! The soak's DNS server: one name on 127.0.0.1 (UDP, port 0) whose A records the churn changes
//! while tether runs, in real DNS wire format (hickory-proto), on a thread of its own.

use crate::procs::lock;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the server thread shares with the bench.
struct Zone {
    /// Lower-case, without the trailing dot.
    name: String,
    addresses: Mutex<Vec<Ipv4Addr>>,
    queries: AtomicU64,
    stop: AtomicBool,
}

/// The server; stops when dropped.
pub struct Dns {
    pub addr: SocketAddr,
    zone: Arc<Zone>,
    thread: Option<JoinHandle<()>>,
}

impl Dns {
    /// Serve `name` (no records until `set`).
    pub fn start(name: &str) -> Result<Dns, String> {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("DNS bind: {e}"))?;
        let addr = socket.local_addr().map_err(|e| format!("DNS addr: {e}"))?;
        // Short reads, so the thread sees the stop flag.
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| format!("DNS socket: {e}"))?;
        let zone = Arc::new(Zone {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            addresses: Mutex::new(Vec::new()),
            queries: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let z = Arc::clone(&zone);
        let thread = std::thread::Builder::new()
            .name("soak-dns".into())
            .spawn(move || serve(&socket, &z))
            .map_err(|e| format!("DNS thread: {e}"))?;
        Ok(Dns {
            addr,
            zone,
            thread: Some(thread),
        })
    }

    /// Make the name resolve to exactly `ips`.
    pub fn set(&self, ips: &[Ipv4Addr]) {
        *lock(&self.zone.addresses) = ips.to_vec();
    }

    /// Queries answered so far.
    pub fn queries(&self) -> u64 {
        self.zone.queries.load(Relaxed)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.zone.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &UdpSocket, zone: &Zone) {
    let mut buf = vec![0u8; 4096];
    while !zone.stop.load(Relaxed) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let reply = answer(&query, zone);
        if let Ok(bytes) = reply.to_vec() {
            if socket.send_to(&bytes, peer).is_ok() {
                zone.queries.fetch_add(1, Relaxed);
            }
        }
    }
}

/// A records of our name (TTL 0: nothing may cache them); the name with no AAAA answers the
/// AAAA query with no records; any other name is NXDOMAIN.
fn answer(query: &Message, zone: &Zone) -> Message {
    let mut m = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.queries = query.queries.clone();
    let mut known = false;
    for q in &query.queries {
        let name = q
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if name != zone.name {
            continue;
        }
        known = true;
        if q.query_type() == RecordType::A {
            for ip in lock(&zone.addresses).iter() {
                m.answers
                    .push(Record::from_rdata(q.name().clone(), 0, RData::A(A(*ip))));
            }
        }
    }
    if !known {
        m.metadata.response_code = ResponseCode::NXDomain;
    }
    m
}

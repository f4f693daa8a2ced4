//! A real DNS server on 127.0.0.1 (UDP, port 0) whose A/AAAA records the test changes while
//! tether runs, and which can be told to fail (SERVFAIL). Wire format by hickory-proto.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Zone {
    /// Lower-case name without the trailing dot -> addresses.
    records: HashMap<String, Vec<IpAddr>>,
    servfail: bool,
}

/// The server; stops when dropped.
pub struct Dns {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    pub async fn start() -> Dns {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind the test DNS server");
        let addr = socket.local_addr().expect("local addr");
        let zone = Arc::new(Mutex::new(Zone::default()));
        let z = Arc::clone(&zone);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&query, &z.lock().unwrap());
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        Dns { addr, zone, task }
    }

    /// Make `name` resolve to exactly `ips` (empty: the name does not exist).
    pub fn set(&self, name: &str, ips: &[IpAddr]) {
        let mut z = self.zone.lock().unwrap();
        if ips.is_empty() {
            z.records.remove(name);
        } else {
            z.records.insert(name.to_string(), ips.to_vec());
        }
    }

    /// Answer every query with SERVFAIL (`true`) or normally again (`false`).
    pub fn servfail(&self, on: bool) {
        self.zone.lock().unwrap().servfail = on;
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(query: &Message, zone: &Zone) -> Message {
    let id = query.metadata.id;
    if zone.servfail {
        let mut m = Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
        m.queries = query.queries.clone();
        return m;
    }
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
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
        let Some(ips) = zone.records.get(&name) else {
            continue;
        };
        known = true;
        for ip in ips {
            let rdata = match (q.query_type(), ip) {
                (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
                (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
                _ => continue,
            };
            // TTL 0: nothing may cache these, the test changes them.
            m.answers
                .push(Record::from_rdata(q.name().clone(), 0, rdata));
        }
    }
    if !known {
        m.metadata.response_code = ResponseCode::NXDomain;
    }
    m
}

//! A WebSocket node that keeps a record: tungstenite (a strict RFC 6455 peer) behind an HTTP
//! upgrade, greeting each connection with `{"node": ID}`, echoing every data message, and noting
//! every Close it receives (its code), so a test sees what a node hears when tether closes.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// What a node heard.
#[derive(Default)]
pub struct Heard {
    /// Close codes received, in order (1006: the connection ended without a Close).
    pub closes: Mutex<Vec<u16>>,
    /// Connections accepted, and open now.
    pub accepted: AtomicUsize,
    pub open: AtomicUsize,
    /// Data messages received (echoed).
    pub messages: AtomicUsize,
}

pub struct WsNode {
    pub addr: SocketAddr,
    pub heard: Arc<Heard>,
    task: tokio::task::JoinHandle<()>,
}

impl WsNode {
    pub async fn start(id: &str) -> WsNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        WsNode::on(id, listener)
    }

    /// A node on a listener the test bound (a fixed address, as for DNS-discovered nodes).
    pub fn on(id: &str, listener: TcpListener) -> WsNode {
        let addr = listener.local_addr().unwrap();
        let heard = Arc::new(Heard::default());
        let (h, name) = (Arc::clone(&heard), id.to_string());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (h, name) = (Arc::clone(&h), name.clone());
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    h.accepted.fetch_add(1, Ordering::Relaxed);
                    h.open.fetch_add(1, Ordering::Relaxed);
                    let hello = serde_json::json!({ "node": name }).to_string();
                    let _ = ws.send(Message::Text(hello.into())).await;
                    let mut code = 1006;
                    while let Some(m) = ws.next().await {
                        match m {
                            Ok(Message::Close(c)) => {
                                code = c.map_or(1005, |c| u16::from(c.code));
                                break;
                            }
                            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                                h.messages.fetch_add(1, Ordering::Relaxed);
                                if ws.send(m).await.is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(tokio_tungstenite::tungstenite::Error::Protocol(_)) => {
                                code = 1002;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    h.closes.lock().unwrap().push(code);
                    h.open.fetch_sub(1, Ordering::Relaxed);
                    // A Close received is answered by tungstenite itself on the next flush.
                    let _ = ws.flush().await;
                });
            }
        });
        WsNode { addr, heard, task }
    }

    pub fn closes(&self) -> Vec<u16> {
        self.heard.closes.lock().unwrap().clone()
    }

    pub fn open(&self) -> usize {
        self.heard.open.load(Ordering::Relaxed)
    }
}

impl Drop for WsNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

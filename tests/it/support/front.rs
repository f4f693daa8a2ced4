//! A TCP front that hands accepted connections to two backends in turn: two tether replicas
//! behind one address, as a cloud load balancer spreads connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// A TCP front that hands accepted connections to two backends in turn, counting them.
pub struct Front {
    pub addr: SocketAddr,
    accepted: Arc<[AtomicUsize; 2]>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    pub async fn start(backends: [SocketAddr; 2]) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind front");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let counts = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            for i in 0.. {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                counts[i % 2].fetch_add(1, Ordering::Relaxed);
                let backend = backends[i % 2];
                tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                    }
                });
            }
        });
        Front {
            addr,
            accepted,
            task,
        }
    }

    pub fn counts(&self) -> [usize; 2] {
        [0, 1].map(|i| self.accepted[i].load(Ordering::Relaxed))
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! Demo realtime nodes: small HTTP/1.1 + WebSocket servers standing in for app nodes behind tether
//! (used by `tether demo` and as the backends of the integration tests).
//!
//! This folder owns the demo node: `mod.rs` the [`Node`] handle, its shared state and the
//! accept loop; `routes.rs` dispatches requests and builds plain responses; `endpoints.rs` holds
//! the event stream and the echo; `websocket.rs` the upgrade and the echoing socket; `body.rs`
//! the response body that can stream; `page.rs` the HTML page. It may import nothing from the
//! rest of tether: the nodes stand in for someone else's app, so a bug in the proxy must not be
//! able to hide behind code the nodes share with it.

mod body;
mod cluster;
mod endpoints;
mod page;
mod reply;
mod routes;
mod websocket;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use cluster::Cluster;
pub use page::html_escape;
pub use page::PAGE;
use routes::handle;

/// Counters for tests: total HTTP requests served, WebSocket upgrades accepted, currently open WebSockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub requests: u64,
    pub upgrades: u64,
    pub open_websockets: u64,
}

/// A running demo node. Dropping the handle does NOT stop it; call `stop`.
pub struct Node {
    shared: Arc<Shared>,
    addr: SocketAddr,
    // Serialises `stop` so a second caller also returns only once the listener is gone.
    stopping: tokio::sync::Mutex<()>,
}

/// Everything the accept loop and connection tasks share; per-request values are built once here.
struct Shared {
    id: Arc<str>,
    id_body: Bytes,
    x_node: HeaderValue,
    page: Bytes,
    http: http1::Builder,
    requests: AtomicU64,
    upgrades: AtomicU64,
    open_websockets: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// The demo cluster this node belongs to (`tether demo` only): the page's stop and start
    /// buttons reach it through any node.
    cluster: cluster::Handle,
    // Every task of the node (accept loop, connections, WebSockets, stream producers), so `stop`
    // can abort them all and wait until their sockets are dropped.
    tasks: Mutex<JoinSet<()>>,
}

impl Node {
    /// Bind `addr` (use port 0 for an ephemeral port) and serve in the background on the current tokio runtime.
    pub async fn spawn(id: &str, addr: SocketAddr) -> io::Result<Node> {
        Node::spawn_in(id, addr, cluster::Handle::new()).await
    }

    /// Like [`spawn`](Self::spawn), as a member of a demo cluster.
    async fn spawn_in(id: &str, addr: SocketAddr, cluster: cluster::Handle) -> io::Result<Node> {
        let x_node = HeaderValue::from_str(id).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "node id must be a valid header value",
            )
        })?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            id: id.into(),
            id_body: Bytes::copy_from_slice(id.as_bytes()),
            x_node,
            page: Bytes::from(PAGE.replace("{{NODE}}", &html_escape(id))),
            http: http1::Builder::new(),
            requests: AtomicU64::new(0),
            upgrades: AtomicU64::new(0),
            open_websockets: AtomicU64::new(0),
            shutdown: watch::Sender::new(false),
            cluster,
            tasks: Mutex::new(JoinSet::new()),
        });
        shared.spawn(accept_loop(shared.clone(), listener));
        tracing::info!(node = id, %addr, "demo node listening");
        Ok(Node {
            shared,
            addr,
            stopping: tokio::sync::Mutex::new(()),
        })
    }

    pub fn id(&self) -> &str {
        &self.shared.id
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Simulate a node dying: close the listener (new connections are refused) and abort every open connection and WebSocket at once. Idempotent. Returns when the listener is closed.
    pub async fn stop(&self) {
        let _serial = self.stopping.lock().await;
        if !self.shared.shutdown.send_replace(true) {
            tracing::info!(node = %self.shared.id, addr = %self.addr, "demo node stopped");
        }
        // Aborting drops each task's future, and with it the listener and every socket; no close
        // frames or final chunks are sent, like a crashed process.
        let mut tasks = std::mem::take(&mut *self.shared.tasks());
        tasks.shutdown().await;
    }

    /// Counters for tests: total HTTP requests served, WebSocket upgrades accepted, currently open WebSockets.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            requests: self.shared.requests.load(Relaxed),
            upgrades: self.shared.upgrades.load(Relaxed),
            open_websockets: self.shared.open_websockets.load(Relaxed),
        }
    }
}

impl Shared {
    fn tasks(&self) -> MutexGuard<'_, JoinSet<()>> {
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `fut` as a node task. It also watches the shutdown flag, which covers a task spawned
    /// while `stop` is already draining the set (and so never aborted by it).
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut stopped = self.shutdown.subscribe();
        let task = async move {
            tokio::select! {
                () = fut => {}
                () = async {
                    // A dropped sender (impossible while Shared lives) must not end the task.
                    if stopped.wait_for(|stopped| *stopped).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => {}
            }
        };
        let mut tasks = self.tasks();
        while tasks.try_join_next().is_some() {} // reap finished tasks so the set stays small
        tasks.spawn(task);
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Usually fd exhaustion; back off instead of spinning.
                tracing::warn!(node = %shared.id, %err, "demo node accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_shared = shared.clone();
        shared.spawn(async move {
            let svc_shared = conn_shared.clone();
            let svc = service_fn(move |req| handle(svc_shared.clone(), req));
            let conn = conn_shared.http.serve_connection(TokioIo::new(stream), svc);
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(node = %conn_shared.id, %err, "demo connection error");
            }
        });
    }
}

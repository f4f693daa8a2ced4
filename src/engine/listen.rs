//! Listening sockets and what happens between `accept` and the first request: the PROXY
//! protocol header, the per-IP connection cap, and the TLS handshake.
//!
//! Each worker has one socket per configured address (`SO_REUSEPORT`) and one accept loop per
//! socket. What a connection gets on an address (PROXY protocol, TLS and its certificate) is read
//! from the runtime snapshot when the connection is accepted, so a reload changes it for the
//! next connection. A reload that adds or removes addresses is applied by each worker's
//! [`Acceptors::reconcile`]: new addresses are bound, removed ones stop accepting (their open
//! connections carry on). Every socket is recorded in the [`registry`] so a binary upgrade can
//! hand all of them to the new process.

use super::{conn, per_ip, Limits, ShutdownSignal};
use crate::http1::proxy_protocol;
use crate::runtime::counters;
use crate::runtime::failure::Refusal;
use crate::runtime::Shared;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Pending connections the kernel queues per listener.
const BACKLOG: i32 = 4096;

/// A bound listening socket and the configured address it serves.
pub struct Bound {
    pub socket: std::net::TcpListener,
    pub address: SocketAddr,
}

/// Bind one listening socket with `SO_REUSEPORT`, so every worker can have its own.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: set once here instead of
    // one setsockopt per connection (it matters at thousands of new connections a second).
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Every listening socket of the process, by worker: what a binary upgrade hands over.
pub mod registry {
    use super::*;

    struct Entry {
        address: SocketAddr,
        worker: usize,
        fd: OwnedFd,
    }

    static SOCKETS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

    fn sockets() -> std::sync::MutexGuard<'static, Vec<Entry>> {
        SOCKETS.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record `socket` (a duplicate of its descriptor) as worker `worker`'s for `address`.
    pub fn add(address: SocketAddr, worker: usize, socket: &std::net::TcpListener) {
        match socket.try_clone() {
            Ok(dup) => sockets().push(Entry {
                address,
                worker,
                fd: OwnedFd::from(dup),
            }),
            Err(e) => {
                tracing::warn!(%address, error = %e, "cannot keep a listener for a binary upgrade")
            }
        }
    }

    /// Forget worker `worker`'s socket for `address` (it stopped accepting).
    pub fn remove(address: SocketAddr, worker: usize) {
        sockets().retain(|e| !(e.address == address && e.worker == worker));
    }

    /// A duplicate of every listening socket, with its address, in worker order: what a new
    /// binary inherits.
    pub fn handoff() -> Vec<(SocketAddr, OwnedFd)> {
        let mut all: Vec<_> = sockets()
            .iter()
            .filter_map(|e| Some((e.worker, e.address, e.fd.try_clone().ok()?)))
            .collect();
        all.sort_by_key(|(w, a, _)| (*w, *a));
        all.into_iter().map(|(_, a, fd)| (a, fd)).collect()
    }

    /// Forget every socket (the process is stopping; nothing will be handed over).
    pub fn clear() {
        sockets().clear();
    }
}

/// One worker's accept loops, by configured address.
pub struct Acceptors {
    worker: usize,
    runtime: &'static Shared,
    limits: Limits,
    shutdown: ShutdownSignal,
    loops: HashMap<SocketAddr, oneshot::Sender<()>>,
    /// The snapshot the loops were last reconciled with.
    seen: Option<Arc<crate::runtime::Runtime>>,
}

impl Acceptors {
    pub fn new(
        worker: usize,
        runtime: &'static Shared,
        limits: Limits,
        shutdown: ShutdownSignal,
    ) -> Acceptors {
        Acceptors {
            worker,
            runtime,
            limits,
            shutdown,
            loops: HashMap::new(),
            seen: None,
        }
    }

    /// Start accepting on `b` (on this worker's runtime).
    pub fn start(&mut self, b: Bound) {
        let listener = match tokio::net::TcpListener::from_std(b.socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(address = %b.address, error = %e, "cannot register a listener");
                return;
            }
        };
        let (stop, stopped) = oneshot::channel();
        self.loops.insert(b.address, stop);
        tokio::spawn(accept_loop(
            listener,
            b.address,
            self.worker,
            self.runtime,
            self.limits,
            self.shutdown.clone(),
            stopped,
        ));
    }

    /// Bring the accept loops in line with the runtime's listeners after a reload: bind the
    /// addresses that appeared, stop accepting on those that went.
    pub fn reconcile(&mut self) {
        let rt = self.runtime.load_full();
        if self.seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &rt)) {
            return;
        }
        let gone: Vec<SocketAddr> = self
            .loops
            .keys()
            .filter(|a| rt.listener(**a).is_none())
            .copied()
            .collect();
        for address in gone {
            if let Some(stop) = self.loops.remove(&address) {
                let _ = stop.send(());
                if self.worker == 0 {
                    tracing::info!(%address, "listener removed by reload: no new connections there; open ones carry on");
                }
            }
        }
        for l in &rt.listeners {
            if self.loops.contains_key(&l.address) {
                continue;
            }
            match bind(l.address) {
                Ok(socket) => {
                    registry::add(l.address, self.worker, &socket);
                    if self.worker == 0 {
                        tracing::info!(address = %l.address, "listener added by reload");
                    }
                    self.start(Bound {
                        socket,
                        address: l.address,
                    });
                }
                Err(e) => {
                    tracing::error!(address = %l.address, error = %e, "cannot listen on an address the reloaded config added")
                }
            }
        }
        self.seen = Some(rt);
    }
}

/// Accept connections until shutdown (or until this address leaves the config); each gets its
/// own task on this worker.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    address: SocketAddr,
    worker: usize,
    runtime: &'static Shared,
    limits: Limits,
    mut shutdown: ShutdownSignal,
    mut stop: oneshot::Receiver<()>,
) {
    let mut fd_warned = false;
    loop {
        let accepted = tokio::select! {
            biased;
            // Dropping the listener closes it: new connections are refused from here on.
            _ = shutdown.changed() => break,
            _ = &mut stop => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                fd_warned = false;
                let rt = runtime.load();
                let Some(spec) = rt.listener(address) else {
                    // The address left the config a moment ago: this loop is about to stop.
                    continue;
                };
                let tls = spec
                    .tls
                    .as_ref()
                    .map(|c| tokio_rustls::TlsAcceptor::from(Arc::clone(c)));
                let proxy_protocol = spec.proxy_protocol;
                let h2c = spec.h2c;
                drop(rt);
                tokio::spawn(start(
                    stream,
                    peer,
                    tls,
                    Options {
                        proxy_protocol,
                        h2c,
                    },
                    runtime,
                    limits,
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                // Out of descriptors: say so once per episode, and give closing connections a
                // moment instead of spinning on accept.
                if out_of_descriptors(&e) {
                    if !fd_warned {
                        tracing::warn!(error = %e, "open-file limit reached: new connections wait until others close");
                        fd_warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else {
                    tracing::debug!(error = %e, "accept failed");
                }
            }
        }
    }
    registry::remove(address, worker);
}

/// EMFILE or ENFILE: the process or the system has no descriptor left for a new connection.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23) | Some(24))
}

/// What a listener's connections start with besides TLS.
#[derive(Clone, Copy)]
struct Options {
    proxy_protocol: bool,
    /// HTTP/2 with prior knowledge on a plain listener.
    h2c: bool,
}

/// One accepted connection: PROXY header, per-IP cap, TLS, then the connection loop (HTTP/1.1,
/// or HTTP/2 when ALPN chose `h2` or a plain listener with `h2c` sees the preface).
async fn start(
    stream: TcpStream,
    mut peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    options: Options,
    runtime: &'static Shared,
    limits: Limits,
    shutdown: ShutdownSignal,
) {
    let counted = counters::global::Connection::open();
    if options.proxy_protocol {
        // Boxed: its timer and peek buffer would otherwise be in every connection's task.
        let header = Box::pin(tokio::time::timeout(
            limits.head_timeout,
            read_proxy_header(&stream),
        ));
        match header.await {
            Ok(Ok(Some(client))) => peer = client,
            Ok(Ok(None)) => {}
            _ => {
                // No valid PROXY header: this connection did not come through the balancer we
                // were told about. Close it without a word.
                tracing::debug!(client = %peer, "connection without a valid PROXY header closed");
                return;
            }
        }
    }
    // Counted against the client's IP until the connection ends.
    let slot = match limits.max_connections_per_ip {
        0 => None,
        cap => match per_ip::enter(peer.ip(), cap) {
            Some(slot) => Some(slot),
            None => {
                tracing::debug!(client = %peer, cap, "too many connections from this address");
                // Boxed: a future is as large as its largest state, and this cold path must
                // not grow every connection's task.
                Box::pin(too_many(stream, tls)).await;
                return;
            }
        },
    };
    // The connection's count and its per-IP slot go along to a tunnel it becomes.
    let held = (counted, slot);
    match tls {
        None if options.h2c => {
            // Boxed: the HTTP/2 path is cold on plain listeners and must not grow this task.
            Box::pin(serve_h2c(stream, peer, runtime, limits, shutdown, held)).await;
        }
        // Boxed too, though it is the hot path: the task's future is copied whole when it is
        // spawned and at each change of its stage (tokio moves it into the task, then writes
        // its output and its end over it, three copies of its full size per connection). The
        // connection loop's state is kilobytes; behind a box the task holds a pointer, and
        // a new connection costs one allocation more and about 3% fewer instructions
        // (callgrind, 2,000 new connections through one worker).
        None => {
            let serve = conn::serve(stream, peer, runtime, limits, shutdown, false);
            if let Some(tunnel) = Box::pin(serve).await {
                relay_apart(tunnel, held);
            }
        }
        // Boxed for the same reason: rustls' connection state is kilobytes, and plain
        // connections must not carry its size.
        Some(acceptor) => {
            let serve = serve_tls(acceptor, stream, peer, runtime, limits, shutdown);
            if let Some(tunnel) = Box::pin(serve).await {
                relay_apart(tunnel, held);
            }
        }
    }
}

/// Relay a tunnel in a task of its own, so that a WebSocket open for hours costs a relay's
/// few hundred bytes instead of the connection task's kilobytes; `held` (the connection's
/// counts) is released when the tunnel closes.
fn relay_apart<S, H>(tunnel: conn::Tunnel<S>, held: H)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Send + 'static,
{
    tokio::spawn(async move {
        tunnel.relay().await;
        drop(held);
    });
}

/// Read the PROXY protocol header off `stream`, consuming exactly its bytes (peeked first, so a
/// TLS ClientHello or request behind it stays in the socket). `Ok(None)`: a LOCAL/UNKNOWN header.
async fn read_proxy_header(stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "bad PROXY header");
    let mut buf = vec![0u8; proxy_protocol::V2_MAX];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match proxy_protocol::parse(&buf[..n]) {
            Err(_) => return Err(invalid()),
            Ok(Some((source, len))) => {
                // Consume the header's bytes now that we know how many there are.
                let mut left = len;
                while left > 0 {
                    stream.readable().await?;
                    match stream.try_read(&mut buf[..left]) {
                        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(k) => left -= k,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e),
                    }
                }
                return Ok(match source {
                    proxy_protocol::Source::Client(addr) => Some(addr),
                    proxy_protocol::Source::Local => None,
                });
            }
            Ok(None) if n >= buf.len() => return Err(invalid()),
            // Part of a header: peek sees the same bytes until more arrive, so pause briefly
            // (rare: balancers send the header in one segment; the caller bounds the wait).
            Ok(None) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// A plain connection on a listener with `h2c`: HTTP/2 when its first bytes are the preface
/// (peeked, so they stay for h2 to read), else HTTP/1.1 as on any plain listener.
async fn serve_h2c<H: Send + 'static>(
    stream: TcpStream,
    peer: SocketAddr,
    runtime: &'static Shared,
    limits: Limits,
    shutdown: ShutdownSignal,
    held: H,
) {
    let mut first = [0u8; super::http2::PREFACE.len()];
    let peeked = tokio::time::timeout(limits.head_timeout, async {
        loop {
            let n = stream.peek(&mut first).await?;
            // A prefix of the preface may be all that came yet: wait for the rest (bounded).
            if n == 0 || n == first.len() || first[..n] != super::http2::PREFACE[..n] {
                return Ok::<_, io::Error>(n);
            }
            stream.readable().await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    match peeked {
        Ok(Ok(n)) if n == first.len() && first == super::http2::PREFACE => {
            super::http2::serve(stream, peer, runtime, limits, shutdown, false).await;
            drop(held);
        }
        Ok(Ok(n)) if n > 0 => {
            if let Some(tunnel) = conn::serve(stream, peer, runtime, limits, shutdown, false).await
            {
                relay_apart(tunnel, held);
            }
        }
        _ => {}
    }
}

/// A TLS connection: the handshake (bounded by the head limit, so a client that never finishes
/// it cannot hold a slot), then HTTP/2 when ALPN chose it, else the same connection loop as
/// plain TCP.
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    runtime: &'static Shared,
    limits: Limits,
    shutdown: ShutdownSignal,
) -> Option<conn::Tunnel<tokio_rustls::server::TlsStream<TcpStream>>> {
    match tokio::time::timeout(limits.head_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
            // The HTTP/2 connection's tunnels are relayed in tasks of their own; its task
            // (and the connection's counts with it) lasts as long as any stream.
            super::http2::serve(tls, peer, runtime, limits, shutdown, true).await;
        }
        Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(crate::certs::ACME_TLS_ALPN) => {
            // The CA's TLS-ALPN-01 validation: the handshake (with the challenge certificate)
            // was the whole answer (RFC 8737 §3).
            tracing::debug!(client = %peer, "TLS-ALPN-01 validation answered");
        }
        Ok(Ok(tls)) => return conn::serve(tls, peer, runtime, limits, shutdown, true).await,
        Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
    }
    None
}

/// Answer `429` on a connection over the per-IP cap and close it: after TLS when the listener
/// has it, and after the request head has arrived (an answer before the request confuses
/// clients), all within a few seconds.
async fn too_many(stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
    let limit = Duration::from_secs(5);
    match tls {
        None => {
            let _ = tokio::time::timeout(limit, answer_429(stream)).await;
        }
        Some(acceptor) => {
            let _ = tokio::time::timeout(limit, async {
                if let Ok(s) = acceptor.accept(stream).await {
                    answer_429(s).await;
                }
            })
            .await;
        }
    }
}

async fn answer_429<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 64 * 1024 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let mut out = Vec::new();
    Refusal::TooManyConnections.answer().render(&mut out);
    let _ = s.write_all(&out).await;
    let _ = s.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every accepted connection's task is allocated and its future moved into it, and a held
    /// long-poll keeps it for as long as the node holds the answer: its size is a copy per
    /// connection and memory per held request, so it is held to a bound here.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let text = "listen: [{ address: \"127.0.0.1:8080\" }]\nupstreams:\n  up:\n    affinity: { mode: none }\n    nodes: [{ id: a, address: \"127.0.0.1:1\" }]\n";
        let shared = crate::runtime::shared_for_test(text);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (stream, peer) = accepted.unwrap();
        let (_tx, shutdown) = tokio::sync::watch::channel(None);
        let options = Options {
            proxy_protocol: false,
            h2c: false,
        };
        let task = start(
            stream,
            peer,
            None,
            options,
            shared,
            Limits::default(),
            shutdown,
        );
        let size = std::mem::size_of_val(&task);
        eprintln!("connection task: {size} bytes");
        assert!(size <= CONNECTION_FUTURE_MAX, "{size} bytes");
    }

    /// The bound of [`a_connection_task_stays_small`] (bytes, in the test build; 448 when it
    /// was written: the connection loop itself is boxed, and an unboxed one is kilobytes).
    const CONNECTION_FUTURE_MAX: usize = 1024;
}

//! tether's own HTTP/1.1 request path: thread-per-core, one task per client connection.
//!
//! Why not pingora's (kept in `proxy::Tether` and selectable with `--engine pingora`): on this
//! project's 2-core loopback benchmark pingora 0.9 served ~0.6x nginx's requests per second at
//! ~2x its CPU per request, and held ~70 KiB per open WebSocket. The costs were structural: a
//! work-stealing runtime waking tasks across threads, per-request allocations and syscalls, and
//! fixed per-tunnel buffers. This path keeps what pingora's design gets right (HTTP/1.1 framing
//! done carefully, upstream keep-alive) and drops the rest:
//!
//! * one current-thread tokio runtime per worker, each with its own `SO_REUSEPORT` listener, so
//!   the kernel spreads connections and nothing is shared between workers but the config
//!   snapshot (an `ArcSwap`) and the nodes' atomic load counters;
//! * per-worker upstream keep-alive pools (no locks);
//! * a request parsed in place (httparse) and forwarded with one write per direction;
//! * tunnels that own no buffer while quiet ([`tunnel`]).

pub mod chunked;
mod conn;
pub mod head;
pub mod lifecycle;
mod per_ip;
mod pool;
pub mod proxy_protocol;
pub mod tunnel;

use crate::config::Config;
use crate::proxy::Runtime;
use arc_swap::ArcSwap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Pending connections the kernel queues per listener.
const BACKLOG: i32 = 4096;

pub use crate::config::Limits;

/// Bind one listening socket with `SO_REUSEPORT`, so every worker can have its own.
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
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

/// Run the proxy on `threads` workers until a signal stops it. Returns `Ok` after a graceful
/// shutdown, `Err` on a startup error (a listener that cannot be bound).
pub fn serve(config: &Config, threads: usize) -> io::Result<()> {
    let limits = config.limits;
    // Bind everything before starting, so a taken port is one clear error and not a half-up proxy.
    let mut listeners = Vec::new();
    for _ in 0..threads.max(1) {
        let mut mine = Vec::new();
        for l in &config.listen {
            let listener = bind(l.address).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.address))
            })?;
            let tls = l
                .tls
                .as_ref()
                .map(|t| tokio_rustls::TlsAcceptor::from(Arc::clone(&t.server)));
            mine.push((listener, tls, l.proxy_protocol));
        }
        listeners.push(mine);
    }
    // The control thread: signals, reload, health checks, admin API.
    let control_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let control = Arc::new(lifecycle::Control::new(config.clone()));
    let runtime = Arc::clone(&control.runtime);
    // Discovered upstreams start with their nodes rather than with a first `refresh` of 503s.
    control_rt.block_on(crate::discovery::initial(&control));
    let admin = match &config.admin {
        Some(a) => Some((
            control_rt
                .block_on(crate::admin::bind(a.address))
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot listen on admin address {}: {e}", a.address),
                    )
                })?,
            a.token.clone(),
        )),
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(None);
    tracing::info!(
        listen = ?config.listen.iter().map(|l| l.address).collect::<Vec<_>>(),
        admin = ?config.admin.as_ref().map(|a| a.address),
        upstreams = config.upstreams.len(),
        workers = listeners.len(),
        config = %config.source.display(),
        "tether started"
    );
    for (i, mine) in listeners.into_iter().enumerate() {
        let runtime = Arc::clone(&runtime);
        let shutdown = shutdown_rx.clone();
        std::thread::Builder::new()
            .name(format!("tether-worker-{i}"))
            .spawn(move || worker(mine, runtime, limits, shutdown))?;
    }
    let plan = lifecycle::ShutdownPlan {
        grace: config.shutdown.grace,
        close_window: config.shutdown.close_window,
    };
    control_rt.block_on(async move {
        tokio::spawn(crate::health::supervise(
            Arc::clone(&runtime),
            control.generation(),
        ));
        tokio::spawn(crate::discovery::run(Arc::clone(&control)));
        if let Some((listener, token)) = admin {
            tokio::spawn(crate::admin::serve(listener, Arc::clone(&control), token));
        }
        lifecycle::run_signals(control, shutdown_tx, plan).await;
    });
    Ok(())
}

/// A bound listener and, for TLS listeners, its acceptor.
type Bound = (
    std::net::TcpListener,
    Option<tokio_rustls::TlsAcceptor>,
    bool,
);

/// Read the PROXY protocol header off `stream`, consuming exactly its bytes (peeked first, so a
/// TLS ClientHello or request behind it stays in the socket). `Ok(None)`: a LOCAL/UNKNOWN header.
async fn read_proxy_header(stream: &tokio::net::TcpStream) -> io::Result<Option<SocketAddr>> {
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

/// A TLS connection: the handshake (bounded by the head limit, so a client that never finishes
/// it cannot hold a slot), then the same connection loop as plain TCP.
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    runtime: Arc<ArcSwap<Runtime>>,
    limits: Limits,
    shutdown: lifecycle::ShutdownSignal,
) {
    match tokio::time::timeout(limits.head_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => conn::serve(tls, peer, runtime, limits, shutdown, true).await,
        Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
    }
}

/// Answer `429` on a connection over the per-IP cap and close it: after TLS when the listener
/// has it, and after the request head has arrived (an answer before the request confuses
/// clients), all within a few seconds.
async fn too_many(stream: tokio::net::TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
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

async fn answer_429<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 64 * 1024 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let body = crate::proxy::respond::body_for(429);
    let head = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(&body).await;
    let _ = s.shutdown().await;
}

fn worker(
    listeners: Vec<Bound>,
    runtime: Arc<ArcSwap<Runtime>>,
    limits: Limits,
    shutdown: lifecycle::ShutdownSignal,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker runtime");
            return;
        }
    };
    // Tasks are spawned on this current-thread runtime directly: they never leave this thread,
    // which is what lets the node pools and scratch buffers be thread-local.
    rt.block_on(async move {
        for (l, tls, proxy_protocol) in listeners {
            let listener = match tokio::net::TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot register a listener");
                    continue;
                }
            };
            tokio::spawn(accept_loop(
                listener,
                tls,
                proxy_protocol,
                Arc::clone(&runtime),
                limits,
                shutdown.clone(),
            ));
        }
        // Keep the runtime (and so every connection) alive until the process exits.
        std::future::pending::<()>().await;
    });
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    proxy_protocol: bool,
    runtime: Arc<ArcSwap<Runtime>>,
    limits: Limits,
    mut shutdown: lifecycle::ShutdownSignal,
) {
    let mut fd_warned = false;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => {
                // Dropping the listener closes it: new connections are refused from here on.
                return;
            }
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                fd_warned = false;
                let (runtime, shutdown, tls) =
                    (Arc::clone(&runtime), shutdown.clone(), tls.clone());
                tokio::spawn(async move {
                    let mut peer = peer;
                    if proxy_protocol {
                        match tokio::time::timeout(limits.head_timeout, read_proxy_header(&stream))
                            .await
                        {
                            Ok(Ok(Some(client))) => peer = client,
                            Ok(Ok(None)) => {}
                            _ => {
                                // No valid PROXY header: this connection did not come through
                                // the balancer we were told about. Close it without a word.
                                tracing::debug!(client = %peer, "connection without a valid PROXY header closed");
                                return;
                            }
                        }
                    }
                    // Counted against the client's IP until the connection ends.
                    let _slot = match limits.max_connections_per_ip {
                        0 => None,
                        cap => match per_ip::enter(peer.ip(), cap) {
                            Some(slot) => Some(slot),
                            None => {
                                tracing::debug!(client = %peer, cap, "too many connections from this address");
                                // Boxed: a future is as large as its largest state, and this
                                // cold path must not grow every connection's task.
                                Box::pin(too_many(stream, tls)).await;
                                return;
                            }
                        },
                    };
                    match tls {
                        None => conn::serve(stream, peer, runtime, limits, shutdown, false).await,
                        // Boxed for the same reason: rustls' connection state is kilobytes,
                        // and plain connections (and their tunnels) must not carry its size.
                        Some(acceptor) => {
                            Box::pin(serve_tls(acceptor, stream, peer, runtime, limits, shutdown))
                                .await
                        }
                    }
                });
            }
            Err(e) => {
                // Out of descriptors: say so once per episode, and give closing connections a
                // moment instead of spinning on accept.
                if e.raw_os_error() == Some(24) || e.raw_os_error() == Some(23) {
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
}

//! Idle keep-alive connections to nodes, one pool per worker thread, so taking and returning a
//! connection needs no lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// An idle connection older than this is closed instead of reused (nodes commonly close idle
/// keep-alive connections after 5 s to 2 min; reusing one they are closing wastes a request).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per node per worker thread.
pub const MAX_IDLE_PER_NODE: usize = 256;

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<(TcpStream, Instant)>>> = RefCell::new(HashMap::new());
}

/// A pooled connection to `addr` that still looks alive, if any.
pub fn take(addr: SocketAddr) -> Option<TcpStream> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some((stream, since)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT && looks_alive(&stream) {
                return Some(stream);
            }
        }
        None
    })
}

/// Return a connection whose last exchange ended cleanly.
pub fn put(addr: SocketAddr, stream: TcpStream) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_NODE {
            list.push((stream, Instant::now()));
        }
    })
}

/// An idle connection must have nothing to read: bytes mean a protocol error, EOF means the node
/// closed it. `try_read` costs no syscall unless the reactor saw the socket become readable.
fn looks_alive(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

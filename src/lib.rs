//! tether: a sticky-session reverse proxy for realtime clusters (WebSocket, long-polling, socket.io).
//!
//! The binary in `main.rs` is a thin shell over [`cli::run`]; everything else lives here so tests,
//! benches and other programs can drive the same code. Layers, lowest first (a module may import
//! only from layers below it; `tests/layers.rs` checks it):
//!
//! 1. `config`, `affinity`, `nginx`, `http1`, `ws`: pure cores (no IO but reading files, no
//!    clock, no threads); `h2stream`, an adapter over the `h2` crate's stream halves.
//! 2. `runtime`: the snapshot one request reads and the request policy; synchronous.
//! 3. `engine` (sockets: the request path) and `control` (what changes the snapshot), side by side.
//! 4. `server`: the running process, wiring engine and control together.
//! 5. Tools on top: `cli`, `load`, `demo`.

// A panic on network input would cut every client of the process; library code returns errors.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

/// Which node a client belongs to: signed cookie tokens and the consistent-hash ring (pure).
pub mod affinity;
/// Certificates tether obtains itself (ACME): the slot the TLS handshake and the renewal loop
/// share, the challenge answers, the storage directory.
pub mod certs;
/// Command-line entry: argument parsing and the subcommands.
pub mod cli;
/// The YAML contract: the file, its validation, defaults.
pub mod config;
/// The control plane: reload, DNS discovery, health checks, admin API, metrics, signals.
pub mod control;
/// Demo realtime nodes (for `tether demo`, `tether node`, tests and benches).
pub mod demo;
/// The request path: listeners, connections (HTTP/1.1 and HTTP/2), exchanges, tunnels, the
/// upstream pool.
pub mod engine;
/// An HTTP/2 stream as a byte stream, for WebSockets over extended CONNECT (RFC 8441).
pub mod h2stream;
/// The HTTP/1 codec: heads, body framing, chunked bodies, PROXY headers (pure).
pub mod http1;
/// `tether load`: the realtime load tool.
pub mod load;
/// `tether import-nginx`: nginx's sticky subset to tether YAML (pure).
pub mod nginx;
/// The immutable snapshot a request reads, and the request policy.
pub mod runtime;
/// The running proxy process: listeners, control thread, workers.
pub mod server;
/// RFC 6455 frames as a proxy follows them: the streaming header reader, tether's own frames.
pub mod ws;

//! tether's integration tests: one binary, real servers on 127.0.0.1, tether as a child process.
//!
//! Modules, each named after the promise it guards:
//! - `acme`: certificates from Pebble (Let's Encrypt's test CA) by TLS-ALPN-01 and HTTP-01
//!   (answered before routing, never forwarded), trusted by curl, renewed under 100 `wss://`
//!   tunnels, a refusing or unreachable CA leaving the certificate in use, two replicas sharing
//!   storage with one order, External Account Binding.
//! - `sticky_cookie`: many clients each stay on one node; bad cookies are ignored, never an error.
//! - `tls`: https:// and wss:// terminated by tether, cookie affinity across the TLS upgrade.
//! - `tunnels`: WebSocket frames followed both ways unchanged (every length class, headers
//!   split at every byte, fragments), every §5 rule closing both sides with 1002, tether's
//!   Close waiting for the frame in flight, half-open clients found by Ping.
//! - `upgrade`: plain request, long-poll and WebSocket Upgrade share one node; tunnels, streaming,
//!   timeouts and forwarded headers.
//! - `http1`: raw HTTP/1.1 through the engine: bodies, 100-continue, pipelining, bad framing.
//! - `http2`: HTTP/2 towards clients: curl and the h2 crate on the pinned node (requests,
//!   long-polls, event streams, uploads, 200 streams on a connection), WebSockets over extended
//!   CONNECT from Node's http2 client and from Chromium (socket.io and a raw WebSocket), the
//!   Origin and Sec-WebSocket-Accept rules, malformed streams reset with nothing forwarded,
//!   rapid-reset and CONTINUATION floods ended by GOAWAY.
//! - `differential`: over a thousand generated requests (framing, chunk lines, trailers, request
//!   lines, fields, Host, Expect, Upgrade) must reach a strict reference parser (Node.js's llhttp)
//!   exactly as meant, or be refused before any byte of them does.
//! - `hostile_node`: a scripted node answering with broken or tricky raw responses (1xx floods,
//!   interim answers then a close, CL with TE, bad chunk lines, bytes past the body) gets the
//!   client a defined answer, read strictly, and never a resend it should not.
//! - `key_affinity`: 300 socket.io clients in 10 rooms through two replicas: each room on one
//!   node, rooms spread, a leaving node moves only its rooms, a request without the key falls
//!   back; without key affinity the rooms split.
//! - `ip_hash`: clients from distinct source addresses are placed stably and spread.
//! - `edge`: WebSocket handshake validation, Origin allow-list, key rotation, target limits.
//! - `failover`: a dead node's clients are re-pinned, everyone else stays; no node gives 503.
//! - `limits`: per-IP connection caps (429), per-node tunnel caps, configurable head timeout.
//! - `outcomes`: every exchange ends in one access-log line, one failure count and the passive
//!   health it deserves, whatever step a scripted node fails it at; a client that goes away is
//!   a 499 counted apart, never a 400 written to a closed socket.
//! - `moves`: a node that leaves (drained with a deadline, removed by a reload, gone from DNS)
//!   hands its socket.io clients over, spread over the window, none lost; a rebalance after a
//!   scale-out fills the new node to its bounds and no further (two replicas).
//! - `operations`: health checks, drain, admin API, metrics, reload under load, graceful shutdown.
//! - `admin_page`: the admin status page in a real headless Chromium: live node states, drain
//!   from the page, the token asked once, cross-site form POSTs refused, 0 to 100 nodes drawn.
//! - `demo_page`: `tether demo` in a real headless Chromium (the cluster panel, a node stopped
//!   from the page shown unhealthy on the admin page while the client re-pins), and a
//!   `tether load --report` page drawn without a console error.
//! - `security`: slowloris, header floods, connection bursts, hostile cookies, as raw bytes.
//! - `socketio`: a real socket.io cluster behind tether (Node.js), with and without affinity.
//! - `engineio`: socket.io clients without cookies stay on their node by their session id's tag
//!   (socket.io 4.x and 2.x, one tether or two replicas); forged, truncated and foreign tags
//!   never reach a node.
//! - `client_ip`: X-Forwarded-For only from trusted proxies; PROXY protocol v1 and v2.
//! - `cli`: `tether check` golden diagnostics, `keygen`, the shipped example configs.
//! - `discovery`: nodes found by a real DNS server follow its records; tunnels stay open; a
//!   failing server keeps the last good nodes.
//! - `import_nginx`: `tether import-nginx` output and exit codes; imported configs route the
//!   same requests to the same upstreams as real nginx with the original config.
//! - `dashboard`: the Grafana dashboard imports, and every metric its queries name is one a live
//!   tether exports.
//! - `deploy`: the shipped Kubernetes, container and systemd files check out (tether check,
//!   manifest essentials, systemd-analyze verify, a container build where an engine runs).
//! - `fleet`: two replicas with one config agree on every client's node (cookie and ip_hash).
//! - `logs`: no colour escapes in a file, JSON lines, the access log of requests and tunnels.
//! - `pool`: idle node connections to removed or dead nodes are swept, never left in CLOSE_WAIT.
//! - `handoff`: a binary upgrade (SIGUSR2) under load loses nothing, a failed one changes nothing;
//!   systemd socket activation; certificates and listening addresses follow a reload.

mod support;

mod acme;
mod admin_page;
mod cli;
mod client_ip;
mod dashboard;
mod demo_page;
mod deploy;
mod differential;
mod discovery;
mod edge;
mod engineio;
mod failover;
mod fleet;
mod handoff;
mod hostile_node;
mod http1;
mod http2;
mod import_nginx;
mod ip_hash;
mod key_affinity;
mod limits;
mod load;
mod logs;
mod moves;
mod operations;
mod outcomes;
mod pool;
mod security;
mod socketio;
mod sticky_cookie;
mod tls;
mod tunnels;
mod upgrade;

//! The `tether load` flags (clap) and their validation into a `Plan`, the run's read-only settings.

use super::source::SourceRange;
use super::LoadError;
use http::header::{HeaderName, HeaderValue};
use http::Uri;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// What each virtual client does.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// Keep-alive GETs of --path on one connection per client.
    Http,
    /// Repeated held GETs of --path (default /poll?hold=3000), one at a time.
    Longpoll,
    /// WebSocket to --ws-path: greeting, then --messages echoes, then reconnect.
    Ws,
    /// engine.io v4 / socket.io v4: polling handshake, upgrade, --messages acked `echo` events.
    Socketio,
    /// Client i runs http, longpoll or ws by i % 3.
    Mixed,
}

impl Flow {
    /// The flag value (and JSON name) of the flow.
    pub fn name(self) -> &'static str {
        match self {
            Flow::Http => "http",
            Flow::Longpoll => "longpoll",
            Flow::Ws => "ws",
            Flow::Socketio => "socketio",
            Flow::Mixed => "mixed",
        }
    }
}

/// Where a response names the node that served it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFrom {
    /// The --node-header response header (WebSocket: the 101's, else the greeting).
    Header,
    /// The whole response body, trimmed (WebSocket: the greeting).
    Body,
    /// The first WebSocket message: its JSON `node` field, or the raw text if not JSON (plain
    /// HTTP responses: the header, else the body).
    WsGreeting,
}

/// Load-test a realtime cluster through any proxy (tether or not) and check stickiness.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Target base URL: http://HOST:PORT or https://HOST:PORT (WebSocket URLs are derived:
    /// ws:// or wss://).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Speak HTTP/2: each client keeps one connection, its requests are streams on it and its
    /// WebSockets extended CONNECT streams (RFC 8441). Over https:// by ALPN; over http:// with
    /// prior knowledge (h2c).
    #[arg(long)]
    pub http2: bool,
    /// PEM certificates to trust for an https:// target (a test CA, a self-signed certificate).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Trust any certificate of an https:// target (test certificates only: who answers goes
    /// unverified).
    #[arg(long)]
    pub insecure: bool,
    /// What each client does.
    #[arg(long, value_enum, default_value_t = Flow::Http)]
    pub flow: Flow,
    /// Number of virtual clients, each with its own connection and cookie jar.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// How long to run; clients stop at their next step afterwards.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop once this many operations (HTTP requests + WebSocket round trips) were started, in total.
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,
    /// Start the clients evenly over this time.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub ramp: Duration,
    /// Requests (or messages) per second per client; default: as fast as possible.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Per-operation timeout (connect, request, handshake, round trip).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Path of the http flow (default /whoami) or of the longpoll flow (default: --poll-path).
    #[arg(long)]
    pub path: Option<String>,
    /// Long-poll path of the longpoll clients (used by `mixed`, and by `longpoll` without --path).
    #[arg(long, default_value = "/poll?hold=3000")]
    pub poll_path: String,
    /// WebSocket path of the ws flow.
    #[arg(long, default_value = "/ws")]
    pub ws_path: String,
    /// socket.io endpoint path.
    #[arg(long, default_value = "/socket.io/")]
    pub socketio_path: String,
    /// socket.io namespace to connect to.
    #[arg(long, default_value = "/")]
    pub namespace: String,
    /// Messages (ws echoes / socket.io acked events) per WebSocket session before reconnecting.
    #[arg(long, default_value_t = 10)]
    pub messages: u32,
    /// Pause between two messages of a WebSocket session.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold: Option<Duration>,
    /// WebSocket clients connect, read the greeting and hold the connection open to the end,
    /// sending nothing (to measure the proxy's memory per open WebSocket); the ws flow says on
    /// stderr once all of them are open.
    #[arg(long)]
    pub hold_open: bool,
    /// http and longpoll flows: every request on a new TCP connection, sent with
    /// `Connection: close` (cookies still sent), to measure connections per second.
    #[arg(long)]
    pub new_connection: bool,
    /// Clients keep no cookie jar (`Set-Cookie` is ignored, no `Cookie` sent), as socket.io's
    /// Node.js client by default: socket.io sessions then hold only by their `sid` (tether's
    /// `affinity.engineio`), and any other flow sees what a cookie-less client gets.
    #[arg(long)]
    pub no_cookies: bool,
    /// Response header naming the node.
    #[arg(long, default_value = "x-node")]
    pub node_header: String,
    /// Where the node identity is read from.
    #[arg(long, value_enum, default_value_t = NodeFrom::Header)]
    pub node_from: NodeFrom,
    /// Bind client i to the i-th address of this range (cycling), e.g. 127.0.1.0/24 for ip_hash.
    #[arg(long, value_name = "CIDR")]
    pub source_range: Option<ipnet::IpNet>,
    /// Runtime worker threads; keep it low so the proxy under test gets the CPU.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 if there was any stickiness violation or any error.
    #[arg(long)]
    pub fail_on_violation: bool,
    /// Add every client's node changes and errors, with their time, to the JSON report
    /// (`history`), so that a move whose node had left the cluster can be told from a broken pin.
    #[arg(long)]
    pub history: bool,
    /// Also write a self-contained HTML report to FILE at the end of the run: throughput and
    /// latency over time, first picks per node, errors by kind, violations, connections held
    /// and the summary table (the run is sampled at a fixed interval for its charts).
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,
}

/// Only to parse `LoadArgs` on their own (tests, other programs).
#[derive(clap::Parser, Debug)]
#[command(name = "load")]
struct Standalone {
    #[command(flatten)]
    args: LoadArgs,
}

impl LoadArgs {
    /// Parse flags as the CLI would (the first item is the program name), defaults included.
    pub fn try_parse_from<I, T>(argv: I) -> Result<LoadArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Standalone as clap::Parser>::try_parse_from(argv).map(|s| s.args)
    }
}

/// The validated settings every client reads.
#[derive(Debug)]
pub(crate) struct Plan {
    pub flow: Flow,
    pub url: String,
    pub target: SocketAddr,
    /// TLS towards the target (an https:// URL).
    pub tls: Option<super::transport::Tls>,
    /// HTTP/2 (--http2).
    pub http2: bool,
    /// `http` or `https`: the scheme of every request URI (HTTP/2's `:scheme`).
    pub scheme: &'static str,
    /// `Host` header value (the URL's authority).
    pub host: HeaderValue,
    pub clients: usize,
    pub duration: Duration,
    pub requests: Option<u64>,
    pub ramp: Duration,
    /// Time between two operations of one client, from --rate.
    pub period: Option<Duration>,
    pub timeout: Duration,
    pub http_path: Uri,
    pub poll_path: Uri,
    /// The ws flow's WebSocket path (ws:// or wss://, or an HTTP/2 WebSocket's `:path`).
    pub ws_path: String,
    /// `/socket.io/?EIO=4&transport=polling` (sid appended per session).
    pub sio_polling: String,
    /// `/socket.io/?EIO=4&transport=websocket&sid=` (sid appended per session).
    pub sio_ws_path: String,
    /// Namespace prefix of socket.io packets: empty for `/`, else `/nsp,`.
    pub sio_nsp: String,
    pub messages: u32,
    pub hold: Option<Duration>,
    pub hold_open: bool,
    /// A new connection (and `Connection: close`) for every http/longpoll request.
    pub new_connection: bool,
    /// Clients keep cookies (not --no-cookies).
    pub cookies: bool,
    pub node_header: HeaderName,
    pub node_from: NodeFrom,
    pub source: Option<SourceRange>,
    pub threads: usize,
    /// Keep each client's node changes and errors (--history).
    pub history: bool,
    /// Sample the run at this interval for the HTML report (--report).
    pub sample_every: Option<Duration>,
    /// After the soft stop, how long clients get to finish their step before everything is
    /// aborted (10 s; tests shorten it).
    pub hard_grace: Duration,
}

impl Plan {
    /// What the clients speak, for the report.
    pub fn protocol(&self) -> &'static str {
        match (self.http2, self.tls.is_some()) {
            (false, false) => "HTTP/1.1",
            (false, true) => "HTTP/1.1 over TLS",
            (true, true) => "HTTP/2 over TLS",
            (true, false) => "HTTP/2 (h2c)",
        }
    }
}

/// The hard deadline is the duration plus this.
const HARD_GRACE: Duration = Duration::from_secs(10);

fn bad(msg: impl Into<String>) -> LoadError {
    LoadError::BadArgs(msg.into())
}

fn path(flag: &str, p: &str) -> Result<Uri, LoadError> {
    if !p.starts_with('/') {
        return Err(bad(format!("{flag} {p:?} must start with /")));
    }
    p.parse::<Uri>()
        .map_err(|e| bad(format!("{flag} {p:?} is not a valid path: {e}")))
}

impl Plan {
    pub fn new(a: &LoadArgs) -> Result<Plan, LoadError> {
        let uri: Uri = a
            .url
            .parse()
            .map_err(|e| bad(format!("--url {:?}: {e}", a.url)))?;
        let (scheme, default_port) = match uri.scheme_str() {
            Some("http") => ("http", 80),
            Some("https") => ("https", 443),
            Some(other) => {
                return Err(bad(format!(
                    "--url {:?}: give http:// or https://, not {other}://",
                    a.url
                )))
            }
            None => {
                return Err(bad(format!(
                    "--url {:?}: give http://HOST:PORT or https://HOST:PORT",
                    a.url
                )))
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| bad(format!("--url {:?} has no host", a.url)))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad(format!(
                "--url {:?}: give only {scheme}://HOST:PORT; paths come from --path, --ws-path, ...",
                a.url
            )));
        }
        let port = authority.port_u16().unwrap_or(default_port);
        let tls = match scheme {
            "https" => Some(
                super::transport::Tls::new(
                    authority.host().trim_matches(['[', ']']),
                    a.ca.as_deref(),
                    a.insecure,
                )
                .map_err(bad)?,
            ),
            _ if a.ca.is_some() || a.insecure => {
                return Err(bad("--ca and --insecure apply to https:// targets"))
            }
            _ => None,
        };
        if a.http2 && a.new_connection {
            return Err(bad(
                "--new-connection measures HTTP/1.1 connections; with --http2 each client keeps one",
            ));
        }
        let target = (authority.host().trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .map_err(|e| bad(format!("--url {:?}: cannot resolve: {e}", a.url)))?
            // `localhost` may resolve to ::1 first; loopback servers listen on 127.0.0.1.
            .min_by_key(SocketAddr::is_ipv6)
            .ok_or_else(|| bad(format!("--url {:?}: no address", a.url)))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad(format!("--url {:?}: bad host", a.url)))?;

        if a.clients == 0 {
            return Err(bad("--clients must be at least 1"));
        }
        if a.threads == 0 {
            return Err(bad("--threads must be at least 1"));
        }
        if a.duration.is_zero() {
            return Err(bad("--duration must be more than 0"));
        }
        if a.timeout.is_zero() {
            return Err(bad("--timeout must be more than 0"));
        }
        if a.requests == Some(0) {
            return Err(bad("--requests must be at least 1"));
        }
        let period = match a.rate {
            None => None,
            Some(r) if r.is_finite() && r > 0.0 => Some(Duration::from_secs_f64(1.0 / r)),
            Some(r) => {
                return Err(bad(format!(
                    "--rate {r}: give a positive number per second"
                )))
            }
        };
        if a.messages == 0 && !a.hold_open && matches!(a.flow, Flow::Ws | Flow::Socketio) {
            return Err(bad("--messages must be at least 1 (or use --hold-open)"));
        }
        if a.new_connection && matches!(a.flow, Flow::Ws | Flow::Socketio) {
            return Err(bad(format!(
                "--new-connection applies to the http, longpoll and mixed flows, not {}",
                a.flow.name()
            )));
        }
        let default_http = if a.flow == Flow::Longpoll {
            a.poll_path.as_str()
        } else {
            "/whoami"
        };
        let http_path = path("--path", a.path.as_deref().unwrap_or(default_http))?;
        let poll_path = match (a.flow, &a.path) {
            (Flow::Longpoll, Some(p)) => path("--path", p)?,
            _ => path("--poll-path", &a.poll_path)?,
        };
        path("--ws-path", &a.ws_path)?;
        path("--socketio-path", &a.socketio_path)?;
        if !a.namespace.starts_with('/') || a.namespace.contains([',', '"']) {
            return Err(bad(format!(
                "--namespace {:?} must start with / and contain no comma or quote",
                a.namespace
            )));
        }
        let node_header = HeaderName::from_bytes(a.node_header.as_bytes()).map_err(|_| {
            bad(format!(
                "--node-header {:?} is not a header name",
                a.node_header
            ))
        })?;
        let source = match a.source_range {
            None => None,
            Some(net) => {
                let range = SourceRange::new(net);
                if range.is_ipv4() != target.is_ipv4() {
                    return Err(bad(format!(
                        "--source-range {net} and --url {} are not the same IP family",
                        a.url
                    )));
                }
                Some(range)
            }
        };
        let sep = if a.socketio_path.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(Plan {
            flow: a.flow,
            url: a.url.clone(),
            target,
            tls,
            http2: a.http2,
            scheme,
            host,
            clients: a.clients,
            duration: a.duration,
            requests: a.requests,
            ramp: a.ramp,
            period,
            timeout: a.timeout,
            http_path,
            poll_path,
            ws_path: a.ws_path.clone(),
            sio_polling: format!("{}{sep}EIO=4&transport=polling", a.socketio_path),
            sio_ws_path: format!("{}{sep}EIO=4&transport=websocket&sid=", a.socketio_path),
            sio_nsp: if a.namespace == "/" {
                String::new()
            } else {
                format!("{},", a.namespace)
            },
            messages: a.messages,
            hold: a.hold.filter(|h| !h.is_zero()),
            hold_open: a.hold_open,
            new_connection: a.new_connection,
            cookies: !a.no_cookies,
            node_header,
            node_from: a.node_from,
            source,
            threads: a.threads,
            history: a.history,
            sample_every: a
                .report
                .is_some()
                .then(|| super::timeline::interval_for(a.duration)),
            hard_grace: HARD_GRACE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Plan, LoadError> {
        let mut argv = vec!["load", "--url", "http://127.0.0.1:8080"];
        argv.extend_from_slice(extra);
        Plan::new(&LoadArgs::try_parse_from(argv).unwrap())
    }

    #[test]
    fn composes_as_a_subcommand() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: Command,
        }
        #[derive(clap::Subcommand)]
        enum Command {
            /// Load-test.
            Load(LoadArgs),
        }
        <Cli as clap::CommandFactory>::command().debug_assert();
        <Standalone as clap::CommandFactory>::command().debug_assert();
        let cli = <Cli as clap::Parser>::try_parse_from([
            "tether",
            "load",
            "--url",
            "http://127.0.0.1:1",
            "--flow",
            "socketio",
            "--json",
        ])
        .unwrap();
        let Command::Load(a) = cli.command;
        assert!(a.json && a.flow == Flow::Socketio);
    }

    #[test]
    fn defaults() {
        let a = LoadArgs::try_parse_from(["load", "--url", "http://127.0.0.1:8080"]).unwrap();
        assert_eq!(a.flow, Flow::Http);
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!(a.ramp, Duration::from_secs(1));
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert_eq!(a.messages, 10);
        assert_eq!(a.threads, 1);
        let p = Plan::new(&a).unwrap();
        assert_eq!(p.http_path, "/whoami");
        assert_eq!(p.poll_path, "/poll?hold=3000");
        assert_eq!(p.ws_path, "/ws");
        assert_eq!(p.sio_polling, "/socket.io/?EIO=4&transport=polling");
        assert_eq!(p.sio_ws_path, "/socket.io/?EIO=4&transport=websocket&sid=");
        assert_eq!(p.scheme, "http");
        assert_eq!(p.sio_nsp, "");
        assert_eq!(p.host, "127.0.0.1:8080");
        assert_eq!(p.node_header, "x-node");
        assert!(p.cookies);
        let p = parse(&["--flow", "socketio", "--no-cookies"]).unwrap();
        assert!(!p.cookies, "--no-cookies: no client keeps a cookie");
        assert_eq!(p.sample_every, None);
        let p = parse(&["--report", "out.html", "--duration", "1m"]).unwrap();
        assert_eq!(p.sample_every, Some(Duration::from_secs(1)));
    }

    #[test]
    fn flow_dependent_paths() {
        let p = parse(&["--flow", "longpoll"]).unwrap();
        assert_eq!(p.http_path, "/poll?hold=3000");
        let p = parse(&["--flow", "longpoll", "--path", "/lp"]).unwrap();
        assert_eq!(p.poll_path, "/lp");
        let p = parse(&["--flow", "mixed", "--path", "/x", "--namespace", "/chat"]).unwrap();
        assert_eq!((p.http_path.path(), p.poll_path.path()), ("/x", "/poll"));
        assert_eq!(p.sio_nsp, "/chat,");
        let p = parse(&["--rate", "4", "--flow", "ws", "--node-from", "ws-greeting"]).unwrap();
        assert!(!p.new_connection);
        assert!(parse(&["--new-connection"]).unwrap().new_connection);
        assert_eq!(p.period, Some(Duration::from_millis(250)));
        assert_eq!(p.node_from, NodeFrom::WsGreeting);
    }

    #[test]
    fn rejects_what_cannot_work() {
        for (extra, want) in [
            (&["--clients", "0"][..], "--clients"),
            (&["--threads", "0"], "--threads"),
            (&["--rate", "0"], "--rate"),
            (&["--rate=-1"], "--rate"),
            (&["--path", "whoami"], "--path"),
            (&["--flow", "ws", "--messages", "0"], "--messages"),
            (&["--requests", "0"], "--requests"),
            (&["--source-range", "::1/128"], "family"),
            (&["--node-header", "bad header"], "--node-header"),
            (&["--namespace", "chat"], "--namespace"),
            (&["--flow", "ws", "--new-connection"], "--new-connection"),
        ] {
            let err = parse(extra)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{extra:?}: {err}");
        }
        for url in [
            "https://127.0.0.1:1",
            "ftp://127.0.0.1:1",
            "127.0.0.1:1",
            "http://127.0.0.1:1/base",
        ] {
            let a = LoadArgs::try_parse_from(["load", "--url", url]).unwrap();
            assert!(matches!(Plan::new(&a), Err(LoadError::BadArgs(_))), "{url}");
        }
        assert!(parse(&["--flow", "ws", "--messages", "0", "--hold-open"]).is_ok());
        assert!(parse(&["--insecure"]).is_err(), "--insecure on http://");
        assert!(parse(&["--http2", "--new-connection"]).is_err());
        let a = LoadArgs::try_parse_from([
            "load",
            "--url",
            "https://localhost:8443",
            "--insecure",
            "--http2",
        ])
        .unwrap();
        let p = Plan::new(&a).unwrap();
        assert!(p.http2 && p.tls.is_some());
        assert_eq!(p.scheme, "https");
        assert_eq!(p.sio_ws_path, "/socket.io/?EIO=4&transport=websocket&sid=");
        assert!(LoadArgs::try_parse_from(["load", "--url", "x", "--duration", "soon"]).is_err());
    }
}

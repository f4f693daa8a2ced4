//! Command-line entry: argument parsing and the subcommands. The only place that prints for users.

mod demo;

use crate::config;
use base64::Engine as _;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status for an invalid config (distinct from 1, a runtime failure).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "tether",
    version,
    about = "A sticky-session reverse proxy for realtime clusters (WebSocket, long-polling, socket.io).",
    long_about = "A sticky-session reverse proxy for realtime clusters.\n\n\
        Every client keeps reaching the node that holds its session, across plain requests, \
        long-polls and the WebSocket Upgrade, by a signed affinity cookie or a consistent hash \
        of its IP address.\n\nWith no subcommand, `tether --config PATH` runs the proxy.\n\
        Logs go to stderr; RUST_LOG sets the level (e.g. RUST_LOG=tether=debug)."
)]
struct Cli {
    /// Config file to run with (same as `tether run --config PATH`).
    #[arg(long, short, global = false)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy with a config file.
    Run {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Worker threads (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Validate a config file: exit 0 with a one-line summary, or exit 2 listing every problem
    /// as PATH:LINE:COL: message.
    Check {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print a fresh random 32-byte cookie secret (base64) for secret_env / secret_file.
    Keygen,
    /// Translate an nginx config (upstreams with ip_hash, hash $remote_addr, least_conn,
    /// sticky cookie; servers, locations, proxy timeouts) into a tether config on stdout.
    /// Whatever has no tether equivalent is kept as a `# not translated` comment. Exit 2 with
    /// FILE:LINE: message on nginx syntax errors.
    #[command(name = "import-nginx")]
    ImportNginx {
        /// The nginx config file (nginx.conf); includes resolve against its directory.
        path: PathBuf,
    },
    /// Start three demo realtime nodes on loopback and tether in front of them with cookie
    /// affinity; open the printed URL to watch your pin over long-poll and WebSocket.
    Demo {
        /// Port for tether to listen on (127.0.0.1).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Port of tether's admin page and API (127.0.0.1); default: the port after --port.
        #[arg(long)]
        admin_port: Option<u16>,
    },
    /// Load-test a realtime cluster through any proxy (tether or not) and check stickiness:
    /// N clients with their own cookie jars running http, longpoll, ws, socketio or mixed flows.
    Load(Box<crate::load::LoadArgs>),
    /// Run one demo realtime node (the same as `demo` starts), e.g. to try conf/tether.yaml or
    /// to benchmark: `tether node --id node-a --listen 127.0.0.1:3001`.
    Node {
        /// The node's id (sent back in the `x-node` header and WebSocket greeting).
        #[arg(long)]
        id: String,
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

/// Parse arguments and run; the binary's `main` returns this.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match (cli.command, cli.config) {
        (Some(Command::Run { config, threads }), _) => run_proxy(&config, threads),
        (None, Some(config)) => run_proxy(&config, None),
        (Some(Command::Check { config }), _) => check(&config),
        (Some(Command::Load(args)), _) => load(&args),
        (Some(Command::ImportNginx { path }), _) => import_nginx(&path),
        (Some(Command::Keygen), _) => {
            println!("{}", keygen());
            ExitCode::SUCCESS
        }
        (Some(Command::Demo { port, admin_port }), _) => {
            init_logging();
            demo::run(port, admin_port.unwrap_or(port.wrapping_add(1)))
        }
        (
            Some(Command::Node {
                id,
                listen,
                threads,
            }),
            _,
        ) => {
            init_logging();
            demo::run_node(&id, listen, threads)
        }
        (None, None) => {
            eprintln!("tether: nothing to do: give --config PATH to run the proxy, or see `tether --help`");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Logs to stderr through tracing; the `log` records of libraries (pingora's health probes)
/// land in the same stream.
fn init_logging() {
    init_logging_as(config::LogFormat::Text);
}

/// Logs to stderr in `format`; colour only when stderr is a terminal, so a file or the journal
/// gets no escape bytes.
fn init_logging_as(format: config::LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // try_init: tests and the demo may call this more than once per process.
    let _ = match format {
        config::LogFormat::Text => builder.try_init(),
        // One object per line, every field at the top level: stable names for log shippers.
        config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

fn run_proxy(path: &Path, threads: Option<usize>) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging_as(config.log.format);
    let threads = threads.unwrap_or_else(crate::server::default_threads);
    match crate::server::run(&config, threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            let nodes: usize = c.upstreams.iter().map(|u| u.nodes.len()).sum();
            let discovering = c.upstreams.iter().filter(|u| u.discover.is_some()).count();
            let discovery = match discovering {
                0 => String::new(),
                n => format!(" (+ DNS discovery in {n})"),
            };
            println!(
                "{}: ok: {} listener(s), {} upstream(s) with {} node(s){discovery}, {} route(s)",
                path.display(),
                c.listen.len(),
                c.upstreams.len(),
                nodes,
                c.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn import_nginx(path: &Path) -> ExitCode {
    match crate::nginx::import(path) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn load(args: &crate::load::LoadArgs) -> ExitCode {
    match crate::load::run(args) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("tether load: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{report}");
            }
            if args.fail_on_violation && report.has_failures() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// 32 random bytes, base64: the printable text itself is the secret (44 bytes).
pub fn keygen() -> String {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

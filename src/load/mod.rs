//! `tether load`: a load generator for realtime clusters behind any proxy (entry point and errors).
//!
//! N virtual clients, each with its own cookie jar and optionally its own source address, run one
//! flow (`http`, `longpoll`, `ws`, `socketio` or `mixed`) against `--url` and check stickiness as
//! they go: a client whose traffic reaches two different nodes is one violation.
//!
//! Layout: `args.rs` (flags and their validation into a `Plan`), `runner.rs` (ramp, stop, hard
//! deadline, progress line), `client.rs` (what every flow shares: connect, jar, stickiness,
//! recording), one file per flow (`http.rs` for http and longpoll over the minimal client in
//! `h1.rs`, `ws.rs`, `socketio.rs` with its packets in `engineio.rs` and its polling over
//! `hyper_conn.rs`), `stats.rs` (counters and histograms), `report.rs` (the result and its
//! table), `history.rs` (`--history`: each client's node changes and errors), `timeline.rs`
//! (`--report`: the run sampled at a fixed interval), `html.rs` and `sections.rs` (the HTML
//! report) over the inline SVG charts of `svg.rs` and `charts.rs`, `jar.rs`, `source.rs`, `limits.rs`.

mod args;
mod charts;
mod client;
mod engineio;
mod h1;
mod h2;
mod history;
mod html;
mod http;
mod hyper_conn;
mod jar;
mod limits;
mod report;
mod runner;
mod sections;
mod socketio;
mod source;
mod stats;
mod svg;
mod timeline;
mod transport;
mod ws;

pub use args::{Flow, LoadArgs, NodeFrom};
pub use history::{ClientHistory, Event, History};
pub use html::render as render_html;
pub use report::{Errors, Latency, Report};
pub use timeline::{Quantiles, Sample, Timeline};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a load test could not run at all (the CLI exits 2 for every one of them).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A flag value that cannot work (message says which and why).
    #[error("tether load: {0}")]
    BadArgs(String),
    /// More clients than the open-file limit allows; nothing was started.
    #[error(
        "tether load: --clients {clients} needs about {needed} open files, but the limit \
         (ulimit -n) is {limit} and {in_use} are already open: at most {max_clients} clients fit; \
         lower --clients or raise the limit (ulimit -n)"
    )]
    TooManyClients {
        clients: usize,
        needed: u64,
        limit: u64,
        in_use: u64,
        max_clients: u64,
    },
    /// The tokio runtime could not be built.
    #[error("tether load: cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The --report file could not be created (before the run) or written (after it).
    #[error("tether load: --report {}: {source}", path.display())]
    Report {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Write the HTML report of `report` to `file` (opened at `path`).
fn write_report(report: &Report, path: &Path, mut file: std::fs::File) -> Result<(), LoadError> {
    let fail = |source| LoadError::Report {
        path: path.to_owned(),
        source,
    };
    file.write_all(html::render(report).as_bytes())
        .map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// Run the load test described by `args` to its end and return the report; with `--report`,
/// write the HTML report too (the file is created before the run starts, so a path that cannot
/// be written fails at once).
///
/// Builds its own tokio runtime (`--threads` workers), so call it from a plain thread (or
/// `spawn_blocking`), never from inside a runtime. Always returns: clients stop at their next step
/// after `--duration` (or once `--requests` is reached) and everything is aborted at
/// duration + 10 s.
pub fn run(args: &LoadArgs) -> Result<Report, LoadError> {
    let plan = Arc::new(args::Plan::new(args)?);
    limits::check_open_files(plan.clients)?;
    let report_file = match &args.report {
        Some(path) => Some((
            path,
            std::fs::File::create(path).map_err(|source| LoadError::Report {
                path: path.clone(),
                source,
            })?,
        )),
        None => None,
    };
    // Histogram shards: a few per worker so clients on different threads rarely share a lock.
    let stats = stats::Stats::new(plan.threads * 4)
        .map_err(|e| std::io::Error::other(format!("histogram: {e:?}")))?;
    let rt = if plan.threads == 1 {
        // One thread: the current-thread scheduler skips all work-stealing machinery.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.threads)
            .thread_name("tether-load")
            .enable_all()
            .build()?
    };
    let report = rt.block_on(runner::run(plan, stats));
    // Tasks left behind by the hard deadline (and hyper's connection tasks) are dropped here
    // without waiting for them.
    rt.shutdown_background();
    if let Some((path, file)) = report_file {
        write_report(&report, path, file)?;
    }
    Ok(report)
}

//! Building and running the pingora server that hosts [`Tether`](super::Tether).

use super::{Runtime, Tether};
use crate::config::Config;
use arc_swap::ArcSwap;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::sync::Arc;

/// Idle upstream connections kept for reuse, across all nodes.
pub const UPSTREAM_POOL_SIZE: usize = 1024;

/// Which request path serves traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Engine {
    /// tether's own thread-per-core HTTP/1.1 path (`crate::engine`): the default.
    #[default]
    Tether,
    /// pingora's proxy framework (`crate::proxy::Tether`), kept for comparison benchmarks.
    Pingora,
}

/// Process-level settings that are not part of the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads; defaults to the number of CPUs.
    pub threads: usize,
    pub engine: Engine,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            engine: Engine::default(),
        }
    }
}

/// Run tether with `config` until a signal stops it. Returns only if it cannot start.
pub fn run(config: &Config, opts: &RunOptions) -> std::io::Result<()> {
    match opts.engine {
        Engine::Tether => crate::engine::serve(config, opts.threads),
        Engine::Pingora => run_pingora(config, opts),
    }
}

fn run_pingora(config: &Config, opts: &RunOptions) -> ! {
    let mut conf = ServerConf {
        threads: opts.threads,
        upstream_keepalive_pool_size: UPSTREAM_POOL_SIZE,
        ..ServerConf::default()
    };
    // Until graceful drain lands (issue 3), stop promptly on SIGTERM.
    conf.grace_period_seconds = Some(0);
    conf.graceful_shutdown_timeout_seconds = Some(1);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    if let Some(u) = config.upstreams.iter().find(|u| u.discover.is_some()) {
        tracing::warn!(upstream = %u.name, "the pingora engine does not run DNS discovery: only the upstream's static nodes serve");
    }
    let runtime = Arc::new(ArcSwap::from_pointee(Runtime::new(config, None)));
    let mut service = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Tether::new(runtime),
        "tether",
    );
    for l in &config.listen {
        service.add_tcp(&l.address.to_string());
    }
    tracing::info!(
        listen = ?config.listen.iter().map(|l| l.address).collect::<Vec<_>>(),
        upstreams = config.upstreams.len(),
        config = %config.source.display(),
        "tether started"
    );
    server.add_service(service);
    server.run_forever()
}

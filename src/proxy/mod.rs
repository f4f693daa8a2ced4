//! The pingora `ProxyHttp` implementation: glue between a request and the pure cores.
//!
//! Per request, in pingora's phase order:
//! 1. `request_filter`: route by path (404 if none), read the client's pin (cookie), stretch the
//!    downstream read timeout for upgrades so a quiet tunnel is not cut.
//! 2. `upstream_peer`: keep the pin if its node is usable, else pick (ring successor for ip_hash,
//!    the balance policy otherwise) and count the request on the node.
//! 3. `fail_to_connect`: mark the node tried and retry elsewhere, a bounded number of times.
//! 4. `upstream_request_filter`: `X-Forwarded-*`.
//! 5. `response_filter`: `Set-Cookie` when the client got a new pin (also on `101`).
//! 6. `fail_to_proxy`: the status table in [`respond`].

pub mod decide;
pub mod forwarded;
pub mod respond;
pub mod route;
pub mod server;

use crate::config::Config;
use crate::upstream::node::LoadGuard;
use crate::upstream::Pool;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use decide::{unix_now, Affinity, Decision};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use route::Router;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an idle pooled connection to a node is kept for reuse.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a request needs from the config, built once per (re)load.
pub struct Runtime {
    pub pools: Vec<Pool>,
    pub router: Router,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Runtime {
    /// Build from config; with `previous` (a reload), nodes keep their live state by id.
    pub fn new(config: &Config, previous: Option<&Runtime>) -> Runtime {
        Runtime {
            pools: config
                .upstreams
                .iter()
                .map(|up| {
                    let old = previous.and_then(|p| p.pools.iter().find(|o| o.name == up.name));
                    Pool::new(up, old)
                })
                .collect(),
            router: Router::new(&config.routes),
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// The proxy. Cheap to share: the runtime is swapped atomically on reload.
pub struct Tether {
    runtime: Arc<ArcSwap<Runtime>>,
}

impl Tether {
    pub fn new(runtime: Arc<ArcSwap<Runtime>>) -> Tether {
        Tether { runtime }
    }
}

/// Per-request state.
pub struct Ctx {
    started: Instant,
    runtime: Option<Arc<Runtime>>,
    pool: usize,
    affinity: Affinity,
    /// Holds the node's load counter up until the request or tunnel ends.
    guard: Option<LoadGuard>,
    upgrade: bool,
    client_ip: Option<IpAddr>,
}

impl Ctx {
    fn pool(&self) -> Option<&Pool> {
        self.runtime.as_ref()?.pools.get(self.pool)
    }
}

#[async_trait]
impl ProxyHttp for Tether {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            runtime: None,
            pool: 0,
            affinity: Affinity::default(),
            guard: None,
            upgrade: false,
            client_ip: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let rt = self.runtime.load_full();
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .map(|v| v.as_bytes())
            .or_else(|| req.uri.host().map(str::as_bytes));
        let Some(pool_index) = rt.router.route(host, req.uri.path()) else {
            let status = 404;
            session
                .respond_error_with_body(status, respond::body_for(status))
                .await?;
            return Ok(true);
        };
        ctx.pool = pool_index;
        ctx.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.upgrade = session.is_upgrade_req();
        let pool = &rt.pools[pool_index];
        if ctx.upgrade {
            // pingora's default 60 s downstream read timeout would cut a quiet WebSocket.
            session.set_read_timeout(Some(pool.timeouts.tunnel_idle));
        }
        let cookies = session.req_header().headers.get_all(http::header::COOKIE);
        ctx.affinity =
            Affinity::from_cookies(pool, cookies.iter().map(|v| v.as_bytes()), unix_now());
        ctx.runtime = Some(rt);
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(rt) = ctx.runtime.clone() else {
            return Err(Error::explain(ErrorType::HTTPStatus(500), "no runtime"));
        };
        let pool = &rt.pools[ctx.pool];
        let before = ctx.affinity.node;
        let Some(node) = ctx.affinity.choose(pool, ctx.client_ip, ctx.upgrade) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                format!("upstream {}: no usable node", pool.name),
            ));
        };
        if ctx.affinity.decision == Some(Decision::Repinned) && before != Some(node) {
            tracing::info!(
                upstream = %pool.name,
                to = %pool.nodes[node].id,
                reason = "node refused the connection",
                "client re-pinned"
            );
        }
        let state = &pool.nodes[node];
        ctx.guard = Some(state.acquire());
        let mut peer = HttpPeer::new(state.address, false, String::new());
        let t = pool.timeouts;
        peer.options.connection_timeout = Some(t.connect);
        // For an upgrade this timeout also governs the tunnel, so it is the idle limit.
        peer.options.read_timeout = Some(if ctx.upgrade {
            t.tunnel_idle.max(t.read)
        } else {
            t.read
        });
        peer.options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        tracing::warn!(node = %peer, error = ?e.etype(), "connect to node failed");
        ctx.affinity.connect_failed();
        ctx.guard = None;
        if ctx.pool().is_some_and(|p| ctx.affinity.may_retry(p)) {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        forwarded::apply(upstream_request, ctx.client_ip, session.req_header(), false)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(set) = ctx
            .pool()
            .and_then(|p| ctx.affinity.set_cookie(p, unix_now(), false))
        {
            upstream_response.append_header(http::header::SET_COOKIE, set)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let status = respond::status_for(e);
        if status > 0 {
            if let Err(we) = session
                .respond_error_with_body(status, respond::body_for(status))
                .await
            {
                tracing::debug!(error = %we, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        // Release the node's load before anything else: the request (or tunnel) is over.
        ctx.guard = None;
        if !tracing::enabled!(tracing::Level::DEBUG) && e.is_none() {
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let node = ctx
            .affinity
            .node
            .and_then(|n| ctx.pool().and_then(|p| p.nodes.get(n)))
            .map(|n| n.id.as_str())
            .unwrap_or("-");
        let upstream = ctx.pool().map(|p| p.name.as_str()).unwrap_or("-");
        match e {
            Some(e) => tracing::info!(
                method = %session.req_header().method,
                path = %session.req_header().uri.path(),
                status, upstream, node, decision = ?ctx.affinity.decision,
                error = %e, elapsed_ms = ctx.started.elapsed().as_millis() as u64,
                "request failed"
            ),
            None => tracing::debug!(
                method = %session.req_header().method,
                path = %session.req_header().uri.path(),
                status, upstream, node, decision = ?ctx.affinity.decision, upgrade = ctx.upgrade,
                elapsed_ms = ctx.started.elapsed().as_millis() as u64,
                "request"
            ),
        }
    }
}

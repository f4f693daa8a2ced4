//! Micro-benchmarks of the pure hot paths: token sign/verify, Cookie header parse, ring lookup,
//! balance pick, route match. `cargo bench --bench micro`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tether::affinity::ring::{ip_key, Ring};
use tether::affinity::token::Keyring;
use tether::affinity::CookiePins;
use tether::config::{CookieSettings, Route};
use tether::runtime::balance::Balancer;
use tether::runtime::node::NodeState;
use tether::runtime::route::Router;

const SECRET: &[u8] = b"bench-secret-0123456789abcdef0123456789";

fn settings() -> CookieSettings {
    CookieSettings {
        max_age: Some(std::time::Duration::from_secs(3600)),
        ..CookieSettings::with_secret(SECRET)
    }
}

fn tokens(c: &mut Criterion) {
    let ring = Keyring::new(SECRET, &[]);
    let tag = ring.keys()[0].node_tag("node-b");
    let token = ring.sign(&tag, 1_000_000);
    c.bench_function("token_sign", |b| {
        b.iter(|| ring.sign(black_box(&tag), 1_000_000))
    });
    c.bench_function("token_verify", |b| {
        b.iter(|| ring.verify(black_box(token.as_bytes()), 1_000_100, Some(3600)))
    });
}

fn cookies(c: &mut Criterion) {
    let ids = ["node-a", "node-b", "node-c"];
    let pins = CookiePins::new(&settings(), &[], &ids);
    let set = pins.issue(1, 1_000_000);
    let header = format!(
        "_ga=GA1.2.3.4; session=abcdef0123456789; {}; theme=dark",
        set.split(';').next().unwrap_or_default()
    );
    c.bench_function("cookie_header_lookup", |b| {
        b.iter(|| pins.lookup([black_box(header.as_bytes())], 1_000_100))
    });
    c.bench_function("set_cookie_issue", |b| {
        b.iter(|| pins.issue(black_box(2), 1_000_000))
    });
}

fn ring_and_balance(c: &mut Criterion) {
    let ids: Vec<String> = (0..16).map(|i| format!("node-{i}")).collect();
    let ring = Ring::new(ids.iter().map(|s| (s.as_str(), 1)));
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77));
    c.bench_function("ring_lookup_16_nodes", |b| {
        b.iter(|| {
            let mut buf = [0u8; 16];
            ring.get(ip_key(black_box(ip), &mut buf))
        })
    });
    let nodes: Vec<_> = ids
        .iter()
        .map(|id| {
            Arc::new(NodeState::new(
                id.clone(),
                "127.0.0.1:1".parse().unwrap(),
                1,
            ))
        })
        .collect();
    let lc = Balancer::least_conn();
    c.bench_function("least_conn_pick_16_nodes", |b| {
        b.iter(|| lc.pick(&nodes, |_| true))
    });
    let rr = Balancer::round_robin(&[1; 16]);
    c.bench_function("round_robin_pick_16_nodes", |b| {
        b.iter(|| rr.pick(&nodes, |_| true))
    });
}

fn routes(c: &mut Criterion) {
    let router = Router::new(&[
        Route::new("/", 0),
        Route::new("/socket.io/", 1),
        Route::new("/graphql", 2),
        Route::new("/api/v1/", 3),
    ]);
    c.bench_function("route_match", |b| {
        b.iter(|| {
            router.route(
                black_box(Some(b"chat.example.com")),
                black_box("/socket.io/?EIO=4&transport=polling&t=Nx3"),
            )
        })
    });
}

/// With routes that name hosts, every request also finds its host table (an exact name here).
fn host_routes(c: &mut Criterion) {
    use tether::config::HostPattern;
    let hosted = |host: &str, prefix: &str, upstream: usize| Route {
        hosts: vec![HostPattern::parse(host).unwrap()],
        ..Route::new(prefix, upstream)
    };
    let router = Router::new(&[
        Route::new("/", 0),
        hosted("chat.example.com", "/", 1),
        hosted("*.example.com", "/", 2),
        hosted("*.example.com", "/graphql", 3),
        hosted("example.org", "/", 4),
    ]);
    c.bench_function("route_match_by_host", |b| {
        b.iter(|| {
            router.route(
                black_box(Some(b"Chat.Example.com:443")),
                black_box("/socket.io/?EIO=4&transport=polling&t=Nx3"),
            )
        })
    });
}

criterion_group!(
    benches,
    tokens,
    cookies,
    ring_and_balance,
    routes,
    host_routes
);
criterion_main!(benches);

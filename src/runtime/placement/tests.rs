//! `Placement::choose` as a table: each pinning mode × what the request carries × the state of
//! the node it is pinned to × the tunnel cap × nodes already tried, and what must come out.

use super::*;
use crate::affinity::ring::Ring;
use crate::runtime::node::{AdminState, Health, LoadGuard};
use crate::runtime::request::Parts;
use std::net::IpAddr;

const SECRET: &str = "placement-test-secret-0123456789abcdef";

/// A pool of nodes a, b, c (weight 1) with `affinity` (YAML flow mapping) and a tunnel cap.
fn pool(affinity: &str, cap: u32) -> Pool {
    let text = format!(
        "listen: [{{ address: \"127.0.0.1:8080\" }}]\nupstreams:\n  up:\n    affinity: {affinity}\n    max_tunnels_per_node: {cap}\n    nodes:\n      - {{ id: a, address: \"127.0.0.1:1\" }}\n      - {{ id: b, address: \"127.0.0.1:2\" }}\n      - {{ id: c, address: \"127.0.0.1:3\" }}\n"
    );
    let env = |k: &str| (k == "PLACEMENT_SECRET").then(|| SECRET.to_string());
    let config = crate::config::parse(std::path::Path::new("t.yaml"), &text, &env)
        .unwrap_or_else(|e| panic!("{e}"));
    Pool::new(&config.upstreams[0], None)
}

const COOKIE: &str = "{ mode: cookie, cookie: { secret_env: PLACEMENT_SECRET } }";
const IP_HASH: &str = "{ mode: ip_hash }";
const NONE: &str = "{ mode: none }";
const KEY: &str = "{ mode: key, key: \"query:room\" }";
const KEY_COOKIE: &str =
    "{ mode: key, key: \"query:room\", fallback: cookie, cookie: { secret_env: PLACEMENT_SECRET } }";
const KEY_NONE: &str = "{ mode: key, key: \"query:room\", fallback: none }";

/// What a request carries.
#[derive(Debug, Clone, Copy)]
enum Carries {
    Nothing,
    /// Our cookie, valid, naming node `a`.
    Valid,
    /// A cookie that was valid for a node no longer in the pool.
    Stale,
    /// Our cookie's name with a value that does not verify.
    Invalid,
    /// A key whose ring owner is `a`.
    KeyOfA,
}

/// What happened to node `a` (the pinned node, or the ring owner) before the request.
#[derive(Debug, Clone, Copy)]
enum State {
    Fine,
    Draining,
    Disabled,
    Unhealthy,
    /// Its tunnels are at the cap, and the request is an upgrade.
    Full,
    /// It refused this request's connection already.
    Tried,
}

/// What must come out.
#[derive(Debug, PartialEq)]
enum Want {
    /// Node `a`, by this decision and source.
    A(Decision, Source),
    /// Some node other than `a`.
    Other(Decision, Source),
    /// Any node (nothing pins the request).
    Any(Decision, Source),
    /// No node: 503.
    NoNode,
}

/// An address whose ring owner is node `a` (ip_hash), and a key whose owner is `a`.
fn owned_by_a(pool: &Pool) -> (IpAddr, String) {
    let ring = match &pool.pinning {
        Pinning::IpHash(r) | Pinning::Key { ring: r, .. } => r.clone(),
        _ => Ring::new([("a", 1), ("b", 1), ("c", 1)]),
    };
    let ip = (1..=250u8)
        .map(|i| IpAddr::from([10, 0, 0, i]))
        .find(|ip| {
            let mut buf = [0u8; 16];
            ring.get(ip_key(*ip, &mut buf)) == Some(0)
        })
        .expect("some address on a");
    let key = (0..1000)
        .map(|i| format!("room{i}"))
        .find(|k| ring.get(k.as_bytes()) == Some(0))
        .expect("some key on a");
    (ip, key)
}

fn run(affinity: &str, carries: Carries, state: State) -> (Want, Placement) {
    let cap = if matches!(state, State::Full) { 2 } else { 0 };
    let pool = pool(affinity, cap);
    let (ip, key) = owned_by_a(&pool);
    let a = &pool.nodes[0];
    let mut held: Vec<LoadGuard> = Vec::new();
    match state {
        State::Fine | State::Tried => {}
        State::Draining => {
            a.set_admin(AdminState::Draining);
        }
        State::Disabled => {
            a.set_admin(AdminState::Disabled);
        }
        State::Unhealthy => {
            a.set_health("up", Health::Unhealthy, "test");
        }
        State::Full => {
            for _ in 0..2 {
                let mut g = a.acquire();
                g.into_tunnel();
                held.push(g);
            }
        }
    }
    let cookie = match carries {
        Carries::Valid => pool
            .pinning
            .cookie()
            .map(|p| first_pair(&p.issue(0, unix_now_for_test()))),
        Carries::Stale => {
            // Signed by the same key for a node id this pool does not have.
            let other = crate::affinity::CookiePins::new(
                &crate::config::CookieSettings::with_secret(SECRET),
                &[],
                &["gone"],
            );
            Some(first_pair(&other.issue(0, unix_now_for_test())))
        }
        Carries::Invalid => Some("tether_node=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        _ => None,
    };
    let target = match carries {
        Carries::KeyOfA => format!("/ws?room={key}"),
        _ => "/ws".to_string(),
    };
    let mut fields = Vec::new();
    if let Some(c) = &cookie {
        fields.push(("cookie", c.as_bytes()));
    }
    let req = Parts {
        method: b"GET",
        authority: Some(b"h"),
        target: target.as_bytes(),
        upgrade: matches!(state, State::Full),
        fields,
    };
    let mut p = Placement::from_request(&pool, &req, unix_now_for_test());
    let upgrade = req.upgrade;
    if matches!(state, State::Tried) {
        // The first choice refused its connection; choose again.
        let first = p.choose(&pool, Some(ip), upgrade);
        assert_eq!(first, Some(0), "the first choice is a");
        p.connect_failed();
    }
    let got = p.choose(&pool, Some(ip), upgrade);
    let (d, s) = (p.decision.expect("a decision"), p.source);
    let want = match got {
        None => Want::NoNode,
        Some(0) => Want::A(d, s),
        Some(_) => Want::Other(d, s),
    };
    drop(held);
    (want, p)
}

/// `name=value` of a `Set-Cookie` line: what a browser sends back.
fn first_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

fn unix_now_for_test() -> u64 {
    1_800_000_000
}

#[test]
fn choose_over_modes_pins_and_node_states() {
    use Carries::*;
    use Decision::*;
    use Source as S;
    use State::*;
    let other = |d, s| Want::Other(d, s);
    #[rustfmt::skip]
    let table: &[(&str, &str, Carries, State, Want)] = &[
        // Cookie affinity: a valid pin is honoured while its node serves pinned clients.
        ("cookie", COOKIE, Valid, Fine, Want::A(Hit, S::Cookie)),
        ("cookie", COOKIE, Valid, Draining, Want::A(Hit, S::Cookie)),
        ("cookie", COOKIE, Valid, Disabled, other(Repinned, S::New)),
        ("cookie", COOKIE, Valid, Unhealthy, other(Repinned, S::New)),
        ("cookie", COOKIE, Valid, Tried, other(Repinned, S::New)),
        // A pinned client whose node's tunnels are full waits (503) rather than moving.
        ("cookie", COOKIE, Valid, Full, Want::NoNode),
        ("cookie", COOKIE, Stale, Fine, Want::Any(Repinned, S::New)),
        ("cookie", COOKIE, Invalid, Fine, Want::Any(New, S::New)),
        ("cookie", COOKIE, Nothing, Fine, Want::Any(New, S::New)),
        // A first pick never goes to a node that takes no new clients.
        ("cookie", COOKIE, Nothing, Draining, other(New, S::New)),
        ("cookie", COOKIE, Nothing, Disabled, other(New, S::New)),
        ("cookie", COOKIE, Nothing, Unhealthy, other(New, S::New)),
        ("cookie", COOKIE, Nothing, Full, other(New, S::New)),
        // ip_hash: the ring owner while it serves pinned clients, else its successor.
        ("ip_hash", IP_HASH, Nothing, Fine, Want::A(Hit, S::IpHash)),
        ("ip_hash", IP_HASH, Nothing, Draining, Want::A(Hit, S::IpHash)),
        ("ip_hash", IP_HASH, Nothing, Disabled, other(Hit, S::IpHash)),
        ("ip_hash", IP_HASH, Nothing, Unhealthy, other(Hit, S::IpHash)),
        ("ip_hash", IP_HASH, Nothing, Tried, other(Repinned, S::New)),
        ("ip_hash", IP_HASH, Nothing, Full, other(Hit, S::IpHash)),
        // A cookie means nothing to ip_hash.
        ("ip_hash", IP_HASH, Valid, Fine, Want::A(Hit, S::IpHash)),
        // none: anyone may take any request.
        ("none", NONE, Nothing, Fine, Want::Any(Unpinned, S::New)),
        ("none", NONE, Nothing, Disabled, other(Unpinned, S::New)),
        ("none", NONE, Nothing, Tried, other(Unpinned, S::New)),
        // Key affinity: the key's ring owner, like ip_hash.
        ("key", KEY, KeyOfA, Fine, Want::A(Hit, S::Key)),
        ("key", KEY, KeyOfA, Draining, Want::A(Hit, S::Key)),
        ("key", KEY, KeyOfA, Disabled, other(Hit, S::Key)),
        ("key", KEY, KeyOfA, Unhealthy, other(Hit, S::Key)),
        ("key", KEY, KeyOfA, Tried, other(Repinned, S::New)),
        // Without the key: the fallback (ip_hash by default, then cookie, then none).
        ("key", KEY, Nothing, Fine, Want::A(Hit, S::IpHash)),
        ("key+cookie", KEY_COOKIE, Valid, Fine, Want::A(Hit, S::Cookie)),
        ("key+cookie", KEY_COOKIE, Nothing, Fine, Want::Any(New, S::New)),
        ("key+cookie", KEY_COOKIE, KeyOfA, Fine, Want::A(Hit, S::Key)),
        ("key+none", KEY_NONE, Nothing, Fine, Want::Any(Unpinned, S::New)),
    ];
    let mut problems = Vec::new();
    for (mode, affinity, carries, state, want) in table {
        let (got, _) = run(affinity, *carries, *state);
        let ok = match (want, &got) {
            (Want::Any(d, s), Want::A(gd, gs) | Want::Other(gd, gs)) => d == gd && s == gs,
            (w, g) => w == g,
        };
        if !ok {
            problems.push(format!(
                "{mode} {carries:?} {state:?}: want {want:?}, got {got:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn cookies_are_issued_when_the_pin_is_new_or_moved_and_only_then() {
    let issued = |affinity, carries, state| run(affinity, carries, state).1.issue_cookie;
    assert!(!issued(COOKIE, Carries::Valid, State::Fine));
    assert!(issued(COOKIE, Carries::Valid, State::Disabled));
    assert!(issued(COOKIE, Carries::Nothing, State::Fine));
    assert!(issued(COOKIE, Carries::Invalid, State::Fine));
    assert!(run(COOKIE, Carries::Invalid, State::Fine).1.invalid_token);
    assert!(!issued(IP_HASH, Carries::Nothing, State::Fine));
    assert!(
        !issued(KEY_COOKIE, Carries::KeyOfA, State::Fine),
        "the key decides"
    );
    assert!(
        issued(KEY_COOKIE, Carries::Nothing, State::Fine),
        "the fallback pins"
    );
}

#[test]
fn the_key_is_read_as_configured_and_decoded() {
    let req = |target: &'static str, fields: Vec<(&'static str, &'static [u8])>| Parts {
        method: b"GET",
        authority: None,
        target: target.as_bytes(),
        upgrade: false,
        fields,
    };
    let q = KeySource::Query("room".into());
    assert_eq!(
        key_value(&q, &req("/x?a=1&room=r%201&room=2", vec![])),
        Some(b"r 1".to_vec())
    );
    assert_eq!(
        key_value(&q, &req("/x?ro%6Fm=r1", vec![])),
        Some(b"r1".to_vec())
    );
    assert_eq!(
        key_value(&q, &req("/x?room=", vec![])),
        None,
        "empty is absent"
    );
    assert_eq!(key_value(&q, &req("/x", vec![])), None);
    let h = KeySource::Header("X-Tenant".into());
    assert_eq!(
        key_value(&h, &req("/", vec![("x-tenant", b" t1 ")])),
        Some(b"t1".to_vec())
    );
    let c = KeySource::Cookie("tenant".into());
    assert_eq!(
        key_value(&c, &req("/", vec![("cookie", b"a=1; tenant=t9")])),
        Some(b"t9".to_vec())
    );
}

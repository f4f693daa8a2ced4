//! Unit tests for config loading, and the golden files under `tests/data/check/`.

use std::path::Path;
use std::time::Duration;

use super::duration::parse_duration;
use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const ADMIN_TOKEN: &str = "admin-token-value";

/// The environment seen by these tests and the golden files.
fn env(name: &str) -> Option<String> {
    match name {
        "TETHER_SECRET" => Some(SECRET.to_string()),
        // Surrounding whitespace, as `$(cat file)` or a stray newline would leave it.
        "TETHER_ADMIN_TOKEN" => Some(format!(" {ADMIN_TOKEN}\n")),
        "TETHER_EMPTY" => Some("  ".to_string()),
        _ => None,
    }
}

fn check(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("t.yaml"), text, &env)
}

/// The error lines of `text`, without the `t.yaml:` prefix.
fn errors(text: &str) -> Vec<String> {
    match check(text) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .to_string()
            .lines()
            .map(|l| l.trim_start_matches("t.yaml:").to_string())
            .collect(),
    }
}

/// A small valid file; `extra` is inserted as line 5, inside upstream `realtime`.
fn minimal(extra: &str) -> String {
    format!(
        "listen:\n  - address: \"127.0.0.1:8080\"\nupstreams:\n  realtime:\n{extra}\n    nodes:\n      - {{ id: a, address: \"127.0.0.1:3001\" }}\n"
    )
}

const WITH_SECRET: &str = "    affinity: { cookie: { secret_env: TETHER_SECRET } }";

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    assert_eq!(
        parse_duration("30"),
        Err("`30` has no unit: write `30s` or `30ms`".to_string())
    );
    assert!(parse_duration("").is_err());
    assert!(parse_duration("fast")
        .unwrap_err()
        .contains("`fast` is not a duration"));
}

#[test]
fn minimal_config_gets_defaults() {
    let c = check(&minimal(WITH_SECRET)).unwrap();
    let addresses: Vec<_> = c
        .listen
        .iter()
        .map(|l| (l.address, l.tls.is_none()))
        .collect();
    assert_eq!(addresses, vec![("127.0.0.1:8080".parse().unwrap(), true)]);
    assert_eq!(c.routes, vec![Route::new("/", 0)]);
    let u = &c.upstreams[0];
    assert_eq!(u.nodes[0].weight, defaults::DEFAULT_WEIGHT);
    assert_eq!(u.balance, Balance::LeastConn);
    assert_eq!(u.timeouts.connect, defaults::DEFAULT_CONNECT_TIMEOUT);
    let Affinity::Cookie(cookie) = &u.affinity else {
        panic!("expected cookie affinity")
    };
    assert_eq!(cookie.name, "tether_node");
    assert_eq!(cookie.secret, SECRET.as_bytes());
    assert_eq!(
        (cookie.secure, cookie.http_only, cookie.same_site),
        (false, true, SameSite::Lax)
    );
    assert!(!format!("{cookie:?}").contains(SECRET));
    assert_eq!(c.admin, None);
    assert_eq!(c.shutdown.grace, defaults::DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(
        c.shutdown.close_window,
        defaults::DEFAULT_SHUTDOWN_CLOSE_WINDOW
    );
    assert_eq!(u.health_check, None);
    assert_eq!(u.passive.max_fails, defaults::DEFAULT_PASSIVE_MAX_FAILS);
    assert_eq!(
        u.passive.fail_timeout,
        defaults::DEFAULT_PASSIVE_FAIL_TIMEOUT
    );
    assert_eq!(u.slow_start, Duration::ZERO);
}

/// `minimal(extra)` with `top` appended as top-level keys (from line 8 on).
fn with_top(extra: &str, top: &str) -> String {
    format!("{}{top}\n", minimal(extra))
}

#[test]
fn empty_health_check_section_is_a_tcp_check_with_defaults() {
    let c = check(&minimal(&format!("{WITH_SECRET}\n    health_check: {{}}"))).unwrap();
    let h = c.upstreams[0].health_check.as_ref().unwrap();
    assert_eq!(*h, HealthCheck::default());
    assert_eq!(h.path, None);
    assert_eq!((h.rise, h.fall), (2, 2));
    assert_eq!(h.interval, Duration::from_secs(1));
    assert_eq!(h.timeout, Duration::from_millis(500));
    assert!(h.status_ok(200) && h.status_ok(299) && !h.status_ok(301));
}

#[test]
fn health_check_accepts_a_single_status_and_zero_durations_where_allowed() {
    let extra = format!(
        "{WITH_SECRET}\n    health_check: {{ path: /healthz, host: rt.local, expect_status: 204 }}\n    passive: {{ max_fails: 0 }}\n    slow_start: 0s"
    );
    let c = check(&with_top(
        &extra,
        "shutdown: { grace: 0s, close_window: 0s }",
    ))
    .unwrap();
    let u = &c.upstreams[0];
    let h = u.health_check.as_ref().unwrap();
    assert_eq!(h.path.as_deref(), Some("/healthz"));
    assert_eq!(h.host.as_deref(), Some("rt.local"));
    assert_eq!(h.expect_status, [204]);
    assert!(h.status_ok(204) && !h.status_ok(200));
    assert_eq!(u.passive.max_fails, 0);
    assert_eq!(u.slow_start, Duration::ZERO);
    assert_eq!(c.shutdown.grace, Duration::ZERO);
    assert_eq!(c.shutdown.close_window, Duration::ZERO);
}

#[test]
fn health_timeout_must_be_shorter_than_interval() {
    // Only interval is written, so the message points at it.
    let extra = format!("{WITH_SECRET}\n    health_check: {{ interval: 500ms }}");
    let errs = errors(&minimal(&extra));
    assert_eq!(errs, ["6:31: upstreams.realtime.health_check.interval: timeout (500ms) must be shorter than interval (500ms), or a check would still be running when the next one starts; shorten timeout or lengthen interval"]);
}

#[test]
fn admin_token_is_read_trimmed_and_never_printed() {
    let text = with_top(
        WITH_SECRET,
        "admin: { address: \"0.0.0.0:9901\", token_env: TETHER_ADMIN_TOKEN }",
    );
    let admin = check(&text).unwrap().admin.unwrap();
    assert_eq!(admin.address, "0.0.0.0:9901".parse().unwrap());
    assert_eq!(admin.token.as_deref(), Some(ADMIN_TOKEN));
    let debug = format!("{admin:?}");
    assert!(!debug.contains(ADMIN_TOKEN), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

#[test]
fn loopback_admin_needs_no_token() {
    for address in [
        "127.0.0.1:9901",
        "127.1.2.3:9901",
        "[::1]:9901",
        "[::ffff:127.0.0.1]:9901",
    ] {
        let text = with_top(WITH_SECRET, &format!("admin: {{ address: \"{address}\" }}"));
        let admin = check(&text).unwrap().admin.unwrap();
        assert_eq!(admin.token, None, "{address}");
    }
    let text = with_top(WITH_SECRET, "admin: { address: \"[::]:9901\" }");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("8:19: admin.address: `[::]:9901` is not a loopback address, so anyone who can reach it could drain nodes"),
        "{errs:?}"
    );
}

#[test]
fn admin_address_must_not_reuse_a_listener() {
    for address in ["127.0.0.1:8080", "0.0.0.0:8080"] {
        let text = with_top(
            WITH_SECRET,
            &format!("admin: {{ address: \"{address}\", token_env: TETHER_ADMIN_TOKEN }}"),
        );
        let errs = errors(&text);
        assert_eq!(errs, [format!("8:19: admin.address: `{address}` overlaps the listen address `127.0.0.1:8080`; give the admin API a port of its own")]);
    }
}

#[test]
fn missing_secret_points_at_upstream() {
    let text = minimal("    affinity: { mode: cookie }");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "5:5: upstreams.realtime.affinity: cookie affinity needs a signing secret"
        ),
        "{errs:?}"
    );
}

#[test]
fn ip_hash_ignores_cookie_section() {
    let text = minimal("    affinity: { mode: ip_hash, cookie: { name: \"bad name\" } }");
    assert_eq!(
        check(&text).unwrap().upstreams[0].affinity,
        Affinity::IpHash
    );
}

#[test]
fn upstreams_keep_file_order_and_routes_resolve() {
    let text = "\
listen: [{ address: \"[::1]:0\" }]
upstreams:
  zeta: { nodes: [{ id: z, address: \"10.0.0.1:1\" }], affinity: { mode: none } }
  alpha: { nodes: [{ id: a, address: \"10.0.0.2:1\" }], affinity: { mode: none } }
routes:
  - { path_prefix: /api/, upstream: alpha }
  - { path_prefix: /, upstream: zeta }
";
    let c = check(text).unwrap();
    let names: Vec<&str> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha"]);
    assert_eq!(c.routes[0], Route::new("/api/", 1));
}

#[test]
fn several_upstreams_need_routes() {
    let text = "\
listen: [{ address: \"127.0.0.1:1\" }]
upstreams:
  a: { nodes: [{ id: a, address: \"10.0.0.1:1\" }], affinity: { mode: none } }
  b: { nodes: [{ id: b, address: \"10.0.0.2:1\" }], affinity: { mode: none } }
";
    let errs = errors(text);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("2:1: routes: required when there are several upstreams"),
        "{errs:?}"
    );
}

#[test]
fn secret_file_is_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), format!("  {SECRET}\n")).unwrap();
    let text = minimal("    affinity: { cookie: { secret_file: secret } }");
    let c = parse(&dir.path().join("tether.yaml"), &text, &|_| None).unwrap();
    let Affinity::Cookie(cookie) = &c.upstreams[0].affinity else {
        panic!("expected cookie affinity")
    };
    assert_eq!(cookie.secret, SECRET.as_bytes());
}

#[test]
fn read_shorter_than_connect() {
    let text = minimal(&format!(
        "{WITH_SECRET}\n    timeouts: {{ connect: 5s, read: 1s }}"
    ));
    let errs = errors(&text);
    assert_eq!(errs, ["6:36: upstreams.realtime.timeouts.read: read (1s) is shorter than connect (5s); make read at least as long as connect"]);
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "---",
        "[",
        "]]]",
        "a: [",
        "*x",
        "&a [*a]",
        "? [a]: b",
        "listen: !!binary x",
        "\t- x",
        "{a: {b: {c: ",
    ] {
        let _ = check(text);
    }
    // Every truncation and every single-line deletion of the full example must not panic.
    let full = include_str!("../../conf/tether.yaml");
    for (i, _) in full.char_indices() {
        let _ = check(&full[..i]);
    }
    let lines: Vec<&str> = full.lines().collect();
    for skip in 0..lines.len() {
        let text: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, l)| *l)
            .collect();
        let _ = check(&text.join("\n"));
    }
    assert!(check("")
        .unwrap_err()
        .to_string()
        .contains("`listen` is missing"));
}

#[test]
fn unreadable_file() {
    let e = load(Path::new("/nonexistent/tether.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/tether.yaml:1:1: cannot read the config file: "),
        "{e}"
    );
}

#[test]
fn example_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["conf/tether.yaml", "conf/ip-hash.yaml"] {
        if let Err(e) = load_with_env(&root.join(name)) {
            panic!("{name} does not parse:\n{e}");
        }
    }
    let c = load_with_env(&root.join("conf/tether.yaml")).unwrap();
    assert_eq!(c.listen[0].address, "127.0.0.1:8080".parse().unwrap());
    let ids: Vec<(&str, u32)> = c.upstreams[0]
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.weight))
        .collect();
    assert_eq!(ids, [("node-a", 1), ("node-b", 2), ("node-c", 1)]);
    // The example shows the new sections too, without needing an admin token.
    let admin = c
        .admin
        .as_ref()
        .expect("conf/tether.yaml shows an admin section");
    assert!(admin.address.ip().is_loopback() && admin.token.is_none());
    let h = c.upstreams[0]
        .health_check
        .as_ref()
        .expect("and a health check");
    assert_eq!(h.path.as_deref(), Some("/healthz"));
}

fn load_with_env(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).unwrap();
    parse(path, &text, &env)
}

/// Each `tests/data/check/X.yaml` must produce exactly `X.expected` (empty when valid).
/// Run with `TETHER_BLESS=1` to rewrite the expected files after reviewing the change.
#[test]
fn golden_check_files() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/check"));
    let bless = std::env::var("TETHER_BLESS").is_ok_and(|v| v == "1");
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for yaml in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        count += 1;
        let name = yaml.file_name().unwrap().to_str().unwrap();
        let rel = Path::new("tests/data/check").join(name);
        let text = std::fs::read_to_string(yaml).unwrap();
        let got = match parse(&rel, &text, &env) {
            Ok(_) => String::new(),
            Err(e) => format!("{e}\n"),
        };
        let expected_path = yaml.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            failures.push(format!("--- {name}\nexpected:\n{want}got:\n{got}"));
        }
    }
    assert!(count >= 10, "only {count} golden files found");
    assert!(
        failures.is_empty(),
        "golden mismatches (TETHER_BLESS=1 to rewrite):\n{}",
        failures.join("\n")
    );
}

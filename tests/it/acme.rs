//! Certificates from ACME, against a real ACME server: Pebble (Let's Encrypt's test CA) on
//! loopback, its validator connecting to the tether under test. A fresh tether obtains its
//! certificate by TLS-ALPN-01 and by HTTP-01 (the challenge answered before routing, never
//! forwarded), curl trusts the chain Pebble issued, a renewal is picked up while 100 `wss://`
//! tunnels keep echoing, a CA that refuses or cannot be reached leaves the certificate in use
//! and the error on `/status`, two replicas sharing `storage` make one order and serve it both
//! (the validation answered by the replica that did not order), and a CA that requires External
//! Account Binding issues with `eab:` and refuses without it.

use crate::support::pebble::{low_port, Options, Pebble};
use crate::support::{self, Proxy};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// How long an order may take before a test gives up (Pebble answers in well under a second).
const ORDER_LIMIT: Duration = Duration::from_secs(60);

/// A config with a plain listener (`{listen}`, or `plain` when given), a TLS listener on
/// 127.0.0.1:`tls_port` whose certificate comes from `acme` (the body of `acme:`), the admin
/// API, JSON logs, and one upstream over `nodes`.
fn acme_config(nodes: &[tether::demo::Node], tls_port: u16, acme: &str) -> String {
    let base = support::config(nodes, "mode: none", "");
    let mut listen = format!(
        "listen:\n  - address: \"{{listen}}\"\n  - address: \"127.0.0.1:{tls_port}\"\n    tls:\n      acme:\n"
    );
    for line in acme.lines() {
        listen.push_str(&format!("        {line}\n"));
    }
    let rest = base
        .strip_prefix("listen:\n  - address: \"{listen}\"\n")
        .expect("support::config starts with the listener");
    format!("{listen}{rest}admin:\n  address: \"{{admin}}\"\nlog: {{ format: json }}\n")
}

/// The `acme:` body for Pebble: `domains`, its directory and root, `storage`, `challenge`.
fn pebble_acme(pebble: &Pebble, domains: &str, storage: &Path, challenge: &str) -> String {
    format!(
        "domains: [{domains}]\nemail: ops@example.com\ndirectory: \"{}\"\nca_roots: \"{}\"\nstorage: \"{}\"\nchallenge: {challenge}\n",
        pebble.directory(),
        pebble.ca_roots().display(),
        storage.display()
    )
}

/// The first certificate's entry in `/status`.
async fn certificate(proxy: &Proxy) -> serde_json::Value {
    support::admin_status(proxy).await["certificates"][0].clone()
}

/// Poll `/status` (bounded) until the certificate entry satisfies `pred`; returns it.
async fn until_certificate(
    proxy: &Proxy,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let c = certificate(proxy).await;
        if pred(&c) {
            return c;
        }
        assert!(
            start.elapsed() < ORDER_LIMIT,
            "{what}: {c}\ntether's log:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client config trusting the PEM roots in `pem` (offering HTTP/1.1).
fn roots(pem: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    support::tls::config(roots, &[b"http/1.1"])
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to `addr` for `name`, verified against `config`'s roots.
async fn tls(config: &Arc<ClientConfig>, addr: SocketAddr, name: &str) -> Result<Tls, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())
}

fn leaf(stream: &Tls) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0]
        .clone()
}

/// `curl https://{name}:{port}{path}` resolved to 127.0.0.1, trusting only `root` (a PEM file).
fn curl(name: &str, port: u16, root: &Path, path: &str) -> (bool, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn gauge(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_tether_gets_its_certificate_by_tls_alpn_01_and_curl_trusts_the_chain() {
    let tls_port = low_port();
    let pebble = Pebble::start(Options {
        tls_port,
        ..Options::default()
    });
    let storage = tempfile::tempdir().unwrap();
    let store = storage.path().join("acme");
    let nodes = support::nodes(1).await;
    let started = Instant::now();
    let proxy = Proxy::start(&acme_config(
        &nodes,
        tls_port,
        &pebble_acme(&pebble, "a.test", &store, "tls-alpn-01"),
    ));
    let c = until_certificate(&proxy, "a certificate issued", |c| c["state"] == "valid").await;
    eprintln!(
        "TLS-ALPN-01: certificate in use {:?} after tether started; the order took {} ms",
        started.elapsed(),
        c["last_order_ms"]
    );
    assert_eq!(c["issued"], 1, "{c}");
    assert_eq!(c["domains"], serde_json::json!(["a.test"]));
    assert!(c["last_error"].is_null(), "{c}");
    // curl trusts the chain because Pebble's root issued it (and not without that root).
    let root_pem = pebble.issuing_root();
    let root = storage.path().join("pebble-root.pem");
    std::fs::write(&root, &root_pem).unwrap();
    let (ok, body, err) = curl("a.test", tls_port, &root, "/whoami");
    assert!(ok, "curl over https: {err}\n{}", pebble.log());
    assert!(body.starts_with("node-a"), "{body}");
    let (ok, _, _) = curl("a.test", tls_port, &pebble.ca_roots(), "/whoami");
    assert!(!ok, "a root that did not issue it is not trusted");
    // What is stored, and how.
    assert_eq!(mode(&store), 0o700);
    let dir = tether::certs::store::slot_dir(&store, &pebble.directory(), &["a.test".into()]);
    assert_eq!(mode(&dir), 0o700);
    for f in ["fullchain.pem", "key.pem"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let account = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("account-")
        })
        .expect("the account is stored");
    assert_eq!(mode(&account), 0o600);
    assert!(!dir.join("lock").exists(), "the lock is released");
    assert!(!dir.join("tls-alpn-01").exists(), "the answers are removed");
    // The expiry metric says when the certificate in use expires.
    let samples = support::metrics(&proxy).await;
    let expiry = gauge(
        &samples,
        "tether_certificate_expiry_seconds",
        &[("domain", "a.test")],
    )
    .expect("tether_certificate_expiry_seconds{domain=\"a.test\"}");
    assert_eq!(expiry as u64, c["not_after"].as_u64().unwrap());
    assert_eq!(
        support::counter(&samples, "tether_acme_orders_total", &[("result", "ok")]),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_is_answered_on_the_plain_listener_before_routing_and_never_forwarded() {
    let (http_port, tls_port) = (low_port(), low_port());
    let pebble = Pebble::start(Options {
        http_port,
        tls_port,
        ..Options::default()
    });
    let storage = tempfile::tempdir().unwrap();
    let nodes = support::nodes(1).await;
    let started = Instant::now();
    let proxy = Proxy::launch(
        &acme_config(
            &nodes,
            tls_port,
            &pebble_acme(&pebble, "b.test, www.b.test", storage.path(), "http-01"),
        ),
        support::proxy::Launch {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], http_port))),
            ..Default::default()
        },
    )
    .unwrap_or_else(|f| panic!("tether did not start: {}", f.log));
    let c = until_certificate(&proxy, "a certificate issued", |c| c["state"] == "valid").await;
    eprintln!(
        "HTTP-01: certificate for two names in use {:?} after tether started; the order took {} ms",
        started.elapsed(),
        c["last_order_ms"]
    );
    let root = storage.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.issuing_root()).unwrap();
    for name in ["b.test", "www.b.test"] {
        let (ok, body, err) = curl(name, tls_port, &root, "/whoami");
        assert!(ok && body.starts_with("node-a"), "{name}: {err}");
    }
    // Pebble's validator asked on the plain listener; tether answered (no node, 200).
    let log = proxy.log();
    let challenges: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["target"] == "tether::access"
                && v["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/.well-known/acme-challenge/"))
        })
        .collect();
    let tokens: std::collections::BTreeSet<&str> = challenges
        .iter()
        .filter_map(|v| v["path"].as_str())
        .collect();
    assert_eq!(tokens.len(), 2, "one token per name: {challenges:?}");
    for v in &challenges {
        assert_eq!(v["status"], 200, "{v}");
        assert_eq!(v["node"], "-", "never forwarded to a node: {v}");
    }
    // Once the order is over the path is the application's again: routed to the node.
    let r = support::Client::new(proxy.addr)
        .get("/.well-known/acme-challenge/Zm9v")
        .await;
    assert_eq!(r.status, 404, "the node answers unknown paths: {}", r.body);
    let routed = support::Client::new(proxy.addr).get("/whoami").await;
    assert!(routed.body.starts_with("node-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_is_picked_up_by_new_handshakes_while_100_wss_tunnels_keep_echoing() {
    let tls_port = low_port();
    // 12-second certificates: renewed 8 s into their life.
    let pebble = Pebble::start(Options {
        tls_port,
        validity: Some(12),
        ..Options::default()
    });
    let storage = tempfile::tempdir().unwrap();
    let nodes = support::nodes(2).await;
    let proxy = Proxy::start(&acme_config(
        &nodes,
        tls_port,
        &pebble_acme(&pebble, "c.test", storage.path(), "tls-alpn-01"),
    ));
    let first = until_certificate(&proxy, "a certificate issued", |c| c["state"] == "valid").await;
    let root = pebble.issuing_root();
    let client = roots(&root);
    let addr = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let old = leaf(&tls(&client, addr, "c.test").await.unwrap());
    let mut tunnels = Vec::new();
    for _ in 0..100 {
        let stream = tls(&client, addr, "c.test").await.unwrap();
        let req = "wss://c.test/ws".into_client_request().unwrap();
        let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await.unwrap();
        assert_eq!(resp.status(), 101);
        let _greeting = ws.next().await.unwrap().unwrap();
        tunnels.push(ws);
    }
    let renewal_started = Instant::now();
    let second = until_certificate(&proxy, "a renewal", |c| c["issued"].as_u64() >= Some(2)).await;
    eprintln!(
        "renewal: picked up {:?} after the 100 tunnels opened; the order took {} ms",
        renewal_started.elapsed(),
        second["last_order_ms"]
    );
    assert!(
        second["not_after"].as_u64() > first["not_after"].as_u64(),
        "{first} {second}"
    );
    // A client without a session to resume (which would keep the certificate it was shown).
    let new = leaf(&tls(&roots(&root), addr, "c.test").await.unwrap());
    assert_ne!(new, old, "the next handshake gets the renewed certificate");
    for (i, ws) in tunnels.iter_mut().enumerate() {
        let msg = Message::Text(format!("still here {i}").into());
        ws.send(msg.clone()).await.unwrap();
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(got)) => {
                    assert_eq!(got, msg, "tunnel {i} echoes across the renewal");
                    break;
                }
                other => panic!("tunnel {i}: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_refuses_or_cannot_be_reached_leaves_the_certificate_in_use_and_the_error_on_status(
) {
    // Refused: Pebble will not issue for this name. No certificate, so no handshake, and why.
    let tls_port = low_port();
    let pebble = Pebble::start(Options {
        tls_port,
        blocked: vec!["blocked.test".into()],
        ..Options::default()
    });
    let storage = tempfile::tempdir().unwrap();
    let nodes = support::nodes(1).await;
    let refused = Proxy::start(&acme_config(
        &nodes,
        tls_port,
        &pebble_acme(&pebble, "blocked.test", storage.path(), "tls-alpn-01"),
    ));
    let c = until_certificate(&refused, "the refusal on /status", |c| {
        c["state"] == "failed"
    })
    .await;
    let error = c["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("rejectedIdentifier"), "{c}");
    assert!(c["not_after"].is_null(), "{c}");
    let samples = support::metrics(&refused).await;
    assert!(
        gauge(
            &samples,
            "tether_acme_failures",
            &[("certificate", "blocked.test")]
        ) >= Some(1.0),
        "failures in a row counted"
    );
    let client = roots(&pebble.issuing_root());
    let no_cert = tls(
        &client,
        SocketAddr::from(([127, 0, 0, 1], tls_port)),
        "blocked.test",
    )
    .await;
    assert!(no_cert.is_err(), "no certificate, no handshake");
    drop(refused);

    // Unreachable, with a stored certificate that is due (five days left of twenty-five): it
    // stays in use, the failure shows, and the expiry warns.
    let ca = TestCa::new();
    let store = storage.path().join("due");
    let nowhere = format!("https://127.0.0.1:{}/dir", low_port());
    let dir = tether::certs::store::slot_dir(&store, &nowhere, &["a.test".into()]);
    let (chain, key) = ca.leaf("a.test", -20, 5);
    tether::certs::store::write_certificate(&dir, chain.as_bytes(), key.as_bytes()).unwrap();
    let tls_port = low_port();
    let proxy = Proxy::start(&acme_config(
        &nodes,
        tls_port,
        &format!(
            "domains: [a.test]\ndirectory: \"{nowhere}\"\nstorage: \"{}\"\n",
            store.display()
        ),
    ));
    let addr = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let trusted = roots(&ca.pem);
    let before = leaf(
        &tls(&trusted, addr, "a.test")
            .await
            .expect("the stored certificate"),
    );
    let c = until_certificate(&proxy, "the failure on /status", |c| c["state"] == "failed").await;
    assert!(
        c["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains(&nowhere),
        "{c}"
    );
    let after = leaf(&tls(&trusted, addr, "a.test").await.expect("still served"));
    assert_eq!(before, after, "the certificate in use stays");
    assert!(
        proxy.log().contains("certificate expires within 7 days"),
        "the expiry warns: {}",
        proxy.log()
    );
    let samples = support::metrics(&proxy).await;
    let expiry = gauge(
        &samples,
        "tether_certificate_expiry_seconds",
        &[("domain", "a.test")],
    );
    assert_eq!(expiry.map(|e| e as u64), c["not_after"].as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_storage_make_one_order_and_both_serve_it() {
    // Pebble validates on replica A's port; replica B orders, so A answers from the storage
    // directory what B put there.
    let (port_a, port_b) = (low_port(), low_port());
    let pebble = Pebble::start(Options {
        tls_port: port_a,
        ..Options::default()
    });
    let storage = tempfile::tempdir().unwrap();
    let store = storage.path().join("shared");
    let dir = tether::certs::store::slot_dir(&store, &pebble.directory(), &["d.test".into()]);
    // Hold the lock so neither orders until B is the only one awake.
    let lock = tether::certs::store::try_lock(&dir, Duration::from_secs(600))
        .unwrap()
        .unwrap();
    let nodes = support::nodes(1).await;
    let acme = pebble_acme(&pebble, "d.test", &store, "tls-alpn-01");
    let a = Proxy::start(&acme_config(&nodes, port_a, &acme));
    let b = Proxy::start(&acme_config(&nodes, port_b, &acme));
    let waiting = |c: &serde_json::Value| c["state"] == "waiting for another replica";
    until_certificate(&a, "A waits for the lock", waiting).await;
    until_certificate(&b, "B waits for the lock", waiting).await;
    a.signal("STOP");
    drop(lock);
    until_certificate(&b, "B takes the lock", |c| {
        c["state"] != "waiting for another replica"
    })
    .await;
    a.signal("CONT");
    let cb = until_certificate(&b, "B's certificate", |c| c["state"] == "valid").await;
    let ca = until_certificate(&a, "A picks it up", |c| c["state"] == "valid").await;
    assert_eq!(cb["issued"], 1, "B ordered: {cb}");
    assert_eq!(ca["issued"], 0, "A did not: {ca}");
    assert_eq!(ca["failed"], 0, "{ca}");
    assert_eq!(ca["not_after"], cb["not_after"]);
    let client = roots(&pebble.issuing_root());
    let from_a = leaf(
        &tls(
            &client,
            SocketAddr::from(([127, 0, 0, 1], port_a)),
            "d.test",
        )
        .await
        .unwrap(),
    );
    let from_b = leaf(
        &tls(
            &client,
            SocketAddr::from(([127, 0, 0, 1], port_b)),
            "d.test",
        )
        .await
        .unwrap(),
    );
    assert_eq!(from_a, from_b, "both serve the one certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_requires_external_account_binding_issues_with_eab_and_refuses_without() {
    use base64::Engine as _;
    let (port_with, port_without) = (low_port(), low_port());
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let pebble = Pebble::start(Options {
        tls_port: port_with,
        eab: Some(("kid-1".into(), key.clone())),
        ..Options::default()
    });
    let storage = tempfile::tempdir().unwrap();
    let nodes = support::nodes(1).await;
    let with = format!(
        "{}eab: {{ kid: kid-1, hmac_env: ACME_EAB_HMAC }}\n",
        pebble_acme(
            &pebble,
            "e.test",
            &storage.path().join("with"),
            "tls-alpn-01"
        )
    );
    let with = Proxy::start_with_env(
        &acme_config(&nodes, port_with, &with),
        &[("ACME_EAB_HMAC", key.as_str())],
    );
    let without = Proxy::start(&acme_config(
        &nodes,
        port_without,
        &pebble_acme(
            &pebble,
            "f.test",
            &storage.path().join("without"),
            "tls-alpn-01",
        ),
    ));
    let c = until_certificate(&with, "a certificate with EAB", |c| c["state"] == "valid").await;
    assert_eq!(c["issued"], 1, "{c}");
    let refused = until_certificate(&without, "the refusal without EAB", |c| {
        c["state"] == "failed"
    })
    .await;
    assert!(
        refused["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("externalAccountRequired"),
        "{refused}"
    );
}

/// A CA of the test's own, for a certificate put in storage as if an earlier order had.
struct TestCa {
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
    pem: String,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { key, params, pem }
    }

    /// A certificate for `name` valid from `from` days to `to` days from now: (chain, key).
    fn leaf(&self, name: &str, from: i64, to: i64) -> (String, String) {
        let now = time::OffsetDateTime::now_utc();
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        p.not_before = now + time::Duration::days(from);
        p.not_after = now + time::Duration::days(to);
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

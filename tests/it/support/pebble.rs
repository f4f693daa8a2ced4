//! Pebble, Let's Encrypt's test CA (Debian's `pebble` package), and its `pebble-challtestsrv` as
//! the DNS server its validator asks: both started here on loopback, stopped (by PID) when the
//! value is dropped.
//!
//! Every name resolves to 127.0.0.1 (IPv4 only, so the validator never dials `::1`), and the
//! validator connects to the ports the test gives: where the tether under test listens. Pebble
//! does not ship its HTTPS certificate in the Debian package, so one is made here from a test CA
//! that tether trusts through `ca_roots`.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port below 32768 (Pebble's config needs it before anything binds it; above 32768 the
/// kernel hands out client ports) free for TCP and UDP on 127.0.0.1 a moment ago.
/// Each port is handed out once per test process: the tests run side by side, and a port one
/// picked is free until its Pebble or tether binds it.
pub fn low_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        let port = 20_000 + (rand::random::<u16>() % 12_000);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if !given.contains(&port)
            && TcpListener::bind(addr).is_ok()
            && UdpSocket::bind(addr).is_ok()
        {
            given.push(port);
            return port;
        }
    }
    panic!("no free port below 32768");
}

pub struct Pebble {
    pebble: Child,
    dns: Child,
    dir: tempfile::TempDir,
    pub listen: u16,
    pub management: u16,
}

/// What the test's Pebble does differently from the defaults.
#[derive(Default)]
pub struct Options {
    /// The port the validator connects to for HTTP-01 (tether's plain listener).
    pub http_port: u16,
    /// The port the validator connects to for TLS-ALPN-01 (tether's TLS listener).
    pub tls_port: u16,
    /// Certificate lifetime in seconds (Pebble's default is five years).
    pub validity: Option<u64>,
    /// Names Pebble refuses to issue for (`rejectedIdentifier`).
    pub blocked: Vec<String>,
    /// External Account Binding required, with this key id and base64url HMAC key.
    pub eab: Option<(String, String)>,
}

impl Pebble {
    pub fn start(o: Options) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        // Pebble's own HTTPS identity, from a CA the test (and tether's `ca_roots`) trusts.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tether test CA for Pebble");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap()
                .signed_by(&leaf_key, &issuer)
                .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("pebble.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("pebble.key"), leaf_key.serialize_pem()).unwrap();

        let (listen, management, dns_port, dns_management) =
            (low_port(), low_port(), low_port(), low_port());
        let mut cfg = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("pebble.pem"),
            "privateKey": dir.path().join("pebble.key"),
            "httpPort": o.http_port,
            "tlsPort": o.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "domainBlocklist": o.blocked,
        }});
        if let Some(v) = o.validity {
            cfg["pebble"]["certificateValidityPeriod"] = v.into();
        }
        if let Some((kid, key)) = &o.eab {
            cfg["pebble"]["externalAccountBindingRequired"] = true.into();
            cfg["pebble"]["externalAccountMACKeys"] = serde_json::json!({ kid: key });
        }
        let cfg_path = dir.path().join("pebble.json");
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(log(dir.path(), "challtestsrv.log"))
            .stderr(log(dir.path(), "challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv is needed (`make deps` installs Debian's pebble)");
        wait_tcp(dns_management, "pebble-challtestsrv");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&cfg_path)
            .args([
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
                "-strict=false",
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log(dir.path(), "pebble.log"))
            .stderr(log(dir.path(), "pebble.err"))
            .spawn()
            .expect("pebble is needed (`make deps` installs Debian's pebble)");
        wait_tcp(listen, "pebble");
        wait_tcp(management, "pebble's management port");
        Pebble {
            pebble,
            dns,
            dir,
            listen,
            management,
        }
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.listen)
    }

    /// The root Pebble's own HTTPS certificate chains to (tether's `ca_roots`).
    pub fn ca_roots(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The root of the certificates Pebble issues (a new one every start), as PEM.
    pub fn issuing_root(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(self.ca_roots())
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Pebble's log so far (for failure messages).
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("pebble.log"), read("pebble.err"))
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn log(dir: &Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(name)).unwrap().into()
}

/// Wait (bounded) until something accepts TCP on 127.0.0.1:`port`.
fn wait_tcp(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

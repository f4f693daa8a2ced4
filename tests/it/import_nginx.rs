//! `tether import-nginx`: the command itself, and configs imported from nginx routing the same
//! requests to the same upstreams as nginx does with the original, both in front of real nodes.

use crate::support::proxy::{free_port, tether_bin, Proxy};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tether::demo::Node;

fn data(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/nginx")
        .join(case)
}

fn import(path: &Path) -> std::process::Output {
    Command::new(tether_bin())
        .arg("import-nginx")
        .arg(path)
        .output()
        .expect("run tether import-nginx")
}

#[test]
fn import_prints_the_golden_translation_and_check_accepts_it() {
    let case = data("socketio-cluster");
    let out = import(&case.join("nginx.conf"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        yaml,
        std::fs::read_to_string(case.join("expected.yaml")).unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tether.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let check = Command::new(tether_bin())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("DNS discovery in 1"));
}

#[test]
fn an_nginx_syntax_error_exits_2_with_file_and_line() {
    let out = import(&data("errors").join("missing-semicolon.conf"));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no half-written config on stdout");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "missing-semicolon.conf:9: unexpected \"}\"; the directive before it is missing its \";\""
    );
    let missing = import(Path::new("/nonexistent/nginx.conf"));
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the nginx config"));
}

/// A copy of a case's nginx.conf whose upstream servers are real demo nodes on loopback (each
/// named `UPSTREAM#N`, so an answer says which upstream served it) and whose listeners are
/// `127.0.0.1:PORT`.
struct Rewritten {
    nodes: Vec<Node>,
    /// The config text with `{port}` where the listen port goes.
    text: String,
}

async fn rewrite(conf: &str) -> Rewritten {
    let mut upstream = String::new();
    let mut nodes = Vec::new();
    let mut lines = Vec::new();
    for line in conf.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["upstream", name, ..] => upstream = name.to_string(),
            ["server", addr, ..]
                if !upstream.is_empty() && !line.contains(" down") && !line.contains("backup") =>
            {
                let addr = addr.trim_end_matches(';');
                let id = format!("{upstream}#{}", nodes.len());
                let node = Node::spawn(&id, SocketAddr::from(([127, 0, 0, 1], 0)))
                    .await
                    .expect("spawn node");
                lines.push(line.replacen(addr, &node.addr().to_string(), 1));
                nodes.push(node);
                continue;
            }
            ["listen", addr, ..] if addr.starts_with('[') => continue,
            ["listen", addr, ..] => {
                let addr = addr.trim_end_matches(';');
                lines.push(line.replacen(addr, "127.0.0.1:{port}", 1));
                continue;
            }
            // Paths of the machine the config came from.
            ["user" | "error_log" | "access_log" | "pid", ..] => continue,
            _ => {}
        }
        if line.trim() == "}" {
            upstream.clear();
        }
        lines.push(line.to_string());
    }
    Rewritten {
        nodes,
        text: lines.join("\n") + "\n",
    }
}

/// nginx in the foreground from a scratch directory; killed (by PID) when dropped.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn binary() -> Option<PathBuf> {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    }

    fn start(bin: &Path, text: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port([127, 0, 0, 1]);
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, text.replace("{port}", &port.to_string())).unwrap();
        let d = dir.path().display();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg(format!(
                "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = nginx.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("nginx exited ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` with `Host: host` on a fresh connection; the upstream whose node answered.
fn upstream_of(addr: SocketAddr, host: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let node = reply
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-node")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| format!("(no node: {})", reply.lines().next().unwrap_or("no answer")));
    node.split('#').next().unwrap_or_default().to_string()
}

/// Import the case (rewritten onto live nodes), run tether with it and, when nginx is
/// installed, nginx with the original; each request must reach `upstream` through both.
async fn same_routes(case: &str, requests: &[(&str, &str, &str)]) {
    let conf = std::fs::read_to_string(data(case).join("nginx.conf")).unwrap();
    let rewritten = rewrite(&conf).await;
    assert!(!rewritten.nodes.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let nginx_conf = dir.path().join("nginx.conf");
    let port = free_port([127, 0, 0, 1]);
    std::fs::write(
        &nginx_conf,
        rewritten.text.replace("{port}", &port.to_string()),
    )
    .unwrap();
    let out = import(&nginx_conf);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout)
        .unwrap()
        .replace(&format!("127.0.0.1:{port}"), "{listen}");
    let tether = Proxy::start(&yaml);

    let nginx = match Nginx::binary() {
        Some(bin) => Some(Nginx::start(&bin, &rewritten.text)),
        None => {
            eprintln!("{case}: nginx is not installed (make test installs nginx-light as root): comparing with the expected upstreams only");
            None
        }
    };
    let tether_addr = tether.addr;
    let nginx_addr = nginx
        .as_ref()
        .map(|n| SocketAddr::from(([127, 0, 0, 1], n.port)));
    let requests: Vec<(String, String, String)> = requests
        .iter()
        .map(|(h, p, u)| (h.to_string(), p.to_string(), u.to_string()))
        .collect();
    // Blocking sockets: off the async workers.
    let case = case.to_string();
    tokio::task::spawn_blocking(move || {
        for (host, path, upstream) in &requests {
            let via_tether = upstream_of(tether_addr, host, path);
            assert_eq!(&via_tether, upstream, "{case}: {host}{path} through tether");
            if let Some(addr) = nginx_addr {
                let via_nginx = upstream_of(addr, host, path);
                assert_eq!(&via_nginx, upstream, "{case}: {host}{path} through nginx");
            }
        }
    })
    .await
    .unwrap();
    drop(nginx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosts_route_by_host_as_nginx_does() {
    same_routes(
        "virtual-hosts",
        &[
            ("chat.example.com", "/", "chat_nodes"),
            ("chat.example.com:8080", "/socket.io/?EIO=4", "chat_nodes"),
            ("unknown.test", "/", "chat_nodes"),
            ("acme.example.com", "/", "tenant_nodes"),
            ("acme.example.com", "/graphql", "graphql_subscriptions"),
            ("ACME.Example.COM", "/graphql/ws", "graphql_subscriptions"),
            ("example.org", "/", "org_nodes"),
            ("www.example.org", "/live", "org_nodes"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_upstreams_and_locations_route_as_nginx_does() {
    same_routes(
        "multi-upstream",
        &[
            (
                "example.com",
                "/socket.io/?EIO=4&transport=polling",
                "socketio_nodes",
            ),
            ("example.com", "/graphql", "graphql_subscriptions"),
            ("example.com", "/api/users/7", "rest_api"),
            ("example.com", "/api/reports/2026", "rest_api"),
            ("example.com", "/", "socketio_nodes"),
            ("example.com", "/chat/room-1", "socketio_nodes"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socketio_cluster_example_routes_as_nginx_does() {
    same_routes(
        "socketio-cluster",
        &[
            ("localhost", "/socket.io/?EIO=4&transport=polling", "nodes"),
            ("localhost", "/", "nodes"),
        ],
    )
    .await;
}

//! Hand-offs that lose nothing: a binary upgrade in place (`kill -USR2`) under load, an upgrade
//! that fails or stalls (the old process serves on), systemd socket activation, a renewed
//! certificate taken by a reload, and listeners that follow a reload.

use crate::support::proxy::{
    children, free_port, running, signal_pid, tether_bin, Launch, Proxy, Strays,
};
use crate::support::tls as certs;
use crate::support::{self, admin_status, echo_many, Client, COOKIE_AFFINITY};
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tether::demo::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// The upgrade test's `shutdown`: the old process keeps its tunnels for `GRACE`, then closes them
/// over `CLOSE_WINDOW`.
const GRACE: Duration = Duration::from_secs(3);
const CLOSE_WINDOW: Duration = Duration::from_secs(1);
/// The bound of every wait on a probe: it only keeps a broken build from hanging the suite.
const LIMIT: Duration = Duration::from_secs(20);

fn with_admin(mut yaml: String) -> String {
    yaml.push_str("admin:\n  address: \"{admin}\"\n");
    yaml
}

/// Poll `probe` until it gives a value; panic naming `what` after `LIMIT`.
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until tether's log (both processes' after an upgrade: they share stderr) says `needle`.
async fn logged(proxy: &Proxy, needle: &str) {
    let deadline = Instant::now() + LIMIT;
    while !proxy.log().contains(needle) {
        let log = proxy.log();
        assert!(Instant::now() < deadline, "never logged {needle:?}:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log line containing `needle`.
fn log_line(proxy: &Proxy, needle: &str) -> String {
    let log = proxy.log();
    let line = log.lines().find(|l| l.contains(needle));
    line.unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"))
        .to_string()
}

fn pid_of(status: &serde_json::Value) -> u32 {
    status["process"]["pid"].as_u64().expect("process.pid") as u32
}

/// `field` summed over every node of the first upstream in `/status`.
fn total(status: &serde_json::Value, field: &str) -> u64 {
    let nodes = status["upstreams"][0]["nodes"].as_array().expect("nodes");
    nodes.iter().map(|n| n[field].as_u64().unwrap_or(0)).sum()
}

fn node_requests(nodes: &[Node]) -> u64 {
    nodes.iter().map(|n| n.stats().requests).sum()
}

/// Whether a new connection to `addr` gets a 200 for `GET /whoami`.
async fn answers(addr: SocketAddr) -> bool {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = b"GET /whoami HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        s.write_all(req).await.ok()?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.ok()?;
        Some(reply.starts_with(b"HTTP/1.1 200"))
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange).await;
    answer.ok().flatten().unwrap_or(false)
}

async fn refused(addr: SocketAddr) -> bool {
    let connected = tokio::net::TcpStream::connect(addr).await;
    matches!(connected, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// `tether load` as its own process, as a user runs it; killed by its pid if the test ends first.
struct LoadCli(Child);

impl LoadCli {
    /// `tether load --url http://ADDR --json ARGS` (`args` split at spaces).
    fn start(addr: SocketAddr, args: &str) -> LoadCli {
        let child = Command::new(tether_bin())
            .args(["load", "--url", &format!("http://{addr}"), "--json"])
            .args(args.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tether load");
        LoadCli(child)
    }

    /// Wait for the run to end; its JSON report.
    async fn report(mut self) -> serde_json::Value {
        let status = until("tether load to finish", || {
            let exited = self.0.try_wait().expect("try_wait");
            async move { exited }
        })
        .await;
        assert!(status.success(), "tether load: {status:?}");
        let mut out = String::new();
        let mut stdout = self.0.stdout.take().expect("stdout");
        std::io::Read::read_to_string(&mut stdout, &mut out).expect("read the report");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

impl Drop for LoadCli {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Not one failed connection or request, and no client that reached two nodes.
fn assert_nothing_lost(r: &serde_json::Value) {
    assert_eq!(r["errors_total"], 0, "{r}");
    assert_eq!(r["violations"], 0, "{r}");
    assert_eq!(r["aborted_clients"], 0, "{r}");
    assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(
        r["connections"], r["requests"],
        "a new connection per request: {r}"
    );
}

type Ws = support::client::Ws;

/// Echo a message every 200 ms until `stop`: the socket and when each echo came back, or what
/// broke.
async fn echo_every_200ms(
    mut ws: Ws,
    mut stop: watch::Receiver<bool>,
) -> Result<(Ws, Vec<Instant>), String> {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut echoes = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok((ws, echoes)),
            _ = tick.tick() => {}
        }
        let msg = Message::Text(format!("echo {}", echoes.len()).into());
        let sent = ws.send(msg.clone()).await;
        let echoed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => return other,
                }
            }
        })
        .await;
        match (sent, echoed) {
            (Ok(()), Ok(Some(Ok(got)))) if got == msg => echoes.push(Instant::now()),
            other => return Err(format!("after {} echoes: {other:?}", echoes.len())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usr2_hands_every_socket_to_the_new_binary_and_under_load_nothing_is_lost() {
    let nodes = support::nodes(3).await;
    let mut cfg = with_admin(support::config(&nodes, COOKIE_AFFINITY, ""));
    cfg.push_str("shutdown:\n  grace: 3s\n  close_window: 1s\n");
    let mut proxy = Proxy::start(&cfg);
    let mut strays = Strays::default();
    let old_pid = proxy.pid();
    let s = admin_status(&proxy).await;
    assert_eq!(
        (pid_of(&s), s["process"]["generation"].as_u64()),
        (old_pid, Some(0))
    );

    // 200 WebSockets echoing every 200 ms, 100 long-polls held at the nodes across the upgrade,
    // and `tether load` making a new connection per request.
    let (stop, stopped) = watch::channel(false);
    let mut sockets = Vec::new();
    for _ in 0..200 {
        let (ws, _, _) = Client::new(proxy.addr).ws("/ws").await;
        sockets.push(tokio::spawn(echo_every_200ms(ws, stopped.clone())));
    }
    let addr = proxy.addr;
    let polls: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move {
                let r = Client::new(addr).get("/poll?hold=4000").await;
                (r.status, Instant::now())
            })
        })
        .collect();
    until("100 long-polls in flight", || async {
        (total(&admin_status(&proxy).await, "in_flight") == 100).then_some(())
    })
    .await;
    let before_load = node_requests(&nodes);
    let load = LoadCli::start(
        proxy.addr,
        "--flow http --new-connection --clients 10 --rate 50 --ramp 200ms --duration 8s",
    );
    until("load traffic at the nodes", || async {
        (node_requests(&nodes) >= before_load + 200).then_some(())
    })
    .await;

    proxy.signal("USR2");
    // The new binary is tether's child: known by its pid at once, killed at the end whatever
    // happens (it outlives the old process).
    let new_pid = until("the new binary's process", || async {
        children(old_pid).first().copied()
    })
    .await;
    strays.add(new_pid, &proxy.config_path.display().to_string());
    let (handoff, s) = until("/status from the new process", || async {
        let s = admin_status(&proxy).await;
        (pid_of(&s) != old_pid).then(|| (Instant::now(), s))
    })
    .await;
    assert_eq!(pid_of(&s), new_pid, "{s}");
    assert_eq!(s["process"]["generation"], 1, "{s}");
    logged(
        &proxy,
        &format!("upgraded: pid {new_pid} serves new connections"),
    )
    .await;

    // A new connection is the new process's: a WebSocket opened now is the one tunnel its
    // /status counts (the 200 stay with the old process).
    let (mut fresh, _, _) = Client::new(proxy.addr).ws("/ws").await;
    until("the new process to count the new tunnel", || async {
        let s = admin_status(&proxy).await;
        assert_eq!(pid_of(&s), new_pid);
        (total(&s, "open_tunnels") == 1).then_some(())
    })
    .await;
    echo_many(&mut fresh, 3).await;

    // Every old WebSocket keeps echoing through the old process's grace period...
    let watched_until = handoff + GRACE - Duration::from_millis(700);
    tokio::time::sleep_until(watched_until.into()).await;
    stop.send(true).unwrap();
    let mut after_handoff = usize::MAX;
    let mut old_tunnels = Vec::new();
    for s in sockets {
        let (ws, echoes) = s
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a WebSocket broke: {e}"));
        let last = *echoes.last().expect("echoes");
        assert!(
            last + Duration::from_secs(1) > watched_until,
            "stopped echoing early"
        );
        after_handoff = after_handoff.min(echoes.iter().filter(|t| **t > handoff).count());
        old_tunnels.push(ws);
    }
    assert!(
        after_handoff >= 3,
        "{after_handoff} echoes after the hand-off"
    );
    // ...then the old process closes them over the close window and exits.
    for mut ws in old_tunnels {
        let end = tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("closed");
        assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    }
    let old_exit = until("the old process to exit", || {
        let exited = proxy.exited();
        async move { exited }
    })
    .await;
    let exit_after = handoff.elapsed();
    assert!(old_exit.success(), "{old_exit:?}");
    assert!(
        exit_after < GRACE + CLOSE_WINDOW + Duration::from_secs(2),
        "{exit_after:?}"
    );

    // Every long-poll, sent before the signal, was answered 200 after the hand-off.
    for p in polls {
        let (status, answered) = p.await.unwrap();
        assert_eq!(status, 200);
        assert!(answered > handoff, "a long-poll ended before the hand-off");
    }
    let r = load.report().await;
    assert_nothing_lost(&r);
    // The load kept going through the new process (its own counters start at zero).
    let metrics = Client::new(proxy.admin.unwrap()).get("/metrics").await.body;
    let lines = metrics.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics");
    let by_new: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "tether_requests_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(by_new >= 100.0, "the new process served {by_new} requests");
    eprintln!(
        "upgrade under load: {} requests ({} by the new process), {} errors; {after_handoff}+ \
         echoes per WebSocket after the hand-off; old process exited {exit_after:?} after it",
        r["requests"], by_new, r["errors_total"]
    );

    // The new process shuts down like any other.
    drop(fresh);
    signal_pid(new_pid, "TERM");
    until("the new process to exit", || async {
        (!running(new_pid)).then_some(())
    })
    .await;
    // Polled: a process shows as a zombie a few ms before its last thread has closed its sockets.
    until("the listener to close", || async {
        refused(proxy.addr).await.then_some(())
    })
    .await;
}

/// A copy of the tether binary in a temp dir, run from there and then replaced, the way a package
/// upgrade replaces the file under a running process.
struct Binary {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Binary {
    fn copy() -> Binary {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether");
        // A hard link is a copy that costs nothing; replacing the name leaves the build alone.
        if std::fs::hard_link(tether_bin(), &path).is_err() {
            std::fs::copy(tether_bin(), &path).unwrap();
        }
        Binary { _dir: dir, path }
    }

    /// Put `script` at the path: written beside it, then renamed over it.
    fn replace_with(&self, script: &str) {
        let tmp = self.path.with_extension("new");
        write_script(&tmp, script);
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_leaves_the_old_process_serving_and_loses_nothing() {
    let nodes = support::nodes(2).await;
    let bin = Binary::copy();
    let cfg = with_admin(support::config(&nodes, COOKIE_AFFINITY, ""));
    let mut proxy = Proxy::start_from(&bin.path, &cfg);
    let old_pid = proxy.pid();
    bin.replace_with("#!/bin/sh\necho 'this build is broken' >&2\nexit 1\n");

    let before = node_requests(&nodes);
    let load = LoadCli::start(
        proxy.addr,
        "--flow http --new-connection --clients 4 --rate 25 --ramp 100ms --duration 4s",
    );
    until("load traffic", || async {
        (node_requests(&nodes) >= before + 20).then_some(())
    })
    .await;
    proxy.signal("USR2");
    logged(&proxy, "binary upgrade failed").await;
    let line = log_line(&proxy, "binary upgrade failed");
    assert!(
        line.contains("ERROR") && line.contains("exited before it was ready"),
        "{line}"
    );
    assert!(proxy.log().contains("this build is broken"));

    let s = admin_status(&proxy).await;
    assert_eq!(
        (pid_of(&s), s["process"]["generation"].as_u64()),
        (old_pid, Some(0))
    );
    assert!(proxy.exited().is_none());
    assert!(answers(proxy.addr).await);
    let r = load.report().await;
    assert_nothing_lost(&r);
    eprintln!(
        "failed upgrade under load: {} requests, {} errors",
        r["requests"], r["errors_total"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_usr2_is_refused_while_an_upgrade_runs_and_a_stalled_binary_is_stopped() {
    let nodes = support::nodes(1).await;
    let bin = Binary::copy();
    let mut cfg = with_admin(support::config(&nodes, COOKIE_AFFINITY, ""));
    cfg.push_str("shutdown:\n  upgrade_timeout: 2s\n");
    let proxy = Proxy::start_from(&bin.path, &cfg);
    let mut strays = Strays::default();
    let old_pid = proxy.pid();
    // A new binary that starts but never says it is ready.
    bin.replace_with("#!/bin/sh\nexec sleep 30\n");

    proxy.signal("USR2");
    let stalled = until("the new binary's process", || async {
        children(old_pid).first().copied()
    })
    .await;
    strays.add(stalled, "sleep");
    logged(&proxy, "new binary started").await;
    proxy.signal("USR2");
    logged(
        &proxy,
        "SIGUSR2 ignored: a binary upgrade is already in progress",
    )
    .await;
    logged(&proxy, "not ready within").await;
    let line = log_line(&proxy, "not ready within");
    assert!(line.contains("binary upgrade failed"), "{line}");
    assert_eq!(proxy.log().matches("new binary started").count(), 1);
    assert!(!running(stalled), "the stalled binary was stopped");

    let s = admin_status(&proxy).await;
    assert_eq!(
        (pid_of(&s), s["process"]["generation"].as_u64()),
        (old_pid, Some(0))
    );
    assert!(answers(proxy.addr).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_socket_activation_serves_on_the_socket_it_is_given() {
    let nodes = support::nodes(1).await;
    let cfg = support::config(&nodes, COOKIE_AFFINITY, "");
    // The socket systemd would own: bound by the test, which holds it all along.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    // As systemd starts a service: the socket as descriptor 3, LISTEN_FDS=1, and LISTEN_PID the
    // service's own pid (the shell's, which `exec` keeps).
    let dir = tempfile::tempdir().unwrap();
    let activate = dir.path().join("activate");
    let exec = format!("exec '{}' \"$@\"", tether_bin());
    write_script(
        &activate,
        &format!("#!/bin/sh\nLISTEN_PID=$$\nexport LISTEN_PID\n{exec}\n"),
    );
    let launch = |listen_fds: &[&str]| Launch {
        program: Some(activate.clone()),
        listen: Some(addr),
        fds: vec![socket.try_clone().unwrap().into()],
        env: listen_fds
            .iter()
            .map(|n| ("LISTEN_FDS".to_string(), n.to_string()))
            .collect(),
        ..Launch::default()
    };

    let proxy = Proxy::launch(&cfg, launch(&["1"])).unwrap_or_else(|f| panic!("{f:?}"));
    let r = Client::new(addr).get("/whoami").await;
    assert_eq!((r.status, r.node()), (200, "node-a"));
    let line = log_line(&proxy, "using inherited listening sockets");
    assert!(
        line.contains("systemd") && line.contains(&addr.to_string()),
        "{line}"
    );
    drop(proxy);

    // The same launch without LISTEN_FDS: tether binds the address itself, which the test holds.
    let Err(failed) = Proxy::launch(&cfg, launch(&[])) else {
        panic!("tether started without the socket");
    };
    assert!(failed.status.is_some_and(|s| !s.success()), "{failed:?}");
    assert!(
        failed.log.contains(&format!("cannot listen on {addr}")),
        "{}",
        failed.log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_serves_the_next_handshake_and_open_tunnels_stay() {
    let (old, renewed) = (certs::self_signed(), certs::self_signed());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    old.write(&cert, &key);
    let client = certs::client(&[&old, &renewed]);
    let nodes = support::nodes(2).await;
    let tls = format!(
        "  - address: \"{{tls}}\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\n",
        cert.display(),
        key.display()
    );
    let cfg = support::config(&nodes, COOKIE_AFFINITY, "").replacen(
        "upstreams:",
        &format!("{tls}upstreams:"),
        1,
    );
    let proxy = Proxy::start(&cfg);
    let addr = proxy.tls.unwrap();
    let handshake = || async { certs::connect(&client, addr).await };

    let mut tunnels = Vec::new();
    for _ in 0..8 {
        let stream = handshake().await;
        assert!(certs::peer_certificate(&stream) == old.der);
        tunnels.push(certs::wss(stream, "/ws").await.0);
    }

    // Renewed: a new certificate and key over the same files, then a reload.
    renewed.write(&cert, &key);
    proxy.signal("HUP");
    logged(&proxy, "config reloaded").await;
    let stream = handshake().await;
    assert!(
        certs::peer_certificate(&stream) == renewed.der,
        "the next handshake has the new one"
    );
    echo_many(&mut certs::wss(stream, "/ws").await.0, 3).await;
    for ws in tunnels.iter_mut() {
        echo_many(ws, 3).await;
    }

    // A broken certificate file: the reload is rejected and handshakes keep the last good one.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    proxy.signal("HUP");
    logged(&proxy, "reload rejected").await;
    let line = log_line(&proxy, "reload rejected");
    assert!(line.contains(&cert.display().to_string()), "{line}");
    assert!(certs::peer_certificate(&handshake().await) == renewed.der);
    for ws in tunnels.iter_mut() {
        echo_many(ws, 3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_follow_a_reload_and_connections_on_a_removed_one_carry_on() {
    let nodes = support::nodes(2).await;
    let cfg = support::config(&nodes, COOKIE_AFFINITY, "");
    let proxy = Proxy::start(&cfg);
    let a = proxy.addr;
    let b = SocketAddr::from(([127, 0, 0, 1], free_port([127, 0, 0, 1])));
    let listen_a = "listen:\n  - address: \"{listen}\"\n";
    assert!(refused(b).await);

    // A + B: B accepts within a moment (each worker checks every second).
    proxy.rewrite_config(&cfg.replacen(listen_a, &format!("{listen_a}  - address: \"{b}\"\n"), 1));
    proxy.signal("HUP");
    until("B to answer", || async { answers(b).await.then_some(()) }).await;
    assert!(answers(a).await);
    let mut kept = Client::new(a);
    assert_eq!(kept.get("/whoami").await.status, 200);

    // B only: A refuses new connections, and the keep-alive connection opened there still gets
    // answers (the client reconnects only if it closed, and A refuses).
    let only_b = format!("listen:\n  - address: \"{b}\"\n");
    proxy.rewrite_config(&cfg.replacen(listen_a, &only_b, 1));
    proxy.signal("HUP");
    until("A to refuse new connections", || async {
        refused(a).await.then_some(())
    })
    .await;
    for _ in 0..3 {
        assert_eq!(kept.get("/whoami").await.status, 200);
    }
    assert!(answers(b).await);
}

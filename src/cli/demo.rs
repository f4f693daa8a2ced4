//! `tether demo`: three demo nodes on loopback and tether in front of them, in one process.

use crate::config::{
    defaults, Admin, Affinity, Balance, Config, CookieSettings, HealthCheck, Listener, Node,
    Passive, Route, Shutdown, Timeouts, Upstream,
};
use crate::demo;
use std::net::SocketAddr;
use std::process::ExitCode;

const NODE_IDS: [&str; 3] = ["node-a", "node-b", "node-c"];

pub fn run(port: u16, admin_port: u16) -> ExitCode {
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let admin_url = format!("http://{admin}/");
    let (tx, rx) = std::sync::mpsc::channel();
    // The nodes get their own runtime on their own thread: the proxy builds its own runtimes
    // (one per worker, one for the control plane), and the nodes must keep serving beside them.
    let page_admin = admin_url.clone();
    let spawned = std::thread::Builder::new()
        .name("demo-nodes".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match demo::Cluster::start(&NODE_IDS, Some(page_admin)).await {
                    Ok(cluster) => {
                        let _ = tx.send(Ok(cluster.addresses().await));
                        // Keep the cluster (and its nodes) for as long as the demo runs.
                        let _cluster = cluster;
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
    let nodes = match (spawned, rx.recv()) {
        (Ok(_), Ok(Ok(nodes))) => nodes,
        (_, Ok(Err(e))) => {
            eprintln!("tether demo: could not start the demo nodes: {e}");
            return ExitCode::FAILURE;
        }
        _ => {
            eprintln!("tether demo: could not start the demo nodes");
            return ExitCode::FAILURE;
        }
    };
    let config = demo_config(listen, admin, &nodes, super::keygen().into_bytes());
    println!("tether demo: {} nodes behind tether", nodes.len());
    for (id, addr) in &nodes {
        println!("  {id} at http://{addr}");
    }
    println!("open http://{listen}/ for the demo, and {admin_url} for tether's admin page (Ctrl-C to stop)");
    match crate::server::run(&config, crate::server::default_threads()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tether node`: one demo node in the foreground until the process is stopped.
pub fn run_node(id: &str, listen: SocketAddr, threads: usize) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether node: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        match demo::Node::spawn(id, listen).await {
            Ok(node) => {
                println!("node {} listening on http://{}", node.id(), node.addr());
                let _ = tokio::signal::ctrl_c().await;
                node.stop().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tether node: cannot listen on {listen}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn demo_config(
    listen: SocketAddr,
    admin: SocketAddr,
    nodes: &[(String, SocketAddr)],
    secret: Vec<u8>,
) -> Config {
    Config {
        source: "<demo>".into(),
        listen: vec![Listener {
            address: listen,
            tls: None,
            proxy_protocol: false,
            http2: false,
            h2c: false,
        }],
        upstreams: vec![Upstream {
            name: "demo".into(),
            nodes: nodes
                .iter()
                .map(|(id, address)| Node {
                    id: id.clone(),
                    address: *address,
                    weight: 1,
                    drain: None,
                })
                .collect(),
            discover: None,
            balance: Balance::LeastConn,
            affinity: Affinity::Cookie(CookieSettings::with_secret(secret)),
            engineio: None,
            timeouts: Timeouts {
                connect: defaults::DEFAULT_CONNECT_TIMEOUT,
                read: defaults::DEFAULT_READ_TIMEOUT,
                tunnel_idle: defaults::DEFAULT_TUNNEL_IDLE_TIMEOUT,
                send: defaults::DEFAULT_SEND_TIMEOUT,
                idle: defaults::DEFAULT_UPSTREAM_IDLE_TIMEOUT,
            },
            // Fast checks, so a node stopped from the demo page shows as down within seconds.
            health_check: Some(HealthCheck {
                interval: std::time::Duration::from_secs(1),
                timeout: std::time::Duration::from_millis(500),
                rise: 1,
                fall: 2,
                ..HealthCheck::default()
            }),
            passive: Passive::default(),
            slow_start: defaults::DEFAULT_SLOW_START,
            max_tunnels_per_node: defaults::DEFAULT_MAX_TUNNELS_PER_NODE,
            leave_spread: defaults::DEFAULT_LEAVE_SPREAD,
            rebalance: None,
        }],
        routes: vec![Route::new("/", 0)],
        admin: Some(Admin {
            address: admin,
            token: None,
        }),
        trusted_proxies: Vec::new(),
        limits: Default::default(),
        // The demo page polls all the time: an access line per poll would drown the terminal.
        log: crate::config::Log {
            access: false,
            ..Default::default()
        },
        // Ctrl-C on a demo should stop it at once, open browser tabs or not.
        shutdown: Shutdown {
            grace: std::time::Duration::ZERO,
            close_window: std::time::Duration::ZERO,
            ..Shutdown::default()
        },
    }
}

//! Key affinity: a value each request carries (`?room=`, a header, a cookie) keeps every client
//! of a room on one node, on every replica, so a room's broadcasts never cross nodes; rooms
//! spread over the nodes; a node that leaves takes only its own rooms with it; a request
//! without the key is placed by the fallback.

use crate::socketio::{cluster_of, run_clients_with, SioNode};
use crate::support::front::Front;
use crate::support::{counter, metrics, Proxy};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENTS: usize = 300;
const ROOMS: usize = 10;

/// Two-replica config over `nodes`: key affinity on `?room=`, engine.io tags holding each
/// session to the node its handshake reached.
fn config(nodes: &[&SioNode]) -> String {
    let mut y = String::from(
        "admin: { address: \"{admin}\" }\nlisten: [{ address: \"{listen}\" }]\nupstreams:\n  realtime:\n    nodes:\n",
    );
    for n in nodes {
        y.push_str(&format!(
            "      - {{ id: {}, address: \"127.0.0.1:{}\" }}\n",
            n.id(),
            n.port()
        ));
    }
    y.push_str(
        "    affinity:\n      mode: key\n      key: \"query:room\"\n      fallback: ip_hash\n      engineio: true\n      cookie: { secret_env: TETHER_SECRET }\n",
    );
    y
}

/// 300 cookie-less socket.io clients in 10 rooms through the front; every session kept.
async fn run(url: String, nodes: Arc<Vec<SioNode>>) -> serde_json::Value {
    tokio::task::spawn_blocking(move || {
        let extra = ["--cookies", "off", "--rooms", "10", "--messages", "5"];
        run_clients_with("socketio", &url, &nodes, CLIENTS, &extra)
    })
    .await
    .unwrap()
}

/// Each room's node; fails if a room's clients were on more than one.
fn room_nodes(r: &serde_json::Value) -> BTreeMap<String, String> {
    assert_eq!(r["connected"], CLIENTS, "{r}");
    assert_eq!(r["sessionUnknown"], 0, "{r}");
    assert_eq!(r["acksFromOtherNode"], 0, "{r}");
    let rooms = r["roomNodes"].as_object().expect("roomNodes");
    assert_eq!(rooms.len(), ROOMS, "{r}");
    rooms
        .iter()
        .map(|(room, nodes)| {
            let nodes = nodes.as_object().unwrap();
            assert_eq!(nodes.len(), 1, "room {room} on one node only: {nodes:?}");
            (room.clone(), nodes.keys().next().unwrap().clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_of_a_room_reaches_one_node_through_two_replicas() {
    let nodes = Arc::new(cluster_of("socketio"));
    let yaml = config(&nodes.iter().collect::<Vec<_>>());
    let replicas = [Proxy::start(&yaml), Proxy::start(&yaml)];
    let front = Front::start([replicas[0].addr, replicas[1].addr]).await;
    let url = format!("http://{}", front.addr);

    let before = room_nodes(&run(url.clone(), nodes.clone()).await);
    let used: BTreeSet<&String> = before.values().collect();
    assert!(
        used.len() >= 2,
        "10 rooms spread over the nodes: {before:?}"
    );
    let [a, b] = front.counts();
    assert!(a > 0 && b > 0, "both replicas served: {a} {b}");
    for proxy in &replicas {
        let m = metrics(proxy).await;
        assert!(counter(&m, "tether_placements_total", &[("source", "key")]) > 0);
    }

    // node-b leaves both replicas (a reload, as a deploy would): only its rooms move.
    let gone = "node-b";
    let staying: Vec<&SioNode> = nodes.iter().filter(|n| n.id() != gone).collect();
    for proxy in &replicas {
        proxy.rewrite_config(&config(&staying));
        proxy.signal("HUP");
    }
    for proxy in &replicas {
        crate::support::wait_for_nodes(proxy, "realtime", 2).await;
    }
    let after = room_nodes(&run(url.clone(), nodes.clone()).await);
    for (room, node) in &before {
        if node == gone {
            assert_ne!(&after[room], gone, "{room} left with its node");
        } else {
            assert_eq!(&after[room], node, "{room} stayed where it was");
        }
    }
    assert!(
        before.values().any(|n| n == gone),
        "the test removed a node that held rooms"
    );

    // Without the key: the fallback (ip_hash) places the request.
    let replica = &replicas[0];
    let before_ip = counter(
        &metrics(replica).await,
        "tether_placements_total",
        &[("source", "ip_hash")],
    );
    let mut s = tokio::net::TcpStream::connect(replica.addr).await.unwrap();
    s.write_all(
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let after_ip = counter(
        &metrics(replica).await,
        "tether_placements_total",
        &[("source", "ip_hash")],
    );
    assert_eq!(after_ip, before_ip + 1);
}

/// The proof that the test can fail: with cookie affinity, cookie-less clients of one room
/// land on several nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_key_affinity_a_rooms_clients_spread_over_the_nodes() {
    let nodes = Arc::new(cluster_of("socketio"));
    let yaml = crate::socketio::cluster_config(
        &nodes,
        "mode: cookie\ncookie:\n  secret_env: TETHER_SECRET\nengineio: true",
    );
    let proxy = Proxy::start(&yaml);
    let r = run(proxy.url(""), nodes.clone()).await;
    let rooms = r["roomNodes"].as_object().expect("roomNodes");
    let split = rooms
        .values()
        .filter(|nodes| nodes.as_object().unwrap().len() > 1)
        .count();
    assert!(
        split >= 5,
        "rooms split over nodes without key affinity: {rooms:?}"
    );
}

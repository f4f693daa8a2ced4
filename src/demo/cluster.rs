//! The demo's cluster (only under `tether demo`): which demo nodes run, and stopping or
//! restarting one from the demo page, so a newcomer can watch tether re-pin the clients of a
//! node that died and its health checks mark the node down and up again.
//!
//! Any node answers the cluster's routes (`GET /demo/cluster`, `POST /demo/cluster/ID/stop` or
//! `/start`), since the page reaches the cluster through tether and lands on its own pinned node.

use super::Node;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

/// The demo cluster: its nodes by id, running or not.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    members: tokio::sync::Mutex<Vec<Member>>,
    /// The admin page's URL, for the demo page's link.
    admin: Option<String>,
}

struct Member {
    id: String,
    addr: SocketAddr,
    node: Option<Node>,
}

impl Cluster {
    /// Start one node per id on a fresh loopback port (on the current tokio runtime).
    pub async fn start(ids: &[&str], admin: Option<String>) -> io::Result<Cluster> {
        let inner = Arc::new(Inner {
            members: tokio::sync::Mutex::new(Vec::new()),
            admin,
        });
        let mut members = Vec::new();
        for id in ids {
            let node = Node::spawn_in(
                id,
                SocketAddr::from(([127, 0, 0, 1], 0)),
                Arc::downgrade(&inner),
            )
            .await?;
            members.push(Member {
                id: id.to_string(),
                addr: node.addr(),
                node: Some(node),
            });
        }
        *inner.members.lock().await = members;
        Ok(Cluster { inner })
    }

    /// Every node's id and address.
    pub async fn addresses(&self) -> Vec<(String, SocketAddr)> {
        self.inner
            .members
            .lock()
            .await
            .iter()
            .map(|m| (m.id.clone(), m.addr))
            .collect()
    }
}

impl Inner {
    /// `{"admin": URL, "nodes": [{"id", "address", "up"}]}` for the demo page.
    pub(super) async fn describe(&self) -> String {
        let members = self.members.lock().await;
        let nodes: Vec<_> = members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id,
                    "address": m.addr.to_string(),
                    "up": m.node.is_some(),
                })
            })
            .collect();
        serde_json::json!({ "admin": self.admin, "nodes": nodes }).to_string()
    }

    /// Stop node `id` like a crash (listener closed, connections cut). False: no such node.
    pub(super) async fn stop(&self, id: &str) -> bool {
        let mut members = self.members.lock().await;
        let Some(m) = members.iter_mut().find(|m| m.id == id) else {
            return false;
        };
        if let Some(node) = m.node.take() {
            node.stop().await;
        }
        true
    }

    /// Start node `id` again on its address. False: no such node. (Boxed: a node's routes
    /// call this, and it starts a node, so its future type must not be defined by itself.)
    pub(super) fn restart(
        self: Arc<Self>,
        id: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<bool>> + Send>> {
        Box::pin(async move {
            let mut members = self.members.lock().await;
            let Some(m) = members.iter_mut().find(|m| m.id == id) else {
                return Ok(false);
            };
            if m.node.is_none() {
                m.node = Some(Node::spawn_in(&m.id, m.addr, Arc::downgrade(&self)).await?);
            }
            Ok(true)
        })
    }
}

/// What the demo routes hold: the cluster, if this node belongs to one.
pub(super) type Handle = Weak<Inner>;

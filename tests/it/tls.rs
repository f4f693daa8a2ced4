//! TLS termination: `https://` and `wss://` end to end to plain-text nodes, with cookie affinity
//! across the TLS upgrade, using a certificate generated in the test.

use crate::support::tls::{self as certs, TlsStream};
use crate::support::{self, Proxy, COOKIE_AFFINITY};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Tls {
    _dir: tempfile::TempDir,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
    connector: tokio_rustls::TlsConnector,
}

/// A self-signed certificate for `localhost`, and a client that trusts only it.
fn certificate() -> Tls {
    let id = certs::self_signed();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    id.write(&cert_path, &key_path);
    Tls {
        _dir: dir,
        cert_path,
        key_path,
        connector: certs::client(&[&id]),
    }
}

async fn connect(tls: &Tls, addr: std::net::SocketAddr) -> TlsStream {
    certs::connect(&tls.connector, addr).await
}

async fn https_get(stream: TlsStream, path: &str, cookie: Option<&str>) -> http::Response<Bytes> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "localhost");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_reach_plain_nodes_and_the_pin_holds_across_the_tls_upgrade() {
    let tls = certificate();
    let nodes = support::nodes(3).await;
    let mut cfg = support::config(&nodes, COOKIE_AFFINITY, "");
    cfg = cfg.replacen(
        "listen:\n  - address: \"{listen}\"\n",
        &format!(
            "listen:\n  - address: \"{{listen}}\"\n  - address: \"{{tls}}\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\n",
            tls.cert_path.display(),
            tls.key_path.display()
        ),
        1,
    );
    let proxy = Proxy::start(&cfg);
    let addr = proxy.tls.unwrap();

    // HTTPS: a pin, and the cookie is Secure on a TLS listener (the config did not say otherwise).
    let first = https_get(connect(&tls, addr).await, "/echo", None).await;
    assert_eq!(first.status(), 200);
    let set = first.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("Secure"), "{set}");
    let echo: serde_json::Value = serde_json::from_slice(first.body()).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    let node = echo["node"].as_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();

    // The same client's WebSocket over wss:// lands on the same node and echoes.
    for _ in 0..3 {
        let mut req = "wss://localhost/ws".into_client_request().unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::client_async(req, connect(&tls, addr).await)
            .await
            .unwrap();
        assert_eq!(resp.status(), 101);
        let greeting = ws.next().await.unwrap().unwrap().into_text().unwrap();
        let g: serde_json::Value = serde_json::from_str(&greeting).unwrap();
        assert_eq!(g["node"], node.as_str());
        for i in 0..50 {
            use futures_util::SinkExt;
            let msg = tokio_tungstenite::tungstenite::Message::Text(format!("tls {i}").into());
            ws.send(msg.clone()).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), msg);
        }
    }
    // The plain listener beside it still serves plain HTTP, with a non-Secure cookie.
    let plain = support::Client::new(proxy.addr).get("/whoami").await;
    assert!(!plain.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Secure"));
}

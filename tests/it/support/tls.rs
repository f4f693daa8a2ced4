//! TLS for tests: self-signed certificates for `localhost` written where a config points, and a
//! rustls client that trusts exactly the ones it is given.

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::WebSocketStream;

/// A certificate for `localhost` and its own new key.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    /// The key's SubjectPublicKeyInfo (DER): what Chromium's
    /// `--ignore-certificate-errors-spki-list` names, hashed.
    pub spki_der: Vec<u8>,
}

pub fn self_signed() -> Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
    }
}

impl Identity {
    /// Write the certificate and key as PEM files (over whatever is there).
    pub fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).unwrap();
        std::fs::write(key, &self.key_pem).unwrap();
    }
}

/// A client config trusting only `roots`, offering `alpn` (ring, as tether uses).
pub fn config(roots: RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client trusting only `trusted`, offering HTTP/1.1 by ALPN as browsers do for WebSockets.
pub fn client(trusted: &[&Identity]) -> tokio_rustls::TlsConnector {
    let mut roots = RootCertStore::empty();
    for id in trusted {
        roots.add(id.der.clone()).unwrap();
    }
    tokio_rustls::TlsConnector::from(config(roots, &[b"http/1.1"]))
}

pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A new TCP connection and TLS handshake with `localhost` at `addr` (HTTP/1.1 agreed by ALPN).
pub async fn connect(connector: &tokio_rustls::TlsConnector, addr: SocketAddr) -> TlsStream {
    connect_agreeing(connector, addr, b"http/1.1").await
}

/// A new TCP connection and TLS handshake with `localhost` at `addr` that agreed on `alpn`.
pub async fn connect_agreeing(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    alpn: &[u8],
) -> TlsStream {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(alpn),
        "the server chose {}",
        String::from_utf8_lossy(alpn)
    );
    stream
}

/// The certificate the server presented in this connection's handshake.
pub fn peer_certificate(stream: &TlsStream) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a server certificate")[0]
        .clone()
}

/// A `wss://localhost{path}` WebSocket over `stream`, its greeting read; returns the socket and
/// the greeting's `node`.
pub async fn wss(stream: TlsStream, path: &str) -> (WebSocketStream<TlsStream>, String) {
    let req = format!("wss://localhost{path}")
        .into_client_request()
        .unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    assert_eq!(resp.status(), 101);
    let greeting = ws.next().await.unwrap().unwrap().into_text().unwrap();
    let g: serde_json::Value = serde_json::from_str(&greeting).unwrap();
    (ws, g["node"].as_str().unwrap_or_default().to_string())
}

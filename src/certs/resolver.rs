//! The certificate a TLS handshake on an `acme:` listener gets.

use super::{Slot, ACME_TLS_ALPN};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// Resolves a handshake to its slot's certificate in use, or, for the CA's TLS-ALPN-01
/// validation (a hello offering `acme-tls/1` and nothing else, RFC 8737 §3), to the challenge
/// certificate for the name it asks for. Never the one for the other: a browser never offers
/// `acme-tls/1`, and a validator must never be shown the real certificate.
#[derive(Debug)]
pub struct Resolver {
    slot: Arc<Slot>,
}

impl Resolver {
    pub fn new(slot: Arc<Slot>) -> Resolver {
        Resolver { slot }
    }
}

/// The hello is the CA's TLS-ALPN-01 validation.
pub fn is_validation(hello: &ClientHello<'_>) -> bool {
    hello.alpn().is_some_and(|mut offered| {
        offered.next() == Some(ACME_TLS_ALPN) && offered.next().is_none()
    })
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if is_validation(&hello) {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.slot.alpn_answer(&name);
        }
        self.slot.current()
    }
}

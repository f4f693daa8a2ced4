//! Every parser that sees network bytes, fed the same input: none may panic, none may claim more
//! bytes than it was given, and nothing random may verify as an affinity token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::affinity::token::Keyring;
use tether::engine::{chunked, head, proxy_protocol};

fuzz_target!(|data: &[u8]| {
    let mut spans = Vec::new();
    let _ = head::parse_request(data, &mut spans);
    let _ = head::parse_response(data, &mut spans, false);
    if let Ok(n) = chunked::Scanner::default().scan(data) {
        assert!(n <= data.len());
    }
    if let Ok(Some((_, n))) = proxy_protocol::parse(data) {
        assert!(n <= data.len());
    }
    let ring = Keyring::new(b"fuzz-secret-0123456789abcdef0123456789", &[]);
    assert!(ring.verify(data, 1_000_000, None).is_none());
});

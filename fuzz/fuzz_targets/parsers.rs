//! Every parser that sees network bytes, fed the same input: none may panic, none may claim more
//! bytes than it was given, and nothing random may verify as an affinity token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::affinity::token::Keyring;
use tether::http1::{chunked, head, proxy_protocol};

fuzz_target!(|data: &[u8]| {
    let mut spans = Vec::new();
    let _ = head::parse_request(data, &mut spans);
    let _ = head::parse_response(data, &mut spans, false);
    // Chunked bodies (sizes, extensions, trailers), whole and split in two at a byte the
    // input itself picks: both must agree on where the body ends and what it holds.
    let mut whole = chunked::Decoder::new(chunked::Output::Chunked, 4096);
    let mut out = Vec::new();
    if let Ok(n) = whole.decode(data, &mut out) {
        assert!(n <= data.len());
    }
    let at = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut split = chunked::Decoder::new(chunked::Output::Chunked, 4096);
    let mut out2 = Vec::new();
    let first = split.decode(&data[..at], &mut out2);
    if let Ok(n) = first {
        if n == at {
            let second = split.decode(&data[at..], &mut out2).map(|m| n + m);
            let whole_again = chunked::Decoder::new(chunked::Output::Chunked, 4096)
                .decode(data, &mut Vec::new());
            assert_eq!(second.is_ok(), whole_again.is_ok());
            if let (Ok(a), Ok(b)) = (second, whole_again) {
                assert_eq!(a, b);
                assert_eq!(out2, out);
            }
        }
    }
    if let Ok(Some((_, n))) = proxy_protocol::parse(data) {
        assert!(n <= data.len());
    }
    let ring = Keyring::new(b"fuzz-secret-0123456789abcdef0123456789", &[]);
    assert!(ring.verify(data, 1_000_000, None).is_none());
});

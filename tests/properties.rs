//! Property tests over the parsers that see hostile bytes: tokens, Cookie headers, HTTP heads,
//! chunk framing. Arbitrary input never panics, and never verifies as a token.

use proptest::prelude::*;
use tether::affinity::token::{Keyring, TOKEN_LEN};
use tether::affinity::CookiePins;
use tether::config::CookieSettings;
use tether::http1::{chunked, head, proxy_protocol};

const SECRET: &[u8] = b"property-secret-0123456789abcdef012345";

fn pins() -> CookiePins {
    let settings = CookieSettings::with_secret(SECRET);
    CookiePins::new(&settings, &[], &["a", "b", "c"])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_verify_as_a_token(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let ring = Keyring::new(SECRET, &[]);
        prop_assert!(ring.verify(&bytes, 1_000_000, None).is_none());
    }

    #[test]
    fn token_shaped_strings_never_verify(s in "[A-Za-z0-9_-]{39}") {
        prop_assert_eq!(s.len(), TOKEN_LEN);
        prop_assert!(Keyring::new(SECRET, &[]).verify(s.as_bytes(), 1_000_000, None).is_none());
    }

    #[test]
    fn cookie_headers_never_panic_and_garbage_never_pins(header in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert!(pins().lookup([header.as_slice()], 1_000_000).is_none());
    }

    #[test]
    fn a_real_token_survives_any_surrounding_cookies(before in "[a-z]{1,8}=[a-z0-9]{0,20}", after in "[a-z]{1,8}=[a-z0-9]{0,20}") {
        let p = pins();
        let set = p.issue(1, 1_000);
        let ours = set.split(';').next().unwrap();
        let header = format!("{before}; {ours}; {after}");
        prop_assert_eq!(p.lookup([header.as_bytes()], 1_000).map(|pin| pin.node), Some(1));
    }

    #[test]
    fn request_heads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut spans = Vec::new();
        let _ = head::parse_request(&bytes, &mut spans);
        let _ = head::parse_response(&bytes, &mut spans, false);
    }

    #[test]
    fn proxy_headers_never_panic_or_overrun(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Some((_, n))) = proxy_protocol::parse(&bytes) {
            prop_assert!(n <= bytes.len());
        }
    }

    #[test]
    fn proxy_v1_round_trips_any_ipv4_source(a in any::<[u8; 4]>(), port in 1u16..) {
        let ip = std::net::Ipv4Addr::from(a);
        let h = format!("PROXY TCP4 {ip} 127.0.0.1 {port} 80\r\nGET");
        let (src, n) = proxy_protocol::parse(h.as_bytes()).unwrap().unwrap();
        prop_assert_eq!(src, proxy_protocol::Source::Client(std::net::SocketAddr::from((ip, port))));
        prop_assert_eq!(&h[n..], "GET");
    }

    #[test]
    fn chunk_framing_never_panics_or_overruns(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut decoder = chunked::Decoder::new(chunked::Output::Chunked, 1024);
        let mut out = Vec::new();
        if let Ok(n) = decoder.decode(&bytes, &mut out) {
            prop_assert!(n <= bytes.len());
            prop_assert!(out.len() <= n + 32, "normalising never grows a body by more than a line");
        }
    }

    /// Any valid chunked body, however it is split across reads, decodes to its data and ends
    /// exactly where it ends.
    #[test]
    fn any_chunked_body_decodes_whole_at_any_split(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6),
        split in 0usize..400,
    ) {
        let mut body = Vec::new();
        let mut data = Vec::new();
        for c in &chunks {
            body.extend_from_slice(format!("{:x};e=\"v\"\r\n", c.len()).as_bytes());
            body.extend_from_slice(c);
            body.extend_from_slice(b"\r\n");
            data.extend_from_slice(c);
        }
        body.extend_from_slice(b"0\r\nT: 1\r\n\r\nNEXT");
        let at = split.min(body.len());
        let mut decoder = chunked::Decoder::new(chunked::Output::Plain, 1024);
        let mut out = Vec::new();
        let n1 = decoder.decode(&body[..at], &mut out).unwrap();
        prop_assert_eq!(n1, at.min(body.len() - 4));
        let n2 = decoder.decode(&body[n1..], &mut out).unwrap();
        prop_assert!(decoder.is_done());
        prop_assert_eq!(&body[n1 + n2..], b"NEXT");
        prop_assert_eq!(out, data);
    }
}

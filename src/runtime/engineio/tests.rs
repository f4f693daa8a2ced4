use super::*;

fn tags(ids: &[&str]) -> SidTags {
    SidTags::new(&[9; 32], &[], ids)
}

#[test]
fn requests_are_classified_by_their_query() {
    assert_eq!(
        classify(b"/socket.io/?EIO=4&transport=polling&t=Ok3"),
        Role::Handshake { version: 4 }
    );
    assert_eq!(
        classify(b"/socket.io/?EIO=3&transport=polling&b64=1"),
        Role::Handshake { version: 3 }
    );
    let t = b"/socket.io/?EIO=4&transport=websocket&sid=abc~x";
    assert_eq!(
        classify(t),
        Role::Session {
            sid: 42..47,
            others: vec![]
        }
    );
    // Every `sid` is seen, so a tag cannot slip through in a first one.
    let twice = b"/socket.io/?EIO=4&sid=a~1&sid=b~2";
    let Role::Session { sid, others } = classify(twice) else {
        panic!("a session request");
    };
    assert_eq!(&twice[sid], b"b~2");
    assert_eq!(others.len(), 1);
    assert_eq!(&twice[others[0].clone()], b"a~1");
    assert_eq!(&t[42..47], b"abc~x");
    // A WebSocket-first handshake needs no routing afterwards; other paths are not engine.io.
    assert_eq!(
        classify(b"/socket.io/?EIO=4&transport=websocket"),
        Role::Other
    );
    assert_eq!(classify(b"/api?sid=1"), Role::Other);
    assert_eq!(
        classify(b"/socket.io/?EIO=5&transport=polling"),
        Role::Other
    );
}

#[test]
fn a_tag_names_its_node_binds_its_sid_and_any_change_is_invalid() {
    let t = tags(&["a", "b", "c"]);
    let tag = t.tag(1, b"Zq3_x-YAAAB");
    assert_eq!(tag.len(), TAG_CHARS + 1);
    let sid = format!("Zq3_x-YAAAB{tag}");
    assert_eq!(t.read(sid.as_bytes()), Some((11, Tagged::Node(1))));
    // The same tag on another session id, a flipped character, another secret: invalid.
    let moved = format!("other{tag}");
    assert_eq!(t.read(moved.as_bytes()), Some((5, Tagged::Invalid)));
    let mut flipped = sid.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(t.read(&flipped).map(|r| r.1), Some(Tagged::Invalid));
    let foreign = SidTags::new(&[8; 32], &[], &["a", "b", "c"]);
    assert_eq!(
        foreign.read(sid.as_bytes()).map(|r| r.1),
        Some(Tagged::Invalid)
    );
    // A node that left: invalid; one that moved in the list: followed by id.
    assert_eq!(
        tags(&["a", "c"]).read(sid.as_bytes()).map(|r| r.1),
        Some(Tagged::Invalid)
    );
    assert_eq!(
        tags(&["b", "a"]).read(sid.as_bytes()).map(|r| r.1),
        Some(Tagged::Node(0))
    );
    // No separator: no tag, the id passes untouched.
    assert_eq!(t.read(b"Zq3_x-YAAAB"), None);
    // The separator percent-encoded: the same tag.
    let encoded = sid.replacen('~', "%7e", 1);
    assert_eq!(t.read(encoded.as_bytes()), Some((11, Tagged::Node(1))));
    // Whatever follows a separator is a tag or what is left of one: cut off, and invalid.
    let truncated = &sid[..sid.len() - 1];
    assert_eq!(t.read(truncated.as_bytes()), Some((11, Tagged::Invalid)));
    assert_eq!(t.read(b"custom~id"), Some((6, Tagged::Invalid)));
    assert_eq!(t.read(b"~"), Some((0, Tagged::Invalid)));
    assert_eq!(t.read(b"abc%7"), None);
}

#[test]
fn rotation_keeps_old_tags_readable() {
    let old = tags(&["a", "b"]);
    let tag = old.tag(0, b"s1");
    let prev: &[u8] = &[9; 32];
    let rotated = SidTags::new(&[7; 32], &[prev], &["a", "b"]);
    let sid = format!("s1{tag}");
    assert_eq!(rotated.read(sid.as_bytes()), Some((2, Tagged::Node(0))));
}

#[test]
fn engine_io_4_handshakes_get_the_tag_after_the_sid() {
    let body = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
    assert_eq!(session_id(body, 4).unwrap(), b"lv_VI97HAXpY6yYWAAAC");
    let out = rewrite_handshake(body, 4, "~TAG").unwrap();
    assert!(out.starts_with(br#"0{"sid":"lv_VI97HAXpY6yYWAAAC~TAG","upgrades""#));
    assert_eq!(out.len(), body.len() + 4);
    let with_more = [body.as_slice(), b"\x1e40"].concat();
    let out = rewrite_handshake(&with_more, 4, "~T").unwrap();
    assert!(out.ends_with(b"}\x1e40"));
}

#[test]
fn engine_io_3_payloads_grow_their_length_prefix() {
    // Text (and b64=1): LEN:PACKET, the socket.io 2 connect packet after it.
    let open = r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}"#;
    let body = format!("{}:{open}2:40", open.len());
    let out = rewrite_handshake(body.as_bytes(), 3, "~TAGG").unwrap();
    let expected = format!(
        "{}:{}2:40",
        open.len() + 5,
        open.replace("\"abc\"", "\"abc~TAGG\"")
    );
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    // Binary: \x00, the length as digit bytes, \xff.
    let mut bin = vec![0u8];
    bin.extend(open.len().to_string().bytes().map(|d| d - b'0'));
    bin.push(0xff);
    bin.extend_from_slice(open.as_bytes());
    let out = rewrite_handshake(&bin, 3, "~TAGG").unwrap();
    let mut want = vec![0u8];
    want.extend((open.len() + 5).to_string().bytes().map(|d| d - b'0'));
    want.push(0xff);
    want.extend_from_slice(open.replace("\"abc\"", "\"abc~TAGG\"").as_bytes());
    assert_eq!(out, want);
    // JSONP: the payload inside a JavaScript string, quotes escaped.
    let escaped = open.replace('"', "\\\"");
    let jsonp = format!("___eio[0](\"{}:{escaped}\");", open.len());
    let out = rewrite_handshake(jsonp.as_bytes(), 3, "~TAGG").unwrap();
    let want = format!(
        "___eio[0](\"{}:{}\");",
        open.len() + 5,
        escaped.replace("\\\"abc\\\"", "\\\"abc~TAGG\\\"")
    );
    assert_eq!(String::from_utf8(out).unwrap(), want);
}

#[test]
fn anything_else_is_malformed_and_passes_through() {
    for (body, v) in [
        (&b""[..], 4),
        (b"not a handshake", 4),
        (b"0{\"nosid\":1}", 4),
        (b"0{\"sid\":\"\"}", 4),
        (b"0{\"sid\":\"a\\u0041\"}", 4),
        (b"12:0{\"sid\":1}", 3),
        (b":0{\"sid\":\"a\"}", 3),
        (b"\x00\x01\x0a\xff0{\"sid\":\"a\"}", 3),
        (b"___eio[0](nothing);", 3),
    ] {
        assert_eq!(
            rewrite_handshake(body, v, "~T"),
            Err(Malformed),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

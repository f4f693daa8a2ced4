use super::*;

fn tags(ids: &[&str]) -> SidTags {
    SidTags::new(&[9; 32], &[], ids)
}

fn role(target: &[u8]) -> Role {
    read_query(target, b"GET", &tags(&["a"])).role
}

#[test]
fn requests_are_read_as_engine_io_reads_their_query() {
    assert_eq!(
        role(b"/socket.io/?EIO=4&transport=polling&t=Ok3"),
        Role::Handshake { version: 4 }
    );
    assert_eq!(
        role(b"/socket.io/?EIO=3&transport=polling&b64=1"),
        Role::Handshake { version: 3 }
    );
    assert_eq!(
        role(b"/socket.io/?EIO=4&transport=websocket&sid=abc~x"),
        Role::Session
    );
    // Names are percent-decoded, as URLSearchParams decodes them.
    assert_eq!(
        role(b"/socket.io/?%45IO=4&transp%6Frt=polling"),
        Role::Handshake { version: 4 }
    );
    assert_eq!(role(b"/socket.io/?EIO=4&s%69d=abc"), Role::Session);
    // The revision is 4 only for exactly "4" (engine.io's computeProtocolRevision): "04", "+4"
    // (a space, then 4) and "4.0" are revision 3; "%34" decodes to "4".
    for (eio, version) in [("04", 3), ("+4", 3), ("4.0", 3), ("%34", 4), ("5", 3)] {
        let t = format!("/socket.io/?EIO={eio}&transport=polling");
        assert_eq!(role(t.as_bytes()), Role::Handshake { version }, "EIO={eio}");
    }
    // An empty sid, or one empty once its tag is cut, is no session: a polling GET is then a
    // handshake (engine.io tests `if (sid)`), anything else is not engine.io's business.
    let t = tags(&["a"]);
    let tag = t.tag(0, b"");
    assert_eq!(
        role(b"/socket.io/?EIO=4&transport=polling&sid="),
        Role::Handshake { version: 4 }
    );
    let only_tag = format!("/socket.io/?EIO=4&transport=polling&sid={tag}");
    let q = read_query(only_tag.as_bytes(), b"GET", &t);
    assert_eq!(q.role, Role::Handshake { version: 4 });
    assert_eq!(q.strip.len(), 1, "the tag never reaches the node");
    assert_eq!(
        read_query(only_tag.as_bytes(), b"POST", &t).role,
        Role::Other,
        "a handshake is GET only"
    );
    // A WebSocket-first handshake needs no routing afterwards; other paths are not engine.io.
    assert_eq!(role(b"/socket.io/?EIO=4&transport=websocket"), Role::Other);
    assert_eq!(role(b"/api?sid=1"), Role::Other);
    assert_eq!(role(b"/socket.io/"), Role::Other);
}

#[test]
fn every_sid_loses_its_tag_and_the_last_one_places_the_request() {
    let t = tags(&["a", "b"]);
    let (ta, tb) = (t.tag(0, b"s1"), t.tag(1, b"s2"));
    let target = format!("/socket.io/?EIO=4&sid=s1{ta}&transport=polling&sid=s2{tb}");
    let q = read_query(target.as_bytes(), b"GET", &t);
    assert_eq!(q.role, Role::Session);
    assert_eq!(q.tag, Some(Tagged::Node(1)), "engine.io reads the last sid");
    let cut: Vec<&str> = q.strip.iter().map(|r| &target[r.clone()]).collect();
    assert_eq!(cut, [ta.as_str(), tb.as_str()]);
    // Ids with separators of their own (socket.io's generateId may make them) keep them: only
    // the tag after the last separator is cut, and it verifies over the whole id.
    for id in ["u1~b", "u1", "a~b~c", "~lead", "trail~"] {
        let tag = t.tag(1, id.as_bytes());
        let target = format!("/socket.io/?EIO=4&transport=polling&sid={id}{tag}");
        let q = read_query(target.as_bytes(), b"GET", &t);
        assert_eq!(q.tag, Some(Tagged::Node(1)), "{id}");
        assert_eq!(q.strip.len(), 1);
        assert_eq!(&target[q.strip[0].clone()], tag, "{id}");
        // The same id without a tag reaches the node whole.
        let bare = format!("/socket.io/?EIO=4&transport=polling&sid={id}");
        let q = read_query(bare.as_bytes(), b"GET", &t);
        assert_eq!((q.tag, q.strip.len()), (None, 0), "{id}");
    }
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
    // A suffix that is not a tag's shape is part of the id (or what is left of a cut tag): it
    // reaches the node as sent, which answers as for any id it never issued.
    let truncated = &sid[..sid.len() - 1];
    assert_eq!(t.read(truncated.as_bytes()), None);
    assert_eq!(t.read(b"custom~id"), None);
    assert_eq!(t.read(b"~"), None);
    assert_eq!(t.read(b"abc%7"), None);
    // Tag-shaped but forged: cut, and invalid.
    let forged = format!("Zq3_x-YAAAB~{}", "A".repeat(TAG_CHARS));
    assert_eq!(t.read(forged.as_bytes()), Some((11, Tagged::Invalid)));
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
fn only_the_top_level_sid_is_the_session_id() {
    // A nested object or array with a "sid" key, or "sid" inside a string, comes first.
    let body = br#"0{"data":{"sid":"inner"},"note":"\"sid\":\"x\"","list":[{"sid":"y"}],"sid":"outer","pingInterval":25000}"#;
    assert_eq!(session_id(body, 4).unwrap(), b"outer");
    let out = rewrite_handshake(body, 4, "~T").unwrap();
    assert!(
        out.ends_with(br#""sid":"outer~T","pingInterval":25000}"#),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(out.starts_with(br#"0{"data":{"sid":"inner"}"#));
    // Only nested: no session id.
    assert_eq!(
        session_id(br#"0{"data":{"sid":"inner"}}"#, 4),
        Err(Malformed)
    );
    // JSONP (engine.io 3): the same rule through the escaped quotes.
    let open = r#"0{"x":{"sid":"no"},"sid":"abc","pingInterval":25000}"#;
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

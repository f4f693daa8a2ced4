use super::*;

fn req(raw: &str) -> Result<Option<Request>, HeadError> {
    parse_request(raw.as_bytes(), &mut Vec::new())
}

#[test]
fn a_plain_get_is_parsed_in_place() {
    let raw = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nCookie: c=1\r\n\r\nrest";
    let r = req(raw).unwrap().unwrap();
    assert_eq!(&raw[r.target.clone()], "/a?b=1");
    assert_eq!(&raw[r.method.clone()], "GET");
    assert_eq!(r.len, raw.len() - 4);
    assert_eq!(r.framing, Framing::Empty);
    assert!(r.keep_alive && !r.upgrade);
    assert_eq!(
        req("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().map(|r| r.len),
        None
    );
}

#[test]
fn upgrades_and_keep_alive() {
    let r = req(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .unwrap()
    .unwrap();
    assert!(r.upgrade);
    let r = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert!(!r.keep_alive);
    let r = req("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!r.keep_alive);
    let r = req("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!r.upgrade, "no Upgrade header: not an upgrade");
    let r = req("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!r.upgrade, "HTTP/1.0 cannot upgrade");
}

#[test]
fn smuggling_shapes_are_refused() {
    for raw in [
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        // A framing header named by Connection: dropped as hop-by-hop, it would leave the
        // body to be read as a second request.
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close, transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Host\r\n\r\n",
    ] {
        assert_eq!(req(raw).unwrap_err(), HeadError::BadFraming, "{raw:?}");
    }
    let ok = req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(ok.framing, Framing::Length(5));
    assert_eq!(
        req("GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n").unwrap_err(),
        HeadError::Malformed
    );
}

#[test]
fn methods_are_case_sensitive_and_upper_case() {
    let r = req("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
    assert!(r.head);
    for raw in [
        "head / HTTP/1.1\r\nHost: x\r\n\r\n",
        "Get / HTTP/1.1\r\nHost: x\r\n\r\n",
        "G3T / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(req(raw).unwrap_err(), HeadError::Malformed, "{raw:?}");
    }
    let custom = req("M-SEARCH_X / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!custom.head);
}

#[test]
fn host_is_required_once_on_http_1_1_and_must_be_valid() {
    for raw in [
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:80:90\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:bad\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: caf\u{e9}.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [nope]:80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n",
    ] {
        assert!(req(raw).is_err(), "{raw:?}");
    }
    for host in [
        "a.example",
        "a.example:8080",
        "[::1]:80",
        "10.0.0.1",
        "a%20b",
        "",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert!(req(&raw).unwrap().is_some(), "{host:?}");
    }
    assert!(
        req("GET / HTTP/1.0\r\n\r\n").unwrap().is_some(),
        "1.0 needs no Host"
    );
}

#[test]
fn target_forms() {
    let raw = "GET http://App.example:8080?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    let r = req(raw).unwrap().unwrap();
    assert_eq!(&raw[r.path.clone()], "?q=1");
    let (a, b) = r.host.unwrap();
    assert_eq!(&raw[a as usize..b as usize], "App.example:8080");
    assert!(r.host_from_target);
    let r = req("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!r.host_from_target);
    for raw in [
        "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://user@x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET x/y HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(req(raw).unwrap_err(), HeadError::Malformed, "{raw:?}");
    }
}

#[test]
fn expect_continue_only_on_http_1_1() {
    let e = "Expect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    let r = req(&format!("POST / HTTP/1.1\r\nHost: x\r\n{e}"))
        .unwrap()
        .unwrap();
    assert!(r.expect_continue);
    let r = req(&format!("POST / HTTP/1.0\r\n{e}")).unwrap().unwrap();
    assert!(!r.expect_continue, "RFC 9110 §10.1.1: ignored for HTTP/1.0");
}

#[test]
fn response_framing_follows_rfc_9112() {
    let parse = |raw: &str, head: bool| {
        parse_response(raw.as_bytes(), &mut Vec::new(), head)
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false).framing,
        Framing::Length(3)
    );
    assert_eq!(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).framing,
        Framing::Empty
    );
    assert_eq!(
        parse("HTTP/1.1 204 No Content\r\n\r\n", false).framing,
        Framing::Empty
    );
    assert_eq!(
        parse("HTTP/1.1 101 Switching\r\n\r\n", false).framing,
        Framing::Empty
    );
    assert_eq!(
        parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        )
        .framing,
        Framing::Chunked
    );
    let both = parse(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
    );
    assert_eq!(both.framing, Framing::Chunked);
    assert!(
        both.transfer_encoding && !both.keep_alive,
        "suspect: never reused"
    );
    let old = parse(
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
        false,
    );
    assert!(!old.keep_alive, "an HTTP/1.0 response is never reused");
    let gz = parse(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        false,
    );
    assert_eq!(
        gz.framing,
        Framing::Chunked,
        "a final chunked frames the body"
    );
    let odd = parse(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        false,
    );
    assert_eq!(odd.framing, Framing::UntilClose);
    assert!(parse_response(
        b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 1\r\n\r\n",
        &mut Vec::new(),
        false
    )
    .is_err());
    let close = parse("HTTP/1.1 200 OK\r\n\r\n", false);
    assert_eq!(
        (close.framing, close.keep_alive),
        (Framing::UntilClose, false)
    );
}

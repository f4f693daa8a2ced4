//! The request generator: cases written from RFC 9112 (and RFC 9110 where it says what a field
//! means), each with the bytes a client sends and what a correct proxy may do with them.
//! Deterministic: the random combinations come from a fixed seed.
//!
//! A case says either that it must be refused, or which request(s) the node must receive when a
//! proxy accepts it (method, target, Host, decoded body), and whether a refusal is also fine.
//! Methods are only ones llhttp knows: the reference parser refuses unregistered methods, which
//! would blame the proxy for the reference's limits.

use crate::support::strict;

/// A request as the node must see it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Acceptable forwarded targets (origin-form, or the absolute-form as sent, ...).
    pub targets: Vec<String>,
    /// The exact `Host` value the node must get (`None`: not checked, e.g. HTTP/1.0).
    pub host: Option<Vec<u8>>,
    /// The decoded body.
    pub body: Vec<u8>,
    /// 0 for HTTP/1.0: the client may not get any 1xx.
    pub minor: u8,
    /// A `100 Continue` may reach the client before the final answer.
    pub interim_ok: bool,
}

/// What follows the case's requests on the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The connection stays open: the probe is forwarded and answered.
    Probe,
    /// The connection closes after the last answer; the probe never reaches the node.
    Close,
    /// What follows is refused (4xx and close); the probe never reaches the node.
    Refused,
}

/// One acceptable way of forwarding a case.
#[derive(Debug, Clone)]
pub struct Fwd {
    pub reqs: Vec<Req>,
    pub then: Then,
    /// An upgrade: the node gets `reqs[0]` as an upgrade, then these bytes and the probe through
    /// the tunnel.
    pub tunnel: Option<Vec<u8>>,
    /// The tunnel follows WebSocket frames (a `websocket` handshake): the bytes in `tunnel` are
    /// frames, and what follows them that is not (the probe, a smuggled request) ends the
    /// tunnel with tether's Close 1002 to the node instead of reaching it.
    pub frames: bool,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub id: usize,
    pub category: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
    /// A refusal (4xx/5xx, closed, nothing at the node) passes.
    pub refuse_ok: bool,
    /// Acceptable forwardings; empty: the case must be refused.
    pub forward: Vec<Fwd>,
    /// Waiting for more body (no answer in time, nothing broken at the node) passes.
    pub pending_ok: bool,
    /// Larger than one read: a refusal may come after the head went out, so a node that saw
    /// an unfinished request cut by the close is fine.
    pub streamed: bool,
    /// Also sent split in two writes at every byte boundary.
    pub split: bool,
}

impl Case {
    fn new(category: &'static str, name: impl Into<String>, bytes: Vec<u8>) -> Case {
        let streamed = bytes.len() > 8 * 1024;
        Case {
            id: 0,
            category,
            name: name.into(),
            bytes,
            refuse_ok: true,
            forward: Vec::new(),
            pending_ok: false,
            streamed,
            split: false,
        }
    }

    /// The case must be refused.
    fn refuse(cat: &'static str, name: impl Into<String>, bytes: Vec<u8>) -> Case {
        Case::new(cat, name, bytes)
    }

    /// Valid: it must be forwarded as `fwd`.
    fn must(cat: &'static str, name: impl Into<String>, bytes: Vec<u8>, fwd: Fwd) -> Case {
        Case {
            refuse_ok: false,
            forward: vec![fwd],
            ..Case::new(cat, name, bytes)
        }
    }

    /// RFC 9112 lets a server refuse it, or forward it as `fwd`.
    fn either(cat: &'static str, name: impl Into<String>, bytes: Vec<u8>, fwd: Fwd) -> Case {
        Case {
            forward: vec![fwd],
            ..Case::new(cat, name, bytes)
        }
    }

    fn or(mut self, fwd: Fwd) -> Case {
        self.forward.push(fwd);
        self
    }

    fn pending(mut self) -> Case {
        self.pending_ok = true;
        self
    }

    /// Is the case's first request a HEAD (its answer has no body)?
    pub fn head_first(&self) -> bool {
        self.forward
            .first()
            .and_then(|f| f.reqs.first())
            .is_some_and(|r| r.method == "HEAD")
    }
}

impl Req {
    pub fn new(method: &str, target: &str, body: &[u8]) -> Req {
        Req {
            method: method.into(),
            targets: vec![target.into()],
            host: Some(b"h".to_vec()),
            body: body.to_vec(),
            minor: 1,
            interim_ok: false,
        }
    }
    fn host(mut self, h: &[u8]) -> Req {
        self.host = Some(h.to_vec());
        self
    }
    fn any_host(mut self) -> Req {
        self.host = None;
        self
    }
    fn http10(mut self) -> Req {
        self.minor = 0;
        self.host = None;
        self
    }
    fn targets(mut self, t: &[&str]) -> Req {
        self.targets = t.iter().map(|s| s.to_string()).collect();
        self
    }
    fn interim(mut self) -> Req {
        self.interim_ok = true;
        self
    }
    fn then(self, then: Then) -> Fwd {
        Fwd {
            reqs: vec![self],
            then,
            tunnel: None,
            frames: false,
        }
    }
    fn probe(self) -> Fwd {
        self.then(Then::Probe)
    }
}

fn fwd(reqs: Vec<Req>, then: Then) -> Fwd {
    Fwd {
        reqs,
        then,
        tunnel: None,
        frames: false,
    }
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `METHOD /c HTTP/1.1`, `Host: h`, then `headers` (each ending CRLF), the blank line, `body`.
fn request(method: &str, headers: &[u8], body: &[u8]) -> Vec<u8> {
    cat(&[
        format!("{method} /c HTTP/1.1\r\nHost: h\r\n").as_bytes(),
        headers,
        b"\r\n",
        body,
    ])
}

const HELLO_CHUNKED: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";

/// A whole request, for bodies and tunnels that carry one.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";

/// Every case, numbered, with the split-delivery subset marked.
pub fn all() -> Vec<Case> {
    let mut rng = Rng(0x7e7e_2024_9112_0001);
    let mut cases = Vec::new();
    content_length(&mut cases);
    transfer_encoding(&mut cases);
    chunk_lines(&mut cases, &mut rng);
    trailers(&mut cases);
    request_lines(&mut cases);
    methods(&mut cases);
    header_fields(&mut cases, &mut rng);
    hosts(&mut cases);
    expect(&mut cases);
    upgrade(&mut cases);
    connection(&mut cases);
    pipelining(&mut cases);
    for (i, c) in cases.iter_mut().enumerate() {
        c.id = i;
    }
    // The split subset: short, decided (no waiting) cases, taken round-robin over categories.
    let mut eligible = std::collections::BTreeMap::<&str, Vec<usize>>::new();
    for c in &cases {
        if c.bytes.len() <= 140 && !c.pending_ok && !c.streamed {
            eligible.entry(c.category).or_default().push(c.id);
        }
    }
    let mut picked = Vec::new();
    'pick: for round in 0.. {
        let mut any = false;
        for ids in eligible.values() {
            // Spread the picks over the category: valid and invalid forms alike.
            let step = (ids.len() / 4).max(1);
            if let Some(&id) = ids.get(round * step + step / 2) {
                any = true;
                picked.push(id);
                if picked.len() == 40 {
                    break 'pick;
                }
            }
        }
        if !any {
            break;
        }
    }
    for id in picked {
        cases[id].split = true;
    }
    cases
}

fn content_length(out: &mut Vec<Case>) {
    const C: &str = "content-length";
    // (value as sent, its meaning: Some(n) valid, None invalid, strictly canonical?)
    let values: &[(&[u8], Option<u64>, bool)] = &[
        (b"5", Some(5), true),
        (b"0", Some(0), true),
        (b"05", Some(5), false),
        (b"00005", Some(5), false),
        (b" 5", Some(5), true),
        (b"5 ", Some(5), true),
        (b"\t5\t", Some(5), true),
        (b"5, 5", Some(5), false),
        (b"5,5", Some(5), false),
        (b"+5", None, false),
        (b"-5", None, false),
        (b"5 5", None, false),
        (b"5\t5", None, false),
        (b"0x5", None, false),
        (b"5.0", None, false),
        (b"5e0", None, false),
        (b"", None, false),
        (b"five", None, false),
        (b"5;", None, false),
        (b"\"5\"", None, false),
        (b"5, 6", None, false),
        (b"5,,5", None, false),
        (b"99999999999999999999", None, false),
        (b"18446744073709551616", None, false),
        (b"\xef\xbc\x95", None, false),
        (b"5\x00", None, false),
        (b"5\x0b", None, false),
        (b"\x805", None, false),
        (b"5a", None, false),
        (b" ", None, false),
    ];
    for method in ["POST", "PUT", "PATCH"] {
        for &(v, meaning, canonical) in values {
            let body = b"hello";
            let name = format!("{method} Content-Length: {}", strict::escape(v, 30));
            let bytes = request(method, &cat(&[b"Content-Length: ", v, b"\r\n"]), body);
            out.push(match meaning {
                Some(n) => {
                    let want = Req::new(method, "/c", &body[..n as usize]);
                    // A zero length leaves "hello" as the next request: refused.
                    let then = if n == 0 { Then::Refused } else { Then::Probe };
                    if canonical {
                        Case::must(C, name, bytes, want.then(then))
                    } else {
                        Case::either(C, name, bytes, want.then(then))
                    }
                }
                None => Case::refuse(C, name, bytes),
            });
        }
    }
    for &(v, meaning, _) in values {
        // The same value twice, and next to a different one.
        let bytes = request(
            "POST",
            &cat(&[b"Content-Length: ", v, b"\r\nContent-Length: ", v, b"\r\n"]),
            b"hello",
        );
        let name = format!("Content-Length twice: {}", strict::escape(v, 30));
        out.push(match meaning {
            Some(5) => Case::either(C, name, bytes, Req::new("POST", "/c", b"hello").probe()),
            Some(_) => Case::either(
                C,
                name,
                bytes,
                Req::new("POST", "/c", b"").then(Then::Refused),
            ),
            None => Case::refuse(C, name, bytes),
        });
        let bytes = request(
            "POST",
            &cat(&[b"Content-Length: 6\r\nContent-Length: ", v, b"\r\n"]),
            b"hello!",
        );
        out.push(Case::refuse(
            C,
            format!("Content-Length 6 then {}", strict::escape(v, 30)),
            bytes,
        ));
        // With Transfer-Encoding, before and after.
        out.push(Case::refuse(
            C,
            format!("Content-Length {} with chunked", strict::escape(v, 30)),
            request(
                "POST",
                &cat(&[
                    b"Content-Length: ",
                    v,
                    b"\r\nTransfer-Encoding: chunked\r\n",
                ]),
                HELLO_CHUNKED,
            ),
        ));
    }
    out.push(Case::refuse(
        C,
        "chunked then Content-Length",
        request(
            "POST",
            b"Transfer-Encoding: chunked\r\nContent-Length: 15\r\n",
            HELLO_CHUNKED,
        ),
    ));
    // Name forms.
    for name in ["content-length", "CONTENT-LENGTH", "Content-length"] {
        out.push(Case::must(
            C,
            format!("{name}: 5"),
            request("POST", format!("{name}: 5\r\n").as_bytes(), b"hello"),
            Req::new("POST", "/c", b"hello").probe(),
        ));
    }
    for bad in [
        &b"Content-Length : 5"[..],
        b"Content-Length\t: 5",
        b"Content-Length\x00: 5",
        b"Content Length: 5",
    ] {
        out.push(Case::refuse(
            C,
            format!("header {}", strict::escape(bad, 30)),
            request("POST", &cat(&[bad, b"\r\n"]), b"hello"),
        ));
    }
    // Not Content-Length at all: no body, so "hello" starts the next request (refused).
    for other in ["Content_Length", "Content-Lengthx", "XContent-Length"] {
        out.push(Case::either(
            C,
            format!("{other}: 5"),
            request("POST", format!("{other}: 5\r\n").as_bytes(), b"hello"),
            Req::new("POST", "/c", b"").then(Then::Refused),
        ));
    }
    // A GET or DELETE with a body is framed like any other.
    for method in ["GET", "DELETE", "OPTIONS"] {
        out.push(Case::must(
            C,
            format!("{method} with Content-Length: 5"),
            request(method, b"Content-Length: 5\r\n", b"hello"),
            Req::new(method, "/c", b"hello").probe(),
        ));
    }
    // Huge but valid lengths: refused, or waited for (the body never comes in this test).
    for v in ["1000000", "999999999999999999", "18446744073709551615"] {
        out.push(
            Case::refuse(
                C,
                format!("Content-Length: {v} (body never sent)"),
                request(
                    "POST",
                    format!("Content-Length: {v}\r\n").as_bytes(),
                    b"hello",
                ),
            )
            .pending(),
        );
    }
}

fn transfer_encoding(out: &mut Vec<Case>) {
    const C: &str = "transfer-encoding";
    let must_ok: &[&[u8]] = &[
        b"chunked",
        b"Chunked",
        b"CHUNKED",
        b" chunked",
        b"chunked ",
        b"\tchunked",
    ];
    // Valid syntax a server may still refuse (empty list elements, codings it does not apply).
    let either_ok: &[&[u8]] = &[
        b"chunked,",
        b",chunked",
        b", chunked",
        b"gzip, chunked",
        b"gzip,chunked",
        b"deflate, chunked",
        b"gzip ,chunked",
    ];
    let bad: &[&[u8]] = &[
        b"chunked, gzip",
        b"chunked, chunked",
        b"chunked,chunked",
        b"xchunked",
        b"chunkedx",
        b"chunked;q=1",
        b"\"chunked\"",
        b"chunk",
        b"identity",
        b"gzip",
        b"",
        b"chunked\x0b",
        b"ch unked",
        b"chunked\x00",
        b"chunked\x80",
        b"chunked\x0c",
        b"chunked, identity",
        b"identity, chunked",
    ];
    for method in ["POST", "PUT"] {
        for v in must_ok {
            out.push(Case::must(
                C,
                format!("{method} Transfer-Encoding: {}", strict::escape(v, 30)),
                request(
                    method,
                    &cat(&[b"Transfer-Encoding: ", v, b"\r\n"]),
                    HELLO_CHUNKED,
                ),
                Req::new(method, "/c", b"hello").probe(),
            ));
        }
        for v in either_ok {
            out.push(Case::either(
                C,
                format!("{method} Transfer-Encoding: {}", strict::escape(v, 30)),
                request(
                    method,
                    &cat(&[b"Transfer-Encoding: ", v, b"\r\n"]),
                    HELLO_CHUNKED,
                ),
                Req::new(method, "/c", b"hello").probe(),
            ));
        }
        for v in bad {
            out.push(Case::refuse(
                C,
                format!("{method} Transfer-Encoding: {}", strict::escape(v, 30)),
                request(
                    method,
                    &cat(&[b"Transfer-Encoding: ", v, b"\r\n"]),
                    HELLO_CHUNKED,
                ),
            ));
        }
    }
    // Two header lines make one list.
    for (a, b, ok) in [
        ("chunked", "chunked", false),
        ("gzip", "chunked", true),
        ("chunked", "gzip", false),
        ("chunked", "identity", false),
    ] {
        let bytes = request(
            "POST",
            format!("Transfer-Encoding: {a}\r\nTransfer-Encoding: {b}\r\n").as_bytes(),
            HELLO_CHUNKED,
        );
        let name = format!("Transfer-Encoding: {a} + {b}");
        out.push(if ok {
            Case::either(C, name, bytes, Req::new("POST", "/c", b"hello").probe())
        } else {
            Case::refuse(C, name, bytes)
        });
    }
    for bad in [
        &b"Transfer-Encoding : chunked"[..],
        b"Transfer-Encoding\t: chunked",
        b"Transfer-Encoding:\r\n chunked",
        b"X-A: b\r\n Transfer-Encoding: chunked",
    ] {
        out.push(Case::refuse(
            C,
            format!("header {}", strict::escape(bad, 40)),
            request("POST", &cat(&[bad, b"\r\n"]), HELLO_CHUNKED),
        ));
    }
    for other in [
        "Transfer_Encoding",
        "Transfer-Encodings",
        "X-Transfer-Encoding",
    ] {
        out.push(Case::either(
            C,
            format!("{other}: chunked"),
            request(
                "POST",
                format!("{other}: chunked\r\n").as_bytes(),
                HELLO_CHUNKED,
            ),
            Req::new("POST", "/c", b"").then(Then::Refused),
        ));
    }
    // HTTP/1.0 with Transfer-Encoding: the framing is faulty (RFC 9112 §6.1).
    for conn in ["", "Connection: keep-alive\r\n"] {
        for cl in ["", "Content-Length: 15\r\n"] {
            out.push(Case::refuse(
                C,
                format!("HTTP/1.0 chunked {conn}{cl}").replace("\r\n", " "),
                format!(
                    "POST /c HTTP/1.0\r\nHost: h\r\n{conn}{cl}Transfer-Encoding: chunked\r\n\r\n"
                )
                .into_bytes()
                .into_iter()
                .chain(HELLO_CHUNKED.iter().copied())
                .collect(),
            ));
        }
    }
}

/// A `hello` body whose first chunk line is `line` (size 5 when valid).
fn first_chunk(line: &[u8]) -> Vec<u8> {
    request(
        "POST",
        b"Transfer-Encoding: chunked\r\n",
        &cat(&[line, b"\r\nhello\r\n0\r\n\r\n"]),
    )
}

fn chunk_lines(out: &mut Vec<Case>, rng: &mut Rng) {
    const C: &str = "chunk-line";
    let hello = || Req::new("POST", "/c", b"hello").probe();
    let valid: &[&[u8]] = &[
        b"5",
        b"05",
        b"00000000000000000005",
        b"000000000000000000000000000000000000005",
        b"5;a",
        b"5;a=b",
        b"5;a=\"b c\"",
        b"5;a=\"\\\"q\\\"\"",
        b"5;a=\"\"",
        b"5 ;a=b",
        b"5\t;a",
        b"5; a = b",
        b"5;a=b ;c",
        b"5;a=b;c=d;e",
        b"5;!#$%&'*+-.^_`|~=x",
        b"5;a=\"\x80\xff\"",
        b"5;a=\"\t\"",
        b"5;a=1;a=2",
    ];
    for l in valid {
        debug_assert!(strict::chunk_line(l).is_ok());
        out.push(Case::must(
            C,
            format!("chunk line {}", strict::escape(l, 50)),
            first_chunk(l),
            hello(),
        ));
    }
    let bad: &[&[u8]] = &[
        b"5 5",
        b"5\t5",
        b"5 ",
        b"5\t",
        b"5;",
        b"5;;",
        b"5;=b",
        b"5;a=",
        b"5;a=b c",
        b"5;a=\"x",
        b"5;a=\"x\\\"",
        b"5;a=b\"",
        b"5;a==b",
        b"5;a=b=c",
        b"5;GET /x HTTP/1.1",
        b"5;a b",
        b"5 ;",
        b"5; ",
        b"5;a ",
        b"5;a=b ",
        b"-5",
        b"+5",
        b"0x5",
        b" 5",
        b"\t5",
        b"5g",
        b"",
        b";a=b",
        b"fffffffffffffffff",
        b"10000000000000000",
        b"5,a",
        b"5:a",
        b"5;a,b",
        b"5;a=b,c",
        b"5;a=(b)",
        b"5;a=@",
        b"5;a/b",
    ];
    for l in bad {
        debug_assert!(strict::chunk_line(l).is_err(), "{}", strict::escape(l, 60));
        out.push(Case::refuse(
            C,
            format!("chunk line {}", strict::escape(l, 50)),
            first_chunk(l),
        ));
    }
    // Bytes no chunk line may hold, at every place in one.
    let odd: &[u8] = &[
        0x00, 0x01, 0x08, 0x0b, 0x0c, 0x1f, 0x7f, 0x80, 0xff, b'\r', b'\n', b'\t', b' ',
    ];
    for &b in odd {
        let b = [b];
        for (where_, l) in [
            ("after the size", cat(&[b"5", &b])),
            ("in a name", cat(&[b"5;a", &b, b"c"])),
            ("in a value", cat(&[b"5;a=b", &b, b"c"])),
            ("in a quoted value", cat(&[b"5;a=\"b", &b, b"c\""])),
        ] {
            let ok = !b.contains(&b'\r') && !b.contains(&b'\n') && strict::chunk_line(&l).is_ok();
            let name = format!(
                "{} {where_}: {}",
                strict::escape(&b, 4),
                strict::escape(&l, 40)
            );
            out.push(if ok {
                Case::must(C, name, first_chunk(&l), hello())
            } else {
                Case::refuse(C, name, first_chunk(&l))
            });
        }
    }
    // Last-chunk forms.
    let lasts: &[(&[u8], bool)] = &[
        (b"0", true),
        (b"000", true),
        (b"0000000000000000000000", true),
        (b"0;a=b", true),
        (b"0;a", true),
        (b"0 ;a", true),
        (b"0 ", false),
        (b"0 5", false),
        (b"0\t", false),
        (b"0;", false),
        (b"0;;", false),
        (b"0;a=", false),
        (b"0;=", false),
        (b"0 0", false),
        (b"00 0", false),
        (b"0x0", false),
        (b"-0", false),
        (b"+0", false),
        (b" 0", false),
        (b"0;a=b c", false),
        (b"0\x00", false),
    ];
    for &(l, ok) in lasts {
        debug_assert_eq!(strict::chunk_line(l).is_ok(), ok);
        let bytes = request(
            "POST",
            b"Transfer-Encoding: chunked\r\n",
            &cat(&[b"5\r\nhello\r\n", l, b"\r\n\r\n"]),
        );
        let name = format!("last chunk {}", strict::escape(l, 40));
        out.push(if ok {
            Case::must(C, name, bytes, hello())
        } else {
            Case::refuse(C, name, bytes)
        });
    }
    // Framing around the data.
    for (name, body) in [
        ("no CRLF after data", &b"5\r\nhelloX\r\n0\r\n\r\n"[..]),
        ("short data", b"5\r\nhell\r\n0\r\n\r\n"),
        ("size too small", b"3\r\nhello\r\n0\r\n\r\n"),
        ("LF after data", b"5\r\nhello\n0\r\n\r\n"),
        ("CR after data", b"5\r\nhello\r0\r\n\r\n"),
        ("LF after size", b"5\nhello\r\n0\r\n\r\n"),
        ("LF ends the body", b"5\r\nhello\r\n0\r\n\n"),
        ("LF after last chunk", b"5\r\nhello\r\n0\n\r\n"),
        ("no last chunk", b"5\r\nhello\r\n\r\n"),
        (
            "final CRLF missing (the probe would be read as trailers)",
            b"5\r\nhello\r\n0\r\n",
        ),
    ] {
        out.push(Case::refuse(
            C,
            name,
            request("POST", b"Transfer-Encoding: chunked\r\n", body),
        ));
    }
    out.push(Case::must(
        C,
        "upper-case hex A with 10 bytes",
        request(
            "POST",
            b"Transfer-Encoding: chunked\r\n",
            b"A\r\n0123456789\r\n0\r\n\r\n",
        ),
        Req::new("POST", "/c", b"0123456789").probe(),
    ));
    out.push(Case::must(
        C,
        "many one-byte chunks",
        request(
            "POST",
            b"Transfer-Encoding: chunked\r\n",
            b"1\r\nh\r\n1;x=y\r\ne\r\n1\r\nl\r\n1\r\nl\r\n01\r\no\r\n0\r\n\r\n",
        ),
        Req::new("POST", "/c", b"hello").probe(),
    ));
    // Oversized lines: a 70 KB extension, 20,000 extensions, a 4 KB one.
    let long = cat(&[b"5;a=", &vec![b'x'; 70_000]]);
    out.push(Case::refuse(
        C,
        "a 70 KB chunk extension",
        first_chunk(&long),
    ));
    let many = cat(&[b"5", &b";a".repeat(20_000)]);
    out.push(Case::refuse(
        C,
        "20,000 chunk extensions",
        first_chunk(&many),
    ));
    let four_k = cat(&[b"5;a=", &vec![b'x'; 4_000]]);
    out.push(Case::either(
        C,
        "a 4 KB chunk extension",
        first_chunk(&four_k),
        hello(),
    ));
    // Random bodies of several chunks, each line built from valid and invalid pieces; labelled
    // by the RFC grammar (strict::chunk_line).
    let exts: &[&[u8]] = &[
        b"",
        b"",
        b"",
        b";a",
        b";a=b",
        b";n=\"v v\"",
        b" ;x",
        b"; y = z",
        b";a=1;b=2",
        // invalid pieces
        b" ",
        b";",
        b";=",
        b";a=",
        b"\x00",
        b" 1",
        b";a=b c",
        b";\"a\"",
        b"\x7f",
        b";a=\"b",
    ];
    for i in 0..220 {
        let n = 1 + rng.below(3);
        let mut body = Vec::new();
        let mut data = Vec::new();
        let mut ok = true;
        for c in 0..n {
            let len = 1 + rng.below(20);
            let chunk: Vec<u8> = (0..len).map(|k| b'a' + ((i + c + k) % 26) as u8).collect();
            let pad = if rng.below(4) == 0 { "00" } else { "" };
            let line = cat(&[format!("{pad}{len:x}").as_bytes(), *rng.pick::<&[u8]>(exts)]);
            ok &= strict::chunk_line(&line).is_ok();
            body.extend_from_slice(&line);
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(&chunk);
            body.extend_from_slice(b"\r\n");
            data.extend_from_slice(&chunk);
        }
        let last = cat(&[b"0", *rng.pick::<&[u8]>(exts)]);
        ok &= strict::chunk_line(&last).is_ok();
        body.extend_from_slice(&last);
        body.extend_from_slice(b"\r\n\r\n");
        let bytes = request("POST", b"Transfer-Encoding: chunked\r\n", &body);
        let name = format!("random chunks #{i}: {}", strict::escape(&body, 70));
        out.push(if ok {
            Case::must(C, name, bytes, Req::new("POST", "/c", &data).probe())
        } else {
            Case::refuse(C, name, bytes)
        });
    }
}

fn trailers(out: &mut Vec<Case>) {
    const C: &str = "trailer";
    let with = |t: &[u8]| {
        request(
            "POST",
            b"Transfer-Encoding: chunked\r\n",
            &cat(&[b"5\r\nhello\r\n0\r\n", t, b"\r\n"]),
        )
    };
    let hello = || Req::new("POST", "/c", b"hello").probe();
    for t in [
        &b"X-T: 1\r\n"[..],
        b"X-T:1\r\n",
        b"X-T: 1\r\nY-T: 2\r\n",
        b"X-T:\r\n",
        b"X-T: a b\r\n",
        b"X-T: a\tb\r\n",
        b"X-T:   1   \r\n",
    ] {
        out.push(Case::must(
            C,
            format!("trailer {}", strict::escape(t, 40)),
            with(t),
            hello(),
        ));
    }
    // Well-formed, but fields a trailer may not carry, or obs-text: dropping or refusing is fine.
    for t in [
        &b"Content-Length: 5\r\n"[..],
        b"Transfer-Encoding: chunked\r\n",
        b"Host: evil\r\n",
        b"X-T: \x80\xff\r\n",
    ] {
        out.push(Case::either(
            C,
            format!("trailer {}", strict::escape(t, 40)),
            with(t),
            hello(),
        ));
    }
    for t in [
        &b"X-T\r\n"[..],
        b"X-T: 1\r\n 2\r\n",
        b"X-T: 1\r\n\t2\r\n",
        b"X-T : 1\r\n",
        b"X-T\t: 1\r\n",
        b" X-T: 1\r\n",
        b": 1\r\n",
        b"X T: 1\r\n",
        b"X-T: \x00\r\n",
        b"X-T: \x01\r\n",
        b"X-T: \x0b\r\n",
        b"X-T: \x1f\r\n",
        b"X-T: \x7f\r\n",
        b"X\x00T: 1\r\n",
        b"X\x80: 1\r\n",
        b"X-T: 1\n",
        b"X-T: 1\rY: 2\r\n",
        b"GET /smuggled HTTP/1.1\r\n",
        b"X-T: 1\r\nGET /smuggled HTTP/1.1\r\n",
        b"X(T): 1\r\n",
    ] {
        out.push(Case::refuse(
            C,
            format!("trailer {}", strict::escape(t, 40)),
            with(t),
        ));
    }
    let long = cat(&[b"X-T: ", &vec![b'a'; 70_000], b"\r\n"]);
    out.push(Case::refuse(C, "a 70 KB trailer line", with(&long)));
    let many: Vec<u8> = (0..10_000)
        .flat_map(|i| format!("X-T{i}: v\r\n").into_bytes())
        .collect();
    out.push(Case::refuse(C, "10,000 trailer fields", with(&many)));
}

fn request_lines(out: &mut Vec<Case>) {
    const C: &str = "request-line";
    let get = |t: &str| Req::new("GET", t, b"");
    for (line, fwd) in [
        ("GET /x HTTP/1.1", Some(get("/x"))),
        ("GET /x?y=1&z HTTP/1.1", Some(get("/x?y=1&z"))),
        ("GET /%00 HTTP/1.1", Some(get("/%00"))),
        ("GET /a/../b HTTP/1.1", Some(get("/a/../b"))),
        ("GET /x;p=1 HTTP/1.1", Some(get("/x;p=1"))),
        (
            "GET /~user/!$&'()*+,;=:@ HTTP/1.1",
            Some(get("/~user/!$&'()*+,;=:@")),
        ),
    ] {
        let bytes = format!("{line}\r\nHost: h\r\n\r\n").into_bytes();
        out.push(Case::must(C, line, bytes, fwd.expect("valid").probe()));
    }
    // Forms a server may refuse or read as the obvious request.
    for (line, targets) in [
        ("GET  /x HTTP/1.1", vec!["/x"]),
        ("GET /x  HTTP/1.1", vec!["/x"]),
        ("GET\t/x HTTP/1.1", vec!["/x"]),
        ("GET /x\tHTTP/1.1", vec!["/x"]),
        ("GET /x#frag HTTP/1.1", vec!["/x", "/x#frag"]),
        ("GET http://h/x HTTP/1.1", vec!["http://h/x", "/x"]),
        ("GET HTTP://H/x HTTP/1.1", vec!["HTTP://H/x", "/x"]),
        ("GET http://h HTTP/1.1", vec!["http://h", "/"]),
        ("OPTIONS * HTTP/1.1", vec!["*"]),
        ("GET /x HTTP/1.2", vec!["/x"]),
    ] {
        let bytes = format!("{line}\r\nHost: h\r\n\r\n").into_bytes();
        let method = line.split([' ', '\t']).next().unwrap();
        out.push(Case::either(
            C,
            line,
            bytes,
            Req::new(method, "/x", b"").targets(&targets).probe(),
        ));
    }
    // The absolute-form's authority wins over Host (RFC 9112 §3.2.2).
    out.push(Case::either(
        C,
        "absolute-form naming another host than Host",
        b"GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n".to_vec(),
        // Which Host the node then sees depends on the form forwarded: not checked.
        Req::new("GET", "/x", b"")
            .targets(&["http://a/x", "/x"])
            .any_host()
            .probe(),
    ));
    for line in [
        &b"GET /x HTTP/1.1 "[..],
        b" GET /x HTTP/1.1",
        b"GET /x HTTP/2.0",
        b"GET /x HTTP/1",
        b"GET /x HTTP/1.",
        b"GET /x http/1.1",
        b"GET /x HTTP/01.1",
        b"GET /x HTTP/1.10",
        b"GET /x HTTP/1.1x",
        b"GET /x",
        b"GET",
        b"GET /x HTTP/1.1\x00",
        b"GET /x\x00 HTTP/1.1",
        b"GET /x\x7f HTTP/1.1",
        b"GET /\x80 HTTP/1.1",
        b"GET /\xc3\xa9 HTTP/1.1",
        b"GET /x y HTTP/1.1",
        b"GET x HTTP/1.1",
        b"GET /x\rHTTP/1.1",
        b"GET \"/x\" HTTP/1.1",
        b"GET /x HTTP/1.1\x0b",
        b"CONNECT h:443 HTTP/1.1",
        b"CONNECT /x HTTP/1.1",
        b"/x HTTP/1.1",
        b"HTTP/1.1",
        b"",
    ] {
        out.push(Case::refuse(
            C,
            strict::escape(line, 40),
            cat(&[line, b"\r\nHost: h\r\n\r\n"]),
        ));
    }
    // HTTP/1.0.
    out.push(Case::must(
        C,
        "HTTP/1.0 GET",
        b"GET /x HTTP/1.0\r\n\r\n".to_vec(),
        get("/x").http10().then(Then::Close),
    ));
    out.push(Case::must(
        C,
        "HTTP/1.0 GET with keep-alive",
        b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        get("/x").http10().probe(),
    ));
    out.push(Case::must(
        C,
        "HTTP/1.0 POST with a length",
        b"POST /x HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        Req::new("POST", "/x", b"hello").http10().then(Then::Close),
    ));
    out.push(Case::refuse(
        C,
        "a leading space before the first header (obs-fold on the request line)",
        b"GET /x HTTP/1.1\r\n Host: h\r\n\r\n".to_vec(),
    ));
    // RFC 9112 §2.2: an empty line before the request-line may be ignored.
    out.push(Case::either(
        C,
        "an empty line before the request line",
        b"\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
        get("/x").probe(),
    ));
    out.push(Case::refuse(
        C,
        "a bare LF before the request line",
        b"\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
    ));
    out.push(Case::refuse(
        C,
        "bare LF line ends",
        b"GET /x HTTP/1.1\nHost: h\n\n".to_vec(),
    ));
    out.push(Case::refuse(
        C,
        "a bare CR in the head",
        b"GET /x HTTP/1.1\rHost: h\r\n\r\n".to_vec(),
    ));
    out.push(Case::either(
        C,
        "a 4 KB target",
        format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(4096)).into_bytes(),
        get(&format!("/{}", "a".repeat(4096))).probe(),
    ));
}

fn methods(out: &mut Vec<Case>) {
    const C: &str = "method";
    for m in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "MKCOL", "PURGE",
        "QUERY",
    ] {
        let (headers, body): (&[u8], &[u8]) = if m == "GET" || m == "HEAD" {
            (b"", b"")
        } else {
            (b"Content-Length: 5\r\n", b"hello")
        };
        out.push(Case::must(
            C,
            m,
            request(m, headers, body),
            Req::new(m, "/c", body).probe(),
        ));
    }
    // Methods are case-sensitive; a token with lower-case letters is refused (as nginx does).
    for m in [
        "get", "Get", "gET", "GeT", "head", "Head", "hEAD", "post", "Post", "pOST", "put", "Put",
        "delete", "Delete", "options", "Options", "patch", "connect", "trace",
    ] {
        out.push(Case::refuse(C, m, request(m, b"", b"")));
    }
    for m in [
        &b"G\x00T"[..],
        b"GET\x7f",
        b"G(T",
        b"GET:",
        b"G\"T",
        b"GE\xc3\x89T",
        b"GET,",
        b"G/T",
    ] {
        out.push(Case::refuse(
            C,
            strict::escape(m, 20),
            cat(&[m, b" /c HTTP/1.1\r\nHost: h\r\n\r\n"]),
        ));
    }
    out.push(
        Case::refuse(
            C,
            "TRACE with a body",
            request("TRACE", b"Content-Length: 5\r\n", b"hello"),
        )
        .or(Req::new("TRACE", "/c", b"hello").probe()),
    );
}

fn header_fields(out: &mut Vec<Case>, rng: &mut Rng) {
    const C: &str = "header-field";
    // Each line goes into a GET and into a POST with a 5-byte body, before or after Host.
    let mut add = |line: &[u8], verdict: Option<bool>, rng: &mut Rng| {
        for post in [false, true] {
            let before = rng.below(2) == 0;
            let (method, framing, body): (&str, &[u8], &[u8]) = if post {
                ("POST", b"Content-Length: 5\r\n", b"hello")
            } else {
                ("GET", b"", b"")
            };
            let head = if before {
                cat(&[
                    method.as_bytes(),
                    b" /c HTTP/1.1\r\n",
                    line,
                    b"\r\nHost: h\r\n",
                    framing,
                    b"\r\n",
                    body,
                ])
            } else {
                cat(&[
                    method.as_bytes(),
                    b" /c HTTP/1.1\r\nHost: h\r\n",
                    line,
                    b"\r\n",
                    framing,
                    b"\r\n",
                    body,
                ])
            };
            let name = format!("{method} + {}", strict::escape(line, 40));
            let want = Req::new(method, "/c", body).probe();
            out.push(match verdict {
                Some(true) => Case::must(C, name, head, want),
                None => Case::either(C, name, head, want),
                Some(false) => Case::refuse(C, name, head),
            });
        }
    };
    for line in [
        &b"X-A: b"[..],
        b"X-A:b",
        b"X-A:   b   ",
        b"X-A: b\tc",
        b"X-A:",
        b"X-A: \t",
        b"!#$%&'*+-.^_`|~0aZ: v",
        b"X-A: a:b:c",
        b"X-A: \"quoted\"",
    ] {
        add(line, Some(true), rng);
    }
    // obs-text in a value is allowed by RFC 9110 but a server may refuse it.
    for line in [&b"X-A: \x80"[..], b"X-A: \xc3\xa9", b"X-A: a\xffb"] {
        add(line, None, rng);
    }
    // obs-fold: refuse, or replace by a space (RFC 9112 §5.2).
    for line in [&b"X-A: b\r\n c"[..], b"X-A: b\r\n\tc", b"X-A:\r\n b"] {
        add(line, None, rng);
    }
    let name_bytes: &[u8] = &[
        b' ', b'\t', 0x00, 0x01, 0x7f, 0x80, 0xff, b'@', b'(', b')', b',', b'/', b';', b'<', b'=',
        b'>', b'?', b'[', b'\\', b']', b'{', b'}', b'"', b'\r',
    ];
    for &b in name_bytes {
        add(&cat(&[b"X", &[b], b"-A: v"]), Some(false), rng);
    }
    let value_bytes: Vec<u8> = (0u8..0x20).filter(|&b| b != b'\t').chain([0x7f]).collect();
    for b in value_bytes {
        add(&cat(&[b"X-A: a", &[b], b"b"]), Some(false), rng);
    }
    for line in [
        &b"X-A : b"[..],
        b"X-A\t: b",
        b": b",
        b":",
        b"X-A",
        b"   ",
        b"\x00",
        b"X-A: b\rc",
        b"X-A\r\n : b",
        b" X-A: b",
    ] {
        add(line, Some(false), rng);
    }
    // A long but acceptable field (below the head limit) and one over any sane limit.
    add(&cat(&[b"X-Long: ", &vec![b'v'; 16_000]]), None, rng);
    add(&cat(&[b"X-Huge: ", &vec![b'v'; 100_000]]), Some(false), rng);
}

fn hosts(out: &mut Vec<Case>) {
    const C: &str = "host";
    let with = |h: &[u8]| cat(&[b"GET /c HTTP/1.1\r\nHost: ", h, b"\r\n\r\n"]);
    for h in [
        &b"h"[..],
        b"h:80",
        b"h.example",
        b"H",
        b"1.2.3.4:8080",
        b"[::1]:80",
        b"[::1]",
        b"xn--bcher-kva.example",
        b"a-b.c_d",
    ] {
        out.push(Case::must(
            C,
            format!("Host: {}", strict::escape(h, 30)),
            with(h),
            Req::new("GET", "/c", b"").host(h).probe(),
        ));
    }
    out.push(Case::must(
        C,
        "Host with spaces around",
        b"GET /c HTTP/1.1\r\nHost:   h   \r\n\r\n".to_vec(),
        Req::new("GET", "/c", b"").host(b"h").probe(),
    ));
    // Valid by RFC 3986 (empty port, sub-delims, pct-encoding) but odd enough to refuse.
    for h in [
        &b"h:"[..],
        b"",
        b"h.",
        b"h:65536",
        b"h:0",
        b"a%20b",
        b"a;b",
        b"a!$&'()*+,;=b",
    ] {
        out.push(Case::either(
            C,
            format!("Host: {}", strict::escape(h, 30)),
            with(h),
            Req::new("GET", "/c", b"").host(h).probe(),
        ));
    }
    for h in [
        &b"a@b"[..],
        b"u:p@h",
        b"a b",
        b"a:80:90",
        b"a\tb",
        b"a/b",
        b"a:bad",
        b"a:80a",
        b"a:-1",
        b"h\xc3\xa9",
        b"\x80",
        b"a?b",
        b"a#b",
        b"[::1",
        b"::1",
        b"a\\b",
        b"a\"b",
        b"a<b",
        b"a\x00b",
        b"a\x7fb",
        b"[::1]x",
    ] {
        out.push(Case::refuse(
            C,
            format!("Host: {}", strict::escape(h, 30)),
            with(h),
        ));
    }
    out.push(Case::refuse(
        C,
        "HTTP/1.1 without Host",
        b"GET /c HTTP/1.1\r\n\r\n".to_vec(),
    ));
    out.push(Case::refuse(
        C,
        "HTTP/1.1 POST without Host",
        b"POST /c HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
    ));
    out.push(Case::refuse(
        C,
        "two Host headers",
        b"GET /c HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n".to_vec(),
    ));
    out.push(Case::refuse(
        C,
        "two different Host headers",
        b"GET /c HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
    ));
    out.push(Case::refuse(
        C,
        "Host as a list",
        b"GET /c HTTP/1.1\r\nHost: a, b\r\n\r\n".to_vec(),
    ));
    out.push(Case::must(
        C,
        "HTTP/1.0 without Host",
        b"GET /c HTTP/1.0\r\n\r\n".to_vec(),
        Req::new("GET", "/c", b"").http10().then(Then::Close),
    ));
    out.push(Case::refuse(
        C,
        "HTTP/1.0 with a bad Host",
        b"GET /c HTTP/1.0\r\nHost: a b\r\n\r\n".to_vec(),
    ));
}

fn expect(out: &mut Vec<Case>) {
    const C: &str = "expect";
    for (v, known) in [
        ("100-continue", true),
        ("100-Continue", true),
        ("100-CONTINUE", true),
        ("  100-continue  ", true),
        ("100-continue, foo", false),
        ("foo", false),
        ("", false),
        ("100-continue\x0b", false),
    ] {
        let cl = request(
            "POST",
            format!("Expect: {v}\r\nContent-Length: 5\r\n").as_bytes(),
            b"hello",
        );
        let te = request(
            "POST",
            format!("Expect: {v}\r\nTransfer-Encoding: chunked\r\n").as_bytes(),
            HELLO_CHUNKED,
        );
        for (framing, bytes) in [("length", cl), ("chunked", te)] {
            let name = format!("Expect: {} ({framing})", strict::escape(v.as_bytes(), 30));
            let want = Req::new("POST", "/c", b"hello").interim().probe();
            out.push(if v.contains('\x0b') {
                Case::refuse(C, name, bytes)
            } else if known {
                Case::must(C, name, bytes, want)
            } else {
                // An unknown expectation may be answered 417.
                Case::either(C, name, bytes, want)
            });
        }
    }
    // HTTP/1.0 clients never get a 100 (RFC 9110 §15.2): the Req is not `interim`.
    for v in ["100-continue", "100-Continue"] {
        out.push(Case::must(
            C,
            format!("HTTP/1.0 with Expect: {v}"),
            format!("POST /c HTTP/1.0\r\nExpect: {v}\r\nContent-Length: 5\r\n\r\nhello")
                .into_bytes(),
            Req::new("POST", "/c", b"hello").http10().then(Then::Close),
        ));
        out.push(Case::must(
            C,
            format!("HTTP/1.0 keep-alive with Expect: {v}"),
            format!("POST /c HTTP/1.0\r\nConnection: keep-alive\r\nExpect: {v}\r\nContent-Length: 5\r\n\r\nhello")
                .into_bytes(),
            Req::new("POST", "/c", b"hello").http10().probe(),
        ));
    }
    out.push(Case::must(
        C,
        "Expect on a GET without a body",
        request("GET", b"Expect: 100-continue\r\n", b""),
        Req::new("GET", "/c", b"").interim().probe(),
    ));
    out.push(Case::must(
        C,
        "Expect with Content-Length: 0",
        request(
            "POST",
            b"Expect: 100-continue\r\nContent-Length: 0\r\n",
            b"",
        ),
        Req::new("POST", "/c", b"").interim().probe(),
    ));
}

const WS_HEADERS: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn upgrade(out: &mut Vec<Case>) {
    const C: &str = "upgrade";
    let smuggled: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let frames: &[u8] = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    // A WebSocket handshake with early frames behind it: tunnelled, frames first.
    out.push(Case::must(
        C,
        "WebSocket upgrade with early frames",
        cat(&[
            b"GET /ws HTTP/1.1\r\nHost: h\r\n",
            WS_HEADERS.as_bytes(),
            b"\r\n",
            frames,
        ]),
        Fwd {
            reqs: vec![Req::new("GET", "/ws", b"")],
            then: Then::Probe,
            tunnel: Some(frames.to_vec()),
            frames: true,
        },
    ));
    // A WebSocket handshake with an HTTP request behind it: never parsed as a request; not a
    // frame either, so the node gets tether's Close 1002 and nothing of it.
    out.push(Case::must(
        C,
        "WebSocket upgrade with a request behind it",
        cat(&[
            b"GET /ws HTTP/1.1\r\nHost: h\r\n",
            WS_HEADERS.as_bytes(),
            b"\r\n",
            smuggled,
        ]),
        Fwd {
            reqs: vec![Req::new("GET", "/ws", b"")],
            then: Then::Probe,
            tunnel: Some(Vec::new()),
            frames: true,
        },
    ));
    // Upgrade without `Connection: upgrade` is no upgrade: two plain requests.
    out.push(Case::must(
        C,
        "Upgrade header without Connection: upgrade",
        cat(&[
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
            smuggled,
        ]),
        fwd(
            vec![
                Req::new("GET", "/ws", b""),
                Req::new("GET", "/smuggled", b""),
            ],
            Then::Probe,
        ),
    ));
    // Not a WebSocket: tunnelled, refused, or forwarded as a plain request (the upgrade declined).
    for proto in ["h2c", "foo/1", "websocketx"] {
        let bytes = cat(&[
            format!(
                "GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\n\r\n"
            )
            .as_bytes(),
            smuggled,
        ]);
        out.push(
            Case::either(
                C,
                format!("Upgrade: {proto} with a request behind it"),
                bytes,
                Fwd {
                    reqs: vec![Req::new("GET", "/up", b"")],
                    then: Then::Probe,
                    tunnel: Some(smuggled.to_vec()),
                    frames: false,
                },
            )
            .or(fwd(
                vec![
                    Req::new("GET", "/up", b""),
                    Req::new("GET", "/smuggled", b""),
                ],
                Then::Probe,
            )),
        );
    }
    // HTTP/1.0 upgrades are ignored (RFC 9110 §7.8): a plain request, never a tunnel.
    out.push(Case::either(
        C,
        "HTTP/1.0 WebSocket upgrade",
        cat(&[
            b"GET /ws HTTP/1.0\r\nHost: h\r\n",
            WS_HEADERS.as_bytes(),
            b"\r\n",
        ]),
        Req::new("GET", "/ws", b"").http10().then(Then::Close),
    ));
    // WebSocket handshakes a proxy may refuse (bad key, version, method) or pass on.
    for (name, headers) in [
        ("no key", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"),
        ("version 8", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
        ("short key", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n"),
    ] {
        out.push(Case::either(
            C,
            format!("WebSocket upgrade with {name}, a request behind it"),
            cat(&[format!("GET /ws HTTP/1.1\r\nHost: h\r\n{headers}\r\n").as_bytes(), smuggled]),
            Fwd {
                reqs: vec![Req::new("GET", "/ws", b"")],
                then: Then::Probe,
                tunnel: Some(smuggled.to_vec()),
                frames: false,
            },
        ));
    }
    out.push(Case::refuse(
        C,
        "WebSocket upgrade on a POST with a body",
        cat(&[
            b"POST /ws HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n",
            WS_HEADERS.as_bytes(),
            b"\r\nhello",
            smuggled,
        ]),
    ));
}

fn connection(out: &mut Vec<Case>) {
    const C: &str = "connection";
    // A header nominated by Connection must not be dropped while it still frames the body (or
    // names the host): refuse, or forward it with the framing intact.
    for nominated in [
        "Content-Length",
        "content-length",
        "close, Content-Length",
        "Content-Length, keep-alive",
        "Transfer-Encoding",
        "Host",
        "host, x-a",
    ] {
        let cl = request(
            "POST",
            format!("Connection: {nominated}\r\nContent-Length: 5\r\n").as_bytes(),
            b"hello",
        );
        let te = request(
            "POST",
            format!("Connection: {nominated}\r\nTransfer-Encoding: chunked\r\n").as_bytes(),
            HELLO_CHUNKED,
        );
        let then = if nominated.contains("close") {
            Then::Close
        } else {
            Then::Probe
        };
        for (framing, bytes) in [("length", cl), ("chunked", te)] {
            out.push(Case::either(
                C,
                format!("Connection: {nominated} ({framing})"),
                bytes,
                Req::new("POST", "/c", b"hello").then(then),
            ));
        }
    }
    // The nominating header after the framing one.
    out.push(Case::either(
        C,
        "Content-Length, then Connection: Content-Length",
        request(
            "POST",
            b"Content-Length: 5\r\nConnection: Content-Length\r\n",
            b"hello",
        ),
        Req::new("POST", "/c", b"hello").probe(),
    ));
    out.push(Case::either(
        C,
        "Connection: Host on a GET",
        request("GET", b"Connection: Host\r\n", b""),
        Req::new("GET", "/c", b"").probe(),
    ));
    for (v, then) in [
        ("keep-alive", Then::Probe),
        ("close", Then::Close),
        ("Close", Then::Close),
        ("x-a", Then::Probe),
        ("keep-alive, x-a", Then::Probe),
        ("upgrade", Then::Probe),
        ("TE", Then::Probe),
        ("", Then::Probe),
    ] {
        out.push(Case::must(
            C,
            format!("Connection: {v}"),
            request(
                "POST",
                format!("Connection: {v}\r\nX-A: 1\r\nTE: trailers\r\nContent-Length: 5\r\n")
                    .as_bytes(),
                b"hello",
            ),
            Req::new("POST", "/c", b"hello").then(then),
        ));
    }
    out.push(Case::must(
        C,
        "HTTP/1.0 Connection: close",
        b"GET /c HTTP/1.0\r\nConnection: close\r\n\r\n".to_vec(),
        Req::new("GET", "/c", b"").http10().then(Then::Close),
    ));
    out.push(Case::must(
        C,
        "Keep-Alive header on HTTP/1.1",
        request(
            "GET",
            b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n",
            b"",
        ),
        Req::new("GET", "/c", b"").probe(),
    ));
}

fn pipelining(out: &mut Vec<Case>) {
    const C: &str = "pipelining";
    out.push(Case::must(
        C,
        "two requests at once",
        cat(&[
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        ]),
        fwd(
            vec![Req::new("GET", "/a", b""), Req::new("POST", "/b", b"hello")],
            Then::Probe,
        ),
    ));
    out.push(Case::must(
        C,
        "chunked then length then chunked",
        cat(&[
            b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
        ]),
        fwd(
            vec![
                Req::new("POST", "/a", b"hello"),
                Req::new("POST", "/b", b"abc"),
                Req::new("POST", "/c", b"z"),
            ],
            Then::Probe,
        ),
    ));
    out.push(
        Case::either(
            C,
            "a CRLF after a body (ignored before the next request, or refused)",
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\r\n".to_vec(),
            Req::new("POST", "/a", b"hello").probe(),
        )
        .or(Req::new("POST", "/a", b"hello").then(Then::Refused)),
    );
    out.push(Case::must(
        C,
        "a bad request after a good one",
        cat(&[
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /b HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
        ]),
        Req::new("GET", "/a", b"").then(Then::Refused),
    ));
    out.push(Case::must(
        C,
        "a request after Connection: close is never read",
        cat(&[
            b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        ]),
        Req::new("GET", "/a", b"").then(Then::Close),
    ));
    out.push(Case::must(
        C,
        "a HEAD then a GET",
        cat(&[
            b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        ]),
        fwd(
            vec![Req::new("HEAD", "/a", b""), Req::new("GET", "/b", b"")],
            Then::Probe,
        ),
    ));
    // A body that looks like a request is only a body.
    out.push(Case::must(
        C,
        "a body holding a request",
        request(
            "POST",
            format!("Content-Length: {}\r\n", SMUGGLED.len()).as_bytes(),
            SMUGGLED,
        ),
        Req::new("POST", "/c", b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n").probe(),
    ));
    out.push(Case::must(
        C,
        "a chunked body holding a request",
        request(
            "POST",
            b"Transfer-Encoding: chunked\r\n",
            &cat(&[
                format!("{:x}\r\n", SMUGGLED.len()).as_bytes(),
                SMUGGLED,
                b"\r\n0\r\n\r\n",
            ]),
        ),
        Req::new("POST", "/c", b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n").probe(),
    ));
}

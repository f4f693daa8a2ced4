//! Differential HTTP/1.1 framing: over a thousand generated requests (see `cases`) go through
//! tether to a node that parses with a strict reference (Node.js's llhttp, `recorder.js`), each
//! followed on the same client connection by a probe request.
//!
//! A case passes when either
//! - tether refused it: one 4xx/5xx answer, the connection closed, and the node saw nothing of
//!   it (no request, no parse error, no probe); or
//! - the node parsed exactly the request(s) the case means (method, target, Host, decoded body)
//!   followed by the probe, with no parse error, and the client got every answer, strictly
//!   valid (`support::strict`).
//!
//! After every case a fresh client connection sends one more request, which must arrive intact
//! (on the pooled node connection the case used, when tether kept it). tether runs with one
//! worker thread so node connections are pooled predictably. A subset is also sent split in two
//! writes at every byte boundary and must end the same way.

mod cases;

use crate::support::recorder::{Event, Recorder};
use crate::support::strict::{escape, ReadError, Reader, Response};
use crate::support::Proxy;
use cases::{Case, Fwd, Req, Then};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How the case ended, for the summary and for comparing split deliveries with the whole one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Refused,
    /// Forwarded as the case's n-th acceptable forwarding.
    Forwarded(usize),
    Pending,
}

/// How the client connection stood when we stopped reading.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// Closed by tether.
    Closed,
    /// Open, after the probe's answer or a 101.
    Open,
    /// Nothing more within the case's time; the pending bytes.
    Stalled(Vec<u8>),
    /// The client got bytes that are not valid HTTP/1.1.
    Invalid(String),
}

/// Everything observed for one delivery of a case.
struct Seen {
    responses: Vec<Response>,
    end: End,
    /// The node's parse events for the case (open/close left out).
    events: Vec<Event>,
    /// What went wrong with the next request on a fresh connection, if anything.
    next: Result<(), String>,
}

impl Seen {
    fn client(&self) -> String {
        let mut parts: Vec<String> = self.responses.iter().map(Response::summary).collect();
        parts.push(match &self.end {
            End::Closed => "closed".into(),
            End::Open => "open".into(),
            End::Stalled(b) if b.is_empty() => "no answer (stalled)".into(),
            End::Stalled(b) => format!("stalled after {}", escape(b, 80)),
            End::Invalid(e) => format!("INVALID BYTES: {e}"),
        });
        parts.join(" | ")
    }

    fn node(&self) -> String {
        if self.events.is_empty() {
            return "nothing".into();
        }
        self.events
            .iter()
            .map(Event::describe)
            .collect::<Vec<_>>()
            .join("\n            ")
    }
}

fn yaml(node: SocketAddr) -> String {
    format!(
        "listen:\n  - address: \"{{listen}}\"\nupstreams:\n  realtime:\n    nodes:\n      - {{ id: recorder, address: \"{node}\" }}\n    affinity: {{ mode: none }}\n    timeouts: {{ connect: 1s, read: 3s, send: 3s }}\n    passive: {{ max_fails: 0 }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_frames_requests_like_a_strict_reference_parser() {
    let started = std::time::Instant::now();
    let mut rec = Recorder::start().await;
    let proxy = Proxy::start_with_args(&yaml(rec.addr), &["--threads", "1"]);
    rec.take().await; // the readiness probe
    let cases = cases::all();
    assert!(cases.len() >= 1000, "only {} cases", cases.len());

    let mut failures: Vec<(usize, String)> = Vec::new();
    let mut outcomes: Vec<Option<Outcome>> = Vec::new();
    for case in &cases {
        let seen = deliver(proxy.addr, &mut rec, case, None).await;
        match judge(case, &seen, false) {
            Ok(o) => outcomes.push(Some(o)),
            Err(why) => {
                outcomes.push(None);
                failures.push((case.id, report(case, &seen, &why, None)));
            }
        }
    }
    let whole_done = started.elapsed();

    // Split delivery: the same outcome whatever the segment boundary.
    let mut split_runs = 0;
    let mut split_failed: BTreeMap<&str, usize> = BTreeMap::new();
    for case in cases.iter().filter(|c| c.split) {
        let Some(whole) = outcomes[case.id] else {
            continue; // already reported
        };
        for at in 1..case.bytes.len() {
            split_runs += 1;
            let seen = deliver(proxy.addr, &mut rec, case, Some(at)).await;
            let problem = match judge(case, &seen, true) {
                Ok(o) if o == whole => None,
                Ok(o) => Some(format!("split delivery ended as {o:?}, whole as {whole:?}")),
                Err(why) => Some(why),
            };
            if let Some(why) = problem {
                *split_failed.entry(case.category).or_default() += 1;
                failures.push((case.id, report(case, &seen, &why, Some(at))));
                break;
            }
        }
    }

    // The summary, by category.
    let mut table: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    for (case, outcome) in cases.iter().zip(&outcomes) {
        let row = table.entry(case.category).or_default();
        row[0] += 1;
        match outcome {
            Some(Outcome::Refused) => row[1] += 1,
            Some(Outcome::Forwarded(_)) => row[2] += 1,
            Some(Outcome::Pending) => row[3] += 1,
            None => row[4] += 1,
        }
    }
    let mut summary = format!(
        "\ndifferential: {} cases ({} split deliveries of {} cases), whole run {:.1?}, total {:.1?}\n{:<18} {:>6} {:>8} {:>9} {:>8} {:>7} {:>12}\n",
        cases.len(),
        split_runs,
        cases.iter().filter(|c| c.split).count(),
        whole_done,
        started.elapsed(),
        "category",
        "cases",
        "refused",
        "forwarded",
        "pending",
        "FAILED",
        "split FAILED"
    );
    let mut totals = [0usize; 5];
    for (cat, row) in &table {
        summary.push_str(&format!(
            "{cat:<18} {:>6} {:>8} {:>9} {:>8} {:>7} {:>12}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            split_failed.get(cat).copied().unwrap_or(0)
        ));
        for (t, r) in totals.iter_mut().zip(row) {
            *t += r;
        }
    }
    summary.push_str(&format!(
        "{:<18} {:>6} {:>8} {:>9} {:>8} {:>7} {:>12}\n",
        "all",
        totals[0],
        totals[1],
        totals[2],
        totals[3],
        totals[4],
        split_failed.values().sum::<usize>()
    ));
    if !failures.is_empty() {
        let mut by_cat: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for (id, text) in &failures {
            by_cat.entry(cases[*id].category).or_default().push(text);
        }
        for (cat, texts) in by_cat {
            eprintln!("\n==== {cat}: {} failing ====", texts.len());
            for t in texts {
                eprintln!("{t}");
            }
        }
    }
    eprintln!("{summary}");
    assert!(
        failures.is_empty(),
        "{} failures (whole and split deliveries), listed above by category",
        failures.len()
    );
}

/// One failure, readable: the case, what the client got, what the node parsed, why it fails.
fn report(case: &Case, seen: &Seen, why: &str, split: Option<usize>) -> String {
    format!(
        "[{}] {}{}\n    sent:   {}\n    client: {}\n    node:   {}\n    why:    {}",
        case.id,
        case.name,
        split
            .map(|at| format!(" (split at byte {at})"))
            .unwrap_or_default(),
        escape(&case.bytes, 300),
        seen.client(),
        seen.node(),
        why
    )
}

fn probe_url(case: &Case) -> String {
    format!("/probe-{}", case.id)
}

/// Send the case (whole, or in two writes split at `split`) and its probe, read what comes back,
/// then send the next request on a fresh connection, and collect what the node parsed.
async fn deliver(addr: SocketAddr, rec: &mut Recorder, case: &Case, split: Option<usize>) -> Seen {
    let probe = format!("GET {} HTTP/1.1\r\nHost: p\r\n\r\n", probe_url(case));
    let s = TcpStream::connect(addr).await.expect("connect to tether");
    s.set_nodelay(true).unwrap();
    let (mut r, mut w) = s.into_split();
    // Written from a task while we read: a refusal may come (and the connection close) before
    // all of a large case is written.
    let bytes = case.bytes.clone();
    let writer = tokio::spawn(async move {
        let mut tail = match split {
            Some(at) => {
                if w.write_all(&bytes[..at]).await.is_err() {
                    return w;
                }
                // This pause only shapes TCP segments (two writes, two segments, with
                // TCP_NODELAY); nothing waits on it for correctness.
                tokio::time::sleep(Duration::from_millis(2)).await;
                bytes[at..].to_vec()
            }
            None => bytes,
        };
        tail.extend_from_slice(probe.as_bytes());
        let _ = w.write_all(&tail).await;
        w
    });

    let limit = if case.pending_ok {
        Duration::from_millis(400)
    } else {
        Duration::from_millis(2000)
    };
    let deadline = Instant::now() + limit;
    let mut reader = Reader::default();
    let mut responses: Vec<Response> = Vec::new();
    let probe_path = probe_url(case);
    let end = loop {
        let head = case.head_first() && !responses.iter().any(|r| r.status >= 200);
        match reader.next(&mut r, head, deadline).await {
            Ok(resp) => {
                let last_final = resp.status >= 200;
                let is_probe = url_of(&resp) == probe_path;
                let switching = resp.status == 101;
                let closes = resp.closes() && last_final;
                responses.push(resp);
                if is_probe || switching {
                    break End::Open;
                }
                if closes {
                    break match reader.expect_eof(&mut r, deadline).await {
                        Ok(()) => End::Closed,
                        Err(e) => End::Invalid(format!("after Connection: close, {e}")),
                    };
                }
            }
            Err(ReadError::Eof) => break End::Closed,
            Err(ReadError::Timeout(b)) => break End::Stalled(b),
            Err(e) => break End::Invalid(e.to_string()),
        }
    };
    // A tunnel: wait for the early bytes and the probe to come through it.
    let mut events = Vec::new();
    if let Some(Fwd {
        tunnel: Some(t), ..
    }) = case.forward.first()
    {
        if end == End::Open && responses.last().is_some_and(|r| r.status == 101) {
            let want = t.len() + probe_path.len();
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                events.extend(rec.take().await);
                let got: usize = events
                    .iter()
                    .map(|e| match e {
                        Event::Tunnel { data, .. } => data.len(),
                        _ => 0,
                    })
                    .sum();
                if got >= want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let next_path = format!("/next-{}", case.id);
    let next = next_request(addr, &next_path).await;
    events.extend(rec.take().await);
    // Leave the case's connection; a pending exchange ends now, and what that does at the node
    // is not this case's business any more: drain it before the next case.
    drop(r);
    if let Ok(w) = writer.await {
        drop(w);
    }
    if case.pending_ok || matches!(end, End::Stalled(_)) {
        tokio::time::sleep(Duration::from_millis(60)).await;
        rec.take().await;
    }
    // Split the next request's events off the case's.
    let events: Vec<Event> = events.into_iter().filter(Event::is_parse).collect();
    let at = events
        .iter()
        .position(|e| matches!(e, Event::Request { url, .. } if *url == next_path));
    let (case_events, next) = match at {
        None => (events, next.and(Err("the node never got it".to_string()))),
        Some(i) => {
            let conn = events[i].conn();
            let mut case_events = Vec::new();
            let mut after = Vec::new();
            for (j, e) in events.into_iter().enumerate() {
                if j == i {
                    if let Event::Request {
                        complete: false, ..
                    } = &e
                    {
                        after.push(e.describe());
                    }
                } else if j > i && e.conn() == conn {
                    after.push(e.describe());
                } else {
                    case_events.push(e);
                }
            }
            let next = if after.is_empty() {
                next
            } else {
                next.and(Err(format!("the node then saw {}", after.join("; "))))
            };
            (case_events, next)
        }
    };
    Seen {
        responses,
        end,
        events: case_events,
        next,
    }
}

/// One request on a fresh client connection: it must be answered by the node, intact.
async fn next_request(addr: SocketAddr, path: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: p\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(2);
    match Reader::default().next(&mut s, false, deadline).await {
        Ok(r) if r.status == 200 && url_of(&r) == path => Ok(()),
        Ok(r) => Err(format!("answered {} for {}", r.summary(), url_of(&r))),
        Err(e) => Err(e.to_string()),
    }
}

/// The URL the recorder says it answered (`x-url`, percent-encoded by it).
fn url_of(r: &Response) -> String {
    let v = r.header_str("x-url");
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            if let Ok(n) = u8::from_str_radix(&v[i + 1..(i + 3).min(v.len())], 16) {
                out.push(n);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A final answer (a `101` ends the exchange too).
fn is_final(r: &Response) -> bool {
    r.status >= 200 || r.status == 101
}

/// A response that came from the node (the recorder marks its answers).
fn from_node(r: &Response) -> bool {
    r.header("x-rec").is_some()
}

/// Did the case end in a way its description allows? `tolerate_cut`: a refusal may follow a
/// head already forwarded (split or streamed delivery), so the node may have seen an unfinished
/// request cut by the close.
fn judge(case: &Case, seen: &Seen, tolerate_cut: bool) -> Result<Outcome, String> {
    seen.next
        .as_ref()
        .map_err(|e| format!("the next request on a fresh connection failed: {e}"))?;
    if let End::Invalid(e) = &seen.end {
        return Err(format!("the client got invalid HTTP: {e}"));
    }
    let finals: Vec<&Response> = seen.responses.iter().filter(|r| is_final(r)).collect();
    let refused = finals.len() == 1
        && finals[0].status >= 400
        && !from_node(finals[0])
        && seen.end == End::Closed;
    if refused {
        let cut_only = seen.events.iter().all(|e| match e {
            Event::Request { complete, .. } => !complete,
            Event::ClientError { code, .. } => code == "HPE_INVALID_EOF_STATE",
            _ => false,
        });
        let nothing = seen.events.is_empty() || ((tolerate_cut || case.streamed) && cut_only);
        if !nothing {
            return Err("refused, but the node had parsed part of it (it must see nothing)".into());
        }
        return if case.refuse_ok {
            Ok(Outcome::Refused)
        } else {
            Err(format!(
                "a valid request was refused with {}",
                finals[0].status
            ))
        };
    }
    if seen.responses.is_empty() && matches!(seen.end, End::Stalled(_)) && case.pending_ok {
        let quiet = seen.events.iter().all(|e| {
            matches!(
                e,
                Event::Request {
                    complete: false,
                    ..
                }
            )
        });
        if quiet {
            return Ok(Outcome::Pending);
        }
    }
    let mut why = Vec::new();
    for (i, f) in case.forward.iter().enumerate() {
        match matches_forward(f, seen, case) {
            Ok(()) => return Ok(Outcome::Forwarded(i)),
            Err(e) => why.push(e),
        }
    }
    if case.forward.is_empty() {
        return Err(
            if seen
                .events
                .iter()
                .any(|e| matches!(e, Event::ClientError { .. }))
            {
                "must be refused; it reached the node, which could not parse it".into()
            } else if seen.events.is_empty() {
                "must be refused with 4xx and a close".into()
            } else {
                "must be refused; it was forwarded".into()
            },
        );
    }
    Err(why.join(" / or: "))
}

fn req_matches(req: &Req, e: &Event) -> Result<(), String> {
    let (method, url, version, headers, body, complete) = match e {
        Event::Request {
            method,
            url,
            version,
            headers,
            body,
            complete,
            ..
        } => (method, url, version.as_str(), headers, body, *complete),
        other => {
            return Err(format!(
                "expected {} {}, node saw {}",
                req.method,
                req.targets[0],
                other.describe()
            ))
        }
    };
    if *method != req.method || !req.targets.contains(url) {
        return Err(format!(
            "expected {} {}, node saw {method} {url}",
            req.method,
            req.targets.join(" or ")
        ));
    }
    if !complete {
        return Err(format!("{method} {url} never ended at the node"));
    }
    let want_version = if req.minor == 0 { "1.0" } else { "1.1" };
    if version != want_version {
        return Err(format!("{method} {url} reached the node as HTTP/{version}"));
    }
    if *body != req.body {
        return Err(format!(
            "{method} {url}: body {} at the node, {} meant",
            escape(body, 60),
            escape(&req.body, 60)
        ));
    }
    if let Some(h) = &req.host {
        let hosts: Vec<&Vec<u8>> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v)
            .collect();
        // Host names are case-insensitive (RFC 3986 §3.2.2): `HTTP://H/` is for host `h`.
        if hosts.len() != 1 || !hosts[0].trim_ascii().eq_ignore_ascii_case(h.trim_ascii()) {
            return Err(format!(
                "{method} {url}: Host at the node {:?}, {} meant",
                hosts.iter().map(|v| escape(v, 30)).collect::<Vec<_>>(),
                escape(h, 30)
            ));
        }
    }
    Ok(())
}

fn matches_forward(f: &Fwd, seen: &Seen, case: &Case) -> Result<(), String> {
    let probe = probe_url(case);
    let mut events = seen.events.iter();
    if let Some(e) = seen
        .events
        .iter()
        .find(|e| matches!(e, Event::ClientError { .. }))
    {
        return Err(format!(
            "the node could not parse what it got: {}",
            e.describe()
        ));
    }
    let finals: Vec<&Response> = seen.responses.iter().filter(|r| is_final(r)).collect();
    let interims = seen.responses.len() - finals.len();
    if interims > 0 && f.reqs.iter().any(|r| r.minor == 0) {
        return Err("a 1xx went to an HTTP/1.0 client".into());
    }
    if interims > 0 && !f.reqs.iter().any(|r| r.interim_ok) && f.tunnel.is_none() {
        return Err(format!("{interims} unexpected 1xx answers"));
    }
    if let Some(t) = &f.tunnel {
        let first = events.next().ok_or("the node saw nothing")?;
        let Event::Upgrade { method, url, .. } = first else {
            return Err(format!(
                "expected an upgrade, node saw {}",
                first.describe()
            ));
        };
        if *method != f.reqs[0].method || !f.reqs[0].targets.contains(url) {
            return Err(format!("upgrade {method} {url} at the node"));
        }
        let data: Vec<u8> = events
            .map(|e| match e {
                Event::Tunnel { data, .. } => Ok(data.clone()),
                other => Err(other.describe()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("after the upgrade the node saw {e}"))?
            .concat();
        if f.frames {
            // The frames, then tether's masked Close 1002 (any mask), and nothing after it.
            let close = data
                .strip_prefix(t.as_slice())
                .filter(|c| c.len() >= 8 && c[0] == 0x88 && c[1] & 0x80 != 0)
                .ok_or_else(|| {
                    format!(
                        "tunnel carried {}, frames then a Close meant",
                        escape(&data, 80)
                    )
                })?;
            let len = usize::from(close[1] & 0x7f);
            let key = &close[2..6];
            let payload: Vec<u8> = close[6..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            if close.len() != 6 + len || payload.get(..2) != Some(&[0x03, 0xea][..]) {
                return Err(format!(
                    "after the frames: {}, a Close 1002 meant",
                    escape(close, 80)
                ));
            }
            if finals.first().is_none_or(|r| r.status != 101) {
                return Err("the client got no 101".into());
            }
            return Ok(());
        }
        let want = [
            t.as_slice(),
            format!("GET {probe} HTTP/1.1\r\nHost: p\r\n\r\n").as_bytes(),
        ]
        .concat();
        if data != want {
            return Err(format!(
                "tunnel carried {}, {} meant",
                escape(&data, 80),
                escape(&want, 80)
            ));
        }
        if finals.first().is_none_or(|r| r.status != 101) {
            return Err("the client got no 101".into());
        }
        return Ok(());
    }
    for req in &f.reqs {
        let e = events
            .next()
            .ok_or_else(|| format!("the node never got {} {}", req.method, req.targets[0]))?;
        req_matches(req, e)?;
    }
    if f.then == Then::Probe {
        match events.next() {
            Some(Event::Request {
                url,
                complete: true,
                ..
            }) if *url == probe => {}
            Some(other) => {
                return Err(format!(
                    "instead of the probe the node saw {}",
                    other.describe()
                ))
            }
            None => return Err("the probe never reached the node".into()),
        }
    }
    if let Some(extra) = events.next() {
        return Err(format!("the node also saw {}", extra.describe()));
    }
    let answered = f.reqs.len() + usize::from(f.then == Then::Probe);
    let from_node_count = finals
        .iter()
        .take_while(|r| from_node(r) && r.status == 200)
        .count();
    if from_node_count < answered {
        return Err(format!(
            "the client got {} of {answered} answers from the node",
            from_node_count
        ));
    }
    let rest = &finals[answered..];
    match f.then {
        Then::Probe if rest.is_empty() && seen.end == End::Open => Ok(()),
        Then::Close if rest.is_empty() && seen.end == End::Closed => Ok(()),
        Then::Refused if rest.len() == 1 && rest[0].status >= 400 && seen.end == End::Closed => {
            Ok(())
        }
        then => Err(format!(
            "expected {then:?} after the answers; client: {}",
            seen.client()
        )),
    }
}

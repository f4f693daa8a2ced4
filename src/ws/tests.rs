use super::*;

const CLIENT: Rules = Rules {
    from_client: true,
    rsv: 0,
};
const NODE: Rules = Rules {
    from_client: false,
    rsv: 0,
};

/// A frame as a client (masked) or node writes it.
fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | op];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65_536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// What a tracker makes of `stream` fed in pieces of at most `piece` bytes (a piece that ends
/// inside a header or control frame is kept and fed again with the next one, as the tunnel
/// does): data headers, control opcodes, and payload bytes passed.
fn walk(
    stream: &[u8],
    piece: usize,
    rules: Rules,
) -> Result<(Vec<Header>, Vec<u8>, u64), Violation> {
    let mut t = Tracker::default();
    let (mut headers, mut controls, mut payload) = (Vec::new(), Vec::new(), 0u64);
    let mut held: Vec<u8> = Vec::new();
    let mut at = 0;
    while at < stream.len() || !held.is_empty() {
        let end = (at + piece).min(stream.len());
        let mut buf = std::mem::take(&mut held);
        buf.extend_from_slice(&stream[at..end]);
        at = end;
        let mut i = 0;
        while i < buf.len() {
            match t.next(&buf[i..], rules)? {
                Event::Data { n, header } => {
                    match header {
                        Some(h) => headers.push(h),
                        None => payload += n as u64,
                    }
                    i += n;
                }
                Event::Control(c) => {
                    controls.push(c.opcode);
                    i += c.len;
                }
                Event::NeedMore => {
                    held = buf[i..].to_vec();
                    break;
                }
            }
        }
        if at == stream.len() && !held.is_empty() {
            // Nothing more will come: a torn frame at the end of a stream.
            break;
        }
    }
    Ok((headers, controls, payload))
}

#[test]
fn frames_of_every_length_class_are_followed_whole_and_split_at_every_byte() {
    let key = Some([1, 2, 3, 4]);
    for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
        let payload = vec![0x5a; len];
        let mut stream = frame(true, opcode::BINARY, &payload, key);
        stream.extend(frame(true, opcode::PING, b"p", key));
        stream.extend(frame(true, opcode::TEXT, b"next", key));
        let whole = walk(&stream, stream.len(), CLIENT).unwrap();
        assert_eq!(whole.0.len(), 2, "len {len}");
        assert_eq!(whole.0[0].len, len as u64);
        assert_eq!(whole.1, [opcode::PING]);
        assert_eq!(whole.2, len as u64 + 4);
        // Split at every byte of the headers (and through small payloads).
        let split_upto = 32.min(stream.len());
        for piece in 1..split_upto {
            assert_eq!(
                walk(&stream, piece, CLIENT).unwrap(),
                whole,
                "len {len}, pieces of {piece}"
            );
        }
    }
}

#[test]
fn fragmented_messages_may_carry_control_frames_between_their_frames() {
    let key = Some([9, 8, 7, 6]);
    let mut s = frame(false, opcode::TEXT, b"he", key);
    s.extend(frame(true, opcode::PING, b"", key));
    s.extend(frame(false, opcode::CONTINUATION, b"ll", key));
    s.extend(frame(true, opcode::CONTINUATION, b"o", key));
    s.extend(frame(true, opcode::BINARY, b"x", key));
    let (headers, controls, payload) = walk(&s, 3, CLIENT).unwrap();
    assert_eq!(headers.len(), 4);
    assert_eq!(controls, [opcode::PING]);
    assert_eq!(payload, 6);
}

#[test]
fn every_rule_of_section_5_is_a_violation() {
    let key = Some([1, 1, 1, 1]);
    let cases: Vec<(Vec<u8>, Rules, Violation)> = vec![
        (
            frame(true, opcode::TEXT, b"a", None),
            CLIENT,
            Violation::Unmasked,
        ),
        (
            frame(true, opcode::TEXT, b"a", key),
            NODE,
            Violation::Masked,
        ),
        (
            frame(true, 0x3, b"", key),
            CLIENT,
            Violation::ReservedOpcode,
        ),
        (
            frame(true, 0xB, b"", key),
            CLIENT,
            Violation::ReservedOpcode,
        ),
        (
            frame(true, opcode::PING, &[0; 126], key),
            CLIENT,
            Violation::ControlTooLong,
        ),
        (
            frame(false, opcode::PING, b"", key),
            CLIENT,
            Violation::ControlFragmented,
        ),
        (
            frame(true, opcode::CONTINUATION, b"x", key),
            CLIENT,
            Violation::UnexpectedContinuation,
        ),
        (
            [
                frame(false, opcode::TEXT, b"a", key),
                frame(true, opcode::TEXT, b"b", key),
            ]
            .concat(),
            CLIENT,
            Violation::ExpectedContinuation,
        ),
        // RSV1 without permessage-deflate; on a control frame even with it.
        (
            {
                let mut f = frame(true, opcode::TEXT, b"a", key);
                f[0] |= 0x40;
                f
            },
            CLIENT,
            Violation::ReservedBits,
        ),
        (
            {
                let mut f = frame(true, opcode::PING, b"", key);
                f[0] |= 0x40;
                f
            },
            Rules {
                rsv: 0x40,
                ..CLIENT
            },
            Violation::ReservedBits,
        ),
        // A 16-bit length under 126, a 64-bit one under 65536 or with its top bit set.
        (
            vec![0x82, 0x80 | 126, 0, 5, 1, 1, 1, 1],
            CLIENT,
            Violation::BadLength,
        ),
        (
            vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 1, 1, 1],
            CLIENT,
            Violation::BadLength,
        ),
        (
            vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1],
            CLIENT,
            Violation::BadLength,
        ),
    ];
    for (stream, rules, want) in cases {
        for piece in [1, stream.len()] {
            assert_eq!(
                walk(&stream, piece, rules),
                Err(want),
                "{stream:02x?} in pieces of {piece}"
            );
        }
    }
    // permessage-deflate: RSV1 on a message's first frame only.
    let deflate = Rules {
        rsv: 0x40,
        ..CLIENT
    };
    let mut first = frame(false, opcode::TEXT, b"a", key);
    first[0] |= 0x40;
    let mut cont = frame(true, opcode::CONTINUATION, b"b", key);
    assert!(walk(&[first.clone(), cont.clone()].concat(), 4, deflate).is_ok());
    cont[0] |= 0x40;
    assert_eq!(
        walk(&[first, cont].concat(), 4, deflate),
        Err(Violation::ReservedBits)
    );
}

#[test]
fn control_frames_come_whole_with_their_payload_unmasked_on_demand() {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut close = Vec::new();
    close_frame(code::SERVICE_RESTART, "moving", Some(key), &mut close);
    let mut t = Tracker::default();
    let Ok(Event::Control(c)) = t.next(&close, CLIENT) else {
        panic!("a control frame");
    };
    assert_eq!(
        (c.opcode, c.len, c.close_code()),
        (opcode::CLOSE, close.len(), 1012)
    );
    let mut buf = [0u8; 125];
    let n = c.unmasked(&mut buf);
    assert_eq!(&buf[2..n], b"moving");
    assert!(t.at_boundary());
    // A ping for the client: unmasked, as a server writes.
    let mut ping = Vec::new();
    ping_frame(b"tether01", &mut ping);
    let Ok(Event::Control(p)) = Tracker::default().next(&ping, NODE) else {
        panic!("a ping");
    };
    assert_eq!((p.opcode, p.payload), (opcode::PING, &b"tether01"[..]));
    assert_eq!(close_code(&[]), code::NO_STATUS);
}

#[test]
fn a_frame_in_flight_is_not_a_boundary_until_its_last_byte() {
    let stream = frame(true, opcode::BINARY, &[0; 1000], None);
    let mut t = Tracker::default();
    let Ok(Event::Data { n, .. }) = t.next(&stream, NODE) else {
        panic!()
    };
    assert!(!t.at_boundary());
    let Ok(Event::Data { n: m, header: None }) = t.next(&stream[n..n + 999], NODE) else {
        panic!()
    };
    assert_eq!(m, 999);
    assert!(!t.at_boundary(), "one byte left");
    let _ = t.next(&stream[n + 999..], NODE);
    assert!(t.at_boundary());
}

#[test]
fn close_codes_have_their_own_counter_or_a_shared_one() {
    for (i, label) in CODES.iter().enumerate() {
        if let Ok(code) = label.parse::<u16>() {
            assert_eq!(code_index(code), i, "{label}");
        }
    }
    assert_eq!(CODES[code_index(4321)], "4xxx");
    assert_eq!(CODES[code_index(1004)], "other");
    assert_eq!(CODES[code_index(3000)], "other");
}

//! engine.io v4 and socket.io v4 packets: the small part a load client needs, parsed by borrowing.
//!
//! engine.io: one type digit then data (`0` open, `1` close, `2` ping, `3` pong, `4` message,
//! `5` upgrade, `6` noop); a polling payload joins packets with the record separator 0x1e.
//! socket.io rides in engine.io messages: `<type>[<namespace>,][<ack id>][<JSON>]` with types
//! `0` connect, `1` disconnect, `2` event, `3` ack, `4` connect error (`5`/`6` binary, unused).

use serde::Deserialize;

/// One engine.io packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    Open(&'a str),
    Close,
    Ping(&'a str),
    Pong(&'a str),
    Message(&'a str),
    Upgrade,
    Noop,
}

pub(crate) fn packet(s: &str) -> Option<Packet<'_>> {
    let rest = s.get(1..)?;
    Some(match s.as_bytes().first()? {
        b'0' => Packet::Open(rest),
        b'1' => Packet::Close,
        b'2' => Packet::Ping(rest),
        b'3' => Packet::Pong(rest),
        b'4' => Packet::Message(rest),
        b'5' => Packet::Upgrade,
        b'6' => Packet::Noop,
        _ => return None,
    })
}

/// The packets of a polling response body.
pub(crate) fn payload(body: &str) -> impl Iterator<Item = &str> {
    body.split('\u{1e}').filter(|p| !p.is_empty())
}

/// The session id of an open packet's JSON (`{"sid":"...","upgrades":[...],...}`).
pub(crate) fn open_sid(json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Open {
        sid: String,
    }
    serde_json::from_str::<Open>(json).ok().map(|o| o.sid)
}

/// One socket.io packet (inside an engine.io message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sio<'a> {
    Connect(&'a str),
    Disconnect,
    Event {
        id: Option<u64>,
        data: &'a str,
    },
    Ack {
        id: u64,
        data: &'a str,
    },
    ConnectError(&'a str),
    /// Binary events and acks: not used by the load flows.
    Binary,
}

/// Parse a socket.io packet of namespace `nsp` (its packet prefix: empty for `/`, else `/name,`);
/// `None` for a malformed packet or another namespace's.
pub(crate) fn sio<'a>(s: &'a str, nsp: &str) -> Option<Sio<'a>> {
    let kind = *s.as_bytes().first()?;
    let rest = s.get(1..)?;
    let rest = if rest.starts_with('/') {
        let comma = rest.find(',')?;
        (&rest[..=comma] == nsp).then(|| &rest[comma + 1..])?
    } else {
        // No namespace in the packet means `/`.
        nsp.is_empty().then_some(rest)?
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = rest[..digits].parse::<u64>().ok();
    let data = &rest[digits..];
    Some(match kind {
        b'0' => Sio::Connect(data),
        b'1' => Sio::Disconnect,
        b'2' => Sio::Event { id, data },
        b'3' => Sio::Ack { id: id?, data },
        b'4' => Sio::ConnectError(data),
        b'5' | b'6' => Sio::Binary,
        _ => return None,
    })
}

/// The `node` field of an `echo` ack's first argument: `[{"node":"node-a","payload":...}]`.
pub(crate) fn ack_node(data: &str) -> Option<String> {
    // A small tree per ack; the socket.io flow is not the high-rate one.
    let args: serde_json::Value = serde_json::from_str(data).ok()?;
    Some(args.get(0)?.get("node")?.as_str()?.to_owned())
}

/// The node id of a `["node", "node-a"]` event (the test servers emit it on connection).
pub(crate) fn event_node(data: &str) -> Option<String> {
    match serde_json::from_str::<(String, String)>(data) {
        Ok((name, node)) if name == "node" => Some(node),
        _ => None,
    }
}

/// `42[<nsp>,]<id>["echo",{"i":<i>}]`, the engine.io text of an acked echo event.
pub(crate) fn echo_event(nsp: &str, id: u64, i: u32) -> String {
    format!("42{nsp}{id}[\"echo\",{{\"i\":{i}}}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engineio_packets() {
        assert_eq!(
            packet(r#"0{"sid":"x"}"#),
            Some(Packet::Open(r#"{"sid":"x"}"#))
        );
        assert_eq!(packet("1"), Some(Packet::Close));
        assert_eq!(packet("2"), Some(Packet::Ping("")));
        assert_eq!(packet("3probe"), Some(Packet::Pong("probe")));
        assert_eq!(packet("40"), Some(Packet::Message("0")));
        assert_eq!(packet("5"), Some(Packet::Upgrade));
        assert_eq!(packet("6"), Some(Packet::Noop));
        assert_eq!(packet(""), None);
        assert_eq!(packet("9"), None);
        assert_eq!(packet("x"), None);
    }

    #[test]
    fn open_packet_and_payload() {
        let body = "0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],\
                    \"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}";
        let packets: Vec<_> = payload(body).collect();
        assert_eq!(packets.len(), 1);
        let Some(Packet::Open(json)) = packet(packets[0]) else {
            panic!("{packets:?}")
        };
        assert_eq!(open_sid(json).as_deref(), Some("lv_VI97HAXpY6yYWAAAC"));
        assert_eq!(open_sid("{}"), None);
        assert_eq!(open_sid("nope"), None);
        let two = "40{\"sid\":\"a\"}\u{1e}42[\"node\",\"node-b\"]\u{1e}";
        assert_eq!(
            payload(two).collect::<Vec<_>>(),
            ["40{\"sid\":\"a\"}", "42[\"node\",\"node-b\"]"]
        );
    }

    #[test]
    fn socketio_packets() {
        assert_eq!(
            sio(r#"0{"sid":"s"}"#, ""),
            Some(Sio::Connect(r#"{"sid":"s"}"#))
        );
        assert_eq!(sio("1", ""), Some(Sio::Disconnect));
        assert_eq!(
            sio(r#"2["node","node-a"]"#, ""),
            Some(Sio::Event {
                id: None,
                data: r#"["node","node-a"]"#
            })
        );
        assert_eq!(
            sio(r#"312[{"node":"n"}]"#, ""),
            Some(Sio::Ack {
                id: 12,
                data: r#"[{"node":"n"}]"#
            })
        );
        assert_eq!(
            sio(r#"4{"message":"Invalid namespace"}"#, ""),
            Some(Sio::ConnectError(r#"{"message":"Invalid namespace"}"#))
        );
        assert_eq!(sio("3[]", ""), None, "an ack needs an id");
        assert_eq!(sio("51-[]", ""), Some(Sio::Binary));
        assert_eq!(sio("", ""), None);
        assert_eq!(sio("9", ""), None);
        // Namespaces.
        assert_eq!(
            sio("3/chat,7[1]", "/chat,"),
            Some(Sio::Ack { id: 7, data: "[1]" })
        );
        assert_eq!(sio("3/chat,7[1]", ""), None);
        assert_eq!(sio("37[1]", "/chat,"), None);
        assert_eq!(sio("0/chat", "/chat,"), None);
    }

    #[test]
    fn nodes_from_acks_and_events() {
        let ack = r#"[{"node":"node-a","payload":{"i":3}}]"#;
        assert_eq!(ack_node(ack).as_deref(), Some("node-a"));
        assert_eq!(ack_node(r#"[{"node":"n\"q"},2]"#).as_deref(), Some("n\"q"));
        assert_eq!(ack_node(r#"[{"payload":1}]"#), None);
        assert_eq!(ack_node("[]"), None);
        assert_eq!(
            event_node(r#"["node","node-c"]"#).as_deref(),
            Some("node-c")
        );
        assert_eq!(event_node(r#"["other","x"]"#), None);
        assert_eq!(event_node(r#"["node",1]"#), None);
    }

    #[test]
    fn echo_events() {
        assert_eq!(echo_event("", 0, 0), r#"420["echo",{"i":0}]"#);
        assert_eq!(echo_event("/chat,", 12, 3), r#"42/chat,12["echo",{"i":3}]"#);
        let event = echo_event("", 5, 1);
        let Some(Packet::Message(m)) = packet(&event) else {
            panic!()
        };
        assert_eq!(
            sio(m, ""),
            Some(Sio::Event {
                id: Some(5),
                data: r#"["echo",{"i":1}]"#
            })
        );
    }
}

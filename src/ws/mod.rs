//! RFC 6455 framing as a proxy follows it: frame headers read as they stream past, the rules of
//! §5 enforced, control frames seen whole, and the few frames tether writes itself (Ping, Close).
//!
//! tether never reassembles or decompresses a message: payloads are copied as they come (a
//! `permessage-deflate` payload stays compressed; control frames never are). What it needs from
//! the stream is where frames start and end, so it can put a frame of its own between two of the
//! node's or the client's (a Ping, a Close) and never inside one, and recognise the Pongs that
//! answer its own Pings. [`Tracker`] is that: a state of a few bytes per direction, fed the bytes
//! as they are read, answering what the next bytes are.
//!
//! Pure: no sockets, no clock. The engine's tunnel drives it.

mod frame;

pub use frame::{close_code, Control, Event, Header, Rules, Tracker, Violation};

/// Opcodes (RFC 6455 §5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Close codes tether sends or counts by name (RFC 6455 §7.4.1 and the IANA registry).
pub mod code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away: a server going down, a browser leaving the page. tether sends it to a node
    /// whose client it closes, and to clients at shutdown.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error: tether sends it both ways when a frame breaks §5.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// No status code in the Close frame (never sent on the wire).
    pub const NO_STATUS: u16 = 1005;
    /// The connection closed without a Close frame (never sent on the wire).
    pub const ABNORMAL: u16 = 1006;
    /// Service restart: the client should reconnect. tether sends it to clients it moves off a
    /// leaving node or to rebalance.
    pub const SERVICE_RESTART: u16 = 1012;
}

/// The close codes counted by name (`tether_websocket_closes_total{code}`): the registered
/// ones, then `4xxx` for an application's own (4000–4999) and `other` for anything else.
pub const CODES: [&str; 16] = [
    "1000", "1001", "1002", "1003", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012",
    "1013", "1014", "4xxx", "other",
];

/// `code`'s place in [`CODES`].
pub fn code_index(code: u16) -> usize {
    match code {
        1000..=1003 => usize::from(code - 1000),
        1005..=1014 => usize::from(code - 1005) + 4,
        4000..=4999 => 14,
        _ => 15,
    }
}

/// A Close frame with `code` and a short `reason`, masked with `mask` when it goes to a node (a
/// client's frames must be masked, and tether speaks for the client there).
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    // A control frame's payload is at most 125 bytes.
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    control_frame(opcode::CLOSE, &payload, mask, out);
}

/// A Ping with `payload` (at most 125 bytes), to a client (unmasked).
pub fn ping_frame(payload: &[u8], out: &mut Vec<u8>) {
    control_frame(opcode::PING, payload, None, out);
}

fn control_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let payload = &payload[..payload.len().min(125)];
    out.push(0x80 | opcode);
    match mask {
        None => {
            out.push(payload.len() as u8);
            out.extend_from_slice(payload);
        }
        Some(key) => {
            out.push(0x80 | payload.len() as u8);
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
    }
}

#[cfg(test)]
mod tests;

//! The streaming frame reader: where frames begin and end in one direction of a WebSocket, the
//! §5 rules checked on every header, and control frames handed over whole.

use super::opcode;

/// What a direction must look like: who sends it, and which reserved bits its extensions allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The client sends this direction: every frame must be masked (§5.1); the node's must not be.
    pub from_client: bool,
    /// RSV bits (`0x70` of the first byte) the negotiated extensions allow on a message's first
    /// frame: `0x40` (RSV1) for `permessage-deflate` (RFC 7692), `0x70` when an extension tether
    /// does not know was negotiated (it cannot judge them), `0` without extensions.
    pub rsv: u8,
}

/// Why a frame stream is not a WebSocket (RFC 6455 §5): both sides get a Close 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A client frame without a mask (§5.1).
    Unmasked,
    /// A server frame with a mask (§5.1).
    Masked,
    /// Opcode 3–7 or 0xB–0xF (§5.2).
    ReservedOpcode,
    /// An RSV bit no negotiated extension defines (§5.2).
    ReservedBits,
    /// A control frame with more than 125 bytes of payload (§5.5).
    ControlTooLong,
    /// A control frame without FIN (§5.5).
    ControlFragmented,
    /// A length in more bytes than it needs, or a 64-bit length with its top bit set (§5.2).
    BadLength,
    /// A continuation frame with no message to continue (§5.4).
    UnexpectedContinuation,
    /// A new text or binary frame in the middle of a fragmented message (§5.4).
    ExpectedContinuation,
}

/// A data frame's header, as it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: u8,
    pub fin: bool,
    /// Payload bytes that follow the header.
    pub len: u64,
}

/// A control frame, whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control<'a> {
    pub opcode: u8,
    /// Bytes of the whole frame, header included.
    pub len: usize,
    /// The payload as sent (masked when the client sent it).
    pub payload: &'a [u8],
    pub mask: Option<[u8; 4]>,
}

impl Control<'_> {
    /// The payload unmasked, into `out` (at most 125 bytes).
    pub fn unmasked(&self, out: &mut [u8; 125]) -> usize {
        let n = self.payload.len().min(125);
        for (i, b) in self.payload[..n].iter().enumerate() {
            out[i] = match self.mask {
                Some(key) => b ^ key[i % 4],
                None => *b,
            };
        }
        n
    }

    /// The code of a Close frame: its first two payload bytes, 1005 (no status) without them.
    pub fn close_code(&self) -> u16 {
        let mut buf = [0u8; 125];
        let n = self.unmasked(&mut buf);
        close_code(&buf[..n])
    }
}

/// The code of a Close frame's (unmasked) payload; 1005 when it has none.
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => super::code::NO_STATUS,
    }
}

/// What the next bytes of a direction are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The next `n` bytes pass as they are: a data frame's header (`Some`, the frame starts
    /// here), or `n` bytes of its payload (`None`).
    Data { n: usize, header: Option<Header> },
    /// A whole control frame.
    Control(Control<'a>),
    /// The bytes given are the start of a header or of a control frame, not all of it: keep
    /// them, and call again with them and what comes next.
    NeedMore,
}

/// One direction's place in its frame stream: a few bytes of state, no buffer (a header or a
/// control frame split across reads is kept by the caller and given again, whole, later).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracker {
    /// Payload bytes of the current data frame still to come.
    left: u64,
    /// Inside a fragmented message: a text or binary frame without FIN was seen.
    fragmented: bool,
}

impl Tracker {
    /// Between two frames: a frame of tether's own may go here.
    pub fn at_boundary(&self) -> bool {
        self.left == 0
    }

    /// Inside a fragmented data message (between its frames, control frames may still come).
    pub fn in_message(&self) -> bool {
        self.fragmented
    }

    /// What the bytes at the front of `buf` are (non-empty `buf`).
    pub fn next<'a>(&mut self, buf: &'a [u8], rules: Rules) -> Result<Event<'a>, Violation> {
        if self.left > 0 {
            let n = self.left.min(buf.len() as u64);
            self.left -= n;
            return Ok(Event::Data {
                n: n as usize,
                header: None,
            });
        }
        let [b0, b1, ..] = *buf else {
            return Ok(Event::NeedMore);
        };
        let (fin, rsv, op) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0f);
        let (masked, len7) = (b1 & 0x80 != 0, b1 & 0x7f);
        if !matches!(
            op,
            opcode::CONTINUATION
                | opcode::TEXT
                | opcode::BINARY
                | opcode::CLOSE
                | opcode::PING
                | opcode::PONG
        ) {
            return Err(Violation::ReservedOpcode);
        }
        match (rules.from_client, masked) {
            (true, false) => return Err(Violation::Unmasked),
            (false, true) => return Err(Violation::Masked),
            _ => {}
        }
        let control = op >= opcode::CLOSE;
        if control {
            if !fin {
                return Err(Violation::ControlFragmented);
            }
            if len7 > 125 {
                return Err(Violation::ControlTooLong);
            }
            if rsv != 0 {
                return Err(Violation::ReservedBits);
            }
        } else {
            // An extension's bits belong on a message's first frame (RFC 7692 §6); a
            // continuation carries none, unless an unknown extension says otherwise.
            let allowed = if op == opcode::CONTINUATION && rules.rsv != 0x70 {
                0
            } else {
                rules.rsv
            };
            if rsv & !allowed != 0 {
                return Err(Violation::ReservedBits);
            }
            match (op, self.fragmented) {
                (opcode::CONTINUATION, false) => return Err(Violation::UnexpectedContinuation),
                (opcode::TEXT | opcode::BINARY, true) => {
                    return Err(Violation::ExpectedContinuation)
                }
                _ => {}
            }
        }
        let extra = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let head = 2 + extra + if masked { 4 } else { 0 };
        if buf.len() < head {
            return Ok(Event::NeedMore);
        }
        let len = match len7 {
            126 => {
                let n = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
                if n < 126 {
                    return Err(Violation::BadLength);
                }
                n
            }
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let n = u64::from_be_bytes(b);
                if n >> 63 != 0 || n < 65_536 {
                    return Err(Violation::BadLength);
                }
                n
            }
            n => u64::from(n),
        };
        let mask = masked.then(|| {
            let at = 2 + extra;
            [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
        });
        if control {
            let whole = head + len as usize;
            if buf.len() < whole {
                return Ok(Event::NeedMore);
            }
            return Ok(Event::Control(Control {
                opcode: op,
                len: whole,
                payload: &buf[head..whole],
                mask,
            }));
        }
        if op != opcode::CONTINUATION {
            self.fragmented = !fin;
        } else if fin {
            self.fragmented = false;
        }
        self.left = len;
        Ok(Event::Data {
            n: head,
            header: Some(Header {
                opcode: op,
                fin,
                len,
            }),
        })
    }
}

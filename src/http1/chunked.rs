//! Chunked bodies (RFC 9112 §7.1), read strictly and forwarded normalised.
//!
//! A [`Decoder`] walks a chunked body across reads and writes what the next hop gets: every
//! chunk as `SIZE CRLF data CRLF` with the size in plain hex, and the end as `0 CRLF CRLF` (or,
//! for an HTTP/1.0 client, which cannot read chunked framing, the data alone). Nothing of the
//! sender's chunk lines reaches the next hop but the size, so a node that would read an odd
//! line differently (`5 5`, `0 5`, `5;GET /x HTTP/1.1`) never sees one:
//!
//! * `chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF`, the size in hex (leading zeros
//!   allowed, at most 15 significant digits: 2^60 bytes, far past any real body);
//! * `chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )` with token names and
//!   token or quoted-string values, checked and dropped; a chunk line is at most
//!   [`LINE_MAX`] bytes, so neither one huge extension nor thousands of small ones pass;
//! * trailer fields are checked like header fields (a token name, a colon, no obs-fold, no
//!   control bytes but HTAB), bounded in total, and dropped, as nginx does;
//! * every line ends in CRLF; a bare LF anywhere is refused.
//!
//! Anything else is [`BadChunk`]: the message is refused (400 for a request, 502 for a
//! response whose head has not gone out yet) and the connection closed.

/// Longest chunk line accepted: size, extensions and CRLF.
pub const LINE_MAX: usize = 4096;

/// Invalid chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChunk;

/// What the decoder writes for the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Normalised chunked framing.
    Chunked,
    /// The data alone (the receiver reads until the connection closes).
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of the size.
    Size,
    /// Whitespace after the size: only a `;` may follow.
    SizeSpace,
    /// After `;` (and whitespace): an extension name must start.
    ExtStart,
    ExtName,
    /// Whitespace after a name: `=`, `;` may follow.
    ExtNameSpace,
    /// After `=` (and whitespace): a token or a quoted string must start.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    /// After a backslash inside a quoted string.
    ExtEscape,
    /// After a value: `;` or CR (whitespace only before a `;`).
    ExtValueEnd,
    /// Whitespace after a value: only a `;` may follow.
    ExtValueSpace,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// The start of a trailer line, or the CR of the final empty line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
    Done,
}

/// Walks chunked framing across reads, writing the normalised body.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    /// The size being read, then the data left in the current chunk.
    size: u64,
    significant: u8,
    /// Bytes of the current chunk line.
    line: usize,
    /// Bytes of the trailer section so far, and its bound.
    trailers: usize,
    trailer_max: usize,
    output: Output,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A byte allowed in a quoted string (qdtext), other than `"` and `\`.
fn is_qdtext(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// A byte allowed in a field value: HTAB, SP, VCHAR, obs-text.
fn is_field_vchar(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

impl Decoder {
    /// A decoder writing `output`, accepting at most `trailer_max` bytes of trailer fields.
    pub fn new(output: Output, trailer_max: usize) -> Decoder {
        Decoder {
            state: State::Size,
            size: 0,
            significant: 0,
            line: 0,
            trailers: 0,
            trailer_max,
            output,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Read framing and data from `buf`, appending what the next hop gets to `out`. Returns how
    /// many bytes of `buf` belong to this body (all of them unless it ended inside `buf`).
    pub fn decode(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < buf.len() {
            if self.state == State::Data {
                let take = self.size.min((buf.len() - i) as u64) as usize;
                out.extend_from_slice(&buf[i..i + take]);
                self.size -= take as u64;
                i += take;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            if self.state == State::Done {
                return Ok(i);
            }
            self.step(buf[i], out)?;
            i += 1;
            if self.state == State::Done {
                return Ok(i);
            }
        }
        Ok(i)
    }

    /// One byte of framing (anything but chunk data).
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> Result<(), BadChunk> {
        use State::*;
        if matches!(
            self.state,
            Size | SizeSpace
                | ExtStart
                | ExtName
                | ExtNameSpace
                | ExtValueStart
                | ExtToken
                | ExtQuoted
                | ExtEscape
                | ExtValueEnd
                | ExtValueSpace
                | SizeLf
        ) {
            self.line += 1;
            if self.line > LINE_MAX {
                return Err(BadChunk);
            }
        }
        if matches!(
            self.state,
            TrailerStart | TrailerName | TrailerValue | TrailerLf
        ) {
            self.trailers += 1;
            if self.trailers > self.trailer_max {
                return Err(BadChunk);
            }
        }
        self.state = match (self.state, b) {
            (Size, b'\r') if self.line > 1 => SizeLf,
            (Size, b' ' | b'\t') if self.line > 1 => SizeSpace,
            (Size, b';') if self.line > 1 => ExtStart,
            (Size, _) => {
                let digit = (b as char).to_digit(16).ok_or(BadChunk)?;
                if self.significant > 0 || digit > 0 {
                    self.significant += 1;
                    if self.significant > 15 {
                        return Err(BadChunk);
                    }
                }
                self.size = self.size * 16 + u64::from(digit);
                Size
            }
            (SizeSpace | ExtStart | ExtNameSpace | ExtValueStart | ExtValueSpace, b)
                if is_space(b) =>
            {
                self.state
            }
            (SizeSpace, b';') => ExtStart,
            (ExtStart, b) if is_tchar(b) => ExtName,
            (ExtName, b) if is_tchar(b) => ExtName,
            (ExtName | ExtNameSpace | ExtValueEnd | ExtValueSpace | ExtToken, b';') => ExtStart,
            (ExtName | ExtValueEnd | ExtToken, b'\r') => SizeLf,
            (ExtName | ExtValueEnd | ExtToken, b) if is_space(b) => {
                if self.state == ExtName {
                    ExtNameSpace
                } else {
                    ExtValueSpace
                }
            }
            (ExtName | ExtNameSpace, b'=') => ExtValueStart,
            (ExtValueStart, b'"') => ExtQuoted,
            (ExtValueStart | ExtToken, b) if is_tchar(b) => ExtToken,
            (ExtQuoted, b'"') => ExtValueEnd,
            (ExtQuoted, b'\\') => ExtEscape,
            (ExtQuoted, b) if is_qdtext(b) => ExtQuoted,
            (ExtEscape, b) if is_qdtext(b) || b == b'"' || b == b'\\' => ExtQuoted,
            (SizeLf, b'\n') => {
                self.line = 0;
                self.significant = 0;
                if self.size == 0 {
                    TrailerStart
                } else {
                    if self.output == Output::Chunked {
                        use std::io::Write as _;
                        let _ = write!(out, "{:x}\r\n", self.size);
                    }
                    Data
                }
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => {
                if self.output == Output::Chunked {
                    out.extend_from_slice(b"\r\n");
                }
                Size
            }
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | TrailerName, b) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, b) if is_field_vchar(b) => TrailerValue,
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => {
                if self.output == Output::Chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                Done
            }
            _ => return Err(BadChunk),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &[u8]) -> Result<(usize, Vec<u8>), BadChunk> {
        let mut d = Decoder::new(Output::Chunked, 1024);
        let mut out = Vec::new();
        let n = d.decode(body, &mut out)?;
        assert!(d.is_done(), "not done after {n}");
        Ok((n, out))
    }

    #[test]
    fn finds_the_end_normalises_and_leaves_the_next_message() {
        let body = b"5\r\nhello\r\n1A;ext=1;q=\"a b\\\"\" ; x\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1";
        let (n, out) = decode(body).unwrap();
        assert_eq!(&body[n..], b"GET / HTTP/1.1");
        assert_eq!(
            out,
            b"5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n".as_slice()
        );
    }

    #[test]
    fn plain_output_is_the_data_alone() {
        let mut d = Decoder::new(Output::Plain, 1024);
        let mut out = Vec::new();
        d.decode(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", &mut out)
            .unwrap();
        assert!(d.is_done());
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn works_one_byte_at_a_time() {
        let body = b"3;a=\"x\"\r\nabc\r\n0\r\nT: v\r\n\r\n";
        let mut d = Decoder::new(Output::Chunked, 1024);
        let mut out = Vec::new();
        for (i, b) in body.iter().enumerate() {
            assert_eq!(
                d.decode(std::slice::from_ref(b), &mut out),
                Ok(1),
                "byte {i}"
            );
        }
        assert!(d.is_done());
        assert_eq!(out, b"3\r\nabc\r\n0\r\n\r\n");
    }

    #[test]
    fn leading_zeros_are_not_significant() {
        let (_, out) = decode(b"00000000000000000005\r\nhello\r\n000\r\n\r\n").unwrap();
        assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
    }

    #[test]
    fn anything_off_the_grammar_is_refused() {
        let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(70_000));
        let many_ext = format!("5{}\r\nhello\r\n0\r\n\r\n", ";a".repeat(20_000));
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(2000));
        let bad: Vec<&[u8]> = vec![
            b"x\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"\r\n",
            b"fffffffffffffffff\r\n",
            b"-1\r\n",
            b"0\r\n\n",
            b"5 5\r\n",
            b"5\t5\r\n",
            b"5 \r\n",
            b"5;\r\n",
            b"5;;\r\n",
            b"5;=b\r\n",
            b"5;a=\r\n",
            b"5;a=b c\r\n",
            b"5;a=b \r\n",
            b"5;a=\"x\r\n",
            b"5;a\x00\r\n",
            b"5;a\x7f\r\n",
            b"5;\xff\r\n",
            b"5;GET /x HTTP/1.1\r\n",
            b"0 \r\n\r\n",
            b"0 5\r\n\r\n",
            b"0\r\nGET /x HTTP/1.1\r\n\r\n",
            b"0\r\nX-T : 1\r\n\r\n",
            b"0\r\nX-T: 1\r\n folded\r\n\r\n",
            b"0\r\nX-T: a\x01b\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
            long_ext.as_bytes(),
            many_ext.as_bytes(),
            long_trailer.as_bytes(),
        ];
        for body in bad {
            let mut d = Decoder::new(Output::Chunked, 1024);
            let r = d.decode(body, &mut Vec::new());
            assert!(
                r.is_err() || !d.is_done(),
                "{:?} was accepted",
                String::from_utf8_lossy(&body[..body.len().min(60)])
            );
            if body.ends_with(b"\r\n\r\n") || body.len() > 1000 {
                assert_eq!(
                    r,
                    Err(BadChunk),
                    "{:?}",
                    String::from_utf8_lossy(&body[..body.len().min(60)])
                );
            }
        }
    }
}

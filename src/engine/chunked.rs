//! Finding the end of a chunked body while its bytes are forwarded untouched.
//!
//! We never re-encode: the scanner only walks the chunk framing so the proxy knows where one
//! message ends and the next begins, and refuses framing a strict peer would read differently
//! (bad sizes, bare LF, missing CRLF after data).

/// Invalid chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChunk;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { digits: u8 },
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Walks chunk framing across reads.
#[derive(Debug, Clone)]
pub struct Scanner {
    state: State,
    size: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Size { digits: 0 },
            size: 0,
        }
    }
}

impl Scanner {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consume framing from `buf`; returns how many bytes belong to this body (all of `buf` unless
    /// the body ended inside it).
    pub fn scan(&mut self, buf: &[u8]) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                State::Done => return Ok(i),
                State::Size { digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        // 15 hex digits is 2^60 bytes: far past any real body, and no overflow.
                        if digits >= 15 {
                            return Err(BadChunk);
                        }
                        let v = (b as char).to_digit(16).ok_or(BadChunk)?;
                        self.size = self.size * 16 + u64::from(v);
                        self.state = State::Size { digits: digits + 1 };
                    }
                    b';' | b' ' | b'\t' if digits > 0 => self.state = State::Ext,
                    b'\r' if digits > 0 => self.state = State::SizeLf,
                    _ => return Err(BadChunk),
                },
                State::Ext => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(BadChunk),
                    _ => {}
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let take = (self.size).min((buf.len() - i) as u64) as usize;
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(BadChunk);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    self.state = match b {
                        b'\r' => State::EndLf,
                        b'\n' => return Err(BadChunk),
                        _ => State::TrailerLine,
                    }
                }
                State::TrailerLine => match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\n' => return Err(BadChunk),
                    _ => {}
                },
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
            }
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(body: &[u8]) -> Result<usize, BadChunk> {
        let mut s = Scanner::default();
        let n = s.scan(body)?;
        assert!(s.is_done(), "not done after {n}");
        Ok(n)
    }

    #[test]
    fn finds_the_end_and_leaves_the_next_message() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1";
        let n = whole(body).unwrap();
        assert_eq!(&body[n..], b"GET / HTTP/1.1");
    }

    #[test]
    fn works_one_byte_at_a_time() {
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        let mut s = Scanner::default();
        for (i, b) in body.iter().enumerate() {
            assert_eq!(s.scan(std::slice::from_ref(b)), Ok(1), "byte {i}");
        }
        assert!(s.is_done());
    }

    #[test]
    fn bad_framing_is_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"\r\n",
            b"fffffffffffffffff\r\n",
            b"-1\r\n",
            b"0\r\n\n",
        ] {
            assert_eq!(Scanner::default().scan(bad), Err(BadChunk), "{bad:?}");
        }
    }
}

//! Where a message body being forwarded stands, and how far the bytes at hand reach into it.
//!
//! [`Body`] is the framing and its progress in one value: a length carries what is left, chunked
//! framing carries its scanner, so no combination of fields can contradict another.

use super::chunked;
use super::head::Framing;

#[derive(Debug, Clone)]
pub enum Body {
    /// No body, or all of it forwarded.
    Done,
    /// `Content-Length`: this many bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`, walked by the scanner.
    Chunked(chunked::Scanner),
    /// Until the sender closes (responses only).
    UntilClose,
}

impl Body {
    pub fn new(framing: Framing) -> Body {
        match framing {
            Framing::Empty | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(chunked::Scanner::default()),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    pub fn done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// How many bytes at the front of `buf` belong to this body (all of them unless it ends
    /// inside `buf`); the state moves past them. Bytes after the body's end are the next message.
    pub fn claim(&mut self, buf: &[u8]) -> Result<usize, chunked::BadChunk> {
        let n = match self {
            Body::Done => 0,
            Body::Length(left) => {
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                n as usize
            }
            Body::Chunked(scanner) => scanner.scan(buf)?,
            Body::UntilClose => buf.len(),
        };
        let finished = match self {
            Body::Length(0) => true,
            Body::Chunked(scanner) => scanner.is_done(),
            _ => false,
        };
        if finished {
            *self = Body::Done;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_ends_where_its_framing_says_and_leaves_the_rest() {
        let mut b = Body::new(Framing::Length(5));
        assert_eq!(b.claim(b"hel").unwrap(), 3);
        assert!(!b.done());
        assert_eq!(b.claim(b"loGET /").unwrap(), 2);
        assert!(b.done());
        let mut c = Body::new(Framing::Chunked);
        assert_eq!(c.claim(b"3\r\nabc\r\n0\r\n\r\nnext").unwrap(), 13);
        assert!(c.done());
        assert!(Body::new(Framing::Length(0)).done());
        let mut u = Body::new(Framing::UntilClose);
        assert_eq!(u.claim(b"all of it").unwrap(), 9);
        assert!(!u.done());
    }
}

//! Where a message body being forwarded stands, and how far the bytes at hand reach into it.
//!
//! [`Body`] is the framing and its progress in one value: a length carries what is left, chunked
//! framing carries its decoder, so no combination of fields can contradict another.

use super::chunked::{BadChunk, Decoder, Output};
use super::head::Framing;

#[derive(Debug, Clone)]
pub enum Body {
    /// No body, or all of it forwarded.
    Done,
    /// `Content-Length`: this many bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`, decoded and written out normalised.
    Chunked(Decoder),
    /// Until the sender closes (responses only).
    UntilClose,
}

/// What to send for the bytes a [`Body::claim`] consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The first `n` bytes of the input go out as they are (no copy needed).
    Raw(usize),
    /// `n` bytes of the input were consumed; what goes out was appended to the output buffer.
    Rewritten(usize),
}

impl Body {
    /// A body framed by `framing`. A chunked body is written out as normalised chunks, or as
    /// its data alone when `plain` (an HTTP/1.0 receiver); its trailers are bounded by
    /// `trailer_max` bytes.
    pub fn new(framing: Framing, plain: bool, trailer_max: usize) -> Body {
        match framing {
            Framing::Empty | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Decoder::new(
                if plain {
                    Output::Plain
                } else {
                    Output::Chunked
                },
                trailer_max,
            )),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    pub fn done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// Take the bytes at the front of `buf` that belong to this body (all of them unless it ends
    /// inside `buf`; bytes after its end are the next message) and say what goes out for them.
    pub fn claim(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<Claim, BadChunk> {
        let claim = match self {
            Body::Done => Claim::Raw(0),
            Body::Length(left) => {
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                Claim::Raw(n as usize)
            }
            Body::Chunked(decoder) => Claim::Rewritten(decoder.decode(buf, out)?),
            Body::UntilClose => Claim::Raw(buf.len()),
        };
        let finished = match self {
            Body::Length(0) => true,
            Body::Chunked(decoder) => decoder.is_done(),
            _ => false,
        };
        if finished {
            *self = Body::Done;
        }
        Ok(claim)
    }
}

/// Claim from `buf` and append what goes out to `out` (copying raw bytes too): for the first
/// bytes of a body, which share one write with the head already in `out`. Returns how many
/// bytes of `buf` were consumed.
pub fn claim_into(body: &mut Body, buf: &[u8], out: &mut Vec<u8>) -> Result<usize, BadChunk> {
    Ok(match body.claim(buf, out)? {
        Claim::Raw(n) => {
            out.extend_from_slice(&buf[..n]);
            n
        }
        Claim::Rewritten(n) => n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_ends_where_its_framing_says_and_leaves_the_rest() {
        let mut out = Vec::new();
        let mut b = Body::new(Framing::Length(5), false, 0);
        assert_eq!(b.claim(b"hel", &mut out).unwrap(), Claim::Raw(3));
        assert!(!b.done());
        assert_eq!(b.claim(b"loGET /", &mut out).unwrap(), Claim::Raw(2));
        assert!(b.done());
        assert!(out.is_empty(), "raw bytes are not copied");
        let mut c = Body::new(Framing::Chunked, false, 1024);
        assert_eq!(
            c.claim(b"3;x=y\r\nabc\r\n0\r\n\r\nnext", &mut out).unwrap(),
            Claim::Rewritten(17)
        );
        assert!(c.done());
        assert_eq!(out, b"3\r\nabc\r\n0\r\n\r\n");
        assert!(Body::new(Framing::Length(0), false, 0).done());
        let mut u = Body::new(Framing::UntilClose, false, 0);
        assert_eq!(u.claim(b"all of it", &mut out).unwrap(), Claim::Raw(9));
        assert!(!u.done());
        let mut into = b"HEAD".to_vec();
        let mut l = Body::new(Framing::Length(2), false, 0);
        assert_eq!(claim_into(&mut l, b"abc", &mut into).unwrap(), 2);
        assert_eq!(into, b"HEADab");
    }
}

//! The PROXY protocol header (HAProxy's spec, v1 text and v2 binary), which a load balancer in
//! front of tether sends first on each connection to say who the client really is.
//!
//! Pure: `parse` looks at bytes and says how many belong to the header, so the caller can consume
//! exactly those (peeking first) and leave a TLS ClientHello or HTTP request untouched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// v2's fixed signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1 headers are at most 107 bytes including CRLF.
const V1_MAX: usize = 107;
/// Longest v2 header we accept (addresses plus TLVs); real ones are a few dozen bytes.
pub const V2_MAX: usize = 16 + 1024;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The original client.
    Client(SocketAddr),
    /// A health check or `UNKNOWN`/`LOCAL`: keep the connection's own peer address.
    Local,
}

/// A header that is not valid PROXY protocol: the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// `Ok(None)`: too few bytes yet. `Ok(Some((source, n)))`: the header is the first `n` bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(Source, usize)>, Invalid> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'P' {
        return v1(buf);
    }
    if buf[0] == b'\r' {
        return v2(buf);
    }
    Err(Invalid)
}

fn v1(buf: &[u8]) -> Result<Option<(Source, usize)>, Invalid> {
    let prefix = b"PROXY ";
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Err(Invalid);
    }
    let Some(end) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(Invalid)
        } else {
            Ok(None)
        };
    };
    if end == 0 || buf[end - 1] != b'\r' {
        return Err(Invalid);
    }
    let line = std::str::from_utf8(&buf[prefix.len()..end - 1]).map_err(|_| Invalid)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let source = match parts.as_slice() {
        ["UNKNOWN", ..] => Source::Local,
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let src: IpAddr = src.parse().map_err(|_| Invalid)?;
            let dst: IpAddr = dst.parse().map_err(|_| Invalid)?;
            let family_ok = match *proto {
                "TCP4" => src.is_ipv4() && dst.is_ipv4(),
                _ => src.is_ipv6() && dst.is_ipv6(),
            };
            let port = |p: &str| {
                p.parse::<u16>()
                    .ok()
                    .filter(|_| !p.starts_with('0') || p == "0")
            };
            match (family_ok, port(sport), port(dport)) {
                (true, Some(sp), Some(_)) => Source::Client(SocketAddr::new(src, sp)),
                _ => return Err(Invalid),
            }
        }
        _ => return Err(Invalid),
    };
    Ok(Some((source, end + 1)))
}

fn v2(buf: &[u8]) -> Result<Option<(Source, usize)>, Invalid> {
    let n = buf.len().min(12);
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(Invalid);
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err(Invalid);
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if 16 + len > V2_MAX {
        return Err(Invalid);
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let source = match (ver_cmd & 0x0f, family) {
        // LOCAL: the balancer's own connection (health checks): no client address.
        (0x0, _) => Source::Local,
        // PROXY over TCP/IPv4 (0x11) or UDP/IPv4 (0x12).
        (0x1, 0x11 | 0x12) if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Source::Client(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([body[8], body[9]]),
            ))
        }
        (0x1, 0x21 | 0x22) if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Source::Client(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        // UNSPEC or UNIX sockets: no IP to use.
        (0x1, 0x00 | 0x31 | 0x32) => Source::Local,
        _ => return Err(Invalid),
    };
    Ok(Some((source, 16 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let h = b"PROXY TCP4 198.51.100.9 203.0.113.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (src, n) = parse(h).unwrap().unwrap();
        assert_eq!(src, Source::Client("198.51.100.9:51234".parse().unwrap()));
        assert_eq!(&h[n..n + 3], b"GET");
        let h6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert_eq!(
            parse(h6).unwrap().unwrap().0,
            Source::Client("[2001:db8::1]:1".parse().unwrap())
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().0,
            Source::Local
        );
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4").unwrap(), None);
    }

    #[test]
    fn v2_ipv4_ipv6_and_local() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 203, 0, 113, 1, 0xc8, 0x22, 1, 187,
        ]);
        h.extend_from_slice(b"rest");
        let (src, n) = parse(&h).unwrap().unwrap();
        assert_eq!(src, Source::Client("198.51.100.9:51234".parse().unwrap()));
        assert_eq!(&h[n..], b"rest");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).unwrap().unwrap(), (Source::Local, 16));
        assert_eq!(parse(&h[..20]).unwrap(), None);
    }

    #[test]
    fn garbage_is_invalid() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY SCTP 1.2.3.4 5.6.7.8 1 2\r\n",
            b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\x0c",
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c",
        ] {
            assert_eq!(parse(bad), Err(Invalid), "{bad:?}");
        }
        assert_eq!(parse(&[b'P'; 200]), Err(Invalid));
    }
}

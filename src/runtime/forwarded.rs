//! What a node is told about the client: `X-Forwarded-For`, `X-Forwarded-Proto` and
//! `X-Forwarded-Host` on every request tether forwards.
//!
//! The client's own `X-Forwarded-Proto` and `X-Forwarded-Host` are never passed on (it could
//! claim `https` over plain HTTP); its `X-Forwarded-For` lines are kept, joined in order into
//! one line, with the connection's peer appended as the last hop.

use std::net::IpAddr;

/// The forwarded headers for one request, appended to a head being written.
pub struct Forwarded<'a, I> {
    /// The client's `X-Forwarded-For` values, in head order.
    pub prior: I,
    /// The connection's peer (or the PROXY header's source): the hop tether saw.
    pub peer: IpAddr,
    /// The client connected over TLS.
    pub tls: bool,
    /// The `Host` the client sent.
    pub host: Option<&'a [u8]>,
}

impl<'a, I: Iterator<Item = &'a [u8]>> Forwarded<'a, I> {
    /// Append the header lines (each ending in CRLF) to `out`, without allocating.
    pub fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"x-forwarded-for: ");
        for value in self.prior {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
        push_ip(out, self.peer);
        out.extend_from_slice(if self.tls {
            b"\r\nx-forwarded-proto: https\r\n"
        } else {
            b"\r\nx-forwarded-proto: http\r\n"
        });
        if let Some(host) = self.host {
            out.extend_from_slice(b"x-forwarded-host: ");
            out.extend_from_slice(host);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Write an IP address in text (an IPv4-mapped IPv6 address as IPv4) without allocating.
/// IPv4, on every request, digit by digit: `Display` goes through the formatting machinery
/// (half a percent of the CPU of a new connection in the bench's profile).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    use std::io::Write;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            for (i, &o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if o >= 100 {
                    out.push(b'0' + o / 100);
                }
                if o >= 10 {
                    out.push(b'0' + o / 10 % 10);
                }
                out.push(b'0' + o % 10);
            }
        }
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.1.42",
            "::1",
            "fd00::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
        let mut out = Vec::new();
        push_ip(&mut out, "::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(out, b"10.1.2.3");
    }

    #[test]
    fn the_chain_is_kept_in_order_and_ends_with_the_peer() {
        let mut out = Vec::new();
        Forwarded {
            prior: [b"10.0.0.1".as_slice(), b"10.0.0.2, 10.0.0.3"].into_iter(),
            peer: "::ffff:192.0.2.9".parse().unwrap(),
            tls: true,
            host: Some(b"app.example"),
        }
        .write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x-forwarded-for: 10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.9\r\n\
             x-forwarded-proto: https\r\nx-forwarded-host: app.example\r\n"
        );
    }
}

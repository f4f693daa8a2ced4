//! Source addresses (`--source-range`): client i binds to the i-th usable address, cycling.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};

/// The usable addresses of a CIDR range: like `ipnet`'s `hosts()`, an IPv4 range shorter than /31
/// leaves out its network and broadcast addresses; IPv6 ranges use every address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceRange {
    first: u128,
    count: u128,
    v4: bool,
}

impl SourceRange {
    pub fn new(net: IpNet) -> SourceRange {
        match net {
            IpNet::V4(n) => {
                let size = 1u128 << (32 - u32::from(n.prefix_len()));
                let network = u128::from(u32::from(n.network()));
                let (first, count) = if n.prefix_len() < 31 {
                    (network + 1, size - 2)
                } else {
                    (network, size)
                };
                SourceRange {
                    first,
                    count,
                    v4: true,
                }
            }
            IpNet::V6(n) => {
                let bits = 128 - u32::from(n.prefix_len());
                // A /0 has 2^128 addresses, one more than u128 holds; nobody cycles through it.
                let count = if bits == 128 {
                    u128::MAX
                } else {
                    1u128 << bits
                };
                SourceRange {
                    first: u128::from(n.network()),
                    count,
                    v4: false,
                }
            }
        }
    }

    pub fn is_ipv4(&self) -> bool {
        self.v4
    }

    /// The address of client `i`.
    pub fn nth(&self, i: usize) -> IpAddr {
        let offset = (i as u128) % self.count;
        let addr = self.first + offset;
        if self.v4 {
            // first + offset stays inside the /prefix, so it fits in 32 bits.
            IpAddr::V4(Ipv4Addr::from(addr as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(addr))
        }
    }
}

/// A TCP connection to `target`, from `source` when given, with Nagle off (requests are small
/// and latency is what we measure).
pub(crate) async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> SourceRange {
        SourceRange::new(s.parse().unwrap())
    }

    #[test]
    fn ipv4_skips_network_and_broadcast_and_cycles() {
        let r = range("127.0.1.0/24");
        assert!(r.is_ipv4());
        assert_eq!(r.nth(0), "127.0.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.nth(253), "127.0.1.254".parse::<IpAddr>().unwrap());
        assert_eq!(r.nth(254), "127.0.1.1".parse::<IpAddr>().unwrap());
        // A host bit set in the CIDR is ignored, as ipnet does.
        assert_eq!(range("127.0.1.77/24"), r);
        let all: Vec<IpAddr> = (0..254).map(|i| r.nth(i)).collect();
        let expected: Vec<IpAddr> = "127.0.1.0/24".parse::<IpNet>().unwrap().hosts().collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn tiny_ranges_use_every_address() {
        let one = range("10.0.0.7/32");
        assert_eq!(one.nth(0), one.nth(5));
        assert_eq!(one.nth(3), "10.0.0.7".parse::<IpAddr>().unwrap());
        let two = range("10.0.0.6/31");
        assert_eq!(
            [two.nth(0), two.nth(1), two.nth(2)],
            ["10.0.0.6", "10.0.0.7", "10.0.0.6"].map(|s| s.parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn ipv6() {
        let r = range("fd00::/120");
        assert!(!r.is_ipv4());
        assert_eq!(r.nth(0), "fd00::".parse::<IpAddr>().unwrap());
        assert_eq!(r.nth(257), "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(range("::/0").nth(3), "::3".parse::<IpAddr>().unwrap());
    }

    #[tokio::test]
    async fn binds_the_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.3.9".parse().unwrap();
        let (client, accepted) = tokio::join!(connect(target, Some(source)), listener.accept());
        assert_eq!(client.unwrap().local_addr().unwrap().ip(), source);
        assert_eq!(accepted.unwrap().1.ip(), source);
    }
}

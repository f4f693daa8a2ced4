//! Who the client is: the connection's peer (or the PROXY header's source), unless that peer is
//! a trusted proxy, in which case `X-Forwarded-For` is walked from the right past trusted hops.
//! An untrusted peer can never choose its address through headers.

use std::net::IpAddr;

/// The client's address. `xff` yields the `X-Forwarded-For` header values in the order they
/// appear in the head.
pub fn resolve<'a, I>(peer: IpAddr, trusted: &[ipnet::IpNet], xff: I) -> IpAddr
where
    I: DoubleEndedIterator<Item = &'a [u8]>,
{
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for value in xff.rev() {
        for hop in value.rsplit(|&b| b == b',') {
            let text = std::str::from_utf8(hop.trim_ascii()).unwrap_or("");
            let Ok(ip) = text
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            else {
                // Garbage in the chain: stop at the last hop we could trust.
                return client;
            };
            client = ip;
            if !is_trusted(&ip) {
                return ip;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_peers_may_name_the_client_walked_from_the_right() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = [b"1.1.1.1, 2.2.2.2".as_slice(), b"10.0.0.7"];
        assert_eq!(
            resolve(ip("9.9.9.9"), &trusted, xff.into_iter()),
            ip("9.9.9.9")
        );
        assert_eq!(
            resolve(ip("10.0.0.1"), &trusted, xff.into_iter()),
            ip("2.2.2.2")
        );
        assert_eq!(
            resolve(ip("10.0.0.1"), &[], xff.into_iter()),
            ip("10.0.0.1")
        );
        let garbage = [b"1.1.1.1, nonsense, 10.0.0.9".as_slice()];
        assert_eq!(
            resolve(ip("10.0.0.1"), &trusted, garbage.into_iter()),
            ip("10.0.0.9")
        );
        let v6 = [b"[2001:db8::1]".as_slice()];
        assert_eq!(
            resolve(ip("10.0.0.1"), &trusted, v6.into_iter()),
            ip("2001:db8::1")
        );
    }
}

//! The sections about clients: connection `limits`, and the `client_ip.trusted_proxies` whose
//! X-Forwarded-For is believed.

use super::Checker;
use crate::config::defaults::*;
use crate::config::file::{FileClientIp, FileLimits};
use crate::config::model::Limits;

impl Checker<'_> {
    pub(super) fn limits(&mut self, l: Option<&FileLimits>) -> Option<Limits> {
        let Some(l) = l else {
            return Some(Limits::default());
        };
        let max_head = self.count(
            "limits.max_head_bytes",
            l.max_head_bytes,
            (1024, 1024 * 1024, DEFAULT_MAX_HEAD_BYTES),
            "a request head limit is between 1024 and 1048576 bytes",
        );
        let max_uri = self.count(
            "limits.max_uri_bytes",
            l.max_uri_bytes,
            (256, 1024 * 1024, DEFAULT_MAX_URI_BYTES),
            "a request target limit is between 256 and 1048576 bytes",
        );
        if let (Some(h), Some(u)) = (max_head, max_uri) {
            self.ensure(
                u <= h,
                "limits.max_uri_bytes",
                format_args!(
                    "{u} is larger than max_head_bytes ({h}); the target is part of the head"
                ),
            );
        }
        let head = self.timeout(
            "limits.head_timeout",
            l.head_timeout.as_ref(),
            DEFAULT_HEAD_TIMEOUT,
        );
        let keepalive = self.timeout(
            "limits.keepalive_timeout",
            l.keepalive_timeout.as_ref(),
            DEFAULT_KEEPALIVE_TIMEOUT,
        );
        let body = self.timeout(
            "limits.body_timeout",
            l.body_timeout.as_ref(),
            DEFAULT_BODY_TIMEOUT,
        );
        let write = self.timeout(
            "limits.write_timeout",
            l.write_timeout.as_ref(),
            DEFAULT_WRITE_TIMEOUT,
        );
        let per_ip = self.count(
            "limits.max_connections_per_ip",
            l.max_connections_per_ip,
            (0, 1_000_000, DEFAULT_MAX_CONNECTIONS_PER_IP),
            "connections per client IP, 0 (no limit) or more",
        );
        Some(Limits {
            max_head_bytes: max_head? as usize,
            max_uri_bytes: max_uri? as usize,
            head_timeout: head?,
            keepalive_timeout: keepalive?,
            body_timeout: body?,
            write_timeout: write?,
            max_connections_per_ip: per_ip?,
        })
    }

    pub(super) fn trusted_proxies(&mut self, c: Option<&FileClientIp>) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for (i, text) in c
            .and_then(|c| c.trusted_proxies.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let t = text.trim();
            // A bare address means just that host.
            let parsed = t
                .parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => out.push(net),
                Err(_) => self.bad::<()>(
                    &format!("client_ip.trusted_proxies[{i}]"),
                    format_args!("`{t}` is not an address or CIDR block; write e.g. `10.0.0.0/8` or `192.0.2.7`"),
                ).unwrap_or_default(),
            }
        }
        out
    }
}

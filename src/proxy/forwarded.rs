//! `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host` on requests sent to nodes.

use pingora::Result;
use pingora_http::RequestHeader;
use std::fmt::Write as _;
use std::net::IpAddr;

static XFF: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
static XFP: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
static XFH: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");

/// Append the client to `X-Forwarded-For` (keeping what earlier hops wrote, joined into one
/// header line), and say which scheme and host the client used.
pub fn apply(
    upstream: &mut RequestHeader,
    client_ip: Option<IpAddr>,
    original: &RequestHeader,
    tls: bool,
) -> Result<()> {
    if let Some(ip) = client_ip {
        let mut xff = String::with_capacity(64);
        for v in upstream.headers.get_all(&XFF) {
            if let Ok(s) = v.to_str() {
                xff.push_str(s.trim());
                xff.push_str(", ");
            }
        }
        let _ = write!(xff, "{ip}");
        upstream.insert_header(XFF.clone(), xff)?;
    }
    upstream.insert_header(
        XFP.clone(),
        http::HeaderValue::from_static(if tls { "https" } else { "http" }),
    )?;
    if let Some(host) = original.headers.get(http::header::HOST) {
        upstream.insert_header(XFH.clone(), host.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_to_existing_chain_and_sets_proto_and_host() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("host", "app.example").unwrap();
        req.append_header("x-forwarded-for", "10.0.0.1").unwrap();
        req.append_header("x-forwarded-for", "10.0.0.2").unwrap();
        let original = req.clone();
        apply(
            &mut req,
            Some("192.0.2.9".parse().unwrap()),
            &original,
            false,
        )
        .unwrap();
        assert_eq!(req.headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(
            req.headers["x-forwarded-for"],
            "10.0.0.1, 10.0.0.2, 192.0.2.9"
        );
        assert_eq!(req.headers["x-forwarded-proto"], "http");
        assert_eq!(req.headers["x-forwarded-host"], "app.example");
    }
}

//! Every way a request can fail before its response head reaches the client, and the one table
//! that turns each into a status code, a reason phrase and a short body.
//!
//! The engine never picks a status itself: it names what happened ([`Refusal`] for the
//! client's side, [`NodeFailure`] for the node's) and answers with what this table says. A
//! node failure also knows whether it counts against the node's passive health and whether the
//! request may be sent again on a fresh connection.

/// The client's request cannot be served as sent. Answered, then the connection is closed
/// (we may not know where the request ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed or ambiguous framing, an invalid `Host`, method or header (400).
    BadRequest,
    /// The request head did not arrive within `limits.head_timeout` (408).
    HeadTimeout,
    /// The request body stopped arriving for `limits.body_timeout` (408).
    BodyTimeout,
    /// The request target is longer than `limits.max_uri_bytes` (414).
    UriTooLong,
    /// The head is larger than `limits.max_head_bytes` or has too many fields (431).
    HeadTooLarge,
    /// No route serves this host and path (404).
    NoRoute,
    /// A WebSocket upgrade from an `Origin` the route does not allow (403): the Cross-Site
    /// WebSocket Hijacking defence.
    OriginNotAllowed,
    /// A WebSocket version other than 13 (426, with `Sec-WebSocket-Version: 13`).
    WebSocketVersion,
    /// The client's address has `limits.max_connections_per_ip` connections open (429).
    TooManyConnections,
}

/// What went wrong on the way to a node or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFailure {
    /// No node may take the request: none healthy, every candidate tried, or the pinned
    /// node's tunnels are full (503).
    NoNode,
    /// Connecting failed or timed out on every node tried (503).
    Connect,
    /// The connection broke while the request was being written (502).
    SendBroken,
    /// The node stopped reading the request for `timeouts.send` (504).
    SendTimeout,
    /// The node closed or reset the connection before a whole response head (502).
    Closed,
    /// No response head (or no next body bytes) within `timeouts.read` (504).
    ReadTimeout,
    /// The response head is malformed, too large, or framed ambiguously (502).
    BadResponse,
    /// `101 Switching Protocols` to a request that asked for no upgrade (502).
    UnaskedUpgrade,
}

impl NodeFailure {
    pub fn status(self) -> u16 {
        match self {
            NodeFailure::NoNode | NodeFailure::Connect => 503,
            NodeFailure::SendTimeout | NodeFailure::ReadTimeout => 504,
            NodeFailure::SendBroken
            | NodeFailure::Closed
            | NodeFailure::BadResponse
            | NodeFailure::UnaskedUpgrade => 502,
        }
    }

    /// Does this failure count toward the node's passive health (`passive.max_fails`)? A
    /// refused connection or a node that does not answer in time is a sick node; a broken
    /// answer is more likely one bad request.
    pub fn counts_against_node(self) -> bool {
        matches!(self, NodeFailure::Connect | NodeFailure::ReadTimeout)
    }

    /// Could this failure be a pooled connection the node had closed while it sat idle (so
    /// the request may go again on a fresh connection, when the retry rule allows)?
    pub fn stale_connection(self) -> bool {
        matches!(self, NodeFailure::SendBroken | NodeFailure::Closed)
    }
}

/// Any failure before the response head went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Refused(Refusal),
    Node(NodeFailure),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Failure {
        Failure::Refused(r)
    }
}

impl From<NodeFailure> for Failure {
    fn from(n: NodeFailure) -> Failure {
        Failure::Node(n)
    }
}

impl Failure {
    /// The status the client gets.
    pub fn status(self) -> u16 {
        match self {
            Failure::Node(n) => n.status(),
            Failure::Refused(r) => match r {
                Refusal::BadRequest => 400,
                Refusal::HeadTimeout | Refusal::BodyTimeout => 408,
                Refusal::UriTooLong => 414,
                Refusal::HeadTooLarge => 431,
                Refusal::NoRoute => 404,
                Refusal::OriginNotAllowed => 403,
                Refusal::WebSocketVersion => 426,
                Refusal::TooManyConnections => 429,
            },
        }
    }

    /// Extra header lines the answer carries (CRLF-terminated).
    pub fn extra_headers(self) -> &'static [u8] {
        match self {
            // RFC 6455 §4.4: say which version we speak.
            Failure::Refused(Refusal::WebSocketVersion) => b"sec-websocket-version: 13\r\n",
            _ => b"",
        }
    }
}

/// A short, plain-text body naming what happened (never internal details).
pub fn body_for(status: u16) -> &'static [u8] {
    match status {
        400 => b"bad request\n",
        403 => b"origin not allowed\n",
        426 => b"unsupported WebSocket version; use 13\n",
        429 => b"too many connections from your address\n",
        408 => b"the request took too long to arrive\n",
        414 => b"the request target is too long\n",
        431 => b"the request head is too large\n",
        404 => b"no route for this path\n",
        502 => b"the node sent a broken response\n",
        503 => b"no node is available\n",
        504 => b"the node did not answer in time\n",
        _ => b"proxy error\n",
    }
}

/// The reason phrase for the statuses tether itself sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// The whole answer for `failure`: status line, headers (`Connection: close`) and body.
pub fn render(failure: Failure, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let status = failure.status();
    let body = body_for(status);
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    out.extend_from_slice(failure.extra_headers());
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_status_and_node_failures_know_their_rules() {
        assert_eq!(Failure::from(NodeFailure::Connect).status(), 503);
        assert_eq!(Failure::from(NodeFailure::ReadTimeout).status(), 504);
        assert_eq!(Failure::from(NodeFailure::BadResponse).status(), 502);
        assert_eq!(Failure::from(Refusal::OriginNotAllowed).status(), 403);
        assert!(NodeFailure::ReadTimeout.counts_against_node());
        assert!(!NodeFailure::BadResponse.counts_against_node());
        assert!(NodeFailure::Closed.stale_connection());
        assert!(!NodeFailure::ReadTimeout.stale_connection());
        let mut out = Vec::new();
        render(Refusal::WebSocketVersion.into(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("sec-websocket-version: 13\r\n"));
        assert!(text.ends_with("connection: close\r\n\r\nunsupported WebSocket version; use 13\n"));
    }
}

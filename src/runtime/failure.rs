//! Every way an exchange can end other than with the node's whole response, the one table that
//! answers each, and the rule that decides whether a failed request may be sent again.
//!
//! The engine never picks a status itself: it names what happened ([`Refusal`] for the client's
//! side, [`NodeFailure`] for the node's, [`Failure::ClientGone`] for a client that left) and
//! answers with the [`Answer`] this table gives for that variant, one entry per variant (as
//! linkerd2-proxy's `errors/respond.rs` does), so two failures that share a status never share
//! a body by accident. A node failure also knows whether it counts against the node's passive
//! health; [`may_resend`] is the retry rule, a pure function of how far the attempt got.

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

impl Refusal {
    /// Every refusal, in counter order.
    pub const ALL: [Refusal; 9] = [
        Refusal::BadRequest,
        Refusal::HeadTimeout,
        Refusal::BodyTimeout,
        Refusal::UriTooLong,
        Refusal::HeadTooLarge,
        Refusal::NoRoute,
        Refusal::OriginNotAllowed,
        Refusal::WebSocketVersion,
        Refusal::TooManyConnections,
    ];

    /// The label metrics and the access log use.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::HeadTimeout => "head_timeout",
            Refusal::BodyTimeout => "client_body_timeout",
            Refusal::UriTooLong => "uri_too_long",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::NoRoute => "no_route",
            Refusal::OriginNotAllowed => "origin_not_allowed",
            Refusal::WebSocketVersion => "websocket_version",
            Refusal::TooManyConnections => "too_many_connections",
        }
    }

    /// What the client is told.
    pub fn answer(self) -> Answer {
        match self {
            Refusal::BadRequest => Answer::new(400, "Bad Request", b"bad request\n"),
            Refusal::HeadTimeout => Answer::new(
                408,
                "Request Timeout",
                b"the request took too long to arrive\n",
            ),
            Refusal::BodyTimeout => Answer::new(
                408,
                "Request Timeout",
                b"the request took too long to arrive\n",
            ),
            Refusal::UriTooLong => {
                Answer::new(414, "URI Too Long", b"the request target is too long\n")
            }
            Refusal::HeadTooLarge => Answer::new(
                431,
                "Request Header Fields Too Large",
                b"the request head is too large\n",
            ),
            Refusal::NoRoute => Answer::new(404, "Not Found", b"no route for this path\n"),
            Refusal::OriginNotAllowed => Answer::new(403, "Forbidden", b"origin not allowed\n"),
            // RFC 6455 §4.4: say which version we speak.
            Refusal::WebSocketVersion => Answer {
                headers: b"sec-websocket-version: 13\r\n",
                ..Answer::new(
                    426,
                    "Upgrade Required",
                    b"unsupported WebSocket version; use 13\n",
                )
            },
            Refusal::TooManyConnections => Answer::new(
                429,
                "Too Many Requests",
                b"too many connections from your address\n",
            ),
        }
    }
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
    /// No response head within `timeouts.read` (504).
    ReadTimeout,
    /// The response head is malformed, too large, or framed ambiguously (502).
    BadResponse,
    /// `101 Switching Protocols` to a request that asked for no upgrade (502).
    UnaskedUpgrade,
    /// The response body broke after its head went out: cut short, or chunk framing the
    /// codec refused. The client sees the connection close, never a false end.
    BodyBroken,
    /// No next response body bytes within `timeouts.read` after the head went out.
    BodyTimeout,
}

impl NodeFailure {
    /// Every node failure, in counter order.
    pub const ALL: [NodeFailure; 10] = [
        NodeFailure::NoNode,
        NodeFailure::Connect,
        NodeFailure::SendBroken,
        NodeFailure::SendTimeout,
        NodeFailure::Closed,
        NodeFailure::ReadTimeout,
        NodeFailure::BadResponse,
        NodeFailure::UnaskedUpgrade,
        NodeFailure::BodyBroken,
        NodeFailure::BodyTimeout,
    ];

    /// The label metrics and the access log use.
    pub fn name(self) -> &'static str {
        match self {
            NodeFailure::NoNode => "no_node",
            NodeFailure::Connect => "connect",
            NodeFailure::SendBroken => "send_broken",
            NodeFailure::SendTimeout => "send_timeout",
            NodeFailure::Closed => "closed",
            NodeFailure::ReadTimeout => "read_timeout",
            NodeFailure::BadResponse => "bad_response",
            NodeFailure::UnaskedUpgrade => "unasked_upgrade",
            NodeFailure::BodyBroken => "body_broken",
            NodeFailure::BodyTimeout => "body_timeout",
        }
    }

    /// What the client is told, when its response has not begun.
    pub fn answer(self) -> Answer {
        const BROKEN: &[u8] = b"the node sent a broken response\n";
        match self {
            NodeFailure::NoNode => {
                Answer::new(503, "Service Unavailable", b"no node is available\n")
            }
            NodeFailure::Connect => {
                Answer::new(503, "Service Unavailable", b"no node is available\n")
            }
            NodeFailure::SendBroken => Answer::new(502, "Bad Gateway", BROKEN),
            NodeFailure::SendTimeout => {
                Answer::new(504, "Gateway Timeout", b"the node did not answer in time\n")
            }
            NodeFailure::Closed => Answer::new(502, "Bad Gateway", BROKEN),
            NodeFailure::ReadTimeout => {
                Answer::new(504, "Gateway Timeout", b"the node did not answer in time\n")
            }
            NodeFailure::BadResponse | NodeFailure::BodyBroken => {
                Answer::new(502, "Bad Gateway", BROKEN)
            }
            NodeFailure::UnaskedUpgrade => Answer::new(502, "Bad Gateway", BROKEN),
            NodeFailure::BodyTimeout => {
                Answer::new(504, "Gateway Timeout", b"the node did not answer in time\n")
            }
        }
    }

    /// Does this failure count toward the node's passive health (`passive.max_fails`)? A node
    /// that does not answer in time is a sick node; a broken answer is more likely one bad
    /// request, and a body that stops is as likely a long-poll held past `timeouts.read`.
    /// Refused connections are counted by the connect step, once per node that refused.
    pub fn counts_against_node(self) -> bool {
        matches!(self, NodeFailure::ReadTimeout)
    }

    /// Could this failure be a pooled connection the node had closed while it sat idle (so
    /// the request may go again on a fresh connection, when [`may_resend`] allows)?
    pub fn stale_connection(self) -> bool {
        matches!(self, NodeFailure::SendBroken | NodeFailure::Closed)
    }
}

/// Any way an exchange ends other than with the node's whole response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Refused(Refusal),
    Node(NodeFailure),
    /// The client closed or broke its connection (or stopped reading for
    /// `limits.write_timeout`) before the exchange ended: nothing is written to it, and the
    /// exchange is logged as `499` (nginx's number for it) and counted apart from the 4xx a
    /// dashboard shows, so mobile clients closing tabs do not look like bad requests.
    ClientGone,
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

/// The status the access log records for a client that went away.
pub const CLIENT_GONE_STATUS: u16 = 499;

impl Failure {
    /// What the client is sent; `None` for a client that is gone.
    pub fn answer(self) -> Option<Answer> {
        match self {
            Failure::Refused(r) => Some(r.answer()),
            Failure::Node(n) => Some(n.answer()),
            Failure::ClientGone => None,
        }
    }

    /// The status the access log records.
    pub fn status(self) -> u16 {
        self.answer().map_or(CLIENT_GONE_STATUS, |a| a.status)
    }

    /// The label metrics and the access log use.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Refused(r) => r.name(),
            Failure::Node(n) => n.name(),
            Failure::ClientGone => "client_gone",
        }
    }
}

/// The whole answer to one failure: status line, extra header lines and a short plain-text body
/// naming what happened (never internal details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub reason: &'static str,
    pub body: &'static [u8],
    /// Extra header lines, each ending in CRLF.
    pub headers: &'static [u8],
}

impl Answer {
    const fn new(status: u16, reason: &'static str, body: &'static [u8]) -> Answer {
        Answer {
            status,
            reason,
            body,
            headers: b"",
        }
    }

    /// The answer as an HTTP/1.1 message that closes the connection.
    pub fn render(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
            self.status,
            self.reason,
            self.body.len()
        );
        out.extend_from_slice(self.headers);
        out.extend_from_slice(b"connection: close\r\n\r\n");
        out.extend_from_slice(self.body);
    }
}

/// How far one attempt to send a request to a node got: what the retry rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Progress {
    /// Not one byte of the request reached the node.
    Unsent,
    /// Some of it did: the node may have acted on it.
    Reached,
    /// An interim `1xx` went to the client: the response has begun.
    Answered,
}

/// One attempt at a node, as the retry rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The connection came from the idle pool (the node may have closed it while it sat there).
    pub pooled: bool,
    /// This is already the resend (a request goes to a node at most twice).
    pub resent: bool,
    pub progress: Progress,
    /// Bytes of a response arrived on this connection (a broken head is not a stale connection).
    pub response_bytes: bool,
}

impl Attempt {
    /// A first attempt on a connection, pooled or fresh.
    pub fn first(pooled: bool) -> Attempt {
        Attempt {
            pooled,
            resent: false,
            progress: Progress::Unsent,
            response_bytes: false,
        }
    }

    /// The resend, on a fresh connection.
    pub fn resend() -> Attempt {
        Attempt {
            pooled: false,
            resent: true,
            progress: Progress::Unsent,
            response_bytes: false,
        }
    }

    /// Note that some of the request reached the node.
    pub fn reached(&mut self) {
        self.progress = self.progress.max(Progress::Reached);
    }
}

/// The retry rule: a request goes to a node at most twice, the second time only on a fresh
/// connection, after a pooled one failed as a stale connection would (closed, or broken while
/// the request was written) before any answer came back (not even a `1xx`, not a byte of a
/// head), and only if sending it twice is harmless: the whole request is in hand to send
/// again, and either its method is idempotent (RFC 9110 §9.2.2) or no byte of it reached the
/// node. Otherwise the client gets the failure (nginx's rule).
pub fn may_resend(failure: NodeFailure, attempt: Attempt, whole: bool, idempotent: bool) -> bool {
    failure.stale_connection()
        && attempt.pooled
        && !attempt.resent
        && attempt.progress < Progress::Answered
        && !attempt.response_bytes
        && whole
        && (idempotent || attempt.progress == Progress::Unsent)
}

/// Methods whose request may be sent twice with the effect of once (RFC 9110 §9.2.2).
pub fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_own_answer() {
        assert_eq!(NodeFailure::Connect.answer().status, 503);
        assert_eq!(NodeFailure::ReadTimeout.answer().status, 504);
        assert_eq!(NodeFailure::BadResponse.answer().status, 502);
        assert_eq!(Refusal::OriginNotAllowed.answer().status, 403);
        assert_eq!(Failure::ClientGone.status(), 499);
        assert_eq!(
            Failure::ClientGone.answer(),
            None,
            "a gone client is sent nothing"
        );
        // Every label is distinct, so counters by name never merge two kinds.
        let mut names: Vec<&str> = Refusal::ALL.iter().map(|r| r.name()).collect();
        names.extend(NodeFailure::ALL.iter().map(|n| n.name()));
        names.push(Failure::ClientGone.name());
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        // ALL lists every variant in declaration order (counters are indexed by it).
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, n) in NodeFailure::ALL.iter().enumerate() {
            assert_eq!(*n as usize, i);
        }
        let mut out = Vec::new();
        Refusal::WebSocketVersion.answer().render(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("sec-websocket-version: 13\r\n"));
        assert!(text.ends_with("connection: close\r\n\r\nunsupported WebSocket version; use 13\n"));
    }

    #[test]
    fn only_a_read_timeout_counts_against_the_node_and_only_closes_look_stale() {
        for f in NodeFailure::ALL {
            assert_eq!(
                f.counts_against_node(),
                f == NodeFailure::ReadTimeout,
                "{f:?}"
            );
            assert_eq!(
                f.stale_connection(),
                matches!(f, NodeFailure::SendBroken | NodeFailure::Closed),
                "{f:?}"
            );
        }
    }

    /// The retry rule over every input that matters.
    #[test]
    fn the_retry_rule_resends_only_a_harmless_request_after_a_stale_pooled_connection() {
        let base = Attempt::first(true);
        let sent = Attempt {
            progress: Progress::Reached,
            ..base
        };
        // The one case the rule exists for: a pooled connection the node had closed.
        assert!(may_resend(NodeFailure::Closed, sent, true, true));
        assert!(may_resend(NodeFailure::SendBroken, base, true, false));
        // A POST that reached the node is not sent twice; one that did not may be.
        assert!(!may_resend(NodeFailure::Closed, sent, true, false));
        assert!(may_resend(NodeFailure::Closed, base, true, false));
        // A fresh connection that fails is not stale: the node is the problem.
        assert!(!may_resend(
            NodeFailure::Closed,
            Attempt::first(false),
            true,
            true
        ));
        // Never a third time.
        let again = Attempt {
            progress: Progress::Reached,
            ..Attempt::resend()
        };
        assert!(!may_resend(NodeFailure::Closed, again, true, true));
        // Once an interim answer went out, or a byte of a head came back, nothing is resent.
        let answered = Attempt {
            progress: Progress::Answered,
            ..base
        };
        assert!(!may_resend(NodeFailure::Closed, answered, true, true));
        let partial = Attempt {
            response_bytes: true,
            ..sent
        };
        assert!(!may_resend(NodeFailure::Closed, partial, true, true));
        // A body still streaming from the client cannot be sent again.
        assert!(!may_resend(NodeFailure::Closed, sent, false, true));
        // Failures that say nothing about the connection's staleness.
        for f in [
            NodeFailure::ReadTimeout,
            NodeFailure::SendTimeout,
            NodeFailure::BadResponse,
            NodeFailure::Connect,
            NodeFailure::NoNode,
            NodeFailure::UnaskedUpgrade,
            NodeFailure::BodyBroken,
            NodeFailure::BodyTimeout,
        ] {
            assert!(!may_resend(f, sent, true, true), "{f:?}");
        }
        // Reached never moves progress back from Answered.
        let mut a = answered;
        a.reached();
        assert_eq!(a.progress, Progress::Answered);
        assert!(idempotent(b"PUT") && !idempotent(b"POST") && !idempotent(b"get"));
    }
}

//! The one table that turns a failure into a status code and a short body.

use bytes::Bytes;
use pingora::{Error, ErrorSource, ErrorType};

/// Status for a failed request; 0 means the client is gone and nothing should be written.
pub fn status_for(e: &Error) -> u16 {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(code) => *code,
        // Retries are exhausted by the time we get here: no node could be reached.
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | BindError
        | SocketError | TLSHandshakeFailure | TLSHandshakeTimedout => 503,
        ReadTimedout | WriteTimedout if e.esource() == &ErrorSource::Upstream => 504,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed | ReadTimedout | WriteTimedout => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// A short, plain-text body naming what happened (never internal details).
pub fn body_for(status: u16) -> Bytes {
    Bytes::from_static(match status {
        400 => b"bad request\n",
        403 => b"origin not allowed\n",
        426 => b"unsupported WebSocket version; use 13\n",
        429 => b"too many connections from your address\n",
        408 => b"the request head took too long to arrive\n",
        414 => b"the request target is too long\n",
        431 => b"the request head is too large\n",
        404 => b"no route for this path\n",
        502 => b"the node sent a broken response\n",
        503 => b"no node is available\n",
        504 => b"the node did not answer in time\n",
        _ => b"proxy error\n",
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_status() {
        let up = |t| {
            let mut e = Error::new(t);
            e.esource = ErrorSource::Upstream;
            e
        };
        let down = |t| {
            let mut e = Error::new(t);
            e.esource = ErrorSource::Downstream;
            e
        };
        assert_eq!(status_for(&up(ErrorType::ConnectRefused)), 503);
        assert_eq!(status_for(&up(ErrorType::ReadTimedout)), 504);
        assert_eq!(status_for(&up(ErrorType::InvalidHTTPHeader)), 502);
        assert_eq!(status_for(&down(ErrorType::InvalidHTTPHeader)), 400);
        assert_eq!(status_for(&down(ErrorType::ConnectionClosed)), 0);
        assert_eq!(status_for(&Error::new(ErrorType::HTTPStatus(503))), 503);
    }
}

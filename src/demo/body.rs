//! The response body: whole, or streamed chunk by chunk as a producer task sends them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// Response body: a whole buffer, or chunks flushed as a producer task sends them.
pub(super) enum Body {
    Full(Option<Bytes>),
    /// Ends at an empty chunk; a channel closed without one means the producer died, and the
    /// error makes hyper cut the connection instead of finishing the response as if complete.
    Chan(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match this {
            Body::Full(body) => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
            Body::Chan(rx) => match std::task::ready!(rx.poll_recv(cx)) {
                Some(chunk) if !chunk.is_empty() => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                Some(_) => {
                    *this = Body::Full(None);
                    Poll::Ready(None)
                }
                None => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "stream producer died",
                )))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Chan(_) => SizeHint::default(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(body: Bytes) -> Self {
        Body::Full(Some(body))
    }
}

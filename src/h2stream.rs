//! An HTTP/2 stream as a byte stream (`AsyncRead` + `AsyncWrite`), for WebSockets over an
//! extended CONNECT (RFC 8441: the same frames, masked the same way, carried as the stream's
//! DATA). The engine relays a client's stream with the very tunnel that follows frames over an
//! HTTP/1.1 connection; `tether load` runs tungstenite over its own streams. Either end: it
//! only wraps the `h2` crate's stream halves.
//!
//! Flow control is the reader's and writer's back-pressure: a write takes only the send capacity h2 grants
//! (so a client that stops reading holds at most its window in h2's buffers, and the relay keeps
//! the rest, as it does for a slow socket), and received DATA is released back to the client's
//! window only once the relay has taken it.

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One side of a byte stream carried by an HTTP/2 stream.
pub struct StreamIo {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received DATA not yet read by the relay.
    pending: Bytes,
    /// END_STREAM went out (the relay shut its write side).
    ended: bool,
}

impl StreamIo {
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> StreamIo {
        StreamIo {
            send,
            recv,
            pending: Bytes::new(),
            ended: false,
        }
    }
}

/// An h2 error as the relay sees it: the stream is gone.
fn broken(e: h2::Error) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, e)
}

impl AsyncRead for StreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.pending.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.pending = data,
                Some(Err(e)) => return Poll::Ready(Err(broken(e))),
                // END_STREAM: the client's half is done, like a FIN.
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        // Taken by the relay: the client may send this much more.
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        this.send.reserve_capacity(data.len());
        let granted = loop {
            match this.send.capacity() {
                0 => match ready!(this.send.poll_capacity(cx)) {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Poll::Ready(Err(broken(e))),
                    None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                },
                n => break n,
            }
        };
        let n = granted.min(data.len());
        this.send
            .send_data(Bytes::copy_from_slice(&data[..n]), false)
            .map_err(broken)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes frames out as soon as they are queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.ended {
            this.ended = true;
            this.send.send_data(Bytes::new(), true).map_err(broken)?;
        }
        Poll::Ready(Ok(()))
    }
}

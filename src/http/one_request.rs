//! The connection as hyper sees it while it serves one request: that request's head and body,
//! then the end of the file, with a timer on writes the client stops taking.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::message_end::RequestBody;

/// A write to a client that has taken nothing for this long ends its connection: a client that
/// stops reading its answers would otherwise hold the connection forever, uncounted.
const WRITE_STALL: Duration = Duration::from_secs(10);

/// The connection as hyper sees it: one request (its head and body, nothing after), then the end
/// of the file. hyper then either asks for more (keep-alive: the next head is ours to read) or
/// ends the connection.
pub(super) struct OneRequest<'a> {
    stream: &'a mut TcpStream,
    /// Read from the socket, not yet given to hyper.
    buf: &'a mut BytesMut,
    head_left: usize,
    body: RequestBody,
    /// hyper read up to the end of the request and asked for more: it keeps the connection.
    past_end: bool,
    /// Since when a write has been waiting for the client to take something.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<'a> OneRequest<'a> {
    /// The request whose head is the first `head_len` bytes of `buf`, with its body framed as
    /// `body`; the rest of `buf` and then the socket follow.
    pub(super) fn new(
        stream: &'a mut TcpStream,
        buf: &'a mut BytesMut,
        head_len: usize,
        body: RequestBody,
    ) -> OneRequest<'a> {
        OneRequest {
            stream,
            buf,
            head_left: head_len,
            body,
            past_end: false,
            stalled: None,
        }
    }

    /// hyper took the whole request (head and body) and asked for more: the connection is left
    /// at the start of its next request.
    pub(super) fn at_next_request(&self) -> bool {
        self.past_end && self.body.is_done()
    }

    /// Passes on a write's outcome; one that cannot progress fails once it has waited
    /// [`WRITE_STALL`].
    fn write_progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped taking the answer",
        )))
    }
}

/// How many of `bytes` (next on the wire) belong to the request whose head has `head_left` bytes
/// to go; counts them as given.
fn take(head_left: &mut usize, body: &mut RequestBody, bytes: &[u8]) -> usize {
    let head = (*head_left).min(bytes.len());
    *head_left -= head;
    head + body.take(&bytes[head..])
}

impl AsyncRead for OneRequest<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.head_left == 0 && this.body.is_done() {
            this.past_end = true;
            return Poll::Ready(Ok(()));
        }
        if !this.buf.is_empty() {
            let available = this.buf.len().min(out.remaining());
            let n = take(&mut this.head_left, &mut this.body, &this.buf[..available]);
            out.put_slice(&this.buf[..n]);
            this.buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        let start = out.filled().len();
        ready!(Pin::new(&mut *this.stream).poll_read(cx, out))?;
        let new = &out.filled()[start..];
        let n = take(&mut this.head_left, &mut this.body, new);
        if n < new.len() {
            // The start of the next request: kept for our next head.
            this.buf.extend_from_slice(&new[n..]);
            out.set_filled(start + n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for OneRequest<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.stream).poll_write(cx, buf);
        this.write_progress(cx, polled)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.stream).poll_write_vectored(cx, bufs);
        this.write_progress(cx, polled)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.stream).poll_flush(cx);
        this.write_progress(cx, polled)
    }
    /// The connection outlives the request: closing it is ours to decide (see `linger`).
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
